/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The host's half of the evidence exchange (docs/host-evidence.md): the
 * attestation key, its TPM2_Certify of the host endorsement CA key, and
 * TPM2_ActivateCredential of a verifier's credential.  The verifier's
 * half is lib/tpmevidence.c.
 */
#include <string.h>

#include <tss2/tss2_mu.h>

#include "autoptr.h"
#include "hosttpm-int.h"
#include "mseal.h"
#include "quote.h"
#include "tpmpub.h"

/*
 * The attestation key: a restricted signing primary in the endorsement
 * hierarchy.  Primary keys derive from the hierarchy seed and the
 * template, so the same template gives the same key on every call: nothing
 * is stored, no persistent handle is used.  Restricted: it signs only
 * TPM-made structures (TPMS_ATTEST), so its signature on a certification
 * cannot be forged by whoever can use it.  unique makes it vrot's own;
 * noDA as the CA key.
 */
static const TPM2B_PUBLIC ak_template = {
        .publicArea = {
                .type = TPM2_ALG_ECC,
                .nameAlg = TPM2_ALG_SHA256,
                .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                        TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                        TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED |
                        TPMA_OBJECT_SIGN_ENCRYPT,
                .parameters.eccDetail = {
                        .symmetric.algorithm = TPM2_ALG_NULL,
                        .scheme = { .scheme = TPM2_ALG_ECDSA,
                                    .details.ecdsa.hashAlg = TPM2_ALG_SHA256 },
                        .curveID = TPM2_ECC_NIST_P256,
                        .kdf.scheme = TPM2_ALG_NULL,
                },
                .unique.ecc.x = { .size = 12, .buffer = "vrot-host-ak" },
        },
};

/*
 * The RSA EK: the persistent one at 0x81010001 when there is one, else the
 * standard L-1 primary, created (*@ret_transient: flush it afterwards).
 * @ret_public (optional): its public area.
 */
static gboolean ek_load(VrotHostTpm *self, ESYS_TR *ret_ek, gboolean *ret_transient,
                        TPM2B_PUBLIC **ret_public, GError **error)
{
        ESYS_TR ek = ESYS_TR_NONE;
        TSS2_RC rc;

        if (!hosttpm_find_persistent(self, VROT_HOST_TPM_EK_HANDLE, &ek, ret_public, error))
                return FALSE;
        *ret_transient = ek == ESYS_TR_NONE;
        if (ek == ESYS_TR_NONE) {
                rc = Esys_CreatePrimary(self->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD,
                                        ESYS_TR_NONE, ESYS_TR_NONE, &hosttpm_empty_sensitive,
                                        &vrot_tpmpub_ek_rsa_template, &hosttpm_empty_data,
                                        &hosttpm_no_pcrs, &ek, ret_public, NULL, NULL, NULL);
                if (!vrot_host_tpm_check(rc, "creating the EK: TPM2_CreatePrimary", error))
                        return FALSE;
        }
        *ret_ek = ek;
        return TRUE;
}

static void ek_release(VrotHostTpm *self, ESYS_TR *ek, gboolean transient)
{
        if (transient)
                (void)hosttpm_flush(self, ek);
        else if (*ek != ESYS_TR_NONE)
                Esys_TR_Close(self->esys, ek);
        *ek = ESYS_TR_NONE;
}

static gboolean ak_create(VrotHostTpm *self, ESYS_TR *ret_ak, TPM2B_PUBLIC **ret_public,
                          GError **error)
{
        TSS2_RC rc = Esys_CreatePrimary(self->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD,
                                        ESYS_TR_NONE, ESYS_TR_NONE, &hosttpm_empty_sensitive,
                                        &ak_template, &hosttpm_empty_data, &hosttpm_no_pcrs,
                                        ret_ak, ret_public, NULL, NULL, NULL);

        return vrot_host_tpm_check(rc, "creating the attestation key: TPM2_CreatePrimary",
                                   error);
}

