/* SPDX-License-Identifier: BSD-3-Clause */
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proc.h"

int vrot_proc_open(GPid pid)
{
        return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Until @fd's process ends (a pidfd polls readable), at most @timeout_ms. */
static gboolean wait_end(int fd, guint timeout_ms)
{
        struct pollfd p = { .fd = fd, .events = POLLIN };

        return poll(&p, 1, (int)MIN(timeout_ms, (guint)G_MAXINT)) > 0;
}

gboolean vrot_proc_stop(GPid pid, int sig, guint timeout_ms)
{
        int fd = vrot_proc_open(pid);
        gboolean ended;

        if (fd < 0)
                return TRUE;            /* ended already */
        if (sig)
                (void)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
        ended = wait_end(fd, timeout_ms);
        if (!ended) {
                (void)syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
                (void)wait_end(fd, timeout_ms);
        }
        close(fd);
        return ended;
}
