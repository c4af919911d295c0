/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Descriptor watches for the main context that cost the same with ten or
 * ten thousand of them.
 *
 * GLib's main loop polls every source's descriptor at every iteration
 * (poll(2), and a prepare and a check of each source): with one watch per
 * running worker, every API request, every worker start and every timer
 * paid for all the workers there are.  At 450 running workers that was
 * more than half of vrotd's CPU time per instance.start (bench/README.md
 * "Boot storm").  These watches live in one epoll set, and the main
 * context sees only that set's descriptor.
 *
 * Same contract as g_unix_fd_add(): level-triggered; the callback gets the
 * descriptor and the conditions (G_IO_IN, _OUT, _PRI, _HUP, _ERR) and
 * returns G_SOURCE_CONTINUE or G_SOURCE_REMOVE; remove a watch before you
 * close its descriptor.  A watch removed while others are dispatched (by
 * their callbacks) is not called afterwards.  Main context and its thread
 * only.
 */

#include <glib.h>

typedef gboolean (*VrotFdWatchFunc)(gint fd, GIOCondition condition, gpointer user_data);

/**
 * vrot_fd_watch_add:
 * Watches @fd for @condition (G_IO_IN, G_IO_OUT, G_IO_PRI; G_IO_HUP and
 * G_IO_ERR are always reported).
 *
 * Returns: the watch's ID (never 0), for vrot_fd_watch_remove(); 0 when
 * epoll refused @fd (not a pollable descriptor, or watched already), with
 * a critical warning.
 */
guint vrot_fd_watch_add(gint fd, GIOCondition condition, VrotFdWatchFunc func, gpointer user_data);

/** vrot_fd_watch_remove: ends watch @id; unknown IDs are ignored. */
void vrot_fd_watch_remove(guint id);

/** vrot_fd_watch_count: watches in the set (tests). */
guint vrot_fd_watch_count(void);
