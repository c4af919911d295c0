/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <json-glib/json-glib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "durable.h"
#include "registry.h"
#include "uuid.h"
#include "hex.h"

G_DEFINE_QUARK(vrot-registry-error-quark, vrot_registry_error)

#define MAC_PREFIX "hmac-sha256 "
#define MAX_FILE (16u << 20)
#define MAX_NAME 256

struct VrotRegistry {
        GHashTable *by_uuid;            /* uuid -> VrotInstance (owned) */
        GPtrArray *pool;                /* pool entry IDs (owned strings), oldest first */
        GPtrArray *identities;          /* VrotIdentity (owned), in issue order */
        GPtrArray *migrations;          /* VrotMigrationRecord (owned), oldest first */
        guint64 checkpoint;
        guint64 crl_number;
};

static const gchar *const kind_names[] = { "vm", "service", NULL };  /* for g_strv_contains */

static gboolean pool_lists(const VrotRegistry *r, const gchar *id, guint *ret_index);

VrotRegistry *vrot_registry_new(void)
{
        VrotRegistry *r = g_new0(VrotRegistry, 1);

        r->by_uuid = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                           (GDestroyNotify)vrot_instance_free);
        r->pool = g_ptr_array_new_with_free_func(g_free);
        r->identities = g_ptr_array_new_with_free_func((GDestroyNotify)vrot_identity_free);
        r->migrations = g_ptr_array_new_with_free_func((GDestroyNotify)vrot_migration_record_free);
        return r;
}

void vrot_registry_free(VrotRegistry *r)
{
        if (!r)
                return;
        g_hash_table_unref(r->by_uuid);
        g_ptr_array_unref(r->pool);
        g_ptr_array_unref(r->identities);
        g_ptr_array_unref(r->migrations);
        g_free(r);
}

void vrot_instance_free(VrotInstance *inst)
{
        if (!inst)
                return;
        g_free(inst->uuid);
        g_free(inst->name);
        OPENSSL_cleanse(inst->salt, sizeof(inst->salt));
        g_free(inst);
}

void vrot_identity_free(VrotIdentity *id)
{
        if (!id)
                return;
        g_free(id->serial);
        g_free(id->instance);
        g_free(id->name);
        g_free(id->uri);
        g_free(id);
}

static void mac(const guint8 *key, const gchar *data, gsize len, guint8 out[32])
{
        unsigned int n = 32;

        HMAC(EVP_sha256(), key, VROT_REGISTRY_KEY_LEN, (const guint8 *)data, len, out, &n);
}

static gboolean refuse(GError **error, const gchar *fmt, ...) G_GNUC_PRINTF(2, 3);
static gboolean refuse(GError **error, const gchar *fmt, ...)
{
        g_autofree gchar *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error(error, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_REFUSED, "registry refused: %s", msg);
        return FALSE;
}

static JsonNode *instance_to_json(const VrotInstance *i)
{
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autofree gchar *salt = g_malloc(VROT_INSTANCE_SALT_LEN * 2 + 1);

        for (gsize k = 0; k < VROT_INSTANCE_SALT_LEN; k++)
                g_snprintf(salt + 2 * k, 3, "%02x", i->salt[k]);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "uuid");
        json_builder_add_string_value(b, i->uuid);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, i->name);
        json_builder_set_member_name(b, "kind");
        json_builder_add_string_value(b, kind_names[i->kind]);
        json_builder_set_member_name(b, "owner");
        json_builder_add_int_value(b, i->owner);
        json_builder_set_member_name(b, "salt");
        json_builder_add_string_value(b, salt);
        json_builder_set_member_name(b, "generation");
        json_builder_add_int_value(b, (gint64)i->generation);
        json_builder_set_member_name(b, "created");
        json_builder_add_int_value(b, i->created);
        json_builder_set_member_name(b, "deleted");
        json_builder_add_boolean_value(b, i->deleted);
        if (i->migrated) {
                json_builder_set_member_name(b, "migrated");
                json_builder_add_boolean_value(b, TRUE);
        }
        if (i->reendorse && !i->deleted) {      /* a tombstone has no certificates to renew */
                json_builder_set_member_name(b, "reendorse");
                json_builder_add_boolean_value(b, TRUE);
        }
        json_builder_end_object(b);
        OPENSSL_cleanse(salt, VROT_INSTANCE_SALT_LEN * 2);
        return json_builder_get_root(b);
}

