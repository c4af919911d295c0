/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "uuid.h"
#include "x509.h"

G_DEFINE_QUARK(vrot-x509-error-quark, vrot_x509_error)

/* TCG OIDs (TCG EK Credential Profile 2.x; TCG Credential Profiles 1.2
 * "virtualization oriented credential extensions"). */
#define OID_TCG_AT_TPM_MANUFACTURER "2.23.133.2.1"
#define OID_TCG_AT_TPM_MODEL "2.23.133.2.2"
#define OID_TCG_AT_TPM_VERSION "2.23.133.2.3"
#define OID_TCG_AT_TPM_SPECIFICATION "2.23.133.2.16"
#define OID_TCG_CE_VIRTUAL_PLATFORM_ATTESTATION_SERVICE "2.23.133.6.4"
#define OID_TCG_KP_EK_CERTIFICATE "2.23.133.8.1"
#define OID_TCG_KP_AIK_CERTIFICATE VROT_X509_OID_AIK_CERTIFICATE
#define OID_SUBJECT_DIRECTORY_ATTRIBUTES "2.5.29.9"
/* vrot's own arc (docs/oids.md). */
#define OID_VROT_VTPM_BINDING "2.25.21260699799348664199561699285766518384.1.1"
#define OID_VROT_KP_MIGRATION_PEER "2.25.21260699799348664199561699285766518384.2.1"

/* Upper bounds of the profiles' ASN.1 (ub-common-name, STRMAX, URIMAX). */
#define MAX_COMMON_NAME 64
#define MAX_STR 256
#define MAX_URI 1024
#define MAX_SIGNATURE 4096
#define MAX_PEM (1024 * 1024)
#define NOT_AFTER_FOREVER "99991231235959Z"
#define NOT_AFTER_MAX G_GINT64_CONSTANT(253402300799) /* 9999-12-31T23:59:59Z */

/* keyUsage bit numbers (RFC 5280 4.2.1.3). */
enum {
        USAGE_DIGITAL_SIGNATURE = 1u << 0,
        USAGE_KEY_ENCIPHERMENT = 1u << 2,
        USAGE_KEY_AGREEMENT = 1u << 4,
        USAGE_KEY_CERT_SIGN = 1u << 5,
        USAGE_CRL_SIGN = 1u << 6,
};

G_DEFINE_AUTOPTR_CLEANUP_FUNC(AUTHORITY_KEYID, AUTHORITY_KEYID_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GENERAL_NAME, GENERAL_NAME_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GENERAL_NAMES, GENERAL_NAMES_free)

static void ossl_free(void *p)
{
        OPENSSL_free(p);
}

/*
 * TPMSpecification ::= SEQUENCE { family UTF8String, level INTEGER,
 * revision INTEGER } (EK Credential Profile 2.x), and
 * SubjectDirectoryAttributes ::= SEQUENCE SIZE (1..MAX) OF Attribute
 * (RFC 5280 4.2.1.8), which OpenSSL 3.0 cannot encode by itself.  Declared
 * with OpenSSL's ASN.1 templates so that libcrypto writes the DER.
 */
typedef struct TPM_SPECIFICATION {
        ASN1_UTF8STRING *family;
        ASN1_INTEGER *level;
        ASN1_INTEGER *revision;
} TPM_SPECIFICATION;

ASN1_SEQUENCE(TPM_SPECIFICATION) = {
        ASN1_SIMPLE(TPM_SPECIFICATION, family, ASN1_UTF8STRING),
        ASN1_SIMPLE(TPM_SPECIFICATION, level, ASN1_INTEGER),
        ASN1_SIMPLE(TPM_SPECIFICATION, revision, ASN1_INTEGER),
} static_ASN1_SEQUENCE_END(TPM_SPECIFICATION)

typedef STACK_OF(X509_ATTRIBUTE) SUBJECT_DIRECTORY_ATTRIBUTES;

ASN1_ITEM_TEMPLATE(SUBJECT_DIRECTORY_ATTRIBUTES) =
        ASN1_EX_TEMPLATE_TYPE(ASN1_TFLG_SEQUENCE_OF, 0, SubjectDirectoryAttributes, X509_ATTRIBUTE)
static_ASN1_ITEM_TEMPLATE_END(SUBJECT_DIRECTORY_ATTRIBUTES)

static void tpm_specification_free(TPM_SPECIFICATION *s)
{
        ASN1_item_free((ASN1_VALUE *)s, ASN1_ITEM_rptr(TPM_SPECIFICATION));
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM_SPECIFICATION, tpm_specification_free)

static void attributes_free(SUBJECT_DIRECTORY_ATTRIBUTES *a)
{
        sk_X509_ATTRIBUTE_pop_free(a, X509_ATTRIBUTE_free);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SUBJECT_DIRECTORY_ATTRIBUTES, attributes_free)

/*
 * VtpmBinding ::= SEQUENCE {                  -- id-vrot-vtpm-binding
 *     instance        UTF8String,             -- "urn:uuid:<instance UUID>"
 *     ekCertSerial    INTEGER,                -- serial of its RSA EK certificate
 *     ekCertSha256    OCTET STRING (SIZE(32)) -- SHA-256 of that certificate's DER
 * }
 * The link from a service identity certificate to the vTPM and the EK its
 * key was proved against (docs/identity.md).
 */
typedef struct VTPM_BINDING {
        ASN1_UTF8STRING *instance;
        ASN1_INTEGER *ek_serial;
        ASN1_OCTET_STRING *ek_sha256;
} VTPM_BINDING;

ASN1_SEQUENCE(VTPM_BINDING) = {
        ASN1_SIMPLE(VTPM_BINDING, instance, ASN1_UTF8STRING),
        ASN1_SIMPLE(VTPM_BINDING, ek_serial, ASN1_INTEGER),
        ASN1_SIMPLE(VTPM_BINDING, ek_sha256, ASN1_OCTET_STRING),
} static_ASN1_SEQUENCE_END(VTPM_BINDING)

static void vtpm_binding_free(VTPM_BINDING *b)
{
        ASN1_item_free((ASN1_VALUE *)b, ASN1_ITEM_rptr(VTPM_BINDING));
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VTPM_BINDING, vtpm_binding_free)

/*
 * The one boundary from OpenSSL's error queue to GError: reports the
 * earliest queued error (the cause; later ones are context) after @what,
 * and empties the queue so that no stale error reaches other code.
 * Returns FALSE for tail calls.
 */
static gboolean ossl_error(GError **error, VrotX509Error code, const char *what)
{
        unsigned long e = ERR_peek_error();
        const char *reason = e ? ERR_reason_error_string(e) : NULL;
        const char *lib = e ? ERR_lib_error_string(e) : NULL;

        if (reason)
                g_set_error(error, VROT_X509_ERROR, code, "%s: %s%s%s", what,
                            lib ? lib : "", lib ? ": " : "", reason);
        else if (e)
                g_set_error(error, VROT_X509_ERROR, code, "%s: OpenSSL error 0x%lx", what, e);
        else
                g_set_error_literal(error, VROT_X509_ERROR, code, what);
        ERR_clear_error();
        return FALSE;
}

/* --- key types and signature algorithms --- */

typedef enum {
        KEY_UNSUPPORTED,
        KEY_RSA,
        KEY_EC_P256,
        KEY_EC_P384,
} KeyKind;

/* How an issuer key signs (RFC 5758 3.2: ECDSA parameters absent;
 * RFC 4055 5: sha256WithRSAEncryption parameters NULL). */
typedef struct SigAlg {
        KeyKind kind;
        const char *md;
        int sig_nid;
        int param_type;
} SigAlg;

static const SigAlg sig_algs[] = {
        { KEY_EC_P256, "SHA256", NID_ecdsa_with_SHA256, V_ASN1_UNDEF },
        { KEY_EC_P384, "SHA384", NID_ecdsa_with_SHA384, V_ASN1_UNDEF },
        { KEY_RSA, "SHA256", NID_sha256WithRSAEncryption, V_ASN1_NULL },
};

static KeyKind key_kind(const EVP_PKEY *key)
{
        char group[64];
        int nid;

        switch (EVP_PKEY_get_base_id(key)) {
        case EVP_PKEY_RSA:
                return KEY_RSA;
        case EVP_PKEY_EC:
                if (!EVP_PKEY_get_group_name(key, group, sizeof(group), NULL))
                        return KEY_UNSUPPORTED;
                nid = OBJ_sn2nid(group);
                if (nid == NID_undef)
                        nid = EC_curve_nist2nid(group);
                if (nid == NID_X9_62_prime256v1)
                        return KEY_EC_P256;
                if (nid == NID_secp384r1)
                        return KEY_EC_P384;
                return KEY_UNSUPPORTED;
        default:
                return KEY_UNSUPPORTED;
        }
}

static const char *key_description(const EVP_PKEY *key, char *buf, gsize size)
{
        const char *type = EVP_PKEY_get0_type_name(key);

        g_snprintf(buf, size, "%s-%d", type ? type : "unknown", EVP_PKEY_get_bits(key));
        return buf;
}

/* The signature algorithm of an issuer key, or NULL with @error set. */
static const SigAlg *issuer_sig_alg(const EVP_PKEY *key, GError **error)
{
        KeyKind kind = key_kind(key);
        char desc[64];

        for (gsize i = 0; i < G_N_ELEMENTS(sig_algs); i++) {
                if (sig_algs[i].kind != kind)
                        continue;
                if (kind == KEY_RSA && EVP_PKEY_get_bits(key) < 2048)
                        break;
                return &sig_algs[i];
        }
        g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_UNSUPPORTED_KEY,
                    "issuer key %s is not EC P-256, EC P-384 or RSA of 2048 bits or more",
                    key_description(key, desc, sizeof(desc)));
        return NULL;
}

