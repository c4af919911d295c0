/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>

#include "workeruser.h"

VrotWorkerUser *vrot_worker_user_lookup(const gchar *name, GError **error)
{
        g_autoptr(VrotWorkerUser) u = g_new0(VrotWorkerUser, 1);
        struct passwd pw, *found = NULL;
        gchar buf[4096];
        int r = getpwnam_r(name, &pw, buf, sizeof(buf), &found);

        if (r != 0 || !found) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "worker-user '%s': %s", name,
                            r ? g_strerror(r) : "no such user");
                return NULL;
        }
        if (pw.pw_uid == 0) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "worker-user '%s' is uid 0: name it root to keep workers root", name);
                return NULL;
        }
        u->name = g_strdup(name);
        u->uid = pw.pw_uid;
        u->gid = pw.pw_gid;
        return g_steal_pointer(&u);
}

void vrot_worker_user_free(VrotWorkerUser *u)
{
        if (!u)
                return;
        g_free(u->name);
        g_free(u);
}

const gchar *vrot_worker_user_name(const VrotWorkerUser *u)
{
        return u ? u->name : NULL;
}

static gboolean io_fail(GError **error, const gchar *path)
{
        int e = errno;

        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "%s: %s", path, g_strerror(e));
        return FALSE;
}

/* The files directly in @dir, as @dir itself: a state directory is flat. */
static gboolean give_files(const VrotWorkerUser *u, const gchar *dir, GError **error)
{
        g_autoptr(GDir) d = g_dir_open(dir, 0, error);
        const gchar *name;

        if (!d)
                return FALSE;
        while ((name = g_dir_read_name(d))) {
                g_autofree gchar *path = g_build_filename(dir, name, NULL);
                if (lchown(path, u->uid, u->gid) < 0)
                        return io_fail(error, path);
        }
        return TRUE;
}

gboolean vrot_worker_user_give_files(const VrotWorkerUser *u, const gchar *dir, GError **error)
{
        return !u || give_files(u, dir, error);
}

gboolean vrot_worker_user_make_dir(const VrotWorkerUser *u, const gchar *path, int mode,
                                   GError **error)
{
        struct stat st;

        if (g_mkdir_with_parents(path, mode) < 0 || stat(path, &st) < 0)
                return io_fail(error, path);
        if (!u || (st.st_uid == u->uid && st.st_gid == u->gid))
                return TRUE;
        if (chown(path, u->uid, u->gid) < 0)
                return io_fail(error, path);
        return give_files(u, path, error);
}
