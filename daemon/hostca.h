/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The host endorsement CA certificate (DESIGN "Trust chain", R-ID-1,
 * R-ROT-4): the checks a certificate passes before vrotd signs anything
 * under it (at import and again at every start), the file it is kept in,
 * and --dev's local fleet root, which issues it only after checking the
 * host evidence as an operator's CA does (docs/host-evidence.md).
 *
 * The file, STATE/host/host-ca.pem, holds the host CA certificate
 * followed by the certificates between it and the fleet root (none when
 * the fleet root issued it directly): one file, so that one durable write
 * replaces both.  No function here logs.
 */

#include <glib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "autoptr.h"
#include "devtpm.h"
#include "hosttpm.h"

#define VROT_HOSTCA_ERROR (vrot_hostca_error_quark())
GQuark vrot_hostca_error_quark(void);

/**
 * VrotHostcaError:
 * @VROT_HOSTCA_ERROR_INVALID: not PEM, not certificates, too many of them
 * @VROT_HOSTCA_ERROR_WRONG_KEY: the certificate is for another key than
 *   the host endorsement CA key in the host TPM
 * @VROT_HOSTCA_ERROR_NOT_CA: no basicConstraints cA, no keyCertSign in
 *   keyUsage, or no subjectKeyIdentifier
 * @VROT_HOSTCA_ERROR_UNTRUSTED: it does not chain to the fleet root (or a
 *   certificate on the way is expired or not yet valid)
 * @VROT_HOSTCA_ERROR_FAILED: I/O or OpenSSL failed
 */
typedef enum {
        VROT_HOSTCA_ERROR_INVALID,
        VROT_HOSTCA_ERROR_WRONG_KEY,
        VROT_HOSTCA_ERROR_NOT_CA,
        VROT_HOSTCA_ERROR_UNTRUSTED,
        VROT_HOSTCA_ERROR_FAILED,
} VrotHostcaError;

/* Most certificates between the host CA and the fleet root. */
#define VROT_HOSTCA_MAX_CHAIN 8

/**
 * VrotHostca:
 * A host CA certificate that passed vrot_hostca_check().
 * @cert: the host CA certificate
 * @chain: the certificates between it and the fleet root, as given
 * @path: the verified path: @cert, the issuers used, the fleet root
 */
typedef struct VrotHostca {
        X509 *cert;
        STACK_OF(X509) *chain;
        STACK_OF(X509) *path;
} VrotHostca;

void vrot_hostca_free(VrotHostca *ca);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotHostca, vrot_hostca_free)

/**
 * vrot_hostca_check:
 * @cert: (transfer none): the candidate
 * @chain: (transfer none) (nullable): certificates that may lie between
 *   @cert and @fleet_root (untrusted themselves)
 * @fleet_root: (transfer none): the trust anchor
 * @ca_key: (transfer none): the CA key in the host TPM
 *
 * @cert must certify @ca_key, be a CA certificate (basicConstraints cA,
 * keyUsage with keyCertSign, a subjectKeyIdentifier), and have a valid
 * path to @fleet_root (which need not be self-signed) now.
 * Returns (transfer full), or NULL with the VrotHostcaError of the first
 * check that failed.
 */
VrotHostca *vrot_hostca_check(X509 *cert, STACK_OF(X509) *chain, X509 *fleet_root,
                              EVP_PKEY *ca_key, GError **error);

/**
 * vrot_hostca_import:
 * @pem: untrusted PEM text of exactly one certificate (text around it is
 *   ignored)
 * @chain_pem: (nullable): untrusted PEM text of 1 to
 *   VROT_HOSTCA_MAX_CHAIN certificates
 *
 * Parses, then vrot_hostca_check().  Pure: nothing is written.
 */
VrotHostca *vrot_hostca_import(const gchar *pem, gsize len, const gchar *chain_pem,
                               gsize chain_len, X509 *fleet_root, EVP_PKEY *ca_key,
                               GError **error);

/**
 * vrot_hostca_save:
 * Writes @ca->cert and @ca->chain to @path durably (temporary file, fsync,
 * rename, fsync of the directory), mode 0644.
 */
gboolean vrot_hostca_save(const VrotHostca *ca, const gchar *path, GError **error);

/**
 * vrot_hostca_load:
 * Reads @path (as vrot_hostca_save() wrote it) and checks it again with
 * vrot_hostca_check(): a file changed behind vrotd's back, a fleet root
 * changed in the configuration or a CA key created anew are refused.
 */
VrotHostca *vrot_hostca_load(const gchar *path, X509 *fleet_root, EVP_PKEY *ca_key,
                             GError **error);

/**
 * vrot_hostca_dev_issue:
 * --dev: the local fleet root (@root, @root_key) runs the evidence
 * exchange with the simulated host TPM @tpm (vrot_tpmevidence_challenge(),
 * the TPM vendor being @dev's local CA), and only when every step passes
 * issues the host CA certificate for the certified key.  Cost: 15 host-TPM
 * commands (16 the first time per context).  Returns (transfer full) the
 * certificate, or NULL with @error set (a VrotTpmevidenceError when the
 * evidence was refused).
 */
X509 *vrot_hostca_dev_issue(VrotHostTpm *tpm, VrotDevTpm *dev, X509 *root, EVP_PKEY *root_key,
                            GError **error);
