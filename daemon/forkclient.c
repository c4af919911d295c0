/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib-unix.h>

#include "bytes.h"
#include "fdwatch.h"
#include "forkclient.h"
#include "proc.h"

G_DEFINE_QUARK(vrot-fork-error-quark, vrot_fork_error)

#define SERVER_START_TIMEOUT_MS 10000
#define ANSWER_TIMEOUT_MS 5000          /* "ok PID" comes right after fork() */
#define STOP_TIMEOUT_MS 5000

struct VrotForkServer {
        GPid pid;
        gboolean adopted;               /* not our child: a predecessor's */
        gchar *sock_path;
        gchar *vtpm_path, *log_path;    /* to start it again if it died */
};

struct VrotWorker {
        GPid pid;                       /* 0 until "ok PID" */
        int conn;                       /* the server's news, -1 once closed */
        int pidfd;                      /* when the server died: the worker itself */
        GString *line;
        gboolean ready, ended, signaled;
        gint code;
        gchar *refusal;                 /* the server's "error ..." */
        gchar *log_path;                /* its stderr, NULL for an adopted one */
        guint watch, deadline, kick;
        gboolean watched;
        gboolean ready_told, end_told;  /* news handed to the callbacks */
        VrotWorkerReadyFunc on_ready;
        VrotWorkerExitFunc on_exit;
        gpointer user_data;
};

/* Connects to a UNIX stream socket; -errno on failure. */
static int connect_unix(const gchar *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = errno;
                close(fd);
                return -e;
        }
        return fd;
}

/* ---- the fork server ---------------------------------------------------- */

/* The server is started once per daemon: polling its socket is fine here. */
static gboolean wait_server(VrotForkServer *fs, GError **error)
{
        gint64 deadline = g_get_monotonic_time() + SERVER_START_TIMEOUT_MS * 1000;

        for (;;) {
                int fd = connect_unix(fs->sock_path);
                if (fd >= 0) {
                        close(fd);
                        return TRUE;
                }
                if (waitpid(fs->pid, NULL, WNOHANG) == fs->pid) {
                        fs->pid = 0;
                        g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED,
                                    "fork server ended before listening on %s", fs->sock_path);
                        return FALSE;
                }
                if (g_get_monotonic_time() > deadline) {
                        g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_TIMEOUT,
                                    "fork server not listening on %s after %d ms", fs->sock_path,
                                    SERVER_START_TIMEOUT_MS);
                        return FALSE;
                }
                g_usleep(2000);
        }
}

static gboolean launch(VrotForkServer *fs, GError **error)
{
        const gchar *argv[] = { fs->vtpm_path, "--fork-server", fs->sock_path, NULL };
        g_autoptr(GError) local = NULL;
        int logfd = open(fs->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

        if (logfd < 0) {
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED, "%s: %s", fs->log_path,
                            g_strerror(errno));
                return FALSE;
        }
        if (!g_spawn_async_with_fds(NULL, (gchar **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
                                    &fs->pid, -1, logfd, logfd, &local)) {
                close(logfd);
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED,
                            "starting the fork server: %s", local->message);
                return FALSE;
        }
        close(logfd);
        fs->adopted = FALSE;
        return wait_server(fs, error);
}

VrotForkServer *vrot_fork_server_start(const gchar *vtpm_path, const gchar *sock_path,
                                       const gchar *log_path, GError **error)
{
        g_autoptr(VrotForkServer) fs = g_new0(VrotForkServer, 1);

        fs->sock_path = g_strdup(sock_path);
        fs->vtpm_path = g_strdup(vtpm_path);
        fs->log_path = g_strdup(log_path);
        if (!launch(fs, error)) {
                g_prefix_error(error, "fork server: ");
                return NULL;
        }
        return g_steal_pointer(&fs);
}

GPid vrot_fork_server_pid(const VrotForkServer *fs)
{
        return fs->pid;
}

