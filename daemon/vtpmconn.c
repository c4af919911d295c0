/* SPDX-License-Identifier: BSD-3-Clause */
#include <signal.h>
#include <time.h>

#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "sigpipe.h"
#include "tctisock.h"
#include "vtpmconn.h"

G_DEFINE_QUARK(vrot-vtpm-error-quark, vrot_vtpm_error)

G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPMS_CAPABILITY_DATA, Esys_Free)

struct VrotVtpmConn {
        TSS2_TCTI_CONTEXT *tcti;
        ESYS_CONTEXT *esys;
        VrotSigpipeGuard pipe;          /* SIGPIPE blocked while open (lib/sigpipe.h) ... */
        gboolean guarded;               /* ... unless the TCTI is tctisock.h's */
};

gboolean vrot_vtpm_check(TSS2_RC rc, const char *what, GError **error)
{
        TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;
        VrotVtpmError code = VROT_VTPM_ERROR_FAILED;

        if (rc == TSS2_RC_SUCCESS)
                return TRUE;
        if (layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER)
                code = VROT_VTPM_ERROR_TPM;
        else if (layer == TSS2_TCTI_RC_LAYER || layer == TSS2_RESMGR_RC_LAYER ||
                 (rc & ~TSS2_RC_LAYER_MASK) == TSS2_BASE_RC_TRY_AGAIN)
                code = VROT_VTPM_ERROR_IO;
        g_set_error(error, VROT_VTPM_ERROR, code, "%s: %s (0x%x)", what, Tss2_RC_Decode(rc),
                    (unsigned)rc);
        return FALSE;
}

static VrotVtpmConn *conn_open(const gchar *tcti, gint32 timeout_ms, gboolean shared, GError **error)
{
        g_autoptr(VrotVtpmConn) c = g_new0(VrotVtpmConn, 1);

        g_return_val_if_fail(tcti != NULL, NULL);
        if (!vrot_vtpm_check(shared ? Tss2_TctiLdr_Initialize(tcti, &c->tcti)
                                    : vrot_tcti_open(tcti, &c->tcti), "opening the TCTI", error)) {
                c->tcti = NULL;
                return NULL;
        }
        c->guarded = !vrot_tcti_is_sock(c->tcti);
        if (c->guarded)
                vrot_sigpipe_block(&c->pipe);
        if (!vrot_vtpm_check(Esys_Initialize(&c->esys, c->tcti, NULL), "initialising ESYS",
                             error)) {
                c->esys = NULL;
                return NULL;
        }
        if (timeout_ms >= 0 &&
            !vrot_vtpm_check(Esys_SetTimeout(c->esys, timeout_ms), "setting the timeout", error))
                return NULL;
        return g_steal_pointer(&c);
}

VrotVtpmConn *vrot_vtpm_conn_open(const gchar *tcti, gint32 timeout_ms, GError **error)
{
        return conn_open(tcti, timeout_ms, FALSE, error);
}

VrotVtpmConn *vrot_vtpm_conn_open_shared(const gchar *tcti, gint32 timeout_ms, GError **error)
{
        return conn_open(tcti, timeout_ms, TRUE, error);
}

void vrot_vtpm_conn_free(VrotVtpmConn *c)
{
        if (!c)
                return;
        if (c->esys)
                Esys_Finalize(&c->esys);
        vrot_tcti_close(&c->tcti);
        if (c->guarded)
                vrot_sigpipe_restore(&c->pipe);
        g_free(c);
}

ESYS_CONTEXT *vrot_vtpm_conn_esys(VrotVtpmConn *c)
{
        return c->esys;
}

gboolean vrot_vtpm_startup(VrotVtpmConn *c, GError **error)
{
        TSS2_RC rc = Esys_Startup(c->esys, TPM2_SU_CLEAR);

        return rc == TPM2_RC_INITIALIZE || vrot_vtpm_check(rc, "TPM2_Startup", error);
}

gboolean vrot_vtpm_handle_exists(VrotVtpmConn *c, TPM2_HANDLE handle, gboolean *ret,
                                 GError **error)
{
        g_autoptr(TPMS_CAPABILITY_DATA) cap = NULL;
        TSS2_RC rc;

        rc = Esys_GetCapability(c->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                TPM2_CAP_HANDLES, handle, 1, NULL, &cap);
        if (!vrot_vtpm_check(rc, "TPM2_GetCapability(TPM_CAP_HANDLES)", error))
                return FALSE;
        *ret = cap->data.handles.count >= 1 && cap->data.handles.handle[0] == handle;
        return TRUE;
}

gboolean vrot_vtpm_persist(VrotVtpmConn *c, ESYS_TR *transient, TPM2_HANDLE handle,
                           GError **error)
{
        ESYS_TR persistent = ESYS_TR_NONE;
        TSS2_RC rc, frc;

        rc = Esys_EvictControl(c->esys, ESYS_TR_RH_OWNER, *transient, ESYS_TR_PASSWORD,
                               ESYS_TR_NONE, ESYS_TR_NONE, handle, &persistent);
        frc = Esys_FlushContext(c->esys, *transient);
        *transient = ESYS_TR_NONE;
        if (persistent != ESYS_TR_NONE)
                Esys_TR_Close(c->esys, &persistent);
        return vrot_vtpm_check(rc, "TPM2_EvictControl", error) &&
               vrot_vtpm_check(frc, "TPM2_FlushContext", error);
}
