/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * sealkey against a real TPM: every case that touches a TPM starts its own
 * swtpm (the simulated host TPM), talks to it through a TCTI wrapper that
 * records each command code (so the command counts of docs/sealing.md are
 * asserted, not just claimed), and kills it by PID afterwards.
 */
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <tss2/tss2_tctildr.h>

#include "sealkey.h"
#include "unit.h"


/* ---- fixture: one swtpm, an ESYS context, a storage primary ------------- */

#define MAX_CMDS 64

/* A TCTI that forwards to the swtpm TCTI and records command codes. */
typedef struct {
        TSS2_TCTI_CONTEXT_COMMON_V2 common;
        TSS2_TCTI_CONTEXT *inner;
        guint n;
        TPM2_CC cc[MAX_CMDS];
} CountTcti;

typedef struct {
        GPid pid;
        char *dir;
        TSS2_TCTI_CONTEXT *inner;
        CountTcti tcti;
        ESYS_CONTEXT *esys;
        ESYS_TR srk;
} Tpm;

static GPid live_pids[32];

static void kill_live_swtpms(void)
{
        for (gsize i = 0; i < G_N_ELEMENTS(live_pids); i++)
                if (live_pids[i] > 0) {
                        kill(live_pids[i], SIGKILL);
                        waitpid(live_pids[i], NULL, 0);
                        live_pids[i] = 0;
                }
}

static void track_pid(GPid pid, gboolean add)
{
        for (gsize i = 0; i < G_N_ELEMENTS(live_pids); i++)
                if (add ? live_pids[i] == 0 : live_pids[i] == pid) {
                        live_pids[i] = add ? pid : 0;
                        return;
                }
        CU_FAIL_FATAL("too many swtpm processes");
}

static TSS2_RC count_transmit(TSS2_TCTI_CONTEXT *ctx, size_t size, const uint8_t *cmd)
{
        CountTcti *c = (CountTcti *)ctx;

        if (size >= 10 && c->n < MAX_CMDS)
                c->cc[c->n++] = (TPM2_CC)cmd[6] << 24 | (TPM2_CC)cmd[7] << 16 |
                                (TPM2_CC)cmd[8] << 8 | cmd[9];
        return Tss2_Tcti_Transmit(c->inner, size, cmd);
}

static TSS2_RC count_receive(TSS2_TCTI_CONTEXT *ctx, size_t *size, uint8_t *rsp, int32_t timeout)
{
        return Tss2_Tcti_Receive(((CountTcti *)ctx)->inner, size, rsp, timeout);
}

static TSS2_RC count_cancel(TSS2_TCTI_CONTEXT *ctx)
{
        return Tss2_Tcti_Cancel(((CountTcti *)ctx)->inner);
}

static TSS2_RC count_poll(TSS2_TCTI_CONTEXT *ctx, TSS2_TCTI_POLL_HANDLE *h, size_t *n)
{
        return Tss2_Tcti_GetPollHandles(((CountTcti *)ctx)->inner, h, n);
}

static TSS2_RC count_locality(TSS2_TCTI_CONTEXT *ctx, uint8_t locality)
{
        return Tss2_Tcti_SetLocality(((CountTcti *)ctx)->inner, locality);
}

static void spawn_swtpm(Tpm *t, const char *sock)
{
        g_autofree char *server = g_strdup_printf("type=unixio,path=%s", sock);
        g_autofree char *ctrl = g_strdup_printf("type=unixio,path=%s.ctrl", sock);
        g_autofree char *state = g_strdup_printf("dir=%s", t->dir);
        char *argv[] = { "swtpm", "socket", "--tpm2", "--server", server, "--ctrl", ctrl,
                         "--tpmstate", state, "--flags", "not-need-init,startup-clear", NULL };
        g_autofree char *ctrl_path = g_strdup_printf("%s.ctrl", sock);

        CU_ASSERT_FATAL(g_spawn_async(NULL, argv, NULL,
                                      G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                                      G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                                      NULL, NULL, &t->pid, NULL));
        track_pid(t->pid, TRUE);
        for (int i = 0; i < 500; i++) {
                if (g_file_test(sock, G_FILE_TEST_EXISTS) &&
                    g_file_test(ctrl_path, G_FILE_TEST_EXISTS))
                        return;
                g_usleep(10000);
        }
        CU_FAIL_FATAL("swtpm did not create its sockets");
}

static void create_srk(Tpm *t, guint8 unique)
{
        TPM2B_PUBLIC tmpl = { 0 };
        const TPM2B_SENSITIVE_CREATE sens = { 0 };
        const TPM2B_DATA outside = { 0 };
        const TPML_PCR_SELECTION none = { 0 };
        TPMT_PUBLIC *p = &tmpl.publicArea;

        /* The TCG SRK template (ECC P-256, AES-128-CFB); @unique makes a
         * different primary, standing in for another host's SRK. */
        p->type = TPM2_ALG_ECC;
        p->nameAlg = TPM2_ALG_SHA256;
        p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                              TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                              TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
        p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
        p->parameters.eccDetail.symmetric.keyBits.aes = 128;
        p->parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
        p->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
        p->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
        p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
        p->unique.ecc.x.size = unique ? 1 : 0;
        p->unique.ecc.x.buffer[0] = unique;
        CU_ASSERT_FATAL(Esys_CreatePrimary(t->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD,
                                           ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl, &outside,
                                           &none, &t->srk, NULL, NULL, NULL, NULL) ==
                        TSS2_RC_SUCCESS);
}

static Tpm *tpm_start(void)
{
        Tpm *t = g_new0(Tpm, 1);
        g_autofree char *sock = NULL;
        g_autofree char *conf = NULL;

        t->dir = g_build_filename(unit_tmpdir(), "swtpm-XXXXXX", NULL);
        CU_ASSERT_FATAL(g_mkdtemp(t->dir) != NULL);
        sock = g_build_filename(t->dir, "sock", NULL);
        spawn_swtpm(t, sock);
        conf = g_strdup_printf("swtpm:path=%s", sock);
        CU_ASSERT_FATAL(Tss2_TctiLdr_Initialize(conf, &t->inner) == TSS2_RC_SUCCESS);
        t->tcti.common.v1.magic = 0x76726f74636e7400ull;
        t->tcti.common.v1.version = 2;
        t->tcti.common.v1.transmit = count_transmit;
        t->tcti.common.v1.receive = count_receive;
        t->tcti.common.v1.cancel = count_cancel;
        t->tcti.common.v1.getPollHandles = count_poll;
        t->tcti.common.v1.setLocality = count_locality;
        t->tcti.inner = t->inner;
        CU_ASSERT_FATAL(Esys_Initialize(&t->esys, (TSS2_TCTI_CONTEXT *)&t->tcti, NULL) ==
                        TSS2_RC_SUCCESS);
        create_srk(t, 0);
        t->tcti.n = 0;
        return t;
}

static void tpm_stop(Tpm *t)
{
        if (!t)
                return;
        Esys_Finalize(&t->esys);
        Tss2_TctiLdr_Finalize(&t->inner);
        kill(t->pid, SIGTERM);
        waitpid(t->pid, NULL, 0);
        track_pid(t->pid, FALSE);
        g_free(t->dir);
        g_free(t);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Tpm, tpm_stop)

static void extend_pcr(Tpm *t, guint pcr, guint8 fill)
{
        TPML_DIGEST_VALUES d = { .count = 1 };

        d.digests[0].hashAlg = TPM2_ALG_SHA256;
        memset(d.digests[0].digest.sha256, fill, TPM2_SHA256_DIGEST_SIZE);
        CU_ASSERT_FATAL(Esys_PCR_Extend(t->esys, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD,
                                        ESYS_TR_NONE, ESYS_TR_NONE, &d) == TSS2_RC_SUCCESS);
}

/* ---- helpers ------------------------------------------------------------- */

static VrotSealkeyPcrs pcrs_of(const char *spec)
{
        VrotSealkeyPcrs p = { 0 };

        CU_ASSERT_FATAL(vrot_sealkey_pcrs_parse(spec, &p, NULL));
        return p;
}

