/* SPDX-License-Identifier: BSD-3-Clause */
#include <stddef.h>
#include <string.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>

#include "endorse-priv.h"
#include "mkey.h"
#include "vtpmconn.h"
#include "tpmpub.h"

/* A pool entry's worker defines the certificate indices itself (BIND). */
G_STATIC_ASSERT(VROT_ENDORSE_CERT_NV_ATTRIBUTES == VROT_MKEY_CERT_NV_ATTRIBUTES);

G_DEFINE_QUARK(vrot-endorse-error-quark, vrot_endorse_error)

/* ESYS hands out malloc()ed results to be freed with Esys_Free(). */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_PUBLIC, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_NV_PUBLIC, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_MAX_NV_BUFFER, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPMS_CAPABILITY_DATA, Esys_Free)

/* The two EKs, by VrotEndorseEk. */
typedef struct EkKind {
        const char *name;
        const TPM2B_PUBLIC *template;
        TPM2_HANDLE handle;
        TPM2_HANDLE nv_index;
        VrotEndorseStep create_step, cert_step, store_step;
} EkKind;

static const EkKind kinds[VROT_ENDORSE_N_EK] = {
        [VROT_ENDORSE_EK_RSA] = { "RSA", &vrot_tpmpub_ek_rsa_template, VROT_ENDORSE_RSA_EK_HANDLE,
                                  VROT_ENDORSE_RSA_CERT_INDEX, VROT_ENDORSE_STEP_CREATE_RSA,
                                  VROT_ENDORSE_STEP_CERT_RSA, VROT_ENDORSE_STEP_STORE_RSA },
        [VROT_ENDORSE_EK_ECC] = { "ECC", &vrot_tpmpub_ek_ecc_template, VROT_ENDORSE_ECC_EK_HANDLE,
                                  VROT_ENDORSE_ECC_CERT_INDEX, VROT_ENDORSE_STEP_CREATE_ECC,
                                  VROT_ENDORSE_STEP_CERT_ECC, VROT_ENDORSE_STEP_STORE_ECC },
};

static const char *const step_names[VROT_ENDORSE_N_STEPS] = {
        [VROT_ENDORSE_STEP_CONNECT] = "connect",
        [VROT_ENDORSE_STEP_INSPECT] = "inspect",
        [VROT_ENDORSE_STEP_CREATE_RSA] = "create-rsa",
        [VROT_ENDORSE_STEP_CREATE_ECC] = "create-ecc",
        [VROT_ENDORSE_STEP_CERT_RSA] = "cert-rsa",
        [VROT_ENDORSE_STEP_CERT_ECC] = "cert-ecc",
        [VROT_ENDORSE_STEP_STORE_RSA] = "store-rsa",
        [VROT_ENDORSE_STEP_STORE_ECC] = "store-ecc",
        [VROT_ENDORSE_STEP_CLOSE] = "close",
};

const char *vrot_endorse_step_name(VrotEndorseStep step)
{
        g_return_val_if_fail(step < VROT_ENDORSE_N_STEPS, NULL);
        return step_names[step];
}

/* ---- what the vTPM says about itself --------------------------------------------- */

typedef struct TpmInfo {
        guint32 family, level, revision, manufacturer, firmware_1;
        guint32 vendor[4];
        guint32 nv_index_max, nv_buffer_max;
        gchar model[17];        /* the vendor strings, spaces collapsed */
        gchar spec_family[5];   /* TPM_PT_FAMILY_INDICATOR as text, "2.0" */
} TpmInfo;

static const struct {
        TPM2_PT property;
        gsize offset;
        gboolean required;
        const char *name;
} wanted[] = {
        { TPM2_PT_FAMILY_INDICATOR, offsetof(TpmInfo, family), TRUE, "FAMILY_INDICATOR" },
        { TPM2_PT_LEVEL, offsetof(TpmInfo, level), TRUE, "LEVEL" },
        { TPM2_PT_REVISION, offsetof(TpmInfo, revision), TRUE, "REVISION" },
        { TPM2_PT_MANUFACTURER, offsetof(TpmInfo, manufacturer), TRUE, "MANUFACTURER" },
        { TPM2_PT_VENDOR_STRING_1, offsetof(TpmInfo, vendor[0]), TRUE, "VENDOR_STRING_1" },
        /* "the additional property values do not have to be present" (Part 2, 6.13) */
        { TPM2_PT_VENDOR_STRING_2, offsetof(TpmInfo, vendor[1]), FALSE, "VENDOR_STRING_2" },
        { TPM2_PT_VENDOR_STRING_3, offsetof(TpmInfo, vendor[2]), FALSE, "VENDOR_STRING_3" },
        { TPM2_PT_VENDOR_STRING_4, offsetof(TpmInfo, vendor[3]), FALSE, "VENDOR_STRING_4" },
        { TPM2_PT_FIRMWARE_VERSION_1, offsetof(TpmInfo, firmware_1), TRUE, "FIRMWARE_VERSION_1" },
        { TPM2_PT_NV_INDEX_MAX, offsetof(TpmInfo, nv_index_max), TRUE, "NV_INDEX_MAX" },
        { TPM2_PT_NV_BUFFER_MAX, offsetof(TpmInfo, nv_buffer_max), TRUE, "NV_BUFFER_MAX" },
};