static JsonNode *identity_to_json(const VrotIdentity *id)
{
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "serial");
        json_builder_add_string_value(b, id->serial);
        json_builder_set_member_name(b, "instance");
        json_builder_add_string_value(b, id->instance);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, id->name);
        json_builder_set_member_name(b, "uri");
        json_builder_add_string_value(b, id->uri);
        json_builder_set_member_name(b, "handle");
        json_builder_add_int_value(b, id->handle);
        json_builder_set_member_name(b, "issued");
        json_builder_add_int_value(b, id->issued);
        json_builder_set_member_name(b, "not_after");
        json_builder_add_int_value(b, id->not_after);
        json_builder_set_member_name(b, "revoked");
        json_builder_add_int_value(b, id->revoked);
        json_builder_end_object(b);
        return json_builder_get_root(b);
}

JsonNode *vrot_migration_record_to_json(const VrotMigrationRecord *m)
{
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "id");
        json_builder_add_string_value(b, m->id);
        json_builder_set_member_name(b, "uuid");
        json_builder_add_string_value(b, m->uuid);
        json_builder_set_member_name(b, "state");
        json_builder_add_string_value(b, vrot_migration_state_name(m->state));
        json_builder_set_member_name(b, "peer");
        json_builder_add_string_value(b, m->peer);
        json_builder_set_member_name(b, "peer_name");
        json_builder_add_string_value(b, m->peer_name);
        json_builder_set_member_name(b, "since");
        json_builder_add_int_value(b, m->since);
        if (m->live) {
                json_builder_set_member_name(b, "live");
                json_builder_add_boolean_value(b, TRUE);
        }
        json_builder_end_object(b);
        return json_builder_get_root(b);
}

static gint by_uuid(gconstpointer a, gconstpointer b)
{
        return strcmp((*(VrotInstance *const *)a)->uuid, (*(VrotInstance *const *)b)->uuid);
}

gchar *vrot_registry_serialize(const VrotRegistry *r, const guint8 *key, gsize *ret_len)
{
        g_autoptr(GPtrArray) all = vrot_registry_list(r);
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;
        g_autofree gchar *body = NULL;
        guint8 tag[32];
        GString *out;

        g_ptr_array_sort(all, by_uuid);         /* stable output, stable MAC */
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "version");
        json_builder_add_int_value(b, 1);
        json_builder_set_member_name(b, "checkpoint");
        json_builder_add_int_value(b, (gint64)r->checkpoint);
        json_builder_set_member_name(b, "instances");
        json_builder_begin_array(b);
        for (guint i = 0; i < all->len; i++)
                json_builder_add_value(b, instance_to_json(all->pdata[i]));
        json_builder_end_array(b);
        json_builder_set_member_name(b, "pool");
        json_builder_begin_array(b);
        for (guint i = 0; i < r->pool->len; i++)
                json_builder_add_string_value(b, r->pool->pdata[i]);
        json_builder_end_array(b);
        json_builder_set_member_name(b, "identities");
        json_builder_begin_array(b);
        for (guint i = 0; i < r->identities->len; i++)
                json_builder_add_value(b, identity_to_json(r->identities->pdata[i]));
        json_builder_end_array(b);
        json_builder_set_member_name(b, "crl_number");
        json_builder_add_int_value(b, (gint64)r->crl_number);
        json_builder_set_member_name(b, "migrations");
        json_builder_begin_array(b);
        for (guint i = 0; i < r->migrations->len; i++)
                json_builder_add_value(b, vrot_migration_record_to_json(r->migrations->pdata[i]));
        json_builder_end_array(b);
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        body = json_generator_to_data(gen, NULL);
        mac(key, body, strlen(body), tag);
        out = g_string_new(body);
        g_string_append_c(out, '\n');
        g_string_append(out, MAC_PREFIX);
        for (gsize k = 0; k < sizeof(tag); k++)
                g_string_append_printf(out, "%02x", tag[k]);
        g_string_append_c(out, '\n');
        *ret_len = out->len;
        return g_string_free(out, FALSE);
}

static gboolean hex_decode(const gchar *s, guint8 *out, gsize n)
{
        return strlen(s) == 2 * n && vrot_hex_decode(s, 2 * n, out);
}

