/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib-unix.h>

#include "server.h"

#define READ_CHUNK 65536
#define MAX_OUTPUT (8u << 20)           /* unread answers a client may pile up */
#define MAX_PENDING 1024                /* unanswered asynchronous calls per client */

typedef struct Client Client;

struct VrotServer {
        gchar *path;
        int fd;
        guint watch;
        const VrotMethod *methods;
        gsize n_methods;
        gpointer ctx;
        gid_t admin_gid;
        VrotServerLimits limits;
        GList *clients;                 /* Client * */
        guint n_clients;
        guint tick;                     /* timeouts */
};

struct Client {
        VrotServer *server;
        int fd;
        guint in_watch, out_watch;
        VrotCaller caller;
        VrotJsonrpcSplitter *splitter;
        GString *out;                   /* answers not yet written */
        gint64 last_request, partial_since;
        gboolean closing;               /* close once the output is written */
        GList *calls;                   /* VrotCall *, unanswered */
        guint n_calls;
        gboolean reading;               /* in on_readable: it flushes at the end */
};

struct VrotCall {
        Client *client;                 /* NULL once the client has gone */
        JsonNode *id;                   /* NULL: a notification, not answered */
};

static void call_free(VrotCall *call)
{
        if (call->id)
                json_node_unref(call->id);
        g_free(call);
}

static void client_free(Client *c)
{
        VrotServer *s = c->server;

        if (c->in_watch)
                g_source_remove(c->in_watch);
        if (c->out_watch)
                g_source_remove(c->out_watch);
        close(c->fd);
        for (GList *l = c->calls; l; l = l->next)
                ((VrotCall *)l->data)->client = NULL;   /* answered into the void */
        g_list_free(c->calls);
        vrot_jsonrpc_splitter_free(c->splitter);
        g_string_free(c->out, TRUE);
        s->clients = g_list_remove(s->clients, c);
        s->n_clients--;
        g_free(c);
}

/* SO_PEERCRED for who, SO_PEERGROUPS for the admin group among all groups. */
static void identify(Client *c, gid_t admin_gid)
{
        struct ucred cred = { 0 };
        socklen_t len = sizeof(cred);
        gid_t groups[256];
        socklen_t glen = sizeof(groups);

        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                cred.uid = (uid_t)-1;           /* unknown: no rights at all */
        c->caller = (VrotCaller){ .uid = cred.uid, .gid = cred.gid, .pid = cred.pid };
        c->caller.admin = cred.uid == 0;
        if (admin_gid == (gid_t)-1 || c->caller.admin)
                return;
        if (cred.gid == admin_gid)
                c->caller.admin = TRUE;
        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0)
                for (gsize i = 0; i < glen / sizeof(gid_t); i++)
                        if (groups[i] == admin_gid)
                                c->caller.admin = TRUE;
}

static gboolean on_writable(gint fd, GIOCondition cond, gpointer data);

static void flush(Client *c)
{
        while (c->out->len > 0) {
                ssize_t n = send(c->fd, c->out->str, c->out->len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        if (!c->out_watch)
                                c->out_watch = g_unix_fd_add(c->fd, G_IO_OUT, on_writable, c);
                        return;
                }
                if (n < 0) {
                        c->closing = TRUE;
                        g_string_truncate(c->out, 0);
                        break;
                }
                g_string_erase(c->out, 0, n);
        }
        /* A client that half-closed after its requests still gets the
         * answers of its calls under way. */
        if (c->closing && c->n_calls == 0)
                client_free(c);
}

static gboolean on_writable(gint fd, GIOCondition cond, gpointer data)
{
        Client *c = data;

        (void)fd, (void)cond;
        c->out_watch = 0;
        flush(c);
        return G_SOURCE_REMOVE;
}

static void answer(Client *c, gchar *line)
{
        if (c->out->len + strlen(line) > MAX_OUTPUT) {
                c->closing = TRUE;      /* it does not read its answers */
        } else {
                g_string_append(c->out, line);
        }
        g_free(line);
}

static const VrotMethod *find_method(const VrotServer *s, const gchar *name)
{
        for (gsize i = 0; i < s->n_methods; i++)
                if (g_str_equal(s->methods[i].name, name))
                        return &s->methods[i];
        return NULL;
}

