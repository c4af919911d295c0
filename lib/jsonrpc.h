/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * JSON-RPC 2.0 framing of vrotd's socket API (DESIGN "The socket API").
 *
 * One JSON object per line on a UNIX stream socket.  This module is the one
 * place that turns those lines into requests and replies: the daemon splits
 * its input with VrotJsonrpcSplitter, parses each line with
 * vrot_jsonrpc_parse_request(), reads parameters with the typed
 * vrot_jsonrpc_param_*() accessors and answers with vrot_jsonrpc_build_*();
 * clients build requests and parse responses with the same code.
 *
 * Everything that reads a line is pure (no I/O, no logging) and strict:
 * json-glib on its own accepts comments, single quotes, "var x = ..."
 * assignments, leading zeros and silently wraps integers that overflow
 * 64 bits, and its parser recurses once per nesting level.  Lines are
 * therefore first checked against RFC 8259 by an iterative scanner that
 * also bounds the nesting depth, so json-glib only ever sees strict,
 * shallow JSON.  Duplicate member names and "\u0000" in strings are refused
 * as well (a key or method name must mean the same to every reader).
 *
 * Errors are GErrors in VROT_JSONRPC_ERROR whose codes are the JSON-RPC
 * error codes themselves, so any GError in this domain maps straight to an
 * error reply.  The domain is an extended one: an error can carry the id of
 * the request it answers and a "data" member (vrot_jsonrpc_error_get_id(),
 * vrot_jsonrpc_error_get_data()).
 */

#include <glib.h>
#include <json-glib/json-glib.h>

/* Longest request line, without its newline (DESIGN: oversized input gets an
 * error and changes nothing). */
#define VROT_JSONRPC_MAX_LINE     (1u << 20)
/* Longest response line a client accepts (a list of thousands of instances
 * or an attestation bundle can exceed a request's limit). */
#define VROT_JSONRPC_MAX_RESPONSE (16u << 20)
/* Deepest nesting of arrays and objects; the request object is level 1. */
#define VROT_JSONRPC_MAX_DEPTH    64
/* Longest method name; names are [A-Za-z0-9._-] only. */
#define VROT_JSONRPC_MAX_METHOD   64

/**
 * VrotJsonrpcError:
 * The error codes of the socket API; stable, part of vrot-api(7).
 * -32700..-32603 are JSON-RPC 2.0's own (section 5.1); -32000..-32099 is the
 * range JSON-RPC leaves to the server, where vrot's own codes live.
 */
typedef enum VrotJsonrpcError {
        /* The line is not JSON (or not UTF-8, or has a NUL byte). */
        VROT_JSONRPC_ERROR_PARSE = -32700,
        /* JSON, but not a valid request object (also: batches, nesting
         * deeper than VROT_JSONRPC_MAX_DEPTH, duplicate member names). */
        VROT_JSONRPC_ERROR_INVALID_REQUEST = -32600,
        VROT_JSONRPC_ERROR_METHOD_NOT_FOUND = -32601,
        /* A parameter is missing, unknown, of the wrong type or out of range. */
        VROT_JSONRPC_ERROR_INVALID_PARAMS = -32602,
        VROT_JSONRPC_ERROR_INTERNAL = -32603,
        /* The caller (SO_PEERCRED) may not do this. */
        VROT_JSONRPC_ERROR_PERMISSION_DENIED = -32000,
        /* No such instance (or other named object). */
        VROT_JSONRPC_ERROR_NOT_FOUND = -32001,
        /* Already exists, or not possible in the object's current state. */
        VROT_JSONRPC_ERROR_CONFLICT = -32002,
        /* Sealed state refused: tampered, moved or rolled back; never retry. */
        VROT_JSONRPC_ERROR_STATE_REFUSED = -32003,
        /* The host TPM failed a command. */
        VROT_JSONRPC_ERROR_HOST_TPM = -32004,
        /* Too many clients or requests; retry later. */
        VROT_JSONRPC_ERROR_BUSY = -32005,
        /* A line longer than VROT_JSONRPC_MAX_LINE. */
        VROT_JSONRPC_ERROR_TOO_LARGE = -32006,
        /* The host has no host CA certificate yet: nothing can be signed
         * until an operator enrols it (vrotd(8) ENROLMENT). */
        VROT_JSONRPC_ERROR_NOT_ENROLLED = -32007,
        /* TPM evidence did not prove what it must (an attestation key not
         * linked to the EK, a key not certified by it, a wrong answer to a
         * credential); nothing was issued. */
        VROT_JSONRPC_ERROR_EVIDENCE_REFUSED = -32008,
} VrotJsonrpcError;

