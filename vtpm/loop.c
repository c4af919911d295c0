/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The worker's single-threaded poll loop: the control listener and its one
 * client, the data listener (--server) or the SET_DATAFD channel and its one
 * client.  Sockets are non-blocking and requests are reassembled per
 * connection, so a slow or hostile client can stall nobody but itself; a
 * request that stops arriving half-way times out.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bytes.h"
#include "log.h"
#include "ptm.h"
#include "tpm.h"
#include "worker.h"

#define CTRL_IDLE_CAP   64              /* keep small buffers between requests */
#define CTRL_READ_MAX   4104            /* swtpm reads a request in up to 4104 bytes */
#define DATA_MAX        4096            /* libtpms's largest TPM 2.0 command */
#define CTRL_TIMEOUT_MS 500             /* swtpm's time for one control request */
#define DATA_TIMEOUT_MS 10000
#define WRITE_TIMEOUT_MS 5000
#define TPM2_RC_COMMAND_SIZE 0x142

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
        got_signal = sig;
}

int64_t vtpm_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_close(Conn *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        free(c->buf);
        c->buf = NULL;
        c->len = c->cap = 0;
        c->deadline_ms = 0;
}

/* Keeps the request buffer at least @need bytes; returns -1 on ENOMEM. */
static int conn_reserve(Conn *c, size_t need)
{
        uint8_t *p;

        if (c->cap >= need)
                return 0;
        p = realloc(c->buf, need);
        if (!p)
                return -1;
        c->buf = p;
        c->cap = need;
        return 0;
}

static void conn_reset(Conn *c)
{
        c->len = 0;
        c->deadline_ms = 0;
        if (c->cap > CTRL_IDLE_CAP) {   /* a big SET_STATEBLOB is not kept */
                free(c->buf);
                c->buf = NULL;
                c->cap = 0;
        }
}

/* Writes all of @iov (blocking up to WRITE_TIMEOUT_MS in total). */
static int send_all(int fd, struct iovec *iov, int n)
{
        int64_t deadline = vtpm_now_ms() + WRITE_TIMEOUT_MS;
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)n };

        while (msg.msg_iovlen > 0) {
                ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        struct pollfd p = { .fd = fd, .events = POLLOUT };
                        int left = (int)(deadline - vtpm_now_ms());
                        if (left <= 0 || poll(&p, 1, left) <= 0)
                                return -ETIMEDOUT;
                        continue;
                }
                if (w < 0)
                        return -errno;
                while (msg.msg_iovlen > 0 && (size_t)w >= msg.msg_iov->iov_len) {
                        w -= (ssize_t)msg.msg_iov->iov_len;
                        msg.msg_iov++;
                        msg.msg_iovlen--;
                }
                if (msg.msg_iovlen > 0) {
                        msg.msg_iov->iov_base = (uint8_t *)msg.msg_iov->iov_base + w;
                        msg.msg_iov->iov_len -= (size_t)w;
                }
        }
        return 0;
}

static void ctrl_answer(Worker *w, Reply *rep)
{
        struct iovec iov[2] = {
                { .iov_base = rep->head, .iov_len = rep->head_len },
                { .iov_base = rep->tail, .iov_len = rep->tail_len },
        };

        if (send_all(w->ctrl.fd, iov, rep->tail_len ? 2 : 1) < 0) {
                log_warn("control channel: cannot send the answer, closing");
                conn_close(&w->ctrl);
        }
        if (rep->tail_owned)
                vrot_free_wiped(rep->tail, rep->tail_len);
}

/* Receives what is there, keeping one SCM_RIGHTS descriptor in *@fd. */
static ssize_t ctrl_recv(Conn *c, size_t want, int *fd)
{
        union {
                char buf[CMSG_SPACE(sizeof(int) * 4)];
                struct cmsghdr align;
        } ctl;
        struct iovec iov = { .iov_base = c->buf + c->len, .iov_len = want };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                              .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
        ssize_t n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); n >= 0 && cm; cm = CMSG_NXTHDR(&msg, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < nfd; i++) {
                        int got;
                        memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                        if (*fd < 0)
                                *fd = got;      /* the first one; extras are dropped */
                        else
                                close(got);
                }
        }
        return n;
}

