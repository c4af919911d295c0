/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "unit.h"
#include "x509.h"

/*
 * The chain under test, as DESIGN "Trust chain" has it: a software fleet
 * root, a host endorsement CA whose key only signs through a callback (a
 * software EC key inside the callback plays the host TPM), and EK
 * certificates for RSA-2048 and P-256 EKs.  Every extension is parsed back
 * with OpenSSL, the chain is checked with X509_verify_cert() in strict mode,
 * and the openssl command line must read and verify the results too.
 */

static const guint8 test_uuid[16] = {
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
};
#define TEST_UUID "12345678-9abc-def0-1122-334455667788"
#define TEST_URI "https://host-17.example.net/vrot/attest"

static GQuark test_tpm_error_quark(void);
G_DEFINE_QUARK(test-tpm-error-quark, test_tpm_error)

static void sk_ASN1_TYPE_free_all(ASN1_SEQUENCE_ANY *s)
{
        sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(AUTHORITY_KEYID, AUTHORITY_KEYID_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ASN1_SEQUENCE_ANY, sk_ASN1_TYPE_free_all)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GENERAL_NAMES, GENERAL_NAMES_free)

/* --- keys, generated once per program --- */

typedef enum {
        K_ROOT_P256, K_ROOT_P384, K_ROOT_RSA, K_TPM, K_TPM2, K_OTHER_P256,
        K_EK_RSA, K_EK_P256, K_RSA1024, K_P384, K_ED25519,
        K_COUNT,
} KeyId;

static EVP_PKEY *keys[K_COUNT];

static EVP_PKEY *key(KeyId id)
{
        if (!keys[id]) {
                switch (id) {
                case K_ROOT_P384:
                case K_P384:
                        keys[id] = EVP_EC_gen("P-384");
                        break;
                case K_ROOT_RSA:
                case K_EK_RSA:
                        keys[id] = EVP_RSA_gen(2048);
                        break;
                case K_RSA1024:
                        keys[id] = EVP_RSA_gen(1024);
                        break;
                case K_ED25519:
                        keys[id] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
                        break;
                default:
                        keys[id] = EVP_EC_gen("P-256");
                        break;
                }
        }
        CU_ASSERT_FATAL(keys[id] != NULL);
        return keys[id];
}

/* --- the simulated host TPM: TPM2_Sign over a digest --- */

typedef enum {
        SIGN_OK,            /* sign with the CA key */
        SIGN_FAIL,          /* fail with a TPM error */
        SIGN_FAIL_SILENT,   /* fail without an error */
        SIGN_NOTHING,       /* succeed without a signature */
        SIGN_EMPTY,         /* succeed with an empty signature */
        SIGN_OTHER_KEY,     /* a valid signature by another key */
        SIGN_GARBAGE,       /* bytes that are no signature */
        SIGN_RAW_RS,        /* r||s instead of DER */
        SIGN_TRAILING_ZERO, /* a valid DER signature whose last octet is 0 */
} SignMode;

typedef struct Tpm {
        SignMode mode;
        EVP_PKEY *key;
        unsigned calls;
        gsize last_len;
        GBytes *last_sig;
} Tpm;

static GBytes *ecdsa_sign(EVP_PKEY *k, const guint8 *digest, gsize len)
{
        g_autoptr(EVP_PKEY_CTX) ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
        guint8 sig[256];
        size_t sig_len = sizeof(sig);

        CU_ASSERT_FATAL(ctx && EVP_PKEY_sign_init(ctx) == 1);
        CU_ASSERT_FATAL(EVP_PKEY_sign(ctx, sig, &sig_len, digest, len) == 1);
        return g_bytes_new(sig, sig_len);
}

static GBytes *sign_trailing_zero(EVP_PKEY *k, const guint8 *digest, gsize len)
{
        for (int i = 0; i < 10000; i++) {
                g_autoptr(GBytes) sig = ecdsa_sign(k, digest, len);
                gsize n;
                const guint8 *p = g_bytes_get_data(sig, &n);
                if (p[n - 1] == 0)
                        return g_steal_pointer(&sig);
        }
        CU_FAIL_FATAL("no ECDSA signature ending in 0x00 in 10000 tries");
        return NULL;
}

static gboolean tpm_sign(const guint8 *digest, gsize len, GBytes **ret_der_sig,
                         gpointer user_data, GError **error)
{
        static const guint8 garbage[72] = { 0x30, 0x46, 0x02, 0x21, 0x00, 0xde, 0xad };
        Tpm *tpm = user_data;
        GBytes *sig = NULL;

        tpm->calls++;
        tpm->last_len = len;
        switch (tpm->mode) {
        case SIGN_OK:
                sig = ecdsa_sign(tpm->key, digest, len);
                break;
        case SIGN_FAIL:
                g_set_error(error, test_tpm_error_quark(), 0x921, "TPM_RC_LOCKOUT");
                return FALSE;
        case SIGN_FAIL_SILENT:
                return FALSE;
        case SIGN_NOTHING:
                return TRUE;
        case SIGN_EMPTY:
                sig = g_bytes_new(NULL, 0);
                break;
        case SIGN_OTHER_KEY:
                sig = ecdsa_sign(key(K_OTHER_P256), digest, len);
                break;
        case SIGN_GARBAGE:
                sig = g_bytes_new(garbage, sizeof(garbage));
                break;
        case SIGN_RAW_RS:
                sig = g_bytes_new(garbage, 64);
                break;
        case SIGN_TRAILING_ZERO:
                sig = sign_trailing_zero(tpm->key, digest, len);
                break;
        }
        g_clear_pointer(&tpm->last_sig, g_bytes_unref);
        tpm->last_sig = g_bytes_ref(sig);
        *ret_der_sig = sig;
        return TRUE;
}

/* --- the chain --- */

typedef struct Chain {
        X509 *root;
        X509 *ca;
        VrotX509Signer *root_signer;
        VrotX509Signer *ca_signer;
        Tpm tpm;
} Chain;

static const VrotX509CaParams root_params = {
        .common_name = "vrot fleet root (dev)", .organization = "vrot test fleet",
};
static const VrotX509CaParams ca_params = {
        .common_name = "vrot host endorsement CA host-17", .organization = "vrot test fleet",
};

