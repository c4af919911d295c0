/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * HKDF-SHA256 (RFC 5869, extract and expand) through OpenSSL's EVP_KDF: the
 * one key derivation of the daemon's keys (instance state keys, the
 * registry's MAC key) and of the migration envelope (mseal.h).
 */

#include <glib.h>

#define VROT_KDF_ERROR (vrot_kdf_error_quark())
GQuark vrot_kdf_error_quark(void);

typedef enum {
        VROT_KDF_ERROR_FAILED,
} VrotKdfError;

/**
 * vrot_kdf_hkdf_sha256:
 * Derives @out_len bytes into @out from @ikm; @salt and @info may be empty.
 * Returns: FALSE with VROT_KDF_ERROR_FAILED if OpenSSL fails.
 */
gboolean vrot_kdf_hkdf_sha256(const guint8 *ikm, gsize ikm_len, const guint8 *salt, gsize salt_len,
                              const guint8 *info, gsize info_len, guint8 *out, gsize out_len,
                              GError **error);
