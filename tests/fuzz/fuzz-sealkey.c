/* SPDX-License-Identifier: BSD-3-Clause */
/* The two sealed-master-key file parsers on arbitrary bytes: the operator's
 * PCR authorisation (text) and master.sealed (binary). */
#include <string.h>

#include "sealkey.h"

int LLVMFuzzerTestOneInput(const guint8 *data, gsize size);

int LLVMFuzzerTestOneInput(const guint8 *data, gsize size)
{
        g_autofree gchar *copy = g_memdup2(data, size);
        TPM2B_PUBLIC pub;
        TPM2B_PRIVATE priv;
        VrotSealkeyAuth *auth;

        auth = vrot_sealkey_auth_parse(copy, size, "fuzz", NULL);
        if (auth) {
                /* What parsed must format and parse back. */
                g_autofree char *text = vrot_sealkey_auth_format(auth);
                VrotSealkeyAuth *again = vrot_sealkey_auth_parse(text, strlen(text), "again", NULL);
                g_assert_nonnull(again);
                vrot_sealkey_auth_free(again);
                vrot_sealkey_auth_free(auth);
        }
        (void)vrot_sealkey_sealed_parse((const guint8 *)copy, size, &pub, &priv, NULL);
        return 0;
}
