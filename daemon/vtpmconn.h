/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * A connection of vrotd to one vTPM through tpm2-tss ESYS, for the
 * manufacture (endorse.c) and for service identities (vtpmident.c):
 * `swtpm:path=RUNTIME/<uuid>/data.sock` for a worker's data socket.  Each
 * user opens one, sends its commands and closes it at once: a worker's
 * data socket serves one client at a time (FIELD-NOTES), and the service
 * behind it must get it back.  "swtpm:path=PATH" gets vrotd's own TCTI
 * (tctisock.h: one connection for the session, no SIGPIPE); anything else
 * tpm2-tss's loader.
 *
 * A loaded socket TCTI (swtpm, mssim) write()s each command: a peer that
 * died meanwhile raises SIGPIPE, whose default action would end vrotd.
 * Such a connection blocks SIGPIPE in its thread while it is open and
 * consumes a SIGPIPE it raised, so that such a vTPM is an error
 * (VROT_VTPM_ERROR_IO), not a dead daemon.  Open and free a connection in
 * the same thread.
 */

#include <glib.h>
#include <tss2/tss2_esys.h>

#define VROT_VTPM_ERROR (vrot_vtpm_error_quark())
GQuark vrot_vtpm_error_quark(void);

/**
 * VrotVtpmError:
 * @VROT_VTPM_ERROR_IO: the TCTI cannot be loaded, or the vTPM cannot be
 *   reached, stopped answering or did not answer in time
 * @VROT_VTPM_ERROR_TPM: the vTPM refused a command (the message has the
 *   decoded TPM_RC)
 * @VROT_VTPM_ERROR_FAILED: another failure inside tpm2-tss
 */
typedef enum {
        VROT_VTPM_ERROR_IO,
        VROT_VTPM_ERROR_TPM,
        VROT_VTPM_ERROR_FAILED,
} VrotVtpmError;

typedef struct VrotVtpmConn VrotVtpmConn;

/**
 * vrot_vtpm_conn_open:
 * @tcti: TCTI configuration ("swtpm:path=DATA")
 * @timeout_ms: how long to wait for each answer (ESYS's timeout), or -1
 *   to wait for ever.  A vTPM whose data socket another client holds
 *   answers nothing until that client lets go.
 *
 * Loads the TCTI (tctisock.h: one connection for the session for
 * "swtpm:path=PATH") and initialises ESYS; sends no command.
 * Returns: (transfer full): the connection, or NULL with @error set.
 */
VrotVtpmConn *vrot_vtpm_conn_open(const gchar *tcti, gint32 timeout_ms, GError **error);

/**
 * vrot_vtpm_conn_open_shared:
 * As vrot_vtpm_conn_open(), always through tpm2-tss's loader: with
 * "swtpm:path=PATH", a connection per command, so that other clients of
 * the same vTPM get their turns while this one stays open for long (a
 * service holding its key, vrot-tlspeer).
 */
VrotVtpmConn *vrot_vtpm_conn_open_shared(const gchar *tcti, gint32 timeout_ms, GError **error);

/** vrot_vtpm_conn_free: closes @c (sends nothing: persistent objects stay); accepts NULL. */
void vrot_vtpm_conn_free(VrotVtpmConn *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotVtpmConn, vrot_vtpm_conn_free)

/** vrot_vtpm_conn_esys: (transfer none) the ESYS context. */
ESYS_CONTEXT *vrot_vtpm_conn_esys(VrotVtpmConn *c);

/**
 * vrot_vtpm_check:
 * The one place where a TSS2_RC becomes a GError: TRUE for success, else
 * FALSE with "@what: <decoded rc> (0x…)" in VROT_VTPM_ERROR (_TPM for the
 * TPM's own response codes, _IO for the TCTI's, _FAILED else).
 */
gboolean vrot_vtpm_check(TSS2_RC rc, const char *what, GError **error);

/**
 * vrot_vtpm_startup:
 * TPM2_Startup(CLEAR); a vTPM that runs already answers TPM_RC_INITIALIZE,
 * which is success.
 */
gboolean vrot_vtpm_startup(VrotVtpmConn *c, GError **error);

/** vrot_vtpm_handle_exists: does persistent object or NV index @handle exist?  One GetCapability. */
gboolean vrot_vtpm_handle_exists(VrotVtpmConn *c, TPM2_HANDLE handle, gboolean *ret,
                                 GError **error);

/**
 * vrot_vtpm_persist:
 * TPM2_EvictControl of *@transient to persistent @handle (owner
 * authorization, empty), then flushes *@transient, which becomes
 * ESYS_TR_NONE either way.
 */
gboolean vrot_vtpm_persist(VrotVtpmConn *c, ESYS_TR *transient, TPM2_HANDLE handle,
                           GError **error);
