/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The host TPM is main-loop only in vrotd (one ESYS context, no locks).  A
 * thread that needs it (a migration channel's, docs/migration.md) runs the
 * work on the main loop with vrot_main_call() and waits for it.  The main
 * loop itself never waits on such a thread.
 */

#include <glib.h>

typedef void (*VrotMainFunc)(gpointer data);

/**
 * vrot_main_call:
 * Runs @fn(@data) in the default main context and returns when it has:
 * at once when called from the thread that owns that context.
 */
void vrot_main_call(VrotMainFunc fn, gpointer data);
