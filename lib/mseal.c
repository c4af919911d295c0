/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The migration envelope (mseal.h).  The header is the GCM associated data
 * in full, so every byte before the ciphertext - IDs, generation, e's point,
 * IV - is authenticated; the key additionally binds the ID, UUID and
 * generation through HKDF's info, so an envelope re-labelled for another
 * migration fails twice over.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>

#include "autoptr.h"
#include "bytes.h"
#include "kdf.h"
#include "mseal.h"
#include "seal.h"

G_DEFINE_QUARK(vrot-mseal-error-quark, vrot_mseal_error)

#define MAGIC "VROTMIG1"
#define VERSION 1
#define IV_LEN 12
#define TAG_LEN 16
/* magic, version, ID, UUID, generation, point, IV, ciphertext length */
#define HEADER_LEN (8 + 2 + VROT_MSEAL_ID_LEN + 16 + 8 + VROT_MSEAL_POINT_LEN + IV_LEN + 4)
#define INFO_LABEL "vrot migration v1"
G_STATIC_ASSERT(HEADER_LEN + TAG_LEN == VROT_MSEAL_OVERHEAD);

static gboolean fail(GError **error, gint code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static gboolean fail(GError **error, gint code, const char *fmt, ...)
{
        va_list ap;
        g_autofree gchar *msg = NULL;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error_literal(error, VROT_MSEAL_ERROR, code, msg);
        return FALSE;
}

/* The one place an OpenSSL error becomes a GError; clears the queue. */
static gboolean ossl_fail(GError **error, const char *what)
{
        unsigned long e = ERR_peek_error();
        char reason[256] = "unknown error";

        if (e)
                ERR_error_string_n(e, reason, sizeof(reason));
        ERR_clear_error();
        return fail(error, VROT_MSEAL_ERROR_FAILED, "%s: %s", what, reason);
}

/* @point is an uncompressed point on P-256 (not the point at infinity). */
static gboolean point_on_curve(const guint8 point[VROT_MSEAL_POINT_LEN])
{
        EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
        EC_POINT *p = group ? EC_POINT_new(group) : NULL;
        gboolean ok = p && point[0] == POINT_CONVERSION_UNCOMPRESSED &&
                      EC_POINT_oct2point(group, p, point, VROT_MSEAL_POINT_LEN, NULL) == 1 &&
                      !EC_POINT_is_at_infinity(group, p);

        ERR_clear_error();
        EC_POINT_free(p);
        EC_GROUP_free(group);
        return ok;
}

static void write_header(guint8 *h, const guint8 *id, const guint8 *uuid, guint64 gen,
                         const guint8 *point, const guint8 *iv, gsize ct_len)
{
        memcpy(h, MAGIC, 8);
        vrot_put_be16(h + 8, VERSION);
        memcpy(h + 10, id, VROT_MSEAL_ID_LEN);
        memcpy(h + 26, uuid, 16);
        vrot_put_be64(h + 42, gen);
        memcpy(h + 50, point, VROT_MSEAL_POINT_LEN);
        memcpy(h + 115, iv, IV_LEN);
        vrot_put_be32(h + 127, (guint32)ct_len);
}

gboolean vrot_mseal_parse(const guint8 *buf, gsize len, VrotMsealHeader *ret, GError **error)
{
        VrotMsealHeader h = { 0 };

        if (len < HEADER_LEN + TAG_LEN || memcmp(buf, MAGIC, 8) != 0)
                return fail(error, VROT_MSEAL_ERROR_PARSE, "not a vrot migration envelope");
        if (vrot_get_be16(buf + 8) != VERSION)
                return fail(error, VROT_MSEAL_ERROR_PARSE, "envelope version %u, expected %u",
                            vrot_get_be16(buf + 8), VERSION);
        memcpy(h.migration_id, buf + 10, VROT_MSEAL_ID_LEN);
        memcpy(h.uuid, buf + 26, 16);
        h.generation = vrot_get_be64(buf + 42);
        memcpy(h.point, buf + 50, VROT_MSEAL_POINT_LEN);
        h.ciphertext_len = vrot_get_be32(buf + 127);
        if (h.ciphertext_len > VROT_MSEAL_MAX_PLAIN || h.ciphertext_len + HEADER_LEN + TAG_LEN != len)
                return fail(error, VROT_MSEAL_ERROR_PARSE,
                            "envelope length mismatch: %zu bytes, the header announces %zu",
                            len, (gsize)h.ciphertext_len + HEADER_LEN + TAG_LEN);
        if (!point_on_curve(h.point))
                return fail(error, VROT_MSEAL_ERROR_PARSE, "the ephemeral key is not a P-256 point");
        *ret = h;
        return TRUE;
}

/* K = HKDF-SHA256(Z, info = label ‖ ID ‖ UUID ‖ generation). */
static gboolean derive_key(const guint8 z[VROT_MSEAL_Z_LEN], const guint8 *id, const guint8 *uuid,
                           guint64 gen, guint8 key[32], GError **error)
{
        guint8 info[sizeof(INFO_LABEL) - 1 + VROT_MSEAL_ID_LEN + 16 + 8];

        memcpy(info, INFO_LABEL, sizeof(INFO_LABEL) - 1);
        memcpy(info + sizeof(INFO_LABEL) - 1, id, VROT_MSEAL_ID_LEN);
        memcpy(info + sizeof(INFO_LABEL) - 1 + VROT_MSEAL_ID_LEN, uuid, 16);
        vrot_put_be64(info + sizeof(info) - 8, gen);
        return vrot_kdf_hkdf_sha256(z, VROT_MSEAL_Z_LEN, NULL, 0, info, sizeof(info), key, 32, error);
}

static gboolean is_p256(EVP_PKEY *key)
{
        char group[32] = "";

        return EVP_PKEY_is_a(key, "EC") &&
               EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                              NULL) == 1 &&
               g_str_equal(group, "prime256v1");
}

