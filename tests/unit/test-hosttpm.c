/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The host TPM module against a real swtpm (started through devtpm), checked
 * from the outside: signatures with OpenSSL, the certification evidence
 * and credential activation with lib/tpmevidence, the verifier's code
 * (docs/host-evidence.md).  Cases run in order on one TPM.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <tss2/tss2_mu.h>

#include "devtpm.h"
#include "hosttpm.h"
#include "mseal.h"
#include "tpmevidence.h"
#include "x509.h"
#include "unit.h"

/* TPM2_TRANSIENT_FIRST of tss2_tpm2_types.h shifts an int into its sign bit. */
#define TRANSIENT_FIRST 0x80000000u

#define ALL_CREATED (VROT_HOST_TPM_CREATED_SRK | VROT_HOST_TPM_CREATED_CA_KEY | \
                     VROT_HOST_TPM_CREATED_COUNTER)

static VrotDevTpm *dev;
static EVP_PKEY *first_ca_key;          /* the CA key as first provisioned */
static guint64 counter_seen;            /* the counter's value at the end of a case */

static void stop_all(void)
{
        EVP_PKEY_free(first_ca_key);
        first_ca_key = NULL;
        g_clear_pointer(&dev, vrot_dev_tpm_free);       /* SIGTERM + waitpid */
}

/* Count of the commands @call sent. */
#define COST(tpm, call) ({                                                     \
        guint64 before_ = vrot_host_tpm_command_count(tpm);                    \
        (void)(call);                                                          \
        vrot_host_tpm_command_count(tpm) - before_;                            \
})

static VrotHostTpm *open_tpm(void)
{
        g_autoptr(GError) err = NULL;
        VrotHostTpm *tpm = vrot_host_tpm_open(vrot_dev_tpm_tcti(dev), &err);

        if (err)
                fprintf(stderr, "%s\n", err->message);
        CU_ASSERT_FATAL(tpm != NULL);
        CU_ASSERT_EQUAL(vrot_host_tpm_command_count(tpm), 1);   /* TPM2_Startup */
        return tpm;
}

/* A fresh context, provisioned with everything found (5 commands). */
static VrotHostTpm *open_provisioned(void)
{
        g_autoptr(GError) err = NULL;
        VrotHostTpm *tpm = open_tpm();
        VrotHostTpmCreated created = ALL_CREATED;

        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_provision(tpm, &created, &err)), 5);
        if (err)
                fprintf(stderr, "%s\n", err->message);
        CU_ASSERT_PTR_NULL_FATAL(err);
        CU_ASSERT_EQUAL(created, 0);
        return tpm;
}

/* Transient objects and sessions left in the TPM (swtpm has no RM). */
static guint32 loaded_handles(VrotHostTpm *tpm, TPM2_HANDLE first)
{
        TPMS_CAPABILITY_DATA *cap = NULL;
        TPMI_YES_NO more;
        guint32 n;

        CU_ASSERT_FATAL(Esys_GetCapability(vrot_host_tpm_esys(tpm), ESYS_TR_NONE, ESYS_TR_NONE,
                                           ESYS_TR_NONE, TPM2_CAP_HANDLES, first, 64, &more,
                                           &cap) == TSS2_RC_SUCCESS);
        n = cap->data.handles.count;
        Esys_Free(cap);
        return n;
}

/* ---- the verifier's side, in OpenSSL ------------------------------------------- */

static gboolean verify_digest(EVP_PKEY *key, const guint8 digest[32], GBytes *der)
{
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
        int r;

        CU_ASSERT_FATAL(ctx && EVP_PKEY_verify_init(ctx) == 1);
        r = EVP_PKEY_verify(ctx, g_bytes_get_data(der, NULL), g_bytes_get_size(der), digest, 32);
        EVP_PKEY_CTX_free(ctx);
        return r == 1;
}

static gboolean verify_message(EVP_PKEY *key, GBytes *msg, GBytes *der)
{
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        int r;

        CU_ASSERT_FATAL(ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1);
        r = EVP_DigestVerify(ctx, g_bytes_get_data(der, NULL), g_bytes_get_size(der),
                             g_bytes_get_data(msg, NULL), g_bytes_get_size(msg));
        EVP_MD_CTX_free(ctx);
        return r == 1;
}

/* The dev TPM's local CA: root trusted, issuer as an untrusted intermediate. */
static X509 *x509_of(GBytes *der)
{
        X509 *x = vrot_x509_from_der(g_bytes_get_data(der, NULL), g_bytes_get_size(der), NULL);

        CU_ASSERT_FATAL(x != NULL);
        return x;
}