static EVP_PKEY *rsa_key(int bits)
{
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);

        CU_ASSERT_FATAL(k != NULL);
        return k;
}

static EVP_PKEY *ec_key(void)
{
        EVP_PKEY *k = vrot_sealkey_key_generate(NULL);

        CU_ASSERT_FATAL(k != NULL);
        return k;
}

static GPtrArray *auth_list(VrotSealkeyAuth *first, ...)
{
        GPtrArray *a = g_ptr_array_new_with_free_func((GDestroyNotify)vrot_sealkey_auth_free);
        va_list ap;

        va_start(ap, first);
        for (VrotSealkeyAuth *x = first; x; x = va_arg(ap, VrotSealkeyAuth *))
                g_ptr_array_add(a, x);
        va_end(ap);
        return a;
}

static gboolean same_key(const VrotSecret *a, const VrotSecret *b)
{
        return vrot_secret_len(a) == VROT_SEALKEY_KEY_LEN &&
               vrot_secret_len(b) == VROT_SEALKEY_KEY_LEN &&
               memcmp(vrot_secret_data(a), vrot_secret_data(b), VROT_SEALKEY_KEY_LEN) == 0;
}

/* The error message never carries key bytes. */
static void assert_no_key_in(const GError *error, const VrotSecret *key)
{
        g_autofree char *hex = NULL;
        GString *s = g_string_new(NULL);

        for (gsize i = 0; i < vrot_secret_len(key); i++)
                g_string_append_printf(s, "%02x", vrot_secret_data(key)[i]);
        hex = g_string_free(s, FALSE);
        CU_ASSERT(strstr(error->message, hex) == NULL);
        CU_ASSERT(strstr(error->message, hex + 32) == NULL);
}

/* Replaces the line starting with @prefix in @text by @line. */
static char *replace_line(const char *text, const char *prefix, const char *line)
{
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

        for (gsize i = 0; lines[i]; i++)
                if (g_str_has_prefix(lines[i], prefix)) {
                        g_free(lines[i]);
                        lines[i] = g_strdup(line);
                }
        return g_strjoinv("\n", lines);
}

/* Flips the last hex digit of the line starting with @prefix. */
static char *flip_last_digit(const char *text, const char *prefix)
{
        char *s = g_strdup(text);
        char *line = strstr(s, prefix);
        char *nl;

        CU_ASSERT_FATAL(line != NULL);
        nl = strchr(line, '\n');
        nl[-1] = nl[-1] == '0' ? '1' : '0';
        return s;
}

static GBytes *flip_bits(GBytes *b, gsize at, guint8 mask)
{
        gsize len = 0;
        guint8 *copy = g_memdup2(g_bytes_get_data(b, &len), g_bytes_get_size(b));

        CU_ASSERT_FATAL(at < len);
        copy[at] ^= mask;
        return g_bytes_new_take(copy, len);
}

static GBytes *flip_byte(GBytes *b, gsize at)
{
        return flip_bits(b, at, 0x01);
}

/* Creates a sealed key for @key under @t's SRK; returns the master key. */
static VrotSecret *create(Tpm *t, EVP_PKEY *key, GBytes **ret_sealed)
{
        g_autoptr(GError) error = NULL;
        VrotSecret *master = NULL;

        CU_ASSERT_FATAL(vrot_sealkey_create(t->esys, t->srk, key, NULL, ret_sealed, NULL,
                                            &master, &error));
        CU_ASSERT_FATAL(master != NULL);
        return master;
}

static void unseal_fails(Tpm *t, GBytes *sealed, EVP_PKEY *key, GPtrArray *auths,
                         VrotSealkeyError code, const char *needle)
{
        g_autoptr(GError) error = NULL;
        VrotSecret *got = NULL;

        CU_ASSERT_FALSE(vrot_sealkey_unseal(t->esys, t->srk, sealed, key, auths, &got, &error));
        CU_ASSERT(got == NULL);
        CU_ASSERT_FATAL(error != NULL);
        if (!g_error_matches(error, VROT_SEALKEY_ERROR, code))
                fprintf(stderr, "\n  want code %d, got %d: %s\n", code, error->code,
                        error->message);
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, code));
        if (needle && !strstr(error->message, needle))
                fprintf(stderr, "\n  '%s' not in: %s\n", needle, error->message);
        CU_ASSERT(!needle || strstr(error->message, needle) != NULL);
}

static VrotSecret *unseal_ok(Tpm *t, GBytes *sealed, EVP_PKEY *key, GPtrArray *auths)
{
        g_autoptr(GError) error = NULL;
        VrotSecret *got = NULL;

        if (!vrot_sealkey_unseal(t->esys, t->srk, sealed, key, auths, &got, &error))
                fprintf(stderr, "\n  unseal: %s\n", error->message);
        CU_ASSERT_FATAL(got != NULL);
        return got;
}

/* ---- PCR selections, keys, authorisation files (no TPM) ------------------- */

static void test_sealkey_pcrs_parse_table(void)
{
        static const struct {
                const char *spec;
                gboolean ok;
                TPMI_ALG_HASH bank;
                guint32 mask;
                const char *canonical;
        } cases[] = {
                { "sha256:0,2,4,7", TRUE, TPM2_ALG_SHA256, 0x95, "sha256:0,2,4,7" },
                { "sha256:7,0,4,2", TRUE, TPM2_ALG_SHA256, 0x95, "sha256:0,2,4,7" },
                { "sha1:0", TRUE, TPM2_ALG_SHA1, 0x1, "sha1:0" },
                { "sha384:23", TRUE, TPM2_ALG_SHA384, 0x800000, "sha384:23" },
                { "sha512:1,16", TRUE, TPM2_ALG_SHA512, 0x10002, "sha512:1,16" },
                { "", FALSE, 0, 0, NULL },
                { "sha256", FALSE, 0, 0, NULL },
                { "sha256:", FALSE, 0, 0, NULL },
                { "sha256:0,", FALSE, 0, 0, NULL },
                { "sha256:,0", FALSE, 0, 0, NULL },
                { "sha256:24", FALSE, 0, 0, NULL },
                { "sha256:1,1", FALSE, 0, 0, NULL },
                { "sha256:-1", FALSE, 0, 0, NULL },
                { "sha256:+1", FALSE, 0, 0, NULL },
                { "sha256: 1", FALSE, 0, 0, NULL },
                { "sha256:x", FALSE, 0, 0, NULL },
                { "md5:0", FALSE, 0, 0, NULL },
                { "SHA256:0", FALSE, 0, 0, NULL },
                { ":0", FALSE, 0, 0, NULL },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) error = NULL;
                VrotSealkeyPcrs p = { .bank = 0xffff, .mask = 0xdead };
                gboolean ok = vrot_sealkey_pcrs_parse(cases[i].spec, &p, &error);

                CU_ASSERT_EQUAL(ok, cases[i].ok);
                if (ok) {
                        g_autofree char *s = vrot_sealkey_pcrs_format(&p);
                        CU_ASSERT_EQUAL(p.bank, cases[i].bank);
                        CU_ASSERT_EQUAL(p.mask, cases[i].mask);
                        CU_ASSERT_STRING_EQUAL(s, cases[i].canonical);
                } else {
                        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR,
                                                  VROT_SEALKEY_ERROR_INVALID));
                        CU_ASSERT(p.bank == 0xffff && p.mask == 0xdead);   /* untouched */
                }
        }
}

