/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gio/gio.h>

#include "jsonrpc.h"
#include "rpcclient.h"
#include "unit.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void check_error(const char *what, const GError *error, GQuark domain, gint code,
                        const char *needle)
{
        if (!error) {
                fprintf(stderr, "\n  %s: no error\n", what);
                CU_FAIL("error expected");
                return;
        }
        if (error->domain != domain || error->code != code || !strstr(error->message, needle)) {
                fprintf(stderr, "\n  %s: got %s %d \"%s\"\n", what,
                        g_quark_to_string(error->domain), error->code, error->message);
                CU_FAIL("wrong error");
        }
}

static JsonNode *json(const char *text)
{
        g_autoptr(JsonParser) p = json_parser_new();

        CU_ASSERT_FATAL(json_parser_load_from_data(p, text, -1, NULL));
        return json_parser_steal_root(p);
}

static void send_all(int fd, const char *buf, gsize len)
{
        while (len > 0) {
                ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return;         /* the client went away: fine here */
                buf += n;
                len -= (gsize)n;
        }
}

/* ---- A scripted peer: reads one request line, answers with @chunks ---- */

typedef struct Peer {
        int fd;
        const char *const *chunks;      /* NULL-terminated, sent 5 ms apart */
        gsize junk;                     /* then this many bytes without a newline */
        gboolean hang;                  /* then wait for the client to hang up */
        gchar *request;                 /* the line received */
} Peer;

static gpointer peer_run(gpointer data)
{
        Peer *p = data;
        GString *req = g_string_new(NULL);
        char c;

        while (read(p->fd, &c, 1) == 1 && c != '\n')
                g_string_append_c(req, c);
        p->request = g_string_free(req, FALSE);
        for (gsize i = 0; p->chunks && p->chunks[i]; i++) {
                send_all(p->fd, p->chunks[i], strlen(p->chunks[i]));
                g_usleep(5000);
        }
        if (p->junk) {
                g_autofree gchar *junk = g_malloc(p->junk);

                memset(junk, 'a', p->junk);
                send_all(p->fd, junk, p->junk);
        }
        while (p->hang && read(p->fd, &c, 1) > 0)
                ;
        close(p->fd);
        return NULL;
}

typedef struct ScriptCase {
        const char *what;
        const char *chunks[4];
        gsize junk;
        gboolean hang;
        const char *result;     /* expected result (JSON), or NULL for an error */
        int rpc;                /* 1: VROT_JSONRPC_ERROR, 0: G_IO_ERROR */
        gint code;
        const char *needle;
} ScriptCase;

#define RESP(rest) "{\"jsonrpc\":\"2.0\"," rest "}\n"

static const ScriptCase script_cases[] = {
        { "result", { RESP("\"id\":1,\"result\":{\"x\":1}") }, 0, FALSE, "{\"x\":1}", 0, 0, NULL },
        { "result in pieces", { "{\"jsonrpc\":\"2.0\",", "\"id\":1,\"res", "ult\":[true]}\n" }, 0,
          FALSE, "[true]", 0, 0, NULL },
        { "null result", { RESP("\"result\":null,\"id\":1") }, 0, FALSE, "null", 0, 0, NULL },
        { "error reply", { RESP("\"id\":1,\"error\":{\"code\":-32001,\"message\":\"no such "
                                "instance\"}") }, 0, FALSE, NULL, 1,
          VROT_JSONRPC_ERROR_NOT_FOUND, "no such instance" },
        { "error reply, null id", { RESP("\"id\":null,\"error\":{\"code\":-32700,\"message\":"
                                         "\"parse error at byte 0\"}") }, 0, FALSE, NULL, 1,
          VROT_JSONRPC_ERROR_PARSE, "parse error at byte 0" },
        { "answer to another id", { RESP("\"id\":2,\"result\":1") }, 0, FALSE, NULL, 0,
          G_IO_ERROR_INVALID_DATA, "id mismatch" },
        { "garbage", { "hello\n" }, 0, FALSE, NULL, 0, G_IO_ERROR_INVALID_DATA,
          "invalid response" },
        { "closed without answer", { NULL }, 0, FALSE, NULL, 0, G_IO_ERROR_CONNECTION_CLOSED,
          "closed the connection" },
        { "half a line, then closed", { "{\"jsonrpc\":" }, 0, FALSE, NULL, 0,
          G_IO_ERROR_CONNECTION_CLOSED, "closed the connection" },
        { "no answer", { NULL }, 0, TRUE, NULL, 0, G_IO_ERROR_TIMED_OUT, "no answer within 300 ms" },
        { "half a line, then silence", { "{\"jsonrpc\":" }, 0, TRUE, NULL, 0,
          G_IO_ERROR_TIMED_OUT, "no answer within 300 ms" },
        { "endless line", { NULL }, VROT_JSONRPC_MAX_RESPONSE + 1, TRUE, NULL, 0,
          G_IO_ERROR_MESSAGE_TOO_LARGE, "response longer than 16777216 bytes" },
};

