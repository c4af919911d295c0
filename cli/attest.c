/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrotctl attest: a linked-attestation bundle of an instance
 * (instance.attest), JSON on stdout or into --out.
 * vrotctl verify: checks a bundle offline, without vrotd
 * (lib/attestverify.c, docs/attestation.md); one line per check, then the
 * verdict; exit status 0 only when every check passed.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>

#include "attestverify.h"
#include "autoptr.h"
#include "tpmevidence.h"
#include "vrotctl.h"
#include "hex.h"
#include "x509.h"

#define MAX_NONCE 64

/* 1 to 64 bytes as hex digits. */
static GBytes *parse_nonce(const VrotctlCommand *cmd, const char *hex, GError **error)
{
        gsize n = hex ? strlen(hex) : 0;
        guint8 *out;

        if (n < 2 || n % 2 || n / 2 > MAX_NONCE) {
                vrotctl_usage_error(cmd, error, "--nonce takes 1 to %d bytes as hex digits", MAX_NONCE);
                return NULL;
        }
        out = g_malloc(n / 2);
        if (!vrot_hex_decode(hex, n, out)) {
                g_free(out);
                vrotctl_usage_error(cmd, error, "--nonce: '%s' is not hex", hex);
                return NULL;
        }
        return g_bytes_new_take(out, n / 2);
}

/* "0,1,4-7" as a JSON array of indices. */
static JsonArray *parse_pcrs(const VrotctlCommand *cmd, const char *option, const char *list,
                             GError **error)
{
        g_auto(GStrv) parts = g_strsplit(list, ",", -1);
        g_autoptr(JsonArray) out = json_array_new();

        for (gsize i = 0; parts[i]; i++) {
                g_auto(GStrv) range = g_strsplit(parts[i], "-", 2);
                guint64 lo = 0, hi = 0;

                if (!g_ascii_string_to_unsigned(range[0], 10, 0, VROT_TPMEVIDENCE_PCRS - 1, &lo,
                                                NULL) ||
                    !g_ascii_string_to_unsigned(range[1] ? range[1] : range[0], 10, lo,
                                                VROT_TPMEVIDENCE_PCRS - 1, &hi, NULL)) {
                        vrotctl_usage_error(cmd, error, "%s: '%s' is not a PCR index or range of 0 to %d",
                                    option, parts[i], VROT_TPMEVIDENCE_PCRS - 1);
                        return NULL;
                }
                for (guint64 p = lo; p <= hi; p++)
                        json_array_add_int_element(out, (gint64)p);
        }
        return g_steal_pointer(&out);
}

static gboolean attest_run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        const VrotctlCommand *cmd = &vrotctl_cmd_attest;
        g_autofree gchar *nonce_hex = NULL, *pcrs = NULL, *host_pcrs = NULL, *log_path = NULL;
        g_autofree gchar *out = NULL, *text = NULL;
        GOptionEntry entries[] = {
                { "nonce", 'n', 0, G_OPTION_ARG_STRING, &nonce_hex, "your nonce, hex", "HEX" },
                { "pcrs", 'p', 0, G_OPTION_ARG_STRING, &pcrs, "the vTPM PCRs (default 0-7)", "LIST" },
                { "host-pcrs", 0, 0, G_OPTION_ARG_STRING, &host_pcrs, "the host PCRs (default 0-7)", "LIST" },
                { "event-log", 0, 0, G_OPTION_ARG_FILENAME, &log_path, "the guest's event log", "FILE" },
                { "out", 'o', 0, G_OPTION_ARG_FILENAME, &out, "write FILE instead of stdout", "FILE" },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(JsonObject) extra = json_object_new();
        g_autoptr(JsonNode) res = NULL;
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(GBytes) nonce = NULL;
        const char *uuid = NULL;
        gsize len = 0;

        if (!vrotctl_parse_uuid_args(cmd, entries, &argc, &argv, &uuid, error) ||
            !vrotctl_require(cmd, "--nonce", nonce_hex, error) ||
            !(nonce = parse_nonce(cmd, nonce_hex, error)))
                return FALSE;
        text = g_base64_encode(g_bytes_get_data(nonce, NULL), g_bytes_get_size(nonce));
        json_object_set_string_member(extra, "nonce", text);
        for (guint i = 0; i < 2; i++) {
                const char *list = i ? host_pcrs : pcrs;
                JsonArray *a;

                if (!list)
                        continue;
                if (!(a = parse_pcrs(cmd, i ? "--host-pcrs" : "--pcrs", list, error)))
                        return FALSE;
                json_object_set_array_member(extra, i ? "host_pcrs" : "pcrs", a);
        }
        if (log_path && !vrotctl_put_file(extra, "event_log", log_path, error))
                return FALSE;
        if (!(res = vrotctl_instance_call(ctx, "instance.attest", uuid, extra, error)))
                return FALSE;
        json_generator_set_pretty(gen, TRUE);
        json_generator_set_root(gen, res);
        g_clear_pointer(&text, g_free);
        text = json_generator_to_data(gen, &len);
        text = g_realloc(text, len + 2);
        text[len++] = '\n';
        text[len] = '\0';
        return vrotctl_output(out, (const guint8 *)text, len, error);
}