static void test_sealkey_key_save_load(void)
{
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(EVP_PKEY) priv = NULL;
        g_autoptr(EVP_PKEY) pub = NULL;
        g_autofree char *priv_path = g_build_filename(unit_tmpdir(), "op.pem", NULL);
        g_autofree char *pub_path = g_build_filename(unit_tmpdir(), "op.pub.pem", NULL);
        g_autofree char *bad_path = g_build_filename(unit_tmpdir(), "bad.pem", NULL);
        g_autoptr(GError) error = NULL;
        TPM2B_NAME n1, n2, n3;
        struct stat st;

        CU_ASSERT_FATAL(vrot_sealkey_key_save(key, priv_path, TRUE, &error));
        CU_ASSERT_FATAL(stat(priv_path, &st) == 0);
        CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
        CU_ASSERT_FATAL(vrot_sealkey_key_save(key, pub_path, FALSE, &error));
        priv = vrot_sealkey_key_load(priv_path, &error);
        pub = vrot_sealkey_key_load(pub_path, &error);
        CU_ASSERT_FATAL(priv && pub);
        CU_ASSERT_FATAL(vrot_sealkey_key_public(key, NULL, &n1, NULL));
        CU_ASSERT_FATAL(vrot_sealkey_key_public(priv, NULL, &n2, NULL));
        CU_ASSERT_FATAL(vrot_sealkey_key_public(pub, NULL, &n3, NULL));
        CU_ASSERT(n1.size == 34 && memcmp(&n1, &n2, sizeof(n1)) == 0 &&
                  memcmp(&n1, &n3, sizeof(n1)) == 0);

        /* A public key cannot be saved as private, nor sign. */
        CU_ASSERT_FALSE(vrot_sealkey_key_save(pub, bad_path, TRUE, &error));
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID));
        g_clear_error(&error);

        unit_write_file(bad_path, "-----BEGIN PRIVATE KEY-----\nAAAA\n", 33);
        CU_ASSERT(vrot_sealkey_key_load(bad_path, &error) == NULL);
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID));
        g_clear_error(&error);
        CU_ASSERT(vrot_sealkey_key_load("/nonexistent/op.pem", &error) == NULL);
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_FAILED));
        g_clear_error(&error);
        CU_ASSERT_FALSE(vrot_sealkey_key_save(key, "/nonexistent/op.pem", TRUE, &error));
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_FAILED));
}

static void test_sealkey_key_public_types(void)
{
        g_autoptr(EVP_PKEY) p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
        g_autoptr(EVP_PKEY) ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        g_autoptr(EVP_PKEY) rsa1k = rsa_key(1024);
        g_autoptr(EVP_PKEY) rsa2k = rsa_key(2048);
        EVP_PKEY *bad[] = { p384, ed, rsa1k };
        TPM2B_PUBLIC pub;
        TPM2B_NAME name;

        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GError) error = NULL;

                CU_ASSERT_FATAL(bad[i] != NULL);
                CU_ASSERT_FALSE(vrot_sealkey_key_public(bad[i], &pub, &name, &error));
                CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID));
        }
        CU_ASSERT_FATAL(vrot_sealkey_key_public(rsa2k, &pub, &name, NULL));
        CU_ASSERT_EQUAL(pub.publicArea.type, TPM2_ALG_RSA);
        CU_ASSERT_EQUAL(pub.publicArea.parameters.rsaDetail.keyBits, 2048);
        CU_ASSERT_EQUAL(pub.publicArea.parameters.rsaDetail.exponent, 65537);
        CU_ASSERT_EQUAL(pub.publicArea.unique.rsa.size, 256);
        ERR_clear_error();
}

static VrotSealkeyAuth *sample_auth(EVP_PKEY *key, const char *spec, guint8 fill)
{
        VrotSealkeyPcrs p = pcrs_of(spec);
        gsize len = (gsize)__builtin_popcount(p.mask) *
                    (p.bank == TPM2_ALG_SHA1 ? 20 : p.bank == TPM2_ALG_SHA256 ? 32 : 48);
        g_autofree guint8 *v = g_malloc(len);
        g_autoptr(GBytes) values = NULL;
        VrotSealkeyAuth *a;

        memset(v, fill, len);
        values = g_bytes_new(v, len);
        a = vrot_sealkey_authorize(key, &p, values, NULL);
        CU_ASSERT_FATAL(a != NULL);
        return a;
}

static void test_sealkey_auth_format_parse(void)
{
        g_autoptr(EVP_PKEY) ec = ec_key();
        g_autoptr(EVP_PKEY) rsa = rsa_key(2048);
        EVP_PKEY *keys[] = { ec, rsa };
        const char *specs[] = { "sha256:0,2,4,7", "sha1:23", "sha384:0,1,2,3,4,5,6,7,8,9" };

        for (gsize k = 0; k < G_N_ELEMENTS(keys); k++)
                for (gsize s = 0; s < G_N_ELEMENTS(specs); s++) {
                        g_autoptr(VrotSealkeyAuth) a = sample_auth(keys[k], specs[s], 0x3c);
                        g_autofree char *text = vrot_sealkey_auth_format(a);
                        g_autoptr(VrotSealkeyAuth) b = NULL;
                        g_autofree char *again = NULL;
                        g_autoptr(GError) error = NULL;

                        CU_ASSERT(g_str_has_prefix(text, "vrot-pcr-authorisation 1\npcrs "));
                        b = vrot_sealkey_auth_parse(text, strlen(text), "x.auth", &error);
                        CU_ASSERT_FATAL(b != NULL);
                        again = vrot_sealkey_auth_format(b);
                        CU_ASSERT_STRING_EQUAL(text, again);
                        CU_ASSERT(memcmp(vrot_sealkey_auth_get_policy(a),
                                         vrot_sealkey_auth_get_policy(b),
                                         sizeof(TPM2B_DIGEST)) == 0);
                        CU_ASSERT_EQUAL(vrot_sealkey_auth_get_pcrs(b)->mask,
                                        vrot_sealkey_auth_get_pcrs(a)->mask);
                }
}

static void test_sealkey_auth_parse_errors(void)
{
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(VrotSealkeyAuth) a = sample_auth(key, "sha256:0,7", 0x11);
        g_autofree char *text = vrot_sealkey_auth_format(a);
        gsize len = strlen(text);
        const char *sig = strstr(text, "signature ecdsa-sha256 ") + 23;
        g_autofree char *sig_hex = g_strndup(sig, strcspn(sig, "\n"));
        g_autofree char *bad_der = g_strdup_printf("signature ecdsa-sha256 %s",
                                                   sig_hex + 2);   /* drops the SEQUENCE tag */
        const char *pol = strstr(text, "policy ");
        g_autofree char *pol_line = g_strndup(pol, strcspn(pol, "\n"));
        g_autofree char *pol_crlf = g_strconcat(pol_line, "\r", NULL);
        const struct {
                const char *what;
                char *text;
                VrotSealkeyError code;
        } cases[] = {
                { "empty", g_strdup(""), VROT_SEALKEY_ERROR_INVALID },
                { "no final newline", g_strndup(text, len - 1), VROT_SEALKEY_ERROR_INVALID },
                { "truncated", g_strndup(text, len / 2), VROT_SEALKEY_ERROR_INVALID },
                { "trailing line", g_strconcat(text, "x\n", NULL), VROT_SEALKEY_ERROR_INVALID },
                { "magic", replace_line(text, "vrot-pcr", "vrot-pcr-authorisation 2"),
                  VROT_SEALKEY_ERROR_INVALID },
                { "non-canonical pcrs", replace_line(text, "pcrs ", "pcrs sha256:7,0"),
                  VROT_SEALKEY_ERROR_INVALID },
                { "other pcrs", replace_line(text, "pcrs ", "pcrs sha256:0,6"),
                  VROT_SEALKEY_ERROR_INVALID },
                { "short value", replace_line(text, "pcr 7 ", "pcr 7 1111"),
                  VROT_SEALKEY_ERROR_INVALID },
                { "signer alg", replace_line(text, "signer ", "signer 0004"
                  "1111111111111111111111111111111111111111111111111111111111111111"),
                  VROT_SEALKEY_ERROR_INVALID },
                { "scheme", replace_line(text, "signature ", "signature ecdsa-sha1 3000"),
                  VROT_SEALKEY_ERROR_INVALID },
                { "bad DER", replace_line(text, "signature ", bad_der),
                  VROT_SEALKEY_ERROR_INVALID },
                { "CRLF", replace_line(text, "policy ", pol_crlf), VROT_SEALKEY_ERROR_INVALID },
                { "PCR value edited", flip_last_digit(text, "pcr 7 "),
                  VROT_SEALKEY_ERROR_TAMPERED },
                { "policy edited", flip_last_digit(text, "policy "),
                  VROT_SEALKEY_ERROR_TAMPERED },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) error = NULL;
                g_autofree char *t = cases[i].text;
                VrotSealkeyAuth *b;

                b = vrot_sealkey_auth_parse(t, strlen(t), "case.auth", &error);
                if (b || !g_error_matches(error, VROT_SEALKEY_ERROR, cases[i].code))
                        fprintf(stderr, "\n  case '%s': %s\n", cases[i].what,
                                error ? error->message : "parsed");
                CU_ASSERT(b == NULL);
                CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, cases[i].code));
                CU_ASSERT(error && strstr(error->message, "case.auth") != NULL);
        }
}

