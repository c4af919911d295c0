/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <math.h>
#include <string.h>

#include <gio/gio.h>

#include "jsonrpc.h"
#include "uuid.h"

/* ---- The error domain ---- */

/* The private part of a VROT_JSONRPC_ERROR (GLib extended error domain):
 * lets vrot_jsonrpc_parse_request() keep its signature and still hand back
 * the id of a request it refused, and an error reply's "data". */
typedef struct VrotJsonrpcErrorPrivate {
        JsonNode *id;
        JsonNode *data;
} VrotJsonrpcErrorPrivate;

static void vrot_jsonrpc_error_private_init(VrotJsonrpcErrorPrivate *priv)
{
        priv->id = NULL;
        priv->data = NULL;
}

static void vrot_jsonrpc_error_private_copy(const VrotJsonrpcErrorPrivate *src,
                                            VrotJsonrpcErrorPrivate *dest)
{
        dest->id = src->id ? json_node_copy(src->id) : NULL;
        dest->data = src->data ? json_node_copy(src->data) : NULL;
}

static void vrot_jsonrpc_error_private_clear(VrotJsonrpcErrorPrivate *priv)
{
        g_clear_pointer(&priv->id, json_node_unref);
        g_clear_pointer(&priv->data, json_node_unref);
}

G_DEFINE_EXTENDED_ERROR(VrotJsonrpcError, vrot_jsonrpc_error)

static const struct {
        gint code;
        const char *name;
} error_names[] = {
        { VROT_JSONRPC_ERROR_PARSE, "parse error" },
        { VROT_JSONRPC_ERROR_INVALID_REQUEST, "invalid request" },
        { VROT_JSONRPC_ERROR_METHOD_NOT_FOUND, "method not found" },
        { VROT_JSONRPC_ERROR_INVALID_PARAMS, "invalid params" },
        { VROT_JSONRPC_ERROR_INTERNAL, "internal error" },
        { VROT_JSONRPC_ERROR_PERMISSION_DENIED, "permission denied" },
        { VROT_JSONRPC_ERROR_NOT_FOUND, "not found" },
        { VROT_JSONRPC_ERROR_CONFLICT, "conflict" },
        { VROT_JSONRPC_ERROR_STATE_REFUSED, "state refused" },
        { VROT_JSONRPC_ERROR_HOST_TPM, "host TPM failure" },
        { VROT_JSONRPC_ERROR_BUSY, "busy" },
        { VROT_JSONRPC_ERROR_TOO_LARGE, "request too large" },
        { VROT_JSONRPC_ERROR_NOT_ENROLLED, "not enrolled" },
        { VROT_JSONRPC_ERROR_EVIDENCE_REFUSED, "evidence refused" },
};

const char *vrot_jsonrpc_error_name(gint code)
{
        for (gsize i = 0; i < G_N_ELEMENTS(error_names); i++)
                if (error_names[i].code == code)
                        return error_names[i].name;
        return "server error";
}

JsonNode *vrot_jsonrpc_error_get_id(const GError *error)
{
        if (!error || error->domain != VROT_JSONRPC_ERROR)
                return NULL;
        return vrot_jsonrpc_error_get_private(error)->id;
}

JsonNode *vrot_jsonrpc_error_get_data(const GError *error)
{
        if (!error || error->domain != VROT_JSONRPC_ERROR)
                return NULL;
        return vrot_jsonrpc_error_get_private(error)->data;
}

void vrot_jsonrpc_error_set_data(GError *error, JsonNode *data)
{
        VrotJsonrpcErrorPrivate *priv;

        g_return_if_fail(error != NULL && error->domain == VROT_JSONRPC_ERROR);
        priv = vrot_jsonrpc_error_get_private(error);
        g_clear_pointer(&priv->data, json_node_unref);
        priv->data = data ? json_node_copy(data) : NULL;
}

static void error_attach_id(GError *error, JsonNode *id)
{
        VrotJsonrpcErrorPrivate *priv;

        if (!error || !id || error->domain != VROT_JSONRPC_ERROR)
                return;
        priv = vrot_jsonrpc_error_get_private(error);
        g_clear_pointer(&priv->id, json_node_unref);
        priv->id = json_node_copy(id);
}

/* A name taken from the request, made safe to put in a message (and so in
 * the daemon's log): at most 64 bytes, non-printable bytes escaped. */
static gchar *printable_name(const char *name)
{
        g_autofree gchar *head = g_strndup(name, 64);
        g_autofree gchar *escaped = g_strescape(head, NULL);

        if (strlen(name) > 64)
                return g_strconcat(escaped, "...", NULL);
        return g_steal_pointer(&escaped);
}

/* ---- Strict syntax check (RFC 8259), iterative and depth-bounded ---- */

typedef enum ScanState {
        WANT_VALUE,
        WANT_VALUE_OR_END,      /* just after '[' */
        WANT_KEY,               /* after ',' in an object */
        WANT_KEY_OR_END,        /* just after '{' */
        AFTER_VALUE,
} ScanState;

typedef struct Scan {
        const guchar *p;
        gsize len;
        gsize pos;
        ScanState state;
        guint depth;
        guchar stack[VROT_JSONRPC_MAX_DEPTH];   /* '{' or '[' per level */
} Scan;

static gboolean scan_fail(const Scan *s, GError **error, const char *what)
{
        g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_PARSE,
                    "parse error at byte %" G_GSIZE_FORMAT ": %s", s->pos, what);
        return FALSE;
}

