/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <string.h>

#include "mkey.h"
#include "unit.h"

/* Every proper prefix of @buf's @n bytes asks for more; one byte more is refused. */
static void check_prefixes(const uint8_t *buf, size_t n)
{
        uint8_t more[VROT_MKEY_REQUEST_MAX + 1];
        VrotMkeyRequest back;

        for (size_t cut = 0; cut < n; cut++)
                CU_ASSERT_EQUAL(vrot_mkey_parse_request(buf, cut, &back), -EAGAIN);
        memcpy(more, buf, n);
        more[n] = 0;
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(more, n + 1, &back), -EINVAL);
}

static void test_mkey_round_trip(void)
{
        VrotMkeyRequest r = { .op = VROT_MKEY_SET, .role = VROT_MKEY_IN }, back;
        VrotMkeyAnswer a = { .result = 0x21, .role = VROT_MKEY_OUT, .exported = 6, .imported = 2 }, got;
        uint8_t buf[VROT_MKEY_REQUEST_MAX], ans[VROT_MKEY_ANSWER_LEN];
        size_t n;

        memset(r.id, 0xab, sizeof(r.id));
        memset(r.key, 0xcd, sizeof(r.key));
        n = vrot_mkey_encode_request(&r, buf);
        CU_ASSERT_EQUAL(n, VROT_MKEY_FIXED_LEN);
        CU_ASSERT_EQUAL_FATAL(vrot_mkey_parse_request(buf, n, &back), 0);
        CU_ASSERT_EQUAL(back.op, VROT_MKEY_SET);
        CU_ASSERT_EQUAL(back.role, VROT_MKEY_IN);
        CU_ASSERT_EQUAL(memcmp(back.id, r.id, sizeof(r.id)), 0);
        CU_ASSERT_EQUAL(memcmp(back.key, r.key, sizeof(r.key)), 0);
        check_prefixes(buf, n);

        r.op = VROT_MKEY_BIND;
        r.role = 0;
        r.evict = VROT_MKEY_EK_RSA;
        n = vrot_mkey_encode_request(&r, buf);
        CU_ASSERT_EQUAL(n, VROT_MKEY_FIXED_LEN + 1);
        CU_ASSERT_EQUAL_FATAL(vrot_mkey_parse_request(buf, n, &back), 0);
        CU_ASSERT_EQUAL(back.op, VROT_MKEY_BIND);
        CU_ASSERT_EQUAL(back.evict, VROT_MKEY_EK_RSA);
        CU_ASSERT_EQUAL(back.role, 0);
        CU_ASSERT_EQUAL(back.n_certs, 0);
        CU_ASSERT_EQUAL(memcmp(back.key, r.key, sizeof(r.key)), 0);
        check_prefixes(buf, n);

        r = (VrotMkeyRequest){ .op = VROT_MKEY_STATUS };
        n = vrot_mkey_encode_request(&r, buf);
        CU_ASSERT_EQUAL(n, 5);
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(buf, n, &back), 0);
        check_prefixes(buf, n);

        memset(a.id, 0x11, sizeof(a.id));
        vrot_mkey_encode_answer(&a, ans);
        CU_ASSERT_EQUAL_FATAL(vrot_mkey_parse_answer(ans, sizeof(ans), &got), 0);
        CU_ASSERT_EQUAL(got.result, 0x21);
        CU_ASSERT_EQUAL(got.role, VROT_MKEY_OUT);
        CU_ASSERT_EQUAL(got.exported, 6);
        CU_ASSERT_EQUAL(got.imported, 2);
        CU_ASSERT_EQUAL(vrot_mkey_parse_answer(ans, sizeof(ans) - 1, &got), -EINVAL);
}

