/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrot-vtpm: one TPM 2.0 (libtpms) per process, reached by QEMU or libvirt
 * through the swtpm control-channel protocol, with its state sealed under a
 * key that arrives on an inherited descriptor.  See vrot-vtpm(8).
 *
 * Exit status: 0 clean shutdown, 1 runtime error, 2 usage, 3 state refused.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libtpms/tpm_error.h>

#include "log.h"
#include "sandbox.h"
#include "secret.h"
#include "seal.h"
#include "tpm.h"
#include "uuid.h"
#include "worker.h"

#define EXIT_USAGE 2
#define EXIT_STATE 3

typedef struct Args {
        const char *uuid;
        const char *state_dir;
        const char *ctrl;
        const char *server;
        const char *runas;
        mode_t ctrl_mode, server_mode;
        int key_fd;
        bool insecure;
        bool not_need_init, startup_clear;
        uint64_t min_generation;
        VrotLogLevel log_level;
} Args;

static void usage(FILE *f)
{
        fputs("Usage: vrot-vtpm --uuid UUID --state-dir DIR --ctrl PATH\n"
              "                 (--key-fd N | --insecure-plaintext) [OPTION...]\n"
              "\n"
              "  --uuid UUID            instance this TPM belongs to (bound into its state)\n"
              "  --state-dir DIR        sealed state directory (must exist)\n"
              "  --ctrl PATH            control socket (swtpm protocol), as QEMU's -tpmdev emulator uses\n"
              "  --ctrl-mode MODE       its permissions, octal (default 0600)\n"
              "  --server PATH          data socket for raw TPM 2.0 commands (services, tpm2-tss)\n"
              "  --server-mode MODE     its permissions, octal (default 0600)\n"
              "  --key-fd N             read the 32-byte state key from descriptor N\n"
              "  --insecure-plaintext   no key: state sealed under a public all-zero key (tests only)\n"
              "  --flags LIST           not-need-init: start the TPM at once; startup-clear: and\n"
              "                         send TPM2_Startup(CLEAR)\n"
              "  --min-generation N     refuse state older than generation N (rollback anchor)\n"
              "  --runas USER           drop to USER after start-up\n"
              "  --log-level LEVEL      error, warning, info (default) or debug\n"
              "  --help, --version\n", f);
}

static int parse_mode(const char *s, mode_t *ret)
{
        char *end;
        unsigned long v = strtoul(s, &end, 8);

        if (!*s || *end || v > 0777)
                return -1;
        *ret = (mode_t)v;
        return 0;
}

static int parse_flags(const char *s, Args *a)
{
        char buf[128], *save = NULL;

        if (strlen(s) >= sizeof(buf))
                return -1;
        strcpy(buf, s);
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (strcmp(t, "not-need-init") == 0)
                        a->not_need_init = true;
                else if (strcmp(t, "startup-clear") == 0)
                        a->startup_clear = true;
                else
                        return -1;
        }
        return 0;
}

static int parse_uint(const char *s, uint64_t max, uint64_t *ret)
{
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (!*s || *end || errno || v > max || s[0] == '-')
                return -1;
        *ret = v;
        return 0;
}