/* An ephemeral P-256 key, its uncompressed point, and Z with @peer. */
static EVP_PKEY *ephemeral(EVP_PKEY *peer, guint8 point[VROT_MSEAL_POINT_LEN],
                           guint8 z[VROT_MSEAL_Z_LEN], GError **error)
{
        g_autoptr(EVP_PKEY) e = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        g_autoptr(EVP_PKEY_CTX) ctx = e ? EVP_PKEY_CTX_new_from_pkey(NULL, e, NULL) : NULL;
        size_t n = 0, zlen = VROT_MSEAL_Z_LEN;

        if (!ctx || EVP_PKEY_get_octet_string_param(e, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                                    VROT_MSEAL_POINT_LEN, &n) != 1 ||
            n != VROT_MSEAL_POINT_LEN || EVP_PKEY_derive_init(ctx) != 1 ||
            EVP_PKEY_derive_set_peer(ctx, peer) != 1 || EVP_PKEY_derive(ctx, z, &zlen) != 1 ||
            zlen != VROT_MSEAL_Z_LEN) {
                ossl_fail(error, "ECDH with the import key");
                return NULL;
        }
        return g_steal_pointer(&e);
}

GBytes *vrot_mseal_seal(EVP_PKEY *import, const guint8 migration_id[VROT_MSEAL_ID_LEN],
                        const guint8 uuid[16], guint64 generation, const guint8 *plain, gsize len,
                        GError **error)
{
        g_autoptr(EVP_PKEY) e = NULL;
        guint8 point[VROT_MSEAL_POINT_LEN], z[VROT_MSEAL_Z_LEN], key[32], iv[IV_LEN];
        gsize total = HEADER_LEN + len + TAG_LEN;
        g_autofree guint8 *out = NULL;
        gboolean ok;

        if (!import || !is_p256(import)) {
                fail(error, VROT_MSEAL_ERROR_FAILED, "the import key is not an EC P-256 key");
                return NULL;
        }
        if (len > VROT_MSEAL_MAX_PLAIN) {
                fail(error, VROT_MSEAL_ERROR_FAILED, "%zu bytes of state: more than an envelope takes",
                     len);
                return NULL;
        }
        if (!(e = ephemeral(import, point, z, error)))
                return NULL;
        if (RAND_bytes(iv, IV_LEN) != 1) {
                OPENSSL_cleanse(z, sizeof(z));
                ossl_fail(error, "drawing an IV");
                return NULL;
        }
        ok = derive_key(z, migration_id, uuid, generation, key, error);
        OPENSSL_cleanse(z, sizeof(z));
        if (!ok)
                return NULL;
        out = g_malloc(total);
        write_header(out, migration_id, uuid, generation, point, iv, len);
        ok = vrot_seal_gcm(1, key, iv, out, HEADER_LEN, plain, len, out + HEADER_LEN,
                           out + HEADER_LEN + len) == 0;
        OPENSSL_cleanse(key, sizeof(key));
        if (!ok) {
                ossl_fail(error, "AES-256-GCM");
                return NULL;
        }
        return g_bytes_new_take(g_steal_pointer(&out), total);
}

