/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "devtpm.h"
#include "durable.h"
#include "host.h"
#include "hostca.h"
#include "instkey.h"
#include "kdf.h"
#include "operator.h"
#include "registry.h"
#include "sealkey.h"

G_DEFINE_QUARK(vrot-host-error-quark, vrot_host_error)

#define REGISTRY_KEY_INFO "vrot registry key v1"
#define HOST_CA_FILE "host-ca.pem"
#define TRANSPORT_FILE "transport.pem"
#define TRANSPORT_DAYS 365
/* A transport certificate this close to its end is made anew at start. */
#define TRANSPORT_RENEW_DAYS 30

struct VrotHost {
        gchar *host_dir;                /* <state>/host */
        gchar *tcti;
        gboolean first_start;           /* the master key was made this start */
        VrotDevTpm *dev;
        VrotHostTpm *tpm;
        VrotOperator *op;
        VrotSecret *master;
        VrotSecret *registry_key;
        VrotHostca *ca;                 /* NULL: not enrolled */
        VrotX509Signer *ca_signer;      /* NULL: not enrolled */
        GPtrArray *retired;             /* signers an import replaced, kept for callers */
        X509 *transport;                /* the migration transport certificate, or NULL */
};

void vrot_host_free(VrotHost *h)
{
        if (!h)
                return;
        X509_free(h->transport);
        vrot_x509_signer_free(h->ca_signer);
        g_clear_pointer(&h->retired, g_ptr_array_unref);
        vrot_hostca_free(h->ca);
        vrot_secret_free(h->registry_key);
        vrot_secret_free(h->master);
        vrot_operator_free(h->op);
        vrot_host_tpm_free(h->tpm);
        vrot_dev_tpm_free(h->dev);
        g_free(h->host_dir);
        g_free(h->tcti);
        g_free(h);
}

static gchar *sealing_dir(const VrotHost *h)
{
        return g_build_filename(h->host_dir, "sealing", NULL);
}

/*
 * The operator's keys and fleet root: from the configuration, or made
 * locally with --dev.  Read before the host TPM is touched, so that a
 * configuration error costs nothing.
 */
static gboolean open_operator(VrotHost *h, const VrotConfig *cfg, GError **error)
{
        g_autofree gchar *dir = sealing_dir(h);
        g_autofree gchar *sealed = g_build_filename(dir, VROT_SEALKEY_SEALED_FILE, NULL);

        h->first_start = !g_file_test(sealed, G_FILE_TEST_EXISTS);
        h->op = cfg->dev ? vrot_operator_dev(h->host_dir, error)
                         : vrot_operator_load(cfg, h->first_start, error);
        return h->op != NULL;
}

/* The master key: unsealed, or (first start) created and sealed. */
static gboolean open_master(VrotHost *h, const VrotConfig *cfg, GError **error)
{
        g_autofree gchar *dir = sealing_dir(h);
        VrotSealkeyPcrs pcrs = { .bank = TPM2_ALG_SHA256, .mask = cfg->seal_pcrs };

        if (g_mkdir_with_parents(dir, 0700) < 0) {
                g_set_error(error, VROT_HOST_ERROR, VROT_HOST_ERROR_FAILED, "%s: %s", dir,
                            g_strerror(errno));
                return FALSE;
        }
        if (!h->first_start)
                return vrot_sealkey_open(vrot_host_tpm_esys(h->tpm), vrot_host_tpm_srk(h->tpm), dir,
                                         h->op->policy_key, &h->master, error);
        return vrot_sealkey_provision(vrot_host_tpm_esys(h->tpm), vrot_host_tpm_srk(h->tpm), dir,
                                      &pcrs, h->op->policy_key, h->op->recovery_key, &h->master,
                                      error);
}