/* keyUsage of an EK (EK Credential Profile 2.x): EKs are decryption keys. */
static gboolean ek_key_usage(const EVP_PKEY *ek, guint *ret, GError **error)
{
        KeyKind kind = key_kind(ek);
        char desc[64];

        if (kind == KEY_RSA && EVP_PKEY_get_bits(ek) == 2048) {
                *ret = USAGE_KEY_ENCIPHERMENT;
                return TRUE;
        }
        if (kind == KEY_EC_P256) {
                *ret = USAGE_KEY_AGREEMENT;
                return TRUE;
        }
        g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_UNSUPPORTED_KEY,
                    "EK key %s is not RSA-2048 or ECC NIST P-256",
                    key_description(ek, desc, sizeof(desc)));
        return FALSE;
}

/* --- input checks --- */

static gboolean check_text(const char *what, const char *s, glong max, GError **error)
{
        glong n;

        if (!s || !*s) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID, "%s is empty", what);
                return FALSE;
        }
        if (!g_utf8_validate(s, -1, NULL)) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID,
                            "%s is not valid UTF-8", what);
                return FALSE;
        }
        n = g_utf8_strlen(s, -1);
        if (n > max) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID,
                            "%s has %ld characters, at most %ld are allowed", what, n, max);
                return FALSE;
        }
        for (const char *p = s; *p; p = g_utf8_next_char(p)) {
                if (g_unichar_iscntrl(g_utf8_get_char(p))) {
                        g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID,
                                    "%s contains a control character", what);
                        return FALSE;
                }
        }
        return TRUE;
}

/* An absolute URI (RFC 3986 3.1 scheme, then printable ASCII). */
static gboolean check_uri(const char *what, const char *s, GError **error)
{
        gsize len = s ? strlen(s) : 0, i;

        if (len == 0 || len > MAX_URI) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID,
                            "%s must have 1 to %d characters", what, MAX_URI);
                return FALSE;
        }
        for (i = 0; i < len; i++) {
                if (s[i] <= 0x20 || s[i] >= 0x7f) {
                        g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID,
                                    "%s has a character outside printable ASCII at %zu", what, i);
                        return FALSE;
                }
        }
        for (i = 0; i < len && (g_ascii_isalnum(s[i]) || strchr("+-.", s[i])); i++)
                ;
        if (i == 0 || i == len || s[i] != ':' || !g_ascii_isalpha(s[0])) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID,
                            "%s is not an absolute URI (no scheme)", what);
                return FALSE;
        }
        return TRUE;
}

gboolean vrot_x509_check_uri(const char *uri, GError **error)
{
        return check_uri("the URI", uri, error);
}

static gboolean check_not_after(gint64 not_after, GError **error)
{
        gint64 now = g_get_real_time() / G_USEC_PER_SEC;

        if (not_after == 0 || (not_after > now && not_after <= NOT_AFTER_MAX))
                return TRUE;
        g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID,
                    "notAfter %" G_GINT64_FORMAT " is not between now and 9999-12-31", not_after);
        return FALSE;
}

static gboolean check_ca_params(const VrotX509CaParams *p, GError **error)
{
        return check_text("common name", p->common_name, MAX_COMMON_NAME, error) &&
               (!p->organization ||
                check_text("organization", p->organization, MAX_COMMON_NAME, error)) &&
               check_not_after(p->not_after, error);
}

static gboolean check_ek_params(const VrotX509EkParams *p, GError **error)
{
        return check_text("TPM model", p->tpm_model, MAX_STR, error) &&
               check_text("TPM specification family", p->spec_family, MAX_STR, error) &&
               check_uri("host attestation URI", p->host_attestation_uri, error) &&
               check_not_after(p->not_after, error);
}

/* --- certificate fields --- */

/* 16 random bytes, high bit clear (positive, RFC 5280 4.1.2.2) and the next
 * one set, so that the DER INTEGER is always exactly 16 bytes. */
static gboolean set_serial(X509 *x)
{
        guint8 buf[16];
        g_autoptr(BIGNUM) bn = NULL;

        if (RAND_bytes(buf, sizeof(buf)) != 1)
                return FALSE;
        buf[0] = (guint8)((buf[0] & 0x7f) | 0x40);
        bn = BN_bin2bn(buf, sizeof(buf), NULL);
        return bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
}

static gboolean set_validity(X509 *x, gint64 not_after)
{
        if (!X509_gmtime_adj(X509_getm_notBefore(x), 0))
                return FALSE;
        /* ASN1_TIME_set*() pick UTCTime through 2049, GeneralizedTime after
         * (RFC 5280 4.1.2.5). */
        if (not_after == 0)
                return ASN1_TIME_set_string_X509(X509_getm_notAfter(x), NOT_AFTER_FOREVER) == 1;
        return ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) != NULL;
}

/*
 * subjectPublicKeyInfo.  X509_set_pubkey() sends the key through OpenSSL
 * 3.0's encoder and back through its decoder, and setting up the decoder
 * was ~40% of an EK certificate's CPU time (bench/README.md "create +
 * endorse").  An EC key's SPKI is its curve's OID and its uncompressed
 * point (RFC 5480), both read from the key and set directly; any other
 * key takes the general way.
 */
static gboolean set_pubkey(X509 *x, EVP_PKEY *key)
{
        unsigned char point[1 + 2 * 66];        /* uncompressed, up to P-521 */
        char group[64];
        X509_PUBKEY *pub = X509_get_X509_PUBKEY(x);
        unsigned char *penc;
        size_t glen = 0, plen = 0;
        int nid;

        if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
            !EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            &glen) ||
            (nid = OBJ_txt2nid(group)) == NID_undef ||
            !EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                             sizeof(point), &plen) ||
            plen < 3 || point[0] != POINT_CONVERSION_UNCOMPRESSED || !pub)
                return X509_set_pubkey(x, key) == 1;
        if (!(penc = OPENSSL_memdup(point, plen)))
                return FALSE;
        /* set0: the objects are OpenSSL's static ones; @penc is the SPKI's now. */
        if (!X509_PUBKEY_set0_param(pub, OBJ_nid2obj(NID_X9_62_id_ecPublicKey), V_ASN1_OBJECT,
                                    OBJ_nid2obj(nid), penc, (int)plen)) {
                OPENSSL_free(penc);
                return FALSE;
        }
        return TRUE;
}

/* A version 3 certificate with serial, names, validity and key; no extensions. */
static X509 *cert_new(const X509_NAME *issuer, const X509_NAME *subject, EVP_PKEY *key,
                      gint64 not_after, GError **error)
{
        g_autoptr(X509) x = X509_new();

        if (!x || !X509_set_version(x, X509_VERSION_3) || !set_serial(x) ||
            !X509_set_issuer_name(x, issuer) || !X509_set_subject_name(x, subject) ||
            !set_validity(x, not_after) || !set_pubkey(x, key)) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "setting certificate fields");
                return NULL;
        }
        return g_steal_pointer(&x);
}

/* O=@organization (if any), CN=@common_name. */
static X509_NAME *name_new(const char *organization, const char *common_name, GError **error)
{
        g_autoptr(X509_NAME) name = X509_NAME_new();

        if (!name ||
            (organization &&
             !X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8,
                                         (const unsigned char *)organization, -1, -1, 0)) ||
            !X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                        (const unsigned char *)common_name, -1, -1, 0)) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "building a name");
                return NULL;
        }
        return g_steal_pointer(&name);
}

static gboolean add_ext_i2d(X509 *x, int nid, void *value, gboolean critical, const char *what,
                            GError **error)
{
        if (X509_add1_ext_i2d(x, nid, value, critical ? 1 : 0, X509V3_ADD_DEFAULT) != 1)
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, what);
        return TRUE;
}

/* An extension whose value OpenSSL has no X509V3_EXT_METHOD for: @der is
 * the encoded extnValue contents. */
static gboolean add_ext_der(X509 *x, const char *oid, gboolean critical, const guint8 *der,
                            int len, const char *what, GError **error)
{
        g_autoptr(ASN1_OBJECT) obj = OBJ_txt2obj(oid, 1);
        g_autoptr(ASN1_OCTET_STRING) value = ASN1_OCTET_STRING_new();
        g_autoptr(X509_EXTENSION) ext = NULL;

        if (!obj || !value || !ASN1_OCTET_STRING_set(value, der, len) ||
            !(ext = X509_EXTENSION_create_by_OBJ(NULL, obj, critical ? 1 : 0, value)) ||
            !X509_add_ext(x, ext, -1))
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, what);
        return TRUE;
}

static gboolean add_basic_constraints(X509 *x, gboolean ca, long pathlen, GError **error)
{
        g_autoptr(BASIC_CONSTRAINTS) bc = BASIC_CONSTRAINTS_new();

        if (!bc)
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "basicConstraints");
        bc->ca = ca ? 0xff : 0;
        if (ca && (!(bc->pathlen = ASN1_INTEGER_new()) || !ASN1_INTEGER_set(bc->pathlen, pathlen)))
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "basicConstraints");
        return add_ext_i2d(x, NID_basic_constraints, bc, TRUE, "basicConstraints", error);
}

