/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "autoptr.h"
#include "devtpm.h"

G_DEFINE_QUARK(vrot-dev-tpm-error-quark, vrot_dev_tpm_error)

#define SETUP_TIMEOUT_US (120 * G_USEC_PER_SEC)
#define LISTEN_TIMEOUT_US (10 * G_USEC_PER_SEC)
#define STOP_TIMEOUT_US (5 * G_USEC_PER_SEC)
#define POLL_US 2000
#define LOG_TAIL_BYTES 600

/* Exit codes of the reaper process (run_reaped), beside swtpm_setup's own. */
#define EXIT_REAPER_FAILED 125
#define EXIT_EXEC_FAILED 127

struct VrotDevTpm {
        gchar *dir;
        gchar *sock;
        gchar *tcti;
        GPid pid;
        int lock_fd;            /* flock()ed, shared with the swtpm child */
        gboolean manufactured;
        GBytes *ek_cert[2];
        GBytes *root_cert;
        GBytes *issuer_cert;
};

static const char *const ek_cert_files[] = {
        [VROT_DEV_TPM_EK_RSA2048] = "ek-rsa2048.crt",
        [VROT_DEV_TPM_EK_ECC_P384] = "ek-secp384r1.crt",
};

static gchar *path_in(const VrotDevTpm *self, const char *name)
{
        return g_build_filename(self->dir, name, NULL);
}

/* The last few lines of a log file, for an error message ("" if none). */
static gchar *log_tail(const char *path)
{
        g_autofree gchar *text = NULL;
        gsize len = 0;
        const gchar *start;

        if (!g_file_get_contents(path, &text, &len, NULL) || len == 0)
                return g_strdup("(no output)");
        start = len > LOG_TAIL_BYTES ? text + len - LOG_TAIL_BYTES : text;
        if (start != text && strchr(start, '\n'))
                start = strchr(start, '\n') + 1;
        return g_strchomp(g_strdup(start));
}

static gchar *describe_status(int status)
{
        if (WIFEXITED(status))
                return g_strdup_printf("exit status %d", WEXITSTATUS(status));
        if (WIFSIGNALED(status))
                return g_strdup_printf("killed by signal %d", WTERMSIG(status));
        return g_strdup_printf("wait status 0x%x", (unsigned)status);
}

/* Looks @name up in PATH; the message says what is missing. */
static gchar *find_program(const char *name, GError **error)
{
        gchar *p = g_find_program_in_path(name);

        if (!p)
                g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_NOT_INSTALLED,
                            "%s not found in PATH (Debian package swtpm-tools / swtpm)", name);
        return p;
}

/*
 * The configuration swtpm_setup and swtpm_localca read.  Both accept
 * explicit paths (--config, create_certs_tool_config/_options), so nothing
 * under /etc or $HOME is read or written.  No CA password: this CA only
 * exists for --dev.
 */
static gboolean write_configs(const VrotDevTpm *self, const char *localca_prog, GError **error)
{
        g_autofree gchar *ca = path_in(self, "localca");
        g_autofree gchar *setup_conf = path_in(self, "swtpm_setup.conf");
        g_autofree gchar *ca_conf = path_in(self, "swtpm-localca.conf");
        g_autofree gchar *ca_opts = path_in(self, "swtpm-localca.options");
        g_autofree gchar *setup_text = NULL, *ca_text = NULL;
        static const char opts_text[] =
                "--platform-manufacturer vrot\n"
                "--platform-version 2.1\n"
                "--platform-model vrot-dev-host\n";

        setup_text = g_strdup_printf("create_certs_tool = %s\n"
                                     "create_certs_tool_config = %s\n"
                                     "create_certs_tool_options = %s\n"
                                     "active_pcr_banks = sha256\n",
                                     localca_prog, ca_conf, ca_opts);
        ca_text = g_strdup_printf("statedir = %s\n"
                                  "signingkey = %s/signkey.pem\n"
                                  "issuercert = %s/issuercert.pem\n"
                                  "certserial = %s/certserial\n",
                                  ca, ca, ca, ca);
        if (g_mkdir_with_parents(ca, 0700) < 0) {
                g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_FAILED,
                            "%s: %s", ca, g_strerror(errno));
                return FALSE;
        }
        if (!g_file_set_contents(setup_conf, setup_text, -1, error) ||
            !g_file_set_contents(ca_conf, ca_text, -1, error) ||
            !g_file_set_contents(ca_opts, opts_text, -1, error))
                return FALSE;
        return TRUE;
}

