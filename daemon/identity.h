/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Service identities (ISO/IEC 27071 B.3.2.3, R-ID-2, R-ID-3,
 * docs/identity.md): an identity key in a vTPM, proved to be linked to the
 * vTPM's EK (credential activation) and certified by its AK (TPM2_Certify),
 * gets an X.509 certificate from the host endorsement CA, signed inside
 * the host TPM.  The records (serial, instance, name, URI, key handle,
 * revocation) live in the instance registry, so the registry's MAC and
 * rollback checkpoint protect them.  Revocations go into a CRL signed by
 * the host CA.
 *
 * Everything runs on the main loop except the vTPM's half for a service
 * instance, which runs in a thread (it never touches the host TPM).
 */

#include <glib.h>
#include <json-glib/json-glib.h>

#include <openssl/x509.h>

#include "host.h"
#include "instances.h"
#include "secret.h"

#define VROT_IDENTITY_ERROR (vrot_identity_error_quark())
GQuark vrot_identity_error_quark(void);

/**
 * VrotIdentityError:
 * @VROT_IDENTITY_ERROR_INVALID: a parameter is not acceptable (name, URI,
 *   days), or the instance is not of the right kind or not running
 * @VROT_IDENTITY_ERROR_NOT_FOUND: no such identity or challenge
 * @VROT_IDENTITY_ERROR_REFUSED: the evidence did not prove what it must
 *   (AK not linked to the EK, key not certified by the AK, wrong answer,
 *   stale or replayed challenge); nothing was issued
 */
typedef enum {
        VROT_IDENTITY_ERROR_INVALID,
        VROT_IDENTITY_ERROR_NOT_FOUND,
        VROT_IDENTITY_ERROR_REFUSED,
} VrotIdentityError;

/* Longest identity name: a subject CN (ub-common-name). */
#define VROT_IDENTITY_NAME_MAX 64
#define VROT_IDENTITY_DAYS_DEFAULT 30
#define VROT_IDENTITY_DAYS_MAX 3650

typedef struct VrotIdentities VrotIdentities;

VrotIdentities *vrot_identities_new(VrotHost *host, VrotInstances *instances);
void vrot_identities_free(VrotIdentities *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotIdentities, vrot_identities_free)

/** What an issue asks for; @uri NULL: the default (docs/identity.md). */
typedef struct VrotIdentityRequest {
        const gchar *uuid;
        const gchar *name;
        const gchar *uri;
        guint days;
} VrotIdentityRequest;

/**
 * VrotIdentityDoneFunc:
 * @result: (transfer full) (nullable): the identity.issue result
 *   (vrot-api(7)), or NULL with @error (transfer full) set
 */
typedef void (*VrotIdentityDoneFunc)(JsonNode *result, GError *error, gpointer data);

/**
 * vrot_identities_issue_async:
 * identity.issue for a running service instance: the daemon plays the
 * vTPM's half (vtpmident.h) in a thread, checks the proofs, has the host
 * CA sign, records the identity durably, then calls @fn on the main loop.
 */
void vrot_identities_issue_async(VrotIdentities *self, const VrotIdentityRequest *req,
                                 VrotIdentityDoneFunc fn, gpointer data);

/**
 * vrot_identities_challenge:
 * identity.challenge, the first of a guest's two calls (VM instances):
 * @ak_public and @key_public are the TPM2B_PUBLICs of the AK and the
 * identity key the guest made under its EK.  The answer: a one-time
 * challenge ID and a credential for Name(AK) under the EK of the
 * instance's RSA EK certificate.  Valid for
 * VROT_IDENTITY_CHALLENGE_SECONDS, used up by the next _complete().
 * Returns (transfer full) the result, or NULL with @error.
 */
JsonNode *vrot_identities_challenge(VrotIdentities *self, const VrotIdentityRequest *req,
                                    GBytes *ak_public, GBytes *key_public, GError **error);
#define VROT_IDENTITY_CHALLENGE_SECONDS 300
#define VROT_IDENTITY_CHALLENGES_MAX 256

/**
 * vrot_identities_complete:
 * identity.complete: the guest's answer to the credential (@secret) and
 * TPM2_Certify(identity key) by the AK (@attest, @signature; any
 * qualifying data, docs/identity.md).  When both prove what they must, the identity is
 * issued (the result is identity.issue's, with "handle" null).  The
 * challenge is used up either way.
 */
JsonNode *vrot_identities_complete(VrotIdentities *self, const gchar *challenge_id,
                                   GBytes *secret, GBytes *attest, GBytes *signature,
                                   GError **error);

/** vrot_identities_challenge_instance: (transfer none) the instance of a live challenge, or NULL. */
const gchar *vrot_identities_challenge_instance(VrotIdentities *self, const gchar *challenge_id);

/**
 * vrot_identities_revoke:
 * Marks @serial revoked (durably) and makes a new CRL.  Returns (transfer
 * full) the identity's record as JSON, or NULL with @error (NOT_FOUND,
 * INVALID: revoked already).
 */
JsonNode *vrot_identities_revoke(VrotIdentities *self, const gchar *serial, GError **error);

/**
 * vrot_identities_list:
 * (transfer full) {"identities": [...]} of @uuid's instance, or of every
 * instance when NULL; @owner, if not -1, keeps only instances it owns.
 */
JsonNode *vrot_identities_list(VrotIdentities *self, const gchar *uuid, gint64 owner);

/**
 * vrot_identities_crl:
 * The current CRL (PEM) of the host CA: made when something was revoked
 * since the last one, at the first request after a start, and when half
 * its lifetime (VROT_IDENTITY_CRL_DAYS) has passed.  Returns (transfer
 * full) the result {"pem", "number", "this_update", "next_update"}.
 */
JsonNode *vrot_identities_crl(VrotIdentities *self, GError **error);
#define VROT_IDENTITY_CRL_DAYS 7

/* ---- for linked attestation (attest.c, docs/attestation.md) ---- */

/* A service vTPM's attestation key is an identity of its own: this name, its
 * handle VROT_VTPMIDENT_AK_HANDLE, extKeyUsage tcg-kp-AIKCertificate. */
#define VROT_IDENTITY_AK_NAME "attestation-key"
#define VROT_IDENTITY_AK_DAYS 365

/**
 * vrot_identities_ek_cert:
 * The RSA EK certificate of an instance of @kind (a service must run),
 * verified to the fleet root; INVALID for an instance of the other kind.
 */
X509 *vrot_identities_ek_cert(VrotIdentities *self, const gchar *uuid, VrotInstanceKind kind,
                              gchar **ret_data_path, GError **error);

/** vrot_identities_cert_revoked: is @cert revoked, or not one this host recorded? */
gboolean vrot_identities_cert_revoked(VrotIdentities *self, X509 *cert);

/**
 * vrot_identities_issue_ak:
 * The AK certificate for @ak (proved to be in @uuid's vTPM by the caller),
 * recorded like any identity (identity.list, identity.revoke).  Main loop.
 * Returns (transfer full) its PEM, or NULL with @error.
 */
gchar *vrot_identities_issue_ak(VrotIdentities *self, const gchar *uuid, EVP_PKEY *ak,
                                X509 *ek_cert, GError **error);

/** vrot_identities_make_credential: TPM2_MakeCredential of @secret for Name @ak_name under @ek_cert's key. */
gboolean vrot_identities_make_credential(X509 *ek_cert, GBytes *ak_name, const VrotSecret *secret,
                                         GBytes **ret_id, GBytes **ret_encrypted, GError **error);