/* Ends the server: our child is reaped, an adopted one watched by pidfd. */
static void stop_server(VrotForkServer *fs)
{
        int pidfd;

        if (fs->pid <= 0)
                return;
        pidfd = fs->adopted ? vrot_proc_open(fs->pid) : -1;
        kill(fs->pid, SIGTERM);
        if (!fs->adopted) {
                (void)waitpid(fs->pid, NULL, 0);
        } else if (pidfd >= 0) {
                struct pollfd p = { .fd = pidfd, .events = POLLIN };
                (void)poll(&p, 1, STOP_TIMEOUT_MS);
                close(pidfd);
        }
        fs->pid = 0;
}

void vrot_fork_server_free(VrotForkServer *fs)
{
        if (!fs)
                return;
        stop_server(fs);
        g_free(fs->sock_path);
        g_free(fs->vtpm_path);
        g_free(fs->log_path);
        g_free(fs);
}

/* ---- requests ----------------------------------------------------------- */

static GString *request_of(const VrotWorkerSpec *s)
{
        GString *req = g_string_new(NULL);
        g_autoptr(GString) flags = g_string_new(NULL);
        gchar gen[24];

#define OPT(name, value) do { g_string_append(req, name); g_string_append_c(req, '\0'); \
                              g_string_append(req, value); g_string_append_c(req, '\0'); } while (0)
        OPT("--uuid", s->uuid);
        OPT("--state-dir", s->state_dir);
        OPT("--ctrl", s->ctrl_path);
        if (s->data_path)
                OPT("--server", s->data_path);
        if (s->migrate_path)
                OPT("--migrate", s->migrate_path);
        if (s->runas)
                OPT("--runas", s->runas);
        if (s->min_generation) {
                g_snprintf(gen, sizeof(gen), "%" G_GUINT64_FORMAT, s->min_generation);
                OPT("--min-generation", gen);
        }
        if (s->not_need_init)
                g_string_append(flags, ",not-need-init,startup-clear");
        if (s->defer_writes)
                g_string_append(flags, ",defer-writes");
        /* The worker keeps the request's connection (its --ready-fd), whose
         * other end is ours and closes when this daemon ends, however it
         * ends: nothing has to know the worker's PID for it to end then. */
        if (s->end_with_daemon)
                g_string_append(flags, ",end-with-starter");
        if (s->prefault)
                g_string_append(flags, ",prefault");
        if (flags->len)
                OPT("--flags", flags->str + 1);
#undef OPT
        return req;
}

/* Sends one request (with up to two descriptors); returns the connection
 * its answers come on, or -errno. */
static int send_request(const gchar *sock_path, const GString *req, const int *fds, gsize nfds)
{
        union {
                char b[CMSG_SPACE(sizeof(int) * 2)];
                struct cmsghdr align;
        } ctl;
        uint8_t hdr[4];
        struct iovec iov[2] = { { hdr, 4 }, { req->str, req->len } };
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
        int conn, e;

        g_return_val_if_fail(nfds <= 2, -EINVAL);
        vrot_put_be32(hdr, (uint32_t)req->len);
        if (nfds > 0) {
                struct cmsghdr *cm;
                msg.msg_control = ctl.b;
                msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
                cm = CMSG_FIRSTHDR(&msg);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
                memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
        }
        conn = connect_unix(sock_path);
        if (conn < 0)
                return conn;
        if (sendmsg(conn, &msg, MSG_NOSIGNAL) == (ssize_t)(4 + req->len))
                return conn;
        e = errno;
        close(conn);
        return -e;
}

/* A request that must reach the server: one that died is started again. */
static int request(VrotForkServer *fs, const GString *req, const int *fds, gsize nfds, GError **error)
{
        g_autoptr(GError) local = NULL;
        int conn = send_request(fs->sock_path, req, fds, nfds);

        if (conn >= 0 || (conn != -ECONNREFUSED && conn != -ENOENT))
                goto out;
        g_warning("the fork server on %s is gone: starting it again", fs->sock_path);
        stop_server(fs);
        if (!launch(fs, &local)) {
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED, "fork server: %s",
                            local->message);
                return -1;
        }
        conn = send_request(fs->sock_path, req, fds, nfds);
out:
        if (conn < 0)
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED, "fork server at %s: %s",
                            fs->sock_path, g_strerror(-conn));
        return conn;
}

