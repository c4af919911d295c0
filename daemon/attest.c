/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * instance.attest (docs/attestation.md): the vTPM's quote in a thread (it
 * never touches the host TPM), then on the main loop the AK certificate if
 * the AK is new, the host's quote over the digest of the vTPM's, the host
 * AK's certification of the host CA key, and the bundle.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "attest.h"
#include "autoptr.h"
#include "hosttpm.h"
#include "tpmevidence.h"
#include "vtpmident.h"
#include "x509.h"

G_DEFINE_QUARK(vrot-attest-error-quark, vrot_attest_error)

#define SECRET_LEN 32
#define VTPM_TIMEOUT_MS 10000           /* the service may hold its data socket */
#define HOST_EVENT_LOG "/sys/kernel/security/tpm0/binary_bios_measurements"
#define HOST_EVENT_LOG_MAX (4 * 1024 * 1024)

typedef struct AttestTask {
        VrotHost *host;
        VrotIdentities *identities;
        VrotInstances *instances;
        gchar *uuid, *tcti;
        GBytes *nonce, *event_log;
        guint32 pcrs, host_pcrs;
        gboolean dev;
        X509 *ek_cert;
        X509 *ak_cert;                  /* the current AK's, or NULL: prove a new AK */
        VrotSecret *secret;             /* the credential's, when proving */
        VrotTpmevidenceQuote *quote;    /* the vTPM's */
        VrotAttestDoneFunc fn;
        gpointer data;
} AttestTask;

static void attest_task_free(AttestTask *t)
{
        g_free(t->uuid);
        g_free(t->tcti);
        g_bytes_unref(t->nonce);
        if (t->event_log)
                g_bytes_unref(t->event_log);
        X509_free(t->ek_cert);
        X509_free(t->ak_cert);
        vrot_secret_free(t->secret);
        vrot_tpmevidence_quote_free(t->quote);
        g_free(t);
}

static gboolean task_credential(GBytes *ak_name, GBytes **ret_id, GBytes **ret_encrypted,
                                gpointer data, GError **error)
{
        AttestTask *t = data;

        return vrot_identities_make_credential(t->ek_cert, ak_name, t->secret, ret_id,
                                               ret_encrypted, error);
}

static gboolean task_check(GBytes *ak_public, GBytes *answer, gpointer data, GError **error)
{
        AttestTask *t = data;

        (void)ak_public;
        if (g_bytes_get_size(answer) != SECRET_LEN ||
            CRYPTO_memcmp(g_bytes_get_data(answer, NULL), vrot_secret_data(t->secret),
                          SECRET_LEN) != 0) {
                g_set_error_literal(error, VROT_ATTEST_ERROR, VROT_ATTEST_ERROR_REFUSED,
                                    "the answer to the credential is not its secret: the "
                                    "attestation key is not in the vTPM that holds the EK");
                return FALSE;
        }
        return TRUE;
}

static void attest_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancel)
{
        AttestTask *t = data;
        gboolean prove = t->ak_cert == NULL;
        GError *error = NULL;

        (void)source;
        (void)cancel;
        if (vrot_vtpmident_quote(t->tcti, VTPM_TIMEOUT_MS, t->nonce, t->pcrs,
                                 prove ? task_credential : NULL, prove ? task_check : NULL, t,
                                 &t->quote, &error))
                g_task_return_boolean(task, TRUE);
        else
                g_task_return_error(task, error);
}

static gchar *b64(GBytes *b)
{
        return g_base64_encode(g_bytes_get_data(b, NULL), g_bytes_get_size(b));
}

static void add_b64(JsonObject *o, const char *name, GBytes *b)
{
        if (b) {
                g_autofree gchar *text = b64(b);
                json_object_set_string_member(o, name, text);
        } else {
                json_object_set_null_member(o, name);
        }
}

