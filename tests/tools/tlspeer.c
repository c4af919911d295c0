/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrot-tlspeer: one end of a TLS 1.3 connection with mutual authentication
 * whose private key never leaves a vTPM, for the service-identity proof
 * (issue 5 §3, R-AUTH-1) and the demo.
 *
 *   vrot-tlspeer --listen 0    --tcti T --handle H --chain C --root R [--crl L]
 *   vrot-tlspeer --connect P   --tcti T --handle H --chain C --root R [--crl L]
 *
 * The server prints "listening PORT" once it accepts connections, serves
 * one client and exits.  Each side sends one line, reads the peer's, and
 * prints who the peer is.  Exit status 0 only after a complete handshake in
 * which each side verified the other's chain to --root (and, with --crl,
 * checked the peer's certificate against that CRL).
 *
 * Why not openssl s_server/s_client with tpm2-openssl: with OpenSSL 3.0 a
 * provider key only signs through its own provider's signature algorithm,
 * so the propquery that sends the signature to tpm2-openssl sends every
 * certificate verification there too, and on a vTPM without a resource
 * manager those exhaust libtpms' three transient object slots (docs/identity.md).
 * Here the TLS stack and the chain checks stay in OpenSSL's default
 * provider; only the one operation that needs the private key, the
 * CertificateVerify signature, goes to the vTPM as TPM2_Sign over its digest
 * (lib/tlskey.h).
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tlskey.h"
#include "tpmpub.h"
#include "vtpmconn.h"

static VrotVtpmConn *vtpm;
static ESYS_TR vtpm_key = ESYS_TR_NONE;

/* The CertificateVerify digest, signed by TPM2_Sign in the vTPM (lib/tlskey.h). */
static gboolean vtpm_sign(const guint8 *digest, gsize len, GBytes **ret_der, gpointer data,
                          GError **error)
{
        TPM2B_DIGEST d = { .size = (UINT16)len };
        TPMT_SIG_SCHEME scheme = {
                .scheme = TPM2_ALG_ECDSA,
                .details.ecdsa.hashAlg = TPM2_ALG_SHA256,
        };
        TPMT_TK_HASHCHECK no_ticket = { .tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL };
        g_autofree TPMT_SIGNATURE *sig = NULL;

        (void)data;
        memcpy(d.buffer, digest, len);
        return vrot_vtpm_check(Esys_Sign(vrot_vtpm_conn_esys(vtpm), vtpm_key, ESYS_TR_PASSWORD,
                                         ESYS_TR_NONE, ESYS_TR_NONE, &d, &scheme, &no_ticket,
                                         &sig),
                               "TPM2_Sign", error) &&
               vrot_tpmpub_signature_to_der(sig, ret_der, error);
}

static X509 *read_leaf(const char *path)
{
        FILE *f = fopen(path, "r");
        if (!f) {
                fprintf(stderr, "vrot-tlspeer: %s: %s\n", path, g_strerror(errno));
                return NULL;
        }
        X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
        if (!x)
                fprintf(stderr, "vrot-tlspeer: %s: no PEM certificate\n", path);
        return x;
}

static int verify_cb(int ok, X509_STORE_CTX *ctx)
{
        if (!ok) {
                int err = X509_STORE_CTX_get_error(ctx);
                char subject[256] = "";
                X509 *x = X509_STORE_CTX_get_current_cert(ctx);
                if (x)
                        X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
                fprintf(stderr, "vrot-tlspeer: peer certificate refused at depth %d (%s): %s\n",
                        X509_STORE_CTX_get_error_depth(ctx), subject,
                        X509_verify_cert_error_string(err));
        }
        return ok;
}

static SSL_CTX *make_ctx(gboolean server, const char *chain, const char *root, const char *crl,
                         EVP_PKEY *key)
{
        SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
        if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
            !SSL_CTX_use_certificate_chain_file(ctx, chain) || !SSL_CTX_use_PrivateKey(ctx, key) ||
            !SSL_CTX_check_private_key(ctx) || !SSL_CTX_load_verify_locations(ctx, root, NULL))
                goto fail;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
        if (crl) {
                X509_STORE *store = SSL_CTX_get_cert_store(ctx);
                if (X509_load_crl_file(X509_STORE_add_lookup(store, X509_LOOKUP_file()), crl,
                                       X509_FILETYPE_PEM) < 1)
                        goto fail;
                X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
        }
        return ctx;
fail:
        ERR_print_errors_fp(stderr);
        SSL_CTX_free(ctx);
        return NULL;
}

static void print_peer(SSL *ssl)
{
        X509 *peer = SSL_get0_peer_certificate(ssl);
        char subject[256] = "";
        X509_NAME_oneline(X509_get_subject_name(peer), subject, sizeof(subject));
        printf("peer %s", subject);
        GENERAL_NAMES *sans = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
        for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
                GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
                if (gn->type == GEN_URI)
                        printf(" URI %.*s", ASN1_STRING_length(gn->d.uniformResourceIdentifier),
                               (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier));
        }
        GENERAL_NAMES_free(sans);
        printf(", %s %s, verified to the root\n", SSL_get_version(ssl), SSL_get_cipher(ssl));
}

