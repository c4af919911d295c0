/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The vTPM's half of a service identity (docs/identity.md), played by
 * vrotd itself for a service instance over the worker's data socket (for
 * a VM the guest plays it, identity.challenge/complete):
 *
 *   1. the attestation key: ECC P-256, restricted, signing, fixedTPM and
 *      fixedParent, a child of the RSA EK (0x81010001), persistent at
 *      VROT_VTPMIDENT_AK_HANDLE; made at the first issue, reused after;
 *   2. the identity key: ECC P-256, unrestricted signing (scheme left to
 *      each signature, as TLS needs), fixedTPM and fixedParent, a child
 *      of the EK;
 *   3. TPM2_Certify(identity key) by the AK over the verifier's nonce;
 *   4. the verifier's credential (TPM2_MakeCredential for Name(AK) under
 *      the EK, made by @make_credential) activated with
 *      TPM2_ActivateCredential (the EK used through its policy,
 *      PolicySecret(TPM_RH_ENDORSEMENT));
 *   5. the evidence checked by @check; only then is the identity key made
 *      persistent, at the first free handle of VROT_VTPMIDENT_KEY_FIRST ..
 *      VROT_VTPMIDENT_KEY_LAST.
 *
 * Never touches the host TPM: runs in a thread of its own.
 */

#include <glib.h>

#include "tpmevidence.h"

/* Handles in the vTPM (docs/identity.md, "Two ways in"). */
#define VROT_VTPMIDENT_AK_HANDLE   0x81010002u
#define VROT_VTPMIDENT_KEY_FIRST   0x81000100u
#define VROT_VTPMIDENT_KEY_LAST    0x81000107u

#define VROT_VTPMIDENT_ERROR (vrot_vtpmident_error_quark())
GQuark vrot_vtpmident_error_quark(void);

typedef enum {
        VROT_VTPMIDENT_ERROR_NO_EK,     /* no RSA EK at 0x81010001 */
        VROT_VTPMIDENT_ERROR_FULL,      /* every identity key handle is taken */
        VROT_VTPMIDENT_ERROR_NO_AK,     /* no attestation key at VROT_VTPMIDENT_AK_HANDLE */
} VrotVtpmidentError;

/**
 * VrotVtpmidentCredentialFunc:
 * The verifier's TPM2_MakeCredential for the object named @ak_name:
 * returns TRUE with the TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET (wire
 * forms), or FALSE with @error set.
 */
typedef gboolean (*VrotVtpmidentCredentialFunc)(GBytes *ak_name, GBytes **ret_id_object,
                                                GBytes **ret_encrypted_secret, gpointer data,
                                                GError **error);

/**
 * VrotVtpmidentCheckFunc:
 * The verifier's checks of the evidence (@key) and of the vTPM's answer
 * to the credential (@answer): TRUE to keep the key, else FALSE with
 * @error set (nothing is kept in the vTPM).
 */
typedef gboolean (*VrotVtpmidentCheckFunc)(const VrotTpmevidenceKey *key, GBytes *answer,
                                           gpointer data, GError **error);

/**
 * vrot_vtpmident_make:
 * @tcti: the vTPM ("swtpm:path=DATA"), held for the whole call
 * @timeout_ms: how long to wait for each answer (the service may hold its
 *   data socket)
 * @nonce: qualifying data of the certification
 * @ret_key: (out) (transfer full): the evidence as the vTPM made it
 * @ret_handle: (out): where the identity key is now
 *
 * Steps 1 to 5 above.  Errors: VROT_VTPMIDENT_ERROR, VROT_VTPM_ERROR (the
 * vTPM out of reach or refusing), VROT_TPMPUB_ERROR, or those of @credential
 * and @check.  On failure a fresh identity key is not persisted; an AK made
 * by this call stays (it is reused).
 */
gboolean vrot_vtpmident_make(const gchar *tcti, gint32 timeout_ms, GBytes *nonce,
                             VrotVtpmidentCredentialFunc credential, VrotVtpmidentCheckFunc check,
                             gpointer data, VrotTpmevidenceKey **ret_key, guint32 *ret_handle,
                             GError **error);

/**
 * VrotVtpmidentAkCheckFunc:
 * The verifier's check of the vTPM's @answer to the credential made for
 * the AK @ak_public (TPM2B_PUBLIC, wire form): TRUE to keep the AK.
 */
typedef gboolean (*VrotVtpmidentAkCheckFunc)(GBytes *ak_public, GBytes *answer, gpointer data,
                                             GError **error);

/**
 * vrot_vtpmident_quote:
 * @qualifying: the quote's qualifying data (1 to 64 bytes)
 * @pcr_mask: the vTPM's SHA-256 PCRs to quote
 * @credential: (nullable): with @check, make a new AK, prove it to the
 *   verifier (credential activation, as for an identity) and put it at
 *   VROT_VTPMIDENT_AK_HANDLE in place of the old one; NULL: quote with the
 *   AK that is there (VROT_VTPMIDENT_ERROR_NO_AK if there is none)
 * @ret: (out) (transfer full): the quote and the PCR values
 *
 * The vTPM's half of a linked attestation (docs/attestation.md), for a
 * service instance.  Never touches the host TPM.
 */
gboolean vrot_vtpmident_quote(const gchar *tcti, gint32 timeout_ms, GBytes *qualifying,
                              guint32 pcr_mask, VrotVtpmidentCredentialFunc credential,
                              VrotVtpmidentAkCheckFunc check, gpointer data,
                              VrotTpmevidenceQuote **ret, GError **error);

/**
 * vrot_vtpmident_evict:
 * Evicts the persistent object at @handle: an identity key whose
 * certificate could not be issued after all, so that its handle is free
 * again.  Never touches the host TPM.
 */
gboolean vrot_vtpmident_evict(const gchar *tcti, gint32 timeout_ms, guint32 handle,
                              GError **error);