/* {"<index>": "<hex>"} of a quote's PCR values. */
static JsonObject *pcrs_json(const VrotTpmevidenceQuote *q)
{
        JsonObject *o = json_object_new();
        const guint8 *v = g_bytes_get_data(q->pcr_values, NULL);

        for (guint i = 0, k = 0; i < VROT_TPMEVIDENCE_PCRS; i++) {
                if (!(q->pcr_mask & (1u << i)))
                        continue;
                g_autofree gchar *hex = g_malloc(65);
                g_autofree gchar *index = g_strdup_printf("%u", i);
                for (guint j = 0; j < 32; j++)
                        g_snprintf(hex + 2 * j, 3, "%02x", v[32 * k + j]);
                json_object_set_string_member(o, index, hex);
                k++;
        }
        return o;
}

/* ak_public, attest, signature and pcrs of @q into @o. */
static void add_quote(JsonObject *o, const VrotTpmevidenceQuote *q)
{
        add_b64(o, "ak_public", q->ak_public);
        add_b64(o, "attest", q->attest);
        add_b64(o, "signature", q->signature);
        json_object_set_object_member(o, "pcrs", pcrs_json(q));
}

static void add_pem(JsonObject *o, const char *name, X509 *x)
{
        g_autofree gchar *pem = vrot_x509_to_pem(x, NULL);

        json_object_set_string_member(o, name, pem ? pem : "");
}

static GBytes *host_event_log(gboolean dev)
{
        gchar *data = NULL;
        gsize len = 0;

        if (dev || !g_file_get_contents(HOST_EVENT_LOG, &data, &len, NULL))
                return NULL;
        if (len > HOST_EVENT_LOG_MAX) {
                g_free(data);
                return NULL;
        }
        return g_bytes_new_take(data, len);
}

/* The host's half, on the main loop, and the bundle. */
static JsonNode *bundle(AttestTask *t, X509 *ak_cert, GError **error)
{
        VrotHostTpm *tpm = vrot_host_tpm(t->host);
        g_autoptr(VrotTpmevidenceQuote) host_quote = NULL;
        g_autoptr(VrotTpmevidenceKey) certify = NULL;
        g_autoptr(JsonNode) crl = NULL;
        g_autoptr(GBytes) link = NULL, host_log = host_event_log(t->dev);
        guint8 digest[SHA256_DIGEST_LENGTH];
        STACK_OF(X509) *path = vrot_host_ca_path(t->host);
        JsonObject *root, *vtpm, *host, *ca;
        JsonArray *chain;
        JsonNode *res;

        SHA256(g_bytes_get_data(t->quote->attest, NULL), g_bytes_get_size(t->quote->attest),
               digest);
        link = g_bytes_new(digest, sizeof(digest));
        if (!vrot_host_tpm_quote(tpm, link, t->host_pcrs, t->nonce, &host_quote, &certify,
                                 error) ||
            !(crl = vrot_identities_crl(t->identities, error)))
                return NULL;

        res = json_node_init_object(json_node_alloc(), json_object_new());
        root = json_node_get_object(res);
        json_object_set_int_member(root, "version", 1);
        json_object_set_string_member(root, "instance", t->uuid);
        add_b64(root, "nonce", t->nonce);

        vtpm = json_object_new();
        add_quote(vtpm, t->quote);
        add_pem(vtpm, "ak_cert_pem", ak_cert);
        add_pem(vtpm, "ek_cert_pem", t->ek_cert);
        add_b64(vtpm, "event_log", t->event_log);
        json_object_set_object_member(root, "vtpm", vtpm);

        host = json_object_new();
        add_quote(host, host_quote);
        ca = json_object_new();
        add_b64(ca, "ca_public", certify->key_public);
        add_b64(ca, "attest", certify->attest);
        add_b64(ca, "signature", certify->signature);
        json_object_set_object_member(host, "ca_certify", ca);
        chain = json_array_new();
        for (int i = 0; path && i < sk_X509_num(path); i++) {
                g_autofree gchar *pem = vrot_x509_to_pem(sk_X509_value(path, i), NULL);
                json_array_add_string_element(chain, pem ? pem : "");
        }
        json_object_set_array_member(host, "ca_chain_pem", chain);
        json_object_set_string_member(host, "crl_pem",
                                      json_object_get_string_member(json_node_get_object(crl),
                                                                    "pem"));
        add_b64(host, "event_log", host_log);
        json_object_set_object_member(root, "host", host);
        return res;
}