/* dup2() that also works when @from is @to (the copy must not be CLOEXEC). */
static int move_fd(int from, int to)
{
        if (from == to)
                return fcntl(to, F_SETFD, 0);
        return dup2(from, to) < 0 ? -1 : 0;
}

/*
 * In a forked child, possibly of a threaded parent: only async-signal-safe
 * calls until execv().  stdin from /dev/null, stdout and stderr to
 * @log_fd, @keep_fd (if >= 0) as descriptor 3, every other descriptor
 * closed, no signal blocked.
 */
static void G_GNUC_NORETURN exec_child(const char *prog, char *const argv[], int null_fd,
                                       int log_fd, int keep_fd)
{
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        sigset_t none;

        /* A daemon may ignore SIGPIPE or SIGCHLD; swtpm_setup needs waitpid(). */
        sigaction(SIGCHLD, &dfl, NULL);
        sigaction(SIGPIPE, &dfl, NULL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* Our descriptors are >= 3 (0-2 are open), so no copy clobbers a source. */
        if (move_fd(null_fd, STDIN_FILENO) < 0 || move_fd(log_fd, STDOUT_FILENO) < 0 ||
            move_fd(log_fd, STDERR_FILENO) < 0 || (keep_fd >= 0 && move_fd(keep_fd, 3) < 0))
                _exit(EXIT_EXEC_FAILED);
        close_range(keep_fd >= 0 ? 4 : 3, ~0U, 0);
        execv(prog, argv);
        _exit(EXIT_EXEC_FAILED);
}

/*
 * The reaper: a child subreaper that runs @prog and reaps every process
 * that ends below it at once, so that swtpm_setup never waits for a
 * zombie swtpm.  It leaves with @prog's exit code (128 + signal number
 * when killed).  Async-signal-safe only, like exec_child().
 */
static void G_GNUC_NORETURN reaper_main(const char *prog, char *const argv[], int null_fd,
                                        int log_fd)
{
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        pid_t child, p;
        int st, status = 0;

        sigaction(SIGCHLD, &dfl, NULL);         /* SIG_IGN would reap for us */
        setpgid(0, 0);          /* one group: a timeout kills all of it */
        if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
                _exit(EXIT_REAPER_FAILED);
        child = fork();
        if (child < 0)
                _exit(EXIT_REAPER_FAILED);
        if (child == 0)
                exec_child(prog, argv, null_fd, log_fd, -1);
        for (;;) {
                p = waitpid(-1, &st, 0);
                if (p < 0 && errno == EINTR)
                        continue;
                if (p < 0)
                        _exit(EXIT_REAPER_FAILED);
                if (p == child) {
                        status = st;
                        break;
                }
        }
        while (waitpid(-1, &st, WNOHANG) > 0)
                ;
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

/* Waits for @pid until @deadline (monotonic µs); TRUE with its status. */
static gboolean wait_until(GPid pid, gint64 deadline, int *ret_status)
{
        int st;

        for (;;) {
                pid_t r = waitpid(pid, &st, WNOHANG);

                if (r == pid) {
                        *ret_status = st;
                        return TRUE;
                }
                if (r < 0 && errno != EINTR) {
                        *ret_status = 0;        /* reaped by someone else */
                        return TRUE;
                }
                if (g_get_monotonic_time() > deadline)
                        return FALSE;
                g_usleep(POLL_US);
        }
}

/* stdin and stdout/stderr of a child: /dev/null and @log_path (truncated). */
static gboolean open_child_fds(const char *log_path, int *ret_null_fd, int *ret_log_fd,
                               GError **error)
{
        int null_fd, log_fd;

        log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (log_fd < 0) {
                g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_FAILED,
                            "%s: %s", log_path, g_strerror(errno));
                return FALSE;
        }
        null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd < 0) {
                g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_FAILED,
                            "/dev/null: %s", g_strerror(errno));
                close(log_fd);
                return FALSE;
        }
        *ret_null_fd = null_fd;
        *ret_log_fd = log_fd;
        return TRUE;
}

