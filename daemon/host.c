/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "devtpm.h"
#include "host.h"
#include "instkey-priv.h"
#include "registry.h"
#include "sealkey.h"

G_DEFINE_QUARK(vrot-host-error-quark, vrot_host_error)

#define REGISTRY_KEY_INFO "vrot registry key v1"

struct VrotHost {
        gchar *host_dir;                /* <state>/host */
        gchar *tcti;
        gboolean first_start;           /* the master key was made this start */
        VrotDevTpm *dev;
        VrotHostTpm *tpm;
        VrotSecret *master;
        VrotSecret *registry_key;
        X509 *root_cert, *ca_cert;
        VrotX509Signer *ca_signer;
};

void vrot_host_free(VrotHost *h)
{
        if (!h)
                return;
        vrot_x509_signer_free(h->ca_signer);
        X509_free(h->root_cert);
        X509_free(h->ca_cert);
        vrot_secret_free(h->registry_key);
        vrot_secret_free(h->master);
        vrot_host_tpm_free(h->tpm);
        vrot_dev_tpm_free(h->dev);
        g_free(h->host_dir);
        g_free(h->tcti);
        g_free(h);
}

/* Loads the PEM key at @path, or makes and saves one (--dev operator keys). */
static EVP_PKEY *dev_key(const gchar *path, gboolean rsa, GError **error)
{
        g_autoptr(EVP_PKEY) key = NULL;

        if (g_file_test(path, G_FILE_TEST_EXISTS))
                return vrot_sealkey_key_load(path, error);
        key = rsa ? EVP_RSA_gen(3072) : vrot_sealkey_key_generate(error);
        if (!key) {
                if (error && !*error)
                        g_set_error(error, VROT_HOST_ERROR, VROT_HOST_ERROR_FAILED,
                                    "cannot generate %s", path);
                return NULL;
        }
        if (!vrot_sealkey_key_save(key, path, TRUE, error))
                return NULL;
        return g_steal_pointer(&key);
}

/* The master key: unsealed, or (first start) created and sealed. */
static gboolean open_master(VrotHost *h, const VrotConfig *cfg, GError **error)
{
        g_autofree gchar *dir = g_build_filename(h->host_dir, "sealing", NULL);
        g_autofree gchar *sealed = g_build_filename(dir, "master.sealed", NULL);
        g_autofree gchar *policy_path = g_build_filename(h->host_dir, "operator-policy.pem", NULL);
        g_autofree gchar *recovery_path = g_build_filename(h->host_dir, "operator-recovery.pem", NULL);
        g_autoptr(EVP_PKEY) policy = NULL, recovery = NULL;
        VrotSealkeyPcrs pcrs = { .bank = TPM2_ALG_SHA256, .mask = cfg->seal_pcrs };

        if (!cfg->dev) {
                g_set_error(error, VROT_HOST_ERROR, VROT_HOST_ERROR_UNSUPPORTED,
                            "operator keys for a real host TPM are not configurable yet: run with --dev");
                return FALSE;
        }
        if (g_mkdir_with_parents(dir, 0700) < 0) {
                g_set_error(error, VROT_HOST_ERROR, VROT_HOST_ERROR_FAILED, "%s: %s", dir, g_strerror(errno));
                return FALSE;
        }
        if (!(policy = dev_key(policy_path, FALSE, error)) || !(recovery = dev_key(recovery_path, TRUE, error)))
                return FALSE;
        h->first_start = !g_file_test(sealed, G_FILE_TEST_EXISTS);
        if (!h->first_start)
                return vrot_sealkey_open(vrot_host_tpm_esys(h->tpm), vrot_host_tpm_srk(h->tpm), dir,
                                         policy, &h->master, error);
        return vrot_sealkey_provision(vrot_host_tpm_esys(h->tpm), vrot_host_tpm_srk(h->tpm), dir, &pcrs,
                                      policy, recovery, &h->master, error);
}