#define VROT_JSONRPC_ERROR vrot_jsonrpc_error_quark()
GQuark vrot_jsonrpc_error_quark(void);

/**
 * vrot_jsonrpc_error_name:
 * Returns (transfer none) a short name of @code ("invalid params",
 * "state refused", ...), or "server error" for codes this enum lacks.
 */
const char *vrot_jsonrpc_error_name(gint code);

/**
 * vrot_jsonrpc_error_get_id:
 * Returns (transfer none) (nullable) the request id a VROT_JSONRPC_ERROR
 * carries: what vrot_jsonrpc_parse_request() could recover from a request it
 * refused.  NULL when there is none, the id was unusable, or @error is in
 * another domain; an error reply then carries "id": null (JSON-RPC 5).
 */
JsonNode *vrot_jsonrpc_error_get_id(const GError *error);

/**
 * vrot_jsonrpc_error_get_data:
 * Returns (transfer none) (nullable) the "data" member of an error reply
 * that vrot_jsonrpc_parse_response() turned into @error, or what
 * vrot_jsonrpc_error_set_data() attached.  NULL in other domains.
 */
JsonNode *vrot_jsonrpc_error_get_data(const GError *error);

/**
 * vrot_jsonrpc_error_set_data:
 * Attaches @data (transfer none; a copy is kept, NULL removes it) to
 * @error, which must be in VROT_JSONRPC_ERROR; it becomes the reply's
 * "data" member in vrot_jsonrpc_build_error_from_gerror().
 */
void vrot_jsonrpc_error_set_data(GError *error, JsonNode *data);

/* ---- Requests (server side) ---- */

typedef struct VrotJsonrpcRequest VrotJsonrpcRequest;

/**
 * vrot_jsonrpc_parse_request:
 * @line: (array length=len): one line from the socket, newline stripped;
 *   need not be NUL-terminated
 * @ret: (out) (transfer full): the request, written only on success
 *
 * Checks, in this order: at most VROT_JSONRPC_MAX_LINE bytes (TOO_LARGE);
 * no NUL byte, valid UTF-8, strict JSON (PARSE); nesting depth, no duplicate
 * member names, an object and not a batch array (INVALID_REQUEST); then the
 * request object: "jsonrpc" is "2.0", "method" a name of 1 to
 * VROT_JSONRPC_MAX_METHOD characters from [A-Za-z0-9._-], "id" absent
 * (a notification), null, an integer or a string, no other members
 * (INVALID_REQUEST); "params" absent or an object (by-name only: an array
 * gives INVALID_PARAMS, anything else INVALID_REQUEST).
 *
 * Returns: TRUE, or FALSE with @error set in VROT_JSONRPC_ERROR and a
 * message that names what is wrong.  When the id was readable the error
 * carries it (vrot_jsonrpc_error_get_id()), so that
 * vrot_jsonrpc_build_error_from_gerror(NULL, error) answers the right id.
 */
gboolean vrot_jsonrpc_parse_request(const char *line, gsize len, VrotJsonrpcRequest **ret,
                                    GError **error);

/** vrot_jsonrpc_request_free: accepts NULL. */
void vrot_jsonrpc_request_free(VrotJsonrpcRequest *req);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotJsonrpcRequest, vrot_jsonrpc_request_free)

/** vrot_jsonrpc_request_get_method: (transfer none) the method name. */
const char *vrot_jsonrpc_request_get_method(const VrotJsonrpcRequest *req);

/**
 * vrot_jsonrpc_request_get_id:
 * Returns (transfer none) (nullable) the id: a null, integer or string node,
 * or NULL for a notification, which must not be answered (JSON-RPC 4.1).
 */
JsonNode *vrot_jsonrpc_request_get_id(const VrotJsonrpcRequest *req);

/** vrot_jsonrpc_request_is_notification: TRUE when the request had no id. */
gboolean vrot_jsonrpc_request_is_notification(const VrotJsonrpcRequest *req);

/**
 * vrot_jsonrpc_request_get_params:
 * Returns (transfer none) (nullable) the params object, NULL when absent.
 * The typed accessors below are the normal way to read it.
 */
JsonObject *vrot_jsonrpc_request_get_params(const VrotJsonrpcRequest *req);

/* ---- Typed parameters (each error: INVALID_PARAMS naming the parameter) ---- */

