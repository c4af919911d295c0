/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrotctl start, stop, delete, info: one instance by UUID, one method each
 * (instance.start, .stop, .delete, .info); the answer is the instance's
 * fields.  One file: they differ only in the method they call.
 */
#include "vrotctl.h"

static gboolean run_method(const VrotctlCommand *cmd, const char *method,
                           const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        GOptionEntry none[] = { G_OPTION_ENTRY_NULL };
        g_autoptr(JsonNode) res = NULL;
        const char *uuid = NULL;

        if (!vrotctl_parse_uuid_args(cmd, none, &argc, &argv, &uuid, error) ||
            !(res = vrotctl_instance_call(ctx, method, uuid, NULL, error)))
                return FALSE;
        if (ctx->json)
                vrotctl_print_json(res);
        else
                vrotctl_print_instance(json_node_get_object(res));
        return TRUE;
}

static gboolean run_start(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        return run_method(&vrotctl_cmd_start, "instance.start", ctx, argc, argv, error);
}

static gboolean run_stop(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        return run_method(&vrotctl_cmd_stop, "instance.stop", ctx, argc, argv, error);
}

static gboolean run_delete(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        return run_method(&vrotctl_cmd_delete, "instance.delete", ctx, argc, argv, error);
}

static gboolean run_info(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        return run_method(&vrotctl_cmd_info, "instance.info", ctx, argc, argv, error);
}

const VrotctlCommand vrotctl_cmd_start = {
        .name = "start", .args = "UUID", .run = run_start,
        .summary = "start the instance's vTPM; returns once its sockets listen",
};

const VrotctlCommand vrotctl_cmd_stop = {
        .name = "stop", .args = "UUID", .run = run_stop,
        .summary = "stop the instance's vTPM (its state is saved)",
};

const VrotctlCommand vrotctl_cmd_delete = {
        .name = "delete", .args = "UUID", .run = run_delete,
        .summary = "wipe the instance; its UUID stays taken (tombstone)",
};

const VrotctlCommand vrotctl_cmd_info = {
        .name = "info", .args = "UUID", .run = run_info,
        .summary = "the instance's fields: state, worker, sockets, generation",
};
