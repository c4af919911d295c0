/* SPDX-License-Identifier: BSD-3-Clause */
#include <signal.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>

#include "autoptr.h"
#include "hosttpm-int.h"
#include "tctisock.h"
#include "tpmpub.h"

G_DEFINE_QUARK(vrot-host-tpm-error-quark, vrot_host_tpm_error)

#define COUNTING_TCTI_MAGIC 0x76726f74636e7400ull  /* "vrotcnt" */
#define NV_BUFFER_FALLBACK 512

/* ---- templates ------------------------------------------------------------ */

/* TCG TPM v2.0 Provisioning Guidance 7.5.1: the ECC NIST P-256 SRK. */
static const TPM2B_PUBLIC srk_template = {
        .publicArea = {
                .type = TPM2_ALG_ECC,
                .nameAlg = TPM2_ALG_SHA256,
                .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                        TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                        TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT,
                .parameters.eccDetail = {
                        .symmetric = { .algorithm = TPM2_ALG_AES, .keyBits.aes = 128,
                                       .mode.aes = TPM2_ALG_CFB },
                        .scheme.scheme = TPM2_ALG_NULL,
                        .curveID = TPM2_ECC_NIST_P256,
                        .kdf.scheme = TPM2_ALG_NULL,
                },
                .unique.ecc = { .x.size = 32, .y.size = 32 },
        },
};

/*
 * The host endorsement CA key (DESIGN "Trust chain").  Not restricted: it
 * signs digests of X.509 TBSCertificates, which the TPM did not hash.  The
 * scheme is fixed so that the key signs ECDSA-SHA256 and nothing else.
 * noDA: its authValue is empty, so dictionary-attack protection guards
 * nothing, while a lockout caused by another program's failed
 * authorisations would stop every EK endorsement on the host.  (It also
 * spares libtpms's TPM_RC_RETRY on the first use of a DA-protected key
 * after each start.)
 */
static const TPM2B_PUBLIC ca_template = {
        .publicArea = {
                .type = TPM2_ALG_ECC,
                .nameAlg = TPM2_ALG_SHA256,
                .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                        TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                        TPMA_OBJECT_NODA | TPMA_OBJECT_SIGN_ENCRYPT,
                .parameters.eccDetail = {
                        .symmetric.algorithm = TPM2_ALG_NULL,
                        .scheme = { .scheme = TPM2_ALG_ECDSA,
                                    .details.ecdsa.hashAlg = TPM2_ALG_SHA256 },
                        .curveID = TPM2_ECC_NIST_P256,
                        .kdf.scheme = TPM2_ALG_NULL,
                },
        },
};

/* The rollback counter: owner-written, readable with its (empty) authValue. */
static const TPMS_NV_PUBLIC counter_public = {
        .nvIndex = VROT_HOST_TPM_COUNTER_INDEX,
        .nameAlg = TPM2_ALG_SHA256,
        .attributes = (TPM2_NT_COUNTER << TPMA_NV_TPM2_NT_SHIFT) | TPMA_NV_OWNERWRITE |
                TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD | TPMA_NV_NO_DA,
        .dataSize = 8,
};

const TPM2B_SENSITIVE_CREATE hosttpm_empty_sensitive = { 0 };
const TPM2B_DATA hosttpm_empty_data = { 0 };
const TPML_PCR_SELECTION hosttpm_no_pcrs = { 0 };

/* ---- errors ------------------------------------------------------------------ */

gboolean vrot_host_tpm_check(TSS2_RC rc, const char *what, GError **error)
{
        TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;
        VrotHostTpmError code = VROT_HOST_TPM_ERROR_FAILED;

        if (rc == TSS2_RC_SUCCESS)
                return TRUE;
        if (layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER)
                code = VROT_HOST_TPM_ERROR_TPM;
        else if (layer == TSS2_TCTI_RC_LAYER || layer == TSS2_RESMGR_RC_LAYER)
                code = VROT_HOST_TPM_ERROR_IO;
        else if (layer == TSS2_MU_RC_LAYER)
                code = VROT_HOST_TPM_ERROR_INVALID;
        g_set_error(error, VROT_HOST_TPM_ERROR, code, "%s: %s (0x%x)", what,
                    Tss2_RC_Decode(rc), (unsigned)rc);
        return FALSE;
}