static void answer_result(Client *c, JsonNode *id, JsonNode *result, const GError *error)
{
        if (error)
                answer(c, vrot_jsonrpc_build_error_from_gerror(id, error));
        else if (!result)
                answer(c, vrot_jsonrpc_build_error(id, VROT_JSONRPC_ERROR_INTERNAL, "the method returned nothing", NULL));
        else
                answer(c, vrot_jsonrpc_build_result(id, result));
}

/* The method's answer, or an error when it may not be called. */
static const VrotMethod *check_method(Client *c, const VrotJsonrpcRequest *req, GError **error)
{
        const VrotMethod *m = find_method(c->server, vrot_jsonrpc_request_get_method(req));

        if (!m) {
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_METHOD_NOT_FOUND,
                            "no method '%s'", vrot_jsonrpc_request_get_method(req));
        } else if (m->admin_only && !c->caller.admin) {
                g_message("refused: %s by uid %u (pid %d): not an administrator", m->name,
                          (unsigned)c->caller.uid, (int)c->caller.pid);
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_PERMISSION_DENIED,
                            "permission denied: %s is for root and the admin group", m->name);
        } else if (m->async_fn && c->n_calls >= MAX_PENDING) {
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_BUSY,
                            "%u calls of this client are still under way", c->n_calls);
        } else {
                return m;
        }
        return NULL;
}

static void handle_line(Client *c, const gchar *line, gsize len)
{
        g_autoptr(VrotJsonrpcRequest) req = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) result = NULL;
        const VrotMethod *m;
        JsonNode *id;

        if (!vrot_jsonrpc_parse_request(line, len, &req, &error)) {
                answer(c, vrot_jsonrpc_build_error_from_gerror(NULL, error));
                return;
        }
        id = vrot_jsonrpc_request_is_notification(req) ? NULL : vrot_jsonrpc_request_get_id(req);
        m = check_method(c, req, &error);
        if (m && m->async_fn) {
                VrotCall *call = g_new0(VrotCall, 1);
                call->client = c;
                call->id = id ? json_node_copy(id) : NULL;
                c->calls = g_list_prepend(c->calls, call);
                c->n_calls++;
                m->async_fn(c->server->ctx, &c->caller, req, call);
                return;
        }
        if (m)
                result = m->fn(c->server->ctx, &c->caller, req, &error);
        if (id)
                answer_result(c, id, result, error);
}

/* Answers an asynchronous call; the client may have gone meanwhile. */
static void call_finish(VrotCall *call, JsonNode *result, GError *error)
{
        Client *c = call->client;

        if (c) {
                c->calls = g_list_remove(c->calls, call);
                c->n_calls--;
                if (call->id)
                        answer_result(c, call->id, result, error);
                if (!c->reading)
                        flush(c);
        }
        if (result)
                json_node_unref(result);
        g_clear_error(&error);
        call_free(call);
}

void vrot_call_return(VrotCall *call, JsonNode *result)
{
        call_finish(call, result, NULL);
}

void vrot_call_return_error(VrotCall *call, GError *error)
{
        call_finish(call, NULL, error);
}

