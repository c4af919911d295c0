/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>

#include "endorse.h"
#include "quote.h"
#include "tpmpub.h"
#include "vtpmconn.h"
#include "vtpmident.h"

G_DEFINE_QUARK(vrot-vtpmident-error-quark, vrot_vtpmident_error)

G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_PUBLIC, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_PRIVATE, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_ATTEST, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPMT_SIGNATURE, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_DIGEST, Esys_Free)

#define IN_TPM (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | \
                TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH)

/* The attestation key: signs only TPM-made structures (restricted). */
static const TPM2B_PUBLIC ak_template = {
        .publicArea = {
                .type = TPM2_ALG_ECC,
                .nameAlg = TPM2_ALG_SHA256,
                .objectAttributes = IN_TPM | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT,
                .parameters.eccDetail = {
                        .symmetric.algorithm = TPM2_ALG_NULL,
                        .scheme = { .scheme = TPM2_ALG_ECDSA,
                                    .details.ecdsa.hashAlg = TPM2_ALG_SHA256 },
                        .curveID = TPM2_ECC_NIST_P256,
                        .kdf.scheme = TPM2_ALG_NULL,
                },
        },
};

/* The identity key: signs anything (TLS handshakes); the scheme and hash
 * come with each TPM2_Sign. */
static const TPM2B_PUBLIC key_template = {
        .publicArea = {
                .type = TPM2_ALG_ECC,
                .nameAlg = TPM2_ALG_SHA256,
                .objectAttributes = IN_TPM | TPMA_OBJECT_SIGN_ENCRYPT,
                .parameters.eccDetail = {
                        .symmetric.algorithm = TPM2_ALG_NULL,
                        .scheme.scheme = TPM2_ALG_NULL,
                        .curveID = TPM2_ECC_NIST_P256,
                        .kdf.scheme = TPM2_ALG_NULL,
                },
        },
};

static const TPM2B_SENSITIVE_CREATE empty_sensitive;
static const TPM2B_DATA empty_data;
static const TPML_PCR_SELECTION no_pcrs;

/* What one call holds in the vTPM; flushed / closed at the end. */
typedef struct Objects {
        ESYS_TR ek, ak, key;
        gboolean ak_transient;          /* made by this call, to be persisted */
        gboolean ak_replaces;           /* ... in place of the one there */
        TPM2B_PUBLIC *ak_public, *key_public;
} Objects;

static void objects_release(ESYS_CONTEXT *esys, Objects *o)
{
        if (o->key != ESYS_TR_NONE)
                (void)Esys_FlushContext(esys, o->key);
        if (o->ak != ESYS_TR_NONE)
                (void)(o->ak_transient ? Esys_FlushContext(esys, o->ak) : Esys_TR_Close(esys, &o->ak));
        if (o->ek != ESYS_TR_NONE)
                (void)Esys_TR_Close(esys, &o->ek);
        Esys_Free(o->ak_public);
        Esys_Free(o->key_public);
}

/* A one-use policy session satisfying the EK's policy, PolicySecret(TPM_RH_ENDORSEMENT)
 * (EK Credential Profile B.3.3); the TPM flushes it after the command that uses it. */
static gboolean ek_session(ESYS_CONTEXT *esys, ESYS_TR *ret, GError **error)
{
        static const TPMT_SYM_DEF no_sym = { .algorithm = TPM2_ALG_NULL };
        TSS2_RC rc;

        rc = Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   ESYS_TR_NONE, NULL, TPM2_SE_POLICY, &no_sym, TPM2_ALG_SHA256,
                                   ret);
        if (!vrot_vtpm_check(rc, "TPM2_StartAuthSession", error))
                return FALSE;
        rc = Esys_PolicySecret(esys, ESYS_TR_RH_ENDORSEMENT, *ret, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                               ESYS_TR_NONE, NULL, NULL, NULL, 0, NULL, NULL);
        if (rc == TSS2_RC_SUCCESS)
                rc = Esys_TRSess_SetAttributes(esys, *ret, 0, TPMA_SESSION_CONTINUESESSION);
        if (!vrot_vtpm_check(rc, "TPM2_PolicySecret(endorsement)", error)) {
                (void)Esys_FlushContext(esys, *ret);
                *ret = ESYS_TR_NONE;
                return FALSE;
        }
        return TRUE;
}

