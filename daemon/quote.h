/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * TPM2_Quote of SHA-256 PCRs, with the values quoted, for the two halves
 * of a linked attestation (docs/attestation.md): the vTPM's (vtpmident.c)
 * and the host TPM's (hosttpm-evidence.c).  The caller owns the ESYS
 * context and the AK; lib/tpmevidence.c verifies what comes out.
 */

#include <glib.h>
#include <tss2/tss2_esys.h>

#include "tpmevidence.h"

/* How the caller turns a TSS2_RC into its own GError (vrot_vtpm_check, vrot_host_tpm_check). */
typedef gboolean (*VrotQuoteCheckFunc)(TSS2_RC rc, const char *what, GError **error);

/**
 * vrot_quote_make:
 * @ak: a loaded restricted signing key with an empty authValue
 * @ak_public: its public area
 * @qualifying: the quote's qualifying data (1 to 64 bytes)
 * @pcr_mask: the SHA-256 PCRs to quote (bit i: PCR i, i < 24), not 0
 *
 * Reads the PCRs and quotes them.  A PCR extended between the two makes a
 * quote whose values do not verify; nothing here hides that.
 */
gboolean vrot_quote_make(ESYS_CONTEXT *esys, ESYS_TR ak, const TPM2B_PUBLIC *ak_public,
                         GBytes *qualifying, guint32 pcr_mask, VrotQuoteCheckFunc check,
                         VrotTpmevidenceQuote **ret, GError **error);
