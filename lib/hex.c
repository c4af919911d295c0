/* SPDX-License-Identifier: BSD-3-Clause */
#include "hex.h"

gboolean vrot_hex_decode(const char *s, gsize len, guint8 *out)
{
        if (!s || len % 2)
                return FALSE;
        for (gsize i = 0; i < len; i += 2) {
                int hi = g_ascii_xdigit_value(s[i]), lo = g_ascii_xdigit_value(s[i + 1]);

                if (hi < 0 || lo < 0)
                        return FALSE;
                out[i / 2] = (guint8)(hi << 4 | lo);
        }
        return TRUE;
}

gchar *vrot_hex_encode(const guint8 *data, gsize len)
{
        static const char digits[] = "0123456789abcdef";
        gchar *out = g_malloc(2 * len + 1);

        for (gsize i = 0; i < len; i++) {
                out[2 * i] = digits[data[i] >> 4];
                out[2 * i + 1] = digits[data[i] & 0xf];
        }
        out[2 * len] = '\0';
        return out;
}
