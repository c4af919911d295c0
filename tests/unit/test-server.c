/* SPDX-License-Identifier: BSD-3-Clause */
/* vrotd's API socket with a small method table; clients run in threads while
 * the main thread runs the server's main loop. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server.h"
#include "unit.h"

static gchar *sock_path;

static JsonNode *m_echo(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                        GError **error)
{
        const gchar *text = NULL;
        static const char *const known[] = { "text", NULL };

        (void)ctx, (void)caller;
        if (!vrot_jsonrpc_params_check_known(req, known, error) ||
            !vrot_jsonrpc_param_string(req, "text", VROT_JSONRPC_REQUIRED, 100, &text, error))
                return NULL;
        return json_node_init_string(json_node_alloc(), text);
}

static JsonNode *m_whoami(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                          GError **error)
{
        (void)ctx, (void)req, (void)error;
        return json_node_init_int(json_node_alloc(), caller->uid);
}

static JsonNode *m_fail(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                        GError **error)
{
        (void)ctx, (void)caller, (void)req;
        g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_NOT_FOUND, "no such instance");
        return NULL;
}

typedef struct Later {
        VrotCall *call;
        gchar *text;
} Later;

static gboolean later_answer(gpointer data)
{
        Later *l = data;

        if (g_str_equal(l->text, "fail"))
                vrot_call_return_error(l->call, g_error_new(VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_CONFLICT,
                                                            "failed later"));
        else
                vrot_call_return(l->call, json_node_init_string(json_node_alloc(), l->text));
        g_free(l->text);
        g_free(l);
        return G_SOURCE_REMOVE;
}

/* Answers {"ms": N, "text": T} after N ms with T ("fail": an error). */
static void m_later(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req, VrotCall *call)
{
        static const char *const known[] = { "ms", "text", NULL };
        GError *error = NULL;
        const gchar *text = NULL;
        guint64 ms = 0;
        Later *l;

        (void)ctx, (void)caller;
        if (!vrot_jsonrpc_params_check_known(req, known, &error) ||
            !vrot_jsonrpc_param_uint(req, "ms", VROT_JSONRPC_REQUIRED, 0, 5000, &ms, &error) ||
            !vrot_jsonrpc_param_string(req, "text", VROT_JSONRPC_REQUIRED, 100, &text, &error)) {
                vrot_call_return_error(call, error);
                return;
        }
        l = g_new0(Later, 1);
        l->call = call;
        l->text = g_strdup(text);
        if (ms == 0)
                later_answer(l);        /* answered before m_later returns */
        else
                g_timeout_add((guint)ms, later_answer, l);
}

static const VrotMethod methods[] = {
        { .name = "test.later", .async_fn = m_later },
        { .name = "test.echo", .fn = m_echo },
        { .name = "test.whoami", .fn = m_whoami },
        { .name = "test.fail", .fn = m_fail },
        { .name = "test.admin", .fn = m_whoami, .admin_only = TRUE },
};

/* ---- client side (runs in threads) ---- */

static int dial(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = 10 };
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);

        g_strlcpy(sa.sun_path, sock_path, sizeof(sa.sun_path));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                return -1;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        return fd;
}

/* Sends @req, returns the answer line (transfer full) or NULL on close. */
static gchar *ask_fd(int fd, const gchar *req, gsize len)
{
        GString *got = g_string_new(NULL);
        char buf[4096];

        if (len && send(fd, req, len, MSG_NOSIGNAL) < 0) {
                g_string_free(got, TRUE);
                return NULL;
        }
        while (!strchr(got->str, '\n')) {
                ssize_t n = recv(fd, buf, sizeof(buf), 0);
                if (n <= 0)
                        return g_string_free(got, got->len == 0);
                g_string_append_len(got, buf, n);
        }
        return g_string_free(got, FALSE);
}

typedef struct Job {
        gchar *request;
        gsize len;
        gchar *reply;
        gboolean check_close;           /* wait to see whether the server hangs up */
        gboolean closed_after;          /* it did */
        gboolean done;
} Job;

static gpointer run_job(gpointer data)
{
        Job *j = data;
        int fd = dial();
        char c;

        if (fd >= 0) {
                j->reply = ask_fd(fd, j->request, j->len);
                if (j->check_close)
                        j->closed_after = recv(fd, &c, 1, 0) == 0;     /* SO_RCVTIMEO bounds it */
                close(fd);
        }
        g_atomic_int_set(&j->done, TRUE);
        return NULL;
}

