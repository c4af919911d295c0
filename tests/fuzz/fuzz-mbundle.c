/* SPDX-License-Identifier: BSD-3-Clause */
/* The state bundle parser on arbitrary bytes (what an envelope may hold). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mbundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        VrotMbundle b;
        GBytes *again;

        if (!vrot_mbundle_parse(data, size, &b, NULL))
                return 0;
        /* What parses packs back to the same bytes. */
        again = vrot_mbundle_pack(&b);
        if (g_bytes_get_size(again) != size || memcmp(g_bytes_get_data(again, NULL), data, size) != 0)
                abort();
        g_bytes_unref(again);
        return 0;
}