/* Is @rc the TPM's @code (format-one codes: whichever handle/parameter)? */
static gboolean rc_is(TSS2_RC rc, TPM2_RC code)
{
        if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER)
                return FALSE;
        if (rc & TPM2_RC_FMT1)
                return (rc & (TPM2_RC_FMT1 | 0x3f)) == code;
        return rc == code;
}

/* The one place where OpenSSL's error queue becomes GError. */
static gboolean openssl_failed(const char *what, GError **error)
{
        unsigned long e = ERR_peek_last_error();
        const char *reason = e ? ERR_reason_error_string(e) : NULL;

        g_set_error(error, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_FAILED, "%s: %s", what,
                    reason ? reason : "OpenSSL failed");
        ERR_clear_error();
        return FALSE;
}

/* ---- the counting TCTI --------------------------------------------------------- */

static CountingTcti *counting(TSS2_TCTI_CONTEXT *ctx)
{
        return (CountingTcti *)ctx;
}

/*
 * ESYS cannot recover from a broken transport: after one, every ESYS call
 * on the context fails with TSS2_ESYS_RC_BAD_SEQUENCE.  Remember it, so
 * that later calls say what happened (hosttpm_usable()).
 */
static TSS2_RC note_failure(CountingTcti *t, TSS2_RC rc)
{
        if ((rc & TSS2_RC_LAYER_MASK) == TSS2_TCTI_RC_LAYER && rc != TSS2_TCTI_RC_TRY_AGAIN &&
            !t->lost)
                t->lost = rc;
        return rc;
}

/*
 * Counts, then forwards.  A socket TCTI (swtpm, mssim) writes to a peer
 * that may have died: SIGPIPE is blocked for this thread meanwhile and a
 * SIGPIPE raised by the write is consumed, so the caller gets
 * TSS2_TCTI_RC_IO_ERROR instead of a dead process, whatever the process's
 * SIGPIPE disposition.
 */
static TSS2_RC counting_transmit(TSS2_TCTI_CONTEXT *ctx, size_t size, const uint8_t *command)
{
        static const struct timespec no_wait;
        sigset_t pipe_set, old, pending;
        gboolean was_pending;
        TSS2_RC rc;

        counting(ctx)->count++;
        counting(ctx)->sent_at = g_get_monotonic_time();
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
        was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
        rc = note_failure(counting(ctx), Tss2_Tcti_Transmit(counting(ctx)->inner, size, command));
        if (!was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE))
                (void)sigtimedwait(&pipe_set, NULL, &no_wait);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return rc;
}

static TSS2_RC counting_receive(TSS2_TCTI_CONTEXT *ctx, size_t *size, uint8_t *response,
                                int32_t timeout)
{
        CountingTcti *t = counting(ctx);
        TSS2_RC rc = Tss2_Tcti_Receive(t->inner, size, response, timeout);

        /* ESYS asks for the size first (response NULL), then the bytes. */
        if (rc == TSS2_RC_SUCCESS && response && t->sent_at) {
                t->usec += (guint64)(g_get_monotonic_time() - t->sent_at);
                t->sent_at = 0;
        }
        return note_failure(t, rc);
}

static void counting_finalize(TSS2_TCTI_CONTEXT *ctx)
{
        (void)ctx;      /* the inner TCTI is vrot_host_tpm_free()'s to close */
}

static TSS2_RC counting_cancel(TSS2_TCTI_CONTEXT *ctx)
{
        return Tss2_Tcti_Cancel(counting(ctx)->inner);
}

static TSS2_RC counting_poll_handles(TSS2_TCTI_CONTEXT *ctx, TSS2_TCTI_POLL_HANDLE *handles,
                                     size_t *num)
{
        return Tss2_Tcti_GetPollHandles(counting(ctx)->inner, handles, num);
}

static TSS2_RC counting_set_locality(TSS2_TCTI_CONTEXT *ctx, uint8_t locality)
{
        return Tss2_Tcti_SetLocality(counting(ctx)->inner, locality);
}

static TSS2_RC counting_make_sticky(TSS2_TCTI_CONTEXT *ctx, TPM2_HANDLE *handle, uint8_t sticky)
{
        return Tss2_Tcti_MakeSticky(counting(ctx)->inner, handle, sticky);
}

