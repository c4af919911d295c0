/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * daemon/endorse against real vrot-vtpm workers ($VROT_VTPM, one fresh
 * worker per case, data socket and a key through a pipe), checked from the
 * outside: the certificates verify against a software fleet root and host
 * CA, the real tpm2-tools of a guest (tpm2_createek, tpm2_nvread,
 * tpm2_getekcertificate, tpm2_nvwrite) see the same keys and bytes, and
 * ESYS commands a guest could send cannot overwrite the certificates.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include "endorse-priv.h"
#include "vtpmconn.h"
#include "forkclient.h"
#include "tpmpub.h"
#include "unit.h"

#define TEST_URI "https://host-17.example.net/vrot/attest"
/* tss2's TPM2_*_FIRST shift a signed 0x80/0x81 by 24 (undefined behaviour). */
#define TRANSIENT_FIRST 0x80000000u
#define PERSISTENT_FIRST 0x81000000u
#define LIBTPMS_MANUFACTURER 0x49424D00u        /* "IBM", libtpms VendorInfo.c */
#define TPM_RC_AUTH_UNAVAILABLE 0x12fu
#define TPM_RC_NV_LOCKED 0x148u

static const gchar *vtpm_binary;
/*
 * Started and stopped in main(), with every forked worker still running:
 * a fatal assertion leaves a case without its scope cleanups, and neither
 * the fork server nor its workers die with us.
 */
static VrotForkServer *fork_server;
static GArray *forked_pids;

/* ---- the software chain: fleet root -> host CA (both in memory) ------------------ */

typedef struct Chain {
        EVP_PKEY *root_key, *ca_key;
        X509 *root, *ca;
        VrotX509Signer *root_signer, *ca_signer;
} Chain;

static Chain chain;

static void chain_init(void)
{
        static const VrotX509CaParams root_params = { .common_name = "vrot test fleet root" };
        static const VrotX509CaParams ca_params = { .common_name = "vrot test host CA" };
        g_autoptr(GError) err = NULL;

        chain.root_key = EVP_EC_gen("P-256");
        chain.ca_key = EVP_EC_gen("P-256");
        g_assert(chain.root_key && chain.ca_key);
        chain.root = vrot_x509_root_cert(chain.root_key, &root_params, &err);
        g_assert_no_error(err);
        chain.root_signer = vrot_x509_signer_new_software(chain.root, chain.root_key, &err);
        g_assert_no_error(err);
        chain.ca = vrot_x509_ca_cert(chain.root_signer, chain.ca_key, &ca_params, &err);
        g_assert_no_error(err);
        chain.ca_signer = vrot_x509_signer_new_software(chain.ca, chain.ca_key, &err);
        g_assert_no_error(err);
}

static void chain_clear(void)
{
        vrot_x509_signer_free(chain.ca_signer);
        vrot_x509_signer_free(chain.root_signer);
        X509_free(chain.ca);
        X509_free(chain.root);
        EVP_PKEY_free(chain.ca_key);
        EVP_PKEY_free(chain.root_key);
}

/* X509_verify_cert() against the root, the host CA untrusted, strict mode. */
static int verify_chain(X509 *leaf)
{
        X509_STORE *store = X509_STORE_new();
        STACK_OF(X509) *untrusted = sk_X509_new_null();
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        int rc, err;

        CU_ASSERT_FATAL(store && untrusted && ctx);
        CU_ASSERT_FATAL(X509_STORE_add_cert(store, chain.root) == 1);
        CU_ASSERT_FATAL(sk_X509_push(untrusted, chain.ca) > 0);
        CU_ASSERT_FATAL(X509_STORE_CTX_init(ctx, store, leaf, untrusted) == 1);
        X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
        rc = X509_verify_cert(ctx);
        err = X509_STORE_CTX_get_error(ctx);
        X509_STORE_CTX_free(ctx);
        sk_X509_free(untrusted);
        X509_STORE_free(store);
        ERR_clear_error();
        return rc == 1 ? X509_V_OK : (err != X509_V_OK ? err : -1);
}

/* ---- a worker -------------------------------------------------------------------- */

typedef struct Vtpm {
        GPid pid;
        gchar *dir;
        gchar *data;
        gchar *tcti;
        VrotWorker *worker;     /* started by the fork server: it reaps */
        gboolean ended;
} Vtpm;

static void worker_ended(VrotWorker *w, gboolean signaled, gint code, gpointer data)
{
        Vtpm *v = data;

        (void)w;
        (void)signaled;
        (void)code;
        v->ended = TRUE;
}

static void vtpm_stop(Vtpm *v)
{
        g_autofree gchar *rm = NULL;
        gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
        int status;

        if (!v)
                return;
        if (v->pid > 0)
                kill(v->pid, SIGTERM);
        for (guint i = 0; v->worker && i < forked_pids->len; i++)
                if (g_array_index(forked_pids, GPid, i) == v->pid)
                        g_array_remove_index_fast(forked_pids, i);
        if (v->pid > 0 && !v->worker)
                CU_ASSERT_EQUAL(waitpid(v->pid, &status, 0), v->pid);
        while (v->worker && !v->ended && g_get_monotonic_time() < deadline)
                g_main_context_iteration(NULL, TRUE);
        CU_ASSERT_TRUE(!v->worker || v->ended);
        g_clear_pointer(&v->worker, vrot_worker_free);
        rm = g_strdup_printf("rm -rf '%s'", v->dir);
        CU_ASSERT_EQUAL(system(rm), 0);
        g_free(v->dir);
        g_free(v->data);
        g_free(v->tcti);
        g_free(v);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Vtpm, vtpm_stop)

static gboolean accepts(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        gboolean ok;

        g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
        ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        if (fd >= 0)
                close(fd);
        return ok;
}

static void wait_listening(Vtpm *v)
{
        g_autofree gchar *ctrl = g_strconcat(v->data, ".ctrl", NULL);
        gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
        int status;

        while (g_get_monotonic_time() < deadline) {
                if (waitpid(v->pid, &status, WNOHANG) == v->pid) {
                        v->pid = 0;
                        CU_FAIL_FATAL("vrot-vtpm exited before listening");
                }
                if (accepts(ctrl) && accepts(v->data))
                        return;
                g_usleep(2000);
        }
        CU_FAIL_FATAL("vrot-vtpm did not listen within 20 s");
}

static int key_pipe(void)
{
        static const guint8 key[32] = { 0x5a, 0x17, 0x43 };
        int p[2];

        CU_ASSERT_FATAL(pipe2(p, O_CLOEXEC) == 0);
        CU_ASSERT_FATAL(write(p[1], key, sizeof(key)) == sizeof(key));
        close(p[1]);
        return p[0];
}

