/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The verifier of the host evidence (lib/tpmevidence.c) against evidence
 * from a real swtpm (started through devtpm, certified through hosttpm):
 * the JSON form, every verification step refusing what it must, and the
 * whole challenge with an honest and with lying provers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <tss2/tss2_mu.h>

#include "autoptr.h"
#include "devtpm.h"
#include "hosttpm.h"
#include "tpmevidence.h"
#include "unit.h"
#include "x509.h"

static VrotDevTpm *dev;
static VrotHostTpm *tpm;
static X509_STORE *roots;               /* the dev TPM's vendor root */
static STACK_OF(X509) *intermediates;   /* its issuer */

static void stop_all(void)
{
        g_clear_pointer(&tpm, vrot_host_tpm_free);
        g_clear_pointer(&dev, vrot_dev_tpm_free);
        g_clear_pointer(&roots, X509_STORE_free);
        if (intermediates)
                sk_X509_pop_free(intermediates, X509_free);
        intermediates = NULL;
}

static X509 *x509_of(GBytes *der)
{
        X509 *x = vrot_x509_from_der(g_bytes_get_data(der, NULL), g_bytes_get_size(der), NULL);

        CU_ASSERT_FATAL(x != NULL);
        return x;
}

static GBytes *nonce_new(void)
{
        guint8 n[32];

        CU_ASSERT_FATAL(RAND_bytes(n, sizeof(n)) == 1);
        return g_bytes_new(n, sizeof(n));
}

/* Fresh evidence for @nonce from the swtpm. */
static VrotTpmevidence *evidence_for(GBytes *nonce)
{
        g_autoptr(GError) err = NULL;
        VrotTpmevidence *ev = NULL;

        CU_ASSERT_TRUE(vrot_host_tpm_certify_ca_key(tpm, nonce, &ev, &err));
        if (err)
                fprintf(stderr, "\n  %s\n", err->message);
        CU_ASSERT_FATAL(ev != NULL);
        return ev;
}

static VrotTpmevidence *copy(const VrotTpmevidence *ev)
{
        VrotTpmevidence *c = g_new0(VrotTpmevidence, 1);

        c->attest = g_bytes_ref(ev->attest);
        c->signature = g_bytes_ref(ev->signature);
        c->ak_public = g_bytes_ref(ev->ak_public);
        c->ca_public = g_bytes_ref(ev->ca_public);
        c->ek_public = g_bytes_ref(ev->ek_public);
        c->ek_cert = g_bytes_ref(ev->ek_cert);
        return c;
}

static JsonNode *parse_json(const char *text)
{
        g_autoptr(JsonParser) p = json_parser_new();

        CU_ASSERT_FATAL(json_parser_load_from_data(p, text, -1, NULL));
        return json_node_copy(json_parser_get_root(p));
}

/* ---- the JSON form ------------------------------------------------------------ */

static void test_tpmevidence_json_round_trip(void)
{
        g_autoptr(GBytes) nonce = nonce_new();
        g_autoptr(VrotTpmevidence) ev = evidence_for(nonce), back = NULL;
        g_autoptr(JsonNode) node = vrot_tpmevidence_to_json(ev, NULL);
        g_autoptr(GError) err = NULL;
        g_autoptr(GBytes) name = vrot_tpmevidence_name(ev->ak_public, NULL);
        JsonObject *o;

        CU_ASSERT_FATAL(node != NULL && name != NULL);
        o = json_node_get_object(node);
        CU_ASSERT_EQUAL(json_object_get_size(o), 7);
        CU_ASSERT_EQUAL(strlen(json_object_get_string_member(o, "ak_name")), 68);
        CU_ASSERT(g_str_has_prefix(json_object_get_string_member(o, "ak_name"), "000b"));
        CU_ASSERT(g_str_has_prefix(json_object_get_string_member(o, "ek_cert_pem"),
                                   "-----BEGIN CERTIFICATE-----"));
        CU_ASSERT_TRUE_FATAL(vrot_tpmevidence_from_json(node, &back, &err));
        CU_ASSERT_TRUE(g_bytes_equal(ev->attest, back->attest));
        CU_ASSERT_TRUE(g_bytes_equal(ev->signature, back->signature));
        CU_ASSERT_TRUE(g_bytes_equal(ev->ak_public, back->ak_public));
        CU_ASSERT_TRUE(g_bytes_equal(ev->ca_public, back->ca_public));
        CU_ASSERT_TRUE(g_bytes_equal(ev->ek_public, back->ek_public));
        CU_ASSERT_TRUE(g_bytes_equal(ev->ek_cert, back->ek_cert));
        CU_ASSERT_EQUAL(g_bytes_get_size(name), 34);
}