static void counting_init(CountingTcti *t, TSS2_TCTI_CONTEXT *inner)
{
        t->common = (TSS2_TCTI_CONTEXT_COMMON_V2) {
                .v1 = {
                        .magic = COUNTING_TCTI_MAGIC,
                        .version = 2,
                        .transmit = counting_transmit,
                        .receive = counting_receive,
                        .finalize = counting_finalize,
                        .cancel = counting_cancel,
                        .getPollHandles = counting_poll_handles,
                        .setLocality = counting_set_locality,
                },
                .makeSticky = counting_make_sticky,
        };
        t->inner = inner;
        t->count = 0;
}

/* ---- conversions ---------------------------------------------------------------- */

/* Same key type and parameters as @tmpl (unique aside: that is the key). */
static gboolean matches_template(const TPMT_PUBLIC *found, const TPMT_PUBLIC *tmpl)
{
        guint8 a[sizeof(TPMT_PUBLIC)], b[sizeof(TPMT_PUBLIC)];
        size_t alen = 0, blen = 0;
        TPMT_PUBLIC f = *found;

        f.unique = tmpl->unique;
        if (Tss2_MU_TPMT_PUBLIC_Marshal(&f, a, sizeof(a), &alen) != TSS2_RC_SUCCESS ||
            Tss2_MU_TPMT_PUBLIC_Marshal(tmpl, b, sizeof(b), &blen) != TSS2_RC_SUCCESS)
                return FALSE;
        return alen == blen && memcmp(a, b, alen) == 0;
}

/* The public key of an ECC P-256 TPM object (the CA key, the AK). */
static EVP_PKEY *pkey_from_public(const TPMT_PUBLIC *pub, GError **error)
{
        if (pub->type != TPM2_ALG_ECC || pub->parameters.eccDetail.curveID != TPM2_ECC_NIST_P256) {
                g_set_error(error, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_FAILED,
                            "not an ECC NIST P-256 key");
                return NULL;
        }
        return vrot_tpmpub_to_pkey(pub, error);
}

/* Name of an NV index: nameAlg || H(TPMS_NV_PUBLIC) (TPM2 Part 1, 16). */
static gboolean nv_name(const TPMS_NV_PUBLIC *pub, TPM2B_NAME *ret)
{
        guint8 buf[sizeof(TPMS_NV_PUBLIC)];
        size_t off = 0;
        unsigned int mdlen = 0;

        if (Tss2_MU_TPMS_NV_PUBLIC_Marshal(pub, buf, sizeof(buf), &off) != TSS2_RC_SUCCESS)
                return FALSE;
        ret->name[0] = TPM2_ALG_SHA256 >> 8;
        ret->name[1] = TPM2_ALG_SHA256 & 0xff;
        if (EVP_Digest(buf, off, ret->name + 2, &mdlen, EVP_sha256(), NULL) != 1)
                return FALSE;
        ret->size = (UINT16)(2 + mdlen);
        return TRUE;
}

/* ---- open / close ---------------------------------------------------------------- */

VrotHostTpm *vrot_host_tpm_open(const char *tcti, GError **error)
{
        g_autoptr(VrotHostTpm) self = NULL;
        TSS2_TCTI_CONTEXT *inner = NULL;
        TSS2_RC rc;

        g_return_val_if_fail(tcti != NULL, NULL);
        g_return_val_if_fail(error == NULL || *error == NULL, NULL);

        /* "swtpm:path=" (--dev's simulated TPM) keeps one connection: vrotd
         * is the only process that talks to the host TPM (tctisock.h). */
        rc = vrot_tcti_open(tcti, &inner);
        if (!vrot_host_tpm_check(rc, "opening the TCTI", error)) {
                g_prefix_error(error, "host TPM \"%s\": ", tcti);
                return NULL;
        }
        self = g_new0(VrotHostTpm, 1);
        self->srk = self->ca_key = self->transport_key = self->counter = ESYS_TR_NONE;
        counting_init(&self->tcti, inner);
        rc = Esys_Initialize(&self->esys, (TSS2_TCTI_CONTEXT *)&self->tcti, NULL);
        if (!vrot_host_tpm_check(rc, "initialising ESYS", error)) {
                self->esys = NULL;
                g_prefix_error(error, "host TPM \"%s\": ", tcti);
                return NULL;
        }
        /* The kernel, firmware or swtpm's startup-clear usually did it. */
        rc = Esys_Startup(self->esys, TPM2_SU_CLEAR);
        if (!rc_is(rc, TPM2_RC_INITIALIZE) && !vrot_host_tpm_check(rc, "TPM2_Startup", error)) {
                g_prefix_error(error, "host TPM \"%s\": ", tcti);
                return NULL;
        }
        return g_steal_pointer(&self);
}