/* A worker must not outlive a test that a fatal assertion ended early. */
static void die_with_parent(gpointer data)
{
        (void)data;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* Spawns @argv with a fresh state key on fd 3, output to @log; its PID. */
static GPid spawn_keyed(const gchar *const *argv, const char *log)
{
        g_autoptr(GError) err = NULL;
        gint source_fds[1] = { key_pipe() }, target_fds[1] = { 3 };
        int logfd = open(log, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        GPid pid = 0;

        CU_ASSERT_FATAL(logfd >= 0);
        g_spawn_async_with_pipes_and_fds(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                         die_with_parent, NULL, -1, logfd, logfd, source_fds,
                                         target_fds, 1, &pid, NULL, NULL, NULL, &err);
        close(source_fds[0]);
        close(logfd);
        CU_ASSERT_PTR_NULL_FATAL(err);
        return pid;
}

/* A fresh worker: data socket DIR/tpm.sock (control at .ctrl), key on fd 3. */
static Vtpm *vtpm_start_flags(const char *flags)
{
        g_autoptr(Vtpm) v = g_new0(Vtpm, 1);
        g_autofree gchar *state = NULL, *ctrl = NULL, *log = NULL;

        v->dir = g_build_filename(unit_tmpdir(), "vtpm.XXXXXX", NULL);
        CU_ASSERT_FATAL(g_mkdtemp(v->dir) != NULL);
        state = g_build_filename(v->dir, "state", NULL);
        CU_ASSERT_FATAL(g_mkdir(state, 0700) == 0);
        v->data = g_build_filename(v->dir, "tpm.sock", NULL);
        v->tcti = g_strdup_printf("swtpm:path=%s", v->data);
        ctrl = g_strconcat(v->data, ".ctrl", NULL);
        log = g_build_filename(v->dir, "vtpm.log", NULL);
        {
                const gchar *const argv[] = {
                        vtpm_binary, "--uuid", "6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b",
                        "--state-dir", state, "--ctrl", ctrl, "--server", v->data,
                        "--key-fd", "3", "--flags", flags, "--log-level", "warning", NULL,
                };

                v->pid = spawn_keyed(argv, log);
        }
        wait_listening(v);
        return g_steal_pointer(&v);
}

/* A fresh worker from @fs, as vrotd starts them (not-need-init only). */
static Vtpm *vtpm_start_forked(VrotForkServer *fs)
{
        g_autoptr(Vtpm) v = g_new0(Vtpm, 1);
        g_autoptr(GError) err = NULL;
        g_autofree gchar *state = NULL, *ctrl = NULL, *log = NULL;
        VrotWorkerSpec spec = { .uuid = "6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b",
                                .not_need_init = TRUE };
        int key = key_pipe();

        v->dir = g_build_filename(unit_tmpdir(), "forked.XXXXXX", NULL);
        CU_ASSERT_FATAL(g_mkdtemp(v->dir) != NULL);
        spec.state_dir = state = g_build_filename(v->dir, "state", NULL);
        CU_ASSERT_FATAL(g_mkdir(state, 0700) == 0);
        spec.data_path = v->data = g_build_filename(v->dir, "tpm.sock", NULL);
        spec.ctrl_path = ctrl = g_strconcat(v->data, ".ctrl", NULL);
        spec.log_path = log = g_build_filename(v->dir, "vtpm.log", NULL);
        v->tcti = g_strdup_printf("swtpm:path=%s", v->data);
        v->worker = vrot_fork_server_spawn(fs, &spec, key, &err);
        close(key);
        CU_ASSERT_PTR_NOT_NULL_FATAL(v->worker);
        v->pid = vrot_worker_pid(v->worker);
        g_array_append_val(forked_pids, v->pid);
        /* "ready" comes once both sockets listen: the TCTI may connect. */
        if (!vrot_worker_wait_ready(v->worker, 10000, &err))
                fprintf(stderr, "%s\n", err->message);
        CU_ASSERT_PTR_NULL_FATAL(err);
        vrot_worker_watch(v->worker, 0, NULL, worker_ended, v);
        return g_steal_pointer(&v);
}

static Vtpm *vtpm_start(void)
{
        return vtpm_start_flags("not-need-init,startup-clear");
}

/* ---- tpm2-tools, as a guest runs them ------------------------------------------------ */

/* Runs tpm2_@tool against @v; returns its exit status, output in *@ret_out (optional). */
static int tpm2(Vtpm *v, gchar **ret_out, const char *tool, ...)
{
        g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
        g_auto(GStrv) env = g_environ_setenv(g_get_environ(), "TPM2TOOLS_TCTI", v->tcti, TRUE);
        g_autofree gchar *out = NULL, *errout = NULL;
        g_autoptr(GError) err = NULL;
        const char *arg;
        va_list ap;
        int status = -1;

        env = g_environ_setenv(env, "TSS2_LOG", "all+none", TRUE);
        g_ptr_array_add(argv, g_strconcat("tpm2_", tool, NULL));
        va_start(ap, tool);
        while ((arg = va_arg(ap, const char *)))
                g_ptr_array_add(argv, g_strdup(arg));
        va_end(ap);
        g_ptr_array_add(argv, NULL);
        CU_ASSERT_FATAL(g_spawn_sync(NULL, (gchar **)argv->pdata, env, G_SPAWN_SEARCH_PATH, NULL,
                                     NULL, &out, &errout, &status, &err));
        if (!g_spawn_check_wait_status(status, NULL) && !ret_out)
                fprintf(stderr, "tpm2_%s: %s%s", tool, out, errout);
        if (ret_out)
                *ret_out = g_strconcat(out, errout, NULL);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static gchar *tmp_path(Vtpm *v, const char *name)
{
        return g_build_filename(v->dir, name, NULL);
}

static GBytes *read_file(const char *path)
{
        gchar *data = NULL;
        gsize len = 0;

        CU_ASSERT_FATAL(g_file_get_contents(path, &data, &len, NULL));
        return g_bytes_new_take(data, len);
}

static EVP_PKEY *read_pem_pubkey(const char *path)
{
        FILE *f = fopen(path, "r");
        EVP_PKEY *k;

        CU_ASSERT_FATAL(f != NULL);
        k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
        fclose(f);
        CU_ASSERT_PTR_NOT_NULL_FATAL(k);
        return k;
}

/* ---- helpers -------------------------------------------------------------------------- */

static VrotEndorseParams params_with(const char *uri)
{
        VrotEndorseParams p = { .host_attestation_uri = uri };

        for (gsize i = 0; i < sizeof(p.instance_uuid); i++)
                p.instance_uuid[i] = (guint8)(0xa0 + i);
        return p;
}

static VrotEndorsement *endorse_ok(Vtpm *v, const char *uri)
{
        VrotEndorseParams p = params_with(uri);
        g_autoptr(GError) err = NULL;
        VrotEndorsement *e = NULL;

        if (!vrot_endorse_vtpm(v->tcti, chain.ca_signer, &p, &e, &err))
                fprintf(stderr, "%s\n", err->message);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        return e;
}

static gboolean same_bytes(GBytes *a, GBytes *b)
{
        return a && b && g_bytes_equal(a, b);
}

static GBytes *der_of(X509 *x)
{
        g_autoptr(GError) err = NULL;
        GBytes *b = vrot_x509_to_der(x, &err);

        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        return b;
}

/* @ek's certificate, parsed. */
static X509 *cert_of(const VrotEndorsedEk *ek)
{
        g_autoptr(GError) err = NULL;
        X509 *x;

        CU_ASSERT_PTR_NOT_NULL_FATAL(ek->cert_der);
        x = vrot_x509_from_der(g_bytes_get_data(ek->cert_der, NULL),
                               g_bytes_get_size(ek->cert_der), &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(x);
        return x;
}

/* Both certificates in NV, read back by the module, are @e's, byte for byte. */
static void assert_read_back(Vtpm *v, const VrotEndorsement *e)
{
        g_autoptr(X509) rsa = NULL;
        g_autoptr(X509) ecc = NULL;
        g_autoptr(GError) err = NULL;
        g_autoptr(GBytes) rsa_der = NULL, ecc_der = NULL;

        CU_ASSERT_TRUE_FATAL(vrot_endorse_read_certs(v->tcti, &rsa, &ecc, &err));
        rsa_der = der_of(rsa);
        ecc_der = der_of(ecc);
        CU_ASSERT_TRUE(same_bytes(rsa_der, e->ek[VROT_ENDORSE_EK_RSA].cert_der));
        CU_ASSERT_TRUE(same_bytes(ecc_der, e->ek[VROT_ENDORSE_EK_ECC].cert_der));
}

/* ESYS on @v's TCTI, for what a guest could send; free with esys_close(). */
static ESYS_CONTEXT *esys_open(Vtpm *v, TSS2_TCTI_CONTEXT **ret_tcti)
{
        ESYS_CONTEXT *esys = NULL;

        CU_ASSERT_FATAL(Tss2_TctiLdr_Initialize(v->tcti, ret_tcti) == TSS2_RC_SUCCESS);
        CU_ASSERT_FATAL(Esys_Initialize(&esys, *ret_tcti, NULL) == TSS2_RC_SUCCESS);
        return esys;
}

static void esys_close(ESYS_CONTEXT *esys, TSS2_TCTI_CONTEXT *tcti)
{
        Esys_Finalize(&esys);
        Tss2_TctiLdr_Finalize(&tcti);
}

static guint32 count_handles(Vtpm *v, TPM2_HANDLE first)
{
        TSS2_TCTI_CONTEXT *tcti = NULL;
        ESYS_CONTEXT *esys = esys_open(v, &tcti);
        TPMS_CAPABILITY_DATA *cap = NULL;
        guint32 n;

        CU_ASSERT_FATAL(Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                           TPM2_CAP_HANDLES, first, 64, NULL, &cap) ==
                        TSS2_RC_SUCCESS);
        n = cap->data.handles.count;
        Esys_Free(cap);
        esys_close(esys, tcti);
        return n;
}

/* ---- cases ------------------------------------------------------------------------------- */

static void check_ek(const VrotEndorsedEk *ek, int type, int bits, guint32 handle,
                     guint32 index)
{
        g_autoptr(X509) cert = cert_of(ek);
        g_autoptr(GBytes) der = NULL;

        CU_ASSERT_EQUAL(verify_chain(cert), X509_V_OK);
        CU_ASSERT_EQUAL(EVP_PKEY_get_base_id(ek->public_key), type);
        CU_ASSERT_EQUAL(EVP_PKEY_get_bits(ek->public_key), bits);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(X509_get0_pubkey(cert), ek->public_key), 1);
        der = der_of(cert);
        CU_ASSERT_TRUE(same_bytes(der, ek->cert_der));
        CU_ASSERT_EQUAL(ek->handle, handle);
        CU_ASSERT_EQUAL(ek->nv_index, index);
        CU_ASSERT(g_bytes_get_size(ek->tpm_public) > 64);
}

static void test_endorse_vtpm_certs_verify(void)
{
        g_autoptr(Vtpm) v = vtpm_start();
        g_autoptr(VrotEndorsement) e = endorse_ok(v, TEST_URI);
        g_autofree gchar *text = NULL;
        g_autoptr(X509) rsa = cert_of(&e->ek[VROT_ENDORSE_EK_RSA]);
        g_autoptr(X509) ecc = cert_of(&e->ek[VROT_ENDORSE_EK_ECC]);
        BIO *mem = BIO_new(BIO_s_mem());
        char *p = NULL, cn[64];
        long n;

        check_ek(&e->ek[VROT_ENDORSE_EK_RSA], EVP_PKEY_RSA, 2048, 0x81010001, 0x01c00002);
        check_ek(&e->ek[VROT_ENDORSE_EK_ECC], EVP_PKEY_EC, 256, 0x8101000a, 0x01c0000a);
        /* What libtpms 0.9 reports: the certificate says the same. */
        CU_ASSERT_EQUAL(e->tpm_manufacturer, LIBTPMS_MANUFACTURER);
        CU_ASSERT_STRING_EQUAL(e->tpm_model, "SW TPM");
        CU_ASSERT(e->tpm_version != 0);
        X509_print(mem, ecc);
        n = BIO_get_mem_data(mem, &p);
        text = g_strndup(p, (gsize)n);
        BIO_free(mem);
        CU_ASSERT_PTR_NOT_NULL(strstr(text, "2.23.133.2.1=id:49424D00"));
        CU_ASSERT_PTR_NOT_NULL(strstr(text, "2.23.133.2.2=SW TPM"));
        CU_ASSERT(X509_NAME_get_text_by_NID(X509_get_subject_name(rsa), NID_commonName,
                                            cn, sizeof(cn)) == 36);
        CU_ASSERT_STRING_EQUAL(cn, "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf");
        CU_ASSERT_PTR_NOT_NULL(strstr(text, TEST_URI));
        for (int i = 0; i < VROT_ENDORSE_N_STEPS; i++)
                CU_ASSERT(e->step_usec[i] >= 0);
        assert_read_back(v, e);
}

/* tpm2_createek with the same TCG templates derives the certified keys. */
static void assert_createek_matches(Vtpm *v, const char *alg, const VrotEndorsedEk *ek)
{
        g_autofree gchar *pem = tmp_path(v, "ek.pem"), *ctx = tmp_path(v, "ek.ctx");
        g_autofree gchar *persisted = tmp_path(v, "persisted.pem");
        g_autofree gchar *handle = g_strdup_printf("0x%08x", ek->handle);
        g_autoptr(EVP_PKEY) made = NULL, found = NULL;
        g_autoptr(X509) cert = cert_of(ek);

        CU_ASSERT_EQUAL_FATAL(tpm2(v, NULL, "createek", "-G", alg, "-c", ctx, "-u", pem, "-f",
                                   "pem", NULL), 0);
        CU_ASSERT_EQUAL(tpm2(v, NULL, "flushcontext", "-t", NULL), 0);
        made = read_pem_pubkey(pem);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(made, X509_get0_pubkey(cert)), 1);
        CU_ASSERT_EQUAL_FATAL(tpm2(v, NULL, "readpublic", "-c", handle, "-f", "pem", "-o",
                                   persisted, NULL), 0);
        found = read_pem_pubkey(persisted);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(found, X509_get0_pubkey(cert)), 1);
}

