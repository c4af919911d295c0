/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The host's state master key (DESIGN "Sealed state", R-SEAL-1, R-SEAL-2,
 * R-ROT-2).
 *
 * One 32-byte key per host, kept only as a keyedhash data object sealed
 * in the host TPM under a storage parent.  The object has no usable
 * authValue (userWithAuth clear); its authPolicy is
 *
 *     TPM2_PolicyAuthorize(keySign = operator policy key, policyRef = VROT_SEALKEY_POLICY_REF)
 *
 * so it unseals in any policy session whose digest the operator key has
 * signed.  The operator signs PolicyPCR digests ("PCR authorisations"):
 * after a host update the operator signs the new expected PCR values and
 * the same sealed object keeps working; nothing is re-sealed (R-SEAL-2).
 * A recovery copy can be wrapped to an operator's offline RSA key.
 *
 * docs/sealing.md describes the object, the three file formats, the
 * host-TPM command counts and the operator procedures.
 *
 * No function here logs.  Error messages name files, policies and PCRs,
 * never key bytes.
 */

#include <glib.h>
#include <openssl/evp.h>
#include <tss2/tss2_esys.h>

#include "autoptr.h"


#define VROT_SEALKEY_ERROR (vrot_sealkey_error_quark())
GQuark vrot_sealkey_error_quark(void);

/**
 * VrotSealkeyError:
 * @VROT_SEALKEY_ERROR_FAILED: I/O, memory or OpenSSL failure.
 * @VROT_SEALKEY_ERROR_INVALID: malformed input: a PCR specification, a key
 *   of the wrong type or size, a file that does not parse.
 * @VROT_SEALKEY_ERROR_TPM: the host TPM (or the TSS talking to it) failed
 *   in a way not covered by a more precise code.
 * @VROT_SEALKEY_ERROR_PCR_MISMATCH: the host's PCRs match no authorised PCR
 *   policy (a host update the operator has not authorised yet), or there
 *   is no authorisation at all.
 * @VROT_SEALKEY_ERROR_UNTRUSTED_KEY: an authorisation, sealed object or
 *   recovery copy was made for another operator key.
 * @VROT_SEALKEY_ERROR_BAD_SIGNATURE: the host TPM found that an
 *   authorisation's signature does not verify under the operator key.
 * @VROT_SEALKEY_ERROR_TAMPERED: a file is well-formed but inconsistent (a
 *   PCR value or digest changed after signing), the host TPM refused the
 *   sealed object (integrity: tampered, or another TPM or parent), or the
 *   recovery copy does not decrypt.
 * @VROT_SEALKEY_ERROR_POLICY: the host TPM refused the policy session.
 * @VROT_SEALKEY_ERROR_EXISTS: provisioning would overwrite a sealed key.
 */
typedef enum {
        VROT_SEALKEY_ERROR_FAILED,
        VROT_SEALKEY_ERROR_INVALID,
        VROT_SEALKEY_ERROR_TPM,
        VROT_SEALKEY_ERROR_PCR_MISMATCH,
        VROT_SEALKEY_ERROR_UNTRUSTED_KEY,
        VROT_SEALKEY_ERROR_BAD_SIGNATURE,
        VROT_SEALKEY_ERROR_TAMPERED,
        VROT_SEALKEY_ERROR_POLICY,
        VROT_SEALKEY_ERROR_EXISTS,
} VrotSealkeyError;

#define VROT_SEALKEY_KEY_LEN 32

/* Fixed policyRef of every PCR authorisation: a signature made for some
 * other PolicyAuthorize object with the same operator key is useless here. */
#define VROT_SEALKEY_POLICY_REF "vrot state master key v1"

/* File names inside the sealkey directory (vrot_sealkey_provision/_open). */
#define VROT_SEALKEY_SEALED_FILE   "master.sealed"
#define VROT_SEALKEY_RECOVERY_FILE "master.recovery"
#define VROT_SEALKEY_AUTH_SUFFIX   ".auth"
#define VROT_SEALKEY_INITIAL_AUTH  "initial.auth"

/**
 * VrotSealkeyPcrs:
 * A PCR selection in one bank: "sha256:0,2,4,7".
 * @bank: TPM2_ALG_SHA1, _SHA256, _SHA384 or _SHA512
 * @mask: bit n set = PCR n selected (0..23); never 0
 */
