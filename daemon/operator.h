/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The operator's trust material on a host (DESIGN "Trust chain", "Sealed
 * state"): the policy key whose signatures authorise PCR values for the
 * sealed state master key, the recovery key its recovery copy is wrapped
 * to, and the fleet root certificate the host CA certificate must chain
 * to.
 *
 * In production all three come from vrotd.conf's [operator] group, and
 * only public halves are accepted: the private keys stay with the
 * operator (an offline station, an HSM).  With --dev they are made once
 * in STATE/host, private keys and a local fleet root included, so that
 * the whole chain exists on one machine.  No function here logs.
 */

#include <glib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "autoptr.h"
#include "config.h"

#define VROT_OPERATOR_ERROR (vrot_operator_error_quark())
GQuark vrot_operator_error_quark(void);

/**
 * VrotOperatorError:
 * @VROT_OPERATOR_ERROR_MISSING: a key vrotd needs is not set in vrotd.conf
 * @VROT_OPERATOR_ERROR_INVALID: a file that cannot be read, is no PEM key
 *   or certificate, holds a private key, or a key of the wrong type
 * @VROT_OPERATOR_ERROR_FAILED: generating or saving a --dev key failed
 */
typedef enum {
        VROT_OPERATOR_ERROR_MISSING,
        VROT_OPERATOR_ERROR_INVALID,
        VROT_OPERATOR_ERROR_FAILED,
} VrotOperatorError;

/**
 * VrotOperator:
 * @policy_key: ECC P-256; public only, except with --dev (the key pair)
 * @recovery_key: (nullable): RSA of 2048 bits or more; NULL when not
 *   configured, which is allowed once the master key exists
 * @fleet_root: the trust anchor of the host CA certificate (a CA)
 * @fleet_root_key: (nullable): --dev only, the local fleet root's
 *   private key; NULL in production
 */
typedef struct VrotOperator {
        EVP_PKEY *policy_key;
        EVP_PKEY *recovery_key;
        X509 *fleet_root;
        EVP_PKEY *fleet_root_key;
} VrotOperator;

/**
 * vrot_operator_load:
 * @need_recovery: TRUE at first provisioning, when the master key's
 *   recovery copy is made: recovery-key must then be set
 *
 * Reads [operator] policy-key, recovery-key (if set) and fleet-root of
 * @cfg.  Every message names the configuration key, and the file.
 * Returns (transfer full), or NULL with VROT_OPERATOR_ERROR_MISSING or
 * _INVALID.
 */
VrotOperator *vrot_operator_load(const VrotConfig *cfg, gboolean need_recovery, GError **error);

/**
 * vrot_operator_dev:
 * --dev: loads, or the first time makes and saves, the operator's key
 * pairs (@host_dir/operator-policy.pem, operator-recovery.pem) and a local
 * fleet root (@host_dir/fleet-root.key, fleet-root.pem).  Returns
 * (transfer full), or NULL with @error set.
 */
VrotOperator *vrot_operator_dev(const gchar *host_dir, GError **error);

/** vrot_operator_free: accepts NULL. */
void vrot_operator_free(VrotOperator *op);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotOperator, vrot_operator_free)