static void assert_nvread_matches(Vtpm *v, const VrotEndorsedEk *ek)
{
        g_autofree gchar *out = tmp_path(v, "nv.der");
        g_autofree gchar *index = g_strdup_printf("0x%08x", ek->nv_index);
        g_autoptr(GBytes) got = NULL;

        CU_ASSERT_EQUAL_FATAL(tpm2(v, NULL, "nvread", index, "-o", out, NULL), 0);
        got = read_file(out);
        CU_ASSERT_TRUE(same_bytes(got, ek->cert_der));
}

static void test_endorse_vtpm_tpm2_tools(void)
{
        g_autoptr(Vtpm) v = vtpm_start();
        g_autoptr(VrotEndorsement) e = endorse_ok(v, TEST_URI);
        g_autofree gchar *rsa = tmp_path(v, "rsa.der"), *ecc = tmp_path(v, "ecc.der");
        g_autoptr(GBytes) rsa_got = NULL, ecc_got = NULL;

        assert_createek_matches(v, "rsa", &e->ek[VROT_ENDORSE_EK_RSA]);
        assert_createek_matches(v, "ecc", &e->ek[VROT_ENDORSE_EK_ECC]);
        assert_nvread_matches(v, &e->ek[VROT_ENDORSE_EK_RSA]);
        assert_nvread_matches(v, &e->ek[VROT_ENDORSE_EK_ECC]);
        /* With two certificates in NV it writes the RSA one first, then the ECC one. */
        CU_ASSERT_EQUAL_FATAL(tpm2(v, NULL, "getekcertificate", "-o", rsa, "-o", ecc, NULL), 0);
        rsa_got = read_file(rsa);
        ecc_got = read_file(ecc);
        CU_ASSERT_TRUE(same_bytes(rsa_got, e->ek[VROT_ENDORSE_EK_RSA].cert_der));
        CU_ASSERT_TRUE(same_bytes(ecc_got, e->ek[VROT_ENDORSE_EK_ECC].cert_der));
}