static X509_CRL *read_crl(const char *path, GError **error)
{
        g_autofree gchar *text = vrotctl_read_file(path, NULL, error);
        g_autoptr(BIO) bio = text ? BIO_new_mem_buf(text, -1) : NULL;
        X509_CRL *crl = bio ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;

        if (text && !crl)
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: no PEM CRL", path);
        return crl;
}

static gboolean verify_run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        const VrotctlCommand *cmd = &vrotctl_cmd_verify;
        g_autofree gchar *root_path = NULL, *policy_path = NULL, *nonce_hex = NULL;
        g_autofree gchar *crl_path = NULL, *bundle = NULL, *policy_text = NULL;
        GOptionEntry entries[] = {
                { "root", 'r', 0, G_OPTION_ARG_FILENAME, &root_path, "the fleet root you trust", "PEM" },
                { "policy", 'p', 0, G_OPTION_ARG_FILENAME, &policy_path, "accepted host and guest PCRs", "JSON" },
                { "nonce", 'n', 0, G_OPTION_ARG_STRING, &nonce_hex, "the nonce you sent, hex", "HEX" },
                { "crl", 0, 0, G_OPTION_ARG_FILENAME, &crl_path, "a fresher CRL of the host CA", "PEM" },
                G_OPTION_ENTRY_NULL,
        };
        g_autofree gchar *root_text = NULL;
        g_autoptr(X509) root = NULL;
        g_autoptr(X509_CRL) crl = NULL;
        g_autoptr(GBytes) nonce = NULL;
        g_autoptr(VrotAttestPolicy) policy = NULL;
        g_autoptr(GPtrArray) checks = NULL;
        const char *path = NULL;
        gsize len = 0, policy_len = 0;
        guint failed = 0;

        (void)ctx;      /* offline: no socket */
        if (!vrotctl_parse_operand(cmd, entries, &argc, &argv, "the bundle file", FALSE, &path,
                                   error) ||
            !vrotctl_require(cmd, "--root", root_path, error) ||
            !vrotctl_require(cmd, "--policy", policy_path, error) ||
            !vrotctl_require(cmd, "--nonce", nonce_hex, error) ||
            !(nonce = parse_nonce(cmd, nonce_hex, error)) ||
            !(root_text = vrotctl_read_file(root_path, &len, error)) ||
            !(root = vrot_x509_from_pem(root_text, len, error)) ||
            (crl_path && !(crl = read_crl(crl_path, error))) ||
            !(policy_text = vrotctl_read_file(policy_path, &policy_len, error)) ||
            !(policy = vrot_attest_policy_parse(policy_text, policy_len, error)) ||
            !(bundle = vrotctl_read_file(path, &len, error)))
                return FALSE;
        if (!vrot_attest_verify(bundle, len, root, crl, nonce, policy, &checks, error)) {
                g_prefix_error(error, "%s: ", path);
                return FALSE;
        }
        for (guint i = 0; i < checks->len; i++) {
                const VrotAttestCheck *c = checks->pdata[i];

                printf("%-4s  %-14s %s\n", c->ok ? "ok" : "FAIL", c->name, c->detail);
                failed += !c->ok;
        }
        if (!failed) {
                printf("verdict: trusted\n");
                return TRUE;
        }
        printf("verdict: NOT trusted\n");
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: %u of %u checks failed", path,
                    failed, checks->len);
        return FALSE;
}

const VrotctlCommand vrotctl_cmd_attest = {
        .name = "attest",
        .args = "UUID --nonce HEX [--pcrs LIST] [--host-pcrs LIST] [--event-log FILE] [--out FILE]",
        .summary = "a linked-attestation bundle: the vTPM's quote tied to the host TPM's",
        .run = attest_run,
};

const VrotctlCommand vrotctl_cmd_verify = {
        .name = "verify",
        .args = "BUNDLE --root PEM --policy JSON --nonce HEX [--crl PEM]",
        .summary = "check a bundle offline, without vrotd; names every check that failed",
        .run = verify_run,
};
