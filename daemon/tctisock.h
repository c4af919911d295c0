/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * A TCTI for a TPM behind a UNIX stream socket that carries the raw TPM 2.0
 * command stream - a vrot-vtpm worker's data socket - over one connection
 * for the whole session.
 *
 * tpm2-tss's swtpm TCTI connects anew for every command and closes after
 * the answer; against a worker that costs 0.3-0.5 ms a command here (the
 * accept, the close and the worker's poll loop each time), which was most
 * of an endorsement from the pool (bench/README.md "create + endorse").
 * This one connects once.  It needs no control channel: the locality
 * stays 0 (the swtpm TCTI's only use of it) and nothing is cancelled.
 * Writes use MSG_NOSIGNAL: a worker that died is an I/O error, never a
 * SIGPIPE.  After a transport error the TCTI stays broken (ESYS could not
 * recover either).
 *
 * vrot_tcti_open() takes the same configuration strings as before:
 * "swtpm:path=PATH" and nothing more goes here, any other configuration to
 * tpm2-tss's TCTI loader.  vrotd's connections to its workers use it
 * (vtpmconn.h), and so does its host TPM when that is a swtpm (--dev):
 * vrotd is the host TPM's only user, so holding its one connection keeps
 * nobody out, and a signature costs one round trip instead of a connect,
 * an accept and a close besides.
 */

#include <glib.h>
#include <tss2/tss2_tcti.h>

/**
 * vrot_tcti_open:
 * @conf: "swtpm:path=PATH" for this TCTI, anything else for tpm2-tss's loader
 * @ret: (out) (transfer full): the TCTI; free it with vrot_tcti_close()
 *
 * Returns: TSS2_RC_SUCCESS, else a TCTI layer error (the socket could not
 * be reached: TSS2_TCTI_RC_IO_ERROR) or the loader's.
 */
TSS2_RC vrot_tcti_open(const char *conf, TSS2_TCTI_CONTEXT **ret);

/** vrot_tcti_is_sock: is @ctx this file's TCTI (one that never raises SIGPIPE)? */
gboolean vrot_tcti_is_sock(TSS2_TCTI_CONTEXT *ctx);

/** vrot_tcti_close: finalises and frees *@ctx (either kind), sets it NULL; accepts NULL. */
void vrot_tcti_close(TSS2_TCTI_CONTEXT **ctx);