typedef struct JsonCase {
        const char *what;
        const char *member;     /* replaced (NULL: removed, "+x": added) */
        const char *value;      /* raw JSON */
        const char *needle;
} JsonCase;

static void test_tpmevidence_from_json_refusals(void)
{
        static const JsonCase cases[] = {
                { "no attest", "attest", NULL, "no 'attest'" },
                { "no ek_cert_pem", "ek_cert_pem", NULL, "no 'ek_cert_pem'" },
                { "no ak_name", "ak_name", NULL, "no 'ak_name'" },
                { "unknown member", "+nonce", "\"AAAA\"", "unknown member 'nonce'" },
                { "number", "signature", "12", "'signature' is not a string" },
                { "null", "ak_public", "null", "'ak_public' is not a string" },
                { "not base64", "attest", "\"not base64!\"", "'attest': not" },
                { "base64 with a newline", "attest", "\"AAAA\\nAAAA\"", "'attest': not" },
                { "oversized", "signature", "\"" "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" "\"",
                  "'signature': base64 of more than 80 bytes" },
                { "no PEM", "ek_cert_pem", "\"-----BEGIN CERTIFICATE-----\\nAAAA\\n\"",
                  "'ek_cert_pem'" },
                { "ak_public garbage", "ak_public", "\"AAEC\"", "'ak_public'" },
                { "ak_name of another key", "ak_name",
                  "\"000b0000000000000000000000000000000000000000000000000000000000000000\"",
                  "'ak_name' is not the Name of 'ak_public'" },
        };
        g_autoptr(GBytes) nonce = nonce_new();
        g_autoptr(VrotTpmevidence) ev = evidence_for(nonce);
        g_autoptr(GError) e1 = NULL;
        g_autoptr(VrotTpmevidence) none = NULL;
        g_autoptr(JsonNode) array = parse_json("[]");

        CU_ASSERT_FALSE(vrot_tpmevidence_from_json(array, &none, &e1));
        CU_ASSERT_TRUE(g_error_matches(e1, VROT_TPMEVIDENCE_ERROR, VROT_TPMEVIDENCE_ERROR_PARSE));
        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                /* A new tree each time: json_node_copy() shares the object. */
                g_autoptr(JsonNode) node = vrot_tpmevidence_to_json(ev, NULL);
                g_autoptr(VrotTpmevidence) out = NULL;
                g_autoptr(GError) err = NULL;
                JsonObject *o = json_node_get_object(node);
                const char *m = cases[i].member;

                if (!cases[i].value) {
                        json_object_remove_member(o, m);
                } else {
                        m = m[0] == '+' ? m + 1 : m;
                        json_object_set_member(o, m, parse_json(cases[i].value));
                }
                CU_ASSERT_FALSE(vrot_tpmevidence_from_json(node, &out, &err));
                CU_ASSERT_PTR_NULL(out);
                CU_ASSERT_TRUE(g_error_matches(err, VROT_TPMEVIDENCE_ERROR,
                                               VROT_TPMEVIDENCE_ERROR_PARSE));
                if (!err || !strstr(err->message, cases[i].needle)) {
                        fprintf(stderr, "\n  %s: %s\n", cases[i].what, err ? err->message : "ok");
                        CU_FAIL(cases[i].what);
                }
        }
}

/* ---- verification, step by step ------------------------------------------------- */

static void test_tpmevidence_verify_accepts(void)
{
        g_autoptr(GBytes) nonce = nonce_new();
        g_autoptr(VrotTpmevidence) ev = evidence_for(nonce);
        g_autoptr(VrotTpmevidenceVerified) v = NULL;
        g_autoptr(EVP_PKEY) ca = vrot_host_tpm_ca_public_key(tpm, NULL);
        g_autoptr(X509) ek_cert = x509_of(ev->ek_cert);
        g_autoptr(GBytes) name = vrot_tpmevidence_name(ev->ak_public, NULL);
        g_autoptr(GError) err = NULL;

        CU_ASSERT_TRUE_FATAL(vrot_tpmevidence_verify(ev, nonce, roots, intermediates, &v, &err));
        CU_ASSERT_EQUAL(EVP_PKEY_eq(vrot_tpmevidence_verified_ca_key(v), ca), 1);
        CU_ASSERT_EQUAL(X509_cmp(vrot_tpmevidence_verified_ek_cert(v), ek_cert), 0);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(vrot_tpmevidence_verified_ek_key(v),
                                    X509_get0_pubkey(ek_cert)), 1);
        CU_ASSERT_TRUE(g_bytes_equal(vrot_tpmevidence_verified_ak_name(v), name));
}