static gboolean add_key_usage(X509 *x, guint bits, GError **error)
{
        g_autoptr(ASN1_BIT_STRING) ku = ASN1_BIT_STRING_new();

        if (!ku)
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "keyUsage");
        for (int n = 0; n < 9; n++) {
                if ((bits & (1u << n)) && !ASN1_BIT_STRING_set_bit(ku, n, 1))
                        return ossl_error(error, VROT_X509_ERROR_CRYPTO, "keyUsage");
        }
        return add_ext_i2d(x, NID_key_usage, ku, TRUE, "keyUsage", error);
}

/* subjectKeyIdentifier: SHA-1 of the subjectPublicKey bits (RFC 5280
 * 4.2.1.2, method 1), which is also what OpenSSL's "hash" computes. */
static ASN1_OCTET_STRING *key_id_of(const X509 *x, GError **error)
{
        guint8 md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        g_autoptr(ASN1_OCTET_STRING) id = ASN1_OCTET_STRING_new();

        if (!id || !X509_pubkey_digest(x, EVP_sha1(), md, &len) ||
            !ASN1_OCTET_STRING_set(id, md, (int)len)) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "subjectKeyIdentifier");
                return NULL;
        }
        return g_steal_pointer(&id);
}

static gboolean add_authority_key_id(X509 *x, const ASN1_OCTET_STRING *issuer_id,
                                     GError **error)
{
        g_autoptr(AUTHORITY_KEYID) aki = AUTHORITY_KEYID_new();

        if (!aki || !(aki->keyid = ASN1_OCTET_STRING_dup(issuer_id)))
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "authorityKeyIdentifier");
        return add_ext_i2d(x, NID_authority_key_identifier, aki, FALSE,
                           "authorityKeyIdentifier", error);
}

/* The CA profile shared by the fleet root and host endorsement CAs. */
static gboolean add_ca_extensions(X509 *x, long pathlen, const ASN1_OCTET_STRING *issuer_id,
                                  GError **error)
{
        g_autoptr(ASN1_OCTET_STRING) own_id = key_id_of(x, error);

        return own_id &&
               add_basic_constraints(x, TRUE, pathlen, error) &&
               add_key_usage(x, USAGE_KEY_CERT_SIGN | USAGE_CRL_SIGN, error) &&
               add_ext_i2d(x, NID_subject_key_identifier, own_id, FALSE,
                           "subjectKeyIdentifier", error) &&
               add_authority_key_id(x, issuer_id ? issuer_id : own_id, error);
}

/* --- the EK profile --- */

static gboolean add_dir_attr(X509_NAME *name, const char *oid, const char *value)
{
        g_autoptr(ASN1_OBJECT) obj = OBJ_txt2obj(oid, 1);

        /* UTF8String, as TPMManufacturer/TPMModel/TPMVersion are declared
         * (WITH SYNTAX UTF8String (SIZE (1..STRMAX))); one RDN each. */
        return obj && X509_NAME_add_entry_by_OBJ(name, obj, V_ASN1_UTF8STRING,
                                                 (const unsigned char *)value, -1, -1, 0);
}

static GENERAL_NAME *tpm_dirname(const VrotX509EkParams *p)
{
        g_autoptr(X509_NAME) name = X509_NAME_new();
        g_autoptr(GENERAL_NAME) gn = GENERAL_NAME_new();
        g_autofree char *manufacturer = g_strdup_printf("id:%08X", p->tpm_manufacturer);
        g_autofree char *version = g_strdup_printf("id:%08X", p->tpm_version);

        if (!name || !gn ||
            !add_dir_attr(name, OID_TCG_AT_TPM_MANUFACTURER, manufacturer) ||
            !add_dir_attr(name, OID_TCG_AT_TPM_MODEL, p->tpm_model) ||
            !add_dir_attr(name, OID_TCG_AT_TPM_VERSION, version))
                return NULL;
        GENERAL_NAME_set0_value(gn, GEN_DIRNAME, g_steal_pointer(&name));
        return g_steal_pointer(&gn);
}

static GENERAL_NAME *uri_name(const char *uri)
{
        g_autoptr(ASN1_IA5STRING) s = ASN1_IA5STRING_new();
        g_autoptr(GENERAL_NAME) gn = GENERAL_NAME_new();

        if (!s || !gn || !ASN1_STRING_set(s, uri, -1))
                return NULL;
        GENERAL_NAME_set0_value(gn, GEN_URI, g_steal_pointer(&s));
        return g_steal_pointer(&gn);
}

/* subjectAltName: the TPM's directoryName (EK Credential Profile 2.x,
 * critical) and urn:uuid:<instance> (RFC 4122 3). */
static gboolean add_ek_san(X509 *x, const VrotX509EkParams *p, const char *uuid,
                           GError **error)
{
        g_autoptr(GENERAL_NAMES) names = sk_GENERAL_NAME_new_null();
        g_autofree char *urn = g_strconcat("urn:uuid:", uuid, NULL);
        GENERAL_NAME *gn;

        if (!names)
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "subjectAltName");
        if (!(gn = tpm_dirname(p)) || !sk_GENERAL_NAME_push(names, gn)) {
                GENERAL_NAME_free(gn);
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "subjectAltName directoryName");
        }
        if (!(gn = uri_name(urn)) || !sk_GENERAL_NAME_push(names, gn)) {
                GENERAL_NAME_free(gn);
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "subjectAltName URI");
        }
        return add_ext_i2d(x, NID_subject_alt_name, names, TRUE, "subjectAltName", error);
}

/* extKeyUsage of one TCG key purpose (@oid): EK or AIK certificate. */
static gboolean add_tcg_eku(X509 *x, const char *oid, GError **error)
{
        g_autoptr(EXTENDED_KEY_USAGE) eku = sk_ASN1_OBJECT_new_null();
        ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);

        if (!eku || !obj || !sk_ASN1_OBJECT_push(eku, obj)) {
                ASN1_OBJECT_free(obj);
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "extKeyUsage");
        }
        return add_ext_i2d(x, NID_ext_key_usage, eku, FALSE, "extKeyUsage", error);
}

static X509_ATTRIBUTE *tpm_specification_attr(const VrotX509EkParams *p)
{
        g_autoptr(TPM_SPECIFICATION) spec =
                (TPM_SPECIFICATION *)ASN1_item_new(ASN1_ITEM_rptr(TPM_SPECIFICATION));
        g_autoptr(ASN1_OBJECT) obj = OBJ_txt2obj(OID_TCG_AT_TPM_SPECIFICATION, 1);
        X509_ATTRIBUTE *attr;
        unsigned char *der = NULL;
        int len;

        if (!spec || !obj || !ASN1_STRING_set(spec->family, p->spec_family, -1) ||
            !ASN1_INTEGER_set_uint64(spec->level, p->spec_level) ||
            !ASN1_INTEGER_set_uint64(spec->revision, p->spec_revision))
                return NULL;
        len = ASN1_item_i2d((ASN1_VALUE *)spec, &der, ASN1_ITEM_rptr(TPM_SPECIFICATION));
        if (len <= 0)
                return NULL;
        /* V_ASN1_SEQUENCE: the attribute value is the encoded SEQUENCE as is. */
        attr = X509_ATTRIBUTE_create_by_OBJ(NULL, obj, V_ASN1_SEQUENCE, der, len);
        OPENSSL_free(der);
        return attr;
}

/* subjectDirectoryAttributes with the TPMSpecification (non-critical,
 * RFC 5280 4.2.1.8). */
static gboolean add_ek_directory_attributes(X509 *x, const VrotX509EkParams *p, GError **error)
{
        g_autoptr(SUBJECT_DIRECTORY_ATTRIBUTES) attrs = sk_X509_ATTRIBUTE_new_null();
        X509_ATTRIBUTE *spec = tpm_specification_attr(p);
        unsigned char *der = NULL;
        gboolean ok;
        int len;

        if (!attrs || !spec || !sk_X509_ATTRIBUTE_push(attrs, spec)) {
                X509_ATTRIBUTE_free(spec);
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "TPMSpecification");
        }
        len = ASN1_item_i2d((ASN1_VALUE *)attrs, &der, ASN1_ITEM_rptr(SUBJECT_DIRECTORY_ATTRIBUTES));
        if (len <= 0)
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "subjectDirectoryAttributes");
        ok = add_ext_der(x, OID_SUBJECT_DIRECTORY_ATTRIBUTES, FALSE, der, len,
                         "subjectDirectoryAttributes", error);
        OPENSSL_free(der);
        return ok;
}

/* tcg-ce-virtualPlatformAttestationService (TCG Credential Profiles 1.2,
 * "virtualization oriented credential extensions"): the value is an
 * IA5String URI of the attestation service for the layer below.  Non-critical
 * so that every X.509 verifier still accepts the certificate. */
static gboolean add_virtual_platform(X509 *x, const char *uri, GError **error)
{
        g_autoptr(ASN1_IA5STRING) s = ASN1_IA5STRING_new();
        unsigned char *der = NULL;
        gboolean ok;
        int len;

        if (!s || !ASN1_STRING_set(s, uri, -1) || (len = i2d_ASN1_IA5STRING(s, &der)) <= 0)
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "virtualPlatformAttestationService");
        ok = add_ext_der(x, OID_TCG_CE_VIRTUAL_PLATFORM_ATTESTATION_SERVICE, FALSE, der, len,
                         "virtualPlatformAttestationService", error);
        OPENSSL_free(der);
        return ok;
}

