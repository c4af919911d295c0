/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include <json-glib/json-glib.h>

#include "mpolicy.h"
#include "hex.h"

G_DEFINE_QUARK(vrot-mpolicy-error-quark, vrot_mpolicy_error)

#define N_PCRS 24
#define MAX_NAME 253

struct VrotMpolicy {
        GPtrArray *peers;               /* gchar*, lower-case */
        guint32 mask;
        GArray *values[N_PCRS];         /* guint8[32] each, for the PCRs of mask */
};

typedef struct Digest {
        guint8 b[32];
} Digest;

void vrot_mpolicy_free(VrotMpolicy *p)
{
        if (!p)
                return;
        if (p->peers)
                g_ptr_array_unref(p->peers);
        for (guint i = 0; i < N_PCRS; i++)
                if (p->values[i])
                        g_array_unref(p->values[i]);
        g_free(p);
}

static gboolean bad(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static gboolean bad(GError **error, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        g_propagate_error(error, g_error_new_valist(VROT_MPOLICY_ERROR, VROT_MPOLICY_ERROR_PARSE,
                                                    fmt, ap));
        va_end(ap);
        return FALSE;
}

/* A DNS name as in a certificate's dNSName: letters, digits, '-', '.'. */
static gboolean is_host_name(const gchar *s)
{
        gsize n = strlen(s);

        if (n == 0 || n > MAX_NAME || s[0] == '.' || s[0] == '-')
                return FALSE;
        for (gsize i = 0; i < n; i++)
                if (!g_ascii_isalnum(s[i]) && s[i] != '-' && s[i] != '.')
                        return FALSE;
        return TRUE;
}

static const gchar *string_of(JsonNode *n)
{
        return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
               ? json_node_get_string(n) : NULL;
}

static gboolean parse_peers(JsonNode *node, VrotMpolicy *p, GError **error)
{
        JsonArray *a = node && JSON_NODE_HOLDS_ARRAY(node) ? json_node_get_array(node) : NULL;

        if (!a || json_array_get_length(a) > VROT_MPOLICY_MAX_PEERS)
                return bad(error, "\"peers\" must be an array of at most %d host names",
                           VROT_MPOLICY_MAX_PEERS);
        for (guint i = 0; i < json_array_get_length(a); i++) {
                const gchar *name = string_of(json_array_get_element(a, i));

                if (!name || !is_host_name(name))
                        return bad(error, "peer %u is not a host name", i);
                g_ptr_array_add(p->peers, g_ascii_strdown(name, -1));
        }
        return TRUE;
}

static gboolean parse_digest(const gchar *hex, Digest *d)
{
        return hex && strlen(hex) == 64 && vrot_hex_decode(hex, 64, d->b);
}

static gboolean parse_pcrs(JsonNode *node, VrotMpolicy *p, GError **error)
{
        JsonObject *o = node && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
        JsonNode *bank = o && json_object_get_size(o) == 1 ? json_object_get_member(o, "sha256")
                                                           : NULL;
        JsonObject *b = bank && JSON_NODE_HOLDS_OBJECT(bank) ? json_node_get_object(bank) : NULL;
        g_autoptr(GList) names = b ? json_object_get_members(b) : NULL;

        if (!b || !names)
                return bad(error, "\"pcrs\" must be {\"sha256\": {\"<index>\": [\"<hex>\", ...]}} "
                           "with at least one PCR");
        for (GList *l = names; l; l = l->next) {
                JsonNode *v = json_object_get_member(b, l->data);
                JsonArray *a = JSON_NODE_HOLDS_ARRAY(v) ? json_node_get_array(v) : NULL;
                guint64 idx;

                if (!g_ascii_string_to_unsigned(l->data, 10, 0, N_PCRS - 1, &idx, NULL) ||
                    (((const gchar *)l->data)[0] == '0' && ((const gchar *)l->data)[1]))
                        return bad(error, "PCR \"%s\": not an index of 0 to %d",
                                   (const gchar *)l->data, N_PCRS - 1);
                if (!a || json_array_get_length(a) == 0 ||
                    json_array_get_length(a) > VROT_MPOLICY_MAX_VALUES)
                        return bad(error, "PCR %u: 1 to %d accepted values", (guint)idx,
                                   VROT_MPOLICY_MAX_VALUES);
                p->values[idx] = g_array_new(FALSE, FALSE, sizeof(Digest));
                for (guint i = 0; i < json_array_get_length(a); i++) {
                        Digest d;

                        if (!parse_digest(string_of(json_array_get_element(a, i)), &d))
                                return bad(error, "PCR %u, value %u: not 64 hex digits",
                                           (guint)idx, i);
                        g_array_append_val(p->values[idx], d);
                }
                p->mask |= 1u << idx;
        }
        return TRUE;
}

VrotMpolicy *vrot_mpolicy_parse(const gchar *text, gsize len, GError **error)
{
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(VrotMpolicy) p = g_new0(VrotMpolicy, 1);
        JsonNode *root;
        JsonObject *o;

        p->peers = g_ptr_array_new_with_free_func(g_free);
        if (len > (1u << 20) || memchr(text, 0, len) ||
            !json_parser_load_from_data(parser, text, (gssize)len, NULL) ||
            !(root = json_parser_get_root(parser)) || !JSON_NODE_HOLDS_OBJECT(root)) {
                bad(error, "the migration policy is not a JSON object (of at most 1 MiB)");
                return NULL;
        }
        o = json_node_get_object(root);
        if (json_object_get_size(o) != 2) {
                bad(error, "the migration policy has exactly \"peers\" and \"pcrs\"");
                return NULL;
        }
        if (!parse_peers(json_object_get_member(o, "peers"), p, error) ||
            !parse_pcrs(json_object_get_member(o, "pcrs"), p, error))
                return NULL;
        return g_steal_pointer(&p);
}

guint32 vrot_mpolicy_pcr_mask(const VrotMpolicy *p)
{
        return p->mask;
}

gboolean vrot_mpolicy_check_peer(const VrotMpolicy *p, const gchar *name, GError **error)
{
        for (guint i = 0; name && i < p->peers->len; i++)
                if (g_ascii_strcasecmp(p->peers->pdata[i], name) == 0)
                        return TRUE;
        g_set_error(error, VROT_MPOLICY_ERROR, VROT_MPOLICY_ERROR_PEER,
                    "peer %s is not in the migration policy", name ? name : "(unnamed)");
        return FALSE;
}

gboolean vrot_mpolicy_check_pcrs(const VrotMpolicy *p, guint32 mask, GBytes *values,
                                 GError **error)
{
        const guint8 *v = values ? g_bytes_get_data(values, NULL) : NULL;
        guint n = 0;

        if (mask != p->mask) {
                g_set_error(error, VROT_MPOLICY_ERROR, VROT_MPOLICY_ERROR_PCRS,
                            "the quote covers PCRs 0x%06x, the policy lists 0x%06x", mask,
                            p->mask);
                return FALSE;
        }
        for (guint i = 0; i < N_PCRS; i++)
                n += (mask >> i) & 1;
        if (!values || g_bytes_get_size(values) != n * 32u) {
                g_set_error(error, VROT_MPOLICY_ERROR, VROT_MPOLICY_ERROR_PCRS,
                            "%u PCR values of 32 bytes expected", n);
                return FALSE;
        }
        for (guint i = 0, k = 0; i < N_PCRS; i++) {
                gboolean ok = FALSE;

                if (!(mask & (1u << i)))
                        continue;
                for (guint j = 0; j < p->values[i]->len && !ok; j++)
                        ok = memcmp(g_array_index(p->values[i], Digest, j).b, v + 32 * k, 32) == 0;
                if (!ok) {
                        g_set_error(error, VROT_MPOLICY_ERROR, VROT_MPOLICY_ERROR_PCRS,
                                    "PCR %u of the peer has a value the policy does not accept",
                                    i);
                        return FALSE;
                }
                k++;
        }
        return TRUE;
}