/* Steps 1-5 with lib/tpmevidence against the dev TPM's vendor CA. */
static VrotTpmevidenceVerified *verify_evidence(const VrotTpmevidence *ev, GBytes *nonce,
                                                GError **error)
{
        g_autoptr(X509_STORE) store = X509_STORE_new();
        g_autoptr(X509) root = x509_of(vrot_dev_tpm_root_cert(dev));
        STACK_OF(X509) *chain = sk_X509_new_null();
        VrotTpmevidenceVerified *v = NULL;

        CU_ASSERT_FATAL(store && chain && X509_STORE_add_cert(store, root) == 1);
        sk_X509_push(chain, x509_of(vrot_dev_tpm_issuer_cert(dev)));
        (void)vrot_tpmevidence_verify(ev, nonce, store, chain, &v, error);
        sk_X509_pop_free(chain, X509_free);
        return v;
}

static void evict(VrotHostTpm *tpm, TPM2_HANDLE handle);

/* ---- cases ------------------------------------------------------------------------ */

typedef struct BadTcti {
        const char *tcti;
        VrotHostTpmError code;
} BadTcti;

static void test_hosttpm_open_bad_tcti(void)
{
        static const BadTcti cases[] = {
                { "nosuchtcti:x", VROT_HOST_TPM_ERROR_IO },
                { "swtpm:path=/nonexistent/tpm.sock", VROT_HOST_TPM_ERROR_IO },
                { "device:/nonexistent/tpmrm0", VROT_HOST_TPM_ERROR_IO },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) err = NULL;
                VrotHostTpm *tpm = vrot_host_tpm_open(cases[i].tcti, &err);

                CU_ASSERT_PTR_NULL(tpm);
                vrot_host_tpm_free(tpm);
                CU_ASSERT_TRUE(g_error_matches(err, VROT_HOST_TPM_ERROR, cases[i].code));
                CU_ASSERT(err && strstr(err->message, cases[i].tcti));
        }
}

static void test_hosttpm_provision_creates(void)
{
        g_autoptr(VrotHostTpm) tpm = open_tpm();
        g_autoptr(GError) err = NULL;
        VrotHostTpmCreated created = 0;
        gint64 t0 = g_get_monotonic_time();

        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_provision(tpm, &created, &err)), 12);
        fprintf(stderr, "\n  first provisioning: %.1f ms\n",
                (g_get_monotonic_time() - t0) / 1000.0);
        CU_ASSERT_PTR_NULL_FATAL(err);
        CU_ASSERT_EQUAL(created, ALL_CREATED);
        CU_ASSERT_NOT_EQUAL(vrot_host_tpm_srk(tpm), ESYS_TR_NONE);
        first_ca_key = vrot_host_tpm_ca_public_key(tpm, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(first_ca_key);
        CU_ASSERT_EQUAL(EVP_PKEY_get_bits(first_ca_key), 256);
        CU_ASSERT_EQUAL(loaded_handles(tpm, TRANSIENT_FIRST), 0);
}

/* Re-open: everything found, the same CA key, nothing created. */
static void test_hosttpm_provision_reopen_finds(void)
{
        g_autoptr(VrotHostTpm) tpm = NULL;
        g_autoptr(GError) err = NULL;
        EVP_PKEY *key;
        gint64 t0 = g_get_monotonic_time();

        tpm = open_provisioned();
        fprintf(stderr, "\n  open + provisioning (found): %.1f ms\n",
                (g_get_monotonic_time() - t0) / 1000.0);
        key = vrot_host_tpm_ca_public_key(tpm, &err);
        CU_ASSERT_FATAL(key != NULL);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(key, first_ca_key), 1);
        EVP_PKEY_free(key);
}

static void test_hosttpm_sign_digest_verifies(void)
{
        static const char *const messages[] = { "", "TBSCertificate", "vrot" };
        g_autoptr(VrotHostTpm) tpm = open_provisioned();

        for (gsize i = 0; i < G_N_ELEMENTS(messages); i++) {
                g_autoptr(GBytes) msg = g_bytes_new_static(messages[i], strlen(messages[i]));
                g_autoptr(GBytes) sig = NULL;
                g_autoptr(GError) err = NULL;
                guint8 digest[32];

                SHA256((const guint8 *)messages[i], strlen(messages[i]), digest);
                CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_sign_digest(tpm, digest, &sig, &err)), 1);
                CU_ASSERT_PTR_NULL(err);
                CU_ASSERT_FATAL(sig != NULL);
                CU_ASSERT_TRUE(verify_digest(first_ca_key, digest, sig));
                CU_ASSERT_TRUE(verify_message(first_ca_key, msg, sig));
                digest[31] ^= 1;
                CU_ASSERT_FALSE(verify_digest(first_ca_key, digest, sig));
        }
}

