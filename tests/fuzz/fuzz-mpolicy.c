/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The migration policy parser on arbitrary bytes (an operator's file); a
 * policy that parses answers for any quote without crashing, and accepts
 * only the PCR set it lists.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpolicy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree gchar *text = g_strndup((const gchar *)data, size);
        g_autoptr(VrotMpolicy) p = vrot_mpolicy_parse(text, strlen(text), NULL);
        g_autoptr(GBytes) zeros = NULL;
        guint32 mask;
        guint n = 0;

        if (!p)
                return 0;
        mask = vrot_mpolicy_pcr_mask(p);
        for (guint i = 0; i < 24; i++)
                n += (mask >> i) & 1;
        zeros = g_bytes_new_take(g_malloc0(n * 32u), n * 32u);
        (void)vrot_mpolicy_check_pcrs(p, mask, zeros, NULL);
        (void)vrot_mpolicy_check_peer(p, "host-b.example", NULL);
        if (mask == 0 || vrot_mpolicy_check_pcrs(p, mask ^ 1u, zeros, NULL))
                abort();
        return 0;
}
