/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Frames of the host-to-host migration channel (docs/migration.md, "The
 * channel"): a u32 big-endian length, at most VROT_MFRAME_MAX, then that
 * many bytes of one JSON object {"type": "<type>", ...}.  Each type has a
 * fixed set of members, every one required, each of one kind (a string of
 * bounded length, a UUID, a migration ID, base64 of bounded size, an
 * unsigned integer); anything else is refused.  The peer is an attested
 * host of the fleet, but its bytes are still untrusted input: one strict
 * parser, fuzzed (fuzz-mframe), in front of the protocol code.
 */

#include <glib.h>

#define VROT_MFRAME_ERROR (vrot_mframe_error_quark())
GQuark vrot_mframe_error_quark(void);

typedef enum {
        VROT_MFRAME_ERROR_SHORT,        /* fewer bytes than the frame needs: read more */
        VROT_MFRAME_ERROR_TOO_LARGE,    /* the length prefix is over VROT_MFRAME_MAX */
        VROT_MFRAME_ERROR_INVALID,      /* not a frame of a known type and shape */
} VrotMframeError;

#define VROT_MFRAME_MAX (4u << 20)

typedef enum {
        VROT_MFRAME_HELLO,              /* nonce, pcr_mask (the PCRs the peer must quote) */
        VROT_MFRAME_EVIDENCE,           /* ak_public, attest, signature, pcr_mask, pcr_values,
                                         * ca_public, ca_attest, ca_signature */
        VROT_MFRAME_OFFER_REQUEST,      /* uuid, kind, name, generation, owner, live */
        VROT_MFRAME_OFFER,              /* migration_id, import_public, attest, signature */
        VROT_MFRAME_STATE,              /* migration_id, envelope */
        VROT_MFRAME_PREPARED,           /* migration_id */
        VROT_MFRAME_COMMIT,             /* migration_id */
        VROT_MFRAME_DONE,               /* migration_id */
        VROT_MFRAME_ABORT,              /* migration_id, reason */
        VROT_MFRAME_STATUS,             /* migration_id */
        VROT_MFRAME_ERROR_FRAME,        /* message */
        VROT_MFRAME_N_TYPES,
} VrotMframeType;

typedef struct VrotMframe VrotMframe;

/**
 * vrot_mframe_parse:
 * @buf: (array length=len): bytes read from the channel
 * @ret_used: (out): bytes of @buf the frame took (prefix included)
 *
 * One frame from the start of @buf.  Errors: _SHORT (nothing is wrong
 * yet: wait for more bytes), _TOO_LARGE, _INVALID.
 * Returns: (transfer full): the frame, or NULL.
 */
VrotMframe *vrot_mframe_parse(const guint8 *buf, gsize len, gsize *ret_used, GError **error);

void vrot_mframe_free(VrotMframe *f);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotMframe, vrot_mframe_free)

VrotMframeType vrot_mframe_type(const VrotMframe *f);
/** vrot_mframe_type_name: "hello", "evidence", ... */
const char *vrot_mframe_type_name(VrotMframeType type);

/* A member the frame's type has (anything else is a programming error). */
const gchar *vrot_mframe_string(const VrotMframe *f, const char *name);
GBytes *vrot_mframe_bytes(const VrotMframe *f, const char *name);       /* transfer none */
guint64 vrot_mframe_uint(const VrotMframe *f, const char *name);

/**
 * vrot_mframe_new:
 * An empty frame of @type to fill with the setters, then vrot_mframe_encode().
 */
VrotMframe *vrot_mframe_new(VrotMframeType type);
void vrot_mframe_set_string(VrotMframe *f, const char *name, const gchar *value);
void vrot_mframe_set_bytes(VrotMframe *f, const char *name, GBytes *value);
void vrot_mframe_set_uint(VrotMframe *f, const char *name, guint64 value);

/**
 * vrot_mframe_encode:
 * The frame on the wire, length prefix included.  Every member of the
 * type must be set, within its bounds: what is encoded parses back.
 * Returns: (transfer full): the bytes, or NULL with _INVALID.
 */
GBytes *vrot_mframe_encode(const VrotMframe *f, GError **error);
