/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <tss2/tss2_mu.h>

#include "autoptr.h"
#include "jsonrpc.h"
#include "tpmevidence.h"
#include "tpmpub.h"
#include "x509.h"

G_DEFINE_QUARK(vrot-tpmevidence-error-quark, vrot_tpmevidence_error)

/* Upper bounds of the wire forms (a TPMS_ATTEST of TPM2_Certify is ~150 bytes). */
#define MAX_ATTEST 2048
#define MAX_SIGNATURE 80                /* DER ECDSA-Sig-Value, P-256: at most 72 */
#define MAX_PUBLIC ((gsize)sizeof(TPM2B_PUBLIC))
#define NAME_LEN 34                     /* nameAlg SHA-256 || digest */

#define ATTRS_IN_TPM (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | \
                      TPMA_OBJECT_SENSITIVEDATAORIGIN)

struct VrotTpmevidenceVerified {
        EVP_PKEY *ca_key;
        EVP_PKEY *ek_key;
        X509 *ek_cert;
        GBytes *ak_name;
};

/* The evidence parsed: every structure, not yet trusted. */
typedef struct Parsed {
        TPMS_ATTEST attest;
        TPM2B_PUBLIC ak, ca, ek;
        X509 *ek_cert;
} Parsed;

static void parsed_clear(Parsed *p)
{
        X509_free(p->ek_cert);
        p->ek_cert = NULL;
}

static gboolean fail(GError **error, VrotTpmevidenceError code, const char *fmt, ...)
        G_GNUC_PRINTF(3, 4);

static gboolean fail(GError **error, VrotTpmevidenceError code, const char *fmt, ...)
{
        g_autofree gchar *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error_literal(error, VROT_TPMEVIDENCE_ERROR, code, msg);
        return FALSE;
}

/* The one boundary from OpenSSL's error queue to GError. */
static gboolean ossl_fail(GError **error, VrotTpmevidenceError code, const char *what)
{
        unsigned long e = ERR_peek_error();
        const char *reason = e ? ERR_reason_error_string(e) : NULL;

        ERR_clear_error();
        return fail(error, code, "%s%s%s", what, reason ? ": " : "", reason ? reason : "");
}

void vrot_tpmevidence_free(VrotTpmevidence *ev)
{
        if (!ev)
                return;
        g_clear_pointer(&ev->attest, g_bytes_unref);
        g_clear_pointer(&ev->signature, g_bytes_unref);
        g_clear_pointer(&ev->ak_public, g_bytes_unref);
        g_clear_pointer(&ev->ca_public, g_bytes_unref);
        g_clear_pointer(&ev->ek_public, g_bytes_unref);
        g_clear_pointer(&ev->ek_cert, g_bytes_unref);
        g_free(ev);
}

void vrot_tpmevidence_verified_free(VrotTpmevidenceVerified *v)
{
        if (!v)
                return;
        EVP_PKEY_free(v->ca_key);
        EVP_PKEY_free(v->ek_key);
        X509_free(v->ek_cert);
        g_clear_pointer(&v->ak_name, g_bytes_unref);
        g_free(v);
}

EVP_PKEY *vrot_tpmevidence_verified_ca_key(const VrotTpmevidenceVerified *v)
{
        return v->ca_key;
}

EVP_PKEY *vrot_tpmevidence_verified_ek_key(const VrotTpmevidenceVerified *v)
{
        return v->ek_key;
}

X509 *vrot_tpmevidence_verified_ek_cert(const VrotTpmevidenceVerified *v)
{
        return v->ek_cert;
}

GBytes *vrot_tpmevidence_verified_ak_name(const VrotTpmevidenceVerified *v)
{
        return v->ak_name;
}

/* ---- parsing ---------------------------------------------------------------------- */

/* A TPM2B_PUBLIC that is exactly @b: its size field matches what follows. */
static gboolean parse_public(GBytes *b, const char *what, TPM2B_PUBLIC *ret, GError **error)
{
        gsize len = 0;
        const guint8 *p = g_bytes_get_data(b, &len);
        size_t off = 0;
        TSS2_RC rc = Tss2_MU_TPM2B_PUBLIC_Unmarshal(p, len, &off, ret);

        if (rc != TSS2_RC_SUCCESS)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE,
                            "%s: not a TPM2B_PUBLIC (TSS2_RC 0x%x)", what, (unsigned)rc);
        if (off != len || ret->size != len - 2)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE,
                            "%s: %" G_GSIZE_FORMAT " bytes, the TPM2B_PUBLIC says %u", what,
                            len, (unsigned)ret->size + 2);
        return TRUE;
}

static gboolean parse_attest(GBytes *b, TPMS_ATTEST *ret, GError **error)
{
        gsize len = 0;
        const guint8 *p = g_bytes_get_data(b, &len);
        size_t off = 0;
        TSS2_RC rc = Tss2_MU_TPMS_ATTEST_Unmarshal(p, len, &off, ret);

        if (rc != TSS2_RC_SUCCESS)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE,
                            "attest: not a TPMS_ATTEST (TSS2_RC 0x%x)", (unsigned)rc);
        if (off != len)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE,
                            "attest: %" G_GSIZE_FORMAT " bytes after the TPMS_ATTEST",
                            len - off);
        return TRUE;
}

