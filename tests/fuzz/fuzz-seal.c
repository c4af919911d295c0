/* SPDX-License-Identifier: BSD-3-Clause */
/* The sealed-blob opener on arbitrary bytes (what a state file may hold). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "seal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const uint8_t key[32] = { 1, 2, 3, 4 };
        VrotSealer s = { .key = key };
        VrotSealer insecure = { .key = NULL };
        VrotSealHeader h;
        uint8_t *plain = NULL, *copy = malloc(size ? size : 1);
        size_t len;

        memcpy(copy, data, size);
        if (vrot_seal_parse_header(copy, size, &h, NULL) == 0 && h.length + VROT_SEAL_OVERHEAD != size)
                abort();
        if (size >= 28) {
                memcpy(s.uuid, copy + 12, 16);          /* reach past the UUID check */
                memcpy(insecure.uuid, copy + 12, 16);
        }
        for (uint32_t t = VROT_BLOB_PERMANENT; t <= VROT_BLOB_GENERATION; t++) {
                if (vrot_seal_open(&s, t, copy, size, &plain, &len, NULL, NULL) == 0)
                        free(plain);
                if (vrot_seal_open(&insecure, t, copy, size, &plain, &len, NULL, NULL) == 0)
                        free(plain);    /* insecure blobs are forgeable: fine here */
        }
        free(copy);
        return 0;
}