static void ctrl_readable(Worker *w)
{
        Conn *c = &w->ctrl;
        VrotError err = { 0 };
        Reply rep;
        size_t need;
        ssize_t n;
        int fd = -1;

        /* Read what is queued, up to what swtpm reads at once: bytes that
         * arrive with a request belong to it (see below), as in swtpm. */
        if (vrot_ptm_frame(c->buf, c->len, &need, &err) < 0 ||
            conn_reserve(c, need > CTRL_READ_MAX ? need : CTRL_READ_MAX) < 0) {
                vtpm_ctrl_reply_error(&rep, VROT_TPM_BAD_PARAMETER);
                goto refuse;
        }
        n = ctrl_recv(c, c->cap - c->len, &fd);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                conn_close(c);          /* client went away */
                goto out;
        }
        c->len += (size_t)n;
        if (vrot_ptm_frame(c->buf, c->len, &need, &err) < 0) {
                log_warn("control channel: %s", err.msg);
                vtpm_ctrl_reply_error(&rep, VROT_TPM_BAD_PARAMETER);
                goto refuse;
        }
        if (c->len < need) {
                c->deadline_ms = vtpm_now_ms() + CTRL_TIMEOUT_MS;
                if (fd >= 0)
                        close(fd);      /* SCM_RIGHTS rides on the first chunk only */
                return;
        }
        /* Everything received counts, as in swtpm: bytes after a complete
         * request are part of it (BAD_PARAMETER for exact-size requests),
         * never a second request.  Clients wait for each answer. */
        vtpm_ctrl_execute(w, c->buf, c->len, fd, &rep);
        fd = -1;
        conn_reset(c);
        ctrl_answer(w, &rep);
        return;
refuse:
        /* The stream cannot be re-synchronised after an impossible length. */
        ctrl_answer(w, &rep);
        conn_close(c);
out:
        if (fd >= 0)
                close(fd);
}

static void data_readable(Worker *w)
{
        Conn *c = &w->data;
        const uint8_t *resp;
        uint32_t resp_len, size;
        ssize_t n;

        if (conn_reserve(c, DATA_MAX) < 0)
                return;
        n = recv(c->fd, c->buf + c->len, DATA_MAX - c->len, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0)
                goto hangup;
        c->len += (size_t)n;
        if (c->len < 10) {
                c->deadline_ms = vtpm_now_ms() + DATA_TIMEOUT_MS;
                return;
        }
        size = vrot_get_be32(c->buf + 2);
        if (size < 10 || size > DATA_MAX || c->len > size) {
                uint8_t err[10];
                struct iovec iov = { .iov_base = err, .iov_len = sizeof(err) };
                log_warn("data channel: malformed command (size %u, %zu bytes), closing",
                         size, c->len);
                vrot_put_be16(err, 0x8001);
                vrot_put_be32(err + 2, sizeof(err));
                vrot_put_be32(err + 6, TPM2_RC_COMMAND_SIZE);
                (void)send_all(c->fd, &iov, 1);
                goto hangup;
        }
        if (c->len < size) {
                c->deadline_ms = vtpm_now_ms() + DATA_TIMEOUT_MS;
                return;
        }
        vtpm_tpm_process(c->buf, size, &resp, &resp_len);
        c->len = 0;
        c->deadline_ms = 0;
        {
                struct iovec iov = { .iov_base = (void *)resp, .iov_len = resp_len };
                if (send_all(c->fd, &iov, 1) < 0)
                        goto hangup;
        }
        return;
hangup:
        conn_close(c);
        w->data_passed = false;
}

static void accept_one(int listen_fd, Conn *c, const char *what)
{
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        log_warn("%s: accept failed: %s", what, strerror(errno));
                return;
        }
        c->fd = fd;
        c->len = 0;
        c->deadline_ms = 0;
}

