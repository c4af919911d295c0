/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib-unix.h>
#include <stdlib.h>

#include "bytes.h"
#include "forkclient.h"

G_DEFINE_QUARK(vrot-fork-error-quark, vrot_fork_error)

#define MAX_REQUEST 4096
#define START_TIMEOUT_MS 10000

struct VrotForkServer {
        GPid pid;
        gchar *sock_path;
};

struct VrotWorker {
        GPid pid;
        int conn;                       /* the server reports the end here */
        GString *line;
        guint watch;
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

/* Polls until @path accepts a connection, @status_fd has something to say
 * (the child ended) or @timeout_ms pass.  TRUE when listening. */
static gboolean wait_listening(const gchar *path, int status_fd, guint timeout_ms, GError **error)
{
        gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

        for (;;) {
                struct pollfd p = { .fd = status_fd, .events = POLLIN };
                int fd = connect_unix(path);

                if (fd >= 0) {
                        close(fd);
                        return TRUE;
                }
                if (status_fd >= 0 && poll(&p, 1, 0) > 0) {
                        g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_WORKER_EXITED,
                                    "ended before listening on %s", path);
                        return FALSE;
                }
                if (g_get_monotonic_time() > deadline) {
                        g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_TIMEOUT,
                                    "not listening on %s after %u ms", path, timeout_ms);
                        return FALSE;
                }
                g_usleep(2000);
        }
}

VrotForkServer *vrot_fork_server_start(const gchar *vtpm_path, const gchar *sock_path,
                                       const gchar *log_path, GError **error)
{
        const gchar *argv[] = { vtpm_path, "--fork-server", sock_path, NULL };
        g_autoptr(GError) local = NULL;
        VrotForkServer *fs;
        GPid pid;
        int logfd;

        logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (logfd < 0) {
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED, "%s: %s",
                            log_path, g_strerror(errno));
                return NULL;
        }
        if (!g_spawn_async_with_fds(NULL, (gchar **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                    NULL, NULL, &pid, -1, logfd, logfd, &local)) {
                close(logfd);
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED,
                            "starting the fork server: %s", local->message);
                return NULL;
        }
        close(logfd);
        fs = g_new0(VrotForkServer, 1);
        fs->pid = pid;
        fs->sock_path = g_strdup(sock_path);
        if (!wait_listening(sock_path, -1, START_TIMEOUT_MS, error)) {
                g_prefix_error(error, "fork server: ");
                vrot_fork_server_free(fs);
                return NULL;
        }
        return fs;
}

GPid vrot_fork_server_pid(const VrotForkServer *fs)
{
        return fs->pid;
}

void vrot_fork_server_free(VrotForkServer *fs)
{
        if (!fs)
                return;
        kill(fs->pid, SIGTERM);
        (void)waitpid(fs->pid, NULL, 0);
        g_spawn_close_pid(fs->pid);
        g_free(fs->sock_path);
        g_free(fs);
}

static GString *request_of(const VrotWorkerSpec *s)
{
        GString *req = g_string_new(NULL);
        gchar gen[24];

#define OPT(name, value) do { g_string_append(req, name); g_string_append_c(req, '\0'); \
                              g_string_append(req, value); g_string_append_c(req, '\0'); } while (0)
        OPT("--uuid", s->uuid);
        OPT("--state-dir", s->state_dir);
        OPT("--ctrl", s->ctrl_path);
        if (s->data_path)
                OPT("--server", s->data_path);
        if (s->runas)
                OPT("--runas", s->runas);
        if (s->min_generation) {
                g_snprintf(gen, sizeof(gen), "%" G_GUINT64_FORMAT, s->min_generation);
                OPT("--min-generation", gen);
        }
        if (s->not_need_init)
                OPT("--flags", "not-need-init,startup-clear");
#undef OPT
        return req;
}

