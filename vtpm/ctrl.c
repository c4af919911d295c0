/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The control channel's commands, one handler each, in a table indexed by
 * command code.  The semantics follow swtpm 0.7.1 (src/swtpm/ctrlchannel.c)
 * because QEMU and libvirt were written against it; where vrot differs on
 * purpose the handler says so and tests/integration/test_ctrl_diff.py
 * documents it.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>
#include <libtpms/tpm_tis.h>

#include "bytes.h"
#include "log.h"
#include "ptm.h"
#include "tpm.h"
#include "worker.h"

#define GETINFO_CHUNK 3072      /* swtpm's PTM_GETINFO_SIZE */

typedef enum Needs { ANY, RUNNING, STOPPED } Needs;

typedef void (*Handler)(Worker *w, const VrotPtmRequest *r, int fd, Reply *out);

typedef struct Command {
        Handler fn;
        Needs needs;
} Command;

static void put_result(Reply *out, uint32_t rc)
{
        vrot_put_be32(out->head, rc);
        out->head_len = 4;
}

void vtpm_ctrl_reply_error(Reply *out, uint32_t result)
{
        memset(out, 0, sizeof(*out));
        put_result(out, result);
}

static void h_get_capability(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        (void)w, (void)r, (void)fd;
        /* {result, caps}: the same 8 bytes as swtpm 0.7.1's u64.  vrot does not
         * advertise SEND_COMMAND_HEADER (bit 15): it does not take the TCG
         * simulator prefix on the data channel, and QEMU never sends it. */
        put_result(out, VROT_TPM_SUCCESS);
        vrot_put_be32(out->head + 4, VROT_PTM_CAP_ALL & ~(1u << 15));
        out->head_len = 8;
}

static void h_init(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        (void)w, (void)fd;
        put_result(out, vtpm_tpm_init(r->u.init_flags));
}

static void h_shutdown(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        (void)r, (void)fd;
        vtpm_tpm_stop();
        w->terminate = true;
        put_result(out, VROT_TPM_SUCCESS);
}

static void h_stop(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        (void)w, (void)r, (void)fd;
        vtpm_tpm_stop();
        put_result(out, VROT_TPM_SUCCESS);
}

static void h_get_established(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        TPM_BOOL bit = 0;

        (void)w, (void)r, (void)fd;
        put_result(out, TPM_IO_TpmEstablished_Get(&bit));
        memset(out->head + 4, 0, 4);    /* u8 bit + padding, as swtpm's struct */
        out->head[4] = bit ? 1 : 0;
        out->head_len = 8;
}

static void h_reset_established(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        uint8_t saved = vtpm_tpm_locality();

        (void)w, (void)fd;
        if (r->u.locality > 4) {
                put_result(out, VROT_TPM_BAD_LOCALITY);
                return;
        }
        /* The TPM checks the caller's locality (only 3 and 4 may reset). */
        vtpm_tpm_set_locality(r->u.locality);
        put_result(out, TPM_IO_TpmEstablished_Reset());
        vtpm_tpm_set_locality(saved);
}

static void h_set_locality(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        (void)w, (void)fd;
        if (r->u.locality > 4) {
                put_result(out, VROT_TPM_BAD_LOCALITY);
                return;
        }
        vtpm_tpm_set_locality(r->u.locality);
        put_result(out, VROT_TPM_SUCCESS);
}

static void h_hash_start(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        (void)w, (void)r, (void)fd;
        put_result(out, TPM_IO_Hash_Start());
}

static void h_hash_data(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        (void)w, (void)fd;
        put_result(out, TPM_IO_Hash_Data(r->u.hash.data, r->u.hash.len));
}

static void h_hash_end(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        (void)w, (void)r, (void)fd;
        put_result(out, TPM_IO_Hash_End());
}

static void h_cancel(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        (void)w, (void)r, (void)fd;
        /* Commands run to completion on the worker's one thread, so there is
         * never one in flight to cancel when this arrives. */
        put_result(out, TPMLIB_CancelCommand());
}

static void h_store_volatile(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        (void)w, (void)r, (void)fd;
        put_result(out, vtpm_tpm_store_volatile());
}

