/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrotctl libvirt-xml: the <tpm> element of a libvirt domain for a VM
 * instance: the external backend on the instance's control socket, which
 * libvirt turns into QEMU's -tpmdev emulator (FIELD-NOTES: libvirt does
 * nothing else for it; the hook starts the vTPM, vrot-libvirt-hook(8)).
 */
#include <stdio.h>

#include "vrotctl.h"

static gboolean run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        g_autofree gchar *model = NULL, *path = NULL;
        GOptionEntry entries[] = {
                { "model", 'm', 0, G_OPTION_ARG_STRING, &model, "tpm-crb (default) or tpm-tis",
                  "MODEL" },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(JsonNode) res = NULL;
        const char *uuid = NULL, *kind, *ctrl;
        JsonObject *o;

        if (!vrotctl_parse_uuid_args(&vrotctl_cmd_libvirt_xml, entries, &argc, &argv, &uuid, error))
                return FALSE;
        if (model && !g_str_equal(model, "tpm-crb") && !g_str_equal(model, "tpm-tis")) {
                g_set_error(error, VROTCTL_USAGE_ERROR, 0,
                            "libvirt-xml: --model is tpm-crb or tpm-tis, not '%s'", model);
                return FALSE;
        }
        if (!(res = vrotctl_instance_call(ctx, "instance.info", uuid, NULL, error)))
                return FALSE;
        o = json_node_get_object(res);
        kind = vrotctl_member_string(o, "kind");
        ctrl = vrotctl_member_string(o, "ctrl");
        if (!kind || !g_str_equal(kind, "vm") || !ctrl) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "instance %s is not a VM's vTPM (kind %s): a domain needs a vm instance",
                            uuid, kind ? kind : "?");
                return FALSE;
        }
        path = g_markup_escape_text(ctrl, -1);
        printf("<tpm model='%s'>\n"
               "  <backend type='external'>\n"
               "    <source type='unix' mode='connect' path='%s'/>\n"
               "  </backend>\n"
               "</tpm>\n", model ? model : "tpm-crb", path);
        return TRUE;
}

const VrotctlCommand vrotctl_cmd_libvirt_xml = {
        .name = "libvirt-xml",
        .args = "UUID [--model tpm-crb|tpm-tis]",
        .summary = "the <tpm> element of the VM's libvirt domain",
        .run = run,
};