static void test_rpcclient_call_script(void)
{
        for (size_t i = 0; i < N(script_cases); i++) {
                const ScriptCase *c = &script_cases[i];
                Peer peer = { .chunks = c->chunks, .junk = c->junk, .hang = c->hang };
                g_autoptr(JsonNode) params = json("{\"a\":1}");
                g_autoptr(JsonNode) result = NULL;
                g_autoptr(GError) error = NULL;
                g_autoptr(VrotJsonrpcRequest) req = NULL;
                VrotRpcclient *client;
                GThread *thread;
                int sv[2];
                gboolean ok;

                CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
                peer.fd = sv[1];
                thread = g_thread_new("peer", peer_run, &peer);
                /* The endless line must hit the size limit, never the clock:
                 * a loaded machine may pause the peer for longer than 300 ms. */
                client = vrot_rpcclient_new_from_fd(sv[0], c->junk ? 60000 : 300);
                ok = vrot_rpcclient_call(client, "vtpm.list", json_node_get_object(params),
                                         &result, &error);
                vrot_rpcclient_free(client);
                g_thread_join(thread);

                /* What the peer received is one valid request line. */
                CU_ASSERT_TRUE(vrot_jsonrpc_parse_request(peer.request, strlen(peer.request), &req,
                                                          NULL));
                CU_ASSERT(req && strcmp(vrot_jsonrpc_request_get_method(req), "vtpm.list") == 0);
                g_free(peer.request);
                if (c->result) {
                        g_autoptr(JsonNode) want = json(c->result);

                        if (!ok)
                                fprintf(stderr, "\n  %s: %s\n", c->what, error->message);
                        CU_ASSERT(ok && json_node_equal(result, want));
                } else {
                        CU_ASSERT_FALSE(ok);
                        CU_ASSERT_PTR_NULL(result);
                        check_error(c->what, error, c->rpc ? VROT_JSONRPC_ERROR : G_IO_ERROR,
                                    c->code, c->needle);
                }
        }
}

/* ---- An echo server: answers every request with its method and params ---- */

static gchar *echo_reply(const char *line, gsize len)
{
        g_autoptr(VrotJsonrpcRequest) req = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonNode) result = NULL;
        JsonObject *params;

        if (!vrot_jsonrpc_parse_request(line, len, &req, &error))
                return vrot_jsonrpc_build_error_from_gerror(NULL, error);
        if (strcmp(vrot_jsonrpc_request_get_method(req), "fail") == 0)
                return vrot_jsonrpc_build_error(vrot_jsonrpc_request_get_id(req),
                                                VROT_JSONRPC_ERROR_CONFLICT, "already exists", NULL);
        params = vrot_jsonrpc_request_get_params(req);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "method");
        json_builder_add_string_value(b, vrot_jsonrpc_request_get_method(req));
        json_builder_set_member_name(b, "id");
        json_builder_add_value(b, json_node_copy(vrot_jsonrpc_request_get_id(req)));
        json_builder_set_member_name(b, "params");
        if (params)
                json_builder_add_value(b, json_node_init_object(json_node_alloc(), params));
        else
                json_builder_add_null_value(b);
        json_builder_end_object(b);
        result = json_builder_get_root(b);
        return vrot_jsonrpc_build_result(vrot_jsonrpc_request_get_id(req), result);
}

