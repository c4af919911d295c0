/* SPDX-License-Identifier: BSD-3-Clause */
#include <signal.h>

#include <glib.h>

#include "fault.h"

#ifdef VROT_FAULT_INJECTION
static gchar *stop_at;

void vrot_fault_stop_at(const char *point)
{
        g_free(stop_at);
        stop_at = g_strdup(point);
}

gboolean vrot_fault_is(const char *point)
{
        return stop_at && g_str_equal(stop_at, point);
}

void vrot_fault_point(const char *point)
{
        if (!stop_at || !g_str_equal(stop_at, point))
                return;
        g_message("fault point %s: stopping (SIGSTOP) for a test to kill", point);
        raise(SIGSTOP);
}
#endif