/* TPM2_Create and TPM2_Load of @template under the EK. */
static gboolean create_under_ek(ESYS_CONTEXT *esys, ESYS_TR ek, const TPM2B_PUBLIC *template,
                                const char *what, ESYS_TR *ret, TPM2B_PUBLIC **ret_public,
                                GError **error)
{
        g_autoptr(TPM2B_PRIVATE) priv = NULL;
        ESYS_TR session = ESYS_TR_NONE;
        TSS2_RC rc;

        if (!ek_session(esys, &session, error))
                return FALSE;
        rc = Esys_Create(esys, ek, session, ESYS_TR_NONE, ESYS_TR_NONE, &empty_sensitive,
                         template, &empty_data, &no_pcrs, &priv, ret_public, NULL, NULL, NULL);
        if (!vrot_vtpm_check(rc, "TPM2_Create", error) || !ek_session(esys, &session, error))
                goto fail;
        rc = Esys_Load(esys, ek, session, ESYS_TR_NONE, ESYS_TR_NONE, priv, *ret_public, ret);
        if (vrot_vtpm_check(rc, "TPM2_Load", error))
                return TRUE;
fail:
        g_prefix_error(error, "creating the %s: ", what);
        return FALSE;
}

/* The AK at VROT_VTPMIDENT_AK_HANDLE, or a new one (always, if @fresh: the
 * old one, if any, is evicted once the new one is persisted). */
static gboolean get_ak(VrotVtpmConn *c, Objects *o, gboolean fresh, GError **error)
{
        ESYS_CONTEXT *esys = vrot_vtpm_conn_esys(c);
        gboolean exists = FALSE;
        TSS2_RC rc;

        if (!vrot_vtpm_handle_exists(c, VROT_VTPMIDENT_AK_HANDLE, &exists, error))
                return FALSE;
        o->ak_replaces = exists && fresh;
        if (!exists || fresh) {
                o->ak_transient = TRUE;
                return create_under_ek(esys, o->ek, &ak_template, "attestation key", &o->ak,
                                       &o->ak_public, error);
        }
        rc = Esys_TR_FromTPMPublic(esys, VROT_VTPMIDENT_AK_HANDLE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   ESYS_TR_NONE, &o->ak);
        if (rc == TSS2_RC_SUCCESS)
                rc = Esys_ReadPublic(esys, o->ak, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                     &o->ak_public, NULL, NULL);
        return vrot_vtpm_check(rc, "reading the attestation key", error);
}

static gboolean get_ek(VrotVtpmConn *c, Objects *o, GError **error)
{
        gboolean exists = FALSE;

        if (!vrot_vtpm_handle_exists(c, VROT_ENDORSE_RSA_EK_HANDLE, &exists, error))
                return FALSE;
        if (!exists) {
                g_set_error(error, VROT_VTPMIDENT_ERROR, VROT_VTPMIDENT_ERROR_NO_EK,
                            "the vTPM has no RSA EK at 0x%08x (an identity is proved against it; "
                            "create the instance with --ek both or rsa)",
                            VROT_ENDORSE_RSA_EK_HANDLE);
                return FALSE;
        }
        return vrot_vtpm_check(Esys_TR_FromTPMPublic(vrot_vtpm_conn_esys(c),
                                                     VROT_ENDORSE_RSA_EK_HANDLE, ESYS_TR_NONE,
                                                     ESYS_TR_NONE, ESYS_TR_NONE, &o->ek),
                               "reading the EK", error);
}

/* Step 3: TPM2_Certify(key) by the AK over @nonce. */
static gboolean certify(ESYS_CONTEXT *esys, Objects *o, GBytes *nonce, VrotTpmevidenceKey *ev,
                        GError **error)
{
        static const TPMT_SIG_SCHEME ak_scheme = { .scheme = TPM2_ALG_NULL };
        g_autoptr(TPM2B_ATTEST) attest = NULL;
        g_autoptr(TPMT_SIGNATURE) sig = NULL;
        TPM2B_DATA qualifying = { .size = (UINT16)g_bytes_get_size(nonce) };
        TSS2_RC rc;

        if (qualifying.size > sizeof(qualifying.buffer)) {
                g_set_error_literal(error, VROT_VTPM_ERROR, VROT_VTPM_ERROR_FAILED,
                                    "the nonce is too long");
                return FALSE;
        }
        memcpy(qualifying.buffer, g_bytes_get_data(nonce, NULL), qualifying.size);
        rc = Esys_Certify(esys, o->key, o->ak, ESYS_TR_PASSWORD, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                          &qualifying, &ak_scheme, &attest, &sig);
        if (!vrot_vtpm_check(rc, "TPM2_Certify", error) ||
            !vrot_tpmpub_signature_to_der(sig, &ev->signature, error))
                return FALSE;
        ev->attest = g_bytes_new(attest->attestationData, attest->size);
        ev->ak_public = vrot_tpmpub_marshal(o->ak_public);
        ev->key_public = vrot_tpmpub_marshal(o->key_public);
        return TRUE;
}

