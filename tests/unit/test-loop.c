/* SPDX-License-Identifier: BSD-3-Clause */
/* The worker's poll loop in a forked child, driven over real sockets. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bytes.h"
#include "ptm.h"
#include "tpm.h"
#include "unit.h"
#include "worker.h"

static const uint8_t key[32] = { 1 };
static const VrotSealer sealer = { .key = key, .uuid = { 2 } };
static char sock_path[512];
static pid_t child;

static void start_worker(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char dir[512];
        int lfd;

        snprintf(dir, sizeof(dir), "%s/state-%d", unit_tmpdir(), (int)time(NULL) ^ rand());
        mkdir(dir, 0700);
        snprintf(sock_path, sizeof(sock_path), "%s/ctrl-%d", unit_tmpdir(), rand());
        strcpy(sa.sun_path, sock_path);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        CU_ASSERT_FATAL(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(lfd, 4) == 0);
        child = fork();
        CU_ASSERT_FATAL(child >= 0);
        if (child == 0) {
                Worker w = { .ctrl_listen = lfd, .data_listen = -1, .ctrl = { .fd = -1 },
                             .data = { .fd = -1 }, .sealer = &sealer };
                if (vrot_store_open(dir, &sealer, 0, &w.store, NULL) < 0 ||
                    vtpm_tpm_setup(w.store) != 0 || vtpm_tpm_init(0) != 0 ||
                    vtpm_tpm_startup_clear() != 0)
                        _exit(90);
                _exit(vtpm_loop_run(&w) == 0 ? 0 : 91);
        }
        close(lfd);
}

static int stop_worker(int sig)
{
        int status = -1;

        if (sig)
                kill(child, sig);
        waitpid(child, &status, 0);
        return status;
}

static int connect_ctrl(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = 5 };
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);

        strcpy(sa.sun_path, sock_path);
        CU_ASSERT_FATAL(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        return fd;
}

static ssize_t ask(int fd, const void *req, size_t len, uint8_t *resp, size_t max)
{
        CU_ASSERT_FATAL(write(fd, req, len) == (ssize_t)len);
        return read(fd, resp, max);
}

static void test_loop_capability_and_partial_timeout(void)
{
        uint8_t resp[64];
        int fd;

        start_worker();
        fd = connect_ctrl();
        CU_ASSERT_EQUAL(ask(fd, "\0\0\0\1", 4, resp, sizeof(resp)), 8);
        /* Trailing bytes belong to the request: one answer, not two. */
        CU_ASSERT_EQUAL(ask(fd, "\0\0\0\x0e\0\0\0\x0e", 8, resp, sizeof(resp)), 4);
        CU_ASSERT_EQUAL(vrot_get_be32(resp), VROT_TPM_BAD_PARAMETER);
        /* Half a command code: the connection is closed once it times out. */
        CU_ASSERT_EQUAL(ask(fd, "\0\0", 2, resp, sizeof(resp)), 0);
        close(fd);
        fd = connect_ctrl();    /* and the next client is served */
        CU_ASSERT_EQUAL(ask(fd, "\0\0\0\1", 4, resp, sizeof(resp)), 8);
        close(fd);
        CU_ASSERT_EQUAL(stop_worker(SIGTERM), 0);
}

static void test_loop_impossible_length_closes(void)
{
        uint8_t req[16], resp[64];
        int fd;

        start_worker();
        fd = connect_ctrl();
        vrot_put_be32(req, VROT_PTM_SET_STATEBLOB);
        vrot_put_be32(req + 4, 0);
        vrot_put_be32(req + 8, 1);
        vrot_put_be32(req + 12, 0xffffffff);
        CU_ASSERT_EQUAL(ask(fd, req, 16, resp, sizeof(resp)), 4);
        CU_ASSERT_EQUAL(vrot_get_be32(resp), VROT_TPM_BAD_PARAMETER);
        CU_ASSERT_EQUAL(read(fd, resp, sizeof(resp)), 0);      /* closed */
        close(fd);
        fd = connect_ctrl();                                   /* next client is served */
        CU_ASSERT_EQUAL(ask(fd, "\0\0\0\1", 4, resp, sizeof(resp)), 8);
        close(fd);
        CU_ASSERT_EQUAL(stop_worker(SIGTERM), 0);
}

static int send_fd(int sock, const void *buf, size_t len, int fd)
{
        union {
                char b[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } ctl;
        struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                              .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b) };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
        return (int)sendmsg(sock, &msg, 0);
}

static void test_loop_datafd_commands(void)
{
        static const uint8_t get_random8[12] = { 0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8 };
        static const uint8_t too_big[10] = { 0x80, 0x01, 0, 0, 0x40, 0, 0, 0, 0x01, 0x7b };
        struct timeval tv = { .tv_sec = 5 };
        uint8_t resp[64];
        int fd, sv[2];

        start_worker();
        fd = connect_ctrl();
        CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        CU_ASSERT_EQUAL(send_fd(fd, "\0\0\0\x10", 4, sv[1]), 4);
        close(sv[1]);
        CU_ASSERT_EQUAL(read(fd, resp, sizeof(resp)), 4);
        CU_ASSERT_EQUAL(vrot_get_be32(resp), 0);
        CU_ASSERT_EQUAL(ask(sv[0], get_random8, sizeof(get_random8), resp, sizeof(resp)), 20);
        CU_ASSERT_EQUAL(vrot_get_be32(resp + 6), 0);
        /* A command larger than any TPM buffer: TPM_RC_COMMAND_SIZE, then closed. */
        CU_ASSERT_EQUAL(ask(sv[0], too_big, sizeof(too_big), resp, sizeof(resp)), 10);
        CU_ASSERT_EQUAL(vrot_get_be32(resp + 6), 0x142);
        CU_ASSERT_EQUAL(read(sv[0], resp, sizeof(resp)), 0);
        close(sv[0]);
        /* SHUTDOWN ends the worker cleanly. */
        CU_ASSERT_EQUAL(ask(fd, "\0\0\0\3", 4, resp, sizeof(resp)), 4);
        CU_ASSERT_EQUAL(vrot_get_be32(resp), 0);
        close(fd);
        CU_ASSERT_EQUAL(stop_worker(0), 0);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_loop_capability_and_partial_timeout),
                UNIT_CASE(test_loop_impossible_length_closes),
                UNIT_CASE(test_loop_datafd_commands),
        };
        srand((unsigned)getpid());
        return UNIT_RUN("loop", cases);
}