typedef struct {
        TPMI_ALG_HASH bank;
        guint32 mask;
} VrotSealkeyPcrs;

/**
 * vrot_sealkey_pcrs_parse:
 * Parses "BANK:N[,N...]" (bank sha1, sha256, sha384 or sha512; PCRs 0..23,
 * each at most once, any order).  @ret is written only on success.
 * Errors: VROT_SEALKEY_ERROR_INVALID.
 */
gboolean vrot_sealkey_pcrs_parse(const char *spec, VrotSealkeyPcrs *ret, GError **error);

/** vrot_sealkey_pcrs_format: (transfer full) "sha256:0,2,4,7", ascending. */
char *vrot_sealkey_pcrs_format(const VrotSealkeyPcrs *pcrs);

/**
 * vrot_sealkey_read_pcrs:
 * Reads the selected PCRs of the host TPM (TPM2_PCR_Read: one command per
 * 8 PCRs).  *@ret_values is (transfer full) the values concatenated in
 * ascending PCR order, the input of vrot_sealkey_authorize() and the same
 * bytes as `tpm2_pcrread -o`.  Errors: VROT_SEALKEY_ERROR_TPM.
 */
gboolean vrot_sealkey_read_pcrs(ESYS_CONTEXT *esys, const VrotSealkeyPcrs *pcrs,
                                GBytes **ret_values, GError **error);

/* ---- operator keys ---------------------------------------------------- */

/**
 * vrot_sealkey_key_generate:
 * A new ECC P-256 key pair, the --dev operator policy key the daemon keeps
 * in its state directory.  Returns (transfer full) the key, or NULL.
 */
EVP_PKEY *vrot_sealkey_key_generate(GError **error);

/**
 * vrot_sealkey_key_save:
 * Writes @key as PEM to @path, durably (temp file, fsync, rename): the
 * private key (PKCS#8, mode 0600) when @with_private, else the public key
 * (SubjectPublicKeyInfo, mode 0644).  Errors: VROT_SEALKEY_ERROR_FAILED,
 * VROT_SEALKEY_ERROR_INVALID (@with_private but @key has no private part).
 */
gboolean vrot_sealkey_key_save(EVP_PKEY *key, const char *path, gboolean with_private,
                               GError **error);

/**
 * vrot_sealkey_key_load:
 * Loads a PEM private key, or failing that a PEM public key, from @path.
 * Returns (transfer full) the key, or NULL (VROT_SEALKEY_ERROR_FAILED if
 * the file cannot be read, VROT_SEALKEY_ERROR_INVALID if it is no PEM key).
 */
EVP_PKEY *vrot_sealkey_key_load(const char *path, GError **error);

/**
 * vrot_sealkey_key_public:
 * How the TPM sees operator key @key (ECC P-256 or RSA 2048..4096, public
 * part used): the TPMT_PUBLIC that TPM2_LoadExternal gets and its name,
 * the keySign of TPM2_PolicyAuthorize.  Either out-parameter may be NULL.
 * Errors: VROT_SEALKEY_ERROR_INVALID for other key types.
 */
gboolean vrot_sealkey_key_public(EVP_PKEY *key, TPM2B_PUBLIC *ret_public,
                                 TPM2B_NAME *ret_name, GError **error);

/* ---- PCR authorisations ------------------------------------------------ */

typedef struct VrotSealkeyAuth VrotSealkeyAuth;

/**
 * vrot_sealkey_authorize:
 * The operator's signature over PolicyPCR(@pcrs, @values): @values are the
 * expected PCR values (digest size of the bank each, ascending PCR order,
 * e.g. from `tpm2_pcrread -o` on a reference host after the update).
 * @key must hold the private operator key.  No TPM is involved.
 * Returns (transfer full) the authorisation, or NULL with
 * VROT_SEALKEY_ERROR_INVALID (wrong length, no private key) or _FAILED.
 */
VrotSealkeyAuth *vrot_sealkey_authorize(EVP_PKEY *key, const VrotSealkeyPcrs *pcrs,
                                        GBytes *values, GError **error);

/**
 * vrot_sealkey_authorize_current:
 * vrot_sealkey_read_pcrs() followed by vrot_sealkey_authorize(): authorises
 * the host's PCR values as they are now (first start with --dev).
 */
VrotSealkeyAuth *vrot_sealkey_authorize_current(ESYS_CONTEXT *esys, EVP_PKEY *key,
                                                const VrotSealkeyPcrs *pcrs,
                                                GError **error);

