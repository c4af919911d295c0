/* SPDX-License-Identifier: BSD-3-Clause */
#include "maincall.h"

typedef struct Call {
        VrotMainFunc fn;
        gpointer data;
        GMutex lock;
        GCond cond;
        gboolean done;
} Call;

static gboolean run_call(gpointer data)
{
        Call *c = data;

        c->fn(c->data);
        g_mutex_lock(&c->lock);
        c->done = TRUE;
        g_cond_signal(&c->cond);
        g_mutex_unlock(&c->lock);
        return G_SOURCE_REMOVE;
}

void vrot_main_call(VrotMainFunc fn, gpointer data)
{
        Call c = { .fn = fn, .data = data };

        if (g_main_context_is_owner(g_main_context_default())) {
                fn(data);
                return;
        }
        g_mutex_init(&c.lock);
        g_cond_init(&c.cond);
        g_main_context_invoke(g_main_context_default(), run_call, &c);
        g_mutex_lock(&c.lock);
        while (!c.done)
                g_cond_wait(&c.cond, &c.lock);
        g_mutex_unlock(&c.lock);
        g_mutex_clear(&c.lock);
        g_cond_clear(&c.cond);
}
