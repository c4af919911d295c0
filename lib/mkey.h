/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The migration-key socket of a vrot-vtpm worker (`--migrate PATH`,
 * vrot-vtpm(8) MIGRATION; docs/migration.md "Live migration").  vrotd, and
 * only vrotd (the socket is 0600, its owner the worker's user), gives a
 * worker the key of a prepared live migration; from then on the stateblobs
 * QEMU moves are sealed under that key, bound to the migration ID and the
 * blob type.  One request per connection, one answer, then the worker
 * closes it.
 *
 * Request:  "VMK1" | u8 op | op SET: u8 role | migration ID (16) | key (32)
 *                            op BIND: u8 evict | instance UUID (16) | key (32) |
 *                                     u8 n | n x (u8 ek | u16 length | certificate)
 *                            op STATUS, CLEAR: nothing more
 * Answer:   u32 result (0: done) | u8 role (0: none) | migration ID (16) |
 *           u8 blobs exported (bit n: blob type n) | u8 blobs imported
 * (big-endian).  Plain C: the worker links it.
 *
 * BIND serves the pool of vrotd (daemon/pool.h): a worker running a
 * pre-manufactured vTPM becomes an instance's.  It evicts the EKs in
 * @evict (VROT_MKEY_EK_*: the instance did not ask for them), stores each
 * EK certificate in @certs at its NV index (defined with the platform's
 * authorization and VROT_MKEY_CERT_NV_ATTRIBUTES, written, write-locked),
 * writes its whole state under the instance's UUID and key
 * (vrot_store_rebind), answers, and ends.  All in process: the three NV
 * commands per certificate cost what one round trip to the worker would.
 * At most one certificate per EK, none for an EK evicted, each 1 to
 * VROT_MKEY_CERT_MAX bytes; what they hold is vrotd's business (it signed
 * them), the worker stores bytes.
 */

#include <stddef.h>
#include <stdint.h>

#define VROT_MKEY_ID_LEN 16
#define VROT_MKEY_KEY_LEN 32
#define VROT_MKEY_CERT_MAX 2048        /* libtpms' MAX_NV_INDEX_SIZE */
#define VROT_MKEY_N_CERTS 2
#define VROT_MKEY_FIXED_LEN (4 + 1 + 1 + VROT_MKEY_ID_LEN + VROT_MKEY_KEY_LEN)
#define VROT_MKEY_REQUEST_MAX (VROT_MKEY_FIXED_LEN + 1 + VROT_MKEY_N_CERTS * (3 + VROT_MKEY_CERT_MAX))
#define VROT_MKEY_ANSWER_LEN (4 + 1 + VROT_MKEY_ID_LEN + 1 + 1)

enum {
        VROT_MKEY_SET = 1,      /* a migration's key for this worker's role in it */
        VROT_MKEY_STATUS = 2,   /* what was exported or imported under it */
        VROT_MKEY_CLEAR = 3,    /* the migration ended: forget the key */
        VROT_MKEY_BIND = 4,     /* become instance id, state under key; then end */
};

/* The pre-made EKs, in BIND's evict and its certificates. */
enum {
        VROT_MKEY_EK_RSA = 1,   /* 0x81010001, its certificate at NV 0x01c00002 */
        VROT_MKEY_EK_ECC = 2,   /* 0x8101000a, its certificate at NV 0x01c0000a */
};

/* The EK certificate indices' TPMA_NV: PLATFORMCREATE, PPWRITE,
 * WRITEDEFINE, PPREAD, OWNERREAD, AUTHREAD, NO_DA (vrotd's endorse.h
 * spells it with tpm2-tss' names and checks that they agree). */
#define VROT_MKEY_CERT_NV_ATTRIBUTES 0x42072001u

enum {
        VROT_MKEY_OUT = 1,      /* the source: GET_STATEBLOB seals under the key */
        VROT_MKEY_IN = 2,       /* the destination: SET_STATEBLOB opens with it */
};

typedef struct VrotMkeyCert {
        uint8_t ek;                             /* VROT_MKEY_EK_* */
        uint16_t len;
        const uint8_t *der;                     /* parsed: points into the request's bytes */
} VrotMkeyCert;

typedef struct VrotMkeyRequest {
        uint8_t op;
        uint8_t role;                           /* SET */
        uint8_t evict;                          /* BIND: VROT_MKEY_EK_* */
        uint8_t id[VROT_MKEY_ID_LEN];           /* SET, BIND */
        uint8_t key[VROT_MKEY_KEY_LEN];         /* SET, BIND; the caller wipes it */
        uint8_t n_certs;                        /* BIND */
        VrotMkeyCert certs[VROT_MKEY_N_CERTS];
} VrotMkeyRequest;

typedef struct VrotMkeyAnswer {
        uint32_t result;
        uint8_t role;
        uint8_t id[VROT_MKEY_ID_LEN];
        uint8_t exported, imported;
} VrotMkeyAnswer;

/**
 * vrot_mkey_parse_request: @len bytes (untrusted) exactly one request: 0,
 * -EAGAIN when they are the start of one (read more), else -EINVAL.
 * *@ret is written on success only and points into @buf.  Pure.
 */
int vrot_mkey_parse_request(const uint8_t *buf, size_t len, VrotMkeyRequest *ret);
/** vrot_mkey_encode_request: into @out (VROT_MKEY_REQUEST_MAX bytes); the length, or 0
 *  for a certificate over VROT_MKEY_CERT_MAX. */
size_t vrot_mkey_encode_request(const VrotMkeyRequest *r, uint8_t *out);
/** vrot_mkey_parse_answer: exactly VROT_MKEY_ANSWER_LEN bytes; 0 or -EINVAL. Pure. */
int vrot_mkey_parse_answer(const uint8_t *buf, size_t len, VrotMkeyAnswer *ret);
/** vrot_mkey_encode_answer: into @out (VROT_MKEY_ANSWER_LEN bytes). */
void vrot_mkey_encode_answer(const VrotMkeyAnswer *a, uint8_t *out);