/* A new AK: certified now; the AK that was certified: still the one in the vTPM? */
static X509 *ak_certificate(AttestTask *t, GError **error)
{
        g_autoptr(EVP_PKEY) ak = NULL;
        g_autoptr(GError) local = NULL;
        g_autofree gchar *pem = NULL;
        X509 *cert;

        if (!vrot_tpmevidence_verify_quote(t->quote, t->nonce, &ak, &local)) {
                g_set_error(error, VROT_ATTEST_ERROR, VROT_ATTEST_ERROR_REFUSED,
                            "the vTPM's quote does not verify: %s", local->message);
                return NULL;
        }
        if (t->ak_cert) {
                if (EVP_PKEY_eq(X509_get0_pubkey(t->ak_cert), ak) == 1)
                        return X509_dup(t->ak_cert);
                g_set_error(error, VROT_ATTEST_ERROR, VROT_ATTEST_ERROR_REFUSED,
                            "the vTPM's key at 0x%08x is not the certified attestation key "
                            "(replaced inside the vTPM?); revoke its certificate (identity.revoke) "
                            "to have a new one made", VROT_VTPMIDENT_AK_HANDLE);
                return NULL;
        }
        if (!(pem = vrot_identities_issue_ak(t->identities, t->uuid, ak, t->ek_cert, error)) ||
            !vrot_instances_set_ak_cert_pem(t->instances, t->uuid, pem, error) ||
            !(cert = vrot_x509_from_pem(pem, strlen(pem), error)))
                return NULL;
        return cert;
}

/* Logs the outcome and hands it to the caller. */
static void finish(const gchar *uuid, const gchar *how, JsonNode *result, GError *error,
                   VrotAttestDoneFunc fn, gpointer data)
{
        if (result)
                g_message("instance %s: attested (%s)", uuid, how);
        else
                g_message("refused: instance.attest of instance %s: %s", uuid, error->message);
        fn(result, error, data);
}

static void attest_done(GObject *source, GAsyncResult *res, gpointer data)
{
        AttestTask *t = data;
        g_autoptr(X509) ak_cert = NULL;
        g_autofree gchar *how = g_strdup_printf("vTPM PCRs 0x%06x, host PCRs 0x%06x", t->pcrs,
                                                t->host_pcrs);
        GError *error = NULL;
        JsonNode *result = NULL;

        (void)source;
        if (g_task_propagate_boolean(G_TASK(res), &error) &&
            (ak_cert = ak_certificate(t, &error)))
                result = bundle(t, ak_cert, &error);
        finish(t->uuid, how, result, error, t->fn, t->data);
}

/* The AK certificate on file for @uuid; NULL if there is none, or (and
 * *@ret_revoked) if it was revoked. */
static X509 *current_ak_cert(VrotInstances *instances, VrotIdentities *identities,
                             const gchar *uuid, gboolean *ret_revoked)
{
        g_autofree gchar *pem = vrot_instances_ak_cert_pem(instances, uuid);
        X509 *cert = pem ? vrot_x509_from_pem(pem, strlen(pem), NULL) : NULL;

        *ret_revoked = cert && vrot_identities_cert_revoked(identities, cert);
        if (*ret_revoked)
                g_clear_pointer(&cert, X509_free);
        return cert;
}

static AttestTask *task_new(VrotHost *host, VrotInstances *instances,
                            VrotIdentities *identities, const VrotAttestRequest *req,
                            VrotAttestDoneFunc fn, gpointer data)
{
        AttestTask *t = g_new0(AttestTask, 1);

        *t = (AttestTask){ .host = host, .identities = identities, .instances = instances,
                           .uuid = g_strdup(req->uuid), .nonce = g_bytes_ref(req->nonce),
                           .event_log = req->event_log ? g_bytes_ref(req->event_log) : NULL,
                           .pcrs = req->pcrs, .host_pcrs = req->host_pcrs, .dev = req->dev,
                           .fn = fn, .data = data };
        return t;
}

/* A VM: the guest quoted with the AK certified through identity.challenge
 * (purpose "attestation"); the daemon checks it and adds the host half. */
