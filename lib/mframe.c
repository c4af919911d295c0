/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include <json-glib/json-glib.h>

#include "jsonrpc.h"
#include "mframe.h"
#include "uuid.h"

G_DEFINE_QUARK(vrot-mframe-error-quark, vrot_mframe_error)

#define MAX_MEMBERS 8
#define MAX_UINT ((guint64)1 << 53)     /* exact in every JSON reader */

typedef enum { K_STRING, K_UUID, K_ID, K_BASE64, K_UINT, K_BOOL } Kind;

typedef struct Member {
        const char *name;
        Kind kind;
        guint64 min, max;               /* string length, decoded bytes, or value */
} Member;

typedef struct Schema {
        const char *type;
        Member members[MAX_MEMBERS];
} Schema;

#define ID { "migration_id", K_ID, 0, 0 }

/* In VrotMframeType order. */
static const Schema schemas[VROT_MFRAME_N_TYPES] = {
        { "hello", { { "nonce", K_BASE64, 16, 64 }, { "pcr_mask", K_UINT, 1, 0xffffff } } },
        { "evidence", { { "ak_public", K_BASE64, 2, 1024 }, { "attest", K_BASE64, 1, 2048 },
                        { "signature", K_BASE64, 1, 80 }, { "pcr_mask", K_UINT, 1, 0xffffff },
                        { "pcr_values", K_BASE64, 32, 24 * 32 },
                        { "ca_public", K_BASE64, 2, 1024 }, { "ca_attest", K_BASE64, 1, 2048 },
                        { "ca_signature", K_BASE64, 1, 80 } } },
        { "offer_request", { { "uuid", K_UUID, 0, 0 }, { "kind", K_STRING, 1, 16 },
                             { "name", K_STRING, 1, 64 }, { "generation", K_UINT, 0, MAX_UINT },
                             { "owner", K_UINT, 0, G_MAXUINT32 }, { "live", K_BOOL, 0, 0 } } },
        { "offer", { ID, { "import_public", K_BASE64, 2, 1024 }, { "attest", K_BASE64, 1, 2048 },
                     { "signature", K_BASE64, 1, 80 } } },
        { "state", { ID, { "envelope", K_BASE64, 1, VROT_MFRAME_MAX / 4 * 3 } } },
        { "prepared", { ID } },
        { "commit", { ID } },
        { "done", { ID } },
        { "abort", { ID, { "reason", K_STRING, 1, 1024 } } },
        { "status", { ID } },
        { "error", { { "message", K_STRING, 1, 1024 } } },
};

typedef union Value {
        gchar *string;                  /* K_STRING, K_UUID, K_ID */
        GBytes *bytes;                  /* K_BASE64 */
        guint64 number;                 /* K_UINT, K_BOOL */
} Value;

struct VrotMframe {
        VrotMframeType type;
        Value values[MAX_MEMBERS];
        gboolean set[MAX_MEMBERS];
};

static guint n_members(const Schema *s)
{
        guint n = 0;

        while (n < MAX_MEMBERS && s->members[n].name)
                n++;
        return n;
}

/* The index of member @name, which must be of a kind in [@lo, @hi]: asking a
 * frame for a member its type does not have is a programming error. */
static guint member_index(const VrotMframe *f, const char *name, Kind lo, Kind hi)
{
        const Schema *s = &schemas[f->type];

        for (guint i = 0; i < n_members(s); i++)
                if (g_str_equal(s->members[i].name, name) && s->members[i].kind >= lo &&
                    s->members[i].kind <= hi)
                        return i;
        g_error("a %s frame has no member \"%s\" of that kind", s->type, name);
}

