/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The swtpm control-channel protocol ("PTM"), as QEMU's tpm-emulator backend
 * and libvirt's external TPM backend speak it (swtpm's tpm_ioctl.h).  Every
 * request is a big-endian u32 command code followed by a fixed or
 * length-prefixed body; every answer starts with a big-endian u32 result.
 *
 * This module only frames and parses untrusted bytes; it never touches the
 * TPM.  vtpm/ctrl.c executes the parsed requests.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum {
        VROT_PTM_GET_CAPABILITY = 0x01,
        VROT_PTM_INIT = 0x02,
        VROT_PTM_SHUTDOWN = 0x03,
        VROT_PTM_GET_TPMESTABLISHED = 0x04,
        VROT_PTM_SET_LOCALITY = 0x05,
        VROT_PTM_HASH_START = 0x06,
        VROT_PTM_HASH_DATA = 0x07,
        VROT_PTM_HASH_END = 0x08,
        VROT_PTM_CANCEL_TPM_CMD = 0x09,
        VROT_PTM_STORE_VOLATILE = 0x0a,
        VROT_PTM_RESET_TPMESTABLISHED = 0x0b,
        VROT_PTM_GET_STATEBLOB = 0x0c,
        VROT_PTM_SET_STATEBLOB = 0x0d,
        VROT_PTM_STOP = 0x0e,
        VROT_PTM_GET_CONFIG = 0x0f,
        VROT_PTM_SET_DATAFD = 0x10,
        VROT_PTM_SET_BUFFERSIZE = 0x11,
        VROT_PTM_GET_INFO = 0x12,
        VROT_PTM_LOCK_STORAGE = 0x13,
};

/* Capability bits answered to GET_CAPABILITY. */
#define VROT_PTM_CAP_ALL        0x1ffffu   /* INIT .. SEND_COMMAND_HEADER, LOCK_STORAGE */

/* TPM 1.2-style result codes the control channel uses. */
enum {
        VROT_TPM_SUCCESS = 0x00,
        VROT_TPM_BAD_PARAMETER = 0x03,
        VROT_TPM_FAIL = 0x09,
        VROT_TPM_BAD_ORDINAL = 0x0a,
        VROT_TPM_SIZE = 0x17,
        VROT_TPM_IOERROR = 0x1f,
        VROT_TPM_BAD_LOCALITY = 0x3d,
        VROT_TPM_RETRY = 0x800,
};

#define VROT_PTM_INIT_DELETE_VOLATILE  0x1
#define VROT_PTM_STATE_DECRYPTED       0x1  /* request: hand out plaintext */
#define VROT_PTM_STATE_ENCRYPTED       0x2  /* answer / set: blob is encrypted */
#define VROT_PTM_BLOB_PERMANENT        1
#define VROT_PTM_BLOB_VOLATILE         2
#define VROT_PTM_BLOB_SAVESTATE        3
#define VROT_PTM_CONFIG_FILE_KEY       0x1
#define VROT_PTM_CONFIG_MIGRATION_KEY  0x2

#define VROT_PTM_HASH_MAX      (1u << 20)   /* HASH_DATA payload per request */
#define VROT_PTM_BLOB_MAX      (1u << 20)   /* SET_STATEBLOB payload */
#define VROT_PTM_GETSTATE_HDR  16           /* result, flags, totlength, length */

typedef struct VrotPtmRequest {
        uint32_t cmd;
        union {
                uint32_t init_flags;
                uint8_t locality;
                uint32_t buffersize;
                uint32_t retries;
                struct {
                        const uint8_t *data;    /* transfer none: into the request */
                        uint32_t len;
                } hash;
                struct {
                        uint32_t flags, type, offset;
                } get_state;
                struct {
                        uint32_t flags, type, len;
                        const uint8_t *data;    /* transfer none */
                } set_state;
                struct {
                        uint64_t flags;
                        uint32_t offset;
                } info;
        } u;
} VrotPtmRequest;

/**
 * vrot_ptm_frame:
 * Given the first @len bytes of a request, tells how many bytes the whole
 * request has: 0 with *@ret_need set (which may be more than @len: read on),
 * or -EMSGSIZE when the request announces more than the protocol allows.
 * Fewer than 4 bytes need 4; unknown commands are 4 bytes long.
 */
int vrot_ptm_frame(const uint8_t *buf, size_t len, size_t *ret_need, VrotError *err);

/**
 * vrot_ptm_parse:
 * Parses one complete request of @len bytes (as framed above).  Bodies point
 * into @buf.  Commands without parameters, INIT, HASH_DATA and SET_STATEBLOB
 * must be exact; the others may carry trailing bytes, which are ignored, as
 * swtpm does.  Unknown
 * commands parse successfully (the executor answers BAD_ORDINAL).
 * Returns 0, or -EINVAL with @err set: answer TPM_BAD_PARAMETER.
 */
int vrot_ptm_parse(const uint8_t *buf, size_t len, VrotPtmRequest *ret, VrotError *err);

const char *vrot_ptm_cmd_name(uint32_t cmd);