static gboolean is_ws(guchar c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_ws(Scan *s)
{
        while (s->pos < s->len && is_ws(s->p[s->pos]))
                s->pos++;
}

static gboolean scan_hex4(Scan *s, guint *ret, GError **error)
{
        guint v = 0;

        for (int i = 0; i < 4; i++, s->pos++) {
                if (s->pos >= s->len || !g_ascii_isxdigit(s->p[s->pos]))
                        return scan_fail(s, error, "\\u must be followed by 4 hex digits");
                v = v << 4 | (guint)g_ascii_xdigit_value(s->p[s->pos]);
        }
        *ret = v;
        return TRUE;
}

/* \uXXXX: refuses U+0000 (it would cut a C string short: "create\u0000x"
 * would read as "create") and unpaired UTF-16 surrogates. */
static gboolean scan_unicode_escape(Scan *s, GError **error)
{
        guint cp, lo;

        if (!scan_hex4(s, &cp, error))
                return FALSE;
        if (cp == 0)
                return scan_fail(s, error, "\\u0000 is not allowed in strings");
        if (cp >= 0xdc00 && cp <= 0xdfff)
                return scan_fail(s, error, "unpaired UTF-16 surrogate in \\u escape");
        if (cp < 0xd800 || cp > 0xdbff)
                return TRUE;
        if (s->pos + 2 > s->len || s->p[s->pos] != '\\' || s->p[s->pos + 1] != 'u')
                return scan_fail(s, error, "unpaired UTF-16 surrogate in \\u escape");
        s->pos += 2;
        if (!scan_hex4(s, &lo, error))
                return FALSE;
        if (lo < 0xdc00 || lo > 0xdfff)
                return scan_fail(s, error, "unpaired UTF-16 surrogate in \\u escape");
        return TRUE;
}

static gboolean scan_string(Scan *s, GError **error)
{
        s->pos++;       /* the opening quote */
        while (s->pos < s->len) {
                guchar c = s->p[s->pos];

                if (c == '"') {
                        s->pos++;
                        return TRUE;
                }
                if (c < 0x20)
                        return scan_fail(s, error, "control character in string");
                s->pos++;
                if (c != '\\')
                        continue;
                if (s->pos >= s->len)
                        break;
                c = s->p[s->pos++];
                if (c == 'u') {
                        if (!scan_unicode_escape(s, error))
                                return FALSE;
                } else if (!c || !strchr("\"\\/bfnrt", c)) {
                        s->pos--;
                        return scan_fail(s, error, "invalid escape sequence in string");
                }
        }
        return scan_fail(s, error, "unterminated string");
}

static gsize skip_digits(Scan *s)
{
        gsize start = s->pos;

        while (s->pos < s->len && g_ascii_isdigit(s->p[s->pos]))
                s->pos++;
        return s->pos - start;
}

/* Integers must fit in 64 bits (json-glib silently wraps them), other
 * numbers must be finite. */
static gboolean check_number_range(Scan *s, gsize start, gboolean integer, GError **error)
{
        char buf[65];
        gsize n = s->pos - start;
        char *end = NULL;

        if (n >= sizeof(buf))
                return scan_fail(s, error, "number longer than 64 characters");
        memcpy(buf, s->p + start, n);
        buf[n] = '\0';
        errno = 0;
        if (integer) {
                (void)g_ascii_strtoll(buf, &end, 10);
                if (errno == ERANGE)
                        return scan_fail(s, error, "integer out of the 64-bit range");
        } else if (!isfinite(g_ascii_strtod(buf, &end))) {
                return scan_fail(s, error, "number out of range");
        }
        return TRUE;
}

static gboolean scan_number(Scan *s, GError **error)
{
        gsize start = s->pos;
        gboolean integer = TRUE;

        if (s->p[s->pos] == '-')
                s->pos++;
        if (s->pos < s->len && s->p[s->pos] == '0')
                s->pos++;
        else if (skip_digits(s) == 0)
                return scan_fail(s, error, "digit expected in number");
        if (s->pos < s->len && s->p[s->pos] == '.') {
                s->pos++;
                integer = FALSE;
                if (skip_digits(s) == 0)
                        return scan_fail(s, error, "digit expected after '.' in number");
        }
        if (s->pos < s->len && (s->p[s->pos] == 'e' || s->p[s->pos] == 'E')) {
                s->pos++;
                integer = FALSE;
                if (s->pos < s->len && (s->p[s->pos] == '+' || s->p[s->pos] == '-'))
                        s->pos++;
                if (skip_digits(s) == 0)
                        return scan_fail(s, error, "digit expected in exponent");
        }
        return check_number_range(s, start, integer, error);
}

static gboolean scan_scalar(Scan *s, GError **error)
{
        static const char *const literals[] = { "true", "false", "null" };
        guchar c = s->p[s->pos];

        if (c == '"')
                return scan_string(s, error);
        if (c == '-' || g_ascii_isdigit(c))
                return scan_number(s, error);
        for (gsize i = 0; i < G_N_ELEMENTS(literals); i++) {
                gsize n = strlen(literals[i]);

                if (s->len - s->pos >= n && memcmp(s->p + s->pos, literals[i], n) == 0) {
                        s->pos += n;
                        return TRUE;
                }
        }
        return scan_fail(s, error, "value expected (object, array, string, number, "
                         "true, false or null)");
}

static gboolean scan_open(Scan *s, GError **error)
{
        guchar c = s->p[s->pos];

        if (s->depth == VROT_JSONRPC_MAX_DEPTH) {
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_REQUEST,
                            "nesting deeper than %d levels at byte %" G_GSIZE_FORMAT,
                            VROT_JSONRPC_MAX_DEPTH, s->pos);
                return FALSE;
        }
        s->stack[s->depth++] = c;
        s->state = c == '{' ? WANT_KEY_OR_END : WANT_VALUE_OR_END;
        s->pos++;
        return TRUE;
}