/* Serves @fd until the client hangs up; closes it. */
static void serve(int fd)
{
        g_autoptr(VrotJsonrpcSplitter) s = vrot_jsonrpc_splitter_new(VROT_JSONRPC_MAX_LINE);
        char buf[4096];
        ssize_t n;

        while ((n = read(fd, buf, sizeof(buf))) > 0) {
                gchar *line;
                gsize len;

                if (!vrot_jsonrpc_splitter_feed(s, buf, (gsize)n, NULL))
                        break;
                while ((line = vrot_jsonrpc_splitter_pop(s, &len))) {
                        g_autofree gchar *reply = echo_reply(line, len);

                        send_all(fd, reply, strlen(reply));
                        g_free(line);
                }
        }
        close(fd);
}

static gpointer serve_fd(gpointer data)
{
        serve(GPOINTER_TO_INT(data));
        return NULL;
}

/* Several calls on one connection: ids count up, and an error the server
 * sent leaves the connection usable. */
static void test_rpcclient_call_sequence(void)
{
        static const char *const methods[] = { "a", "fail", "b.c", "fail", "d" };
        g_autoptr(VrotRpcclient) client = NULL;
        GThread *thread;
        int sv[2];

        CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        thread = g_thread_new("echo", serve_fd, GINT_TO_POINTER(sv[1]));
        client = vrot_rpcclient_new_from_fd(sv[0], 5000);
        for (size_t i = 0; i < N(methods); i++) {
                g_autoptr(JsonNode) result = NULL;
                g_autoptr(GError) error = NULL;
                g_autoptr(JsonNode) params = json("{\"uuid\":\"x\\ny\",\"n\":[1,2]}");
                gboolean ok = vrot_rpcclient_call(client, methods[i],
                                                  i == 2 ? NULL : json_node_get_object(params),
                                                  &result, &error);
                g_autofree gchar *want = NULL;

                if (strcmp(methods[i], "fail") == 0) {
                        CU_ASSERT_FALSE(ok);
                        check_error("fail", error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_CONFLICT,
                                    "already exists");
                        continue;
                }
                want = g_strdup_printf("{\"method\":\"%s\",\"id\":%zu,\"params\":%s}", methods[i],
                                       i + 1, i == 2 ? "null" : "{\"uuid\":\"x\\ny\",\"n\":[1,2]}");
                if (ok) {
                        g_autoptr(JsonNode) w = json(want);

                        CU_ASSERT(json_node_equal(result, w));
                } else {
                        fprintf(stderr, "\n  %s: %s\n", methods[i], error->message);
                        CU_FAIL("call failed");
                }
        }
        g_clear_pointer(&client, vrot_rpcclient_free);
        g_thread_join(thread);
}

/* After a timeout the stream is out of step: later calls fail at once. */
static void test_rpcclient_broken_after_timeout(void)
{
        Peer peer = { .hang = TRUE };
        g_autoptr(JsonNode) result = NULL;
        g_autoptr(GError) e1 = NULL, e2 = NULL;
        VrotRpcclient *client;
        GThread *thread;
        int sv[2];

        CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        peer.fd = sv[1];
        thread = g_thread_new("peer", peer_run, &peer);
        client = vrot_rpcclient_new_from_fd(sv[0], 100);
        CU_ASSERT_FALSE(vrot_rpcclient_call(client, "a", NULL, &result, &e1));
        check_error("first", e1, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "no answer");
        CU_ASSERT_FALSE(vrot_rpcclient_call(client, "a", NULL, &result, &e2));
        check_error("second", e2, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE, "earlier failure");
        vrot_rpcclient_free(client);
        g_thread_join(thread);
        g_free(peer.request);
}

/* A peer that is gone: EPIPE, not SIGPIPE. */
static void test_rpcclient_peer_gone(void)
{
        g_autoptr(VrotRpcclient) client = NULL;
        g_autoptr(JsonNode) result = NULL;
        g_autoptr(GError) error = NULL;
        int sv[2];

        CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        close(sv[1]);
        client = vrot_rpcclient_new_from_fd(sv[0], 1000);
        CU_ASSERT_FALSE(vrot_rpcclient_call(client, "a", NULL, &result, &error));
        check_error("peer gone", error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE, "sending the request");
}

/* ---- Connecting by path ---- */

static int listen_at(const char *path, int backlog)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
        unlink(path);
        CU_ASSERT_FATAL(fd >= 0);
        CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
        if (backlog >= 0)
                CU_ASSERT_FATAL(listen(fd, backlog) == 0);
        return fd;
}

