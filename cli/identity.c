/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrotctl identity issue|challenge|complete|revoke|list and vrotctl crl:
 * service identities (docs/identity.md, vrot-api(7) identity.*, host.crl).
 * challenge and complete relay a VM guest's two calls with the files its
 * tpm2-tools read and write.
 *
 * identity issue prints where the key is and the certificate chain (the
 * identity's certificate, then the host CA's: what a TLS peer sends), on
 * stdout after the fields or, with --out, into a file (0644: certificates
 * are public).
 */
#include <stdio.h>
#include <string.h>

#include "vrotctl.h"

static gchar *format_time(JsonObject *o, const char *name)
{
        JsonNode *n = json_object_get_member(o, name);
        g_autoptr(GDateTime) t = NULL;

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
                return NULL;
        t = g_date_time_new_from_unix_utc(json_node_get_int(n));
        return t ? g_date_time_format(t, "%Y-%m-%dT%H:%M:%SZ") : NULL;
}

/* The certificate, then the host CA's: chain_pem holds the host CA, then the fleet root. */
static gchar *tls_chain(JsonObject *o)
{
        const char *leaf = vrotctl_member_string(o, "certificate_pem");
        JsonArray *chain = json_object_has_member(o, "chain_pem")
                                   ? json_object_get_array_member(o, "chain_pem") : NULL;
        const char *ca = chain && json_array_get_length(chain) > 0
                                 ? json_array_get_string_element(chain, 0) : NULL;

        return leaf && ca ? g_strconcat(leaf, ca, NULL) : NULL;
}

/* An issued identity: its fields, then the chain (or into @out). */
static gboolean print_issued(const VrotctlContext *ctx, JsonNode *res, const char *out,
                             GError **error)
{
        JsonObject *o = JSON_NODE_HOLDS_OBJECT(res) ? json_node_get_object(res) : NULL;
        g_autofree gchar *pem = o ? tls_chain(o) : NULL;
        g_autofree gchar *not_after = NULL;

        if (!pem) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "vrotd sent no certificate chain");
                return FALSE;
        }
        if (out && !vrotctl_output(out, (const guint8 *)pem, strlen(pem), error))
                return FALSE;
        if (ctx->json) {
                vrotctl_print_json(res);
                return TRUE;
        }
        not_after = format_time(o, "not_after");
        vrotctl_print_field("serial:", vrotctl_member_string(o, "serial"));
        vrotctl_print_field("instance:", vrotctl_member_string(o, "instance"));
        vrotctl_print_field("name:", vrotctl_member_string(o, "name"));
        vrotctl_print_field("uri:", vrotctl_member_string(o, "uri"));
        vrotctl_print_field("key handle:", vrotctl_member_string(o, "handle"));
        vrotctl_print_field("not after:", not_after);
        vrotctl_print_field("chain:", out ? out : "(below)");
        if (!out)
                fputs(pem, stdout);
        return TRUE;
}

static gboolean issue_run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        g_autofree gchar *name = NULL, *uri = NULL, *out = NULL;
        gint days = 0;
        GOptionEntry entries[] = {
                { "name", 'n', 0, G_OPTION_ARG_STRING, &name, "the service's name ([A-Za-z0-9._-], 64 at most)", "NAME" },
                { "uri", 'u', 0, G_OPTION_ARG_STRING, &uri, "the URI SAN (e.g. spiffe://domain/path)", "URI" },
                { "days", 'd', 0, G_OPTION_ARG_INT, &days, "validity in days (default 30)", "N" },
                { "out", 'o', 0, G_OPTION_ARG_FILENAME, &out, "write the certificate chain to FILE", "FILE" },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(JsonObject) extra = json_object_new();
        g_autoptr(JsonNode) res = NULL;
        const char *uuid = NULL;

        if (!vrotctl_parse_uuid_args(&vrotctl_cmd_identity_issue, entries, &argc, &argv, &uuid,
                                     error) ||
            !vrotctl_require(&vrotctl_cmd_identity_issue, "--name", name, error))
                return FALSE;
        json_object_set_string_member(extra, "name", name);
        if (uri)
                json_object_set_string_member(extra, "uri", uri);
        if (days)
                json_object_set_int_member(extra, "days", days);
        if (!(res = vrotctl_instance_call(ctx, "identity.issue", uuid, extra, error)))
                return FALSE;
        return print_issued(ctx, res, out, error);
}

