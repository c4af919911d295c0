/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib-unix.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "autoptr.h"
#include "channel.h"
#include "hosttpm.h"
#include "maincall.h"
#include "fault.h"
#include "hex.h"
#include "mbundle.h"
#include "migrate.h"
#include "mseal.h"
#include "mpolicy.h"
#include "tlskey.h"
#include "tpmevidence.h"
#include "uuid.h"
#include "x509.h"

G_DEFINE_QUARK(vrot-migrate-error-quark, vrot_migrate_error)

#define NONCE_LEN 32
#define QUOTE_LABEL "vrot migration quote v1"
#define OFFER_LABEL "vrot migration offer v1"

G_STATIC_ASSERT(VROT_MBUNDLE_KEY_LEN == VROT_MKEY_KEY_LEN);
#define MAX_CONNECTIONS 8
#define RETRY_S 30

struct VrotMigration {
        VrotHost *host;
        VrotInstances *instances;
        GHashTable *notifying;          /* migration IDs whose decision a thread is telling */
        guint retry;                    /* the timer that tells pending decisions again */
        gchar *name;
        VrotMpolicy *policy;
        X509_CRL *crl;
        X509 *cert;                     /* transfer none: the host keeps it */
        STACK_OF(X509) *chain;          /* the host CA (and intermediates) */
        EVP_PKEY *key;                  /* signs in the host TPM (tlskey.h) */
        int listen_fd;
        guint16 port;
        guint watch;
        gint connections;               /* served now (atomic) */
        gint active;                    /* threads and jobs not finished (atomic) */
        gboolean closing;               /* vrot_migration_quiesce() began */
        GMutex lock;                    /* guards fds */
        GArray *fds;                    /* the sockets of the threads, to shut down at exit */
        gchar *last_id;                 /* the last migration this source committed (lock) */
};

/* ---- threads, and how they end at exit ------------------------------------------------ */

/* @fd is a thread's connection (@on) or no longer (before it is closed).
 * At exit every tracked socket is shut down, so blocked reads end. */
static void track(VrotMigration *m, int fd, gboolean on)
{
        g_mutex_lock(&m->lock);
        if (on) {
                g_array_append_val(m->fds, fd);
                if (m->closing)
                        (void)shutdown(fd, SHUT_RDWR);
        } else {
                for (guint i = 0; i < m->fds->len; i++)
                        if (g_array_index(m->fds, int, i) == fd) {
                                g_array_remove_index_fast(m->fds, i);
                                break;
                        }
        }
        g_mutex_unlock(&m->lock);
}

/* A thread or job finished: vrot_migration_quiesce() may be waiting. */
static void leave(VrotMigration *m)
{
        g_atomic_int_dec_and_test(&m->active);
        g_main_context_wakeup(NULL);
}

void vrot_migration_quiesce(VrotMigration *m)
{
        if (!m || m->closing)
                return;
        g_mutex_lock(&m->lock);
        m->closing = TRUE;
        for (guint i = 0; i < m->fds->len; i++)
                (void)shutdown(g_array_index(m->fds, int, i), SHUT_RDWR);
        g_mutex_unlock(&m->lock);
        g_clear_handle_id(&m->watch, g_source_remove);
        g_clear_handle_id(&m->retry, g_source_remove);
        /* The threads' host-TPM calls and the jobs' answers run here. */
        while (g_atomic_int_get(&m->active) > 0)
                g_main_context_iteration(NULL, TRUE);
}

/* ---- host-TPM work, on the main loop --------------------------------------------------- */

typedef struct SignCall {
        VrotHost *host;
        const guint8 *digest;
        GBytes *der;
        GError *error;
        gboolean ok;
} SignCall;

static void sign_on_main(gpointer data)
{
        SignCall *s = data;

        s->ok = vrot_host_tpm_transport_sign(vrot_host_tpm(s->host), s->digest, &s->der,
                                             &s->error);
}

/* lib/tlskey.h's signer: TPM2_Sign with the transport key, from any thread. */
static gboolean transport_sign(const guint8 *digest, gsize len, GBytes **ret_der, gpointer data,
                               GError **error)
{
        SignCall s = { .host = data, .digest = digest };

        if (len != 32)
                return FALSE;
        vrot_main_call(sign_on_main, &s);
        if (!s.ok) {
                g_propagate_error(error, s.error);
                return FALSE;
        }
        *ret_der = s.der;
        return TRUE;
}

/* This host's evidence over @qualifying: a quote of @mask and the CA key's certification. */
typedef struct EvidenceCall {
        VrotHost *host;
        GBytes *qualifying;
        guint32 mask;
        VrotTpmevidenceQuote *quote;
        VrotTpmevidenceKey *certify;
        GError *error;
} EvidenceCall;

static void evidence_on_main(gpointer data)
{
        EvidenceCall *e = data;

        (void)vrot_host_tpm_quote(vrot_host_tpm(e->host), e->qualifying, e->mask, e->qualifying,
                                  &e->quote, &e->certify, &e->error);
}

/* SHA-256(label ‖ @nonce ‖ the session's exporter): what a quote for the peer is over. */
static GBytes *qualifying(VrotMchannel *c, GBytes *nonce, GError **error)
{
        guint8 binding[32], digest[SHA256_DIGEST_LENGTH];
        g_autoptr(EVP_MD_CTX) md = EVP_MD_CTX_new();

        if (!vrot_mchannel_binding(c, binding, error))
                return NULL;
        if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
            EVP_DigestUpdate(md, QUOTE_LABEL, strlen(QUOTE_LABEL)) != 1 ||
            EVP_DigestUpdate(md, g_bytes_get_data(nonce, NULL), g_bytes_get_size(nonce)) != 1 ||
            EVP_DigestUpdate(md, binding, sizeof(binding)) != 1 ||
            EVP_DigestFinal_ex(md, digest, NULL) != 1)
                g_error("SHA-256 failed");
        return g_bytes_new(digest, sizeof(digest));
}

/* ---- the attested handshake ------------------------------------------------------------ */

static gboolean send_hello(VrotMigration *m, VrotMchannel *c, GBytes **ret_nonce,
                           GError **error)
{
        g_autoptr(VrotMframe) f = vrot_mframe_new(VROT_MFRAME_HELLO);
        guint8 nonce[NONCE_LEN];

        if (RAND_bytes(nonce, sizeof(nonce)) != 1)
                g_error("RAND_bytes failed");
        *ret_nonce = g_bytes_new(nonce, sizeof(nonce));
        vrot_mframe_set_bytes(f, "nonce", *ret_nonce);
        vrot_mframe_set_uint(f, "pcr_mask", vrot_mpolicy_pcr_mask(m->policy));
        return vrot_mchannel_send(c, f, error);
}

static gboolean peer_failed(VrotMframe *f, GError **error)
{
        if (vrot_mframe_type(f) == VROT_MFRAME_ERROR_FRAME)
                g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_PEER,
                            "the peer refused: %s", vrot_mframe_string(f, "message"));
        else
                g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_PEER,
                            "the peer sent %s out of turn", vrot_mframe_type_name(vrot_mframe_type(f)));
        return FALSE;
}