typedef void (*PublicEdit)(TPMT_PUBLIC *pub);

/* @b (a TPM2B_PUBLIC) with @edit applied. */
static GBytes *edited_public(GBytes *b, PublicEdit edit)
{
        TPM2B_PUBLIC pub = { 0 };
        guint8 buf[sizeof(TPM2B_PUBLIC)];
        size_t off = 0;

        CU_ASSERT_FATAL(Tss2_MU_TPM2B_PUBLIC_Unmarshal(g_bytes_get_data(b, NULL),
                                                        g_bytes_get_size(b), &off,
                                                        &pub) == TSS2_RC_SUCCESS);
        edit(&pub.publicArea);
        pub.size = 0;           /* recomputed by the marshaller */
        off = 0;
        CU_ASSERT_FATAL(Tss2_MU_TPM2B_PUBLIC_Marshal(&pub, buf, sizeof(buf), &off) == 0);
        return g_bytes_new(buf, off);
}

static void flip_modulus(TPMT_PUBLIC *p) { p->unique.rsa.buffer[100] ^= 1; }
static void no_restricted(TPMT_PUBLIC *p) { p->objectAttributes &= ~TPMA_OBJECT_RESTRICTED; }
static void add_decrypt(TPMT_PUBLIC *p) { p->objectAttributes |= TPMA_OBJECT_DECRYPT; }
static void not_fixed(TPMT_PUBLIC *p) { p->objectAttributes &= ~TPMA_OBJECT_FIXEDTPM; }
static void ek_sym_aes256(TPMT_PUBLIC *p) { p->parameters.rsaDetail.symmetric.keyBits.aes = 256; }

static GBytes *flipped(GBytes *b, gsize at_from_end)
{
        gsize len = g_bytes_get_size(b);
        guint8 *p = g_memdup2(g_bytes_get_data(b, NULL), len);

        p[len - 1 - at_from_end] ^= 1;
        return g_bytes_new_take(p, len);
}

static GBytes *appended(GBytes *b)
{
        GByteArray *a = g_byte_array_new();

        g_byte_array_append(a, g_bytes_get_data(b, NULL), (guint)g_bytes_get_size(b));
        g_byte_array_append(a, (const guint8 *)"", 1);
        return g_byte_array_free_to_bytes(a);
}

typedef enum {
        EK_MODULUS, EK_NOT_RESTRICTED, EK_SYMMETRIC, EK_IS_AK, AK_DECRYPTS, AK_NOT_FIXED,
        AK_NOT_RESTRICTED, SIG_FLIPPED, ATTEST_FLIPPED, CA_IS_AK, CA_NOT_FIXED, ATTEST_TRAILING,
        EK_TRUNCATED, EK_CERT_GARBAGE, WRONG_NONCE, OTHER_ROOT,
} Tamper;

typedef struct VerifyCase {
        const char *what;
        Tamper tamper;
        VrotTpmevidenceError code;
        const char *needle;
} VerifyCase;