static gboolean invalid(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static gboolean invalid(GError **error, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        g_propagate_error(error, g_error_new_valist(VROT_MFRAME_ERROR, VROT_MFRAME_ERROR_INVALID, fmt, ap));
        va_end(ap);
        return FALSE;
}

/* 32 lower-case hex digits: a migration ID (16 random bytes). */
static gboolean is_id(const gchar *s)
{
        if (strlen(s) != 32)
                return FALSE;
        for (guint i = 0; i < 32; i++)
                if (!g_ascii_isxdigit(s[i]) || g_ascii_isupper(s[i]))
                        return FALSE;
        return TRUE;
}

static gboolean is_uuid(const gchar *s)
{
        guint8 raw[16];
        char canon[VROT_UUID_STR_LEN + 1];

        if (vrot_uuid_parse(s, raw, NULL) < 0)
                return FALSE;
        vrot_uuid_format(raw, canon);
        return g_str_equal(canon, s);
}

/* Is @v, a value of member @m, within its bounds?  What the reader accepts
 * and what the writer may write are the same rule. */
static gboolean check_value(const Member *m, const Value *v, GError **error)
{
        gsize len;

        switch (m->kind) {
        case K_STRING:
                len = strlen(v->string);
                if (len < m->min || len > m->max || !g_utf8_validate(v->string, -1, NULL))
                        return invalid(error, "\"%s\": a string of %" G_GUINT64_FORMAT " to %"
                                       G_GUINT64_FORMAT " bytes of UTF-8", m->name, m->min, m->max);
                return TRUE;
        case K_UUID:
        case K_ID:
                if (!(m->kind == K_UUID ? is_uuid(v->string) : is_id(v->string)))
                        return invalid(error, "\"%s\": not a %s", m->name,
                                       m->kind == K_UUID ? "canonical UUID"
                                                         : "migration ID (32 hex digits)");
                return TRUE;
        case K_BASE64:
                len = g_bytes_get_size(v->bytes);
                if (len < m->min || len > m->max)
                        return invalid(error, "\"%s\": canonical base64 of %" G_GUINT64_FORMAT
                                       " to %" G_GUINT64_FORMAT " bytes", m->name, m->min, m->max);
                return TRUE;
        case K_UINT:
                if (v->number < m->min || v->number > m->max)
                        return invalid(error, "\"%s\": an integer of %" G_GUINT64_FORMAT " to %"
                                       G_GUINT64_FORMAT, m->name, m->min, m->max);
                return TRUE;
        case K_BOOL:
                return TRUE;
        }
        g_assert_not_reached();
}

/* One member's value from @node, of @m's JSON type, then within its bounds. */
static gboolean read_member(const Member *m, JsonNode *node, Value *v, GError **error)
{
        GType t = node && JSON_NODE_HOLDS_VALUE(node) ? json_node_get_value_type(node) : G_TYPE_NONE;
        const gchar *s = t == G_TYPE_STRING ? json_node_get_string(node) : NULL;
        Value in = { 0 };

        switch (m->kind) {
        case K_STRING:
        case K_UUID:
        case K_ID:
                if (!s)
                        return invalid(error, "\"%s\": not a string", m->name);
                in.string = (gchar *)s;
                if (!check_value(m, &in, error))
                        return FALSE;
                v->string = g_strdup(s);
                return TRUE;
        case K_BASE64:
                if (!s || !vrot_jsonrpc_base64_decode(s, strlen(s), m->max, &in.bytes, NULL))
                        return invalid(error, "\"%s\": canonical base64 of %" G_GUINT64_FORMAT
                                       " to %" G_GUINT64_FORMAT " bytes", m->name, m->min, m->max);
                if (!check_value(m, &in, error)) {
                        g_bytes_unref(in.bytes);
                        return FALSE;
                }
                v->bytes = in.bytes;
                return TRUE;
        case K_UINT:
                if (t != G_TYPE_INT64 || json_node_get_int(node) < 0)
                        return invalid(error, "\"%s\": an integer of %" G_GUINT64_FORMAT " to %"
                                       G_GUINT64_FORMAT, m->name, m->min, m->max);
                in.number = (guint64)json_node_get_int(node);
                if (!check_value(m, &in, error))
                        return FALSE;
                v->number = in.number;
                return TRUE;
        case K_BOOL:
                if (t != G_TYPE_BOOLEAN)
                        return invalid(error, "\"%s\": true or false", m->name);
                v->number = json_node_get_boolean(node);
                return TRUE;
        }
        g_assert_not_reached();
}

static gboolean read_body(const guint8 *body, gsize len, VrotMframe *f, GError **error)
{
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) local = NULL;
        const Schema *s = NULL;
        JsonNode *root, *type;
        JsonObject *o;
        guint n;

        if (!g_utf8_validate((const gchar *)body, (gssize)len, NULL) || memchr(body, 0, len) ||
            !json_parser_load_from_data(parser, (const gchar *)body, (gssize)len, &local) ||
            !(root = json_parser_get_root(parser)) || !JSON_NODE_HOLDS_OBJECT(root))
                return invalid(error, "a frame is one JSON object");
        o = json_node_get_object(root);
        type = json_object_get_member(o, "type");
        for (guint i = 0; type && JSON_NODE_HOLDS_VALUE(type) &&
                          json_node_get_value_type(type) == G_TYPE_STRING && i < G_N_ELEMENTS(schemas);
             i++)
                if (g_str_equal(schemas[i].type, json_node_get_string(type))) {
                        s = &schemas[i];
                        f->type = (VrotMframeType)i;
                }
        if (!s)
                return invalid(error, "a frame of no known \"type\"");
        n = n_members(s);
        if (json_object_get_size(o) != n + 1)
                return invalid(error, "a %s frame has exactly %u members besides \"type\"",
                               s->type, n);
        for (guint i = 0; i < n; i++) {
                if (!read_member(&s->members[i], json_object_get_member(o, s->members[i].name),
                                 &f->values[i], error)) {
                        g_prefix_error(error, "%s frame: ", s->type);
                        return FALSE;
                }
                f->set[i] = TRUE;
        }
        return TRUE;
}

