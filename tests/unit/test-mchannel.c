/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The migration channel over a socketpair, both ends in this process (one
 * in a thread): a fleet of software keys stands in for the host TPMs, but
 * one end signs through lib/tlskey.h as the daemon's host TPM will.
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "autoptr.h"
#include "channel.h"
#include "tlskey.h"
#include "unit.h"
#include "x509.h"

typedef struct Fleet {
        EVP_PKEY *root_key, *ca_key;
        X509 *root, *ca;
        VrotX509Signer *root_signer, *ca_signer;
} Fleet;

typedef struct Host {
        EVP_PKEY *key;                  /* the "TPM" key */
        EVP_PKEY *tls_key;              /* what libssl gets */
        X509 *cert;
        STACK_OF(X509) *chain;
} Host;

static VrotMpolicy *policy;

static EVP_PKEY *p256(void)
{
        EVP_PKEY *k = EVP_EC_gen("P-256");

        CU_ASSERT_PTR_NOT_NULL_FATAL(k);
        return k;
}

static void fleet_init(Fleet *f, const char *name)
{
        VrotX509CaParams root = { .common_name = name }, ca = { .common_name = "host CA" };
        GError *error = NULL;

        f->root_key = p256();
        f->ca_key = p256();
        f->root = vrot_x509_root_cert(f->root_key, &root, &error);
        f->root_signer = f->root ? vrot_x509_signer_new_software(f->root, f->root_key, &error)
                                 : NULL;
        f->ca = f->root_signer ? vrot_x509_ca_cert(f->root_signer, f->ca_key, &ca, &error) : NULL;
        f->ca_signer = f->ca ? vrot_x509_signer_new_software(f->ca, f->ca_key, &error) : NULL;
        CU_ASSERT_PTR_NULL_FATAL(error);
}

static void fleet_clear(Fleet *f)
{
        vrot_x509_signer_free(f->ca_signer);
        vrot_x509_signer_free(f->root_signer);
        X509_free(f->ca);
        X509_free(f->root);
        EVP_PKEY_free(f->ca_key);
        EVP_PKEY_free(f->root_key);
}

/* The host TPM's TPM2_Sign, played by a software key. */
static gboolean soft_sign(const guint8 *digest, gsize len, GBytes **ret_der, gpointer data,
                          GError **error)
{
        g_autoptr(EVP_PKEY_CTX) ctx = EVP_PKEY_CTX_new(data, NULL);
        guint8 sig[80];
        size_t n = sizeof(sig);

        if (!ctx || EVP_PKEY_sign_init(ctx) != 1 || EVP_PKEY_sign(ctx, sig, &n, digest, len) != 1) {
                g_set_error_literal(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "soft sign");
                return FALSE;
        }
        *ret_der = g_bytes_new(sig, n);
        return TRUE;
}

static void host_init(Host *h, Fleet *f, const char *name, gboolean transport)
{
        GError *error = NULL;

        memset(h, 0, sizeof(*h));
        h->key = p256();
        if (transport) {
                h->cert = vrot_x509_transport_cert(f->ca_signer, h->key, name, 0, &error);
        } else {
                /* An identity certificate: serverAuth and clientAuth, no migration purpose. */
                VrotX509IdentityParams p = { .name = name, .uri = "urn:x:y", .ek_cert = f->ca };
                h->cert = vrot_x509_identity_cert(f->ca_signer, h->key, &p, &error);
        }
        CU_ASSERT_PTR_NULL_FATAL(error);
        h->tls_key = vrot_tlskey_new(h->cert, soft_sign, h->key, &error);
        CU_ASSERT_PTR_NULL_FATAL(error);
        h->chain = sk_X509_new_null();
        sk_X509_push(h->chain, X509_dup(f->ca));
}

static void host_clear(Host *h)
{
        sk_X509_pop_free(h->chain, X509_free);
        X509_free(h->cert);
        EVP_PKEY_free(h->tls_key);
        EVP_PKEY_free(h->key);
}