static VrotEndorsement *make_eks_ok(Vtpm *v)
{
        g_autoptr(GError) err = NULL;
        VrotEndorsement *e = NULL;

        if (!vrot_endorse_make_eks(v->tcti, &e, &err))
                fprintf(stderr, "%s\n", err->message);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        return e;
}

/*
 * The pool's two halves: vrot_endorse_make_eks() leaves both EKs
 * persistent and no certificate; vrot_endorse_vtpm() with premade then
 * certifies those very keys, which a guest's tpm2_createek derives again.
 */
static void test_endorse_make_eks_then_premade(void)
{
        g_autoptr(Vtpm) v = vtpm_start();
        g_autoptr(VrotEndorsement) made = make_eks_ok(v);
        VrotEndorseParams p = params_with(TEST_URI);
        g_autoptr(VrotEndorsement) e = NULL;
        g_autoptr(VrotEndorsement) again = NULL;
        g_autoptr(GError) err = NULL;
        g_autoptr(X509) x = NULL;

        CU_ASSERT_EQUAL(count_handles(v, PERSISTENT_FIRST), 2);
        CU_ASSERT_FALSE(vrot_endorse_read_certs(v->tcti, &x, NULL, &err));
        CU_ASSERT_TRUE(g_error_matches(err, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_NOT_ENDORSED));
        g_clear_error(&err);
        /* Not a fresh vTPM any more: making again, or endorsing as fresh, is refused. */
        CU_ASSERT_FALSE(vrot_endorse_make_eks(v->tcti, &again, &err));
        CU_ASSERT_TRUE(g_error_matches(err, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_ENDORSED));
        g_clear_error(&err);
        CU_ASSERT_FALSE(vrot_endorse_vtpm(v->tcti, chain.ca_signer, &p, &again, &err));
        CU_ASSERT_TRUE(g_error_matches(err, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_ENDORSED));
        g_clear_error(&err);

        p.premade = TRUE;
        CU_ASSERT_TRUE_FATAL(vrot_endorse_vtpm(v->tcti, chain.ca_signer, &p, &e, &err));
        check_ek(&e->ek[VROT_ENDORSE_EK_RSA], EVP_PKEY_RSA, 2048, 0x81010001, 0x01c00002);
        check_ek(&e->ek[VROT_ENDORSE_EK_ECC], EVP_PKEY_EC, 256, 0x8101000a, 0x01c0000a);
        for (gsize i = 0; i < VROT_ENDORSE_N_EK; i++) {
                CU_ASSERT_EQUAL(EVP_PKEY_eq(e->ek[i].public_key, made->ek[i].public_key), 1);
                CU_ASSERT_TRUE(same_bytes(e->ek[i].tpm_public, made->ek[i].tpm_public));
        }
        assert_createek_matches(v, "rsa", &e->ek[VROT_ENDORSE_EK_RSA]);
        assert_createek_matches(v, "ecc", &e->ek[VROT_ENDORSE_EK_ECC]);
        assert_read_back(v, e);
        CU_ASSERT_FALSE(vrot_endorse_vtpm(v->tcti, chain.ca_signer, &p, &again, &err));
        CU_ASSERT_TRUE(g_error_matches(err, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_ENDORSED));
}

