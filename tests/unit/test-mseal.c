/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include <openssl/evp.h>

#include "autoptr.h"
#include "mseal.h"
#include "unit.h"

static const guint8 id[VROT_MSEAL_ID_LEN] = { 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8,
                                               0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0 };
static const guint8 uuid[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef,
                                 0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };
static const guint64 gen = 42;
static const char state[] = "the permanent, volatile and savestate blobs of a vTPM";

static EVP_PKEY *p256(void)
{
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

        CU_ASSERT_PTR_NOT_NULL_FATAL(k);
        return k;
}

static GBytes *seal(EVP_PKEY *k, const guint8 *plain, gsize len)
{
        g_autoptr(GError) err = NULL;
        GBytes *env = vrot_mseal_seal(k, id, uuid, gen, plain, len, &err);

        CU_ASSERT_PTR_NOT_NULL_FATAL(env);
        return env;
}

static GBytes *open_(GBytes *env, EVP_PKEY *k, const guint8 *want_id, const guint8 *want_uuid,
                     guint64 want_gen, GError **err)
{
        gsize len;
        const guint8 *buf = g_bytes_get_data(env, &len);

        return vrot_mseal_open(buf, len, want_id, want_uuid, want_gen, vrot_mseal_zgen_software, k,
                               err);
}

static void test_mseal_round_trip(void)
{
        g_autoptr(EVP_PKEY) k = p256();
        static const gsize sizes[] = { 0, 1, sizeof(state), 100000 };

        for (gsize i = 0; i < G_N_ELEMENTS(sizes); i++) {
                g_autofree guint8 *plain = g_malloc0(MAX(sizes[i], 1));
                g_autoptr(GBytes) env = NULL, got = NULL;
                g_autoptr(GError) err = NULL;
                VrotMsealHeader h;
                gsize len;
                const guint8 *buf;

                memcpy(plain, state, MIN(sizes[i], sizeof(state)));
                env = seal(k, plain, sizes[i]);
                buf = g_bytes_get_data(env, &len);
                CU_ASSERT_TRUE(vrot_mseal_parse(buf, len, &h, NULL));
                CU_ASSERT_EQUAL(h.ciphertext_len, sizes[i]);
                CU_ASSERT_EQUAL(h.generation, gen);
                CU_ASSERT(memcmp(h.uuid, uuid, 16) == 0);
                got = open_(env, k, id, uuid, gen, &err);
                CU_ASSERT_PTR_NOT_NULL_FATAL(got);
                CU_ASSERT_EQUAL(g_bytes_get_size(got), sizes[i]);
                CU_ASSERT(sizes[i] == 0 || memcmp(g_bytes_get_data(got, NULL), plain, sizes[i]) == 0);
        }
}

static void test_mseal_fresh_each_time(void)
{
        g_autoptr(EVP_PKEY) k = p256();
        g_autoptr(GBytes) a = seal(k, (const guint8 *)state, sizeof(state));
        g_autoptr(GBytes) b = seal(k, (const guint8 *)state, sizeof(state));

        /* A new ephemeral key and IV: two envelopes of one state differ. */
        CU_ASSERT_FALSE(g_bytes_equal(a, b));
}

static void test_mseal_wrong_expectations(void)
{
        g_autoptr(EVP_PKEY) k = p256();
        g_autoptr(GBytes) env = seal(k, (const guint8 *)state, sizeof(state));
        guint8 other_id[VROT_MSEAL_ID_LEN], other_uuid[16];

        memcpy(other_id, id, sizeof(id));
        other_id[15] ^= 1;
        memcpy(other_uuid, uuid, sizeof(uuid));
        other_uuid[0] ^= 0x80;
        {
                g_autoptr(GError) err = NULL;
                CU_ASSERT_PTR_NULL(open_(env, k, other_id, uuid, gen, &err));
                CU_ASSERT_TRUE(g_error_matches(err, VROT_MSEAL_ERROR, VROT_MSEAL_ERROR_MISMATCH));
        }
        {
                g_autoptr(GError) err = NULL;
                CU_ASSERT_PTR_NULL(open_(env, k, id, other_uuid, gen, &err));
                CU_ASSERT_TRUE(g_error_matches(err, VROT_MSEAL_ERROR, VROT_MSEAL_ERROR_MISMATCH));
        }
        {
                g_autoptr(GError) err = NULL;
                CU_ASSERT_PTR_NULL(open_(env, k, id, uuid, gen + 1, &err));
                CU_ASSERT_TRUE(g_error_matches(err, VROT_MSEAL_ERROR, VROT_MSEAL_ERROR_MISMATCH));
        }
}

/* Only the import key's holder opens it: a third host cannot. */
static void test_mseal_other_key_refused(void)
{
        g_autoptr(EVP_PKEY) k = p256(), other = p256();
        g_autoptr(GBytes) env = seal(k, (const guint8 *)state, sizeof(state));
        g_autoptr(GError) err = NULL;

        CU_ASSERT_PTR_NULL(open_(env, other, id, uuid, gen, &err));
        CU_ASSERT_TRUE(g_error_matches(err, VROT_MSEAL_ERROR, VROT_MSEAL_ERROR_TAMPERED));
}