/* Exactly one DER ECDSA-Sig-Value. */
static gboolean parse_signature(GBytes *b, GError **error)
{
        gsize len = 0;
        const unsigned char *p = g_bytes_get_data(b, &len), *end = p + len;
        g_autoptr(ECDSA_SIG) sig = len ? d2i_ECDSA_SIG(NULL, &p, (long)len) : NULL;

        ERR_clear_error();
        if (!sig || p != end)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE,
                            "signature: not one DER ECDSA-Sig-Value");
        return TRUE;
}

static gboolean parse(const VrotTpmevidence *ev, Parsed *ret, GError **error)
{
        g_autoptr(GError) local = NULL;

        if (!parse_public(ev->ak_public, "ak_public", &ret->ak, error) ||
            !parse_public(ev->ca_public, "ca_public", &ret->ca, error) ||
            !parse_public(ev->ek_public, "ek_public", &ret->ek, error) ||
            !parse_attest(ev->attest, &ret->attest, error) || !parse_signature(ev->signature, error))
                return FALSE;
        ret->ek_cert = vrot_x509_from_der(g_bytes_get_data(ev->ek_cert, NULL),
                                          g_bytes_get_size(ev->ek_cert), &local);
        if (!ret->ek_cert)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE, "ek_cert: %s", local->message);
        return TRUE;
}

static gboolean name_of(const TPMT_PUBLIC *pub, guint8 out[NAME_LEN], GError **error)
{
        guint8 buf[sizeof(TPMT_PUBLIC)];
        size_t off = 0;
        unsigned int md_len = 0;

        if (pub->nameAlg != TPM2_ALG_SHA256)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE,
                            "nameAlg 0x%04x, only SHA-256 (0x000b) is accepted", pub->nameAlg);
        if (Tss2_MU_TPMT_PUBLIC_Marshal(pub, buf, sizeof(buf), &off) != TSS2_RC_SUCCESS)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE, "cannot marshal a public area");
        out[0] = TPM2_ALG_SHA256 >> 8;
        out[1] = TPM2_ALG_SHA256 & 0xff;
        if (EVP_Digest(buf, off, out + 2, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32)
                return ossl_fail(error, VROT_TPMEVIDENCE_ERROR_CRYPTO, "SHA-256");
        return TRUE;
}

GBytes *vrot_tpmevidence_name(GBytes *tpm2b_public, GError **error)
{
        TPM2B_PUBLIC pub = { 0 };
        guint8 name[NAME_LEN];

        g_return_val_if_fail(tpm2b_public != NULL, NULL);
        if (!parse_public(tpm2b_public, "public area", &pub, error) ||
            !name_of(&pub.publicArea, name, error))
                return NULL;
        return g_bytes_new(name, sizeof(name));
}

/* ---- JSON form ------------------------------------------------------------------------ */

typedef struct Member {
        const char *name;
        gsize offset;                   /* of the GBytes * in VrotTpmevidence */
        gsize max;
} Member;

static const Member members[] = {
        { "attest", G_STRUCT_OFFSET(VrotTpmevidence, attest), MAX_ATTEST },
        { "signature", G_STRUCT_OFFSET(VrotTpmevidence, signature), MAX_SIGNATURE },
        { "ak_public", G_STRUCT_OFFSET(VrotTpmevidence, ak_public), MAX_PUBLIC },
        { "ca_public", G_STRUCT_OFFSET(VrotTpmevidence, ca_public), MAX_PUBLIC },
        { "ek_public", G_STRUCT_OFFSET(VrotTpmevidence, ek_public), MAX_PUBLIC },
};

static gchar *hex_of(GBytes *b)
{
        gsize len = 0;
        const guint8 *p = g_bytes_get_data(b, &len);
        GString *s = g_string_sized_new(2 * len);

        for (gsize i = 0; i < len; i++)
                g_string_append_printf(s, "%02x", p[i]);
        return g_string_free(s, FALSE);
}

JsonNode *vrot_tpmevidence_to_json(const VrotTpmevidence *ev, GError **error)
{
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(GBytes) name = NULL;
        g_autoptr(X509) cert = NULL;
        g_autofree gchar *pem = NULL, *name_hex = NULL;
        g_autoptr(GError) local = NULL;

        g_return_val_if_fail(ev != NULL, NULL);
        if (!(name = vrot_tpmevidence_name(ev->ak_public, error)))
                return NULL;
        cert = vrot_x509_from_der(g_bytes_get_data(ev->ek_cert, NULL),
                                  g_bytes_get_size(ev->ek_cert), &local);
        if (!cert || !(pem = vrot_x509_to_pem(cert, &local))) {
                fail(error, VROT_TPMEVIDENCE_ERROR_PARSE, "ek_cert: %s", local->message);
                return NULL;
        }
        json_builder_begin_object(b);
        for (gsize i = 0; i < G_N_ELEMENTS(members); i++) {
                GBytes *v = G_STRUCT_MEMBER(GBytes *, ev, members[i].offset);
                g_autofree gchar *text = g_base64_encode(g_bytes_get_data(v, NULL),
                                                         g_bytes_get_size(v));

                json_builder_set_member_name(b, members[i].name);
                json_builder_add_string_value(b, text);
        }
        name_hex = hex_of(name);
        json_builder_set_member_name(b, "ek_cert_pem");
        json_builder_add_string_value(b, pem);
        json_builder_set_member_name(b, "ak_name");
        json_builder_add_string_value(b, name_hex);
        json_builder_end_object(b);
        return json_builder_get_root(b);
}

