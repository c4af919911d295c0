/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <string.h>

#include "err.h"
#include "unit.h"

static void test_err_set_returns_negative_code(void)
{
        VrotError e = { 0 };

        CU_ASSERT_EQUAL(vrot_err(&e, ENOENT, "no %s", "file"), -ENOENT);
        CU_ASSERT_EQUAL(e.code, ENOENT);
        CU_ASSERT_STRING_EQUAL(e.msg, "no file");
        CU_ASSERT_EQUAL(vrot_err(NULL, EINVAL, "ignored"), -EINVAL);
        CU_ASSERT_EQUAL(vrot_err(&e, 0, "zero code"), -EIO);
}

static void test_err_prefix(void)
{
        VrotError e = { 0 };

        vrot_err(&e, EBADMSG, "tampered");
        CU_ASSERT_EQUAL(vrot_err_prefix(&e, "state file %s: ", "permall"), -EBADMSG);
        CU_ASSERT_STRING_EQUAL(e.msg, "state file permall: tampered");
        CU_ASSERT_EQUAL(vrot_err_prefix(NULL, "x"), -EIO);
}

static void test_err_prefix_truncates(void)
{
        VrotError e = { 0 };
        char big[600];

        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        vrot_err(&e, EIO, "%s", big);
        vrot_err_prefix(&e, "ctx: ");
        CU_ASSERT_EQUAL(strlen(e.msg), sizeof(e.msg) - 1);
        CU_ASSERT(strncmp(e.msg, "ctx: aaa", 8) == 0);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_err_set_returns_negative_code),
                UNIT_CASE(test_err_prefix),
                UNIT_CASE(test_err_prefix_truncates),
        };
        return UNIT_RUN("err", cases);
}