typedef enum VrotJsonrpcPresence {
        /* Absent: success, and the ret_* out-parameter stays as it was, so
         * initialise it with the default. */
        VROT_JSONRPC_OPTIONAL = 0,
        VROT_JSONRPC_REQUIRED = 1,
} VrotJsonrpcPresence;

/**
 * vrot_jsonrpc_params_check_known:
 * @known: (array zero-terminated=1): every parameter name the method takes
 *
 * Fails on the first parameter not in @known ("unknown parameter 'uuidd'"),
 * so that a misspelt optional parameter is an error, not a silent default.
 */
gboolean vrot_jsonrpc_params_check_known(const VrotJsonrpcRequest *req,
                                         const char *const *known, GError **error);

/** vrot_jsonrpc_param_has: TRUE when parameter @name is present. */
gboolean vrot_jsonrpc_param_has(const VrotJsonrpcRequest *req, const char *name);

/**
 * vrot_jsonrpc_param_string:
 * Reads a string of at most @max_len bytes.  *@ret is (transfer none),
 * valid while @req lives.  Strings never contain NUL (the parser refuses
 * "\u0000").
 */
gboolean vrot_jsonrpc_param_string(const VrotJsonrpcRequest *req, const char *name,
                                   VrotJsonrpcPresence presence, gsize max_len,
                                   const char **ret, GError **error);

/**
 * vrot_jsonrpc_param_uuid:
 * Reads a UUID in the canonical 8-4-4-4-12 hex form (either case) into
 * @ret, via vrot_uuid_parse().
 */
gboolean vrot_jsonrpc_param_uuid(const VrotJsonrpcRequest *req, const char *name,
                                 VrotJsonrpcPresence presence, guint8 ret[16],
                                 GError **error);

/**
 * vrot_jsonrpc_param_uint:
 * Reads an integer in [@min, @max] (both at most G_MAXINT64: JSON integers
 * beyond that are refused by the parser).  1.0 and "1" are not integers.
 */
gboolean vrot_jsonrpc_param_uint(const VrotJsonrpcRequest *req, const char *name,
                                 VrotJsonrpcPresence presence, guint64 min, guint64 max,
                                 guint64 *ret, GError **error);

/** vrot_jsonrpc_param_bool: reads true or false (not 0/1, not "true"). */
gboolean vrot_jsonrpc_param_bool(const VrotJsonrpcRequest *req, const char *name,
                                 VrotJsonrpcPresence presence, gboolean *ret,
                                 GError **error);

/**
 * vrot_jsonrpc_param_enum:
 * @choices: (array zero-terminated=1): the accepted strings
 *
 * Reads a string that must be one of @choices and stores its index in @ret.
 * The error lists the choices, not the rejected value.
 */
gboolean vrot_jsonrpc_param_enum(const VrotJsonrpcRequest *req, const char *name,
                                 VrotJsonrpcPresence presence, const char *const *choices,
                                 guint *ret, GError **error);

/**
 * vrot_jsonrpc_param_base64:
 * Reads a string of canonical base64 (vrot_jsonrpc_base64_decode()) that
 * decodes to @min to @max bytes.  *@ret is (transfer full).
 */
gboolean vrot_jsonrpc_param_base64(const VrotJsonrpcRequest *req, const char *name,
                                   VrotJsonrpcPresence presence, gsize min, gsize max,
                                   GBytes **ret, GError **error);

/**
 * vrot_jsonrpc_base64_decode:
 * @s: (array length=len): untrusted text, need not be NUL-terminated
 * @max: the most bytes the caller accepts
 * @ret: (out) (transfer full): the bytes, written only on success
 *
 * Strict RFC 4648 section 4 base64, the form g_base64_encode() writes:
 * padded to a multiple of 4 characters, no white space or line breaks,
 * and the unused bits before padding zero, so that every byte sequence
 * has exactly one accepted encoding.  (g_base64_decode() skips invalid
 * characters and cannot fail, so two different strings could carry the
 * same key or blob.)  Pure; an empty string is zero bytes.
 * Errors: VROT_JSONRPC_ERROR_INVALID_PARAMS naming the first bad position,
 * or when the result would exceed @max.
 */
gboolean vrot_jsonrpc_base64_decode(const char *s, gsize len, gsize max, GBytes **ret,
                                    GError **error);

/*
 * ---- Building lines (each compact JSON ending in "\n", transfer full) ----
 * Written by this module, not json-glib's generator (which writes 1e+20 as
 * "1e+20.0"): strings are escaped so the line holds no raw newline, invalid
 * UTF-8 in them becomes U+FFFD, NaN and infinities become null.
 */

