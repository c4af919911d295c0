/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrotctl ek-cert: an instance's EK certificate (instance.ek_cert), PEM on
 * stdout by default; --der for DER, --out to write a file (durably, 0644:
 * certificates are public).
 */
#include <stdio.h>
#include <string.h>

#include "autoptr.h"
#include "vrotctl.h"
#include "x509.h"

static gboolean run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        g_autofree gchar *type = NULL, *out = NULL;
        gboolean der = FALSE;
        GOptionEntry entries[] = {
                { "type", 't', 0, G_OPTION_ARG_STRING, &type, "rsa (default) or ecc", "TYPE" },
                { "der", 0, 0, G_OPTION_ARG_NONE, &der, "DER instead of PEM", NULL },
                { "out", 'o', 0, G_OPTION_ARG_FILENAME, &out, "write FILE instead of stdout", "FILE" },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(JsonObject) extra = json_object_new();
        g_autoptr(JsonNode) res = NULL;
        g_autoptr(X509) x = NULL;
        g_autoptr(GBytes) bytes = NULL;
        const char *uuid = NULL, *pem;

        if (!vrotctl_parse_uuid_args(&vrotctl_cmd_ek_cert, entries, &argc, &argv, &uuid, error))
                return FALSE;
        json_object_set_string_member(extra, "type", type ? type : "rsa");
        if (!(res = vrotctl_instance_call(ctx, "instance.ek_cert", uuid, extra, error)))
                return FALSE;
        if (ctx->json) {
                vrotctl_print_json(res);
                return TRUE;
        }
        pem = vrotctl_member_string(json_node_get_object(res), "pem");
        if (!pem) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "vrotd sent no certificate");
                return FALSE;
        }
        if (!(x = vrot_x509_from_pem(pem, strlen(pem), error))) {
                g_prefix_error(error, "the EK certificate vrotd sent: ");
                return FALSE;
        }
        if (!der)
                return vrotctl_output(out, (const guint8 *)pem, strlen(pem), error);
        if (!(bytes = vrot_x509_to_der(x, error)))
                return FALSE;
        return vrotctl_output(out, g_bytes_get_data(bytes, NULL), g_bytes_get_size(bytes), error);
}

const VrotctlCommand vrotctl_cmd_ek_cert = {
        .name = "ek-cert",
        .args = "UUID [--type rsa|ecc] [--der] [--out FILE]",
        .summary = "the instance's EK certificate (PEM, or DER)",
        .run = run,
};