static void tamper(VrotTpmevidence *ev, Tamper t)
{
        GBytes **slot = NULL, *now = NULL;

        switch (t) {
        case EK_MODULUS: slot = &ev->ek_public; now = edited_public(*slot, flip_modulus); break;
        case EK_NOT_RESTRICTED: slot = &ev->ek_public; now = edited_public(*slot, no_restricted); break;
        case EK_SYMMETRIC: slot = &ev->ek_public; now = edited_public(*slot, ek_sym_aes256); break;
        case EK_IS_AK: slot = &ev->ek_public; now = g_bytes_ref(ev->ak_public); break;
        case AK_DECRYPTS: slot = &ev->ak_public; now = edited_public(*slot, add_decrypt); break;
        case AK_NOT_FIXED: slot = &ev->ak_public; now = edited_public(*slot, not_fixed); break;
        case AK_NOT_RESTRICTED: slot = &ev->ak_public; now = edited_public(*slot, no_restricted); break;
        case SIG_FLIPPED: slot = &ev->signature; now = flipped(*slot, 0); break;
        case ATTEST_FLIPPED: slot = &ev->attest; now = flipped(*slot, 3); break;
        case CA_IS_AK: slot = &ev->ca_public; now = g_bytes_ref(ev->ak_public); break;
        case CA_NOT_FIXED: slot = &ev->ca_public; now = edited_public(*slot, not_fixed); break;
        case ATTEST_TRAILING: slot = &ev->attest; now = appended(*slot); break;
        case EK_TRUNCATED:
                slot = &ev->ek_public;
                now = g_bytes_new_from_bytes(*slot, 0, g_bytes_get_size(*slot) - 1);
                break;
        case EK_CERT_GARBAGE: slot = &ev->ek_cert; now = g_bytes_new("\x30\x03\x02\x01\x01", 5); break;
        case WRONG_NONCE: case OTHER_ROOT: return;
        }
        g_bytes_unref(*slot);
        *slot = now;
}

static void test_tpmevidence_verify_refusals(void)
{
        static const VerifyCase cases[] = {
                { "EK not the certificate's key", EK_MODULUS, VROT_TPMEVIDENCE_ERROR_EK, "step 2" },
                { "EK not restricted", EK_NOT_RESTRICTED, VROT_TPMEVIDENCE_ERROR_EK, "step 2" },
                { "EK with AES-256", EK_SYMMETRIC, VROT_TPMEVIDENCE_ERROR_EK, "step 2" },
                { "EK is an ECC key", EK_IS_AK, VROT_TPMEVIDENCE_ERROR_EK, "step 2" },
                { "AK decrypts", AK_DECRYPTS, VROT_TPMEVIDENCE_ERROR_AK, "step 3" },
                { "AK not fixedTPM", AK_NOT_FIXED, VROT_TPMEVIDENCE_ERROR_AK, "step 3" },
                { "AK not restricted", AK_NOT_RESTRICTED, VROT_TPMEVIDENCE_ERROR_AK, "step 3" },
                { "signature changed", SIG_FLIPPED, VROT_TPMEVIDENCE_ERROR_SIGNATURE, "step 4" },
                { "attestation changed", ATTEST_FLIPPED, VROT_TPMEVIDENCE_ERROR_SIGNATURE, "step 4" },
                { "another certified object", CA_IS_AK, VROT_TPMEVIDENCE_ERROR_ATTEST,
                  "not the CA key of ca_public" },
                { "CA key not fixedTPM", CA_NOT_FIXED, VROT_TPMEVIDENCE_ERROR_ATTEST, "step 5" },
                { "wrong nonce", WRONG_NONCE, VROT_TPMEVIDENCE_ERROR_NONCE, "not for this nonce" },
                { "another vendor", OTHER_ROOT, VROT_TPMEVIDENCE_ERROR_EK_CERT, "step 1" },
                { "attest with a byte more", ATTEST_TRAILING, VROT_TPMEVIDENCE_ERROR_PARSE,
                  "bytes after the TPMS_ATTEST" },
                { "ek_public truncated", EK_TRUNCATED, VROT_TPMEVIDENCE_ERROR_PARSE, "ek_public" },
                { "ek_cert garbage", EK_CERT_GARBAGE, VROT_TPMEVIDENCE_ERROR_PARSE, "ek_cert" },
        };
        g_autoptr(GBytes) nonce = nonce_new(), other = nonce_new();
        g_autoptr(VrotTpmevidence) good = evidence_for(nonce);
        g_autoptr(X509_STORE) empty = X509_STORE_new();

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(VrotTpmevidence) ev = copy(good);
                g_autoptr(VrotTpmevidenceVerified) v = NULL;
                g_autoptr(GError) err = NULL;
                gboolean ok;

                tamper(ev, cases[i].tamper);
                ok = vrot_tpmevidence_verify(ev, cases[i].tamper == WRONG_NONCE ? other : nonce,
                                             cases[i].tamper == OTHER_ROOT ? empty : roots,
                                             intermediates, &v, &err);
                CU_ASSERT_FALSE(ok);
                CU_ASSERT_PTR_NULL(v);
                if (!g_error_matches(err, VROT_TPMEVIDENCE_ERROR, cases[i].code) ||
                    !strstr(err->message, cases[i].needle)) {
                        fprintf(stderr, "\n  %s: %s\n", cases[i].what, err ? err->message : "ok");
                        CU_FAIL(cases[i].what);
                }
        }
}

