/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "autoptr.h"
#include "channel.h"
#include "sigpipe.h"
#include "x509.h"

G_DEFINE_QUARK(vrot-mchannel-error-quark, vrot_mchannel_error)

#define DEFAULT_TIMEOUT_MS 30000
#define EXPORTER_LABEL "EXPORTER-vrot-migration"

struct VrotMchannel {
        SSL_CTX *ctx;
        SSL *ssl;
        int fd;
        gchar *peer_name;
        gchar *refusal;                 /* why the verify callback refused the peer */
        const VrotMpolicy *policy;
        VrotSigpipeGuard pipe;          /* a peer gone away must not end vrotd */
};

static int ex_index = -1;

void vrot_mchannel_free(VrotMchannel *c)
{
        if (!c)
                return;
        if (c->ssl) {
                (void)SSL_shutdown(c->ssl);
                SSL_free(c->ssl);
        }
        SSL_CTX_free(c->ctx);
        if (c->fd >= 0)
                close(c->fd);
        vrot_sigpipe_restore(&c->pipe);
        g_free(c->peer_name);
        g_free(c->refusal);
        g_free(c);
}

/* The first dNSName of @cert, or NULL. */
static gchar *dns_name(X509 *cert)
{
        GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
        gchar *out = NULL;

        for (int i = 0; names && !out && i < sk_GENERAL_NAME_num(names); i++) {
                GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);

                if (gn->type == GEN_DNS)
                        out = g_strndup((const gchar *)ASN1_STRING_get0_data(gn->d.dNSName),
                                        (gsize)ASN1_STRING_length(gn->d.dNSName));
        }
        GENERAL_NAMES_free(names);
        return out;
}

static void refuse(VrotMchannel *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void refuse(VrotMchannel *c, const char *fmt, ...)
{
        va_list ap;

        if (c->refusal)
                return;         /* the first reason is the one that counts */
        va_start(ap, fmt);
        c->refusal = g_strdup_vprintf(fmt, ap);
        va_end(ap);
}

/* OpenSSL's chain result, then vrot's own checks of the peer's leaf. */
static int verify_peer(int ok, X509_STORE_CTX *store)
{
        SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
        VrotMchannel *c = SSL_get_ex_data(ssl, ex_index);
        X509 *leaf;
        g_autofree gchar *name = NULL;
        g_autoptr(GError) local = NULL;

        if (!ok) {
                refuse(c, "the peer's certificate at depth %d: %s",
                       X509_STORE_CTX_get_error_depth(store),
                       X509_verify_cert_error_string(X509_STORE_CTX_get_error(store)));
                return 0;
        }
        if (X509_STORE_CTX_get_error_depth(store) != 0)
                return 1;
        leaf = X509_STORE_CTX_get_current_cert(store);
        if (!vrot_x509_is_migration_peer(leaf)) {
                refuse(c, "the peer's certificate is not a migration transport certificate "
                          "(no id-vrot-kp-migration-peer)");
                return 0;
        }
        if (!(name = dns_name(leaf)) || !vrot_mpolicy_check_peer(c->policy, name, &local)) {
                refuse(c, "%s", local ? local->message : "the peer's certificate names no host");
                return 0;
        }
        g_free(c->peer_name);
        c->peer_name = g_steal_pointer(&name);
        return 1;
}

static gboolean tls_failed(VrotMchannel *c, const char *what, GError **error)
{
        unsigned long e = ERR_peek_last_error();
        char buf[256] = "";

        if (e)
                ERR_error_string_n(e, buf, sizeof(buf));
        ERR_clear_error();
        if (c->refusal)
                g_set_error(error, VROT_MCHANNEL_ERROR, VROT_MCHANNEL_ERROR_PEER,
                            "%s: refused: %s", what, c->refusal);
        else
                g_set_error(error, VROT_MCHANNEL_ERROR, VROT_MCHANNEL_ERROR_TLS, "%s: %s", what,
                            buf[0] ? buf : "the peer closed the connection");
        return FALSE;
}

static gboolean set_timeouts(int fd, guint ms, GError **error)
{
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
                g_set_error(error, VROT_MCHANNEL_ERROR, VROT_MCHANNEL_ERROR_IO,
                            "socket timeouts: %s", g_strerror(errno));
                return FALSE;
        }
        return TRUE;
}

static SSL_CTX *make_ctx(gboolean server, const VrotMchannelConfig *cfg)
{
        SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
        X509_STORE *store;
        gboolean ok;

        if (!ctx)
                return NULL;
        store = SSL_CTX_get_cert_store(ctx);
        ok = SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) &&
             SSL_CTX_use_certificate(ctx, cfg->cert) == 1 &&
             SSL_CTX_use_PrivateKey(ctx, cfg->key) == 1 && SSL_CTX_check_private_key(ctx) == 1 &&
             X509_STORE_add_cert(store, cfg->root) == 1;
        for (int i = 0; ok && cfg->chain && i < sk_X509_num(cfg->chain); i++)
                ok = SSL_CTX_add1_chain_cert(ctx, sk_X509_value(cfg->chain, i)) == 1;
        if (ok && cfg->crl) {
                ok = X509_STORE_add_crl(store, cfg->crl) == 1;
                X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
        }
        if (!ok) {
                SSL_CTX_free(ctx);
                return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_peer);
        /* No session tickets or resumption: every channel is a full handshake. */
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        return ctx;
}

