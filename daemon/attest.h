/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Linked attestation (ISO/IEC 27070 6.4, 27071 B.5, R-ATT-2,
 * docs/attestation.md): instance.attest makes a bundle that a relying
 * party checks offline (vrotctl verify): a quote of the vTPM's PCRs by
 * its attestation key, whose certificate the host CA issued after a
 * credential proved the key is in the vTPM of the instance's EK; and a
 * quote of the host TPM's PCRs by the host attestation key over the
 * digest of the vTPM quote, with that key's certification of the host CA
 * key, which ties it to the host CA certificate and so to the fleet root.
 *
 * For a service instance vrotd makes the vTPM's quote through its data
 * socket.  A VM's vTPM belongs to its guest: the guest quotes with an AK
 * certified through identity.challenge (purpose "attestation") and the
 * caller passes the quote in; vrotd checks it and adds the host's half.
 */

#include <glib.h>
#include <json-glib/json-glib.h>

#include "host.h"
#include "tpmevidence.h"
#include "identity.h"
#include "instances.h"

#define VROT_ATTEST_ERROR (vrot_attest_error_quark())
GQuark vrot_attest_error_quark(void);

typedef enum {
        VROT_ATTEST_ERROR_INVALID,      /* not a running service instance, bad PCR list */
        VROT_ATTEST_ERROR_REFUSED,      /* the vTPM's evidence did not check out */
} VrotAttestError;

/* The PCRs quoted when the caller names none: the firmware and boot loader
 * measurements of the PC Client profile. */
#define VROT_ATTEST_DEFAULT_PCRS 0xffu

typedef struct VrotAttestRequest {
        const gchar *uuid;
        GBytes *nonce;                  /* 1 to 64 bytes */
        guint32 pcrs;                   /* the vTPM's SHA-256 PCRs, bit i: PCR i */
        guint32 host_pcrs;              /* the host's */
        GBytes *event_log;              /* nullable: the guest's, passed through */
        gboolean dev;                   /* the host TPM is simulated: no host event log */
        /* A VM: the guest's quote (ak_public, attest, signature, PCRs and
         * values); @pcrs is then unused.  NULL: a service, vrotd quotes. */
        const VrotTpmevidenceQuote *guest_quote;
} VrotAttestRequest;

typedef void (*VrotAttestDoneFunc)(JsonNode *bundle, GError *error, gpointer data);

/**
 * vrot_attest_async:
 * The bundle for @req (vrot-api(7) instance.attest); @fn is called on the
 * main loop with it, or with an error.  The first attestation of an
 * instance (or the first after its AK certificate was revoked) makes and
 * proves a new AK and has its certificate issued.
 */
void vrot_attest_async(VrotHost *host, VrotInstances *instances, VrotIdentities *identities,
                       const VrotAttestRequest *req, VrotAttestDoneFunc fn, gpointer data);