void vrot_host_tpm_free(VrotHostTpm *self)
{
        if (!self)
                return;
        /* Esys_Finalize sends nothing: persistent objects stay in the TPM. */
        if (self->esys)
                Esys_Finalize(&self->esys);
        vrot_tcti_close(&self->tcti.inner);
        g_free(self);
}

ESYS_CONTEXT *vrot_host_tpm_esys(VrotHostTpm *self)
{
        return self->esys;
}

guint64 vrot_host_tpm_command_count(const VrotHostTpm *self)
{
        return self->tcti.count;
}

guint64 vrot_host_tpm_command_usec(const VrotHostTpm *self)
{
        return self->tcti.usec;
}

ESYS_TR vrot_host_tpm_srk(VrotHostTpm *self)
{
        g_return_val_if_fail(self->provisioned, ESYS_TR_NONE);
        return self->srk;
}

/* FALSE with VROT_HOST_TPM_ERROR_IO once the connection to the TPM broke. */
gboolean hosttpm_usable(VrotHostTpm *self, GError **error)
{
        if (!self->tcti.lost)
                return TRUE;
        g_set_error(error, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_IO,
                    "the connection to the host TPM broke earlier (%s); open it again",
                    Tss2_RC_Decode(self->tcti.lost));
        return FALSE;
}

/* ---- provisioning ------------------------------------------------------------------ */

/* Flushes a transient object or session; ESYS_TR_NONE afterwards. */
TSS2_RC hosttpm_flush(VrotHostTpm *self, ESYS_TR *h)
{
        TSS2_RC rc = TSS2_RC_SUCCESS;

        if (*h != ESYS_TR_NONE)
                rc = Esys_FlushContext(self->esys, *h);
        *h = ESYS_TR_NONE;
        return rc;
}

/*
 * Looks up persistent @handle.  Found: *@ret and, if asked, its public
 * area (one ReadPublic more).  Absent: TRUE with *@ret ESYS_TR_NONE.
 */
gboolean hosttpm_find_persistent(VrotHostTpm *self, TPM2_HANDLE handle, ESYS_TR *ret,
                                 TPM2B_PUBLIC **ret_public, GError **error)
{
        ESYS_TR tr = ESYS_TR_NONE;
        TSS2_RC rc;

        rc = Esys_TR_FromTPMPublic(self->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE,
                                   ESYS_TR_NONE, &tr);
        if (rc_is(rc, TPM2_RC_HANDLE)) {
                *ret = ESYS_TR_NONE;
                return TRUE;
        }
        if (rc == TSS2_RC_SUCCESS && ret_public) {
                rc = Esys_ReadPublic(self->esys, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                     ret_public, NULL, NULL);
                if (rc != TSS2_RC_SUCCESS)
                        Esys_TR_Close(self->esys, &tr);
        }
        if (!vrot_host_tpm_check(rc, "TPM2_ReadPublic", error)) {
                g_prefix_error(error, "handle 0x%08x: ", handle);
                return FALSE;
        }
        *ret = tr;
        return TRUE;
}

static gboolean expect_template(const TPM2B_PUBLIC *found, const TPM2B_PUBLIC *tmpl,
                                TPM2_HANDLE handle, const char *what, GError **error)
{
        if (matches_template(&found->publicArea, &tmpl->publicArea))
                return TRUE;
        g_set_error(error, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_CONFLICT,
                    "handle 0x%08x holds a key other than vrot's %s; vrot does not evict it "
                    "(remove it with tpm2_evictcontrol if it is unused)", handle, what);
        return FALSE;
}