/* The next frame, which must be of @type. */
static VrotMframe *expect(VrotMchannel *c, VrotMframeType type, GError **error)
{
        VrotMframe *f = vrot_mchannel_receive(c, error);

        if (f && vrot_mframe_type(f) != type) {
                peer_failed(f, error);
                vrot_mframe_free(f);
                return NULL;
        }
        return f;
}

static gboolean send_evidence(VrotMigration *m, VrotMchannel *c, VrotMframe *peer_hello,
                              GError **error)
{
        g_autoptr(VrotMframe) f = vrot_mframe_new(VROT_MFRAME_EVIDENCE);
        EvidenceCall e = { .host = m->host,
                           .mask = (guint32)vrot_mframe_uint(peer_hello, "pcr_mask") };
        gboolean ok;

        if (!(e.qualifying = qualifying(c, vrot_mframe_bytes(peer_hello, "nonce"), error)))
                return FALSE;
        vrot_main_call(evidence_on_main, &e);
        ok = e.quote && e.certify;
        if (ok) {
                vrot_mframe_set_bytes(f, "ak_public", e.quote->ak_public);
                vrot_mframe_set_bytes(f, "attest", e.quote->attest);
                vrot_mframe_set_bytes(f, "signature", e.quote->signature);
                vrot_mframe_set_uint(f, "pcr_mask", e.quote->pcr_mask);
                vrot_mframe_set_bytes(f, "pcr_values", e.quote->pcr_values);
                vrot_mframe_set_bytes(f, "ca_public", e.certify->key_public);
                vrot_mframe_set_bytes(f, "ca_attest", e.certify->attest);
                vrot_mframe_set_bytes(f, "ca_signature", e.certify->signature);
                ok = vrot_mchannel_send(c, f, error);
        } else {
                g_propagate_error(error, g_steal_pointer(&e.error));
        }
        g_bytes_unref(e.qualifying);
        vrot_tpmevidence_quote_free(e.quote);
        vrot_tpmevidence_key_free(e.certify);
        g_clear_error(&e.error);
        return ok;
}

/* The peer's evidence against our nonce, its transport CA and our policy. */
static gboolean check_evidence(VrotMigration *m, VrotMchannel *c, VrotMframe *f, GBytes *nonce,
                               GError **error)
{
        g_autoptr(GBytes) q = qualifying(c, nonce, error);
        VrotTpmevidenceQuote quote = {
                .ak_public = vrot_mframe_bytes(f, "ak_public"),
                .attest = vrot_mframe_bytes(f, "attest"),
                .signature = vrot_mframe_bytes(f, "signature"),
                .pcr_mask = (guint32)vrot_mframe_uint(f, "pcr_mask"),
                .pcr_values = vrot_mframe_bytes(f, "pcr_values"),
        };
        VrotTpmevidenceKey ca = { .ak_public = quote.ak_public,
                                  .key_public = vrot_mframe_bytes(f, "ca_public"),
                                  .attest = vrot_mframe_bytes(f, "ca_attest"),
                                  .signature = vrot_mframe_bytes(f, "ca_signature") };
        X509 *issuer = vrot_mchannel_peer_issuer(c);
        g_autoptr(EVP_PKEY) ca_key = NULL;
        g_autoptr(GError) local = NULL;

        if (!q)
                return FALSE;
        if (!vrot_tpmevidence_verify_quote(&quote, q, NULL, &local) ||
            !vrot_tpmevidence_verify_key(&ca, q, &ca_key, &local) ||
            !vrot_mpolicy_check_pcrs(m->policy, quote.pcr_mask, quote.pcr_values, &local)) {
                g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_REFUSED,
                            "%s: %s", vrot_mchannel_peer_name(c), local->message);
                return FALSE;
        }
        if (!issuer || EVP_PKEY_eq(X509_get0_pubkey(issuer), ca_key) != 1) {
                g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_REFUSED,
                            "%s: the quoting AK certified another key than the CA of its "
                            "transport certificate", vrot_mchannel_peer_name(c));
                return FALSE;
        }
        return TRUE;
}

static void send_error(VrotMchannel *c, const gchar *message)
{
        g_autoptr(VrotMframe) f = vrot_mframe_new(VROT_MFRAME_ERROR_FRAME);
        /* At most 1000 characters (the frame's bound), never past the end. */
        g_autofree gchar *cut = g_utf8_substring(message, 0, MIN(g_utf8_strlen(message, -1), 1000));

        vrot_mframe_set_string(f, "message", cut);
        (void)vrot_mchannel_send(c, f, NULL);
}

static VrotMchannelConfig channel_config(VrotMigration *m)
{
        return (VrotMchannelConfig){ .cert = m->cert, .chain = m->chain, .key = m->key,
                                     .root = vrot_host_root_cert(m->host), .crl = m->crl,
                                     .policy = m->policy };
}

/* ---- the handshake ----------------------------------------------------------------------- */

/*
 * Both sides: hellos, then evidence, each checked against this host's
 * policy.  The connecting side (@initiator) speaks first.  Returns: the
 * peer's evidence frame (its AK is the one that certifies import keys).
 */
static VrotMframe *handshake(VrotMigration *m, VrotMchannel *c, gboolean initiator, GError **error)
{
        g_autoptr(VrotMframe) hello = NULL, evidence = NULL;
        g_autoptr(GBytes) nonce = NULL;

        if (initiator) {
                if (!send_hello(m, c, &nonce, error) ||
                    !(hello = expect(c, VROT_MFRAME_HELLO, error)) ||
                    !send_evidence(m, c, hello, error) ||
                    !(evidence = expect(c, VROT_MFRAME_EVIDENCE, error)) ||
                    !check_evidence(m, c, evidence, nonce, error))
                        return NULL;
                return g_steal_pointer(&evidence);
        }
        if (!(hello = expect(c, VROT_MFRAME_HELLO, error)) || !send_hello(m, c, &nonce, error) ||
            !(evidence = expect(c, VROT_MFRAME_EVIDENCE, error)))
                return NULL;
        if (!check_evidence(m, c, evidence, nonce, error)) {
                send_error(c, (*error)->message);
                return NULL;
        }
        return send_evidence(m, c, hello, error) ? g_steal_pointer(&evidence) : NULL;
}

/* SHA-256(label ‖ migration ID ‖ the session's exporter): what the import
 * key's certification is over, so an offer belongs to one ID and one session. */
static GBytes *offer_qualifying(VrotMchannel *c, const gchar *id, GError **error)
{
        guint8 binding[32], digest[SHA256_DIGEST_LENGTH];
        g_autoptr(EVP_MD_CTX) md = EVP_MD_CTX_new();

        if (!vrot_mchannel_binding(c, binding, error))
                return NULL;
        if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
            EVP_DigestUpdate(md, OFFER_LABEL, strlen(OFFER_LABEL)) != 1 ||
            EVP_DigestUpdate(md, id, strlen(id)) != 1 ||
            EVP_DigestUpdate(md, binding, sizeof(binding)) != 1 ||
            EVP_DigestFinal_ex(md, digest, NULL) != 1)
                g_error("SHA-256 failed");
        return g_bytes_new(digest, sizeof(digest));
}

