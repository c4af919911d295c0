/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Stopping a process the daemon supervises (a worker, a fork server),
 * through a pidfd: once it is open, a signal can only reach that process,
 * never one that reused its PID.
 */

#include <glib.h>

/**
 * vrot_proc_open:
 * A pidfd for @pid (close it), or -1 when @pid has ended (errno set).
 */
int vrot_proc_open(GPid pid);

/**
 * vrot_proc_stop:
 * Sends @sig (0: none, the caller signalled already) to @pid and waits
 * until it has ended, for at most @timeout_ms; then it is killed
 * (SIGKILL) and waited for as long again.
 *
 * Returns: FALSE when @pid had to be killed, TRUE otherwise (also when it
 * had ended already).
 */
gboolean vrot_proc_stop(GPid pid, int sig, guint timeout_ms);