/* EvictControl of @transient to @handle, then flushes @transient. */
static gboolean persist(VrotHostTpm *self, ESYS_TR *transient, TPM2_HANDLE handle,
                        ESYS_TR *ret, GError **error)
{
        TSS2_RC rc, frc;

        rc = Esys_EvictControl(self->esys, ESYS_TR_RH_OWNER, *transient, ESYS_TR_PASSWORD,
                               ESYS_TR_NONE, ESYS_TR_NONE, handle, ret);
        frc = hosttpm_flush(self, transient);
        if (!vrot_host_tpm_check(rc, "TPM2_EvictControl", error) ||
            !vrot_host_tpm_check(frc, "TPM2_FlushContext", error)) {
                g_prefix_error(error, "persisting at 0x%08x: ", handle);
                return FALSE;
        }
        return TRUE;
}

static gboolean ensure_srk(VrotHostTpm *self, VrotHostTpmCreated *created, GError **error)
{
        g_autoptr(TPM2B_PUBLIC) pub = NULL;
        ESYS_TR transient = ESYS_TR_NONE;
        TSS2_RC rc;

        if (!hosttpm_find_persistent(self, VROT_HOST_TPM_SRK_HANDLE, &self->srk, &pub, error))
                return FALSE;
        if (self->srk != ESYS_TR_NONE)
                return expect_template(pub, &srk_template, VROT_HOST_TPM_SRK_HANDLE,
                                       "storage primary key (TCG ECC P-256 SRK)", error);
        rc = Esys_CreatePrimary(self->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                ESYS_TR_NONE, &hosttpm_empty_sensitive, &srk_template,
                                &hosttpm_empty_data, &hosttpm_no_pcrs, &transient, NULL, NULL,
                                NULL, NULL);
        if (!vrot_host_tpm_check(rc, "creating the storage primary key: TPM2_CreatePrimary",
                                 error) ||
            !persist(self, &transient, VROT_HOST_TPM_SRK_HANDLE, &self->srk, error))
                return FALSE;
        *created |= VROT_HOST_TPM_CREATED_SRK;
        return TRUE;
}

/* A signing key under the SRK at @handle (found, or created and persisted):
 * the CA key, the transport key.  *@ret_created: whether it was made now. */
static gboolean ensure_key(VrotHostTpm *self, TPM2_HANDLE handle, const char *what,
                           ESYS_TR *ret_key, TPM2B_PUBLIC *ret_public, gboolean *ret_created,
                           GError **error)
{
        g_autoptr(TPM2B_PUBLIC) pub = NULL;
        g_autoptr(TPM2B_PRIVATE) priv = NULL;
        g_autofree gchar *creating = g_strdup_printf("creating the %s: TPM2_Create", what);
        g_autofree gchar *loading = g_strdup_printf("loading the %s: TPM2_Load", what);
        ESYS_TR loaded = ESYS_TR_NONE;
        TSS2_RC rc;

        *ret_created = FALSE;
        if (!hosttpm_find_persistent(self, handle, ret_key, &pub, error))
                return FALSE;
        if (*ret_key != ESYS_TR_NONE) {
                if (!expect_template(pub, &ca_template, handle, what, error))
                        return FALSE;
                *ret_public = *pub;
                return TRUE;
        }
        rc = Esys_Create(self->esys, self->srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                         &hosttpm_empty_sensitive, &ca_template, &hosttpm_empty_data,
                         &hosttpm_no_pcrs, &priv, &pub, NULL, NULL, NULL);
        if (!vrot_host_tpm_check(rc, creating, error))
                return FALSE;
        rc = Esys_Load(self->esys, self->srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                       priv, pub, &loaded);
        if (!vrot_host_tpm_check(rc, loading, error) ||
            !persist(self, &loaded, handle, ret_key, error))
                return FALSE;
        *ret_public = *pub;
        *ret_created = TRUE;
        return TRUE;
}

static gboolean ensure_ca_key(VrotHostTpm *self, VrotHostTpmCreated *created, GError **error)
{
        gboolean made = FALSE;

        if (!ensure_key(self, VROT_HOST_TPM_CA_KEY_HANDLE, "endorsement CA key", &self->ca_key,
                        &self->ca_public, &made, error))
                return FALSE;
        if (made)
                *created |= VROT_HOST_TPM_CREATED_CA_KEY;
        return TRUE;
}

