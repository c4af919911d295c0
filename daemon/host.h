/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The host side of vrotd's trust chain, brought up once per daemon start
 * (DESIGN "Trust chain", "Sealed state"): the host TPM (or, with --dev, a
 * simulated one), the keys provisioned in it, the state master key unsealed
 * from it, the key that authenticates the registry, and the host CA
 * certificate whose key signs inside the host TPM.
 */

#include <glib.h>
#include <openssl/x509.h>

#include "autoptr.h"
#include "config.h"
#include "hosttpm.h"
#include "tpmevidence.h"
#include "x509.h"

#define VROT_HOST_ERROR (vrot_host_error_quark())
GQuark vrot_host_error_quark(void);

typedef enum {
        VROT_HOST_ERROR_FAILED,
} VrotHostError;

typedef struct VrotHost VrotHost;

/**
 * vrot_host_open:
 * Brings the host up: reads the operator's keys and fleet root from the
 * configuration (or, with cfg->dev, makes them locally and starts the
 * simulated host TPM), opens the host TPM, provisions what is missing
 * (first start), unseals the master key, and loads and checks the host CA
 * certificate.  Without one, --dev's local fleet root issues it after
 * checking the host evidence; in production the host comes up not
 * enrolled (vrot_host_enrolled()) until vrot_host_import_ca_cert().
 * Returns (transfer full) the host, or NULL with @error naming the step
 * (a missing operator key: VROT_OPERATOR_ERROR naming the configuration
 * key).
 */
VrotHost *vrot_host_open(const VrotConfig *cfg, GError **error);

void vrot_host_free(VrotHost *host);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotHost, vrot_host_free)

VrotHostTpm *vrot_host_tpm(VrotHost *host);
const gchar *vrot_host_tcti(const VrotHost *host);

/** vrot_host_first_start: TRUE when this start provisioned the master key. */
gboolean vrot_host_first_start(const VrotHost *host);

/** vrot_host_master: (transfer none) the unsealed state master key. */
const VrotSecret *vrot_host_master(const VrotHost *host);

/** vrot_host_registry_key: (transfer none) 32 bytes that MAC the registry. */
const guint8 *vrot_host_registry_key(const VrotHost *host);

/**
 * vrot_host_ca_signer:
 * Returns: (transfer none) (nullable): signs with the CA key in the host
 *   TPM, under the host CA certificate; NULL while not enrolled.  Valid
 *   until the host is freed, even after an import replaced it.
 */
const VrotX509Signer *vrot_host_ca_signer(const VrotHost *host);

/** vrot_host_enrolled: TRUE once the host has a host CA certificate. */
gboolean vrot_host_enrolled(const VrotHost *host);

/** vrot_host_root_cert: (transfer none) the fleet root (the trust anchor). */
X509 *vrot_host_root_cert(const VrotHost *host);

/** vrot_host_ca_cert: (transfer none) (nullable) the host CA certificate; NULL: not enrolled. */
X509 *vrot_host_ca_cert(const VrotHost *host);

/**
 * vrot_host_ca_path:
 * Returns: (transfer none) (nullable): the verified chain, host CA
 *   certificate first, fleet root last; NULL while not enrolled.
 */
STACK_OF(X509) *vrot_host_ca_path(const VrotHost *host);

/**
 * vrot_host_evidence:
 * @nonce: the verifier's nonce, 1 to 64 bytes
 * @ret_evidence: (out) (transfer full): TPM2_Certify of the CA key by the
 *   AK over @nonce, with the EK and its certificate (docs/host-evidence.md)
 * @ret_csr: (out) (transfer full): a PKCS#10 request for the CA key,
 *   signed by it in the host TPM
 *
 * What an operator's CA needs to issue the host CA certificate.  Cost: 9
 * host-TPM commands (8 + 1 Sign).  Errors: VROT_HOST_TPM_ERROR, VROT_X509_ERROR.
 */
gboolean vrot_host_evidence(VrotHost *host, GBytes *nonce, VrotTpmevidence **ret_evidence,
                            X509_REQ **ret_csr, GError **error);

/**
 * vrot_host_transport_cert:
 * This host's migration transport certificate for @name (docs/migration.md):
 * the one in STATE/host/transport.pem if it is for @name, for the host
 * TPM's transport key, from the host CA in force and valid for 30 days
 * more; else a new one (365 days) issued by the host CA in the host TPM and
 * written there.  Needs enrolment.  Returns (transfer none) the
 * certificate, kept for the life of @host, or NULL with @error.
 */
X509 *vrot_host_transport_cert(VrotHost *host, const gchar *name, GError **error);

/**
 * vrot_host_import_ca_cert:
 * @pem: untrusted PEM text of the host CA certificate
 * @chain_pem: (nullable): untrusted PEM text of the certificates between
 *   it and the fleet root
 *
 * Accepts the certificate only if it certifies the CA key in the host
 * TPM, is a CA certificate with keyCertSign and chains to the configured
 * fleet root (vrot_hostca_check()); then writes it durably to
 * STATE/host/host-ca.pem and puts it in force at once.  On any error
 * nothing changes, in memory or on disk.  Errors: VROT_HOSTCA_ERROR,
 * VROT_X509_ERROR.
 */
gboolean vrot_host_import_ca_cert(VrotHost *host, const gchar *pem, gsize len,
                                  const gchar *chain_pem, gsize chain_len, GError **error);