static gboolean add_ek_extensions(X509 *x, const ASN1_OCTET_STRING *issuer_id,
                                  const VrotX509EkParams *p, const char *uuid, guint key_usage,
                                  GError **error)
{
        return add_basic_constraints(x, FALSE, 0, error) &&
               add_key_usage(x, key_usage, error) &&
               add_tcg_eku(x, OID_TCG_KP_EK_CERTIFICATE, error) &&
               add_ek_san(x, p, uuid, error) &&
               add_ek_directory_attributes(x, p, error) &&
               add_authority_key_id(x, issuer_id, error) &&
               add_virtual_platform(x, p->host_attestation_uri, error);
}

/* --- signing --- */

/*
 * How a signature made elsewhere gets into the certificate.
 *
 * OpenSSL 3 signs an X509 only through X509_sign()/X509_sign_ctx(), which
 * need an EVP_PKEY able to sign, and it has no setter for a certificate's
 * signature fields: X509_REQ has X509_REQ_set0_signature() and
 * X509_REQ_set1_signature_algo(), but the X509 ones that
 * X509_get0_signature(3) names do not exist (openssl issues #5916, #8530).
 * The candidates were:
 *
 *  - an in-process provider (keymgmt + signature) whose sign operation calls
 *    the callback, used through X509_sign_ctx().  It is the designed way for
 *    keys OpenSSL cannot see (tpm2-openssl does that), but for one operation
 *    it takes some 300 lines of dispatch tables, a private OSSL_LIB_CTX, and
 *    a dependency on libcrypto's rules for fetching the signature
 *    implementation and for digest-and-sign, which have changed across 3.x
 *    releases; a mistake there fails at a distance.
 *  - writing the outer Certificate SEQUENCE by hand: hand-written DER.
 *  - what X509_sign() itself does (ASN1_item_sign_ctx()), minus the private
 *    key: write the AlgorithmIdentifier into the TBSCertificate and the outer
 *    Certificate, encode the TBSCertificate with i2d_re_X509_tbs(), hash it,
 *    have the callback sign the digest, and store the signature value.  The
 *    objects X509_get0_tbs_sigalg() and X509_get0_signature() return are the
 *    certificate's own fields (get0: internal pointers), so we write through
 *    them; the const is a read-only promise of the getter, not of the object.
 *
 * We take the third, and make it safe by checking the outcome, not the
 * mechanism: the finished certificate is re-parsed from its own DER and
 * X509_verify()d against the issuer's public key before anyone sees it.  If
 * a future OpenSSL stopped honouring this path, or the signer used another
 * key, the result fails that check here and is never returned.  When OpenSSL
 * grows X509_set1_signature_algo()/_value(), use them in these two helpers.
 */
static gboolean set_signature_algorithm(X509 *x, const SigAlg *alg)
{
        X509_ALGOR *tbs_alg = (X509_ALGOR *)X509_get0_tbs_sigalg(x);
        const X509_ALGOR *outer = NULL;

        X509_get0_signature(NULL, &outer, x);
        return X509_ALGOR_set0(tbs_alg, OBJ_nid2obj(alg->sig_nid), alg->param_type, NULL) &&
               X509_ALGOR_set0((X509_ALGOR *)outer, OBJ_nid2obj(alg->sig_nid), alg->param_type,
                               NULL);
}

static gboolean set_signature_value(X509 *x, GBytes *sig)
{
        const ASN1_BIT_STRING *value = NULL;
        ASN1_BIT_STRING *bits;
        gsize len;
        const guint8 *data = g_bytes_get_data(sig, &len);

        X509_get0_signature(&value, NULL, x);
        bits = (ASN1_BIT_STRING *)value;
        if (!ASN1_STRING_set(bits, data, (int)len))
                return FALSE;
        /* Whole octets, 0 unused bits.  Without BITS_LEFT the encoder would
         * treat trailing zero octets of the signature as padding and drop
         * them (ASN1_item_sign_ctx() sets the same flags). */
        bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
        bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
        return TRUE;
}

static GBytes *tbs_digest(X509 *x, const SigAlg *alg, GError **error)
{
        unsigned char *tbs = NULL;
        guint8 md[EVP_MAX_MD_SIZE];
        size_t md_len = 0;
        int len = i2d_re_X509_tbs(x, &tbs);
        int ok;

        if (len <= 0) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "encoding the TBSCertificate");
                return NULL;
        }
        ok = EVP_Q_digest(NULL, alg->md, NULL, tbs, (size_t)len, md, &md_len);
        OPENSSL_free(tbs);
        if (!ok) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "hashing the TBSCertificate");
                return NULL;
        }
        return g_bytes_new(md, md_len);
}

static GBytes *call_signer(VrotSignDigestFunc func, gpointer user_data, GBytes *digest,
                           GError **error)
{
        g_autoptr(GBytes) sig = NULL;
        g_autoptr(GError) local = NULL;
        gsize md_len;
        const guint8 *md = g_bytes_get_data(digest, &md_len);

        if (!func(md, md_len, &sig, user_data, &local)) {
                if (local)
                        g_propagate_prefixed_error(error, g_steal_pointer(&local), "signer: ");
                else
                        g_set_error_literal(error, VROT_X509_ERROR, VROT_X509_ERROR_SIGNER,
                                            "the signer failed without saying why");
                return NULL;
        }
        if (!sig || g_bytes_get_size(sig) == 0 || g_bytes_get_size(sig) > MAX_SIGNATURE) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_SIGNER,
                            "the signer returned a signature of %" G_GSIZE_FORMAT " bytes",
                            sig ? g_bytes_get_size(sig) : 0);
                return NULL;
        }
        return g_steal_pointer(&sig);
}

/* Signs @x in place and checks the signature under @issuer_key: over the
 * TBSCertificate as @x now encodes it, which is what its DER will carry. */
static gboolean sign_in_place(X509 *x, const SigAlg *alg, VrotSignDigestFunc func,
                              gpointer user_data, EVP_PKEY *issuer_key, GError **error)
{
        g_autoptr(GBytes) digest = NULL;
        g_autoptr(GBytes) sig = NULL;

        if (!set_signature_algorithm(x, alg))
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "setting the signature algorithm");
        if (!(digest = tbs_digest(x, alg, error)) ||
            !(sig = call_signer(func, user_data, digest, error)))
                return FALSE;
        if (!set_signature_value(x, sig))
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "setting the signature");
        if (X509_verify(x, issuer_key) != 1)
                return ossl_error(error, VROT_X509_ERROR_BAD_SIGNATURE,
                                  "the signature does not verify under the issuer's public key");
        return TRUE;
}

/* Signs @x (see above) and returns the verified, re-parsed certificate. */
static X509 *sign_cert(X509 *x, const SigAlg *alg, VrotSignDigestFunc func, gpointer user_data,
                       EVP_PKEY *issuer_key, GError **error)
{
        g_autoptr(GBytes) der = NULL;

        /* Parsed back, so that nothing OpenSSL cached while it was built
         * survives, and the public key is there (X509_get0_pubkey()). */
        if (!sign_in_place(x, alg, func, user_data, issuer_key, error) ||
            !(der = vrot_x509_to_der(x, error)))
                return NULL;
        return vrot_x509_from_der(g_bytes_get_data(der, NULL), g_bytes_get_size(der), error);
}

/* --- signers --- */

struct VrotX509Signer {
        X509 *issuer;                   /* a reference */
        EVP_PKEY *issuer_key;           /* @issuer's public key (transfer none) */
        ASN1_OCTET_STRING *issuer_id;   /* @issuer's subjectKeyIdentifier */
        const SigAlg *alg;
        VrotSignDigestFunc func;
        gpointer user_data;
        GDestroyNotify destroy;
};

/* The private key of a software signer. */
typedef struct SoftKey {
        EVP_PKEY *key;
        const SigAlg *alg;
} SoftKey;

static void soft_key_free(gpointer p)
{
        SoftKey *sk = p;

        EVP_PKEY_free(sk->key);
        g_free(sk);
}

static gboolean sign_digest_software(const guint8 *digest, gsize len, GBytes **ret_der_sig,
                                     gpointer user_data, GError **error)
{
        const SoftKey *sk = user_data;
        g_autoptr(EVP_PKEY_CTX) ctx = EVP_PKEY_CTX_new_from_pkey(NULL, sk->key, NULL);
        g_autoptr(EVP_MD) md = EVP_MD_fetch(NULL, sk->alg->md, NULL);
        g_autofree guint8 *sig = NULL;
        size_t sig_len = 0;

        /* EC: ECDSA over the digest, DER output.  RSA: PKCS#1 v1.5 with a
         * DigestInfo for @md, as TPM2_Sign with TPM_ALG_RSASSA. */
        if (!ctx || !md || EVP_PKEY_sign_init(ctx) != 1 ||
            (sk->alg->kind == KEY_RSA &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1) ||
            EVP_PKEY_CTX_set_signature_md(ctx, md) != 1 ||
            EVP_PKEY_sign(ctx, NULL, &sig_len, digest, len) != 1)
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "software signature");
        sig = g_malloc(sig_len);
        if (EVP_PKEY_sign(ctx, sig, &sig_len, digest, len) != 1)
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "software signature");
        *ret_der_sig = g_bytes_new_take(g_steal_pointer(&sig), sig_len);
        return TRUE;
}

