/* SPDX-License-Identifier: BSD-3-Clause */
/* The migration envelope opener on arbitrary bytes (what a peer may send). */
#include <stdint.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "mseal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static EVP_PKEY *key;
        VrotMsealHeader h;
        GBytes *plain;

        if (!key && !(key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")))
                abort();
        if (!vrot_mseal_parse(data, size, &h, NULL))
                return 0;
        if (h.ciphertext_len + VROT_MSEAL_OVERHEAD != size)
                abort();        /* the parser let a length mismatch through */
        /* Expect what the header says, to reach the key and the cipher. */
        plain = vrot_mseal_open(data, size, h.migration_id, h.uuid, h.generation,
                                vrot_mseal_zgen_software, key, NULL);
        if (plain)
                g_bytes_unref(plain);
        return 0;
}
