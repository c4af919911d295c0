/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "pidfile.h"

/* Start time of @pid in clock ticks since boot, 0 if it is gone. */
static guint64 start_time(GPid pid)
{
        g_autofree gchar *path = g_strdup_printf("/proc/%d/stat", (int)pid);
        g_autofree gchar *stat = NULL;
        g_auto(GStrv) f = NULL;
        const gchar *rest;
        guint64 v = 0;

        if (!g_file_get_contents(path, &stat, NULL, NULL))
                return 0;
        /* The command name (field 2) may hold spaces and parentheses. */
        rest = strrchr(stat, ')');
        if (!rest)
                return 0;
        f = g_strsplit(rest + 1, " ", 0);
        /* f[0] is empty, f[1] field 3 (state), so field 22 is f[20]. */
        if (g_strv_length(f) < 21 || !g_ascii_string_to_unsigned(f[20], 10, 1, G_MAXUINT64, &v, NULL))
                return 0;
        return v;
}

gboolean vrot_pidfile_write(const gchar *path, GPid pid, GError **error)
{
        g_autofree gchar *text = g_strdup_printf("%d %" G_GUINT64_FORMAT "\n", (int)pid, start_time(pid));

        return g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_NONE, 0644, error);
}

GPid vrot_pidfile_live(const gchar *path)
{
        g_autofree gchar *text = NULL;
        g_auto(GStrv) f = NULL;
        gint64 pid = 0;
        guint64 t = 0;

        if (!g_file_get_contents(path, &text, NULL, NULL))
                return 0;
        f = g_strsplit(g_strchomp(text), " ", 0);
        if (g_strv_length(f) != 2 || !g_ascii_string_to_signed(f[0], 10, 1, G_MAXINT32, &pid, NULL) ||
            !g_ascii_string_to_unsigned(f[1], 10, 1, G_MAXUINT64, &t, NULL))
                return 0;
        return start_time((GPid)pid) == t ? (GPid)pid : 0;
}
