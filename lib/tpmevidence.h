/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The verifier's side of the host evidence (docs/host-evidence.md,
 * R-ROT-2, R-ROT-4): proof that the host endorsement CA key was generated
 * in, and cannot leave, the TPM whose EK certificate chains to a TPM
 * vendor.  Whoever issues a host CA certificate runs it first: the --dev
 * fleet root inside vrotd, and the operator's CA through `vrotctl
 * host-enrol`.  Both go through vrot_tpmevidence_challenge(), so the two
 * check exactly the same things.
 *
 * Pure code, no TPM and no I/O: the host's answers are untrusted input,
 * parsed strictly (every TPM structure must be exactly its bytes, every
 * size bounded) before anything is verified.  The credential of step 6
 * (TPM2_MakeCredential) is computed in software.  No function logs.
 */

#include <glib.h>
#include <json-glib/json-glib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define VROT_TPMEVIDENCE_ERROR (vrot_tpmevidence_error_quark())
GQuark vrot_tpmevidence_error_quark(void);

/**
 * VrotTpmevidenceError:
 * One code per verification step of docs/host-evidence.md, so that a
 * caller (and a test) can tell which check refused the evidence.
 * @VROT_TPMEVIDENCE_ERROR_PARSE: malformed: a member missing or unknown,
 *   not base64, not the TPM structure it should be, bytes left over
 * @VROT_TPMEVIDENCE_ERROR_EK_CERT: step 1, the EK certificate does not
 *   chain to a trusted TPM vendor root
 * @VROT_TPMEVIDENCE_ERROR_EK: step 2, the EK public area is not the RSA
 *   2048 storage key of the certificate
 * @VROT_TPMEVIDENCE_ERROR_AK: step 3, the AK is not a restricted ECC
 *   P-256 signing key generated in a TPM
 * @VROT_TPMEVIDENCE_ERROR_SIGNATURE: step 4, the AK's signature does not
 *   verify over the attestation
 * @VROT_TPMEVIDENCE_ERROR_ATTEST: step 5, not a TPM-made certification of
 *   the CA key, or the CA key's attributes are not vrot's
 * @VROT_TPMEVIDENCE_ERROR_NONCE: step 5, extraData is not the nonce: stale
 *   or replayed evidence
 * @VROT_TPMEVIDENCE_ERROR_CREDENTIAL: step 6, the host's answer is not
 *   the secret: the AK is not in the TPM that holds the EK
 * @VROT_TPMEVIDENCE_ERROR_CRYPTO: OpenSSL failed (memory, RNG)
 * @VROT_TPMEVIDENCE_ERROR_PCRS: a quote's PCR selection or digest is not
 *   that of the PCR values that come with it
 */
typedef enum {
        VROT_TPMEVIDENCE_ERROR_PARSE,
        VROT_TPMEVIDENCE_ERROR_EK_CERT,
        VROT_TPMEVIDENCE_ERROR_EK,
        VROT_TPMEVIDENCE_ERROR_AK,
        VROT_TPMEVIDENCE_ERROR_SIGNATURE,
        VROT_TPMEVIDENCE_ERROR_ATTEST,
        VROT_TPMEVIDENCE_ERROR_NONCE,
        VROT_TPMEVIDENCE_ERROR_CREDENTIAL,
        VROT_TPMEVIDENCE_ERROR_CRYPTO,
        VROT_TPMEVIDENCE_ERROR_PCRS,
} VrotTpmevidenceError;

/* Longest nonce (TPM2B_DATA, sizeof(TPMU_HA)) and longest credential secret. */
#define VROT_TPMEVIDENCE_MAX_NONCE 64
#define VROT_TPMEVIDENCE_MAX_SECRET 64
/* What vrot_tpmevidence_challenge() uses for both. */
#define VROT_TPMEVIDENCE_NONCE_LEN 32
#define VROT_TPMEVIDENCE_SECRET_LEN 32

/**
 * VrotTpmevidence:
 * The evidence in wire form, as the host sends it.  TPM structures are in
 * their TPM wire form (tpm2-tss Tss2_MU_*_Marshal, what `tpm2_print -t
 * TYPE` reads).  All fields are (transfer full) and non-NULL.
 * @attest: TPMS_ATTEST of TPM2_Certify(CA key) by the AK: the signed bytes
 * @signature: DER ECDSA-Sig-Value by the AK over SHA-256(@attest)
 * @ak_public: TPM2B_PUBLIC of the AK
 * @ca_public: TPM2B_PUBLIC of the host endorsement CA key
 * @ek_public: TPM2B_PUBLIC of the RSA EK the AK is linked to
 * @ek_cert: DER RSA EK certificate (NV index 0x01c00002)
 */
typedef struct VrotTpmevidence {
        GBytes *attest;
        GBytes *signature;
        GBytes *ak_public;
        GBytes *ca_public;
        GBytes *ek_public;
        GBytes *ek_cert;
} VrotTpmevidence;

/** vrot_tpmevidence_free: frees @ev and its fields; accepts NULL. */
void vrot_tpmevidence_free(VrotTpmevidence *ev);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotTpmevidence, vrot_tpmevidence_free)

/**
 * vrot_tpmevidence_to_json:
 * The JSON form of @ev (vrot-api(7), host.evidence): an object with
 * "attest", "signature", "ak_public", "ca_public", "ek_public" (base64),
 * "ek_cert_pem" (PEM) and "ak_name" (hex of Name(AK), for people: a
 * verifier recomputes it).  Returns (transfer full) the object node, or
 * NULL with VROT_TPMEVIDENCE_ERROR_PARSE if @ev does not parse itself.
 */
JsonNode *vrot_tpmevidence_to_json(const VrotTpmevidence *ev, GError **error);

/**
 * vrot_tpmevidence_from_json:
 * @node: (transfer none): untrusted: what a host answered
 * @ret: (out) (transfer full): written only on success
 *
 * Parses the form vrot_tpmevidence_to_json() writes: exactly those seven
 * members, strict base64 (vrot_jsonrpc_base64_decode()) of bounded sizes,
 * one PEM certificate, and an "ak_name" that is the Name of "ak_public".
 * Pure.  Errors: VROT_TPMEVIDENCE_ERROR_PARSE naming the member.
 */
gboolean vrot_tpmevidence_from_json(JsonNode *node, VrotTpmevidence **ret, GError **error);

/**
 * vrot_tpmevidence_name:
 * @tpm2b_public: a TPM2B_PUBLIC in wire form
 *
 * Name = nameAlg || H(TPMT_PUBLIC) (TPM2 Part 1, 16); only nameAlg
 * SHA-256 is accepted.  Returns (transfer full) the 34 bytes, or NULL with
 * VROT_TPMEVIDENCE_ERROR_PARSE.
 */
GBytes *vrot_tpmevidence_name(GBytes *tpm2b_public, GError **error);

/* What the verification established: the keys it found trustworthy. */
typedef struct VrotTpmevidenceVerified VrotTpmevidenceVerified;

void vrot_tpmevidence_verified_free(VrotTpmevidenceVerified *v);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotTpmevidenceVerified, vrot_tpmevidence_verified_free)

/** (transfer none) the host endorsement CA's public key (EC P-256): what to certify. */
EVP_PKEY *vrot_tpmevidence_verified_ca_key(const VrotTpmevidenceVerified *v);
/** (transfer none) the EK's public key (RSA 2048), from its verified certificate. */
EVP_PKEY *vrot_tpmevidence_verified_ek_key(const VrotTpmevidenceVerified *v);
/** (transfer none) the EK certificate. */
X509 *vrot_tpmevidence_verified_ek_cert(const VrotTpmevidenceVerified *v);
/** (transfer none) Name(AK), 34 bytes: what the credential is made for. */
GBytes *vrot_tpmevidence_verified_ak_name(const VrotTpmevidenceVerified *v);

/**
 * vrot_tpmevidence_verify:
 * @ev: (transfer none): untrusted evidence
 * @nonce: (transfer none): the nonce the verifier sent (1 to 64 bytes)
 * @vendor_roots: (transfer none): trusted TPM vendor CA certificates
 * @untrusted: (transfer none) (nullable): intermediates that may help
 *   build the EK certificate's path, not trusted themselves
 * @ret: (out) (transfer full): written only on success
 *
 * Steps 1 to 5 of docs/host-evidence.md, after parsing every structure:
 * the EK certificate chains to @vendor_roots (at the current time), the EK
 * public area is that certificate's RSA 2048 storage key, the AK is a
 * restricted ECC P-256 signing key made in a TPM (fixedTPM, fixedParent,
 * sensitiveDataOrigin), its ECDSA-SHA256 signature verifies over
 * @ev->attest, which is a TPM-generated (magic TPM_GENERATED_VALUE)
 * certification (TPM_ST_ATTEST_CERTIFY) over @nonce of the object named
 * Name(@ev->ca_public), an ECC P-256 non-restricted signing key made in
 * a TPM.  Step 6 is vrot_tpmevidence_make_credential() and the host's
 * answer.
 *
 * Errors: the VrotTpmevidenceError of the first step that fails.
 */
gboolean vrot_tpmevidence_verify(const VrotTpmevidence *ev, GBytes *nonce,
                                 X509_STORE *vendor_roots, STACK_OF(X509) *untrusted,
                                 VrotTpmevidenceVerified **ret, GError **error);

/**
 * VrotTpmevidenceKey:
 * A key certified by an attestation key: what a vTPM (or a guest) sends
 * for a service identity (docs/identity.md).  Wire forms as in
 * #VrotTpmevidence; all fields (transfer full), non-NULL.
 * @ak_public: TPM2B_PUBLIC of the AK
 * @key_public: TPM2B_PUBLIC of the certified key
 * @attest: TPMS_ATTEST of TPM2_Certify(key) by the AK
 * @signature: DER ECDSA-Sig-Value by the AK over SHA-256(@attest)
 */
typedef struct VrotTpmevidenceKey {
        GBytes *ak_public;
        GBytes *key_public;
        GBytes *attest;
        GBytes *signature;
        /* The key decrypts (ECDH: a migration import key, docs/migration.md)
         * instead of signing. */
        gboolean decrypt;
} VrotTpmevidenceKey;

/** vrot_tpmevidence_key_free: frees @ev and its fields; accepts NULL. */
void vrot_tpmevidence_key_free(VrotTpmevidenceKey *ev);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotTpmevidenceKey, vrot_tpmevidence_key_free)

/**
 * vrot_tpmevidence_verify_key:
 * @ev: (transfer none): untrusted
 * @nonce: (transfer none) (nullable): the nonce the verifier sent (1 to 64
 *   bytes); NULL accepts any qualifying data, for a caller whose freshness
 *   comes from elsewhere (identity.complete: a one-time credential)
 * @ret_key: (out) (transfer full): the certified key, written only on success
 *
 * Steps 3 to 5 of docs/host-evidence.md for any key: every structure
 * parses exactly, the AK is a restricted ECC P-256 ECDSA-SHA256 signing
 * key made in a TPM, its signature verifies over @ev->attest, which is a
 * TPM-generated certification over @nonce of the object named
 * Name(@ev->key_public), an ECC P-256 unrestricted signing key (with
 * @ev->decrypt: decryption key, for ECDH) with fixedTPM, fixedParent and
 * sensitiveDataOrigin.  That the AK is in the
 * TPM of a given EK is the credential's business
 * (vrot_tpmevidence_make_credential()).  Pure.
 *
 * Errors: VROT_TPMEVIDENCE_ERROR_PARSE, _AK, _SIGNATURE, _ATTEST, _NONCE.
 */
gboolean vrot_tpmevidence_verify_key(const VrotTpmevidenceKey *ev, GBytes *nonce,
                                     EVP_PKEY **ret_key, GError **error);

/**
 * vrot_tpmevidence_make_credential:
 * @ek: (transfer none): the EK's public key (RSA 2048)
 * @name: (array length=name_len): the Name of the object the credential
 *   is for (Name(AK))
 * @secret: (array length=secret_len): the credential, 1 to 64 bytes
 * @ret_id_object: (out) (transfer full): TPM2B_ID_OBJECT, wire form
 * @ret_encrypted_secret: (out) (transfer full): TPM2B_ENCRYPTED_SECRET
 *
 * TPM2_MakeCredential in software (TPM2 Part 1, 24; the EK's parameters:
 * nameAlg SHA-256, AES-128-CFB): only the TPM holding the EK's private
 * key, with an object named @name loaded, gets @secret back from
 * TPM2_ActivateCredential.  Errors: VROT_TPMEVIDENCE_ERROR_CRYPTO, _EK
 * (@ek is not RSA 2048).
 */
gboolean vrot_tpmevidence_make_credential(EVP_PKEY *ek, const guint8 *name, gsize name_len,
                                          const guint8 *secret, gsize secret_len,
                                          GBytes **ret_id_object,
                                          GBytes **ret_encrypted_secret, GError **error);

/**
 * VrotTpmevidenceProver:
 * The host's half of the exchange, however it is reached: in-process
 * (vrotd --dev) or over the socket API (vrotctl).  Each returns TRUE, or
 * FALSE with its own error, which vrot_tpmevidence_challenge() passes on.
 * @evidence: the evidence for @nonce (host.evidence)
 * @activate: TPM2_ActivateCredential of the blobs (host.activate_credential)
 */
typedef struct VrotTpmevidenceProver {
        gboolean (*evidence)(gpointer data, GBytes *nonce, VrotTpmevidence **ret,
                             GError **error);
        gboolean (*activate)(gpointer data, GBytes *id_object, GBytes *encrypted_secret,
                             GBytes **ret_secret, GError **error);
} VrotTpmevidenceProver;

/**
 * vrot_tpmevidence_challenge:
 * The whole exchange of docs/host-evidence.md: a fresh random nonce,
 * @prover's evidence for it, vrot_tpmevidence_verify(), a fresh random
 * secret sent as a credential for Name(AK) under the EK, and @prover's
 * answer compared with it (in constant time).  The secret is kept in
 * locked memory and wiped.  Returns TRUE with *@ret (transfer full) the
 * verified keys, or FALSE with the prover's error or a
 * VrotTpmevidenceError (_CREDENTIAL: wrong answer).
 */
gboolean vrot_tpmevidence_challenge(const VrotTpmevidenceProver *prover, gpointer data,
                                    X509_STORE *vendor_roots, STACK_OF(X509) *untrusted,
                                    VrotTpmevidenceVerified **ret, GError **error);

/**
 * vrot_tpmevidence_check_ak:
 * @ak_public: TPM2B_PUBLIC (wire form), untrusted
 * @ret_key: (out) (transfer full): its public key
 *
 * Step 3 alone: a restricted ECC P-256 ECDSA-SHA256 signing key made in a
 * TPM (_PARSE, _AK).  Pure.
 */
gboolean vrot_tpmevidence_check_ak(GBytes *ak_public, EVP_PKEY **ret_key, GError **error);

/* PCRs of one SHA-256 bank: what a quote covers. */
#define VROT_TPMEVIDENCE_PCRS 24

/**
 * VrotTpmevidenceQuote:
 * A TPM2_Quote over SHA-256 PCRs and what a verifier needs with it.
 * @ak_public: TPM2B_PUBLIC of the AK (wire form)
 * @attest: the TPMS_ATTEST the TPM made
 * @signature: the AK's signature, DER ECDSA-Sig-Value
 * @pcr_mask: bit i set: PCR i is quoted (i < 24)
 * @pcr_values: the quoted PCRs' values, 32 bytes each, in ascending order
 */
typedef struct VrotTpmevidenceQuote {
        GBytes *ak_public;
        GBytes *attest;
        GBytes *signature;
        guint32 pcr_mask;
        GBytes *pcr_values;
} VrotTpmevidenceQuote;

void vrot_tpmevidence_quote_free(VrotTpmevidenceQuote *q);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotTpmevidenceQuote, vrot_tpmevidence_quote_free)

/**
 * vrot_tpmevidence_verify_quote:
 * @q: (transfer none): untrusted
 * @qualifying: (transfer none): what the quote's extraData must be
 * @ret_ak: (out) (optional) (transfer full): the AK's public key
 *
 * The AK is a restricted ECC P-256 ECDSA-SHA256 signing key made in a TPM
 * (_AK), its signature verifies over @q->attest (_SIGNATURE), which is a
 * TPM-generated quote (_ATTEST) over @qualifying (_NONCE) of exactly the
 * SHA-256 PCRs of @q->pcr_mask, whose digest is that of @q->pcr_values
 * (_PCRS).  Malformed input: _PARSE.  Pure.
 */
gboolean vrot_tpmevidence_verify_quote(const VrotTpmevidenceQuote *q, GBytes *qualifying,
                                       EVP_PKEY **ret_ak, GError **error);
