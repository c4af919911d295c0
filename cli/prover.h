/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The host's half of the evidence exchange, reached over vrotd's API
 * (host.evidence, host.activate_credential): a VrotTpmevidenceProver for
 * vrot_tpmevidence_challenge().  Everything vrotd answers is untrusted and
 * parsed strictly (vrot_tpmevidence_from_json(), vrot_x509_csr_from_pem()).
 */

#include "tpmevidence.h"
#include "vrotctl.h"

typedef struct VrotctlProver {
        VrotRpcclient *client;          /* transfer none */
        JsonNode *result;               /* the last host.evidence result */
        X509_REQ *csr;                  /* its certification request */
} VrotctlProver;

extern const VrotTpmevidenceProver vrotctl_prover;

/**
 * vrotctl_prover_evidence:
 * host.evidence for @nonce: the evidence parsed into *@ret (transfer
 * full); the raw result and the request are kept in @p.
 */
gboolean vrotctl_prover_evidence(VrotctlProver *p, GBytes *nonce, VrotTpmevidence **ret,
                                 GError **error);

/** vrotctl_prover_clear: frees what @p keeps (not the client). */
void vrotctl_prover_clear(VrotctlProver *p);