static void chain_init_tpm(Chain *c, KeyId root_key, KeyId tpm_key)
{
        GError *error = NULL;

        memset(c, 0, sizeof(*c));
        c->root = vrot_x509_root_cert(key(root_key), &root_params, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        c->root_signer = vrot_x509_signer_new_software(c->root, key(root_key), &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        c->ca = vrot_x509_ca_cert(c->root_signer, key(tpm_key), &ca_params, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        c->tpm.key = key(tpm_key);
        c->ca_signer = vrot_x509_signer_new(c->ca, tpm_sign, &c->tpm, NULL, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
}

static void chain_init(Chain *c, KeyId root_key)
{
        chain_init_tpm(c, root_key, K_TPM);
}

static void chain_clear(Chain *c)
{
        vrot_x509_signer_free(c->ca_signer);
        vrot_x509_signer_free(c->root_signer);
        X509_free(c->ca);
        X509_free(c->root);
        g_clear_pointer(&c->tpm.last_sig, g_bytes_unref);
}

static VrotX509EkParams ek_params(void)
{
        VrotX509EkParams p = {
                .tpm_manufacturer = 0x56524F54, /* "VROT" */
                .tpm_model = "vrot-vtpm",
                .tpm_version = 0x20240125,
                .spec_family = "2.0",
                .spec_level = 0,
                .spec_revision = 164,
                .host_attestation_uri = TEST_URI,
        };
        memcpy(p.instance_uuid, test_uuid, sizeof(test_uuid));
        return p;
}

/* X509_verify_cert() of @leaf against @root, with @intermediate untrusted,
 * in strict RFC 5280 mode.  Returns the X509_V_* result. */
static int verify_chain(X509 *leaf, X509 *intermediate, X509 *root)
{
        X509_STORE *store = X509_STORE_new();
        STACK_OF(X509) *untrusted = sk_X509_new_null();
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        int rc, err;

        CU_ASSERT_FATAL(store && untrusted && ctx);
        CU_ASSERT_FATAL(X509_STORE_add_cert(store, root) == 1);
        if (intermediate) {
                CU_ASSERT_FATAL(sk_X509_push(untrusted, intermediate) > 0);
        }
        CU_ASSERT_FATAL(X509_STORE_CTX_init(ctx, store, leaf, untrusted) == 1);
        X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
        rc = X509_verify_cert(ctx);
        err = X509_STORE_CTX_get_error(ctx);
        X509_STORE_CTX_free(ctx);
        sk_X509_free(untrusted);
        X509_STORE_free(store);
        ERR_clear_error();
        return rc == 1 ? X509_V_OK : (err != X509_V_OK ? err : -1);
}

/* --- extension checks --- */

static const X509_EXTENSION *ext_by_oid(X509 *x, const char *oid)
{
        g_autoptr(ASN1_OBJECT) obj = OBJ_txt2obj(oid, 1);
        int at = X509_get_ext_by_OBJ(x, obj, -1);

        CU_ASSERT_FATAL(at >= 0);
        CU_ASSERT(X509_get_ext_by_OBJ(x, obj, at) == -1); /* exactly once */
        return X509_get_ext(x, at);
}

static void check_oid(const ASN1_OBJECT *obj, const char *want)
{
        char buf[80];

        CU_ASSERT_FATAL(OBJ_obj2txt(buf, sizeof(buf), obj, 1) > 0);
        CU_ASSERT_STRING_EQUAL(buf, want);
}

static void check_asn1_string(const ASN1_STRING *s, int type, const char *want)
{
        CU_ASSERT_EQUAL(ASN1_STRING_type(s), type);
        CU_ASSERT_EQUAL((size_t)ASN1_STRING_length(s), strlen(want));
        CU_ASSERT(memcmp(ASN1_STRING_get0_data(s), want, strlen(want)) == 0);
}

static void check_key_usage(X509 *x, guint want_bits)
{
        int crit = -1;
        g_autoptr(ASN1_BIT_STRING) ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);

        CU_ASSERT_FATAL(ku != NULL);
        CU_ASSERT_EQUAL(crit, 1);
        for (int n = 0; n < 9; n++)
                CU_ASSERT_EQUAL(ASN1_BIT_STRING_get_bit(ku, n), (int)((want_bits >> n) & 1));
}

static void check_basic_constraints(X509 *x, int ca, long pathlen)
{
        int crit = -1;
        g_autoptr(BASIC_CONSTRAINTS) bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);

        CU_ASSERT_FATAL(bc != NULL);
        CU_ASSERT_EQUAL(crit, 1);
        CU_ASSERT_EQUAL(bc->ca != 0, ca);
        if (pathlen < 0) {
                CU_ASSERT_PTR_NULL(bc->pathlen);
        } else {
                CU_ASSERT(bc->pathlen && ASN1_INTEGER_get(bc->pathlen) == pathlen);
        }
}

static void check_aki(X509 *x, X509 *issuer)
{
        int crit = -1;
        g_autoptr(AUTHORITY_KEYID) aki = X509_get_ext_d2i(x, NID_authority_key_identifier, &crit, NULL);
        const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(issuer);

        CU_ASSERT_FATAL(aki != NULL && aki->keyid != NULL && ski != NULL);
        CU_ASSERT_EQUAL(crit, 0);
        CU_ASSERT_EQUAL(ASN1_OCTET_STRING_cmp(aki->keyid, ski), 0);
        CU_ASSERT_PTR_NULL(aki->issuer);
        CU_ASSERT_PTR_NULL(aki->serial);
}

/* SKI is SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 (1)). */
static void check_ski(X509 *x)
{
        int crit = -1;
        g_autoptr(ASN1_OCTET_STRING) ski = X509_get_ext_d2i(x, NID_subject_key_identifier, &crit, NULL);
        const ASN1_BIT_STRING *bits = X509_get0_pubkey_bitstr(x);
        guint8 md[EVP_MAX_MD_SIZE];
        size_t md_len = 0;

        CU_ASSERT_FATAL(ski != NULL && bits != NULL);
        CU_ASSERT_EQUAL(crit, 0);
        CU_ASSERT_FATAL(EVP_Q_digest(NULL, "SHA1", NULL, ASN1_STRING_get0_data(bits),
                                     (size_t)ASN1_STRING_length(bits), md, &md_len) == 1);
        CU_ASSERT_EQUAL(md_len, 20);
        CU_ASSERT_EQUAL(ASN1_STRING_length(ski), 20);
        CU_ASSERT(memcmp(ASN1_STRING_get0_data(ski), md, 20) == 0);
}

/* 16 bytes, positive: the DER INTEGER content is exactly 16 octets. */
static void check_serial(X509 *x)
{
        const ASN1_INTEGER *serial = X509_get0_serialNumber(x);

        CU_ASSERT_EQUAL(ASN1_STRING_type(serial), V_ASN1_INTEGER);
        CU_ASSERT_EQUAL(ASN1_STRING_length(serial), 16);
        CU_ASSERT((ASN1_STRING_get0_data(serial)[0] & 0x80) == 0);
}

static void check_validity_forever(X509 *x)
{
        const ASN1_TIME *nb = X509_get0_notBefore(x), *na = X509_get0_notAfter(x);
        int days = 99, secs = 99;

        CU_ASSERT_EQUAL(ASN1_STRING_type(na), V_ASN1_GENERALIZEDTIME);
        check_asn1_string(na, V_ASN1_GENERALIZEDTIME, "99991231235959Z");
        CU_ASSERT_EQUAL(ASN1_STRING_type(nb), V_ASN1_UTCTIME);
        CU_ASSERT_FATAL(ASN1_TIME_diff(&days, &secs, NULL, nb) == 1);
        CU_ASSERT(days == 0 && secs <= 0 && secs > -300);
}

/* SubjectDirectoryAttributes, decoded generically (not with the module's
 * templates): SEQUENCE OF { OID, SET OF TPMSpecification }. */
static void check_tpm_specification(X509 *x, const char *family, long level, long revision)
{
        const X509_EXTENSION *ext = ext_by_oid(x, "2.5.29.9");
        const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data((X509_EXTENSION *)ext);
        const unsigned char *p = ASN1_STRING_get0_data(v);
        g_autoptr(ASN1_SEQUENCE_ANY) attrs = d2i_ASN1_SEQUENCE_ANY(NULL, &p, ASN1_STRING_length(v));
        g_autoptr(ASN1_SEQUENCE_ANY) attr = NULL, values = NULL, spec = NULL;
        const ASN1_TYPE *t;

        CU_ASSERT_EQUAL(X509_EXTENSION_get_critical(ext), 0);
        CU_ASSERT_FATAL(attrs && sk_ASN1_TYPE_num(attrs) == 1);
        t = sk_ASN1_TYPE_value(attrs, 0);
        CU_ASSERT_FATAL(t->type == V_ASN1_SEQUENCE);
        p = t->value.sequence->data;
        attr = d2i_ASN1_SEQUENCE_ANY(NULL, &p, t->value.sequence->length);
        CU_ASSERT_FATAL(attr && sk_ASN1_TYPE_num(attr) == 2);
        CU_ASSERT_FATAL(sk_ASN1_TYPE_value(attr, 0)->type == V_ASN1_OBJECT);
        check_oid(sk_ASN1_TYPE_value(attr, 0)->value.object, "2.23.133.2.16");
        t = sk_ASN1_TYPE_value(attr, 1);
        CU_ASSERT_FATAL(t->type == V_ASN1_SET);
        p = t->value.set->data;
        values = d2i_ASN1_SET_ANY(NULL, &p, t->value.set->length);
        CU_ASSERT_FATAL(values && sk_ASN1_TYPE_num(values) == 1);
        t = sk_ASN1_TYPE_value(values, 0);
        CU_ASSERT_FATAL(t->type == V_ASN1_SEQUENCE);
        p = t->value.sequence->data;
        spec = d2i_ASN1_SEQUENCE_ANY(NULL, &p, t->value.sequence->length);
        CU_ASSERT_FATAL(spec && sk_ASN1_TYPE_num(spec) == 3);
        CU_ASSERT_FATAL(sk_ASN1_TYPE_value(spec, 0)->type == V_ASN1_UTF8STRING);
        check_asn1_string(sk_ASN1_TYPE_value(spec, 0)->value.utf8string, V_ASN1_UTF8STRING, family);
        CU_ASSERT_FATAL(sk_ASN1_TYPE_value(spec, 1)->type == V_ASN1_INTEGER);
        CU_ASSERT_EQUAL(ASN1_INTEGER_get(sk_ASN1_TYPE_value(spec, 1)->value.integer), level);
        CU_ASSERT_FATAL(sk_ASN1_TYPE_value(spec, 2)->type == V_ASN1_INTEGER);
        CU_ASSERT_EQUAL(ASN1_INTEGER_get(sk_ASN1_TYPE_value(spec, 2)->value.integer), revision);
}

static void check_virtual_platform(X509 *x, const char *uri)
{
        const X509_EXTENSION *ext = ext_by_oid(x, "2.23.133.6.4");
        const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data((X509_EXTENSION *)ext);
        const unsigned char *p = ASN1_STRING_get0_data(v);
        g_autoptr(ASN1_IA5STRING) s = d2i_ASN1_IA5STRING(NULL, &p, ASN1_STRING_length(v));

        CU_ASSERT_EQUAL(X509_EXTENSION_get_critical(ext), 0);
        CU_ASSERT_FATAL(s != NULL);
        CU_ASSERT(p == ASN1_STRING_get0_data(v) + ASN1_STRING_length(v));
        check_asn1_string(s, V_ASN1_IA5STRING, uri);
}

/* The TPM's directoryName: manufacturer, model, version, one RDN each. */
static void check_tpm_dirname(const X509_NAME *name, const VrotX509EkParams *p)
{
        static const char *const oids[] = { "2.23.133.2.1", "2.23.133.2.2", "2.23.133.2.3" };
        g_autofree char *manufacturer = g_strdup_printf("id:%08X", p->tpm_manufacturer);
        g_autofree char *version = g_strdup_printf("id:%08X", p->tpm_version);
        const char *values[] = { manufacturer, p->tpm_model, version };

        CU_ASSERT_FATAL(X509_NAME_entry_count(name) == 3);
        for (int i = 0; i < 3; i++) {
                const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
                check_oid(X509_NAME_ENTRY_get_object(e), oids[i]);
                check_asn1_string(X509_NAME_ENTRY_get_data(e), V_ASN1_UTF8STRING, values[i]);
                CU_ASSERT_EQUAL(X509_NAME_ENTRY_set(e), i);
        }
}

static void check_ek_san(X509 *x, const VrotX509EkParams *p)
{
        int crit = -1;
        g_autoptr(GENERAL_NAMES) names = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
        const GENERAL_NAME *gn;

        CU_ASSERT_FATAL(names != NULL && sk_GENERAL_NAME_num(names) == 2);
        CU_ASSERT_EQUAL(crit, 1);
        gn = sk_GENERAL_NAME_value(names, 0);
        CU_ASSERT_FATAL(gn->type == GEN_DIRNAME);
        check_tpm_dirname(gn->d.directoryName, p);
        gn = sk_GENERAL_NAME_value(names, 1);
        CU_ASSERT_FATAL(gn->type == GEN_URI);
        check_asn1_string(gn->d.uniformResourceIdentifier, V_ASN1_IA5STRING, "urn:uuid:" TEST_UUID);
}

static void check_ek_eku(X509 *x)
{
        int crit = -1;
        g_autoptr(EXTENDED_KEY_USAGE) eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);

        CU_ASSERT_FATAL(eku != NULL && sk_ASN1_OBJECT_num(eku) == 1);
        CU_ASSERT_EQUAL(crit, 0);
        check_oid(sk_ASN1_OBJECT_value(eku, 0), "2.23.133.8.1");
}

static void check_ek_subject(X509 *x)
{
        const X509_NAME *subject = X509_get_subject_name(x);
        char cn[64];

        CU_ASSERT_EQUAL(X509_NAME_entry_count(subject), 1);
        CU_ASSERT_EQUAL(X509_NAME_get_text_by_NID((X509_NAME *)subject, NID_commonName, cn, sizeof(cn)),
                        (int)strlen(TEST_UUID));
        CU_ASSERT_STRING_EQUAL(cn, TEST_UUID);
}

/* --- the profiles --- */

typedef struct RootCase {
        KeyId key;
        int sig_nid;
} RootCase;

static const RootCase root_cases[] = {
        { K_ROOT_P256, NID_ecdsa_with_SHA256 },
        { K_ROOT_P384, NID_ecdsa_with_SHA384 },
        { K_ROOT_RSA, NID_sha256WithRSAEncryption },
};

static void test_x509_root_cert_profile(void)
{
        for (size_t i = 0; i < G_N_ELEMENTS(root_cases); i++) {
                GError *error = NULL;
                g_autoptr(X509) root = vrot_x509_root_cert(key(root_cases[i].key), &root_params, &error);
                char buf[80];

                CU_ASSERT_PTR_NULL_FATAL(error);
                CU_ASSERT_EQUAL(X509_get_version(root), X509_VERSION_3);
                CU_ASSERT_EQUAL(X509_verify(root, key(root_cases[i].key)), 1);
                CU_ASSERT_EQUAL(X509_self_signed(root, 1), 1);
                CU_ASSERT_EQUAL(X509_get_signature_nid(root), root_cases[i].sig_nid);
                CU_ASSERT_EQUAL(X509_NAME_cmp(X509_get_subject_name(root), X509_get_issuer_name(root)), 0);
                X509_NAME_oneline(X509_get_subject_name(root), buf, sizeof(buf));
                CU_ASSERT_STRING_EQUAL(buf, "/O=vrot test fleet/CN=vrot fleet root (dev)");
                CU_ASSERT_EQUAL(X509_get_ext_count(root), 4);
                check_basic_constraints(root, 1, 1);
                check_key_usage(root, 1u << 5 | 1u << 6);
                check_ski(root);
                check_aki(root, root);
                check_serial(root);
                check_validity_forever(root);
                CU_ASSERT_EQUAL(verify_chain(root, NULL, root), X509_V_OK);
        }
}

static void test_x509_ca_cert_profile(void)
{
        for (size_t i = 0; i < G_N_ELEMENTS(root_cases); i++) {
                Chain c;
                char buf[80];

                chain_init(&c, root_cases[i].key);
                CU_ASSERT_EQUAL(X509_get_signature_nid(c.ca), root_cases[i].sig_nid);
                CU_ASSERT_EQUAL(X509_verify(c.ca, X509_get0_pubkey(c.root)), 1);
                CU_ASSERT_EQUAL(EVP_PKEY_eq(X509_get0_pubkey(c.ca), key(K_TPM)), 1);
                CU_ASSERT_EQUAL(X509_NAME_cmp(X509_get_issuer_name(c.ca), X509_get_subject_name(c.root)), 0);
                X509_NAME_oneline(X509_get_subject_name(c.ca), buf, sizeof(buf));
                CU_ASSERT_STRING_EQUAL(buf, "/O=vrot test fleet/CN=vrot host endorsement CA host-17");
                CU_ASSERT_EQUAL(X509_get_ext_count(c.ca), 4);
                check_basic_constraints(c.ca, 1, 0);
                check_key_usage(c.ca, 1u << 5 | 1u << 6);
                check_ski(c.ca);
                check_aki(c.ca, c.root);
                check_serial(c.ca);
                check_validity_forever(c.ca);
                CU_ASSERT_EQUAL(X509_check_issued(c.root, c.ca), X509_V_OK);
                CU_ASSERT_EQUAL(verify_chain(c.ca, NULL, c.root), X509_V_OK);
                CU_ASSERT_PTR_EQUAL(vrot_x509_signer_get_issuer(c.ca_signer), c.ca);
                chain_clear(&c);
        }
}

typedef struct EkCase {
        KeyId key;
        guint key_usage;
} EkCase;

static const EkCase ek_cases[] = {
        { K_EK_RSA, 1u << 2 },  /* keyEncipherment */
        { K_EK_P256, 1u << 4 }, /* keyAgreement */
};

/* The subjectPublicKeyInfo, byte for byte what OpenSSL's encoder makes of
 * the key (EC keys take a shorter way in, lib/x509.c set_pubkey()). */
static void check_spki_is_openssls(X509 *x, EVP_PKEY *k)
{
        unsigned char *mine = NULL, *theirs = NULL;
        int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &mine);
        int m = i2d_PUBKEY(k, &theirs);

        CU_ASSERT(n > 0 && n == m && memcmp(mine, theirs, (size_t)n) == 0);
        OPENSSL_free(mine);
        OPENSSL_free(theirs);
}

