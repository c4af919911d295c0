/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/* endorse.c's pure helpers, exported for tests/unit/test-endorse.c only. */

#include "endorse.h"

/**
 * vrot_endorse_vendor_text:
 * @groups: (array length=n): TPM properties holding 4 characters each, the
 *   first in the most significant byte (TPM_PT_VENDOR_STRING_*,
 *   TPM_PT_FAMILY_INDICATOR)
 * @out: (out caller-allocates): at least 4 * @n + 1 bytes
 *
 * The characters as text: NULs and runs of spaces become one space, the
 * ends are trimmed ("SW  " " TPM" -> "SW TPM").  Returns FALSE (@out
 * undefined) for a byte that is not printable ASCII, or nothing left.
 */
gboolean vrot_endorse_vendor_text(const guint32 *groups, gsize n, gchar *out);

/**
 * vrot_endorse_check_size:
 * TRUE if a certificate of @der_len bytes fits an NV index of the vTPM
 * (@nv_index_max = TPM_PT_NV_INDEX_MAX), else FALSE with
 * VROT_ENDORSE_ERROR_TOO_LARGE.
 */
gboolean vrot_endorse_check_size(gsize der_len, guint32 nv_index_max, GError **error);

/**
 * vrot_endorse_matches_template:
 * TRUE if @pub was made from template @tmpl: the same type, nameAlg,
 * attributes, authPolicy and parameters, and a unique of the template's
 * size (its contents, the key itself, are not compared).
 */
gboolean vrot_endorse_matches_template(const TPMT_PUBLIC *pub, const TPMT_PUBLIC *tmpl);
