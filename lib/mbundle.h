/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * What a cold migration carries inside its envelope (lib/mseal.h): the
 * plaintext of a vTPM's state blobs, taken from the source's store with
 * the source's instance key and written into the destination's store under
 * the destination's (lib/store.h).  The blobs travel in plaintext only
 * inside the envelope, and live in buffers wiped when freed.
 *
 * Layout (big-endian):
 *   "VROTBND1" | u32 count (1 to 3) |
 *   count x ( u32 blob type | u32 length | that many bytes )
 * with the types ascending, each one of VROT_BLOB_PERMANENT,
 * VROT_BLOB_VOLATILE, VROT_BLOB_SAVESTATE, the permanent state always
 * present, no blob empty or over VROT_SEAL_MAX_PAYLOAD, and nothing after
 * the last blob.  One parser, pure and fuzzed (fuzz-mbundle).
 */

#include <glib.h>

#define VROT_MBUNDLE_ERROR (vrot_mbundle_error_quark())
GQuark vrot_mbundle_error_quark(void);

typedef enum {
        VROT_MBUNDLE_ERROR_INVALID,
} VrotMbundleError;

#define VROT_MBUNDLE_N_BLOBS 3

/* By blob type - 1 (permanent, volatile, savestate); absent: len 0. */
typedef struct VrotMbundle {
        const guint8 *data[VROT_MBUNDLE_N_BLOBS];       /* into the parsed buffer */
        gsize len[VROT_MBUNDLE_N_BLOBS];
} VrotMbundle;

/**
 * vrot_mbundle_parse:
 * Checks @len bytes of @buf (untrusted: what the envelope held) against
 * the layout and points @ret into @buf.
 */
gboolean vrot_mbundle_parse(const guint8 *buf, gsize len, VrotMbundle *ret, GError **error);

/**
 * vrot_mbundle_pack:
 * The bundle of @b (the permanent state required).
 * Returns: (transfer full): the bytes, in a buffer wiped when freed.
 */
GBytes *vrot_mbundle_pack(const VrotMbundle *b);

/*
 * A live migration's envelope holds no state (QEMU carries it) but the
 * migration key and the source's EK certificates: the key (32 bytes), then
 * the RSA and the ECC certificate, each a u32 big-endian length (0: none)
 * and that much PEM (printable ASCII, at most VROT_MBUNDLE_CERT_MAX), and
 * nothing after.
 */
#define VROT_MBUNDLE_KEY_LEN 32
#define VROT_MBUNDLE_CERT_MAX 8192

/**
 * vrot_mbundle_pack_live:
 * @certs: the RSA and ECC certificates (PEM), each nullable
 * Returns: (transfer full): the bytes, in a buffer wiped when freed.
 */
GBytes *vrot_mbundle_pack_live(const guint8 key[VROT_MBUNDLE_KEY_LEN], const gchar *const certs[2]);

/**
 * vrot_mbundle_parse_live:
 * Checks @len bytes of @buf against the layout.  *@ret_key points into
 * @buf; *@ret_certs (transfer full) holds both certificates, "" for none.
 */
gboolean vrot_mbundle_parse_live(const guint8 *buf, gsize len, const guint8 **ret_key,
                                 gchar ***ret_certs, GError **error);