/* Waits for the reaper @pid running @prog; TRUE when @prog exited 0. */
static gboolean finish_reaped(pid_t pid, const char *prog, const char *log_path,
                              GError **error)
{
        g_autofree gchar *how = NULL, *tail = NULL;
        int status;

        if (!wait_until(pid, g_get_monotonic_time() + SETUP_TIMEOUT_US, &status)) {
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
                g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_TIMEOUT,
                            "%s did not finish in %d s", prog,
                            (int)(SETUP_TIMEOUT_US / G_USEC_PER_SEC));
                return FALSE;
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return TRUE;
        how = describe_status(status);
        tail = log_tail(log_path);
        g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_SETUP,
                    "%s failed (%s%s); %s ends with:\n%s", prog, how,
                    WIFEXITED(status) && WEXITSTATUS(status) == EXIT_EXEC_FAILED ?
                    ", could not execute" : "", log_path, tail);
        return FALSE;
}

/* Runs argv (argv[0] an absolute path) under the reaper, output to @log_path. */
static gboolean run_reaped(char *const argv[], const char *log_path, GError **error)
{
        int null_fd, log_fd, e;
        pid_t pid;

        if (!open_child_fds(log_path, &null_fd, &log_fd, error))
                return FALSE;
        pid = fork();
        if (pid == 0)
                reaper_main(argv[0], argv, null_fd, log_fd);
        e = errno;
        close(null_fd);
        close(log_fd);
        if (pid < 0) {
                g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_FAILED,
                            "fork: %s", g_strerror(e));
                return FALSE;
        }
        return finish_reaped(pid, argv[0], log_path, error);
}

static gboolean read_file(const VrotDevTpm *self, const char *name, GBytes **ret, GError **error)
{
        g_autofree gchar *p = path_in(self, name);
        gchar *data;
        gsize len;

        if (!g_file_get_contents(p, &data, &len, error))
                return FALSE;
        *ret = g_bytes_new_take(data, len);
        return TRUE;
}

/* Reads a PEM certificate and returns its DER encoding. */
static gboolean read_pem_cert(const VrotDevTpm *self, const char *name, GBytes **ret,
                              GError **error)
{
        g_autoptr(GBytes) pem = NULL;
        g_autoptr(X509) cert = NULL;
        g_autoptr(BIO) bio = NULL;
        guint8 *der = NULL;
        int len;

        if (!read_file(self, name, &pem, error))
                return FALSE;
        bio = BIO_new_mem_buf(g_bytes_get_data(pem, NULL), (int)g_bytes_get_size(pem));
        if (bio)
                cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        len = cert ? i2d_X509(cert, &der) : -1;
        ERR_clear_error();
        if (len <= 0) {
                g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_FAILED,
                            "%s/%s: not a PEM certificate", self->dir, name);
                return FALSE;
        }
        *ret = g_bytes_new(der, (gsize)len);
        OPENSSL_free(der);
        return TRUE;
}

static gboolean load_certs(VrotDevTpm *self, GError **error)
{
        for (guint i = 0; i < G_N_ELEMENTS(ek_cert_files); i++) {
                g_autofree gchar *name = g_build_filename("ek-certs", ek_cert_files[i], NULL);

                if (!read_file(self, name, &self->ek_cert[i], error))
                        return FALSE;
        }
        return read_pem_cert(self, "localca/swtpm-localca-rootca-cert.pem",
                             &self->root_cert, error) &&
               read_pem_cert(self, "localca/issuercert.pem", &self->issuer_cert, error);
}

/* First start: swtpm_setup with swtpm_localca certificates. */
static gboolean manufacture(VrotDevTpm *self, gboolean overwrite, GError **error)
{
        g_autofree gchar *setup = NULL, *localca = NULL;
        g_autofree gchar *conf = path_in(self, "swtpm_setup.conf");
        g_autofree gchar *ekdir = path_in(self, "ek-certs");
        g_autofree gchar *log = path_in(self, "swtpm_setup.log");
        g_autofree gchar *marker = path_in(self, "manufactured");
        const char *argv[] = {
                NULL, "--tpm2", "--tpmstate", self->dir,
                "--create-ek-cert", "--create-platform-cert", "--lock-nvram",
                "--config", conf, "--write-ek-cert-files", ekdir,
                overwrite ? "--overwrite" : NULL, NULL,
        };

        setup = find_program("swtpm_setup", error);
        if (!setup)
                return FALSE;
        localca = find_program("swtpm_localca", error);
        if (!localca)
                return FALSE;
        argv[0] = setup;
        if (g_mkdir_with_parents(ekdir, 0700) < 0) {
                g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_FAILED,
                            "%s: %s", ekdir, g_strerror(errno));
                return FALSE;
        }
        /* The certificates are checked too: a caller that reaps every child
         * (waitpid(-1)) could have taken swtpm_setup's exit status. */
        if (!write_configs(self, localca, error) ||
            !run_reaped((char *const *)argv, log, error) || !load_certs(self, error))
                return FALSE;
        /* Written last: its presence means the TPM and certificates exist. */
        if (!g_file_set_contents(marker, "swtpm_setup done\n", -1, error))
                return FALSE;
        self->manufactured = TRUE;
        return TRUE;
}