/* The transport key: made at the first request, found after a reopen, not
 * the CA key, and it signs (a TLS CertificateVerify digest). */
static void test_hosttpm_transport_key(void)
{
        g_autoptr(EVP_PKEY) key = NULL, again = NULL;
        g_autoptr(GBytes) sig = NULL;
        g_autoptr(GError) err = NULL;
        guint8 digest[32];

        {
                g_autoptr(VrotHostTpm) tpm = open_provisioned();

                key = vrot_host_tpm_transport_key(tpm, &err);
                CU_ASSERT_PTR_NOT_NULL_FATAL(key);
                CU_ASSERT_NOT_EQUAL(EVP_PKEY_eq(key, first_ca_key), 1);
                CU_ASSERT_EQUAL(COST(tpm, again = vrot_host_tpm_transport_key(tpm, &err)), 0);
                CU_ASSERT_EQUAL(EVP_PKEY_eq(key, again), 1);
                SHA256((const guint8 *)"transcript", 10, digest);
                CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_transport_sign(tpm, digest, &sig, &err)),
                                1);
                CU_ASSERT_TRUE(sig && verify_digest(key, digest, sig));
                CU_ASSERT_FALSE(sig && verify_digest(first_ca_key, digest, sig));
        }
        {
                g_autoptr(VrotHostTpm) tpm = open_provisioned();

                g_clear_pointer(&again, EVP_PKEY_free);
                again = vrot_host_tpm_transport_key(tpm, &err);
                CU_ASSERT_TRUE(again && EVP_PKEY_eq(key, again) == 1);
        }
}

/* An import key: certified by the host AK as a decryption key, and the only
 * key that opens an envelope sealed to it (R-MIG-2). */
static void test_hosttpm_import_key(void)
{
        static const guint8 id[VROT_MSEAL_ID_LEN] = { 1, 2, 3 }, uuid[16] = { 9, 8, 7 };
        static const char plain[] = "a vTPM's permanent state";
        g_autoptr(VrotHostTpm) tpm = open_provisioned();
        g_autoptr(GBytes) nonce = g_bytes_new_static("session binding!", 16);
        g_autoptr(VrotTpmevidenceKey) ev = NULL, ev2 = NULL;
        g_autoptr(EVP_PKEY) pub = NULL, stranger_pub = NULL, stranger = EVP_EC_gen("P-256");
        g_autoptr(GBytes) env = NULL, out = NULL;
        g_autoptr(GError) err = NULL;
        VrotHostImportKey *k, *k2;

        k = vrot_host_tpm_import_key_new(tpm, nonce, &ev, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(k);
        CU_ASSERT_TRUE_FATAL(vrot_tpmevidence_verify_key(ev, nonce, &pub, &err));
        ev->decrypt = FALSE;            /* it is not a signing key */
        CU_ASSERT_FALSE(vrot_tpmevidence_verify_key(ev, nonce, &stranger_pub, &err));
        CU_ASSERT_PTR_NULL(stranger_pub);
        CU_ASSERT(g_error_matches(err, VROT_TPMEVIDENCE_ERROR, VROT_TPMEVIDENCE_ERROR_ATTEST));
        g_clear_error(&err);

        env = vrot_mseal_seal(pub, id, uuid, 5, (const guint8 *)plain, sizeof(plain), &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(env);
        out = vrot_mseal_open(g_bytes_get_data(env, NULL), g_bytes_get_size(env), id, uuid, 5,
                              vrot_host_import_key_zgen, k, &err);
        CU_ASSERT_PTR_NULL(err);
        CU_ASSERT_TRUE(out && g_bytes_get_size(out) == sizeof(plain) &&
                       memcmp(g_bytes_get_data(out, NULL), plain, sizeof(plain)) == 0);
        /* Any other key, in software or another import key of this TPM: no. */
        CU_ASSERT_PTR_NULL(vrot_mseal_open(g_bytes_get_data(env, NULL), g_bytes_get_size(env), id,
                                           uuid, 5, vrot_mseal_zgen_software, stranger, &err));
        CU_ASSERT(g_error_matches(err, VROT_MSEAL_ERROR, VROT_MSEAL_ERROR_TAMPERED));
        g_clear_error(&err);
        k2 = vrot_host_tpm_import_key_new(tpm, nonce, &ev2, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(k2);
        CU_ASSERT_PTR_NULL(vrot_mseal_open(g_bytes_get_data(env, NULL), g_bytes_get_size(env), id,
                                           uuid, 5, vrot_host_import_key_zgen, k2, &err));
        CU_ASSERT(g_error_matches(err, VROT_MSEAL_ERROR, VROT_MSEAL_ERROR_TAMPERED));
        g_clear_error(&err);
        vrot_host_import_key_free(k2);
        /* Flushed, the key opens nothing any more: a replay finds no key. */
        vrot_host_import_key_free(k);
}

static void test_hosttpm_counter_increments_across_reopen(void)
{
        g_autoptr(VrotHostTpm) tpm = open_provisioned();
        g_autoptr(GError) err = NULL;
        guint64 v0 = 0, v = 0;

        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_counter_read(tpm, &v0, &err)), 1);
        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_counter_increment(tpm, NULL, &err)), 1);
        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_counter_increment(tpm, &v, &err)), 2);
        CU_ASSERT_PTR_NULL(err);
        CU_ASSERT_EQUAL(v, v0 + 2);
        g_clear_pointer(&tpm, vrot_host_tpm_free);

        tpm = open_provisioned();
        CU_ASSERT_TRUE(vrot_host_tpm_counter_read(tpm, &v, &err));
        CU_ASSERT_EQUAL(v, v0 + 2);
        counter_seen = v;
}

