/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrotctl create: a new vTPM (instance.create): made, its EKs endorsed by
 * the host CA in the host TPM, left stopped.  Prints its UUID first, so a
 * script can take the first line.
 */
#include <stdio.h>

#include "vrotctl.h"

static gboolean run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        g_autofree gchar *kind = NULL, *name = NULL, *uuid = NULL, *ek = NULL;
        gint64 owner = -1;
        GOptionEntry entries[] = {
                { "kind", 'k', 0, G_OPTION_ARG_STRING, &kind, "vm or service", "KIND" },
                { "name", 'n', 0, G_OPTION_ARG_STRING, &name, "a name (1-64 bytes)", "NAME" },
                { "uuid", 'u', 0, G_OPTION_ARG_STRING, &uuid, "the instance's UUID (default: new)",
                  "UUID" },
                { "ek", 'e', 0, G_OPTION_ARG_STRING, &ek, "both (default), rsa or ecc", "EK" },
                { "owner", 'o', 0, G_OPTION_ARG_INT64, &owner, "the owning uid (default: yours)",
                  "UID" },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(VrotRpcclient) c = NULL;
        g_autoptr(JsonObject) params = json_object_new();
        g_autoptr(JsonNode) res = NULL;
        JsonObject *o;

        if (!vrotctl_parse_args(&vrotctl_cmd_create, entries, &argc, &argv, error) ||
            !vrotctl_require(&vrotctl_cmd_create, "--kind", kind, error) ||
            !vrotctl_require(&vrotctl_cmd_create, "--name", name, error))
                return FALSE;
        json_object_set_string_member(params, "kind", kind);
        json_object_set_string_member(params, "name", name);
        if (uuid)
                json_object_set_string_member(params, "uuid", uuid);
        if (ek)
                json_object_set_string_member(params, "ek", ek);
        if (owner >= 0)
                json_object_set_int_member(params, "owner", owner);
        if (!(c = vrotctl_connect(ctx, error)) ||
            !vrotctl_call(c, "instance.create", params, &res, error))
                return FALSE;
        if (ctx->json || !JSON_NODE_HOLDS_OBJECT(res)) {
                vrotctl_print_json(res);
                return TRUE;
        }
        o = json_node_get_object(res);
        printf("%s\n", vrotctl_member_string(o, "uuid"));
        vrotctl_print_instance(o);
        vrotctl_print_field("from pool:", json_object_get_boolean_member_with_default(
                                    o, "from_pool", FALSE) ? "yes" : "no");
        return TRUE;
}

const VrotctlCommand vrotctl_cmd_create = {
        .name = "create",
        .args = "--kind vm|service --name NAME [--uuid UUID] [--ek both|rsa|ecc] [--owner UID]",
        .summary = "make a vTPM and endorse its EKs; prints its UUID first",
        .run = run,
};