static gboolean counter_increment(VrotHostTpm *self, GError **error)
{
        TSS2_RC rc = Esys_NV_Increment(self->esys, ESYS_TR_RH_OWNER, self->counter,
                                       ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE);

        return vrot_host_tpm_check(rc, "TPM2_NV_Increment", error);
}

/*
 * The counter's name is known in advance (an NV index has no random part),
 * so comparing names checks type, attributes and size without another
 * NV_ReadPublic.  Defined but never incremented (a crash between the two
 * commands): it is incremented now, which a counter tolerates.
 */
static gboolean ensure_counter(VrotHostTpm *self, VrotHostTpmCreated *created, GError **error)
{
        TPMS_NV_PUBLIC written = counter_public;
        TPM2B_NV_PUBLIC define = { .nvPublic = counter_public };
        TPM2B_NAME expect = { 0 }, expect_unwritten = { 0 };
        g_autoptr(TPM2B_NAME) name = NULL;
        TSS2_RC rc;

        written.attributes |= TPMA_NV_WRITTEN;
        if (!nv_name(&written, &expect) || !nv_name(&counter_public, &expect_unwritten))
                return openssl_failed("computing the NV counter's name", error);
        if (!hosttpm_find_persistent(self, VROT_HOST_TPM_COUNTER_INDEX, &self->counter, NULL, error))
                return FALSE;
        if (self->counter == ESYS_TR_NONE) {
                rc = Esys_NV_DefineSpace(self->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD,
                                         ESYS_TR_NONE, ESYS_TR_NONE, NULL, &define,
                                         &self->counter);
                if (!vrot_host_tpm_check(rc, "defining the NV counter: TPM2_NV_DefineSpace",
                                         error))
                        return FALSE;
                *created |= VROT_HOST_TPM_CREATED_COUNTER;
                return counter_increment(self, error);
        }
        rc = Esys_TR_GetName(self->esys, self->counter, &name);
        if (!vrot_host_tpm_check(rc, "the NV counter's name", error))
                return FALSE;
        if (name->size == expect.size && memcmp(name->name, expect.name, expect.size) == 0)
                return TRUE;
        if (name->size == expect_unwritten.size &&
            memcmp(name->name, expect_unwritten.name, expect_unwritten.size) == 0)
                return counter_increment(self, error);
        g_set_error(error, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_CONFLICT,
                    "NV index 0x%08x is not vrot's counter (other type, attributes or size); "
                    "vrot does not undefine it", VROT_HOST_TPM_COUNTER_INDEX);
        return FALSE;
}

/* Drops the ESYS_TRs of a failed provisioning (no command), so it can be retried. */
static void forget_objects(VrotHostTpm *self)
{
        ESYS_TR *trs[] = { &self->srk, &self->ca_key, &self->transport_key, &self->counter };

        for (gsize i = 0; i < G_N_ELEMENTS(trs); i++) {
                if (*trs[i] != ESYS_TR_NONE)
                        Esys_TR_Close(self->esys, trs[i]);
                *trs[i] = ESYS_TR_NONE;
        }
}

gboolean vrot_host_tpm_provision(VrotHostTpm *self, VrotHostTpmCreated *ret_created,
                                 GError **error)
{
        VrotHostTpmCreated created = 0;

        g_return_val_if_fail(self != NULL, FALSE);
        g_return_val_if_fail(!self->provisioned, FALSE);

        if (!hosttpm_usable(self, error))
                return FALSE;
        if (!ensure_srk(self, &created, error) || !ensure_ca_key(self, &created, error) ||
            !ensure_counter(self, &created, error)) {
                forget_objects(self);
                g_prefix_error(error, "provisioning the host TPM: ");
                return FALSE;
        }
        self->provisioned = TRUE;
        if (ret_created)
                *ret_created = created;
        return TRUE;
}

/* ---- the CA key ---------------------------------------------------------------------- */

EVP_PKEY *vrot_host_tpm_ca_public_key(VrotHostTpm *self, GError **error)
{
        g_return_val_if_fail(self->provisioned, NULL);
        return pkey_from_public(&self->ca_public.publicArea, error);
}

