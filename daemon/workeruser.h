/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The user workers drop to ([daemon] worker-user, vrot-vtpm --runas): the
 * directories a worker writes after the drop — its state directory and its
 * runtime directory (where it removes its sockets at exit) — belong to that
 * user.  Without a worker user (NULL) workers stay root and so do the
 * directories.
 */

#include <sys/types.h>

#include <glib.h>

typedef struct VrotWorkerUser {
        gchar *name;
        uid_t uid;
        gid_t gid;
} VrotWorkerUser;

/**
 * vrot_worker_user_lookup:
 * Resolves @name (a user name) once, at daemon start.  Returns (transfer
 * full) the user, or NULL with G_IO_ERROR_NOT_FOUND if there is no such
 * user, or G_IO_ERROR_INVALID_ARGUMENT for root (uid 0 is no drop).
 */
VrotWorkerUser *vrot_worker_user_lookup(const gchar *name, GError **error);

/** vrot_worker_user_free: accepts NULL. */
void vrot_worker_user_free(VrotWorkerUser *u);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotWorkerUser, vrot_worker_user_free)

/** vrot_worker_user_name: @u's name, NULL for @u NULL (no drop). */
const gchar *vrot_worker_user_name(const VrotWorkerUser *u);

/**
 * vrot_worker_user_make_dir:
 * Makes @path (and missing parents, those root's) with @mode and, with a
 * worker user @u, gives @path to @u.  A directory a daemon without
 * worker-user made belongs to root: it and the files directly in it are
 * given to @u too, so that turning worker-user on keeps every instance.
 * Errors: G_IO_ERROR (with the path and errno's text).
 */
gboolean vrot_worker_user_make_dir(const VrotWorkerUser *u, const gchar *path, int mode,
                                   GError **error);

/** vrot_worker_user_give_files: the files directly in @dir to @u (NULL: nothing to do). */
gboolean vrot_worker_user_give_files(const VrotWorkerUser *u, const gchar *dir, GError **error);
