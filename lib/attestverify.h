/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The offline verifier of a linked-attestation bundle (docs/attestation.md,
 * R-ATT-2, R-ATT-3): what `vrotctl verify` runs, without the daemon.  Pure
 * code; the bundle and the policy are untrusted input, parsed strictly.
 *
 * A verdict is a list of named checks, each passed or failed with a
 * reason, so that a relying party (and a test) can tell which check
 * refused a bundle:
 *
 *   host-chain     the host CA certificate chains to the given root
 *   ak-chain       the vTPM's AK certificate chains to the root through
 *                  the host CA, is an AIK certificate, and is bound to
 *                  the bundle's instance
 *   ak-revocation  the AK certificate is not in the host CA's CRL
 *   ek-chain       the vTPM's EK certificate chains to the root and is the
 *                  one the AK certificate names
 *   nonce          the vTPM quote is over the verifier's nonce
 *   vtpm-quote     the AK of the certificate signed a TPM-made quote
 *   vtpm-pcrs      the vTPM PCR values are those quoted
 *   link           the host quote is over the digest of the vTPM quote
 *   host-quote     the host AK signed a TPM-made quote, PCRs as given
 *   host-ak        the host AK certified the host CA key over the nonce:
 *                  it is in the TPM whose key the host CA certificate holds
 *   host-policy    the host PCRs match an accepted host state
 *   guest-policy   the vTPM PCRs match an accepted guest state
 */

#include <glib.h>
#include <json-glib/json-glib.h>
#include <openssl/x509.h>

#define VROT_ATTESTVERIFY_ERROR (vrot_attestverify_error_quark())
GQuark vrot_attestverify_error_quark(void);

typedef enum {
        VROT_ATTESTVERIFY_ERROR_BUNDLE,         /* the bundle is malformed */
        VROT_ATTESTVERIFY_ERROR_POLICY,         /* the policy is malformed */
} VrotAttestverifyError;

/* Largest bundle or policy accepted (event logs included). */
#define VROT_ATTESTVERIFY_MAX (8 * 1024 * 1024)

typedef struct VrotAttestCheck {
        const char *name;               /* one of the names above */
        gboolean ok;
        gchar *detail;                  /* why it failed, or what it found */
} VrotAttestCheck;

typedef struct VrotAttestPolicy VrotAttestPolicy;

/**
 * vrot_attest_policy_parse:
 * {"host": [STATE, ...], "guest": [STATE, ...]} where a STATE is
 * {"<pcr index>": "<64 hex digits>", ...}: the SHA-256 values an accepted
 * state has in the PCRs it names.  A bundle passes if its PCRs match one
 * state of each list.  Both lists are required; an empty list accepts
 * nothing.
 */
VrotAttestPolicy *vrot_attest_policy_parse(const gchar *text, gsize len, GError **error);
void vrot_attest_policy_free(VrotAttestPolicy *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotAttestPolicy, vrot_attest_policy_free)

/**
 * vrot_attest_verify:
 * @bundle: the bundle's JSON text (instance.attest's result)
 * @root: the fleet root the relying party trusts
 * @crl: (nullable): a CRL of the host CA to use instead of the bundle's
 *   (a fresher one)
 * @nonce: the nonce the relying party sent
 * @ret_checks: (out) (transfer full) (element-type VrotAttestCheck): the
 *   verdict, every check in the order above
 *
 * Returns FALSE with @error only when the bundle cannot be read at all;
 * TRUE otherwise, the verdict in *@ret_checks (trusted only if every
 * check passed: vrot_attest_trusted()).
 */
gboolean vrot_attest_verify(const gchar *bundle, gsize len, X509 *root, X509_CRL *crl,
                            GBytes *nonce, const VrotAttestPolicy *policy,
                            GPtrArray **ret_checks, GError **error);

/** vrot_attest_trusted: did every check of @checks pass? */
gboolean vrot_attest_trusted(const GPtrArray *checks);

/**
 * vrot_attest_pcrs_parse:
 * {"<index>": "<64 hex digits>", ...}, at least one, indices 0 to 23 in
 * decimal: the quoted PCRs as a mask and their values in ascending order
 * (VrotTpmevidenceQuote).  FALSE for anything else.
 */
gboolean vrot_attest_pcrs_parse(JsonNode *node, guint32 *ret_mask, GBytes **ret_values);
