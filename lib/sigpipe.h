/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * SIGPIPE kept out of a daemon thread while it talks over a socket it does
 * not write with MSG_NOSIGNAL (a TCTI's, libssl's): a peer that went away
 * is then an error of the write, not the end of vrotd.  Block on opening
 * the connection, restore on closing it, in the same thread; a SIGPIPE the
 * connection raised meanwhile is consumed, one that was pending before is
 * left alone.
 */

#include <signal.h>

#include <glib.h>

typedef struct VrotSigpipeGuard {
        sigset_t old_mask;
        gboolean was_pending;
} VrotSigpipeGuard;

void vrot_sigpipe_block(VrotSigpipeGuard *g);
void vrot_sigpipe_restore(VrotSigpipeGuard *g);