/* Step 4: the verifier's credential for Name(AK), activated. */
static gboolean activate(ESYS_CONTEXT *esys, Objects *o, GBytes *ak_public,
                         VrotVtpmidentCredentialFunc credential, gpointer data,
                         GBytes **ret_answer, GError **error)
{
        g_autoptr(GBytes) name = vrot_tpmevidence_name(ak_public, error);
        g_autoptr(GBytes) id_blob = NULL, secret_blob = NULL;
        g_autoptr(TPM2B_DIGEST) answer = NULL;
        TPM2B_ID_OBJECT id = { 0 };
        TPM2B_ENCRYPTED_SECRET secret = { 0 };
        ESYS_TR session = ESYS_TR_NONE;
        size_t off1 = 0, off2 = 0;
        TSS2_RC rc;

        if (!name || !credential(name, &id_blob, &secret_blob, data, error))
                return FALSE;
        if (Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(g_bytes_get_data(id_blob, NULL),
                                              g_bytes_get_size(id_blob), &off1, &id) ||
            Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(g_bytes_get_data(secret_blob, NULL),
                                                     g_bytes_get_size(secret_blob), &off2,
                                                     &secret)) {
                g_set_error_literal(error, VROT_VTPM_ERROR, VROT_VTPM_ERROR_FAILED,
                                    "the credential does not unmarshal");
                return FALSE;
        }
        if (!ek_session(esys, &session, error))
                return FALSE;
        rc = Esys_ActivateCredential(esys, o->ak, o->ek, ESYS_TR_PASSWORD, session, ESYS_TR_NONE,
                                     &id, &secret, &answer);
        if (!vrot_vtpm_check(rc, "TPM2_ActivateCredential", error))
                return FALSE;
        *ret_answer = g_bytes_new(answer->buffer, answer->size);
        return TRUE;
}

/* Step 5: the first free identity key handle. */
static gboolean free_slot(VrotVtpmConn *c, guint32 *ret, GError **error)
{
        for (guint32 h = VROT_VTPMIDENT_KEY_FIRST; h <= VROT_VTPMIDENT_KEY_LAST; h++) {
                gboolean taken = TRUE;

                if (!vrot_vtpm_handle_exists(c, h, &taken, error))
                        return FALSE;
                if (!taken) {
                        *ret = h;
                        return TRUE;
                }
        }
        g_set_error(error, VROT_VTPMIDENT_ERROR, VROT_VTPMIDENT_ERROR_FULL,
                    "the vTPM holds %u identity keys already (0x%08x to 0x%08x)",
                    VROT_VTPMIDENT_KEY_LAST - VROT_VTPMIDENT_KEY_FIRST + 1,
                    VROT_VTPMIDENT_KEY_FIRST, VROT_VTPMIDENT_KEY_LAST);
        return FALSE;
}

gboolean vrot_vtpmident_make(const gchar *tcti, gint32 timeout_ms, GBytes *nonce,
                             VrotVtpmidentCredentialFunc credential, VrotVtpmidentCheckFunc check,
                             gpointer data, VrotTpmevidenceKey **ret_key, guint32 *ret_handle,
                             GError **error)
{
        g_autoptr(VrotVtpmConn) c = NULL;
        g_autoptr(VrotTpmevidenceKey) ev = g_new0(VrotTpmevidenceKey, 1);
        g_autoptr(GBytes) answer = NULL;
        Objects o = { ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, FALSE, FALSE, NULL, NULL };
        ESYS_CONTEXT *esys;
        guint32 slot = 0;
        gboolean ok;

        g_return_val_if_fail(tcti && nonce && credential && check && ret_key && ret_handle, FALSE);
        if (!(c = vrot_vtpm_conn_open(tcti, timeout_ms, error)))
                return FALSE;
        esys = vrot_vtpm_conn_esys(c);
        ok = get_ek(c, &o, error) && get_ak(c, &o, FALSE, error) &&
             create_under_ek(esys, o.ek, &key_template, "identity key", &o.key, &o.key_public,
                             error) &&
             certify(esys, &o, nonce, ev, error) &&
             activate(esys, &o, ev->ak_public, credential, data, &answer, error) &&
             check(ev, answer, data, error) && free_slot(c, &slot, error) &&
             vrot_vtpm_persist(c, &o.key, slot, error) &&
             (!o.ak_transient || vrot_vtpm_persist(c, &o.ak, VROT_VTPMIDENT_AK_HANDLE, error));
        objects_release(esys, &o);
        if (!ok)
                return FALSE;
        *ret_key = g_steal_pointer(&ev);
        *ret_handle = slot;
        return TRUE;
}