static void test_hosttpm_read_ek_cert(void)
{
        g_autoptr(VrotHostTpm) tpm = open_provisioned();
        g_autoptr(GBytes) cert = NULL, again = NULL;
        g_autoptr(GError) err = NULL;

        /* 1016 bytes, TPM_PT_NV_BUFFER_MAX 1024: one NV_Read. */
        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_read_ek_cert(tpm, &cert, &err)), 4);
        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_read_ek_cert(tpm, &again, &err)), 3);
        CU_ASSERT_PTR_NULL_FATAL(err);
        CU_ASSERT_TRUE(g_bytes_equal(cert, vrot_dev_tpm_ek_cert(dev, VROT_DEV_TPM_EK_RSA2048)));
        CU_ASSERT_TRUE(g_bytes_equal(cert, again));
}

/* The certification as a verifier checks it (docs/host-evidence.md, steps 1-5). */
static void check_evidence(const VrotTpmevidence *ev, const guint8 *nonce, gsize nonce_len)
{
        g_autoptr(GBytes) n = g_bytes_new(nonce, nonce_len);
        g_autoptr(GBytes) other = g_bytes_new("other", 5);
        g_autoptr(VrotTpmevidenceVerified) v = NULL, w = NULL;
        g_autoptr(GError) err = NULL, err2 = NULL;

        v = verify_evidence(ev, n, &err);
        if (err)
                fprintf(stderr, "\n  %s\n", err->message);
        CU_ASSERT_FATAL(v != NULL);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(vrot_tpmevidence_verified_ca_key(v), first_ca_key), 1);
        /* The same evidence for another nonce is stale. */
        w = verify_evidence(ev, other, &err2);
        CU_ASSERT_PTR_NULL(w);
        CU_ASSERT_TRUE(g_error_matches(err2, VROT_TPMEVIDENCE_ERROR, VROT_TPMEVIDENCE_ERROR_NONCE));
}

/* Step 6: the AK is in the TPM of the EK certificate (credential activation). */
static void check_activation(VrotHostTpm *tpm, const VrotTpmevidence *ev, guint64 cost)
{
        g_autoptr(GBytes) nonce = NULL, id = NULL, secret = NULL, got = NULL, id2 = NULL;
        g_autoptr(GBytes) secret2 = NULL, ca_name = vrot_tpmevidence_name(ev->ca_public, NULL);
        g_autoptr(VrotTpmevidenceVerified) v = NULL;
        g_autoptr(GError) err = NULL, err2 = NULL;
        guint8 challenge[32];
        TPMS_ATTEST attest = { 0 };
        size_t off = 0;
        GBytes *ak_name;

        /* The nonce the evidence carries, to get the verified keys again. */
        CU_ASSERT_FATAL(Tss2_MU_TPMS_ATTEST_Unmarshal(g_bytes_get_data(ev->attest, NULL),
                                                       g_bytes_get_size(ev->attest), &off,
                                                       &attest) == TSS2_RC_SUCCESS);
        nonce = g_bytes_new(attest.extraData.buffer, attest.extraData.size);
        v = verify_evidence(ev, nonce, NULL);
        CU_ASSERT_FATAL(v != NULL && ca_name != NULL);
        ak_name = vrot_tpmevidence_verified_ak_name(v);
        CU_ASSERT_FATAL(RAND_bytes(challenge, sizeof(challenge)) == 1);
        CU_ASSERT_FATAL(vrot_tpmevidence_make_credential(
                vrot_tpmevidence_verified_ek_key(v), g_bytes_get_data(ak_name, NULL),
                g_bytes_get_size(ak_name), challenge, sizeof(challenge), &id, &secret, NULL));
        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_activate_credential(tpm, id, secret, &got, &err)),
                        cost);
        CU_ASSERT_PTR_NULL(err);
        CU_ASSERT_FATAL(got != NULL);
        CU_ASSERT(g_bytes_get_size(got) == 32 &&
                  memcmp(g_bytes_get_data(got, NULL), challenge, 32) == 0);
        g_clear_pointer(&got, g_bytes_unref);

        /* Made for another object's name: the TPM refuses. */
        CU_ASSERT_FATAL(vrot_tpmevidence_make_credential(
                vrot_tpmevidence_verified_ek_key(v), g_bytes_get_data(ca_name, NULL),
                g_bytes_get_size(ca_name), challenge, sizeof(challenge), &id2, &secret2, NULL));
        CU_ASSERT_FALSE(vrot_host_tpm_activate_credential(tpm, id2, secret2, &got, &err2));
        CU_ASSERT_TRUE(g_error_matches(err2, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_TPM));
}