static gboolean scan_close(Scan *s)
{
        s->depth--;
        s->state = AFTER_VALUE;
        s->pos++;
        return TRUE;
}

static gboolean scan_key(Scan *s, GError **error)
{
        if (s->p[s->pos] != '"')
                return scan_fail(s, error, "member name (a string) expected");
        if (!scan_string(s, error))
                return FALSE;
        skip_ws(s);
        if (s->pos >= s->len || s->p[s->pos] != ':')
                return scan_fail(s, error, "':' expected after member name");
        s->pos++;
        s->state = WANT_VALUE;
        return TRUE;
}

static gboolean scan_after_value(Scan *s, GError **error)
{
        gboolean in_object;

        if (s->depth == 0)
                return scan_fail(s, error, "trailing characters after the JSON value");
        in_object = s->stack[s->depth - 1] == '{';
        if (s->p[s->pos] == ',') {
                s->pos++;
                s->state = in_object ? WANT_KEY : WANT_VALUE;
                return TRUE;
        }
        if (s->p[s->pos] == (in_object ? '}' : ']'))
                return scan_close(s);
        return scan_fail(s, error, in_object ? "',' or '}' expected" : "',' or ']' expected");
}

static gboolean scan_step(Scan *s, GError **error)
{
        guchar c = s->p[s->pos];

        switch (s->state) {
        case WANT_VALUE_OR_END:
                if (c == ']')
                        return scan_close(s);
                G_GNUC_FALLTHROUGH;
        case WANT_VALUE:
                if (c == '{' || c == '[')
                        return scan_open(s, error);
                if (!scan_scalar(s, error))
                        return FALSE;
                s->state = AFTER_VALUE;
                return TRUE;
        case WANT_KEY_OR_END:
                if (c == '}')
                        return scan_close(s);
                G_GNUC_FALLTHROUGH;
        case WANT_KEY:
                return scan_key(s, error);
        case AFTER_VALUE:
                return scan_after_value(s, error);
        }
        g_assert_not_reached();
}

/* Accepts exactly RFC 8259 JSON text, nesting at most VROT_JSONRPC_MAX_DEPTH
 * levels, with a loop and a fixed stack rather than recursion, so that a
 * line of a million '[' costs a bounded amount of stack. */
static gboolean check_syntax(const char *buf, gsize len, GError **error)
{
        Scan s = { .p = (const guchar *)buf, .len = len, .state = WANT_VALUE };

        for (;;) {
                skip_ws(&s);
                if (s.pos == s.len)
                        break;
                if (!scan_step(&s, error))
                        return FALSE;
        }
        if (s.state == WANT_VALUE && s.depth == 0)
                return scan_fail(&s, error, "empty line, a JSON object expected");
        if (s.state != AFTER_VALUE || s.depth != 0)
                return scan_fail(&s, error, "unexpected end of line");
        return TRUE;
}

/* ---- Loading: checks, then json-glib ---- */

/* json-glib keeps the last of duplicate members; we refuse them instead, so
 * that no two readers of a line can disagree on what it says.  The parser
 * emits "object-member" after adding the member, so a duplicate is a
 * member that did not make the object grow. */
typedef struct DupCheck {
        guint count[VROT_JSONRPC_MAX_DEPTH];
        guint depth;
        gchar *dup;
} DupCheck;

static void on_object_start(JsonParser *parser, gpointer data)
{
        DupCheck *d = data;

        (void)parser;
        if (d->depth < VROT_JSONRPC_MAX_DEPTH)
                d->count[d->depth] = 0;
        d->depth++;
}

static void on_object_member(JsonParser *parser, JsonObject *object, const char *name,
                             gpointer data)
{
        DupCheck *d = data;
        guint level;

        (void)parser;
        if (d->depth == 0 || d->depth > VROT_JSONRPC_MAX_DEPTH)
                return;
        level = d->depth - 1;
        d->count[level]++;
        if (d->count[level] > json_object_get_size(object) && !d->dup)
                d->dup = g_strdup(name);
}

static void on_object_end(JsonParser *parser, JsonObject *object, gpointer data)
{
        DupCheck *d = data;

        (void)parser;
        (void)object;
        if (d->depth > 0)
                d->depth--;
}

/* @what: "request" or "response", for the message */
static gboolean check_bytes(const char *line, gsize len, gsize max, const char *what,
                            GError **error)
{
        const gchar *bad = NULL;

        if (len > max) {
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_TOO_LARGE,
                            "%s too large: %" G_GSIZE_FORMAT " bytes, at most %"
                            G_GSIZE_FORMAT " allowed", what, len, max);
                return FALSE;
        }
        if (memchr(line, '\0', len)) {
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_PARSE,
                            "parse error at byte %td: NUL byte in line",
                            (const char *)memchr(line, '\0', len) - line);
                return FALSE;
        }
        if (!g_utf8_validate_len(line, len, &bad)) {
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_PARSE,
                            "parse error at byte %td: invalid UTF-8", bad - line);
                return FALSE;
        }
        return TRUE;
}