/* TPM2_Sign of a SHA-256 digest with @key, ECDSA; the signature as DER. */
static gboolean sign_with(VrotHostTpm *self, ESYS_TR key, const char *what,
                          const guint8 digest[32], GBytes **ret_der_ecdsa_sig, GError **error)
{
        static const TPMT_SIG_SCHEME scheme = {
                .scheme = TPM2_ALG_ECDSA, .details.ecdsa.hashAlg = TPM2_ALG_SHA256,
        };
        static const TPMT_TK_HASHCHECK no_ticket = {
                .tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL,
        };
        TPM2B_DIGEST d = { .size = 32 };
        g_autoptr(TPMT_SIGNATURE) sig = NULL;
        TSS2_RC rc;

        g_return_val_if_fail(digest != NULL && ret_der_ecdsa_sig != NULL, FALSE);
        if (!hosttpm_usable(self, error))
                return FALSE;
        memcpy(d.buffer, digest, 32);
        rc = Esys_Sign(self->esys, key, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &d,
                       &scheme, &no_ticket, &sig);
        if (!vrot_host_tpm_check(rc, what, error))
                return FALSE;
        return vrot_tpmpub_signature_to_der(sig, ret_der_ecdsa_sig, error);
}

gboolean vrot_host_tpm_sign_digest(VrotHostTpm *self, const guint8 digest[32],
                                   GBytes **ret_der_ecdsa_sig, GError **error)
{
        g_return_val_if_fail(self->provisioned, FALSE);
        return sign_with(self, self->ca_key, "signing with the endorsement CA key: TPM2_Sign",
                         digest, ret_der_ecdsa_sig, error);
}

EVP_PKEY *vrot_host_tpm_transport_key(VrotHostTpm *self, GError **error)
{
        gboolean made = FALSE;

        g_return_val_if_fail(self->provisioned, NULL);
        if (self->transport_key == ESYS_TR_NONE &&
            (!hosttpm_usable(self, error) ||
             !ensure_key(self, VROT_HOST_TPM_TRANSPORT_KEY_HANDLE, "transport key",
                         &self->transport_key, &self->transport_public, &made, error)))
                return NULL;
        if (made)
                g_message("host TPM: made the migration transport key at 0x%08x",
                          VROT_HOST_TPM_TRANSPORT_KEY_HANDLE);
        return pkey_from_public(&self->transport_public.publicArea, error);
}

gboolean vrot_host_tpm_transport_sign(VrotHostTpm *self, const guint8 digest[32],
                                      GBytes **ret_der_ecdsa_sig, GError **error)
{
        g_return_val_if_fail(self->transport_key != ESYS_TR_NONE, FALSE);
        return sign_with(self, self->transport_key, "signing with the transport key: TPM2_Sign",
                         digest, ret_der_ecdsa_sig, error);
}

/* ---- NV ---------------------------------------------------------------------------------- */

gboolean vrot_host_tpm_counter_read(VrotHostTpm *self, guint64 *ret_value, GError **error)
{
        g_autoptr(TPM2B_MAX_NV_BUFFER) data = NULL;
        guint64 v = 0;
        TSS2_RC rc;

        g_return_val_if_fail(self->provisioned, FALSE);
        g_return_val_if_fail(ret_value != NULL, FALSE);

        if (!hosttpm_usable(self, error))
                return FALSE;
        rc = Esys_NV_Read(self->esys, self->counter, self->counter, ESYS_TR_PASSWORD,
                          ESYS_TR_NONE, ESYS_TR_NONE, 8, 0, &data);
        if (!vrot_host_tpm_check(rc, "reading the NV counter: TPM2_NV_Read", error))
                return FALSE;
        if (data->size != 8) {
                g_set_error(error, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_FAILED,
                            "reading the NV counter: %u bytes instead of 8", data->size);
                return FALSE;
        }
        for (int i = 0; i < 8; i++)
                v = v << 8 | data->buffer[i];
        *ret_value = v;
        return TRUE;
}

gboolean vrot_host_tpm_counter_increment(VrotHostTpm *self, guint64 *ret_value, GError **error)
{
        g_return_val_if_fail(self->provisioned, FALSE);

        if (!hosttpm_usable(self, error) || !counter_increment(self, error))
                return FALSE;
        return ret_value ? vrot_host_tpm_counter_read(self, ret_value, error) : TRUE;
}

