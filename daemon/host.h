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
#include "x509.h"

#define VROT_HOST_ERROR (vrot_host_error_quark())
GQuark vrot_host_error_quark(void);

typedef enum {
        VROT_HOST_ERROR_FAILED,
        VROT_HOST_ERROR_UNSUPPORTED,    /* production enrolment not written yet */
} VrotHostError;

typedef struct VrotHost VrotHost;

/**
 * vrot_host_open:
 * Brings the host up: starts the simulated host TPM with cfg->dev, opens the
 * host TPM, provisions what is missing (first start), unseals the master
 * key, and loads or (--dev) makes the fleet root and host CA certificates.
 * Returns (transfer full) the host, or NULL with @error naming the step.
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

/** vrot_host_ca_signer: (transfer none) signs with the CA key in the host TPM. */
const VrotX509Signer *vrot_host_ca_signer(const VrotHost *host);

/** (transfer none) certificates; the root is NULL outside --dev. */
X509 *vrot_host_root_cert(const VrotHost *host);
X509 *vrot_host_ca_cert(const VrotHost *host);
