/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The fork server: one process that has loaded and relocated libtpms and
 * OpenSSL and initialised OpenSSL's tables, and forks a worker per request.
 * The children share those pages copy-on-write instead of each building its
 * own, which is most of a freshly exec'ed worker's private memory (README
 * "Worker memory" has the figures).  Each child runs exactly what
 * `vrot-vtpm OPTIONS` runs (vtpm_run), so both paths are the same worker.
 *
 * Protocol on the server's UNIX socket, one request per connection:
 *   client -> server  u32 big-endian N, then N bytes: the worker's options,
 *                     each NUL-terminated, without --key-fd and --ready-fd;
 *                     SCM_RIGHTS: the key descriptor first (absent with
 *                     --insecure-plaintext), then optionally a descriptor
 *                     the worker uses as its stderr
 *   server -> client  "ok PID\n", or "error MESSAGE\n" and close;
 *                     "ready\n" from the worker once its sockets listen
 *                     (it may come before "ok": the worker writes it);
 *                     "exit STATUS\n" or "signal N\n" when the worker
 *                     ends, then close
 * Two requests let a restarted vrotd adopt the workers of its predecessor
 * (which the server still parents): the options "--list" (answer: a line
 * "worker PID UUID" per worker, then "end") and "--watch PID" (answer
 * "ok PID", then the end of that worker as above; its previous watcher
 * hears nothing more).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libtpms/tpm_library.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "bytes.h"
#include "log.h"
#include "run.h"
#include "seal.h"
#include "tpm.h"

#define MAX_REQUEST 4096
#define MAX_ARGS 48
#define MAX_CHILDREN 4096
#define REQUEST_TIMEOUT_S 2

typedef struct Child {
        pid_t pid;
        int conn;                 /* where its exit is reported, -1: nobody listens */
        char uuid[40];            /* its --uuid, for --list */
} Child;

typedef struct Request {
        char buf[MAX_REQUEST + 1];
        char *argv[MAX_ARGS + 6];      /* + --key-fd N --ready-fd N NULL */
        int argc;
        int fds[2];
        int nfds;
} Request;

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t child_exited;

static void on_stop(int sig)
{
        stop_signal = sig;
}

static void on_child(int sig)
{
        (void)sig;
        child_exited = 1;
}

/* Warm up everything a worker shares: OpenSSL's error strings, providers,
 * DRBG and AES-GCM method, and libtpms's version choice. */
static void preload(void)
{
        static const uint8_t zero[16];
        VrotSealer s = { .key = NULL };
        uint8_t buf[16], *blob = NULL, *plain = NULL;
        size_t len = 0, plen = 0;

        OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CRYPTO_STRINGS | OPENSSL_INIT_ADD_ALL_CIPHERS |
                            OPENSSL_INIT_ADD_ALL_DIGESTS, NULL);
        (void)RAND_bytes(buf, sizeof(buf));
        if (vrot_seal(&s, VROT_BLOB_PERMANENT, 1, zero, sizeof(zero), &blob, &len, NULL) == 0 &&
            vrot_seal_open(&s, VROT_BLOB_PERMANENT, blob, len, &plain, &plen, NULL, NULL) == 0)
                free(plain);
        free(blob);
        (void)TPMLIB_ChooseTPMVersion(TPMLIB_TPM_VERSION_2);
        vtpm_tpm_map_bss();
}

static void say(int conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(int conn, const char *fmt, ...)
{
        char line[256];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (n > 0)
                (void)!send(conn, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1,
                            MSG_NOSIGNAL);
}

/* Reads one request; returns NULL on success or what is wrong with it. */
static const char *read_request(int conn, Request *r)
{
        union {
                char b[CMSG_SPACE(sizeof(int) * 2)];
                struct cmsghdr align;
        } ctl;
        uint8_t hdr[4];
        struct iovec iov[2] = { { hdr, 4 }, { r->buf, MAX_REQUEST } };
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2,
                              .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b) };
        struct timeval tv = { .tv_sec = REQUEST_TIMEOUT_S };
        ssize_t n, got;
        uint32_t want;

        r->nfds = 0;
        setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); n > 0 && cm; cm = CMSG_NXTHDR(&msg, cm)) {
                size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; cm->cmsg_type == SCM_RIGHTS && i < k; i++) {
                        int fd;
                        memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                        if (r->nfds < 2)
                                r->fds[r->nfds++] = fd;
                        else
                                close(fd);
                }
        }
        if (n == 0)
                return "";              /* a connection to see that we listen */
        if (n < 4)
                return "request too short";
        want = vrot_get_be32(hdr);
        if (want == 0 || want > MAX_REQUEST)
                return "request length out of range";
        for (got = n - 4; got < (ssize_t)want; got += n) {
                n = recv(conn, r->buf + got, want - (size_t)got, 0);
                if (n <= 0)
                        return "request cut short";
        }
        if (got != (ssize_t)want || r->buf[want - 1] != '\0')
                return "malformed request";
        r->argc = 0;
        r->argv[r->argc++] = (char *)"vrot-vtpm";
        for (char *p = r->buf; p < r->buf + want; p += strlen(p) + 1) {
                if (r->argc >= MAX_ARGS)
                        return "too many options";
                if (strncmp(p, "--key-fd", 8) == 0 || strncmp(p, "--ready-fd", 10) == 0 ||
                    strncmp(p, "--fork-server", 13) == 0)
                        return "--key-fd, --ready-fd and --fork-server are not request options";
                r->argv[r->argc++] = p;
        }
        return NULL;
}

