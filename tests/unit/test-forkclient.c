/* SPDX-License-Identifier: BSD-3-Clause */
/* vrotd's fork-server client against the real `vrot-vtpm --fork-server`. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib-unix.h>

#include "forkclient.h"
#include "unit.h"

static VrotForkServer *fs;
static const gchar *vtpm_path;
static gchar *log_path;

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

static void free_owned(gchar **owned)
{
        for (int i = 0; i < 3; i++)
                g_free(owned[i]);
}

/* Spawns with a fresh key pipe; the worker, or NULL with @err set. */
static VrotWorker *spawn_with_key(const VrotWorkerSpec *s, guint8 byte, GError **err)
{
        int key = key_pipe(byte);
        VrotWorker *w = vrot_fork_server_spawn(fs, s, key, err);

        close(key);
        return w;
}

static void test_forkclient_wait_ready_then_exit(void)
{
        gchar *owned[3];
        VrotWorkerSpec s = spec_for("a", owned);
        g_autoptr(GError) err = NULL;
        Ended e = { 0 };
        VrotWorker *w = spawn_with_key(&s, 1, &err);

        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        CU_ASSERT(vrot_worker_pid(w) > 0 && vrot_worker_pid(w) != vrot_fork_server_pid(fs));
        CU_ASSERT_TRUE_FATAL(vrot_worker_wait_ready(w, 10000, &err));
        /* "ready" means listening: the control socket accepts right now. */
        CU_ASSERT_EQUAL(access(s.ctrl_path, F_OK), 0);
        vrot_worker_watch(w, 0, NULL, worker_ended, &e);
        kill(vrot_worker_pid(w), SIGTERM);
        wait_ended(&e);
        CU_ASSERT_FALSE(e.signaled);
        CU_ASSERT_EQUAL(e.code, 0);
        vrot_worker_free(w);
        free_owned(owned);
}

typedef struct Ready {
        gboolean done;
        GError *error;
} Ready;

static void worker_ready(VrotWorker *w, const GError *error, gpointer data)
{
        Ready *r = data;

        (void)w;
        r->done = TRUE;
        r->error = error ? g_error_copy(error) : NULL;
}

static void wait_ready_async(Ready *r)
{
        gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

        while (!r->done && g_get_monotonic_time() < deadline)
                g_main_context_iteration(NULL, TRUE);
        CU_ASSERT_TRUE(r->done);
}

/* Many starts under way at once, each reported in the main loop. */
static void test_forkclient_watch_overlapping_starts(void)
{
        enum { N = 6 };
        gchar *owned[N][3];
        VrotWorker *w[N];
        Ready ready[N] = { 0 };

        for (int i = 0; i < N; i++) {
                g_autofree gchar *name = g_strdup_printf("many%d", i);
                g_autoptr(GError) err = NULL;
                VrotWorkerSpec s = spec_for(name, owned[i]);
                w[i] = spawn_with_key(&s, 10, &err);
                CU_ASSERT_PTR_NOT_NULL_FATAL(w[i]);
                vrot_worker_watch(w[i], 10000, worker_ready, NULL, &ready[i]);
        }
        for (int i = 0; i < N; i++) {
                wait_ready_async(&ready[i]);
                if (ready[i].error)
                        fprintf(stderr, "worker %d: %s\n", i, ready[i].error->message);
                CU_ASSERT_PTR_NULL(ready[i].error);
                g_clear_error(&ready[i].error);
                CU_ASSERT_EQUAL(access(owned[i][1], F_OK), 0);
        }
        for (int i = 0; i < N; i++)
                kill(vrot_worker_pid(w[i]), SIGTERM);
        for (int i = 0; i < N; i++) {
                gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
                while (kill(vrot_worker_pid(w[i]), 0) == 0 && g_get_monotonic_time() < deadline)
                        g_main_context_iteration(NULL, FALSE), g_usleep(1000);
                CU_ASSERT_NOT_EQUAL(kill(vrot_worker_pid(w[i]), 0), 0);
                vrot_worker_free(w[i]);
                free_owned(owned[i]);
        }
}

/* Readiness that came before anyone watched is still reported, from the
 * main loop (it may come with the server's "ok PID"). */
static void test_forkclient_ready_before_watch(void)
{
        gchar *owned[3];
        VrotWorkerSpec s = spec_for("early", owned);
        g_autoptr(GError) err = NULL;
        Ready r = { 0 };
        VrotWorker *w = spawn_with_key(&s, 7, &err);

        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        CU_ASSERT_TRUE_FATAL(vrot_worker_wait_ready(w, 10000, &err));
        vrot_worker_watch(w, 10000, worker_ready, NULL, &r);
        CU_ASSERT_FALSE(r.done);                /* not from inside the call */
        wait_ready_async(&r);
        CU_ASSERT_PTR_NULL(r.error);
        kill(vrot_worker_pid(w), SIGTERM);
        vrot_worker_free(w);
        free_owned(owned);
}

/* Asking for the PID of a watched, starting worker reads its news off the
 * connection ("ok PID", and "ready" if it came too): that must still reach
 * the callback.  (A second instance.start of a starting instance did this
 * and left the first one unanswered.) */