VrotX509Signer *vrot_x509_signer_new(X509 *issuer, VrotSignDigestFunc func, gpointer user_data,
                                     GDestroyNotify destroy, GError **error)
{
        g_autoptr(VrotX509Signer) s = NULL;
        const ASN1_OCTET_STRING *id;
        const SigAlg *alg;
        EVP_PKEY *key;

        g_return_val_if_fail(issuer != NULL && func != NULL, NULL);
        g_return_val_if_fail(error == NULL || *error == NULL, NULL);

        ERR_clear_error();
        if (X509_check_ca(issuer) != 1) {
                ossl_error(error, VROT_X509_ERROR_INVALID,
                           "the issuer certificate is not a CA certificate");
                return NULL;
        }
        id = X509_get0_subject_key_id(issuer);
        if (!id || ASN1_STRING_length(id) == 0) {
                ossl_error(error, VROT_X509_ERROR_INVALID,
                           "the issuer certificate has no subjectKeyIdentifier");
                return NULL;
        }
        if (!(key = X509_get0_pubkey(issuer))) {
                ossl_error(error, VROT_X509_ERROR_INVALID, "the issuer's public key");
                return NULL;
        }
        if (!(alg = issuer_sig_alg(key, error)))
                return NULL;
        s = g_new0(VrotX509Signer, 1);
        if (!(s->issuer_id = ASN1_OCTET_STRING_dup(id))) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "copying the key identifier");
                return NULL;
        }
        X509_up_ref(issuer);
        s->issuer = issuer;
        s->issuer_key = key;
        s->alg = alg;
        s->func = func;
        /* Last: a signer freed before this point must not free user data it
         * never took. */
        s->user_data = user_data;
        s->destroy = destroy;
        return g_steal_pointer(&s);
}

VrotX509Signer *vrot_x509_signer_new_software(X509 *issuer, EVP_PKEY *key, GError **error)
{
        VrotX509Signer *s;
        SoftKey *sk;

        g_return_val_if_fail(issuer != NULL && key != NULL, NULL);
        g_return_val_if_fail(error == NULL || *error == NULL, NULL);

        ERR_clear_error();
        if (X509_check_private_key(issuer, key) != 1) {
                ossl_error(error, VROT_X509_ERROR_INVALID,
                           "the key is not the issuer certificate's key");
                return NULL;
        }
        sk = g_new0(SoftKey, 1);
        if (!(s = vrot_x509_signer_new(issuer, sign_digest_software, sk, soft_key_free, error))) {
                g_free(sk);
                return NULL;
        }
        EVP_PKEY_up_ref(key);
        sk->key = key;
        sk->alg = s->alg;
        return s;
}

X509 *vrot_x509_signer_get_issuer(const VrotX509Signer *signer)
{
        g_return_val_if_fail(signer != NULL, NULL);
        return signer->issuer;
}

void vrot_x509_signer_free(VrotX509Signer *signer)
{
        if (!signer)
                return;
        if (signer->destroy)
                signer->destroy(signer->user_data);
        ASN1_OCTET_STRING_free(signer->issuer_id);
        X509_free(signer->issuer);
        g_free(signer);
}

static X509 *sign_with(const VrotX509Signer *s, X509 *x, GError **error)
{
        return sign_cert(x, s->alg, s->func, s->user_data, s->issuer_key, error);
}

/* --- the profiles --- */

static X509 *build_root(EVP_PKEY *key, const VrotX509CaParams *p, GError **error)
{
        g_autoptr(X509_NAME) name = NULL;
        g_autoptr(X509) x = NULL;

        if (!issuer_sig_alg(key, error) || !check_ca_params(p, error) ||
            !(name = name_new(p->organization, p->common_name, error)) ||
            !(x = cert_new(name, name, key, p->not_after, error)) ||
            !add_ca_extensions(x, 1, NULL, error))
                return NULL;
        return g_steal_pointer(&x);
}

X509 *vrot_x509_root_cert(EVP_PKEY *key, const VrotX509CaParams *params, GError **error)
{
        g_autoptr(X509) x = NULL;
        X509 *cert = NULL;
        SoftKey sk = { .key = key };

        g_return_val_if_fail(key != NULL && params != NULL, NULL);
        g_return_val_if_fail(error == NULL || *error == NULL, NULL);

        ERR_clear_error();
        if ((x = build_root(key, params, error))) {
                sk.alg = issuer_sig_alg(key, NULL);
                cert = sign_cert(x, sk.alg, sign_digest_software, &sk, key, error);
        }
        if (!cert)
                g_prefix_error(error, "fleet root certificate: ");
        return cert;
}

static X509 *build_ca(const VrotX509Signer *root, EVP_PKEY *ca_key, const VrotX509CaParams *p,
                      GError **error)
{
        g_autoptr(X509_NAME) name = NULL;
        g_autoptr(X509) x = NULL;

        /* The CA key will sign: it must be a key this module can sign with. */
        if (!issuer_sig_alg(ca_key, error) || !check_ca_params(p, error) ||
            !(name = name_new(p->organization, p->common_name, error)) ||
            !(x = cert_new(X509_get_subject_name(root->issuer), name, ca_key, p->not_after,
                           error)) ||
            !add_ca_extensions(x, 0, root->issuer_id, error))
                return NULL;
        return g_steal_pointer(&x);
}

X509 *vrot_x509_ca_cert(const VrotX509Signer *root, EVP_PKEY *ca_key,
                        const VrotX509CaParams *params, GError **error)
{
        g_autoptr(X509) x = NULL;
        X509 *cert = NULL;

        g_return_val_if_fail(root != NULL && ca_key != NULL && params != NULL, NULL);
        g_return_val_if_fail(error == NULL || *error == NULL, NULL);

        ERR_clear_error();
        if ((x = build_ca(root, ca_key, params, error)))
                cert = sign_with(root, x, error);
        if (!cert)
                g_prefix_error(error, "host endorsement CA certificate: ");
        return cert;
}

static X509 *build_ek(const VrotX509Signer *ca, EVP_PKEY *ek, const VrotX509EkParams *p,
                      GError **error)
{
        char uuid[VROT_UUID_STR_LEN + 1];
        g_autoptr(X509_NAME) subject = NULL;
        g_autoptr(X509) x = NULL;
        guint key_usage = 0;

        vrot_uuid_format(p->instance_uuid, uuid);
        if (!ek_key_usage(ek, &key_usage, error) || !check_ek_params(p, error) ||
            !(subject = name_new(NULL, uuid, error)) ||
            !(x = cert_new(X509_get_subject_name(ca->issuer), subject, ek, p->not_after, error)) ||
            !add_ek_extensions(x, ca->issuer_id, p, uuid, key_usage, error))
                return NULL;
        return g_steal_pointer(&x);
}

GBytes *vrot_x509_ek_cert_der(const VrotX509Signer *ca, EVP_PKEY *ek,
                              const VrotX509EkParams *params, GError **error)
{
        g_autoptr(X509) x = NULL;
        GBytes *der = NULL;

        g_return_val_if_fail(ca != NULL && ek != NULL && params != NULL, NULL);
        g_return_val_if_fail(error == NULL || *error == NULL, NULL);

        ERR_clear_error();
        if ((x = build_ek(ca, ek, params, error)) &&
            sign_in_place(x, ca->alg, ca->func, ca->user_data, ca->issuer_key, error))
                der = vrot_x509_to_der(x, error);
        if (!der)
                g_prefix_error(error, "EK certificate: ");
        return der;
}

X509 *vrot_x509_ek_cert(const VrotX509Signer *ca, EVP_PKEY *ek, const VrotX509EkParams *params,
                        GError **error)
{
        g_autoptr(GBytes) der = vrot_x509_ek_cert_der(ca, ek, params, error);

        return der ? vrot_x509_from_der(g_bytes_get_data(der, NULL), g_bytes_get_size(der), error)
                   : NULL;
}

/* --- the service identity profile --- */

static gboolean check_identity_params(const VrotX509IdentityParams *p, GError **error)
{
        if (!p->ek_cert) {
                g_set_error_literal(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID,
                                    "an identity certificate needs the vTPM's EK certificate");
                return FALSE;
        }
        return check_text("identity name", p->name, MAX_COMMON_NAME, error) &&
               check_uri("identity URI", p->uri, error) && check_not_after(p->not_after, error);
}

/* CN=@name, serialNumber=<instance UUID> (X.520: the device's serial). */
static X509_NAME *identity_subject(const VrotX509IdentityParams *p, const char *uuid,
                                   GError **error)
{
        g_autoptr(X509_NAME) name = name_new(NULL, p->name, error);

        if (name && !X509_NAME_add_entry_by_NID(name, NID_serialNumber, MBSTRING_ASC,
                                                (const unsigned char *)uuid, -1, -1, 0)) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "subject serialNumber");
                return NULL;
        }
        return g_steal_pointer(&name);
}

static gboolean add_identity_eku(X509 *x, GError **error)
{
        g_autoptr(EXTENDED_KEY_USAGE) eku = sk_ASN1_OBJECT_new_null();

        if (!eku || !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) ||
            !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)))
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "extKeyUsage");
        return add_ext_i2d(x, NID_ext_key_usage, eku, FALSE, "extKeyUsage", error);
}

/* subjectAltName: exactly one URI, as an X.509-SVID must have (SPIFFE). */
static gboolean add_identity_san(X509 *x, const char *uri, GError **error)
{
        g_autoptr(GENERAL_NAMES) names = sk_GENERAL_NAME_new_null();
        GENERAL_NAME *gn = uri_name(uri);

        if (!names || !gn || !sk_GENERAL_NAME_push(names, gn)) {
                GENERAL_NAME_free(gn);
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "subjectAltName URI");
        }
        return add_ext_i2d(x, NID_subject_alt_name, names, FALSE, "subjectAltName", error);
}