/* TPM2_Certify(CA key) by the loaded AK @ak over @nonce: the DER signature
 * and the TPMS_ATTEST into *@ret_signature and *@ret_attest. */
static gboolean certify_ca_key(VrotHostTpm *self, ESYS_TR ak, const TPM2B_DATA *nonce,
                               GBytes **ret_attest, GBytes **ret_signature, GError **error)
{
        static const TPMT_SIG_SCHEME key_scheme = { .scheme = TPM2_ALG_NULL };
        g_autoptr(TPM2B_ATTEST) attest = NULL;
        g_autoptr(TPMT_SIGNATURE) sig = NULL;
        TSS2_RC rc;

        rc = Esys_Certify(self->esys, self->ca_key, ak, ESYS_TR_PASSWORD, ESYS_TR_PASSWORD,
                          ESYS_TR_NONE, nonce, &key_scheme, &attest, &sig);
        if (!vrot_host_tpm_check(rc, "TPM2_Certify", error) ||
            !vrot_tpmpub_signature_to_der(sig, ret_signature, error))
                return FALSE;
        *ret_attest = g_bytes_new(attest->attestationData, attest->size);
        return TRUE;
}

/* TPM2_Certify(CA key) by a fresh AK; fills attest, signature, ak_public. */
static gboolean certify(VrotHostTpm *self, const TPM2B_DATA *nonce, VrotTpmevidence *ev,
                        GError **error)
{
        g_autoptr(TPM2B_PUBLIC) ak_pub = NULL;
        ESYS_TR ak = ESYS_TR_NONE;
        gboolean ok;
        TSS2_RC frc;

        if (!ak_create(self, &ak, &ak_pub, error))
                return FALSE;
        ok = certify_ca_key(self, ak, nonce, &ev->attest, &ev->signature, error);
        frc = hosttpm_flush(self, &ak);
        if (!ok || !vrot_host_tpm_check(frc, "flushing the attestation key", error))
                return FALSE;
        ev->ak_public = vrot_tpmpub_marshal(ak_pub);
        return TRUE;
}

gboolean vrot_host_tpm_certify_ca_key(VrotHostTpm *self, GBytes *qualifying_data,
                                      VrotTpmevidence **ret_evidence, GError **error)
{
        g_autoptr(VrotTpmevidence) ev = g_new0(VrotTpmevidence, 1);
        g_autoptr(TPM2B_PUBLIC) ek_pub = NULL;
        TPM2B_DATA nonce = { 0 };
        ESYS_TR ek = ESYS_TR_NONE;
        gboolean transient = FALSE;
        gsize len = qualifying_data ? g_bytes_get_size(qualifying_data) : 0;

        g_return_val_if_fail(self->provisioned, FALSE);
        g_return_val_if_fail(ret_evidence != NULL, FALSE);

        if (!hosttpm_usable(self, error))
                return FALSE;
        if (len > 64) {
                g_set_error(error, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_INVALID,
                            "certifying the CA key: nonce of %" G_GSIZE_FORMAT
                            " bytes, at most 64", len);
                return FALSE;
        }
        nonce.size = (UINT16)len;
        if (len)
                memcpy(nonce.buffer, g_bytes_get_data(qualifying_data, NULL), len);
        /* Only the EK's public area is needed: released before the AK comes,
         * so that no more than one transient object is ever loaded. */
        if (ek_load(self, &ek, &transient, &ek_pub, error))
                ek_release(self, &ek, transient);
        if (!ek_pub || !certify(self, &nonce, ev, error)) {
                g_prefix_error(error, "certifying the CA key: ");
                return FALSE;
        }
        ev->ek_public = vrot_tpmpub_marshal(ek_pub);
        ev->ca_public = vrot_tpmpub_marshal(&self->ca_public);
        if (!vrot_host_tpm_read_ek_cert(self, &ev->ek_cert, error))
                return FALSE;
        *ret_evidence = g_steal_pointer(&ev);
        return TRUE;
}

