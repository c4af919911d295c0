/* SPDX-License-Identifier: BSD-3-Clause */
/* The state bundle parsers on arbitrary bytes (what an envelope may hold). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mbundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        VrotMbundle b;
        GBytes *again;
        const guint8 *key;
        gchar **certs;

        if (vrot_mbundle_parse_live(data, size, &key, &certs, NULL)) {
                /* What parses packs back to the same bytes. */
                again = vrot_mbundle_pack_live(key, (const gchar *const *)certs);
                if (g_bytes_get_size(again) != size ||
                    memcmp(g_bytes_get_data(again, NULL), data, size) != 0)
                        abort();
                g_bytes_unref(again);
                g_strfreev(certs);
        }
        if (!vrot_mbundle_parse(data, size, &b, NULL))
                return 0;
        /* What parses packs back to the same bytes. */
        again = vrot_mbundle_pack(&b);
        if (g_bytes_get_size(again) != size || memcmp(g_bytes_get_data(again, NULL), data, size) != 0)
                abort();
        g_bytes_unref(again);
        return 0;
}
