/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdlib.h>
#include <string.h>

#include "seal.h"
#include "unit.h"

static const uint8_t key_a[32] = { 0xa1, 0xa2, 0xa3 };
static const uint8_t key_b[32] = { 0xb1, 0xb2, 0xb3 };

static VrotSealer sealer(const uint8_t *key, uint8_t uuid_byte)
{
        VrotSealer s = { .key = key };
        memset(s.uuid, uuid_byte, sizeof(s.uuid));
        return s;
}

static void seal_sample(const VrotSealer *s, uint32_t type, uint64_t gen,
                        uint8_t **blob, size_t *len)
{
        static const uint8_t plain[] = "TPM state bytes";

        CU_ASSERT_FATAL(vrot_seal(s, type, gen, plain, sizeof(plain), blob, len, NULL) == 0);
        CU_ASSERT_EQUAL(*len, sizeof(plain) + VROT_SEAL_OVERHEAD);
}

static void test_seal_round_trip(void)
{
        VrotSealer s = sealer(key_a, 1);
        uint8_t *blob, *plain;
        size_t len, plen;
        uint64_t gen = 0;

        seal_sample(&s, VROT_BLOB_PERMANENT, 77, &blob, &len);
        /* The payload is not in the clear. */
        CU_ASSERT(memmem(blob, len, "TPM state", 9) == NULL);
        CU_ASSERT_EQUAL(vrot_seal_open(&s, VROT_BLOB_PERMANENT, blob, len, &plain, &plen, &gen, NULL), 0);
        CU_ASSERT_EQUAL(gen, 77);
        CU_ASSERT_STRING_EQUAL((char *)plain, "TPM state bytes");
        free(plain);
        free(blob);
}

static void test_seal_empty_payload(void)
{
        VrotSealer s = sealer(key_a, 1);
        uint8_t *blob, *plain;
        size_t len, plen = 99;

        CU_ASSERT_EQUAL(vrot_seal(&s, VROT_BLOB_VOLATILE, 1, NULL, 0, &blob, &len, NULL), 0);
        CU_ASSERT_EQUAL(vrot_seal_open(&s, VROT_BLOB_VOLATILE, blob, len, &plain, &plen, NULL, NULL), 0);
        CU_ASSERT_EQUAL(plen, 0);
        free(plain);
        free(blob);
}

/* Every single-byte change anywhere in the blob is caught. */
static void test_seal_open_every_byte_flip(void)
{
        VrotSealer s = sealer(key_a, 1);
        uint8_t *blob, *plain = NULL;
        size_t len, plen;

        seal_sample(&s, VROT_BLOB_PERMANENT, 5, &blob, &len);
        for (size_t i = 0; i < len; i++) {
                VrotError err = { 0 };
                blob[i] ^= 0x01;
                CU_ASSERT(vrot_seal_open(&s, VROT_BLOB_PERMANENT, blob, len, &plain, &plen, NULL, &err) < 0);
                CU_ASSERT(err.msg[0] != '\0');
                blob[i] ^= 0x01;
        }
        CU_ASSERT(plain == NULL);
        free(blob);
}

typedef struct OpenCase {
        const char *what;
        const uint8_t *key;
        uint8_t uuid;
        uint32_t type;
        int want;
        const char *msg;
} OpenCase;

static void test_seal_open_refusals(void)
{
        static const OpenCase cases[] = {
                { "other key", key_b, 1, VROT_BLOB_PERMANENT, -EBADMSG, "authentication failed" },
                { "other instance", key_a, 2, VROT_BLOB_PERMANENT, -EXDEV, "another instance" },
                { "other type", key_a, 1, VROT_BLOB_VOLATILE, -EMEDIUMTYPE, "expected volatilestate" },
                { "insecure reader", NULL, 1, VROT_BLOB_PERMANENT, -EKEYREJECTED, "sealed with a key" },
        };
        VrotSealer s = sealer(key_a, 1);
        uint8_t *blob, *plain = NULL;
        size_t len, plen;

        seal_sample(&s, VROT_BLOB_PERMANENT, 5, &blob, &len);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                VrotSealer r = sealer(cases[i].key, cases[i].uuid);
                VrotError err = { 0 };
                CU_ASSERT_EQUAL(vrot_seal_open(&r, cases[i].type, blob, len, &plain, &plen, NULL, &err),
                                cases[i].want);
                CU_ASSERT(strstr(err.msg, cases[i].msg) != NULL);
        }
        CU_ASSERT(plain == NULL);
        free(blob);
}