static void test_x509_ek_cert_profile(void)
{
        VrotX509EkParams p = ek_params();
        Chain c;

        chain_init(&c, K_ROOT_P256);
        for (size_t i = 0; i < G_N_ELEMENTS(ek_cases); i++) {
                GError *error = NULL;
                g_autoptr(X509) ek;

                c.tpm.calls = 0;
                ek = vrot_x509_ek_cert(c.ca_signer, key(ek_cases[i].key), &p, &error);
                CU_ASSERT_PTR_NULL_FATAL(error);
                CU_ASSERT_EQUAL(c.tpm.calls, 1);
                CU_ASSERT_EQUAL(c.tpm.last_len, 32);
                CU_ASSERT_EQUAL(X509_get_version(ek), X509_VERSION_3);
                CU_ASSERT_EQUAL(X509_get_signature_nid(ek), NID_ecdsa_with_SHA256);
                CU_ASSERT_EQUAL(X509_verify(ek, key(K_TPM)), 1);
                CU_ASSERT_EQUAL(EVP_PKEY_eq(X509_get0_pubkey(ek), key(ek_cases[i].key)), 1);
                check_spki_is_openssls(ek, key(ek_cases[i].key));
                CU_ASSERT_EQUAL(X509_NAME_cmp(X509_get_issuer_name(ek), X509_get_subject_name(c.ca)), 0);
                CU_ASSERT_EQUAL(X509_get_ext_count(ek), 7);
                check_ek_subject(ek);
                check_basic_constraints(ek, 0, -1);
                check_key_usage(ek, ek_cases[i].key_usage);
                check_ek_eku(ek);
                check_ek_san(ek, &p);
                check_tpm_specification(ek, "2.0", 0, 164);
                check_aki(ek, c.ca);
                check_virtual_platform(ek, TEST_URI);
                check_serial(ek);
                check_validity_forever(ek);
        }
        chain_clear(&c);
}