static void h_get_stateblob(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        uint8_t *plain = NULL, *blob = NULL;
        uint32_t plain_len = 0, blob_len = 0, flags = 0, rc, offset = r->u.get_state.offset;

        (void)fd;
        rc = vtpm_tpm_get_state(r->u.get_state.type, &plain, &plain_len);
        if (rc == TPM_SUCCESS)
                rc = vtpm_stateblob_export(w, r->u.get_state.type, r->u.get_state.flags,
                                           plain, plain_len, &blob, &blob_len, &flags);
        vrot_free_wiped(plain, plain_len);
        if (rc != TPM_SUCCESS || offset >= blob_len) {
                vrot_free_wiped(blob, blob_len);
                blob = NULL;
                blob_len = offset = 0;
        }
        /* {result, flags, totlength, length, data}: like swtpm, the whole rest
         * of the blob from @offset in one answer, and totlength = length. */
        put_result(out, rc);
        vrot_put_be32(out->head + 4, flags);
        vrot_put_be32(out->head + 8, blob_len - offset);
        vrot_put_be32(out->head + 12, blob_len - offset);
        out->head_len = VROT_PTM_GETSTATE_HDR;
        if (blob_len) {
                memmove(blob, blob + offset, blob_len - offset);
                out->tail = blob;
                out->tail_len = blob_len - offset;
                out->tail_owned = true;
        }
}

static void h_set_stateblob(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        uint8_t *plain = NULL;
        uint32_t plain_len = 0, rc;

        (void)fd;
        rc = vtpm_stateblob_import(w, r->u.set_state.type, r->u.set_state.flags,
                                   r->u.set_state.data, r->u.set_state.len, &plain, &plain_len);
        if (rc == TPM_SUCCESS)
                rc = vtpm_tpm_set_state(r->u.set_state.type, plain, plain_len);
        vrot_free_wiped(plain, plain_len);
        if (rc != TPM_SUCCESS)
                log_warn("SET_STATEBLOB of type %u refused (0x%x)", r->u.set_state.type, rc);
        put_result(out, rc);
}

static void h_get_config(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        (void)r, (void)fd;
        /* FILE_KEY: the state at rest is encrypted, as swtpm says with a key. */
        put_result(out, VROT_TPM_SUCCESS);
        vrot_put_be32(out->head + 4, w->sealer->key ? VROT_PTM_CONFIG_FILE_KEY : 0);
        out->head_len = 8;
}

static void h_set_datafd(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        (void)r;
        if (w->data_passed) {
                if (fd >= 0)
                        close(fd);
                put_result(out, VROT_TPM_IOERROR);
                return;
        }
        if (fd < 0) {
                put_result(out, VROT_TPM_BAD_PARAMETER);
                return;
        }
        /* The passed channel replaces an accepted data client, if any. */
        if (w->data.fd >= 0)
                close(w->data.fd);
        w->data.fd = fd;
        w->data.len = 0;
        w->data.deadline_ms = 0;
        w->data_passed = true;
        put_result(out, VROT_TPM_SUCCESS);
}

static void h_set_buffersize(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        uint32_t min = 0, max = 0, size;

        (void)w, (void)fd;
        if (r->u.buffersize > 0 && vtpm_tpm_running()) {
                put_result(out, VROT_TPM_BAD_ORDINAL);
                return;
        }
        size = TPMLIB_SetBufferSize(r->u.buffersize, &min, &max);
        put_result(out, VROT_TPM_SUCCESS);
        vrot_put_be32(out->head + 4, size);
        vrot_put_be32(out->head + 8, min);
        vrot_put_be32(out->head + 12, max);
        out->head_len = 16;
}

static void h_get_info(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        char *info = TPMLIB_GetInfo((enum TPMLIB_InfoFlags)r->u.info.flags);
        size_t total, len;

        (void)w, (void)fd;
        if (!info) {
                put_result(out, VROT_TPM_SIZE);
                return;
        }
        total = strlen(info) + 1;
        if (r->u.info.offset >= total - 1) {
                free(info);
                put_result(out, VROT_TPM_BAD_PARAMETER);
                return;
        }
        len = total - r->u.info.offset;
        if (len > GETINFO_CHUNK)
                len = GETINFO_CHUNK;
        put_result(out, VROT_TPM_SUCCESS);
        vrot_put_be32(out->head + 4, (uint32_t)total);
        vrot_put_be32(out->head + 8, (uint32_t)len);
        out->head_len = 12;
        memmove(info, info + r->u.info.offset, len);
        out->tail = (uint8_t *)info;
        out->tail_len = len;
        out->tail_owned = true;
}