/* Reads from @fd into @line until it holds a whole line or @timeout_ms
 * pass; returns the line (transfer full) without its newline, or NULL. */
static gchar *read_line(int fd, GString *line, guint timeout_ms)
{
        gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
        const gchar *nl;

        while (!(nl = memchr(line->str, '\n', line->len))) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                gint64 left = (deadline - g_get_monotonic_time()) / 1000;
                char buf[256];
                ssize_t n;

                if (left <= 0 || poll(&p, 1, (int)left) <= 0)
                        return NULL;
                n = read(fd, buf, sizeof(buf));
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                if (n <= 0)
                        return NULL;
                g_string_append_len(line, buf, n);
        }
        {
                gchar *out = g_strndup(line->str, nl - line->str);
                g_string_erase(line, 0, nl - line->str + 1);
                return out;
        }
}

/* ---- adoption ----------------------------------------------------------- */

static gboolean parse_worker_line(const gchar *line, GHashTable *workers)
{
        g_auto(GStrv) f = g_strsplit(line, " ", 0);
        gint64 pid;

        if (g_strv_length(f) != 3 || !g_str_equal(f[0], "worker") ||
            !g_ascii_string_to_signed(f[1], 10, 1, G_MAXINT32, &pid, NULL))
                return FALSE;
        g_hash_table_insert(workers, g_strdup(f[2]), GINT_TO_POINTER((gint)pid));
        return TRUE;
}

VrotForkServer *vrot_fork_server_adopt(const gchar *vtpm_path, const gchar *sock_path,
                                       const gchar *log_path, GHashTable **ret_workers,
                                       GError **error)
{
        g_autoptr(GString) req = g_string_new_len("--list", sizeof("--list"));     /* NUL included */
        g_autoptr(GString) buf = g_string_new(NULL);
        g_autoptr(GHashTable) workers = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        g_autoptr(VrotForkServer) fs = NULL;
        struct ucred cred = { 0 };
        socklen_t len = sizeof(cred);
        int conn;

        conn = send_request(sock_path, req, NULL, 0);
        if (conn < 0) {
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED, "no fork server on %s: %s",
                            sock_path, g_strerror(-conn));
                return NULL;
        }
        if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid <= 0)
                cred.pid = 0;
        for (;;) {
                g_autofree gchar *line = read_line(conn, buf, ANSWER_TIMEOUT_MS);
                if (line && g_str_equal(line, "end"))
                        break;
                if (!line || !parse_worker_line(line, workers)) {
                        close(conn);
                        g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED,
                                    "the fork server on %s answered --list with %s%s%s", sock_path,
                                    line ? "'" : "nothing", line ? line : "", line ? "'" : "");
                        return NULL;
                }
        }
        close(conn);
        fs = g_new0(VrotForkServer, 1);
        fs->pid = cred.pid;
        fs->adopted = TRUE;
        fs->sock_path = g_strdup(sock_path);
        fs->vtpm_path = g_strdup(vtpm_path);
        fs->log_path = g_strdup(log_path);
        *ret_workers = g_steal_pointer(&workers);
        return g_steal_pointer(&fs);
}

/* ---- workers ------------------------------------------------------------ */

static VrotWorker *worker_new(int conn)
{
        VrotWorker *w = g_new0(VrotWorker, 1);

        w->conn = conn;
        w->pidfd = -1;
        w->line = g_string_new(NULL);
        /* Non-blocking: a watch may fire for bytes that resolve_pid() has
         * read meanwhile (in the same main-loop iteration); a blocking read
         * then hung the daemon. */
        (void)g_unix_set_fd_nonblocking(conn, TRUE, NULL);
        return w;
}