static void test_hosttpm_evidence_verifies(void)
{
        g_autoptr(VrotHostTpm) tpm = open_provisioned();
        g_autoptr(VrotTpmevidence) ev = NULL;
        g_autoptr(GError) err = NULL;
        guint8 nonce[32];
        g_autoptr(GBytes) nonce_b = NULL;
        gint64 t0;

        CU_ASSERT_FATAL(RAND_bytes(nonce, sizeof(nonce)) == 1);
        nonce_b = g_bytes_new(nonce, sizeof(nonce));
        t0 = g_get_monotonic_time();
        /* 8 + the first NV read of this context (TPM_PT_NV_BUFFER_MAX). */
        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_certify_ca_key(tpm, nonce_b, &ev, &err)), 9);
        fprintf(stderr, "\n  evidence: %.1f ms\n", (g_get_monotonic_time() - t0) / 1000.0);
        CU_ASSERT_PTR_NULL(err);
        CU_ASSERT_FATAL(ev != NULL);
        check_evidence(ev, nonce, sizeof(nonce));
        check_activation(tpm, ev, 7);
        /* The AK, the EK session and the sessions were all flushed. */
        CU_ASSERT_EQUAL(loaded_handles(tpm, TRANSIENT_FIRST), 0);
        CU_ASSERT_EQUAL(loaded_handles(tpm, TPM2_LOADED_SESSION_FIRST), 0);
}

/*
 * A TPM without a persistent EK (most real ones): the EK is created from
 * template L-1 when needed, and must be the key of the EK certificate.
 */
static void test_hosttpm_evidence_without_persistent_ek(void)
{
        g_autoptr(VrotHostTpm) tpm = open_provisioned();
        g_autoptr(VrotTpmevidence) ev = NULL;
        g_autoptr(GError) err = NULL;
        static const guint8 nonce[] = "fresh";
        g_autoptr(GBytes) nonce_b = g_bytes_new_static(nonce, sizeof(nonce));

        evict(tpm, VROT_HOST_TPM_EK_HANDLE);
        /* 9 + the first NV read of this context. */
        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_certify_ca_key(tpm, nonce_b, &ev, &err)), 10);
        CU_ASSERT_PTR_NULL(err);
        CU_ASSERT_FATAL(ev != NULL);
        check_evidence(ev, nonce, sizeof(nonce));
        check_activation(tpm, ev, 9);
        CU_ASSERT_EQUAL(loaded_handles(tpm, TRANSIENT_FIRST), 0);
}

typedef struct BadCredential {
        const char *what;
        const guint8 *id;
        gsize id_len;
        const guint8 *secret;
        gsize secret_len;
} BadCredential;