/* Every single-byte change is refused, whatever it hits. */
static void test_mseal_every_byte_flip(void)
{
        g_autoptr(EVP_PKEY) k = p256();
        g_autoptr(GBytes) env = seal(k, (const guint8 *)state, sizeof(state));
        gsize len;
        g_autofree guint8 *copy = g_memdup2(g_bytes_get_data(env, &len), g_bytes_get_size(env));

        for (gsize i = 0; i < len; i++) {
                g_autoptr(GError) err = NULL;
                g_autoptr(GBytes) got = NULL;

                copy[i] ^= 0x01;
                got = vrot_mseal_open(copy, len, id, uuid, gen, vrot_mseal_zgen_software, k, &err);
                CU_ASSERT_PTR_NULL(got);
                CU_ASSERT_PTR_NOT_NULL(err);
                copy[i] ^= 0x01;
        }
}

/* Relabelled for another migration, and told to expect that one: the
 * header is authenticated and the key bound to it. */
static void test_mseal_relabelled_refused(void)
{
        g_autoptr(EVP_PKEY) k = p256();
        g_autoptr(GBytes) env = seal(k, (const guint8 *)state, sizeof(state));
        gsize len;
        g_autofree guint8 *copy = g_memdup2(g_bytes_get_data(env, &len), g_bytes_get_size(env));
        guint8 new_id[VROT_MSEAL_ID_LEN];
        g_autoptr(GError) err = NULL;

        memcpy(new_id, id, sizeof(id));
        new_id[3] ^= 0x55;
        memcpy(copy + 10, new_id, sizeof(new_id));
        CU_ASSERT_PTR_NULL(vrot_mseal_open(copy, len, new_id, uuid, gen, vrot_mseal_zgen_software, k,
                                           &err));
        CU_ASSERT_TRUE(g_error_matches(err, VROT_MSEAL_ERROR, VROT_MSEAL_ERROR_TAMPERED));
}

static void test_mseal_parse_refusals(void)
{
        g_autoptr(EVP_PKEY) k = p256();
        g_autoptr(GBytes) env = seal(k, (const guint8 *)state, sizeof(state));
        gsize len;
        g_autofree guint8 *copy = g_memdup2(g_bytes_get_data(env, &len), g_bytes_get_size(env));
        VrotMsealHeader h;
        static const struct {
                gsize at;
                guint8 value;
        } edits[] = {
                { 0, 'X' },             /* magic */
                { 9, 2 },               /* version */
                { 50, 0x02 },           /* a compressed point */
                { 82, 0x00 },           /* x changed: off the curve (most likely; checked below) */
                { 127, 0xff },          /* ciphertext length */
        };

        CU_ASSERT_FALSE(vrot_mseal_parse(copy, 0, &h, NULL));
        CU_ASSERT_FALSE(vrot_mseal_parse(copy, len - 1, &h, NULL));
        for (gsize i = 0; i < G_N_ELEMENTS(edits); i++) {
                g_autoptr(GError) err = NULL;
                guint8 saved = copy[edits[i].at];

                copy[edits[i].at] = edits[i].value == saved ? (guint8)~saved : edits[i].value;
                CU_ASSERT_FALSE(vrot_mseal_parse(copy, len, &h, &err));
                CU_ASSERT_TRUE(g_error_matches(err, VROT_MSEAL_ERROR, VROT_MSEAL_ERROR_PARSE));
                copy[edits[i].at] = saved;
        }
        CU_ASSERT_TRUE(vrot_mseal_parse(copy, len, &h, NULL));
}

static void test_mseal_import_key_must_be_p256(void)
{
        g_autoptr(EVP_PKEY) p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
        g_autoptr(EVP_PKEY) rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        g_autoptr(GError) e1 = NULL, e2 = NULL;

        CU_ASSERT_PTR_NULL(vrot_mseal_seal(p384, id, uuid, gen, (const guint8 *)state, 4, &e1));
        CU_ASSERT_PTR_NULL(vrot_mseal_seal(rsa, id, uuid, gen, (const guint8 *)state, 4, &e2));
        CU_ASSERT_PTR_NOT_NULL(e1);
        CU_ASSERT_PTR_NOT_NULL(e2);
}

static const UnitCase cases[] = {
        UNIT_CASE(test_mseal_round_trip),
        UNIT_CASE(test_mseal_fresh_each_time),
        UNIT_CASE(test_mseal_wrong_expectations),
        UNIT_CASE(test_mseal_other_key_refused),
        UNIT_CASE(test_mseal_every_byte_flip),
        UNIT_CASE(test_mseal_relabelled_refused),
        UNIT_CASE(test_mseal_parse_refusals),
        UNIT_CASE(test_mseal_import_key_must_be_p256),
};

int main(void)
{
        return UNIT_RUN("mseal", cases);
}