static gboolean derive_registry_key(VrotHost *h, GError **error)
{
        h->registry_key = vrot_secret_new(VROT_REGISTRY_KEY_LEN, NULL);
        if (!h->registry_key) {
                g_set_error(error, VROT_HOST_ERROR, VROT_HOST_ERROR_FAILED, "cannot lock memory for a key");
                return FALSE;
        }
        return vrot_kdf_hkdf_sha256(vrot_secret_data(h->master), vrot_secret_len(h->master), NULL, 0,
                                        (const guint8 *)REGISTRY_KEY_INFO, strlen(REGISTRY_KEY_INFO),
                                        vrot_secret_data(h->registry_key), VROT_REGISTRY_KEY_LEN,
                                        error);
}

static gboolean sign_in_host_tpm(const guint8 *digest, gsize len, GBytes **ret_sig, gpointer data,
                                 GError **error)
{
        if (len != 32) {
                g_set_error(error, VROT_HOST_ERROR, VROT_HOST_ERROR_FAILED, "the host CA signs SHA-256 only");
                return FALSE;
        }
        return vrot_host_tpm_sign_digest(data, digest, ret_sig, error);
}

/* The signer of @ca's certificate, whose key signs in the host TPM. */
static VrotX509Signer *signer_for(VrotHost *h, const VrotHostca *ca, GError **error)
{
        return vrot_x509_signer_new(ca->cert, sign_in_host_tpm, h->tpm, NULL, error);
}

/* Puts @ca and its @signer (both transfer full) in force. */
static void enrol(VrotHost *h, VrotHostca *ca, VrotX509Signer *signer)
{
        /* A caller may still hold the old signer (transfer none): kept till the end. */
        if (h->ca_signer)
                g_ptr_array_add(h->retired, h->ca_signer);
        h->ca_signer = signer;
        vrot_hostca_free(h->ca);
        h->ca = ca;
}

static VrotHostca *load_certs(const gchar *path, X509 *root, EVP_PKEY *ca_key, GError **error)
{
        g_autoptr(GError) local = NULL;
        VrotHostca *ca = vrot_hostca_load(path, root, ca_key, &local);

        if (!ca)
                g_set_error(error, local->domain, local->code, "%s: %s; if the host TPM or the "
                            "fleet root changed, remove it and enrol the host again", path,
                            local->message);
        return ca;
}

/*
 * The host CA certificate in STATE/host/host-ca.pem, checked again at
 * every start.  Without one: --dev has its local fleet root issue it
 * after checking the evidence; in production the host stays not enrolled
 * until an operator's CA imports one (host.import_ca_cert).
 */
static gboolean open_certs(VrotHost *h, const VrotConfig *cfg, GError **error)
{
        g_autofree gchar *path = g_build_filename(h->host_dir, HOST_CA_FILE, NULL);
        g_autoptr(EVP_PKEY) ca_key = vrot_host_tpm_ca_public_key(h->tpm, error);
        g_autoptr(VrotHostca) ca = NULL;
        g_autoptr(X509) issued = NULL;
        VrotX509Signer *signer;

        if (!ca_key)
                return FALSE;
        if (g_file_test(path, G_FILE_TEST_EXISTS)) {
                ca = load_certs(path, h->op->fleet_root, ca_key, error);
        } else if (cfg->dev) {
                issued = vrot_hostca_dev_issue(h->tpm, h->dev, h->op->fleet_root,
                                               h->op->fleet_root_key, error);
                ca = issued ? vrot_hostca_check(issued, NULL, h->op->fleet_root, ca_key, error)
                            : NULL;
                if (ca && !vrot_hostca_save(ca, path, error))
                        return FALSE;
        } else {
                return TRUE;
        }
        if (!ca || !(signer = signer_for(h, ca, error)))
                return FALSE;
        enrol(h, g_steal_pointer(&ca), signer);
        return TRUE;
}

