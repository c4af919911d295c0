/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The X.509 profiles of vrot's trust chain (DESIGN "Trust chain", R-ID-1,
 * R-VTPM-5, R-ROT-4):
 *
 *   fleet root (self-signed; a software key in --dev)
 *     └─ host endorsement CA (ECC P-256 key inside the host TPM)
 *          └─ vTPM EK certificates (TCG EK Credential Profile 2.x)
 *
 * docs/ek-certificate.md lists every field of each profile and why it is
 * there.  Certificates are built with OpenSSL's X509 API and signed through
 * a VrotSignDigestFunc: the host CA key can only sign a digest (TPM2_Sign),
 * so this module encodes and hashes the TBSCertificate itself, hands the
 * digest to the signer, and puts the returned signature into the
 * certificate.  Every certificate is re-parsed and verified against the
 * issuer's public key before it is returned, so a signer that signs with
 * the wrong key, or returns garbage, is caught here and not by a relying
 * party.
 */

#include <glib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "autoptr.h"

#define VROT_X509_ERROR (vrot_x509_error_quark())
GQuark vrot_x509_error_quark(void);

typedef enum {
        VROT_X509_ERROR_INVALID,         /* a parameter outside the profile */
        VROT_X509_ERROR_UNSUPPORTED_KEY, /* key type or size the profile does not allow */
        VROT_X509_ERROR_SIGNER,          /* the signer failed without an error of its own */
        VROT_X509_ERROR_BAD_SIGNATURE,   /* the signature does not verify under the issuer key */
        VROT_X509_ERROR_PARSE,           /* input is not a well-formed certificate */
        VROT_X509_ERROR_CRYPTO,          /* libcrypto failed (out of memory, RNG, ...) */
} VrotX509Error;

/* Largest DER certificate vrot_x509_from_der() and _from_pem() accept. */
#define VROT_X509_MAX_DER (64 * 1024)

/*
 * Scope cleanups for the OpenSSL types this API hands out.  Guarded so that
 * another header may define the same ones under the same guard.
 */

/**
 * VrotSignDigestFunc:
 * @digest: (transfer none): the hash of the DER TBSCertificate
 * @len: 32 (SHA-256) for P-256 and RSA issuers, 48 (SHA-384) for P-384
 * @ret_der_sig: (out) (transfer full): on success, the signatureValue: a DER
 *   ECDSA-Sig-Value (RFC 3279 2.2.3) for an EC issuer, the RSASSA-PKCS1-v1_5
 *   signature (RFC 8017 8.2) for an RSA issuer
 * @user_data: as given to vrot_x509_signer_new()
 * @error: the signer's own error (a TPM error stays a TPM error)
 *
 * Signs a digest with the issuer's private key, e.g. with TPM2_Sign in the
 * host TPM (TPM2 Part 3 20.2).  Returns TRUE, or FALSE with @error set.
 */
typedef gboolean (*VrotSignDigestFunc)(const guint8 *digest, gsize len, GBytes **ret_der_sig,
                                       gpointer user_data, GError **error);

/* An issuer: its certificate and a way to sign digests with its key. */
typedef struct VrotX509Signer VrotX509Signer;

/**
 * vrot_x509_signer_new:
 * @issuer: (transfer none): the issuer's certificate; a reference is taken.
 *   It must be a CA (basicConstraints cA TRUE, keyCertSign if keyUsage is
 *   present), carry a subjectKeyIdentifier (it becomes the
 *   authorityKeyIdentifier of what it issues) and hold an EC P-256, EC
 *   P-384 or RSA (>= 2048 bit) public key.
 * @func: signs digests with the private half of @issuer's key
 * @user_data: passed to @func
 * @destroy: (nullable): frees @user_data when the signer is freed; on
 *   failure @user_data stays the caller's and @destroy is not called
 *
 * Returns: (transfer full): the signer, or NULL with @error set
 * (VROT_X509_ERROR_INVALID, VROT_X509_ERROR_UNSUPPORTED_KEY).
 */