/* premade with one EK asked for: the other is evicted, it has no index. */
static void test_endorse_premade_ecc_only(void)
{
        g_autoptr(Vtpm) v = vtpm_start();
        g_autoptr(VrotEndorsement) made = make_eks_ok(v);
        VrotEndorseParams p = params_with(TEST_URI);
        g_autoptr(VrotEndorsement) e = NULL;
        g_autoptr(GError) err = NULL;
        g_autoptr(X509) rsa = NULL, ecc = NULL;

        p.premade = TRUE;
        p.ek_mask = 1u << VROT_ENDORSE_EK_ECC;
        CU_ASSERT_TRUE_FATAL(vrot_endorse_vtpm(v->tcti, chain.ca_signer, &p, &e, &err));
        CU_ASSERT_PTR_NULL(e->ek[VROT_ENDORSE_EK_RSA].cert_der);
        check_ek(&e->ek[VROT_ENDORSE_EK_ECC], EVP_PKEY_EC, 256, 0x8101000a, 0x01c0000a);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(e->ek[VROT_ENDORSE_EK_ECC].public_key,
                                    made->ek[VROT_ENDORSE_EK_ECC].public_key), 1);
        CU_ASSERT_EQUAL(count_handles(v, PERSISTENT_FIRST), 1);
        CU_ASSERT_TRUE(vrot_endorse_read_certs(v->tcti, NULL, &ecc, &err));
        CU_ASSERT_FALSE(vrot_endorse_read_certs(v->tcti, &rsa, NULL, &err));
        CU_ASSERT_TRUE(g_error_matches(err, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_NOT_ENDORSED));
}

/* premade on a vTPM that is not: refused before anything changes. */
static void test_endorse_premade_refuses_fresh(void)
{
        g_autoptr(Vtpm) v = vtpm_start();
        VrotEndorseParams p = params_with(TEST_URI);
        g_autoptr(VrotEndorsement) e = NULL;
        g_autoptr(GError) err = NULL;

        p.premade = TRUE;
        CU_ASSERT_FALSE(vrot_endorse_vtpm(v->tcti, chain.ca_signer, &p, &e, &err));
        CU_ASSERT_TRUE(g_error_matches(err, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_FAILED));
        CU_ASSERT(err && strstr(err->message, "not a pre-made vTPM"));
        CU_ASSERT_EQUAL(count_handles(v, PERSISTENT_FIRST), 0);
        CU_ASSERT_EQUAL(count_handles(v, 0x01000000u), 0);
}

/* A key at the EK handle that is not of the template is no EK to certify. */
static void test_endorse_matches_template(void)
{
        const TPMT_PUBLIC *rsa = &vrot_tpmpub_ek_rsa_template.publicArea;
        const TPMT_PUBLIC *ecc = &vrot_tpmpub_ek_ecc_template.publicArea;
        TPMT_PUBLIC p;

        CU_ASSERT_TRUE(vrot_endorse_matches_template(rsa, rsa));
        CU_ASSERT_TRUE(vrot_endorse_matches_template(ecc, ecc));
        CU_ASSERT_FALSE(vrot_endorse_matches_template(rsa, ecc));
        p = *rsa;
        p.parameters.rsaDetail.exponent = 65537;        /* 0 means 65537 */
        CU_ASSERT_TRUE(vrot_endorse_matches_template(&p, rsa));
        p.parameters.rsaDetail.exponent = 3;
        CU_ASSERT_FALSE(vrot_endorse_matches_template(&p, rsa));
        p = *rsa;
        p.objectAttributes |= TPMA_OBJECT_NODA;
        CU_ASSERT_FALSE(vrot_endorse_matches_template(&p, rsa));
        p = *rsa;
        p.authPolicy.buffer[0] ^= 1;
        CU_ASSERT_FALSE(vrot_endorse_matches_template(&p, rsa));
        p = *rsa;
        p.parameters.rsaDetail.keyBits = 3072;
        CU_ASSERT_FALSE(vrot_endorse_matches_template(&p, rsa));
        p = *ecc;
        p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P384;
        CU_ASSERT_FALSE(vrot_endorse_matches_template(&p, ecc));
        p = *ecc;
        p.unique.ecc.x.size = 48;
        CU_ASSERT_FALSE(vrot_endorse_matches_template(&p, ecc));
        p = *ecc;
        p.nameAlg = TPM2_ALG_SHA384;
        CU_ASSERT_FALSE(vrot_endorse_matches_template(&p, ecc));
}

/*
 * The longest attestation URI lib/x509 takes (1024 characters): both
 * certificates exceed TPM_PT_NV_BUFFER_MAX and go in two chunks, and still
 * fit libtpms's TPM_PT_NV_INDEX_MAX (2048), so _TOO_LARGE cannot happen
 * with libtpms (test_endorse_check_size covers it).
 */
static void test_endorse_vtpm_chunked(void)
{
        g_autoptr(Vtpm) v = vtpm_start();
        g_autofree gchar *pad = g_strnfill(1024 - strlen("https://h/"), 'a');
        g_autofree gchar *uri = g_strconcat("https://h/", pad, NULL);
        g_autoptr(VrotEndorsement) e = endorse_ok(v, uri);

        for (int i = 0; i < VROT_ENDORSE_N_EK; i++) {
                gsize n = g_bytes_get_size(e->ek[i].cert_der);
                g_autoptr(X509) cert = cert_of(&e->ek[i]);

                printf(" [%s certificate: %zu bytes] ", i ? "ECC" : "RSA", n);
                CU_ASSERT(n > 1024 && n <= 2048);       /* libtpms: 1024, 2048 */
                CU_ASSERT_EQUAL(verify_chain(cert), X509_V_OK);
                assert_nvread_matches(v, &e->ek[i]);
        }
        assert_read_back(v, e);
}

static void test_endorse_vendor_text(void)
{
        static const struct {
                guint32 groups[4];
                gsize n;
                const char *want;       /* NULL: refused */
        } cases[] = {
                { { 0x53572020, 0x2054504d, 0, 0 }, 4, "SW TPM" },      /* libtpms */
                { { 0x322e3000 }, 1, "2.0" },                           /* FAMILY_INDICATOR */
                { { 0x56524f54, 0x2d765450, 0x4d000000, 0 }, 4, "VROT-vTPM" },
                { { 0x41424344, 0x45464748, 0x494a4b4c, 0x4d4e4f50 }, 4, "ABCDEFGHIJKLMNOP" },
                { { 0x20000020, 0x00410000 }, 2, "A" },
                { { 0, 0, 0, 0 }, 4, NULL },                            /* empty */
                { { 0x20202020 }, 1, NULL },                            /* only spaces */
                { { 0x53570a00 }, 1, NULL },                            /* control character */
                { { 0x53d70000 }, 1, NULL },                            /* not ASCII */
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                gchar out[17];
                gboolean ok = vrot_endorse_vendor_text(cases[i].groups, cases[i].n, out);

                CU_ASSERT_EQUAL(ok, cases[i].want != NULL);
                if (ok && cases[i].want)
                        CU_ASSERT_STRING_EQUAL(out, cases[i].want);
        }
}