/* One line of news: "ok PID", "ready", "exit N" or "signal N". */
static void take_line(VrotWorker *w, const gchar *line)
{
        gint64 v = 0;

        if (g_str_has_prefix(line, "ok ") && g_ascii_string_to_signed(line + 3, 10, 1, G_MAXINT32, &v, NULL))
                w->pid = (GPid)v;
        else if (g_str_equal(line, "ready"))
                w->ready = TRUE;
        else if (g_str_has_prefix(line, "exit ") || g_str_has_prefix(line, "signal ")) {
                w->signaled = line[0] == 's';
                w->code = atoi(strchr(line, ' ') + 1);
                w->ended = TRUE;
        } else if (g_str_has_prefix(line, "error ") && w->pid == 0) {
                g_free(w->refusal);
                w->refusal = g_strdup(line + 6);
                w->ended = TRUE;
                w->code = -1;
        }
}

/* Takes every whole line received so far. */
static void take_lines(VrotWorker *w)
{
        const gchar *nl;

        while ((nl = memchr(w->line->str, '\n', w->line->len))) {
                g_autofree gchar *line = g_strndup(w->line->str, nl - w->line->str);
                g_string_erase(w->line, 0, nl - w->line->str + 1);
                take_line(w, line);
        }
}

VrotWorker *vrot_fork_server_spawn(VrotForkServer *fs, const VrotWorkerSpec *spec, int key_fd,
                                   GError **error)
{
        g_autoptr(GString) req = request_of(spec);
        int fds[2] = { key_fd, -1 };
        VrotWorker *w;
        int conn;

        fds[1] = open(spec->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fds[1] < 0) {
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED, "%s: %s", spec->log_path,
                            g_strerror(errno));
                return NULL;
        }
        conn = request(fs, req, fds, 2, error);
        close(fds[1]);
        if (conn < 0)
                return NULL;
        /* Not waiting for "ok PID": in a storm the server forks while the
         * daemon sends the next requests (vrot_worker_pid() waits if asked). */
        w = worker_new(conn);
        w->log_path = g_strdup(spec->log_path);
        return w;
}

VrotWorker *vrot_fork_server_watch(VrotForkServer *fs, GPid pid, GError **error)
{
        g_autoptr(GString) req = g_string_new(NULL);
        g_autoptr(VrotWorker) w = NULL;
        g_autofree gchar *line = NULL;
        int conn;

        g_string_append_printf(req, "--watch%c%d%c", '\0', (int)pid, '\0');
        conn = request(fs, req, NULL, 0, error);
        if (conn < 0)
                return NULL;
        w = worker_new(conn);
        line = read_line(conn, w->line, ANSWER_TIMEOUT_MS);
        if (!line || !g_str_has_prefix(line, "ok ")) {
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED, "fork server: watching %d: %s",
                            (int)pid, line ? line : "no answer");
                return NULL;
        }
        take_line(w, line);
        w->ready = TRUE;
        return g_steal_pointer(&w);
}

static gboolean on_kick(gpointer data);

/* Reads the news until the server's "ok PID" (or the end) has come. */
static void resolve_pid(VrotWorker *w)
{
        while (w->pid == 0 && !w->ended && w->conn >= 0) {
                g_autofree gchar *line = read_line(w->conn, w->line, ANSWER_TIMEOUT_MS);
                if (!line) {
                        w->ended = TRUE;
                        w->code = -1;
                        w->refusal = g_strdup("no answer from the fork server");
                        return;
                }
                take_line(w, line);
        }
        take_lines(w);
        /* What was read here ("ready", even the end) never wakes the watch
         * on the descriptor: hand it over from the main loop. */
        if (w->watched && !w->kick && ((w->ready && !w->ready_told) || (w->ended && !w->end_told)))
                w->kick = g_idle_add(on_kick, w);
}

GPid vrot_worker_pid(VrotWorker *w)
{
        resolve_pid(w);
        return w->pid;
}

/* Signals the worker, never "pid 0" (our own process group). */
static void kill_worker(VrotWorker *w, int sig)
{
        resolve_pid(w);
        if (w->pid > 0)
                kill(w->pid, sig);
}

gchar *vrot_worker_log_last_line(const gchar *path)
{
        g_autofree gchar *text = NULL;
        gsize len;
        gchar *end, *start;

        if (!path || !g_file_get_contents(path, &text, &len, NULL))
                return NULL;
        g_strchomp(text);
        end = text + strlen(text);
        start = g_strrstr(text, "\n");
        start = start ? start + 1 : text;
        return end > start ? g_strndup(start, MIN((gsize)(end - start), 300)) : NULL;
}

