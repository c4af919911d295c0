/* SPDX-License-Identifier: BSD-3-Clause */
/* The JSON-RPC line parsers on arbitrary bytes: a request line (what any
 * local user may send vrotd), a response line (what a client reads) and the
 * line splitter.  Beyond not crashing, what the module writes must read
 * back: every reply to a request, good or bad, is a valid response line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonrpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(gboolean ok)
{
        if (!ok)
                abort();
}

/* Canonical base64: what decodes must encode back to the very same text. */
static void read_base64(const VrotJsonrpcRequest *req, const char *name)
{
        g_autoptr(GBytes) b = NULL;
        g_autofree gchar *again = NULL;
        const char *s = NULL;

        if (!vrot_jsonrpc_param_base64(req, name, VROT_JSONRPC_REQUIRED, 0, 4096, &b, NULL))
                return;
        check(g_bytes_get_size(b) <= 4096);
        check(vrot_jsonrpc_param_string(req, name, VROT_JSONRPC_REQUIRED, G_MAXSIZE, &s, NULL));
        again = g_base64_encode(g_bytes_get_data(b, NULL), g_bytes_get_size(b));
        check(strcmp(again, s) == 0);
}

/* Reads every parameter with every accessor; only the outcome's shape is
 * checked. */
static void read_params(const VrotJsonrpcRequest *req)
{
        static const char *const choices[] = { "a", "b", NULL };
        static const char *const none[] = { NULL };
        JsonObject *params = vrot_jsonrpc_request_get_params(req);
        g_autoptr(GList) names = params ? json_object_get_members(params) : NULL;

        check(vrot_jsonrpc_params_check_known(req, none, NULL) == (names == NULL));
        for (GList *l = names; l; l = l->next) {
                const char *name = l->data, *s = NULL;
                guint8 uuid[16];
                guint64 u;
                gboolean b;
                guint e;
                g_autoptr(GError) error = NULL;

                check(vrot_jsonrpc_param_has(req, name));
                if (vrot_jsonrpc_param_string(req, name, VROT_JSONRPC_REQUIRED, 64, &s, NULL))
                        check(s && strlen(s) <= 64);
                (void)vrot_jsonrpc_param_uuid(req, name, VROT_JSONRPC_REQUIRED, uuid, NULL);
                if (vrot_jsonrpc_param_uint(req, name, VROT_JSONRPC_REQUIRED, 1, 1000, &u, NULL))
                        check(u >= 1 && u <= 1000);
                (void)vrot_jsonrpc_param_bool(req, name, VROT_JSONRPC_OPTIONAL, &b, NULL);
                if (!vrot_jsonrpc_param_enum(req, name, VROT_JSONRPC_REQUIRED, choices, &e, &error))
                        check(error->code == VROT_JSONRPC_ERROR_INVALID_PARAMS);
                else
                        check(e < 2);
                read_base64(req, name);
        }
}

/* A reply line must parse as a response to @id, with the same outcome. */
static void check_reply(const char *line, JsonNode *id, gint code)
{
        g_autoptr(JsonNode) null_id = json_node_new(JSON_NODE_NULL);
        g_autoptr(JsonNode) result = NULL;
        g_autoptr(GError) error = NULL;
        size_t len = strlen(line);

        check(len > 0 && line[len - 1] == '\n' && memchr(line, '\n', len) == line + len - 1);
        if (vrot_jsonrpc_parse_response(line, len - 1, id ? id : null_id, &result, &error)) {
                check(code == 0 && result != NULL);
                return;
        }
        check(code != 0 && error->domain == VROT_JSONRPC_ERROR && error->code == code);
}

static void fuzz_request(const char *buf, size_t size)
{
        g_autoptr(VrotJsonrpcRequest) req = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree gchar *reply = NULL, *again = NULL;
        g_autoptr(VrotJsonrpcRequest) req2 = NULL;
        JsonNode *params;

        if (!vrot_jsonrpc_parse_request(buf, size, &req, &error)) {
                check(error->domain == VROT_JSONRPC_ERROR);
                check(strcmp(vrot_jsonrpc_error_name(error->code), "server error") != 0);
                /* json-glib must never refuse what the strict scanner passed. */
                check(!g_str_has_prefix(error->message, "parse error: "));
                reply = vrot_jsonrpc_build_error_from_gerror(NULL, error);
                check_reply(reply, vrot_jsonrpc_error_get_id(error), error->code);
                return;
        }
        check(vrot_jsonrpc_request_get_method(req)[0] != '\0');
        read_params(req);
        /* Echo the params back as a result, and rebuild the request. */
        params = vrot_jsonrpc_request_get_params(req)
                 ? json_node_init_object(json_node_alloc(), vrot_jsonrpc_request_get_params(req))
                 : NULL;
        reply = vrot_jsonrpc_build_result(vrot_jsonrpc_request_get_id(req), params);
        check_reply(reply, vrot_jsonrpc_request_get_id(req), 0);
        again = vrot_jsonrpc_build_request(vrot_jsonrpc_request_get_id(req),
                                           vrot_jsonrpc_request_get_method(req),
                                           vrot_jsonrpc_request_get_params(req));
        check(vrot_jsonrpc_parse_request(again, strlen(again) - 1, &req2, NULL));
        check(strcmp(vrot_jsonrpc_request_get_method(req2),
                     vrot_jsonrpc_request_get_method(req)) == 0);
        check(vrot_jsonrpc_request_is_notification(req2) ==
              vrot_jsonrpc_request_is_notification(req));
        g_clear_pointer(&params, json_node_unref);
}

static void fuzz_response(const char *buf, size_t size)
{
        g_autoptr(JsonNode) id = json_node_init_int(json_node_alloc(), 1);
        g_autoptr(JsonNode) result = NULL;
        g_autoptr(GError) error = NULL;

        if (vrot_jsonrpc_parse_response(buf, size, id, &result, &error))
                check(result != NULL);
        else
                check(error != NULL && result == NULL);
}

/* Fed in pieces of 1 to 16 bytes, the splitter gives back exactly the
 * newline-separated lines, or fails on the first one over 32 bytes. */
static void fuzz_splitter(const char *buf, size_t size)
{
        g_autoptr(VrotJsonrpcSplitter) s = vrot_jsonrpc_splitter_new(32);
        size_t off = 0, out = 0, step = size ? (size_t)(buf[0] & 15) + 1 : 1;
        gboolean ok = TRUE;
        gchar *line;
        gsize len;

        while (ok && off < size) {
                size_t n = MIN(step, size - off);

                ok = vrot_jsonrpc_splitter_feed(s, buf + off, n, NULL);
                off += n;
                while ((line = vrot_jsonrpc_splitter_pop(s, &len))) {
                        check(len <= 32 && !memchr(line, '\n', len) && line[len] == '\0');
                        check(out + len < size && memcmp(buf + out, line, len) == 0 &&
                              buf[out + len] == '\n');
                        out += len + 1;
                        g_free(line);
                }
        }
        check(vrot_jsonrpc_splitter_pending(s) <= 32);
        if (ok)
                check(out + vrot_jsonrpc_splitter_pending(s) == size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* Exact-size copy so ASan catches any read past the line. */
        char *copy = malloc(size ? size : 1);

        memcpy(copy, data, size);
        fuzz_request(copy, size);
        fuzz_response(copy, size);
        fuzz_splitter(copy, size);
        free(copy);
        return 0;
}
