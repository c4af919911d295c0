/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrotctl host-enrol: the operator's CA enrols a host (docs/host-evidence.md,
 * vrotd(8) ENROLMENT).  A fresh nonce, the host's evidence for it, steps
 * 1-5 against the TPM vendor CAs, a credential only that TPM can activate,
 * its answer compared; only then the host CA certificate is issued, for
 * the key the TPM certified (the request must be for the same key and
 * signed by it), and imported into vrotd.  Any failure before the end
 * signs nothing and changes nothing on the host.
 *
 * The CA's private key is read from a file here.  A real fleet keeps it
 * offline or in an HSM: run vrotctl on that station and reach the host's
 * socket through ssh (`ssh -L /tmp/h.sock:/run/vrot/vrotd.sock host`).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "autoptr.h"
#include "prover.h"
#include "x509.h"

#define MAX_CHAIN 8

typedef struct Args {
        gchar *ca_cert, *ca_key, *vendor_ca, *chain;
} Args;

static void args_clear(Args *a)
{
        g_free(a->ca_cert);
        g_free(a->ca_key);
        g_free(a->vendor_ca);
        g_free(a->chain);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Args, args_clear)

/* What the CA side holds: its signer, the vendor roots, the chain to send. */
typedef struct Issuer {
        VrotX509Signer *signer;
        X509_STORE *vendor;
        GString *chain_pem;
} Issuer;

static void issuer_clear(Issuer *is)
{
        g_clear_pointer(&is->signer, vrot_x509_signer_free);
        g_clear_pointer(&is->vendor, X509_STORE_free);
        if (is->chain_pem)
                g_string_free(g_steal_pointer(&is->chain_pem), TRUE);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Issuer, issuer_clear)

/* The CA's private key; the file's text is wiped after parsing. */
static EVP_PKEY *load_private_key(const char *path, GError **error)
{
        g_autofree gchar *text = NULL;
        g_autoptr(BIO) bio = NULL;
        EVP_PKEY *key = NULL;
        gsize len = 0;

        if (!(text = vrotctl_read_file(path, &len, error)))
                return NULL;
        if ((bio = BIO_new_mem_buf(text, (int)len)))
                key = PEM_read_bio_PrivateKey(bio, NULL, vrot_x509_no_passphrase, NULL);
        OPENSSL_cleanse(text, len);
        ERR_clear_error();
        if (!key)
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "--ca-key %s: not an unencrypted PEM private key", path);
        return key;
}

static gboolean load_signer(const Args *a, Issuer *is, GError **error)
{
        STACK_OF(X509) *certs = vrotctl_load_certs(a->ca_cert, error);
        g_autoptr(EVP_PKEY) key = certs ? load_private_key(a->ca_key, error) : NULL;
        X509 *ca = certs ? sk_X509_value(certs, 0) : NULL;

        if (key && !(is->signer = vrot_x509_signer_new_software(ca, key, error)))
                g_prefix_error(error, "--ca-cert %s, --ca-key %s: ", a->ca_cert, a->ca_key);
        /* Sent with the certificate: the issuing CA unless it is the root itself. */
        if (is->signer && X509_check_issued(ca, ca) != X509_V_OK) {
                g_autofree gchar *pem = vrot_x509_to_pem(ca, NULL);
                g_string_append(is->chain_pem, pem ? pem : "");
        }
        if (certs)
                sk_X509_pop_free(certs, X509_free);
        return is->signer != NULL;
}

static gboolean load_vendor(const Args *a, Issuer *is, GError **error)
{
        STACK_OF(X509) *certs = vrotctl_load_certs(a->vendor_ca, error);
        gboolean ok = certs != NULL;

        for (int i = 0; ok && i < sk_X509_num(certs); i++)
                ok = X509_STORE_add_cert(is->vendor, sk_X509_value(certs, i)) == 1;
        if (certs)
                sk_X509_pop_free(certs, X509_free);
        ERR_clear_error();
        return ok;
}

static gboolean load_chain(const Args *a, Issuer *is, GError **error)
{
        STACK_OF(X509) *certs;

        if (!a->chain)
                return TRUE;
        if (!(certs = vrotctl_load_certs(a->chain, error)))
                return FALSE;
        for (int i = 0; i < sk_X509_num(certs); i++) {
                g_autofree gchar *pem = vrot_x509_to_pem(sk_X509_value(certs, i), NULL);
                g_string_append(is->chain_pem, pem ? pem : "");
        }
        sk_X509_pop_free(certs, X509_free);
        return TRUE;
}

/* Everything the CA side needs, read before the host is asked anything. */
static gboolean load_issuer(const Args *a, Issuer *is, GError **error)
{
        is->vendor = X509_STORE_new();
        is->chain_pem = g_string_new(NULL);
        return is->vendor && load_signer(a, is, error) && load_vendor(a, is, error) &&
               load_chain(a, is, error);
}

