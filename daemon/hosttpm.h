/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The host TPM as vrotd sees it (R-ROT-1..4, R-ROT-3: vrotd is its only
 * user).  One ESYS context over any TCTI (`device:/dev/tpmrm0` in
 * production, `swtpm:path=...` with --dev), and the objects vrot keeps in
 * it:
 *
 *   0x81000001  storage primary key (SRK): ECC NIST P-256 with the standard
 *               template of the TCG TPM v2.0 Provisioning Guidance 7.5.1,
 *               persisted once at the handle that guidance names.  Another
 *               program that follows it (systemd-tpm2-setup, FAPI) makes the
 *               very same key there, so sharing it is harmless.
 *   0x81007601  host endorsement CA key: ECC P-256, ECDSA-SHA256 only,
 *               fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|
 *               noDA|sign, created under the SRK once and persisted.  It
 *               signs the vTPM EK certificates (DESIGN "Trust chain"); its
 *               private part never leaves the TPM (R-ROT-2).  noDA: its
 *               authValue is empty, and another program's failed
 *               authorisations must not lock the host's endorsements out.
 *   0x81007602  host transport key: as the CA key, made at the first
 *               vrot_host_tpm_transport_key() (hosts that never migrate
 *               never have one).  It signs TLS 1.3 handshakes of the
 *               migration channel and nothing else (docs/migration.md).
 *   0x01807601  NV counter (TPM_NT_COUNTER, 8 bytes): incremented by
 *               checkpoints that must never be undone (DESIGN "Sealed
 *               state"); owner-written, readable with its empty authValue.
 *
 * A handle or index that holds something else (another program's object)
 * is never evicted or overwritten: vrot_host_tpm_provision() fails with
 * VROT_HOST_TPM_ERROR_CONFLICT.  The evidence that the CA key lives in the
 * TPM of the EK certificate (R-ROT-4) is an attestation key derived anew
 * each time in the endorsement hierarchy, linked to the EK by credential
 * activation, that certifies the CA key; docs/host-evidence.md has the
 * design and the verifier's steps.  (That part is in hosttpm-evidence.c;
 * hosttpm-int.h is what the two files share.)
 *
 * Every TPM command sent through the context is counted, whoever sends it
 * (sibling modules using vrot_host_tpm_esys() included): the count sits
 * below ESYS, in a pass-through TCTI, so ESYS-internal commands (the
 * ReadPublic of Esys_TR_FromTPMPublic, retries after TPM_RC_RETRY) are
 * counted too.  The cost of each function below is its count on a TPM
 * that answers without retries.
 *
 * After a transport failure (TPM gone, swtpm killed) ESYS cannot recover:
 * every later call on the context fails with VROT_HOST_TPM_ERROR_IO;
 * free it and open a new one.  The context is not thread-safe.
 *
 * Hierarchy authValues (owner, endorsement) are assumed empty, as on a
 * freshly cleared TPM and as swtpm_setup leaves them.  No function logs;
 * tpm2-tss itself writes warnings to stderr unless TSS2_LOG says otherwise
 * (vrotd's main() sets TSS2_LOG=all+none before the first TSS call; the
 * errors come back as GError anyway).
 */

#include <glib.h>
#include <openssl/evp.h>
#include <tss2/tss2_esys.h>

#include "tpmevidence.h"

#define VROT_HOST_TPM_ERROR (vrot_host_tpm_error_quark())
GQuark vrot_host_tpm_error_quark(void);

/**
 * VrotHostTpmError:
 * @VROT_HOST_TPM_ERROR_IO: the TCTI cannot be loaded or opened, or the TPM
 *   stopped answering (device gone, swtpm killed)
 * @VROT_HOST_TPM_ERROR_TPM: the TPM refused a command (the message has the
 *   decoded TPM_RC)
 * @VROT_HOST_TPM_ERROR_FAILED: another failure inside tpm2-tss or OpenSSL
 * @VROT_HOST_TPM_ERROR_CONFLICT: a vrot handle or NV index holds an object
 *   vrot did not make (or with other attributes)
 * @VROT_HOST_TPM_ERROR_INVALID: malformed input (credential blob, nonce)
 */
typedef enum {
        VROT_HOST_TPM_ERROR_IO,
        VROT_HOST_TPM_ERROR_TPM,
        VROT_HOST_TPM_ERROR_FAILED,
        VROT_HOST_TPM_ERROR_CONFLICT,
        VROT_HOST_TPM_ERROR_INVALID,
} VrotHostTpmError;

/* Handles and indices (TCG Registry of Reserved TPM 2.0 Handles: owner ranges). */
#define VROT_HOST_TPM_SRK_HANDLE        0x81000001u
#define VROT_HOST_TPM_CA_KEY_HANDLE     0x81007601u
#define VROT_HOST_TPM_TRANSPORT_KEY_HANDLE 0x81007602u
#define VROT_HOST_TPM_COUNTER_INDEX     0x01807601u
/* Looked up, never created: the RSA EK and its certificate (TCG EK
 * Credential Profile; swtpm_setup puts them there). */
#define VROT_HOST_TPM_EK_HANDLE         0x81010001u
#define VROT_HOST_TPM_EK_CERT_INDEX     0x01c00002u

typedef struct VrotHostTpm VrotHostTpm;

/**
 * vrot_host_tpm_open:
 * @tcti: a tpm2-tss TCTI configuration string ("device:/dev/tpmrm0",
 *   "swtpm:path=/x/tpm.sock", ...)
 * @error: return location for a #VrotHostTpmError
 *
 * Loads the TCTI, initialises ESYS and sends TPM2_Startup(CLEAR), which a
 * TPM already started answers with TPM_RC_INITIALIZE (accepted).
 * Cost: 1 command.
 *
 * Returns: (transfer full): the context, or NULL with @error set
 *   (VROT_HOST_TPM_ERROR_IO for a TCTI that cannot be loaded or reached).
 */
VrotHostTpm *vrot_host_tpm_open(const char *tcti, GError **error);

/** vrot_host_tpm_free: closes the ESYS context and the TCTI; accepts NULL. */
void vrot_host_tpm_free(VrotHostTpm *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotHostTpm, vrot_host_tpm_free)

/**
 * vrot_host_tpm_esys:
 * Returns: (transfer none): the ESYS context, for sibling modules (sealkey).
 *   Commands they send are counted as well.
 */
ESYS_CONTEXT *vrot_host_tpm_esys(VrotHostTpm *self);

/** vrot_host_tpm_command_count: TPM commands sent since vrot_host_tpm_open(). */
guint64 vrot_host_tpm_command_count(const VrotHostTpm *self);
/** vrot_host_tpm_command_usec: wall-clock microseconds those commands took, send to answer. */
guint64 vrot_host_tpm_command_usec(const VrotHostTpm *self);

/**
 * vrot_host_tpm_check:
 * @rc: a tpm2-tss return code
 * @what: the operation, for the message ("TPM2_Sign")
 * @error: return location
 *
 * The one place where TSS2_RC becomes GError: TRUE for TSS2_RC_SUCCESS,
 * else FALSE with @error set to VROT_HOST_TPM_ERROR_IO (TCTI layer),
 * _TPM (the TPM's answer) or _FAILED, the message "@what: <decoded rc>
 * (0x...)".
 */
gboolean vrot_host_tpm_check(TSS2_RC rc, const char *what, GError **error);

/**
 * VrotHostTpmCreated:
 * What vrot_host_tpm_provision() had to create (0: everything was found).
 */
typedef enum {
        VROT_HOST_TPM_CREATED_SRK = 1 << 0,
        VROT_HOST_TPM_CREATED_CA_KEY = 1 << 1,
        VROT_HOST_TPM_CREATED_COUNTER = 1 << 2,
} VrotHostTpmCreated;

/**
 * vrot_host_tpm_provision:
 * @ret_created: (out) (optional): what was created
 *
 * Finds the SRK, the CA key and the NV counter at their handles, checking
 * that each is what vrot would have made (same template; the counter's
 * name), or creates the missing ones.  Call once after open, before the
 * functions below.
 *
 * Cost, everything found: 5 (SRK: ReadPublic x2, CA key: ReadPublic x2,
 * counter: NV_ReadPublic).  Everything created: 12 (SRK: ReadPublic,
 * CreatePrimary, EvictControl, FlushContext; CA key: ReadPublic, Create,
 * Load, EvictControl, FlushContext; counter: NV_ReadPublic,
 * NV_DefineSpace, NV_Increment).
 *
 * Errors: VROT_HOST_TPM_ERROR_CONFLICT (a handle holds another object),
 * _TPM, _IO.
 */
gboolean vrot_host_tpm_provision(VrotHostTpm *self, VrotHostTpmCreated *ret_created,
                                 GError **error);

/**
 * vrot_host_tpm_srk:
 * Returns: the ESYS_TR of the storage primary key (valid after provision;
 *   empty authValue), the parent of the sealed state master key.
 */
ESYS_TR vrot_host_tpm_srk(VrotHostTpm *self);

/**
 * vrot_host_tpm_ca_public_key:
 * The host endorsement CA's public key.  No command (kept from provision).
 * Returns: (transfer full): an EC P-256 public key, or NULL with
 *   VROT_HOST_TPM_ERROR_FAILED.
 */
EVP_PKEY *vrot_host_tpm_ca_public_key(VrotHostTpm *self, GError **error);

/**
 * vrot_host_tpm_sign_digest:
 * @digest: the SHA-256 digest to sign (e.g. of a TBSCertificate)
 * @ret_der_ecdsa_sig: (out) (transfer full): the DER ECDSA-Sig-Value
 *   (RFC 3279 2.2.3), as an X.509 signatureValue holds it
 *
 * TPM2_Sign with the CA key, scheme ECDSA-SHA256, no hash-check ticket
 * (the key is not restricted).  Cost: 1 command.
 * Errors: VROT_HOST_TPM_ERROR_TPM, _IO, _FAILED.
 */
gboolean vrot_host_tpm_sign_digest(VrotHostTpm *self, const guint8 digest[32],
                                   GBytes **ret_der_ecdsa_sig, GError **error);

/**
 * vrot_host_tpm_counter_read:
 * Reads the NV counter.  Cost: 1 command (NV_Read).
 */
gboolean vrot_host_tpm_counter_read(VrotHostTpm *self, guint64 *ret_value, GError **error);

/**
 * vrot_host_tpm_counter_increment:
 * @ret_value: (out) (optional): the new value
 *
 * Adds one to the NV counter.  Cost: 1 command (NV_Increment), 2 with
 * @ret_value (NV_Read: NV_Increment returns nothing).  A counter index
 * that is deleted and defined again starts above the highest value any
 * counter of the TPM ever had (TPM2 Part 3, TPM2_NV_Increment), so it
 * never goes back.
 */
gboolean vrot_host_tpm_counter_increment(VrotHostTpm *self, guint64 *ret_value,
                                         GError **error);

/**
 * vrot_host_tpm_read_ek_cert:
 * @ret_der: (out) (transfer full): the RSA EK certificate (DER) from NV
 *   index 0x01c00002
 *
 * Cost: 2 + ceil(size / TPM_PT_NV_BUFFER_MAX) commands (NV_ReadPublic x2,
 * NV_Read per chunk), plus 1 GetCapability the first time per context.
 * A 1016-byte swtpm certificate: 3 (4 the first time).
 * Errors: VROT_HOST_TPM_ERROR_TPM (no such index: the TPM has no EK
 * certificate), _IO.
 */
gboolean vrot_host_tpm_read_ek_cert(VrotHostTpm *self, GBytes **ret_der, GError **error);

/**
 * vrot_host_tpm_certify_ca_key:
 * @qualifying_data: (nullable): the verifier's nonce (at most 64 bytes),
 *   copied into the TPMS_ATTEST's extraData
 * @ret_evidence: (out) (transfer full): the evidence in wire form (see
 *   lib/tpmevidence.h, whose vrot_tpmevidence_verify() checks it)
 *
 * Derives the AK (CreatePrimary in the endorsement hierarchy, same key
 * every time), has it TPM2_Certify the CA key, flushes it, and reads the
 * EK public and certificate.  Cost: 8 commands with a persistent EK
 * (ReadPublic x2, CreatePrimary, Certify, FlushContext, EK certificate 3),
 * +1 the first NV read per context; without a persistent EK, 1 more
 * (CreatePrimary of the EK instead of the second ReadPublic, and its
 * FlushContext).
 * Errors: VROT_HOST_TPM_ERROR_INVALID (nonce too long), _TPM, _IO, _FAILED.
 */
gboolean vrot_host_tpm_certify_ca_key(VrotHostTpm *self, GBytes *qualifying_data,
                                      VrotTpmevidence **ret_evidence, GError **error);

/**
 * vrot_host_tpm_transport_key:
 * The public key of the host transport key (0x81007602), which is found
 * or, the first time, created under the SRK and persisted.  Cost: 0 after
 * the first call of a context; 1 ReadPublic when found; Create, Load,
 * EvictControl, FlushContext when made.  Errors: _CONFLICT (another
 * program's object there), _TPM, _IO.
 */
EVP_PKEY *vrot_host_tpm_transport_key(VrotHostTpm *self, GError **error);

/**
 * vrot_host_tpm_transport_sign:
 * TPM2_Sign of a SHA-256 digest with the transport key (after
 * vrot_host_tpm_transport_key()): a TLS CertificateVerify, through
 * lib/tlskey.h.  Cost: 1.
 */
gboolean vrot_host_tpm_transport_sign(VrotHostTpm *self, const guint8 digest[32],
                                      GBytes **ret_der_ecdsa_sig, GError **error);

/**
 * vrot_host_tpm_quote:
 * @qualifying: the quote's qualifying data (1 to 64 bytes): in a linked
 *   attestation, the digest of the vTPM's quote (docs/attestation.md)
 * @pcr_mask: the SHA-256 PCRs to quote (bit i: PCR i), not 0
 * @ca_qualifying: the qualifying data (1 to 64 bytes) of the same AK's
 *   TPM2_Certify of the host CA key, which ties the AK to the host CA
 *   certificate
 * @ret_ca: (out) (transfer full): that certification (ak_public,
 *   key_public: the CA key, attest, signature)
 *
 * TPM2_Quote by the host attestation key, the one of the host evidence,
 * and its certification of the CA key.  Cost: CreatePrimary, one PCR_Read
 * per 8 PCRs, Quote, Certify, FlushContext: no EK, no NV read.
 */
gboolean vrot_host_tpm_quote(VrotHostTpm *self, GBytes *qualifying, guint32 pcr_mask,
                             GBytes *ca_qualifying, VrotTpmevidenceQuote **ret,
                             VrotTpmevidenceKey **ret_ca, GError **error);

/*
 * A migration import key (docs/migration.md, R-MIG-2): a one-time ECC P-256
 * ECDH key created under the SRK, transient, certified by the host AK, so
 * that a source host can seal a vTPM's state to it (lib/mseal.h) and only
 * this TPM can open it (TPM2_ECDH_ZGen).  Flushed when freed.
 */
typedef struct VrotHostImportKey VrotHostImportKey;

/**
 * vrot_host_tpm_import_key_new:
 * @qualifying: the certification's qualifying data (1 to 64 bytes: the
 *   session binding of the migration)
 * @ret_evidence: (out) (transfer full): the AK's TPM2_Certify of the key,
 *   with both public areas (decrypt set), for the source to check with
 *   vrot_tpmevidence_verify_key()
 *
 * Cost: Create, Load, CreatePrimary (AK), Certify, FlushContext.
 */
VrotHostImportKey *vrot_host_tpm_import_key_new(VrotHostTpm *self, GBytes *qualifying,
                                                VrotTpmevidenceKey **ret_evidence,
                                                GError **error);

/** vrot_host_import_key_zgen: a VrotMsealZFunc (@user_data: the import key): TPM2_ECDH_ZGen. */
gboolean vrot_host_import_key_zgen(const guint8 point[65], guint8 z[32], gpointer user_data,
                                   GError **error);

void vrot_host_import_key_free(VrotHostImportKey *k);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotHostImportKey, vrot_host_import_key_free)

/**
 * vrot_host_tpm_activate_credential:
 * @id_object: TPM2B_ID_OBJECT (wire form) from the verifier's
 *   TPM2_MakeCredential(EK public, AK name, secret)
 * @encrypted_secret: TPM2B_ENCRYPTED_SECRET (wire form), same origin
 * @ret_secret: (out) (transfer full): the recovered secret
 *
 * TPM2_ActivateCredential with the AK and the EK (policy session with
 * PolicySecret(endorsement), as the EK's policy asks).  The TPM releases
 * the secret only if the AK whose name it was made for is loaded in the
 * TPM that holds the EK's private key.  Cost: 7 commands with a
 * persistent EK (ReadPublic, CreatePrimary, StartAuthSession,
 * PolicySecret, ActivateCredential, FlushContext x2); 9 without.
 * Errors: VROT_HOST_TPM_ERROR_INVALID (malformed blobs), _TPM (the
 * credential is not for this AK and EK), _IO.
 */
gboolean vrot_host_tpm_activate_credential(VrotHostTpm *self, GBytes *id_object,
                                           GBytes *encrypted_secret, GBytes **ret_secret,
                                           GError **error);