static gboolean add_vtpm_binding(X509 *x, const char *uuid, X509 *ek_cert, GError **error)
{
        g_autoptr(VTPM_BINDING) b = (VTPM_BINDING *)ASN1_item_new(ASN1_ITEM_rptr(VTPM_BINDING));
        g_autofree char *urn = g_strconcat("urn:uuid:", uuid, NULL);
        guint8 md[32];
        unsigned int md_len = 0;
        unsigned char *der = NULL;
        gboolean ok;
        int len;

        if (!b || !X509_digest(ek_cert, EVP_sha256(), md, &md_len) || md_len != sizeof(md) ||
            !ASN1_STRING_set(b->instance, urn, -1) ||
            !ASN1_STRING_copy(b->ek_serial, X509_get0_serialNumber(ek_cert)) ||
            !ASN1_OCTET_STRING_set(b->ek_sha256, md, sizeof(md)) ||
            (len = ASN1_item_i2d((ASN1_VALUE *)b, &der, ASN1_ITEM_rptr(VTPM_BINDING))) <= 0)
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "vtpmBinding");
        ok = add_ext_der(x, OID_VROT_VTPM_BINDING, FALSE, der, len, "vtpmBinding", error);
        OPENSSL_free(der);
        return ok;
}

static X509 *build_identity(const VrotX509Signer *ca, EVP_PKEY *key,
                            const VrotX509IdentityParams *p, GError **error)
{
        char uuid[VROT_UUID_STR_LEN + 1];
        g_autoptr(X509_NAME) subject = NULL;
        g_autoptr(X509) x = NULL;
        g_autoptr(ASN1_OCTET_STRING) own_id = NULL;
        char desc[64];

        if (key_kind(key) != KEY_EC_P256) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_UNSUPPORTED_KEY,
                            "identity key %s is not ECC NIST P-256",
                            key_description(key, desc, sizeof(desc)));
                return NULL;
        }
        vrot_uuid_format(p->instance_uuid, uuid);
        if (!check_identity_params(p, error) || !(subject = identity_subject(p, uuid, error)) ||
            !(x = cert_new(X509_get_subject_name(ca->issuer), subject, key, p->not_after, error)) ||
            !(own_id = key_id_of(x, error)))
                return NULL;
        if (!add_basic_constraints(x, FALSE, 0, error) ||
            !add_key_usage(x, USAGE_DIGITAL_SIGNATURE, error) ||
            !(p->attestation_key ? add_tcg_eku(x, OID_TCG_KP_AIK_CERTIFICATE, error)
                                 : add_identity_eku(x, error)) ||
            !add_identity_san(x, p->uri, error) ||
            !add_ext_i2d(x, NID_subject_key_identifier, own_id, FALSE, "subjectKeyIdentifier",
                         error) ||
            !add_authority_key_id(x, ca->issuer_id, error) ||
            !add_vtpm_binding(x, uuid, p->ek_cert, error))
                return NULL;
        return g_steal_pointer(&x);
}

X509 *vrot_x509_identity_cert(const VrotX509Signer *ca, EVP_PKEY *key,
                              const VrotX509IdentityParams *params, GError **error)
{
        g_autoptr(X509) x = NULL;
        X509 *cert = NULL;

        g_return_val_if_fail(ca != NULL && key != NULL && params != NULL, NULL);
        g_return_val_if_fail(error == NULL || *error == NULL, NULL);

        ERR_clear_error();
        if ((x = build_identity(ca, key, params, error)))
                cert = sign_with(ca, x, error);
        if (!cert)
                g_prefix_error(error, "identity certificate: ");
        return cert;
}

gboolean vrot_x509_vtpm_binding(const X509 *cert, gchar **ret_instance, GBytes **ret_ek_sha256,
                                GError **error)
{
        g_autoptr(ASN1_OBJECT) obj = OBJ_txt2obj(OID_VROT_VTPM_BINDING, 1);
        int at = obj ? X509_get_ext_by_OBJ(cert, obj, -1) : -1;
        X509_EXTENSION *ext = at >= 0 ? X509_get_ext(cert, at) : NULL;
        const ASN1_OCTET_STRING *value = ext ? X509_EXTENSION_get_data(ext) : NULL;
        const unsigned char *p = value ? ASN1_STRING_get0_data(value) : NULL;
        long len = value ? ASN1_STRING_length(value) : 0;
        g_autoptr(VTPM_BINDING) b = p ? (VTPM_BINDING *)ASN1_item_d2i(
                                                NULL, &p, len, ASN1_ITEM_rptr(VTPM_BINDING))
                                      : NULL;

        ERR_clear_error();
        if (!b || p != ASN1_STRING_get0_data(value) + len ||
            ASN1_STRING_length(b->ek_sha256) != 32) {
                g_set_error_literal(error, VROT_X509_ERROR, VROT_X509_ERROR_PARSE,
                                    ext ? "the vtpmBinding extension is malformed"
                                        : "the certificate has no vtpmBinding extension");
                return FALSE;
        }
        if (ret_instance)
                *ret_instance = g_strndup((const char *)ASN1_STRING_get0_data(b->instance),
                                          (gsize)ASN1_STRING_length(b->instance));
        if (ret_ek_sha256)
                *ret_ek_sha256 = g_bytes_new(ASN1_STRING_get0_data(b->ek_sha256), 32);
        return TRUE;
}

/* --- certificate revocation lists --- */

/*
 * OpenSSL 3.0 has no setter for a CRL's signature algorithm inside the
 * TBSCertList (X509 and X509_REQ have the getters we write through, the
 * CRL has none).  So the CRL is first signed with a throwaway key of the
 * issuer's curve, which makes X509_CRL_sign() write both algorithm
 * identifiers; then the TBSCertList is encoded again, its digest is signed
 * by the real signer (the host TPM), and that signature replaces the
 * throwaway one.  As for certificates, the outcome is what counts: the
 * finished CRL is re-parsed and verified under the issuer's key.
 */
static X509_CRL *sign_crl(const VrotX509Signer *ca, X509_CRL *crl, GError **error)
{
        const char *curve = ca->alg->kind == KEY_EC_P256 ? "P-256" : "P-384";
        g_autoptr(EVP_PKEY) throwaway = NULL;
        g_autoptr(GBytes) sig = NULL, digest = NULL;
        const ASN1_BIT_STRING *value = NULL;
        unsigned char *tbs = NULL, *der = NULL;
        const unsigned char *q;
        guint8 md[EVP_MAX_MD_SIZE];
        size_t md_len = 0;
        X509_CRL *out;
        int len;

        if (ca->alg->kind != KEY_EC_P256 && ca->alg->kind != KEY_EC_P384) {
                g_set_error_literal(error, VROT_X509_ERROR, VROT_X509_ERROR_UNSUPPORTED_KEY,
                                    "CRLs are signed by EC issuers only");
                return NULL;
        }
        if (!(throwaway = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve)) ||
            X509_CRL_sign(crl, throwaway, EVP_get_digestbyname(ca->alg->md)) <= 0 ||
            (len = i2d_re_X509_CRL_tbs(crl, &tbs)) <= 0) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "encoding the TBSCertList");
                return NULL;
        }
        len = EVP_Q_digest(NULL, ca->alg->md, NULL, tbs, (size_t)len, md, &md_len);
        OPENSSL_free(tbs);
        if (!len) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "hashing the TBSCertList");
                return NULL;
        }
        digest = g_bytes_new(md, md_len);
        if (!(sig = call_signer(ca->func, ca->user_data, digest, error)))
                return NULL;
        X509_CRL_get0_signature(crl, &value, NULL);
        if (!ASN1_STRING_set((ASN1_BIT_STRING *)value, g_bytes_get_data(sig, NULL),
                             (int)g_bytes_get_size(sig))) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "setting the CRL signature");
                return NULL;
        }
        ((ASN1_BIT_STRING *)value)->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
        ((ASN1_BIT_STRING *)value)->flags |= ASN1_STRING_FLAG_BITS_LEFT;
        if ((len = i2d_X509_CRL(crl, &der)) <= 0) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "encoding the CRL");
                return NULL;
        }
        q = der;
        out = d2i_X509_CRL(NULL, &q, len);
        OPENSSL_free(der);
        if (!out || X509_CRL_verify(out, ca->issuer_key) != 1) {
                X509_CRL_free(out);
                ossl_error(error, VROT_X509_ERROR_BAD_SIGNATURE,
                           "the CRL's signature does not verify under the issuer's public key");
                return NULL;
        }
        return out;
}

static gboolean add_revoked(X509_CRL *crl, const VrotX509Revoked *r, GError **error)
{
        g_autoptr(BIGNUM) bn = NULL;
        g_autoptr(ASN1_INTEGER) serial = NULL;
        g_autoptr(ASN1_TIME) when = ASN1_TIME_set(NULL, (time_t)r->revoked_at);
        X509_REVOKED *rev = X509_REVOKED_new();
        int digits = r->serial_hex ? BN_hex2bn(&bn, r->serial_hex) : 0;

        if (digits <= 0 || (gsize)digits != strlen(r->serial_hex) || BN_is_negative(bn) ||
            BN_is_zero(bn)) {
                X509_REVOKED_free(rev);
                ERR_clear_error();
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID,
                            "serial '%s' is not a positive hexadecimal number",
                            r->serial_hex ? r->serial_hex : "(null)");
                return FALSE;
        }
        if (!rev || !when || !(serial = BN_to_ASN1_INTEGER(bn, NULL)) ||
            !X509_REVOKED_set_serialNumber(rev, serial) ||
            !X509_REVOKED_set_revocationDate(rev, when) || !X509_CRL_add0_revoked(crl, rev)) {
                X509_REVOKED_free(rev);
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "revoked entry");
        }
        return TRUE;
}

