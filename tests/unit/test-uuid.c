/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "unit.h"
#include "uuid.h"

static void test_uuid_parse_valid(void)
{
        static const uint8_t want[16] = { 0x6f, 0x1c, 0x2c, 0x1e, 0x7d, 0x3a, 0x4a, 0x53,
                                          0x9d, 0x64, 0x0c, 0x1d, 0x2e, 0x3f, 0x4a, 0x5b };
        uint8_t u[16];
        char s[VROT_UUID_STR_LEN + 1];

        CU_ASSERT_EQUAL(vrot_uuid_parse("6F1C2C1E-7d3a-4a53-9d64-0c1d2e3f4a5b", u, NULL), 0);
        CU_ASSERT(memcmp(u, want, 16) == 0);
        vrot_uuid_format(u, s);
        CU_ASSERT_STRING_EQUAL(s, "6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b");
}

static void test_uuid_parse_invalid(void)
{
        static const char *bad[] = {
                "", "6f1c2c1e", "6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5",
                "6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5bb", "6f1c2c1e 7d3a-4a53-9d64-0c1d2e3f4a5b",
                "6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5g", "6f1c2c1e7d3a-4a53-9d64-0c1d2e3f4a5b-",
        };
        uint8_t u[16], untouched[16];
        VrotError err = { 0 };

        memset(u, 0xaa, 16);
        memset(untouched, 0xaa, 16);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                CU_ASSERT_EQUAL(vrot_uuid_parse(bad[i], u, &err), -EINVAL);
                CU_ASSERT(strstr(err.msg, "invalid UUID") != NULL);
                CU_ASSERT(memcmp(u, untouched, 16) == 0);
        }
        CU_ASSERT_EQUAL(vrot_uuid_parse(NULL, u, NULL), -EINVAL);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_uuid_parse_valid),
                UNIT_CASE(test_uuid_parse_invalid),
        };
        return UNIT_RUN("uuid", cases);
}
