/* SPDX-License-Identifier: BSD-3-Clause */
/* The --dev simulated host TPM: real swtpm_setup, swtpm_localca and swtpm. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "devtpm.h"
#include "unit.h"

/* Started by a case, stopped by the next case or at exit (by PID). */
static VrotDevTpm *running;

static void stop_running(void)
{
        g_clear_pointer(&running, vrot_dev_tpm_free);
}

static gchar *path(const gchar *name)
{
        return g_build_filename(unit_tmpdir(), name, NULL);
}

static gboolean alive(GPid pid)
{
        return pid > 0 && kill(pid, 0) == 0;
}

static gboolean accepts(const char *sock)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        gboolean ok;

        g_strlcpy(sa.sun_path, sock, sizeof(sa.sun_path));
        ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        if (fd >= 0)
                close(fd);
        return ok;
}

static X509 *cert_of(GBytes *der)
{
        const unsigned char *p = g_bytes_get_data(der, NULL);

        return d2i_X509(NULL, &p, (long)g_bytes_get_size(der));
}

/* Verifies @leaf up to the dev TPM's root through its issuer. */
static int verify_chain(const VrotDevTpm *tpm, GBytes *leaf_der)
{
        X509 *root = cert_of(vrot_dev_tpm_root_cert(tpm));
        X509 *issuer = cert_of(vrot_dev_tpm_issuer_cert(tpm));
        X509 *leaf = cert_of(leaf_der);
        X509_STORE *store = X509_STORE_new();
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        STACK_OF(X509) *untrusted = sk_X509_new_null();
        int ok;

        CU_ASSERT_FATAL(root && issuer && leaf && store && ctx && untrusted);
        X509_STORE_add_cert(store, root);
        sk_X509_push(untrusted, issuer);
        X509_STORE_CTX_init(ctx, store, leaf, untrusted);
        ok = X509_verify_cert(ctx);
        if (ok != 1)
                fprintf(stderr, "chain: %s\n",
                        X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        X509_STORE_CTX_free(ctx);
        sk_X509_free(untrusted);
        X509_STORE_free(store);
        X509_free(root);
        X509_free(issuer);
        X509_free(leaf);
        return ok;
}

static void assert_ek_cert(const VrotDevTpm *tpm, VrotDevTpmEk which, int type, int bits)
{
        X509 *cert = cert_of(vrot_dev_tpm_ek_cert(tpm, which));
        EVP_PKEY *key;

        CU_ASSERT_FATAL(cert != NULL);
        key = X509_get0_pubkey(cert);
        CU_ASSERT_FATAL(key != NULL);
        CU_ASSERT_EQUAL(EVP_PKEY_get_base_id(key), type);
        CU_ASSERT_EQUAL(EVP_PKEY_get_bits(key), bits);
        X509_free(cert);
        CU_ASSERT_EQUAL(verify_chain(tpm, vrot_dev_tpm_ek_cert(tpm, which)), 1);
}

static void test_devtpm_start_manufactures(void)
{
        g_autofree gchar *dir = path("host-tpm");
        g_autofree gchar *sock = g_build_filename(dir, "tpm.sock", NULL);
        g_autofree gchar *tcti = g_strdup_printf("swtpm:path=%s", sock);
        g_autofree gchar *fd3 = NULL, *lock = NULL;
        g_autoptr(GError) err = NULL;
        struct stat st;
        gint64 t0 = g_get_monotonic_time();

        running = vrot_dev_tpm_start(dir, &err);
        CU_ASSERT_PTR_NULL(err);
        CU_ASSERT_FATAL(running != NULL);
        fprintf(stderr, "\n  first start (swtpm_setup + swtpm): %.0f ms\n",
                (g_get_monotonic_time() - t0) / 1000.0);
        CU_ASSERT_TRUE(vrot_dev_tpm_manufactured(running));
        CU_ASSERT_TRUE(alive(vrot_dev_tpm_pid(running)));
        /* swtpm itself holds the directory lock, as its descriptor 3. */
        fd3 = g_strdup_printf("/proc/%d/fd/3", vrot_dev_tpm_pid(running));
        lock = g_file_read_link(fd3, NULL);
        CU_ASSERT(lock && g_str_has_suffix(lock, "/devtpm.lock"));
        CU_ASSERT_STRING_EQUAL(vrot_dev_tpm_tcti(running), tcti);
        CU_ASSERT_STRING_EQUAL(vrot_dev_tpm_dir(running), dir);
        CU_ASSERT(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
        assert_ek_cert(running, VROT_DEV_TPM_EK_RSA2048, EVP_PKEY_RSA, 2048);
        assert_ek_cert(running, VROT_DEV_TPM_EK_ECC_P384, EVP_PKEY_EC, 384);
}

/* A second start finds the TPM: same certificates, no swtpm_setup. */
static void test_devtpm_restart_reuses_state(void)
{
        g_autofree gchar *dir = path("host-tpm");
        g_autoptr(GBytes) ek = NULL, root = NULL;
        g_autoptr(GError) err = NULL;
        GPid old;
        gint64 t0;

        CU_ASSERT_FATAL(running != NULL);
        ek = g_bytes_ref(vrot_dev_tpm_ek_cert(running, VROT_DEV_TPM_EK_RSA2048));
        root = g_bytes_ref(vrot_dev_tpm_root_cert(running));
        old = vrot_dev_tpm_pid(running);
        vrot_dev_tpm_stop(running);
        CU_ASSERT_EQUAL(vrot_dev_tpm_pid(running), 0);
        CU_ASSERT_FALSE(alive(old));
        vrot_dev_tpm_stop(running);             /* idempotent */
        stop_running();

        t0 = g_get_monotonic_time();
        running = vrot_dev_tpm_start(dir, &err);
        CU_ASSERT_FATAL(running != NULL);
        fprintf(stderr, "\n  restart (swtpm only): %.0f ms\n",
                (g_get_monotonic_time() - t0) / 1000.0);
        CU_ASSERT_FALSE(vrot_dev_tpm_manufactured(running));
        CU_ASSERT_TRUE(g_bytes_equal(ek, vrot_dev_tpm_ek_cert(running, VROT_DEV_TPM_EK_RSA2048)));
        CU_ASSERT_TRUE(g_bytes_equal(root, vrot_dev_tpm_root_cert(running)));
}

/* A second simulated TPM on the same directory is refused, and the first
 * keeps its socket (swtpm alone would replace it before failing). */
static void test_devtpm_start_twice_refused(void)
{
        g_autofree gchar *dir = path("host-tpm");
        g_autoptr(GError) err = NULL;
        VrotDevTpm *second;

        CU_ASSERT_FATAL(running != NULL);
        second = vrot_dev_tpm_start(dir, &err);
        CU_ASSERT_PTR_NULL(second);
        vrot_dev_tpm_free(second);
        CU_ASSERT_TRUE(g_error_matches(err, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_BUSY));
        /* The first one is unharmed. */
        CU_ASSERT_TRUE(alive(vrot_dev_tpm_pid(running)));
        CU_ASSERT_TRUE(accepts(vrot_dev_tpm_tcti(running) + strlen("swtpm:path=")));
}

/* No "manufactured" marker (setup interrupted): swtpm_setup runs again
 * over the old state (--overwrite), keeping the local CA. */
static void test_devtpm_unfinished_setup_redone(void)
{
        g_autofree gchar *dir = path("host-tpm");
        g_autofree gchar *marker = g_build_filename(dir, "manufactured", NULL);
        g_autoptr(GBytes) ek = NULL, root = NULL;
        g_autoptr(GError) err = NULL;

        CU_ASSERT_FATAL(running != NULL);
        ek = g_bytes_ref(vrot_dev_tpm_ek_cert(running, VROT_DEV_TPM_EK_RSA2048));
        root = g_bytes_ref(vrot_dev_tpm_root_cert(running));
        stop_running();
        CU_ASSERT_FATAL(unlink(marker) == 0);
        running = vrot_dev_tpm_start(dir, &err);
        CU_ASSERT_PTR_NULL(err);
        CU_ASSERT_FATAL(running != NULL);
        CU_ASSERT_TRUE(vrot_dev_tpm_manufactured(running));
        CU_ASSERT_TRUE(g_file_test(marker, G_FILE_TEST_EXISTS));
        CU_ASSERT_FALSE(g_bytes_equal(ek, vrot_dev_tpm_ek_cert(running, VROT_DEV_TPM_EK_RSA2048)));
        CU_ASSERT_TRUE(g_bytes_equal(root, vrot_dev_tpm_root_cert(running)));
        CU_ASSERT_EQUAL(verify_chain(running, vrot_dev_tpm_ek_cert(running,
                                                                   VROT_DEV_TPM_EK_RSA2048)), 1);
}

/* Stop reaps a swtpm that was killed behind its back, without waiting. */
static void test_devtpm_stop_after_kill(void)
{
        GPid pid;
        gint64 t0;

        CU_ASSERT_FATAL(running != NULL);
        pid = vrot_dev_tpm_pid(running);
        CU_ASSERT_FATAL(kill(pid, SIGKILL) == 0);
        t0 = g_get_monotonic_time();
        vrot_dev_tpm_stop(running);
        CU_ASSERT(g_get_monotonic_time() - t0 < G_USEC_PER_SEC);
        CU_ASSERT_EQUAL(vrot_dev_tpm_pid(running), 0);
        CU_ASSERT(waitpid(pid, NULL, WNOHANG) < 0 && errno == ECHILD);
        stop_running();
}

/* A fake swtpm_setup that fails: its output comes back in the error. */
static void test_devtpm_setup_failure_reported(void)
{
        g_autofree gchar *bin = path("fake-bin");
        g_autofree gchar *fake = g_build_filename(bin, "swtpm_setup", NULL);
        g_autofree gchar *dir = path("failing-tpm");
        g_autofree gchar *marker = g_build_filename(dir, "manufactured", NULL);
        g_autofree gchar *old_path = g_strdup(g_getenv("PATH"));
        g_autofree gchar *new_path = g_strdup_printf("%s:%s", bin, old_path);
        static const char script[] = "#!/bin/sh\necho 'no TPM for you' >&2\nexit 3\n";
        g_autoptr(GError) err = NULL;
        VrotDevTpm *tpm;

        CU_ASSERT_FATAL(g_mkdir_with_parents(bin, 0700) == 0);
        unit_write_file(fake, script, strlen(script));
        CU_ASSERT_FATAL(chmod(fake, 0700) == 0);
        g_setenv("PATH", new_path, TRUE);
        tpm = vrot_dev_tpm_start(dir, &err);
        g_setenv("PATH", old_path, TRUE);
        CU_ASSERT_PTR_NULL(tpm);
        vrot_dev_tpm_free(tpm);
        CU_ASSERT_TRUE(g_error_matches(err, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_SETUP));
        if (err) {
                CU_ASSERT_PTR_NOT_NULL(strstr(err->message, "exit status 3"));
                CU_ASSERT_PTR_NOT_NULL(strstr(err->message, "no TPM for you"));
        }
        CU_ASSERT_FALSE(g_file_test(marker, G_FILE_TEST_EXISTS));
}

typedef struct BadCase {
        const char *what;
        const char *dir;        /* relative to the temp dir */
        const char *path_env;   /* PATH during the call, NULL: unchanged */
        VrotDevTpmError code;
} BadCase;

static void test_devtpm_start_bad_input(void)
{
        static const BadCase cases[] = {
                { "below a regular file", "a-file/tpm", NULL, VROT_DEV_TPM_ERROR_FAILED },
                { "socket path too long",
                  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                  NULL, VROT_DEV_TPM_ERROR_FAILED },
                { "comma in the name", "a,b", NULL, VROT_DEV_TPM_ERROR_FAILED },
                { "swtpm tools not installed", "no-tools", "/nonexistent",
                  VROT_DEV_TPM_ERROR_NOT_INSTALLED },
        };
        g_autofree gchar *file = path("a-file");
        g_autofree gchar *old_path = g_strdup(g_getenv("PATH"));

        unit_write_file(file, "x", 1);
        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree gchar *dir = path(cases[i].dir);
                g_autoptr(GError) err = NULL;
                VrotDevTpm *tpm;

                if (cases[i].path_env)
                        g_setenv("PATH", cases[i].path_env, TRUE);
                tpm = vrot_dev_tpm_start(dir, &err);
                g_setenv("PATH", old_path, TRUE);
                CU_ASSERT_PTR_NULL(tpm);
                vrot_dev_tpm_free(tpm);
                if (!g_error_matches(err, VROT_DEV_TPM_ERROR, cases[i].code))
                        fprintf(stderr, "case '%s': %s\n", cases[i].what,
                                err ? err->message : "no error");
                CU_ASSERT_TRUE(g_error_matches(err, VROT_DEV_TPM_ERROR, cases[i].code));
        }
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_devtpm_start_manufactures),
                UNIT_CASE(test_devtpm_restart_reuses_state),
                UNIT_CASE(test_devtpm_start_twice_refused),
                UNIT_CASE(test_devtpm_unfinished_setup_redone),
                UNIT_CASE(test_devtpm_stop_after_kill),
                UNIT_CASE(test_devtpm_setup_failure_reported),
                UNIT_CASE(test_devtpm_start_bad_input),
        };

        unit_tmpdir();
        /* Runs before the temp dir is removed (atexit is LIFO). */
        atexit(stop_running);
        return UNIT_RUN("devtpm", cases);
}