static gpointer accept_one(gpointer data)
{
        int lfd = GPOINTER_TO_INT(data);
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

        if (fd >= 0)
                serve(fd);
        return NULL;
}

static void test_rpcclient_call_once(void)
{
        g_autofree gchar *path = g_build_filename(unit_tmpdir(), "api.sock", NULL);
        g_autoptr(JsonNode) params = json("{\"k\":true}");
        g_autoptr(JsonNode) want = json("{\"method\":\"ping\",\"id\":1,\"params\":{\"k\":true}}");
        g_autoptr(JsonNode) result = NULL;
        g_autoptr(GError) error = NULL;
        int lfd = listen_at(path, 4);
        GThread *thread = g_thread_new("accept", accept_one, GINT_TO_POINTER(lfd));

        if (!vrot_rpcclient_call_once(path, "ping", json_node_get_object(params), 0, &result,
                                      &error))
                fprintf(stderr, "\n  %s\n", error->message);
        CU_ASSERT(result && json_node_equal(result, want));
        g_thread_join(thread);
        close(lfd);
}

typedef struct ConnectCase {
        const char *what;
        const char *name;       /* in the temp dir; NULL: a path too long */
        int kind;               /* 0 nothing, 1 bound socket not listening, 2 regular file */
        gint code;
        const char *needle;
} ConnectCase;

static void test_rpcclient_connect_errors(void)
{
        static const ConnectCase cases[] = {
                { "missing", "nothing.sock", 0, G_IO_ERROR_NOT_FOUND, "connecting to " },
                { "not listening", "stale.sock", 1, G_IO_ERROR_CONNECTION_REFUSED, "stale.sock" },
                { "not a socket", "file", 2, G_IO_ERROR_CONNECTION_REFUSED, "connecting to " },
                { "path too long", NULL, 0, G_IO_ERROR_INVALID_ARGUMENT, "longer than 107 bytes" },
        };

        for (size_t i = 0; i < N(cases); i++) {
                const ConnectCase *c = &cases[i];
                g_autofree gchar *path = c->name ? g_build_filename(unit_tmpdir(), c->name, NULL)
                                                 : g_strnfill(200, 'x');
                VrotRpcclient *client = (VrotRpcclient *)&client;      /* sentinel */
                g_autoptr(GError) error = NULL;

                if (c->kind == 1)
                        close(listen_at(path, -1));
                if (c->kind == 2)
                        unit_write_file(path, "x", 1);
                CU_ASSERT_FALSE(vrot_rpcclient_connect(path, 500, &client, &error));
                CU_ASSERT(client == (VrotRpcclient *)&client);
                check_error(c->what, error, G_IO_ERROR, c->code, c->needle);
        }
}

/* A listener that never accepts: once its backlog is full, connect() waits,
 * and the client's timeout bounds that wait. */
static void test_rpcclient_connect_backlog_full(void)
{
        g_autofree gchar *path = g_build_filename(unit_tmpdir(), "full.sock", NULL);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        g_autoptr(GError) error = NULL;
        VrotRpcclient *client = NULL;
        int lfd = listen_at(path, 0), fds[16], n = 0;
        gint64 start;

        g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
        for (; n < (int)N(fds); n++) {
                fds[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (connect(fds[n], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                        CU_ASSERT_EQUAL(errno, EAGAIN);
                        n++;
                        break;
                }
        }
        start = g_get_monotonic_time();
        CU_ASSERT_FALSE(vrot_rpcclient_connect(path, 200, &client, &error));
        check_error("backlog full", error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "full.sock");
        CU_ASSERT(g_get_monotonic_time() - start >= 150000);
        for (int i = 0; i < n; i++)
                close(fds[i]);
        close(lfd);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_rpcclient_call_script),
                UNIT_CASE(test_rpcclient_call_sequence),
                UNIT_CASE(test_rpcclient_broken_after_timeout),
                UNIT_CASE(test_rpcclient_peer_gone),
                UNIT_CASE(test_rpcclient_call_once),
                UNIT_CASE(test_rpcclient_connect_errors),
                UNIT_CASE(test_rpcclient_connect_backlog_full),
        };
        return UNIT_RUN("rpcclient", cases);
}
