/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "autoptr.h"
#include "jsonrpc.h"
#include "vrotctl.h"
#include "x509.h"

G_DEFINE_QUARK(vrotctl-usage-error-quark, vrotctl_usage_error)

#define MAX_FILE (1024 * 1024)
#define MAX_CERTS 16

/* @cmd's options; what is not an option stays in @argv. */
static gboolean parse_options(const VrotctlCommand *cmd, GOptionEntry *entries, int *argc,
                              char ***argv, GError **error)
{
        g_autoptr(GOptionContext) oc = g_option_context_new(cmd->args);
        g_autoptr(GError) local = NULL;

        g_option_context_add_main_entries(oc, entries, NULL);
        g_option_context_set_help_enabled(oc, FALSE);
        if (!g_option_context_parse(oc, argc, argv, &local)) {
                g_set_error(error, VROTCTL_USAGE_ERROR, 0, "%s: %s", cmd->name, local->message);
                return FALSE;
        }
        return TRUE;
}

gboolean vrotctl_parse_args(const VrotctlCommand *cmd, GOptionEntry *entries, int *argc,
                            char ***argv, GError **error)
{
        if (!parse_options(cmd, entries, argc, argv, error))
                return FALSE;
        if (*argc > 1) {
                g_set_error(error, VROTCTL_USAGE_ERROR, 0, "%s: unexpected argument '%s' "
                            "(usage: vrotctl %s %s)", cmd->name, (*argv)[1], cmd->name, cmd->args);
                return FALSE;
        }
        return TRUE;
}

gboolean vrotctl_parse_operand(const VrotctlCommand *cmd, GOptionEntry *entries, int *argc,
                               char ***argv, const char *what, gboolean optional,
                               const char **ret, GError **error)
{
        if (!parse_options(cmd, entries, argc, argv, error))
                return FALSE;
        if (*argc > 2 || (*argc < 2 && !optional)) {
                g_set_error(error, VROTCTL_USAGE_ERROR, 0, "%s: %s %s (usage: vrotctl %s %s)",
                            cmd->name, what, *argc < 2 ? "is missing" : "is one argument only",
                            cmd->name, cmd->args);
                return FALSE;
        }
        *ret = *argc == 2 ? (*argv)[1] : NULL;
        return TRUE;
}

gboolean vrotctl_parse_uuid_args(const VrotctlCommand *cmd, GOptionEntry *entries, int *argc,
                                 char ***argv, const char **ret_uuid, GError **error)
{
        return vrotctl_parse_operand(cmd, entries, argc, argv, "the instance's UUID", FALSE,
                                     ret_uuid, error);
}

gboolean vrotctl_output(const char *path, const guint8 *data, gsize len, GError **error)
{
        if (path)
                return g_file_set_contents_full(path, (const gchar *)data, (gssize)len,
                                                G_FILE_SET_CONTENTS_CONSISTENT, 0644, error);
        if (fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "writing to stdout failed");
                return FALSE;
        }
        return TRUE;
}

JsonNode *vrotctl_instance_call(const VrotctlContext *ctx, const char *method, const char *uuid,
                                JsonObject *extra, GError **error)
{
        g_autoptr(VrotRpcclient) c = vrotctl_connect(ctx, error);
        g_autoptr(JsonObject) params = json_object_new();
        g_autoptr(JsonNode) res = NULL;

        if (!c)
                return NULL;
        json_object_set_string_member(params, "uuid", uuid);
        if (extra) {
                g_autoptr(GList) names = json_object_get_members(extra);
                for (GList *l = names; l; l = l->next)
                        json_object_set_member(params, l->data,
                                               json_node_copy(json_object_get_member(extra, l->data)));
        }
        if (!vrotctl_call(c, method, params, &res, error))
                return NULL;
        if (!JSON_NODE_HOLDS_OBJECT(res)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: the result is not an object",
                            method);
                return NULL;
        }
        return g_steal_pointer(&res);
}

