/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <string.h>

#include "mkey.h"
#include "unit.h"

static void test_mkey_round_trip(void)
{
        VrotMkeyRequest r = { .op = VROT_MKEY_SET, .role = VROT_MKEY_IN }, back;
        VrotMkeyAnswer a = { .result = 0x21, .role = VROT_MKEY_OUT, .exported = 6, .imported = 2 }, got;
        uint8_t buf[VROT_MKEY_REQUEST_MAX], ans[VROT_MKEY_ANSWER_LEN];
        size_t n;

        memset(r.id, 0xab, sizeof(r.id));
        memset(r.key, 0xcd, sizeof(r.key));
        n = vrot_mkey_encode_request(&r, buf);
        CU_ASSERT_EQUAL(n, VROT_MKEY_REQUEST_MAX);
        CU_ASSERT_EQUAL_FATAL(vrot_mkey_parse_request(buf, n, &back), 0);
        CU_ASSERT_EQUAL(back.op, VROT_MKEY_SET);
        CU_ASSERT_EQUAL(back.role, VROT_MKEY_IN);
        CU_ASSERT_EQUAL(memcmp(back.id, r.id, sizeof(r.id)), 0);
        CU_ASSERT_EQUAL(memcmp(back.key, r.key, sizeof(r.key)), 0);
        for (size_t cut = 0; cut < n; cut++)
                CU_ASSERT_EQUAL(vrot_mkey_parse_request(buf, cut, &back), -EINVAL);

        r.op = VROT_MKEY_BIND;
        r.role = 0;
        r.evict = VROT_MKEY_EVICT_RSA;
        n = vrot_mkey_encode_request(&r, buf);
        CU_ASSERT_EQUAL(n, VROT_MKEY_REQUEST_MAX);
        CU_ASSERT_EQUAL_FATAL(vrot_mkey_parse_request(buf, n, &back), 0);
        CU_ASSERT_EQUAL(back.op, VROT_MKEY_BIND);
        CU_ASSERT_EQUAL(back.evict, VROT_MKEY_EVICT_RSA);
        CU_ASSERT_EQUAL(back.role, 0);
        CU_ASSERT_EQUAL(memcmp(back.key, r.key, sizeof(r.key)), 0);

        r = (VrotMkeyRequest){ .op = VROT_MKEY_STATUS };
        n = vrot_mkey_encode_request(&r, buf);
        CU_ASSERT_EQUAL(n, 5);
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(buf, n, &back), 0);
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(buf, n + 1, &back), -EINVAL);

        memset(a.id, 0x11, sizeof(a.id));
        vrot_mkey_encode_answer(&a, ans);
        CU_ASSERT_EQUAL_FATAL(vrot_mkey_parse_answer(ans, sizeof(ans), &got), 0);
        CU_ASSERT_EQUAL(got.result, 0x21);
        CU_ASSERT_EQUAL(got.role, VROT_MKEY_OUT);
        CU_ASSERT_EQUAL(got.exported, 6);
        CU_ASSERT_EQUAL(got.imported, 2);
        CU_ASSERT_EQUAL(vrot_mkey_parse_answer(ans, sizeof(ans) - 1, &got), -EINVAL);
}

static void test_mkey_refuses(void)
{
        static const struct { const char *b; size_t len; } bad[] = {
                { "VMK2\2", 5 },                  /* magic */
                { "VMK1\5", 5 },                  /* op */
                { "VMK1\4", 5 },                  /* BIND, short */
                { "VMK1\0", 5 },
                { "VMK1\1\3", 6 },                /* role, and short */
                { "VMK1\3x", 6 },                 /* CLEAR with a tail */
        };
        uint8_t set[VROT_MKEY_REQUEST_MAX] = "VMK1\1\3";
        VrotMkeyRequest r;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                CU_ASSERT_EQUAL(vrot_mkey_parse_request((const uint8_t *)bad[i].b, bad[i].len, &r),
                                -EINVAL);
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(set, sizeof(set), &r), -EINVAL);   /* role 3 */
        set[5] = VROT_MKEY_OUT;
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(set, sizeof(set), &r), 0);
        set[4] = VROT_MKEY_BIND;        /* BIND: byte 5 is what to evict, two bits */
        set[5] = 4;
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(set, sizeof(set), &r), -EINVAL);
        set[5] = 0x83;
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(set, sizeof(set), &r), -EINVAL);
        set[5] = VROT_MKEY_EVICT_RSA | VROT_MKEY_EVICT_ECC;
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(set, sizeof(set), &r), 0);
        CU_ASSERT_EQUAL(r.evict, VROT_MKEY_EVICT_RSA | VROT_MKEY_EVICT_ECC);
        CU_ASSERT_EQUAL(r.role, 0);
        set[5] = 0;
        CU_ASSERT_EQUAL(vrot_mkey_parse_request(set, sizeof(set), &r), 0);
        CU_ASSERT_EQUAL(r.op, VROT_MKEY_BIND);
        CU_ASSERT_EQUAL(r.evict, 0);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_mkey_round_trip),
                UNIT_CASE(test_mkey_refuses),
        };

        return UNIT_RUN("mkey", cases);
}