/* Splits "<body>\nhmac-sha256 <hex>\n" and checks the MAC over <body>. */
static gboolean authenticate(const gchar *data, gsize len, const guint8 *key, gsize *ret_body,
                             GError **error)
{
        const gchar *nl = NULL;
        guint8 want[32], got[32];
        gchar hex[65];

        if (len < sizeof(MAC_PREFIX) + 64 + 1 || data[len - 1] != '\n' || memchr(data, '\0', len))
                return refuse(error, "truncated or not a vrot registry");
        for (gsize k = len - 1; k-- > 0;)
                if (data[k] == '\n') {
                        nl = data + k;
                        break;
                }
        if (!nl || (gsize)(data + len - nl) != 1 + strlen(MAC_PREFIX) + 64 + 1 ||
            strncmp(nl + 1, MAC_PREFIX, strlen(MAC_PREFIX)) != 0)
                return refuse(error, "no MAC line");
        memcpy(hex, nl + 1 + strlen(MAC_PREFIX), 64);
        hex[64] = '\0';
        if (!hex_decode(hex, want, sizeof(want)))
                return refuse(error, "malformed MAC");
        mac(key, data, (gsize)(nl - data), got);
        if (CRYPTO_memcmp(want, got, sizeof(got)) != 0)
                return refuse(error, "MAC mismatch (edited, or written under another host's key)");
        *ret_body = (gsize)(nl - data);
        return TRUE;
}

static gboolean instance_from_json(JsonNode *node, VrotInstance **ret, GError **error)
{
        g_autoptr(VrotInstance) i = g_new0(VrotInstance, 1);
        JsonObject *o = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
        const gchar *uuid, *name, *kind, *salt;
        guint8 raw[16];
        char canon[VROT_UUID_STR_LEN + 1];
        gint64 owner, generation;

        JsonNode *migrated = o ? json_object_get_member(o, "migrated") : NULL;
        JsonNode *reendorse = o ? json_object_get_member(o, "reendorse") : NULL;

        if (!o || json_object_get_size(o) != 8u + (migrated != NULL) + (reendorse != NULL))
                return refuse(error, "an instance entry is not an object of 8 members (and "
                              "\"migrated\" or \"reendorse\")");
        uuid = json_object_get_string_member_with_default(o, "uuid", NULL);
        name = json_object_get_string_member_with_default(o, "name", NULL);
        kind = json_object_get_string_member_with_default(o, "kind", NULL);
        salt = json_object_get_string_member_with_default(o, "salt", NULL);
        owner = json_object_get_int_member_with_default(o, "owner", -1);
        generation = json_object_get_int_member_with_default(o, "generation", -1);
        if (!uuid || vrot_uuid_parse(uuid, raw, NULL) < 0)
                return refuse(error, "bad instance UUID");
        vrot_uuid_format(raw, canon);
        if (!name || strlen(name) > MAX_NAME || !g_utf8_validate(name, -1, NULL))
                return refuse(error, "instance %s: bad name", canon);
        if (!kind || !g_strv_contains(kind_names, kind))
                return refuse(error, "instance %s: bad kind", canon);
        if (!salt || !hex_decode(salt, i->salt, sizeof(i->salt)))
                return refuse(error, "instance %s: bad salt", canon);
        if (owner < 0 || owner > G_MAXUINT32 || generation < 0 ||
            !json_object_has_member(o, "created") || !json_object_has_member(o, "deleted"))
                return refuse(error, "instance %s: bad owner, generation, created or deleted", canon);
        i->uuid = g_strdup(canon);
        i->name = g_strdup(name);
        i->kind = g_str_equal(kind, "vm") ? VROT_INSTANCE_VM : VROT_INSTANCE_SERVICE;
        i->owner = (guint32)owner;
        i->generation = (guint64)generation;
        i->created = json_object_get_int_member(o, "created");
        i->deleted = json_object_get_boolean_member(o, "deleted");
        if (migrated && (!JSON_NODE_HOLDS_VALUE(migrated) ||
                         json_node_get_value_type(migrated) != G_TYPE_BOOLEAN ||
                         !json_node_get_boolean(migrated) || !i->deleted))
                return refuse(error, "instance %s: \"migrated\" is true only on a tombstone", canon);
        i->migrated = migrated != NULL;
        if (reendorse && (!JSON_NODE_HOLDS_VALUE(reendorse) ||
                          json_node_get_value_type(reendorse) != G_TYPE_BOOLEAN ||
                          !json_node_get_boolean(reendorse) || i->deleted))
                return refuse(error, "instance %s: \"reendorse\" is true only on a live instance",
                              canon);
        i->reendorse = reendorse != NULL;
        *ret = g_steal_pointer(&i);
        return TRUE;
}

/* "pool": optional (older registries), an array of distinct canonical
 * UUIDs that are not instances; parsed after the instances. */