/* The DER-only EK certificate is the same profile, signed once, and its
 * PEM is what OpenSSL writes of the parsed certificate. */
static void test_x509_ek_cert_der(void)
{
        VrotX509EkParams p = ek_params();
        Chain c;

        chain_init(&c, K_ROOT_P256);
        for (size_t i = 0; i < G_N_ELEMENTS(ek_cases); i++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(GBytes) der = NULL;
                g_autoptr(X509) ek = NULL;
                g_autofree gchar *pem = NULL, *pem_of_x509 = NULL;

                c.tpm.calls = 0;
                der = vrot_x509_ek_cert_der(c.ca_signer, key(ek_cases[i].key), &p, &error);
                CU_ASSERT_PTR_NOT_NULL_FATAL(der);
                CU_ASSERT_EQUAL(c.tpm.calls, 1);
                ek = vrot_x509_from_der(g_bytes_get_data(der, NULL), g_bytes_get_size(der), &error);
                CU_ASSERT_PTR_NOT_NULL_FATAL(ek);
                CU_ASSERT_EQUAL(X509_verify(ek, key(K_TPM)), 1);
                CU_ASSERT_EQUAL(EVP_PKEY_eq(X509_get0_pubkey(ek), key(ek_cases[i].key)), 1);
                check_ek_san(ek, &p);
                pem = vrot_x509_der_to_pem(der, &error);
                pem_of_x509 = vrot_x509_to_pem(ek, &error);
                CU_ASSERT_PTR_NOT_NULL_FATAL(pem);
                CU_ASSERT_STRING_EQUAL(pem, pem_of_x509);
                CU_ASSERT(g_str_has_prefix(pem, "-----BEGIN CERTIFICATE-----\n"));
        }
        chain_clear(&c);
}