static gboolean spawn_swtpm(VrotDevTpm *self, GError **error)
{
        g_autofree gchar *prog = NULL, *log = path_in(self, "swtpm.log");
        g_autofree gchar *state = g_strdup_printf("dir=%s", self->dir);
        g_autofree gchar *server = g_strdup_printf("type=unixio,path=%s", self->sock);
        g_autofree gchar *ctrl = g_strdup_printf("type=unixio,path=%s.ctrl", self->sock);
        const char *argv[] = {
                NULL, "socket", "--tpm2", "--tpmstate", state, "--server", server,
                "--ctrl", ctrl, "--flags", "not-need-init,startup-clear", NULL,
        };
        pid_t parent = getpid(), pid;
        int null_fd, log_fd, e;

        prog = find_program("swtpm", error);
        if (!prog || !open_child_fds(log, &null_fd, &log_fd, error))
                return FALSE;
        argv[0] = prog;
        pid = fork();
        if (pid == 0) {
                /* A crashed daemon must not leave its simulated TPM behind. */
                if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
                        _exit(EXIT_EXEC_FAILED);
                /* swtpm inherits the directory lock and holds it while it runs. */
                exec_child(prog, (char *const *)argv, null_fd, log_fd, self->lock_fd);
        }
        e = errno;
        close(null_fd);
        close(log_fd);
        if (pid < 0) {
                g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_FAILED,
                            "starting swtpm: fork: %s", g_strerror(e));
                return FALSE;
        }
        self->pid = pid;
        return TRUE;
}

static gboolean accepts_connections(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd, r;

        g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return FALSE;
        r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        close(fd);
        return r == 0;
}

/* Until the data socket accepts a connection; stops swtpm on failure. */
static gboolean wait_listening(VrotDevTpm *self, GError **error)
{
        gint64 deadline = g_get_monotonic_time() + LISTEN_TIMEOUT_US;
        g_autofree gchar *log = path_in(self, "swtpm.log");
        g_autofree gchar *how = NULL, *tail = NULL;
        int status;

        while (!accepts_connections(self->sock)) {
                if (wait_until(self->pid, g_get_monotonic_time(), &status)) {
                        self->pid = 0;
                        how = describe_status(status);
                        tail = log_tail(log);
                        g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_EXITED,
                                    "swtpm ended before listening on %s (%s); %s ends with:\n%s",
                                    self->sock, how, log, tail);
                        return FALSE;
                }
                if (g_get_monotonic_time() > deadline) {
                        vrot_dev_tpm_stop(self);
                        g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_TIMEOUT,
                                    "swtpm not listening on %s after %d s", self->sock,
                                    (int)(LISTEN_TIMEOUT_US / G_USEC_PER_SEC));
                        return FALSE;
                }
        }
        return TRUE;
}

/*
 * One simulated TPM per directory.  swtpm's own state lock comes too late:
 * a second swtpm replaces the first one's socket before it finds the lock.
 */
static gboolean lock_dir(VrotDevTpm *self, GError **error)
{
        g_autofree gchar *p = path_in(self, "devtpm.lock");

        self->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (self->lock_fd < 0) {
                g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_FAILED,
                            "%s: %s", p, g_strerror(errno));
                return FALSE;
        }
        if (flock(self->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                g_set_error(error, VROT_DEV_TPM_ERROR,
                            errno == EWOULDBLOCK ? VROT_DEV_TPM_ERROR_BUSY :
                            VROT_DEV_TPM_ERROR_FAILED,
                            "%s: %s", p, errno == EWOULDBLOCK ?
                            "another simulated TPM runs in this directory" : g_strerror(errno));
                return FALSE;
        }
        return TRUE;
}