gboolean vrot_endorse_vendor_text(const guint32 *groups, gsize n, gchar *out)
{
        gsize len = 0;

        for (gsize i = 0; i < n * 4; i++) {
                guint8 ch = (guint8)(groups[i / 4] >> (24 - 8 * (i % 4)));

                if (ch == 0)
                        ch = ' ';
                if (ch < 0x20 || ch > 0x7e)
                        return FALSE;
                if (ch == ' ' && (len == 0 || out[len - 1] == ' '))
                        continue;
                out[len++] = (gchar)ch;
        }
        while (len > 0 && out[len - 1] == ' ')
                len--;
        out[len] = '\0';
        return len > 0;
}

static gboolean fill_info(const TPML_TAGGED_TPM_PROPERTY *props, TpmInfo *info, GError **error)
{
        for (gsize w = 0; w < G_N_ELEMENTS(wanted); w++) {
                gboolean found = FALSE;

                for (guint32 i = 0; i < props->count && !found; i++) {
                        if (props->tpmProperty[i].property != wanted[w].property)
                                continue;
                        *(guint32 *)((guint8 *)info + wanted[w].offset) =
                                props->tpmProperty[i].value;
                        found = TRUE;
                }
                if (!found && wanted[w].required) {
                        g_set_error(error, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_FAILED,
                                    "the vTPM does not report TPM_PT_%s", wanted[w].name);
                        return FALSE;
                }
        }
        if (!vrot_endorse_vendor_text(info->vendor, 4, info->model) ||
            !vrot_endorse_vendor_text(&info->family, 1, info->spec_family) ||
            info->nv_buffer_max == 0 || info->nv_index_max == 0) {
                g_set_error(error, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_FAILED,
                            "the vTPM reports an unusable vendor string, family or NV limit");
                return FALSE;
        }
        info->nv_buffer_max = MIN(info->nv_buffer_max, (guint32)TPM2_MAX_NV_BUFFER_SIZE);
        return TRUE;
}

/* The TPM_PT_FIXED properties vrot needs: one GetCapability. */
static gboolean read_info(VrotVtpmConn *c, TpmInfo *ret, GError **error)
{
        g_autoptr(TPMS_CAPABILITY_DATA) cap = NULL;
        TpmInfo info = { 0 };
        TSS2_RC rc;

        rc = Esys_GetCapability(vrot_vtpm_conn_esys(c), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                TPM2_CAP_TPM_PROPERTIES, TPM2_PT_FIXED, TPM2_MAX_TPM_PROPERTIES,
                                NULL, &cap);
        if (!vrot_vtpm_check(rc, "TPM2_GetCapability(TPM_PT_FIXED)", error) ||
            !fill_info(&cap->data.tpmProperties, &info, error))
                return FALSE;
        *ret = info;
        return TRUE;
}

/* Refused with VROT_ENDORSE_ERROR_ENDORSED if any EK handle or certificate index exists. */
static gboolean check_not_endorsed(VrotVtpmConn *c, GError **error)
{
        g_autoptr(GString) found = g_string_new(NULL);

        for (gsize i = 0; i < G_N_ELEMENTS(kinds); i++) {
                gboolean key = FALSE, cert = FALSE;

                if (!vrot_vtpm_handle_exists(c, kinds[i].handle, &key, error) ||
                    !vrot_vtpm_handle_exists(c, kinds[i].nv_index, &cert, error))
                        return FALSE;
                if (key)
                        g_string_append_printf(found, ", EK 0x%08x", kinds[i].handle);
                if (cert)
                        g_string_append_printf(found, ", NV index 0x%08x", kinds[i].nv_index);
        }
        if (found->len == 0)
                return TRUE;
        g_set_error(error, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_ENDORSED,
                    "the vTPM was endorsed before (it holds %s); endorsement is a one-time "
                    "manufacturing step", found->str + 2);
        return FALSE;
}

/* A pre-made vTPM (vrot_endorse_make_eks()): both EKs, no certificate index. */
static gboolean check_premade(VrotVtpmConn *c, GError **error)
{
        for (gsize i = 0; i < G_N_ELEMENTS(kinds); i++) {
                gboolean key = FALSE, cert = FALSE;

                if (!vrot_vtpm_handle_exists(c, kinds[i].handle, &key, error) ||
                    !vrot_vtpm_handle_exists(c, kinds[i].nv_index, &cert, error))
                        return FALSE;
                if (cert) {
                        g_set_error(error, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_ENDORSED,
                                    "the vTPM was endorsed before (it holds NV index 0x%08x)",
                                    kinds[i].nv_index);
                        return FALSE;
                }
                if (!key) {
                        g_set_error(error, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_FAILED,
                                    "not a pre-made vTPM: it has no EK at 0x%08x",
                                    kinds[i].handle);
                        return FALSE;
                }
        }
        return TRUE;
}