static void test_x509_ek_cert_chain_verifies(void)
{
        VrotX509EkParams p = ek_params();

        for (size_t r = 0; r < G_N_ELEMENTS(root_cases); r++) {
                Chain c;

                chain_init(&c, root_cases[r].key);
                for (size_t i = 0; i < G_N_ELEMENTS(ek_cases); i++) {
                        GError *error = NULL;
                        g_autoptr(X509) ek = vrot_x509_ek_cert(c.ca_signer, key(ek_cases[i].key), &p, &error);

                        CU_ASSERT_PTR_NULL_FATAL(error);
                        CU_ASSERT_EQUAL(X509_check_issued(c.ca, ek), X509_V_OK);
                        CU_ASSERT_EQUAL(verify_chain(ek, c.ca, c.root), X509_V_OK);
                        /* Without the host CA there is no path to the root. */
                        CU_ASSERT_EQUAL(verify_chain(ek, NULL, c.root),
                                        X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
                }
                chain_clear(&c);
        }
}

/* An EK certificate of another host (same CA name, another host TPM key)
 * does not verify under this host's chain. */
static void test_x509_ek_cert_other_chain_refused(void)
{
        VrotX509EkParams p = ek_params();
        GError *error = NULL;
        Chain a, b;
        g_autoptr(X509) ek = NULL;

        chain_init(&a, K_ROOT_P256);
        chain_init_tpm(&b, K_ROOT_P384, K_TPM2);
        ek = vrot_x509_ek_cert(a.ca_signer, key(K_EK_P256), &p, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        CU_ASSERT_NOT_EQUAL(verify_chain(ek, b.ca, b.root), X509_V_OK);
        chain_clear(&b);
        chain_clear(&a);
}

/* --- the openssl command line reads and verifies what we build --- */

static gchar *write_pem(const char *name, X509 *x)
{
        GError *error = NULL;
        g_autofree gchar *pem = vrot_x509_to_pem(x, &error);
        gchar *path = g_build_filename(unit_tmpdir(), name, NULL);

        CU_ASSERT_PTR_NULL_FATAL(error);
        unit_write_file(path, pem, strlen(pem));
        return path;
}

static gboolean run_openssl(const char *const *argv, gchar **ret_out)
{
        GError *error = NULL;
        gchar *out = NULL, *err = NULL;
        gint status = -1;
        gboolean ok;

        ok = g_spawn_sync(NULL, (gchar **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err,
                          &status, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        ok = ok && g_spawn_check_wait_status(status, NULL);
        if (!ok)
                fprintf(stderr, "%s failed:\n%s%s", argv[1], out, err);
        g_free(err);
        *ret_out = out;
        return ok;
}

static void test_x509_ek_cert_openssl_cli(void)
{
        VrotX509EkParams p = ek_params();
        Chain c;

        chain_init(&c, K_ROOT_P256);
        for (size_t i = 0; i < G_N_ELEMENTS(ek_cases); i++) {
                static const char *const want[] = {
                        "X509v3 Subject Alternative Name: critical",
                        "DirName:/2.23.133.2.1=id:56524F54/2.23.133.2.2=vrot-vtpm/2.23.133.2.3=id:20240125",
                        "URI:urn:uuid:" TEST_UUID,
                        "X509v3 Key Usage: critical",
                        "X509v3 Basic Constraints: critical",
                        "CA:FALSE",
                        "2.23.133.8.1",
                        "X509v3 Subject Directory Attributes",
                        "2.23.133.6.4",
                        "Subject: CN = " TEST_UUID,
                        "Not After : Dec 31 23:59:59 9999 GMT",
                };
                GError *error = NULL;
                g_autoptr(X509) ek = vrot_x509_ek_cert(c.ca_signer, key(ek_cases[i].key), &p, &error);
                g_autofree gchar *root_pem = write_pem("root.pem", c.root);
                g_autofree gchar *ca_pem = write_pem("ca.pem", c.ca);
                g_autofree gchar *ek_pem = write_pem("ek.pem", ek);
                const char *text[] = { "openssl", "x509", "-noout", "-text", "-in", ek_pem, NULL };
                const char *parse[] = { "openssl", "asn1parse", "-in", ek_pem, NULL };
                const char *verify[] = { "openssl", "verify", "-x509_strict", "-CAfile", root_pem,
                                         "-untrusted", ca_pem, ek_pem, NULL };
                g_autofree gchar *out_text = NULL, *out_parse = NULL, *out_verify = NULL;

                CU_ASSERT_PTR_NULL_FATAL(error);
                CU_ASSERT(run_openssl(text, &out_text));
                for (size_t w = 0; w < G_N_ELEMENTS(want); w++) {
                        if (!strstr(out_text, want[w]))
                                fprintf(stderr, "missing in openssl x509 -text: %s\n", want[w]);
                        CU_ASSERT(strstr(out_text, want[w]) != NULL);
                }
                CU_ASSERT(strstr(out_text, i == 0 ? "Key Encipherment" : "Key Agreement") != NULL);
                CU_ASSERT(run_openssl(parse, &out_parse));
                CU_ASSERT(run_openssl(verify, &out_verify));
                CU_ASSERT(out_verify && strstr(out_verify, ": OK") != NULL);
        }
        chain_clear(&c);
}

/* --- the signer --- */

typedef struct SignCase {
        SignMode mode;
        GQuark domain;
        int code;
        const char *msg;
} SignCase;

static void test_x509_ek_cert_signer_errors(void)
{
        const SignCase cases[] = {
                { SIGN_FAIL, test_tpm_error_quark(), 0x921, "EK certificate: signer: TPM_RC_LOCKOUT" },
                { SIGN_FAIL_SILENT, VROT_X509_ERROR, VROT_X509_ERROR_SIGNER, "without saying why" },
                { SIGN_NOTHING, VROT_X509_ERROR, VROT_X509_ERROR_SIGNER, "signature of 0 bytes" },
                { SIGN_EMPTY, VROT_X509_ERROR, VROT_X509_ERROR_SIGNER, "signature of 0 bytes" },
                { SIGN_OTHER_KEY, VROT_X509_ERROR, VROT_X509_ERROR_BAD_SIGNATURE, "does not verify" },
                { SIGN_GARBAGE, VROT_X509_ERROR, VROT_X509_ERROR_BAD_SIGNATURE, "does not verify" },
                { SIGN_RAW_RS, VROT_X509_ERROR, VROT_X509_ERROR_BAD_SIGNATURE, "does not verify" },
        };
        VrotX509EkParams p = ek_params();
        Chain c;

        chain_init(&c, K_ROOT_P256);
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                GError *error = NULL;
                X509 *ek;

                c.tpm.mode = cases[i].mode;
                ek = vrot_x509_ek_cert(c.ca_signer, key(K_EK_P256), &p, &error);
                CU_ASSERT_PTR_NULL(ek);
                CU_ASSERT_FATAL(error != NULL);
                CU_ASSERT(g_error_matches(error, cases[i].domain, cases[i].code));
                if (!strstr(error->message, cases[i].msg))
                        fprintf(stderr, "case %zu: %s\n", i, error->message);
                CU_ASSERT(strstr(error->message, cases[i].msg) != NULL);
                CU_ASSERT(g_str_has_prefix(error->message, "EK certificate: "));
                CU_ASSERT_EQUAL(ERR_peek_error(), 0); /* the OpenSSL queue is left empty */
                g_clear_error(&error);
                X509_free(ek);
        }
        chain_clear(&c);
}

/* A signature ending in 0x00 must go into the BIT STRING whole. */
static void test_x509_ek_cert_signature_trailing_zero(void)
{
        VrotX509EkParams p = ek_params();
        const ASN1_BIT_STRING *sig = NULL;
        GError *error = NULL;
        g_autoptr(X509) ek = NULL;
        Chain c;

        chain_init(&c, K_ROOT_P256);
        c.tpm.mode = SIGN_TRAILING_ZERO;
        ek = vrot_x509_ek_cert(c.ca_signer, key(K_EK_P256), &p, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        X509_get0_signature(&sig, NULL, ek);
        CU_ASSERT_EQUAL((gsize)ASN1_STRING_length(sig), g_bytes_get_size(c.tpm.last_sig));
        CU_ASSERT(memcmp(ASN1_STRING_get0_data(sig), g_bytes_get_data(c.tpm.last_sig, NULL),
                         g_bytes_get_size(c.tpm.last_sig)) == 0);
        CU_ASSERT_EQUAL(verify_chain(ek, c.ca, c.root), X509_V_OK);
        chain_clear(&c);
}

/* A CA certificate made with plain OpenSSL, for issuers the module must refuse. */
static X509 *foreign_ca(EVP_PKEY *k, gboolean with_ski, gboolean ca)
{
        X509 *x = X509_new();
        X509V3_CTX ctx;
        X509_EXTENSION *ext;

        CU_ASSERT_FATAL(x != NULL);
        X509_set_version(x, X509_VERSION_3);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                   (const unsigned char *)"foreign", -1, -1, 0);
        X509_set_issuer_name(x, X509_get_subject_name(x));
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 3600);
        X509_set_pubkey(x, k);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
        if (with_ski) {
                ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
                X509_add_ext(x, ext, -1);
                X509_EXTENSION_free(ext);
        }
        CU_ASSERT_FATAL(X509_sign(x, k, EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519 ? NULL : EVP_sha256()) > 0);
        return x;
}

static void test_x509_signer_new_refusals(void)
{
        typedef struct {
                X509 *issuer;
                EVP_PKEY *software_key; /* NULL: a callback signer */
                int code;
        } Case;
        VrotX509EkParams p = ek_params();
        GError *error = NULL;
        Chain c;
        g_autoptr(X509) ek = NULL, no_ski = NULL, not_ca = NULL, ed = NULL;

        chain_init(&c, K_ROOT_P256);
        ek = vrot_x509_ek_cert(c.ca_signer, key(K_EK_P256), &p, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        no_ski = foreign_ca(key(K_OTHER_P256), FALSE, TRUE);
        not_ca = foreign_ca(key(K_OTHER_P256), TRUE, FALSE);
        ed = foreign_ca(key(K_ED25519), TRUE, TRUE);
        {
                const Case cases[] = {
                        { ek, NULL, VROT_X509_ERROR_INVALID },       /* an end entity */
                        { not_ca, NULL, VROT_X509_ERROR_INVALID },   /* cA FALSE */
                        { no_ski, NULL, VROT_X509_ERROR_INVALID },   /* no key identifier */
                        { ed, NULL, VROT_X509_ERROR_UNSUPPORTED_KEY },
                        { ed, key(K_ED25519), VROT_X509_ERROR_UNSUPPORTED_KEY },
                        { c.root, key(K_OTHER_P256), VROT_X509_ERROR_INVALID }, /* not its key */
                };
                for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                        VrotX509Signer *s = cases[i].software_key
                                ? vrot_x509_signer_new_software(cases[i].issuer, cases[i].software_key, &error)
                                : vrot_x509_signer_new(cases[i].issuer, tpm_sign, &c.tpm, NULL, &error);
                        CU_ASSERT_PTR_NULL(s);
                        CU_ASSERT(g_error_matches(error, VROT_X509_ERROR, cases[i].code));
                        CU_ASSERT_EQUAL(ERR_peek_error(), 0);
                        g_clear_error(&error);
                        vrot_x509_signer_free(s);
                }
        }
        chain_clear(&c);
}

static unsigned destroyed;

static void count_destroy(gpointer p)
{
        (void)p;
        destroyed++;
}

/* @destroy runs once when the signer is freed, never when creation fails. */
static void test_x509_signer_new_user_data(void)
{
        GError *error = NULL;
        Chain c;
        VrotX509Signer *s;

        chain_init(&c, K_ROOT_P256);
        destroyed = 0;
        s = vrot_x509_signer_new(c.ca, tpm_sign, &c.tpm, count_destroy, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        vrot_x509_signer_free(s);
        CU_ASSERT_EQUAL(destroyed, 1);
        {
                g_autoptr(X509) not_ca = foreign_ca(key(K_OTHER_P256), TRUE, FALSE);
                s = vrot_x509_signer_new(not_ca, tpm_sign, &c.tpm, count_destroy, &error);
                CU_ASSERT_PTR_NULL(s);
                g_clear_error(&error);
        }
        CU_ASSERT_EQUAL(destroyed, 1);
        vrot_x509_signer_free(NULL);
        chain_clear(&c);
}

/* --- refused inputs --- */

static void test_x509_ek_cert_unsupported_key(void)
{
        static const KeyId bad[] = { K_RSA1024, K_P384, K_ED25519 };
        VrotX509EkParams p = ek_params();
        Chain c;

        chain_init(&c, K_ROOT_P256);
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                GError *error = NULL;
                X509 *ek = vrot_x509_ek_cert(c.ca_signer, key(bad[i]), &p, &error);

                CU_ASSERT_PTR_NULL(ek);
                CU_ASSERT(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_UNSUPPORTED_KEY));
                CU_ASSERT(error && strstr(error->message, "not RSA-2048 or ECC NIST P-256"));
                g_clear_error(&error);
                X509_free(ek);
        }
        CU_ASSERT_EQUAL(c.tpm.calls, 0);
        chain_clear(&c);
}

static void test_x509_root_ca_cert_unsupported_key(void)
{
        static const KeyId bad[] = { K_RSA1024, K_ED25519 };
        Chain c;

        chain_init(&c, K_ROOT_P256);
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                GError *error = NULL;
                X509 *x = vrot_x509_root_cert(key(bad[i]), &root_params, &error);

                CU_ASSERT_PTR_NULL(x);
                CU_ASSERT(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_UNSUPPORTED_KEY));
                g_clear_error(&error);
                x = vrot_x509_ca_cert(c.root_signer, key(bad[i]), &ca_params, &error);
                CU_ASSERT_PTR_NULL(x);
                CU_ASSERT(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_UNSUPPORTED_KEY));
                g_clear_error(&error);
        }
        chain_clear(&c);
}

static void test_x509_ek_cert_invalid_params(void)
{
        typedef struct {
                const char *model, *family, *uri;
                gint64 not_after;
                const char *msg;
        } Case;
        g_autofree char *long_model = g_strnfill(257, 'm');
        g_autofree char *u1021 = g_strnfill(1021, 'u');
        g_autofree char *long_uri = g_strconcat("urn:", u1021, NULL);
        const Case cases[] = {
                { NULL, "2.0", TEST_URI, 0, "TPM model is empty" },
                { "", "2.0", TEST_URI, 0, "TPM model is empty" },
                { long_model, "2.0", TEST_URI, 0, "257 characters" },
                { "vrot\xff", "2.0", TEST_URI, 0, "not valid UTF-8" },
                { "vrot\nvtpm", "2.0", TEST_URI, 0, "control character" },
                { "vrot-vtpm", NULL, TEST_URI, 0, "family is empty" },
                { "vrot-vtpm", "2.0", NULL, 0, "1 to 1024" },
                { "vrot-vtpm", "2.0", "", 0, "1 to 1024" },
                { "vrot-vtpm", "2.0", long_uri, 0, "1 to 1024" },
                { "vrot-vtpm", "2.0", "host-17/attest", 0, "no scheme" },
                { "vrot-vtpm", "2.0", ":attest", 0, "no scheme" },
                { "vrot-vtpm", "2.0", "1https://h/a", 0, "no scheme" },
                { "vrot-vtpm", "2.0", "https://h/a b", 0, "printable ASCII" },
                { "vrot-vtpm", "2.0", "https://h\xc3\xa9/", 0, "printable ASCII" },
                { "vrot-vtpm", "2.0", TEST_URI, 1, "notAfter" },
                { "vrot-vtpm", "2.0", TEST_URI, G_GINT64_CONSTANT(253402300800), "notAfter" },
        };
        Chain c;

        chain_init(&c, K_ROOT_P256);
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                VrotX509EkParams p = ek_params();
                GError *error = NULL;
                X509 *ek;

                p.tpm_model = cases[i].model;
                p.spec_family = cases[i].family;
                p.host_attestation_uri = cases[i].uri;
                p.not_after = cases[i].not_after;
                ek = vrot_x509_ek_cert(c.ca_signer, key(K_EK_P256), &p, &error);
                CU_ASSERT_PTR_NULL(ek);
                CU_ASSERT(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID));
                if (error && !strstr(error->message, cases[i].msg))
                        fprintf(stderr, "case %zu: %s\n", i, error->message);
                CU_ASSERT(error && strstr(error->message, cases[i].msg));
                g_clear_error(&error);
                X509_free(ek);
        }
        CU_ASSERT_EQUAL(c.tpm.calls, 0);
        chain_clear(&c);
}