static gboolean send_id(VrotMchannel *c, VrotMframeType type, const gchar *id, const gchar *reason,
                        GError **error)
{
        g_autoptr(VrotMframe) f = vrot_mframe_new(type);

        vrot_mframe_set_string(f, "migration_id", id);
        if (type == VROT_MFRAME_ABORT)
                vrot_mframe_set_string(f, "reason", reason);
        return vrot_mchannel_send(c, f, error);
}

/* The next frame, of @type and about migration @id. */
static VrotMframe *expect_id(VrotMchannel *c, VrotMframeType type, const gchar *id, GError **error)
{
        VrotMframe *f = expect(c, type, error);

        if (f && !g_str_equal(vrot_mframe_string(f, "migration_id"), id)) {
                g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_PEER,
                            "the peer sent %s for migration %s, not %s",
                            vrot_mframe_type_name(type), vrot_mframe_string(f, "migration_id"), id);
                vrot_mframe_free(f);
                return NULL;
        }
        return f;
}

/* ---- instance and host-TPM work, on the main loop ---------------------------------------- */

/* One step's arguments and results; each *_on_main fills ok or error. */
typedef struct Step {
        VrotMigration *m;
        const gchar *uuid, *id, *peer, *peer_name;
        guint64 generation;
        gboolean commit;
        gboolean live;                          /* a live migration: the state is QEMU's */
        gchar **certs;                          /* a live source's EK certificates (PEM) */
        VrotInstance *meta;                     /* check: out (transfer full); import: in */
        GBytes *bundle;                         /* export: out; import: in */
        GBytes *qualifying, *envelope;
        VrotHostImportKey *import;              /* import key: out; open: in, flushed */
        VrotTpmevidenceKey *evidence;
        gboolean ok;
        GError *error;
} Step;

static gboolean run(VrotMainFunc fn, Step *s, GError **error)
{
        vrot_main_call(fn, s);
        if (s->ok)
                return TRUE;
        g_propagate_error(error, g_steal_pointer(&s->error));
        return FALSE;
}

static void check_on_main(gpointer data)
{
        Step *s = data;

        s->ok = vrot_instances_migrate_check(s->m->instances, s->uuid, s->live, &s->meta,
                                             &s->error);
}

/* A live source: LOCKED, and its running worker gets the migration key (s->bundle). */
static void lock_live_on_main(gpointer data)
{
        Step *s = data;

        s->ok = vrot_instances_migrate_lock_live(s->m->instances, s->uuid, s->id, s->peer,
                                                 s->peer_name, g_bytes_get_data(s->bundle, NULL),
                                                 &s->error);
}

/* A live source's EK certificates, to travel with the key. */
static void certs_on_main(gpointer data)
{
        Step *s = data;

        s->certs = g_new0(gchar *, 3);
        s->certs[0] = vrot_instances_ek_cert_pem(s->m->instances, s->uuid, "rsa", NULL);
        s->certs[1] = vrot_instances_ek_cert_pem(s->m->instances, s->uuid, "ecc", NULL);
        s->ok = TRUE;
}

/* A live destination: has its worker taken the state from QEMU? */
static void received_on_main(gpointer data)
{
        Step *s = data;

        s->ok = vrot_instances_migrate_received(s->m->instances, s->id, s->peer_name, &s->error);
}

static void lock_on_main(gpointer data)
{
        Step *s = data;

        s->ok = vrot_instances_migrate_lock(s->m->instances, s->uuid, s->generation, s->id,
                                            s->peer, s->peer_name, &s->error) &&
                (s->bundle = vrot_instances_export(s->m->instances, s->uuid, &s->error));
}

static void decide_on_main(gpointer data)
{
        Step *s = data;

        s->ok = vrot_instances_migrate_decide(s->m->instances, s->id, s->commit, &s->error);
}

static void forget_on_main(gpointer data)
{
        Step *s = data;

        s->ok = vrot_instances_migrate_forget(s->m->instances, s->id, &s->error);
        g_hash_table_remove(s->m->notifying, s->id);
}

static void import_key_on_main(gpointer data)
{
        Step *s = data;

        s->ok = vrot_instances_import_check(s->m->instances, s->uuid, &s->error) &&
                (s->import = vrot_host_tpm_import_key_new(vrot_host_tpm(s->m->host), s->qualifying,
                                                          &s->evidence, &s->error));
}

/* Opens the envelope with the import key (TPM2_ECDH_ZGen), flushes the key
 * whatever happens (one transfer per key), and imports the state. */
static void import_on_main(gpointer data)
{
        Step *s = data;
        guint8 mid[VROT_MSEAL_ID_LEN], uuid[16];
        gsize len = 0;
        const guint8 *env = g_bytes_get_data(s->envelope, &len);

        vrot_hex_decode(s->id, 2 * VROT_MSEAL_ID_LEN, mid);
        vrot_uuid_parse(s->meta->uuid, uuid, NULL);
        s->bundle = vrot_mseal_open(env, len, mid, uuid, s->generation, vrot_host_import_key_zgen,
                                    s->import, &s->error);
        g_clear_pointer(&s->import, vrot_host_import_key_free);
        if (s->bundle && s->live) {
                g_auto(GStrv) certs = NULL;
                const guint8 *key = NULL;
                gsize n = 0;
                const guint8 *plain = g_bytes_get_data(s->bundle, &n);

                if (vrot_mbundle_parse_live(plain, n, &key, &certs, &s->error))
                        s->ok = vrot_instances_import_live(s->m->instances, s->meta, s->id,
                                                           s->peer_name, key,
                                                           (const gchar *const *)certs, &s->error);
        } else if (s->bundle)
                s->ok = vrot_instances_import(s->m->instances, s->meta, s->id, s->peer_name,
                                              s->bundle, &s->error);
}

static void end_on_main(gpointer data)
{
        Step *s = data;

        s->ok = vrot_instances_import_end(s->m->instances, s->id, s->peer_name, s->commit, &s->error);
}

static void step_clear(Step *s)
{
        if (s->certs) {
                g_free(s->certs[0]);
                g_free(s->certs[1]);
                g_free(s->certs);
        }
        if (s->import)
                vrot_main_call((VrotMainFunc)vrot_host_import_key_free, s->import);
        vrot_instance_free(s->meta);
        g_clear_pointer(&s->bundle, g_bytes_unref);
        g_clear_pointer(&s->qualifying, g_bytes_unref);
        vrot_tpmevidence_key_free(s->evidence);
        g_clear_error(&s->error);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Step, step_clear)

/* ---- the destination ----------------------------------------------------------------------- */

static gboolean parse_kind(const gchar *kind, VrotInstanceKind *ret)
{
        if (g_str_equal(kind, "vm"))
                *ret = VROT_INSTANCE_VM;
        else if (g_str_equal(kind, "service"))
                *ret = VROT_INSTANCE_SERVICE;
        else
                return FALSE;
        return TRUE;
}

/* An offer request: a one-time import key, the state, "prepared", then
 * the source's decision (which may also come later, in another session). */
