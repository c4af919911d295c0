/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * A host's migration policy (docs/migration.md, "The policy"; R-ATT-3):
 * which peer hosts it migrates with, and which host PCR values it accepts
 * from a peer's quote.  Data, not code:
 *
 *   { "peers": ["host-b.example", ...],
 *     "pcrs": { "sha256": { "0": ["<hex>", ...], "7": ["<hex>"] } } }
 *
 * A peer's quote must cover exactly the PCRs listed, each with one of the
 * values accepted for it.  Parsed strictly (fuzz-mpolicy): an operator's
 * typo is an error at start, not a silently open door.
 */

#include <glib.h>

#define VROT_MPOLICY_ERROR (vrot_mpolicy_error_quark())
GQuark vrot_mpolicy_error_quark(void);

typedef enum {
        VROT_MPOLICY_ERROR_PARSE,       /* the file is not a policy */
        VROT_MPOLICY_ERROR_PEER,        /* a peer the policy does not name */
        VROT_MPOLICY_ERROR_PCRS,        /* a quote's PCRs the policy does not accept */
} VrotMpolicyError;

#define VROT_MPOLICY_MAX_PEERS 256
#define VROT_MPOLICY_MAX_VALUES 64      /* accepted values of one PCR */

typedef struct VrotMpolicy VrotMpolicy;

VrotMpolicy *vrot_mpolicy_parse(const gchar *text, gsize len, GError **error);
void vrot_mpolicy_free(VrotMpolicy *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotMpolicy, vrot_mpolicy_free)

/** vrot_mpolicy_pcr_mask: the SHA-256 PCRs a peer must quote (bit i: PCR i). */
guint32 vrot_mpolicy_pcr_mask(const VrotMpolicy *p);

/** vrot_mpolicy_check_peer: is @name (a certificate's dNSName) one of the peers?  _PEER if not. */
gboolean vrot_mpolicy_check_peer(const VrotMpolicy *p, const gchar *name, GError **error);

/**
 * vrot_mpolicy_check_pcrs:
 * @mask: the quoted PCRs; @values: their values, 32 bytes each, ascending
 * (a verified quote's).  _PCRS naming the first PCR that is not accepted,
 * or the difference between the PCRs quoted and those the policy lists.
 */
gboolean vrot_mpolicy_check_pcrs(const VrotMpolicy *p, guint32 mask, GBytes *values,
                                 GError **error);
