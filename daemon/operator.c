/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "durable.h"
#include "operator.h"
#include "sealkey.h"
#include "x509.h"

G_DEFINE_QUARK(vrot-operator-error-quark, vrot_operator_error)

/* A PEM key or certificate file is small; anything larger is not one. */
#define MAX_FILE (256 * 1024)

typedef enum { KEY_EC_P256, KEY_RSA } KeyType;

void vrot_operator_free(VrotOperator *op)
{
        if (!op)
                return;
        EVP_PKEY_free(op->policy_key);
        EVP_PKEY_free(op->recovery_key);
        X509_free(op->fleet_root);
        EVP_PKEY_free(op->fleet_root_key);
        g_free(op);
}

/* The text of @path, for a message naming configuration key @name. */
static gchar *read_config_file(const gchar *name, const gchar *path, gsize *ret_len,
                               GError **error)
{
        g_autoptr(GError) local = NULL;
        gchar *text = NULL;

        if (!g_file_get_contents(path, &text, ret_len, &local)) {
                g_set_error(error, VROT_OPERATOR_ERROR, VROT_OPERATOR_ERROR_INVALID,
                            "[operator] %s: %s", name, local->message);
                return NULL;
        }
        if (*ret_len > MAX_FILE) {
                g_free(text);
                g_set_error(error, VROT_OPERATOR_ERROR, VROT_OPERATOR_ERROR_INVALID,
                            "[operator] %s: %s is larger than %d bytes", name, path, MAX_FILE);
                return NULL;
        }
        return text;
}

static gboolean right_type(EVP_PKEY *key, KeyType type)
{
        char group[64] = "";

        if (type == KEY_RSA)
                return EVP_PKEY_is_a(key, "RSA") && EVP_PKEY_get_bits(key) >= 2048;
        return EVP_PKEY_is_a(key, "EC") &&
               EVP_PKEY_get_group_name(key, group, sizeof(group), NULL) &&
               (g_str_equal(group, "prime256v1") || g_str_equal(group, "P-256"));
}

/*
 * A public key of @type from the file configured as [operator] @name.
 * A private key is refused: the operator's private keys sign PCR
 * authorisations and unwrap recovery copies, so they never belong on the
 * host they protect.
 */
static EVP_PKEY *load_public_key(const gchar *name, const gchar *path, KeyType type,
                                 GError **error)
{
        static const char *const wanted[] = { "an ECC P-256", "an RSA (2048 bits or more)" };
        g_autoptr(BIO) bio = NULL;
        g_autofree gchar *text = NULL;
        EVP_PKEY *key = NULL;
        gsize len = 0;

        if (!(text = read_config_file(name, path, &len, error)))
                return NULL;
        if ((bio = BIO_new_mem_buf(text, (int)len)))
                key = PEM_read_bio_PUBKEY(bio, NULL, vrot_x509_no_passphrase, NULL);
        ERR_clear_error();
        if (!key && strstr(text, "PRIVATE KEY"))
                g_set_error(error, VROT_OPERATOR_ERROR, VROT_OPERATOR_ERROR_INVALID,
                            "[operator] %s: %s holds a private key; only the public key belongs "
                            "on the host (openssl pkey -in KEY -pubout)", name, path);
        else if (!key)
                g_set_error(error, VROT_OPERATOR_ERROR, VROT_OPERATOR_ERROR_INVALID,
                            "[operator] %s: %s is not a PEM public key", name, path);
        OPENSSL_cleanse(text, len);
        if (key && !right_type(key, type)) {
                g_set_error(error, VROT_OPERATOR_ERROR, VROT_OPERATOR_ERROR_INVALID,
                            "[operator] %s: %s is a %s-%d key, not %s public key", name, path,
                            EVP_PKEY_get0_type_name(key), EVP_PKEY_get_bits(key), wanted[type]);
                g_clear_pointer(&key, EVP_PKEY_free);
        }
        return key;
}

static X509 *load_fleet_root(const gchar *path, GError **error)
{
        g_autoptr(GError) local = NULL;
        g_autofree gchar *text = NULL;
        g_autoptr(X509) cert = NULL;
        gsize len = 0;

        if (!(text = read_config_file("fleet-root", path, &len, error)))
                return NULL;
        if (!(cert = vrot_x509_from_pem(text, len, &local))) {
                g_set_error(error, VROT_OPERATOR_ERROR, VROT_OPERATOR_ERROR_INVALID,
                            "[operator] fleet-root: %s: %s", path, local->message);
                return NULL;
        }
        if (!(X509_get_extension_flags(cert) & EXFLAG_CA)) {
                g_set_error(error, VROT_OPERATOR_ERROR, VROT_OPERATOR_ERROR_INVALID,
                            "[operator] fleet-root: %s is not a CA certificate (no "
                            "basicConstraints cA)", path);
                return NULL;
        }
        return g_steal_pointer(&cert);
}

