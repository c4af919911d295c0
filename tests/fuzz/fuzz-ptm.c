/* SPDX-License-Identifier: BSD-3-Clause */
/* The control-channel framer and parser on arbitrary bytes: whatever frame()
 * says about a prefix must hold for parse(), and nothing may read outside
 * the buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ptm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        VrotPtmRequest req;
        size_t need = 0;
        uint8_t *copy;

        if (vrot_ptm_frame(data, size, &need, NULL) < 0)
                return 0;
        if (need < 4)
                abort();
        /* Exact-size copy so ASan catches any read past the request. */
        copy = malloc(size ? size : 1);
        memcpy(copy, data, size);
        if (vrot_ptm_parse(copy, size, &req, NULL) == 0 && size >= 4) {
                if (req.cmd == VROT_PTM_SET_STATEBLOB && req.u.set_state.len)
                        (void)memchr(req.u.set_state.data, 0, req.u.set_state.len);
                if (req.cmd == VROT_PTM_HASH_DATA && req.u.hash.len)
                        (void)memchr(req.u.hash.data, 0, req.u.hash.len);
        }
        free(copy);
        return 0;
}
