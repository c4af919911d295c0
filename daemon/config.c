/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <string.h>

#include "config.h"

G_DEFINE_QUARK(vrot-config-error-quark, vrot_config_error)

/* Every key vrotd.conf may hold: group, key, where it goes. */
typedef enum { STRING, PATH, LEVEL, PCRS, POOL, HOSTNAME } Kind;

typedef struct Key {
        const gchar *group;
        const gchar *name;
        Kind kind;
        gsize offset;
} Key;

static const Key keys[] = {
        { "daemon", "state-dir", PATH, G_STRUCT_OFFSET(VrotConfig, state_dir) },
        { "daemon", "runtime-dir", PATH, G_STRUCT_OFFSET(VrotConfig, runtime_dir) },
        { "daemon", "admin-group", STRING, G_STRUCT_OFFSET(VrotConfig, admin_group) },
        { "daemon", "worker-user", STRING, G_STRUCT_OFFSET(VrotConfig, worker_user) },
        { "daemon", "log-level", LEVEL, G_STRUCT_OFFSET(VrotConfig, log_level) },
        { "daemon", "pool-size", POOL, G_STRUCT_OFFSET(VrotConfig, pool_size) },
        { "host-tpm", "tcti", STRING, G_STRUCT_OFFSET(VrotConfig, tcti) },
        { "host-tpm", "seal-pcrs", PCRS, G_STRUCT_OFFSET(VrotConfig, seal_pcrs) },
        { "operator", "policy-key", PATH, G_STRUCT_OFFSET(VrotConfig, policy_key) },
        { "operator", "recovery-key", PATH, G_STRUCT_OFFSET(VrotConfig, recovery_key) },
        { "operator", "fleet-root", PATH, G_STRUCT_OFFSET(VrotConfig, fleet_root) },
        { "migration", "name", HOSTNAME, G_STRUCT_OFFSET(VrotConfig, migration_name) },
        { "migration", "listen", STRING, G_STRUCT_OFFSET(VrotConfig, migration_listen) },
        { "migration", "policy", PATH, G_STRUCT_OFFSET(VrotConfig, migration_policy) },
        { "migration", "crl", PATH, G_STRUCT_OFFSET(VrotConfig, migration_crl) },
};

const gchar *vrot_config_worker_user(const VrotConfig *cfg)
{
        if (cfg->worker_user)
                return g_str_equal(cfg->worker_user, "root") ? NULL : cfg->worker_user;
        return cfg->dev ? NULL : VROT_CONFIG_WORKER_USER_DEFAULT;
}

VrotConfig *vrot_config_new(void)
{
        VrotConfig *cfg = g_new0(VrotConfig, 1);

        cfg->state_dir = g_strdup("/var/lib/vrot");
        cfg->runtime_dir = g_strdup("/run/vrot");
        cfg->tcti = g_strdup("device:/dev/tpmrm0");
        cfg->log_level = g_strdup("info");
        cfg->seal_pcrs = 1u << 0 | 1u << 2 | 1u << 4 | 1u << 7;
        cfg->pool_size = VROT_CONFIG_POOL_SIZE_DEFAULT;
        return cfg;
}

void vrot_config_free(VrotConfig *cfg)
{
        if (!cfg)
                return;
        g_free(cfg->state_dir);
        g_free(cfg->runtime_dir);
        g_free(cfg->tcti);
        g_free(cfg->admin_group);
        g_free(cfg->worker_user);
        g_free(cfg->log_level);
        g_free(cfg->policy_key);
        g_free(cfg->recovery_key);
        g_free(cfg->fleet_root);
        g_free(cfg->migration_name);
        g_free(cfg->migration_listen);
        g_free(cfg->migration_policy);
        g_free(cfg->migration_crl);
        g_free(cfg);
}

gboolean vrot_config_parse_pcrs(const gchar *s, guint *ret, GError **error)
{
        g_auto(GStrv) parts = g_strsplit(s, ",", -1);
        guint mask = 0;

        for (gchar **p = parts; *p; p++) {
                guint64 n;
                if (!g_ascii_string_to_unsigned(g_strstrip(*p), 10, 0, 23, &n, NULL)) {
                        g_set_error(error, VROT_CONFIG_ERROR, VROT_CONFIG_ERROR_INVALID,
                                    "'%s' is not a PCR number 0-23", *p);
                        return FALSE;
                }
                mask |= 1u << n;
        }
        if (!mask) {
                g_set_error(error, VROT_CONFIG_ERROR, VROT_CONFIG_ERROR_INVALID,
                            "an empty PCR selection seals to nothing");
                return FALSE;
        }
        *ret = mask;
        return TRUE;
}

static gboolean check_value(const Key *k, const gchar *v, GError **error)
{
        static const gchar *const levels[] = { "error", "warning", "info", "debug", NULL };

        if (k->kind == PATH && !g_path_is_absolute(v)) {
                g_set_error(error, VROT_CONFIG_ERROR, VROT_CONFIG_ERROR_INVALID,
                            "[%s] %s: '%s' is not an absolute path", k->group, k->name, v);
                return FALSE;
        }
        if (k->kind == LEVEL && !g_strv_contains(levels, v)) {
                g_set_error(error, VROT_CONFIG_ERROR, VROT_CONFIG_ERROR_INVALID,
                            "[%s] %s: '%s' is not one of error, warning, info, debug",
                            k->group, k->name, v);
                return FALSE;
        }
        if (!*v) {
                g_set_error(error, VROT_CONFIG_ERROR, VROT_CONFIG_ERROR_INVALID,
                            "[%s] %s: empty value", k->group, k->name);
                return FALSE;
        }
        if (k->kind == HOSTNAME && (strlen(v) > 64 || v[0] == '-' || v[0] == '.' ||
                                    strspn(v, "abcdefghijklmnopqrstuvwxyz"
                                              "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") !=
                                    strlen(v))) {
                g_set_error(error, VROT_CONFIG_ERROR, VROT_CONFIG_ERROR_INVALID,
                            "[%s] %s: '%s' is not a host name (letters, digits, '-' and '.', "
                            "at most 64)", k->group, k->name, v);
                return FALSE;
        }
        return TRUE;
}

