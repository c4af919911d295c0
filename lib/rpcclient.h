/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * A blocking client of vrotd's socket API, for vrotctl and the tests.
 *
 * One request at a time: send a line, wait (with a deadline) for the line
 * that answers it.  Errors come in two kinds, so that a caller can tell
 * "vrotd said no" from "could not talk to vrotd":
 *
 *  - VROT_JSONRPC_ERROR: vrotd answered with an error object; code and
 *    message are vrotd's, the "data" member is in
 *    vrot_jsonrpc_error_get_data();
 *  - G_IO_ERROR: connecting, sending or receiving failed
 *    (G_IO_ERROR_TIMED_OUT when the deadline passed,
 *    G_IO_ERROR_CONNECTION_CLOSED when vrotd hung up without answering),
 *    or the answer was not a valid response to the request
 *    (G_IO_ERROR_INVALID_DATA).  After any of these the connection is out
 *    of step and every later call fails with G_IO_ERROR_BROKEN_PIPE.
 */

#include <glib.h>
#include <json-glib/json-glib.h>

/* Default deadline of one call. */
#define VROT_RPCCLIENT_TIMEOUT_MS 30000

typedef struct VrotRpcclient VrotRpcclient;

/**
 * vrot_rpcclient_connect:
 * @path: the UNIX socket, e.g. /run/vrot/vrotd.sock
 * @timeout_ms: deadline of the connect and of each later call; 0 means
 *   VROT_RPCCLIENT_TIMEOUT_MS
 * @ret: (out) (transfer full): the client, written only on success
 *
 * Returns: TRUE, or FALSE with @error in G_IO_ERROR (NOT_FOUND,
 * CONNECTION_REFUSED, PERMISSION_DENIED, TIMED_OUT when the daemon's
 * backlog stays full, INVALID_ARGUMENT for a path too long for sun_path).
 */
gboolean vrot_rpcclient_connect(const char *path, guint timeout_ms, VrotRpcclient **ret,
                                GError **error);

/**
 * vrot_rpcclient_new_from_fd:
 * Wraps a connected stream socket (transfer full: closed by
 * vrot_rpcclient_free(); it is made non-blocking).  For tests and for
 * callers that connect by other means.  Returns (transfer full).
 */
VrotRpcclient *vrot_rpcclient_new_from_fd(int fd, guint timeout_ms);

/** vrot_rpcclient_free: closes the connection; accepts NULL. */
void vrot_rpcclient_free(VrotRpcclient *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotRpcclient, vrot_rpcclient_free)

/**
 * vrot_rpcclient_call:
 * @params: (transfer none) (nullable): by-name parameters
 * @ret_result: (out) (transfer full): the "result" member, written only on
 *   success
 *
 * Sends one request with the next id (1, 2, ...) and waits for the line
 * that answers it, at most the client's timeout in all.
 * Returns: TRUE, or FALSE with @error as described at the top.
 */
gboolean vrot_rpcclient_call(VrotRpcclient *c, const char *method, JsonObject *params,
                             JsonNode **ret_result, GError **error);

/**
 * vrot_rpcclient_call_once:
 * Connects to @path, makes one call and disconnects: what vrotctl does.
 * Same arguments, results and errors as the two functions above.
 */
gboolean vrot_rpcclient_call_once(const char *path, const char *method, JsonObject *params,
                                  guint timeout_ms, JsonNode **ret_result, GError **error);