static gboolean pool_from_json(JsonObject *root, VrotRegistry *r, GError **error)
{
        JsonNode *node = json_object_get_member(root, "pool");
        JsonArray *list;

        if (!node)
                return TRUE;
        if (!JSON_NODE_HOLDS_ARRAY(node))
                return refuse(error, "\"pool\" is not an array");
        list = json_node_get_array(node);
        if (json_array_get_length(list) > VROT_REGISTRY_POOL_MAX)
                return refuse(error, "more than %u pool entries", VROT_REGISTRY_POOL_MAX);
        for (guint k = 0; k < json_array_get_length(list); k++) {
                JsonNode *e = json_array_get_element(list, k);
                const gchar *id = JSON_NODE_HOLDS_VALUE(e) &&
                                  json_node_get_value_type(e) == G_TYPE_STRING
                                  ? json_node_get_string(e) : NULL;
                guint8 raw[16];
                char canon[VROT_UUID_STR_LEN + 1];

                if (!id || vrot_uuid_parse(id, raw, NULL) < 0)
                        return refuse(error, "pool entry %u is not a UUID", k);
                vrot_uuid_format(raw, canon);
                if (!g_str_equal(id, canon))
                        return refuse(error, "pool entry %u is not a canonical UUID", k);
                if (!vrot_registry_pool_add(r, canon, NULL))
                        return refuse(error, "pool entry %s is listed twice or is an instance", canon);
        }
        return TRUE;
}

/* A serial as vrot_identity writes it: upper-case hex, 1 to 40 digits. */
static gboolean is_serial(const gchar *s)
{
        gsize n = s ? strlen(s) : 0;

        if (n == 0 || n > VROT_IDENTITY_SERIAL_MAX)
                return FALSE;
        for (gsize k = 0; k < n; k++) {
                if (!g_ascii_isxdigit(s[k]) || g_ascii_islower(s[k]))
                        return FALSE;
        }
        return TRUE;
}

static gboolean identity_from_json(JsonNode *node, VrotRegistry *r, GError **error)
{
        JsonObject *o = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
        static const char *const strings[] = { "serial", "instance", "name", "uri" };
        static const char *const ints[] = { "handle", "issued", "not_after", "revoked" };
        const gchar *str[G_N_ELEMENTS(strings)];
        gint64 num[G_N_ELEMENTS(ints)];
        g_autoptr(VrotIdentity) id = g_new0(VrotIdentity, 1);
        guint8 raw[16];

        if (!o || json_object_get_size(o) != G_N_ELEMENTS(strings) + G_N_ELEMENTS(ints))
                return refuse(error, "an identity entry is not an object of 8 members");
        for (gsize k = 0; k < G_N_ELEMENTS(strings); k++) {
                JsonNode *m = json_object_get_member(o, strings[k]);
                str[k] = m && JSON_NODE_HOLDS_VALUE(m) &&
                         json_node_get_value_type(m) == G_TYPE_STRING ? json_node_get_string(m)
                                                                      : NULL;
                if (!str[k] || strlen(str[k]) > 2048 || !g_utf8_validate(str[k], -1, NULL))
                        return refuse(error, "identity entry: bad \"%s\"", strings[k]);
        }
        for (gsize k = 0; k < G_N_ELEMENTS(ints); k++) {
                JsonNode *m = json_object_get_member(o, ints[k]);
                if (!m || !JSON_NODE_HOLDS_VALUE(m) || json_node_get_value_type(m) != G_TYPE_INT64 ||
                    (num[k] = json_node_get_int(m)) < 0)
                        return refuse(error, "identity entry: bad \"%s\"", ints[k]);
        }
        if (!is_serial(str[0]) || vrot_uuid_parse(str[1], raw, NULL) < 0 ||
            !vrot_registry_lookup(r, str[1]) || num[0] > G_MAXUINT32)
                return refuse(error, "identity %s: bad serial, unknown instance or bad handle",
                              str[0]);
        id->serial = g_strdup(str[0]);
        id->instance = g_strdup(str[1]);
        id->name = g_strdup(str[2]);
        id->uri = g_strdup(str[3]);
        id->handle = (guint32)num[0];
        id->issued = num[1];
        id->not_after = num[2];
        id->revoked = num[3];
        if (!vrot_registry_identity_add(r, g_steal_pointer(&id), NULL))
                return refuse(error, "identity %s listed twice, or too many", str[0]);
        return TRUE;
}