/* Runs @n jobs concurrently while the main loop serves them. */
static void run_jobs(Job *jobs, gsize n)
{
        GThread **t = g_new(GThread *, n);
        gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
        gboolean all;

        for (gsize i = 0; i < n; i++)
                t[i] = g_thread_new("client", run_job, &jobs[i]);
        do {
                g_main_context_iteration(NULL, FALSE);
                g_usleep(500);
                all = TRUE;
                for (gsize i = 0; i < n; i++)
                        all = all && g_atomic_int_get(&jobs[i].done);
        } while (!all && g_get_monotonic_time() < deadline);
        for (gsize i = 0; i < n; i++)
                g_thread_join(t[i]);
        g_free(t);
        CU_ASSERT_TRUE(all);
}

static gchar *one(const gchar *request)
{
        Job j = { .request = (gchar *)request, .len = strlen(request) };

        run_jobs(&j, 1);
        return j.reply;
}

typedef struct Case {
        const gchar *request;
        const gchar *want;              /* substring of the answer */
} Case;

static void test_server_answers_and_errors(void)
{
        static const Case cases[] = {
                { "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"test.echo\",\"params\":{\"text\":\"hi\"}}\n",
                  "\"result\":\"hi\"" },
                { "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"test.nope\"}\n", "-32601" },
                { "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"test.echo\",\"params\":{\"txt\":\"hi\"}}\n", "-32602" },
                { "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"test.echo\",\"params\":{\"text\":5}}\n", "-32602" },
                { "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"test.fail\"}\n", "no such instance" },
                { "{not json\n", "-32700" },
                { "[1,2]\n", "-32600" },
                { "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"test.whoami\"}\n", "\"result\":0" },
                { "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"test.admin\"}\n", "\"result\":0" },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree gchar *reply = one(cases[i].request);
                if (!reply || !strstr(reply, cases[i].want)) {
                        fprintf(stderr, "request %s got %s\n", cases[i].request, reply);
                        CU_FAIL(cases[i].request);
                }
        }
}

static void test_server_notification_gets_no_answer(void)
{
        /* The notification is not answered; the call after it is. */
        g_autofree gchar *reply = one("{\"jsonrpc\":\"2.0\",\"method\":\"test.whoami\"}\n"
                                      "{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"test.whoami\"}\n");
        CU_ASSERT(reply && strstr(reply, "\"id\":\"x\"") && !strstr(reply, "null"));
}

static void test_server_oversized_line_disconnects(void)
{
        gsize len = VROT_JSONRPC_MAX_LINE + 100;
        Job j = { .request = g_malloc(len), .len = len, .check_close = TRUE };

        memset(j.request, 'a', len);
        run_jobs(&j, 1);
        CU_ASSERT(j.reply && strstr(j.reply, "-32006"));
        CU_ASSERT_TRUE(j.closed_after);
        g_free(j.request);
        g_free(j.reply);
}

static void test_server_half_line_times_out(void)
{
        Job j = { .request = (gchar *)"{\"jsonrpc\":\"2.0\"", .len = 16 };

        run_jobs(&j, 1);
        /* No answer, the connection closed by the server's line timeout. */
        CU_ASSERT_PTR_NULL(j.reply);
}

static void test_server_hundred_clients(void)
{
        Job jobs[100];
        guint ok = 0;

        for (gsize i = 0; i < G_N_ELEMENTS(jobs); i++) {
                jobs[i] = (Job){ .request = g_strdup_printf(
                        "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"test.echo\",\"params\":{\"text\":\"c%zu\"}}\n", i, i) };
                jobs[i].len = strlen(jobs[i].request);
        }
        run_jobs(jobs, G_N_ELEMENTS(jobs));
        for (gsize i = 0; i < G_N_ELEMENTS(jobs); i++) {
                g_autofree gchar *want = g_strdup_printf("\"result\":\"c%zu\"", i);
                ok += jobs[i].reply && strstr(jobs[i].reply, want);
                g_free(jobs[i].request);
                g_free(jobs[i].reply);
        }
        CU_ASSERT_EQUAL(ok, G_N_ELEMENTS(jobs));
}

