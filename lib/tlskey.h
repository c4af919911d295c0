/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * A private key for libssl whose signing happens elsewhere, in a TPM: the
 * TLS 1.3 peer of a service identity (tests/tools/tlspeer.c, in a vTPM) and
 * the migration channel (docs/migration.md, the host transport key in the
 * host TPM).  libssl signs CertificateVerify with ECDSA over a SHA-256
 * digest; the key hands that digest to a VrotSignDigestFunc (TPM2_Sign) and
 * gives libssl the DER signature back.  Everything else (the handshake, the
 * peer's chain) stays in OpenSSL's default provider.
 *
 * Decision (docs/migration.md, "OpenSSL and the host TPM"): an EC_KEY with
 * its own EC_KEY_METHOD, not an in-process provider.  OpenSSL 3 keeps such
 * keys on its legacy path, which libssl supports; it is a third of the code
 * of a provider, and one place to change if a later OpenSSL drops it.
 */

#include <glib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "x509.h"

/**
 * vrot_tlskey_new:
 * @cert: the certificate of the key (ECC NIST P-256)
 * @sign: signs a 32-byte digest with the key, DER ECDSA-Sig-Value out
 * @data: for @sign; must outlive the key
 *
 * Returns: (transfer full): the key for SSL_CTX_use_PrivateKey(), or NULL
 * with VROT_X509_ERROR_UNSUPPORTED_KEY / _CRYPTO.
 */
EVP_PKEY *vrot_tlskey_new(X509 *cert, VrotSignDigestFunc sign, gpointer data, GError **error);
