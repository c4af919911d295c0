/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * TPM public areas as OpenSSL keys, in one place for every module that
 * reads keys out of a TPM (host CA key, EKs, AKs).
 */

#include <glib.h>
#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

#define VROT_TPMPUB_ERROR (vrot_tpmpub_error_quark())
GQuark vrot_tpmpub_error_quark(void);

typedef enum {
        VROT_TPMPUB_ERROR_UNSUPPORTED,  /* not RSA, not ECC NIST P-256/P-384 */
        VROT_TPMPUB_ERROR_CRYPTO,       /* OpenSSL refused the key */
} VrotTpmpubError;

/**
 * vrot_tpmpub_to_pkey:
 * The public key of @pub (RSA of any TPM size, exponent 0 meaning 65537 as
 * TPM2 Part 2 12.2.3.5 says; ECC NIST P-256 or P-384) as an OpenSSL key.
 * Returns (transfer full) the key, or NULL with @error set.
 */
EVP_PKEY *vrot_tpmpub_to_pkey(const TPMT_PUBLIC *pub, GError **error);