static gboolean member_string(JsonObject *o, const char *name, const char **ret, GError **error)
{
        JsonNode *n = json_object_get_member(o, name);

        if (!n)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE, "evidence: no '%s'", name);
        if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE,
                            "evidence: '%s' is not a string", name);
        *ret = json_node_get_string(n);
        return TRUE;
}

/* Only the seven members of the format. */
static gboolean only_known(JsonObject *o, GError **error)
{
        g_autoptr(GList) names = json_object_get_members(o);

        for (GList *l = names; l; l = l->next) {
                gboolean known = g_str_equal(l->data, "ek_cert_pem") ||
                                 g_str_equal(l->data, "ak_name");

                for (gsize i = 0; !known && i < G_N_ELEMENTS(members); i++)
                        known = g_str_equal(l->data, members[i].name);
                if (!known)
                        return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE,
                                    "evidence: unknown member '%.64s'", (const char *)l->data);
        }
        return TRUE;
}

static gboolean decode_blobs(JsonObject *o, VrotTpmevidence *ev, GError **error)
{
        for (gsize i = 0; i < G_N_ELEMENTS(members); i++) {
                g_autoptr(GError) local = NULL;
                GBytes **slot = G_STRUCT_MEMBER_P(ev, members[i].offset);
                const char *s = NULL;

                if (!member_string(o, members[i].name, &s, error))
                        return FALSE;
                if (!vrot_jsonrpc_base64_decode(s, strlen(s), members[i].max, slot, &local))
                        return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE, "evidence: '%s': %s",
                                    members[i].name, local->message);
        }
        return TRUE;
}

static gboolean decode_cert_and_name(JsonObject *o, VrotTpmevidence *ev, GError **error)
{
        g_autoptr(GError) local = NULL;
        g_autoptr(GBytes) name = NULL;
        g_autoptr(X509) cert = NULL;
        g_autofree gchar *hex = NULL;
        const char *pem = NULL, *ak_name = NULL;

        if (!member_string(o, "ek_cert_pem", &pem, error) ||
            !member_string(o, "ak_name", &ak_name, error))
                return FALSE;
        if (!(cert = vrot_x509_from_pem(pem, strlen(pem), &local)) ||
            !(ev->ek_cert = vrot_x509_to_der(cert, &local)))
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE, "evidence: 'ek_cert_pem': %s",
                            local->message);
        if (!(name = vrot_tpmevidence_name(ev->ak_public, error))) {
                g_prefix_error(error, "evidence: 'ak_public': ");
                return FALSE;
        }
        hex = hex_of(name);
        if (g_ascii_strcasecmp(hex, ak_name) != 0)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE,
                            "evidence: 'ak_name' is not the Name of 'ak_public' (%s)", hex);
        return TRUE;
}

gboolean vrot_tpmevidence_from_json(JsonNode *node, VrotTpmevidence **ret, GError **error)
{
        g_autoptr(VrotTpmevidence) ev = g_new0(VrotTpmevidence, 1);
        JsonObject *o;

        g_return_val_if_fail(ret != NULL, FALSE);
        if (!node || !JSON_NODE_HOLDS_OBJECT(node))
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE, "evidence: not a JSON object");
        o = json_node_get_object(node);
        if (!only_known(o, error) || !decode_blobs(o, ev, error) ||
            !decode_cert_and_name(o, ev, error))
                return FALSE;
        *ret = g_steal_pointer(&ev);
        return TRUE;
}

/* ---- steps 1-5 -------------------------------------------------------------------------- */