/* A migrated vTPM (reissue): the EKs it holds, as an ek_mask; one at least. */
static gboolean find_eks(VrotVtpmConn *c, guint *ret_mask, GError **error)
{
        *ret_mask = 0;
        for (gsize i = 0; i < G_N_ELEMENTS(kinds); i++) {
                gboolean key = FALSE;

                if (!vrot_vtpm_handle_exists(c, kinds[i].handle, &key, error))
                        return FALSE;
                *ret_mask |= key ? 1u << i : 0;
        }
        if (*ret_mask)
                return TRUE;
        g_set_error(error, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_NOT_ENDORSED,
                    "the vTPM holds no EK at 0x%08x or 0x%08x", kinds[0].handle, kinds[1].handle);
        return FALSE;
}

/* TPM2_NV_UndefineSpace of @index if it exists (a certificate to be replaced). */
static gboolean nv_undefine(VrotVtpmConn *c, TPM2_HANDLE index, GError **error)
{
        ESYS_TR nv = ESYS_TR_NONE;
        gboolean exists = FALSE, ok;

        if (!vrot_vtpm_handle_exists(c, index, &exists, error))
                return FALSE;
        if (!exists)
                return TRUE;
        ok = vrot_vtpm_check(Esys_TR_FromTPMPublic(vrot_vtpm_conn_esys(c), index, ESYS_TR_NONE,
                                                   ESYS_TR_NONE, ESYS_TR_NONE, &nv),
                             "TPM2_NV_ReadPublic", error) &&
             vrot_vtpm_check(Esys_NV_UndefineSpace(vrot_vtpm_conn_esys(c), ESYS_TR_RH_PLATFORM, nv,
                                                   ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE),
                             "TPM2_NV_UndefineSpace", error);
        /* ESYS drops the object of an undefined index itself. */
        if (!ok && nv != ESYS_TR_NONE)
                Esys_TR_Close(vrot_vtpm_conn_esys(c), &nv);
        return ok;
}

/* ---- EK public keys ------------------------------------------------------------------ */

gboolean vrot_endorse_matches_template(const TPMT_PUBLIC *pub, const TPMT_PUBLIC *tmpl)
{
        if (pub->type != tmpl->type || pub->nameAlg != tmpl->nameAlg ||
            pub->objectAttributes != tmpl->objectAttributes ||
            pub->authPolicy.size != tmpl->authPolicy.size ||
            memcmp(pub->authPolicy.buffer, tmpl->authPolicy.buffer, tmpl->authPolicy.size) != 0)
                return FALSE;
        if (tmpl->type == TPM2_ALG_RSA) {
                const TPMS_RSA_PARMS *a = &pub->parameters.rsaDetail, *b = &tmpl->parameters.rsaDetail;

                return memcmp(&a->symmetric, &b->symmetric, sizeof(a->symmetric)) == 0 &&
                       a->scheme.scheme == b->scheme.scheme && a->keyBits == b->keyBits &&
                       (a->exponent ? a->exponent : 65537) == (b->exponent ? b->exponent : 65537) &&
                       pub->unique.rsa.size == tmpl->unique.rsa.size;
        }
        if (tmpl->type == TPM2_ALG_ECC) {
                const TPMS_ECC_PARMS *a = &pub->parameters.eccDetail, *b = &tmpl->parameters.eccDetail;

                return memcmp(&a->symmetric, &b->symmetric, sizeof(a->symmetric)) == 0 &&
                       a->scheme.scheme == b->scheme.scheme && a->curveID == b->curveID &&
                       a->kdf.scheme == b->kdf.scheme &&
                       pub->unique.ecc.x.size == tmpl->unique.ecc.x.size &&
                       pub->unique.ecc.y.size == tmpl->unique.ecc.y.size;
        }
        return FALSE;
}

static GBytes *marshal_public(const TPM2B_PUBLIC *pub)
{
        guint8 buf[sizeof(TPM2B_PUBLIC)];
        size_t off = 0;

        if (Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof(buf), &off) != TSS2_RC_SUCCESS)
                g_assert_not_reached();         /* a TPM2B_PUBLIC always fits */
        return g_bytes_new(buf, off);
}

/* ---- the steps --------------------------------------------------------------------- */

/* @ek from the TPM2B_PUBLIC of the EK of @kind. */
static gboolean fill_ek(const EkKind *kind, const TPM2B_PUBLIC *pub, VrotEndorsedEk *ek,
                        GError **error)
{
        ek->public_key = vrot_tpmpub_to_pkey(&pub->publicArea, error);
        if (!ek->public_key)
                return FALSE;
        ek->tpm_public = marshal_public(pub);
        ek->handle = kind->handle;
        ek->nv_index = kind->nv_index;
        return TRUE;
}

/* ESYS's objects of the EKs in one session: created and not persisted yet
 * (flushed at its end), or read at their persistent handles (kept for an
 * eviction, which then needs no TPM2_ReadPublic). */