static void test_sealkey_auth_parse_nul_byte(void)
{
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(VrotSealkeyAuth) a = sample_auth(key, "sha256:0,7", 0x11);
        g_autofree char *text = vrot_sealkey_auth_format(a);
        g_autoptr(VrotSealkeyAuth) b = NULL;
        g_autoptr(GError) error = NULL;
        gsize len = strlen(text);

        for (gsize at = 0; at < len; at += 7) {
                char saved = text[at];

                g_clear_error(&error);
                text[at] = '\0';
                CU_ASSERT(vrot_sealkey_auth_parse(text, len, NULL, &error) == NULL);
                CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID));
                text[at] = saved;
        }
        b = vrot_sealkey_auth_parse(text, len, NULL, NULL);
        CU_ASSERT(b != NULL);
}

static void test_sealkey_authorize_errors(void)
{
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(EVP_PKEY) pub = NULL;
        g_autofree char *path = g_build_filename(unit_tmpdir(), "pubonly.pem", NULL);
        VrotSealkeyPcrs p = pcrs_of("sha256:0,2");
        guint8 v[64] = { 0 };
        g_autoptr(GBytes) short_values = g_bytes_new(v, 63);
        g_autoptr(GBytes) values = g_bytes_new(v, 64);
        g_autoptr(GError) error = NULL;

        CU_ASSERT(vrot_sealkey_authorize(key, &p, short_values, &error) == NULL);
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID));
        g_clear_error(&error);
        CU_ASSERT_FATAL(vrot_sealkey_key_save(key, path, FALSE, NULL));
        pub = vrot_sealkey_key_load(path, NULL);
        CU_ASSERT_FATAL(pub != NULL);
        CU_ASSERT(vrot_sealkey_authorize(pub, &p, values, &error) == NULL);
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID));
}

static void test_sealkey_auth_load_dir(void)
{
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autofree char *dir = g_build_filename(unit_tmpdir(), "authdir", NULL);
        g_autofree char *p_b = g_build_filename(dir, "b.auth", NULL);
        g_autofree char *p_a = g_build_filename(dir, "a.auth", NULL);
        g_autofree char *p_x = g_build_filename(dir, "ignored.txt", NULL);
        g_autofree char *p_bad = g_build_filename(dir, "c.auth", NULL);
        g_autoptr(VrotSealkeyAuth) a = sample_auth(key, "sha256:0", 1);
        g_autoptr(VrotSealkeyAuth) b = sample_auth(key, "sha256:1", 2);
        g_autoptr(GPtrArray) list = NULL;
        g_autoptr(GError) error = NULL;

        CU_ASSERT_FATAL(g_mkdir(dir, 0700) == 0);
        CU_ASSERT_FATAL(vrot_sealkey_auth_load_dir(dir, &list, &error));
        CU_ASSERT_EQUAL(list->len, 0);
        g_clear_pointer(&list, g_ptr_array_unref);
        CU_ASSERT_FATAL(vrot_sealkey_auth_save(b, p_b, NULL));
        CU_ASSERT_FATAL(vrot_sealkey_auth_save(a, p_a, NULL));
        unit_write_file(p_x, "x", 1);
        CU_ASSERT_FATAL(vrot_sealkey_auth_load_dir(dir, &list, &error));
        CU_ASSERT_FATAL(list->len == 2);
        CU_ASSERT_EQUAL(vrot_sealkey_auth_get_pcrs(list->pdata[0])->mask, 1);   /* a.auth */
        CU_ASSERT_EQUAL(vrot_sealkey_auth_get_pcrs(list->pdata[1])->mask, 2);   /* b.auth */
        g_clear_pointer(&list, g_ptr_array_unref);

        unit_write_file(p_bad, "junk\n", 5);
        CU_ASSERT_FALSE(vrot_sealkey_auth_load_dir(dir, &list, &error));
        CU_ASSERT(list == NULL);
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID));
        CU_ASSERT(error && strstr(error->message, "c.auth") != NULL);
        g_clear_error(&error);
        CU_ASSERT_FALSE(vrot_sealkey_auth_load_dir("/nonexistent", &list, &error));
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_FAILED));
}

/* ---- against the TPM ----------------------------------------------------- */

/* Software policy digests equal what a trial session in the TPM computes. */
static void test_sealkey_policy_digests_match_trial_session(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(GBytes) sealed = NULL;
        g_autoptr(VrotSecret) master = NULL;
        g_autoptr(VrotSealkeyAuth) auth = NULL;
        g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
        VrotSealkeyPcrs p = pcrs_of("sha256:0,2,4,7");
        const TPMT_SYM_DEF none = { .algorithm = TPM2_ALG_NULL };
        const TPMT_TK_VERIFIED null_ticket = { .tag = TPM2_ST_VERIFIED,
                                               .hierarchy = TPM2_RH_NULL };
        const TPM2B_NONCE ref = { .size = strlen(VROT_SEALKEY_POLICY_REF),
                                  .buffer = VROT_SEALKEY_POLICY_REF };
        TPM2B_DIGEST pcr_digest = { .size = 32 };
        TPM2B_DIGEST *got = NULL;
        TPM2B_PUBLIC obj;
        TPM2B_NAME name;
        g_autoptr(GBytes) values = NULL;
        gsize dlen = 32;
        ESYS_TR s;

        extend_pcr(t, 7, 0x42);
        master = create(t, key, &sealed);
        auth = vrot_sealkey_authorize_current(t->esys, key, &p, NULL);
        CU_ASSERT_FATAL(auth != NULL);
        CU_ASSERT_FATAL(vrot_sealkey_read_pcrs(t->esys, &p, &values, NULL));
        g_checksum_update(sum, g_bytes_get_data(values, NULL), (gssize)g_bytes_get_size(values));
        g_checksum_get_digest(sum, pcr_digest.buffer, &dlen);
        CU_ASSERT_FATAL(vrot_sealkey_sealed_parse(g_bytes_get_data(sealed, NULL),
                                                  g_bytes_get_size(sealed), &obj, NULL, NULL));
        CU_ASSERT_FATAL(vrot_sealkey_key_public(key, NULL, &name, NULL));

        /* PolicyPCR */
        CU_ASSERT_FATAL(Esys_StartAuthSession(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                              ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_TRIAL,
                                              &none, TPM2_ALG_SHA256, &s) == TSS2_RC_SUCCESS);
        TPML_PCR_SELECTION sel = { .count = 1 };
        sel.pcrSelections[0] = (TPMS_PCR_SELECTION){ TPM2_ALG_SHA256, 3, { 0x95, 0, 0 } };
        CU_ASSERT_FATAL(Esys_PolicyPCR(t->esys, s, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                       &pcr_digest, &sel) == TSS2_RC_SUCCESS);
        CU_ASSERT_FATAL(Esys_PolicyGetDigest(t->esys, s, ESYS_TR_NONE, ESYS_TR_NONE,
                                             ESYS_TR_NONE, &got) == TSS2_RC_SUCCESS);
        CU_ASSERT(memcmp(got, vrot_sealkey_auth_get_policy(auth), sizeof(*got)) == 0);
        Esys_Free(got);
        Esys_FlushContext(t->esys, s);

        /* PolicyAuthorize (a trial session takes a NULL ticket) */
        CU_ASSERT_FATAL(Esys_StartAuthSession(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                              ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_TRIAL,
                                              &none, TPM2_ALG_SHA256, &s) == TSS2_RC_SUCCESS);
        CU_ASSERT_FATAL(Esys_PolicyAuthorize(t->esys, s, ESYS_TR_NONE, ESYS_TR_NONE,
                                             ESYS_TR_NONE, vrot_sealkey_auth_get_policy(auth),
                                             &ref, &name, &null_ticket) == TSS2_RC_SUCCESS);
        CU_ASSERT_FATAL(Esys_PolicyGetDigest(t->esys, s, ESYS_TR_NONE, ESYS_TR_NONE,
                                             ESYS_TR_NONE, &got) == TSS2_RC_SUCCESS);
        CU_ASSERT(got->size == 32 && obj.publicArea.authPolicy.size == 32 &&
                  memcmp(got->buffer, obj.publicArea.authPolicy.buffer, 32) == 0);
        Esys_Free(got);
        Esys_FlushContext(t->esys, s);
}

