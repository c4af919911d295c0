/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "secret.h"
#include "unit.h"

static void test_secret_new_locked_and_zeroed(void)
{
        VrotError err = { 0 };
        VrotSecret *s = vrot_secret_new(32, &err);
        char line[256];
        FILE *f;
        long locked = -1;

        CU_ASSERT_FATAL(s != NULL);
        CU_ASSERT_EQUAL(vrot_secret_len(s), 32);
        for (size_t i = 0; i < 32; i++)
                CU_ASSERT_EQUAL(vrot_secret_data(s)[i], 0);
        /* The page really is locked: VmLck counts it.  (AddressSanitizer
         * turns mlock() into a no-op, so only a plain build can tell.) */
        f = fopen("/proc/self/status", "r");
        CU_ASSERT_FATAL(f != NULL);
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmLck: %ld kB", &locked) == 1)
                        break;
        fclose(f);
#if !defined(__SANITIZE_ADDRESS__)
        CU_ASSERT(locked >= 4);
#endif
        vrot_secret_free(s);
        vrot_secret_free(NULL);
}

static void read_fd_case(const void *data, size_t len, int want)
{
        VrotError err = { 0 };
        VrotSecret *s;
        int p[2];

        CU_ASSERT_FATAL(pipe(p) == 0);
        CU_ASSERT_FATAL(write(p[1], data, len) == (ssize_t)len);
        close(p[1]);
        s = vrot_secret_read_fd(p[0], 32, &err);
        close(p[0]);
        if (want == 0) {
                CU_ASSERT_FATAL(s != NULL);
                CU_ASSERT(memcmp(vrot_secret_data(s), data, 32) == 0);
        } else {
                CU_ASSERT(s == NULL);
                CU_ASSERT_EQUAL(err.code, want);
                /* The message never carries key bytes. */
                CU_ASSERT(strstr(err.msg, "key fd") != NULL);
        }
        vrot_secret_free(s);
}

static void test_secret_read_fd_exact(void)
{
        uint8_t key[32];

        memset(key, 0x5a, sizeof(key));
        read_fd_case(key, 32, 0);
}

static void test_secret_read_fd_short(void)
{
        uint8_t key[31] = { 1 };

        read_fd_case(key, sizeof(key), EINVAL);
        read_fd_case(key, 0, EINVAL);
}

static void test_secret_read_fd_long(void)
{
        uint8_t key[33] = { 2 };

        read_fd_case(key, sizeof(key), EINVAL);
}

static void test_secret_read_fd_bad_fd(void)
{
        VrotError err = { 0 };

        CU_ASSERT(vrot_secret_read_fd(987, 32, &err) == NULL);
        CU_ASSERT_EQUAL(err.code, EBADF);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_secret_new_locked_and_zeroed),
                UNIT_CASE(test_secret_read_fd_exact),
                UNIT_CASE(test_secret_read_fd_short),
                UNIT_CASE(test_secret_read_fd_long),
                UNIT_CASE(test_secret_read_fd_bad_fd),
        };
        return UNIT_RUN("secret", cases);
}