static void test_server_non_admin_denied(void)
{
        int status = 0;
        pid_t pid;

        pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
                /* A caller that is neither root nor in the admin group. */
                if (setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(2);
                int fd = dial();
                g_autofree gchar *r1 = ask_fd(fd, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"test.admin\"}\n", 47);
                g_autofree gchar *r2 = ask_fd(fd, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"test.whoami\"}\n", 48);
                _exit(r1 && strstr(r1, "-32000") && strstr(r1, "permission denied") &&
                      r2 && strstr(r2, "\"result\":65534") ? 0 : 1);
        }
        while (waitpid(pid, &status, WNOHANG) == 0) {
                g_main_context_iteration(NULL, FALSE);
                g_usleep(500);
        }
        CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Sends @req on a fresh connection (then half-closes if @shut) and reads
 * @n lines; runs in a thread. */
typedef struct Lines {
        const gchar *req;
        gboolean shut, hang_up;
        guint n;
        GString *got;
        gboolean done;
} Lines;

static gpointer run_lines(gpointer data)
{
        Lines *l = data;
        int fd = dial();
        char buf[4096];
        guint seen = 0;

        l->got = g_string_new(NULL);
        if (fd >= 0 && send(fd, l->req, strlen(l->req), MSG_NOSIGNAL) > 0) {
                if (l->shut)
                        shutdown(fd, SHUT_WR);
                while (!l->hang_up && seen < l->n) {
                        ssize_t n = recv(fd, buf, sizeof(buf), 0);
                        if (n <= 0)
                                break;
                        g_string_append_len(l->got, buf, n);
                        seen = 0;
                        for (const gchar *p = l->got->str; (p = strchr(p, '\n')); p++)
                                seen++;
                }
        }
        if (fd >= 0)
                close(fd);
        g_atomic_int_set(&l->done, TRUE);
        return NULL;
}

static void serve_until(Lines *l, gint64 extra_us)
{
        GThread *t = g_thread_new("lines", run_lines, l);
        gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;

        while (!g_atomic_int_get(&l->done) && g_get_monotonic_time() < deadline) {
                g_main_context_iteration(NULL, FALSE);
                g_usleep(500);
        }
        g_thread_join(t);
        deadline = g_get_monotonic_time() + extra_us;
        while (g_get_monotonic_time() < deadline) {
                g_main_context_iteration(NULL, FALSE);
                g_usleep(500);
        }
        CU_ASSERT_TRUE(l->done);
}

/* A slow call does not hold up the next ones: answers come as they are
 * ready, each with its own id; errors too. */
static void test_server_async_out_of_order(void)
{
        Lines l = { .n = 4, .req =
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"test.later\",\"params\":{\"ms\":300,\"text\":\"slow\"}}\n"
                "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"test.echo\",\"params\":{\"text\":\"quick\"}}\n"
                "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"test.later\",\"params\":{\"ms\":0,\"text\":\"now\"}}\n"
                "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"test.later\",\"params\":{\"ms\":100,\"text\":\"fail\"}}\n" };
        const gchar *quick, *now, *fail, *slow;

        serve_until(&l, 0);
        quick = strstr(l.got->str, "\"quick\"");
        now = strstr(l.got->str, "\"now\"");
        fail = strstr(l.got->str, "failed later");
        slow = strstr(l.got->str, "\"slow\"");
        CU_ASSERT(quick && now && fail && slow);
        CU_ASSERT(quick && slow && quick < slow);
        CU_ASSERT(fail && slow && fail < slow);
        CU_ASSERT_PTR_NOT_NULL(strstr(l.got->str, "\"id\":4,\"error\":{\"code\":-32002"));
        g_string_free(l.got, TRUE);
}

/* A client that half-closes after its request gets its answer; one that
 * hangs up is answered into the void, and the server carries on. */
static void test_server_async_client_gone(void)
{
        Lines half = { .n = 1, .shut = TRUE, .req =
                "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"test.later\",\"params\":{\"ms\":100,\"text\":\"half\"}}\n" };
        Lines gone = { .hang_up = TRUE, .req =
                "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"test.later\",\"params\":{\"ms\":100,\"text\":\"gone\"}}\n" };
        g_autofree gchar *after = NULL;

        serve_until(&half, 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(half.got->str, "\"result\":\"half\""));
        serve_until(&gone, 300 * 1000);
        after = one("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"test.echo\",\"params\":{\"text\":\"still\"}}\n");
        CU_ASSERT(after && strstr(after, "still"));
        g_string_free(half.got, TRUE);
        g_string_free(gone.got, TRUE);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_server_answers_and_errors),
                UNIT_CASE(test_server_notification_gets_no_answer),
                UNIT_CASE(test_server_oversized_line_disconnects),
                UNIT_CASE(test_server_half_line_times_out),
                UNIT_CASE(test_server_hundred_clients),
                UNIT_CASE(test_server_non_admin_denied),
                UNIT_CASE(test_server_async_out_of_order),
                UNIT_CASE(test_server_async_client_gone),
        };
        VrotServerLimits limits = { .max_clients = 256, .line_timeout_ms = 300, .idle_timeout_ms = 60000 };
        g_autoptr(GError) err = NULL;
        VrotServer *s;
        int ret;

        chmod(unit_tmpdir(), 0755);     /* the non-admin caller must reach the socket */
        sock_path = g_build_filename(unit_tmpdir(), "api.sock", NULL);
        s = vrot_server_new(sock_path, methods, G_N_ELEMENTS(methods), NULL, (gid_t)-1, &limits, &err);
        if (!s) {
                fprintf(stderr, "%s\n", err->message);
                return 1;
        }
        ret = UNIT_RUN("server", cases);
        vrot_server_free(s);
        g_free(sock_path);
        return ret;
}