static gboolean receive_instance(VrotMigration *m, VrotMchannel *c, VrotMframe *req, GError **error)
{
        g_auto(Step) s = { .m = m, .peer_name = vrot_mchannel_peer_name(c),
                           .generation = vrot_mframe_uint(req, "generation") };
        g_autoptr(VrotMframe) offer = vrot_mframe_new(VROT_MFRAME_OFFER);
        g_autoptr(VrotMframe) state = NULL, decision = NULL;
        g_autofree gchar *id = NULL;
        guint8 raw[VROT_MSEAL_ID_LEN];
        VrotInstance *meta = g_new0(VrotInstance, 1);

        s.meta = meta;
        meta->uuid = g_strdup(vrot_mframe_string(req, "uuid"));
        meta->name = g_strdup(vrot_mframe_string(req, "name"));
        meta->owner = (guint32)vrot_mframe_uint(req, "owner");
        s.uuid = meta->uuid;
        s.live = vrot_mframe_uint(req, "live") != 0;
        if (!parse_kind(vrot_mframe_string(req, "kind"), &meta->kind)) {
                g_set_error_literal(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_REFUSED,
                                    "unknown instance kind");
                send_error(c, (*error)->message);
                return FALSE;
        }
        if (RAND_bytes(raw, sizeof(raw)) != 1)
                g_error("RAND_bytes failed");
        id = vrot_hex_encode(raw, sizeof(raw));
        s.id = id;
        if (!(s.qualifying = offer_qualifying(c, id, error)))
                return FALSE;
        if (!run(import_key_on_main, &s, error)) {
                send_error(c, (*error)->message);
                return FALSE;
        }
        vrot_mframe_set_string(offer, "migration_id", id);
        vrot_mframe_set_bytes(offer, "import_public", s.evidence->key_public);
        vrot_mframe_set_bytes(offer, "attest", s.evidence->attest);
        vrot_mframe_set_bytes(offer, "signature", s.evidence->signature);
        if (!vrot_mchannel_send(c, offer, error))
                return FALSE;
        vrot_fault_point("dst-offered");
        if (!(state = expect_id(c, VROT_MFRAME_STATE, id, error)))
                return FALSE;
        s.envelope = vrot_mframe_bytes(state, "envelope");
        if (!run(import_on_main, &s, error)) {
                send_error(c, (*error)->message);
                return FALSE;
        }
        g_message("migration %s: instance %s from %s prepared", id, s.uuid, s.peer_name);
        vrot_fault_point("dst-prepared");
        if (!send_id(c, VROT_MFRAME_PREPARED, id, NULL, error))
                return FALSE;
        /* Live: QEMU moves the state now; the source's decision comes after
         * it, in a session of its own (a status, then the commit). */
        if (s.live)
                return TRUE;
        /* From here the copy waits for the source's word, in this session or a later one. */
        decision = vrot_mchannel_receive(c, error);
        if (!decision)
                return FALSE;
        if ((vrot_mframe_type(decision) != VROT_MFRAME_COMMIT &&
             vrot_mframe_type(decision) != VROT_MFRAME_ABORT) ||
            !g_str_equal(vrot_mframe_string(decision, "migration_id"), id))
                return peer_failed(decision, error);
        s.commit = vrot_mframe_type(decision) == VROT_MFRAME_COMMIT;
        if (!run(end_on_main, &s, error)) {
                send_error(c, (*error)->message);
                return FALSE;
        }
        vrot_fault_point(s.commit ? "dst-committed" : "dst-aborted");
        return send_id(c, VROT_MFRAME_DONE, id, NULL, error);
}

static gboolean receive_decision(VrotMigration *m, VrotMchannel *c, VrotMframe *f, GError **error);

/* A live source asks whether QEMU's stateblobs arrived here before it commits. */
static gboolean receive_status(VrotMigration *m, VrotMchannel *c, VrotMframe *f, GError **error)
{
        g_auto(Step) s = { .m = m, .peer_name = vrot_mchannel_peer_name(c),
                           .id = vrot_mframe_string(f, "migration_id") };

        g_autoptr(VrotMframe) decision = NULL;
        g_autoptr(GError) lacking = NULL;

        /* Either answer may be followed by the source's decision: a source
         * that restarted undecided aborts on "not received". */
        if (!run(received_on_main, &s, &lacking))
                send_error(c, lacking->message);
        else if (!send_id(c, VROT_MFRAME_PREPARED, s.id, NULL, error))
                return FALSE;
        if (!(decision = vrot_mchannel_receive(c, error))) {
                if (lacking) {
                        g_clear_error(error);
                        g_propagate_error(error, g_steal_pointer(&lacking));
                }
                return FALSE;
        }
        /* The decision follows in this session, or later in another; never
         * a commit of a state this host said it lacks. */
        if ((vrot_mframe_type(decision) != VROT_MFRAME_COMMIT &&
             vrot_mframe_type(decision) != VROT_MFRAME_ABORT) ||
            (lacking && vrot_mframe_type(decision) == VROT_MFRAME_COMMIT) ||
            !g_str_equal(vrot_mframe_string(decision, "migration_id"), s.id))
                return peer_failed(decision, error);
        return receive_decision(m, c, decision, error);
}

/* A decision told again after a broken session or a restart. */
static gboolean receive_decision(VrotMigration *m, VrotMchannel *c, VrotMframe *f, GError **error)
{
        g_auto(Step) s = { .m = m, .peer_name = vrot_mchannel_peer_name(c),
                           .id = vrot_mframe_string(f, "migration_id"),
                           .commit = vrot_mframe_type(f) == VROT_MFRAME_COMMIT };

        if (!run(end_on_main, &s, error)) {
                send_error(c, (*error)->message);
                return FALSE;
        }
        return send_id(c, VROT_MFRAME_DONE, s.id, NULL, error);
}

/* ---- the listener ------------------------------------------------------------------------ */

typedef struct Conn {
        VrotMigration *m;
        int fd;
} Conn;

/* A peer that connected: the attested handshake, then one request. */
static gpointer serve(gpointer data)
{
        g_autofree Conn *conn = data;
        VrotMigration *m = conn->m;
        VrotMchannelConfig cfg = channel_config(m);
        g_autoptr(GError) error = NULL;
        g_autoptr(VrotMchannel) c = NULL;
        g_autoptr(VrotMframe) evidence = NULL, req = NULL;
        int fd = conn->fd;

        track(m, fd, TRUE);
        c = vrot_mchannel_accept(fd, &cfg, &error);
        if (!c) {
                g_message("migration: refused a connection: %s", error->message);
        } else if ((evidence = handshake(m, c, FALSE, &error))) {
                g_message("migration: %s attested", vrot_mchannel_peer_name(c));
                /* A check (migration.check) ends here: the peer closes. */
                req = vrot_mchannel_receive(c, NULL);
                if (req && vrot_mframe_type(req) == VROT_MFRAME_OFFER_REQUEST)
                        (void)receive_instance(m, c, req, &error);
                else if (req && (vrot_mframe_type(req) == VROT_MFRAME_COMMIT ||
                                 vrot_mframe_type(req) == VROT_MFRAME_ABORT))
                        (void)receive_decision(m, c, req, &error);
                else if (req && vrot_mframe_type(req) == VROT_MFRAME_STATUS)
                        (void)receive_status(m, c, req, &error);
                else if (req)
                        peer_failed(req, &error);
        }
        if (c && error)
                g_message("refused: migration peer %s: %s", vrot_mchannel_peer_name(c),
                          error->message);
        track(m, fd, FALSE);
        g_clear_pointer(&c, vrot_mchannel_free);
        g_atomic_int_dec_and_test(&m->connections);
        leave(m);
        return NULL;
}