static gboolean derive_registry_key(VrotHost *h, GError **error)
{
        h->registry_key = vrot_secret_new(VROT_REGISTRY_KEY_LEN, NULL);
        if (!h->registry_key) {
                g_set_error(error, VROT_HOST_ERROR, VROT_HOST_ERROR_FAILED, "cannot lock memory for a key");
                return FALSE;
        }
        return vrot_instkey_hkdf_sha256(vrot_secret_data(h->master), vrot_secret_len(h->master), NULL, 0,
                                        (const guint8 *)REGISTRY_KEY_INFO, strlen(REGISTRY_KEY_INFO),
                                        vrot_secret_data(h->registry_key), VROT_REGISTRY_KEY_LEN,
                                        error);
}

static X509 *load_cert(const gchar *path, GError **error)
{
        g_autofree gchar *pem = NULL;
        gsize len = 0;

        if (!g_file_get_contents(path, &pem, &len, error))
                return NULL;
        return vrot_x509_from_pem(pem, len, error);
}

static gboolean save_cert(X509 *cert, const gchar *path, GError **error)
{
        g_autofree gchar *pem = vrot_x509_to_pem(cert, error);

        return pem && g_file_set_contents_full(path, pem, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644, error);
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

/*
 * --dev: a local fleet root (software key in the state directory) issues the
 * host CA certificate for the CA key that lives in the (simulated) host TPM.
 * The production path - a CSR with TPM2_Certify evidence, signed by the
 * operator's CA - is issue 4's remaining work.
 */
static gboolean open_certs(VrotHost *h, const VrotConfig *cfg, GError **error)
{
        g_autofree gchar *root_key_path = g_build_filename(h->host_dir, "fleet-root.key", NULL);
        g_autofree gchar *root_path = g_build_filename(h->host_dir, "fleet-root.pem", NULL);
        g_autofree gchar *ca_path = g_build_filename(h->host_dir, "host-ca.pem", NULL);
        g_autoptr(EVP_PKEY) root_key = NULL, ca_pub = NULL;
        g_autoptr(VrotX509Signer) root_signer = NULL;
        VrotX509CaParams root_params = { .common_name = "vrot dev fleet root", .organization = "vrot --dev" };
        VrotX509CaParams ca_params = { .common_name = "vrot host endorsement CA", .organization = "vrot --dev" };

        if (!cfg->dev) {
                g_set_error(error, VROT_HOST_ERROR, VROT_HOST_ERROR_UNSUPPORTED,
                            "host CA enrolment with an operator CA is not written yet: run with --dev");
                return FALSE;
        }
        if (!(root_key = dev_key(root_key_path, FALSE, error)))
                return FALSE;
        h->root_cert = g_file_test(root_path, G_FILE_TEST_EXISTS) ? load_cert(root_path, error)
                                                                 : vrot_x509_root_cert(root_key, &root_params, error);
        if (!h->root_cert || !save_cert(h->root_cert, root_path, error))
                return FALSE;
        if (g_file_test(ca_path, G_FILE_TEST_EXISTS)) {
                h->ca_cert = load_cert(ca_path, error);
        } else {
                root_signer = vrot_x509_signer_new_software(h->root_cert, root_key, error);
                ca_pub = root_signer ? vrot_host_tpm_ca_public_key(h->tpm, error) : NULL;
                h->ca_cert = ca_pub ? vrot_x509_ca_cert(root_signer, ca_pub, &ca_params, error) : NULL;
                if (h->ca_cert && !save_cert(h->ca_cert, ca_path, error))
                        return FALSE;
        }
        if (!h->ca_cert)
                return FALSE;
        h->ca_signer = vrot_x509_signer_new(h->ca_cert, sign_in_host_tpm, h->tpm, NULL, error);
        return h->ca_signer != NULL;
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
        if (cfg->dev) {
                g_autofree gchar *dir = g_build_filename(cfg->state_dir, "dev-host-tpm", NULL);
                if (!(h->dev = vrot_dev_tpm_start(dir, error))) {
                        g_prefix_error(error, "starting the simulated host TPM: ");
                        return NULL;
                }
                tcti = vrot_dev_tpm_tcti(h->dev);
        }
        h->tcti = g_strdup(tcti);
        if (!(h->tpm = vrot_host_tpm_open(tcti, error)) || !vrot_host_tpm_provision(h->tpm, NULL, error)) {
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

X509 *vrot_host_root_cert(const VrotHost *h)
{
        return h->root_cert;
}

X509 *vrot_host_ca_cert(const VrotHost *h)
{
        return h->ca_cert;
}