gboolean vrot_host_tpm_quote(VrotHostTpm *self, GBytes *qualifying, guint32 pcr_mask,
                             GBytes *ca_qualifying, VrotTpmevidenceQuote **ret,
                             VrotTpmevidenceKey **ret_ca, GError **error)
{
        g_autoptr(VrotTpmevidenceKey) ca = g_new0(VrotTpmevidenceKey, 1);
        g_autoptr(TPM2B_PUBLIC) ak_pub = NULL;
        TPM2B_DATA data = { .size = (UINT16)g_bytes_get_size(ca_qualifying) };
        ESYS_TR ak = ESYS_TR_NONE;
        gboolean ok;

        g_return_val_if_fail(self->provisioned && ret && ret_ca, FALSE);
        g_return_val_if_fail(data.size >= 1 && data.size <= 64, FALSE);
        memcpy(data.buffer, g_bytes_get_data(ca_qualifying, NULL), data.size);
        if (!hosttpm_usable(self, error) || !ak_create(self, &ak, &ak_pub, error))
                return FALSE;
        ok = vrot_quote_make(self->esys, ak, ak_pub, qualifying, pcr_mask, vrot_host_tpm_check,
                             ret, error) &&
             certify_ca_key(self, ak, &data, &ca->attest, &ca->signature, error);
        (void)hosttpm_flush(self, &ak);
        if (!ok) {
                g_prefix_error(error, "the host quote: ");
                g_clear_pointer(ret, vrot_tpmevidence_quote_free);
                return FALSE;
        }
        ca->ak_public = vrot_tpmpub_marshal(ak_pub);
        ca->key_public = vrot_tpmpub_marshal(&self->ca_public);
        *ret_ca = g_steal_pointer(&ca);
        return TRUE;
}

/* After Tss2_MU_*_Unmarshal of @len bytes: no error, nothing left over. */
static gboolean unmarshaled_all(TSS2_RC rc, size_t off, gsize len, const char *what,
                                GError **error)
{
        if (!vrot_host_tpm_check(rc, what, error))
                return FALSE;
        if (off != len) {
                g_set_error(error, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_INVALID,
                            "%s: %" G_GSIZE_FORMAT " bytes after the structure", what,
                            len - off);
                return FALSE;
        }
        return TRUE;
}

static gboolean parse_credential(GBytes *id_object, GBytes *encrypted_secret,
                                 TPM2B_ID_OBJECT *id, TPM2B_ENCRYPTED_SECRET *secret,
                                 GError **error)
{
        gsize id_len, secret_len;
        const guint8 *id_buf = g_bytes_get_data(id_object, &id_len);
        const guint8 *secret_buf = g_bytes_get_data(encrypted_secret, &secret_len);
        size_t off = 0;
        TSS2_RC rc;

        rc = Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(id_buf, id_len, &off, id);
        if (!unmarshaled_all(rc, off, id_len, "credential blob (TPM2B_ID_OBJECT)", error))
                return FALSE;
        off = 0;
        rc = Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(secret_buf, secret_len, &off, secret);
        return unmarshaled_all(rc, off, secret_len, "encrypted secret (TPM2B_ENCRYPTED_SECRET)",
                               error);
}

/* PolicySecret(TPM_RH_ENDORSEMENT) session, the EK's policy (EK profile B.3.3). */
static gboolean ek_policy_session(VrotHostTpm *self, ESYS_TR *ret_session, GError **error)
{
        static const TPMT_SYM_DEF no_sym = { .algorithm = TPM2_ALG_NULL };
        TSS2_RC rc;

        rc = Esys_StartAuthSession(self->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_POLICY, &no_sym,
                                   TPM2_ALG_SHA256, ret_session);
        if (!vrot_host_tpm_check(rc, "TPM2_StartAuthSession", error))
                return FALSE;
        rc = Esys_PolicySecret(self->esys, ESYS_TR_RH_ENDORSEMENT, *ret_session,
                               ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, NULL, NULL, NULL,
                               0, NULL, NULL);
        return vrot_host_tpm_check(rc, "TPM2_PolicySecret(endorsement)", error);
}