static void test_forkclient_pid_keeps_news(void)
{
        gchar *owned[3];
        VrotWorkerSpec s = spec_for("pid", owned);
        g_autoptr(GError) err = NULL;
        Ready r = { 0 };
        VrotWorker *w = spawn_with_key(&s, 8, &err);

        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        vrot_worker_watch(w, 10000, worker_ready, NULL, &r);
        /* Let both lines arrive before anyone reads them. */
        for (int i = 0; i < 2000 && access(s.ctrl_path, F_OK) != 0; i++)
                g_usleep(1000);
        g_usleep(50 * 1000);
        CU_ASSERT(vrot_worker_pid(w) > 0);
        wait_ready_async(&r);
        CU_ASSERT_PTR_NULL(r.error);
        kill(vrot_worker_pid(w), SIGTERM);
        vrot_worker_free(w);
        free_owned(owned);
}

static gboolean consume_pid(gint fd, GIOCondition cond, gpointer data)
{
        (void)fd, (void)cond;
        CU_ASSERT(vrot_worker_pid(data) > 0);
        return G_SOURCE_REMOVE;
}

/* The watch's descriptor was readable when the main loop polled, but an
 * earlier callback of the same iteration read the bytes (asking for the
 * PID): the watch must not block on an empty socket.  (It hung vrotd.) */
static void test_forkclient_stale_readiness(void)
{
        gchar *owned[3];
        VrotWorkerSpec s = spec_for("stale", owned);
        g_autoptr(GError) err = NULL;
        Ready r = { 0 };
        int p[2];
        VrotWorker *w = spawn_with_key(&s, 9, &err);

        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        CU_ASSERT_FATAL(pipe(p) == 0);
        CU_ASSERT_FATAL(write(p[1], "x", 1) == 1);
        /* Same priority, added first: dispatched first in the iteration. */
        g_unix_fd_add(p[0], G_IO_IN, consume_pid, w);
        vrot_worker_watch(w, 10000, worker_ready, NULL, &r);
        for (int i = 0; i < 2000 && access(s.ctrl_path, F_OK) != 0; i++)
                g_usleep(1000);
        g_usleep(50 * 1000);            /* "ok" and "ready" are both there */
        alarm(20);                      /* a hang fails the test */
        wait_ready_async(&r);
        alarm(0);
        CU_ASSERT_PTR_NULL(r.error);
        kill(vrot_worker_pid(w), SIGTERM);
        vrot_worker_free(w);
        close(p[0]);
        close(p[1]);
        free_owned(owned);
}