VrotHost *vrot_host_open(const VrotConfig *cfg, GError **error)
{
        g_autoptr(VrotHost) h = g_new0(VrotHost, 1);
        const gchar *tcti = cfg->tcti;

        h->host_dir = g_build_filename(cfg->state_dir, "host", NULL);
        if (g_mkdir_with_parents(h->host_dir, 0700) < 0) {
                g_set_error(error, VROT_HOST_ERROR, VROT_HOST_ERROR_FAILED, "%s: %s", h->host_dir,
                            g_strerror(errno));
                return NULL;
        }
        h->retired = g_ptr_array_new_with_free_func((GDestroyNotify)vrot_x509_signer_free);
        if (!open_operator(h, cfg, error))
                return NULL;
        if (cfg->dev) {
                g_autofree gchar *dir = g_build_filename(cfg->state_dir, "dev-host-tpm", NULL);
                if (!(h->dev = vrot_dev_tpm_start(dir, error))) {
                        g_prefix_error(error, "starting the simulated host TPM: ");
                        return NULL;
                }
                tcti = vrot_dev_tpm_tcti(h->dev);
        }
        h->tcti = g_strdup(tcti);
        if (!(h->tpm = vrot_host_tpm_open(tcti, error)) ||
            !vrot_host_tpm_provision(h->tpm, NULL, error)) {
                g_prefix_error(error, "host TPM (%s): ", tcti);
                return NULL;
        }
        if (!open_master(h, cfg, error) || !derive_registry_key(h, error)) {
                g_prefix_error(error, "state master key: ");
                return NULL;
        }
        if (!open_certs(h, cfg, error)) {
                g_prefix_error(error, "host CA: ");
                return NULL;
        }
        return g_steal_pointer(&h);
}

VrotHostTpm *vrot_host_tpm(VrotHost *h)
{
        return h->tpm;
}

const gchar *vrot_host_tcti(const VrotHost *h)
{
        return h->tcti;
}

gboolean vrot_host_first_start(const VrotHost *h)
{
        return h->first_start;
}

const VrotSecret *vrot_host_master(const VrotHost *h)
{
        return h->master;
}

const guint8 *vrot_host_registry_key(const VrotHost *h)
{
        return vrot_secret_data(h->registry_key);
}

const VrotX509Signer *vrot_host_ca_signer(const VrotHost *h)
{
        return h->ca_signer;
}

gboolean vrot_host_enrolled(const VrotHost *h)
{
        return h->ca != NULL;
}

X509 *vrot_host_root_cert(const VrotHost *h)
{
        return h->op->fleet_root;
}

X509 *vrot_host_ca_cert(const VrotHost *h)
{
        return h->ca ? h->ca->cert : NULL;
}

STACK_OF(X509) *vrot_host_ca_path(const VrotHost *h)
{
        return h->ca ? h->ca->path : NULL;
}

/* "vrot host CA <hostname>", within the 64 characters of a CN. */
static gchar *csr_common_name(void)
{
        const gchar *host = g_get_host_name();
        g_autofree gchar *name = g_strdup_printf("vrot host CA %.48s", host ? host : "");

        for (gchar *p = name; *p; p++)
                if (!g_ascii_isprint(*p))
                        *p = '?';
        return g_steal_pointer(&name);
}

gboolean vrot_host_evidence(VrotHost *h, GBytes *nonce, VrotTpmevidence **ret_evidence,
                            X509_REQ **ret_csr, GError **error)
{
        g_autofree gchar *cn = csr_common_name();
        VrotX509CaParams subject = { .common_name = cn, .organization = "vrot" };
        g_autoptr(VrotTpmevidence) ev = NULL;
        g_autoptr(EVP_PKEY) key = NULL;
        X509_REQ *csr;

        g_return_val_if_fail(nonce && ret_evidence && ret_csr, FALSE);
        if (!vrot_host_tpm_certify_ca_key(h->tpm, nonce, &ev, error) ||
            !(key = vrot_host_tpm_ca_public_key(h->tpm, error)) ||
            !(csr = vrot_x509_csr(key, &subject, sign_in_host_tpm, h->tpm, error)))
                return FALSE;
        *ret_evidence = g_steal_pointer(&ev);
        *ret_csr = csr;
        return TRUE;
}