gboolean vrot_host_tpm_activate_credential(VrotHostTpm *self, GBytes *id_object,
                                           GBytes *encrypted_secret, GBytes **ret_secret,
                                           GError **error)
{
        TPM2B_ID_OBJECT id = { 0 };
        TPM2B_ENCRYPTED_SECRET secret = { 0 };
        g_autoptr(TPM2B_DIGEST) cert_info = NULL;
        ESYS_TR ek = ESYS_TR_NONE, ak = ESYS_TR_NONE, session = ESYS_TR_NONE;
        gboolean transient = FALSE, ok = FALSE;
        TSS2_RC rc;

        g_return_val_if_fail(id_object != NULL && encrypted_secret != NULL, FALSE);
        g_return_val_if_fail(ret_secret != NULL, FALSE);

        if (!hosttpm_usable(self, error) ||
            !parse_credential(id_object, encrypted_secret, &id, &secret, error))
                goto cleanup;
        if (!ek_load(self, &ek, &transient, NULL, error) || !ak_create(self, &ak, NULL, error) ||
            !ek_policy_session(self, &session, error))
                goto cleanup;
        rc = Esys_ActivateCredential(self->esys, ak, ek, ESYS_TR_PASSWORD, session,
                                     ESYS_TR_NONE, &id, &secret, &cert_info);
        ok = vrot_host_tpm_check(rc, "TPM2_ActivateCredential", error);

cleanup:
        (void)hosttpm_flush(self, &session);
        (void)hosttpm_flush(self, &ak);
        ek_release(self, &ek, transient);
        if (!ok) {
                g_prefix_error(error, "activating a credential: ");
                return FALSE;
        }
        *ret_secret = g_bytes_new(cert_info->buffer, cert_info->size);
        return TRUE;
}

/* ---- migration import keys (docs/migration.md) ------------------------------------------- */

/* A one-time ECDH key under the SRK: decrypt only, unrestricted, scheme
 * left to TPM2_ECDH_ZGen. */
static const TPM2B_PUBLIC import_template = {
        .publicArea = {
                .type = TPM2_ALG_ECC,
                .nameAlg = TPM2_ALG_SHA256,
                .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                        TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                        TPMA_OBJECT_NODA | TPMA_OBJECT_DECRYPT,
                .parameters.eccDetail = {
                        .symmetric.algorithm = TPM2_ALG_NULL,
                        .scheme.scheme = TPM2_ALG_NULL,
                        .curveID = TPM2_ECC_NIST_P256,
                        .kdf.scheme = TPM2_ALG_NULL,
                },
        },
};

struct VrotHostImportKey {
        VrotHostTpm *tpm;
        ESYS_TR key;
};

void vrot_host_import_key_free(VrotHostImportKey *k)
{
        if (!k)
                return;
        if (k->key != ESYS_TR_NONE)
                (void)hosttpm_flush(k->tpm, &k->key);
        g_free(k);
}

