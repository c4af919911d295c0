/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"



void vtpm_args_usage(FILE *f)
{
        fputs("Usage: vrot-vtpm --uuid UUID --state-dir DIR --ctrl PATH\n"
              "                 (--key-fd N | --insecure-plaintext) [OPTION...]\n"
              "       vrot-vtpm --fork-server PATH [--log-level LEVEL]\n"
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
              "                         send TPM2_Startup(CLEAR); defer-writes: write the state\n"
              "                         once, durably, at exit (manufacture only);\n"
              "                         end-with-starter: end, writing nothing, once the\n"
              "                         reader of --ready-fd closes it; prefault: once\n"
              "                         ready, page in code and data (a pool's warm vTPM)\n"
              "  --migrate PATH         migration-key socket (0600): stateblobs cross only under\n"
              "                         the key of a live migration vrotd prepared\n"
              "  --min-generation N     refuse state older than generation N (rollback anchor)\n"
              "  --runas USER           drop to USER after start-up\n"
              "  --ready-fd N           write \"ready\" to descriptor N once the sockets listen\n"
              "  --log-level LEVEL      error, warning, info (default) or debug\n"
              "  --fork-server PATH     pre-load libtpms and OpenSSL once and start workers on\n"
              "                         request on the socket PATH (see vrot-vtpm(8))\n"
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

static int parse_flags(const char *s, VtpmArgs *a)
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
                else if (strcmp(t, "defer-writes") == 0)
                        a->defer_writes = true;
                else if (strcmp(t, "end-with-starter") == 0)
                        a->end_with_starter = true;
                else if (strcmp(t, "prefault") == 0)
                        a->prefault = true;
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

int vtpm_args_parse(int argc, char **argv, VtpmArgs *a)
{
        enum { O_UUID = 256, O_STATE, O_CTRL, O_CTRL_MODE, O_SERVER, O_SERVER_MODE, O_KEY_FD,
               O_INSECURE, O_FLAGS, O_MIN_GEN, O_RUNAS, O_LOG, O_VERSION, O_FORK_SERVER, O_READY_FD,
               O_MIGRATE };
        static const struct option opts[] = {
                { "uuid", required_argument, NULL, O_UUID },
                { "state-dir", required_argument, NULL, O_STATE },
                { "ctrl", required_argument, NULL, O_CTRL },
                { "ctrl-mode", required_argument, NULL, O_CTRL_MODE },
                { "server", required_argument, NULL, O_SERVER },
                { "server-mode", required_argument, NULL, O_SERVER_MODE },
                { "migrate", required_argument, NULL, O_MIGRATE },
                { "key-fd", required_argument, NULL, O_KEY_FD },
                { "insecure-plaintext", no_argument, NULL, O_INSECURE },
                { "flags", required_argument, NULL, O_FLAGS },
                { "min-generation", required_argument, NULL, O_MIN_GEN },
                { "runas", required_argument, NULL, O_RUNAS },
                { "log-level", required_argument, NULL, O_LOG },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, O_VERSION },
                { "fork-server", required_argument, NULL, O_FORK_SERVER },
                { "ready-fd", required_argument, NULL, O_READY_FD },
                { 0 },
        };
        uint64_t v;
        int c;

        optind = 0;     /* a fork-server child parses a second command line */
        *a = (VtpmArgs){ .ctrl_mode = 0600, .server_mode = 0600, .key_fd = -1, .ready_fd = -1,
                     .log_level = VROT_LOG_INFO };
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case O_UUID: a->uuid = optarg; break;
                case O_STATE: a->state_dir = optarg; break;
                case O_CTRL: a->ctrl = optarg; break;
                case O_SERVER: a->server = optarg; break;
                case O_MIGRATE: a->migrate = optarg; break;
                case O_RUNAS: a->runas = optarg; break;
                case O_FORK_SERVER: a->fork_server = optarg; break;
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
                case O_READY_FD:
                        if (parse_uint(optarg, 1 << 20, &v) < 0 || v < 3)
                                return fprintf(stderr, "vrot-vtpm: bad --ready-fd '%s'\n", optarg), -1;
                        a->ready_fd = (int)v;
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
                case 'h': vtpm_args_usage(stdout); exit(0);
                case O_VERSION: puts("vrot-vtpm " VROT_VERSION); exit(0);
                default: return -1;
                }
        }
        if (optind < argc)
                return fprintf(stderr, "vrot-vtpm: unexpected argument '%s'\n", argv[optind]), -1;
        if (a->fork_server) {
                if (a->uuid || a->state_dir || a->ctrl || a->server || a->key_fd >= 0 || a->insecure ||
                    a->ready_fd >= 0 || a->migrate)
                        return fprintf(stderr, "vrot-vtpm: --fork-server takes instance options "
                                       "per request, not on its command line\n"), -1;
                return 0;
        }
        if (!a->uuid || !a->state_dir || !a->ctrl)
                return fprintf(stderr, "vrot-vtpm: --uuid, --state-dir and --ctrl are required\n"), -1;
        if (a->ready_fd >= 0 && a->ready_fd == a->key_fd)
                return fprintf(stderr, "vrot-vtpm: --ready-fd and --key-fd must differ\n"), -1;
        if ((a->key_fd >= 0) == a->insecure)
                return fprintf(stderr, "vrot-vtpm: give exactly one of --key-fd and --insecure-plaintext\n"), -1;
        if (a->startup_clear && !a->not_need_init)
                return fprintf(stderr, "vrot-vtpm: startup-clear needs not-need-init\n"), -1;
        if (a->end_with_starter && a->ready_fd < 0)
                return fprintf(stderr, "vrot-vtpm: end-with-starter needs --ready-fd\n"), -1;
        return 0;
}