/* BIND with both EK certificates, the largest allowed and the smallest. */
static void test_mkey_bind_certs(void)
{
        static uint8_t rsa[VROT_MKEY_CERT_MAX], buf[VROT_MKEY_REQUEST_MAX];
        static const uint8_t ecc[1] = { 0x30 };
        VrotMkeyRequest r = { .op = VROT_MKEY_BIND, .n_certs = 2 }, back;
        size_t n;

        memset(rsa, 0x5a, sizeof(rsa));
        memset(r.key, 0x77, sizeof(r.key));
        r.certs[0] = (VrotMkeyCert){ VROT_MKEY_EK_ECC, sizeof(ecc), ecc };
        r.certs[1] = (VrotMkeyCert){ VROT_MKEY_EK_RSA, sizeof(rsa), rsa };
        n = vrot_mkey_encode_request(&r, buf);
        CU_ASSERT_EQUAL_FATAL(n, VROT_MKEY_FIXED_LEN + 1 + (3 + 1) + (3 + VROT_MKEY_CERT_MAX));
        CU_ASSERT_EQUAL_FATAL(vrot_mkey_parse_request(buf, n, &back), 0);
        CU_ASSERT_EQUAL(back.n_certs, 2);
        CU_ASSERT_EQUAL(back.certs[0].ek, VROT_MKEY_EK_ECC);
        CU_ASSERT_EQUAL(back.certs[0].len, 1);
        CU_ASSERT_PTR_EQUAL(back.certs[0].der, buf + VROT_MKEY_FIXED_LEN + 1 + 3);
        CU_ASSERT_EQUAL(back.certs[0].der[0], 0x30);
        CU_ASSERT_EQUAL(back.certs[1].ek, VROT_MKEY_EK_RSA);
        CU_ASSERT_EQUAL_FATAL(back.certs[1].len, VROT_MKEY_CERT_MAX);
        CU_ASSERT_EQUAL(memcmp(back.certs[1].der, rsa, sizeof(rsa)), 0);
        CU_ASSERT_EQUAL(memcmp(back.key, r.key, sizeof(r.key)), 0);
        check_prefixes(buf, n);

        r.certs[1].len = VROT_MKEY_CERT_MAX + 1;        /* too long to send */
        CU_ASSERT_EQUAL(vrot_mkey_encode_request(&r, buf), 0);
}

static void test_mkey_refuses(void)
{
        static const struct { const char *b; size_t len; } bad[] = {
                { "VMK2\2", 5 },                 /* magic */
                { "VMX", 3 },
                { "VMK1\5", 5 },                 /* op */
                { "VMK1\0", 5 },
                { "VMK1\1\3", 6 },              /* role, before the rest came */
                { "VMK1\4\4", 6 },              /* BIND: evict, two bits */
                { "VMK1\4\x83", 6 },
                { "VMK1\3x", 6 },                /* CLEAR with a tail */
        };
        uint8_t set[VROT_MKEY_FIXED_LEN] = "VMK1\1\3";
        uint8_t bind[VROT_MKEY_FIXED_LEN + 1 + 2 * 3 + 2] = "VMK1\4";
        const size_t certs = VROT_MKEY_FIXED_LEN;
        VrotMkeyRequest r;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                CU_ASSERT_EQUAL(vrot_mkey_parse_request((const uint8_t *)bad[i].b, bad[i].len, &r),
                                -EINVAL);
        CU_ASSERT_EQUAL(vrot_mkey_parse_request((const uint8_t *)"VM", 2, &r), -EAGAIN);
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(set, sizeof(set), &r), -EINVAL);   /* role 3 */
        set[5] = VROT_MKEY_OUT;
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(set, sizeof(set), &r), 0);

        /* BIND: evict both, no certificate. */
        bind[5] = VROT_MKEY_EK_RSA | VROT_MKEY_EK_ECC;
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(bind, certs + 1, &r), 0);
        CU_ASSERT_EQUAL(r.evict, VROT_MKEY_EK_RSA | VROT_MKEY_EK_ECC);
        CU_ASSERT_EQUAL(r.role, 0);
        /* One certificate of one byte per EK, then what may not be. */
        bind[5] = 0;
        bind[certs] = 2;
        memcpy(bind + certs + 1, "\1\0\1\x30\2\0\1\x30", 8);
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(bind, certs + 9, &r), 0);
        CU_ASSERT_EQUAL(r.n_certs, 2);
        bind[5] = VROT_MKEY_EK_ECC;             /* a certificate of an EK evicted */
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(bind, certs + 9, &r), -EINVAL);
        bind[5] = 0;
        bind[certs + 5] = VROT_MKEY_EK_RSA;     /* twice the RSA EK's */
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(bind, certs + 9, &r), -EINVAL);
        for (uint8_t ek = 0; ek < 8; ek += ek == 0 ? 3 : 1) {   /* 0, 3..7: no EK */
                bind[certs + 5] = ek;
                CU_ASSERT_EQUAL(vrot_mkey_parse_request(bind, certs + 9, &r), -EINVAL);
        }
        bind[certs + 5] = VROT_MKEY_EK_ECC;
        bind[certs + 7] = 0;                    /* empty */
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(bind, certs + 8, &r), -EINVAL);
        bind[certs + 6] = (VROT_MKEY_CERT_MAX + 1) >> 8;        /* too long */
        bind[certs + 7] = (VROT_MKEY_CERT_MAX + 1) & 0xff;
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(bind, certs + 8, &r), -EINVAL);
        bind[certs] = VROT_MKEY_N_CERTS + 1;    /* more than there are EKs */
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(bind, certs + 1, &r), -EINVAL);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_mkey_round_trip),
                UNIT_CASE(test_mkey_bind_certs),
                UNIT_CASE(test_mkey_refuses),
        };

        return UNIT_RUN("mkey", cases);
}