static bool has_option(const Request *r, const char *opt)
{
        for (int i = 1; i < r->argc; i++)
                if (strcmp(r->argv[i], opt) == 0)
                        return true;
        return false;
}

/* The value of "--name VALUE" in the request, or NULL. */
static const char *option_value(const Request *r, const char *opt)
{
        for (int i = 1; i + 1 < r->argc; i++)
                if (strcmp(r->argv[i], opt) == 0)
                        return r->argv[i + 1];
        return NULL;
}

/* Moves @fd to exactly @target (which must be free or @fd itself). */
static int move_fd(int fd, int target)
{
        if (fd == target)
                return fd;
        if (dup2(fd, target) != target)
                return -1;
        close(fd);
        return target;
}

/* In the child: become the worker the request describes; never returns.
 * It keeps stdio, the key at descriptor 3 and the request's connection at
 * the next one, on which it says "ready" (--ready-fd). */
static void become_worker(Request *r, int listen_fd, int conn, const VtpmFilter *filter)
{
        sigset_t none;
        char key_arg[16], ready_arg[16];
        int key_fd = -1, log_fd = -1, i = 0, next = 3;
        VtpmArgs a;

        sigemptyset(&none);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        close(listen_fd);
        /* A process group of its own, out of reach of a terminal's job
         * control, but not a session: a new session is a new scheduling
         * autogroup, which would put every worker on a par with vrotd
         * and its fork server together (bench/README.md "Boot storm"). */
        setpgid(0, 0);
        if (!has_option(r, "--insecure-plaintext") && r->nfds > i)
                key_fd = r->fds[i++];
        if (r->nfds > i)
                log_fd = r->fds[i++];
        if (log_fd >= 0) {
                dup2(log_fd, STDERR_FILENO);
                close(log_fd);
        }
        /* Out of the way of 3 and 4 first, so that neither move clobbers
         * the other descriptor. */
        conn = fcntl(conn, F_DUPFD_CLOEXEC, 64);
        if (conn < 0 || (key_fd >= 0 && (key_fd = fcntl(key_fd, F_DUPFD_CLOEXEC, 64)) < 0))
                _exit(EXIT_FAILURE);
        if (key_fd >= 0) {
                key_fd = move_fd(key_fd, next++);
                snprintf(key_arg, sizeof(key_arg), "%d", key_fd);
                r->argv[r->argc++] = (char *)"--key-fd";
                r->argv[r->argc++] = key_arg;
        }
        conn = move_fd(conn, next++);
        snprintf(ready_arg, sizeof(ready_arg), "%d", conn);
        r->argv[r->argc++] = (char *)"--ready-fd";
        r->argv[r->argc++] = ready_arg;
        /* Nothing of the server's but stdio, the key and the connection. */
        close_range((unsigned)next, ~0u, 0);
        r->argv[r->argc] = NULL;
        if (conn < 0 || vtpm_args_parse(r->argc, r->argv, &a) < 0 || a.fork_server)
                _exit(VTPM_EXIT_USAGE);
        _exit(vtpm_run(&a, filter));
}

/* "--list": every worker this server parents, for a restarted vrotd. */
static void list_children(int conn, const Child *kids, size_t nkids)
{
        for (size_t i = 0; i < nkids; i++)
                say(conn, "worker %d %s\n", (int)kids[i].pid, kids[i].uuid[0] ? kids[i].uuid : "-");
        say(conn, "end\n");
        close(conn);
}

/* "--watch PID": @conn hears that worker's end from now on. */
static void watch_child(int conn, const char *arg, Child *kids, size_t nkids)
{
        char *end;
        long pid = strtol(arg, &end, 10);

        for (size_t i = 0; *arg && !*end && pid > 0 && i < nkids; i++) {
                if (kids[i].pid != (pid_t)pid)
                        continue;
                if (kids[i].conn >= 0)
                        close(kids[i].conn);
                kids[i].conn = conn;
                say(conn, "ok %d\n", (int)pid);
                log_info("fork server: worker %ld has a new watcher", pid);
                return;
        }
        say(conn, "error no worker %s\n", arg);
        close(conn);
}