static VrotMchannel *handshake(gboolean server, int fd, const VrotMchannelConfig *cfg,
                               GError **error)
{
        static gsize once = 0;
        g_autoptr(VrotMchannel) c = g_new0(VrotMchannel, 1);
        const char *what = server ? "accepting a migration peer" : "connecting to a migration peer";

        if (g_once_init_enter(&once)) {
                ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
                g_once_init_leave(&once, 1);
        }
        c->fd = fd;
        c->policy = cfg->policy;
        vrot_sigpipe_block(&c->pipe);
        ERR_clear_error();
        if (!set_timeouts(fd, cfg->timeout_ms ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS, error))
                return NULL;
        if (!(c->ctx = make_ctx(server, cfg)) || !(c->ssl = SSL_new(c->ctx)) ||
            !SSL_set_fd(c->ssl, fd) || !SSL_set_ex_data(c->ssl, ex_index, c)) {
                tls_failed(c, "setting up TLS (this host's certificate and key)", error);
                return NULL;
        }
        if ((server ? SSL_accept(c->ssl) : SSL_connect(c->ssl)) != 1 ||
            SSL_get_verify_result(c->ssl) != X509_V_OK || !c->peer_name) {
                tls_failed(c, what, error);
                return NULL;
        }
        return g_steal_pointer(&c);
}

VrotMchannel *vrot_mchannel_accept(int fd, const VrotMchannelConfig *cfg, GError **error)
{
        return handshake(TRUE, fd, cfg, error);
}

VrotMchannel *vrot_mchannel_connect(int fd, const VrotMchannelConfig *cfg, GError **error)
{
        return handshake(FALSE, fd, cfg, error);
}

const gchar *vrot_mchannel_peer_name(const VrotMchannel *c)
{
        return c->peer_name;
}

X509 *vrot_mchannel_peer_issuer(const VrotMchannel *c)
{
        STACK_OF(X509) *chain = SSL_get0_verified_chain(c->ssl);

        return chain && sk_X509_num(chain) > 1 ? sk_X509_value(chain, 1) : NULL;
}

gboolean vrot_mchannel_binding(VrotMchannel *c, guint8 out[32], GError **error)
{
        if (SSL_export_keying_material(c->ssl, out, 32, EXPORTER_LABEL, strlen(EXPORTER_LABEL),
                                       NULL, 0, 0) != 1)
                return tls_failed(c, "the TLS exporter", error);
        return TRUE;
}

static gboolean write_all(VrotMchannel *c, const guint8 *p, gsize len, GError **error)
{
        while (len > 0) {
                int n = SSL_write(c->ssl, p, (int)MIN(len, (gsize)G_MAXINT));

                if (n <= 0) {
                        g_set_error(error, VROT_MCHANNEL_ERROR, VROT_MCHANNEL_ERROR_IO,
                                    "sending to %s failed or timed out", c->peer_name);
                        ERR_clear_error();
                        return FALSE;
                }
                p += n;
                len -= (gsize)n;
        }
        return TRUE;
}

static gboolean read_all(VrotMchannel *c, guint8 *p, gsize len, GError **error)
{
        while (len > 0) {
                int n = SSL_read(c->ssl, p, (int)MIN(len, (gsize)G_MAXINT));
                unsigned long e;

                if (n > 0) {
                        p += n;
                        len -= (gsize)n;
                        continue;
                }
                /* A record that fails authentication (tampered on the way)
                 * says so; a peer that went away or a timeout, as such. */
                e = ERR_peek_last_error();
                if (SSL_get_error(c->ssl, n) == SSL_ERROR_SSL && e)
                        g_set_error(error, VROT_MCHANNEL_ERROR, VROT_MCHANNEL_ERROR_IO,
                                    "the channel from %s broke: %s", c->peer_name,
                                    ERR_reason_error_string(e) ? ERR_reason_error_string(e)
                                                               : "TLS error");
                else
                        g_set_error(error, VROT_MCHANNEL_ERROR, VROT_MCHANNEL_ERROR_IO,
                                    "%s closed the channel or did not answer in time",
                                    c->peer_name);
                ERR_clear_error();
                return FALSE;
        }
        return TRUE;
}

gboolean vrot_mchannel_send(VrotMchannel *c, const VrotMframe *frame, GError **error)
{
        g_autoptr(GBytes) wire = vrot_mframe_encode(frame, error);

        return wire && write_all(c, g_bytes_get_data(wire, NULL), g_bytes_get_size(wire), error);
}

VrotMframe *vrot_mchannel_receive(VrotMchannel *c, GError **error)
{
        guint8 prefix[4];
        g_autofree guint8 *buf = NULL;
        g_autoptr(GError) local = NULL;
        VrotMframe *f;
        guint32 n;
        gsize used = 0;

        if (!read_all(c, prefix, sizeof(prefix), error))
                return NULL;
        n = (guint32)prefix[0] << 24 | (guint32)prefix[1] << 16 | (guint32)prefix[2] << 8 |
            prefix[3];
        if (n > VROT_MFRAME_MAX) {
                g_set_error(error, VROT_MCHANNEL_ERROR, VROT_MCHANNEL_ERROR_FRAME,
                            "%s sent a frame of %u bytes (at most %u)", c->peer_name, n,
                            VROT_MFRAME_MAX);
                return NULL;
        }
        buf = g_malloc((gsize)n + 4);
        memcpy(buf, prefix, 4);
        if (!read_all(c, buf + 4, n, error))
                return NULL;
        if (!(f = vrot_mframe_parse(buf, (gsize)n + 4, &used, &local)))
                g_set_error(error, VROT_MCHANNEL_ERROR, VROT_MCHANNEL_ERROR_FRAME,
                            "%s sent a malformed frame: %s", c->peer_name, local->message);
        return f;
}