static int parse_args(int argc, char **argv, Args *a)
{
        enum { O_UUID = 256, O_STATE, O_CTRL, O_CTRL_MODE, O_SERVER, O_SERVER_MODE, O_KEY_FD,
               O_INSECURE, O_FLAGS, O_MIN_GEN, O_RUNAS, O_LOG, O_VERSION };
        static const struct option opts[] = {
                { "uuid", required_argument, NULL, O_UUID },
                { "state-dir", required_argument, NULL, O_STATE },
                { "ctrl", required_argument, NULL, O_CTRL },
                { "ctrl-mode", required_argument, NULL, O_CTRL_MODE },
                { "server", required_argument, NULL, O_SERVER },
                { "server-mode", required_argument, NULL, O_SERVER_MODE },
                { "key-fd", required_argument, NULL, O_KEY_FD },
                { "insecure-plaintext", no_argument, NULL, O_INSECURE },
                { "flags", required_argument, NULL, O_FLAGS },
                { "min-generation", required_argument, NULL, O_MIN_GEN },
                { "runas", required_argument, NULL, O_RUNAS },
                { "log-level", required_argument, NULL, O_LOG },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, O_VERSION },
                { 0 },
        };
        uint64_t v;
        int c;

        *a = (Args){ .ctrl_mode = 0600, .server_mode = 0600, .key_fd = -1,
                     .log_level = VROT_LOG_INFO };
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case O_UUID: a->uuid = optarg; break;
                case O_STATE: a->state_dir = optarg; break;
                case O_CTRL: a->ctrl = optarg; break;
                case O_SERVER: a->server = optarg; break;
                case O_RUNAS: a->runas = optarg; break;
                case O_INSECURE: a->insecure = true; break;
                case O_CTRL_MODE:
                case O_SERVER_MODE:
                        if (parse_mode(optarg, c == O_CTRL_MODE ? &a->ctrl_mode : &a->server_mode) < 0)
                                return fprintf(stderr, "vrot-vtpm: bad mode '%s'\n", optarg), -1;
                        break;
                case O_KEY_FD:
                        if (parse_uint(optarg, 1 << 20, &v) < 0 || v < 3)
                                return fprintf(stderr, "vrot-vtpm: bad --key-fd '%s'\n", optarg), -1;
                        a->key_fd = (int)v;
                        break;
                case O_FLAGS:
                        if (parse_flags(optarg, a) < 0)
                                return fprintf(stderr, "vrot-vtpm: bad --flags '%s'\n", optarg), -1;
                        break;
                case O_MIN_GEN:
                        if (parse_uint(optarg, UINT64_MAX, &a->min_generation) < 0)
                                return fprintf(stderr, "vrot-vtpm: bad --min-generation\n"), -1;
                        break;
                case O_LOG:
                        if (vrot_log_level_parse(optarg, &a->log_level) < 0)
                                return fprintf(stderr, "vrot-vtpm: bad --log-level\n"), -1;
                        break;
                case 'h': usage(stdout); exit(0);
                case O_VERSION: puts("vrot-vtpm " VROT_VERSION); exit(0);
                default: return -1;
                }
        }
        if (optind < argc)
                return fprintf(stderr, "vrot-vtpm: unexpected argument '%s'\n", argv[optind]), -1;
        if (!a->uuid || !a->state_dir || !a->ctrl)
                return fprintf(stderr, "vrot-vtpm: --uuid, --state-dir and --ctrl are required\n"), -1;
        if ((a->key_fd >= 0) == a->insecure)
                return fprintf(stderr, "vrot-vtpm: give exactly one of --key-fd and --insecure-plaintext\n"), -1;
        if (a->startup_clear && !a->not_need_init)
                return fprintf(stderr, "vrot-vtpm: startup-clear needs not-need-init\n"), -1;
        return 0;
}

/* Binds a listening UNIX socket at @path with permissions @mode.  A stale
 * socket left by a killed worker is replaced; any other file is not. */
static int listen_unix(const char *path, mode_t mode, VrotError *err)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        mode_t old;
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return vrot_err(err, ENAMETOOLONG, "socket path too long: %s", path);
        strcpy(sa.sun_path, path);
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return vrot_err(err, EEXIST, "%s exists and is not a socket", path);
                unlink(path);
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return vrot_err(err, errno, "socket: %s", strerror(errno));
        old = umask(0777 & ~mode);      /* no window with wider permissions */
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (r < 0 || chmod(path, mode) < 0 || listen(fd, 8) < 0) {
                r = vrot_err(err, errno, "listening on %s: %s", path, strerror(errno));
                close(fd);
                return r;
        }
        return fd;
}

