/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Fault points, for the crash tests of migration only (docs/migration.md
 * "Crash matrix").  A build with meson -Dfault_injection=true has the
 * option `vrotd --fault-stop POINT`: when the daemon reaches POINT it logs
 * so and stops itself with SIGSTOP, and the test kills it with SIGKILL
 * exactly there.  A few points are behaviours instead (vrot_fault_is()):
 * "reuse-id" makes a source send its state under the ID of its previous
 * migration, as a replaying peer would.  Without the option the points
 * compile to nothing, and vrotd does not know --fault-stop.
 */

#include <glib.h>

#ifdef VROT_FAULT_INJECTION
/** vrot_fault_stop_at: the point to stop at (copied); NULL: none. */
void vrot_fault_stop_at(const char *point);
/** vrot_fault_point: stops the whole daemon here if @point is the one set. */
void vrot_fault_point(const char *point);
/** vrot_fault_is: is @point the one set?  For a behaviour a test wants
 *  (a misbehaving peer), not a stop. */
gboolean vrot_fault_is(const char *point);
#else
static inline void vrot_fault_point(const char *point)
{
        (void)point;
}

static inline gboolean vrot_fault_is(const char *point)
{
        (void)point;
        return FALSE;
}
#endif