static gboolean on_connect(gint fd, GIOCondition cond, gpointer data)
{
        VrotMigration *m = data;
        int peer = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        Conn *conn;

        (void)cond;
        if (peer < 0)
                return G_SOURCE_CONTINUE;
        if (g_atomic_int_get(&m->connections) >= MAX_CONNECTIONS) {
                g_message("migration: %d peers connected already; one more refused",
                          MAX_CONNECTIONS);
                close(peer);
                return G_SOURCE_CONTINUE;
        }
        g_atomic_int_inc(&m->connections);
        g_atomic_int_inc(&m->active);
        conn = g_new0(Conn, 1);
        *conn = (Conn){ .m = m, .fd = peer };
        g_thread_unref(g_thread_new("migration", serve, conn));
        return G_SOURCE_CONTINUE;
}

/* "ADDR:PORT" (an IPv6 address in brackets) resolved, numerically. */
static struct addrinfo *resolve(const gchar *hostport, GError **error)
{
        g_autofree gchar *host = NULL;
        const gchar *colon = strrchr(hostport, ':');
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
        struct addrinfo *ai = NULL;

        if (colon && colon > hostport)
                host = hostport[0] == '[' && colon[-1] == ']'
                       ? g_strndup(hostport + 1, (gsize)(colon - hostport) - 2)
                       : g_strndup(hostport, (gsize)(colon - hostport));
        if (!host || getaddrinfo(host, colon + 1, &hints, &ai) != 0 || !ai) {
                g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_CONFIG,
                            "'%s' is not ADDR:PORT with a numeric address and port", hostport);
                return NULL;
        }
        return ai;
}

static gboolean listen_on(VrotMigration *m, const gchar *hostport, GError **error)
{
        struct addrinfo *ai = resolve(hostport, error);
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        int one = 1;

        if (!ai)
                return FALSE;
        m->listen_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (m->listen_fd < 0 ||
            setsockopt(m->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(m->listen_fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(m->listen_fd, 16) < 0 ||
            getsockname(m->listen_fd, (struct sockaddr *)&sa, &len) < 0) {
                g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_CONFIG,
                            "[migration] listen %s: %s", hostport, g_strerror(errno));
                freeaddrinfo(ai);
                return FALSE;
        }
        freeaddrinfo(ai);
        m->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                 : ((struct sockaddr_in *)&sa)->sin_port);
        m->watch = g_unix_fd_add(m->listen_fd, G_IO_IN, on_connect, m);
        g_message("migration: listening on %s (port %u) as %s", hostport, m->port, m->name);
        return TRUE;
}

static gboolean tell_pending(gpointer data);

/* ---- setup ----------------------------------------------------------------------------- */

static gboolean read_file(const gchar *what, const gchar *path, gchar **ret, gsize *len,
                          GError **error)
{
        g_autoptr(GError) local = NULL;

        if (g_file_get_contents(path, ret, len, &local))
                return TRUE;
        g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_CONFIG, "[migration] %s: %s",
                    what, local->message);
        return FALSE;
}

VrotMigration *vrot_migration_new(VrotHost *host, VrotInstances *instances, const VrotConfig *cfg,
                                  GError **error)
{
        g_autoptr(VrotMigration) m = NULL;
        g_autofree gchar *text = NULL;
        STACK_OF(X509) *path = vrot_host_ca_path(host);
        gsize len = 0;

        if (!cfg->migration_name)
                return NULL;
        m = g_new0(VrotMigration, 1);
        m->host = host;
        m->instances = instances;
        m->notifying = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        g_mutex_init(&m->lock);
        m->fds = g_array_new(FALSE, FALSE, sizeof(int));
        m->listen_fd = -1;
        m->name = g_strdup(cfg->migration_name);
        if (!cfg->migration_policy) {
                g_set_error_literal(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_CONFIG,
                                    "[migration] policy is required with [migration] name: the "
                                    "peers and host PCR values this host accepts");
                return NULL;
        }
        if (!read_file("policy", cfg->migration_policy, &text, &len, error) ||
            !(m->policy = vrot_mpolicy_parse(text, len, error)))
                return NULL;
        if (cfg->migration_crl) {
                g_autoptr(BIO) bio = NULL;

                g_clear_pointer(&text, g_free);
                if (!read_file("crl", cfg->migration_crl, &text, &len, error))
                        return NULL;
                bio = BIO_new_mem_buf(text, (int)len);
                if (!(m->crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL))) {
                        g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_CONFIG,
                                    "[migration] crl: %s holds no PEM CRL", cfg->migration_crl);
                        return NULL;
                }
        }
        if (!(m->cert = vrot_host_transport_cert(host, m->name, error)) ||
            !(m->key = vrot_tlskey_new(m->cert, transport_sign, host, error)))
                return NULL;
        m->chain = sk_X509_new_null();
        for (int i = 0; path && i + 1 < sk_X509_num(path); i++)
                sk_X509_push(m->chain, X509_dup(sk_X509_value(path, i)));
        if (cfg->migration_listen && !listen_on(m, cfg->migration_listen, error))
                return NULL;
        tell_pending(m);
        m->retry = g_timeout_add_seconds(RETRY_S, tell_pending, m);
        return g_steal_pointer(&m);
}

void vrot_migration_free(VrotMigration *m)
{
        if (!m)
                return;
        vrot_migration_quiesce(m);
        g_mutex_clear(&m->lock);
        g_array_unref(m->fds);
        g_free(m->last_id);
        if (m->notifying)
                g_hash_table_unref(m->notifying);
        if (m->listen_fd >= 0)
                close(m->listen_fd);
        sk_X509_pop_free(m->chain, X509_free);
        EVP_PKEY_free(m->key);
        X509_CRL_free(m->crl);
        vrot_mpolicy_free(m->policy);
        g_free(m->name);
        g_free(m);
}

guint16 vrot_migration_port(const VrotMigration *m)
{
        return m ? m->port : 0;
}

/* ---- the source: migration.check, instance.migrate, and decisions told again ------------- */

typedef enum { JOB_CHECK, JOB_MIGRATE, JOB_TELL, JOB_PREPARE, JOB_COMMIT } JobKind;

typedef struct Job {
        VrotMigration *m;
        JobKind kind;
        gchar *to;                      /* ADDR:PORT */
        gchar *uuid;                    /* JOB_MIGRATE, JOB_PREPARE, JOB_COMMIT */
        VrotMigrationRecord *record;    /* JOB_TELL, JOB_COMMIT: a copy */
        VrotMigrateDoneFunc fn;
        gpointer data;
        gint64 started;
} Job;

static void job_free(Job *j)
{
        g_free(j->to);
        g_free(j->uuid);
        vrot_migration_record_free(j->record);
        g_free(j);
}

static int dial(const gchar *hostport, GError **error)
{
        struct addrinfo *ai = resolve(hostport, error);
        int fd;

        if (!ai)
                return -1;
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_PEER,
                            "connecting to %s: %s", hostport, g_strerror(errno));
                if (fd >= 0)
                        close(fd);
                fd = -1;
        }
        freeaddrinfo(ai);
        return fd;
}

