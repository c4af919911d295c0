/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <glib-unix.h>

#include "fdwatch.h"

#define EVENTS_PER_WAKEUP 64

typedef struct Watch {
        gint fd;
        VrotFdWatchFunc func;
        gpointer user_data;
} Watch;

/* The one epoll set of the process, created on first use. */
static struct {
        int epfd;                       /* the main context watches it, for good */
        guint next_id;
        GHashTable *watches;            /* ID -> Watch */
        GHashTable *by_fd;              /* descriptor -> the ID that watches it */
} set = { .epfd = -1 };

static guint32 to_epoll(GIOCondition c)
{
        return (c & G_IO_IN ? EPOLLIN : 0) | (c & G_IO_OUT ? EPOLLOUT : 0) |
               (c & G_IO_PRI ? EPOLLPRI : 0);
}

static GIOCondition from_epoll(guint32 e)
{
        return (e & EPOLLIN ? G_IO_IN : 0) | (e & EPOLLOUT ? G_IO_OUT : 0) |
               (e & EPOLLPRI ? G_IO_PRI : 0) | (e & (EPOLLHUP | EPOLLRDHUP) ? G_IO_HUP : 0) |
               (e & EPOLLERR ? G_IO_ERR : 0);
}

static void drop(guint id)
{
        Watch *w = g_hash_table_lookup(set.watches, GUINT_TO_POINTER(id));

        if (!w)
                return;
        /* The descriptor is still open (the contract).  Should a caller
         * have closed it and its number gone to a newer watch, that
         * watch's registration is left alone. */
        if (GPOINTER_TO_UINT(g_hash_table_lookup(set.by_fd, GINT_TO_POINTER(w->fd))) == id) {
                (void)epoll_ctl(set.epfd, EPOLL_CTL_DEL, w->fd, NULL);
                g_hash_table_remove(set.by_fd, GINT_TO_POINTER(w->fd));
        }
        g_hash_table_remove(set.watches, GUINT_TO_POINTER(id));
}

/*
 * What is ready, in batches.  Each event carries its watch's ID, not a
 * pointer: a watch that an earlier callback of the batch removed is
 * looked up, not found, and skipped.
 */
static gboolean on_ready(gint fd, GIOCondition condition, gpointer data)
{
        struct epoll_event ev[EVENTS_PER_WAKEUP];
        int n;

        (void)fd, (void)condition, (void)data;
        do
                n = epoll_wait(set.epfd, ev, G_N_ELEMENTS(ev), 0);
        while (n < 0 && errno == EINTR);
        for (int i = 0; i < n; i++) {
                guint id = (guint)ev[i].data.u64;
                Watch *w = g_hash_table_lookup(set.watches, GUINT_TO_POINTER(id));

                if (w && w->func(w->fd, from_epoll(ev[i].events), w->user_data) == G_SOURCE_REMOVE)
                        drop(id);
        }
        return G_SOURCE_CONTINUE;
}

static gboolean set_up(void)
{
        if (set.epfd >= 0)
                return TRUE;
        set.epfd = epoll_create1(EPOLL_CLOEXEC);
        if (set.epfd < 0) {
                g_critical("epoll_create1: %s", g_strerror(errno));
                return FALSE;
        }
        set.watches = g_hash_table_new_full(NULL, NULL, NULL, g_free);
        set.by_fd = g_hash_table_new(NULL, NULL);
        (void)g_unix_fd_add(set.epfd, G_IO_IN, on_ready, NULL);
        return TRUE;
}

guint vrot_fd_watch_add(gint fd, GIOCondition condition, VrotFdWatchFunc func, gpointer user_data)
{
        struct epoll_event ev = { .events = to_epoll(condition) };
        Watch *w;
        guint id;

        g_return_val_if_fail(fd >= 0 && func != NULL, 0);
        if (!set_up())
                return 0;
        do
                id = ++set.next_id;
        while (id == 0 || g_hash_table_contains(set.watches, GUINT_TO_POINTER(id)));
        ev.data.u64 = id;
        if (epoll_ctl(set.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                g_critical("watching descriptor %d: %s", fd, g_strerror(errno));
                return 0;
        }
        w = g_new(Watch, 1);
        *w = (Watch){ .fd = fd, .func = func, .user_data = user_data };
        g_hash_table_insert(set.watches, GUINT_TO_POINTER(id), w);
        g_hash_table_insert(set.by_fd, GINT_TO_POINTER(fd), GUINT_TO_POINTER(id));
        return id;
}

void vrot_fd_watch_remove(guint id)
{
        if (set.watches)
                drop(id);
}

guint vrot_fd_watch_count(void)
{
        return set.watches ? g_hash_table_size(set.watches) : 0;
}