/* The credential of a challenge as tpm2-tools' credential file (magic, version, the two blobs). */
static gboolean write_credential(JsonObject *o, const char *path, GError **error)
{
        static const guint8 header[] = { 0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1 };
        const char *names[] = { "id_object", "encrypted_secret" };
        g_autoptr(GByteArray) file = g_byte_array_new();

        g_byte_array_append(file, header, sizeof(header));
        for (gsize i = 0; i < G_N_ELEMENTS(names); i++) {
                const char *b64 = vrotctl_member_string(o, names[i]);
                g_autofree guchar *raw = NULL;
                gsize len = 0;

                if (!b64 || !(raw = g_base64_decode(b64, &len)) || len == 0) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                    "vrotd sent no %s", names[i]);
                        return FALSE;
                }
                g_byte_array_append(file, raw, (guint)len);
        }
        return vrotctl_output(path, file->data, file->len, error);
}

static gboolean challenge_run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        const VrotctlCommand *cmd = &vrotctl_cmd_identity_challenge;
        g_autofree gchar *name = NULL, *uri = NULL, *ak = NULL, *key = NULL, *credential = NULL;
        gboolean attestation = FALSE;
        gint days = 0;
        GOptionEntry entries[] = {
                { "name", 'n', 0, G_OPTION_ARG_STRING, &name, "the identity's name", "NAME" },
                { "uri", 'u', 0, G_OPTION_ARG_STRING, &uri, "the URI SAN", "URI" },
                { "days", 'd', 0, G_OPTION_ARG_INT, &days, "validity in days (default 30)", "N" },
                { "ak-public", 0, 0, G_OPTION_ARG_FILENAME, &ak, "the guest's AK (tpm2_create -u)", "FILE" },
                { "key-public", 0, 0, G_OPTION_ARG_FILENAME, &key, "the guest's identity key", "FILE" },
                { "attestation", 0, 0, G_OPTION_ARG_NONE, &attestation, "certify the AK itself", NULL },
                { "credential", 'o', 0, G_OPTION_ARG_FILENAME, &credential, "write the credential here", "FILE" },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(JsonObject) extra = json_object_new();
        g_autoptr(JsonNode) res = NULL;
        const char *uuid = NULL;
        JsonObject *o;

        if (!vrotctl_parse_uuid_args(cmd, entries, &argc, &argv, &uuid, error) ||
            !vrotctl_require(cmd, "--ak-public", ak, error) ||
            !vrotctl_require(cmd, "--credential", credential, error))
                return FALSE;
        if (attestation ? (name || uri || days || key) : (!name || !key))
                return vrotctl_usage_error(cmd, error, "--attestation takes only --ak-public; "
                                           "an identity needs --name and --key-public");
        if (attestation)
                json_object_set_string_member(extra, "purpose", "attestation");
        else
                json_object_set_string_member(extra, "name", name);
        if (uri)
                json_object_set_string_member(extra, "uri", uri);
        if (days)
                json_object_set_int_member(extra, "days", days);
        if (!vrotctl_put_file(extra, "ak_public", ak, error) ||
            (key && !vrotctl_put_file(extra, "key_public", key, error)) ||
            !(res = vrotctl_instance_call(ctx, "identity.challenge", uuid, extra, error)))
                return FALSE;
        o = json_node_get_object(res);
        if (!write_credential(o, credential, error))
                return FALSE;
        if (ctx->json) {
                vrotctl_print_json(res);
                return TRUE;
        }
        vrotctl_print_field("challenge:", vrotctl_member_string(o, "challenge"));
        vrotctl_print_field("credential:", credential);
        printf("%-20s %" G_GINT64_FORMAT " s\n", "expires in:",
               json_object_get_int_member_with_default(o, "expires_in", 0));
        return TRUE;
}