typedef struct EkObjects {
        ESYS_TR transient[VROT_ENDORSE_N_EK];
        ESYS_TR persistent[VROT_ENDORSE_N_EK];
} EkObjects;

#define EK_OBJECTS_NONE { { ESYS_TR_NONE, ESYS_TR_NONE }, { ESYS_TR_NONE, ESYS_TR_NONE } }

/* TPM2_CreatePrimary of the EK of @kind, left transient in *@ret_transient. */
static gboolean create_ek(VrotVtpmConn *c, const EkKind *kind, ESYS_TR *ret_transient,
                          VrotEndorsedEk *ek, GError **error)
{
        static const TPM2B_SENSITIVE_CREATE empty_sensitive;
        static const TPM2B_DATA empty_data;
        static const TPML_PCR_SELECTION no_pcrs;
        g_autoptr(TPM2B_PUBLIC) pub = NULL;
        TSS2_RC rc;

        rc = Esys_CreatePrimary(vrot_vtpm_conn_esys(c), ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                ESYS_TR_NONE, &empty_sensitive, kind->template, &empty_data,
                                &no_pcrs, ret_transient, &pub, NULL, NULL, NULL);
        if (!vrot_vtpm_check(rc, "TPM2_CreatePrimary", error))
                return FALSE;
        return fill_ek(kind, pub, ek, error);
}

/* The EK of @kind that a pre-made vTPM holds at its persistent handle
 * (TPM2_ReadPublic), checked against the template: `tpm2_createek` in the
 * guest must derive this very key. */
static gboolean read_ek(VrotVtpmConn *c, const EkKind *kind, VrotEndorsedEk *ek, ESYS_TR *ret_tr,
                        GError **error)
{
        g_autoptr(TPM2B_PUBLIC) pub = NULL;
        ESYS_TR tr = ESYS_TR_NONE;
        gboolean ok;

        ok = vrot_vtpm_check(Esys_TR_FromTPMPublic(vrot_vtpm_conn_esys(c), kind->handle, ESYS_TR_NONE, ESYS_TR_NONE,
                                         ESYS_TR_NONE, &tr), "TPM2_ReadPublic", error) &&
             vrot_vtpm_check(Esys_ReadPublic(vrot_vtpm_conn_esys(c), tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub,
                                   NULL, NULL), "TPM2_ReadPublic", error);
        if (ok && ret_tr)
                *ret_tr = tr;           /* the caller's now */
        else if (tr != ESYS_TR_NONE)
                Esys_TR_Close(vrot_vtpm_conn_esys(c), &tr);
        if (!ok)
                return FALSE;
        if (!vrot_endorse_matches_template(&pub->publicArea, &kind->template->publicArea)) {
                g_set_error(error, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_FAILED,
                            "the key at 0x%08x is not an EK of the TCG default template",
                            kind->handle);
                return FALSE;
        }
        return fill_ek(kind, pub, ek, error);
}

/* TPM2_EvictControl of the persistent EK of @kind, an EK not asked for;
 * *@tr is ESYS's object of it (read_ek()), else ESYS_TR_NONE: made here. */
static gboolean evict_ek(VrotVtpmConn *c, const EkKind *kind, ESYS_TR *tr, GError **error)
{
        ESYS_TR out = ESYS_TR_NONE;
        TSS2_RC rc;

        if (*tr == ESYS_TR_NONE &&
            !vrot_vtpm_check(Esys_TR_FromTPMPublic(vrot_vtpm_conn_esys(c), kind->handle, ESYS_TR_NONE, ESYS_TR_NONE,
                                         ESYS_TR_NONE, tr), "TPM2_ReadPublic", error))
                return FALSE;
        rc = Esys_EvictControl(vrot_vtpm_conn_esys(c), ESYS_TR_RH_OWNER, *tr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                               ESYS_TR_NONE, kind->handle, &out);
        /* ESYS drops its object of an evicted persistent handle itself; a
         * failure leaves it to Esys_Finalize(). */
        *tr = ESYS_TR_NONE;
        return vrot_vtpm_check(rc, "TPM2_EvictControl (evicting)", error);
}

gboolean vrot_endorse_check_size(gsize der_len, guint32 nv_index_max, GError **error)
{
        if (der_len <= nv_index_max)
                return TRUE;
        g_set_error(error, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_TOO_LARGE,
                    "the certificate has %" G_GSIZE_FORMAT " bytes, the vTPM's NV indices hold "
                    "at most %u (TPM_PT_NV_INDEX_MAX); shorten the attestation URI",
                    der_len, nv_index_max);
        return FALSE;
}