/* Step 1: the EK certificate chains to a trusted vendor root. */
static gboolean check_ek_cert(X509 *cert, X509_STORE *roots, STACK_OF(X509) *untrusted,
                              GError **error)
{
        g_autoptr(X509_STORE_CTX) ctx = X509_STORE_CTX_new();
        int rc;

        if (!ctx || X509_STORE_CTX_init(ctx, roots, cert, untrusted) != 1)
                return ossl_fail(error, VROT_TPMEVIDENCE_ERROR_CRYPTO, "verifying the EK certificate");
        rc = X509_verify_cert(ctx);
        ERR_clear_error();
        if (rc != 1)
                return fail(error, VROT_TPMEVIDENCE_ERROR_EK_CERT,
                            "step 1: the EK certificate does not chain to a trusted TPM vendor "
                            "CA: %s", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        return TRUE;
}

/* Step 2: the EK public area is the certificate's RSA 2048 storage key. */
static gboolean check_ek(const TPMT_PUBLIC *ek, X509 *cert, GError **error)
{
        const TPMS_RSA_PARMS *r = &ek->parameters.rsaDetail;
        TPMA_OBJECT a = ek->objectAttributes;
        g_autoptr(EVP_PKEY) key = NULL;

        if (ek->type != TPM2_ALG_RSA || r->keyBits != 2048 || ek->unique.rsa.size != 256 ||
            (r->exponent != 0 && r->exponent != 65537) || ek->nameAlg != TPM2_ALG_SHA256 ||
            r->symmetric.algorithm != TPM2_ALG_AES || r->symmetric.keyBits.aes != 128 ||
            r->symmetric.mode.aes != TPM2_ALG_CFB ||
            (a & (TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT | TPMA_OBJECT_SIGN_ENCRYPT)) !=
            (TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT))
                return fail(error, VROT_TPMEVIDENCE_ERROR_EK,
                            "step 2: the EK is not an RSA 2048 restricted decryption key with "
                            "nameAlg SHA-256 and AES-128-CFB");
        key = vrot_tpmpub_to_pkey(ek, NULL);
        if (!key || EVP_PKEY_eq(key, X509_get0_pubkey(cert)) != 1) {
                ERR_clear_error();
                return fail(error, VROT_TPMEVIDENCE_ERROR_EK,
                            "step 2: the EK public area is not the key of the EK certificate");
        }
        return TRUE;
}

static gboolean is_ecdsa_p256(const TPMT_PUBLIC *p)
{
        return p->type == TPM2_ALG_ECC && p->parameters.eccDetail.curveID == TPM2_ECC_NIST_P256;
}

/* Step 3: a restricted ECC P-256 signing key generated in a TPM. */
static gboolean check_ak(const TPMT_PUBLIC *ak, const char *step, GError **error)
{
        const TPMT_ECC_SCHEME *s = &ak->parameters.eccDetail.scheme;
        TPMA_OBJECT want = ATTRS_IN_TPM | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;

        if (!is_ecdsa_p256(ak) || s->scheme != TPM2_ALG_ECDSA ||
            s->details.ecdsa.hashAlg != TPM2_ALG_SHA256 ||
            (ak->objectAttributes & (want | TPMA_OBJECT_DECRYPT)) != want)
                return fail(error, VROT_TPMEVIDENCE_ERROR_AK,
                            "%sthe AK is not a restricted ECC P-256 ECDSA-SHA256 signing key with "
                            "fixedTPM, fixedParent and sensitiveDataOrigin", step);
        return TRUE;
}

/* Step 4: the AK signed the attestation. */
static gboolean check_signature(const TPMT_PUBLIC *ak, GBytes *attest, GBytes *signature,
                                const char *step, GError **error)
{
        g_autoptr(EVP_PKEY) key = vrot_tpmpub_to_pkey(ak, NULL);
        g_autoptr(EVP_MD_CTX) ctx = EVP_MD_CTX_new();
        int r = -1;

        if (key && ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1)
                r = EVP_DigestVerify(ctx, g_bytes_get_data(signature, NULL),
                                     g_bytes_get_size(signature), g_bytes_get_data(attest, NULL),
                                     g_bytes_get_size(attest));
        ERR_clear_error();
        if (r != 1)
                return fail(error, VROT_TPMEVIDENCE_ERROR_SIGNATURE,
                            "%sthe AK's signature does not verify over the attestation", step);
        return TRUE;
}

/* Step 5: a TPM-made certification, over @nonce (any qualifying data if
 * @nonce is NULL), of @key, an ECC P-256 unrestricted signing key made in a
 * TPM (the CA key, an identity key). */
static gboolean check_attest(const TPMS_ATTEST *a, const TPM2B_PUBLIC *key, const char *what,
                             GBytes *nonce, gboolean decrypt, const char *step, GError **error)
{
        const TPM2B_NAME *certified = &a->attested.certify.name;
        TPMA_OBJECT use = decrypt ? TPMA_OBJECT_DECRYPT : TPMA_OBJECT_SIGN_ENCRYPT;
        TPMA_OBJECT want = ATTRS_IN_TPM | use;
        guint8 name[NAME_LEN];

        if (a->magic != TPM2_GENERATED_VALUE || a->type != TPM2_ST_ATTEST_CERTIFY)
                return fail(error, VROT_TPMEVIDENCE_ERROR_ATTEST,
                            "%snot a TPM-generated certification (magic 0x%08x, type 0x%04x)",
                            step, a->magic, a->type);
        if (nonce && (a->extraData.size != g_bytes_get_size(nonce) ||
                      CRYPTO_memcmp(a->extraData.buffer, g_bytes_get_data(nonce, NULL),
                                    a->extraData.size) != 0))
                return fail(error, VROT_TPMEVIDENCE_ERROR_NONCE,
                            "%sthe attestation is not for this nonce (stale or replayed "
                            "evidence)", step);
        if (!name_of(&key->publicArea, name, error)) {
                g_prefix_error(error, "%s%s: ", step, what);
                return FALSE;
        }
        if (certified->size != NAME_LEN || memcmp(certified->name, name, NAME_LEN) != 0)
                return fail(error, VROT_TPMEVIDENCE_ERROR_ATTEST,
                            "%sthe certified object is not the %s", step, what);
        if (!is_ecdsa_p256(&key->publicArea) ||
            (key->publicArea.objectAttributes &
             (ATTRS_IN_TPM | TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT |
              TPMA_OBJECT_RESTRICTED)) != want)
                return fail(error, VROT_TPMEVIDENCE_ERROR_ATTEST,
                            "%sthe %s is not an unrestricted ECC P-256 %s key with fixedTPM, "
                            "fixedParent and sensitiveDataOrigin", step, what,
                            decrypt ? "decryption (ECDH)" : "signing");
        return TRUE;
}

static VrotTpmevidenceVerified *verified_new(Parsed *p, GError **error)
{
        g_autoptr(VrotTpmevidenceVerified) v = g_new0(VrotTpmevidenceVerified, 1);
        g_autoptr(GError) local = NULL;
        guint8 ak_name[NAME_LEN];

        if (!name_of(&p->ak.publicArea, ak_name, error) ||
            !(v->ca_key = vrot_tpmpub_to_pkey(&p->ca.publicArea, &local))) {
                if (local)
                        fail(error, VROT_TPMEVIDENCE_ERROR_ATTEST, "ca_public: %s", local->message);
                return NULL;
        }
        v->ak_name = g_bytes_new(ak_name, sizeof(ak_name));
        v->ek_key = EVP_PKEY_dup(X509_get0_pubkey(p->ek_cert));
        if (!v->ek_key) {
                ossl_fail(error, VROT_TPMEVIDENCE_ERROR_CRYPTO, "copying the EK key");
                return NULL;
        }
        v->ek_cert = g_steal_pointer(&p->ek_cert);
        return g_steal_pointer(&v);
}

gboolean vrot_tpmevidence_verify(const VrotTpmevidence *ev, GBytes *nonce,
                                 X509_STORE *vendor_roots, STACK_OF(X509) *untrusted,
                                 VrotTpmevidenceVerified **ret, GError **error)
{
        Parsed p = { 0 };
        VrotTpmevidenceVerified *v = NULL;
        gsize nonce_len = nonce ? g_bytes_get_size(nonce) : 0;

        g_return_val_if_fail(ev != NULL && vendor_roots != NULL && ret != NULL, FALSE);
        if (nonce_len == 0 || nonce_len > VROT_TPMEVIDENCE_MAX_NONCE)
                return fail(error, VROT_TPMEVIDENCE_ERROR_NONCE,
                            "a nonce of %" G_GSIZE_FORMAT " bytes (1 to %d)", nonce_len,
                            VROT_TPMEVIDENCE_MAX_NONCE);
        if (parse(ev, &p, error) && check_ek_cert(p.ek_cert, vendor_roots, untrusted, error) &&
            check_ek(&p.ek.publicArea, p.ek_cert, error) && check_ak(&p.ak.publicArea, "step 3: ", error) &&
            check_signature(&p.ak.publicArea, ev->attest, ev->signature, "step 4: ", error) &&
            check_attest(&p.attest, &p.ca, "CA key of ca_public", nonce, FALSE, "step 5: ",
                         error))
                v = verified_new(&p, error);
        parsed_clear(&p);
        if (!v)
                return FALSE;
        *ret = v;
        return TRUE;
}

/* ---- a key certified by an AK (service identities) ------------------------------------ */

void vrot_tpmevidence_key_free(VrotTpmevidenceKey *ev)
{
        if (!ev)
                return;
        g_clear_pointer(&ev->ak_public, g_bytes_unref);
        g_clear_pointer(&ev->key_public, g_bytes_unref);
        g_clear_pointer(&ev->attest, g_bytes_unref);
        g_clear_pointer(&ev->signature, g_bytes_unref);
        g_free(ev);
}

gboolean vrot_tpmevidence_verify_key(const VrotTpmevidenceKey *ev, GBytes *nonce,
                                     EVP_PKEY **ret_key, GError **error)
{
        TPM2B_PUBLIC ak = { 0 }, key = { 0 };
        TPMS_ATTEST attest = { 0 };
        g_autoptr(GError) local = NULL;
        gsize nonce_len = nonce ? g_bytes_get_size(nonce) : 0;
        EVP_PKEY *pkey;

        g_return_val_if_fail(ev && ev->ak_public && ev->key_public && ev->attest &&
                             ev->signature && ret_key, FALSE);
        if (nonce && (nonce_len == 0 || nonce_len > VROT_TPMEVIDENCE_MAX_NONCE))
                return fail(error, VROT_TPMEVIDENCE_ERROR_NONCE,
                            "a nonce of %" G_GSIZE_FORMAT " bytes (1 to %d)", nonce_len,
                            VROT_TPMEVIDENCE_MAX_NONCE);
        if (!parse_public(ev->ak_public, "ak_public", &ak, error) ||
            !parse_public(ev->key_public, "key_public", &key, error) ||
            !parse_attest(ev->attest, &attest, error) || !parse_signature(ev->signature, error) ||
            !check_ak(&ak.publicArea, "", error) ||
            !check_signature(&ak.publicArea, ev->attest, ev->signature, "", error) ||
            !check_attest(&attest, &key, "key of key_public", nonce, ev->decrypt, "", error))
                return FALSE;
        if (!(pkey = vrot_tpmpub_to_pkey(&key.publicArea, &local)))
                return fail(error, VROT_TPMEVIDENCE_ERROR_ATTEST, "key_public: %s", local->message);
        *ret_key = pkey;
        return TRUE;
}

gboolean vrot_tpmevidence_check_ak(GBytes *ak_public, EVP_PKEY **ret_key, GError **error)
{
        TPM2B_PUBLIC ak = { 0 };
        g_autoptr(GError) local = NULL;

        if (!parse_public(ak_public, "ak_public", &ak, error) ||
            !check_ak(&ak.publicArea, "", error))
                return FALSE;
        if (!(*ret_key = vrot_tpmpub_to_pkey(&ak.publicArea, &local)))
                return fail(error, VROT_TPMEVIDENCE_ERROR_AK, "ak_public: %s", local->message);
        return TRUE;
}

/* ---- quotes ---------------------------------------------------------------------------------- */

void vrot_tpmevidence_quote_free(VrotTpmevidenceQuote *q)
{
        if (!q)
                return;
        g_clear_pointer(&q->ak_public, g_bytes_unref);
        g_clear_pointer(&q->attest, g_bytes_unref);
        g_clear_pointer(&q->signature, g_bytes_unref);
        g_clear_pointer(&q->pcr_values, g_bytes_unref);
        g_free(q);
}

/* The quote's PCR selection is exactly one SHA-256 bank with @mask, and its
 * digest is SHA-256 of @values (TPM2 Part 3, 18.4: the selected PCRs'
 * values concatenated in ascending order). */
static gboolean check_pcrs(const TPMS_QUOTE_INFO *qi, guint32 mask, GBytes *values,
                           GError **error)
{
        const TPMS_PCR_SELECTION *sel = &qi->pcrSelect.pcrSelections[0];
        guint32 quoted = 0;
        guint8 digest[32];
        guint n = 0;

        for (guint i = 0; i < VROT_TPMEVIDENCE_PCRS; i++)
                n += (mask >> i) & 1;
        if (qi->pcrSelect.count != 1 || sel->hash != TPM2_ALG_SHA256 ||
            sel->sizeofSelect < 3 || sel->sizeofSelect > sizeof(sel->pcrSelect))
                return fail(error, VROT_TPMEVIDENCE_ERROR_PCRS,
                            "the quote does not select one SHA-256 bank of PCRs");
        for (guint i = 0; i < (guint)sel->sizeofSelect * 8; i++) {
                if (sel->pcrSelect[i / 8] & (1u << (i % 8))) {
                        if (i >= VROT_TPMEVIDENCE_PCRS)
                                return fail(error, VROT_TPMEVIDENCE_ERROR_PCRS,
                                            "the quote selects PCR %u", i);
                        quoted |= 1u << i;
                }
        }
        if (quoted != mask || mask == 0)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PCRS,
                            "the quote covers PCRs 0x%06x, the values given are of 0x%06x",
                            quoted, mask);
        if (!values || g_bytes_get_size(values) != n * sizeof(digest))
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE,
                            "%u PCR values of 32 bytes expected", n);
        SHA256(g_bytes_get_data(values, NULL), g_bytes_get_size(values), digest);
        if (qi->pcrDigest.size != sizeof(digest) ||
            CRYPTO_memcmp(qi->pcrDigest.buffer, digest, sizeof(digest)) != 0)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PCRS,
                            "the PCR values are not those the TPM quoted");
        return TRUE;
}

