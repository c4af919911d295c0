/* SPDX-License-Identifier: BSD-3-Clause */
/* Worker PID files: a live process is found, an ended or recycled one is not. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pidfile.h"
#include "unit.h"

static gchar *path(const gchar *name)
{
        return g_build_filename(unit_tmpdir(), name, NULL);
}

static void test_pidfile_live_roundtrip(void)
{
        g_autofree gchar *p = path("self.pid");
        g_autoptr(GError) err = NULL;

        CU_ASSERT_TRUE_FATAL(vrot_pidfile_write(p, getpid(), &err));
        CU_ASSERT_EQUAL(vrot_pidfile_live(p), getpid());
}

static void test_pidfile_ended_process(void)
{
        g_autofree gchar *p = path("child.pid");
        pid_t pid = fork();

        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
                pause();
                _exit(0);
        }
        CU_ASSERT_TRUE(vrot_pidfile_write(p, pid, NULL));
        CU_ASSERT_EQUAL(vrot_pidfile_live(p), pid);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        CU_ASSERT_EQUAL(vrot_pidfile_live(p), 0);
}

/* A PID that now names another process (other start time) is not it. */
static void test_pidfile_recycled_or_bad(void)
{
        static const char *const bad[] = {
                "", "\n", "abc 5\n", "1\n", "1 2 3\n", "-1 5\n", "0 5\n", "99999999999 5\n",
                "1 notanumber\n",
        };
        g_autofree gchar *p = path("bad.pid");
        g_autofree gchar *other = NULL;

        other = g_strdup_printf("%d 1\n", (int)getpid());      /* our PID, wrong start time */
        unit_write_file(p, other, strlen(other));
        CU_ASSERT_EQUAL(vrot_pidfile_live(p), 0);
        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                unit_write_file(p, bad[i], strlen(bad[i]));
                CU_ASSERT_EQUAL(vrot_pidfile_live(p), 0);
        }
        CU_ASSERT_EQUAL(vrot_pidfile_live("/nonexistent/x.pid"), 0);
        CU_ASSERT_FALSE(vrot_pidfile_write("/nonexistent/x.pid", getpid(), NULL));
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_pidfile_live_roundtrip),
                UNIT_CASE(test_pidfile_ended_process),
                UNIT_CASE(test_pidfile_recycled_or_bad),
        };

        return UNIT_RUN("pidfile", cases);
}