static int open_state(const Args *a, const VrotSealer *sealer, VtpmStore **store)
{
        VrotError err = { 0 };
        int r = vtpm_store_open(a->state_dir, sealer, a->min_generation, store, &err);

        if (r == 0)
                return 0;
        log_error("refusing to start: %s", err.msg);
        /* Refused content is final (the files are left untouched); anything
         * else - a missing directory, a held lock, I/O - may pass. */
        return r == -EUCLEAN ? EXIT_STATE : EXIT_FAILURE;
}

static int start_tpm(const Args *a, Worker *w)
{
        uint32_t rc;

        if (vtpm_tpm_setup(w->store) != TPM_SUCCESS) {
                log_error("libtpms refused the TPM 2.0 set-up");
                return -1;
        }
        if (!a->not_need_init)
                return 0;
        rc = vtpm_tpm_init(0);
        if (rc == TPM_SUCCESS && a->startup_clear)
                rc = vtpm_tpm_startup_clear();
        if (rc != TPM_SUCCESS) {
                log_error("starting the TPM failed (0x%x)", rc);
                return -1;
        }
        return 0;
}

static int open_sockets(const Args *a, Worker *w)
{
        VrotError err = { 0 };

        w->ctrl_listen = listen_unix(a->ctrl, a->ctrl_mode, &err);
        if (w->ctrl_listen < 0)
                goto fail;
        w->ctrl_path = a->ctrl;
        if (a->server) {
                w->data_listen = listen_unix(a->server, a->server_mode, &err);
                if (w->data_listen < 0)
                        goto fail;
                w->data_path = a->server;
        }
        return 0;
fail:
        log_error("%s", err.msg);
        return -1;
}

static void close_sockets(Worker *w)
{
        if (w->ctrl_listen >= 0) {
                close(w->ctrl_listen);
                unlink(w->ctrl_path);
        }
        if (w->data_listen >= 0) {
                close(w->data_listen);
                unlink(w->data_path);
        }
}

int main(int argc, char **argv)
{
        _cleanup_secret_ VrotSecret *key = NULL;
        VrotSealer sealer = { 0 };
        VrotError err = { 0 };
        Worker w = { .ctrl_listen = -1, .data_listen = -1,
                     .ctrl = { .fd = -1 }, .data = { .fd = -1 } };
        Args a;
        int ret = EXIT_FAILURE;

        if (parse_args(argc, argv, &a) < 0) {
                usage(stderr);
                return EXIT_USAGE;
        }
        vrot_log_init("vrot-vtpm", a.log_level);
        if (vrot_uuid_parse(a.uuid, sealer.uuid, &err) < 0) {
                log_error("--uuid: %s", err.msg);
                return EXIT_USAGE;
        }
        if (vtpm_sandbox_no_dumps(&err) < 0) {
                log_error("%s", err.msg);
                return EXIT_FAILURE;
        }
        if (a.insecure) {
                log_warn("--insecure-plaintext: the state is NOT protected; for tests only");
        } else {
                key = vrot_secret_read_fd(a.key_fd, VROT_SEAL_KEY_LEN, &err);
                close(a.key_fd);
                if (!key) {
                        log_error("state key: %s", err.msg);
                        return EXIT_FAILURE;
                }
                sealer.key = vrot_secret_data(key);
        }
        w.sealer = &sealer;

        ret = open_state(&a, &sealer, &w.store);
        if (ret != 0)
                return ret;
        ret = EXIT_FAILURE;
        if (start_tpm(&a, &w) < 0 || open_sockets(&a, &w) < 0)
                goto out;
        if (vtpm_sandbox_enter(a.runas, a.state_dir, &err) < 0) {
                log_error("%s", err.msg);
                goto out;
        }
        log_info("instance %s serving on %s%s%s (state generation %" PRIu64 ")", a.uuid,
                 a.ctrl, a.server ? " and " : "", a.server ? a.server : "",
                 vtpm_store_generation(w.store));
        if (vtpm_loop_run(&w) == 0)
                ret = EXIT_SUCCESS;
out:
        vtpm_tpm_free();
        close_sockets(&w);
        vtpm_store_free(w.store);
        return ret;
}