static VrotDevTpm *dev_tpm_new(const char *dir, GError **error)
{
        g_autoptr(VrotDevTpm) self = g_new0(VrotDevTpm, 1);
        struct sockaddr_un sa;

        self->lock_fd = -1;

        self->dir = g_canonicalize_filename(dir, NULL);
        self->sock = path_in(self, "tpm.sock");
        self->tcti = g_strdup_printf("swtpm:path=%s", self->sock);
        /* The control socket's name is the longer one. */
        if (strlen(self->sock) + strlen(".ctrl") >= sizeof(sa.sun_path) ||
            strpbrk(self->dir, "\n,=")) {
                g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_FAILED,
                            "%s: unusable as a swtpm directory (too long for a socket "
                            "path, or has a newline, ',' or '=')", self->dir);
                return NULL;
        }
        if (g_mkdir_with_parents(self->dir, 0700) < 0) {
                g_set_error(error, VROT_DEV_TPM_ERROR, VROT_DEV_TPM_ERROR_FAILED,
                            "%s: %s", self->dir, g_strerror(errno));
                return NULL;
        }
        if (!lock_dir(self, error))
                return NULL;
        return g_steal_pointer(&self);
}

VrotDevTpm *vrot_dev_tpm_start(const char *dir, GError **error)
{
        g_autoptr(VrotDevTpm) self = NULL;
        g_autofree gchar *marker = NULL, *state = NULL;

        g_return_val_if_fail(dir != NULL, NULL);
        g_return_val_if_fail(error == NULL || *error == NULL, NULL);

        self = dev_tpm_new(dir, error);
        if (!self)
                return NULL;
        marker = path_in(self, "manufactured");
        state = path_in(self, "tpm2-00.permall");
        if (!g_file_test(marker, G_FILE_TEST_EXISTS) &&
            !manufacture(self, g_file_test(state, G_FILE_TEST_EXISTS), error)) {
                g_prefix_error(error, "manufacturing the simulated host TPM in %s: ", self->dir);
                return NULL;
        }
        if ((!self->manufactured && !load_certs(self, error)) || !spawn_swtpm(self, error) ||
            !wait_listening(self, error))
                return NULL;
        return g_steal_pointer(&self);
}

const char *vrot_dev_tpm_tcti(const VrotDevTpm *self)
{
        return self->tcti;
}

GPid vrot_dev_tpm_pid(const VrotDevTpm *self)
{
        return self->pid;
}

const char *vrot_dev_tpm_dir(const VrotDevTpm *self)
{
        return self->dir;
}

gboolean vrot_dev_tpm_manufactured(const VrotDevTpm *self)
{
        return self->manufactured;
}

GBytes *vrot_dev_tpm_ek_cert(const VrotDevTpm *self, VrotDevTpmEk which)
{
        g_return_val_if_fail(which <= VROT_DEV_TPM_EK_ECC_P384, NULL);
        return self->ek_cert[which];
}

GBytes *vrot_dev_tpm_root_cert(const VrotDevTpm *self)
{
        return self->root_cert;
}

GBytes *vrot_dev_tpm_issuer_cert(const VrotDevTpm *self)
{
        return self->issuer_cert;
}

void vrot_dev_tpm_stop(VrotDevTpm *self)
{
        int status;

        if (!self || self->pid <= 0)
                return;
        kill(self->pid, SIGTERM);
        if (!wait_until(self->pid, g_get_monotonic_time() + STOP_TIMEOUT_US, &status)) {
                kill(self->pid, SIGKILL);
                while (waitpid(self->pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        }
        self->pid = 0;
}

void vrot_dev_tpm_free(VrotDevTpm *self)
{
        if (!self)
                return;
        vrot_dev_tpm_stop(self);
        if (self->lock_fd >= 0)
                close(self->lock_fd);
        for (guint i = 0; i < G_N_ELEMENTS(self->ek_cert); i++)
                g_clear_pointer(&self->ek_cert[i], g_bytes_unref);
        g_clear_pointer(&self->root_cert, g_bytes_unref);
        g_clear_pointer(&self->issuer_cert, g_bytes_unref);
        g_free(self->tcti);
        g_free(self->sock);
        g_free(self->dir);
        g_free(self);
}