/* One line each way after the handshake: proof that the channel carries data. */
static gboolean exchange(SSL *ssl, gboolean server, const char *message)
{
        char line[512];
        if (!server && SSL_write(ssl, message, (int)strlen(message)) <= 0)
                return FALSE;
        int n = SSL_read(ssl, line, sizeof(line) - 1);
        if (n <= 0)
                return FALSE;
        line[n] = '\0';
        printf("received: %s", line);
        if (server && SSL_write(ssl, message, (int)strlen(message)) <= 0)
                return FALSE;
        return TRUE;
}

static int run(gboolean server, int port, SSL_CTX *ctx, const char *message)
{
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(addr);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return 1;
        if (server) {
                int one = 1;
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 1) < 0 ||
                    getsockname(fd, (struct sockaddr *)&addr, &len) < 0) {
                        fprintf(stderr, "vrot-tlspeer: listen: %s\n", g_strerror(errno));
                        close(fd);
                        return 1;
                }
                printf("listening %u\n", ntohs(addr.sin_port));
                fflush(stdout);
                int conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
                close(fd);
                fd = conn;
        } else if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                fprintf(stderr, "vrot-tlspeer: connect to port %d: %s\n", port, g_strerror(errno));
                close(fd);
                return 1;
        }
        if (fd < 0)
                return 1;
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        int ok = server ? SSL_accept(ssl) : SSL_connect(ssl);
        int status = 1;
        if (ok == 1 && SSL_get_verify_result(ssl) == X509_V_OK && exchange(ssl, server, message)) {
                print_peer(ssl);
                SSL_shutdown(ssl);
                status = 0;
        } else {
                fprintf(stderr, "vrot-tlspeer: handshake failed\n");
                ERR_print_errors_fp(stderr);
        }
        SSL_free(ssl);
        close(fd);
        return status;
}

int main(int argc, char **argv)
{
        gint listen_port = -1, connect_port = -1;
        g_autofree gchar *tcti = NULL, *handle = NULL, *chain = NULL, *root = NULL, *crl = NULL;
        g_autofree gchar *message = NULL;
        GOptionEntry entries[] = {
                { "listen", 0, 0, G_OPTION_ARG_INT, &listen_port, "serve one client on PORT (0: any)", "PORT" },
                { "connect", 0, 0, G_OPTION_ARG_INT, &connect_port, "connect to 127.0.0.1:PORT", "PORT" },
                { "tcti", 0, 0, G_OPTION_ARG_STRING, &tcti, "the vTPM (swtpm:path=DATA)", "TCTI" },
                { "handle", 0, 0, G_OPTION_ARG_STRING, &handle, "persistent handle of the identity key", "HANDLE" },
                { "chain", 0, 0, G_OPTION_ARG_FILENAME, &chain, "identity certificate, then the host CA's", "PEM" },
                { "root", 0, 0, G_OPTION_ARG_FILENAME, &root, "the fleet root to verify the peer to", "PEM" },
                { "crl", 0, 0, G_OPTION_ARG_FILENAME, &crl, "check the peer against this CRL", "PEM" },
                { "message", 0, 0, G_OPTION_ARG_STRING, &message, "the line to send", "TEXT" },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(GOptionContext) opts = g_option_context_new("- TLS 1.3 peer with a key in a vTPM");
        g_autoptr(GError) error = NULL;
        g_option_context_add_main_entries(opts, entries, NULL);
        if (!g_option_context_parse(opts, &argc, &argv, &error)) {
                fprintf(stderr, "vrot-tlspeer: %s\n", error->message);
                return 2;
        }
        gboolean server = listen_port >= 0;
        guint64 h = 0;
        if (server == (connect_port >= 0) || !tcti || !handle || !chain || !root ||
            !g_str_has_prefix(handle, "0x") ||
            !g_ascii_string_to_unsigned(handle + 2, 16, 0x81000000, 0x81ffffff, &h, NULL)) {
                fprintf(stderr, "vrot-tlspeer: need one of --listen/--connect, and --tcti, "
                                "--handle 0x81…, --chain, --root\n");
                return 2;
        }
        g_autofree gchar *line = g_strdup_printf("%s\n", message ? message : "hello from a vTPM-bound identity");

        /* Held for the whole handshake, maybe while the peer uses the
         * same vTPM: a connection per command, as a service's TCTI. */
        vtpm = vrot_vtpm_conn_open_shared(tcti, 30000, &error);
        if (!vtpm || !vrot_vtpm_check(Esys_TR_FromTPMPublic(vrot_vtpm_conn_esys(vtpm), (TPM2_HANDLE)h,
                                                            ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                                            &vtpm_key),
                                      "the identity key", &error)) {
                fprintf(stderr, "vrot-tlspeer: %s\n", error->message);
                vrot_vtpm_conn_free(vtpm);
                return 1;
        }
        X509 *leaf = read_leaf(chain);
        EVP_PKEY *key = leaf ? vrot_tlskey_new(leaf, vtpm_sign, NULL, &error) : NULL;

        if (leaf && !key)
                fprintf(stderr, "vrot-tlspeer: %s\n", error->message);
        SSL_CTX *ctx = key ? make_ctx(server, chain, root, crl, key) : NULL;
        int status = ctx ? run(server, server ? listen_port : connect_port, ctx, line) : 1;
        SSL_CTX_free(ctx);
        EVP_PKEY_free(key);
        X509_free(leaf);
        vrot_vtpm_conn_free(vtpm);
        return status;
}