gboolean vrot_host_import_ca_cert(VrotHost *h, const gchar *pem, gsize len,
                                  const gchar *chain_pem, gsize chain_len, GError **error)
{
        g_autofree gchar *path = g_build_filename(h->host_dir, HOST_CA_FILE, NULL);
        g_autoptr(EVP_PKEY) ca_key = vrot_host_tpm_ca_public_key(h->tpm, error);
        g_autoptr(VrotHostca) ca = NULL;
        g_autoptr(VrotX509Signer) signer = NULL;

        if (!ca_key || !(ca = vrot_hostca_import(pem, len, chain_pem, chain_len,
                                                 h->op->fleet_root, ca_key, error)))
                return FALSE;
        /* Everything that can refuse it, before anything is written. */
        if (!(signer = signer_for(h, ca, error)) || !vrot_hostca_save(ca, path, error))
                return FALSE;
        enrol(h, g_steal_pointer(&ca), g_steal_pointer(&signer));
        return TRUE;
}

/* Is @cert this host's transport certificate for @name, for @key, from the
 * host CA in force, and good for a while yet? */
static gboolean transport_current(VrotHost *h, X509 *cert, const gchar *name, EVP_PKEY *key)
{
        time_t soon = time(NULL) + (time_t)TRANSPORT_RENEW_DAYS * 86400;
        gboolean ok;

        ok = EVP_PKEY_eq(X509_get0_pubkey(cert), key) == 1 &&
             X509_check_issued(h->ca->cert, cert) == X509_V_OK &&
             X509_verify(cert, X509_get0_pubkey(h->ca->cert)) == 1 &&
             X509_check_host(cert, name, 0, 0, NULL) == 1 &&
             vrot_x509_is_migration_peer(cert) && X509_cmp_time(X509_get0_notAfter(cert), &soon) > 0;
        ERR_clear_error();
        return ok;
}

X509 *vrot_host_transport_cert(VrotHost *h, const gchar *name, GError **error)
{
        g_autofree gchar *path = g_build_filename(h->host_dir, TRANSPORT_FILE, NULL);
        g_autofree gchar *pem = NULL;
        g_autoptr(EVP_PKEY) key = NULL;
        g_autoptr(X509) cert = NULL;
        VrotError verr = { 0 };
        gsize len = 0;

        if (!vrot_host_enrolled(h)) {
                g_set_error_literal(error, VROT_HOST_ERROR, VROT_HOST_ERROR_FAILED,
                                    "the host is not enrolled: no host CA to issue the transport "
                                    "certificate");
                return NULL;
        }
        if (h->transport)
                return h->transport;
        if (!(key = vrot_host_tpm_transport_key(h->tpm, error)))
                return NULL;
        if (g_file_get_contents(path, &pem, &len, NULL) &&
            (cert = vrot_x509_from_pem(pem, len, NULL)) &&
            transport_current(h, cert, name, key)) {
                h->transport = g_steal_pointer(&cert);
                return h->transport;
        }
        g_clear_pointer(&pem, g_free);
        g_clear_pointer(&cert, X509_free);
        if (!(cert = vrot_x509_transport_cert(h->ca_signer, key, name,
                                              g_get_real_time() / G_USEC_PER_SEC +
                                              (gint64)TRANSPORT_DAYS * 86400, error)) ||
            !(pem = vrot_x509_to_pem(cert, error)))
                return NULL;
        if (vrot_durable_write_path(path, pem, strlen(pem), 0644, &verr) < 0) {
                g_set_error(error, VROT_HOST_ERROR, VROT_HOST_ERROR_FAILED, "%s", verr.msg);
                return NULL;
        }
        g_message("host: issued the migration transport certificate for %s (%s)", name, path);
        h->transport = g_steal_pointer(&cert);
        return h->transport;
}
