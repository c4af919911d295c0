/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Per-instance state keys: HKDF-SHA256 from the master key (instkey.h).
 *
 * HKDF (RFC 5869) rather than a bare HMAC: extract-then-expand is the
 * standard construction for deriving many keys from one, and the salt
 * stays useful even if the master key were ever weak.  The derived key is
 * written straight into a locked VrotSecret by EVP_KDF_derive(); OpenSSL's
 * own copy of the master key inside the KDF context is wiped when the
 * context is freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "instkey.h"
#include "kdf.h"

G_DEFINE_QUARK(vrot-instkey-error-quark, vrot_instkey_error)


/* The one place an OpenSSL error becomes a GError; clears the queue. */
static void set_ossl_error(GError **error, const char *what)
{
        unsigned long e = ERR_peek_error();
        char reason[256] = "unknown error";

        if (e)
                ERR_error_string_n(e, reason, sizeof(reason));
        ERR_clear_error();
        g_set_error(error, VROT_INSTKEY_ERROR, VROT_INSTKEY_ERROR_FAILED, "%s: %s", what, reason);
}

gboolean vrot_instkey_new_salt(guint8 ret_salt[VROT_INSTKEY_SALT_LEN], GError **error)
{
        guint8 salt[VROT_INSTKEY_SALT_LEN];

        if (RAND_bytes(salt, sizeof(salt)) != 1) {
                set_ossl_error(error, "drawing an instance salt");
                return FALSE;
        }
        memcpy(ret_salt, salt, sizeof(salt));
        return TRUE;
}

/* HKDF-SHA256(@master, @salt, @label || @uuid) into a new locked secret. */
static gboolean derive(const VrotSecret *master, const guint8 *salt, gsize salt_len,
                       const char *label, const guint8 uuid[16], VrotSecret **ret_key,
                       GError **error)
{
        g_autoptr(VrotSecret) key = NULL;
        gsize label_len = strlen(label);
        guint8 info[64];
        VrotError verr = { 0 };

        g_return_val_if_fail(label_len + 16 <= sizeof(info), FALSE);
        if (vrot_secret_len(master) != 32) {
                g_set_error(error, VROT_INSTKEY_ERROR, VROT_INSTKEY_ERROR_INVALID,
                            "the state master key must be 32 bytes, not %zu",
                            vrot_secret_len(master));
                return FALSE;
        }
        key = vrot_secret_new(VROT_INSTKEY_LEN, &verr);
        if (!key) {
                g_set_error(error, VROT_INSTKEY_ERROR, VROT_INSTKEY_ERROR_FAILED, "%s", verr.msg);
                return FALSE;
        }
        memcpy(info, label, label_len);
        memcpy(info + label_len, uuid, 16);
        if (!vrot_kdf_hkdf_sha256(vrot_secret_data(master), vrot_secret_len(master), salt,
                                      salt_len, info, label_len + 16, vrot_secret_data(key),
                                      VROT_INSTKEY_LEN, error))
                return FALSE;
        *ret_key = g_steal_pointer(&key);
        return TRUE;
}

gboolean vrot_instkey_derive(const VrotSecret *master,
                             const guint8 salt[VROT_INSTKEY_SALT_LEN],
                             const guint8 uuid[16], VrotSecret **ret_key, GError **error)
{
        g_return_val_if_fail(master && salt && uuid && ret_key, FALSE);
        return derive(master, salt, VROT_INSTKEY_SALT_LEN, VROT_INSTKEY_INFO, uuid, ret_key,
                      error);
}

gboolean vrot_instkey_derive_pool(const VrotSecret *master, const guint8 entry_id[16],
                                  VrotSecret **ret_key, GError **error)
{
        g_return_val_if_fail(master && entry_id && ret_key, FALSE);
        return derive(master, NULL, 0, VROT_INSTKEY_POOL_INFO, entry_id, ret_key, error);
}

int vrot_instkey_pipe(const VrotSecret *key, GError **error)
{
        const guint8 *p = vrot_secret_data(key);
        size_t left = vrot_secret_len(key);
        int fds[2];

        g_return_val_if_fail(key != NULL, -1);
        /* A key is far below PIPE_BUF, so the write neither blocks nor splits. */
        g_return_val_if_fail(left <= PIPE_BUF, -1);
        if (pipe2(fds, O_CLOEXEC) < 0) {
                int e = errno;
                g_set_error(error, VROT_INSTKEY_ERROR, VROT_INSTKEY_ERROR_FAILED,
                            "cannot create a key pipe: %s", g_strerror(e));
                return -1;
        }
        while (left > 0) {
                ssize_t n = write(fds[1], p, left);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        int e = n < 0 ? errno : EIO;
                        close(fds[0]);
                        close(fds[1]);
                        g_set_error(error, VROT_INSTKEY_ERROR, VROT_INSTKEY_ERROR_FAILED,
                                    "cannot write the key pipe: %s", g_strerror(e));
                        return -1;
                }
                p += n;
                left -= (size_t)n;
        }
        close(fds[1]);
        return fds[0];
}