static void test_tpmevidence_verify_bad_nonce(void)
{
        g_autoptr(GBytes) nonce = nonce_new();
        g_autoptr(VrotTpmevidence) ev = evidence_for(nonce);
        g_autoptr(GBytes) empty = g_bytes_new(NULL, 0);
        g_autoptr(GBytes) huge = g_bytes_new_take(g_malloc0(65), 65);
        g_autoptr(VrotTpmevidenceVerified) v = NULL;
        g_autoptr(GError) e1 = NULL, e2 = NULL;

        CU_ASSERT_FALSE(vrot_tpmevidence_verify(ev, empty, roots, intermediates, &v, &e1));
        CU_ASSERT_TRUE(g_error_matches(e1, VROT_TPMEVIDENCE_ERROR, VROT_TPMEVIDENCE_ERROR_NONCE));
        CU_ASSERT_FALSE(vrot_tpmevidence_verify(ev, huge, roots, intermediates, &v, &e2));
        CU_ASSERT_TRUE(g_error_matches(e2, VROT_TPMEVIDENCE_ERROR, VROT_TPMEVIDENCE_ERROR_NONCE));
        CU_ASSERT_PTR_NULL(v);
}

static void test_tpmevidence_make_credential_needs_rsa_ek(void)
{
        g_autoptr(EVP_PKEY) ec = EVP_EC_gen("P-256");
        g_autoptr(EVP_PKEY) rsa3072 = EVP_RSA_gen(3072);
        g_autoptr(GBytes) id = NULL, secret = NULL;
        g_autoptr(GError) e1 = NULL, e2 = NULL;
        static const guint8 name[34] = { 0, 0x0b }, s[32];

        CU_ASSERT_FALSE(vrot_tpmevidence_make_credential(ec, name, 34, s, 32, &id, &secret, &e1));
        CU_ASSERT_TRUE(g_error_matches(e1, VROT_TPMEVIDENCE_ERROR, VROT_TPMEVIDENCE_ERROR_EK));
        CU_ASSERT_FALSE(vrot_tpmevidence_make_credential(rsa3072, name, 34, s, 32, &id, &secret,
                                                         &e2));
        CU_ASSERT_TRUE(g_error_matches(e2, VROT_TPMEVIDENCE_ERROR, VROT_TPMEVIDENCE_ERROR_EK));
        CU_ASSERT_PTR_NULL(id);
}

/* ---- the whole exchange ----------------------------------------------------------- */

/* A prover: the swtpm, honest unless told otherwise. */
typedef enum { HONEST, OLD_NONCE, WRONG_ANSWER, SHORT_ANSWER, FAILS } Lie;

static gboolean prover_evidence(gpointer data, GBytes *nonce, VrotTpmevidence **ret,
                                GError **error)
{
        Lie lie = GPOINTER_TO_INT(data);
        g_autoptr(GBytes) stale = g_bytes_new("an old nonce", 12);

        if (lie == FAILS) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED, "host gone");
                return FALSE;
        }
        return vrot_host_tpm_certify_ca_key(tpm, lie == OLD_NONCE ? stale : nonce, ret, error);
}

static gboolean prover_activate(gpointer data, GBytes *id, GBytes *encrypted, GBytes **ret,
                                GError **error)
{
        Lie lie = GPOINTER_TO_INT(data);
        g_autoptr(GBytes) secret = NULL;

        if (!vrot_host_tpm_activate_credential(tpm, id, encrypted, &secret, error))
                return FALSE;
        if (lie == WRONG_ANSWER)
                *ret = flipped(secret, 0);
        else if (lie == SHORT_ANSWER)
                *ret = g_bytes_new_from_bytes(secret, 0, g_bytes_get_size(secret) - 1);
        else
                *ret = g_steal_pointer(&secret);
        return TRUE;
}

typedef struct ChallengeCase {
        Lie lie;
        GQuark domain;
        gint code;
} ChallengeCase;