static void test_x509_ca_cert_invalid_params(void)
{
        g_autofree char *long_cn = g_strnfill(65, 'c');
        const VrotX509CaParams cases[] = {
                { .common_name = NULL },
                { .common_name = "" },
                { .common_name = long_cn },
                { .common_name = "host CA", .organization = "" },
                { .common_name = "host CA", .not_after = 1 },
        };
        Chain c;

        chain_init(&c, K_ROOT_P256);
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                GError *error = NULL;
                X509 *x = vrot_x509_ca_cert(c.root_signer, key(K_OTHER_P256), &cases[i], &error);

                CU_ASSERT_PTR_NULL(x);
                CU_ASSERT(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID));
                CU_ASSERT(error && g_str_has_prefix(error->message, "host endorsement CA certificate: "));
                g_clear_error(&error);
                x = vrot_x509_root_cert(key(K_OTHER_P256), &cases[i], &error);
                CU_ASSERT_PTR_NULL(x);
                CU_ASSERT(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID));
                g_clear_error(&error);
        }
        chain_clear(&c);
}

/* --- validity and serial --- */

static void test_x509_ek_cert_not_after(void)
{
        typedef struct {
                gint64 not_after;
                int type;
        } Case;
        gint64 tomorrow = g_get_real_time() / G_USEC_PER_SEC + 86400;
        const Case cases[] = {
                { tomorrow, V_ASN1_UTCTIME },
                { G_GINT64_CONSTANT(2524608000), V_ASN1_GENERALIZEDTIME }, /* 2050-01-01 */
        };
        Chain c;

        chain_init(&c, K_ROOT_P256);
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                VrotX509EkParams p = ek_params();
                GError *error = NULL;
                g_autoptr(X509) ek = NULL;
                const ASN1_TIME *na;

                p.not_after = cases[i].not_after;
                ek = vrot_x509_ek_cert(c.ca_signer, key(K_EK_RSA), &p, &error);
                CU_ASSERT_PTR_NULL_FATAL(error);
                na = X509_get0_notAfter(ek);
                CU_ASSERT_EQUAL(ASN1_STRING_type(na), cases[i].type);
                CU_ASSERT_EQUAL(ASN1_TIME_cmp_time_t(na, (time_t)cases[i].not_after), 0);
        }
        chain_clear(&c);
}

static void test_x509_ek_cert_serial_unique(void)
{
        VrotX509EkParams p = ek_params();
        GError *error = NULL;
        g_autoptr(X509) a = NULL, b = NULL;
        Chain c;

        chain_init(&c, K_ROOT_P256);
        a = vrot_x509_ek_cert(c.ca_signer, key(K_EK_P256), &p, &error);
        b = vrot_x509_ek_cert(c.ca_signer, key(K_EK_P256), &p, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        check_serial(a);
        check_serial(b);
        CU_ASSERT_NOT_EQUAL(ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(b)), 0);
        chain_clear(&c);
}

/* --- encodings --- */

static void test_x509_der_round_trip(void)
{
        GError *error = NULL;
        g_autoptr(X509) root = vrot_x509_root_cert(key(K_ROOT_P256), &root_params, &error);
        g_autoptr(GBytes) der = vrot_x509_to_der(root, &error);
        g_autoptr(X509) back = NULL;
        gsize len;
        const guint8 *data = g_bytes_get_data(der, &len);
        g_autofree guint8 *longer = g_malloc0(len + 1);

        CU_ASSERT_PTR_NULL_FATAL(error);
        back = vrot_x509_from_der(data, len, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        CU_ASSERT_EQUAL(X509_cmp(root, back), 0);

        memcpy(longer, data, len);
        {
                const struct { const guint8 *p; gsize len; const char *msg; } bad[] = {
                        { data, 0, "0 bytes" },
                        { data, len - 1, "not a DER certificate" },
                        { longer, len + 1, "1 bytes after the certificate" },
                        { data + 1, len - 1, "not a DER certificate" },
                        { longer, VROT_X509_MAX_DER + 1, "1 to 65536" },
                };
                for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                        X509 *x = vrot_x509_from_der(bad[i].p, bad[i].len, &error);
                        CU_ASSERT_PTR_NULL(x);
                        CU_ASSERT(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_PARSE));
                        CU_ASSERT(error && strstr(error->message, bad[i].msg));
                        CU_ASSERT_EQUAL(ERR_peek_error(), 0);
                        g_clear_error(&error);
                }
        }
}

static void test_x509_pem_round_trip(void)
{
        GError *error = NULL;
        g_autoptr(X509) root = vrot_x509_root_cert(key(K_ROOT_P256), &root_params, &error);
        g_autofree gchar *pem = vrot_x509_to_pem(root, &error);
        g_autofree gchar *framed = NULL;
        g_autoptr(X509) back = NULL, back2 = NULL;

        CU_ASSERT_PTR_NULL_FATAL(error);
        CU_ASSERT(g_str_has_prefix(pem, "-----BEGIN CERTIFICATE-----\n"));
        back = vrot_x509_from_pem(pem, strlen(pem), &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        CU_ASSERT_EQUAL(X509_cmp(root, back), 0);
        framed = g_strconcat("fleet root of the test fleet\n", pem, "trailing words\n", NULL);
        back2 = vrot_x509_from_pem(framed, strlen(framed), &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        CU_ASSERT_EQUAL(X509_cmp(root, back2), 0);
        {
                const char *bad[] = { "", "no certificate here\n",
                                      "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" };
                for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                        X509 *x = vrot_x509_from_pem(bad[i], strlen(bad[i]), &error);
                        CU_ASSERT_PTR_NULL(x);
                        CU_ASSERT(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_PARSE));
                        CU_ASSERT_EQUAL(ERR_peek_error(), 0);
                        g_clear_error(&error);
                }
        }
}

/* --- certification requests --- */

static void test_x509_csr_signed_by_tpm(void)
{
        Tpm tpm = { .mode = SIGN_OK, .key = key(K_TPM) };
        GError *error = NULL;
        g_autoptr(X509_REQ) req = vrot_x509_csr(key(K_TPM), &ca_params, tpm_sign, &tpm, &error);
        g_autofree gchar *pem = NULL, *path = NULL, *out = NULL;
        g_autoptr(X509_REQ) back = NULL;
        char cn[80] = "", org[80] = "";

        CU_ASSERT_PTR_NULL_FATAL(error);
        CU_ASSERT_EQUAL(tpm.calls, 1);
        CU_ASSERT_EQUAL(tpm.last_len, 32);
        CU_ASSERT_EQUAL(X509_REQ_verify(req, key(K_TPM)), 1);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(X509_REQ_get0_pubkey(req), key(K_TPM)), 1);
        X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof(cn));
        X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_organizationName, org,
                                  sizeof(org));
        CU_ASSERT_STRING_EQUAL(cn, ca_params.common_name);
        CU_ASSERT_STRING_EQUAL(org, ca_params.organization);
        pem = vrot_x509_csr_to_pem(req, &error);
        CU_ASSERT_FATAL(pem && g_str_has_prefix(pem, "-----BEGIN CERTIFICATE REQUEST-----\n"));
        back = vrot_x509_csr_from_pem(pem, strlen(pem), &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        CU_ASSERT_EQUAL(X509_REQ_verify(back, key(K_TPM)), 1);
        path = g_build_filename(unit_tmpdir(), "req.pem", NULL);
        unit_write_file(path, pem, strlen(pem));
        {
                const char *verify[] = { "openssl", "req", "-verify", "-noout", "-in", path, NULL };
                CU_ASSERT(run_openssl(verify, &out));
        }
        g_clear_pointer(&tpm.last_sig, g_bytes_unref);
}