static const TPM2_CC create_cmds[] = { TPM2_CC_StartAuthSession, TPM2_CC_Create };
static const TPM2_CC unseal_cmds[] = {
        TPM2_CC_PCR_Read, TPM2_CC_Load, TPM2_CC_LoadExternal, TPM2_CC_VerifySignature,
        TPM2_CC_FlushContext, TPM2_CC_StartAuthSession, TPM2_CC_PolicyPCR,
        TPM2_CC_PolicyAuthorize, TPM2_CC_Unseal, TPM2_CC_FlushContext,
};

static void assert_cmds(const Tpm *t, const TPM2_CC *want, guint n)
{
        CU_ASSERT_EQUAL(t->tcti.n, n);
        for (guint i = 0; i < n && i < t->tcti.n; i++)
                CU_ASSERT_EQUAL(t->tcti.cc[i], want[i]);
}

/* Create, authorise, unseal; and the host-TPM commands each step costs. */
static void test_sealkey_create_unseal_commands(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(GBytes) sealed = NULL;
        g_autoptr(VrotSecret) master = NULL;
        g_autoptr(VrotSecret) got = NULL;
        g_autoptr(VrotSecret) again = NULL;
        g_autoptr(GPtrArray) auths = NULL;
        VrotSealkeyPcrs p = pcrs_of("sha256:0,2,4,7");

        t->tcti.n = 0;
        master = create(t, key, &sealed);
        assert_cmds(t, create_cmds, G_N_ELEMENTS(create_cmds));
        CU_ASSERT(memcmp(g_bytes_get_data(sealed, NULL), "VRSK", 4) == 0);

        t->tcti.n = 0;
        auths = auth_list(vrot_sealkey_authorize_current(t->esys, key, &p, NULL), NULL);
        CU_ASSERT_EQUAL(t->tcti.n, 1);

        t->tcti.n = 0;
        got = unseal_ok(t, sealed, key, auths);
        assert_cmds(t, unseal_cmds, G_N_ELEMENTS(unseal_cmds));
        CU_ASSERT(same_key(master, got));

        /* Nothing is left loaded: the same unseal works again, same count. */
        t->tcti.n = 0;
        again = unseal_ok(t, sealed, key, auths);
        CU_ASSERT_EQUAL(t->tcti.n, G_N_ELEMENTS(unseal_cmds));
        CU_ASSERT(same_key(master, again));
}

/* More than 8 PCRs: one more PCR_Read, still one sealed object. */
static void test_sealkey_unseal_many_pcrs(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(GBytes) sealed = NULL;
        g_autoptr(GBytes) values = NULL;
        g_autoptr(VrotSecret) master = NULL;
        g_autoptr(VrotSecret) got = NULL;
        g_autoptr(GPtrArray) auths = NULL;
        VrotSealkeyPcrs p = pcrs_of("sha256:0,1,2,3,4,5,6,7,8,9,10,11");

        extend_pcr(t, 9, 0x99);
        master = create(t, key, &sealed);
        t->tcti.n = 0;
        CU_ASSERT_FATAL(vrot_sealkey_read_pcrs(t->esys, &p, &values, NULL));
        CU_ASSERT_EQUAL(g_bytes_get_size(values), 12 * 32);
        CU_ASSERT_EQUAL(t->tcti.n, 2);
        auths = auth_list(vrot_sealkey_authorize(key, &p, values, NULL), NULL);
        t->tcti.n = 0;
        got = unseal_ok(t, sealed, key, auths);
        CU_ASSERT_EQUAL(t->tcti.n, G_N_ELEMENTS(unseal_cmds) + 1);
        CU_ASSERT(same_key(master, got));
}

/*
 * R-SEAL-2: a host update changes a PCR; the sealed object refuses with an
 * error naming the policy; the operator authorises the new values; the
 * same sealed object (byte for byte) unseals again.
 */
static void test_sealkey_unseal_after_update(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autofree char *dir = g_build_filename(t->dir, "sealkey", NULL);
        g_autofree char *sealed_path = g_build_filename(dir, VROT_SEALKEY_SEALED_FILE, NULL);
        g_autofree char *new_path = g_build_filename(dir, "2025-update.auth", NULL);
        g_autofree char *initial_path = g_build_filename(dir, VROT_SEALKEY_INITIAL_AUTH, NULL);
        g_autofree char *before = NULL;
        g_autofree char *after = NULL;
        g_autoptr(VrotSecret) master = NULL;
        g_autoptr(VrotSecret) got = NULL;
        g_autoptr(VrotSealkeyAuth) initial = NULL;
        g_autoptr(VrotSealkeyAuth) update = NULL;
        g_autoptr(GBytes) values = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *policy_hex = NULL;
        VrotSealkeyPcrs p = pcrs_of("sha256:0,2,4,7");
        gsize n1 = 0, n2 = 0;

        CU_ASSERT_FATAL(g_mkdir(dir, 0700) == 0);
        extend_pcr(t, 0, 0x10);   /* "firmware" */
        extend_pcr(t, 7, 0x70);   /* "secure boot state" */
        CU_ASSERT_FATAL(vrot_sealkey_provision(t->esys, t->srk, dir, &p, key, NULL, &master,
                                               &error));
        CU_ASSERT_FATAL(g_file_get_contents(sealed_path, &before, &n1, NULL));
        got = NULL;
        CU_ASSERT_FATAL(vrot_sealkey_open(t->esys, t->srk, dir, key, &got, &error));
        CU_ASSERT(same_key(master, got));
        g_clear_pointer(&got, vrot_secret_free);

        /* The update: the boot loader measures something new into PCR 7. */
        extend_pcr(t, 7, 0x71);
        CU_ASSERT_FALSE(vrot_sealkey_open(t->esys, t->srk, dir, key, &got, &error));
        CU_ASSERT(got == NULL);
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_PCR_MISMATCH));
        initial = vrot_sealkey_auth_load(initial_path, NULL);
        CU_ASSERT_FATAL(initial != NULL);
        policy_hex = g_strdup_printf("%02x%02x%02x%02x", vrot_sealkey_auth_get_policy(initial)->buffer[0],
                                     vrot_sealkey_auth_get_policy(initial)->buffer[1],
                                     vrot_sealkey_auth_get_policy(initial)->buffer[2],
                                     vrot_sealkey_auth_get_policy(initial)->buffer[3]);
        CU_ASSERT(strstr(error->message, "initial.auth (policy ") != NULL);
        CU_ASSERT(strstr(error->message, policy_hex) != NULL);
        CU_ASSERT(strstr(error->message, "sha256 PCR 7 is ") != NULL);
        assert_no_key_in(error, master);
        g_clear_error(&error);

        /* The operator authorises the new expected values (here read from
         * the updated host, as `tpm2_pcrread -o` would on a reference host). */
        CU_ASSERT_FATAL(vrot_sealkey_read_pcrs(t->esys, &p, &values, NULL));
        update = vrot_sealkey_authorize(key, &p, values, &error);
        CU_ASSERT_FATAL(update != NULL);
        CU_ASSERT_FATAL(vrot_sealkey_auth_save(update, new_path, &error));
        CU_ASSERT_FATAL(vrot_sealkey_open(t->esys, t->srk, dir, key, &got, &error));
        CU_ASSERT(same_key(master, got));
        CU_ASSERT_FATAL(g_file_get_contents(sealed_path, &after, &n2, NULL));
        CU_ASSERT(n1 == n2 && memcmp(before, after, n1) == 0);   /* never re-sealed */
}

