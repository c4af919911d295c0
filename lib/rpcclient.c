/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gio/gio.h>

#include "jsonrpc.h"
#include "rpcclient.h"

struct VrotRpcclient {
        int fd;
        guint timeout_ms;
        gint64 next_id;
        gboolean broken;        /* a call failed mid-way: the stream is out of step */
        VrotJsonrpcSplitter *lines;
};

static gboolean errno_error(GError **error, int err, const char *what)
{
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(err), "%s: %s", what,
                    g_strerror(err));
        return FALSE;
}

VrotRpcclient *vrot_rpcclient_new_from_fd(int fd, guint timeout_ms)
{
        VrotRpcclient *c;
        int flags;

        g_return_val_if_fail(fd >= 0, NULL);
        flags = fcntl(fd, F_GETFL);
        if (flags >= 0)
                (void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        c = g_new0(VrotRpcclient, 1);
        c->fd = fd;
        c->timeout_ms = timeout_ms ? timeout_ms : VROT_RPCCLIENT_TIMEOUT_MS;
        c->next_id = 1;
        c->lines = vrot_jsonrpc_splitter_new(VROT_JSONRPC_MAX_RESPONSE);
        return c;
}

void vrot_rpcclient_free(VrotRpcclient *c)
{
        if (!c)
                return;
        if (c->fd >= 0)
                (void)close(c->fd);
        vrot_jsonrpc_splitter_free(c->lines);
        g_free(c);
}

gboolean vrot_rpcclient_connect(const char *path, guint timeout_ms, VrotRpcclient **ret,
                                GError **error)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        g_autofree gchar *what = NULL;
        struct timeval tv;
        int fd;

        g_return_val_if_fail(path != NULL && ret != NULL, FALSE);
        if (timeout_ms == 0)
                timeout_ms = VROT_RPCCLIENT_TIMEOUT_MS;
        what = g_strdup_printf("connecting to %s", path);
        if (strlen(path) >= sizeof(sa.sun_path)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "%s: socket path longer than %zu bytes", what,
                            sizeof(sa.sun_path) - 1);
                return FALSE;
        }
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return errno_error(error, errno, what);
        /* connect() to a UNIX socket waits while the listener's backlog is
         * full; the kernel bounds that wait by SO_SNDTIMEO. */
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = errno;

                if (e == EINTR)
                        continue;
                (void)close(fd);
                if (e == EAGAIN || e == EINPROGRESS)
                        e = ETIMEDOUT;
                return errno_error(error, e, what);
        }
        *ret = vrot_rpcclient_new_from_fd(fd, timeout_ms);
        return TRUE;
}

/* Waits until @events are possible on the socket or @deadline (monotonic
 * microseconds) passes. */
static gboolean wait_fd(VrotRpcclient *c, short events, gint64 deadline, GError **error)
{
        for (;;) {
                gint64 left = deadline - g_get_monotonic_time();
                struct pollfd p = { .fd = c->fd, .events = events };
                int r;

                if (left <= 0) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                    "no answer within %u ms", c->timeout_ms);
                        return FALSE;
                }
                r = poll(&p, 1, (int)MIN((left + 999) / 1000, G_MAXINT));
                if (r < 0 && errno != EINTR)
                        return errno_error(error, errno, "waiting for the server");
                if (r > 0)
                        return TRUE;
        }
}

static gboolean send_all(VrotRpcclient *c, const char *buf, gsize len, gint64 deadline,
                         GError **error)
{
        while (len > 0) {
                /* MSG_NOSIGNAL: a server that went away is an error, not SIGPIPE. */
                ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        if (!wait_fd(c, POLLOUT, deadline, error))
                                return FALSE;
                        continue;
                }
                if (n < 0)
                        return errno_error(error, errno, "sending the request");
                buf += n;
                len -= (gsize)n;
        }
        return TRUE;
}

static gboolean recv_line(VrotRpcclient *c, gint64 deadline, gchar **ret_line, gsize *ret_len,
                          GError **error)
{
        char buf[16384];

        for (;;) {
                gchar *line = vrot_jsonrpc_splitter_pop(c->lines, ret_len);
                ssize_t n;

                if (line) {
                        *ret_line = line;
                        return TRUE;
                }
                n = recv(c->fd, buf, sizeof(buf), 0);
                if (n > 0 && !vrot_jsonrpc_splitter_feed(c->lines, buf, (gsize)n, NULL)) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                                    "response longer than %u bytes", VROT_JSONRPC_MAX_RESPONSE);
                        return FALSE;
                }
                if (n == 0) {
                        g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                                            "the server closed the connection without answering");
                        return FALSE;
                }
                if (n < 0 && errno == EAGAIN && !wait_fd(c, POLLIN, deadline, error))
                        return FALSE;
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return errno_error(error, errno, "receiving the response");
        }
}

gboolean vrot_rpcclient_call(VrotRpcclient *c, const char *method, JsonObject *params,
                             JsonNode **ret_result, GError **error)
{
        g_autoptr(JsonNode) id = NULL;
        g_autoptr(GError) local = NULL;
        g_autofree gchar *request = NULL;
        g_autofree gchar *line = NULL;
        gsize len = 0;
        gint64 deadline;

        g_return_val_if_fail(c != NULL && method != NULL && ret_result != NULL, FALSE);
        if (c->broken) {
                g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE,
                                    "connection unusable after an earlier failure");
                return FALSE;
        }
        id = json_node_init_int(json_node_alloc(), c->next_id++);
        request = vrot_jsonrpc_build_request(id, method, params);
        deadline = g_get_monotonic_time() + (gint64)c->timeout_ms * 1000;
        if (send_all(c, request, strlen(request), deadline, &local) &&
            recv_line(c, deadline, &line, &len, &local) &&
            vrot_jsonrpc_parse_response(line, len, id, ret_result, &local))
                return TRUE;
        /* An error the server sent leaves the stream in step; nothing else does. */
        if (local->domain != VROT_JSONRPC_ERROR)
                c->broken = TRUE;
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
}

gboolean vrot_rpcclient_call_once(const char *path, const char *method, JsonObject *params,
                                  guint timeout_ms, JsonNode **ret_result, GError **error)
{
        g_autoptr(VrotRpcclient) c = NULL;

        if (!vrot_rpcclient_connect(path, timeout_ms, &c, error))
                return FALSE;
        return vrot_rpcclient_call(c, method, params, ret_result, error);
}
