/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "unit.h"

#define U "6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b"

typedef struct ArgsCase {
        const char *what;
        const char *argv[16];
        int want;
} ArgsCase;

static int parse(const char *const *argv, VtpmArgs *a)
{
        char *copy[32];
        int argc = 0;
        int r;

        while (argv[argc]) {
                copy[argc] = (char *)argv[argc];
                argc++;
        }
        copy[argc] = NULL;
        /* getopt prints to stderr for bad options: keep the test output clean. */
        FILE *saved = stderr;
        stderr = fopen("/dev/null", "w");
        r = vtpm_args_parse(argc, copy, a);
        fclose(stderr);
        stderr = saved;
        return r;
}

static void test_args_table(void)
{
        static const ArgsCase cases[] = {
                { "minimal with key", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "3" }, 0 },
                { "insecure", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--insecure-plaintext" }, 0 },
                { "no key", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c" }, -1 },
                { "both keys", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "3",
                                 "--insecure-plaintext" }, -1 },
                { "stdio key fd", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "1" }, -1 },
                { "key fd junk", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "3x" }, -1 },
                { "no uuid", { "x", "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "3" }, -1 },
                { "bad mode", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "3",
                                "--ctrl-mode", "0800" }, -1 },
                { "bad flag", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "3",
                                "--flags", "not-need-init,bogus" }, -1 },
                { "startup without init", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c",
                                            "--key-fd", "3", "--flags", "startup-clear" }, -1 },
                { "negative generation", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c",
                                           "--key-fd", "3", "--min-generation", "-1" }, -1 },
                { "stray argument", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "3",
                                      "extra" }, -1 },
                { "ready fd", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "3",
                                "--ready-fd", "4" }, 0 },
                { "ready fd is key fd", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "3",
                                          "--ready-fd", "3" }, -1 },
                { "stdio ready fd", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "3",
                                      "--ready-fd", "2" }, -1 },
                { "ready fd junk", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "3",
                                     "--ready-fd", "" }, -1 },
                { "fork server with ready fd", { "x", "--fork-server", "/f", "--ready-fd", "4" }, -1 },
                { "defer writes", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "3",
                                    "--flags", "not-need-init,startup-clear,defer-writes" }, 0 },
                { "end with starter", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--key-fd", "3",
                                        "--ready-fd", "4", "--flags", "defer-writes,end-with-starter" }, 0 },
                { "end with starter, no ready fd", { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c",
                                                     "--key-fd", "3", "--flags", "end-with-starter" }, -1 },
                { "fork server", { "x", "--fork-server", "/f" }, 0 },
                { "fork server with instance", { "x", "--fork-server", "/f", "--uuid", U }, -1 },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                VtpmArgs a;
                if (parse(cases[i].argv, &a) != cases[i].want) {
                        fprintf(stderr, "case '%s'\n", cases[i].what);
                        CU_FAIL(cases[i].what);
                }
        }
}

static void test_args_values(void)
{
        static const char *argv[] = { "x", "--uuid", U, "--state-dir", "/s", "--ctrl", "/c", "--server", "/d",
                                      "--key-fd", "7", "--ctrl-mode", "0660", "--flags",
                                      "not-need-init,startup-clear", "--min-generation", "42",
                                      "--log-level", "debug", NULL };
        VtpmArgs a;

        CU_ASSERT_EQUAL_FATAL(parse(argv, &a), 0);
        CU_ASSERT_STRING_EQUAL(a.uuid, U);
        CU_ASSERT_STRING_EQUAL(a.server, "/d");
        CU_ASSERT_EQUAL(a.key_fd, 7);
        CU_ASSERT_EQUAL(a.ctrl_mode, 0660);
        CU_ASSERT_EQUAL(a.server_mode, 0600);
        CU_ASSERT_TRUE(a.not_need_init && a.startup_clear);
        CU_ASSERT_FALSE(a.defer_writes || a.end_with_starter);
        CU_ASSERT_EQUAL(a.min_generation, 42);
        CU_ASSERT_EQUAL(a.log_level, VROT_LOG_DEBUG);
        /* A second parse starts from scratch (the fork server parses twice). */
        static const char *again[] = { "x", "--fork-server", "/f", NULL };
        CU_ASSERT_EQUAL(parse(again, &a), 0);
        CU_ASSERT_PTR_NULL(a.uuid);
        CU_ASSERT_STRING_EQUAL(a.fork_server, "/f");
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_args_table),
                UNIT_CASE(test_args_values),
        };
        return UNIT_RUN("args", cases);
}