/* The EK certificate (lib/x509), with what the vTPM reported. */
static gboolean certify_ek(const VrotX509Signer *signer, const VrotEndorseParams *params,
                           const TpmInfo *info, VrotEndorsedEk *ek, GError **error)
{
        VrotX509EkParams p = {
                .tpm_manufacturer = info->manufacturer,
                .tpm_model = info->model,
                .tpm_version = info->firmware_1,
                .spec_family = info->spec_family,
                .spec_level = info->level,
                .spec_revision = info->revision,
                .host_attestation_uri = params->host_attestation_uri,
                .not_after = params->not_after,
        };

        memcpy(p.instance_uuid, params->instance_uuid, sizeof(p.instance_uuid));
        ek->cert_der = vrot_x509_ek_cert_der(signer, ek->public_key, &p, error);
        if (!ek->cert_der)
                return FALSE;
        return vrot_endorse_check_size(g_bytes_get_size(ek->cert_der), info->nv_index_max, error);
}

static gboolean nv_write_all(VrotVtpmConn *c, ESYS_TR nv, GBytes *data, guint32 chunk, GError **error)
{
        gsize len = 0;
        const guint8 *p = g_bytes_get_data(data, &len);

        for (gsize off = 0; off < len; off += chunk) {
                TPM2B_MAX_NV_BUFFER b = { .size = (UINT16)MIN(chunk, len - off) };
                TSS2_RC rc;

                memcpy(b.buffer, p + off, b.size);
                rc = Esys_NV_Write(vrot_vtpm_conn_esys(c), ESYS_TR_RH_PLATFORM, nv, ESYS_TR_PASSWORD,
                                   ESYS_TR_NONE, ESYS_TR_NONE, &b, (UINT16)off);
                if (!vrot_vtpm_check(rc, "TPM2_NV_Write", error))
                        return FALSE;
        }
        return TRUE;
}

/* Defines the certificate index (platform), writes @der, write-locks it. */
static gboolean nv_store(VrotVtpmConn *c, TPM2_HANDLE index, GBytes *der, guint32 chunk, GError **error)
{
        TPM2B_NV_PUBLIC pub = {
                .nvPublic = {
                        .nvIndex = index,
                        .nameAlg = TPM2_ALG_SHA256,
                        .attributes = VROT_ENDORSE_CERT_NV_ATTRIBUTES,
                        .dataSize = (UINT16)g_bytes_get_size(der),
                },
        };
        ESYS_TR nv = ESYS_TR_NONE;
        gboolean ok;

        ok = vrot_vtpm_check(Esys_NV_DefineSpace(vrot_vtpm_conn_esys(c), ESYS_TR_RH_PLATFORM, ESYS_TR_PASSWORD,
                                       ESYS_TR_NONE, ESYS_TR_NONE, NULL, &pub, &nv),
                   "TPM2_NV_DefineSpace", error) &&
             nv_write_all(c, nv, der, chunk, error) &&
             vrot_vtpm_check(Esys_NV_WriteLock(vrot_vtpm_conn_esys(c), ESYS_TR_RH_PLATFORM, nv, ESYS_TR_PASSWORD,
                                     ESYS_TR_NONE, ESYS_TR_NONE),
                   "TPM2_NV_WriteLock", error);
        if (nv != ESYS_TR_NONE)
                Esys_TR_Close(vrot_vtpm_conn_esys(c), &nv);
        return ok;
}

/* Microseconds since *@t; *@t becomes now. */
static gint64 lap(gint64 *t)
{
        gint64 now = g_get_monotonic_time(), d = now - *t;

        *t = now;
        return d;
}

/* FALSE, with "@doing the RSA EK: " before the error. */
static gboolean ek_failed(const char *doing, gsize i, GError **error)
{
        g_prefix_error(error, "%s the %s EK: ", doing, kinds[i].name);
        return FALSE;
}

static gboolean ek_asked(const VrotEndorseParams *params, gsize i)
{
        return params->ek_mask == 0 || (params->ek_mask & (1u << i));
}

/* The EKs asked for: created (transient), or read where a pre-made vTPM
 * holds them. */
static gboolean get_eks(VrotVtpmConn *c, const VrotEndorseParams *params, VrotEndorsement *e,
                        EkObjects *o, gint64 *t, GError **error)
{
        for (gsize i = 0; i < G_N_ELEMENTS(kinds); i++) {
                gboolean ok;

                if (!ek_asked(params, i))
                        continue;
                gboolean exists = params->premade || params->reissue;

                ok = exists ? read_ek(c, &kinds[i], &e->ek[i], &o->persistent[i], error)
                            : create_ek(c, &kinds[i], &o->transient[i], &e->ek[i], error);
                if (!ok)
                        return ek_failed(exists ? "reading" : "creating", i, error);
                e->step_usec[kinds[i].create_step] = lap(t);
        }
        return TRUE;
}

/* Persists the EKs asked for (unless pre-made) and stores their
 * certificates; a pre-made EK not asked for is evicted. */
