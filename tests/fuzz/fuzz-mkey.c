/* SPDX-License-Identifier: BSD-3-Clause */
/* The migration-key socket's request parser on arbitrary bytes (what a
 * client of a worker's --migrate socket may send). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mkey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        VrotMkeyRequest r;
        VrotMkeyAnswer a;
        uint8_t again[VROT_MKEY_REQUEST_MAX];

        if (vrot_mkey_parse_request(data, size, &r) == 0) {
                /* What parses encodes back to the same bytes. */
                if (vrot_mkey_encode_request(&r, again) != size || memcmp(again, data, size) != 0)
                        abort();
        }
        (void)vrot_mkey_parse_answer(data, size, &a);
        return 0;
}