/**
 * vrot_sealkey_auth_parse:
 * Parses the text form of docs/sealing.md ("vrot-pcr-authorisation 1").
 * Checks syntax and that the "policy" line is the PolicyPCR digest of the
 * listed PCR values (else VROT_SEALKEY_ERROR_TAMPERED); the signature is
 * checked by the host TPM at unseal.  @label (nullable) names the
 * authorisation in later error messages (the file name).  Pure: no I/O.
 * Returns (transfer full) the authorisation, or NULL with
 * VROT_SEALKEY_ERROR_INVALID or _TAMPERED.
 */
VrotSealkeyAuth *vrot_sealkey_auth_parse(const char *buf, gsize len, const char *label,
                                         GError **error);

/** vrot_sealkey_auth_format: (transfer full) the text form, NUL-terminated. */
char *vrot_sealkey_auth_format(const VrotSealkeyAuth *auth);

/** vrot_sealkey_auth_load: reads and parses @path, labelled with its base name. */
VrotSealkeyAuth *vrot_sealkey_auth_load(const char *path, GError **error);

/** vrot_sealkey_auth_save: writes the text form to @path durably, mode 0644. */
gboolean vrot_sealkey_auth_save(const VrotSealkeyAuth *auth, const char *path,
                                GError **error);

/**
 * vrot_sealkey_auth_load_dir:
 * Loads every regular file named "*.auth" in @dir, sorted by name.
 * *@ret_auths is (transfer full) a GPtrArray of VrotSealkeyAuth (possibly
 * empty).  Any file that does not parse fails the whole call.
 */
gboolean vrot_sealkey_auth_load_dir(const char *dir, GPtrArray **ret_auths, GError **error);

/** vrot_sealkey_auth_get_policy: (transfer none) the signed PolicyPCR digest. */
const TPM2B_DIGEST *vrot_sealkey_auth_get_policy(const VrotSealkeyAuth *auth);

/** vrot_sealkey_auth_get_pcrs: (transfer none) the PCR selection. */
const VrotSealkeyPcrs *vrot_sealkey_auth_get_pcrs(const VrotSealkeyAuth *auth);

/** vrot_sealkey_auth_free: accepts NULL. */
void vrot_sealkey_auth_free(VrotSealkeyAuth *auth);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotSealkeyAuth, vrot_sealkey_auth_free)

/* ---- the sealed object -------------------------------------------------- */

/**
 * vrot_sealkey_create:
 * @esys: the host TPM
 * @parent: loaded storage parent (the host's SRK); its authValue must be
 *   set on the ESYS_TR (Esys_TR_SetAuth) if it is not empty
 * @policy_key: operator policy key; only its public part is used
 * @recovery_key: (nullable): operator's offline RSA key (>= 2048 bits,
 *   public part used) to wrap a recovery copy to
 * @ret_sealed: (out) (transfer full): the "master.sealed" file contents
 * @ret_recovery: (out) (optional) (transfer full): the "master.recovery"
 *   file contents, NULL when @recovery_key is NULL
 * @ret_key: (out) (optional) (transfer full): the new master key, so first
 *   start needs no unseal
 *
 * Draws a new random master key and seals it under @parent with the
 * PolicyAuthorize policy.  Two host-TPM commands (StartAuthSession for a
 * session salted with @parent that encrypts the key on its way in, then
 * Create).  Out-parameters are written only on success.
 */
gboolean vrot_sealkey_create(ESYS_CONTEXT *esys, ESYS_TR parent, EVP_PKEY *policy_key,
                             EVP_PKEY *recovery_key, GBytes **ret_sealed,
                             GBytes **ret_recovery, VrotSecret **ret_key,
                             GError **error);

/**
 * vrot_sealkey_reseal:
 * Seals an existing master key @master (transfer none) as
 * vrot_sealkey_create() would: after vrot_sealkey_recover() on a host whose
 * TPM was replaced or cleared, or to move to a new operator policy key.
 * The vTPMs keep their state because the key stays the same.  Two
 * host-TPM commands.  Errors: VROT_SEALKEY_ERROR_INVALID (@master not
 * VROT_SEALKEY_KEY_LEN bytes, unusable keys), _TPM, _FAILED.
 */