static gboolean complete_run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        const VrotctlCommand *cmd = &vrotctl_cmd_identity_complete;
        g_autofree gchar *secret = NULL, *attest = NULL, *signature = NULL, *out = NULL;
        GOptionEntry entries[] = {
                { "secret", 0, 0, G_OPTION_ARG_FILENAME, &secret, "tpm2_activatecredential -o", "FILE" },
                { "attest", 0, 0, G_OPTION_ARG_FILENAME, &attest, "tpm2_certify -o", "FILE" },
                { "signature", 0, 0, G_OPTION_ARG_FILENAME, &signature, "tpm2_certify -s (-f plain)", "FILE" },
                { "out", 'o', 0, G_OPTION_ARG_FILENAME, &out, "write the certificate chain to FILE", "FILE" },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(VrotRpcclient) c = NULL;
        g_autoptr(JsonObject) params = json_object_new();
        g_autoptr(JsonNode) res = NULL;
        const char *challenge = NULL;

        if (!vrotctl_parse_operand(cmd, entries, &argc, &argv, "the challenge ID", FALSE,
                                   &challenge, error) ||
            !vrotctl_require(cmd, "--secret", secret, error))
                return FALSE;
        if (!attest != !signature)
                return vrotctl_usage_error(cmd, error, "--attest and --signature go together");
        json_object_set_string_member(params, "challenge", challenge);
        if (!vrotctl_put_file(params, "secret", secret, error) ||
            (attest && (!vrotctl_put_file(params, "attest", attest, error) ||
                        !vrotctl_put_file(params, "signature", signature, error))) ||
            !(c = vrotctl_connect(ctx, error)) ||
            !vrotctl_call(c, "identity.complete", params, &res, error))
                return FALSE;
        return print_issued(ctx, res, out, error);
}

static gboolean revoke_run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        GOptionEntry none[] = { G_OPTION_ENTRY_NULL };
        g_autoptr(VrotRpcclient) c = NULL;
        g_autoptr(JsonObject) params = json_object_new();
        g_autoptr(JsonNode) res = NULL;

        const char *serial = NULL;

        if (!vrotctl_parse_operand(&vrotctl_cmd_identity_revoke, none, &argc, &argv,
                                   "the certificate's serial", FALSE, &serial, error))
                return FALSE;
        json_object_set_string_member(params, "serial", serial);
        if (!(c = vrotctl_connect(ctx, error)) ||
            !vrotctl_call(c, "identity.revoke", params, &res, error))
                return FALSE;
        if (ctx->json)
                vrotctl_print_json(res);
        else
                printf("revoked %s; `vrotctl crl` prints the CRL that lists it\n", serial);
        return TRUE;
}

static void print_identity_row(JsonObject *o)
{
        g_autofree gchar *not_after = format_time(o, "not_after");
        g_autofree gchar *revoked = format_time(o, "revoked");
        const char *v[] = { vrotctl_member_string(o, "serial"), vrotctl_member_string(o, "instance"),
                            vrotctl_member_string(o, "handle"), vrotctl_member_string(o, "name") };

        printf("%-40s  %-36s  %-10s  %-20s  %-20s  %s\n", v[0] ? v[0] : "-", v[1] ? v[1] : "-",
               v[2] ? v[2] : "-", not_after ? not_after : "-", revoked ? revoked : "-",
               v[3] ? v[3] : "-");
}

