/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

#include "args.h"
#include "sandbox.h"

/* Exit statuses of a worker (vrot-vtpm(8)). */
#define VTPM_EXIT_USAGE 2
#define VTPM_EXIT_STATE 3

/**
 * vtpm_run:
 * Runs one worker with options @a until it is told to stop.  Takes
 * ownership of a->key_fd.  @filter: the seccomp filter prebuilt by a fork
 * server, or NULL.  Returns the process exit status.
 */
int vtpm_run(const VtpmArgs *a, const VtpmFilter *filter);

/**
 * vtpm_forkserver_run:
 * Serves spawn requests on the socket @path until SIGTERM/SIGINT; see
 * vtpm/forkserver.c.  Returns the process exit status.
 */
int vtpm_forkserver_run(const char *path, VrotLogLevel level);