VrotX509Signer *vrot_x509_signer_new(X509 *issuer, VrotSignDigestFunc func, gpointer user_data,
                                     GDestroyNotify destroy, GError **error);

/**
 * vrot_x509_signer_new_software:
 * A signer over a private key held in this process (the --dev fleet root,
 * tests).  @key (transfer none; a reference is taken) must be the private
 * key of @issuer.  Errors as vrot_x509_signer_new(), and
 * VROT_X509_ERROR_INVALID if @key does not match @issuer.
 */
VrotX509Signer *vrot_x509_signer_new_software(X509 *issuer, EVP_PKEY *key, GError **error);

/** vrot_x509_signer_get_issuer: (transfer none) the issuer's certificate. */
X509 *vrot_x509_signer_get_issuer(const VrotX509Signer *signer);

/** vrot_x509_signer_free: frees @signer and its user data; accepts NULL. */
void vrot_x509_signer_free(VrotX509Signer *signer);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotX509Signer, vrot_x509_signer_free)

/*
 * Validity of every profile: notBefore is now; notAfter is @not_after
 * (seconds since the epoch, in the future, at most 9999-12-31T23:59:59Z),
 * or, when 0, 99991231235959Z: "no well-defined expiration date"
 * (RFC 5280 4.1.2.5), as TPM vendors use for device certificates.
 */

/* Subject and lifetime of the fleet root and of host endorsement CAs. */
typedef struct VrotX509CaParams {
        const char *common_name;        /* required: UTF-8, 1..64 characters */
        const char *organization;       /* nullable: UTF-8, 1..64 characters */
        gint64 not_after;               /* 0: 99991231235959Z */
} VrotX509CaParams;

/**
 * vrot_x509_root_cert:
 * A self-signed fleet root for --dev: basicConstraints cA TRUE pathLen 1
 * (root -> host CA -> end entity), keyUsage keyCertSign|cRLSign,
 * subjectKeyIdentifier, authorityKeyIdentifier = its own key identifier.
 * @key (transfer none) is the root's private key: EC P-256, P-384 or RSA
 * (>= 2048 bit).
 *
 * Returns: (transfer full): the certificate, or NULL with @error set
 * (VROT_X509_ERROR_INVALID, _UNSUPPORTED_KEY, _BAD_SIGNATURE, _CRYPTO).
 */
X509 *vrot_x509_root_cert(EVP_PKEY *key, const VrotX509CaParams *params, GError **error);

/**
 * vrot_x509_ca_cert:
 * The certificate of a host endorsement CA, issued by @root: basicConstraints
 * cA TRUE pathLen 0 (it issues only end-entity certificates: EK and service
 * identity certificates), keyUsage keyCertSign|cRLSign, subjectKeyIdentifier,
 * authorityKeyIdentifier of @root.  @ca_key (transfer none) is the CA's
 * public key (EC P-256 in the host TPM; P-384 and RSA >= 2048 also pass).
 * The CA key is not used: it never leaves the TPM.
 *
 * Returns: (transfer full): the certificate, or NULL with @error set: the
 * errors of vrot_x509_root_cert(), _SIGNER, or the signer's own error.
 */
X509 *vrot_x509_ca_cert(const VrotX509Signer *root, EVP_PKEY *ca_key,
                        const VrotX509CaParams *params, GError **error);

