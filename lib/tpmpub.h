/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * TPM public areas in one place for every module that makes or reads keys
 * in a TPM (host CA key, EKs, AKs): the TCG default EK templates, and
 * public areas as OpenSSL keys.
 */

#include <glib.h>
#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

#define VROT_TPMPUB_ERROR (vrot_tpmpub_error_quark())
GQuark vrot_tpmpub_error_quark(void);

typedef enum {
        VROT_TPMPUB_ERROR_UNSUPPORTED,  /* not RSA, not ECC NIST P-256/P-384 */
        VROT_TPMPUB_ERROR_CRYPTO,       /* OpenSSL refused the key */
        VROT_TPMPUB_ERROR_SCHEME,       /* a signature of another scheme */
} VrotTpmpubError;

/*
 * TCG EK Credential Profile 2.x, B.3.3 "Template L-1" (RSA 2048) and B.3.4
 * "Template L-2" (ECC NIST P-256): the low-range default EK templates, the
 * ones `tpm2_createek -G rsa|ecc` uses.  Used for the vTPMs' EKs and for the
 * host TPM's EK when it has no persistent one.
 */
extern const TPM2B_PUBLIC vrot_tpmpub_ek_rsa_template;
extern const TPM2B_PUBLIC vrot_tpmpub_ek_ecc_template;

/**
 * vrot_tpmpub_to_pkey:
 * The public key of @pub (RSA of any TPM size, exponent 0 meaning 65537 as
 * TPM2 Part 2 12.2.3.5 says; ECC NIST P-256 or P-384) as an OpenSSL key.
 * Returns (transfer full) the key, or NULL with @error set.
 */
EVP_PKEY *vrot_tpmpub_to_pkey(const TPMT_PUBLIC *pub, GError **error);

/** vrot_tpmpub_marshal: (transfer full) the wire form of @pub (what tpm2_print reads). */
GBytes *vrot_tpmpub_marshal(const TPM2B_PUBLIC *pub);

/**
 * vrot_tpmpub_signature_to_der:
 * A TPM's ECDSA-SHA256 TPMT_SIGNATURE as a DER ECDSA-Sig-Value (RFC 3279
 * 2.2.3), what OpenSSL verifies.  Errors: VROT_TPMPUB_ERROR_SCHEME
 * (another scheme or hash), _CRYPTO.
 */
gboolean vrot_tpmpub_signature_to_der(const TPMT_SIGNATURE *sig, GBytes **ret, GError **error);