gboolean vrot_tpmevidence_verify_quote(const VrotTpmevidenceQuote *q, GBytes *qualifying,
                                       EVP_PKEY **ret_ak, GError **error)
{
        TPM2B_PUBLIC ak = { 0 };
        TPMS_ATTEST attest = { 0 };
        g_autoptr(GError) local = NULL;

        g_return_val_if_fail(q && qualifying, FALSE);
        if (!q->ak_public || !q->attest || !q->signature)
                return fail(error, VROT_TPMEVIDENCE_ERROR_PARSE, "a quote without %s",
                            !q->ak_public ? "its AK" : !q->attest ? "attest" : "signature");
        if (!parse_public(q->ak_public, "ak_public", &ak, error) ||
            !parse_attest(q->attest, &attest, error) || !parse_signature(q->signature, error) ||
            !check_ak(&ak.publicArea, "", error) ||
            !check_signature(&ak.publicArea, q->attest, q->signature, "", error))
                return FALSE;
        if (attest.magic != TPM2_GENERATED_VALUE || attest.type != TPM2_ST_ATTEST_QUOTE)
                return fail(error, VROT_TPMEVIDENCE_ERROR_ATTEST,
                            "not a TPM-generated quote (magic 0x%08x, type 0x%04x)",
                            attest.magic, attest.type);
        if (attest.extraData.size != g_bytes_get_size(qualifying) ||
            CRYPTO_memcmp(attest.extraData.buffer, g_bytes_get_data(qualifying, NULL),
                          attest.extraData.size) != 0)
                return fail(error, VROT_TPMEVIDENCE_ERROR_NONCE,
                            "the quote is not over the expected qualifying data (stale, "
                            "replayed or paired with another quote)");
        if (!check_pcrs(&attest.attested.quote, q->pcr_mask, q->pcr_values, error))
                return FALSE;
        if (ret_ak && !(*ret_ak = vrot_tpmpub_to_pkey(&ak.publicArea, &local)))
                return fail(error, VROT_TPMEVIDENCE_ERROR_AK, "ak_public: %s", local->message);
        return TRUE;
}