/* What an EK certificate says about the vTPM (docs/ek-certificate.md). */
typedef struct VrotX509EkParams {
        guint8 instance_uuid[16];       /* the VM or service instance (R-VTPM-3) */
        /*
         * The vTPM's TPM_PT_MANUFACTURER and TPM_PT_FIRMWARE_VERSION_1,
         * written as "id:" and 8 upper-case hex digits (0x56524F54 ->
         * id:56524F54).  Pass what the vTPM reports (TPM2_GetCapability),
         * so that the certificate and the TPM agree; see
         * docs/ek-certificate.md for libtpms's values.
         */
        guint32 tpm_manufacturer;
        const char *tpm_model;          /* required: UTF-8, 1..256, e.g. "vrot-vtpm" */
        guint32 tpm_version;
        const char *spec_family;        /* required: TPM_PT_FAMILY_INDICATOR, "2.0" */
        guint32 spec_level;             /* TPM_PT_LEVEL, 0 */
        guint32 spec_revision;          /* TPM_PT_REVISION, e.g. 164 for 1.64 */
        /*
         * Required: where a verifier attests the host under this vTPM; its
         * presence marks the certificate as a virtual platform's
         * (tcg-ce-virtualPlatformAttestationService, R-VTPM-5).  An absolute
         * URI of printable ASCII, at most 1024 characters.
         */
        const char *host_attestation_uri;
        gint64 not_after;               /* 0: 99991231235959Z */
} VrotX509EkParams;

/**
 * vrot_x509_ek_cert:
 * An EK certificate for @ek (transfer none; public key: RSA-2048 or ECC
 * NIST P-256), issued by the host endorsement CA @ca, following the TCG EK
 * Credential Profile for TPM 2.0 (version 2.x): subject CN=<instance UUID>;
 * critical subjectAltName with the TPM manufacturer, model and version as a
 * directoryName and urn:uuid:<instance UUID>; critical keyUsage
 * keyEncipherment (RSA) or keyAgreement (ECC); extKeyUsage
 * tcg-kp-EKCertificate; critical basicConstraints cA FALSE;
 * authorityKeyIdentifier; subjectDirectoryAttributes with the
 * TPMSpecification; and the virtual platform marker.
 *
 * Returns: (transfer full): the certificate, or NULL with @error set:
 * VROT_X509_ERROR_UNSUPPORTED_KEY for another key type or size,
 * _INVALID for parameters outside the profile, _SIGNER, _BAD_SIGNATURE,
 * _CRYPTO, or the signer's own error.
 */
X509 *vrot_x509_ek_cert(const VrotX509Signer *ca, EVP_PKEY *ek, const VrotX509EkParams *params,
                        GError **error);

/**
 * vrot_x509_ek_cert_der:
 * vrot_x509_ek_cert() as DER, checked the same way, for callers that only
 * store and send it (a create): not parsed back into an X509, whose public
 * key OpenSSL 3.0 decodes through a new decoder context, 0.1-0.4 ms for a
 * P-256 certificate (bench/README.md).
 */
GBytes *vrot_x509_ek_cert_der(const VrotX509Signer *ca, EVP_PKEY *ek,
                              const VrotX509EkParams *params, GError **error);

/* What a service identity certificate says (docs/identity.md). */
typedef struct VrotX509IdentityParams {
        const char *name;               /* required: subject CN, UTF-8, 1..64 characters */
        const char *uri;                /* required: the one SAN URI (SPIFFE ID), absolute */
        guint8 instance_uuid[16];       /* the service's vTPM instance */
        X509 *ek_cert;                  /* required: the vTPM's EK certificate the key is
                                         * linked to (transfer none) */
        gint64 not_after;               /* 0: 99991231235959Z */
        gboolean attestation_key;       /* an AK certificate: extKeyUsage
                                         * tcg-kp-AIKCertificate (2.23.133.8.3)
                                         * instead of serverAuth, clientAuth */
} VrotX509IdentityParams;

/**
 * vrot_x509_check_uri:
 * Would vrot_x509_identity_cert() take @uri as the SAN URI (an absolute
 * URI of 1 to 1024 printable ASCII characters)?  _INVALID if not.
 */
gboolean vrot_x509_check_uri(const char *uri, GError **error);