VrotHostImportKey *vrot_host_tpm_import_key_new(VrotHostTpm *self, GBytes *qualifying,
                                                VrotTpmevidenceKey **ret_evidence, GError **error)
{
        static const TPMT_SIG_SCHEME ak_scheme = { .scheme = TPM2_ALG_NULL };
        g_autoptr(VrotHostImportKey) k = g_new0(VrotHostImportKey, 1);
        g_autoptr(VrotTpmevidenceKey) ev = g_new0(VrotTpmevidenceKey, 1);
        g_autoptr(TPM2B_PUBLIC) pub = NULL, ak_pub = NULL;
        g_autoptr(TPM2B_PRIVATE) priv = NULL;
        g_autoptr(TPM2B_ATTEST) attest = NULL;
        g_autoptr(TPMT_SIGNATURE) sig = NULL;
        TPM2B_DATA data = { .size = (UINT16)g_bytes_get_size(qualifying) };
        ESYS_TR ak = ESYS_TR_NONE;
        TSS2_RC rc, frc;

        g_return_val_if_fail(self->provisioned && ret_evidence, NULL);
        g_return_val_if_fail(data.size >= 1 && data.size <= 64, NULL);
        memcpy(data.buffer, g_bytes_get_data(qualifying, NULL), data.size);
        k->tpm = self;
        k->key = ESYS_TR_NONE;
        if (!hosttpm_usable(self, error))
                return NULL;
        rc = Esys_Create(self->esys, self->srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                         &hosttpm_empty_sensitive, &import_template, &hosttpm_empty_data,
                         &hosttpm_no_pcrs, &priv, &pub, NULL, NULL, NULL);
        if (rc == TSS2_RC_SUCCESS)
                rc = Esys_Load(self->esys, self->srk, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                               ESYS_TR_NONE, priv, pub, &k->key);
        if (!vrot_host_tpm_check(rc, "creating an import key", error) ||
            !ak_create(self, &ak, &ak_pub, error))
                return NULL;
        rc = Esys_Certify(self->esys, k->key, ak, ESYS_TR_PASSWORD, ESYS_TR_PASSWORD,
                          ESYS_TR_NONE, &data, &ak_scheme, &attest, &sig);
        frc = hosttpm_flush(self, &ak);
        if (!vrot_host_tpm_check(rc, "certifying the import key: TPM2_Certify", error) ||
            !vrot_host_tpm_check(frc, "flushing the attestation key", error) ||
            !vrot_tpmpub_signature_to_der(sig, &ev->signature, error))
                return NULL;
        ev->attest = g_bytes_new(attest->attestationData, attest->size);
        ev->ak_public = vrot_tpmpub_marshal(ak_pub);
        ev->key_public = vrot_tpmpub_marshal(pub);
        ev->decrypt = TRUE;
        *ret_evidence = g_steal_pointer(&ev);
        return g_steal_pointer(&k);
}

gboolean vrot_host_import_key_zgen(const guint8 point[VROT_MSEAL_POINT_LEN],
                                   guint8 z[VROT_MSEAL_Z_LEN], gpointer user_data, GError **error)
{
        VrotHostImportKey *k = user_data;
        TPM2B_ECC_POINT in = { .size = 0 };
        g_autoptr(TPM2B_ECC_POINT) out = NULL;
        TSS2_RC rc;

        if (k->key == ESYS_TR_NONE || point[0] != 0x04) {
                g_set_error_literal(error, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_INVALID,
                                    "the import key is gone, or the point is not uncompressed");
                return FALSE;
        }
        in.point.x.size = in.point.y.size = 32;
        memcpy(in.point.x.buffer, point + 1, 32);
        memcpy(in.point.y.buffer, point + 33, 32);
        if (!hosttpm_usable(k->tpm, error))
                return FALSE;
        rc = Esys_ECDH_ZGen(k->tpm->esys, k->key, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                            &in, &out);
        if (!vrot_host_tpm_check(rc, "TPM2_ECDH_ZGen with the import key", error))
                return FALSE;
        if (out->point.x.size > VROT_MSEAL_Z_LEN) {
                g_set_error_literal(error, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_FAILED,
                                    "TPM2_ECDH_ZGen: an x coordinate longer than 32 bytes");
                return FALSE;
        }
        /* Z is the x coordinate as 32 bytes, left-padded. */
        memset(z, 0, VROT_MSEAL_Z_LEN);
        memcpy(z + VROT_MSEAL_Z_LEN - out->point.x.size, out->point.x.buffer, out->point.x.size);
        return TRUE;
}
