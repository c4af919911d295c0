/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * vrotd's API socket: JSON-RPC 2.0, one object per line, on a UNIX stream
 * socket (DESIGN "The socket API").  The caller is known by SO_PEERCRED and
 * SO_PEERGROUPS: root and members of the admin group may manage, others get
 * what each method allows them (their own instances) or "permission
 * denied".  Every connection has its own buffers and limits, so a slow,
 * silent or hostile client costs only itself.
 */

#include <glib.h>
#include <json-glib/json-glib.h>
#include <sys/types.h>

#include "jsonrpc.h"

typedef struct VrotCaller {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        gboolean admin;                 /* root or in the admin group */
} VrotCaller;

/**
 * VrotMethodFunc:
 * Runs one method for @caller; returns (transfer full) the result, or NULL
 * with @error set in VROT_JSONRPC_ERROR (its code goes to the client).
 */
typedef JsonNode *(*VrotMethodFunc)(gpointer ctx, const VrotCaller *caller,
                                    const VrotJsonrpcRequest *req, GError **error);

/* A method call whose answer comes later, from the main loop. */
typedef struct VrotCall VrotCall;

/**
 * VrotMethodAsyncFunc:
 * Starts one method for @caller; the answer goes with vrot_call_return()
 * or vrot_call_return_error(), maybe before this returns.  Meanwhile the
 * server serves everyone, this client's further requests included.
 */
typedef void (*VrotMethodAsyncFunc)(gpointer ctx, const VrotCaller *caller,
                                    const VrotJsonrpcRequest *req, VrotCall *call);

typedef struct VrotMethod {
        const gchar *name;
        VrotMethodFunc fn;              /* one of fn and async_fn */
        VrotMethodAsyncFunc async_fn;
        gboolean admin_only;            /* refused to others before fn runs */
} VrotMethod;

/**
 * vrot_call_return:
 * Answers @call (transfer full) with @result (transfer full).  A client
 * that has gone meanwhile is not answered.
 */
void vrot_call_return(VrotCall *call, JsonNode *result);

/** vrot_call_return_error: answers @call (transfer full) with @error (transfer full, VROT_JSONRPC_ERROR). */
void vrot_call_return_error(VrotCall *call, GError *error);

typedef struct VrotServerLimits {
        guint max_clients;              /* beyond: answered BUSY and closed */
        guint line_timeout_ms;          /* half a line pending longer: closed */
        guint idle_timeout_ms;          /* no request for this long: closed */
} VrotServerLimits;

#define VROT_SERVER_LIMITS_DEFAULT ((VrotServerLimits){ 256, 10000, 300000 })

typedef struct VrotServer VrotServer;

/**
 * vrot_server_new:
 * Listens on @path (mode 0660 when @admin_gid is set and the socket is
 * chgrp'ed to it, else 0666: every caller is authorised per method) and
 * serves @methods (transfer none; must outlive the server) in the
 * thread-default main context.  @admin_gid (gid_t)-1: root only.
 */
VrotServer *vrot_server_new(const gchar *path, const VrotMethod *methods, gsize n_methods,
                            gpointer ctx, gid_t admin_gid, const VrotServerLimits *limits,
                            GError **error);

guint vrot_server_n_clients(const VrotServer *s);

/** vrot_server_free: closes every connection and removes the socket. */
void vrot_server_free(VrotServer *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotServer, vrot_server_free)