/* "identities" and "crl_number": optional (older registries: none, 0). */
static gboolean identities_from_json(JsonObject *root, VrotRegistry *r, GError **error)
{
        JsonNode *node = json_object_get_member(root, "identities");
        JsonNode *number = json_object_get_member(root, "crl_number");
        JsonArray *list;

        if (number) {
                if (!JSON_NODE_HOLDS_VALUE(number) ||
                    json_node_get_value_type(number) != G_TYPE_INT64 || json_node_get_int(number) < 0)
                        return refuse(error, "\"crl_number\" is not a non-negative integer");
                r->crl_number = (guint64)json_node_get_int(number);
        }
        if (!node)
                return TRUE;
        if (!JSON_NODE_HOLDS_ARRAY(node))
                return refuse(error, "\"identities\" is not an array");
        list = json_node_get_array(node);
        for (guint k = 0; k < json_array_get_length(list); k++) {
                if (!identity_from_json(json_array_get_element(list, k), r, error))
                        return FALSE;
        }
        return TRUE;
}

static const gchar *const state_names[VROT_MIGRATION_N_STATES + 1] = {
        [VROT_MIGRATION_LOCKED] = "locked",
        [VROT_MIGRATION_COMMITTED] = "committed",
        [VROT_MIGRATION_ABORTED] = "aborted",
        [VROT_MIGRATION_IMPORTING] = "importing",
        [VROT_MIGRATION_PREPARED] = "prepared",
        [VROT_MIGRATION_DONE] = "done",
};

static gboolean is_migration_id(const gchar *s)
{
        if (!s || strlen(s) != VROT_MIGRATION_ID_LEN)
                return FALSE;
        for (const gchar *p = s; *p; p++)
                if (!g_ascii_isxdigit(*p) || g_ascii_isupper(*p))
                        return FALSE;
        return TRUE;
}

static gboolean migration_from_json(JsonNode *node, VrotRegistry *r, GError **error)
{
        JsonObject *o = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
        static const char *const strings[] = { "id", "uuid", "state", "peer", "peer_name" };
        const gchar *str[G_N_ELEMENTS(strings)];
        g_autoptr(VrotMigrationRecord) m = g_new0(VrotMigrationRecord, 1);
        JsonNode *since = o ? json_object_get_member(o, "since") : NULL;
        JsonNode *live = o ? json_object_get_member(o, "live") : NULL;
        guint8 raw[16];
        gint state = -1;

        if (!o || json_object_get_size(o) != G_N_ELEMENTS(strings) + 1 + (live != NULL))
                return refuse(error, "a migration record is not an object of 6 members (7 with "
                              "\"live\")");
        if (live && (!JSON_NODE_HOLDS_VALUE(live) || json_node_get_value_type(live) != G_TYPE_BOOLEAN ||
                     !json_node_get_boolean(live)))
                return refuse(error, "migration record: \"live\" is true when present");
        for (gsize k = 0; k < G_N_ELEMENTS(strings); k++) {
                JsonNode *v = json_object_get_member(o, strings[k]);
                str[k] = v && JSON_NODE_HOLDS_VALUE(v) &&
                         json_node_get_value_type(v) == G_TYPE_STRING ? json_node_get_string(v)
                                                                      : NULL;
                if (!str[k] || strlen(str[k]) > MAX_NAME || !g_utf8_validate(str[k], -1, NULL))
                        return refuse(error, "migration record: bad \"%s\"", strings[k]);
        }
        for (gint k = 0; k < VROT_MIGRATION_N_STATES; k++)
                if (g_str_equal(str[2], state_names[k]))
                        state = k;
        if (!is_migration_id(str[0]) || vrot_uuid_parse(str[1], raw, NULL) < 0 || state < 0 ||
            !since || !JSON_NODE_HOLDS_VALUE(since) ||
            json_node_get_value_type(since) != G_TYPE_INT64 || json_node_get_int(since) < 0)
                return refuse(error, "migration record %s: bad id, uuid, state or since", str[0]);
        m->id = g_strdup(str[0]);
        m->uuid = g_strdup(str[1]);
        m->state = (VrotMigrationState)state;
        m->peer = g_strdup(str[3]);
        m->peer_name = g_strdup(str[4]);
        m->since = json_node_get_int(since);
        m->live = live != NULL;
        if (!vrot_registry_migration_add(r, g_steal_pointer(&m), NULL))
                return refuse(error, "migration %s listed twice, or too many", str[0]);
        return TRUE;
}

