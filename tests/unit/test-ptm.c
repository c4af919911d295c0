/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "bytes.h"
#include "ptm.h"
#include "unit.h"

typedef struct FrameCase {
        const char *what;
        uint8_t bytes[24];
        size_t len;
        int ret;
        size_t need;
} FrameCase;

static void test_ptm_frame_table(void)
{
        static const FrameCase cases[] = {
                { "nothing yet", { 0 }, 0, 0, 4 },
                { "half a code", { 0, 0 }, 2, 0, 4 },
                { "unknown", { 0, 0, 0, 0x99 }, 4, 0, 4 },
                { "zero code", { 0, 0, 0, 0 }, 4, 0, 4 },
                { "capability", { 0, 0, 0, 1 }, 4, 0, 4 },
                { "init", { 0, 0, 0, 2 }, 4, 0, 8 },
                { "locality", { 0, 0, 0, 5 }, 4, 0, 5 },
                { "hash data, no length yet", { 0, 0, 0, 7, 0, 0 }, 6, 0, 8 },
                { "hash data, 16 bytes", { 0, 0, 0, 7, 0, 0, 0, 16 }, 8, 0, 24 },
                { "hash data, too long", { 0, 0, 0, 7, 0, 0x10, 0, 1 }, 8, -EMSGSIZE, 0 },
                { "get stateblob", { 0, 0, 0, 0x0c }, 4, 0, 16 },
                { "set stateblob, 256", { 0, 0, 0, 0x0d, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0 }, 16, 0, 272 },
                { "set stateblob, huge", { 0, 0, 0, 0x0d, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff }, 16,
                  -EMSGSIZE, 0 },
                { "get info: swtpm does not wait", { 0, 0, 0, 0x12 }, 4, 0, 4 },
                { "set buffersize: likewise", { 0, 0, 0, 0x11 }, 4, 0, 4 },
                { "lock storage", { 0, 0, 0, 0x13 }, 4, 0, 8 },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                size_t need = 12345;
                int r = vrot_ptm_frame(cases[i].bytes, cases[i].len, &need, NULL);
                CU_ASSERT_EQUAL(r, cases[i].ret);
                if (r == 0 && need != cases[i].need)
                        CU_FAIL(cases[i].what);
        }
}

typedef struct ParseCase {
        const char *what;
        uint8_t bytes[24];
        size_t len;
        int ret;
} ParseCase;

static void test_ptm_parse_lengths(void)
{
        static const ParseCase cases[] = {
                { "no code", { 0, 0 }, 2, -EINVAL },
                { "unknown is fine", { 0, 0, 0, 0x99, 1, 2 }, 6, 0 },
                { "init exact", { 0, 0, 0, 2, 0, 0, 0, 1 }, 8, 0 },
                { "init short", { 0, 0, 0, 2, 0, 0 }, 6, -EINVAL },
                { "init long", { 0, 0, 0, 2, 0, 0, 0, 1, 0 }, 9, -EINVAL },
                { "stop exact", { 0, 0, 0, 0x0e }, 4, 0 },
                { "stop trailing", { 0, 0, 0, 0x0e, 0 }, 5, -EINVAL },
                { "capability trailing ok", { 0, 0, 0, 1, 7 }, 5, 0 },
                { "locality trailing ok", { 0, 0, 0, 5, 3, 9, 9 }, 7, 0 },
                { "locality short", { 0, 0, 0, 5 }, 4, -EINVAL },
                { "hash length lies", { 0, 0, 0, 7, 0, 0, 0, 9, 1, 2 }, 10, -EINVAL },
                { "hash more than announced", { 0, 0, 0, 7, 0, 0, 0, 1, 1, 2 }, 10, -EINVAL },
                { "set state more than announced", { 0, 0, 0, 0x0d, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 7, 8 },
                  18, -EINVAL },
                { "set state length lies", { 0, 0, 0, 0x0d, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5, 1 }, 17,
                  -EINVAL },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                VrotPtmRequest req;
                VrotError err = { 0 };
                int r = vrot_ptm_parse(cases[i].bytes, cases[i].len, &req, &err);
                if (r != cases[i].ret)
                        CU_FAIL(cases[i].what);
                if (r < 0)
                        CU_ASSERT(err.msg[0] != '\0');
        }
}

static void test_ptm_parse_fields(void)
{
        uint8_t b[32] = { 0 };
        VrotPtmRequest r;

        vrot_put_be32(b, VROT_PTM_GET_STATEBLOB);
        vrot_put_be32(b + 4, VROT_PTM_STATE_DECRYPTED);
        vrot_put_be32(b + 8, VROT_PTM_BLOB_VOLATILE);
        vrot_put_be32(b + 12, 100);
        CU_ASSERT_EQUAL_FATAL(vrot_ptm_parse(b, 16, &r, NULL), 0);
        CU_ASSERT_EQUAL(r.u.get_state.flags, 1);
        CU_ASSERT_EQUAL(r.u.get_state.type, 2);
        CU_ASSERT_EQUAL(r.u.get_state.offset, 100);

        vrot_put_be32(b, VROT_PTM_GET_INFO);
        vrot_put_be64(b + 4, 0x0000000100000003ull);
        vrot_put_be32(b + 12, 7);
        CU_ASSERT_EQUAL_FATAL(vrot_ptm_parse(b, 20, &r, NULL), 0);
        CU_ASSERT_EQUAL(r.u.info.flags, 0x0000000100000003ull);
        CU_ASSERT_EQUAL(r.u.info.offset, 7);

        vrot_put_be32(b, VROT_PTM_SET_STATEBLOB);
        vrot_put_be32(b + 4, VROT_PTM_STATE_ENCRYPTED);
        vrot_put_be32(b + 8, VROT_PTM_BLOB_PERMANENT);
        vrot_put_be32(b + 12, 3);
        memcpy(b + 16, "abc", 3);
        CU_ASSERT_EQUAL_FATAL(vrot_ptm_parse(b, 19, &r, NULL), 0);
        CU_ASSERT_EQUAL(r.u.set_state.len, 3);
        CU_ASSERT(memcmp(r.u.set_state.data, "abc", 3) == 0);

        vrot_put_be32(b, VROT_PTM_HASH_DATA);
        vrot_put_be32(b + 4, 2);
        memcpy(b + 8, "hi", 2);
        CU_ASSERT_EQUAL_FATAL(vrot_ptm_parse(b, 10, &r, NULL), 0);
        CU_ASSERT_EQUAL(r.u.hash.len, 2);
        CU_ASSERT(memcmp(r.u.hash.data, "hi", 2) == 0);
}

static void test_ptm_cmd_name(void)
{
        CU_ASSERT_STRING_EQUAL(vrot_ptm_cmd_name(VROT_PTM_SET_DATAFD), "SET_DATAFD");
        CU_ASSERT_STRING_EQUAL(vrot_ptm_cmd_name(0), "UNKNOWN");
        CU_ASSERT_STRING_EQUAL(vrot_ptm_cmd_name(0xffffffff), "UNKNOWN");
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_ptm_frame_table),
                UNIT_CASE(test_ptm_parse_lengths),
                UNIT_CASE(test_ptm_parse_fields),
                UNIT_CASE(test_ptm_cmd_name),
        };
        return UNIT_RUN("ptm", cases);
}