static void test_x509_csr_errors(void)
{
        static const VrotX509CaParams no_cn = { .common_name = "" };
        Tpm tpm = { .key = key(K_TPM) };
        const SignCase cases[] = {
                { SIGN_FAIL, test_tpm_error_quark(), 0x921, "certification request: signer: TPM_RC" },
                { SIGN_OTHER_KEY, VROT_X509_ERROR, VROT_X509_ERROR_BAD_SIGNATURE, "does not verify" },
                { SIGN_GARBAGE, VROT_X509_ERROR, VROT_X509_ERROR_BAD_SIGNATURE, "does not verify" },
                { SIGN_NOTHING, VROT_X509_ERROR, VROT_X509_ERROR_SIGNER, "signature of 0 bytes" },
        };
        GError *error = NULL;
        X509_REQ *req;

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                tpm.mode = cases[i].mode;
                req = vrot_x509_csr(key(K_TPM), &ca_params, tpm_sign, &tpm, &error);
                CU_ASSERT_PTR_NULL(req);
                CU_ASSERT(g_error_matches(error, cases[i].domain, cases[i].code));
                if (!error || !strstr(error->message, cases[i].msg))
                        fprintf(stderr, "case %zu: %s\n", i, error ? error->message : "ok");
                CU_ASSERT(error && strstr(error->message, cases[i].msg) != NULL);
                CU_ASSERT_EQUAL(ERR_peek_error(), 0);
                g_clear_error(&error);
                X509_REQ_free(req);
        }
        tpm.mode = SIGN_OK;
        req = vrot_x509_csr(key(K_ED25519), &ca_params, tpm_sign, &tpm, &error);
        CU_ASSERT(req == NULL && g_error_matches(error, VROT_X509_ERROR,
                                                 VROT_X509_ERROR_UNSUPPORTED_KEY));
        g_clear_error(&error);
        req = vrot_x509_csr(key(K_TPM), &no_cn, tpm_sign, &tpm, &error);
        CU_ASSERT(req == NULL && g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID));
        g_clear_error(&error);
        g_clear_pointer(&tpm.last_sig, g_bytes_unref);
}

static void test_x509_csr_from_pem_refusals(void)
{
        GError *error = NULL;
        g_autoptr(X509) root = vrot_x509_root_cert(key(K_ROOT_P256), &root_params, &error);
        g_autofree gchar *cert_pem = vrot_x509_to_pem(root, &error);
        const char *bad[] = {
                "", "no request\n", cert_pem,
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        };

        CU_ASSERT_PTR_NULL_FATAL(error);
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                X509_REQ *req = vrot_x509_csr_from_pem(bad[i], strlen(bad[i]), &error);

                CU_ASSERT_PTR_NULL(req);
                CU_ASSERT(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_PARSE));
                CU_ASSERT_EQUAL(ERR_peek_error(), 0);
                g_clear_error(&error);
                X509_REQ_free(req);
        }
}

typedef struct ChainCase {
        const char *what;
        const char *text;       /* %1$s and %2$s: two certificates */
        int n;                  /* -1: refused */
} ChainCase;

static void test_x509_chain_from_pem(void)
{
        static const ChainCase cases[] = {
                { "one", "%1$s", 1 },
                { "two with words around", "issuer\n%1$sroot\n%2$send\n", 2 },
                { "three (max 3)", "%1$s%2$s%1$s", 3 },
                { "four (max 3)", "%1$s%2$s%1$s%2$s", -1 },
                { "none", "just words\n", -1 },
                { "a broken second block",
                  "%1$s-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", -1 },
        };
        GError *error = NULL;
        Chain c;

        chain_init(&c, K_ROOT_P256);
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree gchar *a = vrot_x509_to_pem(c.ca, NULL), *b = vrot_x509_to_pem(c.root, NULL);
                g_autofree gchar *text = NULL;
                STACK_OF(X509) *chain;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
                text = g_strdup_printf(cases[i].text, a, b);
#pragma GCC diagnostic pop
                chain = vrot_x509_chain_from_pem(text, strlen(text), 3, &error);
                if (cases[i].n < 0) {
                        CU_ASSERT_PTR_NULL(chain);
                        CU_ASSERT(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_PARSE));
                        CU_ASSERT_EQUAL(ERR_peek_error(), 0);
                        g_clear_error(&error);
                        continue;
                }
                if (!chain)
                        fprintf(stderr, "%s: %s\n", cases[i].what, error->message);
                CU_ASSERT_FATAL(chain != NULL);
                CU_ASSERT_EQUAL(sk_X509_num(chain), cases[i].n);
                CU_ASSERT_EQUAL(X509_cmp(sk_X509_value(chain, 0), c.ca), 0);
                if (cases[i].n > 1)
                        CU_ASSERT_EQUAL(X509_cmp(sk_X509_value(chain, 1), c.root), 0);
                sk_X509_pop_free(chain, X509_free);
        }
        chain_clear(&c);
}

/* --- service identities and CRLs --- */

/* A host's migration transport certificate (docs/migration.md). */
static void test_x509_transport_cert_profile(void)
{
        GError *error = NULL;
        Chain c;
        g_autoptr(X509) t = NULL;
        GENERAL_NAMES *sans;
        GENERAL_NAME *gn;
        static const char *const bad_names[] = { "", "a b", ".lead", "-lead", "host_b" };

        chain_init(&c, K_ROOT_P256);
        t = vrot_x509_transport_cert(c.ca_signer, key(K_OTHER_P256), "host-b.example", 0, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        CU_ASSERT_EQUAL(verify_chain(t, c.ca, c.root), X509_V_OK);
        check_basic_constraints(t, 0, -1);
        check_key_usage(t, 1u << 0);
        check_aki(t, c.ca);
        check_ski(t);
        CU_ASSERT_TRUE(vrot_x509_is_migration_peer(t));
        CU_ASSERT_EQUAL(X509_check_purpose(t, X509_PURPOSE_SSL_SERVER, 0), 1);
        CU_ASSERT_EQUAL(X509_check_purpose(t, X509_PURPOSE_SSL_CLIENT, 0), 1);
        CU_ASSERT_EQUAL(X509_check_host(t, "host-b.example", 0, 0, NULL), 1);
        CU_ASSERT_EQUAL(X509_check_host(t, "host-c.example", 0, 0, NULL), 0);
        sans = X509_get_ext_d2i(t, NID_subject_alt_name, NULL, NULL);
        CU_ASSERT_EQUAL_FATAL(sk_GENERAL_NAME_num(sans), 1);
        gn = sk_GENERAL_NAME_value(sans, 0);
        CU_ASSERT_EQUAL(gn->type, GEN_DNS);
        GENERAL_NAMES_free(sans);
        /* Other certificates are not migration peers. */
        CU_ASSERT_FALSE(vrot_x509_is_migration_peer(c.ca));
        for (gsize i = 0; i < G_N_ELEMENTS(bad_names); i++) {
                CU_ASSERT_PTR_NULL(vrot_x509_transport_cert(c.ca_signer, key(K_OTHER_P256),
                                                            bad_names[i], 0, &error));
                CU_ASSERT_TRUE(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID));
                g_clear_error(&error);
        }
        CU_ASSERT_PTR_NULL(vrot_x509_transport_cert(c.ca_signer, key(K_EK_RSA), "host-b", 0,
                                                    &error));
        CU_ASSERT_TRUE(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_UNSUPPORTED_KEY));
        g_clear_error(&error);
        chain_clear(&c);
}