/* "migrations": optional (older registries: none). */
static gboolean migrations_from_json(JsonObject *root, VrotRegistry *r, GError **error)
{
        JsonNode *node = json_object_get_member(root, "migrations");
        JsonArray *list;

        if (!node)
                return TRUE;
        if (!JSON_NODE_HOLDS_ARRAY(node))
                return refuse(error, "\"migrations\" is not an array");
        list = json_node_get_array(node);
        for (guint k = 0; k < json_array_get_length(list); k++) {
                if (!migration_from_json(json_array_get_element(list, k), r, error))
                        return FALSE;
        }
        return TRUE;
}

VrotRegistry *vrot_registry_parse(const gchar *data, gsize len, const guint8 *key, GError **error)
{
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(VrotRegistry) r = vrot_registry_new();
        JsonObject *root;
        JsonArray *list;
        gsize body = 0;

        if (!authenticate(data, len, key, &body, error))
                return NULL;
        if (!json_parser_load_from_data(parser, data, (gssize)body, NULL) ||
            !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
                refuse(error, "authentic but not JSON");
                return NULL;
        }
        root = json_node_get_object(json_parser_get_root(parser));
        if (json_object_get_int_member_with_default(root, "version", 0) != 1 ||
            json_object_get_int_member_with_default(root, "checkpoint", -1) < 0 ||
            !json_object_has_member(root, "instances") ||
            !JSON_NODE_HOLDS_ARRAY(json_object_get_member(root, "instances"))) {
                refuse(error, "unknown version or missing fields");
                return NULL;
        }
        r->checkpoint = (guint64)json_object_get_int_member(root, "checkpoint");
        list = json_object_get_array_member(root, "instances");
        for (guint k = 0; k < json_array_get_length(list); k++) {
                VrotInstance *inst = NULL;
                if (!instance_from_json(json_array_get_element(list, k), &inst, error))
                        return NULL;
                if (!vrot_registry_add(r, inst, NULL)) {
                        refuse(error, "instance listed twice");
                        return NULL;
                }
        }
        if (!pool_from_json(root, r, error) || !identities_from_json(root, r, error) ||
            !migrations_from_json(root, r, error))
                return NULL;
        return g_steal_pointer(&r);
}

VrotRegistry *vrot_registry_load(const gchar *path, const guint8 *key, GError **error)
{
        g_autofree gchar *data = NULL;
        g_autoptr(GError) local = NULL;
        gsize len = 0;
        VrotRegistry *r;

        if (!g_file_get_contents(path, &data, &len, &local)) {
                gboolean missing = g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT);
                g_set_error(error, VROT_REGISTRY_ERROR,
                            missing ? VROT_REGISTRY_ERROR_NOT_FOUND : VROT_REGISTRY_ERROR_IO,
                            "%s", local->message);
                return NULL;
        }
        if (len > MAX_FILE) {
                refuse(error, "%s is larger than %u bytes", path, MAX_FILE);
                return NULL;
        }
        r = vrot_registry_parse(data, len, key, error);
        if (!r)
                g_prefix_error(error, "%s: ", path);
        return r;
}

struct VrotRegistryWrite {
        int dirfd;
        int fd;
        gchar *base;
};

static gboolean io_error(GError **error, const VrotError *err)
{
        g_set_error(error, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_IO, "%s", err->msg);
        return FALSE;
}

static void write_free(VrotRegistryWrite *w)
{
        if (w->dirfd >= 0)
                close(w->dirfd);
        g_free(w->base);
        g_free(w);
}

VrotRegistryWrite *vrot_registry_stage(const VrotRegistry *r, const gchar *path,
                                       const guint8 *key, GError **error)
{
        g_autofree gchar *dir = g_path_get_dirname(path);
        g_autofree gchar *data = NULL;
        VrotRegistryWrite *w = g_new0(VrotRegistryWrite, 1);
        VrotError err = { 0 };
        gsize len = 0;

        w->base = g_path_get_basename(path);
        w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (w->dirfd < 0) {
                g_set_error(error, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_IO,
                            "%s: %s", dir, g_strerror(errno));
                write_free(w);
                return NULL;
        }
        data = vrot_registry_serialize(r, key, &len);
        /* Authenticated, no secret in it: its last version may stay as
         * the temporary file, for the next write (durable.h). */
        w->fd = vrot_durable_stage(w->dirfd, w->base, data, len, 0600, VROT_DURABLE_RECYCLE,
                                   &err);
        if (w->fd < 0 || vrot_durable_sync_staged(w->dirfd, w->base, w->fd, &err) < 0) {
                io_error(error, &err);
                write_free(w);
                return NULL;
        }
        return w;
}