static void test_endorse_check_size(void)
{
        static const struct {
                gsize len;
                guint32 max;
                gboolean fits;
        } cases[] = {
                { 2048, 2048, TRUE }, { 1, 2048, TRUE }, { 2049, 2048, FALSE },
                { 900, 512, FALSE }, { 0, 0, TRUE },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) err = NULL;

                CU_ASSERT_EQUAL(vrot_endorse_check_size(cases[i].len, cases[i].max, &err),
                                cases[i].fits);
                CU_ASSERT_EQUAL(err == NULL, cases[i].fits);
                if (!cases[i].fits)
                        CU_ASSERT_TRUE(g_error_matches(err, VROT_ENDORSE_ERROR,
                                                       VROT_ENDORSE_ERROR_TOO_LARGE));
        }
}

static void assert_tpm_rc(TSS2_RC rc, TSS2_RC want)
{
        if (rc != want)
                fprintf(stderr, "TPM_RC 0x%x, want 0x%x\n", rc, want);
        CU_ASSERT_EQUAL(rc, want);
}

/* What a guest could try on its vTPM: every write is refused. */
static void test_endorse_vtpm_guest_cannot_overwrite(void)
{
        static const guint32 expect_attrs = VROT_ENDORSE_CERT_NV_ATTRIBUTES | TPMA_NV_WRITTEN |
                                            TPMA_NV_WRITELOCKED;
        g_autoptr(Vtpm) v = vtpm_start();
        g_autoptr(VrotEndorsement) e = endorse_ok(v, TEST_URI);
        g_autofree gchar *junk = tmp_path(v, "junk.der");
        TSS2_TCTI_CONTEXT *tcti = NULL;
        ESYS_CONTEXT *esys = esys_open(v, &tcti);
        TPM2B_MAX_NV_BUFFER data = { .size = 16 };
        TPM2B_NV_PUBLIC *pub = NULL;
        ESYS_TR nv = ESYS_TR_NONE;

        CU_ASSERT_FATAL(Esys_TR_FromTPMPublic(esys, VROT_ENDORSE_RSA_CERT_INDEX, ESYS_TR_NONE,
                                              ESYS_TR_NONE, ESYS_TR_NONE, &nv) == TSS2_RC_SUCCESS);
        CU_ASSERT_FATAL(Esys_NV_ReadPublic(esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                           &pub, NULL) == TSS2_RC_SUCCESS);
        CU_ASSERT_EQUAL(pub->nvPublic.attributes, expect_attrs);
        Esys_Free(pub);
        /*
         * The lock is checked before the authorization (TPM2 Part 4,
         * NvWriteAccessChecks()): every write is TPM_RC_NV_LOCKED, even with
         * the platform authorization a guest may hold.  The index's own
         * authValue may not write at all (no AUTHWRITE).
         */
        assert_tpm_rc(Esys_NV_Write(esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                    ESYS_TR_NONE, &data, 0), TPM_RC_NV_LOCKED);
        assert_tpm_rc(Esys_NV_Write(esys, ESYS_TR_RH_PLATFORM, nv, ESYS_TR_PASSWORD,
                                    ESYS_TR_NONE, ESYS_TR_NONE, &data, 0), TPM_RC_NV_LOCKED);
        assert_tpm_rc(Esys_NV_Write(esys, nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                    &data, 0), TPM_RC_AUTH_UNAVAILABLE);
        esys_close(esys, tcti);
        unit_write_file(junk, "not a certificate", 17);
        CU_ASSERT_NOT_EQUAL(tpm2(v, NULL, "nvwrite", "-C", "o", "0x01c0000a", "-i", junk, NULL), 0);
        CU_ASSERT_NOT_EQUAL(tpm2(v, NULL, "nvwrite", "-C", "p", "0x01c0000a", "-i", junk, NULL), 0);
        /* Only the platform may undefine a PLATFORMCREATE index. */
        CU_ASSERT_NOT_EQUAL(tpm2(v, NULL, "nvundefine", "-C", "o", "0x01c00002", NULL), 0);
        assert_read_back(v, e);
}

static void test_endorse_vtpm_twice_refused(void)
{
        g_autoptr(Vtpm) v = vtpm_start();
        g_autoptr(VrotEndorsement) first = endorse_ok(v, TEST_URI);
        VrotEndorseParams p = params_with(TEST_URI);
        g_autoptr(VrotEndorsement) second = NULL;
        g_autoptr(GError) err = NULL;

        CU_ASSERT_FALSE(vrot_endorse_vtpm(v->tcti, chain.ca_signer, &p, &second, &err));
        CU_ASSERT_PTR_NULL(second);
        CU_ASSERT_TRUE(g_error_matches(err, VROT_ENDORSE_ERROR, VROT_ENDORSE_ERROR_ENDORSED));
        CU_ASSERT(err && strstr(err->message, "EK 0x81010001, NV index 0x01c00002, "
                                                           "EK 0x8101000a, NV index 0x01c0000a"));
        assert_read_back(v, first);
}

/* Any one of the four already there is enough to refuse. */
static void test_endorse_vtpm_partly_endorsed_refused(void)
{
        static const struct {
                const char *plant[6];
                gboolean read_rsa;
                gint read_code;
        } cases[] = {
                /* A foreign index is not taken for a certificate either. */
                { { "nvdefine", "0x01c0000a", "-C", "o", "-s", "32" }, FALSE,
                  VROT_ENDORSE_ERROR_BAD_CERT },
                { { "createek", "-G", "rsa", "-c", "0x81010001" }, TRUE,
                  VROT_ENDORSE_ERROR_NOT_ENDORSED },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                const char *const *a = cases[i].plant;
                g_autoptr(Vtpm) v = vtpm_start();
                VrotEndorseParams p = params_with(TEST_URI);
                g_autoptr(VrotEndorsement) e = NULL;
                g_autoptr(GError) err = NULL;
                g_autoptr(X509) x = NULL;

                CU_ASSERT_EQUAL_FATAL(tpm2(v, NULL, a[0], a[1], a[2], a[3], a[4], a[5], NULL), 0);
                CU_ASSERT_FALSE(vrot_endorse_vtpm(v->tcti, chain.ca_signer, &p, &e, &err));
                CU_ASSERT_TRUE(g_error_matches(err, VROT_ENDORSE_ERROR,
                                               VROT_ENDORSE_ERROR_ENDORSED));
                g_clear_error(&err);
                CU_ASSERT_FALSE(vrot_endorse_read_certs(v->tcti, cases[i].read_rsa ? &x : NULL,
                                                        cases[i].read_rsa ? NULL : &x, &err));
                CU_ASSERT_TRUE(g_error_matches(err, VROT_ENDORSE_ERROR, cases[i].read_code));
                CU_ASSERT_PTR_NULL(x);
        }
}