static VrotMchannelConfig config(Host *h, Fleet *trust, X509_CRL *crl)
{
        return (VrotMchannelConfig){ .cert = h->cert, .chain = h->chain, .key = h->tls_key,
                                     .root = trust->root, .crl = crl, .policy = policy,
                                     .timeout_ms = 10000 };
}

typedef struct Server {
        int fd;
        VrotMchannelConfig cfg;
        gboolean accepted;
        gchar *peer_name;
        GError *error;
        guint8 binding[32];
        VrotMframe *received;
} Server;

/* The accepting end: handshake, then answer one hello with one hello.  A
 * channel lives and dies in one thread (channel.h). */
static gpointer serve(gpointer data)
{
        Server *s = data;
        g_autoptr(VrotMframe) reply = vrot_mframe_new(VROT_MFRAME_HELLO);
        g_autoptr(GBytes) nonce = g_bytes_new_static("server nonce 16b", 16);
        g_autoptr(VrotMchannel) channel = vrot_mchannel_accept(s->fd, &s->cfg, &s->error);

        if (!channel)
                return NULL;
        s->accepted = TRUE;
        s->peer_name = g_strdup(vrot_mchannel_peer_name(channel));
        vrot_mframe_set_bytes(reply, "nonce", nonce);
        vrot_mframe_set_uint(reply, "pcr_mask", 1);
        if (vrot_mchannel_binding(channel, s->binding, &s->error) &&
            (s->received = vrot_mchannel_receive(channel, &s->error)))
                vrot_mchannel_send(channel, reply, &s->error);
        return NULL;
}

/* A handshake between @a (server) and @b (client); TRUE if both ends took it. */
static gboolean run(Host *a, Fleet *a_trust, Host *b, Fleet *b_trust, X509_CRL *a_crl,
                    GError **a_error, GError **b_error)
{
        int sv[2];
        Server s = { 0 };
        GThread *t;
        g_autoptr(VrotMchannel) client = NULL;
        g_autoptr(VrotMframe) hello = vrot_mframe_new(VROT_MFRAME_HELLO);
        g_autoptr(VrotMframe) reply = NULL;
        g_autoptr(GBytes) nonce = g_bytes_new_static("client nonce 16b", 16);
        VrotMchannelConfig cfg = config(b, b_trust, NULL);
        gboolean ok = FALSE;
        guint8 binding[32];

        CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        s.fd = sv[0];
        s.cfg = config(a, a_trust, a_crl);
        t = g_thread_new("server", serve, &s);
        vrot_mframe_set_bytes(hello, "nonce", nonce);
        vrot_mframe_set_uint(hello, "pcr_mask", 1);
        client = vrot_mchannel_connect(sv[1], &cfg, b_error);
        if (!client)
                shutdown(sv[1], SHUT_RDWR);     /* the server must not wait for us */
        if (client && vrot_mchannel_binding(client, binding, b_error) &&
            vrot_mchannel_send(client, hello, b_error) &&
            (reply = vrot_mchannel_receive(client, b_error))) {
                ok = TRUE;
                CU_ASSERT_STRING_EQUAL(vrot_mchannel_peer_name(client), "host-a.example");
                CU_ASSERT_EQUAL(vrot_mframe_type(reply), VROT_MFRAME_HELLO);
        }
        g_thread_join(t);
        if (ok) {
                CU_ASSERT_PTR_NOT_NULL(s.received);
                CU_ASSERT_STRING_EQUAL(s.peer_name, "host-b.example");
                /* Both ends derive the same session binding. */
                CU_ASSERT_EQUAL(memcmp(binding, s.binding, 32), 0);
        }
        ok = ok && s.accepted && !s.error;
        if (s.error)
                g_propagate_error(a_error, s.error);
        vrot_mframe_free(s.received);
        g_free(s.peer_name);
        return ok;
}