VrotMframe *vrot_mframe_parse(const guint8 *buf, gsize len, gsize *ret_used, GError **error)
{
        g_autoptr(VrotMframe) f = g_new0(VrotMframe, 1);
        guint32 n;

        if (len < 4) {
                g_set_error_literal(error, VROT_MFRAME_ERROR, VROT_MFRAME_ERROR_SHORT,
                                    "a partial frame length");
                return NULL;
        }
        n = (guint32)buf[0] << 24 | (guint32)buf[1] << 16 | (guint32)buf[2] << 8 | buf[3];
        if (n > VROT_MFRAME_MAX) {
                g_set_error(error, VROT_MFRAME_ERROR, VROT_MFRAME_ERROR_TOO_LARGE,
                            "a frame of %u bytes: at most %u", n, VROT_MFRAME_MAX);
                return NULL;
        }
        if (len - 4 < n) {
                g_set_error_literal(error, VROT_MFRAME_ERROR, VROT_MFRAME_ERROR_SHORT,
                                    "a partial frame");
                return NULL;
        }
        if (!read_body(buf + 4, n, f, error))
                return NULL;
        *ret_used = 4 + (gsize)n;
        return g_steal_pointer(&f);
}

void vrot_mframe_free(VrotMframe *f)
{
        const Schema *s;

        if (!f)
                return;
        s = &schemas[f->type];
        for (guint i = 0; i < n_members(s); i++) {
                if (!f->set[i])
                        continue;
                if (s->members[i].kind == K_BASE64)
                        g_bytes_unref(f->values[i].bytes);
                else if (s->members[i].kind <= K_ID)
                        g_free(f->values[i].string);
        }
        g_free(f);
}

VrotMframeType vrot_mframe_type(const VrotMframe *f)
{
        return f->type;
}

const char *vrot_mframe_type_name(VrotMframeType type)
{
        g_return_val_if_fail(type < VROT_MFRAME_N_TYPES, "?");
        return schemas[type].type;
}

const gchar *vrot_mframe_string(const VrotMframe *f, const char *name)
{
        guint i = member_index(f, name, K_STRING, K_ID);

        return f->set[i] ? f->values[i].string : NULL;
}

