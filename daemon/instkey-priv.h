/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/* instkey internals, for tests/unit/test-instkey.c only. */

#include "instkey.h"

/**
 * vrot_instkey_hkdf_sha256:
 * RFC 5869 HKDF-SHA256 (extract and expand) through OpenSSL's EVP_KDF
 * "HKDF": the primitive vrot_instkey_derive() uses, exposed so the tests
 * can run RFC 5869's known-answer vectors against the same wiring.
 * @salt and @info may be empty.  Fills @out_len bytes of @out.
 */
gboolean vrot_instkey_hkdf_sha256(const guint8 *ikm, gsize ikm_len, const guint8 *salt,
                                  gsize salt_len, const guint8 *info, gsize info_len,
                                  guint8 *out, gsize out_len, GError **error);