static gboolean is_set(const gchar *name, const gchar *value, const gchar *what, GError **error)
{
        if (value)
                return TRUE;
        g_set_error(error, VROT_OPERATOR_ERROR, VROT_OPERATOR_ERROR_MISSING,
                    "[operator] %s is not set in the configuration: %s (vrotd.conf(5))", name,
                    what);
        return FALSE;
}

VrotOperator *vrot_operator_load(const VrotConfig *cfg, gboolean need_recovery, GError **error)
{
        g_autoptr(VrotOperator) op = g_new0(VrotOperator, 1);

        g_return_val_if_fail(cfg != NULL, NULL);
        if (!is_set("policy-key", cfg->policy_key, "the operator's ECC P-256 public key that "
                    "signs PCR authorisations of the state master key", error) ||
            !(op->policy_key = load_public_key("policy-key", cfg->policy_key, KEY_EC_P256, error)))
                return NULL;
        if (need_recovery && !is_set("recovery-key", cfg->recovery_key, "the operator's RSA "
                                     "public key, needed at first start to wrap the master "
                                     "key's recovery copy", error))
                return NULL;
        if (cfg->recovery_key &&
            !(op->recovery_key = load_public_key("recovery-key", cfg->recovery_key, KEY_RSA,
                                                 error)))
                return NULL;
        if (!is_set("fleet-root", cfg->fleet_root, "the fleet root CA certificate that the host "
                    "CA certificate must chain to", error) ||
            !(op->fleet_root = load_fleet_root(cfg->fleet_root, error)))
                return NULL;
        return g_steal_pointer(&op);
}

/* ---- --dev ---------------------------------------------------------------------- */

/* Loads the PEM key pair at @path, or makes and saves one. */
static EVP_PKEY *dev_key(const gchar *path, gboolean rsa, GError **error)
{
        g_autoptr(EVP_PKEY) key = NULL;

        if (g_file_test(path, G_FILE_TEST_EXISTS))
                return vrot_sealkey_key_load(path, error);
        key = rsa ? EVP_RSA_gen(3072) : vrot_sealkey_key_generate(error);
        if (!key) {
                if (error && !*error)
                        g_set_error(error, VROT_OPERATOR_ERROR, VROT_OPERATOR_ERROR_FAILED,
                                    "cannot generate %s", path);
                return NULL;
        }
        if (!vrot_sealkey_key_save(key, path, TRUE, error))
                return NULL;
        return g_steal_pointer(&key);
}

/* The local fleet root certificate: loaded, or made and saved. */
static X509 *dev_root(const gchar *path, EVP_PKEY *key, GError **error)
{
        static const VrotX509CaParams params = {
                .common_name = "vrot dev fleet root", .organization = "vrot --dev",
        };
        g_autofree gchar *pem = NULL;
        g_autoptr(X509) cert = NULL;
        VrotError verr = { 0 };
        gsize len = 0;

        if (g_file_test(path, G_FILE_TEST_EXISTS)) {
                if (!g_file_get_contents(path, &pem, &len, error))
                        return NULL;
                return vrot_x509_from_pem(pem, len, error);
        }
        if (!(cert = vrot_x509_root_cert(key, &params, error)) ||
            !(pem = vrot_x509_to_pem(cert, error)))
                return NULL;
        if (vrot_durable_write_path(path, pem, strlen(pem), 0644, &verr) < 0) {
                g_set_error(error, VROT_OPERATOR_ERROR, VROT_OPERATOR_ERROR_FAILED, "%s",
                            verr.msg);
                return NULL;
        }
        return g_steal_pointer(&cert);
}

VrotOperator *vrot_operator_dev(const gchar *host_dir, GError **error)
{
        g_autoptr(VrotOperator) op = g_new0(VrotOperator, 1);
        g_autofree gchar *policy = g_build_filename(host_dir, "operator-policy.pem", NULL);
        g_autofree gchar *recovery = g_build_filename(host_dir, "operator-recovery.pem", NULL);
        g_autofree gchar *root_key = g_build_filename(host_dir, "fleet-root.key", NULL);
        g_autofree gchar *root = g_build_filename(host_dir, "fleet-root.pem", NULL);

        if (!(op->policy_key = dev_key(policy, FALSE, error)) ||
            !(op->recovery_key = dev_key(recovery, TRUE, error)) ||
            !(op->fleet_root_key = dev_key(root_key, FALSE, error)) ||
            !(op->fleet_root = dev_root(root, op->fleet_root_key, error)))
                return NULL;
        return g_steal_pointer(&op);
}
