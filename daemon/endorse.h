/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Endorsement of a fresh vTPM: the manufacturing step of vrotd's `create`
 * (DESIGN "Lifecycle", "Trust chain").  Over any TCTI that reaches the vTPM
 * (`swtpm:path=DATA` for a worker's data socket), with one ESYS context of
 * its own, opened and closed by each call:
 *
 *   0x81010001  RSA-2048 EK, TCG EK Credential Profile 2.x template L-1
 *   0x8101000a  ECC NIST P-256 EK, template L-2 (the "low range" pair)
 *   0x01c00002  DER certificate of the RSA EK
 *   0x01c0000a  DER certificate of the ECC EK
 *
 * The EKs are primary keys of the endorsement hierarchy made from the
 * templates exactly as the profile gives them (no template or nonce in
 * NV), so `tpm2_createek -G rsa` / `-G ecc` in the guest derive the very
 * same keys, and `tpm2_getekcertificate` finds the certificates.  The
 * certificates follow docs/ek-certificate.md; their TPM manufacturer,
 * model, version and specification are what the vTPM itself reports
 * (TPM2_GetCapability, TPM_PT_FIXED): the certificate and the TPM agree.
 *
 * NV attributes of the certificate indices (TPMA_NV, TPM2 Part 2 13.4)
 * are swtpm_setup's (0.7.1 to 0.9, swtpm_tpm2_write_ek_cert_nvram), with
 * the lock its --lock-nvram adds:
 *
 *   PLATFORMCREATE  defined with platform authorization, as the platform
 *                   manufacturer provisions EK certificates; only the
 *                   platform can undefine it (TPM2_NV_UndefineSpace)
 *   PPWRITE         only the platform may write: no OWNERWRITE/AUTHWRITE
 *   WRITEDEFINE     after TPM2_NV_WriteLock the index stays write-locked
 *                   until it is undefined, across TPM Reset and Restart.
 *                   vrot sends the lock, so every TPM2_NV_Write fails
 *                   afterwards with TPM_RC_NV_LOCKED, the platform's and
 *                   the owner's alike (the lock is checked before the
 *                   authorization, Part 4 NvWriteAccessChecks()).
 *                   PPWRITE alone would let a guest whose firmware leaves
 *                   the platform authValue empty (a service vTPM, a kernel
 *                   booted without TPM-aware firmware) rewrite its own
 *                   certificate.
 *   PPREAD, OWNERREAD, AUTHREAD
 *                   readable by anyone: the authValue is empty, and
 *                   tpm2_getekcertificate and tpm2_nvread read with it
 *   NO_DA           reading with an empty authValue must never count
 *                   towards the dictionary-attack lockout
 *
 * nameAlg SHA-256, empty authPolicy, size = the certificate's DER length
 * (certificates are written in chunks of TPM_PT_NV_BUFFER_MAX).  What
 * vrot does not prevent: a guest that holds platform authorization can
 * still undefine the index (and evict the EKs with owner authorization);
 * guarding the platform hierarchy is the guest firmware's job (PC Client
 * Platform TPM Profile), and the certificates remain verifiable copies
 * of what vrotd issued.
 *
 * Endorsing is a one-time manufacturing step and is not idempotent: a vTPM
 * that already holds either EK handle or either certificate index is
 * refused with VROT_ENDORSE_ERROR_ENDORSED before anything changes.  The
 * EKs are created and both certificates signed before anything is stored,
 * so a failing signer leaves the vTPM as it was (the transient keys are
 * flushed); a TPM failure while storing leaves a partly endorsed vTPM,
 * which the caller discards (a failed `create` deletes the instance).
 *
 * The manufacture may also come in two halves (vrotd's pool, pool.h):
 * vrot_endorse_make_eks() makes both EKs persistent in a fresh vTPM and
 * stores nothing else; later vrot_endorse_vtpm() with @premade certifies
 * those keys, stores their certificates and evicts an EK not asked for.
 * The same rules hold for each half: a pre-made vTPM with a certificate
 * index is refused as endorsed, one without both EKs is not pre-made.
 *
 * The platform, owner and endorsement authValues must be empty, as they
 * are on a freshly manufactured vTPM before any guest ran.  No function
 * logs; tpm2-tss itself writes to stderr unless TSS2_LOG says otherwise.
 * SIGPIPE is blocked in the calling thread during each call and a SIGPIPE
 * raised by a vTPM that went away is consumed, so such a vTPM is an
 * error (VROT_VTPM_ERROR_IO), not a dead daemon (daemon/vtpmconn.h).
 */

#include <glib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <tss2/tss2_tpm2_types.h>

#include "x509.h"

#define VROT_ENDORSE_ERROR (vrot_endorse_error_quark())
GQuark vrot_endorse_error_quark(void);

/**
 * VrotEndorseError:
 * @VROT_ENDORSE_ERROR_FAILED: an answer of the vTPM that makes no sense,
 *   or OpenSSL failed
 * @VROT_ENDORSE_ERROR_ENDORSED: the vTPM already has an EK or an EK
 *   certificate at vrot's handles: it was endorsed before
 * @VROT_ENDORSE_ERROR_TOO_LARGE: a certificate is larger than the vTPM's
 *   largest NV index (TPM_PT_NV_INDEX_MAX; a too long attestation URI)
 * @VROT_ENDORSE_ERROR_NOT_ENDORSED: vrot_endorse_read_certs() found no
 *   certificate index
 * @VROT_ENDORSE_ERROR_BAD_CERT: a certificate index is not as vrot makes it
 *   (other attributes, not written) or holds no well-formed certificate
 *
 * The errors of the connection (daemon/vtpmconn.h, VROT_VTPM_ERROR: the
 * vTPM out of reach, a command refused), the signer's own errors and
 * lib/x509's VROT_X509_ERROR pass through unchanged, with context
 * prefixed.
 */
typedef enum {
        VROT_ENDORSE_ERROR_FAILED,
        VROT_ENDORSE_ERROR_ENDORSED,
        VROT_ENDORSE_ERROR_TOO_LARGE,
        VROT_ENDORSE_ERROR_NOT_ENDORSED,
        VROT_ENDORSE_ERROR_BAD_CERT,
} VrotEndorseError;

/* TCG EK Credential Profile 2.x handles (TCG Registry of Reserved Handles). */
#define VROT_ENDORSE_RSA_EK_HANDLE      0x81010001u
#define VROT_ENDORSE_ECC_EK_HANDLE      0x8101000au
#define VROT_ENDORSE_RSA_CERT_INDEX     0x01c00002u
#define VROT_ENDORSE_ECC_CERT_INDEX     0x01c0000au

/* The TPMA_NV attributes of both certificate indices (see above). */
#define VROT_ENDORSE_CERT_NV_ATTRIBUTES                                          \
        (TPMA_NV_PLATFORMCREATE | TPMA_NV_PPWRITE | TPMA_NV_WRITEDEFINE |        \
         TPMA_NV_PPREAD | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD | TPMA_NV_NO_DA)

/** VrotEndorseEk: index into VrotEndorsement.ek[]. */
typedef enum {
        VROT_ENDORSE_EK_RSA,
        VROT_ENDORSE_EK_ECC,
        VROT_ENDORSE_N_EK,
} VrotEndorseEk;

/**
 * VrotEndorseStep:
 * The steps vrot_endorse_vtpm() times (VrotEndorsement.step_usec[]).
 * @VROT_ENDORSE_STEP_CONNECT: TCTI, ESYS and TPM2_Startup(CLEAR)
 *   (answered TPM_RC_INITIALIZE by a vTPM started with startup-clear)
 * @VROT_ENDORSE_STEP_INSPECT: the TPM properties and the check that
 *   nothing is endorsed yet (5 TPM2_GetCapability)
 * @VROT_ENDORSE_STEP_CREATE_RSA, @VROT_ENDORSE_STEP_CREATE_ECC:
 *   TPM2_CreatePrimary of each EK (the RSA prime search dominates)
 * @VROT_ENDORSE_STEP_CERT_RSA, @VROT_ENDORSE_STEP_CERT_ECC: building and
 *   signing each certificate (the signer's time included)
 * @VROT_ENDORSE_STEP_STORE_RSA, @VROT_ENDORSE_STEP_STORE_ECC:
 *   TPM2_EvictControl, TPM2_FlushContext, TPM2_NV_DefineSpace,
 *   TPM2_NV_Write per chunk and TPM2_NV_WriteLock for each EK
 * @VROT_ENDORSE_STEP_CLOSE: closing ESYS and the TCTI
 */
typedef enum {
        VROT_ENDORSE_STEP_CONNECT,
        VROT_ENDORSE_STEP_INSPECT,
        VROT_ENDORSE_STEP_CREATE_RSA,
        VROT_ENDORSE_STEP_CREATE_ECC,
        VROT_ENDORSE_STEP_CERT_RSA,
        VROT_ENDORSE_STEP_CERT_ECC,
        VROT_ENDORSE_STEP_STORE_RSA,
        VROT_ENDORSE_STEP_STORE_ECC,
        VROT_ENDORSE_STEP_CLOSE,
        VROT_ENDORSE_N_STEPS,
} VrotEndorseStep;

/** vrot_endorse_step_name: (transfer none) "create-rsa", ... for reports. */
const char *vrot_endorse_step_name(VrotEndorseStep step);

/**
 * VrotEndorseParams:
 * What the caller knows about the vTPM; everything else in the
 * certificates comes from the vTPM itself.
 * @instance_uuid: the VM or service instance (subject CN and SAN URI)
 * @host_attestation_uri: required: where a verifier attests the host
 *   under this vTPM (tcg-ce-virtualPlatformAttestationService; absolute
 *   URI of printable ASCII, at most 1024 characters, lib/x509 checks it)
 * @not_after: the certificates' notAfter (seconds since the epoch), or 0
 *   for 99991231235959Z
 * @ek_mask: 1 << #VrotEndorseEk of each EK to endorse; 0 for both
 * @premade: the vTPM was made by vrot_endorse_make_eks() (a pool entry):
 *   its EKs exist already and are read (TPM2_ReadPublic, checked against
 *   the template) instead of created; an EK not in @ek_mask is evicted,
 *   after both certificates are signed
 * @reissue: the vTPM came by migration (docs/migration.md): the EKs it
 *   holds are read (as for @premade; @ek_mask is ignored) and certified
 *   again by @signer, and each certificate index is undefined with
 *   platform authorization and written again with the new certificate
 */
typedef struct VrotEndorseParams {
        guint8 instance_uuid[16];
        const char *host_attestation_uri;
        gint64 not_after;
        guint ek_mask;                  /* 1 << VrotEndorseEk of the EKs to make; 0: all */
        gboolean premade;
        gboolean reissue;
} VrotEndorseParams;

/**
 * VrotEndorsedEk:
 * One EK and its certificate.
 * @cert_der: the EK certificate, DER, byte for byte what NV holds (an
 *   X509 only on demand: vrot_x509_ek_cert_der())
 * @public_key: the EK's public key
 * @tpm_public: the EK's TPM2B_PUBLIC in TPM wire form (what
 *   `tpm2_print -t TPM2B_PUBLIC` reads)
 * @handle: the EK's persistent handle
 * @nv_index: the certificate's NV index
 */
typedef struct VrotEndorsedEk {
        GBytes *cert_der;
        EVP_PKEY *public_key;
        GBytes *tpm_public;
        guint32 handle;
        guint32 nv_index;
} VrotEndorsedEk;

/**
 * VrotEndorsement:
 * What vrot_endorse_vtpm() made, owning all its members.
 * @ek: by VrotEndorseEk
 * @step_usec: wall-clock microseconds of each VrotEndorseStep
 * @tpm_manufacturer, @tpm_model, @tpm_version: what the vTPM reported and
 *   the certificates carry (TPM_PT_MANUFACTURER, the vendor strings with
 *   runs of spaces and NULs collapsed, TPM_PT_FIRMWARE_VERSION_1)
 */
typedef struct VrotEndorsement {
        VrotEndorsedEk ek[VROT_ENDORSE_N_EK];
        gint64 step_usec[VROT_ENDORSE_N_STEPS];
        guint32 tpm_manufacturer;
        gchar *tpm_model;
        guint32 tpm_version;
} VrotEndorsement;

/** vrot_endorsement_free: frees @e and everything it holds; accepts NULL. */
void vrot_endorsement_free(VrotEndorsement *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotEndorsement, vrot_endorsement_free)

/**
 * vrot_endorse_vtpm:
 * @tcti: (transfer none): TCTI configuration of the vTPM
 *   ("swtpm:path=DATA"); nothing else may use the vTPM meanwhile
 * @signer: (transfer none): the host endorsement CA (in vrotd, signing in
 *   the host TPM)
 * @params: (transfer none): see #VrotEndorseParams
 * @ret: (out) (transfer full): what was made; written only on success
 * @error: return location for a #VrotEndorseError, a #VrotX509Error or the
 *   signer's own error
 *
 * Creates both EKs, has @signer certify them and writes the certificates
 * to NV, as described at the top of this header.  TPM commands: 18 when
 * each certificate fits one TPM_PT_NV_BUFFER_MAX chunk (1024 bytes in
 * libtpms; a certificate with a short URI has ~700-900 bytes), one more per
 * further chunk: Startup, GetCapability x5 (properties, the four handles),
 * CreatePrimary x2, then per EK EvictControl, FlushContext, NV_DefineSpace,
 * NV_Write, NV_WriteLock.  8 of them change the vTPM's NV, after each of
 * which vrot-vtpm writes its state durably (permall and generation, each
 * fsync()ed with its directory): ~2.5-3.5 ms apiece on the test machine,
 * most of the storing steps' time.
 *
 * Errors: VROT_ENDORSE_ERROR_ENDORSED (endorsed before; nothing changed),
 * _TOO_LARGE (nothing changed), _FAILED, VROT_VTPM_ERROR; the errors of
 * vrot_x509_ek_cert() (nothing changed).
 *
 * Returns: TRUE on success.
 */
gboolean vrot_endorse_vtpm(const gchar *tcti, const VrotX509Signer *signer,
                           const VrotEndorseParams *params, VrotEndorsement **ret,
                           GError **error);

/**
 * vrot_endorse_make_eks:
 * @tcti: (transfer none): TCTI configuration of a fresh vTPM
 * @ret: (out) (transfer full): the EKs made (no certificates) and the
 *   step timings; written only on success
 * @error: return location for a #VrotEndorseError
 *
 * The expensive half of the manufacture, with no signer: TPM2_Startup,
 * then both EKs created from the templates and made persistent at
 * 0x81010001 and 0x8101000a (RSA key generation takes ~25 ms median with
 * a tail past 100 ms).  What vrotd's pool keeps (daemon/pool.h); a later
 * vrot_endorse_vtpm() with @premade certifies and stores them.  Refused
 * with VROT_ENDORSE_ERROR_ENDORSED if either handle or certificate index
 * exists.  TPM commands: 11 (Startup, GetCapability x4, then per EK
 * CreatePrimary, EvictControl, FlushContext).  Never touches the host TPM:
 * safe in a thread of its own.
 *
 * Returns: TRUE on success.
 */
gboolean vrot_endorse_make_eks(const gchar *tcti, VrotEndorsement **ret, GError **error);

/**
 * VrotEndorseSession:
 * vrot_endorse_vtpm() with @premade in two halves, for a pre-made vTPM that
 * runs before anybody asks for it (the pool's warm entry, pool.h): the
 * open connects, starts the TPM, reads what it is and both EKs (8 TPM
 * commands) while nobody waits; the finish certifies what a create asks
 * for (the signer's commands; no vTPM command) and closes.  The
 * connection stays open between the two: the worker's data socket is the
 * session's alone, and its TCTI raises no SIGPIPE (tctisock.h).  Open,
 * finish and free in the main thread.
 */
typedef struct VrotEndorseSession VrotEndorseSession;

/** vrot_endorse_session_open: the first half; (transfer full) the session, or NULL with @error. */
VrotEndorseSession *vrot_endorse_session_open(const gchar *tcti, GError **error);

/**
 * vrot_endorse_session_finish:
 * The second half, once: @params must have @premade.  Nothing is written
 * to the vTPM: the caller has its worker evict the EKs not in @ek_mask and
 * store the certificates of the others when it binds it (BIND,
 * lib/mkey.h), in process and while the caller writes the certificate
 * files.  The connection is closed either way; free @s afterwards.  *@ret
 * as vrot_endorse_vtpm()'s, with the steps of the open at 0.
 */
gboolean vrot_endorse_session_finish(VrotEndorseSession *s, const VrotX509Signer *signer,
                                     const VrotEndorseParams *params, VrotEndorsement **ret,
                                     GError **error);

/** vrot_endorse_session_free: closes and frees @s; accepts NULL. */
void vrot_endorse_session_free(VrotEndorseSession *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotEndorseSession, vrot_endorse_session_free)

/**
 * vrot_endorse_read_certs:
 * @tcti: (transfer none): TCTI configuration of the vTPM
 * @ret_rsa_cert: (out) (optional) (transfer full): the certificate at
 *   0x01c00002
 * @ret_ecc_cert: (out) (optional) (transfer full): the certificate at
 *   0x01c0000a
 * @error: return location for a #VrotEndorseError
 *
 * Reads the certificates back from NV with the indices' own (empty)
 * authValue, as a guest's tpm2_getekcertificate does, in chunks of
 * TPM_PT_NV_BUFFER_MAX.  The indices must carry
 * VROT_ENDORSE_CERT_NV_ATTRIBUTES, written and write-locked.  What NV
 * holds is parsed as untrusted input (vrot_x509_from_der()); no signature
 * is checked: verify the chain before trusting a certificate.  The out
 * parameters are written only on success.  TPM commands: 1 (properties),
 * plus per certificate asked for 3 (GetCapability, NV_ReadPublic x2) and
 * one NV_Read per TPM_PT_NV_BUFFER_MAX chunk: 9 for both, of one chunk
 * each.  It sends no TPM2_Startup, so a vTPM nobody started answers
 * TPM_RC_INITIALIZE (VROT_VTPM_ERROR_TPM).
 *
 * Errors: VROT_ENDORSE_ERROR_NOT_ENDORSED (an index is missing),
 * _BAD_CERT, _FAILED, VROT_VTPM_ERROR.
 *
 * Returns: TRUE on success.
 */
gboolean vrot_endorse_read_certs(const gchar *tcti, X509 **ret_rsa_cert, X509 **ret_ecc_cert,
                                 GError **error);