static void test_tpmevidence_challenge(void)
{
        static const VrotTpmevidenceProver prover = { prover_evidence, prover_activate };
        const ChallengeCase cases[] = {
                { OLD_NONCE, VROT_TPMEVIDENCE_ERROR, VROT_TPMEVIDENCE_ERROR_NONCE },
                { WRONG_ANSWER, VROT_TPMEVIDENCE_ERROR, VROT_TPMEVIDENCE_ERROR_CREDENTIAL },
                { SHORT_ANSWER, VROT_TPMEVIDENCE_ERROR, VROT_TPMEVIDENCE_ERROR_CREDENTIAL },
                { FAILS, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED },
        };
        g_autoptr(VrotTpmevidenceVerified) v = NULL;
        g_autoptr(EVP_PKEY) ca = vrot_host_tpm_ca_public_key(tpm, NULL);
        g_autoptr(GError) err = NULL;
        guint64 before = vrot_host_tpm_command_count(tpm);

        CU_ASSERT_TRUE(vrot_tpmevidence_challenge(&prover, GINT_TO_POINTER(HONEST), roots,
                                                  intermediates, &v, &err));
        if (err)
                fprintf(stderr, "\n  %s\n", err->message);
        CU_ASSERT_FATAL(v != NULL);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(vrot_tpmevidence_verified_ca_key(v), ca), 1);
        /* certify 8 (the NV buffer size is known by now) + activate 7 */
        CU_ASSERT_EQUAL(vrot_host_tpm_command_count(tpm) - before, 15);
        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(VrotTpmevidenceVerified) w = NULL;
                g_autoptr(GError) e = NULL;

                CU_ASSERT_FALSE(vrot_tpmevidence_challenge(&prover, GINT_TO_POINTER(cases[i].lie),
                                                           roots, intermediates, &w, &e));
                CU_ASSERT_PTR_NULL(w);
                if (!g_error_matches(e, cases[i].domain, cases[i].code)) {
                        fprintf(stderr, "\n  lie %d: %s\n", cases[i].lie, e ? e->message : "ok");
                        CU_FAIL("challenge");
                }
        }
}

/* ---- a key certified by the AK (vrot_tpmevidence_verify_key) ---------------------- */

/* The host evidence is a certified key too: the CA key, certified by the AK. */
static VrotTpmevidenceKey *key_evidence(const VrotTpmevidence *ev)
{
        VrotTpmevidenceKey *k = g_new0(VrotTpmevidenceKey, 1);

        k->ak_public = g_bytes_ref(ev->ak_public);
        k->key_public = g_bytes_ref(ev->ca_public);
        k->attest = g_bytes_ref(ev->attest);
        k->signature = g_bytes_ref(ev->signature);
        return k;
}