/* ---- step 6 --------------------------------------------------------------------------------- */

/* KDFa with HMAC-SHA256 and an empty contextV (TPM2 Part 1, 11.4.10.2). */
static gboolean kdfa(const guint8 *key, gsize key_len, const char *label, const guint8 *context,
                     gsize context_len, guint32 bits, guint8 *out)
{
        g_autoptr(GByteArray) in = g_byte_array_new();
        guint8 be[4], mac[32];
        gsize done = 0, want = bits / 8;

        for (guint32 i = 1; done < want; i++) {
                g_byte_array_set_size(in, 0);
                be[0] = i >> 24; be[1] = i >> 16; be[2] = i >> 8; be[3] = i;
                g_byte_array_append(in, be, 4);
                g_byte_array_append(in, (const guint8 *)label, (guint)strlen(label) + 1);
                if (context_len)
                        g_byte_array_append(in, context, (guint)context_len);
                be[0] = bits >> 24; be[1] = bits >> 16; be[2] = bits >> 8; be[3] = bits;
                g_byte_array_append(in, be, 4);
                if (!HMAC(EVP_sha256(), key, (int)key_len, in->data, in->len, mac, NULL))
                        return FALSE;
                memcpy(out + done, mac, MIN(32, want - done));
                done += MIN(32, want - done);
        }
        OPENSSL_cleanse(mac, sizeof(mac));
        return TRUE;
}