static void h_lock_storage(Worker *w, const VrotPtmRequest *r, int fd, Reply *out)
{
        (void)w, (void)r, (void)fd;
        /* The worker holds an exclusive lock on its state directory from
         * start-up (vrot_store_open), so the storage is always locked. */
        put_result(out, VROT_TPM_SUCCESS);
}

static const Command commands[] = {
        [VROT_PTM_GET_CAPABILITY]       = { h_get_capability, ANY },
        [VROT_PTM_INIT]                 = { h_init, ANY },
        [VROT_PTM_SHUTDOWN]             = { h_shutdown, ANY },
        [VROT_PTM_GET_TPMESTABLISHED]   = { h_get_established, RUNNING },
        [VROT_PTM_SET_LOCALITY]         = { h_set_locality, ANY },
        [VROT_PTM_HASH_START]           = { h_hash_start, RUNNING },
        [VROT_PTM_HASH_DATA]            = { h_hash_data, RUNNING },
        [VROT_PTM_HASH_END]             = { h_hash_end, RUNNING },
        [VROT_PTM_CANCEL_TPM_CMD]       = { h_cancel, RUNNING },
        [VROT_PTM_STORE_VOLATILE]       = { h_store_volatile, RUNNING },
        [VROT_PTM_RESET_TPMESTABLISHED] = { h_reset_established, RUNNING },
        [VROT_PTM_GET_STATEBLOB]        = { h_get_stateblob, RUNNING },
        [VROT_PTM_SET_STATEBLOB]        = { h_set_stateblob, STOPPED },
        [VROT_PTM_STOP]                 = { h_stop, ANY },
        [VROT_PTM_GET_CONFIG]           = { h_get_config, ANY },
        [VROT_PTM_SET_DATAFD]           = { h_set_datafd, ANY },
        [VROT_PTM_SET_BUFFERSIZE]       = { h_set_buffersize, ANY },
        [VROT_PTM_GET_INFO]             = { h_get_info, ANY },
        [VROT_PTM_LOCK_STORAGE]         = { h_lock_storage, ANY },
};

void vtpm_ctrl_execute(Worker *w, const uint8_t *buf, size_t len, int fd, Reply *out)
{
        const Command *c = NULL;
        VrotPtmRequest req;
        VrotError err = { 0 };
        uint32_t cmd = len >= 4 ? vrot_get_be32(buf) : 0;

        memset(out, 0, sizeof(*out));
        if (fd >= 0 && cmd != VROT_PTM_SET_DATAFD) {
                close(fd);      /* descriptors ride only with SET_DATAFD */
                fd = -1;
        }
        if (cmd < sizeof(commands) / sizeof(commands[0]))
                c = &commands[cmd];
        if (!c || !c->fn) {
                log_warn("control channel: unknown command 0x%08x", cmd);
                put_result(out, VROT_TPM_BAD_ORDINAL);
                goto done;
        }
        /* swtpm checks the TPM's state before the parameters: so do we. */
        if ((c->needs == RUNNING && !vtpm_tpm_running()) ||
            (c->needs == STOPPED && vtpm_tpm_running())) {
                put_result(out, VROT_TPM_BAD_ORDINAL);
                goto done;
        }
        if (vrot_ptm_parse(buf, len, &req, &err) < 0) {
                log_warn("control channel: %s", err.msg);
                put_result(out, VROT_TPM_BAD_PARAMETER);
                goto done;
        }
        log_debug("control channel: %s", vrot_ptm_cmd_name(cmd));
        c->fn(w, &req, fd, out);
        fd = -1;        /* SET_DATAFD's handler owns it now */
done:
        if (fd >= 0)
                close(fd);
}