/* Why a worker that never listened is gone, as an error. */
static void set_end_error(const VrotWorker *w, GError **error)
{
        g_autofree gchar *said = NULL;

        if (w->refusal)
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED, "fork server refused: %s",
                            w->refusal);
        else if (!w->signaled && w->code == 3)
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_REFUSED,
                            "worker %d refused its state (exit 3)", (int)w->pid);
        else if ((said = vrot_worker_log_last_line(w->log_path)))
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_WORKER_EXITED,
                            "worker %d ended before listening (%s %d): %s", (int)w->pid,
                            w->signaled ? "signal" : "exit", w->code, said);
        else
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_WORKER_EXITED,
                            "worker %d ended before listening (%s %d)", (int)w->pid,
                            w->signaled ? "signal" : "exit", w->code);
}

/* The connection closed without an end: the server died, and the worker
 * (if alive) is re-parented to us, the subreaper.  Watch it directly. */
static void lost_server(VrotWorker *w)
{
        g_clear_handle_id(&w->watch, vrot_fd_watch_remove);    /* before the close */
        close(w->conn);
        w->conn = -1;
        w->pidfd = w->pid > 0 ? vrot_proc_open(w->pid) : -1;
        if (w->pidfd < 0) {
                /* Gone already, reaped by someone else: nothing to learn. */
                w->ended = TRUE;
                w->signaled = TRUE;
                w->code = SIGKILL;
        }
}

