/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Sealed state blobs (DESIGN "Sealed state", R-SEAL-1, R-SEAL-3).
 *
 * A blob is AES-256-GCM over the payload with the whole header as associated
 * data, so a blob cannot be moved to another instance (UUID), reused as
 * another blob type, or passed off as another generation without the tag
 * failing.  Layout, all integers big-endian:
 *
 *   0  magic "VRTS"            4
 *   4  format version (1)      2
 *   6  flags                   2   bit 0: insecure all-zero key (tests only)
 *   8  blob type               4   VrotBlobType
 *  12  instance UUID          16
 *  28  generation              8
 *  36  payload length          4
 *  40  IV                     12   random per blob
 *  52  ciphertext         length
 *  ..  GCM tag                16
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define VROT_SEAL_KEY_LEN      32
#define VROT_SEAL_HEADER_LEN   52
#define VROT_SEAL_TAG_LEN      16
#define VROT_SEAL_OVERHEAD     (VROT_SEAL_HEADER_LEN + VROT_SEAL_TAG_LEN)
#define VROT_SEAL_MAX_PAYLOAD  (4u << 20)
#define VROT_SEAL_FLAG_INSECURE 0x0001

typedef enum VrotBlobType {
        VROT_BLOB_PERMANENT = 1,    /* libtpms "permall" */
        VROT_BLOB_VOLATILE = 2,     /* libtpms "volatilestate" */
        VROT_BLOB_SAVESTATE = 3,    /* libtpms "savestate" */
        VROT_BLOB_GENERATION = 4,   /* vrot's own generation record */
} VrotBlobType;

typedef struct VrotSealHeader {
        uint16_t version;
        uint16_t flags;
        uint32_t type;
        uint8_t uuid[16];
        uint64_t generation;
        uint32_t length;
        uint8_t iv[12];
} VrotSealHeader;

/* Who seals: the key (NULL = insecure all-zero key) and the instance. */
typedef struct VrotSealer {
        const uint8_t *key;         /* VROT_SEAL_KEY_LEN bytes, transfer none */
        uint8_t uuid[16];
} VrotSealer;

const char *vrot_blob_type_name(uint32_t type);

/**
 * vrot_seal_parse_header:
 * Pure parser of the header of an untrusted blob of @len bytes: checks magic,
 * version, known flags and type, and that the payload length matches @len.
 * Does no cryptography.  Returns 0 and fills *@ret, or -EINVAL/-EPROTO with
 * @err set.
 */
int vrot_seal_parse_header(const uint8_t *buf, size_t len, VrotSealHeader *ret,
                           VrotError *err);

/**
 * vrot_seal_gcm:
 * The one AES-256-GCM boundary of vrot (state files here, the migration
 * envelope in mseal.c): encrypts (@enc 1) or decrypts and verifies (@enc 0)
 * @len bytes of @in into @out under the 32-byte @key and 12-byte @iv, with
 * @aad_len bytes of @aad authenticated.  @tag (16 bytes) is written when
 * encrypting and checked when decrypting.  Returns 0, -ENOMEM, or -EBADMSG
 * (authentication failed, or OpenSSL did).
 */
int vrot_seal_gcm(int enc, const uint8_t *key, const uint8_t *iv, const uint8_t *aad,
                  size_t aad_len, const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag);

/**
 * vrot_seal:
 * Seals @len bytes of @plain as blob @type at @generation.  On success
 * *@ret_blob is (transfer full) malloc()ed, *@ret_len bytes.
 */
int vrot_seal(const VrotSealer *s, uint32_t type, uint64_t generation,
              const uint8_t *plain, size_t len,
              uint8_t **ret_blob, size_t *ret_len, VrotError *err);

/**
 * vrot_seal_open:
 * Authenticates and decrypts @blob, which must be of @type and belong to
 * @s's instance and key mode.  On success *@ret_plain is (transfer full)
 * malloc()ed (callers wipe it: it is TPM state), with its generation.
 * Errors: -EINVAL malformed, -EXDEV other instance, -EMEDIUMTYPE other blob
 * type, -EKEYREJECTED key mode mismatch, -EBADMSG authentication failed.
 */
int vrot_seal_open(const VrotSealer *s, uint32_t type,
                   const uint8_t *blob, size_t len,
                   uint8_t **ret_plain, size_t *ret_len, uint64_t *ret_generation,
                   VrotError *err);

/** vrot_free_wiped: wipes @len bytes of @p and frees it; accepts NULL. */
void vrot_free_wiped(void *p, size_t len);