static gboolean store_eks(VrotVtpmConn *c, const VrotEndorseParams *params,
                          VrotEndorsement *e, EkObjects *o, guint32 chunk, gint64 *t,
                          GError **error)
{
        for (gsize i = 0; i < G_N_ELEMENTS(kinds); i++) {
                if (!ek_asked(params, i)) {
                        if (params->premade &&
                            !evict_ek(c, &kinds[i], &o->persistent[i], error))
                                return ek_failed("evicting", i, error);
                        continue;
                }
                if ((!params->premade && !params->reissue &&
                     !vrot_vtpm_persist(c, &o->transient[i], kinds[i].handle, error)) ||
                    (params->reissue && !nv_undefine(c, kinds[i].nv_index, error)) ||
                    !nv_store(c, kinds[i].nv_index, e->ek[i].cert_der, chunk, error))
                        return ek_failed("storing", i, error);
                e->step_usec[kinds[i].store_step] = lap(t);
        }
        return TRUE;
}

/*
 * The first half of an endorsement: what the vTPM is (*@info), what it
 * holds (*@found: @asked, with the EKs a migrated vTPM has), and the EKs
 * (created transient, or read where it holds them).  *@t is the start of
 * the current step; @o's transient objects are flushed by the caller.
 */
static gboolean inspect(VrotVtpmConn *c, const VrotEndorseParams *asked, VrotEndorseParams *found,
                        TpmInfo *info, VrotEndorsement *e, EkObjects *o,
                        gint64 *t, GError **error)
{
        *found = *asked;
        if (!read_info(c, info, error) ||
            !(asked->reissue ? find_eks(c, &found->ek_mask, error)
              : asked->premade ? check_premade(c, error) : check_not_endorsed(c, error)))
                return FALSE;
        e->step_usec[VROT_ENDORSE_STEP_INSPECT] = lap(t);
        e->tpm_manufacturer = info->manufacturer;
        e->tpm_model = g_strdup(info->model);
        e->tpm_version = info->firmware_1;
        return get_eks(c, found, e, o, t, error);
}

/* The EKs asked for, certified. */
static gboolean certify_eks(const VrotX509Signer *signer, const VrotEndorseParams *params,
                            const TpmInfo *info, VrotEndorsement *e, gint64 *t, GError **error)
{
        for (gsize i = 0; i < G_N_ELEMENTS(kinds); i++) {
                if (!ek_asked(params, i))
                        continue;
                if (!certify_ek(signer, params, info, &e->ek[i], error))
                        return ek_failed("certifying", i, error);
                e->step_usec[kinds[i].cert_step] = lap(t);
        }
        return TRUE;
}

static gboolean endorse(VrotVtpmConn *c, const VrotX509Signer *signer, const VrotEndorseParams *asked,
                        VrotEndorsement *e, EkObjects *o,
                        gint64 *t, GError **error)
{
        VrotEndorseParams found;
        TpmInfo info;

        /* All certified before anything is stored: a failing signer
         * changes nothing in the vTPM (endorse.h). */
        return inspect(c, asked, &found, &info, e, o, t, error) &&
               certify_eks(signer, &found, &info, e, t, error) &&
               store_eks(c, &found, e, o, info.nv_buffer_max, t, error);
}

/* Both EKs created and persisted, no certificate: what the pool keeps. */
static gboolean make_eks(VrotVtpmConn *c, VrotEndorsement *e, EkObjects *o,
                         gint64 *t, GError **error)
{
        static const VrotEndorseParams all = { .ek_mask = 0 };

        if (!check_not_endorsed(c, error))
                return FALSE;
        e->step_usec[VROT_ENDORSE_STEP_INSPECT] = lap(t);
        if (!get_eks(c, &all, e, o, t, error))
                return FALSE;
        for (gsize i = 0; i < G_N_ELEMENTS(kinds); i++) {
                if (!vrot_vtpm_persist(c, &o->transient[i], kinds[i].handle, error))
                        return ek_failed("storing", i, error);
                e->step_usec[kinds[i].store_step] = lap(t);
        }
        return TRUE;
}

/* One session with the vTPM at @tcti: connect and start it, run @body
 * (NULL @signer: make_eks(), else endorse()), flush what is left
 * transient, close; every step timed. */
static VrotEndorsement *session(const gchar *tcti, const VrotX509Signer *signer,
                                const VrotEndorseParams *params, GError **error)
{
        g_autoptr(VrotEndorsement) e = g_new0(VrotEndorsement, 1);
        g_autoptr(VrotVtpmConn) c = NULL;
        EkObjects o = EK_OBJECTS_NONE;
        gint64 t = g_get_monotonic_time();
        gboolean ok;

        c = vrot_vtpm_conn_open(tcti, -1, error);
        ok = c && vrot_vtpm_startup(c, error);
        e->step_usec[VROT_ENDORSE_STEP_CONNECT] = lap(&t);
        ok = ok && (signer ? endorse(c, signer, params, e, &o, &t, error)
                           : make_eks(c, e, &o, &t, error));
        for (gsize i = 0; c && i < G_N_ELEMENTS(o.transient); i++)
                if (o.transient[i] != ESYS_TR_NONE)
                        (void)Esys_FlushContext(vrot_vtpm_conn_esys(c), o.transient[i]);
        g_clear_pointer(&c, vrot_vtpm_conn_free);
        e->step_usec[VROT_ENDORSE_STEP_CLOSE] = lap(&t);
        return ok ? g_steal_pointer(&e) : NULL;
}

