/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * vrotd's side of `vrot-vtpm --fork-server` (protocol in vrot-vtpm(8)): the
 * daemon starts one fork server per run and every worker through it, so
 * that workers share the server's pre-initialised pages.  A worker says
 * "ready" once its sockets listen and the server reports its end, both on
 * the connection its spawn request used, so a start costs no polling and
 * many starts can be under way at once.  A restarted daemon finds the
 * server its predecessor left behind and adopts its workers (--list,
 * --watch).
 */

#include <glib.h>

#define VROT_FORK_ERROR (vrot_fork_error_quark())
GQuark vrot_fork_error_quark(void);

typedef enum {
        VROT_FORK_ERROR_FAILED,         /* the server or the system said no */
        VROT_FORK_ERROR_WORKER_EXITED,  /* the worker ended before it listened */
        VROT_FORK_ERROR_REFUSED,        /* ... with exit 3: its state was refused */
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
        const gchar *migrate_path;      /* nullable: no --migrate (live-migration keys) */
        const gchar *log_path;          /* the worker's stderr, appended */
        const gchar *runas;             /* nullable */
        guint64 min_generation;
        gboolean not_need_init;         /* services: start the TPM at once */
        gboolean defer_writes;          /* manufacture: state written once, at exit */
        gboolean end_with_daemon;       /* it ends, writing nothing, when we are gone */
        gboolean prefault;              /* once ready, it pages in code and data (the pool's warm vTPM) */
} VrotWorkerSpec;

/**
 * VrotWorkerReadyFunc:
 * Called once per watched start: @error NULL when the worker listens, else
 * why it never will (it ended: WORKER_EXITED or REFUSED; TIMEOUT: it was
 * killed).
 */
typedef void (*VrotWorkerReadyFunc)(VrotWorker *w, const GError *error, gpointer user_data);

/** Called once when a worker that was ready ends: "exit N" or "signal N". */
typedef void (*VrotWorkerExitFunc)(VrotWorker *w, gboolean signaled, gint code, gpointer user_data);

/**
 * vrot_fork_server_start:
 * Starts `@vtpm_path --fork-server @sock_path` as a child (stderr to
 * @log_path) and waits until it listens.  Returns (transfer full) the
 * server, or NULL with @error set.
 */
VrotForkServer *vrot_fork_server_start(const gchar *vtpm_path, const gchar *sock_path,
                                       const gchar *log_path, GError **error);

/**
 * vrot_fork_server_adopt:
 * Connects to a fork server already listening on @sock_path (left running
 * by a daemon that was killed) and asks for its workers.  Returns (transfer
 * full) the server and, in *@ret_workers (transfer full), a table UUID ->
 * PID (GINT_TO_POINTER) of the workers it parents; NULL with @error when
 * nothing answers there.  Should it die later, the next request starts
 * `@vtpm_path --fork-server` again, as vrot_fork_server_start() does.
 */
VrotForkServer *vrot_fork_server_adopt(const gchar *vtpm_path, const gchar *sock_path,
                                       const gchar *log_path, GHashTable **ret_workers,
                                       GError **error);

/** vrot_fork_server_pid: the server's PID. */
GPid vrot_fork_server_pid(const VrotForkServer *fs);

/**
 * vrot_fork_server_spawn:
 * Asks the server for a worker with @spec and the state key readable on
 * @key_fd (not consumed).  Returns (transfer full) the worker as soon as the
 * request is sent, before the server has forked it: wait with
 * vrot_worker_wait_ready() or vrot_worker_watch(); a refusal of the server
 * is reported there (FAILED).
 */
VrotWorker *vrot_fork_server_spawn(VrotForkServer *fs, const VrotWorkerSpec *spec, int key_fd,
                                   GError **error);

/**
 * vrot_fork_server_watch:
 * A running worker of an adopted server (vrot_fork_server_adopt()):
 * returns (transfer full) it, ready, for vrot_worker_watch().
 */
VrotWorker *vrot_fork_server_watch(VrotForkServer *fs, GPid pid, GError **error);

/**
 * vrot_worker_pid:
 * The worker's PID; waits for the server's answer if it has not come yet
 * (0: the server refused the request).
 */
GPid vrot_worker_pid(VrotWorker *w);

/**
 * vrot_worker_wait_ready:
 * Blocks until the worker listens (TRUE), ends, or @timeout_ms pass (then
 * it is killed); for code that cannot return to the main loop meanwhile.
 */
gboolean vrot_worker_wait_ready(VrotWorker *w, guint timeout_ms, GError **error);

/**
 * vrot_worker_watch:
 * From now on the worker's news arrive in the thread-default main context:
 * @on_ready (nullable) once, from the main loop even if the worker is ready
 * already, with a deadline of @timeout_ms; @on_exit once when a ready
 * worker ends.
 */
void vrot_worker_watch(VrotWorker *w, guint timeout_ms, VrotWorkerReadyFunc on_ready,
                       VrotWorkerExitFunc on_exit, gpointer user_data);

/**
 * vrot_worker_settle:
 * For a watched worker whose process is gone but whose end has not been
 * told yet (the main loop has not read the server's report): waits up to
 * @wait_ms for the report and tells it now, through @on_exit, which may
 * free @w.  TRUE when the end has been told (do not use @w afterwards);
 * FALSE when the worker still runs, or no report came in time.
 */
gboolean vrot_worker_settle(VrotWorker *w, guint wait_ms);

/**
 * vrot_worker_free:
 * Stops watching the worker (its news are no longer reported); does not
 * stop it.  Accepts NULL.
 */
void vrot_worker_free(VrotWorker *w);

/**
 * vrot_worker_log_last_line:
 * (transfer full) the last line of the worker log at @path, at most 300
 * bytes: why a worker ended, in its words; NULL if there is none.
 */
gchar *vrot_worker_log_last_line(const gchar *path);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotWorker, vrot_worker_free)

/**
 * vrot_fork_server_free:
 * Ends the fork server (SIGTERM, then waits for it).  Workers keep running:
 * their parent becomes the nearest child subreaper (vrotd is one).
 */
void vrot_fork_server_free(VrotForkServer *fs);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotForkServer, vrot_fork_server_free)
