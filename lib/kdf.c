/* SPDX-License-Identifier: BSD-3-Clause */
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>

#include "autoptr.h"
#include "kdf.h"

G_DEFINE_QUARK(vrot-kdf-error-quark, vrot_kdf_error)

gboolean vrot_kdf_hkdf_sha256(const guint8 *ikm, gsize ikm_len, const guint8 *salt, gsize salt_len,
                              const guint8 *info, gsize info_len, guint8 *out, gsize out_len,
                              GError **error)
{
        g_autoptr(EVP_KDF) kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        g_autoptr(EVP_KDF_CTX) ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
        OSSL_PARAM params[5];
        size_t n = 0;

        g_return_val_if_fail(ikm && out && out_len > 0, FALSE);
        params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
        if (salt_len)
                params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt,
                                                                salt_len);
        if (info_len)
                params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info,
                                                                info_len);
        params[n] = OSSL_PARAM_construct_end();
        if (!ctx || EVP_KDF_derive(ctx, out, out_len, params) != 1) {
                unsigned long e = ERR_peek_error();
                char reason[256] = "unknown error";

                if (e)
                        ERR_error_string_n(e, reason, sizeof(reason));
                ERR_clear_error();
                g_set_error(error, VROT_KDF_ERROR, VROT_KDF_ERROR_FAILED, "HKDF-SHA256: %s", reason);
                return FALSE;
        }
        return TRUE;
}