static gboolean load_json(const char *line, gsize len, gsize max, const char *what,
                          JsonNode **ret_root, GError **error)
{
        g_autoptr(JsonParser) parser = NULL;
        g_autoptr(GError) local = NULL;
        g_autofree gchar *dup_name = NULL;
        DupCheck dup = { .depth = 0 };
        gboolean ok;

        if (!check_bytes(line, len, max, what, error) || !check_syntax(line, len, error))
                return FALSE;
        parser = json_parser_new_immutable();
        g_signal_connect(parser, "object-start", G_CALLBACK(on_object_start), &dup);
        g_signal_connect(parser, "object-member", G_CALLBACK(on_object_member), &dup);
        g_signal_connect(parser, "object-end", G_CALLBACK(on_object_end), &dup);
        ok = json_parser_load_from_data(parser, line, (gssize)len, &local);
        dup_name = g_steal_pointer(&dup.dup);
        if (!ok) {
                /* Not expected after check_syntax(); json-glib's word is final. */
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_PARSE,
                            "parse error: %s", local->message);
                return FALSE;
        }
        if (dup_name) {
                g_autofree gchar *shown = printable_name(dup_name);

                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_REQUEST,
                            "duplicate member name '%s'", shown);
                return FALSE;
        }
        *ret_root = json_parser_steal_root(parser);
        return TRUE;
}

/* ---- Requests ---- */

struct VrotJsonrpcRequest {
        JsonNode *root;         /* owns everything below */
        JsonObject *obj;
        const char *method;
        JsonNode *id;           /* NULL for a notification */
        JsonObject *params;     /* NULL when absent */
};

void vrot_jsonrpc_request_free(VrotJsonrpcRequest *req)
{
        if (!req)
                return;
        g_clear_pointer(&req->root, json_node_unref);
        g_free(req);
}

const char *vrot_jsonrpc_request_get_method(const VrotJsonrpcRequest *req)
{
        g_return_val_if_fail(req != NULL, NULL);
        return req->method;
}

JsonNode *vrot_jsonrpc_request_get_id(const VrotJsonrpcRequest *req)
{
        g_return_val_if_fail(req != NULL, NULL);
        return req->id;
}

gboolean vrot_jsonrpc_request_is_notification(const VrotJsonrpcRequest *req)
{
        g_return_val_if_fail(req != NULL, FALSE);
        return req->id == NULL;
}

JsonObject *vrot_jsonrpc_request_get_params(const VrotJsonrpcRequest *req)
{
        g_return_val_if_fail(req != NULL, NULL);
        return req->params;
}

static gboolean node_holds(JsonNode *node, GType type)
{
        return node && JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == type;
}

static gboolean invalid_request(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static gboolean invalid_request(GError **error, const char *fmt, ...)
{
        va_list ap;
        g_autofree gchar *msg = NULL;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error_literal(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_REQUEST, msg);
        return FALSE;
}

/* JSON-RPC 4: the id is a string, a number or null; vrot takes integers
 * only, as fractional ids "SHOULD NOT" be used and compare badly. */
static gboolean id_is_valid(JsonNode *id)
{
        return JSON_NODE_HOLDS_NULL(id) || node_holds(id, G_TYPE_INT64) ||
               node_holds(id, G_TYPE_STRING);
}

static gboolean check_version(JsonObject *obj, GError **error)
{
        JsonNode *v = json_object_get_member(obj, "jsonrpc");

        if (!v)
                return invalid_request(error, "missing 'jsonrpc' member (must be \"2.0\")");
        if (!node_holds(v, G_TYPE_STRING) || strcmp(json_node_get_string(v), "2.0") != 0)
                return invalid_request(error, "'jsonrpc' must be \"2.0\"");
        return TRUE;
}

static gboolean check_members(JsonObject *obj, GError **error)
{
        static const char *const known[] = { "jsonrpc", "method", "params", "id", NULL };
        g_autoptr(GList) names = json_object_get_members(obj);

        for (GList *l = names; l; l = l->next) {
                if (!g_strv_contains(known, l->data)) {
                        g_autofree gchar *shown = printable_name(l->data);

                        return invalid_request(error, "unknown member '%s' in request "
                                               "(jsonrpc, method, params and id are allowed)",
                                               shown);
                }
        }
        return TRUE;
}

static gboolean check_method(VrotJsonrpcRequest *req, GError **error)
{
        JsonNode *m = json_object_get_member(req->obj, "method");
        const char *s;
        gsize n;

        if (!m)
                return invalid_request(error, "missing 'method' member");
        if (!node_holds(m, G_TYPE_STRING))
                return invalid_request(error, "'method' must be a string");
        s = json_node_get_string(m);
        n = strlen(s);
        if (n == 0)
                return invalid_request(error, "'method' must not be empty");
        if (n > VROT_JSONRPC_MAX_METHOD)
                return invalid_request(error, "'method' is longer than %d characters",
                                       VROT_JSONRPC_MAX_METHOD);
        /* Method names end up in logs and messages: keep them plain. */
        if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
                return invalid_request(error, "'method' may contain only letters, digits, "
                                       "'.', '_' and '-'");
        req->method = s;
        return TRUE;
}

static gboolean check_params(VrotJsonrpcRequest *req, GError **error)
{
        JsonNode *p = json_object_get_member(req->obj, "params");

        if (!p)
                return TRUE;
        if (JSON_NODE_HOLDS_ARRAY(p)) {
                g_set_error_literal(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_PARAMS,
                                    "'params' must be an object of named parameters; "
                                    "by-position parameters (an array) are not supported");
                return FALSE;
        }
        if (!JSON_NODE_HOLDS_OBJECT(p))
                return invalid_request(error, "'params' must be an object");
        req->params = json_node_get_object(p);
        return TRUE;
}

static gboolean check_request(VrotJsonrpcRequest *req, GError **error)
{
        JsonNode *id = json_object_get_member(req->obj, "id");

        if (id && !id_is_valid(id))
                return invalid_request(error, "'id' must be a string, an integer or null");
        req->id = id;
        return check_members(req->obj, error) &&
               check_version(req->obj, error) &&
               check_method(req, error) &&
               check_params(req, error);
}

gboolean vrot_jsonrpc_parse_request(const char *line, gsize len, VrotJsonrpcRequest **ret,
                                    GError **error)
{
        g_autoptr(JsonNode) root = NULL;
        g_autoptr(VrotJsonrpcRequest) req = NULL;
        g_autoptr(GError) local = NULL;

        g_return_val_if_fail(line != NULL || len == 0, FALSE);
        g_return_val_if_fail(ret != NULL, FALSE);

        if (!load_json(line ? line : "", len, VROT_JSONRPC_MAX_LINE, "request", &root, error))
                return FALSE;
        if (JSON_NODE_HOLDS_ARRAY(root))
                return invalid_request(error, "batch requests (a JSON array) are not supported; "
                                       "send one request object per line");
        if (!JSON_NODE_HOLDS_OBJECT(root))
                return invalid_request(error, "a request must be a JSON object");
        req = g_new0(VrotJsonrpcRequest, 1);
        req->obj = json_node_get_object(root);
        req->root = g_steal_pointer(&root);
        if (!check_request(req, &local)) {
                error_attach_id(local, req->id);
                g_propagate_error(error, g_steal_pointer(&local));
                return FALSE;
        }
        *ret = g_steal_pointer(&req);
        return TRUE;
}

/* ---- Typed parameters ---- */

static gboolean param_error(GError **error, const char *name, const char *fmt, ...)
        G_GNUC_PRINTF(3, 4);

static gboolean param_error(GError **error, const char *name, const char *fmt, ...)
{
        va_list ap;
        g_autofree gchar *msg = NULL;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_PARAMS,
                    "parameter '%s' %s", name, msg);
        return FALSE;
}