/* A plaintext buffer that is wiped before it is freed. */
static void wipe_free(gpointer p)
{
        GByteArray *a = p;

        OPENSSL_cleanse(a->data, a->len);
        g_byte_array_free(a, TRUE);
}

static GBytes *wiped_bytes(GByteArray *a)
{
        return g_bytes_new_with_free_func(a->data, a->len, wipe_free, a);
}

GBytes *vrot_mseal_open(const guint8 *buf, gsize len, const guint8 migration_id[VROT_MSEAL_ID_LEN],
                        const guint8 uuid[16], guint64 generation, VrotMsealZFunc zgen,
                        gpointer user_data, GError **error)
{
        VrotMsealHeader h;
        guint8 z[VROT_MSEAL_Z_LEN], key[32], tag[TAG_LEN];
        GByteArray *plain;
        gboolean ok;

        if (!vrot_mseal_parse(buf, len, &h, error))
                return NULL;
        if (memcmp(h.migration_id, migration_id, VROT_MSEAL_ID_LEN) != 0 ||
            memcmp(h.uuid, uuid, 16) != 0 || h.generation != generation) {
                fail(error, VROT_MSEAL_ERROR_MISMATCH,
                     "the envelope belongs to another migration, instance or generation");
                return NULL;
        }
        if (!zgen(h.point, z, user_data, error))
                return NULL;
        ok = derive_key(z, migration_id, uuid, generation, key, error);
        OPENSSL_cleanse(z, sizeof(z));
        if (!ok)
                return NULL;
        plain = g_byte_array_sized_new((guint)MAX(h.ciphertext_len, 1));
        g_byte_array_set_size(plain, (guint)h.ciphertext_len);
        memcpy(tag, buf + HEADER_LEN + h.ciphertext_len, TAG_LEN);
        ok = vrot_seal_gcm(0, key, buf + 115, buf, HEADER_LEN, buf + HEADER_LEN, h.ciphertext_len,
                           plain->data, tag) == 0;
        OPENSSL_cleanse(key, sizeof(key));
        if (!ok) {
                wipe_free(plain);
                ERR_clear_error();
                fail(error, VROT_MSEAL_ERROR_TAMPERED, "the envelope does not authenticate");
                return NULL;
        }
        return wiped_bytes(plain);
}

gboolean vrot_mseal_zgen_software(const guint8 point[VROT_MSEAL_POINT_LEN],
                                  guint8 z[VROT_MSEAL_Z_LEN], gpointer user_data, GError **error)
{
        EVP_PKEY *priv = user_data;
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
                OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)point,
                                                  VROT_MSEAL_POINT_LEN),
                OSSL_PARAM_construct_end(),
        };
        g_autoptr(EVP_PKEY_CTX) fctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        g_autoptr(EVP_PKEY) peer = NULL;
        g_autoptr(EVP_PKEY_CTX) ctx = EVP_PKEY_CTX_new_from_pkey(NULL, priv, NULL);
        size_t zlen = VROT_MSEAL_Z_LEN;

        if (!fctx || EVP_PKEY_fromdata_init(fctx) != 1 ||
            EVP_PKEY_fromdata(fctx, &peer, EVP_PKEY_PUBLIC_KEY, params) != 1 || !ctx ||
            EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, peer) != 1 ||
            EVP_PKEY_derive(ctx, z, &zlen) != 1 || zlen != VROT_MSEAL_Z_LEN)
                return ossl_fail(error, "ECDH (software)");
        return TRUE;
}
