/* SPDX-License-Identifier: BSD-3-Clause */
/* vrotd's fork-server client against the real `vrot-vtpm --fork-server`. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "forkclient.h"
#include "unit.h"

static VrotForkServer *fs;

static gchar *path(const gchar *name)
{
        return g_build_filename(unit_tmpdir(), name, NULL);
}

static int key_pipe(guint8 byte)
{
        guint8 key[32];
        int p[2];

        memset(key, byte, sizeof(key));
        CU_ASSERT_FATAL(pipe(p) == 0);
        CU_ASSERT_FATAL(write(p[1], key, sizeof(key)) == sizeof(key));
        close(p[1]);
        return p[0];
}

typedef struct Ended {
        gboolean done, signaled;
        gint code;
} Ended;

static void worker_ended(VrotWorker *w, gboolean signaled, gint code, gpointer data)
{
        Ended *e = data;

        (void)w;
        e->done = TRUE;
        e->signaled = signaled;
        e->code = code;
}

static void wait_ended(Ended *e)
{
        gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

        while (!e->done && g_get_monotonic_time() < deadline)
                g_main_context_iteration(NULL, TRUE);
        CU_ASSERT_TRUE(e->done);
}

static VrotWorkerSpec spec_for(const gchar *name, gchar **owned)
{
        VrotWorkerSpec s = { .uuid = "6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b" };

        owned[0] = g_strdup_printf("%s/%s.state", unit_tmpdir(), name);
        owned[1] = g_strdup_printf("%s/%s.ctrl", unit_tmpdir(), name);
        owned[2] = g_strdup_printf("%s/%s.log", unit_tmpdir(), name);
        g_mkdir_with_parents(owned[0], 0700);
        s.state_dir = owned[0];
        s.ctrl_path = owned[1];
        s.log_path = owned[2];
        return s;
}

static void test_forkclient_spawn_listening_and_exit(void)
{
        gchar *owned[3];
        VrotWorkerSpec s = spec_for("a", owned);
        g_autoptr(GError) err = NULL;
        Ended e = { 0 };
        int key = key_pipe(1);
        VrotWorker *w = vrot_fork_server_spawn(fs, &s, key, 10000, worker_ended, &e, &err);

        close(key);
        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        /* Returned only once the control socket listens. */
        CU_ASSERT_EQUAL(access(s.ctrl_path, F_OK), 0);
        CU_ASSERT(vrot_worker_pid(w) > 0 && vrot_worker_pid(w) != vrot_fork_server_pid(fs));
        kill(vrot_worker_pid(w), SIGTERM);
        wait_ended(&e);
        CU_ASSERT_FALSE(e.signaled);
        CU_ASSERT_EQUAL(e.code, 0);
        vrot_worker_free(w);
        for (int i = 0; i < 3; i++)
                g_free(owned[i]);
}

static void test_forkclient_refused_state_reported(void)
{
        gchar *owned[3];
        VrotWorkerSpec s = spec_for("b", owned);

        s.not_need_init = TRUE;         /* manufacture, so there is state to refuse */
        g_autoptr(GError) err = NULL;
        Ended e = { 0 };
        int key = key_pipe(2);
        VrotWorker *w = vrot_fork_server_spawn(fs, &s, key, 10000, worker_ended, &e, &err);

        close(key);
        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        kill(vrot_worker_pid(w), SIGTERM);
        wait_ended(&e);
        vrot_worker_free(w);
        /* Same state, another key: the worker refuses and never listens. */
        key = key_pipe(3);
        w = vrot_fork_server_spawn(fs, &s, key, 10000, worker_ended, &e, &err);
        close(key);
        CU_ASSERT_PTR_NULL(w);
        CU_ASSERT(g_error_matches(err, VROT_FORK_ERROR, VROT_FORK_ERROR_WORKER_EXITED));
        for (int i = 0; i < 3; i++)
                g_free(owned[i]);
}

static void test_forkclient_bad_spec_refused(void)
{
        VrotWorkerSpec s = { .uuid = "not-a-uuid", .state_dir = "/nonexistent",
                             .ctrl_path = "/nonexistent/ctrl", .log_path = "/dev/null" };
        g_autoptr(GError) err = NULL;
        int key = key_pipe(4);

        CU_ASSERT_PTR_NULL(vrot_fork_server_spawn(fs, &s, key, 3000, NULL, NULL, &err));
        CU_ASSERT_PTR_NOT_NULL(err);
        close(key);
        g_clear_error(&err);
        s.log_path = "/nonexistent/log";
        CU_ASSERT_PTR_NULL(vrot_fork_server_spawn(fs, &s, -1, 3000, NULL, NULL, &err));
        CU_ASSERT(err && strstr(err->message, "/nonexistent/log"));
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_forkclient_spawn_listening_and_exit),
                UNIT_CASE(test_forkclient_refused_state_reported),
                UNIT_CASE(test_forkclient_bad_spec_refused),
        };
        const gchar *vtpm = g_getenv("VROT_VTPM");
        g_autofree gchar *sock = path("forkd.sock"), *log = path("forkd.log");
        g_autoptr(GError) err = NULL;
        int ret;

        if (!vtpm) {
                fprintf(stderr, "VROT_VTPM must name the vrot-vtpm binary (meson sets it)\n");
                return 1;
        }
        /* Workers whose server goes away are re-parented to us, as to vrotd. */
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        fs = vrot_fork_server_start(vtpm, sock, log, &err);
        if (!fs) {
                fprintf(stderr, "%s\n", err->message);
                return 1;
        }
        ret = UNIT_RUN("forkclient", cases);
        vrot_fork_server_free(fs);
        return ret;
}