X509_CRL *vrot_x509_crl(const VrotX509Signer *ca, const VrotX509Revoked *revoked, gsize n,
                        guint64 number, gint64 next_update, GError **error)
{
        g_autoptr(X509_CRL) crl = X509_CRL_new();
        g_autoptr(ASN1_TIME) now = ASN1_TIME_set(NULL, time(NULL));
        g_autoptr(ASN1_TIME) next = ASN1_TIME_set(NULL, (time_t)next_update);
        g_autoptr(ASN1_INTEGER) crl_number = ASN1_INTEGER_new();
        g_autoptr(AUTHORITY_KEYID) aki = AUTHORITY_KEYID_new();
        X509_CRL *out = NULL;

        g_return_val_if_fail(ca != NULL && (revoked != NULL || n == 0), NULL);
        ERR_clear_error();
        if (!crl || !now || !next || !crl_number || !aki ||
            !(aki->keyid = ASN1_OCTET_STRING_dup(ca->issuer_id)) ||
            !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
            !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->issuer)) ||
            !X509_CRL_set1_lastUpdate(crl, now) || !X509_CRL_set1_nextUpdate(crl, next) ||
            !ASN1_INTEGER_set_uint64(crl_number, number) ||
            X509_CRL_add1_ext_i2d(crl, NID_crl_number, crl_number, 0, X509V3_ADD_DEFAULT) != 1 ||
            X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, aki, 0,
                                  X509V3_ADD_DEFAULT) != 1) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "CRL fields");
                goto out;
        }
        for (gsize i = 0; i < n; i++) {
                if (!add_revoked(crl, &revoked[i], error))
                        goto out;
        }
        if (!X509_CRL_sort(crl)) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "sorting the CRL");
                goto out;
        }
        out = sign_crl(ca, crl, error);
out:
        if (!out)
                g_prefix_error(error, "CRL: ");
        return out;
}

gchar *vrot_x509_crl_to_pem(const X509_CRL *crl, GError **error)
{
        g_autoptr(BIO) bio = BIO_new(BIO_s_mem());
        char *data = NULL;
        long len;

        if (!bio || PEM_write_bio_X509_CRL(bio, (X509_CRL *)crl) != 1 ||
            (len = BIO_get_mem_data(bio, &data)) <= 0) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "writing the CRL as PEM");
                return NULL;
        }
        return g_strndup(data, (gsize)len);
}

/* --- certification requests --- */

static X509_REQ *build_csr(EVP_PKEY *key, const VrotX509CaParams *p, GError **error)
{
        g_autoptr(X509_NAME) name = NULL;
        g_autoptr(X509_REQ) req = X509_REQ_new();

        if (!check_text("common name", p->common_name, MAX_COMMON_NAME, error) ||
            (p->organization && !check_text("organization", p->organization, MAX_COMMON_NAME,
                                            error)) ||
            !(name = name_new(p->organization, p->common_name, error)))
                return NULL;
        if (!req || !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
            !X509_REQ_set_subject_name(req, name) || !X509_REQ_set_pubkey(req, key)) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "setting the request's fields");
                return NULL;
        }
        return g_steal_pointer(&req);
}

/* As sign_cert(), for a request: OpenSSL 3 has the setters here. */
static gboolean sign_csr(X509_REQ *req, const SigAlg *alg, VrotSignDigestFunc func,
                         gpointer user_data, GError **error)
{
        g_autoptr(X509_ALGOR) algor = X509_ALGOR_new();
        g_autoptr(GBytes) digest = NULL, sig = NULL;
        ASN1_BIT_STRING *bits = ASN1_BIT_STRING_new();
        unsigned char *tbs = NULL;
        guint8 md[EVP_MAX_MD_SIZE];
        size_t md_len = 0;
        int len;

        if (!algor || !bits ||
            !X509_ALGOR_set0(algor, OBJ_nid2obj(alg->sig_nid), alg->param_type, NULL) ||
            !X509_REQ_set1_signature_algo(req, algor) || (len = i2d_re_X509_REQ_tbs(req, &tbs)) <= 0 ||
            !EVP_Q_digest(NULL, alg->md, NULL, tbs, (size_t)len, md, &md_len)) {
                OPENSSL_free(tbs);
                ASN1_BIT_STRING_free(bits);
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "encoding the request");
        }
        OPENSSL_free(tbs);
        digest = g_bytes_new(md, md_len);
        if (!(sig = call_signer(func, user_data, digest, error)) ||
            !ASN1_STRING_set(bits, g_bytes_get_data(sig, NULL), (int)g_bytes_get_size(sig))) {
                ASN1_BIT_STRING_free(bits);
                return sig ? ossl_error(error, VROT_X509_ERROR_CRYPTO, "the signature") : FALSE;
        }
        bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
        bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
        X509_REQ_set0_signature(req, bits);
        return TRUE;
}

/* Re-parses @req from its DER and checks its signature under @key. */
static X509_REQ *reparse_csr(X509_REQ *req, EVP_PKEY *key, GError **error)
{
        unsigned char *der = NULL;
        const unsigned char *p;
        g_autoptr(X509_REQ) out = NULL;
        int len = i2d_X509_REQ(req, &der);

        if (len <= 0) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "encoding the request");
                return NULL;
        }
        p = der;
        out = d2i_X509_REQ(NULL, &p, len);
        OPENSSL_free(der);
        if (!out) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "re-reading the request");
                return NULL;
        }
        if (X509_REQ_verify(out, key) != 1) {
                ossl_error(error, VROT_X509_ERROR_BAD_SIGNATURE,
                           "the request's signature does not verify under its key");
                return NULL;
        }
        return g_steal_pointer(&out);
}

X509_REQ *vrot_x509_csr(EVP_PKEY *key, const VrotX509CaParams *subject, VrotSignDigestFunc func,
                        gpointer user_data, GError **error)
{
        g_autoptr(X509_REQ) req = NULL;
        X509_REQ *out = NULL;
        const SigAlg *alg;

        g_return_val_if_fail(key != NULL && subject != NULL && func != NULL, NULL);
        g_return_val_if_fail(error == NULL || *error == NULL, NULL);

        ERR_clear_error();
        if ((alg = issuer_sig_alg(key, error)) && (req = build_csr(key, subject, error)) &&
            sign_csr(req, alg, func, user_data, error))
                out = reparse_csr(req, key, error);
        if (!out)
                g_prefix_error(error, "certification request: ");
        return out;
}

gchar *vrot_x509_csr_to_pem(const X509_REQ *csr, GError **error)
{
        g_autoptr(BIO) bio = BIO_new(BIO_s_mem());
        char *data = NULL;
        long len;

        g_return_val_if_fail(csr != NULL, NULL);

        if (!bio || !PEM_write_bio_X509_REQ(bio, csr) || (len = BIO_get_mem_data(bio, &data)) <= 0) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "writing PEM");
                return NULL;
        }
        return g_strndup(data, (gsize)len);
}

X509_REQ *vrot_x509_csr_from_pem(const gchar *pem, gsize len, GError **error)
{
        g_autoptr(BIO) bio = NULL;
        g_autoptr(X509_REQ) req = NULL;

        g_return_val_if_fail(pem != NULL || len == 0, NULL);
        g_return_val_if_fail(error == NULL || *error == NULL, NULL);

        if (len == 0 || len > MAX_PEM) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_PARSE,
                            "PEM text of %" G_GSIZE_FORMAT " bytes (1 to %d expected)", len, MAX_PEM);
                return NULL;
        }
        ERR_clear_error();
        if (!(bio = BIO_new_mem_buf(pem, (int)len))) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "reading PEM");
                return NULL;
        }
        if (!(req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL))) {
                ossl_error(error, VROT_X509_ERROR_PARSE, "no PEM certificate request");
                return NULL;
        }
        if (i2d_X509_REQ(req, NULL) > VROT_X509_MAX_DER) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_PARSE,
                            "the request is larger than %d bytes", VROT_X509_MAX_DER);
                return NULL;
        }
        return g_steal_pointer(&req);
}

/* --- encodings --- */

GBytes *vrot_x509_to_der(const X509 *cert, GError **error)
{
        unsigned char *der = NULL;
        int len;

        g_return_val_if_fail(cert != NULL, NULL);

        len = i2d_X509(cert, &der);
        if (len <= 0) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "encoding the certificate");
                return NULL;
        }
        return g_bytes_new_with_free_func(der, (gsize)len, ossl_free, der);
}

gchar *vrot_x509_to_pem(const X509 *cert, GError **error)
{
        g_autoptr(GBytes) der = NULL;

        g_return_val_if_fail(cert != NULL, NULL);

        der = vrot_x509_to_der(cert, error);
        return der ? vrot_x509_der_to_pem(der, error) : NULL;
}