/* Authorisations by another key, and a sealed object that trusts another key. */
static void test_sealkey_unseal_other_signer(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(EVP_PKEY) other = ec_key();
        g_autoptr(GBytes) sealed = NULL;
        g_autoptr(VrotSecret) master = NULL;
        g_autoptr(VrotSealkeyAuth) by_other = NULL;
        g_autoptr(GPtrArray) auths = NULL;
        g_autoptr(GPtrArray) forged = NULL;
        g_autoptr(GPtrArray) good = NULL;
        VrotSealkeyPcrs p = pcrs_of("sha256:0,2,4,7");
        g_autofree char *text = NULL;
        g_autofree char *forged_text = NULL;
        g_autofree char *name_hex = NULL;
        g_autofree char *signer_line = NULL;
        TPM2B_NAME name;

        master = create(t, key, &sealed);
        by_other = vrot_sealkey_authorize_current(t->esys, other, &p, NULL);
        CU_ASSERT_FATAL(by_other != NULL);

        /* Honestly labelled as another key's: refused before the TPM. */
        text = vrot_sealkey_auth_format(by_other);
        auths = auth_list(vrot_sealkey_auth_parse(text, strlen(text), "other.auth", NULL), NULL);
        unseal_fails(t, sealed, key, auths, VROT_SEALKEY_ERROR_UNTRUSTED_KEY,
                     "other.auth (policy ");

        /* Claims the trusted key but is signed by another: the TPM says no. */
        CU_ASSERT_FATAL(vrot_sealkey_key_public(key, NULL, &name, NULL));
        name_hex = g_malloc0(name.size * 2 + 1);
        for (guint i = 0; i < name.size; i++)
                sprintf(name_hex + 2 * i, "%02x", name.name[i]);
        signer_line = g_strconcat("signer ", name_hex, NULL);
        forged_text = replace_line(text, "signer ", signer_line);
        forged = auth_list(vrot_sealkey_auth_parse(forged_text, strlen(forged_text),
                                                   "forged.auth", NULL), NULL);
        CU_ASSERT_FATAL(forged->pdata[0] != NULL);
        unseal_fails(t, sealed, key, forged, VROT_SEALKEY_ERROR_BAD_SIGNATURE, "forged.auth");

        /* The daemon is configured with the wrong operator key. */
        good = auth_list(vrot_sealkey_authorize_current(t->esys, key, &p, NULL), NULL);
        unseal_fails(t, sealed, other, good, VROT_SEALKEY_ERROR_UNTRUSTED_KEY,
                     "does not trust operator key");

        /* After all that, the good authorisation still works. */
        g_autoptr(VrotSecret) got = unseal_ok(t, sealed, key, good);
        CU_ASSERT(same_key(master, got));
}

/* A signature changed after signing is caught by the host TPM. */
static void test_sealkey_unseal_tampered_signature(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(EVP_PKEY) ec = ec_key();
        g_autoptr(EVP_PKEY) rsa = rsa_key(2048);
        EVP_PKEY *keys[] = { ec, rsa };
        VrotSealkeyPcrs p = pcrs_of("sha256:0,2,4,7");

        for (gsize k = 0; k < G_N_ELEMENTS(keys); k++) {
                g_autoptr(GBytes) sealed = NULL;
                g_autoptr(VrotSecret) master = create(t, keys[k], &sealed);
                g_autoptr(VrotSealkeyAuth) a = vrot_sealkey_authorize_current(t->esys, keys[k],
                                                                              &p, NULL);
                g_autofree char *text = vrot_sealkey_auth_format(a);
                g_autofree char *bad = flip_last_digit(text, "signature ");

                CU_ASSERT_PTR_NOT_NULL_FATAL(master);
                g_autoptr(GPtrArray) auths = auth_list(
                        vrot_sealkey_auth_parse(bad, strlen(bad), "bad-sig.auth", NULL), NULL);

                CU_ASSERT_FATAL(auths->pdata[0] != NULL);
                unseal_fails(t, sealed, keys[k], auths, VROT_SEALKEY_ERROR_BAD_SIGNATURE,
                             "bad-sig.auth");
        }
}

/* A changed sealed blob: refused by the parser or by the host TPM. */
static void test_sealkey_unseal_tampered_sealed(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(GBytes) sealed = NULL;
        g_autoptr(VrotSecret) master = NULL;
        g_autoptr(GPtrArray) auths = NULL;
        VrotSealkeyPcrs p = pcrs_of("sha256:0,2,4,7");
        gsize len, pub_len;
        const guint8 *buf;

        master = create(t, key, &sealed);
        auths = auth_list(vrot_sealkey_authorize_current(t->esys, key, &p, NULL), NULL);
        buf = g_bytes_get_data(sealed, &len);
        /* Layout: 8-byte header, TPM2B_PUBLIC (size, type, nameAlg,
         * attributes, authPolicy(2+32), scheme, unique(2+32)), TPM2B_PRIVATE. */
        pub_len = 2 + (gsize)(buf[8] << 8 | buf[9]);
        const struct {
                const char *what;
                gsize at;
                guint8 mask;
                VrotSealkeyError code;
        } flips[] = {
                { "magic", 0, 0x01, VROT_SEALKEY_ERROR_INVALID },
                { "version", 5, 0x01, VROT_SEALKEY_ERROR_INVALID },
                { "public size", 9, 0x01, VROT_SEALKEY_ERROR_INVALID },
                { "type", 8 + 2 + 1, 0x01, VROT_SEALKEY_ERROR_INVALID },
                { "attributes: reserved bit", 8 + 2 + 2 + 2 + 3, 0x01, VROT_SEALKEY_ERROR_INVALID },
                { "attributes: userWithAuth", 8 + 2 + 2 + 2 + 3, 0x40, VROT_SEALKEY_ERROR_INVALID },
                { "authPolicy", 8 + 2 + 2 + 2 + 4 + 2 + 5, 0x01, VROT_SEALKEY_ERROR_UNTRUSTED_KEY },
                { "unique", 8 + pub_len - 1, 0x01, VROT_SEALKEY_ERROR_TAMPERED },
                { "private integrity", 8 + pub_len + 2 + 10, 0x01, VROT_SEALKEY_ERROR_TAMPERED },
                { "private sensitive", len - 1, 0x01, VROT_SEALKEY_ERROR_TAMPERED },
        };
        for (gsize i = 0; i < G_N_ELEMENTS(flips); i++) {
                g_autoptr(GBytes) bad = flip_bits(sealed, flips[i].at, flips[i].mask);

                unseal_fails(t, bad, key, auths, flips[i].code, NULL);
        }
        /* Truncated and extended. */
        {
                g_autoptr(GBytes) shorter = g_bytes_new_from_bytes(sealed, 0, len - 1);
                g_autofree guint8 *longer_buf = g_malloc0(len + 1);
                g_autoptr(GBytes) longer = NULL;

                memcpy(longer_buf, buf, len);
                longer = g_bytes_new(longer_buf, len + 1);
                unseal_fails(t, shorter, key, auths, VROT_SEALKEY_ERROR_INVALID, NULL);
                unseal_fails(t, longer, key, auths, VROT_SEALKEY_ERROR_INVALID, NULL);
        }
        /* Nothing stayed loaded after all those failures. */
        g_autoptr(VrotSecret) got = unseal_ok(t, sealed, key, auths);
        CU_ASSERT(same_key(master, got));
}

