/* SPDX-License-Identifier: BSD-3-Clause */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

static char tmpdir[256];

static void remove_tmpdir(void)
{
        char cmd[300];

        if (!tmpdir[0])
                return;
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", tmpdir);
}

const char *unit_tmpdir(void)
{
        if (!tmpdir[0]) {
                snprintf(tmpdir, sizeof(tmpdir), "/tmp/vrot-unit.XXXXXX");
                if (!mkdtemp(tmpdir)) {
                        perror("mkdtemp");
                        exit(1);
                }
                atexit(remove_tmpdir);
        }
        return tmpdir;
}

void unit_write_file(const char *path, const void *buf, size_t len)
{
        FILE *f = fopen(path, "wb");

        CU_ASSERT_FATAL(f != NULL);
        CU_ASSERT_FATAL(fwrite(buf, 1, len, f) == len);
        CU_ASSERT_FATAL(fclose(f) == 0);
}

size_t unit_read_file(const char *path, void *buf, size_t max)
{
        FILE *f = fopen(path, "rb");
        size_t n;

        CU_ASSERT_FATAL(f != NULL);
        n = fread(buf, 1, max, f);
        fclose(f);
        return n;
}

int unit_run(const char *suite_name, const UnitCase *cases, size_t n)
{
        CU_pSuite suite;
        unsigned failed;

        if (CU_initialize_registry() != CUE_SUCCESS)
                return 1;
        suite = CU_add_suite(suite_name, NULL, NULL);
        for (size_t i = 0; suite && i < n; i++)
                CU_add_test(suite, cases[i].name, cases[i].fn);
        CU_basic_set_mode(CU_BRM_VERBOSE);
        CU_basic_run_tests();
        failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
        CU_cleanup_registry();
        return failed ? 1 : 0;
}