/* Sends the request with the key (and the log) descriptor; reads "ok PID". */
static int send_request(VrotForkServer *fs, const GString *req, int key_fd, int log_fd,
                        GPid *ret_pid, GError **error)
{
        union {
                char b[CMSG_SPACE(sizeof(int) * 2)];
                struct cmsghdr align;
        } ctl;
        uint8_t hdr[4];
        struct iovec iov[2] = { { hdr, 4 }, { req->str, req->len } };
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2,
                              .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b) };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        int fds[2] = { key_fd, log_fd };
        char line[128];
        ssize_t n;
        int conn;

        vrot_put_be32(hdr, (uint32_t)req->len);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(fds));
        memcpy(CMSG_DATA(cm), fds, sizeof(fds));
        conn = connect_unix(fs->sock_path);
        if (conn < 0 || sendmsg(conn, &msg, MSG_NOSIGNAL) != (ssize_t)(4 + req->len)) {
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED,
                            "fork server at %s: %s", fs->sock_path, g_strerror(conn < 0 ? -conn : errno));
                if (conn >= 0)
                        close(conn);
                return -1;
        }
        /* The first line is short and comes at once ("ok PID" / "error ..."). */
        n = recv(conn, line, sizeof(line) - 1, 0);
        line[n > 0 ? n : 0] = '\0';
        if (n <= 0 || strncmp(line, "ok ", 3) != 0 || !strchr(line, '\n')) {
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED,
                            "fork server refused: %s", n > 0 ? g_strchomp(line) : "no answer");
                close(conn);
                return -1;
        }
        *ret_pid = (GPid)atoi(line + 3);
        return conn;
}

static gboolean on_status(gint fd, GIOCondition cond, gpointer data)
{
        VrotWorker *w = data;
        char buf[64];
        ssize_t n = read(fd, buf, sizeof(buf));
        gint code = -1;
        gboolean signaled = FALSE;

        (void)cond;
        if (n > 0) {
                g_string_append_len(w->line, buf, n);
                if (!strchr(w->line->str, '\n'))
                        return G_SOURCE_CONTINUE;
        }
        if (g_str_has_prefix(w->line->str, "exit "))
                code = atoi(w->line->str + 5);
        else if (g_str_has_prefix(w->line->str, "signal ")) {
                signaled = TRUE;
                code = atoi(w->line->str + 7);
        }
        w->watch = 0;
        if (w->on_exit)
                w->on_exit(w, signaled, code, w->user_data);
        return G_SOURCE_REMOVE;
}

VrotWorker *vrot_fork_server_spawn(VrotForkServer *fs, const VrotWorkerSpec *spec, int key_fd,
                                   guint timeout_ms, VrotWorkerExitFunc on_exit,
                                   gpointer user_data, GError **error)
{
        g_autoptr(GString) req = request_of(spec);
        g_autoptr(VrotWorker) w = NULL;
        int log_fd;
        GPid pid = 0;
        int conn;

        log_fd = open(spec->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (log_fd < 0) {
                g_set_error(error, VROT_FORK_ERROR, VROT_FORK_ERROR_FAILED, "%s: %s",
                            spec->log_path, g_strerror(errno));
                return NULL;
        }
        conn = send_request(fs, req, key_fd, log_fd, &pid, error);
        close(log_fd);
        if (conn < 0)
                return NULL;
        w = g_new0(VrotWorker, 1);
        w->pid = pid;
        w->conn = conn;
        w->line = g_string_new(NULL);
        if (!wait_listening(spec->ctrl_path, conn, timeout_ms, error)) {
                g_prefix_error(error, "worker %d for %s: ", (int)pid, spec->uuid);
                return NULL;
        }
        w->on_exit = on_exit;
        w->user_data = user_data;
        w->watch = g_unix_fd_add(conn, G_IO_IN | G_IO_HUP | G_IO_ERR, on_status, w);
        return g_steal_pointer(&w);
}

GPid vrot_worker_pid(const VrotWorker *w)
{
        return w->pid;
}

void vrot_worker_free(VrotWorker *w)
{
        if (!w)
                return;
        if (w->watch)
                g_source_remove(w->watch);
        close(w->conn);
        g_string_free(w->line, TRUE);
        g_free(w);
}
