/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrotctl host-evidence: the host's evidence that its endorsement CA key
 * lives in its TPM (host.evidence, docs/host-evidence.md) for a fresh or
 * given nonce, and the certification request for that key.  With
 * --tpm-vendor-ca it also checks steps 1 to 5 here; the credential
 * activation of step 6 is host-enrol's.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "autoptr.h"
#include "jsonrpc.h"
#include "prover.h"
#include "x509.h"

typedef struct Args {
        gchar *nonce;
        gchar *vendor_ca;
} Args;

static void args_clear(Args *a)
{
        g_free(a->nonce);
        g_free(a->vendor_ca);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Args, args_clear)

static GBytes *nonce_of(const char *b64, GError **error)
{
        guint8 fresh[VROT_TPMEVIDENCE_NONCE_LEN];
        g_autoptr(GError) local = NULL;
        GBytes *nonce = NULL;

        if (!b64) {
                if (RAND_bytes(fresh, sizeof(fresh)) != 1) {
                        g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_FAILED, "no random nonce");
                        return NULL;
                }
                return g_bytes_new(fresh, sizeof(fresh));
        }
        if (!vrot_jsonrpc_base64_decode(b64, strlen(b64), VROT_TPMEVIDENCE_MAX_NONCE, &nonce,
                                        &local) || g_bytes_get_size(nonce) == 0) {
                g_set_error(error, VROTCTL_USAGE_ERROR, 0, "host-evidence: --nonce: %s",
                            local ? local->message : "empty");
                g_clear_pointer(&nonce, g_bytes_unref);
                return NULL;
        }
        return nonce;
}

/* Steps 1-5 against the vendor CAs in @path. */
static gboolean verify(const char *path, const VrotTpmevidence *ev, GBytes *nonce,
                       GError **error)
{
        g_autoptr(X509_STORE) store = X509_STORE_new();
        g_autoptr(VrotTpmevidenceVerified) v = NULL;
        STACK_OF(X509) *vendor = vrotctl_load_certs(path, error);
        gboolean ok = vendor != NULL;

        for (int i = 0; ok && i < sk_X509_num(vendor); i++)
                ok = X509_STORE_add_cert(store, sk_X509_value(vendor, i)) == 1;
        if (vendor)
                sk_X509_pop_free(vendor, X509_free);
        return ok && vrot_tpmevidence_verify(ev, nonce, store, NULL, &v, error);
}

static void print_evidence(const VrotctlProver *p, GBytes *nonce, gboolean verified)
{
        JsonObject *ev = json_object_get_object_member(json_node_get_object(p->result), "evidence");
        g_autofree gchar *b64 = g_base64_encode(g_bytes_get_data(nonce, NULL),
                                                g_bytes_get_size(nonce));
        g_autofree gchar *csr = vrotctl_subject(X509_REQ_get_subject_name(p->csr));
        const char *ek_pem = vrotctl_member_string(ev, "ek_cert_pem");
        g_autoptr(X509) ek = vrot_x509_from_pem(ek_pem, strlen(ek_pem), NULL);
        g_autofree gchar *ek_subject = ek ? vrotctl_subject(X509_get_subject_name(ek)) : NULL;
        g_autofree gchar *ek_issuer = ek ? vrotctl_subject(X509_get_issuer_name(ek)) : NULL;

        vrotctl_print_field("nonce:", b64);
        vrotctl_print_field("AK name:", vrotctl_member_string(ev, "ak_name"));
        vrotctl_print_field("EK certificate:", ek_subject);
        vrotctl_print_field("  issued by:", ek_issuer);
        vrotctl_print_field("request subject:", csr);
        vrotctl_print_field("verified:", verified ? "steps 1-5 (docs/host-evidence.md)"
                                                  : "no (give --tpm-vendor-ca)");
}

static gboolean run(const VrotctlContext *ctx, int argc, char **argv, GError **error)
{
        g_auto(Args) a = { 0 };
        GOptionEntry entries[] = {
                { "nonce", 0, 0, G_OPTION_ARG_STRING, &a.nonce, "Nonce (base64)", "BASE64" },
                { "tpm-vendor-ca", 0, 0, G_OPTION_ARG_FILENAME, &a.vendor_ca,
                  "TPM vendor CA certificates (PEM)", "FILE" },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(VrotRpcclient) c = NULL;
        g_autoptr(GBytes) nonce = NULL;
        g_autoptr(VrotTpmevidence) ev = NULL;
        VrotctlProver p = { 0 };
        gboolean ok;

        if (!vrotctl_parse_args(&vrotctl_cmd_host_evidence, entries, &argc, &argv, error) ||
            !(nonce = nonce_of(a.nonce, error)) || !(c = vrotctl_connect(ctx, error)))
                return FALSE;
        p.client = c;
        ok = vrotctl_prover_evidence(&p, nonce, &ev, error) &&
             (!a.vendor_ca || verify(a.vendor_ca, ev, nonce, error));
        if (ok && ctx->json) {
                g_autofree gchar *b64 = g_base64_encode(g_bytes_get_data(nonce, NULL),
                                                        g_bytes_get_size(nonce));
                json_object_set_string_member(json_node_get_object(p.result), "nonce", b64);
                vrotctl_print_json(p.result);
        } else if (ok) {
                print_evidence(&p, nonce, a.vendor_ca != NULL);
        }
        vrotctl_prover_clear(&p);
        return ok;
}

const VrotctlCommand vrotctl_cmd_host_evidence = {
        .name = "host-evidence",
        .args = "[--nonce BASE64] [--tpm-vendor-ca FILE]",
        .summary = "the host's TPM2_Certify evidence and CSR for its CA key (host.evidence)",
        .run = run,
};