gboolean vrot_jsonrpc_param_has(const VrotJsonrpcRequest *req, const char *name)
{
        g_return_val_if_fail(req != NULL && name != NULL, FALSE);
        return req->params && json_object_has_member(req->params, name);
}

/* Looks @name up: TRUE with *ret NULL when it is optional and absent. */
static gboolean param_get(const VrotJsonrpcRequest *req, const char *name,
                          VrotJsonrpcPresence presence, JsonNode **ret, GError **error)
{
        JsonNode *node;

        g_return_val_if_fail(req != NULL && name != NULL, FALSE);
        node = req->params ? json_object_get_member(req->params, name) : NULL;
        if (!node && presence == VROT_JSONRPC_REQUIRED) {
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_PARAMS,
                            "missing required parameter '%s'", name);
                return FALSE;
        }
        *ret = node;
        return TRUE;
}

gboolean vrot_jsonrpc_params_check_known(const VrotJsonrpcRequest *req,
                                         const char *const *known, GError **error)
{
        g_autoptr(GList) names = NULL;

        g_return_val_if_fail(req != NULL && known != NULL, FALSE);
        if (!req->params)
                return TRUE;
        names = json_object_get_members(req->params);
        for (GList *l = names; l; l = l->next) {
                if (!g_strv_contains(known, l->data)) {
                        g_autofree gchar *shown = printable_name(l->data);

                        g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_PARAMS,
                                    "unknown parameter '%s' for method '%s'", shown,
                                    req->method);
                        return FALSE;
                }
        }
        return TRUE;
}

gboolean vrot_jsonrpc_param_string(const VrotJsonrpcRequest *req, const char *name,
                                   VrotJsonrpcPresence presence, gsize max_len,
                                   const char **ret, GError **error)
{
        JsonNode *node = NULL;
        const char *s;

        g_return_val_if_fail(ret != NULL, FALSE);
        if (!param_get(req, name, presence, &node, error))
                return FALSE;
        if (!node)
                return TRUE;
        if (!node_holds(node, G_TYPE_STRING))
                return param_error(error, name, "must be a string");
        s = json_node_get_string(node);
        if (strlen(s) > max_len)
                return param_error(error, name, "is longer than %" G_GSIZE_FORMAT " bytes",
                                   max_len);
        *ret = s;
        return TRUE;
}

gboolean vrot_jsonrpc_param_uuid(const VrotJsonrpcRequest *req, const char *name,
                                 VrotJsonrpcPresence presence, guint8 ret[16],
                                 GError **error)
{
        JsonNode *node = NULL;
        VrotError err = { 0 };

        g_return_val_if_fail(ret != NULL, FALSE);
        if (!param_get(req, name, presence, &node, error))
                return FALSE;
        if (!node)
                return TRUE;
        if (!node_holds(node, G_TYPE_STRING))
                return param_error(error, name, "must be a UUID string");
        if (vrot_uuid_parse(json_node_get_string(node), ret, &err) < 0)
                return param_error(error, name, "must be a UUID (%s)", err.msg);
        return TRUE;
}

gboolean vrot_jsonrpc_param_uint(const VrotJsonrpcRequest *req, const char *name,
                                 VrotJsonrpcPresence presence, guint64 min, guint64 max,
                                 guint64 *ret, GError **error)
{
        JsonNode *node = NULL;
        gint64 v;

        g_return_val_if_fail(ret != NULL && min <= max, FALSE);
        if (!param_get(req, name, presence, &node, error))
                return FALSE;
        if (!node)
                return TRUE;
        v = node_holds(node, G_TYPE_INT64) ? json_node_get_int(node) : -1;
        if (!node_holds(node, G_TYPE_INT64) || v < 0 || (guint64)v < min || (guint64)v > max)
                return param_error(error, name, "must be an integer from %" G_GUINT64_FORMAT
                                   " to %" G_GUINT64_FORMAT, min, max);
        *ret = (guint64)v;
        return TRUE;
}