/* The import key of @offer, checked: certified over this session and ID by
 * the AK that quoted the peer's PCRs (@evidence), an ECDH key in that TPM. */
static EVP_PKEY *import_key(VrotMchannel *c, VrotMframe *evidence, VrotMframe *offer, GError **error)
{
        const gchar *id = vrot_mframe_string(offer, "migration_id");
        g_autoptr(GBytes) q = offer_qualifying(c, id, error);
        VrotTpmevidenceKey k = { .ak_public = vrot_mframe_bytes(evidence, "ak_public"),
                                 .key_public = vrot_mframe_bytes(offer, "import_public"),
                                 .attest = vrot_mframe_bytes(offer, "attest"),
                                 .signature = vrot_mframe_bytes(offer, "signature"),
                                 .decrypt = TRUE };
        g_autoptr(GError) local = NULL;
        EVP_PKEY *key = NULL;

        if (!q)
                return NULL;
        if (!vrot_tpmevidence_verify_key(&k, q, &key, &local)) {
                g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_REFUSED,
                            "%s: the import key: %s", vrot_mchannel_peer_name(c), local->message);
                return NULL;
        }
        return key;
}

/* The one decision; then the peer is told.  Returns what to answer the caller. */
/* The destination's offer for @s's instance (transfer full), with its
 * import key checked and returned in *@ret_key; s->id points into it. */
static VrotMframe *ask_offer(VrotMchannel *c, VrotMframe *evidence, Step *s, JsonObject *res,
                             EVP_PKEY **ret_key, GError **error)
{
        g_autoptr(VrotMframe) req = vrot_mframe_new(VROT_MFRAME_OFFER_REQUEST);
        g_autoptr(VrotMframe) offer = NULL;

        if (!run(check_on_main, s, error))
                return NULL;
        s->generation = s->meta->generation;
        vrot_mframe_set_string(req, "uuid", s->meta->uuid);
        vrot_mframe_set_string(req, "kind", s->meta->kind == VROT_INSTANCE_VM ? "vm" : "service");
        vrot_mframe_set_string(req, "name", s->meta->name);
        vrot_mframe_set_uint(req, "generation", s->generation);
        vrot_mframe_set_uint(req, "owner", s->meta->owner);
        vrot_mframe_set_uint(req, "live", s->live);
        if (!vrot_mchannel_send(c, req, error) || !(offer = expect(c, VROT_MFRAME_OFFER, error)) ||
            !(*ret_key = import_key(c, evidence, offer, error)))
                return NULL;
        s->id = vrot_mframe_string(offer, "migration_id");
        json_object_set_string_member(res, "migration_id", s->id);
        return g_steal_pointer(&offer);
}

static gboolean send_state(VrotMigration *m, VrotMchannel *c, VrotMframe *evidence, Job *j,
                           JsonObject *res, GError **error)
{
        g_auto(Step) s = { .m = m, .uuid = j->uuid, .peer = j->to,
                           .peer_name = vrot_mchannel_peer_name(c) };
        g_autoptr(VrotMframe) offer = NULL, prepared = NULL, state = NULL, done = NULL;
        g_autoptr(EVP_PKEY) key = NULL;
        g_autoptr(GBytes) envelope = NULL;
        g_autoptr(GError) told = NULL;
        g_autofree gchar *stale = NULL;
        guint8 mid[VROT_MSEAL_ID_LEN], uuid[16];
        gboolean locked = FALSE, ok;

        if (!(offer = ask_offer(c, evidence, &s, res, &key, error)))
                return FALSE;
        vrot_fault_point("src-offered");
        g_mutex_lock(&m->lock);
        if (vrot_fault_is("reuse-id") && m->last_id)
                s.id = stale = g_strdup(m->last_id);    /* a test build plays a replaying peer */
        g_mutex_unlock(&m->lock);
        /* Locked before any state leaves; from here every failure decides abort. */
        locked = run(lock_on_main, &s, error);
        ok = locked;
        if (locked)
                vrot_fault_point("src-locked");
        if (ok) {
                vrot_hex_decode(s.id, 2 * VROT_MSEAL_ID_LEN, mid);
                vrot_uuid_parse(s.uuid, uuid, NULL);
                envelope = vrot_mseal_seal(key, mid, uuid, s.generation,
                                           g_bytes_get_data(s.bundle, NULL),
                                           g_bytes_get_size(s.bundle), error);
                g_clear_pointer(&s.bundle, g_bytes_unref);
                state = vrot_mframe_new(VROT_MFRAME_STATE);
                vrot_mframe_set_string(state, "migration_id", s.id);
                ok = envelope != NULL;
        }
        if (ok) {
                vrot_mframe_set_bytes(state, "envelope", envelope);
                ok = vrot_mchannel_send(c, state, error);
                if (ok)
                        vrot_fault_point("src-sent");
                ok = ok && (prepared = expect_id(c, VROT_MFRAME_PREPARED, s.id, error));
                if (ok)
                        vrot_fault_point("src-prepared");
        }
        s.commit = ok;
        if (!locked)
                return FALSE;
        if (!run(decide_on_main, &s, ok ? error : NULL)) {
                if (ok)
                        return FALSE;   /* still LOCKED: the next start aborts it */
        }
        json_object_set_string_member(res, "decision", s.commit ? "commit" : "abort");
        vrot_fault_point(s.commit ? "src-committed" : "src-aborted");
        /* Tell the peer; if it does not hear, the decision is told again later. */
        if (send_id(c, s.commit ? VROT_MFRAME_COMMIT : VROT_MFRAME_ABORT, s.id,
                    s.commit ? NULL : (*error)->message, &told) &&
            (vrot_fault_point("src-told"), TRUE) &&
            (done = expect_id(c, VROT_MFRAME_DONE, s.id, &told)))
                (void)run(forget_on_main, &s, &told);
        else
                g_message("migration %s: %s will be told to %s again: %s", s.id,
                          s.commit ? "commit" : "abort", s.peer_name, told->message);
        json_object_set_boolean_member(res, "peer_confirmed", done != NULL);
        if (s.commit) {
                g_mutex_lock(&m->lock);
                g_free(m->last_id);
                m->last_id = g_strdup(s.id);
                g_mutex_unlock(&m->lock);
        }
        return s.commit;
}

