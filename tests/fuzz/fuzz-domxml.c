/* SPDX-License-Identifier: BSD-3-Clause */
/* The libvirt hook's domain XML parser on arbitrary bytes (its stdin). */
#include <stdint.h>
#include <stdlib.h>

#include "domxml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        VrotDomxml *d = vrot_domxml_parse((const char *)data, size, NULL);

        if (d && (!d->name || !d->uuid || (d->tpm_socket && d->tpm_socket[0] != '/')))
                abort();        /* a result the hook would trust must be whole */
        vrot_domxml_free(d);
        return 0;
}
