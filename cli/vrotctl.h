/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * vrotctl, the administrator's client of vrotd's socket API (vrot-api(7),
 * vrotctl(1)).  Each subcommand is one VrotctlCommand in its own file,
 * listed in the table of vrotctl.c (tmux's cmd_entry, wireguard's
 * subcommands); output.c has what they share: the connection, the output
 * in both forms (for people, and --json for programs), and file reading.
 * Subcommands print their result on stdout and return errors as GError;
 * only main() prints an error, one line on stderr.
 */

#include <glib.h>
#include <json-glib/json-glib.h>
#include <openssl/x509.h>

#include "rpcclient.h"

#define VROTCTL_DEFAULT_SOCKET "/run/vrot/vrotd.sock"

/* What every subcommand gets from the global options. */
typedef struct VrotctlContext {
        const char *socket;             /* --socket */
        gboolean json;                  /* --json: raw results */
} VrotctlContext;

/* Usage errors (exit status 2) are in this domain; any other error is 1. */
#define VROTCTL_USAGE_ERROR (vrotctl_usage_error_quark())
GQuark vrotctl_usage_error_quark(void);

typedef struct VrotctlCommand {
        const char *name;               /* one word, or two ("identity issue") */
        const char *args;               /* the arguments, for usage lines */
        const char *summary;
        /* @argv[0] is the subcommand's name. */
        gboolean (*run)(const VrotctlContext *ctx, int argc, char **argv, GError **error);
} VrotctlCommand;

extern const VrotctlCommand vrotctl_cmd_host_info;
extern const VrotctlCommand vrotctl_cmd_host_evidence;
extern const VrotctlCommand vrotctl_cmd_host_enrol;
extern const VrotctlCommand vrotctl_cmd_create;
extern const VrotctlCommand vrotctl_cmd_start;
extern const VrotctlCommand vrotctl_cmd_stop;
extern const VrotctlCommand vrotctl_cmd_delete;
extern const VrotctlCommand vrotctl_cmd_list;
extern const VrotctlCommand vrotctl_cmd_info;
extern const VrotctlCommand vrotctl_cmd_ek_cert;
extern const VrotctlCommand vrotctl_cmd_libvirt_xml;
extern const VrotctlCommand vrotctl_cmd_identity_issue;
extern const VrotctlCommand vrotctl_cmd_identity_challenge;
extern const VrotctlCommand vrotctl_cmd_identity_complete;
extern const VrotctlCommand vrotctl_cmd_identity_revoke;
extern const VrotctlCommand vrotctl_cmd_identity_list;
extern const VrotctlCommand vrotctl_cmd_crl;
extern const VrotctlCommand vrotctl_cmd_attest;
extern const VrotctlCommand vrotctl_cmd_verify;
extern const VrotctlCommand vrotctl_cmd_migration_check;
extern const VrotctlCommand vrotctl_cmd_migrate;

/* ---- output.c: shared helpers ---- */

/**
 * vrotctl_parse_args:
 * Parses a subcommand's @entries; anything left over is a usage error
 * naming @cmd.
 */
gboolean vrotctl_parse_args(const VrotctlCommand *cmd, GOptionEntry *entries, int *argc,
                            char ***argv, GError **error);

/**
 * vrotctl_parse_operand:
 * As vrotctl_parse_args(), for a subcommand that takes one operand after
 * its options (or none, if @optional): *@ret (transfer none) points into
 * @argv, or is NULL.  @what names the operand in a usage error.
 */
gboolean vrotctl_parse_operand(const VrotctlCommand *cmd, GOptionEntry *entries, int *argc,
                               char ***argv, const char *what, gboolean optional,
                               const char **ret, GError **error);

/**
 * vrotctl_parse_uuid_args:
 * As vrotctl_parse_args(), for a subcommand that takes exactly one
 * instance UUID after its options: *@ret_uuid (transfer none) points into
 * @argv.  The daemon checks the UUID.
 */
gboolean vrotctl_parse_uuid_args(const VrotctlCommand *cmd, GOptionEntry *entries, int *argc,
                                 char ***argv, const char **ret_uuid, GError **error);

/**
 * vrotctl_instance_call:
 * Calls @method with {"uuid": @uuid} plus @extra's members (nullable;
 * transfer none) and returns (transfer full) the result object's node.
 */
JsonNode *vrotctl_instance_call(const VrotctlContext *ctx, const char *method, const char *uuid,
                                JsonObject *extra, GError **error);

/** vrotctl_print_instance: an instance's fields (instance.info) as lines. */
void vrotctl_print_instance(JsonObject *o);

/**
 * vrotctl_usage_error:
 * Sets a usage error "CMD: <message> (usage: vrotctl CMD ARGS)" and
 * returns FALSE.
 */
gboolean vrotctl_usage_error(const VrotctlCommand *cmd, GError **error, const char *fmt, ...)
        G_GNUC_PRINTF(3, 4);

/** vrotctl_require: a usage error unless @value (an option's) is set. */
gboolean vrotctl_require(const VrotctlCommand *cmd, const char *option, const char *value,
                         GError **error);

/** vrotctl_connect: (transfer full) a client of @ctx->socket. */
VrotRpcclient *vrotctl_connect(const VrotctlContext *ctx, GError **error);

/** vrotctl_call: one call; an error says which method vrotd refused. */
gboolean vrotctl_call(VrotRpcclient *c, const char *method, JsonObject *params,
                      JsonNode **ret_result, GError **error);

/**
 * vrotctl_output: @data into file @path (durably, mode 0644: what vrotctl
 * writes is public, certificates and CRLs), or on stdout if @path is NULL.
 */
gboolean vrotctl_output(const char *path, const guint8 *data, gsize len, GError **error);

/** vrotctl_print_json: @node, pretty-printed, on stdout. */
void vrotctl_print_json(JsonNode *node);

/** vrotctl_print_field: "name: value" on stdout (a NULL value prints "-"). */
void vrotctl_print_field(const char *name, const char *value);

/** vrotctl_member_string: (transfer none) string member @name of @o, or NULL. */
const char *vrotctl_member_string(JsonObject *o, const char *name);

/** vrotctl_subject: (transfer full) the one-line subject of @x (RFC 2253). */
gchar *vrotctl_subject(const X509_NAME *name);

/** vrotctl_read_file: (transfer full) the text of @path (at most 1 MiB). */
gchar *vrotctl_read_file(const char *path, gsize *ret_len, GError **error);

/** vrotctl_put_file: the bytes of file @path (1 MiB at most), base64, as member @name of @o. */
gboolean vrotctl_put_file(JsonObject *o, const char *name, const char *path, GError **error);

/** vrotctl_load_certs: (transfer full) every certificate of PEM file @path. */
STACK_OF(X509) *vrotctl_load_certs(const char *path, GError **error);