/* A decision the peer has not heard yet (a record of the journal), told again. */
static gboolean tell(VrotMigration *m, VrotMchannel *c, Job *j, GError **error)
{
        VrotMigrationRecord *r = j->record;
        g_auto(Step) s = { .m = m, .id = r->id };
        gboolean commit = r->state == VROT_MIGRATION_COMMITTED;
        g_autoptr(VrotMframe) answer = NULL;

        if (!g_str_equal(vrot_mchannel_peer_name(c), r->peer_name)) {
                g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_PEER,
                            "%s answers as %s, not %s", j->to, vrot_mchannel_peer_name(c),
                            r->peer_name);
                return FALSE;
        }
        if (r->state == VROT_MIGRATION_LOCKED) {
                /* A live source that restarted undecided: commit if the
                 * destination's vTPM has the state (the VM may run there),
                 * else abort. */
                g_autoptr(VrotMframe) status = vrot_mframe_new(VROT_MFRAME_STATUS);

                vrot_mframe_set_string(status, "migration_id", r->id);
                if (!vrot_mchannel_send(c, status, error) ||
                    !(answer = vrot_mchannel_receive(c, error)))
                        return FALSE;
                commit = vrot_mframe_type(answer) == VROT_MFRAME_PREPARED &&
                         g_str_equal(vrot_mframe_string(answer, "migration_id"), r->id);
                if (!commit && !(vrot_mframe_type(answer) == VROT_MFRAME_ERROR_FRAME &&
                                 strstr(vrot_mframe_string(answer, "message"),
                                        "has not received its state")))
                        return peer_failed(answer, error);
                s.commit = commit;
                if (!run(decide_on_main, &s, error))
                        return FALSE;
                g_message("migration %s: decided %s after the restart (%s %s the state)", r->id,
                          commit ? "commit" : "abort", r->peer_name, commit ? "has" : "lacks");
                g_clear_pointer(&answer, vrot_mframe_free);
        }
        if (!send_id(c, commit ? VROT_MFRAME_COMMIT : VROT_MFRAME_ABORT, r->id,
                     "aborted by the source", error) ||
            !(answer = vrot_mchannel_receive(c, error)))
                return FALSE;
        /* An abort of a migration the peer never journaled is heard too. */
        if (!(vrot_mframe_type(answer) == VROT_MFRAME_DONE &&
              g_str_equal(vrot_mframe_string(answer, "migration_id"), r->id)) &&
            !(!commit && vrot_mframe_type(answer) == VROT_MFRAME_ERROR_FRAME &&
              g_str_has_prefix(vrot_mframe_string(answer, "message"), "unknown migration")))
                return peer_failed(answer, error);
        return run(forget_on_main, &s, error);
}

/* A secret in a buffer wiped when freed. */
static void wipe_free(gpointer p)
{
        OPENSSL_cleanse(p, VROT_MKEY_KEY_LEN);
        g_free(p);
}

/* instance.migrate_prepare: the offer, the source locked with the key given
 * to its worker, then the key sealed to the destination's import key; the
 * destination starts an incoming worker with it and says "prepared". */
static gboolean prepare_live(VrotMigration *m, VrotMchannel *c, VrotMframe *evidence, Job *j,
                             JsonObject *res, GError **error)
{
        g_auto(Step) s = { .m = m, .uuid = j->uuid, .peer = j->to,
                           .peer_name = vrot_mchannel_peer_name(c), .live = TRUE };
        g_autoptr(VrotMframe) offer = NULL, state = NULL, prepared = NULL;
        g_autoptr(EVP_PKEY) key = NULL;
        g_autoptr(GBytes) envelope = NULL;
        guint8 mid[VROT_MSEAL_ID_LEN], uuid[16];
        guint8 *k = g_malloc(VROT_MKEY_KEY_LEN);
        gboolean ok;

        s.bundle = g_bytes_new_with_free_func(k, VROT_MKEY_KEY_LEN, wipe_free, k);
        if (RAND_priv_bytes(k, VROT_MKEY_KEY_LEN) != 1)
                g_error("RAND_priv_bytes failed");
        if (!(offer = ask_offer(c, evidence, &s, res, &key, error)) ||
            !run(lock_live_on_main, &s, error))
                return FALSE;
        /* LOCKED: from here a failure decides abort, told to the destination. */
        vrot_hex_decode(s.id, 2 * VROT_MSEAL_ID_LEN, mid);
        vrot_uuid_parse(s.uuid, uuid, NULL);
        {
                g_autoptr(GBytes) plain = NULL;

                run(certs_on_main, &s, NULL);
                plain = vrot_mbundle_pack_live(k, (const gchar *const *)s.certs);
                envelope = vrot_mseal_seal(key, mid, uuid, s.generation,
                                           g_bytes_get_data(plain, NULL), g_bytes_get_size(plain),
                                           error);
        }
        state = vrot_mframe_new(VROT_MFRAME_STATE);
        vrot_mframe_set_string(state, "migration_id", s.id);
        ok = envelope != NULL;
        if (ok) {
                vrot_mframe_set_bytes(state, "envelope", envelope);
                ok = vrot_mchannel_send(c, state, error) &&
                     (prepared = expect_id(c, VROT_MFRAME_PREPARED, s.id, error));
        }
        if (!ok) {
                s.commit = FALSE;
                (void)run(decide_on_main, &s, NULL);
                (void)send_id(c, VROT_MFRAME_ABORT, s.id, (*error)->message, NULL);
                return FALSE;
        }
        json_object_set_string_member(res, "state", "prepared");
        return TRUE;
}

/* instance.migrate_commit: the destination confirms its worker took the
 * state from QEMU, then the decision, then the destination hears it. */
static gboolean commit_live(VrotMigration *m, VrotMchannel *c, Job *j, JsonObject *res,
                            GError **error)
{
        VrotMigrationRecord *r = j->record;
        g_auto(Step) s = { .m = m, .id = r->id, .commit = TRUE };
        g_autoptr(VrotMframe) status = vrot_mframe_new(VROT_MFRAME_STATUS);
        g_autoptr(VrotMframe) prepared = NULL, done = NULL;
        g_autoptr(GError) told = NULL;

        json_object_set_string_member(res, "migration_id", r->id);
        if (!g_str_equal(vrot_mchannel_peer_name(c), r->peer_name)) {
                g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_PEER,
                            "%s answers as %s, not %s", j->to, vrot_mchannel_peer_name(c),
                            r->peer_name);
                return FALSE;
        }
        vrot_mframe_set_string(status, "migration_id", r->id);
        if (!vrot_mchannel_send(c, status, error) ||
            !(prepared = expect_id(c, VROT_MFRAME_PREPARED, r->id, error)) ||
            !run(decide_on_main, &s, error))
                return FALSE;
        json_object_set_string_member(res, "decision", "commit");
        if (send_id(c, VROT_MFRAME_COMMIT, r->id, NULL, &told) &&
            (done = expect_id(c, VROT_MFRAME_DONE, r->id, &told)))
                (void)run(forget_on_main, &s, &told);
        else
                g_message("migration %s: commit will be told to %s again: %s", r->id, r->peer_name,
                          told->message);
        json_object_set_boolean_member(res, "peer_confirmed", done != NULL);
        return TRUE;
}