typedef enum { SIGNER_FAILS, SIGNER_GARBAGE } SignerMode;

static gboolean bad_sign(const guint8 *digest, gsize len, GBytes **ret_der_sig,
                         gpointer user_data, GError **error)
{
        static const guint8 garbage[8] = { 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01 };
        const SignerMode *mode = user_data;

        (void)digest;
        (void)len;
        if (*mode == SIGNER_FAILS) {
                g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_PIPE, "host TPM went away");
                return FALSE;
        }
        *ret_der_sig = g_bytes_new(garbage, sizeof(garbage));
        return TRUE;
}

/* A failing signer changes nothing: the same vTPM endorses fine afterwards. */
static void test_endorse_vtpm_signer_errors(void)
{
        static const struct {
                SignerMode mode;
                GQuark (*domain)(void);
                gint code;
        } cases[] = {
                { SIGNER_FAILS, g_file_error_quark, G_FILE_ERROR_PIPE },
                { SIGNER_GARBAGE, vrot_x509_error_quark, VROT_X509_ERROR_BAD_SIGNATURE },
        };
        g_autoptr(Vtpm) v = vtpm_start();
        VrotEndorseParams p = params_with(TEST_URI);

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) err = NULL;
                g_autoptr(VrotEndorsement) e = NULL;
                g_autoptr(X509) x = NULL;
                g_autoptr(VrotX509Signer) s = vrot_x509_signer_new(chain.ca, bad_sign,
                                                                   (gpointer)&cases[i].mode,
                                                                   NULL, &err);

                CU_ASSERT_PTR_NOT_NULL_FATAL(s);
                CU_ASSERT_FALSE(vrot_endorse_vtpm(v->tcti, s, &p, &e, &err));
                CU_ASSERT_PTR_NULL(e);
                CU_ASSERT_TRUE(g_error_matches(err, cases[i].domain(), cases[i].code));
                CU_ASSERT(err && strstr(err->message, "certifying the RSA EK: "));
                CU_ASSERT(err && strstr(err->message, v->tcti));
                g_clear_error(&err);
                CU_ASSERT_FALSE(vrot_endorse_read_certs(v->tcti, &x, NULL, &err));
                CU_ASSERT_TRUE(g_error_matches(err, VROT_ENDORSE_ERROR,
                                               VROT_ENDORSE_ERROR_NOT_ENDORSED));
                /* Nothing persisted, no transient object left behind. */
                CU_ASSERT_EQUAL(count_handles(v, PERSISTENT_FIRST), 0);
                CU_ASSERT_EQUAL(count_handles(v, TRANSIENT_FIRST), 0);
        }
        {
                g_autoptr(VrotEndorsement) e = endorse_ok(v, TEST_URI);

                assert_read_back(v, e);
                CU_ASSERT_EQUAL(count_handles(v, TRANSIENT_FIRST), 0);
        }
}

/* Parameters lib/x509 refuses: nothing changes. */
static void test_endorse_vtpm_bad_params(void)
{
        g_autofree gchar *pad = g_strnfill(1025, 'a');
        g_autofree gchar *long_uri = g_strconcat("https://h/", pad, NULL);
        const struct {
                const char *uri;
                GQuark domain;
                gint code;
        } cases[] = {
                { "not a uri", VROT_X509_ERROR, VROT_X509_ERROR_INVALID },
                { "", VROT_X509_ERROR, VROT_X509_ERROR_INVALID },
                { long_uri, VROT_X509_ERROR, VROT_X509_ERROR_INVALID },
        };
        g_autoptr(Vtpm) v = vtpm_start();

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                VrotEndorseParams p = params_with(cases[i].uri);
                g_autoptr(VrotEndorsement) e = NULL;
                g_autoptr(GError) err = NULL;

                CU_ASSERT_FALSE(vrot_endorse_vtpm(v->tcti, chain.ca_signer, &p, &e, &err));
                if (!g_error_matches(err, cases[i].domain, cases[i].code))
                        fprintf(stderr, "case %zu: %s\n", i, err ? err->message : "no error");
                CU_ASSERT_TRUE(g_error_matches(err, cases[i].domain, cases[i].code));
                CU_ASSERT_EQUAL(count_handles(v, PERSISTENT_FIRST), 0);
        }
}

/* Unreachable or unknown vTPMs; the process survives a dead peer (SIGPIPE). */
static void test_endorse_vtpm_unreachable(void)
{
        g_autoptr(Vtpm) dead = vtpm_start();
        const char *cases[] = {
                "swtpm:path=/nonexistent/tpm.sock", "no-such-tcti", dead->tcti,
        };
        VrotEndorseParams p = params_with(TEST_URI);
        int status;

        kill(dead->pid, SIGKILL);
        CU_ASSERT_EQUAL(waitpid(dead->pid, &status, 0), dead->pid);
        dead->pid = 0;
        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(VrotEndorsement) e = NULL;
                g_autoptr(GError) err = NULL;
                g_autoptr(X509) rsa = NULL;

                CU_ASSERT_FALSE(vrot_endorse_vtpm(cases[i], chain.ca_signer, &p, &e, &err));
                if (!g_error_matches(err, VROT_VTPM_ERROR, VROT_VTPM_ERROR_IO))
                        fprintf(stderr, "case %zu: %s\n", i, err ? err->message : "no error");
                CU_ASSERT_TRUE(g_error_matches(err, VROT_VTPM_ERROR, VROT_VTPM_ERROR_IO));
                CU_ASSERT_PTR_NULL(e);
                g_clear_error(&err);
                CU_ASSERT_FALSE(vrot_endorse_read_certs(cases[i], &rsa, NULL, &err));
                CU_ASSERT_TRUE(g_error_matches(err, VROT_VTPM_ERROR, VROT_VTPM_ERROR_IO));
                CU_ASSERT_PTR_NULL(rsa);
        }
}

