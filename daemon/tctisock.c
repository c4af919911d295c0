/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>
#include <tss2/tss2_tctildr.h>

#include "tctisock.h"

#define SOCK_TCTI_MAGIC 0x76726f74736f636bULL         /* "vrotsock" */
#define CONF_PREFIX "swtpm:path="
#define HEADER_LEN 10                                   /* tag, size, code */
#define ANSWER_MAX 4096                                 /* TPM2_MAX_RESPONSE_SIZE of a vTPM */

typedef struct SockTcti {
        TSS2_TCTI_CONTEXT_COMMON_V2 common;
        int fd;
        guint8 header[HEADER_LEN];      /* the answer's, read when ESYS asks for its size */
        guint32 answer_len;             /* 0: no answer under way */
        gboolean broken;
} SockTcti;

static SockTcti *sock_tcti(TSS2_TCTI_CONTEXT *ctx)
{
        return (SockTcti *)ctx;
}

static TSS2_RC broken(SockTcti *t, TSS2_RC rc)
{
        t->broken = TRUE;
        return rc;
}

static TSS2_RC sock_transmit(TSS2_TCTI_CONTEXT *ctx, size_t size, const uint8_t *command)
{
        SockTcti *t = sock_tcti(ctx);
        size_t off = 0;

        if (!command)
                return TSS2_TCTI_RC_BAD_REFERENCE;
        if (t->broken)
                return TSS2_TCTI_RC_IO_ERROR;
        if (t->answer_len)
                return TSS2_TCTI_RC_BAD_SEQUENCE;       /* the last answer is still unread */
        while (off < size) {
                ssize_t n = send(t->fd, command + off, size - off, MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return broken(t, TSS2_TCTI_RC_IO_ERROR);
                off += (size_t)n;
        }
        return TSS2_RC_SUCCESS;
}

/* Exactly @len bytes; @timeout (ms, or TSS2_TCTI_TIMEOUT_BLOCK) for each
 * wait.  A timeout before the first byte of an answer is TRY_AGAIN; one
 * inside it breaks the stream. */
static TSS2_RC read_exact(SockTcti *t, guint8 *buf, size_t len, int32_t timeout, gboolean first)
{
        size_t off = 0;

        while (off < len) {
                struct pollfd p = { .fd = t->fd, .events = POLLIN };
                int r = poll(&p, 1, timeout);
                ssize_t n;

                if (r < 0 && errno == EINTR)
                        continue;
                if (r == 0)
                        return first && off == 0 ? TSS2_TCTI_RC_TRY_AGAIN
                                                 : broken(t, TSS2_TCTI_RC_IO_ERROR);
                n = r < 0 ? -1 : recv(t->fd, buf + off, len - off, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return broken(t, TSS2_TCTI_RC_IO_ERROR);
                off += (size_t)n;
        }
        return TSS2_RC_SUCCESS;
}

/* ESYS asks for the size first (@response NULL), then for the bytes. */
static TSS2_RC sock_receive(TSS2_TCTI_CONTEXT *ctx, size_t *size, uint8_t *response,
                            int32_t timeout)
{
        SockTcti *t = sock_tcti(ctx);
        TSS2_RC rc;

        if (!size)
                return TSS2_TCTI_RC_BAD_REFERENCE;
        if (t->broken)
                return TSS2_TCTI_RC_IO_ERROR;
        if (!t->answer_len) {
                rc = read_exact(t, t->header, HEADER_LEN, timeout, TRUE);
                if (rc != TSS2_RC_SUCCESS)
                        return rc;
                t->answer_len = (guint32)t->header[2] << 24 | (guint32)t->header[3] << 16 |
                                (guint32)t->header[4] << 8 | t->header[5];
                if (t->answer_len < HEADER_LEN || t->answer_len > ANSWER_MAX)
                        return broken(t, TSS2_TCTI_RC_MALFORMED_RESPONSE);
        }
        if (!response) {
                *size = t->answer_len;
                return TSS2_RC_SUCCESS;
        }
        if (*size < t->answer_len) {
                *size = t->answer_len;
                return TSS2_TCTI_RC_INSUFFICIENT_BUFFER;
        }
        memcpy(response, t->header, HEADER_LEN);
        rc = read_exact(t, response + HEADER_LEN, t->answer_len - HEADER_LEN, timeout, FALSE);
        if (rc != TSS2_RC_SUCCESS)
                return rc;
        *size = t->answer_len;
        t->answer_len = 0;
        return TSS2_RC_SUCCESS;
}

static void sock_finalize(TSS2_TCTI_CONTEXT *ctx)
{
        SockTcti *t = sock_tcti(ctx);

        if (t->fd >= 0)
                close(t->fd);
        t->fd = -1;
}

static TSS2_RC sock_cancel(TSS2_TCTI_CONTEXT *ctx)
{
        (void)ctx;
        return TSS2_TCTI_RC_NOT_IMPLEMENTED;
}

static TSS2_RC sock_poll_handles(TSS2_TCTI_CONTEXT *ctx, TSS2_TCTI_POLL_HANDLE *handles, size_t *num)
{
        (void)ctx, (void)handles, (void)num;
        return TSS2_TCTI_RC_NOT_IMPLEMENTED;
}

static TSS2_RC sock_set_locality(TSS2_TCTI_CONTEXT *ctx, uint8_t locality)
{
        (void)ctx;
        return locality == 0 ? TSS2_RC_SUCCESS : TSS2_TCTI_RC_NOT_IMPLEMENTED;
}

static TSS2_RC sock_make_sticky(TSS2_TCTI_CONTEXT *ctx, TPM2_HANDLE *handle, uint8_t sticky)
{
        (void)ctx, (void)handle, (void)sticky;
        return TSS2_TCTI_RC_NOT_IMPLEMENTED;
}

static TSS2_RC sock_open(const char *path, TSS2_TCTI_CONTEXT **ret)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        SockTcti *t;
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path) || !*path)
                return TSS2_TCTI_RC_BAD_VALUE;
        memcpy(sa.sun_path, path, strlen(path));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return TSS2_TCTI_RC_IO_ERROR;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                return TSS2_TCTI_RC_IO_ERROR;
        }
        t = g_new0(SockTcti, 1);
        t->common = (TSS2_TCTI_CONTEXT_COMMON_V2){
                .v1 = {
                        .magic = SOCK_TCTI_MAGIC,
                        .version = 2,
                        .transmit = sock_transmit,
                        .receive = sock_receive,
                        .finalize = sock_finalize,
                        .cancel = sock_cancel,
                        .getPollHandles = sock_poll_handles,
                        .setLocality = sock_set_locality,
                },
                .makeSticky = sock_make_sticky,
        };
        t->fd = fd;
        *ret = (TSS2_TCTI_CONTEXT *)t;
        return TSS2_RC_SUCCESS;
}

TSS2_RC vrot_tcti_open(const char *conf, TSS2_TCTI_CONTEXT **ret)
{
        if (!conf || !ret)
                return TSS2_TCTI_RC_BAD_REFERENCE;
        /* "swtpm:path=PATH" and no other option (a comma would start one). */
        if (g_str_has_prefix(conf, CONF_PREFIX) && !strchr(conf, ','))
                return sock_open(conf + strlen(CONF_PREFIX), ret);
        return Tss2_TctiLdr_Initialize(conf, ret);
}

gboolean vrot_tcti_is_sock(TSS2_TCTI_CONTEXT *ctx)
{
        return ctx && TSS2_TCTI_MAGIC(ctx) == SOCK_TCTI_MAGIC;
}

void vrot_tcti_close(TSS2_TCTI_CONTEXT **ctx)
{
        if (!ctx || !*ctx)
                return;
        if (vrot_tcti_is_sock(*ctx)) {
                sock_finalize(*ctx);
                g_free(*ctx);
                *ctx = NULL;
                return;
        }
        Tss2_TctiLdr_Finalize(ctx);
}