gboolean vrot_endorse_vtpm(const gchar *tcti, const VrotX509Signer *signer,
                           const VrotEndorseParams *params, VrotEndorsement **ret,
                           GError **error)
{
        VrotEndorsement *e;

        g_return_val_if_fail(tcti != NULL && signer != NULL && params != NULL, FALSE);
        g_return_val_if_fail(ret != NULL, FALSE);
        g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

        e = session(tcti, signer, params, error);
        if (!e) {
                g_prefix_error(error, "endorsing the vTPM at \"%s\": ", tcti);
                return FALSE;
        }
        *ret = e;
        return TRUE;
}

gboolean vrot_endorse_make_eks(const gchar *tcti, VrotEndorsement **ret, GError **error)
{
        VrotEndorsement *e;

        g_return_val_if_fail(tcti != NULL && ret != NULL, FALSE);
        g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

        e = session(tcti, NULL, NULL, error);
        if (!e) {
                g_prefix_error(error, "making the EKs of the vTPM at \"%s\": ", tcti);
                return FALSE;
        }
        *ret = e;
        return TRUE;
}

/* ---- in two halves: a pool's warm vTPM ------------------------------------------------ */

#define SESSION_TIMEOUT_MS 5000

struct VrotEndorseSession {
        VrotVtpmConn *c;
        TpmInfo info;
        VrotEndorsement *e;             /* both EKs read, nothing certified */
        EkObjects o;                    /* ... and ESYS's objects of them */
};

VrotEndorseSession *vrot_endorse_session_open(const gchar *tcti, GError **error)
{
        static const VrotEndorseParams both = { .premade = TRUE };
        static const EkObjects none = EK_OBJECTS_NONE;
        g_autoptr(VrotEndorseSession) s = g_new0(VrotEndorseSession, 1);
        VrotEndorseParams found;
        gint64 t = g_get_monotonic_time();

        g_return_val_if_fail(tcti != NULL, NULL);
        s->e = g_new0(VrotEndorsement, 1);
        s->o = none;
        /* The main loop waits meanwhile: a hung vTPM must not hold it. */
        s->c = vrot_vtpm_conn_open(tcti, SESSION_TIMEOUT_MS, error);
        if (!s->c || !vrot_vtpm_startup(s->c, error) ||
            !inspect(s->c, &both, &found, &s->info, s->e, &s->o, &t, error)) {
                g_prefix_error(error, "inspecting the vTPM at \"%s\": ", tcti);
                return NULL;
        }
        return g_steal_pointer(&s);
}

static void ek_clear(VrotEndorsedEk *ek)
{
        g_clear_pointer(&ek->cert_der, g_bytes_unref);
        g_clear_pointer(&ek->public_key, EVP_PKEY_free);
        g_clear_pointer(&ek->tpm_public, g_bytes_unref);
        ek->handle = ek->nv_index = 0;
}

gboolean vrot_endorse_session_finish(VrotEndorseSession *s, const VrotX509Signer *signer,
                                     const VrotEndorseParams *params, VrotEndorsement **ret,
                                     GError **error)
{
        VrotEndorsement *e = s->e;
        gint64 t = g_get_monotonic_time();
        gboolean ok;

        g_return_val_if_fail(s->c && signer && params && params->premade && ret, FALSE);
        /* The steps of the open were spent before anybody waited. */
        memset(e->step_usec, 0, sizeof(e->step_usec));
        for (gsize i = 0; i < G_N_ELEMENTS(kinds); i++)
                if (!ek_asked(params, i))
                        ek_clear(&e->ek[i]);
        ok = certify_eks(signer, params, &s->info, e, &t, error);
        g_clear_pointer(&s->c, vrot_vtpm_conn_free);
        e->step_usec[VROT_ENDORSE_STEP_CLOSE] = lap(&t);
        if (!ok) {
                g_prefix_error(error, "endorsing a pre-made vTPM: ");
                return FALSE;
        }
        *ret = g_steal_pointer(&s->e);
        return TRUE;
}

void vrot_endorse_session_free(VrotEndorseSession *s)
{
        if (!s)
                return;
        vrot_vtpm_conn_free(s->c);
        vrot_endorsement_free(s->e);
        g_free(s);
}

/* ---- reading back ------------------------------------------------------------------ */

static gboolean bad_cert(TPM2_HANDLE index, const char *why, GError **error)
{
        g_set_error(error, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_BAD_CERT,
                    "NV index 0x%08x: %s", index, why);
        return FALSE;
}