/* The seed, RSA-OAEP(SHA-256, label "IDENTITY\0") under the EK. */
static GBytes *encrypt_seed(EVP_PKEY *ek, const guint8 *seed, gsize len, GError **error)
{
        g_autoptr(EVP_PKEY_CTX) ctx = EVP_PKEY_CTX_new_from_pkey(NULL, ek, NULL);
        guint8 out[512];
        size_t out_len = sizeof(out);
        void *label = OPENSSL_memdup("IDENTITY", 9);

        if (!ctx || !label || EVP_PKEY_encrypt_init(ctx) != 1 ||
            EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
            EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) != 1 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) != 1 ||
            EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, 9) != 1) {
                OPENSSL_free(label);
                ossl_fail(error, VROT_TPMEVIDENCE_ERROR_CRYPTO, "RSA-OAEP");
                return NULL;
        }
        /* label belongs to ctx now */
        if (EVP_PKEY_encrypt(ctx, out, &out_len, seed, len) != 1) {
                ossl_fail(error, VROT_TPMEVIDENCE_ERROR_CRYPTO, "RSA-OAEP");
                return NULL;
        }
        return g_bytes_new(out, out_len);
}

static GBytes *tpm2b(const guint8 *data, gsize len)
{
        GByteArray *b = g_byte_array_sized_new((guint)len + 2);
        guint8 size[2] = { (guint8)(len >> 8), (guint8)(len & 0xff) };

        g_byte_array_append(b, size, 2);
        g_byte_array_append(b, data, (guint)len);
        return g_byte_array_free_to_bytes(b);
}

/* encIdentity = AES-128-CFB(symKey, 0, u16(len) || secret), then the outer HMAC. */
static GBytes *wrap_secret(const guint8 seed[32], const guint8 *name, gsize name_len,
                           const guint8 *secret, gsize len, GError **error)
{
        guint8 sym_key[16], hmac_key[32], iv[16] = { 0 }, mac[32];
        guint8 plain[2 + VROT_TPMEVIDENCE_MAX_SECRET], enc[2 + VROT_TPMEVIDENCE_MAX_SECRET];
        g_autoptr(EVP_CIPHER_CTX) cctx = EVP_CIPHER_CTX_new();
        g_autoptr(GByteArray) blob = g_byte_array_new();
        int n1 = 0, n2 = 0;
        gboolean ok;

        plain[0] = (guint8)(len >> 8);
        plain[1] = (guint8)(len & 0xff);
        memcpy(plain + 2, secret, len);
        ok = kdfa(seed, 32, "STORAGE", name, name_len, 128, sym_key) &&
             kdfa(seed, 32, "INTEGRITY", NULL, 0, 256, hmac_key) && cctx &&
             EVP_EncryptInit_ex(cctx, EVP_aes_128_cfb128(), NULL, sym_key, iv) == 1 &&
             EVP_EncryptUpdate(cctx, enc, &n1, plain, (int)(2 + len)) == 1 &&
             EVP_EncryptFinal_ex(cctx, enc + n1, &n2) == 1;
        g_byte_array_append(blob, enc, (guint)(n1 + n2));
        g_byte_array_append(blob, name, (guint)name_len);
        ok = ok && HMAC(EVP_sha256(), hmac_key, 32, blob->data, blob->len, mac, NULL) != NULL;
        OPENSSL_cleanse(plain, sizeof(plain));
        OPENSSL_cleanse(sym_key, sizeof(sym_key));
        OPENSSL_cleanse(hmac_key, sizeof(hmac_key));
        if (!ok) {
                ossl_fail(error, VROT_TPMEVIDENCE_ERROR_CRYPTO, "wrapping the credential");
                return NULL;
        }
        /* TPM2B_ID_OBJECT contents: TPM2B_DIGEST(integrityHMAC) || encIdentity */
        g_byte_array_set_size(blob, 0);
        g_byte_array_append(blob, (const guint8[]){ 0, 32 }, 2);
        g_byte_array_append(blob, mac, 32);
        g_byte_array_append(blob, enc, (guint)(n1 + n2));
        return tpm2b(blob->data, blob->len);
}