/* Collects the status of a worker whose pidfd said it ended. */
static void reap_pidfd(VrotWorker *w)
{
        siginfo_t si = { 0 };

        if (waitid(P_PIDFD, (id_t)w->pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid != 0) {
                w->signaled = si.si_code != CLD_EXITED;
                w->code = si.si_status;
        } else {
                w->signaled = TRUE;     /* not our child after all: unknown */
                w->code = SIGKILL;
        }
        w->ended = TRUE;
        g_clear_handle_id(&w->watch, vrot_fd_watch_remove);    /* before the close */
        close(w->pidfd);
        w->pidfd = -1;
}

/* Reads what is there; FALSE once nothing more can come. */
static gboolean pump(VrotWorker *w)
{
        char buf[256];
        ssize_t n;

        if (w->pidfd >= 0) {
                reap_pidfd(w);
                return FALSE;
        }
        n = read(w->conn, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return TRUE;
        if (n <= 0) {
                if (!w->ended)
                        lost_server(w);
                return !w->ended;
        }
        g_string_append_len(w->line, buf, n);
        take_lines(w);
        return !w->ended;
}

static int news_fd(const VrotWorker *w)
{
        return w->pidfd >= 0 ? w->pidfd : w->conn;
}

gboolean vrot_worker_wait_ready(VrotWorker *w, guint timeout_ms, GError **error)
{
        gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

        g_return_val_if_fail(!w->watch, FALSE);
        while (!w->ready && !w->ended) {
                struct pollfd p = { .fd = news_fd(w), .events = POLLIN };
                gint64 left = (deadline - g_get_monotonic_time()) / 1000;

                if (left <= 0) {
                        kill_worker(w, SIGKILL);
                        g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_TIMEOUT,
                                    "worker %d not listening after %u ms: killed", (int)w->pid, timeout_ms);
                        return FALSE;
                }
                if (poll(&p, 1, (int)left) > 0)
                        (void)pump(w);
        }
        if (w->ready)
                return TRUE;
        set_end_error(w, error);
        return FALSE;
}

static gboolean on_news(gint fd, GIOCondition cond, gpointer data);

static void rewatch(VrotWorker *w)
{
        /* One watch per running worker: fdwatch.h, whose cost does not
         * grow with their number. */
        vrot_fd_watch_remove(w->watch);
        w->watch = vrot_fd_watch_add(news_fd(w), G_IO_IN | G_IO_HUP | G_IO_ERR, on_news, w);
}

static void report_ready(VrotWorker *w, const GError *error)
{
        VrotWorkerReadyFunc fn = w->on_ready;

        g_clear_handle_id(&w->deadline, g_source_remove);
        w->on_ready = NULL;
        w->ready_told = TRUE;
        if (fn)
                fn(w, error, w->user_data);
}

/* Hands what is known and not yet told to the callbacks; FALSE once the
 * worker's end has been told (nothing more will come). */
static gboolean deliver(VrotWorker *w)
{
        if (w->ready && !w->ready_told)
                report_ready(w, NULL);
        if (!w->ended || w->end_told)
                return !w->end_told;
        w->end_told = TRUE;
        g_clear_handle_id(&w->watch, vrot_fd_watch_remove);
        if (!w->ready_told) {
                g_autoptr(GError) error = NULL;
                set_end_error(w, &error);
                report_ready(w, error);
        } else if (w->ready && w->on_exit) {
                w->on_exit(w, w->signaled, w->code, w->user_data);
        }
        return FALSE;
}

static gboolean on_kick(gpointer data)
{
        VrotWorker *w = data;

        w->kick = 0;
        (void)deliver(w);
        return G_SOURCE_REMOVE;
}

static gboolean on_news(gint fd, GIOCondition cond, gpointer data)
{
        VrotWorker *w = data;
        int before = news_fd(w);

        (void)fd, (void)cond;
        (void)pump(w);
        if (w->ended) {
                w->watch = 0;           /* deliver() must not remove this source */
                (void)deliver(w);
                return G_SOURCE_REMOVE;
        }
        (void)deliver(w);
        if (news_fd(w) != before) {
                w->watch = 0;
                rewatch(w);
                return G_SOURCE_REMOVE;
        }
        return G_SOURCE_CONTINUE;
}

static gboolean on_deadline(gpointer data)
{
        VrotWorker *w = data;
        g_autoptr(GError) error = NULL;

        w->deadline = 0;
        kill_worker(w, SIGKILL);
        g_set_error(&error, VROT_FORK_ERROR, VROT_FORK_ERROR_TIMEOUT,
                    "worker %d not listening in time: killed", (int)w->pid);
        report_ready(w, error);
        return G_SOURCE_REMOVE;
}

void vrot_worker_watch(VrotWorker *w, guint timeout_ms, VrotWorkerReadyFunc on_ready,
                       VrotWorkerExitFunc on_exit, gpointer user_data)
{
        g_return_if_fail(!w->watched && !w->ended);
        w->watched = TRUE;
        w->on_ready = on_ready;
        w->on_exit = on_exit;
        w->user_data = user_data;
        /* "ready" may have come with "ok PID", before anyone watched. */
        if (w->ready)
                w->kick = g_idle_add(on_kick, w);
        else
                w->deadline = g_timeout_add(timeout_ms, on_deadline, w);
        rewatch(w);
}

gboolean vrot_worker_settle(VrotWorker *w, guint wait_ms)
{
        gint64 deadline = g_get_monotonic_time() + (gint64)wait_ms * 1000;

        if (w->end_told)
                return TRUE;
        /* Gone means reaped already: its report is written or on its way. */
        if (!w->watched || w->pid <= 0 || kill(w->pid, 0) == 0 || errno != ESRCH)
                return FALSE;
        while (!w->ended) {
                struct pollfd p = { .fd = news_fd(w), .events = POLLIN };
                gint64 left = (deadline - g_get_monotonic_time()) / 1000;

                if (left <= 0 || poll(&p, 1, (int)left) <= 0)
                        return FALSE;
                (void)pump(w);
        }
        (void)deliver(w);       /* @w may be freed by its callback now */
        return TRUE;
}

void vrot_worker_free(VrotWorker *w)
{
        if (!w)
                return;
        g_clear_handle_id(&w->watch, vrot_fd_watch_remove);
        g_clear_handle_id(&w->deadline, g_source_remove);
        g_clear_handle_id(&w->kick, g_source_remove);
        if (w->conn >= 0)
                close(w->conn);
        if (w->pidfd >= 0)
                close(w->pidfd);
        g_string_free(w->line, TRUE);
        g_free(w->refusal);
        g_free(w->log_path);
        g_free(w);
}