gchar *vrot_x509_der_to_pem(GBytes *der, GError **error)
{
        g_autoptr(BIO) bio = BIO_new(BIO_s_mem());
        gsize der_len = 0;
        const guint8 *p = g_bytes_get_data(der, &der_len);
        char *data = NULL;
        long len;

        if (!bio || !PEM_write_bio(bio, PEM_STRING_X509, "", p, (long)der_len) ||
            (len = BIO_get_mem_data(bio, &data)) <= 0) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "writing PEM");
                return NULL;
        }
        return g_strndup(data, (gsize)len);
}

X509 *vrot_x509_from_der(const guint8 *der, gsize len, GError **error)
{
        const unsigned char *p = der;
        g_autoptr(X509) x = NULL;

        g_return_val_if_fail(der != NULL || len == 0, NULL);
        g_return_val_if_fail(error == NULL || *error == NULL, NULL);

        if (len == 0 || len > VROT_X509_MAX_DER) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_PARSE,
                            "a certificate of %" G_GSIZE_FORMAT " bytes (1 to %d expected)",
                            len, VROT_X509_MAX_DER);
                return NULL;
        }
        ERR_clear_error();
        if (!(x = d2i_X509(NULL, &p, (long)len))) {
                ossl_error(error, VROT_X509_ERROR_PARSE, "not a DER certificate");
                return NULL;
        }
        if (p != der + len) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_PARSE,
                            "%" G_GSIZE_FORMAT " bytes after the certificate",
                            (gsize)(der + len - p));
                return NULL;
        }
        return g_steal_pointer(&x);
}

X509 *vrot_x509_from_pem(const gchar *pem, gsize len, GError **error)
{
        g_autoptr(BIO) bio = NULL;
        g_autoptr(X509) x = NULL;

        g_return_val_if_fail(pem != NULL || len == 0, NULL);
        g_return_val_if_fail(error == NULL || *error == NULL, NULL);

        if (len == 0 || len > MAX_PEM) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_PARSE,
                            "PEM text of %" G_GSIZE_FORMAT " bytes (1 to %d expected)",
                            len, MAX_PEM);
                return NULL;
        }
        ERR_clear_error();
        if (!(bio = BIO_new_mem_buf(pem, (int)len))) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "reading PEM");
                return NULL;
        }
        if (!(x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
                ossl_error(error, VROT_X509_ERROR_PARSE, "no PEM certificate");
                return NULL;
        }
        if (i2d_X509(x, NULL) > VROT_X509_MAX_DER) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_PARSE,
                            "the certificate is larger than %d bytes", VROT_X509_MAX_DER);
                return NULL;
        }
        return g_steal_pointer(&x);
}

static void chain_free(STACK_OF(X509) *chain)
{
        sk_X509_pop_free(chain, X509_free);
}

/* The next block of @bio into *@ret; TRUE with NULL at the end of the text. */
static gboolean next_cert(BIO *bio, X509 **ret, GError **error)
{
        unsigned long e;

        ERR_clear_error();
        *ret = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (*ret)
                return TRUE;
        e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                ERR_clear_error();
                return TRUE;
        }
        return ossl_error(error, VROT_X509_ERROR_PARSE, "a malformed PEM certificate");
}

STACK_OF(X509) *vrot_x509_chain_from_pem(const gchar *pem, gsize len, guint max, GError **error)
{
        STACK_OF(X509) *chain = NULL;
        g_autoptr(BIO) bio = NULL;
        g_autoptr(GError) local = NULL;
        X509 *x = NULL;

        g_return_val_if_fail((pem != NULL || len == 0) && max > 0, NULL);
        if (len == 0 || len > MAX_PEM) {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_PARSE,
                            "PEM text of %" G_GSIZE_FORMAT " bytes (1 to %d expected)", len, MAX_PEM);
                return NULL;
        }
        if (!(bio = BIO_new_mem_buf(pem, (int)len)) || !(chain = sk_X509_new_null())) {
                ossl_error(error, VROT_X509_ERROR_CRYPTO, "reading PEM");
                return NULL;
        }
        while (next_cert(bio, &x, &local) && x) {
                if ((guint)sk_X509_num(chain) == max || i2d_X509(x, NULL) > VROT_X509_MAX_DER ||
                    !sk_X509_push(chain, x)) {
                        X509_free(x);
                        g_set_error(&local, VROT_X509_ERROR, VROT_X509_ERROR_PARSE,
                                    "more than %u certificates, or one over %d bytes", max,
                                    VROT_X509_MAX_DER);
                        break;
                }
        }
        if (!local && sk_X509_num(chain) == 0)
                g_set_error_literal(&local, VROT_X509_ERROR, VROT_X509_ERROR_PARSE,
                                    "no PEM certificate");
        if (local) {
                chain_free(chain);
                g_propagate_error(error, g_steal_pointer(&local));
                return NULL;
        }
        return chain;
}

int vrot_x509_no_passphrase(char *buf, int size, int rwflag, void *u)
{
        (void)buf;
        (void)size;
        (void)rwflag;
        (void)u;
        return -1;
}

/* ---- host transport certificates (docs/migration.md) ---------------------------------- */

/* A DNS name as a certificate's dNSName holds it: letters, digits, '-', '.'. */
static gboolean check_host_name(const char *name, GError **error)
{
        gsize n = name ? strlen(name) : 0;

        for (gsize i = 0; i < n; i++) {
                if (!g_ascii_isalnum(name[i]) && name[i] != '-' && name[i] != '.')
                        n = 0;
        }
        if (n == 0 || n > MAX_COMMON_NAME || name[0] == '-' || name[0] == '.') {
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID,
                            "host name \"%s\": 1 to %d letters, digits, '-' and '.'",
                            name ? name : "", MAX_COMMON_NAME);
                return FALSE;
        }
        return TRUE;
}

static gboolean add_transport_eku(X509 *x, GError **error)
{
        g_autoptr(EXTENDED_KEY_USAGE) eku = sk_ASN1_OBJECT_new_null();
        ASN1_OBJECT *peer = OBJ_txt2obj(OID_VROT_KP_MIGRATION_PEER, 1);

        if (!eku || !peer || !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) ||
            !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)) ||
            !sk_ASN1_OBJECT_push(eku, peer)) {
                ASN1_OBJECT_free(peer);
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "extKeyUsage");
        }
        return add_ext_i2d(x, NID_ext_key_usage, eku, FALSE, "extKeyUsage", error);
}

static gboolean add_dns_san(X509 *x, const char *name, GError **error)
{
        g_autoptr(GENERAL_NAMES) names = sk_GENERAL_NAME_new_null();
        GENERAL_NAME *gn = GENERAL_NAME_new();
        ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();

        if (!names || !gn || !ia5 || !ASN1_STRING_set(ia5, name, -1)) {
                GENERAL_NAME_free(gn);
                ASN1_IA5STRING_free(ia5);
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "subjectAltName dNSName");
        }
        GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
        if (!sk_GENERAL_NAME_push(names, gn)) {
                GENERAL_NAME_free(gn);
                return ossl_error(error, VROT_X509_ERROR_CRYPTO, "subjectAltName dNSName");
        }
        return add_ext_i2d(x, NID_subject_alt_name, names, FALSE, "subjectAltName", error);
}

X509 *vrot_x509_transport_cert(const VrotX509Signer *ca, EVP_PKEY *key, const char *name,
                               gint64 not_after, GError **error)
{
        g_autoptr(X509_NAME) subject = NULL;
        g_autoptr(X509) x = NULL;
        g_autoptr(ASN1_OCTET_STRING) own_id = NULL;
        X509 *cert = NULL;
        char desc[64];

        g_return_val_if_fail(ca != NULL && key != NULL, NULL);
        ERR_clear_error();
        if (key_kind(key) != KEY_EC_P256)
                g_set_error(error, VROT_X509_ERROR, VROT_X509_ERROR_UNSUPPORTED_KEY,
                            "transport key %s is not ECC NIST P-256",
                            key_description(key, desc, sizeof(desc)));
        else if (check_host_name(name, error) && check_not_after(not_after, error) &&
                 (subject = name_new(NULL, name, error)) &&
                 (x = cert_new(X509_get_subject_name(ca->issuer), subject, key, not_after,
                               error)) &&
                 (own_id = key_id_of(x, error)) && add_basic_constraints(x, FALSE, 0, error) &&
                 add_key_usage(x, USAGE_DIGITAL_SIGNATURE, error) &&
                 add_transport_eku(x, error) && add_dns_san(x, name, error) &&
                 add_ext_i2d(x, NID_subject_key_identifier, own_id, FALSE,
                             "subjectKeyIdentifier", error) &&
                 add_authority_key_id(x, ca->issuer_id, error))
                cert = sign_with(ca, x, error);
        if (!cert)
                g_prefix_error(error, "transport certificate: ");
        return cert;
}

gboolean vrot_x509_has_eku(X509 *cert, const char *oid)
{
        g_autoptr(ASN1_OBJECT) want = OBJ_txt2obj(oid, 1);
        EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(cert, NID_ext_key_usage, NULL, NULL);
        gboolean found = FALSE;

        for (int i = 0; eku && want && i < sk_ASN1_OBJECT_num(eku); i++)
                found |= OBJ_cmp(sk_ASN1_OBJECT_value(eku, i), want) == 0;
        EXTENDED_KEY_USAGE_free(eku);
        ERR_clear_error();
        return found;
}

gboolean vrot_x509_is_migration_peer(X509 *cert)
{
        return vrot_x509_has_eku(cert, OID_VROT_KP_MIGRATION_PEER);
}