static void test_seal_insecure_not_accepted_under_key(void)
{
        VrotSealer insecure = sealer(NULL, 1), real = sealer(key_a, 1);
        uint8_t *blob, *plain = NULL;
        size_t len, plen;
        VrotError err = { 0 };

        seal_sample(&insecure, VROT_BLOB_PERMANENT, 1, &blob, &len);
        CU_ASSERT_EQUAL(vrot_seal_open(&insecure, VROT_BLOB_PERMANENT, blob, len, &plain, &plen, NULL, NULL), 0);
        free(plain);
        plain = NULL;
        CU_ASSERT_EQUAL(vrot_seal_open(&real, VROT_BLOB_PERMANENT, blob, len, &plain, &plen, NULL, &err),
                        -EKEYREJECTED);
        CU_ASSERT(plain == NULL);
        free(blob);
}

static void test_seal_parse_header_malformed(void)
{
        VrotSealer s = sealer(key_a, 1);
        VrotSealHeader h;
        uint8_t *blob;
        size_t len;
        VrotError err = { 0 };

        seal_sample(&s, VROT_BLOB_SAVESTATE, 9, &blob, &len);
        CU_ASSERT_EQUAL(vrot_seal_parse_header(blob, len, &h, NULL), 0);
        CU_ASSERT_EQUAL(h.type, VROT_BLOB_SAVESTATE);
        CU_ASSERT_EQUAL(h.generation, 9);

        CU_ASSERT_EQUAL(vrot_seal_parse_header(blob, 0, &h, &err), -EINVAL);
        CU_ASSERT(strstr(err.msg, "empty") != NULL);
        CU_ASSERT_EQUAL(vrot_seal_parse_header(blob, VROT_SEAL_OVERHEAD - 1, &h, &err), -EINVAL);
        CU_ASSERT(strstr(err.msg, "truncated") != NULL);
        CU_ASSERT_EQUAL(vrot_seal_parse_header(blob, len - 1, &h, &err), -EINVAL);
        CU_ASSERT(strstr(err.msg, "length mismatch") != NULL);
        blob[0] = 'X';
        CU_ASSERT_EQUAL(vrot_seal_parse_header(blob, len, &h, &err), -EINVAL);
        CU_ASSERT(strstr(err.msg, "magic") != NULL);
        blob[0] = 'V';
        blob[5] = 2;
        CU_ASSERT_EQUAL(vrot_seal_parse_header(blob, len, &h, &err), -EPROTO);
        blob[5] = 1;
        blob[7] = 0x80;
        CU_ASSERT_EQUAL(vrot_seal_parse_header(blob, len, &h, &err), -EPROTO);
        blob[7] = 0;
        blob[11] = 9;
        CU_ASSERT_EQUAL(vrot_seal_parse_header(blob, len, &h, &err), -EINVAL);
        CU_ASSERT(strstr(err.msg, "blob type") != NULL);
        free(blob);
}

static void test_seal_iv_is_fresh(void)
{
        VrotSealer s = sealer(key_a, 1);
        uint8_t *a, *b;
        size_t la, lb;

        seal_sample(&s, VROT_BLOB_PERMANENT, 1, &a, &la);
        seal_sample(&s, VROT_BLOB_PERMANENT, 1, &b, &lb);
        CU_ASSERT(memcmp(a + 40, b + 40, 12) != 0);
        free(a);
        free(b);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_seal_round_trip),
                UNIT_CASE(test_seal_empty_payload),
                UNIT_CASE(test_seal_open_every_byte_flip),
                UNIT_CASE(test_seal_open_refusals),
                UNIT_CASE(test_seal_insecure_not_accepted_under_key),
                UNIT_CASE(test_seal_parse_header_malformed),
                UNIT_CASE(test_seal_iv_is_fresh),
        };
        return UNIT_RUN("seal", cases);
}