/*
 * A worker started without startup-clear (as the fork client starts them):
 * endorsing starts the TPM; reading certificates back never does.
 */
static void test_endorse_vtpm_unstarted(void)
{
        g_autoptr(Vtpm) v = vtpm_start_flags("not-need-init");
        g_autoptr(Vtpm) w = vtpm_start_flags("not-need-init");
        g_autoptr(VrotEndorsement) e = NULL;
        g_autoptr(GError) err = NULL;
        g_autoptr(X509) rsa = NULL;

        CU_ASSERT_FALSE(vrot_endorse_read_certs(w->tcti, &rsa, NULL, &err));
        CU_ASSERT_TRUE(g_error_matches(err, VROT_VTPM_ERROR, VROT_VTPM_ERROR_TPM));
        CU_ASSERT(err && strstr(err->message, "0x100"));  /* TPM_RC_INITIALIZE */
        e = endorse_ok(v, TEST_URI);
        assert_read_back(v, e);
}

/* ---- timings ------------------------------------------------------------------------------ */

static int cmp_gint64(const void *a, const void *b)
{
        gint64 x = *(const gint64 *)a, y = *(const gint64 *)b;

        return (x > y) - (x < y);
}

static void report(const char *name, gint64 *v, gsize n)
{
        qsort(v, n, sizeof(*v), cmp_gint64);
        printf("    %-11s median %8.2f ms  p90 %8.2f ms  max %8.2f ms\n", name,
               v[n / 2] / 1000.0, v[n * 9 / 10] / 1000.0, v[n - 1] / 1000.0);
}

/* Waits until the fresh worker answers (it manufactures its state first). */
static void wait_answering(Vtpm *v)
{
        TSS2_TCTI_CONTEXT *tcti = NULL;
        ESYS_CONTEXT *esys = esys_open(v, &tcti);
        TPMS_CAPABILITY_DATA *cap = NULL;

        CU_ASSERT_FATAL(Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                           TPM2_CAP_HANDLES, PERSISTENT_FIRST, 1, NULL,
                                           &cap) == TSS2_RC_SUCCESS);
        Esys_Free(cap);
        esys_close(esys, tcti);
}

/* @runs fresh workers (exec'd, or from @fs), each endorsed once it answers. */
static void time_runs(const char *what, VrotForkServer *fs, gsize runs)
{
        const gsize up = VROT_ENDORSE_N_STEPS, all = VROT_ENDORSE_N_STEPS + 1;
        g_autofree gint64 *t = g_new0(gint64, (VROT_ENDORSE_N_STEPS + 2) * runs);

        for (gsize r = 0; r < runs; r++) {
                gint64 start = g_get_monotonic_time();
                g_autoptr(Vtpm) v = fs ? vtpm_start_forked(fs) : vtpm_start();
                g_autoptr(VrotEndorsement) e = NULL;

                wait_answering(v);
                t[up * runs + r] = g_get_monotonic_time() - start;
                start = g_get_monotonic_time();
                e = endorse_ok(v, TEST_URI);
                t[all * runs + r] = g_get_monotonic_time() - start;
                for (gsize s = 0; s < VROT_ENDORSE_N_STEPS; s++)
                        t[s * runs + r] = e->step_usec[s];
        }
        printf("\n  %zu fresh vTPMs, %s, software CA signer:\n", runs, what);
        report("worker-up", t + up * runs, runs);
        for (gsize s = 0; s < VROT_ENDORSE_N_STEPS; s++)
                report(vrot_endorse_step_name(s), t + s * runs, runs);
        report("endorse", t + all * runs, runs);
}

/*
 * Prints the times of VROT_ENDORSE_RUNS (default 3) endorsements of exec'd
 * workers and as many of workers from a fork server, as vrotd starts them
 * ("worker-up": spawn to first answer; the worker manufactures its state
 * before it answers).
 */
static void test_endorse_vtpm_timings(void)
{
        const char *env = g_getenv("VROT_ENDORSE_RUNS");
        gsize runs = MAX(env ? (gsize)g_ascii_strtoull(env, NULL, 10) : 3, 1);

        time_runs("exec'd", NULL, runs);
        time_runs("fork server", fork_server, runs);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_endorse_vtpm_certs_verify),
                UNIT_CASE(test_endorse_vtpm_tpm2_tools),
                UNIT_CASE(test_endorse_vtpm_chunked),
                UNIT_CASE(test_endorse_vtpm_guest_cannot_overwrite),
                UNIT_CASE(test_endorse_vtpm_twice_refused),
                UNIT_CASE(test_endorse_make_eks_then_premade),
                UNIT_CASE(test_endorse_premade_ecc_only),
                UNIT_CASE(test_endorse_premade_refuses_fresh),
                UNIT_CASE(test_endorse_matches_template),
                UNIT_CASE(test_endorse_vtpm_partly_endorsed_refused),
                UNIT_CASE(test_endorse_vtpm_signer_errors),
                UNIT_CASE(test_endorse_vtpm_bad_params),
                UNIT_CASE(test_endorse_vtpm_unreachable),
                UNIT_CASE(test_endorse_vtpm_unstarted),
                UNIT_CASE(test_endorse_vendor_text),
                UNIT_CASE(test_endorse_check_size),
                UNIT_CASE(test_endorse_vtpm_timings),
        };
        g_autofree gchar *sock = NULL, *log = NULL;
        g_autoptr(GError) err = NULL;
        int ret;

        vtpm_binary = g_getenv("VROT_VTPM");
        if (!vtpm_binary) {
                fprintf(stderr, "VROT_VTPM must name the vrot-vtpm binary (meson sets it)\n");
                return 1;
        }
        /* Workers whose fork server is gone are re-parented to us, as to vrotd. */
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        /* tpm2-tss's own error lines: the cases check the GErrors instead. */
        g_setenv("TSS2_LOG", "all+none", TRUE);
        chain_init();
        sock = g_build_filename(unit_tmpdir(), "forkd.sock", NULL);
        log = g_build_filename(unit_tmpdir(), "forkd.log", NULL);
        fork_server = vrot_fork_server_start(vtpm_binary, sock, log, &err);
        g_assert_no_error(err);
        forked_pids = g_array_new(FALSE, FALSE, sizeof(GPid));
        ret = UNIT_RUN("endorse", cases);
        for (guint i = 0; i < forked_pids->len; i++)
                kill(g_array_index(forked_pids, GPid, i), SIGKILL);
        g_array_unref(forked_pids);
        vrot_fork_server_free(fork_server);
        chain_clear();
        return ret;
}