/**
 * vrot_x509_identity_cert:
 * A service identity certificate (ISO/IEC 27071 B.3.2.3) for @key
 * (transfer none; ECC NIST P-256, held in a vTPM), issued by the host
 * endorsement CA @ca: subject CN=@params->name, serialNumber=<instance
 * UUID>; one subjectAltName URI (@params->uri), so that it is a SPIFFE
 * X.509-SVID when the URI is a SPIFFE ID; critical basicConstraints cA
 * FALSE; critical keyUsage digitalSignature; extKeyUsage serverAuth and
 * clientAuth; subject and authority key identifiers; and
 * id-vrot-vtpm-binding (docs/oids.md): the instance as urn:uuid, the
 * serial and SHA-256 of @params->ek_cert.
 *
 * Returns: (transfer full): the certificate, or NULL with @error set as
 * vrot_x509_ek_cert().
 */
X509 *vrot_x509_identity_cert(const VrotX509Signer *ca, EVP_PKEY *key,
                              const VrotX509IdentityParams *params, GError **error);

/**
 * vrot_x509_vtpm_binding:
 * Reads id-vrot-vtpm-binding from @cert: *@ret_instance (transfer full,
 * optional) "urn:uuid:…", *@ret_ek_sha256 (transfer full, optional) the
 * 32-byte hash of the EK certificate.  Checks no signature.  Errors:
 * VROT_X509_ERROR_PARSE (absent or malformed).
 */
gboolean vrot_x509_vtpm_binding(const X509 *cert, gchar **ret_instance, GBytes **ret_ek_sha256,
                                GError **error);

/**
 * vrot_x509_transport_cert:
 * The certificate of a host's migration transport key @key (ECC NIST
 * P-256, in the host TPM; docs/migration.md), issued by the host's own
 * endorsement CA @ca: subject CN=@name and subjectAltName dNSName @name
 * (the name peers' policies list), critical basicConstraints cA FALSE,
 * critical keyUsage digitalSignature, extKeyUsage serverAuth, clientAuth
 * and id-vrot-kp-migration-peer (docs/oids.md), key identifiers.
 * Errors as vrot_x509_identity_cert(); _INVALID for a name that is not a
 * host name.
 */
X509 *vrot_x509_transport_cert(const VrotX509Signer *ca, EVP_PKEY *key, const char *name,
                               gint64 not_after, GError **error);

/* tcg-kp-AIKCertificate: the extKeyUsage of AK certificates. */
#define VROT_X509_OID_AIK_CERTIFICATE "2.23.133.8.3"

/** vrot_x509_has_eku: does @cert's extKeyUsage have the purpose @oid (dotted)? */
gboolean vrot_x509_has_eku(X509 *cert, const char *oid);

/** vrot_x509_is_migration_peer: does @cert's extKeyUsage have id-vrot-kp-migration-peer? */
gboolean vrot_x509_is_migration_peer(X509 *cert);

/* One revoked certificate. */
typedef struct VrotX509Revoked {
        const char *serial_hex;         /* the serial number, hexadecimal, positive */
        gint64 revoked_at;              /* seconds since the epoch */
} VrotX509Revoked;

/**
 * vrot_x509_crl:
 * A version 2 CRL (RFC 5280 5) issued by @ca (an EC P-256 or P-384
 * issuer) listing @revoked (@n entries): thisUpdate now, nextUpdate
 * @next_update, cRLNumber @number, authorityKeyIdentifier.  Signed through
 * @ca's VrotSignDigestFunc, re-parsed and verified before it is returned.
 *
 * Returns: (transfer full): the CRL, or NULL with @error set:
 * _UNSUPPORTED_KEY (an RSA issuer), _INVALID (a serial that is not
 * positive hexadecimal), _SIGNER, _BAD_SIGNATURE, _CRYPTO, or the
 * signer's own error.
 */
X509_CRL *vrot_x509_crl(const VrotX509Signer *ca, const VrotX509Revoked *revoked, gsize n,
                        guint64 number, gint64 next_update, GError **error);

/** vrot_x509_crl_to_pem: (transfer full) @crl as a PEM "X509 CRL" block; errors: _CRYPTO. */
gchar *vrot_x509_crl_to_pem(const X509_CRL *crl, GError **error);