/* All of NV index @nv, read with its own authValue (AUTHREAD), @chunk bytes at a time. */
static gboolean nv_read_all(VrotVtpmConn *c, TPM2_HANDLE index, ESYS_TR nv, guint32 chunk,
                            GBytes **ret, GError **error)
{
        const TPMA_NV expect = VROT_ENDORSE_CERT_NV_ATTRIBUTES | TPMA_NV_WRITTEN |
                               TPMA_NV_WRITELOCKED;
        g_autoptr(TPM2B_NV_PUBLIC) pub = NULL;
        g_autoptr(GByteArray) all = g_byte_array_new();
        TSS2_RC rc;

        rc = Esys_NV_ReadPublic(vrot_vtpm_conn_esys(c), nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub,
                                NULL);
        if (!vrot_vtpm_check(rc, "TPM2_NV_ReadPublic", error))
                return FALSE;
        if (pub->nvPublic.attributes != expect)
                return bad_cert(index, "not vrot's EK certificate index (other attributes)",
                                error);
        /* A UINT16 size is below VROT_X509_MAX_DER: no further bound is needed. */
        if (pub->nvPublic.dataSize == 0)
                return bad_cert(index, "the index is empty", error);
        while (all->len < pub->nvPublic.dataSize) {
                g_autoptr(TPM2B_MAX_NV_BUFFER) data = NULL;
                UINT16 n = (UINT16)MIN(chunk, pub->nvPublic.dataSize - all->len);

                rc = Esys_NV_Read(vrot_vtpm_conn_esys(c), nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                  n, (UINT16)all->len, &data);
                if (!vrot_vtpm_check(rc, "TPM2_NV_Read", error))
                        return FALSE;
                if (data->size != n)
                        return bad_cert(index, "TPM2_NV_Read returned a short chunk", error);
                g_byte_array_append(all, data->buffer, data->size);
        }
        *ret = g_byte_array_free_to_bytes(g_steal_pointer(&all));
        return TRUE;
}

static gboolean read_cert(VrotVtpmConn *c, TPM2_HANDLE index, guint32 chunk, X509 **ret,
                          GError **error)
{
        g_autoptr(GBytes) der = NULL;
        g_autoptr(GError) parse_error = NULL;
        ESYS_TR nv = ESYS_TR_NONE;
        gboolean exists = FALSE, ok;

        if (!vrot_vtpm_handle_exists(c, index, &exists, error))
                return FALSE;
        if (!exists) {
                g_set_error(error, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_NOT_ENDORSED,
                            "NV index 0x%08x is not defined: the vTPM is not endorsed", index);
                return FALSE;
        }
        ok = vrot_vtpm_check(Esys_TR_FromTPMPublic(vrot_vtpm_conn_esys(c), index, ESYS_TR_NONE, ESYS_TR_NONE,
                                         ESYS_TR_NONE, &nv),
                   "TPM2_NV_ReadPublic", error) &&
             nv_read_all(c, index, nv, chunk, &der, error);
        if (nv != ESYS_TR_NONE)
                Esys_TR_Close(vrot_vtpm_conn_esys(c), &nv);
        if (!ok)
                return FALSE;
        *ret = vrot_x509_from_der(g_bytes_get_data(der, NULL), g_bytes_get_size(der),
                                  &parse_error);
        return *ret ? TRUE : bad_cert(index, parse_error->message, error);
}

static gboolean read_both(VrotVtpmConn *c, X509 **rsa, X509 **ecc, GError **error)
{
        TpmInfo info;

        return read_info(c, &info, error) &&
               (!rsa || read_cert(c, VROT_ENDORSE_RSA_CERT_INDEX, info.nv_buffer_max, rsa,
                                  error)) &&
               (!ecc || read_cert(c, VROT_ENDORSE_ECC_CERT_INDEX, info.nv_buffer_max, ecc,
                                  error));
}

gboolean vrot_endorse_read_certs(const gchar *tcti, X509 **ret_rsa_cert, X509 **ret_ecc_cert,
                                 GError **error)
{
        g_autoptr(X509) rsa = NULL;
        g_autoptr(X509) ecc = NULL;
        g_autoptr(VrotVtpmConn) c = NULL;
        gboolean ok;

        g_return_val_if_fail(tcti != NULL, FALSE);
        g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

        c = vrot_vtpm_conn_open(tcti, -1, error);
        ok = c && read_both(c, ret_rsa_cert ? &rsa : NULL, ret_ecc_cert ? &ecc : NULL, error);
        g_clear_pointer(&c, vrot_vtpm_conn_free);
        if (!ok) {
                g_prefix_error(error, "reading the EK certificates of the vTPM at \"%s\": ",
                               tcti);
                return FALSE;
        }
        if (ret_rsa_cert)
                *ret_rsa_cert = g_steal_pointer(&rsa);
        if (ret_ecc_cert)
                *ret_ecc_cert = g_steal_pointer(&ecc);
        return TRUE;
}

/* ---- freeing --------------------------------------------------------------------- */

void vrot_endorsement_free(VrotEndorsement *e)
{
        if (!e)
                return;
        for (gsize i = 0; i < G_N_ELEMENTS(e->ek); i++)
                ek_clear(&e->ek[i]);
        g_free(e->tpm_model);
        g_free(e);
}