static void test_forkclient_refused_state_reported(void)
{
        gchar *owned[3];
        VrotWorkerSpec s = spec_for("b", owned);
        g_autoptr(GError) err = NULL;
        Ready r = { 0 };
        VrotWorker *w;

        s.not_need_init = TRUE;         /* manufacture, so there is state to refuse */
        w = spawn_with_key(&s, 2, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        CU_ASSERT_TRUE_FATAL(vrot_worker_wait_ready(w, 10000, &err));
        kill(vrot_worker_pid(w), SIGTERM);
        vrot_worker_free(w);
        while (access(s.ctrl_path, F_OK) == 0)
                g_usleep(1000);
        /* Same state, another key: the worker refuses (exit 3), never listens. */
        w = spawn_with_key(&s, 3, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        CU_ASSERT_FALSE(vrot_worker_wait_ready(w, 10000, &err));
        CU_ASSERT(g_error_matches(err, VROT_FORK_ERROR, VROT_FORK_ERROR_REFUSED));
        vrot_worker_free(w);
        /* The same, reported in the main loop. */
        w = spawn_with_key(&s, 3, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        vrot_worker_watch(w, 10000, worker_ready, NULL, &r);
        wait_ready_async(&r);
        CU_ASSERT(g_error_matches(r.error, VROT_FORK_ERROR, VROT_FORK_ERROR_REFUSED));
        g_clear_error(&r.error);
        vrot_worker_free(w);
        free_owned(owned);
}

static void test_forkclient_bad_spec_refused(void)
{
        VrotWorkerSpec s = { .uuid = "not-a-uuid", .state_dir = "/nonexistent",
                             .ctrl_path = "/nonexistent/ctrl", .log_path = "/dev/null" };
        g_autoptr(GError) err = NULL;
        VrotWorker *w = spawn_with_key(&s, 4, &err);

        /* Forked, but the worker rejects its options (exit 2). */
        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        CU_ASSERT_FALSE(vrot_worker_wait_ready(w, 3000, &err));
        CU_ASSERT(g_error_matches(err, VROT_FORK_ERROR, VROT_FORK_ERROR_WORKER_EXITED));
        CU_ASSERT(err && strstr(err->message, "exit 2"));
        vrot_worker_free(w);
        g_clear_error(&err);
        s.log_path = "/nonexistent/log";
        CU_ASSERT_PTR_NULL(vrot_fork_server_spawn(fs, &s, -1, &err));
        CU_ASSERT(err && strstr(err->message, "/nonexistent/log"));
}

/* A second client of the same server - a restarted vrotd - lists the
 * workers and takes over the news of one of them. */
static void test_forkclient_adopt_list_and_watch(void)
{
        gchar *owned[3];
        VrotWorkerSpec s = spec_for("adopt", owned);
        g_autofree gchar *sock = path("forkd.sock");
        g_autoptr(GError) err = NULL;
        g_autoptr(GHashTable) workers = NULL;
        Ended old = { 0 }, e = { 0 };
        VrotForkServer *again;
        VrotWorker *w = spawn_with_key(&s, 5, &err), *w2;

        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        CU_ASSERT_TRUE_FATAL(vrot_worker_wait_ready(w, 10000, &err));
        vrot_worker_watch(w, 0, NULL, worker_ended, &old);
        again = vrot_fork_server_adopt(vtpm_path, sock, log_path, &workers, &err);
        if (!again)
                fprintf(stderr, "adopt: %s\n", err->message);
        CU_ASSERT_PTR_NOT_NULL_FATAL(again);
        CU_ASSERT_EQUAL(vrot_fork_server_pid(again), vrot_fork_server_pid(fs));
        CU_ASSERT_EQUAL(GPOINTER_TO_INT(g_hash_table_lookup(workers, s.uuid)), (int)vrot_worker_pid(w));
        w2 = vrot_fork_server_watch(again, vrot_worker_pid(w), &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(w2);
        vrot_worker_watch(w2, 0, NULL, worker_ended, &e);
        kill(vrot_worker_pid(w), SIGKILL);
        wait_ended(&e);
        CU_ASSERT_TRUE(e.signaled);
        CU_ASSERT_EQUAL(e.code, SIGKILL);
        CU_ASSERT_FALSE(old.done && !old.signaled && old.code == 0);
        /* Watching a PID that is not a worker of the server is refused. */
        CU_ASSERT_PTR_NULL(vrot_fork_server_watch(again, getpid(), &err));
        CU_ASSERT(err && strstr(err->message, "no worker"));
        vrot_worker_free(w2);
        vrot_worker_free(w);
        g_clear_error(&err);
        CU_ASSERT_PTR_NULL(vrot_fork_server_adopt(vtpm_path, "/nonexistent/forkd.sock", log_path, &workers, &err));
        CU_ASSERT_PTR_NOT_NULL(err);
        /* The adopted handle ends the server (not its child) as well. */
        vrot_fork_server_free(fs);
        fs = again;
        free_owned(owned);
}

/* The server dies: its workers are re-parented to us (a subreaper) and
 * their end is still reported, with the status; the next request starts
 * a new server. */
static void test_forkclient_server_death(void)
{
        gchar *owned[3];
        VrotWorkerSpec s = spec_for("orphan", owned);
        g_autoptr(GError) err = NULL;
        Ended e = { 0 };
        GPid old_server = vrot_fork_server_pid(fs);
        VrotWorker *w = spawn_with_key(&s, 6, &err), *w2;

        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        CU_ASSERT_TRUE_FATAL(vrot_worker_wait_ready(w, 10000, &err));
        vrot_worker_watch(w, 0, NULL, worker_ended, &e);
        kill(old_server, SIGKILL);
        for (int i = 0; i < 50 && !e.done; i++)
                g_main_context_iteration(NULL, FALSE), g_usleep(10000);
        CU_ASSERT_FALSE(e.done);                /* the worker lives on */
        kill(vrot_worker_pid(w), SIGTERM);
        wait_ended(&e);
        CU_ASSERT_FALSE(e.signaled);
        CU_ASSERT_EQUAL(e.code, 0);
        CU_ASSERT_EQUAL(kill(vrot_worker_pid(w), 0), -1);      /* reaped, no zombie */
        vrot_worker_free(w);
        w2 = spawn_with_key(&s, 6, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(w2);
        CU_ASSERT_NOT_EQUAL(vrot_fork_server_pid(fs), old_server);
        CU_ASSERT_TRUE(vrot_worker_wait_ready(w2, 10000, &err));
        kill(vrot_worker_pid(w2), SIGTERM);
        vrot_worker_free(w2);
        free_owned(owned);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_forkclient_wait_ready_then_exit),
                UNIT_CASE(test_forkclient_watch_overlapping_starts),
                UNIT_CASE(test_forkclient_ready_before_watch),
                UNIT_CASE(test_forkclient_pid_keeps_news),
                UNIT_CASE(test_forkclient_stale_readiness),
                UNIT_CASE(test_forkclient_refused_state_reported),
                UNIT_CASE(test_forkclient_bad_spec_refused),
                UNIT_CASE(test_forkclient_server_death),
                UNIT_CASE(test_forkclient_adopt_list_and_watch),
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
        vtpm_path = vtpm;
        log_path = log;
        fs = vrot_fork_server_start(vtpm, sock, log, &err);
        if (!fs) {
                fprintf(stderr, "%s\n", err->message);
                return 1;
        }
        ret = UNIT_RUN("forkclient", cases);
        vrot_fork_server_free(fs);
        return ret;
}
