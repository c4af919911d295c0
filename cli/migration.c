/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrotctl migration check ADDR:PORT: the attested handshake with a peer
 * host (migration.check, docs/migration.md), as a pre-flight check.
 * vrotctl migrate UUID --to ADDR:PORT: a cold migration (instance.migrate).
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

static gboolean migrate_run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        g_autofree gchar *to = NULL;
        gboolean live = FALSE, prepare = FALSE, commit = FALSE, abort_it = FALSE;
        const char *uuid = NULL, *method;
        GOptionEntry entries[] = {
                { "to", 0, 0, G_OPTION_ARG_STRING, &to, "the destination's ADDR:PORT", "ADDR:PORT" },
                { "live", 0, 0, G_OPTION_ARG_NONE, &live,
                  "prepare a live migration of the running VM's vTPM (with --to)", NULL },
                { "prepare", 0, 0, G_OPTION_ARG_NONE, &prepare,
                  "with --live: prepare it (what --live alone does)", NULL },
                { "commit", 0, 0, G_OPTION_ARG_NONE, &commit,
                  "commit the prepared live migration once QEMU's has moved the state", NULL },
                { "abort", 0, 0, G_OPTION_ARG_NONE, &abort_it,
                  "abort the prepared live migration: the vTPM stays here", NULL },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(JsonObject) extra = json_object_new();
        g_autoptr(JsonNode) res = NULL;
        g_autofree gchar *ms = NULL;
        JsonObject *o;

        if (!vrotctl_parse_uuid_args(&vrotctl_cmd_migrate, entries, &argc, &argv, &uuid, error))
                return FALSE;
        if (live + commit + abort_it > 1 || ((commit || abort_it) && to) || (prepare && !live))
                return vrotctl_usage_error(&vrotctl_cmd_migrate, error,
                                           "one of --live [--prepare] (with --to), --commit, "
                                           "--abort");
        if (!commit && !abort_it && !vrotctl_require(&vrotctl_cmd_migrate, "--to", to, error))
                return FALSE;
        method = commit ? "instance.migrate_commit" : abort_it ? "instance.migrate_abort"
                 : live ? "instance.migrate_prepare" : "instance.migrate";
        if (to)
                json_object_set_string_member(extra, "to", to);
        if (!(res = vrotctl_instance_call(ctx, method, uuid, extra, error)))
                return FALSE;
        if (ctx->json || !JSON_NODE_HOLDS_OBJECT(res)) {
                vrotctl_print_json(res);
                return TRUE;
        }
        o = json_node_get_object(res);
        ms = json_object_has_member(o, "ms")
             ? g_strdup_printf(", %" G_GINT64_FORMAT " ms", json_object_get_int_member(o, "ms"))
             : g_strdup("");
        if (live)
                printf("%s: live migration %s to %s prepared: migrate the VM with QEMU or libvirt, "
                       "then vrotctl migrate %s --commit\n", uuid,
                       vrotctl_member_string(o, "migration_id"), vrotctl_member_string(o, "peer"),
                       uuid);
        else if (abort_it)
                printf("%s: live migration %s aborted: the vTPM stays here\n", uuid,
                       vrotctl_member_string(o, "migration_id"));
        else
                printf("%s: migrated to %s (migration %s%s)%s\n", uuid,
                       vrotctl_member_string(o, "peer"), vrotctl_member_string(o, "migration_id"),
                       ms, json_object_get_boolean_member_with_default(o, "peer_confirmed", FALSE)
                       ? "" : "; the destination has not confirmed yet: vrotd tells it again until "
                              "it does");
        return TRUE;
}

const VrotctlCommand vrotctl_cmd_migrate = {
        .name = "migrate",
        .args = "UUID (--to ADDR:PORT [--live [--prepare]] | --commit | --abort)",
        .summary = "move a vTPM to another host: cold, or live in three steps",
        .run = migrate_run,
};