static void test_mchannel_handshake_and_frames(void)
{
        Fleet f;
        Host a, b;
        g_autoptr(GError) ae = NULL, be = NULL;

        fleet_init(&f, "fleet");
        host_init(&a, &f, "host-a.example", TRUE);
        host_init(&b, &f, "host-b.example", TRUE);
        CU_ASSERT_TRUE(run(&a, &f, &b, &f, NULL, &ae, &be));
        if (ae || be)
                fprintf(stderr, "\n  %s / %s\n", ae ? ae->message : "-", be ? be->message : "-");
        host_clear(&a);
        host_clear(&b);
        fleet_clear(&f);
}

/* Each way a peer fails authentication; the server names why. */
static void test_mchannel_refusals(void)
{
        Fleet f, other;
        Host a, b, stranger, not_transport, unlisted;
        g_autoptr(X509_CRL) crl = NULL;
        GError *error = NULL;

        fleet_init(&f, "fleet");
        fleet_init(&other, "another fleet");
        host_init(&a, &f, "host-a.example", TRUE);
        host_init(&b, &f, "host-b.example", TRUE);
        host_init(&stranger, &other, "host-b.example", TRUE);
        host_init(&not_transport, &f, "host-b.example", FALSE);
        host_init(&unlisted, &f, "host-c.example", TRUE);
        {
                g_autoptr(BIGNUM) bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(b.cert), NULL);
                char *hex = BN_bn2hex(bn);
                VrotX509Revoked r = { .serial_hex = hex, .revoked_at = 1700000000 };

                crl = vrot_x509_crl(f.ca_signer, &r, 1, 1, 4102444800, &error);
                OPENSSL_free(hex);
                CU_ASSERT_PTR_NULL_FATAL(error);
        }

        struct {
                Host *client;
                X509_CRL *crl;
                const char *reason;
        } cases[] = {
                { &stranger, NULL, "depth" },
                { &not_transport, NULL, "not a migration transport certificate" },
                { &unlisted, NULL, "not in the migration policy" },
                { &b, crl, "revoked" },
        };
        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) ae = NULL, be = NULL;

                CU_ASSERT_FALSE(run(&a, &f, cases[i].client, &f, cases[i].crl, &ae, &be));
                CU_ASSERT_TRUE(g_error_matches(ae, VROT_MCHANNEL_ERROR, VROT_MCHANNEL_ERROR_PEER));
                CU_ASSERT_PTR_NOT_NULL(be);
                if (!ae || !strstr(ae->message, cases[i].reason))
                        fprintf(stderr, "\n  case %zu: %s\n", i, ae ? ae->message : "accepted");
                CU_ASSERT_TRUE(ae && strstr(ae->message, cases[i].reason));
        }
        /* The client checks the server as strictly: a server of another fleet. */
        {
                g_autoptr(GError) ae = NULL, be = NULL;

                CU_ASSERT_FALSE(run(&stranger, &other, &b, &f, NULL, &ae, &be));
                CU_ASSERT_TRUE(g_error_matches(be, VROT_MCHANNEL_ERROR, VROT_MCHANNEL_ERROR_PEER));
        }
        host_clear(&a);
        host_clear(&b);
        host_clear(&stranger);
        host_clear(&not_transport);
        host_clear(&unlisted);
        fleet_clear(&f);
        fleet_clear(&other);
}

int main(void)
{
        static const char text[] =
                "{\"peers\": [\"host-a.example\", \"host-b.example\"],"
                " \"pcrs\": {\"sha256\": {\"0\": [\"" "0000000000000000000000000000000000000000000000000000000000000000" "\"]}}}";
        static const UnitCase cases[] = {
                UNIT_CASE(test_mchannel_handshake_and_frames),
                UNIT_CASE(test_mchannel_refusals),
        };
        int status;

        policy = vrot_mpolicy_parse(text, strlen(text), NULL);
        status = UNIT_RUN("mchannel", cases);
        vrot_mpolicy_free(policy);
        return status;
}