static void job_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancel)
{
        Job *j = data;
        VrotMchannelConfig cfg = channel_config(j->m);
        g_autoptr(VrotMchannel) c = NULL;
        g_autoptr(VrotMframe) evidence = NULL;
        g_autoptr(JsonObject) o = json_object_new();
        GError *error = NULL;
        gboolean ok;
        int fd;

        (void)source;
        (void)cancel;
        if ((fd = dial(j->to, &error)) >= 0)
                track(j->m, fd, TRUE);
        ok = fd >= 0 && (c = vrot_mchannel_connect(fd, &cfg, &error)) &&
             (evidence = handshake(j->m, c, TRUE, &error));
        if (ok) {
                json_object_set_string_member(o, "peer", vrot_mchannel_peer_name(c));
                json_object_set_int_member(o, "pcr_mask",
                                           (gint64)vrot_mframe_uint(evidence, "pcr_mask"));
        }
        if (ok && j->kind == JOB_MIGRATE) {
                json_object_set_string_member(o, "uuid", j->uuid);
                ok = send_state(j->m, c, evidence, j, o, &error);
                json_object_set_int_member(o, "ms", (g_get_monotonic_time() - j->started) / 1000);
        } else if (ok && j->kind == JOB_TELL) {
                ok = tell(j->m, c, j, &error);
        } else if (ok && j->kind == JOB_PREPARE) {
                json_object_set_string_member(o, "uuid", j->uuid);
                ok = prepare_live(j->m, c, evidence, j, o, &error);
        } else if (ok && j->kind == JOB_COMMIT) {
                json_object_set_string_member(o, "uuid", j->uuid);
                ok = commit_live(j->m, c, j, o, &error);
        }
        if (fd >= 0)
                track(j->m, fd, FALSE);
        g_clear_pointer(&c, vrot_mchannel_free);
        if (ok)
                g_task_return_pointer(task, json_node_init_object(json_node_alloc(), o),
                                      (GDestroyNotify)json_node_unref);
        else
                g_task_return_error(task, error);
}

static void job_done(GObject *source, GAsyncResult *res, gpointer data)
{
        Job *j = data;
        GError *error = NULL;
        JsonNode *result = g_task_propagate_pointer(G_TASK(res), &error);
        static const char *const what[] = { "migration.check", "instance.migrate", "telling",
                                            "instance.migrate_prepare",
                                            "instance.migrate_commit" };

        (void)source;
        leave(j->m);
        if (j->kind == JOB_TELL) {
                g_hash_table_remove(j->m->notifying, j->record->id);
                if (result)
                        g_message("migration %s: %s heard the %s", j->record->id,
                                  j->record->peer_name,
                                  j->record->state == VROT_MIGRATION_COMMITTED ? "commit" : "abort");
                else
                        g_message("migration %s: %s did not hear the decision yet (again in %d s): "
                                  "%s", j->record->id, j->record->peer_name, RETRY_S, error->message);
                g_clear_pointer(&result, json_node_unref);
                g_clear_error(&error);
                return;
        }
        if (result)
                g_message("migration: %s %s done", what[j->kind], j->uuid ? j->uuid : j->to);
        else
                g_message("refused: %s %s to %s: %s", what[j->kind], j->uuid ? j->uuid : "", j->to,
                          error->message);
        j->fn(result, error, j->data);
}

static void start_job(Job *j)
{
        g_autoptr(GTask) task = NULL;

        if (j->m->closing) {
                if (j->fn)
                        j->fn(NULL, g_error_new_literal(VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_PEER,
                                                        "vrotd is shutting down"), j->data);
                job_free(j);
                return;
        }
        task = g_task_new(NULL, NULL, job_done, j);
        g_atomic_int_inc(&j->m->active);
        j->started = g_get_monotonic_time();
        g_task_set_task_data(task, j, (GDestroyNotify)job_free);
        g_task_run_in_thread(task, job_thread);
}

void vrot_migration_check_async(VrotMigration *m, const gchar *to, VrotMigrateDoneFunc fn,
                                gpointer data)
{
        Job *j = g_new0(Job, 1);

        *j = (Job){ .m = m, .kind = JOB_CHECK, .to = g_strdup(to), .fn = fn, .data = data };
        start_job(j);
}

void vrot_migration_migrate_async(VrotMigration *m, const gchar *uuid, const gchar *to,
                                  VrotMigrateDoneFunc fn, gpointer data)
{
        Job *j = g_new0(Job, 1);

        *j = (Job){ .m = m, .kind = JOB_MIGRATE, .to = g_strdup(to), .uuid = g_strdup(uuid),
                    .fn = fn, .data = data };
        start_job(j);
}

void vrot_migration_prepare_async(VrotMigration *m, const gchar *uuid, const gchar *to,
                                  VrotMigrateDoneFunc fn, gpointer data)
{
        Job *j = g_new0(Job, 1);

        *j = (Job){ .m = m, .kind = JOB_PREPARE, .to = g_strdup(to), .uuid = g_strdup(uuid),
                    .fn = fn, .data = data };
        start_job(j);
}

/* The LOCKED live record of @uuid (transfer none), or NULL with an error. */
static VrotMigrationRecord *live_record(VrotMigration *m, const gchar *uuid, GError **error)
{
        VrotMigrationRecord *r = vrot_registry_migration_of(vrot_instances_registry(m->instances),
                                                            uuid);

        if (r && r->live && r->state == VROT_MIGRATION_LOCKED)
                return r;
        g_set_error(error, VROT_MIGRATE_ERROR, VROT_MIGRATE_ERROR_CONFIG,
                    "instance %s has no prepared live migration here "
                    "(instance.migrate_prepare on this host, its source)", uuid);
        return NULL;
}

void vrot_migration_commit_async(VrotMigration *m, const gchar *uuid, VrotMigrateDoneFunc fn,
                                 gpointer data)
{
        GError *error = NULL;
        VrotMigrationRecord *r = live_record(m, uuid, &error);
        Job *j;

        if (!r) {
                fn(NULL, error, data);
                return;
        }
        j = g_new0(Job, 1);
        *j = (Job){ .m = m, .kind = JOB_COMMIT, .to = g_strdup(r->peer), .uuid = g_strdup(uuid),
                    .fn = fn, .data = data };
        j->record = g_new0(VrotMigrationRecord, 1);
        *j->record = (VrotMigrationRecord){ .id = g_strdup(r->id), .uuid = g_strdup(r->uuid),
                                            .state = r->state, .peer = g_strdup(r->peer),
                                            .peer_name = g_strdup(r->peer_name), .live = TRUE };
        start_job(j);
}

JsonNode *vrot_migration_abort(VrotMigration *m, const gchar *uuid, GError **error)
{
        VrotMigrationRecord *r = live_record(m, uuid, error);
        g_autofree gchar *id = NULL;
        JsonObject *o;
        JsonNode *res;

        if (!r)
                return NULL;
        id = g_strdup(r->id);
        if (!vrot_instances_migrate_decide(m->instances, id, FALSE, error))
                return NULL;
        tell_pending(m);        /* the destination discards its incoming worker */
        o = json_object_new();
        res = json_node_init_object(json_node_alloc(), o);
        json_object_set_string_member(o, "uuid", uuid);
        json_object_set_string_member(o, "migration_id", id);
        json_object_set_string_member(o, "decision", "abort");
        json_object_unref(o);
        return res;
}

/* Decisions a destination has not heard (after a broken session or a
 * restart) are told again, each by a thread of its own, until heard. */
static gboolean tell_pending(gpointer data)
{
        VrotMigration *m = data;
        g_autoptr(GPtrArray) pending = vrot_instances_migrations_pending(m->instances);

        for (guint i = 0; i < pending->len; i++) {
                VrotMigrationRecord *r = pending->pdata[i];
                Job *j;

                if (g_hash_table_contains(m->notifying, r->id))
                        continue;
                g_hash_table_add(m->notifying, g_strdup(r->id));
                j = g_new0(Job, 1);
                *j = (Job){ .m = m, .kind = JOB_TELL, .to = g_strdup(r->peer),
                            .record = g_steal_pointer(&pending->pdata[i]) };
                start_job(j);
        }
        return G_SOURCE_CONTINUE;
}
