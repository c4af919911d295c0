/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

#include <linux/filter.h>

#include "err.h"

/* The seccomp allow-list as a BPF program, built once (transfer full). */
typedef struct VtpmFilter {
        struct sock_filter *insns;
        unsigned short len;
} VtpmFilter;

/**
 * vtpm_sandbox_filter_build:
 * Builds the allow-list with libseccomp into @ret, so that a fork server
 * builds it once instead of every worker (it costs each worker about a
 * millisecond and a heap full of libseccomp state).  Returns 0 or -errno.
 */
int vtpm_sandbox_filter_build(VtpmFilter *ret, VrotError *err);

void vtpm_sandbox_filter_free(VtpmFilter *f);

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
 * (R-VTPM-4): @filter when given (vtpm_sandbox_filter_build()), else built
 * now.  The state directory, open as @state_dirfd (@state_dir names it in
 * errors), must stay writable for the new user; it is checked through the
 * descriptor, so its parents need not be reachable by that user.
 */
int vtpm_sandbox_enter(const char *runas, int state_dirfd, const char *state_dir,
                       const VtpmFilter *filter, VrotError *err);

/**
 * vtpm_sandbox_idle:
 * Lowers this worker to SCHED_IDLE and yields, for work nobody waits for
 * (a bound pool entry's clean-up and exit, after its answer): whatever
 * woke up on its CPU, vrotd first, runs at once instead of after it.  The
 * seccomp filter allows this change of scheduling and no other.
 */
void vtpm_sandbox_idle(void);