/* A sealed object is useless under another parent (another host's SRK). */
static void test_sealkey_unseal_other_parent(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(GBytes) sealed = NULL;
        g_autoptr(VrotSecret) master = NULL;
        g_autoptr(GPtrArray) auths = NULL;
        VrotSealkeyPcrs p = pcrs_of("sha256:0,2,4,7");

        master = create(t, key, &sealed);
        auths = auth_list(vrot_sealkey_authorize_current(t->esys, key, &p, NULL), NULL);
        Esys_FlushContext(t->esys, t->srk);
        create_srk(t, 0x5a);
        unseal_fails(t, sealed, key, auths, VROT_SEALKEY_ERROR_TAMPERED,
                     "loading the sealed master key");
}

/* An RSA-2048 operator key works like the P-256 one. */
static void test_sealkey_rsa_operator_key(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(EVP_PKEY) key = rsa_key(2048);
        g_autoptr(GBytes) sealed = NULL;
        g_autoptr(VrotSecret) master = NULL;
        g_autoptr(VrotSecret) got = NULL;
        g_autoptr(GPtrArray) auths = NULL;
        VrotSealkeyPcrs p = pcrs_of("sha256:0,2,4,7");

        master = create(t, key, &sealed);
        auths = auth_list(vrot_sealkey_authorize_current(t->esys, key, &p, NULL), NULL);
        CU_ASSERT_FATAL(auths->pdata[0] != NULL);
        got = unseal_ok(t, sealed, key, auths);
        CU_ASSERT(same_key(master, got));
}

/* A recovery copy made at creation; the host TPM is then replaced. */
static void test_sealkey_recover_to_new_tpm(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(Tpm) replacement = tpm_start();
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(EVP_PKEY) rec = rsa_key(2048);
        g_autoptr(EVP_PKEY) rec_pub = NULL;
        g_autofree char *pub_path = g_build_filename(t->dir, "rec.pub.pem", NULL);
        g_autoptr(GBytes) sealed = NULL;
        g_autoptr(GBytes) resealed = NULL;
        g_autoptr(GBytes) recovery = NULL;
        g_autoptr(GBytes) recovery2 = NULL;
        g_autoptr(VrotSecret) master = NULL;
        g_autoptr(VrotSecret) recovered = NULL;
        g_autoptr(VrotSecret) got = NULL;
        g_autoptr(GPtrArray) auths = NULL;
        g_autoptr(GError) error = NULL;
        VrotSealkeyPcrs p = pcrs_of("sha256:0,2,4,7");

        /* The daemon only ever has the public half of the recovery key. */
        CU_ASSERT_FATAL(vrot_sealkey_key_save(rec, pub_path, FALSE, NULL));
        rec_pub = vrot_sealkey_key_load(pub_path, NULL);
        CU_ASSERT_FATAL(vrot_sealkey_create(t->esys, t->srk, key, rec_pub, &sealed, &recovery,
                                            &master, &error));
        CU_ASSERT_FATAL(recovery != NULL);
        CU_ASSERT(memcmp(g_bytes_get_data(recovery, NULL), "VRRC", 4) == 0);
        CU_ASSERT_EQUAL(g_bytes_get_size(recovery), 42 + 256);

        /* The sealed object means nothing to another TPM (R-ROT-2). */
        auths = auth_list(vrot_sealkey_authorize_current(replacement->esys, key, &p, NULL),
                          NULL);
        unseal_fails(replacement, sealed, key, auths, VROT_SEALKEY_ERROR_TAMPERED,
                     "loading the sealed master key");

        /* The operator recovers the key offline and it is sealed anew in
         * the replacement TPM: same key, so every vTPM state still opens. */
        CU_ASSERT_FATAL(vrot_sealkey_recover(recovery, rec, &recovered, &error));
        CU_ASSERT(same_key(master, recovered));
        replacement->tcti.n = 0;
        CU_ASSERT_FATAL(vrot_sealkey_reseal(replacement->esys, replacement->srk, key, rec_pub,
                                            recovered, &resealed, &recovery2, &error));
        assert_cmds(replacement, create_cmds, G_N_ELEMENTS(create_cmds));
        got = unseal_ok(replacement, resealed, key, auths);
        CU_ASSERT(same_key(master, got));
        g_clear_pointer(&got, vrot_secret_free);
        CU_ASSERT_FATAL(vrot_sealkey_recover(recovery2, rec, &got, &error));
        CU_ASSERT(same_key(master, got));
}

static void test_sealkey_recover_errors(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(EVP_PKEY) rec = rsa_key(2048);
        g_autoptr(EVP_PKEY) other = rsa_key(2048);
        g_autoptr(EVP_PKEY) rec_pub = NULL;
        g_autofree char *pub_path = g_build_filename(t->dir, "rec.pub.pem", NULL);
        g_autoptr(GBytes) sealed = NULL;
        g_autoptr(GBytes) recovery = NULL;
        g_autoptr(VrotSecret) master = NULL;

        CU_ASSERT_FATAL(vrot_sealkey_key_save(rec, pub_path, FALSE, NULL));
        rec_pub = vrot_sealkey_key_load(pub_path, NULL);
        CU_ASSERT_FATAL(vrot_sealkey_create(t->esys, t->srk, key, rec, &sealed, &recovery,
                                            &master, NULL));
        const struct {
                const char *what;
                GBytes *blob;
                EVP_PKEY *key;
                VrotSealkeyError code;
        } bad[] = {
                { "other key", g_bytes_ref(recovery), other, VROT_SEALKEY_ERROR_UNTRUSTED_KEY },
                { "public key only", g_bytes_ref(recovery), rec_pub, VROT_SEALKEY_ERROR_INVALID },
                { "EC key", g_bytes_ref(recovery), key, VROT_SEALKEY_ERROR_INVALID },
                { "ciphertext", flip_byte(recovery, 100), rec, VROT_SEALKEY_ERROR_TAMPERED },
                { "magic", flip_byte(recovery, 1), rec, VROT_SEALKEY_ERROR_INVALID },
                { "version", flip_byte(recovery, 5), rec, VROT_SEALKEY_ERROR_INVALID },
                { "algorithm", flip_byte(recovery, 7), rec, VROT_SEALKEY_ERROR_INVALID },
                { "length", flip_byte(recovery, 41), rec, VROT_SEALKEY_ERROR_INVALID },
                { "fingerprint", flip_byte(recovery, 8), rec, VROT_SEALKEY_ERROR_UNTRUSTED_KEY },
                { "header only", g_bytes_new_from_bytes(recovery, 0, 42), rec,
                  VROT_SEALKEY_ERROR_INVALID },
                { "truncated", g_bytes_new_from_bytes(recovery, 0, 41), rec,
                  VROT_SEALKEY_ERROR_INVALID },
        };
        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GError) error = NULL;
                VrotSecret *none = NULL;

                CU_ASSERT_FALSE(vrot_sealkey_recover(bad[i].blob, bad[i].key, &none, &error));
                CU_ASSERT(none == NULL);
                if (!g_error_matches(error, VROT_SEALKEY_ERROR, bad[i].code))
                        fprintf(stderr, "\n  case '%s': %s\n", bad[i].what, error->message);
                CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, bad[i].code));
                assert_no_key_in(error, master);
                g_bytes_unref(bad[i].blob);
        }
}

