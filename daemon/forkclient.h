/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * vrotd's side of `vrot-vtpm --fork-server` (protocol in vrot-vtpm(8)): the
 * daemon starts one fork server per run and every worker through it, so
 * that workers share the server's pre-initialised pages.  A worker's end
 * is reported on the connection its spawn request used; the daemon watches
 * it in its main loop.
 */

#include <glib.h>

#define VROT_FORK_ERROR (vrot_fork_error_quark())
GQuark vrot_fork_error_quark(void);

typedef enum {
        VROT_FORK_ERROR_FAILED,         /* the server or the system said no */
        VROT_FORK_ERROR_WORKER_EXITED,  /* the worker ended before it listened */
        VROT_FORK_ERROR_TIMEOUT,
} VrotForkError;

typedef struct VrotForkServer VrotForkServer;
typedef struct VrotWorker VrotWorker;

/* What a worker is started with (the options of vrot-vtpm(8)). */
typedef struct VrotWorkerSpec {
        const gchar *uuid;
        const gchar *state_dir;
        const gchar *ctrl_path;
        const gchar *data_path;         /* nullable: no --server */
        const gchar *log_path;          /* the worker's stderr, appended */
        const gchar *runas;             /* nullable */
        guint64 min_generation;
        gboolean not_need_init;         /* services: start the TPM at once */
} VrotWorkerSpec;

/** Called once when a worker ends: "exit N" or "signal N" from the server. */
typedef void (*VrotWorkerExitFunc)(VrotWorker *w, gboolean signaled, gint code, gpointer user_data);

/**
 * vrot_fork_server_start:
 * Starts `@vtpm_path --fork-server @sock_path` as a child (stderr to
 * @log_path) and waits until it listens.  Returns (transfer full) the
 * server, or NULL with @error set.
 */
VrotForkServer *vrot_fork_server_start(const gchar *vtpm_path, const gchar *sock_path,
                                       const gchar *log_path, GError **error);

/** vrot_fork_server_pid: the server's PID. */
GPid vrot_fork_server_pid(const VrotForkServer *fs);

/**
 * vrot_fork_server_spawn:
 * Starts a worker with @spec and the state key readable on @key_fd (not
 * consumed), and returns once its control socket accepts connections, so
 * that QEMU can connect at once.  @on_exit runs in the thread-default main
 * context when the worker ends later.  Returns (transfer full) the worker.
 */
VrotWorker *vrot_fork_server_spawn(VrotForkServer *fs, const VrotWorkerSpec *spec, int key_fd,
                                   guint timeout_ms, VrotWorkerExitFunc on_exit,
                                   gpointer user_data, GError **error);

GPid vrot_worker_pid(const VrotWorker *w);

/**
 * vrot_worker_free:
 * Stops watching the worker (its exit is no longer reported); does not stop
 * it.  Accepts NULL.
 */
void vrot_worker_free(VrotWorker *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotWorker, vrot_worker_free)

/**
 * vrot_fork_server_free:
 * Ends the fork server (SIGTERM, then reaps it).  Workers keep running:
 * their parent becomes the nearest child subreaper (vrotd is one).
 */
void vrot_fork_server_free(VrotForkServer *fs);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotForkServer, vrot_fork_server_free)