static gboolean list_run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        GOptionEntry none[] = { G_OPTION_ENTRY_NULL };
        g_autoptr(VrotRpcclient) c = NULL;
        g_autoptr(JsonObject) params = json_object_new();
        g_autoptr(JsonNode) res = NULL;
        const char *uuid = NULL;
        JsonArray *all;

        if (!vrotctl_parse_operand(&vrotctl_cmd_identity_list, none, &argc, &argv,
                                   "the instance's UUID", TRUE, &uuid, error))
                return FALSE;
        if (uuid)
                json_object_set_string_member(params, "uuid", uuid);
        if (!(c = vrotctl_connect(ctx, error)) ||
            !vrotctl_call(c, "identity.list", params, &res, error))
                return FALSE;
        if (ctx->json || !JSON_NODE_HOLDS_OBJECT(res) ||
            !json_object_has_member(json_node_get_object(res), "identities")) {
                vrotctl_print_json(res);
                return TRUE;
        }
        all = json_object_get_array_member(json_node_get_object(res), "identities");
        printf("%-40s  %-36s  %-10s  %-20s  %-20s  %s\n", "SERIAL", "INSTANCE", "HANDLE",
               "NOT AFTER", "REVOKED", "NAME");
        for (guint i = 0; all && i < json_array_get_length(all); i++)
                print_identity_row(json_array_get_object_element(all, i));
        return TRUE;
}

static gboolean crl_run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        g_autofree gchar *out = NULL;
        GOptionEntry entries[] = {
                { "out", 'o', 0, G_OPTION_ARG_FILENAME, &out, "write FILE instead of stdout", "FILE" },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(VrotRpcclient) c = NULL;
        g_autoptr(JsonNode) res = NULL;
        const char *pem;

        if (!vrotctl_parse_args(&vrotctl_cmd_crl, entries, &argc, &argv, error) ||
            !(c = vrotctl_connect(ctx, error)) || !vrotctl_call(c, "host.crl", NULL, &res, error))
                return FALSE;
        if (ctx->json) {
                vrotctl_print_json(res);
                return TRUE;
        }
        pem = JSON_NODE_HOLDS_OBJECT(res) ? vrotctl_member_string(json_node_get_object(res), "pem")
                                          : NULL;
        if (!pem) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "vrotd sent no CRL");
                return FALSE;
        }
        return vrotctl_output(out, (const guint8 *)pem, strlen(pem), error);
}

const VrotctlCommand vrotctl_cmd_identity_issue = {
        .name = "identity issue",
        .args = "UUID --name NAME [--uri URI] [--days N] [--out FILE]",
        .summary = "a service identity: a key in the service's vTPM, a certificate from the host CA",
        .run = issue_run,
};

const VrotctlCommand vrotctl_cmd_identity_challenge = {
        .name = "identity challenge",
        .args = "UUID (--name NAME --key-public FILE [--uri URI] [--days N] | --attestation) "
                "--ak-public FILE --credential FILE",
        .summary = "a VM guest's first call: the credential for its AK, in tpm2-tools' format",
        .run = challenge_run,
};

const VrotctlCommand vrotctl_cmd_identity_complete = {
        .name = "identity complete",
        .args = "CHALLENGE --secret FILE [--attest FILE --signature FILE] [--out FILE]",
        .summary = "a VM guest's second call: its answer and certification; prints the identity",
        .run = complete_run,
};

const VrotctlCommand vrotctl_cmd_identity_revoke = {
        .name = "identity revoke",
        .args = "SERIAL",
        .summary = "revoke an identity certificate (listed in the next CRL at once)",
        .run = revoke_run,
};

const VrotctlCommand vrotctl_cmd_identity_list = {
        .name = "identity list",
        .args = "[UUID]",
        .summary = "the identities issued (for one instance)",
        .run = list_run,
};

const VrotctlCommand vrotctl_cmd_crl = {
        .name = "crl",
        .args = "[--out FILE]",
        .summary = "the host CA's CRL of revoked identities (PEM)",
        .run = crl_run,
};
