/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * daemon/tctisock.c against a fake peer (a thread on a UNIX socket): one
 * connection for many commands, the size-then-bytes receive ESYS does, and
 * the bad answers a broken or hostile worker could give, each an error that
 * leaves the TCTI broken, never a read past the buffer.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>
#include <tss2/tss2_tcti.h>

#include "tctisock.h"
#include "unit.h"

/* What the fake peer answers to each command it reads, in order. */
typedef struct Script {
        const guint8 *answers[4];
        gsize lens[4];
        gsize n;
        gboolean close_after;           /* close after the last answer, and stop */
        int listen_fd;
        guint accepted;                 /* connections taken */
        guint commands;                 /* commands read */
} Script;

static gpointer peer(gpointer data)
{
        Script *s = data;
        guint8 buf[4096];
        int fd;

        while ((fd = accept(s->listen_fd, NULL, NULL)) >= 0) {
                s->accepted++;
                for (gsize i = 0; ; i++) {
                        ssize_t n = read(fd, buf, sizeof(buf));

                        if (n <= 0)
                                break;
                        s->commands++;
                        if (i >= s->n)
                                break;  /* close: no answer */
                        if (write(fd, s->answers[i], s->lens[i]) != (ssize_t)s->lens[i] ||
                            (s->close_after && i + 1 >= s->n))
                                break;
                }
                close(fd);
                if (s->close_after)
                        break;
        }
        return NULL;
}

static gchar *serve(Script *s, GThread **thread)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        gchar *path = g_strdup_printf("%s/tpm-%u.sock", unit_tmpdir(), g_random_int());

        g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
        s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CU_ASSERT_FATAL(s->listen_fd >= 0);
        CU_ASSERT_FATAL(bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
        CU_ASSERT_FATAL(listen(s->listen_fd, 4) == 0);
        *thread = g_thread_new("peer", peer, s);
        return path;
}

static void stop(Script *s, GThread *thread, gchar *path)
{
        shutdown(s->listen_fd, SHUT_RDWR);
        close(s->listen_fd);
        g_thread_join(thread);
        unlink(path);
        g_free(path);
}

static TSS2_TCTI_CONTEXT *open_tcti(const gchar *path)
{
        g_autofree gchar *conf = g_strdup_printf("swtpm:path=%s", path);
        TSS2_TCTI_CONTEXT *t = NULL;

        CU_ASSERT_EQUAL_FATAL(vrot_tcti_open(conf, &t), TSS2_RC_SUCCESS);
        CU_ASSERT_TRUE(vrot_tcti_is_sock(t));
        return t;
}

/* TPM2_GetRandom(8) and a 20-byte answer: header + size + 8 bytes. */
static const guint8 command[12] = { 0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8 };
static const guint8 answer[20] = { 0x80, 0x01, 0, 0, 0, 20, 0, 0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8 };

/* Two commands, one connection; the size first, then the bytes; a buffer
 * too small is said so, and the answer stays readable. */
static void test_tctisock_round_trips(void)
{
        Script s = { .answers = { answer, answer }, .lens = { 20, 20 }, .n = 2 };
        GThread *th;
        gchar *path = serve(&s, &th);
        TSS2_TCTI_CONTEXT *t = open_tcti(path);
        guint8 out[64];
        size_t size;

        for (int i = 0; i < 2; i++) {
                CU_ASSERT_EQUAL(Tss2_Tcti_Transmit(t, sizeof(command), command), TSS2_RC_SUCCESS);
                size = 0;
                CU_ASSERT_EQUAL(Tss2_Tcti_Receive(t, &size, NULL, TSS2_TCTI_TIMEOUT_BLOCK),
                                TSS2_RC_SUCCESS);
                CU_ASSERT_EQUAL(size, sizeof(answer));
                size = 10;
                CU_ASSERT_EQUAL(Tss2_Tcti_Receive(t, &size, out, TSS2_TCTI_TIMEOUT_BLOCK),
                                TSS2_TCTI_RC_INSUFFICIENT_BUFFER);
                CU_ASSERT_EQUAL(size, sizeof(answer));
                /* A command now would mix with the unread answer. */
                CU_ASSERT_EQUAL(Tss2_Tcti_Transmit(t, sizeof(command), command),
                                TSS2_TCTI_RC_BAD_SEQUENCE);
                size = sizeof(out);
                CU_ASSERT_EQUAL(Tss2_Tcti_Receive(t, &size, out, TSS2_TCTI_TIMEOUT_BLOCK),
                                TSS2_RC_SUCCESS);
                CU_ASSERT(size == sizeof(answer) && memcmp(out, answer, size) == 0);
        }
        vrot_tcti_close(&t);
        CU_ASSERT_PTR_NULL(t);
        stop(&s, th, path);
        CU_ASSERT_EQUAL(s.accepted, 1);
        CU_ASSERT_EQUAL(s.commands, 2);
}

