/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <string.h>

#include "bytes.h"
#include "ptm.h"

/*
 * Each command's wire shape: the fixed body after the command code, and for
 * length-prefixed ones the offset of the u32 length and its limit.
 */
typedef struct Shape {
        const char *name;
        uint16_t body;          /* fixed body bytes after cmd */
        bool exact;             /* swtpm refuses trailing bytes */
        int16_t len_at;         /* offset of a u32 data length in the body, -1: none */
        uint32_t len_max;
        bool no_wait;           /* swtpm does not wait for the body (see frame) */
} Shape;

static const Shape shapes[] = {
        [VROT_PTM_GET_CAPABILITY] = { .name = "GET_CAPABILITY", .len_at = -1 },
        [VROT_PTM_INIT] = { .name = "INIT", .body = 4, .exact = true, .len_at = -1 },
        [VROT_PTM_SHUTDOWN] = { .name = "SHUTDOWN", .exact = true, .len_at = -1 },
        [VROT_PTM_GET_TPMESTABLISHED] = { .name = "GET_TPMESTABLISHED", .exact = true, .len_at = -1 },
        [VROT_PTM_SET_LOCALITY] = { .name = "SET_LOCALITY", .body = 1, .len_at = -1 },
        [VROT_PTM_HASH_START] = { .name = "HASH_START", .exact = true, .len_at = -1 },
        [VROT_PTM_HASH_DATA] = { .name = "HASH_DATA", .body = 4, .len_at = 0, .len_max = VROT_PTM_HASH_MAX },  /* exact: see parse */
        [VROT_PTM_HASH_END] = { .name = "HASH_END", .exact = true, .len_at = -1 },
        [VROT_PTM_CANCEL_TPM_CMD] = { .name = "CANCEL_TPM_CMD", .exact = true, .len_at = -1 },
        [VROT_PTM_STORE_VOLATILE] = { .name = "STORE_VOLATILE", .exact = true, .len_at = -1 },
        [VROT_PTM_RESET_TPMESTABLISHED] = { .name = "RESET_TPMESTABLISHED", .body = 1, .len_at = -1 },
        [VROT_PTM_GET_STATEBLOB] = { .name = "GET_STATEBLOB", .body = 12, .len_at = -1 },
        [VROT_PTM_SET_STATEBLOB] = { .name = "SET_STATEBLOB", .body = 12, .len_at = 8, .len_max = VROT_PTM_BLOB_MAX },  /* exact: see parse */
        [VROT_PTM_STOP] = { .name = "STOP", .exact = true, .len_at = -1 },
        [VROT_PTM_GET_CONFIG] = { .name = "GET_CONFIG", .exact = true, .len_at = -1 },
        [VROT_PTM_SET_DATAFD] = { .name = "SET_DATAFD", .len_at = -1 },
        [VROT_PTM_SET_BUFFERSIZE] = { .name = "SET_BUFFERSIZE", .body = 4, .len_at = -1, .no_wait = true },
        [VROT_PTM_GET_INFO] = { .name = "GET_INFO", .body = 16, .len_at = -1, .no_wait = true },
        [VROT_PTM_LOCK_STORAGE] = { .name = "LOCK_STORAGE", .body = 4, .len_at = -1 },
};

static const Shape *shape_of(uint32_t cmd)
{
        if (cmd == 0 || cmd >= sizeof(shapes) / sizeof(shapes[0]))
                return NULL;
        return &shapes[cmd];
}

const char *vrot_ptm_cmd_name(uint32_t cmd)
{
        const Shape *s = shape_of(cmd);
        return s ? s->name : "UNKNOWN";
}

int vrot_ptm_frame(const uint8_t *buf, size_t len, size_t *ret_need, VrotError *err)
{
        const Shape *s;
        size_t need;
        uint32_t dlen;

        if (len < 4) {
                *ret_need = 4;
                return 0;
        }
        s = shape_of(vrot_get_be32(buf));
        if (!s) {
                *ret_need = 4;
                return 0;
        }
        /* swtpm 0.7.1 frames SET_BUFFERSIZE and GET_INFO by their command
         * code alone: a body in a later write than the code is not waited
         * for.  Clients send each request in one write, and then the body
         * is there; matching swtpm keeps split requests answered alike. */
        need = 4 + (s->no_wait ? 0 : (size_t)s->body);
        if (s->len_at >= 0 && len >= 4 + (size_t)s->len_at + 4) {
                dlen = vrot_get_be32(buf + 4 + s->len_at);
                if (dlen > s->len_max)
                        return vrot_err(err, EMSGSIZE, "%s announces %u data bytes, at most %u",
                                        s->name, dlen, s->len_max);
                need += dlen;
        }
        *ret_need = need;
        return 0;
}

int vrot_ptm_parse(const uint8_t *buf, size_t len, VrotPtmRequest *ret, VrotError *err)
{
        VrotPtmRequest r = { 0 };
        const uint8_t *b = buf + 4;
        const Shape *s;
        size_t body;

        if (len < 4)
                return vrot_err(err, EINVAL, "request of %zu bytes has no command code", len);
        r.cmd = vrot_get_be32(buf);
        s = shape_of(r.cmd);
        if (!s) {
                *ret = r;
                return 0;
        }
        body = len - 4;
        if (body < s->body || (s->exact && body != s->body))
                return vrot_err(err, EINVAL, "%s: %zu body bytes, expected %s%u", s->name,
                                body, s->exact ? "" : "at least ", s->body);

        switch (r.cmd) {
        case VROT_PTM_INIT:
                r.u.init_flags = vrot_get_be32(b);
                break;
        case VROT_PTM_SET_LOCALITY:
        case VROT_PTM_RESET_TPMESTABLISHED:
                r.u.locality = b[0];
                break;
        case VROT_PTM_HASH_DATA:
                r.u.hash.len = vrot_get_be32(b);
                r.u.hash.data = b + 4;
                /* More data than announced is refused: swtpm would hash it or
                 * hang on it, depending on how it arrived. */
                if (r.u.hash.len > VROT_PTM_HASH_MAX || body - 4 != r.u.hash.len)
                        return vrot_err(err, EINVAL, "HASH_DATA: length %u but %zu bytes",
                                        r.u.hash.len, body - 4);
                break;
        case VROT_PTM_GET_STATEBLOB:
                r.u.get_state.flags = vrot_get_be32(b);
                r.u.get_state.type = vrot_get_be32(b + 4);
                r.u.get_state.offset = vrot_get_be32(b + 8);
                break;
        case VROT_PTM_SET_STATEBLOB:
                r.u.set_state.flags = vrot_get_be32(b);
                r.u.set_state.type = vrot_get_be32(b + 4);
                r.u.set_state.len = vrot_get_be32(b + 8);
                r.u.set_state.data = b + 12;
                if (r.u.set_state.len > VROT_PTM_BLOB_MAX || body - 12 != r.u.set_state.len)
                        return vrot_err(err, EINVAL, "SET_STATEBLOB: length %u but %zu bytes",
                                        r.u.set_state.len, body - 12);
                break;
        case VROT_PTM_SET_BUFFERSIZE:
                r.u.buffersize = vrot_get_be32(b);
                break;
        case VROT_PTM_GET_INFO:
                r.u.info.flags = vrot_get_be64(b);
                r.u.info.offset = vrot_get_be32(b + 8);
                break;
        case VROT_PTM_LOCK_STORAGE:
                r.u.retries = vrot_get_be32(b);
                break;
        default:
                break;
        }
        *ret = r;
        return 0;
}
