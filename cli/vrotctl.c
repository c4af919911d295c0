/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrotctl: the administrator's client of vrotd (vrotctl(1)).  Global
 * options, then one subcommand from the table below; each lives in its
 * own file.  Exit status 0 on success, 1 when the operation failed (one
 * line on stderr says why), 2 for a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vrotctl.h"

static const VrotctlCommand *const commands[] = {
        &vrotctl_cmd_create,
        &vrotctl_cmd_start,
        &vrotctl_cmd_stop,
        &vrotctl_cmd_delete,
        &vrotctl_cmd_list,
        &vrotctl_cmd_info,
        &vrotctl_cmd_ek_cert,
        &vrotctl_cmd_libvirt_xml,
        &vrotctl_cmd_host_info,
        &vrotctl_cmd_host_evidence,
        &vrotctl_cmd_host_enrol,
        &vrotctl_cmd_identity_issue,
        &vrotctl_cmd_identity_challenge,
        &vrotctl_cmd_identity_complete,
        &vrotctl_cmd_identity_revoke,
        &vrotctl_cmd_identity_list,
        &vrotctl_cmd_crl,
        &vrotctl_cmd_attest,
        &vrotctl_cmd_verify,
        &vrotctl_cmd_migration_check,
        &vrotctl_cmd_migrate,
};

static void usage(FILE *out)
{
        fprintf(out, "usage: vrotctl [--socket PATH] [--json] COMMAND [ARGS]\n\ncommands:\n");
        for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
                fprintf(out, "  %-16s %s\n      %s\n", commands[i]->name, commands[i]->args,
                        commands[i]->summary);
        fprintf(out, "\n--socket defaults to %s; see vrotctl(1).\n", VROTCTL_DEFAULT_SOCKET);
}

/* The command @argv names, in one word or two; *@words: how many it took. */
static const VrotctlCommand *find_command(int argc, char **argv, int *words)
{
        for (gsize i = 0; i < G_N_ELEMENTS(commands); i++) {
                const char *name = commands[i]->name, *space = strchr(name, ' ');

                if (!space && g_str_equal(name, argv[0])) {
                        *words = 1;
                        return commands[i];
                }
                if (space && argc >= 2 && strncmp(name, argv[0], (size_t)(space - name)) == 0 &&
                    argv[0][space - name] == '\0' && g_str_equal(space + 1, argv[1])) {
                        *words = 2;
                        return commands[i];
                }
        }
        return NULL;
}

/* One line: messages from lower layers may span several. */
static void print_error(const GError *error)
{
        g_autofree gchar *line = g_strdup(error->message);

        g_strdelimit(line, "\n", ' ');
        fprintf(stderr, "vrotctl: %s\n", line);
}

/* The global options, up to the subcommand's name (POSIX order). */
static gboolean parse_global(int *argc, char ***argv, VrotctlContext *ctx, gboolean *help,
                             GError **error)
{
        GOptionEntry entries[] = {
                { "socket", 's', 0, G_OPTION_ARG_FILENAME, &ctx->socket, "vrotd's API socket",
                  "PATH" },
                { "json", 'j', 0, G_OPTION_ARG_NONE, &ctx->json, "Print raw JSON results", NULL },
                { "help", 'h', 0, G_OPTION_ARG_NONE, help, "Show help", NULL },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(GOptionContext) oc = g_option_context_new("COMMAND [ARGS]");

        g_option_context_add_main_entries(oc, entries, NULL);
        g_option_context_set_help_enabled(oc, FALSE);
        g_option_context_set_strict_posix(oc, TRUE);
        if (!g_option_context_parse(oc, argc, argv, error)) {
                (*error)->domain = VROTCTL_USAGE_ERROR;
                return FALSE;
        }
        return TRUE;
}

int main(int argc, char **argv)
{
        VrotctlContext ctx = { 0 };
        const VrotctlCommand *cmd;
        g_autoptr(GError) error = NULL;
        gchar *socket = NULL;
        gboolean help = FALSE, ok;
        int words = 0;

        if (!parse_global(&argc, &argv, &ctx, &help, &error)) {
                print_error(error);
                return 2;
        }
        socket = (gchar *)ctx.socket;
        if (!ctx.socket)
                ctx.socket = VROTCTL_DEFAULT_SOCKET;
        if (help || argc < 2) {
                usage(help ? stdout : stderr);
                g_free(socket);
                return help ? 0 : 2;
        }
        if (!(cmd = find_command(argc - 1, argv + 1, &words))) {
                fprintf(stderr, "vrotctl: unknown command '%s%s%s' (vrotctl --help lists them)\n",
                        argv[1], argc > 2 ? " " : "", argc > 2 ? argv[2] : "");
                g_free(socket);
                return 2;
        }
        ok = cmd->run(&ctx, argc - words, argv + words, &error);
        g_free(socket);
        if (ok)
                return 0;
        print_error(error);
        return error->domain == VROTCTL_USAGE_ERROR ? 2 : 1;
}