/**
 * vrot_x509_csr:
 * A PKCS#10 certification request (RFC 2986) for @key (transfer none: the
 * public key, EC P-256, P-384 or RSA >= 2048; the private half stays where
 * it is), subject O=@subject->organization (if set), CN=@subject->common_name
 * (@subject->not_after is not used), no attributes.  OpenSSL builds the
 * structure; @func signs its digest, e.g. TPM2_Sign in the host TPM: the
 * request proves possession of a key that never leaves the TPM.  The
 * request is re-parsed and its signature verified under @key before it is
 * returned.
 *
 * Returns: (transfer full): the request, or NULL with @error set (as
 * vrot_x509_ca_cert(): _INVALID, _UNSUPPORTED_KEY, _SIGNER,
 * _BAD_SIGNATURE, _CRYPTO, or the signer's own error).
 */
X509_REQ *vrot_x509_csr(EVP_PKEY *key, const VrotX509CaParams *subject, VrotSignDigestFunc func,
                        gpointer user_data, GError **error);

/** vrot_x509_csr_to_pem: (transfer full) @csr as a PEM "CERTIFICATE REQUEST"; errors: _CRYPTO. */
gchar *vrot_x509_csr_to_pem(const X509_REQ *csr, GError **error);

/**
 * vrot_x509_csr_from_pem:
 * Parses the first "CERTIFICATE REQUEST" block of @len bytes of PEM text
 * (untrusted: at most 64 KiB of DER).  Checks no signature
 * (X509_REQ_verify() does).  Returns (transfer full) the request, or NULL
 * with VROT_X509_ERROR_PARSE.
 */
X509_REQ *vrot_x509_csr_from_pem(const gchar *pem, gsize len, GError **error);

/**
 * vrot_x509_chain_from_pem:
 * Parses every "CERTIFICATE" block of @len bytes of PEM text (untrusted;
 * text between blocks is ignored): 1 to @max certificates, each at most
 * VROT_X509_MAX_DER.  Returns (transfer full) them in their order, or NULL
 * with VROT_X509_ERROR_PARSE (none, more than @max, a malformed block).
 * Checks no signature.  Free with sk_X509_pop_free(…, X509_free).
 */
STACK_OF(X509) *vrot_x509_chain_from_pem(const gchar *pem, gsize len, guint max,
                                         GError **error);

/** vrot_x509_to_der: (transfer full) the DER encoding of @cert; errors: _CRYPTO. */
GBytes *vrot_x509_to_der(const X509 *cert, GError **error);

/** vrot_x509_to_pem: (transfer full) @cert as a PEM "CERTIFICATE" block; errors: _CRYPTO. */
gchar *vrot_x509_to_pem(const X509 *cert, GError **error);

/** vrot_x509_der_to_pem: the same of a certificate's @der, not parsed. */
gchar *vrot_x509_der_to_pem(GBytes *der, GError **error);

/**
 * vrot_x509_from_der:
 * Parses exactly one DER certificate of @len bytes (untrusted: at most
 * VROT_X509_MAX_DER, no trailing bytes).  Returns (transfer full) the
 * certificate, or NULL with VROT_X509_ERROR_PARSE.  Checks no signature.
 */
X509 *vrot_x509_from_der(const guint8 *der, gsize len, GError **error);

/**
 * vrot_x509_from_pem:
 * Parses the first "CERTIFICATE" block of @len bytes of PEM text
 * (untrusted; text around the block is ignored).  Returns (transfer full)
 * the certificate, or NULL with VROT_X509_ERROR_PARSE.  Checks no signature.
 */
X509 *vrot_x509_from_pem(const gchar *pem, gsize len, GError **error);

/**
 * vrot_x509_no_passphrase:
 * An OpenSSL pem_password_cb that refuses: reading an encrypted PEM key
 * fails with an error instead of prompting on a terminal (a daemon has
 * none, and a CLI run by a script must not hang).
 */
int vrot_x509_no_passphrase(char *buf, int size, int rwflag, void *u);