static void fork_worker(Request *r, int listen_fd, int conn, const VtpmFilter *filter, Child *kids,
                        size_t *nkids)
{
        const char *uuid = option_value(r, "--uuid");
        pid_t pid;

        if (*nkids >= MAX_CHILDREN) {
                log_warn("fork server: refused a request: too many workers");
                say(conn, "error too many workers\n");
                close(conn);
                return;
        }
        pid = fork();
        if (pid == 0)
                become_worker(r, listen_fd, conn, filter);
        if (pid < 0) {
                say(conn, "error fork: %s\n", strerror(errno));
                close(conn);
                return;
        }
        kids[*nkids] = (Child){ .pid = pid, .conn = conn };
        snprintf(kids[*nkids].uuid, sizeof(kids[*nkids].uuid), "%s", uuid ? uuid : "");
        (*nkids)++;
        say(conn, "ok %d\n", (int)pid);
        log_debug("fork server: started worker %d", (int)pid);  /* vrotd logs it */
}

/* The request is allocated anew each time.  On the stack (or static) it
 * spared the server a few copy-on-write faults per fork, 0.4 ms of its
 * CPU once per start, but every worker kept 16-28 KiB more heap for its
 * whole life (bench/README.md "Boot storm"). */
static void serve(int listen_fd, int conn, const VtpmFilter *filter, Child *kids, size_t *nkids)
{
        Request *r = calloc(1, sizeof(*r));
        const char *bad;

        if (!r) {
                say(conn, "error out of memory\n");
                close(conn);
                return;
        }
        bad = read_request(conn, r);
        if (bad && !*bad) {
                close(conn);
        } else if (bad) {
                log_warn("fork server: refused a request: %s", bad);
                say(conn, "error %s\n", bad);
                close(conn);
        } else if (r->argc == 2 && strcmp(r->argv[1], "--list") == 0) {
                list_children(conn, kids, *nkids);
        } else if (r->argc == 3 && strcmp(r->argv[1], "--watch") == 0) {
                watch_child(conn, r->argv[2], kids, *nkids);
        } else {
                fork_worker(r, listen_fd, conn, filter, kids, nkids);
        }
        for (int i = 0; i < r->nfds; i++)
                close(r->fds[i]);
        free(r);
}

static void reap(Child *kids, size_t *nkids)
{
        int status;
        pid_t pid;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                for (size_t i = 0; i < *nkids; i++) {
                        if (kids[i].pid != pid)
                                continue;
                        if (kids[i].conn >= 0) {
                                if (WIFEXITED(status))
                                        say(kids[i].conn, "exit %d\n", WEXITSTATUS(status));
                                else
                                        say(kids[i].conn, "signal %d\n", WTERMSIG(status));
                                close(kids[i].conn);
                        }
                        kids[i] = kids[--(*nkids)];
                        break;
                }
        }
}

static int listen_on(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        mode_t old;
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
                unlink(path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        old = umask(0177);
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        /* A boot storm queues hundreds of requests at once. */
        if (r < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

int vtpm_forkserver_run(const char *path, VrotLogLevel level)
{
        struct sigaction stop = { .sa_handler = on_stop }, chld = { .sa_handler = on_child };
        static Child kids[MAX_CHILDREN];
        size_t nkids = 0;
        sigset_t block, wait_mask;
        VtpmFilter filter;
        VrotError err = { 0 };
        int lfd;

        vrot_log_init("vrot-vtpm-forkd", level);
        preload();
        /* Every worker installs the same filter: build it once. */
        if (vtpm_sandbox_filter_build(&filter, &err) < 0) {
                log_error("fork server: %s", err.msg);
                return EXIT_FAILURE;
        }
        lfd = listen_on(path);
        if (lfd < 0) {
                log_error("fork server: cannot listen on %s: %s", path, strerror(-lfd));
                vtpm_sandbox_filter_free(&filter);
                return EXIT_FAILURE;
        }
        sigemptyset(&block);
        sigaddset(&block, SIGCHLD);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGINT);
        sigprocmask(SIG_BLOCK, &block, &wait_mask);
        sigaction(SIGTERM, &stop, NULL);
        sigaction(SIGINT, &stop, NULL);
        sigaction(SIGCHLD, &chld, NULL);
        signal(SIGPIPE, SIG_IGN);
        log_info("fork server: ready on %s", path);

        while (!stop_signal) {
                struct pollfd p = { .fd = lfd, .events = POLLIN };
                int n = ppoll(&p, 1, NULL, &wait_mask);

                if (child_exited) {
                        child_exited = 0;
                        reap(kids, &nkids);
                }
                if (n > 0 && (p.revents & POLLIN)) {
                        int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                        if (conn >= 0)
                                serve(lfd, conn, &filter, kids, &nkids);
                }
        }
        /* Workers outlive the server: a restart of it must not take the
         * VMs' TPMs down.  Their parent becomes the nearest subreaper. */
        log_info("fork server: signal %d, leaving %zu workers running", (int)stop_signal, nkids);
        for (size_t i = 0; i < nkids; i++)
                if (kids[i].conn >= 0)
                        close(kids[i].conn);
        close(lfd);
        unlink(path);
        vtpm_sandbox_filter_free(&filter);
        return EXIT_SUCCESS;
}
