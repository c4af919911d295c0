/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrotctl migration check ADDR:PORT: the attested handshake with a peer
 * host (migration.check, docs/migration.md), as a pre-flight check.
 */
#include <stdio.h>

#include "vrotctl.h"

static gboolean check_run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        GOptionEntry none[] = { G_OPTION_ENTRY_NULL };
        g_autoptr(VrotRpcclient) c = NULL;
        g_autoptr(JsonObject) params = json_object_new();
        g_autoptr(JsonNode) res = NULL;
        const char *to = NULL;

        if (!vrotctl_parse_operand(&vrotctl_cmd_migration_check, none, &argc, &argv,
                                   "the peer's ADDR:PORT", FALSE, &to, error))
                return FALSE;
        json_object_set_string_member(params, "to", to);
        if (!(c = vrotctl_connect(ctx, error)) ||
            !vrotctl_call(c, "migration.check", params, &res, error))
                return FALSE;
        if (ctx->json || !JSON_NODE_HOLDS_OBJECT(res))
                vrotctl_print_json(res);
        else
                printf("%s: authenticated (TLS 1.3, transport certificate under the fleet root) "
                       "and attested (host PCRs accepted by this host's policy)\n",
                       vrotctl_member_string(json_node_get_object(res), "peer"));
        return TRUE;
}

const VrotctlCommand vrotctl_cmd_migration_check = {
        .name = "migration check",
        .args = "ADDR:PORT",
        .summary = "authenticate and attest a peer host as a migration would (migration.check)",
        .run = check_run,
};
