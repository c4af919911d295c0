/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The migration channel's frame parser on arbitrary bytes (a peer host's
 * stream).  A frame that parses must encode, and the encoding must parse
 * to a frame of the same type that encodes to the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>

#include "mframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        gsize used = 0, used2 = 0;
        g_autoptr(VrotMframe) f = vrot_mframe_parse(data, size, &used, NULL);
        g_autoptr(GBytes) wire = NULL, wire2 = NULL;
        g_autoptr(VrotMframe) back = NULL;

        if (!f)
                return 0;
        if (used > size || !(wire = vrot_mframe_encode(f, NULL)))
                abort();
        back = vrot_mframe_parse(g_bytes_get_data(wire, NULL), g_bytes_get_size(wire), &used2,
                                 NULL);
        if (!back || vrot_mframe_type(back) != vrot_mframe_type(f) ||
            used2 != g_bytes_get_size(wire) || !(wire2 = vrot_mframe_encode(back, NULL)) ||
            !g_bytes_equal(wire, wire2))
                abort();
        return 0;
}
