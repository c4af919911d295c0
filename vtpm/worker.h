/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The worker's context: its sockets, connections and state.  One per
 * process; passed explicitly (STYLE: no mutable globals), the TPM itself
 * excepted (vtpm/tpm.h).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mkey.h"
#include "seal.h"
#include "secret.h"
#include "store.h"

/* A live migration's key (--migrate; vrot-vtpm(8) MIGRATION). */
typedef struct Migration {
        bool enabled;           /* --migrate: stateblobs only under a key, and listen
                                 * is the migration-key socket (else unused) */
        int listen;
        const char *path;
        uint8_t role;           /* 0: no key; VROT_MKEY_OUT / _IN */
        VrotSealer sealer;      /* key: the migration key; uuid: the migration ID */
        VrotSecret *key;
        uint8_t exported, imported;     /* bit n: blob type n crossed under the key */
} Migration;

/* A client connection with its partly received request. */
typedef struct Conn {
        int fd;                 /* -1 when closed */
        uint8_t *buf;           /* request bytes received so far */
        size_t len, cap;
        int64_t deadline_ms;    /* when a partial request times out, 0 = none */
} Conn;

typedef struct Worker {
        int ctrl_listen;        /* -1 when not listening */
        int data_listen;
        const char *ctrl_path;  /* removed on exit */
        const char *data_path;
        Conn ctrl;              /* one control client at a time, as swtpm */
        Conn data;              /* one data client: accepted, or SET_DATAFD's */
        bool data_passed;       /* data.fd came with SET_DATAFD */
        bool terminate;
        bool end_with_starter;  /* starter_fd is watched: see vtpm_loop_run */
        int starter_fd;         /* --ready-fd, kept open after "ready" */
        bool starter_gone;      /* the loop ended because its reader closed it */
        const VrotSealer *sealer;
        VrotStore *store;
        Migration mig;
        VrotSecret *bind_key;   /* BIND (lib/mkey.h): the instance's key, once */
        VrotSealer bind_sealer;
} Worker;

/* Answer to one control request: a small fixed part and an optional tail. */
typedef struct Reply {
        uint8_t head[32];
        size_t head_len;
        uint8_t *tail;          /* transfer full when tail_owned */
        size_t tail_len;
        bool tail_owned;
} Reply;

/**
 * vtpm_ctrl_execute:
 * Executes one framed control request of @len bytes; @fd is a descriptor
 * that came with it (SCM_RIGHTS) or -1, and is consumed.  Fills @out.
 */
void vtpm_ctrl_execute(Worker *w, const uint8_t *buf, size_t len, int fd, Reply *out);

/** vtpm_ctrl_reply_error: the 4-byte answer for a request that failed to frame. */
void vtpm_ctrl_reply_error(Reply *out, uint32_t result);

/**
 * vtpm_stateblob_export / vtpm_stateblob_import:
 * What GET_STATEBLOB hands out and SET_STATEBLOB takes in.  With --migrate
 * (vrotd's workers): only under the key of a prepared live migration,
 * sealed with the migration ID and the blob type bound in, out of a source
 * and into a destination; nothing at all without one.  Without --migrate
 * (a worker run alone, like swtpm): a request with DECRYPTED gets libtpms's
 * plaintext blob, as swtpm without a migration key gives QEMU; one without
 * it gets the blob sealed under this instance's state key (flag ENCRYPTED).
 * Both return a TPM result code; outputs are (transfer full) malloc()ed.
 */
uint32_t vtpm_stateblob_export(Worker *w, uint32_t type, uint32_t req_flags,
                               uint8_t *plain, uint32_t len,
                               uint8_t **ret, uint32_t *ret_len, uint32_t *ret_flags);
uint32_t vtpm_stateblob_import(Worker *w, uint32_t type, uint32_t flags,
                               const uint8_t *in, uint32_t len,
                               uint8_t **ret, uint32_t *ret_len);

/**
 * vtpm_migkey_serve: one request on the migration-key socket, whose
 * listener is readable (vtpm/migkey.c).
 */
void vtpm_migkey_serve(Worker *w);

/** vtpm_migkey_clear: forgets the migration key (wiped). */
void vtpm_migkey_clear(Worker *w);

/**
 * vtpm_loop_signals: blocks SIGTERM/SIGINT and routes them to the loop.  Call
 * it before the sockets appear, so that a SIGTERM sent as soon as they do
 * still ends the worker cleanly.
 */
void vtpm_loop_signals(void);

/**
 * vtpm_loop_run: serves until SHUTDOWN or SIGTERM/SIGINT, or (end_with_starter)
 * until the reader of starter_fd closes it, which sets starter_gone.
 * Returns 0 or -errno.
 */
int vtpm_loop_run(Worker *w);

int64_t vtpm_now_ms(void);
