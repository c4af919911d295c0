/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * daemon/fdwatch.c on socket pairs: the callback of a ready descriptor
 * and only that one, G_IO_REMOVE-style ends, a watch removed by another's
 * callback, a descriptor number reused after remove-then-close, and a
 * main context that polls one descriptor however many watches there are.
 */
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>

#include "fdwatch.h"
#include "unit.h"

#define MANY 400                /* 800 descriptors: under a soft limit of 1024 */

typedef struct Seen {
        guint calls;
        GIOCondition last;
        gboolean remove;                /* return G_SOURCE_REMOVE */
        guint *kill;                    /* a watch to remove when called */
} Seen;

static gboolean on_fd(gint fd, GIOCondition cond, gpointer data)
{
        Seen *s = data;
        char buf[16];

        (void)fd;
        s->calls++;
        s->last = cond;
        if (cond & G_IO_IN)
                (void)read(fd, buf, sizeof(buf));
        if (s->kill) {
                vrot_fd_watch_remove(*s->kill);
                *s->kill = 0;
        }
        return s->remove ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

static void pair(int sv[2])
{
        CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

/* Runs the main context until nothing is ready (at most 1000 rounds: a
 * watch that fires for ever shows as a failed count, not a hang). */
static void spin(void)
{
        for (int i = 0; i < 1000 && g_main_context_iteration(NULL, FALSE); i++)
                ;
}

/* How many descriptors the main context would poll now. */
static gint polled(void)
{
        GMainContext *ctx = g_main_context_default();
        GPollFD fds[64];
        gint timeout, prio, n;

        g_main_context_acquire(ctx);
        (void)g_main_context_prepare(ctx, &prio);
        n = g_main_context_query(ctx, prio, &timeout, fds, G_N_ELEMENTS(fds));
        (void)g_main_context_check(ctx, prio, fds, MIN(n, (gint)G_N_ELEMENTS(fds)));
        g_main_context_release(ctx);
        return n;
}

static void test_fdwatch_many_one_ready(void)
{
        static int sv[MANY][2];
        static Seen seen[MANY];
        static guint id[MANY];
        guint before = vrot_fd_watch_count();
        gint base;

        spin();
        base = polled();
        for (int i = 0; i < MANY; i++) {
                pair(sv[i]);
                seen[i] = (Seen){ 0 };
                id[i] = vrot_fd_watch_add(sv[i][0], G_IO_IN, on_fd, &seen[i]);
                CU_ASSERT_NOT_EQUAL(id[i], 0);
        }
        CU_ASSERT_EQUAL(vrot_fd_watch_count(), before + MANY);
        /* The main context polls the set, not its members. */
        CU_ASSERT(polled() <= base + 1);       /* the set's descriptor, at most */
        CU_ASSERT_EQUAL(write(sv[317][1], "x", 1), 1);
        spin();
        for (int i = 0; i < MANY; i++)
                CU_ASSERT_EQUAL(seen[i].calls, i == 317 ? 1u : 0u);
        CU_ASSERT(seen[317].last & G_IO_IN);
        /* Level-triggered, as g_unix_fd_add(): read, so no more calls. */
        spin();
        CU_ASSERT_EQUAL(seen[317].calls, 1);
        /* A peer that closes: G_IO_HUP (reported until the watch goes). */
        seen[3].remove = TRUE;
        close(sv[3][1]);
        spin();
        CU_ASSERT(seen[3].calls == 1 && (seen[3].last & G_IO_HUP));
        for (int i = 0; i < MANY; i++) {
                vrot_fd_watch_remove(id[i]);
                close(sv[i][0]);
                if (i != 3)
                        close(sv[i][1]);
        }
        CU_ASSERT_EQUAL(vrot_fd_watch_count(), before);
}

static void test_fdwatch_remove_by_return_and_by_other(void)
{
        int a[2], b[2];
        Seen sa = { .remove = TRUE }, sb = { 0 };
        guint ia, ib;

        pair(a);
        pair(b);
        ia = vrot_fd_watch_add(a[0], G_IO_IN, on_fd, &sa);
        ib = vrot_fd_watch_add(b[0], G_IO_IN, on_fd, &sb);
        CU_ASSERT_EQUAL(write(a[1], "xx", 2), 2);
        spin();
        CU_ASSERT_EQUAL(sa.calls, 1);
        CU_ASSERT_EQUAL(write(a[1], "y", 1), 1);       /* removed: not called again */
        spin();
        CU_ASSERT_EQUAL(sa.calls, 1);
        vrot_fd_watch_remove(ia);                       /* unknown by now: ignored */

        /* Both ready in one wakeup; whichever runs first removes the other,
         * which is then not called. */
        Seen s1 = { 0 }, s2 = { 0 };
        guint i1, i2;
        int c[2];

        vrot_fd_watch_remove(ib);
        pair(c);
        i1 = vrot_fd_watch_add(b[0], G_IO_IN, on_fd, &s1);
        i2 = vrot_fd_watch_add(c[0], G_IO_IN, on_fd, &s2);
        s1.kill = &i2;
        s2.kill = &i1;
        CU_ASSERT_EQUAL(write(b[1], "z", 1), 1);
        CU_ASSERT_EQUAL(write(c[1], "z", 1), 1);
        spin();
        CU_ASSERT_EQUAL(s1.calls + s2.calls, 1);
        vrot_fd_watch_remove(i1);
        vrot_fd_watch_remove(i2);
        close(a[0]), close(a[1]), close(b[0]), close(b[1]), close(c[0]), close(c[1]);
}

/* Remove, close, and the same number comes back for a new descriptor:
 * the new watch gets its events, and removing the old ID again harms
 * nothing. */
static void test_fdwatch_number_reused(void)
{
        int a[2], b[2];
        Seen sa = { 0 }, sb = { 0 };
        guint ia, ib;
        int num;

        pair(a);
        num = a[0];
        ia = vrot_fd_watch_add(a[0], G_IO_IN, on_fd, &sa);
        vrot_fd_watch_remove(ia);
        close(a[0]);
        pair(b);
        if (b[0] != num && b[1] == num) {       /* either end may get the number */
                int t = b[0];
                b[0] = b[1];
                b[1] = t;
        }
        CU_ASSERT_EQUAL_FATAL(b[0], num);
        ib = vrot_fd_watch_add(b[0], G_IO_IN, on_fd, &sb);
        CU_ASSERT_NOT_EQUAL(ib, ia);
        vrot_fd_watch_remove(ia);
        CU_ASSERT_EQUAL(write(b[1], "x", 1), 1);
        spin();
        CU_ASSERT_EQUAL(sa.calls, 0);
        CU_ASSERT_EQUAL(sb.calls, 1);
        vrot_fd_watch_remove(ib);
        close(a[1]), close(b[0]), close(b[1]);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_fdwatch_many_one_ready),
                UNIT_CASE(test_fdwatch_remove_by_return_and_by_other),
                UNIT_CASE(test_fdwatch_number_reused),
        };
        return UNIT_RUN("fdwatch", cases);
}
