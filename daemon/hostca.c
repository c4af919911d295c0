/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "durable.h"
#include "hostca.h"
#include "tpmevidence.h"
#include "x509.h"

G_DEFINE_QUARK(vrot-hostca-error-quark, vrot_hostca_error)

/* A certificate and its chain: a few KiB.  Larger files are not ours. */
#define MAX_FILE (256 * 1024)

static void chain_free(STACK_OF(X509) *chain)
{
        sk_X509_pop_free(chain, X509_free);
}

void vrot_hostca_free(VrotHostca *ca)
{
        if (!ca)
                return;
        X509_free(ca->cert);
        if (ca->chain)
                chain_free(ca->chain);
        if (ca->path)
                chain_free(ca->path);
        g_free(ca);
}

static gboolean is_ca(X509 *cert, GError **error)
{
        guint32 flags = X509_get_extension_flags(cert);
        const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(cert);

        if ((flags & EXFLAG_INVALID) || !(flags & EXFLAG_CA)) {
                g_set_error_literal(error, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_NOT_CA,
                                    "not a CA certificate (basicConstraints cA is not set)");
                return FALSE;
        }
        if (!(flags & EXFLAG_KUSAGE) || !(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN)) {
                g_set_error_literal(error, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_NOT_CA,
                                    "not a CA certificate (keyUsage without keyCertSign)");
                return FALSE;
        }
        if (!ski || ASN1_STRING_length(ski) == 0) {
                g_set_error_literal(error, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_NOT_CA,
                                    "the certificate has no subjectKeyIdentifier (it names the "
                                    "issuer of every EK certificate)");
                return FALSE;
        }
        return TRUE;
}

/* The verified path from @cert to @root, or NULL with _UNTRUSTED. */
static STACK_OF(X509) *verify_path(X509 *cert, STACK_OF(X509) *chain, X509 *root,
                                   GError **error)
{
        g_autoptr(X509_STORE) store = X509_STORE_new();
        g_autoptr(X509_STORE_CTX) ctx = X509_STORE_CTX_new();
        int rc;

        if (!store || !ctx || X509_STORE_add_cert(store, root) != 1 ||
            X509_STORE_CTX_init(ctx, store, cert, chain) != 1) {
                ERR_clear_error();
                g_set_error_literal(error, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_FAILED,
                                    "cannot set up the certificate check");
                return NULL;
        }
        /* The configured root is the anchor, self-signed or not. */
        X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN);
        rc = X509_verify_cert(ctx);
        ERR_clear_error();
        if (rc != 1) {
                g_set_error(error, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_UNTRUSTED,
                            "the certificate does not chain to the configured fleet root: %s",
                            X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
                return NULL;
        }
        return X509_STORE_CTX_get1_chain(ctx);
}

VrotHostca *vrot_hostca_check(X509 *cert, STACK_OF(X509) *chain, X509 *fleet_root,
                              EVP_PKEY *ca_key, GError **error)
{
        g_autoptr(VrotHostca) ca = NULL;
        STACK_OF(X509) *path;

        g_return_val_if_fail(cert && fleet_root && ca_key, NULL);
        if (EVP_PKEY_eq(X509_get0_pubkey(cert), ca_key) != 1) {
                ERR_clear_error();
                g_set_error(error, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_WRONG_KEY,
                            "the certificate is for another key than the host endorsement CA "
                            "key in the host TPM (0x%08x)", VROT_HOST_TPM_CA_KEY_HANDLE);
                return NULL;
        }
        if (!is_ca(cert, error) || !(path = verify_path(cert, chain, fleet_root, error)))
                return NULL;
        ca = g_new0(VrotHostca, 1);
        ca->path = path;
        X509_up_ref(cert);
        ca->cert = cert;
        ca->chain = chain ? X509_chain_up_ref(chain) : sk_X509_new_null();
        if (!ca->chain) {
                g_set_error_literal(error, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_FAILED,
                                    "out of memory");
                return NULL;
        }
        return g_steal_pointer(&ca);
}

/* PEM text as a GError of this domain (the x509 module says what is wrong). */
static gboolean parse_failed(GError **error, const char *what, GError *cause)
{
        g_set_error(error, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_INVALID, "%s: %s", what,
                    cause->message);
        return FALSE;
}

VrotHostca *vrot_hostca_import(const gchar *pem, gsize len, const gchar *chain_pem,
                               gsize chain_len, X509 *fleet_root, EVP_PKEY *ca_key,
                               GError **error)
{
        g_autoptr(GError) local = NULL;
        g_autoptr(X509) cert = NULL;
        STACK_OF(X509) *chain = NULL;
        VrotHostca *ca;

        if (!(cert = vrot_x509_from_pem(pem, len, &local))) {
                parse_failed(error, "the certificate", local);
                return NULL;
        }
        if (chain_pem && !(chain = vrot_x509_chain_from_pem(chain_pem, chain_len,
                                                            VROT_HOSTCA_MAX_CHAIN, &local))) {
                parse_failed(error, "the chain", local);
                return NULL;
        }
        ca = vrot_hostca_check(cert, chain, fleet_root, ca_key, error);
        if (chain)
                chain_free(chain);
        return ca;
}