/* Malformed input costs no TPM command; a nonce too long neither. */
static void test_hosttpm_evidence_bad_input(void)
{
        static const guint8 ok_secret[] = { 0, 2, 0xaa, 0xbb };
        static const guint8 short_id[] = { 0, 10, 1, 2 };
        static const guint8 trailing[] = { 0, 1, 0xaa, 0xff };
        static const guint8 huge_size[] = { 0xff, 0xff, 0 };
        static const BadCredential cases[] = {
                { "empty id", NULL, 0, ok_secret, sizeof(ok_secret) },
                { "truncated id", short_id, sizeof(short_id), ok_secret, sizeof(ok_secret) },
                { "trailing bytes", trailing, sizeof(trailing), ok_secret, sizeof(ok_secret) },
                { "size over the maximum", huge_size, sizeof(huge_size), ok_secret,
                  sizeof(ok_secret) },
                { "secret truncated", trailing, 3, short_id, sizeof(short_id) },
        };
        g_autoptr(VrotHostTpm) tpm = open_provisioned();
        g_autoptr(GBytes) long_nonce = g_bytes_new_take(g_malloc0(65), 65);
        g_autoptr(VrotTpmevidence) ev = NULL;
        g_autoptr(GError) err = NULL;

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GBytes) id = g_bytes_new(cases[i].id, cases[i].id_len);
                g_autoptr(GBytes) secret = g_bytes_new(cases[i].secret, cases[i].secret_len);
                g_autoptr(GBytes) got = NULL;
                g_autoptr(GError) e = NULL;

                CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_activate_credential(tpm, id, secret,
                                                                            &got, &e)), 0);
                if (!g_error_matches(e, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_INVALID))
                        fprintf(stderr, "case '%s': %s\n", cases[i].what,
                                e ? e->message : "no error");
                CU_ASSERT_TRUE(g_error_matches(e, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_INVALID));
                CU_ASSERT_PTR_NULL(got);
        }
        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_certify_ca_key(tpm, long_nonce, &ev, &err)), 0);
        CU_ASSERT_TRUE(g_error_matches(err, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_INVALID));
        CU_ASSERT_PTR_NULL(ev);
}

/* Replaces the object at @handle by a key of another template (the SRK's). */
static void plant_foreign_key(VrotHostTpm *tpm, TPM2_HANDLE handle)
{
        ESYS_CONTEXT *esys = vrot_host_tpm_esys(tpm);
        TPM2B_PUBLIC tmpl = { .publicArea = {
                .type = TPM2_ALG_ECC, .nameAlg = TPM2_ALG_SHA256,
                .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                        TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                        TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT,
                .parameters.eccDetail = { .symmetric.algorithm = TPM2_ALG_NULL,
                                          .scheme.scheme = TPM2_ALG_NULL,
                                          .curveID = TPM2_ECC_NIST_P256,
                                          .kdf.scheme = TPM2_ALG_NULL },
        } };
        TPM2B_SENSITIVE_CREATE sens = { 0 };
        TPM2B_DATA outside = { 0 };
        TPML_PCR_SELECTION pcrs = { 0 };
        ESYS_TR old, key, persisted;

        CU_ASSERT_FATAL(Esys_TR_FromTPMPublic(esys, handle, ESYS_TR_NONE, ESYS_TR_NONE,
                                              ESYS_TR_NONE, &old) == TSS2_RC_SUCCESS);
        CU_ASSERT_FATAL(Esys_EvictControl(esys, ESYS_TR_RH_OWNER, old, ESYS_TR_PASSWORD,
                                          ESYS_TR_NONE, ESYS_TR_NONE, handle,
                                          &persisted) == TSS2_RC_SUCCESS);
        CU_ASSERT_FATAL(Esys_CreatePrimary(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                           ESYS_TR_NONE, &sens, &tmpl, &outside, &pcrs, &key,
                                           NULL, NULL, NULL, NULL) == TSS2_RC_SUCCESS);
        CU_ASSERT_FATAL(Esys_EvictControl(esys, ESYS_TR_RH_OWNER, key, ESYS_TR_PASSWORD,
                                          ESYS_TR_NONE, ESYS_TR_NONE, handle,
                                          &persisted) == TSS2_RC_SUCCESS);
        CU_ASSERT_FATAL(Esys_FlushContext(esys, key) == TSS2_RC_SUCCESS);
}

static void evict(VrotHostTpm *tpm, TPM2_HANDLE handle)
{
        ESYS_CONTEXT *esys = vrot_host_tpm_esys(tpm);
        ESYS_TR obj, none;

        CU_ASSERT_FATAL(Esys_TR_FromTPMPublic(esys, handle, ESYS_TR_NONE, ESYS_TR_NONE,
                                              ESYS_TR_NONE, &obj) == TSS2_RC_SUCCESS);
        CU_ASSERT_FATAL(Esys_EvictControl(esys, ESYS_TR_RH_OWNER, obj, ESYS_TR_PASSWORD,
                                          ESYS_TR_NONE, ESYS_TR_NONE, handle,
                                          &none) == TSS2_RC_SUCCESS);
}