static void test_x509_identity_cert_profile(void)
{
        VrotX509EkParams ep = ek_params();
        GError *error = NULL;
        Chain c;
        g_autoptr(X509) ek = NULL, id = NULL;
        g_autoptr(GBytes) ek_hash = NULL;
        g_autofree gchar *instance = NULL, *path = NULL, *ca = NULL, *root = NULL, *out = NULL;
        guint8 md[32];
        unsigned int md_len = 0;
        VrotX509IdentityParams ip = { .name = "billing", .uri = "spiffe://vrot.test/billing" };

        chain_init(&c, K_ROOT_P256);
        ek = vrot_x509_ek_cert(c.ca_signer, key(K_EK_RSA), &ep, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        ip.ek_cert = ek;
        memcpy(ip.instance_uuid, test_uuid, sizeof(test_uuid));
        id = vrot_x509_identity_cert(c.ca_signer, key(K_OTHER_P256), &ip, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        CU_ASSERT_EQUAL(verify_chain(id, c.ca, c.root), X509_V_OK);
        check_basic_constraints(id, 0, -1);
        check_key_usage(id, 1u << 0);
        check_aki(id, c.ca);
        check_ski(id);
        check_serial(id);
        CU_ASSERT_EQUAL(X509_check_purpose(id, X509_PURPOSE_SSL_SERVER, 0), 1);
        CU_ASSERT_EQUAL(X509_check_purpose(id, X509_PURPOSE_SSL_CLIENT, 0), 1);
        CU_ASSERT_TRUE(vrot_x509_vtpm_binding(id, &instance, &ek_hash, &error));
        CU_ASSERT_STRING_EQUAL(instance, "urn:uuid:" TEST_UUID);
        CU_ASSERT_TRUE(X509_digest(ek, EVP_sha256(), md, &md_len) && md_len == 32);
        CU_ASSERT_EQUAL(memcmp(g_bytes_get_data(ek_hash, NULL), md, 32), 0);
        /* An EK certificate has no binding. */
        CU_ASSERT_FALSE(vrot_x509_vtpm_binding(ek, NULL, NULL, &error));
        CU_ASSERT_TRUE(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_PARSE));
        g_clear_error(&error);

        /* What openssl shows: one URI, the subject, the purposes. */
        path = write_pem("identity.pem", id);
        ca = write_pem("identity-ca.pem", c.ca);
        root = write_pem("identity-root.pem", c.root);
        {
                const char *const text[] = { "openssl", "x509", "-in", path, "-noout", "-text", NULL };
                CU_ASSERT_TRUE_FATAL(run_openssl(text, &out));
                CU_ASSERT_PTR_NOT_NULL(strstr(out, "URI:spiffe://vrot.test/billing"));
                CU_ASSERT_PTR_NULL(strstr(out, "URI:urn:uuid"));
                CU_ASSERT_PTR_NOT_NULL(strstr(out, "CN = billing, serialNumber = " TEST_UUID));
                CU_ASSERT_PTR_NOT_NULL(strstr(out, "TLS Web Server Authentication, TLS Web Client Authentication"));
                CU_ASSERT_PTR_NOT_NULL(strstr(out, "Digital Signature"));
                g_clear_pointer(&out, g_free);
        }
        {
                const char *const verify[] = { "openssl", "verify", "-x509_strict", "-CAfile", root,
                                               "-untrusted", ca, "-purpose", "sslclient", path, NULL };
                CU_ASSERT_TRUE(run_openssl(verify, &out));
                g_clear_pointer(&out, g_free);
        }

        /* Refusals: an RSA key, no EK certificate, a relative URI. */
        CU_ASSERT_PTR_NULL(vrot_x509_identity_cert(c.ca_signer, key(K_EK_RSA), &ip, &error));
        CU_ASSERT_TRUE(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_UNSUPPORTED_KEY));
        g_clear_error(&error);
        ip.uri = "billing";
        CU_ASSERT_PTR_NULL(vrot_x509_identity_cert(c.ca_signer, key(K_OTHER_P256), &ip, &error));
        CU_ASSERT_TRUE(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID));
        g_clear_error(&error);
        ip.uri = "spiffe://vrot.test/billing";
        ip.ek_cert = NULL;
        CU_ASSERT_PTR_NULL(vrot_x509_identity_cert(c.ca_signer, key(K_OTHER_P256), &ip, &error));
        CU_ASSERT_TRUE(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID));
        g_clear_error(&error);
        chain_clear(&c);
}

static void test_x509_crl(void)
{
        GError *error = NULL;
        Chain c;
        VrotX509EkParams ep = ek_params();
        g_autoptr(X509) ek = NULL, id = NULL;
        g_autoptr(X509_CRL) crl = NULL, empty = NULL;
        g_autoptr(BIGNUM) bn = NULL;
        g_autofree gchar *serial = NULL, *pem = NULL, *crl_path = NULL, *id_path = NULL;
        g_autofree gchar *ca_path = NULL, *root_path = NULL, *out = NULL;
        X509_REVOKED *rev = NULL;
        gint64 now = g_get_real_time() / G_USEC_PER_SEC;
        VrotX509IdentityParams ip = { .name = "billing", .uri = "spiffe://vrot.test/billing" };
        VrotX509Revoked bad = { .serial_hex = "-12", .revoked_at = now };

        chain_init(&c, K_ROOT_P256);
        ek = vrot_x509_ek_cert(c.ca_signer, key(K_EK_RSA), &ep, &error);
        ip.ek_cert = ek;
        id = vrot_x509_identity_cert(c.ca_signer, key(K_OTHER_P256), &ip, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(id), NULL);
        serial = BN_bn2hex(bn);
        {
                VrotX509Revoked list[] = { { "7F01", now - 10 }, { serial, now } };

                crl = vrot_x509_crl(c.ca_signer, list, G_N_ELEMENTS(list), 42, now + 3600, &error);
        }
        CU_ASSERT_PTR_NULL_FATAL(error);
        CU_ASSERT_EQUAL(X509_CRL_verify(crl, X509_get0_pubkey(c.ca)), 1);
        CU_ASSERT_EQUAL(X509_CRL_get0_by_cert(crl, &rev, id), 1);
        CU_ASSERT_EQUAL(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 2);
        /* signed by the CA's signer (the "TPM"), not by the throwaway key */
        CU_ASSERT_EQUAL(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(c.ca)), 0);

        /* openssl verify -crl_check refuses the revoked certificate. */
        pem = vrot_x509_crl_to_pem(crl, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        crl_path = g_build_filename(unit_tmpdir(), "identity.crl", NULL);
        unit_write_file(crl_path, pem, strlen(pem));
        id_path = write_pem("crl-identity.pem", id);
        ca_path = write_pem("crl-ca.pem", c.ca);
        root_path = write_pem("crl-root.pem", c.root);
        {
                const char *const verify[] = { "openssl", "verify", "-crl_check", "-CRLfile", crl_path,
                                               "-CAfile", root_path, "-untrusted", ca_path,
                                               id_path, NULL };
                /* (the reason, "certificate revoked", goes to stderr) */
                CU_ASSERT_FALSE(run_openssl(verify, &out));
                g_clear_pointer(&out, g_free);
        }
        /* An empty CRL: the same certificate verifies with the CRL check. */
        empty = vrot_x509_crl(c.ca_signer, NULL, 0, 43, now + 3600, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        g_free(pem);
        pem = vrot_x509_crl_to_pem(empty, &error);
        unit_write_file(crl_path, pem, strlen(pem));
        {
                const char *const verify[] = { "openssl", "verify", "-crl_check", "-CRLfile", crl_path,
                                               "-CAfile", root_path, "-untrusted", ca_path,
                                               id_path, NULL };
                CU_ASSERT_TRUE(run_openssl(verify, &out));
                g_clear_pointer(&out, g_free);
        }
        CU_ASSERT_PTR_NULL(vrot_x509_crl(c.ca_signer, &bad, 1, 44, now + 3600, &error));
        CU_ASSERT_TRUE(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID));
        g_clear_error(&error);
        bad.serial_hex = "12zz";
        CU_ASSERT_PTR_NULL(vrot_x509_crl(c.ca_signer, &bad, 1, 44, now + 3600, &error));
        CU_ASSERT_TRUE(g_error_matches(error, VROT_X509_ERROR, VROT_X509_ERROR_INVALID));
        g_clear_error(&error);
        chain_clear(&c);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_x509_root_cert_profile),
                UNIT_CASE(test_x509_identity_cert_profile),
                UNIT_CASE(test_x509_transport_cert_profile),
                UNIT_CASE(test_x509_crl),
                UNIT_CASE(test_x509_ca_cert_profile),
                UNIT_CASE(test_x509_ek_cert_profile),
                UNIT_CASE(test_x509_ek_cert_der),
                UNIT_CASE(test_x509_ek_cert_chain_verifies),
                UNIT_CASE(test_x509_ek_cert_other_chain_refused),
                UNIT_CASE(test_x509_ek_cert_openssl_cli),
                UNIT_CASE(test_x509_ek_cert_signer_errors),
                UNIT_CASE(test_x509_ek_cert_signature_trailing_zero),
                UNIT_CASE(test_x509_signer_new_refusals),
                UNIT_CASE(test_x509_signer_new_user_data),
                UNIT_CASE(test_x509_ek_cert_unsupported_key),
                UNIT_CASE(test_x509_root_ca_cert_unsupported_key),
                UNIT_CASE(test_x509_ek_cert_invalid_params),
                UNIT_CASE(test_x509_ca_cert_invalid_params),
                UNIT_CASE(test_x509_ek_cert_not_after),
                UNIT_CASE(test_x509_ek_cert_serial_unique),
                UNIT_CASE(test_x509_der_round_trip),
                UNIT_CASE(test_x509_pem_round_trip),
                UNIT_CASE(test_x509_csr_signed_by_tpm),
                UNIT_CASE(test_x509_csr_errors),
                UNIT_CASE(test_x509_csr_from_pem_refusals),
                UNIT_CASE(test_x509_chain_from_pem),
        };
        int rc = UNIT_RUN("x509", cases);

        for (size_t i = 0; i < G_N_ELEMENTS(keys); i++)
                EVP_PKEY_free(keys[i]);
        return rc;
}
