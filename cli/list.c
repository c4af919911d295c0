/* SPDX-License-Identifier: BSD-3-Clause */
/* vrotctl list: every instance the caller may see (instance.list), a row each. */
#include <stdio.h>

#include "vrotctl.h"

static gboolean run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        GOptionEntry none[] = { G_OPTION_ENTRY_NULL };
        g_autoptr(VrotRpcclient) c = NULL;
        g_autoptr(JsonNode) res = NULL;
        JsonArray *all;

        if (!vrotctl_parse_args(&vrotctl_cmd_list, none, &argc, &argv, error) ||
            !(c = vrotctl_connect(ctx, error)) ||
            !vrotctl_call(c, "instance.list", NULL, &res, error))
                return FALSE;
        if (ctx->json || !JSON_NODE_HOLDS_OBJECT(res) ||
            !json_object_has_member(json_node_get_object(res), "instances")) {
                vrotctl_print_json(res);
                return TRUE;
        }
        all = json_object_get_array_member(json_node_get_object(res), "instances");
        printf("%-36s  %-8s  %-8s  %6s  %s\n", "UUID", "KIND", "STATE", "OWNER", "NAME");
        for (guint i = 0; all && i < json_array_get_length(all); i++) {
                JsonObject *o = json_array_get_object_element(all, i);
                const char *v[] = { vrotctl_member_string(o, "uuid"), vrotctl_member_string(o, "kind"),
                                    vrotctl_member_string(o, "state"), vrotctl_member_string(o, "name") };

                printf("%-36s  %-8s  %-8s  %6" G_GINT64_FORMAT "  %s\n", v[0] ? v[0] : "-",
                       v[1] ? v[1] : "-", v[2] ? v[2] : "-",
                       json_object_get_int_member_with_default(o, "owner", -1), v[3] ? v[3] : "-");
        }
        return TRUE;
}

const VrotctlCommand vrotctl_cmd_list = {
        .name = "list",
        .args = "",
        .summary = "every instance you may see, deleted ones included",
        .run = run,
};