/* Another program's key at the CA handle is refused, never evicted. */
static void test_hosttpm_provision_foreign_key_refused(void)
{
        g_autoptr(VrotHostTpm) tpm = open_provisioned();
        g_autoptr(GError) err = NULL;
        VrotHostTpmCreated created = 0;
        EVP_PKEY *key;

        plant_foreign_key(tpm, VROT_HOST_TPM_CA_KEY_HANDLE);
        g_clear_pointer(&tpm, vrot_host_tpm_free);
        tpm = open_tpm();
        CU_ASSERT_FALSE(vrot_host_tpm_provision(tpm, &created, &err));
        CU_ASSERT_TRUE(g_error_matches(err, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_CONFLICT));
        CU_ASSERT(err && strstr(err->message, "0x81007601"));
        g_clear_error(&err);
        g_clear_pointer(&tpm, vrot_host_tpm_free);

        /* Once the operator removed it, a new CA key is made (one the old
         * CA certificate does not name: it must be issued again). */
        tpm = open_tpm();
        evict(tpm, VROT_HOST_TPM_CA_KEY_HANDLE);
        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_provision(tpm, &created, &err)), 8);
        CU_ASSERT_PTR_NULL(err);
        CU_ASSERT_EQUAL(created, VROT_HOST_TPM_CREATED_CA_KEY);
        key = vrot_host_tpm_ca_public_key(tpm, &err);
        CU_ASSERT_FATAL(key != NULL);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(key, first_ca_key), 0);
        EVP_PKEY_free(first_ca_key);
        first_ca_key = key;
}

static void define_nv(VrotHostTpm *tpm, TPMA_NV type_attrs, ESYS_TR *ret)
{
        TPM2B_NV_PUBLIC pub = { .nvPublic = {
                .nvIndex = VROT_HOST_TPM_COUNTER_INDEX, .nameAlg = TPM2_ALG_SHA256,
                .attributes = type_attrs | TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD |
                        TPMA_NV_AUTHREAD | TPMA_NV_NO_DA,
                .dataSize = 8,
        } };

        CU_ASSERT_FATAL(Esys_NV_DefineSpace(vrot_host_tpm_esys(tpm), ESYS_TR_RH_OWNER,
                                            ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, NULL,
                                            &pub, ret) == TSS2_RC_SUCCESS);
}

static void undefine_nv(VrotHostTpm *tpm)
{
        ESYS_CONTEXT *esys = vrot_host_tpm_esys(tpm);
        ESYS_TR nv;

        CU_ASSERT_FATAL(Esys_TR_FromTPMPublic(esys, VROT_HOST_TPM_COUNTER_INDEX, ESYS_TR_NONE,
                                              ESYS_TR_NONE, ESYS_TR_NONE, &nv) == 0);
        CU_ASSERT_FATAL(Esys_NV_UndefineSpace(esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD,
                                              ESYS_TR_NONE, ESYS_TR_NONE) == TSS2_RC_SUCCESS);
}

/*
 * An ordinary index at the counter's place is refused.  A counter deleted
 * and defined again does not go back (TPM2 Part 3, TPM2_NV_Increment).
 */
static void test_hosttpm_counter_foreign_index_and_recreation(void)
{
        g_autoptr(VrotHostTpm) tpm = open_tpm();
        g_autoptr(GError) err = NULL;
        VrotHostTpmCreated created = 0;
        ESYS_TR nv;
        guint64 v = 0;

        undefine_nv(tpm);
        define_nv(tpm, TPM2_NT_ORDINARY << TPMA_NV_TPM2_NT_SHIFT, &nv);
        CU_ASSERT_FALSE(vrot_host_tpm_provision(tpm, &created, &err));
        CU_ASSERT_TRUE(g_error_matches(err, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_CONFLICT));
        g_clear_error(&err);
        g_clear_pointer(&tpm, vrot_host_tpm_free);

        tpm = open_tpm();
        undefine_nv(tpm);
        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_provision(tpm, &created, &err)), 7);
        CU_ASSERT_PTR_NULL(err);
        CU_ASSERT_EQUAL(created, VROT_HOST_TPM_CREATED_COUNTER);
        CU_ASSERT_TRUE(vrot_host_tpm_counter_read(tpm, &v, &err));
        CU_ASSERT(v > counter_seen);
}

/*
 * A TPM at the other end of a pipe (the cmd TCTI) that reads TPM2_Startup,
 * closes every descriptor but stdout and only then answers: once open()
 * returns, the next command's write raises SIGPIPE, which must not kill us
 * (default disposition here) but come back as an I/O error.
 */