gboolean vrot_tpmevidence_make_credential(EVP_PKEY *ek, const guint8 *name, gsize name_len,
                                          const guint8 *secret, gsize secret_len,
                                          GBytes **ret_id_object,
                                          GBytes **ret_encrypted_secret, GError **error)
{
        g_autoptr(GBytes) id = NULL, encrypted = NULL;
        guint8 seed[32];

        g_return_val_if_fail(ek && name && secret && ret_id_object && ret_encrypted_secret, FALSE);
        g_return_val_if_fail(secret_len > 0 && secret_len <= VROT_TPMEVIDENCE_MAX_SECRET, FALSE);
        if (!EVP_PKEY_is_a(ek, "RSA") || EVP_PKEY_get_bits(ek) != 2048)
                return fail(error, VROT_TPMEVIDENCE_ERROR_EK, "the EK is not an RSA 2048 key");
        if (RAND_priv_bytes(seed, sizeof(seed)) != 1)
                return ossl_fail(error, VROT_TPMEVIDENCE_ERROR_CRYPTO, "random seed");
        encrypted = encrypt_seed(ek, seed, sizeof(seed), error);
        id = encrypted ? wrap_secret(seed, name, name_len, secret, secret_len, error) : NULL;
        OPENSSL_cleanse(seed, sizeof(seed));
        if (!id)
                return FALSE;
        *ret_encrypted_secret = tpm2b(g_bytes_get_data(encrypted, NULL),
                                      g_bytes_get_size(encrypted));
        *ret_id_object = g_steal_pointer(&id);
        return TRUE;
}

/* ---- the exchange ---------------------------------------------------------------------------- */

static GBytes *random_bytes(gsize len, GError **error)
{
        guint8 *buf = g_malloc(len);

        if (RAND_bytes(buf, (int)len) != 1) {
                g_free(buf);
                ossl_fail(error, VROT_TPMEVIDENCE_ERROR_CRYPTO, "random nonce");
                return NULL;
        }
        return g_bytes_new_take(buf, len);
}

/* Step 6: credential for Name(AK) under the EK; the answer must be @secret. */
static gboolean activate(const VrotTpmevidenceProver *prover, gpointer data,
                         const VrotTpmevidenceVerified *v, GError **error)
{
        g_autoptr(VrotSecret) secret = vrot_secret_new(VROT_TPMEVIDENCE_SECRET_LEN, NULL);
        g_autoptr(GBytes) id = NULL, encrypted = NULL, answer = NULL;
        gsize name_len = 0;
        const guint8 *name = g_bytes_get_data(v->ak_name, &name_len);

        if (!secret)
                return fail(error, VROT_TPMEVIDENCE_ERROR_CRYPTO, "cannot lock memory");
        if (RAND_priv_bytes(vrot_secret_data(secret), VROT_TPMEVIDENCE_SECRET_LEN) != 1)
                return ossl_fail(error, VROT_TPMEVIDENCE_ERROR_CRYPTO, "random secret");
        if (!vrot_tpmevidence_make_credential(v->ek_key, name, name_len, vrot_secret_data(secret),
                                              VROT_TPMEVIDENCE_SECRET_LEN, &id, &encrypted,
                                              error) ||
            !prover->activate(data, id, encrypted, &answer, error))
                return FALSE;
        if (g_bytes_get_size(answer) != VROT_TPMEVIDENCE_SECRET_LEN ||
            CRYPTO_memcmp(g_bytes_get_data(answer, NULL), vrot_secret_data(secret),
                          VROT_TPMEVIDENCE_SECRET_LEN) != 0)
                return fail(error, VROT_TPMEVIDENCE_ERROR_CREDENTIAL,
                            "step 6: the host's answer to the credential is not the secret: "
                            "the AK is not in the TPM of the EK certificate");
        return TRUE;
}

gboolean vrot_tpmevidence_challenge(const VrotTpmevidenceProver *prover, gpointer data,
                                    X509_STORE *vendor_roots, STACK_OF(X509) *untrusted,
                                    VrotTpmevidenceVerified **ret, GError **error)
{
        g_autoptr(GBytes) nonce = NULL;
        g_autoptr(VrotTpmevidence) ev = NULL;
        g_autoptr(VrotTpmevidenceVerified) v = NULL;

        g_return_val_if_fail(prover && prover->evidence && prover->activate && ret, FALSE);
        if (!(nonce = random_bytes(VROT_TPMEVIDENCE_NONCE_LEN, error)) ||
            !prover->evidence(data, nonce, &ev, error) ||
            !vrot_tpmevidence_verify(ev, nonce, vendor_roots, untrusted, &v, error) ||
            !activate(prover, data, v, error))
                return FALSE;
        *ret = g_steal_pointer(&v);
        return TRUE;
}
