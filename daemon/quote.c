/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "quote.h"
#include "tpmpub.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPML_PCR_SELECTION, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPML_DIGEST, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_ATTEST, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPMT_SIGNATURE, Esys_Free)

static TPML_PCR_SELECTION selection(guint32 mask)
{
        TPML_PCR_SELECTION s = { .count = 1 };

        s.pcrSelections[0].hash = TPM2_ALG_SHA256;
        s.pcrSelections[0].sizeofSelect = 3;
        for (guint i = 0; i < 3; i++)
                s.pcrSelections[0].pcrSelect[i] = (guint8)(mask >> (8 * i));
        return s;
}

/* The values of @mask's PCRs, ascending.  TPM2_PCR_Read returns at most 8
 * digests per call and says which it returned: ask again for the rest. */
static GBytes *read_pcrs(ESYS_CONTEXT *esys, guint32 mask, VrotQuoteCheckFunc check,
                         GError **error)
{
        g_autoptr(GByteArray) out = g_byte_array_new();
        guint8 values[VROT_TPMEVIDENCE_PCRS][32];
        guint32 left = mask;

        while (left) {
                TPML_PCR_SELECTION want = selection(left);
                g_autoptr(TPML_PCR_SELECTION) got = NULL;
                g_autoptr(TPML_DIGEST) digests = NULL;
                guint32 got_mask = 0, k = 0;
                TSS2_RC rc = Esys_PCR_Read(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &want,
                                           NULL, &got, &digests);

                if (!check(rc, "TPM2_PCR_Read", error))
                        return NULL;
                if (got->count == 1 && got->pcrSelections[0].hash == TPM2_ALG_SHA256)
                        for (guint i = 0; i < VROT_TPMEVIDENCE_PCRS; i++)
                                if (got->pcrSelections[0].pcrSelect[i / 8] & (1u << (i % 8)))
                                        got_mask |= 1u << i;
                got_mask &= left;
                if (!got_mask) {
                        g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                            "TPM2_PCR_Read returned none of the SHA-256 PCRs asked");
                        return NULL;
                }
                for (guint i = 0; i < VROT_TPMEVIDENCE_PCRS; i++) {
                        if (!(got_mask & (1u << i)))
                                continue;
                        if (k >= digests->count || digests->digests[k].size != 32) {
                                g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                                    "TPM2_PCR_Read: digests do not match the selection");
                                return NULL;
                        }
                        memcpy(values[i], digests->digests[k++].buffer, 32);
                }
                left &= ~got_mask;
        }
        for (guint i = 0; i < VROT_TPMEVIDENCE_PCRS; i++)
                if (mask & (1u << i))
                        g_byte_array_append(out, values[i], 32);
        return g_byte_array_free_to_bytes(g_steal_pointer(&out));
}

gboolean vrot_quote_make(ESYS_CONTEXT *esys, ESYS_TR ak, const TPM2B_PUBLIC *ak_public,
                         GBytes *qualifying, guint32 pcr_mask, VrotQuoteCheckFunc check,
                         VrotTpmevidenceQuote **ret, GError **error)
{
        static const TPMT_SIG_SCHEME ak_scheme = { .scheme = TPM2_ALG_NULL };
        g_autoptr(VrotTpmevidenceQuote) q = g_new0(VrotTpmevidenceQuote, 1);
        g_autoptr(TPM2B_ATTEST) attest = NULL;
        g_autoptr(TPMT_SIGNATURE) sig = NULL;
        TPML_PCR_SELECTION sel = selection(pcr_mask);
        TPM2B_DATA data = { .size = (UINT16)g_bytes_get_size(qualifying) };
        TSS2_RC rc;

        g_return_val_if_fail(pcr_mask && pcr_mask < (1u << VROT_TPMEVIDENCE_PCRS), FALSE);
        g_return_val_if_fail(data.size >= 1 && data.size <= 64, FALSE);
        memcpy(data.buffer, g_bytes_get_data(qualifying, NULL), data.size);
        if (!(q->pcr_values = read_pcrs(esys, pcr_mask, check, error)))
                return FALSE;
        rc = Esys_Quote(esys, ak, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &data, &ak_scheme,
                        &sel, &attest, &sig);
        if (!check(rc, "TPM2_Quote", error) ||
            !vrot_tpmpub_signature_to_der(sig, &q->signature, error))
                return FALSE;
        q->attest = g_bytes_new(attest->attestationData, attest->size);
        q->ak_public = vrot_tpmpub_marshal(ak_public);
        q->pcr_mask = pcr_mask;
        *ret = g_steal_pointer(&q);
        return TRUE;
}