static const Key *find_key(const gchar *group, const gchar *name)
{
        for (gsize i = 0; i < G_N_ELEMENTS(keys); i++)
                if (g_str_equal(keys[i].group, group) && g_str_equal(keys[i].name, name))
                        return &keys[i];
        return NULL;
}

/* The keys that are numbers, not strings, into @staged. */
static gboolean stage_number(const Key *k, const gchar *v, VrotConfig *staged, GError **error)
{
        guint64 n;

        if (k->kind == PCRS)
                return vrot_config_parse_pcrs(v, &staged->seal_pcrs, error);
        if (!g_ascii_string_to_unsigned(v, 10, 0, VROT_CONFIG_POOL_SIZE_MAX, &n, NULL)) {
                g_set_error(error, VROT_CONFIG_ERROR, VROT_CONFIG_ERROR_INVALID,
                            "'%s' is not a number 0-%u", v, VROT_CONFIG_POOL_SIZE_MAX);
                return FALSE;
        }
        staged->pool_size = (guint)n;
        return TRUE;
}

/* Checks every key of @kf; fills @staged (same layout as VrotConfig). */
static gboolean stage(GKeyFile *kf, VrotConfig *staged, GError **error)
{
        g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);

        for (gchar **g = groups; *g; g++) {
                g_auto(GStrv) names = g_key_file_get_keys(kf, *g, NULL, NULL);
                for (gchar **n = names; n && *n; n++) {
                        const Key *k = find_key(*g, *n);
                        g_autofree gchar *v = NULL;

                        if (!k) {
                                g_set_error(error, VROT_CONFIG_ERROR, VROT_CONFIG_ERROR_UNKNOWN_KEY,
                                            "unknown key [%s] %s", *g, *n);
                                return FALSE;
                        }
                        v = g_key_file_get_string(kf, *g, *n, NULL);
                        if (!v) {
                                g_set_error(error, VROT_CONFIG_ERROR, VROT_CONFIG_ERROR_INVALID,
                                            "[%s] %s: not a valid string", *g, *n);
                                return FALSE;
                        }
                        if (!check_value(k, v, error))
                                return FALSE;
                        if (k->kind == PCRS || k->kind == POOL) {
                                if (!stage_number(k, v, staged, error)) {
                                        g_prefix_error(error, "[%s] %s: ", *g, *n);
                                        return FALSE;
                                }
                                continue;
                        }
                        gchar **slot = G_STRUCT_MEMBER_P(staged, k->offset);
                        g_free(*slot);
                        *slot = g_steal_pointer(&v);
                }
        }
        return TRUE;
}

gboolean vrot_config_parse(VrotConfig *cfg, const gchar *data, gsize len, GError **error)
{
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_autoptr(GError) local = NULL;
        VrotConfig staged = { 0 };
        gboolean ok;

        if (memchr(data, '\0', len)) {
                g_set_error(error, VROT_CONFIG_ERROR, VROT_CONFIG_ERROR_INVALID,
                            "the configuration holds a NUL byte");
                return FALSE;
        }
        if (!g_key_file_load_from_data(kf, data, len, G_KEY_FILE_NONE, &local)) {
                g_set_error(error, VROT_CONFIG_ERROR, VROT_CONFIG_ERROR_INVALID,
                            "malformed configuration: %s", local->message);
                return FALSE;
        }
        staged.seal_pcrs = cfg->seal_pcrs;
        staged.pool_size = cfg->pool_size;
        ok = stage(kf, &staged, error);
        /* Apply all or nothing. */
        for (gsize i = 0; i < G_N_ELEMENTS(keys); i++) {
                gchar **from, **to;
                if (keys[i].kind == PCRS || keys[i].kind == POOL)
                        continue;
                from = G_STRUCT_MEMBER_P(&staged, keys[i].offset);
                to = G_STRUCT_MEMBER_P(cfg, keys[i].offset);
                if (ok && *from) {
                        g_free(*to);
                        *to = g_steal_pointer(from);
                }
                g_clear_pointer(from, g_free);
        }
        if (ok) {
                cfg->seal_pcrs = staged.seal_pcrs;
                cfg->pool_size = staged.pool_size;
        }
        return ok;
}

gboolean vrot_config_load(VrotConfig *cfg, const gchar *path, GError **error)
{
        g_autofree gchar *data = NULL;
        gsize len = 0;

        if (!g_file_get_contents(path, &data, &len, error)) {
                g_prefix_error(error, "reading %s: ", path);
                return FALSE;
        }
        if (!vrot_config_parse(cfg, data, len, error)) {
                g_prefix_error(error, "%s: ", path);
                return FALSE;
        }
        return TRUE;
}
