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
#include "migrate.h"
#include "mpolicy.h"
#include "tlskey.h"
#include "tpmevidence.h"
#include "x509.h"

G_DEFINE_QUARK(vrot-migrate-error-quark, vrot_migrate_error)

#define NONCE_LEN 32
#define QUOTE_LABEL "vrot migration quote v1"
#define MAX_CONNECTIONS 8

struct VrotMigration {
        VrotHost *host;
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
};

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
        g_autofree gchar *cut = g_utf8_substring(message, 0, 1000);

        vrot_mframe_set_string(f, "message", cut);
        (void)vrot_mchannel_send(c, f, NULL);
}

static VrotMchannelConfig channel_config(VrotMigration *m)
{
        return (VrotMchannelConfig){ .cert = m->cert, .chain = m->chain, .key = m->key,
                                     .root = vrot_host_root_cert(m->host), .crl = m->crl,
                                     .policy = m->policy };
}

/* ---- the listener ------------------------------------------------------------------------ */

typedef struct Conn {
        VrotMigration *m;
        int fd;
} Conn;

/* A peer that connected: hello, its evidence checked, ours sent. */
static gpointer serve(gpointer data)
{
        g_autofree Conn *conn = data;
        VrotMigration *m = conn->m;
        VrotMchannelConfig cfg = channel_config(m);
        g_autoptr(GError) error = NULL;
        g_autoptr(VrotMchannel) c = vrot_mchannel_accept(conn->fd, &cfg, &error);
        g_autoptr(VrotMframe) hello = NULL, evidence = NULL;
        g_autoptr(GBytes) nonce = NULL;

        if (!c) {
                g_message("migration: refused a connection: %s", error->message);
        } else if ((hello = expect(c, VROT_MFRAME_HELLO, &error)) &&
                   send_hello(m, c, &nonce, &error) &&
                   (evidence = expect(c, VROT_MFRAME_EVIDENCE, &error))) {
                if (!check_evidence(m, c, evidence, nonce, &error))
                        send_error(c, error->message);
                else if (send_evidence(m, c, hello, &error))
                        g_message("migration: %s attested (handshake only; transfers come next)",
                                  vrot_mchannel_peer_name(c));
        }
        if (c && error)
                g_message("refused: migration peer %s: %s", vrot_mchannel_peer_name(c),
                          error->message);
        g_clear_pointer(&c, vrot_mchannel_free);
        g_atomic_int_dec_and_test(&m->connections);
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

VrotMigration *vrot_migration_new(VrotHost *host, const VrotConfig *cfg, GError **error)
{
        g_autoptr(VrotMigration) m = NULL;
        g_autofree gchar *text = NULL;
        STACK_OF(X509) *path = vrot_host_ca_path(host);
        gsize len = 0;

        if (!cfg->migration_name)
                return NULL;
        m = g_new0(VrotMigration, 1);
        m->host = host;
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
        return g_steal_pointer(&m);
}

void vrot_migration_free(VrotMigration *m)
{
        if (!m)
                return;
        if (m->watch)
                g_source_remove(m->watch);
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

/* ---- migration.check ------------------------------------------------------------------- */

typedef struct Check {
        VrotMigration *m;
        gchar *to;
        VrotMigrateDoneFunc fn;
        gpointer data;
} Check;

static void check_free(Check *k)
{
        g_free(k->to);
        g_free(k);
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

static void check_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancel)
{
        Check *k = data;
        VrotMchannelConfig cfg = channel_config(k->m);
        g_autoptr(VrotMchannel) c = NULL;
        g_autoptr(VrotMframe) hello = NULL, evidence = NULL;
        g_autoptr(GBytes) nonce = NULL;
        GError *error = NULL;
        int fd;

        (void)source;
        (void)cancel;
        if ((fd = dial(k->to, &error)) >= 0 && (c = vrot_mchannel_connect(fd, &cfg, &error)) &&
            send_hello(k->m, c, &nonce, &error) &&
            (hello = expect(c, VROT_MFRAME_HELLO, &error)) &&
            send_evidence(k->m, c, hello, &error) &&
            (evidence = expect(c, VROT_MFRAME_EVIDENCE, &error)) &&
            check_evidence(k->m, c, evidence, nonce, &error)) {
                JsonObject *o = json_object_new();
                JsonNode *res = json_node_init_object(json_node_alloc(), o);

                json_object_set_string_member(o, "peer", vrot_mchannel_peer_name(c));
                json_object_set_int_member(o, "pcr_mask",
                                           (gint64)vrot_mframe_uint(evidence, "pcr_mask"));
                json_object_unref(o);
                g_task_return_pointer(task, res, (GDestroyNotify)json_node_unref);
                return;
        }
        g_task_return_error(task, error);
}

static void check_done(GObject *source, GAsyncResult *res, gpointer data)
{
        Check *k = data;
        GError *error = NULL;
        JsonNode *result = g_task_propagate_pointer(G_TASK(res), &error);

        (void)source;
        if (result)
                g_message("migration: %s attested by migration.check", k->to);
        else
                g_message("refused: migration.check of %s: %s", k->to, error->message);
        k->fn(result, error, k->data);
}

void vrot_migration_check_async(VrotMigration *m, const gchar *to, VrotMigrateDoneFunc fn,
                                gpointer data)
{
        g_autoptr(GTask) task = NULL;
        Check *k = g_new0(Check, 1);

        *k = (Check){ .m = m, .to = g_strdup(to), .fn = fn, .data = data };
        task = g_task_new(NULL, NULL, check_done, k);
        g_task_set_task_data(task, k, (GDestroyNotify)check_free);
        g_task_run_in_thread(task, check_thread);
}