/* The new AK in place of the old one, if any. */
static gboolean persist_ak(VrotVtpmConn *c, Objects *o, GError **error)
{
        ESYS_CONTEXT *esys = vrot_vtpm_conn_esys(c);
        ESYS_TR old = ESYS_TR_NONE, gone = ESYS_TR_NONE;
        TSS2_RC rc;

        if (o->ak_replaces) {
                rc = Esys_TR_FromTPMPublic(esys, VROT_VTPMIDENT_AK_HANDLE, ESYS_TR_NONE,
                                           ESYS_TR_NONE, ESYS_TR_NONE, &old);
                if (rc == TSS2_RC_SUCCESS)
                        rc = Esys_EvictControl(esys, ESYS_TR_RH_OWNER, old, ESYS_TR_PASSWORD,
                                               ESYS_TR_NONE, ESYS_TR_NONE,
                                               VROT_VTPMIDENT_AK_HANDLE, &gone);
                if (!vrot_vtpm_check(rc, "evicting the old attestation key", error))
                        return FALSE;
        }
        o->ak_transient = FALSE;
        return vrot_vtpm_persist(c, &o->ak, VROT_VTPMIDENT_AK_HANDLE, error);
}

gboolean vrot_vtpmident_quote(const gchar *tcti, gint32 timeout_ms, GBytes *qualifying,
                              guint32 pcr_mask, VrotVtpmidentCredentialFunc credential,
                              VrotVtpmidentAkCheckFunc check, gpointer data,
                              VrotTpmevidenceQuote **ret, GError **error)
{
        g_autoptr(VrotVtpmConn) c = NULL;
        g_autoptr(GBytes) answer = NULL, ak_public = NULL;
        Objects o = { ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, FALSE, FALSE, NULL, NULL };
        gboolean prove = credential != NULL;
        ESYS_CONTEXT *esys;
        gboolean ok, exists = TRUE;

        g_return_val_if_fail(tcti && qualifying && ret && (!credential == !check), FALSE);
        if (!(c = vrot_vtpm_conn_open(tcti, timeout_ms, error)))
                return FALSE;
        esys = vrot_vtpm_conn_esys(c);
        if (!prove && vrot_vtpm_handle_exists(c, VROT_VTPMIDENT_AK_HANDLE, &exists, error) &&
            !exists)
                g_set_error(error, VROT_VTPMIDENT_ERROR, VROT_VTPMIDENT_ERROR_NO_AK,
                            "the vTPM has no attestation key at 0x%08x",
                            VROT_VTPMIDENT_AK_HANDLE);
        ok = exists && get_ek(c, &o, error) && get_ak(c, &o, prove, error);
        if (ok && prove) {
                ak_public = vrot_tpmpub_marshal(o.ak_public);
                ok = activate(esys, &o, ak_public, credential, data, &answer, error) &&
                     check(ak_public, answer, data, error);
        }
        /* A new AK quotes before it is persisted: only a proved one takes the handle. */
        ok = ok && vrot_quote_make(esys, o.ak, o.ak_public, qualifying, pcr_mask,
                                   vrot_vtpm_check, ret, error) &&
             (!prove || persist_ak(c, &o, error));
        objects_release(esys, &o);
        return ok;
}

gboolean vrot_vtpmident_evict(const gchar *tcti, gint32 timeout_ms, guint32 handle,
                              GError **error)
{
        g_autoptr(VrotVtpmConn) c = vrot_vtpm_conn_open(tcti, timeout_ms, error);
        ESYS_CONTEXT *esys = c ? vrot_vtpm_conn_esys(c) : NULL;
        ESYS_TR key = ESYS_TR_NONE, gone = ESYS_TR_NONE;
        TSS2_RC rc;

        if (!c)
                return FALSE;
        rc = Esys_TR_FromTPMPublic(esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &key);
        if (rc == TSS2_RC_SUCCESS)
                rc = Esys_EvictControl(esys, ESYS_TR_RH_OWNER, key, ESYS_TR_PASSWORD,
                                       ESYS_TR_NONE, ESYS_TR_NONE, handle, &gone);
        return vrot_vtpm_check(rc, "TPM2_EvictControl", error);
}
