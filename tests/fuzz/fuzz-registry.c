/* SPDX-License-Identifier: BSD-3-Clause */
/* The registry file on arbitrary bytes.  Unauthenticated input stops at the
 * MAC; to reach the JSON parser as well, half the inputs are re-MAC'd with
 * the fuzzing key first (what an attacker holding the key could write). */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "registry.h"

int LLVMFuzzerTestOneInput(const guint8 *data, gsize size);

static const guint8 key[VROT_REGISTRY_KEY_LEN] = { 7, 7, 7 };

static GString *with_mac(const guint8 *body, gsize len)
{
        GString *f = g_string_new_len((const gchar *)body, len);
        guint8 tag[32];
        unsigned int n = sizeof(tag);

        HMAC(EVP_sha256(), key, sizeof(key), body, len, tag, &n);
        g_string_append(f, "\nhmac-sha256 ");
        for (gsize i = 0; i < sizeof(tag); i++)
                g_string_append_printf(f, "%02x", tag[i]);
        g_string_append_c(f, '\n');
        return f;
}

int LLVMFuzzerTestOneInput(const guint8 *data, gsize size)
{
        g_autoptr(VrotRegistry) r = NULL;

        if (size > 0 && data[0] & 1) {
                GString *f = with_mac(data + 1, size - 1);
                r = vrot_registry_parse(f->str, f->len, key, NULL);
                g_string_free(f, TRUE);
        } else {
                g_autofree gchar *copy = g_memdup2(data, size);
                r = vrot_registry_parse(copy, size, key, NULL);
        }
        if (r) {
                /* Whatever parsed must serialise and parse back. */
                gsize len = 0;
                g_autofree gchar *again = vrot_registry_serialize(r, key, &len);
                g_autoptr(VrotRegistry) r2 = vrot_registry_parse(again, len, key, NULL);
                g_assert_nonnull(r2);
        }
        return 0;
}