/* The request must be for the certified key and signed by it; its subject is kept. */
static gboolean subject_from_csr(X509_REQ *csr, EVP_PKEY *ca_key, gchar **ret_cn,
                                 gchar **ret_org, GError **error)
{
        char cn[256] = "", org[256] = "";
        X509_NAME *name = X509_REQ_get_subject_name(csr);

        if (EVP_PKEY_eq(X509_REQ_get0_pubkey(csr), ca_key) != 1 ||
            X509_REQ_verify(csr, ca_key) != 1) {
                ERR_clear_error();
                g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                    "the host's certification request is not for, or not signed "
                                    "by, the key its TPM certified");
                return FALSE;
        }
        if (X509_NAME_get_text_by_NID(name, NID_commonName, cn, sizeof(cn)) <= 0) {
                g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                    "the host's certification request has no common name");
                return FALSE;
        }
        X509_NAME_get_text_by_NID(name, NID_organizationName, org, sizeof(org));
        *ret_cn = g_strdup(cn);
        *ret_org = org[0] ? g_strdup(org) : NULL;
        return TRUE;
}

static X509 *issue(const Issuer *is, const VrotctlProver *p, const VrotTpmevidenceVerified *v,
                   GError **error)
{
        g_autofree gchar *cn = NULL, *org = NULL;
        EVP_PKEY *ca_key = vrot_tpmevidence_verified_ca_key(v);
        VrotX509CaParams params = { 0 };

        if (!subject_from_csr(p->csr, ca_key, &cn, &org, error))
                return NULL;
        params.common_name = cn;
        params.organization = org;
        return vrot_x509_ca_cert(is->signer, ca_key, &params, error);
}

static gboolean import(VrotRpcclient *c, X509 *cert, const Issuer *is, JsonNode **ret,
                       GError **error)
{
        g_autoptr(JsonObject) params = json_object_new();
        g_autofree gchar *pem = vrot_x509_to_pem(cert, error);

        if (!pem)
                return FALSE;
        json_object_set_string_member(params, "pem", pem);
        if (is->chain_pem->len)
                json_object_set_string_member(params, "chain_pem", is->chain_pem->str);
        return vrotctl_call(c, "host.import_ca_cert", params, ret, error);
}

static void print_enrolled(X509 *cert)
{
        g_autofree gchar *subject = vrotctl_subject(X509_get_subject_name(cert));
        g_autofree gchar *issuer = vrotctl_subject(X509_get_issuer_name(cert));
        g_autofree gchar *pem = vrot_x509_to_pem(cert, NULL);

        vrotctl_print_field("enrolled:", "yes");
        vrotctl_print_field("host CA:", subject);
        vrotctl_print_field("  issued by:", issuer);
        printf("%s", pem ? pem : "");
}

static gboolean run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        g_auto(Args) a = { 0 };
        GOptionEntry entries[] = {
                { "ca-cert", 0, 0, G_OPTION_ARG_FILENAME, &a.ca_cert, "Issuing CA certificate", "FILE" },
                { "ca-key", 0, 0, G_OPTION_ARG_FILENAME, &a.ca_key, "Its private key (PEM)", "FILE" },
                { "tpm-vendor-ca", 0, 0, G_OPTION_ARG_FILENAME, &a.vendor_ca,
                  "TPM vendor CA certificates (PEM)", "FILE" },
                { "chain", 0, 0, G_OPTION_ARG_FILENAME, &a.chain,
                  "Certificates between the issuing CA and the fleet root", "FILE" },
                G_OPTION_ENTRY_NULL,
        };
        const VrotctlCommand *cmd = &vrotctl_cmd_host_enrol;
        g_auto(Issuer) is = { 0 };
        g_autoptr(VrotRpcclient) c = NULL;
        g_autoptr(VrotTpmevidenceVerified) v = NULL;
        g_autoptr(X509) cert = NULL;
        g_autoptr(JsonNode) res = NULL;
        VrotctlProver p = { 0 };
        gboolean ok;

        if (!vrotctl_parse_args(cmd, entries, &argc, &argv, error) ||
            !vrotctl_require(cmd, "--ca-cert", a.ca_cert, error) ||
            !vrotctl_require(cmd, "--ca-key", a.ca_key, error) ||
            !vrotctl_require(cmd, "--tpm-vendor-ca", a.vendor_ca, error) ||
            !load_issuer(&a, &is, error) || !(c = vrotctl_connect(ctx, error)))
                return FALSE;
        p.client = c;
        ok = vrot_tpmevidence_challenge(&vrotctl_prover, &p, is.vendor, NULL, &v, error) &&
             (cert = issue(&is, &p, v, error)) && import(c, cert, &is, &res, error);
        vrotctl_prover_clear(&p);
        if (!ok) {
                g_prefix_error(error, "host-enrol: %s", cert ? "" : "nothing signed: ");
                return FALSE;
        }
        if (ctx->json)
                vrotctl_print_json(res);
        else
                print_enrolled(cert);
        return TRUE;
}

const VrotctlCommand vrotctl_cmd_host_enrol = {
        .name = "host-enrol",
        .args = "--ca-cert FILE --ca-key FILE --tpm-vendor-ca FILE [--chain FILE]",
        .summary = "check the host's evidence, issue its host CA certificate, import it",
        .run = run,
};