gboolean vrot_registry_commit(VrotRegistryWrite *w, GError **error)
{
        VrotError err = { 0 };
        gboolean ok;

        ok = vrot_durable_rename_staged(w->dirfd, w->base, w->fd, VROT_DURABLE_RECYCLE,
                                        &err) == 0 &&
             vrot_durable_sync_dir(w->dirfd, w->base, &err) == 0;
        write_free(w);
        return ok || io_error(error, &err);
}

void vrot_registry_abandon(VrotRegistryWrite *w)
{
        if (!w)
                return;
        vrot_durable_abandon(w->dirfd, w->base, w->fd);
        write_free(w);
}

gboolean vrot_registry_save(const VrotRegistry *r, const gchar *path, const guint8 *key,
                            GError **error)
{
        VrotRegistryWrite *w = vrot_registry_stage(r, path, key, error);

        return w && vrot_registry_commit(w, error);
}

VrotInstance *vrot_registry_lookup(const VrotRegistry *r, const gchar *uuid)
{
        return g_hash_table_lookup(r->by_uuid, uuid);
}

gboolean vrot_registry_add(VrotRegistry *r, VrotInstance *inst, GError **error)
{
        VrotInstance *old = vrot_registry_lookup(r, inst->uuid);

        if (old) {
                g_set_error(error, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_EXISTS,
                            old->deleted ? "instance %s was deleted; its UUID cannot be reused"
                                         : "instance %s already exists", inst->uuid);
                vrot_instance_free(inst);
                return FALSE;
        }
        if (pool_lists(r, inst->uuid, NULL)) {
                /* Not a secret: a pool entry's ID is its directory's name. */
                g_set_error(error, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_EXISTS,
                            "%s is the ID of a pool entry; choose another UUID", inst->uuid);
                vrot_instance_free(inst);
                return FALSE;
        }
        g_hash_table_insert(r->by_uuid, inst->uuid, inst);
        return TRUE;
}

gboolean vrot_registry_forget(VrotRegistry *r, const gchar *uuid)
{
        VrotInstance *inst = vrot_registry_lookup(r, uuid);

        return inst && !inst->deleted && g_hash_table_remove(r->by_uuid, uuid);
}

GPtrArray *vrot_registry_list(const VrotRegistry *r)
{
        GPtrArray *all = g_ptr_array_new();
        GHashTableIter it;
        gpointer v;

        g_hash_table_iter_init(&it, r->by_uuid);
        while (g_hash_table_iter_next(&it, NULL, &v))
                g_ptr_array_add(all, v);
        return all;
}

const GPtrArray *vrot_registry_pool(const VrotRegistry *r)
{
        return r->pool;
}

static gboolean pool_lists(const VrotRegistry *r, const gchar *id, guint *ret_index)
{
        return g_ptr_array_find_with_equal_func(r->pool, id, g_str_equal, ret_index);
}

gboolean vrot_registry_pool_add(VrotRegistry *r, const gchar *id, GError **error)
{
        if (pool_lists(r, id, NULL) || vrot_registry_lookup(r, id)) {
                g_set_error(error, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_EXISTS,
                            "pool entry %s is listed already, or is an instance", id);
                return FALSE;
        }
        if (r->pool->len >= VROT_REGISTRY_POOL_MAX) {
                g_set_error(error, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_REFUSED,
                            "the pool lists %u entries already", r->pool->len);
                return FALSE;
        }
        g_ptr_array_add(r->pool, g_strdup(id));
        return TRUE;
}

gboolean vrot_registry_pool_remove(VrotRegistry *r, const gchar *id)
{
        guint k;

        if (!pool_lists(r, id, &k))
                return FALSE;
        g_ptr_array_remove_index(r->pool, k);
        return TRUE;
}

guint64 vrot_registry_checkpoint(const VrotRegistry *r)
{
        return r->checkpoint;
}

void vrot_registry_set_checkpoint(VrotRegistry *r, guint64 value)
{
        r->checkpoint = value;
}

/* ---- service identities ---- */