gboolean vrot_jsonrpc_param_bool(const VrotJsonrpcRequest *req, const char *name,
                                 VrotJsonrpcPresence presence, gboolean *ret,
                                 GError **error)
{
        JsonNode *node = NULL;

        g_return_val_if_fail(ret != NULL, FALSE);
        if (!param_get(req, name, presence, &node, error))
                return FALSE;
        if (!node)
                return TRUE;
        if (!node_holds(node, G_TYPE_BOOLEAN))
                return param_error(error, name, "must be true or false");
        *ret = json_node_get_boolean(node);
        return TRUE;
}

gboolean vrot_jsonrpc_param_enum(const VrotJsonrpcRequest *req, const char *name,
                                 VrotJsonrpcPresence presence, const char *const *choices,
                                 guint *ret, GError **error)
{
        JsonNode *node = NULL;
        g_autofree gchar *list = NULL;

        g_return_val_if_fail(ret != NULL && choices != NULL, FALSE);
        if (!param_get(req, name, presence, &node, error))
                return FALSE;
        if (!node)
                return TRUE;
        if (node_holds(node, G_TYPE_STRING)) {
                const char *s = json_node_get_string(node);

                for (guint i = 0; choices[i]; i++) {
                        if (strcmp(s, choices[i]) == 0) {
                                *ret = i;
                                return TRUE;
                        }
                }
        }
        list = g_strjoinv(", ", (gchar **)choices);
        return param_error(error, name, "must be one of: %s", list);
}

/* The value of a base64 character (RFC 4648 4), or -1. */
static int b64_value(guchar c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Four characters of a quantum into up to three bytes; -1 if not canonical. */
static int b64_quantum(const guchar *q, gboolean last, guint8 out[3])
{
        int v[4], pad = last ? (q[3] == '=') + (q[2] == '=' && q[3] == '=') : 0;
        guint32 bits = 0;

        for (int i = 0; i < 4 - pad; i++) {
                if ((v[i] = b64_value(q[i])) < 0)
                        return -1;
                bits |= (guint32)v[i] << (18 - 6 * i);
        }
        /* The bits that padding leaves over must be zero (RFC 4648 3.5):
         * exactly one string decodes to each byte sequence. */
        if ((pad == 1 && (bits & 0xff)) || (pad == 2 && (bits & 0xffff)))
                return -1;
        out[0] = bits >> 16;
        out[1] = (bits >> 8) & 0xff;
        out[2] = bits & 0xff;
        return 3 - pad;
}

gboolean vrot_jsonrpc_base64_decode(const char *s, gsize len, gsize max, GBytes **ret,
                                    GError **error)
{
        g_autoptr(GByteArray) out = NULL;

        g_return_val_if_fail((s != NULL || len == 0) && ret != NULL, FALSE);
        if (len % 4 != 0 || len / 4 * 3 > max + 2) {
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_PARAMS,
                            len % 4 ? "not base64: %" G_GSIZE_FORMAT " characters, not a multiple of 4"
                                    : "base64 of more than %" G_GSIZE_FORMAT " bytes",
                            len % 4 ? len : max);
                return FALSE;
        }
        out = g_byte_array_sized_new((guint)(len / 4 * 3));
        for (gsize i = 0; i < len; i += 4) {
                guint8 bytes[3];
                int n = b64_quantum((const guchar *)s + i, i + 4 == len, bytes);

                if (n < 0) {
                        g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_PARAMS,
                                    "not canonical base64 (RFC 4648 4, padded, no white space) "
                                    "at character %" G_GSIZE_FORMAT, i);
                        return FALSE;
                }
                g_byte_array_append(out, bytes, (guint)n);
        }
        if (out->len > max) {
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_PARAMS,
                            "base64 of more than %" G_GSIZE_FORMAT " bytes", max);
                return FALSE;
        }
        *ret = g_byte_array_free_to_bytes(g_steal_pointer(&out));
        return TRUE;
}

gboolean vrot_jsonrpc_param_base64(const VrotJsonrpcRequest *req, const char *name,
                                   VrotJsonrpcPresence presence, gsize min, gsize max,
                                   GBytes **ret, GError **error)
{
        g_autoptr(GError) local = NULL;
        g_autoptr(GBytes) bytes = NULL;
        JsonNode *node = NULL;
        const char *s;

        g_return_val_if_fail(ret != NULL && min <= max, FALSE);
        if (!param_get(req, name, presence, &node, error))
                return FALSE;
        if (!node)
                return TRUE;
        if (!node_holds(node, G_TYPE_STRING))
                return param_error(error, name, "must be a base64 string");
        s = json_node_get_string(node);
        if (!vrot_jsonrpc_base64_decode(s, strlen(s), max, &bytes, &local))
                return param_error(error, name, "%s", local->message);
        if (g_bytes_get_size(bytes) < min)
                return param_error(error, name, "must hold %" G_GSIZE_FORMAT " to %" G_GSIZE_FORMAT
                                   " bytes, not %" G_GSIZE_FORMAT, min, max, g_bytes_get_size(bytes));
        *ret = g_steal_pointer(&bytes);
        return TRUE;
}

/* ---- Building lines ---- */

/*
 * Our own compact writer instead of json-glib's generator, which (1.6) turns
 * 1e+20 into "1e+20.0" and infinity into "inf.0", neither of them JSON, and
 * copies invalid UTF-8 from strings into its output.  Recursive: the trees it
 * writes are the daemon's own or parsed ones, both of bounded depth.
 */
