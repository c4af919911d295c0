/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrotctl host-info: what vrotd says about its host (host.info): the host
 * TPM, whether it is enrolled, and its host CA chain.
 */
#include <stdio.h>
#include <string.h>

#include "autoptr.h"
#include "vrotctl.h"
#include "x509.h"

static gchar *subject_of_pem(const char *pem)
{
        g_autoptr(X509) x = pem ? vrot_x509_from_pem(pem, strlen(pem), NULL) : NULL;

        return x ? vrotctl_subject(X509_get_subject_name(x)) : NULL;
}

static void print_info(JsonObject *o)
{
        g_autofree gchar *ca = subject_of_pem(vrotctl_member_string(o, "host_ca_pem"));
        g_autofree gchar *root = subject_of_pem(vrotctl_member_string(o, "fleet_root_pem"));
        g_autofree gchar *count = NULL, *commands = NULL;

        vrotctl_print_field("host TPM:", vrotctl_member_string(o, "tcti"));
        vrotctl_print_field("simulated (--dev):", json_object_get_boolean_member_with_default(
                                    o, "dev", FALSE) ? "yes" : "no");
        vrotctl_print_field("enrolled:", json_object_get_boolean_member_with_default(
                                    o, "enrolled", FALSE) ? "yes" : "no");
        vrotctl_print_field("host CA:", ca);
        vrotctl_print_field("fleet root:", root);
        count = g_strdup_printf("%" G_GINT64_FORMAT " (%" G_GINT64_FORMAT " running)",
                                json_object_get_int_member_with_default(o, "instances", 0),
                                json_object_get_int_member_with_default(o, "running", 0));
        vrotctl_print_field("instances:", count);
        commands = g_strdup_printf("%" G_GINT64_FORMAT, json_object_get_int_member_with_default(
                                           o, "host_tpm_commands", 0));
        vrotctl_print_field("host-TPM commands:", commands);
}

static gboolean run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        GOptionEntry none[] = { G_OPTION_ENTRY_NULL };
        g_autoptr(VrotRpcclient) c = NULL;
        g_autoptr(JsonNode) res = NULL;

        if (!vrotctl_parse_args(&vrotctl_cmd_host_info, none, &argc, &argv, error) ||
            !(c = vrotctl_connect(ctx, error)) ||
            !vrotctl_call(c, "host.info", NULL, &res, error))
                return FALSE;
        if (ctx->json || !JSON_NODE_HOLDS_OBJECT(res))
                vrotctl_print_json(res);
        else
                print_info(json_node_get_object(res));
        return TRUE;
}

const VrotctlCommand vrotctl_cmd_host_info = {
        .name = "host-info",
        .args = "",
        .summary = "the host TPM, enrolment and host CA chain (host.info)",
        .run = run,
};