/* Requests that stopped arriving cost the connection, without an answer,
 * as in swtpm: the stream cannot be trusted to be in step any more. */
static void expire(Worker *w, int64_t now)
{
        if (w->ctrl.fd >= 0 && w->ctrl.deadline_ms && now >= w->ctrl.deadline_ms) {
                log_warn("control channel: incomplete request timed out, closing");
                conn_close(&w->ctrl);
        }
        if (w->data.fd >= 0 && w->data.deadline_ms && now >= w->data.deadline_ms) {
                log_warn("data channel: incomplete command timed out, closing");
                conn_close(&w->data);
                w->data_passed = false;
        }
}

static int next_timeout(const Worker *w, int64_t now)
{
        int64_t next = 0;

        if (w->ctrl.fd >= 0 && w->ctrl.deadline_ms)
                next = w->ctrl.deadline_ms;
        if (w->data.fd >= 0 && w->data.deadline_ms && (!next || w->data.deadline_ms < next))
                next = w->data.deadline_ms;
        if (!next)
                return -1;
        return next > now ? (int)(next - now) : 0;
}

enum { P_CTRL_LISTEN, P_CTRL, P_DATA_LISTEN, P_DATA, P_STARTER, P_MIGRATE, P_N };

void vtpm_loop_signals(void)
{
        struct sigaction sa = { .sa_handler = on_signal };
        sigset_t block;

        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGINT);
        sigprocmask(SIG_BLOCK, &block, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}

int vtpm_loop_run(Worker *w)
{
        sigset_t none;

        /* SIGTERM and SIGINT stay blocked (vtpm_loop_signals) except while
         * the loop waits, so they end it between requests, never inside one. */
        vtpm_loop_signals();
        sigprocmask(SIG_BLOCK, NULL, &none);
        sigdelset(&none, SIGTERM);
        sigdelset(&none, SIGINT);

        while (!w->terminate && !got_signal) {
                struct pollfd p[P_N] = {
                        [P_CTRL_LISTEN] = { .fd = w->ctrl.fd < 0 ? w->ctrl_listen : -1, .events = POLLIN },
                        [P_CTRL] = { .fd = w->ctrl.fd, .events = POLLIN },
                        [P_DATA_LISTEN] = { .fd = w->data.fd < 0 ? w->data_listen : -1, .events = POLLIN },
                        [P_DATA] = { .fd = w->data.fd, .events = POLLIN },
                        /* Nothing is ever read there: any event is the hang-up. */
                        [P_STARTER] = { .fd = w->end_with_starter ? w->starter_fd : -1,
                                        .events = POLLRDHUP },
                        [P_MIGRATE] = { .fd = w->mig.enabled ? w->mig.listen : -1,
                                        .events = POLLIN },
                };
                int timeout = next_timeout(w, vtpm_now_ms());
                struct timespec ts = { timeout / 1000, (long)(timeout % 1000) * 1000000 };
                int n = ppoll(p, P_N, timeout < 0 ? NULL : &ts, &none);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (p[P_STARTER].revents) {
                        w->starter_gone = true;
                        break;
                }
                if (p[P_CTRL].revents)
                        ctrl_readable(w);
                if (p[P_DATA].revents && w->data.fd >= 0)
                        data_readable(w);
                if (p[P_CTRL_LISTEN].revents & POLLIN)
                        accept_one(w->ctrl_listen, &w->ctrl, "control socket");
                if (p[P_DATA_LISTEN].revents & POLLIN && w->data.fd < 0)
                        accept_one(w->data_listen, &w->data, "data socket");
                if (p[P_MIGRATE].revents & POLLIN)
                        vtpm_migkey_serve(w);
                expire(w, vtpm_now_ms());
        }
        if (w->starter_gone)
                log_info("whoever started this worker is gone: shutting down");
        else if (got_signal)
                log_info("signal %d: shutting down", (int)got_signal);
        conn_close(&w->ctrl);
        conn_close(&w->data);
        return 0;
}
