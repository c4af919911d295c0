/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include <openssl/crypto.h>

#include "mbundle.h"
#include "seal.h"

G_DEFINE_QUARK(vrot-mbundle-error-quark, vrot_mbundle_error)

#define MAGIC "VROTBND1"
#define MAGIC_LEN 8

static guint32 get_u32(const guint8 *p)
{
        return (guint32)p[0] << 24 | (guint32)p[1] << 16 | (guint32)p[2] << 8 | p[3];
}

static void put_u32(GByteArray *a, guint32 v)
{
        guint8 b[4] = { (guint8)(v >> 24), (guint8)(v >> 16), (guint8)(v >> 8), (guint8)v };

        g_byte_array_append(a, b, sizeof(b));
}

static gboolean invalid(GError **error, const gchar *why)
{
        g_set_error(error, VROT_MBUNDLE_ERROR, VROT_MBUNDLE_ERROR_INVALID,
                    "not a vTPM state bundle: %s", why);
        return FALSE;
}

gboolean vrot_mbundle_parse(const guint8 *buf, gsize len, VrotMbundle *ret, GError **error)
{
        VrotMbundle b = { 0 };
        guint32 count, last = 0;
        gsize off = MAGIC_LEN + 4;

        if (len < off || memcmp(buf, MAGIC, MAGIC_LEN) != 0)
                return invalid(error, "no VROTBND1 header");
        count = get_u32(buf + MAGIC_LEN);
        if (count < 1 || count > VROT_MBUNDLE_N_BLOBS)
                return invalid(error, "1 to 3 blobs");
        for (guint32 i = 0; i < count; i++) {
                guint32 type, blob_len;

                if (len - off < 8)
                        return invalid(error, "truncated");
                type = get_u32(buf + off);
                blob_len = get_u32(buf + off + 4);
                off += 8;
                if (type <= last || type > VROT_BLOB_SAVESTATE)
                        return invalid(error, "blob types must be 1 to 3, ascending");
                if (blob_len == 0 || blob_len > VROT_SEAL_MAX_PAYLOAD || blob_len > len - off)
                        return invalid(error, "a blob is empty, too large or truncated");
                b.data[type - 1] = buf + off;
                b.len[type - 1] = blob_len;
                off += blob_len;
                last = type;
        }
        if (off != len)
                return invalid(error, "bytes after the last blob");
        if (!b.len[VROT_BLOB_PERMANENT - 1])
                return invalid(error, "no permanent state");
        *ret = b;
        return TRUE;
}

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

GBytes *vrot_mbundle_pack(const VrotMbundle *b)
{
        GByteArray *a;
        guint32 count = 0;
        gsize total = MAGIC_LEN + 4;

        g_return_val_if_fail(b->len[VROT_BLOB_PERMANENT - 1] > 0, NULL);
        for (gsize i = 0; i < VROT_MBUNDLE_N_BLOBS; i++) {
                count += b->len[i] > 0;
                total += b->len[i] ? 8 + b->len[i] : 0;
        }
        /* Sized once: a reallocation would leave a copy of the state unwiped. */
        a = g_byte_array_sized_new((guint)total);
        g_byte_array_append(a, (const guint8 *)MAGIC, MAGIC_LEN);
        put_u32(a, count);
        for (gsize i = 0; i < VROT_MBUNDLE_N_BLOBS; i++) {
                if (!b->len[i])
                        continue;
                put_u32(a, (guint32)i + 1);
                put_u32(a, (guint32)b->len[i]);
                g_byte_array_append(a, b->data[i], (guint)b->len[i]);
        }
        return wiped_bytes(a);
}

GBytes *vrot_mbundle_pack_live(const guint8 key[VROT_MBUNDLE_KEY_LEN], const gchar *const certs[2])
{
        gsize n[2] = { certs[0] ? strlen(certs[0]) : 0, certs[1] ? strlen(certs[1]) : 0 };
        /* Sized once: a reallocation would leave a copy of the key unwiped. */
        GByteArray *a = g_byte_array_sized_new((guint)(VROT_MBUNDLE_KEY_LEN + 8 + n[0] + n[1]));

        g_byte_array_append(a, key, VROT_MBUNDLE_KEY_LEN);
        for (gsize i = 0; i < 2; i++) {
                put_u32(a, (guint32)n[i]);
                if (n[i])
                        g_byte_array_append(a, (const guint8 *)certs[i], (guint)n[i]);
        }
        return wiped_bytes(a);
}

static gboolean printable(const guint8 *p, gsize n)
{
        for (gsize i = 0; i < n; i++)
                if (p[i] != '\n' && (p[i] < 0x20 || p[i] > 0x7e))
                        return FALSE;
        return TRUE;
}

gboolean vrot_mbundle_parse_live(const guint8 *buf, gsize len, const guint8 **ret_key,
                                 gchar ***ret_certs, GError **error)
{
        const guint8 *cert[2];
        guint32 n[2];
        gsize off = VROT_MBUNDLE_KEY_LEN;

        if (len < off)
                return invalid(error, "no migration key");
        for (gsize i = 0; i < 2; i++) {
                if (len - off < 4)
                        return invalid(error, "truncated");
                n[i] = get_u32(buf + off);
                off += 4;
                if (n[i] > VROT_MBUNDLE_CERT_MAX || n[i] > len - off ||
                    !printable(buf + off, n[i]))
                        return invalid(error, "a certificate is too large, truncated or not PEM");
                cert[i] = buf + off;
                off += n[i];
        }
        if (off != len)
                return invalid(error, "bytes after the certificates");
        *ret_key = buf;
        *ret_certs = g_new0(gchar *, 3);
        for (gsize i = 0; i < 2; i++)
                (*ret_certs)[i] = g_strndup((const gchar *)cert[i], n[i]);
        return TRUE;
}