static void attest_guest(AttestTask *t, const VrotTpmevidenceQuote *gq)
{
        g_autoptr(X509) ak_cert = NULL;
        GError *error = NULL;
        JsonNode *result = NULL;
        gboolean revoked = FALSE;

        t->quote = g_new0(VrotTpmevidenceQuote, 1);
        *t->quote = (VrotTpmevidenceQuote){ .ak_public = g_bytes_ref(gq->ak_public),
                                            .attest = g_bytes_ref(gq->attest),
                                            .signature = g_bytes_ref(gq->signature),
                                            .pcr_mask = gq->pcr_mask,
                                            .pcr_values = g_bytes_ref(gq->pcr_values) };
        t->pcrs = gq->pcr_mask;
        t->ek_cert = vrot_identities_ek_cert(t->identities, t->uuid, VROT_INSTANCE_VM, NULL,
                                             &error);
        if (t->ek_cert &&
            !(t->ak_cert = current_ak_cert(t->instances, t->identities, t->uuid, &revoked)))
                g_set_error(&error, VROT_ATTEST_ERROR, VROT_ATTEST_ERROR_INVALID,
                            "instance %s has no %scertified attestation key: the guest gets one "
                            "with identity.challenge (purpose \"attestation\") and "
                            "identity.complete first", t->uuid, revoked ? "unrevoked " : "");
        if (t->ak_cert && (ak_cert = ak_certificate(t, &error)))
                result = bundle(t, ak_cert, &error);
        finish(t->uuid, "the guest's quote", result, error, t->fn, t->data);
        attest_task_free(t);
}

void vrot_attest_async(VrotHost *host, VrotInstances *instances, VrotIdentities *identities,
                       const VrotAttestRequest *req, VrotAttestDoneFunc fn, gpointer data)
{
        g_autoptr(GTask) task = NULL;
        g_autofree gchar *data_path = NULL;
        GError *error = NULL;
        VrotInstanceStatus st;
        VrotInstanceKind kind;
        gboolean revoked = FALSE;
        AttestTask *t;

        if (!vrot_instances_status(instances, req->uuid, &st, &error)) {
                fn(NULL, error, data);
                return;
        }
        kind = st.entry->kind;
        vrot_instances_status_clear(&st);
        t = task_new(host, instances, identities, req, fn, data);
        if (!req->guest_quote != (kind == VROT_INSTANCE_SERVICE)) {
                g_set_error(&error, VROT_ATTEST_ERROR, VROT_ATTEST_ERROR_INVALID,
                            kind == VROT_INSTANCE_VM
                            ? "instance %s is a VM: its guest makes the vTPM quote (ak_public, "
                              "attest, signature, pcr_values; docs/attestation.md)"
                            : "instance %s is a service: vrotd makes its vTPM quote itself",
                            req->uuid);
        } else if (req->guest_quote) {
                attest_guest(t, req->guest_quote);
                return;
        } else if ((t->ek_cert = vrot_identities_ek_cert(identities, req->uuid,
                                                         VROT_INSTANCE_SERVICE, &data_path,
                                                         &error))) {
                /* The AK certificate on file, unless it was revoked: then a new AK. */
                t->ak_cert = current_ak_cert(instances, identities, req->uuid, &revoked);
                if (revoked)
                        g_message("instance %s: its attestation key's certificate is revoked: "
                                  "a new attestation key is made", req->uuid);
        }
        if (error) {
                finish(t->uuid, NULL, NULL, error, fn, data);
                attest_task_free(t);
                return;
        }
        t->tcti = g_strconcat("swtpm:path=", data_path, NULL);
        if (!t->ak_cert) {
                t->secret = vrot_secret_new(SECRET_LEN, NULL);
                if (!t->secret || RAND_priv_bytes(vrot_secret_data(t->secret), SECRET_LEN) != 1)
                        g_error("cannot make a credential secret");
        }
        task = g_task_new(NULL, NULL, attest_done, t);
        g_task_set_task_data(task, t, (GDestroyNotify)attest_task_free);
        g_task_run_in_thread(task, attest_thread);
}
