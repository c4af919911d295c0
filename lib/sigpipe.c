/* SPDX-License-Identifier: BSD-3-Clause */
#include <pthread.h>
#include <time.h>

#include "sigpipe.h"

static gboolean pending(void)
{
        sigset_t set;

        return sigpending(&set) == 0 && sigismember(&set, SIGPIPE);
}

void vrot_sigpipe_block(VrotSigpipeGuard *g)
{
        sigset_t pipe_set;

        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &g->old_mask);
        g->was_pending = pending();
}

void vrot_sigpipe_restore(VrotSigpipeGuard *g)
{
        static const struct timespec no_wait;
        sigset_t pipe_set;

        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        if (!g->was_pending && pending())
                (void)sigtimedwait(&pipe_set, NULL, &no_wait);
        pthread_sigmask(SIG_SETMASK, &g->old_mask, NULL);
}