gboolean vrot_sealkey_reseal(ESYS_CONTEXT *esys, ESYS_TR parent, EVP_PKEY *policy_key,
                             EVP_PKEY *recovery_key, const VrotSecret *master,
                             GBytes **ret_sealed, GBytes **ret_recovery, GError **error);

/**
 * vrot_sealkey_sealed_parse:
 * Splits "master.sealed" contents into the object's public and private
 * areas and checks that the public area is a vrot sealed master key
 * (keyedhash data object, SHA-256, fixedTPM|fixedParent, no userWithAuth,
 * 32-byte authPolicy).  Pure; either out-parameter may be NULL.
 * Errors: VROT_SEALKEY_ERROR_INVALID.
 */
gboolean vrot_sealkey_sealed_parse(const guint8 *buf, gsize len, TPM2B_PUBLIC *ret_public,
                                   TPM2B_PRIVATE *ret_private, GError **error);

/**
 * vrot_sealkey_unseal:
 * @esys: the host TPM
 * @parent: the storage parent @sealed was created under
 * @sealed: "master.sealed" contents
 * @policy_key: the trusted operator policy key (public part used)
 * @auths: (element-type VrotSealkeyAuth): candidate PCR authorisations
 * @ret_key: (out) (transfer full): the master key
 *
 * Reads the host's PCRs, takes the first authorisation signed by
 * @policy_key whose PCR values match, and unseals through PolicyPCR +
 * VerifySignature + PolicyAuthorize in a session salted with @parent that
 * encrypts the key on its way out.  Ten host-TPM commands when the
 * authorisations select at most 8 PCRs of one bank (docs/sealing.md).
 *
 * Errors: VROT_SEALKEY_ERROR_INVALID (@sealed malformed),
 * _UNTRUSTED_KEY (@sealed or every authorisation made for another key),
 * _PCR_MISMATCH (message names each authorisation and its first differing
 * PCR), _BAD_SIGNATURE, _TAMPERED (TPM refused the sealed object),
 * _POLICY, _TPM.  Every object and session loaded is flushed again.
 */
gboolean vrot_sealkey_unseal(ESYS_CONTEXT *esys, ESYS_TR parent, GBytes *sealed,
                             EVP_PKEY *policy_key, GPtrArray *auths,
                             VrotSecret **ret_key, GError **error);

/* ---- recovery ------------------------------------------------------------ */

/**
 * vrot_sealkey_recover:
 * Unwraps "master.recovery" contents with the operator's offline RSA
 * private key (RSA-OAEP, SHA-256).  No TPM is involved: this is the path
 * when the host TPM is gone.  *@ret_key is (transfer full).
 * Errors: VROT_SEALKEY_ERROR_INVALID (malformed file, not an RSA private
 * key), _UNTRUSTED_KEY (wrapped to another key), _TAMPERED (does not
 * decrypt).
 */
gboolean vrot_sealkey_recover(GBytes *recovery, EVP_PKEY *recovery_private,
                              VrotSecret **ret_key, GError **error);

/* ---- the sealkey directory ------------------------------------------------ */

/**
 * vrot_sealkey_provision:
 * First start: vrot_sealkey_create(), then writes @dir/master.recovery
 * (when @recovery_key), @dir/initial.auth (when @policy_key holds the
 * private key, i.e. --dev: the host's current @pcrs, one PCR_Read more)
 * and last @dir/master.sealed, so a crash before the end leaves an
 * unprovisioned directory, never a sealed key without its companions.
 * Refuses (VROT_SEALKEY_ERROR_EXISTS) when master.sealed exists.
 * *@ret_key is (transfer full) the new master key.
 */
gboolean vrot_sealkey_provision(ESYS_CONTEXT *esys, ESYS_TR parent, const char *dir,
                                const VrotSealkeyPcrs *pcrs, EVP_PKEY *policy_key,
                                EVP_PKEY *recovery_key, VrotSecret **ret_key,
                                GError **error);

/**
 * vrot_sealkey_open:
 * Every later start: vrot_sealkey_unseal() of @dir/master.sealed with the
 * authorisations @dir/ *.auth.  Errors as vrot_sealkey_unseal(), plus
 * VROT_SEALKEY_ERROR_FAILED when master.sealed cannot be read and
 * _PCR_MISMATCH when there is no authorisation.
 */
gboolean vrot_sealkey_open(ESYS_CONTEXT *esys, ESYS_TR parent, const char *dir,
                           EVP_PKEY *policy_key, VrotSecret **ret_key, GError **error);
