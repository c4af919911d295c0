/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Worker PID files in the runtime directory, naming a process by PID and
 * start time (field 22 of /proc/PID/stat), so that a recycled PID is never
 * mistaken for the worker.  A daemon that finds no fork server to adopt
 * uses them to find workers orphaned by a crash of both.
 */

#include <glib.h>

/** vrot_pidfile_write: records @pid (a running process) at @path. */
gboolean vrot_pidfile_write(const gchar *path, GPid pid, GError **error);

/**
 * vrot_pidfile_live:
 * The PID recorded at @path when that very process still runs; 0 when the
 * file is missing, malformed, or names a process that has ended.
 */
GPid vrot_pidfile_live(const gchar *path);