void vrotctl_print_instance(JsonObject *o)
{
        static const char *const fields[] = { "uuid", "name", "kind", "state", "ctrl", "data" };
        g_autofree gchar *owner = NULL, *pid = NULL, *gen = NULL;
        JsonNode *n;

        for (gsize i = 0; i < G_N_ELEMENTS(fields); i++) {
                g_autofree gchar *label = g_strconcat(fields[i], ":", NULL);
                vrotctl_print_field(label, vrotctl_member_string(o, fields[i]));
        }
        owner = g_strdup_printf("%" G_GINT64_FORMAT, json_object_get_int_member_with_default(o, "owner", 0));
        vrotctl_print_field("owner:", owner);
        n = json_object_get_member(o, "pid");
        pid = n && JSON_NODE_HOLDS_VALUE(n) ? g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(n))
                                            : NULL;
        vrotctl_print_field("pid:", pid);
        gen = g_strdup_printf("%" G_GINT64_FORMAT,
                              json_object_get_int_member_with_default(o, "generation", 0));
        vrotctl_print_field("generation:", gen);
}

gboolean vrotctl_usage_error(const VrotctlCommand *cmd, GError **error, const char *fmt, ...)
{
        g_autofree gchar *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error(error, VROTCTL_USAGE_ERROR, 0, "%s: %s (usage: vrotctl %s %s)", cmd->name, msg,
                    cmd->name, cmd->args);
        return FALSE;
}

gboolean vrotctl_require(const VrotctlCommand *cmd, const char *option, const char *value,
                         GError **error)
{
        return value || vrotctl_usage_error(cmd, error, "%s is required", option);
}

VrotRpcclient *vrotctl_connect(const VrotctlContext *ctx, GError **error)
{
        VrotRpcclient *c = NULL;

        if (!vrot_rpcclient_connect(ctx->socket, 0, &c, error))
                return NULL;
        return c;
}

gboolean vrotctl_call(VrotRpcclient *c, const char *method, JsonObject *params,
                      JsonNode **ret_result, GError **error)
{
        if (vrot_rpcclient_call(c, method, params, ret_result, error))
                return TRUE;
        if ((*error)->domain == VROT_JSONRPC_ERROR)
                g_prefix_error(error, "vrotd refused %s (%d, %s): ", method, (*error)->code,
                               vrot_jsonrpc_error_name((*error)->code));
        else
                g_prefix_error(error, "%s: ", method);
        return FALSE;
}

void vrotctl_print_json(JsonNode *node)
{
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autofree gchar *text = NULL;

        json_generator_set_pretty(gen, TRUE);
        json_generator_set_root(gen, node);
        text = json_generator_to_data(gen, NULL);
        printf("%s\n", text);
}

void vrotctl_print_field(const char *name, const char *value)
{
        printf("%-20s %s\n", name, value ? value : "-");
}

const char *vrotctl_member_string(JsonObject *o, const char *name)
{
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return NULL;
        return json_node_get_string(n);
}

gchar *vrotctl_subject(const X509_NAME *name)
{
        g_autoptr(BIO) bio = BIO_new(BIO_s_mem());
        char *data = NULL;
        long len;

        if (!bio || X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0)
                return g_strdup("?");
        len = BIO_get_mem_data(bio, &data);
        return g_strndup(data, (gsize)len);
}

gchar *vrotctl_read_file(const char *path, gsize *ret_len, GError **error)
{
        gchar *text = NULL;
        gsize len = 0;

        if (!g_file_get_contents(path, &text, &len, error))
                return NULL;
        if (len > MAX_FILE) {
                g_free(text);
                g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s: larger than %d bytes",
                            path, MAX_FILE);
                return NULL;
        }
        if (ret_len)
                *ret_len = len;
        return text;
}

gboolean vrotctl_put_file(JsonObject *o, const char *name, const char *path, GError **error)
{
        g_autofree gchar *data = NULL, *b64 = NULL;
        gsize len = 0;

        if (!(data = vrotctl_read_file(path, &len, error)))
                return FALSE;
        b64 = g_base64_encode((const guchar *)data, len);
        json_object_set_string_member(o, name, b64);
        return TRUE;
}

STACK_OF(X509) *vrotctl_load_certs(const char *path, GError **error)
{
        g_autofree gchar *text = NULL;
        STACK_OF(X509) *certs;
        gsize len = 0;

        if (!(text = vrotctl_read_file(path, &len, error)))
                return NULL;
        certs = vrot_x509_chain_from_pem(text, len, MAX_CERTS, error);
        if (!certs)
                g_prefix_error(error, "%s: ", path);
        return certs;
}