gboolean vrot_hostca_save(const VrotHostca *ca, const gchar *path, GError **error)
{
        g_autoptr(GString) text = g_string_new(NULL);
        VrotError verr = { 0 };

        for (int i = -1; i < sk_X509_num(ca->chain); i++) {
                g_autofree gchar *pem = vrot_x509_to_pem(i < 0 ? ca->cert : sk_X509_value(ca->chain, i),
                                                         error);
                if (!pem)
                        return FALSE;
                g_string_append(text, pem);
        }
        if (vrot_durable_write_path(path, text->str, text->len, 0644, &verr) < 0) {
                g_set_error(error, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_FAILED, "%s", verr.msg);
                return FALSE;
        }
        return TRUE;
}

VrotHostca *vrot_hostca_load(const gchar *path, X509 *fleet_root, EVP_PKEY *ca_key,
                             GError **error)
{
        g_autoptr(GError) local = NULL;
        g_autofree gchar *text = NULL;
        STACK_OF(X509) *all = NULL;
        X509 *cert;
        VrotHostca *ca;
        gsize len = 0;

        if (!g_file_get_contents(path, &text, &len, &local) || len > MAX_FILE) {
                g_set_error(error, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_FAILED, "%s",
                            local ? local->message : "the file is too large");
                return NULL;
        }
        if (!(all = vrot_x509_chain_from_pem(text, len, VROT_HOSTCA_MAX_CHAIN + 1, &local))) {
                parse_failed(error, path, local);
                return NULL;
        }
        cert = sk_X509_shift(all);      /* the host CA; the rest is its chain */
        ca = vrot_hostca_check(cert, all, fleet_root, ca_key, error);
        X509_free(cert);
        chain_free(all);
        return ca;
}

/* ---- --dev: the local fleet root as the CA side ----------------------------------- */

static gboolean dev_evidence(gpointer tpm, GBytes *nonce, VrotTpmevidence **ret, GError **error)
{
        return vrot_host_tpm_certify_ca_key(tpm, nonce, ret, error);
}

static gboolean dev_activate(gpointer tpm, GBytes *id_object, GBytes *encrypted_secret,
                             GBytes **ret_secret, GError **error)
{
        return vrot_host_tpm_activate_credential(tpm, id_object, encrypted_secret, ret_secret,
                                                 error);
}

static X509 *der_cert(GBytes *der, GError **error)
{
        return vrot_x509_from_der(g_bytes_get_data(der, NULL), g_bytes_get_size(der), error);
}

/* The simulated TPM's vendor: its local CA's root, the issuer as intermediate. */
static gboolean dev_vendor(VrotDevTpm *dev, X509_STORE **ret_roots,
                           STACK_OF(X509) **ret_untrusted, GError **error)
{
        g_autoptr(X509) root = der_cert(vrot_dev_tpm_root_cert(dev), error);
        X509 *issuer = root ? der_cert(vrot_dev_tpm_issuer_cert(dev), error) : NULL;
        X509_STORE *roots;
        STACK_OF(X509) *untrusted;

        if (!issuer)
                return FALSE;
        roots = X509_STORE_new();
        untrusted = sk_X509_new_null();
        if (!roots || !untrusted || X509_STORE_add_cert(roots, root) != 1 ||
            !sk_X509_push(untrusted, issuer)) {
                X509_free(issuer);
                X509_STORE_free(roots);
                sk_X509_free(untrusted);
                g_set_error_literal(error, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_FAILED,
                                    "out of memory");
                return FALSE;
        }
        *ret_roots = roots;
        *ret_untrusted = untrusted;
        return TRUE;
}

X509 *vrot_hostca_dev_issue(VrotHostTpm *tpm, VrotDevTpm *dev, X509 *root, EVP_PKEY *root_key,
                            GError **error)
{
        static const VrotTpmevidenceProver in_process = { dev_evidence, dev_activate };
        static const VrotX509CaParams params = {
                .common_name = "vrot host endorsement CA", .organization = "vrot --dev",
        };
        g_autoptr(X509_STORE) roots = NULL;
        STACK_OF(X509) *untrusted = NULL;
        g_autoptr(VrotTpmevidenceVerified) v = NULL;
        g_autoptr(VrotX509Signer) signer = NULL;
        gboolean ok;

        if (!dev_vendor(dev, &roots, &untrusted, error))
                return NULL;
        ok = vrot_tpmevidence_challenge(&in_process, tpm, roots, untrusted, &v, error);
        chain_free(untrusted);
        if (!ok) {
                g_prefix_error(error, "the host evidence was refused: ");
                return NULL;
        }
        if (!(signer = vrot_x509_signer_new_software(root, root_key, error)))
                return NULL;
        return vrot_x509_ca_cert(signer, vrot_tpmevidence_verified_ca_key(v), &params, error);
}