static void test_tpmevidence_verify_key(void)
{
        g_autoptr(GBytes) nonce = nonce_new(), other = nonce_new();
        g_autoptr(VrotTpmevidence) ev = evidence_for(nonce);
        g_autoptr(EVP_PKEY) ca = vrot_host_tpm_ca_public_key(tpm, NULL);
        g_autoptr(EVP_PKEY) key = NULL;
        g_autoptr(GError) err = NULL;
        struct {
                const char *what;
                gint code;
        } bad[] = {
                { "the AK certifies itself", VROT_TPMEVIDENCE_ERROR_AK },
                { "key is the EK", VROT_TPMEVIDENCE_ERROR_ATTEST },
                { "signature flipped", VROT_TPMEVIDENCE_ERROR_SIGNATURE },
                { "AK not restricted", VROT_TPMEVIDENCE_ERROR_AK },
                { "garbage key", VROT_TPMEVIDENCE_ERROR_PARSE },
        };

        {
                g_autoptr(VrotTpmevidenceKey) k = key_evidence(ev);
                CU_ASSERT_TRUE_FATAL(vrot_tpmevidence_verify_key(k, nonce, &key, &err));
                CU_ASSERT_EQUAL(EVP_PKEY_eq(key, ca), 1);
                CU_ASSERT_FALSE(vrot_tpmevidence_verify_key(k, other, &key, &err));
                CU_ASSERT_TRUE(g_error_matches(err, VROT_TPMEVIDENCE_ERROR,
                                               VROT_TPMEVIDENCE_ERROR_NONCE));
                g_clear_error(&err);
                /* No nonce (identity.complete): any qualifying data; the rest still checked. */
                g_clear_pointer(&key, EVP_PKEY_free);
                CU_ASSERT_TRUE(vrot_tpmevidence_verify_key(k, NULL, &key, &err));
                CU_ASSERT_EQUAL(EVP_PKEY_eq(key, ca), 1);
                g_bytes_unref(k->signature);
                k->signature = flipped(ev->signature, 0);
                CU_ASSERT_FALSE(vrot_tpmevidence_verify_key(k, NULL, &key, &err));
                CU_ASSERT_TRUE(g_error_matches(err, VROT_TPMEVIDENCE_ERROR,
                                               VROT_TPMEVIDENCE_ERROR_SIGNATURE));
                g_clear_error(&err);
        }
        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(VrotTpmevidenceKey) k = key_evidence(ev);
                g_autoptr(EVP_PKEY) none = NULL;

                switch (i) {
                case 0: /* the certified key is the restricted AK: not an identity key */
                        g_bytes_unref(k->key_public);
                        k->key_public = g_bytes_ref(ev->ak_public);
                        /* and the signing "AK" is the unrestricted CA key */
                        g_bytes_unref(k->ak_public);
                        k->ak_public = g_bytes_ref(ev->ca_public);
                        break;
                case 1:
                        g_bytes_unref(k->key_public);
                        k->key_public = g_bytes_ref(ev->ek_public);
                        break;
                case 2:
                        g_bytes_unref(k->signature);
                        k->signature = flipped(ev->signature, 0);
                        break;
                case 3:
                        g_bytes_unref(k->ak_public);
                        k->ak_public = edited_public(ev->ak_public, no_restricted);
                        break;
                case 4:
                        g_bytes_unref(k->key_public);
                        k->key_public = appended(ev->ca_public);
                        break;
                }
                CU_ASSERT_FALSE(vrot_tpmevidence_verify_key(k, nonce, &none, &err));
                if (!g_error_matches(err, VROT_TPMEVIDENCE_ERROR, bad[i].code))
                        fprintf(stderr, "\n  %s: %s\n", bad[i].what, err ? err->message : "accepted");
                CU_ASSERT_TRUE(g_error_matches(err, VROT_TPMEVIDENCE_ERROR, bad[i].code));
                CU_ASSERT_PTR_NULL(none);
                g_clear_error(&err);
        }
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_tpmevidence_json_round_trip),
                UNIT_CASE(test_tpmevidence_from_json_refusals),
                UNIT_CASE(test_tpmevidence_verify_accepts),
                UNIT_CASE(test_tpmevidence_verify_refusals),
                UNIT_CASE(test_tpmevidence_verify_bad_nonce),
                UNIT_CASE(test_tpmevidence_make_credential_needs_rsa_ek),
                UNIT_CASE(test_tpmevidence_challenge),
                UNIT_CASE(test_tpmevidence_verify_key),
        };
        g_autofree gchar *dir = g_build_filename(unit_tmpdir(), "host-tpm", NULL);
        g_autoptr(GError) err = NULL;
        g_autoptr(X509) root = NULL;

        g_setenv("TSS2_LOG", "all+none", TRUE);
        atexit(stop_all);               /* before the temp dir goes (LIFO) */
        dev = vrot_dev_tpm_start(dir, &err);
        if (!dev || !(tpm = vrot_host_tpm_open(vrot_dev_tpm_tcti(dev), &err)) ||
            !vrot_host_tpm_provision(tpm, NULL, &err)) {
                fprintf(stderr, "%s\n", err->message);
                return 1;
        }
        /* No CU_ASSERT here: the suite does not run yet. */
        roots = X509_STORE_new();
        root = vrot_x509_from_der(g_bytes_get_data(vrot_dev_tpm_root_cert(dev), NULL),
                                  g_bytes_get_size(vrot_dev_tpm_root_cert(dev)), NULL);
        intermediates = sk_X509_new_null();
        if (!roots || !root || !intermediates || X509_STORE_add_cert(roots, root) != 1 ||
            !sk_X509_push(intermediates,
                          vrot_x509_from_der(g_bytes_get_data(vrot_dev_tpm_issuer_cert(dev), NULL),
                                             g_bytes_get_size(vrot_dev_tpm_issuer_cert(dev)),
                                             NULL)))
                return 1;
        return UNIT_RUN("tpmevidence", cases);
}