static gboolean on_readable(gint fd, GIOCondition cond, gpointer data)
{
        Client *c = data;
        g_autoptr(GError) error = NULL;
        g_autofree gchar *buf = g_malloc(READ_CHUNK);
        gchar *line;
        gsize len;
        ssize_t n;

        (void)cond;
        n = recv(fd, buf, READ_CHUNK, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return G_SOURCE_CONTINUE;
        if (n <= 0) {
                c->in_watch = 0;
                c->closing = TRUE;
                flush(c);
                return G_SOURCE_REMOVE;
        }
        if (!vrot_jsonrpc_splitter_feed(c->splitter, buf, (gsize)n, &error)) {
                /* Answer what came before, then the error, then hang up. */
                c->closing = TRUE;
        }
        c->reading = TRUE;
        while ((line = vrot_jsonrpc_splitter_pop(c->splitter, &len))) {
                c->last_request = g_get_monotonic_time();
                if (len > 0)
                        handle_line(c, line, len);
                g_free(line);
        }
        c->reading = FALSE;
        c->partial_since = vrot_jsonrpc_splitter_pending(c->splitter)
                           ? (c->partial_since ? c->partial_since : g_get_monotonic_time()) : 0;
        if (error)
                answer(c, vrot_jsonrpc_build_error_from_gerror(NULL, error));
        if (c->closing) {
                c->in_watch = 0;
                flush(c);
                return G_SOURCE_REMOVE;
        }
        flush(c);
        return G_SOURCE_CONTINUE;
}

static gboolean on_accept(gint fd, GIOCondition cond, gpointer data)
{
        VrotServer *s = data;
        Client *c;
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        (void)cond;
        if (cfd < 0)
                return G_SOURCE_CONTINUE;
        c = g_new0(Client, 1);
        c->server = s;
        c->fd = cfd;
        c->splitter = vrot_jsonrpc_splitter_new(VROT_JSONRPC_MAX_LINE);
        c->out = g_string_new(NULL);
        c->last_request = g_get_monotonic_time();
        s->clients = g_list_prepend(s->clients, c);
        s->n_clients++;
        identify(c, s->admin_gid);
        if (s->n_clients > s->limits.max_clients) {
                c->closing = TRUE;
                answer(c, vrot_jsonrpc_build_error(NULL, VROT_JSONRPC_ERROR_BUSY,
                                                   "too many clients, try again later", NULL));
                flush(c);
                return G_SOURCE_CONTINUE;
        }
        c->in_watch = g_unix_fd_add(cfd, G_IO_IN | G_IO_HUP | G_IO_ERR, on_readable, c);
        return G_SOURCE_CONTINUE;
}

/* Half lines that stopped arriving and clients that went quiet are closed. */
static gboolean on_tick(gpointer data)
{
        VrotServer *s = data;
        gint64 now = g_get_monotonic_time();
        GList *l = s->clients;

        while (l) {
                Client *c = l->data;
                l = l->next;
                /* A closing client is one that does not read its answers. */
                if ((c->partial_since && now - c->partial_since > (gint64)s->limits.line_timeout_ms * 1000) ||
                    (c->n_calls == 0 && now - c->last_request > (gint64)s->limits.idle_timeout_ms * 1000))
                        client_free(c);
        }
        return G_SOURCE_CONTINUE;
}

static int listen_on(const gchar *path, gid_t admin_gid, GError **error)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        mode_t mode = admin_gid == (gid_t)-1 ? 0666 : 0660;
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG, "%s: too long", path);
                return -1;
        }
        strcpy(sa.sun_path, path);
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
                unlink(path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            (admin_gid != (gid_t)-1 && chown(path, 0, admin_gid) < 0) ||
            chmod(path, mode) < 0 || listen(fd, 128) < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                            "listening on %s: %s", path, g_strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        return fd;
}

VrotServer *vrot_server_new(const gchar *path, const VrotMethod *methods, gsize n_methods,
                            gpointer ctx, gid_t admin_gid, const VrotServerLimits *limits,
                            GError **error)
{
        VrotServer *s;
        int fd = listen_on(path, admin_gid, error);

        if (fd < 0)
                return NULL;
        s = g_new0(VrotServer, 1);
        s->path = g_strdup(path);
        s->fd = fd;
        s->methods = methods;
        s->n_methods = n_methods;
        s->ctx = ctx;
        s->admin_gid = admin_gid;
        s->limits = limits ? *limits : VROT_SERVER_LIMITS_DEFAULT;
        s->watch = g_unix_fd_add(fd, G_IO_IN, on_accept, s);
        s->tick = g_timeout_add(MIN(s->limits.line_timeout_ms, 1000) / 2 + 1, on_tick, s);
        return s;
}

guint vrot_server_n_clients(const VrotServer *s)
{
        return s->n_clients;
}

void vrot_server_free(VrotServer *s)
{
        if (!s)
                return;
        while (s->clients)
                client_free(s->clients->data);
        g_source_remove(s->watch);
        g_source_remove(s->tick);
        close(s->fd);
        unlink(s->path);
        g_free(s->path);
        g_free(s);
}