/* An answer whose size field is below the header or above 4096, a peer
 * that closes mid-answer or without one: errors, and the TCTI stays
 * broken (ESYS could not recover either). */
static void test_tctisock_bad_answers(void)
{
        static const guint8 tiny[10] = { 0x80, 0x01, 0, 0, 0, 9, 0, 0, 0, 0 };
        static const guint8 huge[10] = { 0x80, 0x01, 0, 0, 0x10, 0x01, 0, 0, 0, 0 };  /* 4097 */
        static const guint8 cut[14] = { 0x80, 0x01, 0, 0, 0, 20, 0, 0, 0, 0, 0, 8, 1, 2 };
        static const struct { const guint8 *a; gsize len; TSS2_RC rc; } cases[] = {
                { tiny, sizeof(tiny), TSS2_TCTI_RC_MALFORMED_RESPONSE },
                { huge, sizeof(huge), TSS2_TCTI_RC_MALFORMED_RESPONSE },
                { cut, sizeof(cut), TSS2_TCTI_RC_IO_ERROR },
                { NULL, 0, TSS2_TCTI_RC_IO_ERROR },
        };

        for (gsize c = 0; c < G_N_ELEMENTS(cases); c++) {
                Script s = { .answers = { cases[c].a }, .lens = { cases[c].len },
                             .n = cases[c].a ? 1 : 0, .close_after = TRUE };
                GThread *th;
                gchar *path = serve(&s, &th);
                TSS2_TCTI_CONTEXT *t = open_tcti(path);
                guint8 out[4096];
                size_t size = sizeof(out);
                TSS2_RC rc;

                CU_ASSERT_EQUAL(Tss2_Tcti_Transmit(t, sizeof(command), command), TSS2_RC_SUCCESS);
                rc = Tss2_Tcti_Receive(t, &size, out, TSS2_TCTI_TIMEOUT_BLOCK);
                if (rc != cases[c].rc)
                        fprintf(stderr, "case %zu: 0x%x, not 0x%x\n", c, (unsigned)rc,
                                (unsigned)cases[c].rc);
                CU_ASSERT_EQUAL(rc, cases[c].rc);
                CU_ASSERT_EQUAL(Tss2_Tcti_Transmit(t, sizeof(command), command),
                                TSS2_TCTI_RC_IO_ERROR);
                vrot_tcti_close(&t);
                stop(&s, th, path);
        }
}

/* No answer within the timeout: TRY_AGAIN, and the answer that comes later
 * is still read whole.  Nobody listening: an I/O error at open. */
static void test_tctisock_timeout_and_no_peer(void)
{
        Script s = { .answers = { answer }, .lens = { 20 }, .n = 1 };
        g_autofree gchar *conf = NULL;
        TSS2_TCTI_CONTEXT *t = NULL;
        guint8 out[64];
        size_t size = sizeof(out);
        GThread *th;
        gchar *path;

        path = serve(&s, &th);
        t = open_tcti(path);
        /* Nothing sent yet: nothing to read. */
        CU_ASSERT_EQUAL(Tss2_Tcti_Receive(t, &size, out, 50), TSS2_TCTI_RC_TRY_AGAIN);
        CU_ASSERT_EQUAL(Tss2_Tcti_Transmit(t, sizeof(command), command), TSS2_RC_SUCCESS);
        size = sizeof(out);
        CU_ASSERT_EQUAL(Tss2_Tcti_Receive(t, &size, out, 5000), TSS2_RC_SUCCESS);
        CU_ASSERT_EQUAL(size, sizeof(answer));
        vrot_tcti_close(&t);
        stop(&s, th, path);

        conf = g_strdup_printf("swtpm:path=%s/nobody-listens.sock", unit_tmpdir());
        CU_ASSERT_EQUAL(vrot_tcti_open(conf, &t), TSS2_TCTI_RC_IO_ERROR);
        CU_ASSERT_PTR_NULL(t);
        vrot_tcti_close(NULL);
        vrot_tcti_close(&t);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_tctisock_round_trips),
                UNIT_CASE(test_tctisock_bad_answers),
                UNIT_CASE(test_tctisock_timeout_and_no_peer),
        };

        return UNIT_RUN("tctisock", cases);
}