GBytes *vrot_mframe_bytes(const VrotMframe *f, const char *name)
{
        guint i = member_index(f, name, K_BASE64, K_BASE64);

        return f->set[i] ? f->values[i].bytes : NULL;
}

guint64 vrot_mframe_uint(const VrotMframe *f, const char *name)
{
        guint i = member_index(f, name, K_UINT, K_BOOL);

        return f->set[i] ? f->values[i].number : 0;
}

VrotMframe *vrot_mframe_new(VrotMframeType type)
{
        VrotMframe *f = g_new0(VrotMframe, 1);

        g_return_val_if_fail(type < VROT_MFRAME_N_TYPES, NULL);
        f->type = type;
        return f;
}

static void clear(VrotMframe *f, guint i)
{
        const Member *m = &schemas[f->type].members[i];

        if (f->set[i] && m->kind == K_BASE64)
                g_bytes_unref(f->values[i].bytes);
        else if (f->set[i] && m->kind <= K_ID)
                g_free(f->values[i].string);
        f->set[i] = TRUE;
}

void vrot_mframe_set_string(VrotMframe *f, const char *name, const gchar *value)
{
        guint i = member_index(f, name, K_STRING, K_ID);

        clear(f, i);
        f->values[i].string = g_strdup(value);
}

void vrot_mframe_set_bytes(VrotMframe *f, const char *name, GBytes *value)
{
        guint i = member_index(f, name, K_BASE64, K_BASE64);

        clear(f, i);
        f->values[i].bytes = g_bytes_ref(value);
}

void vrot_mframe_set_uint(VrotMframe *f, const char *name, guint64 value)
{
        guint i = member_index(f, name, K_UINT, K_BOOL);

        clear(f, i);
        f->values[i].number = value;
}

GBytes *vrot_mframe_encode(const VrotMframe *f, GError **error)
{
        const Schema *s = &schemas[f->type];
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;
        g_autofree gchar *text = NULL;
        GByteArray *out;
        gsize len = 0;
        guint8 prefix[4];

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "type");
        json_builder_add_string_value(b, s->type);
        for (guint i = 0; i < n_members(s); i++) {
                const Member *m = &s->members[i];

                if (!f->set[i]) {
                        invalid(error, "%s frame: \"%s\" is not set", s->type, m->name);
                        return NULL;
                }
                if (!check_value(m, &f->values[i], error)) {
                        g_prefix_error(error, "encoding a %s frame: ", s->type);
                        return NULL;
                }
                json_builder_set_member_name(b, m->name);
                if (m->kind == K_BASE64) {
                        g_autofree gchar *b64 = g_base64_encode(
                                g_bytes_get_data(f->values[i].bytes, NULL),
                                g_bytes_get_size(f->values[i].bytes));
                        json_builder_add_string_value(b, b64);
                } else if (m->kind == K_UINT) {
                        json_builder_add_int_value(b, (gint64)MIN(f->values[i].number, MAX_UINT));
                } else if (m->kind == K_BOOL) {
                        json_builder_add_boolean_value(b, f->values[i].number != 0);
                } else {
                        json_builder_add_string_value(b, f->values[i].string);
                }
        }
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        text = json_generator_to_data(gen, &len);
        if (len > VROT_MFRAME_MAX) {
                invalid(error, "%s frame: %" G_GSIZE_FORMAT " bytes, at most %u", s->type, len,
                        VROT_MFRAME_MAX);
                return NULL;
        }
        prefix[0] = (guint8)(len >> 24);
        prefix[1] = (guint8)(len >> 16);
        prefix[2] = (guint8)(len >> 8);
        prefix[3] = (guint8)len;
        out = g_byte_array_sized_new((guint)len + 4);
        g_byte_array_append(out, prefix, 4);
        g_byte_array_append(out, (const guint8 *)text, (guint)len);
        return g_byte_array_free_to_bytes(out);
}