/**
 * vrot_jsonrpc_build_result:
 * @id: (transfer none) (nullable): the request's id; NULL gives "id": null
 * @result: (transfer none) (nullable): the result; NULL gives "result": null
 */
gchar *vrot_jsonrpc_build_result(JsonNode *id, JsonNode *result);

/**
 * vrot_jsonrpc_build_error:
 * @id: (transfer none) (nullable): the request's id; NULL gives "id": null
 * @message: human-readable
 * @data: (transfer none) (nullable): the optional "data" member
 */
gchar *vrot_jsonrpc_build_error(JsonNode *id, gint code, const char *message, JsonNode *data);

/**
 * vrot_jsonrpc_build_error_from_gerror:
 * @id: (transfer none) (nullable): the request's id; when NULL, the id
 *   @error carries (vrot_jsonrpc_error_get_id()) is used
 *
 * The reply to @error: code and data from a VROT_JSONRPC_ERROR, or
 * INTERNAL for any other domain; message from @error.
 */
gchar *vrot_jsonrpc_build_error_from_gerror(JsonNode *id, const GError *error);

/**
 * vrot_jsonrpc_build_request:
 * @id: (transfer none) (nullable): NULL for a notification (no "id")
 * @params: (transfer none) (nullable): by-name parameters, omitted if NULL
 */
gchar *vrot_jsonrpc_build_request(JsonNode *id, const char *method, JsonObject *params);

/* ---- Responses (client side) ---- */

/**
 * vrot_jsonrpc_parse_response:
 * @line: (array length=len): one response line, newline stripped
 * @id: (transfer none): the id of the request this answers
 * @ret_result: (out) (transfer full): the result, written only on success
 *
 * Parses with the same strictness as requests (at most
 * VROT_JSONRPC_MAX_RESPONSE bytes).  An error reply becomes @error in
 * VROT_JSONRPC_ERROR with the reply's code and message, and its "data" (if
 * any) available from vrot_jsonrpc_error_get_data().  An error reply with
 * "id": null is taken as the answer to @id (the server could not read it).
 * A line that is not a valid response, or answers another id, gives
 * G_IO_ERROR_INVALID_DATA, so a caller can tell a broken peer from an error
 * the server reported.
 */
gboolean vrot_jsonrpc_parse_response(const char *line, gsize len, JsonNode *id,
                                     JsonNode **ret_result, GError **error);

/* ---- Splitting a byte stream into lines ---- */

typedef struct VrotJsonrpcSplitter VrotJsonrpcSplitter;

/**
 * vrot_jsonrpc_splitter_new:
 * Returns (transfer full) a splitter that refuses lines (newline excluded)
 * longer than @max_line bytes: VROT_JSONRPC_MAX_LINE on the server.
 */
VrotJsonrpcSplitter *vrot_jsonrpc_splitter_new(gsize max_line);

/** vrot_jsonrpc_splitter_free: accepts NULL. */
void vrot_jsonrpc_splitter_free(VrotJsonrpcSplitter *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotJsonrpcSplitter, vrot_jsonrpc_splitter_free)

/**
 * vrot_jsonrpc_splitter_feed:
 * Takes @len bytes read from the peer (transfer none) and queues the lines
 * they complete.  Fails with VROT_JSONRPC_ERROR_TOO_LARGE as soon as a line
 * exceeds the limit, newline or not, without buffering more than the limit;
 * the stream cannot be resynchronised, so the splitter then stays failed
 * (every later feed fails the same way) and the caller should answer with
 * that error and disconnect.  Lines completed before the long one stay
 * queued.
 */
gboolean vrot_jsonrpc_splitter_feed(VrotJsonrpcSplitter *s, const void *buf, gsize len,
                                    GError **error);

/**
 * vrot_jsonrpc_splitter_pop:
 * @ret_len: (out) (optional): the line's length
 *
 * Returns (transfer full) (nullable) the oldest complete line, without its
 * newline and NUL-terminated (it may contain NUL bytes of its own, which
 * the parsers refuse), or NULL when no complete line is queued.
 * Empty lines are returned too.
 */
gchar *vrot_jsonrpc_splitter_pop(VrotJsonrpcSplitter *s, gsize *ret_len);

/**
 * vrot_jsonrpc_splitter_pending:
 * Returns how many bytes of an unfinished line are buffered; non-zero at
 * end of stream means the peer hung up mid-line.
 */
gsize vrot_jsonrpc_splitter_pending(const VrotJsonrpcSplitter *s);
