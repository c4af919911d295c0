/* SPDX-License-Identifier: BSD-3-Clause */
/* The worker's sandbox, exercised in forked children (it is irreversible). */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"
#include "unit.h"

static const VtpmFilter *prebuilt;     /* NULL: each child builds the filter */

/* Runs @fn in a child that has entered the sandbox; returns its wait status. */
static int in_sandbox(void (*fn)(void))
{
        const char *dir = unit_tmpdir();     /* made here, so the parent removes it */
        int status = 0;
        pid_t pid = fork();

        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
                if (vtpm_sandbox_enter(NULL, -1, dir, prebuilt, NULL) < 0)
                        _exit(99);
                fn();
                _exit(0);
        }
        CU_ASSERT_FATAL(waitpid(pid, &status, 0) == pid);
        return status;
}

static void allowed_work(void)
{
        char path[512];
        FILE *f;

        /* What the worker does all day: files in its state dir, memory. */
        snprintf(path, sizeof(path), "%s/sandboxed", unit_tmpdir());
        f = fopen(path, "w");
        if (!f || fputs("x", f) < 0 || fclose(f) != 0 || unlink(path) != 0)
                _exit(1);
        free(malloc(1 << 20));
}

static void forbidden_socket(void)
{
        (void)socket(AF_INET, SOCK_STREAM, 0);
        _exit(0);
}

static void forbidden_exec(void)
{
        execl("/bin/true", "true", (char *)NULL);
        _exit(0);
}

static void test_sandbox_allows_worker_syscalls(void)
{
        int st = in_sandbox(allowed_work);

        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_sandbox_kills_on_forbidden_syscalls(void)
{
        int st_socket = in_sandbox(forbidden_socket);
        int st_exec = in_sandbox(forbidden_exec);

#if defined(__SANITIZE_ADDRESS__)
        /* Sanitizer builds only log violations (see sandbox.c): the child
         * lives on, which proves the filter is in log mode, not absent. */
        CU_ASSERT(WIFEXITED(st_socket) && WEXITSTATUS(st_socket) == 0);
        CU_ASSERT(WIFEXITED(st_exec));
#else
        CU_ASSERT(WIFSIGNALED(st_socket) && WTERMSIG(st_socket) == SIGSYS);
        CU_ASSERT(WIFSIGNALED(st_exec) && WTERMSIG(st_exec) == SIGSYS);
#endif
}

/* vtpm_sandbox_idle() is allowed and in effect.  sched_getscheduler()
 * is not allowed: the policy is field 41 of /proc/self/stat. */
static void goes_idle(void)
{
        char line[1024], *p;
        FILE *f;
        int field = 3, policy = -1;

        vtpm_sandbox_idle();
        f = fopen("/proc/self/stat", "r");
        if (!f || !fgets(line, sizeof(line), f) || !(p = strrchr(line, ')')))
                _exit(1);
        for (p = strtok(p + 1, " "); p && field < 41; p = strtok(NULL, " "))
                field++;
        if (p)
                policy = atoi(p);
        if (policy != SCHED_IDLE)
                _exit(2);
}

/* Any other change of scheduling is not: here, back to normal. */
static void forbidden_sched(void)
{
        struct sched_param none = { .sched_priority = 0 };

        (void)sched_setscheduler(0, SCHED_OTHER, &none);
        _exit(0);
}

static void test_sandbox_idle_only(void)
{
        int st_idle = in_sandbox(goes_idle);
        int st_other = in_sandbox(forbidden_sched);

        CU_ASSERT(WIFEXITED(st_idle) && WEXITSTATUS(st_idle) == 0);
#if defined(__SANITIZE_ADDRESS__)
        CU_ASSERT(WIFEXITED(st_other) && WEXITSTATUS(st_other) == 0);
#else
        CU_ASSERT(WIFSIGNALED(st_other) && WTERMSIG(st_other) == SIGSYS);
#endif
}

static void no_new_privs_set(void)
{
        /* prctl() itself is outside the allow-list: read what the kernel says. */
        char line[128];
        FILE *f = fopen("/proc/self/status", "r");
        int nnp = -1, seccomp = -1;

        while (f && fgets(line, sizeof(line), f)) {
                sscanf(line, "NoNewPrivs: %d", &nnp);
                sscanf(line, "Seccomp: %d", &seccomp);
        }
        if (nnp != 1 || seccomp != 2)           /* 2: filter mode */
                _exit(1);
}

static void test_sandbox_sets_no_new_privs(void)
{
        int st = in_sandbox(no_new_privs_set);

        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_sandbox_no_dumps(void)
{
        int status;
        pid_t pid = fork();

        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
                struct rlimit rl;
                if (vtpm_sandbox_no_dumps(NULL) < 0 || getrlimit(RLIMIT_CORE, &rl) < 0 ||
                    rl.rlim_cur != 0 || rl.rlim_max != 0 || prctl(PR_GET_DUMPABLE) != 0)
                        _exit(1);
                _exit(0);
        }
        waitpid(pid, &status, 0);
        CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The fork server's path: the filter built once, installed by each child;
 * the same allow-list, the same kills. */
static void test_sandbox_prebuilt_filter(void)
{
        VtpmFilter f;
        VrotError err = { 0 };

        CU_ASSERT_EQUAL_FATAL(vtpm_sandbox_filter_build(&f, &err), 0);
        CU_ASSERT(f.len > 10 && f.insns != NULL);
        prebuilt = &f;
        test_sandbox_allows_worker_syscalls();
        test_sandbox_kills_on_forbidden_syscalls();
        test_sandbox_sets_no_new_privs();
        prebuilt = NULL;
        vtpm_sandbox_filter_free(&f);
        CU_ASSERT_PTR_NULL(f.insns);
        CU_ASSERT_EQUAL(f.len, 0);
}

static void test_sandbox_runas_unknown_user(void)
{
        int status;
        pid_t pid = fork();

        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
                VrotError err = { 0 };
                int r = vtpm_sandbox_enter("no-such-user-vrot", -1, "/", NULL, &err);
                _exit(r == -ENOENT && strstr(err.msg, "no user") ? 0 : 1);
        }
        waitpid(pid, &status, 0);
        CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_sandbox_allows_worker_syscalls),
                UNIT_CASE(test_sandbox_kills_on_forbidden_syscalls),
                UNIT_CASE(test_sandbox_idle_only),
                UNIT_CASE(test_sandbox_sets_no_new_privs),
                UNIT_CASE(test_sandbox_no_dumps),
                UNIT_CASE(test_sandbox_runas_unknown_user),
                UNIT_CASE(test_sandbox_prebuilt_filter),
        };
        return UNIT_RUN("sandbox", cases);
}
