/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

#include "err.h"

/**
 * vtpm_sandbox_no_dumps:
 * Disables core dumps and ptrace-attach by other users' processes before any
 * key is read (R-VTPM-6).  Returns 0 or -errno with @err set.
 */
int vtpm_sandbox_no_dumps(VrotError *err);

/**
 * vtpm_sandbox_enter:
 * After start-up: drops to @runas (NULL: stay), sets no_new_privs and
 * installs the seccomp allow-list for the rest of the process's life
 * (R-VTPM-4).  @state_dir must stay writable for the new user.
 */
int vtpm_sandbox_enter(const char *runas, const char *state_dir, VrotError *err);
