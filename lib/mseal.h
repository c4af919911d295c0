/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The migration envelope (docs/migration.md "The protocol"): a vTPM's state
 * sealed by the source to the destination's one-time import key, an ECC
 * P-256 key in the destination's TPM.  ECIES: the source makes an
 * ephemeral key e, Z = x(e * import), K = HKDF-SHA256(Z, "vrot migration v1"
 * ‖ migration ID ‖ UUID ‖ generation), and encrypts with AES-256-GCM under K
 * with the whole header as associated data.  The destination gets Z from
 * its TPM (TPM2_ECDH_ZGen over e's public point), so only that TPM can open
 * the envelope (R-MIG-2), and the ID, UUID and generation it expects must
 * be the ones sealed in (R-MIG-3).
 *
 * Layout (big-endian):
 *   "VROTMIG1" | u16 version (1) | migration ID (16) | instance UUID (16) |
 *   u64 generation | e's public point, uncompressed (65) | IV (12) |
 *   u32 ciphertext length | ciphertext | GCM tag (16)
 */

#include <openssl/evp.h>

#include <glib.h>

#define VROT_MSEAL_ERROR (vrot_mseal_error_quark())
GQuark vrot_mseal_error_quark(void);

typedef enum {
        VROT_MSEAL_ERROR_PARSE,         /* not an envelope, or a malformed one */
        VROT_MSEAL_ERROR_MISMATCH,      /* another migration, instance or generation */
        VROT_MSEAL_ERROR_TAMPERED,      /* authentication failed */
        VROT_MSEAL_ERROR_FAILED,        /* OpenSSL or the Z function failed */
} VrotMsealError;

#define VROT_MSEAL_ID_LEN 16
#define VROT_MSEAL_POINT_LEN 65
#define VROT_MSEAL_Z_LEN 32
/* Header (131 bytes) and GCM tag (16) around the ciphertext. */
#define VROT_MSEAL_OVERHEAD 147
/* Largest plaintext: a vTPM's state with room to spare (libtpms' permanent
 * state is ~10–100 KiB). */
#define VROT_MSEAL_MAX_PLAIN (4u << 20)

typedef struct VrotMsealHeader {
        guint8 migration_id[VROT_MSEAL_ID_LEN];
        guint8 uuid[16];
        guint64 generation;
        guint8 point[VROT_MSEAL_POINT_LEN];     /* e's public point */
        gsize ciphertext_len;
} VrotMsealHeader;

/**
 * vrot_mseal_seal:
 * Seals @plain (@len bytes, at most VROT_MSEAL_MAX_PLAIN) to @import (an
 * EC P-256 public key: the destination's certified import key) for
 * migration @migration_id of instance @uuid at @generation.
 * Returns: (transfer full) the envelope, or NULL with _FAILED.
 */
GBytes *vrot_mseal_seal(EVP_PKEY *import, const guint8 migration_id[VROT_MSEAL_ID_LEN],
                        const guint8 uuid[16], guint64 generation, const guint8 *plain, gsize len,
                        GError **error);

/**
 * vrot_mseal_parse:
 * Parses the header of an envelope (@len bytes of @buf, untrusted): the
 * exact layout, version 1, a point on P-256, the lengths adding up.  Pure.
 * Returns: TRUE and fills @ret, or FALSE with _PARSE.
 */
gboolean vrot_mseal_parse(const guint8 *buf, gsize len, VrotMsealHeader *ret, GError **error);

/**
 * VrotMsealZFunc:
 * Computes Z = x(d * P) with the import key's private part d for the
 * uncompressed point @point (already checked to be on P-256): in production
 * TPM2_ECDH_ZGen in the destination's TPM.  Writes 32 bytes to @z.
 */
typedef gboolean (*VrotMsealZFunc)(const guint8 point[VROT_MSEAL_POINT_LEN],
                                   guint8 z[VROT_MSEAL_Z_LEN], gpointer user_data,
                                   GError **error);

/**
 * vrot_mseal_open:
 * Opens the envelope @buf (@len bytes, untrusted) that must belong to
 * migration @migration_id, instance @uuid, generation @generation (the
 * values the destination offered and was told): _MISMATCH otherwise,
 * before any key is used; _TAMPERED if it does not authenticate.
 * Returns: (transfer full) the plaintext in a buffer wiped when freed
 * (g_bytes_unref), or NULL.
 */
GBytes *vrot_mseal_open(const guint8 *buf, gsize len, const guint8 migration_id[VROT_MSEAL_ID_LEN],
                        const guint8 uuid[16], guint64 generation, VrotMsealZFunc zgen,
                        gpointer user_data, GError **error);

/**
 * vrot_mseal_zgen_software:
 * A VrotMsealZFunc over an EC private key in this process (@user_data: the
 * EVP_PKEY): for tests and fuzzing, never for a real import key.
 */
gboolean vrot_mseal_zgen_software(const guint8 point[VROT_MSEAL_POINT_LEN],
                                  guint8 z[VROT_MSEAL_Z_LEN], gpointer user_data, GError **error);