static const char *short_escape(guchar c)
{
        switch (c) {
        case '"': return "\\\"";
        case '\\': return "\\\\";
        case '\b': return "\\b";
        case '\f': return "\\f";
        case '\n': return "\\n";
        case '\r': return "\\r";
        case '\t': return "\\t";
        default: return NULL;
        }
}

static void write_string(GString *out, const char *s)
{
        g_autofree gchar *valid = g_utf8_validate(s, -1, NULL) ? NULL : g_utf8_make_valid(s, -1);

        g_string_append_c(out, '"');
        for (const guchar *p = (const guchar *)(valid ? valid : s); *p; p++) {
                if (short_escape(*p))
                        g_string_append(out, short_escape(*p));
                else if (*p < 0x20 || *p == 0x7f)
                        g_string_append_printf(out, "\\u%04x", *p);
                else
                        g_string_append_c(out, (char)*p);
        }
        g_string_append_c(out, '"');
}

static void write_double(GString *out, gdouble d)
{
        char buf[G_ASCII_DTOSTR_BUF_SIZE];

        if (!isfinite(d)) {
                g_string_append(out, "null");   /* JSON has no NaN or infinity */
                return;
        }
        g_ascii_dtostr(buf, sizeof(buf), d);
        g_string_append(out, buf);
        if (!strpbrk(buf, ".eE"))
                g_string_append(out, ".0");     /* read back as a double, not an integer */
}

static void write_value(GString *out, JsonNode *node)
{
        GType type = json_node_get_value_type(node);

        if (type == G_TYPE_STRING)
                write_string(out, json_node_get_string(node));
        else if (type == G_TYPE_BOOLEAN)
                g_string_append(out, json_node_get_boolean(node) ? "true" : "false");
        else if (type == G_TYPE_DOUBLE || type == G_TYPE_FLOAT)
                write_double(out, json_node_get_double(node));
        else
                g_string_append_printf(out, "%" G_GINT64_FORMAT, json_node_get_int(node));
}

static void write_node(GString *out, JsonNode *node)
{
        g_autoptr(GList) items = NULL;

        switch (JSON_NODE_TYPE(node)) {
        case JSON_NODE_NULL:
                g_string_append(out, "null");
                return;
        case JSON_NODE_VALUE:
                write_value(out, node);
                return;
        case JSON_NODE_ARRAY:
                items = json_array_get_elements(json_node_get_array(node));
                g_string_append_c(out, '[');
                for (GList *l = items; l; l = l->next) {
                        write_node(out, l->data);
                        if (l->next)
                                g_string_append_c(out, ',');
                }
                g_string_append_c(out, ']');
                return;
        case JSON_NODE_OBJECT:
                items = json_object_get_members(json_node_get_object(node));
                g_string_append_c(out, '{');
                for (GList *l = items; l; l = l->next) {
                        write_string(out, l->data);
                        g_string_append_c(out, ':');
                        write_node(out, json_object_get_member(json_node_get_object(node), l->data));
                        if (l->next)
                                g_string_append_c(out, ',');
                }
                g_string_append_c(out, '}');
                return;
        }
}

/* Takes @obj (transfer full).  Control characters in strings are escaped,
 * so the only newline is the one that ends the line. */
static gchar *finish_line(JsonObject *obj)
{
        g_autoptr(JsonNode) root = json_node_new(JSON_NODE_OBJECT);
        GString *out = g_string_new(NULL);

        json_node_take_object(root, obj);
        write_node(out, root);
        g_string_append_c(out, '\n');
        return g_string_free(out, FALSE);
}

static JsonObject *new_reply(JsonNode *id)
{
        JsonObject *obj = json_object_new();

        json_object_set_string_member(obj, "jsonrpc", "2.0");
        json_object_set_member(obj, "id", id ? json_node_copy(id) : json_node_new(JSON_NODE_NULL));
        return obj;
}

gchar *vrot_jsonrpc_build_result(JsonNode *id, JsonNode *result)
{
        JsonObject *obj = new_reply(id);

        json_object_set_member(obj, "result",
                               result ? json_node_copy(result) : json_node_new(JSON_NODE_NULL));
        return finish_line(obj);
}

gchar *vrot_jsonrpc_build_error(JsonNode *id, gint code, const char *message, JsonNode *data)
{
        JsonObject *obj, *err;

        g_return_val_if_fail(message != NULL, NULL);
        obj = new_reply(id);
        err = json_object_new();
        json_object_set_int_member(err, "code", code);
        json_object_set_string_member(err, "message", message);
        if (data)
                json_object_set_member(err, "data", json_node_copy(data));
        json_object_set_object_member(obj, "error", err);
        return finish_line(obj);
}

gchar *vrot_jsonrpc_build_error_from_gerror(JsonNode *id, const GError *error)
{
        gboolean ours;

        g_return_val_if_fail(error != NULL, NULL);
        ours = error->domain == VROT_JSONRPC_ERROR;
        if (!id)
                id = vrot_jsonrpc_error_get_id(error);
        return vrot_jsonrpc_build_error(id, ours ? error->code : VROT_JSONRPC_ERROR_INTERNAL,
                                        error->message, vrot_jsonrpc_error_get_data(error));
}

gchar *vrot_jsonrpc_build_request(JsonNode *id, const char *method, JsonObject *params)
{
        JsonObject *obj = json_object_new();

        g_return_val_if_fail(method != NULL, NULL);
        json_object_set_string_member(obj, "jsonrpc", "2.0");
        json_object_set_string_member(obj, "method", method);
        if (params)
                json_object_set_object_member(obj, "params", json_object_ref(params));
        if (id)
                json_object_set_member(obj, "id", json_node_copy(id));
        return finish_line(obj);
}