/* TPM_PT_NV_BUFFER_MAX, asked once per context. */
static guint32 nv_chunk(VrotHostTpm *self, GError **error)
{
        g_autoptr(TPMS_CAPABILITY_DATA) cap = NULL;
        const TPML_TAGGED_TPM_PROPERTY *props;
        TSS2_RC rc;

        if (self->nv_buffer_max)
                return self->nv_buffer_max;
        rc = Esys_GetCapability(self->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                TPM2_CAP_TPM_PROPERTIES, TPM2_PT_NV_BUFFER_MAX, 1, NULL, &cap);
        if (!vrot_host_tpm_check(rc, "TPM2_GetCapability(TPM_PT_NV_BUFFER_MAX)", error))
                return 0;
        props = &cap->data.tpmProperties;
        self->nv_buffer_max = props->count == 1 &&
                props->tpmProperty[0].property == TPM2_PT_NV_BUFFER_MAX &&
                props->tpmProperty[0].value > 0 ?
                MIN(props->tpmProperty[0].value, (guint32)TPM2_MAX_NV_BUFFER_SIZE) :
                NV_BUFFER_FALLBACK;
        return self->nv_buffer_max;
}

/* Reads all of NV index @nv (its authValue, or the owner's if it has no AUTHREAD). */
static gboolean nv_read_all(VrotHostTpm *self, ESYS_TR nv, GBytes **ret, GError **error)
{
        g_autoptr(TPM2B_NV_PUBLIC) pub = NULL;
        g_autoptr(GByteArray) all = g_byte_array_new();
        ESYS_TR auth;
        guint32 chunk;
        TSS2_RC rc;

        rc = Esys_NV_ReadPublic(self->esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                &pub, NULL);
        if (!vrot_host_tpm_check(rc, "TPM2_NV_ReadPublic", error))
                return FALSE;
        chunk = nv_chunk(self, error);
        if (!chunk)
                return FALSE;
        auth = (pub->nvPublic.attributes & TPMA_NV_AUTHREAD) ? nv : ESYS_TR_RH_OWNER;
        while (all->len < pub->nvPublic.dataSize) {
                g_autoptr(TPM2B_MAX_NV_BUFFER) data = NULL;
                UINT16 n = (UINT16)MIN(chunk, pub->nvPublic.dataSize - all->len);

                rc = Esys_NV_Read(self->esys, auth, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                  ESYS_TR_NONE, n, (UINT16)all->len, &data);
                if (!vrot_host_tpm_check(rc, "TPM2_NV_Read", error))
                        return FALSE;
                if (data->size != n) {
                        g_set_error(error, VROT_HOST_TPM_ERROR, VROT_HOST_TPM_ERROR_FAILED,
                                    "TPM2_NV_Read: %u bytes instead of %u", data->size, n);
                        return FALSE;
                }
                g_byte_array_append(all, data->buffer, data->size);
        }
        *ret = g_byte_array_free_to_bytes(g_steal_pointer(&all));
        return TRUE;
}

gboolean vrot_host_tpm_read_ek_cert(VrotHostTpm *self, GBytes **ret_der, GError **error)
{
        ESYS_TR nv = ESYS_TR_NONE;
        gboolean ok;
        TSS2_RC rc;

        g_return_val_if_fail(ret_der != NULL, FALSE);

        if (!hosttpm_usable(self, error))
                return FALSE;
        rc = Esys_TR_FromTPMPublic(self->esys, VROT_HOST_TPM_EK_CERT_INDEX, ESYS_TR_NONE,
                                   ESYS_TR_NONE, ESYS_TR_NONE, &nv);
        ok = vrot_host_tpm_check(rc, "TPM2_NV_ReadPublic", error) &&
             nv_read_all(self, nv, ret_der, error);
        if (nv != ESYS_TR_NONE)
                Esys_TR_Close(self->esys, &nv);
        if (!ok)
                g_prefix_error(error, "reading the EK certificate (NV 0x%08x): ",
                               VROT_HOST_TPM_EK_CERT_INDEX);
        return ok;
}