/* Unusable recovery keys and master keys are refused before the TPM. */
static void test_sealkey_reseal_refuses_bad_input(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(EVP_PKEY) small = rsa_key(1024);
        EVP_PKEY *bad_rec[] = { key, small };
        static const gsize bad_len[] = { 0, 16, 31, 33 };
        VrotError verr = { 0 };

        for (gsize i = 0; i < G_N_ELEMENTS(bad_rec); i++) {
                g_autoptr(GBytes) s = NULL;
                g_autoptr(GError) error = NULL;

                t->tcti.n = 0;
                CU_ASSERT_FALSE(vrot_sealkey_create(t->esys, t->srk, key, bad_rec[i], &s, NULL,
                                                    NULL, &error));
                CU_ASSERT(s == NULL);
                CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID));
                CU_ASSERT_EQUAL(t->tcti.n, 0);
        }
        for (gsize i = 0; i < G_N_ELEMENTS(bad_len); i++) {
                g_autoptr(VrotSecret) m = vrot_secret_new(bad_len[i], &verr);
                g_autoptr(GBytes) s = NULL;
                g_autoptr(GError) error = NULL;

                t->tcti.n = 0;
                CU_ASSERT_FALSE(vrot_sealkey_reseal(t->esys, t->srk, key, NULL, m, &s, NULL,
                                                    &error));
                CU_ASSERT(s == NULL);
                CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID));
                CU_ASSERT_EQUAL(t->tcti.n, 0);
        }
}

/*
 * Production provisioning: the daemon has only the operator's public key,
 * so there is no authorisation until the operator makes one.
 */
static void test_sealkey_provision_public_key_only(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autoptr(EVP_PKEY) pub = NULL;
        g_autoptr(EVP_PKEY) rec = rsa_key(2048);
        g_autofree char *dir = g_build_filename(t->dir, "sk", NULL);
        g_autofree char *pub_path = g_build_filename(t->dir, "op.pub.pem", NULL);
        g_autofree char *rec_path = g_build_filename(dir, VROT_SEALKEY_RECOVERY_FILE, NULL);
        g_autofree char *sealed_path = g_build_filename(dir, VROT_SEALKEY_SEALED_FILE, NULL);
        g_autofree char *auth_path = g_build_filename(dir, "operator.auth", NULL);
        g_autofree char *rec_buf = NULL;
        g_autoptr(VrotSecret) master = NULL;
        g_autoptr(VrotSecret) got = NULL;
        g_autoptr(VrotSealkeyAuth) a = NULL;
        g_autoptr(GBytes) rec_bytes = NULL;
        g_autoptr(GError) error = NULL;
        VrotSealkeyPcrs p = pcrs_of("sha256:0,2,4,7");
        VrotSecret *none = NULL;
        struct stat st;
        gsize len = 0;

        CU_ASSERT_FATAL(g_mkdir(dir, 0700) == 0);
        CU_ASSERT_FATAL(vrot_sealkey_key_save(key, pub_path, FALSE, NULL));
        pub = vrot_sealkey_key_load(pub_path, NULL);
        t->tcti.n = 0;
        CU_ASSERT_FATAL(vrot_sealkey_provision(t->esys, t->srk, dir, &p, pub, rec, &master,
                                               &error));
        assert_cmds(t, create_cmds, G_N_ELEMENTS(create_cmds));
        CU_ASSERT_FATAL(stat(sealed_path, &st) == 0);
        CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
        CU_ASSERT_FATAL(stat(rec_path, &st) == 0);
        CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
        CU_ASSERT_FALSE(vrot_sealkey_open(t->esys, t->srk, dir, pub, &none, &error));
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_PCR_MISMATCH));
        CU_ASSERT(error && strstr(error->message, "no PCR authorisation") != NULL);
        g_clear_error(&error);

        /* The operator authorises the current values; the daemon opens. */
        a = vrot_sealkey_authorize_current(t->esys, key, &p, NULL);
        CU_ASSERT_FATAL(vrot_sealkey_auth_save(a, auth_path, NULL));
        CU_ASSERT_FATAL(vrot_sealkey_open(t->esys, t->srk, dir, pub, &got, &error));
        CU_ASSERT(same_key(master, got));
        g_clear_pointer(&got, vrot_secret_free);

        /* The recovery file on disk gives the key back. */
        CU_ASSERT_FATAL(g_file_get_contents(rec_path, &rec_buf, &len, NULL));
        rec_bytes = g_bytes_new(rec_buf, len);
        CU_ASSERT_FATAL(vrot_sealkey_recover(rec_bytes, rec, &got, &error));
        CU_ASSERT(same_key(master, got));
}

static void test_sealkey_provision_refuses_existing(void)
{
        g_autoptr(Tpm) t = tpm_start();
        g_autoptr(EVP_PKEY) key = ec_key();
        g_autofree char *dir = g_build_filename(t->dir, "sk", NULL);
        g_autofree char *sealed_path = g_build_filename(dir, VROT_SEALKEY_SEALED_FILE, NULL);
        g_autoptr(VrotSecret) master = NULL;
        g_autoptr(GError) error = NULL;
        VrotSealkeyPcrs p = pcrs_of("sha256:0,2,4,7");
        VrotSecret *none = NULL;

        CU_ASSERT_FATAL(g_mkdir(dir, 0700) == 0);
        t->tcti.n = 0;
        CU_ASSERT_FATAL(vrot_sealkey_provision(t->esys, t->srk, dir, &p, key, NULL, &master,
                                               &error));
        CU_ASSERT_EQUAL(t->tcti.n, G_N_ELEMENTS(create_cmds) + 1);   /* + PCR_Read */

        /* Provisioning again would lose every vTPM: refused, nothing sent. */
        t->tcti.n = 0;
        CU_ASSERT_FALSE(vrot_sealkey_provision(t->esys, t->srk, dir, &p, key, NULL, &none,
                                               &error));
        CU_ASSERT(none == NULL);
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_EXISTS));
        CU_ASSERT_EQUAL(t->tcti.n, 0);
        g_clear_error(&error);

        /* A missing sealed file is an I/O error, never "unprovisioned". */
        CU_ASSERT_FATAL(unlink(sealed_path) == 0);
        CU_ASSERT_FALSE(vrot_sealkey_open(t->esys, t->srk, dir, key, &none, &error));
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_FAILED));
        g_clear_error(&error);
        CU_ASSERT_FALSE(vrot_sealkey_provision(t->esys, t->srk, "/nonexistent", &p, key, NULL,
                                               &none, &error));
        CU_ASSERT(g_error_matches(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_FAILED));
}

static const UnitCase cases[] = {
        UNIT_CASE(test_sealkey_pcrs_parse_table),
        UNIT_CASE(test_sealkey_key_save_load),
        UNIT_CASE(test_sealkey_key_public_types),
        UNIT_CASE(test_sealkey_auth_format_parse),
        UNIT_CASE(test_sealkey_auth_parse_errors),
        UNIT_CASE(test_sealkey_auth_parse_nul_byte),
        UNIT_CASE(test_sealkey_authorize_errors),
        UNIT_CASE(test_sealkey_auth_load_dir),
        UNIT_CASE(test_sealkey_policy_digests_match_trial_session),
        UNIT_CASE(test_sealkey_create_unseal_commands),
        UNIT_CASE(test_sealkey_unseal_many_pcrs),
        UNIT_CASE(test_sealkey_unseal_after_update),
        UNIT_CASE(test_sealkey_unseal_other_signer),
        UNIT_CASE(test_sealkey_unseal_tampered_signature),
        UNIT_CASE(test_sealkey_unseal_tampered_sealed),
        UNIT_CASE(test_sealkey_unseal_other_parent),
        UNIT_CASE(test_sealkey_rsa_operator_key),
        UNIT_CASE(test_sealkey_recover_to_new_tpm),
        UNIT_CASE(test_sealkey_recover_errors),
        UNIT_CASE(test_sealkey_reseal_refuses_bad_input),
        UNIT_CASE(test_sealkey_provision_public_key_only),
        UNIT_CASE(test_sealkey_provision_refuses_existing),
};

int main(void)
{
        int rc;

        /* tpm2-tss logs failed commands to stderr; the failures here are
         * expected and asserted. */
        g_setenv("TSS2_LOG", "all+none", TRUE);
        unit_tmpdir();
        atexit(kill_live_swtpms);
        rc = UNIT_RUN("sealkey", cases);
        kill_live_swtpms();
        return rc;
}