static void test_hosttpm_broken_pipe_no_sigpipe(void)
{
        static const char tcti[] =
                "cmd:exec python3 -c 'import os, time; os.read(0, 12); "
                "os.closerange(3, 4096); os.close(0); "
                "os.write(1, bytes.fromhex(\"80010000000a00000100\")); time.sleep(10)'";
        g_autoptr(VrotHostTpm) tpm = NULL;
        g_autoptr(GError) err = NULL;
        struct sigaction sa;

        CU_ASSERT_FATAL(sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL);
        tpm = vrot_host_tpm_open(tcti, &err);
        if (err)
                fprintf(stderr, "%s\n", err->message);
        CU_ASSERT_FATAL(tpm != NULL);
        CU_ASSERT_EQUAL(COST(tpm, vrot_host_tpm_provision(tpm, NULL, &err)), 1);
        CU_ASSERT_TRUE(g_error_matches(err, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_IO));
        g_clear_error(&err);
        CU_ASSERT_FALSE(vrot_host_tpm_provision(tpm, NULL, &err));
        CU_ASSERT(err && strstr(err->message, "broke earlier"));
}

/* The TPM dies under an open context: errors, not a crash. */
static void test_hosttpm_tpm_killed(void)
{
        g_autoptr(VrotHostTpm) tpm = open_provisioned();
        g_autoptr(VrotHostTpm) none = NULL;
        g_autoptr(GBytes) sig = NULL, cert = NULL;
        g_autoptr(VrotTpmevidence) ev = NULL;
        g_autoptr(GError) e1 = NULL, e2 = NULL, e3 = NULL, e4 = NULL, e5 = NULL;
        guint8 digest[32] = { 0 };
        guint64 v;

        CU_ASSERT_FATAL(kill(vrot_dev_tpm_pid(dev), SIGKILL) == 0);
        vrot_dev_tpm_stop(dev);                 /* reaps it */
        CU_ASSERT_FALSE(vrot_host_tpm_sign_digest(tpm, digest, &sig, &e1));
        CU_ASSERT_TRUE(g_error_matches(e1, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_IO));
        CU_ASSERT_FALSE(vrot_host_tpm_counter_read(tpm, &v, &e2));
        CU_ASSERT_TRUE(g_error_matches(e2, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_IO));
        CU_ASSERT_FALSE(vrot_host_tpm_read_ek_cert(tpm, &cert, &e3));
        CU_ASSERT_TRUE(g_error_matches(e3, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_IO));
        CU_ASSERT_FALSE(vrot_host_tpm_certify_ca_key(tpm, NULL, &ev, &e4));
        CU_ASSERT_TRUE(g_error_matches(e4, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_IO));
        none = vrot_host_tpm_open(vrot_dev_tpm_tcti(dev), &e5);
        CU_ASSERT_PTR_NULL(none);
        CU_ASSERT_TRUE(g_error_matches(e5, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_IO));
        CU_ASSERT_PTR_NULL(sig);
        CU_ASSERT_PTR_NULL(ev);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_hosttpm_open_bad_tcti),
                UNIT_CASE(test_hosttpm_provision_creates),
                UNIT_CASE(test_hosttpm_provision_reopen_finds),
                UNIT_CASE(test_hosttpm_sign_digest_verifies),
                UNIT_CASE(test_hosttpm_transport_key),
                UNIT_CASE(test_hosttpm_import_key),
                UNIT_CASE(test_hosttpm_counter_increments_across_reopen),
                UNIT_CASE(test_hosttpm_read_ek_cert),
                UNIT_CASE(test_hosttpm_evidence_verifies),
                UNIT_CASE(test_hosttpm_evidence_without_persistent_ek),
                UNIT_CASE(test_hosttpm_evidence_bad_input),
                UNIT_CASE(test_hosttpm_provision_foreign_key_refused),
                UNIT_CASE(test_hosttpm_counter_foreign_index_and_recreation),
                UNIT_CASE(test_hosttpm_broken_pipe_no_sigpipe),
                UNIT_CASE(test_hosttpm_tpm_killed),
        };
        g_autofree gchar *dir = g_build_filename(unit_tmpdir(), "host-tpm", NULL);
        g_autoptr(GError) err = NULL;

        /* Errors come back as GError; tpm2-tss's own stderr warnings would
         * only repeat them (vrotd does the same). */
        g_setenv("TSS2_LOG", "all+none", TRUE);
        atexit(stop_all);               /* before the temp dir goes (LIFO) */
        dev = vrot_dev_tpm_start(dir, &err);
        if (!dev) {
                fprintf(stderr, "%s\n", err->message);
                return 1;
        }
        return UNIT_RUN("hosttpm", cases);
}