gboolean vrot_registry_identity_add(VrotRegistry *r, VrotIdentity *id, GError **error)
{
        if (vrot_registry_identity_lookup(r, id->serial) ||
            r->identities->len >= VROT_REGISTRY_IDENTITIES_MAX) {
                g_set_error(error, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_EXISTS,
                            vrot_registry_identity_lookup(r, id->serial)
                            ? "identity serial %s is listed already"
                            : "identity %s: this host holds %u identities already",
                            id->serial, VROT_REGISTRY_IDENTITIES_MAX);
                vrot_identity_free(id);
                return FALSE;
        }
        g_ptr_array_add(r->identities, id);
        return TRUE;
}

VrotIdentity *vrot_registry_identity_lookup(const VrotRegistry *r, const gchar *serial)
{
        for (guint i = 0; i < r->identities->len; i++) {
                VrotIdentity *id = r->identities->pdata[i];
                if (g_ascii_strcasecmp(id->serial, serial) == 0)
                        return id;
        }
        return NULL;
}

gboolean vrot_registry_identity_remove(VrotRegistry *r, const gchar *serial)
{
        VrotIdentity *id = vrot_registry_identity_lookup(r, serial);

        return id && g_ptr_array_remove(r->identities, id);
}

const GPtrArray *vrot_registry_identities(const VrotRegistry *r)
{
        return r->identities;
}

guint64 vrot_registry_crl_number(const VrotRegistry *r)
{
        return r->crl_number;
}

void vrot_registry_set_crl_number(VrotRegistry *r, guint64 value)
{
        r->crl_number = value;
}

/* ---- the migration journal ---- */

void vrot_migration_record_free(VrotMigrationRecord *m)
{
        if (!m)
                return;
        g_free(m->id);
        g_free(m->uuid);
        g_free(m->peer);
        g_free(m->peer_name);
        g_free(m);
}

const gchar *vrot_migration_state_name(VrotMigrationState state)
{
        g_return_val_if_fail(state < VROT_MIGRATION_N_STATES, NULL);
        return state_names[state];
}

gboolean vrot_migration_state_outgoing(VrotMigrationState state)
{
        return state <= VROT_MIGRATION_ABORTED;
}

gboolean vrot_registry_migration_add(VrotRegistry *r, VrotMigrationRecord *m, GError **error)
{
        guint done = 0;

        if (vrot_registry_migration(r, m->id) || r->migrations->len >= VROT_REGISTRY_MIGRATIONS_MAX) {
                g_set_error(error, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_EXISTS,
                            vrot_registry_migration(r, m->id)
                            ? "migration %s is known already (an ID is used once)"
                            : "migration %s: this host journals %u migrations already",
                            m->id, VROT_REGISTRY_MIGRATIONS_MAX);
                vrot_migration_record_free(m);
                return FALSE;
        }
        g_ptr_array_add(r->migrations, m);
        for (guint i = r->migrations->len; i-- > 0;) {
                VrotMigrationRecord *old = r->migrations->pdata[i];
                if (old->state == VROT_MIGRATION_DONE && ++done > VROT_REGISTRY_DONE_KEPT)
                        g_ptr_array_remove_index(r->migrations, i);
        }
        return TRUE;
}

VrotMigrationRecord *vrot_registry_migration(const VrotRegistry *r, const gchar *id)
{
        for (guint i = 0; i < r->migrations->len; i++) {
                VrotMigrationRecord *m = r->migrations->pdata[i];
                if (g_str_equal(m->id, id))
                        return m;
        }
        return NULL;
}

VrotMigrationRecord *vrot_registry_migration_of(const VrotRegistry *r, const gchar *uuid)
{
        for (guint i = 0; i < r->migrations->len; i++) {
                VrotMigrationRecord *m = r->migrations->pdata[i];
                if (g_str_equal(m->uuid, uuid) &&
                    (m->state == VROT_MIGRATION_LOCKED || m->state == VROT_MIGRATION_IMPORTING ||
                     m->state == VROT_MIGRATION_PREPARED))
                        return m;
        }
        return NULL;
}

gboolean vrot_registry_migration_remove(VrotRegistry *r, const gchar *id)
{
        VrotMigrationRecord *m = vrot_registry_migration(r, id);

        return m && g_ptr_array_remove(r->migrations, m);
}

const GPtrArray *vrot_registry_migrations(const VrotRegistry *r)
{
        return r->migrations;
}

void vrot_registry_replace(VrotRegistry *r, VrotInstance *inst)
{
        VrotInstance *old = vrot_registry_lookup(r, inst->uuid);

        g_return_if_fail(!old || old->deleted);
        if (old)
                g_hash_table_remove(r->by_uuid, inst->uuid);
        g_hash_table_insert(r->by_uuid, inst->uuid, inst);
}