/* ---- Responses ---- */

static gboolean invalid_response(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static gboolean invalid_response(GError **error, const char *fmt, ...)
{
        va_list ap;
        g_autofree gchar *msg = NULL;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "invalid response: %s", msg);
        return FALSE;
}

/* An error object (JSON-RPC 5.1) becomes a VROT_JSONRPC_ERROR. */
static gboolean error_from_reply(JsonNode *err, GError **error)
{
        JsonObject *obj = JSON_NODE_HOLDS_OBJECT(err) ? json_node_get_object(err) : NULL;
        JsonNode *code = obj ? json_object_get_member(obj, "code") : NULL;
        JsonNode *msg = obj ? json_object_get_member(obj, "message") : NULL;
        GError *e;

        if (!obj)
                return invalid_response(error, "'error' is not an object");
        if (!node_holds(code, G_TYPE_INT64) || json_node_get_int(code) < G_MININT ||
            json_node_get_int(code) > G_MAXINT)
                return invalid_response(error, "'error' has no integer 'code'");
        if (!node_holds(msg, G_TYPE_STRING))
                return invalid_response(error, "'error' has no string 'message'");
        e = g_error_new_literal(VROT_JSONRPC_ERROR, (gint)json_node_get_int(code),
                                json_node_get_string(msg));
        vrot_jsonrpc_error_set_data(e, json_object_get_member(obj, "data"));
        g_propagate_error(error, e);
        return FALSE;
}

gboolean vrot_jsonrpc_parse_response(const char *line, gsize len, JsonNode *id,
                                     JsonNode **ret_result, GError **error)
{
        g_autoptr(JsonNode) root = NULL;
        g_autoptr(GError) local = NULL;
        JsonObject *obj;
        JsonNode *rid, *result, *err;

        g_return_val_if_fail(line != NULL || len == 0, FALSE);
        g_return_val_if_fail(id != NULL && ret_result != NULL, FALSE);

        if (!load_json(line ? line : "", len, VROT_JSONRPC_MAX_RESPONSE, "response", &root,
                       &local))
                return invalid_response(error, "%s", local->message);
        if (!JSON_NODE_HOLDS_OBJECT(root))
                return invalid_response(error, "not a JSON object");
        obj = json_node_get_object(root);
        if (!check_version(obj, &local))
                return invalid_response(error, "%s", local->message);
        rid = json_object_get_member(obj, "id");
        result = json_object_get_member(obj, "result");
        err = json_object_get_member(obj, "error");
        if (!rid)
                return invalid_response(error, "no 'id' member");
        if (!result == !err)
                return invalid_response(error, "exactly one of 'result' and 'error' expected");
        if (!(err && JSON_NODE_HOLDS_NULL(rid)) && !json_node_equal(rid, id))
                return invalid_response(error, "it answers another request (id mismatch)");
        if (err)
                return error_from_reply(err, error);
        *ret_result = json_node_copy(result);
        return TRUE;
}

/* ---- Splitter ---- */

struct VrotJsonrpcSplitter {
        gsize max_line;
        GString *partial;       /* the unfinished line, at most max_line bytes */
        GQueue lines;           /* of GString, complete lines */
        gboolean failed;
};

VrotJsonrpcSplitter *vrot_jsonrpc_splitter_new(gsize max_line)
{
        VrotJsonrpcSplitter *s = g_new0(VrotJsonrpcSplitter, 1);

        s->max_line = max_line;
        s->partial = g_string_new(NULL);
        g_queue_init(&s->lines);
        return s;
}

static void free_gstring(gpointer p)
{
        g_string_free(p, TRUE);
}

void vrot_jsonrpc_splitter_free(VrotJsonrpcSplitter *s)
{
        if (!s)
                return;
        g_queue_clear_full(&s->lines, free_gstring);
        g_string_free(s->partial, TRUE);
        g_free(s);
}

gboolean vrot_jsonrpc_splitter_feed(VrotJsonrpcSplitter *s, const void *buf, gsize len,
                                    GError **error)
{
        const char *p = buf, *end = p + len;

        g_return_val_if_fail(s != NULL && (buf != NULL || len == 0), FALSE);
        while (!s->failed && p < end) {
                const char *nl = memchr(p, '\n', (gsize)(end - p));
                gsize n = (gsize)((nl ? nl : end) - p);

                if (n > s->max_line - s->partial->len) {
                        s->failed = TRUE;
                        g_string_free(s->partial, TRUE);
                        s->partial = g_string_new(NULL);
                        break;
                }
                g_string_append_len(s->partial, p, (gssize)n);
                if (!nl)
                        break;
                /* Hand the buffer over instead of copying the line. */
                g_queue_push_tail(&s->lines, s->partial);
                s->partial = g_string_new(NULL);
                p = nl + 1;
        }
        if (s->failed) {
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_TOO_LARGE,
                            "request too large: a line is longer than %" G_GSIZE_FORMAT " bytes",
                            s->max_line);
                return FALSE;
        }
        return TRUE;
}

gchar *vrot_jsonrpc_splitter_pop(VrotJsonrpcSplitter *s, gsize *ret_len)
{
        GString *line;

        g_return_val_if_fail(s != NULL, NULL);
        line = g_queue_pop_head(&s->lines);
        if (!line)
                return NULL;
        if (ret_len)
                *ret_len = line->len;
        return g_string_free(line, FALSE);
}

gsize vrot_jsonrpc_splitter_pending(const VrotJsonrpcSplitter *s)
{
        g_return_val_if_fail(s != NULL, 0);
        return s->partial->len;
}
