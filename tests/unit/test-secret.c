/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "secret.h"
#include "unit.h"

/* VmLck of this process in kB. */
static long locked_kb(void)
{
        char line[256];
        long locked = -1;
        FILE *f = fopen("/proc/self/status", "r");

        CU_ASSERT_FATAL(f != NULL);
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmLck: %ld kB", &locked) == 1)
                        break;
        fclose(f);
        return locked;
}

static void test_secret_new_locked_and_zeroed(void)
{
        VrotError err = { 0 };
        VrotSecret *s = vrot_secret_new(32, &err);

        CU_ASSERT_FATAL(s != NULL);
        CU_ASSERT_EQUAL(vrot_secret_len(s), 32);
        for (size_t i = 0; i < 32; i++)
                CU_ASSERT_EQUAL(vrot_secret_data(s)[i], 0);
        /* The page really is locked: VmLck counts it.  (AddressSanitizer
         * turns mlock() into a no-op, so only a plain build can tell.) */
#if !defined(__SANITIZE_ADDRESS__)
        CU_ASSERT(locked_kb() >= 4);
#endif
        vrot_secret_free(s);
        vrot_secret_free(NULL);
}

/* A freed page serves the next secret, wiped and still locked; a child
 * of fork() does not use the parent's (memory locks are not inherited). */
static void test_secret_reused_wiped_and_locked(void)
{
        VrotSecret *a = vrot_secret_new(32, NULL), *b;
        uint8_t *where;
        long before;
        pid_t pid;
        int status;

        CU_ASSERT_FATAL(a != NULL);
        where = vrot_secret_data(a);
        memset(where, 0xa5, 32);
        vrot_secret_free(a);
        before = locked_kb();
        b = vrot_secret_new(32, NULL);
        CU_ASSERT_FATAL(b != NULL);
        CU_ASSERT(vrot_secret_data(b) == where);
        CU_ASSERT_EQUAL(locked_kb(), before);          /* no new page */
        for (size_t i = 0; i < 32; i++)
                CU_ASSERT_EQUAL(vrot_secret_data(b)[i], 0);
        vrot_secret_free(b);

        pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
                VrotSecret *c = vrot_secret_new(32, NULL);
                int bad = !c || vrot_secret_data(c)[0] != 0;
#if !defined(__SANITIZE_ADDRESS__)
                bad = bad || locked_kb() < 4;   /* a child starts with nothing locked */
#endif
                _exit(bad);
        }
        CU_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
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
                UNIT_CASE(test_secret_reused_wiped_and_locked),
                UNIT_CASE(test_secret_read_fd_exact),
                UNIT_CASE(test_secret_read_fd_short),
                UNIT_CASE(test_secret_read_fd_long),
                UNIT_CASE(test_secret_read_fd_bad_fd),
        };
        return UNIT_RUN("secret", cases);
}
