/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrotd: the host daemon.  Brings up the host's root of trust (host.c),
 * the instances (instances.c) and the socket API (server.c, api.c), then
 * runs the GLib main loop until SIGTERM or SIGINT.  See vrotd(8).
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <glib-unix.h>

#include "api.h"
#include "migrate.h"
#include "config.h"
#include "fault.h"
#include "host.h"
#include "instances.h"
#include "server.h"

typedef struct Options {
        gchar *config, *state_dir, *runtime_dir, *vtpm, *log_level, *fault_stop;
        gboolean dev, version;
} Options;

static gboolean parse_options(int *argc, char ***argv, Options *o, GError **error)
{
        GOptionEntry entries[] = {
                { "config", 'c', 0, G_OPTION_ARG_FILENAME, &o->config, "Configuration file", "FILE" },
                { "dev", 0, 0, G_OPTION_ARG_NONE, &o->dev, "Simulated host TPM and local fleet root (development)", NULL },
                { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &o->state_dir, "State directory", "DIR" },
                { "runtime-dir", 0, 0, G_OPTION_ARG_FILENAME, &o->runtime_dir, "Runtime directory", "DIR" },
                { "vtpm", 0, 0, G_OPTION_ARG_FILENAME, &o->vtpm, "The vrot-vtpm binary", "PATH" },
                { "log-level", 0, 0, G_OPTION_ARG_STRING, &o->log_level, "error, warning, info or debug", "LEVEL" },
                { "version", 0, 0, G_OPTION_ARG_NONE, &o->version, "Print the version", NULL },
#ifdef VROT_FAULT_INJECTION
                { "fault-stop", 0, 0, G_OPTION_ARG_STRING, &o->fault_stop,
                  "Tests only: SIGSTOP at this fault point (daemon/fault.h)", "POINT" },
#endif
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(GOptionContext) ctx = g_option_context_new("- the vrot host daemon");

        g_option_context_add_main_entries(ctx, entries, NULL);
        return g_option_context_parse(ctx, argc, argv, error);
}

/* Command-line options override the file; paths must stay absolute. */
static gboolean configure(const Options *o, VrotConfig *cfg, GError **error)
{
        const gchar *conf = o->config ? o->config : "/etc/vrot/vrotd.conf";
        g_autoptr(GString) overrides = g_string_new("[daemon]\n");

        if ((o->config || g_file_test(conf, G_FILE_TEST_EXISTS)) && !vrot_config_load(cfg, conf, error))
                return FALSE;
        if (o->state_dir)
                g_string_append_printf(overrides, "state-dir=%s\n", o->state_dir);
        if (o->runtime_dir)
                g_string_append_printf(overrides, "runtime-dir=%s\n", o->runtime_dir);
        if (o->log_level)
                g_string_append_printf(overrides, "log-level=%s\n", o->log_level);
        cfg->dev = o->dev;
        if (!vrot_config_parse(cfg, overrides->str, overrides->len, error)) {
                g_prefix_error(error, "command line: ");
                return FALSE;
        }
        return TRUE;
}

/* The worker next to vrotd (a build tree), else where it is installed. */
static gchar *default_vtpm(const gchar *argv0)
{
        g_autofree gchar *self = g_file_read_link("/proc/self/exe", NULL);
        g_autofree gchar *dir = g_path_get_dirname(self ? self : argv0);
        gchar *next = g_build_filename(dir, "vrot-vtpm", NULL);

        if (g_file_test(next, G_FILE_TEST_IS_EXECUTABLE))
                return next;
        g_free(next);
        return g_strdup(VROT_VTPM_PATH);
}

static gboolean on_stop(gpointer loop)
{
        g_message("signal: shutting down");
        g_main_loop_quit(loop);
        return G_SOURCE_CONTINUE;
}

static gid_t admin_gid(const VrotConfig *cfg, GError **error)
{
        struct group *g;

        if (!cfg->admin_group)
                return (gid_t)-1;
        g = getgrnam(cfg->admin_group);
        if (!g) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "admin-group %s: no such group",
                            cfg->admin_group);
                return (gid_t)-2;
        }
        return g->gr_gid;
}

static int run(const VrotConfig *cfg, const gchar *vtpm)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(VrotHost) host = NULL;
        g_autoptr(VrotInstances) instances = NULL;
        g_autoptr(VrotIdentities) identities = NULL;
        g_autoptr(VrotMigration) migration = NULL;
        g_autoptr(VrotServer) server = NULL;
        g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
        g_autofree gchar *sock = g_build_filename(cfg->runtime_dir, "vrotd.sock", NULL);
        VrotApi api = { .dev = cfg->dev, .migration_name = cfg->migration_name };
        const VrotMethod *methods;
        gsize n;
        gid_t gid = admin_gid(cfg, &error);

        if (gid == (gid_t)-2 || g_mkdir_with_parents(cfg->runtime_dir, 0755) < 0 ||
            g_mkdir_with_parents(cfg->state_dir, 0700) < 0) {
                g_critical("%s", error ? error->message : g_strerror(errno));
                return EXIT_FAILURE;
        }
        if (cfg->dev)
                g_warning("--dev: the host root of trust is SIMULATED (a swtpm process, a local fleet "
                          "root); nothing this daemon endorses is bound to hardware");
        if (!(host = vrot_host_open(cfg, &error)) ||
            !(instances = vrot_instances_new(host, cfg, vtpm, &error))) {
                g_critical("%s", error->message);
                return EXIT_FAILURE;
        }
        if (!vrot_host_enrolled(host))
                g_warning("this host is not enrolled: it signs nothing and refuses instance.create "
                          "until an operator enrols it (vrotctl host-enrol; vrotd(8) ENROLMENT)");
        else if (!(migration = vrot_migration_new(host, instances, cfg, &error)) && error) {
                g_critical("%s", error->message);
                return EXIT_FAILURE;
        }
        api.host = host;
        api.instances = instances;
        identities = vrot_identities_new(host, instances);
        api.identities = identities;
        api.migration = migration;
        methods = vrot_api_methods(&n);
        if (!(server = vrot_server_new(sock, methods, n, &api, gid, NULL, &error))) {
                g_critical("%s", error->message);
                return EXIT_FAILURE;
        }
        g_unix_signal_add(SIGTERM, on_stop, loop);
        g_unix_signal_add(SIGINT, on_stop, loop);
        g_message("serving on %s (host TPM: %s, %" G_GUINT64_FORMAT " commands so far)", sock,
                  vrot_host_tcti(host), vrot_host_tpm_command_count(vrot_host_tpm(host)));
        g_main_loop_run(loop);
        vrot_migration_quiesce(migration);
        g_clear_pointer(&server, vrot_server_free);
        vrot_instances_stop_all(instances);
        return EXIT_SUCCESS;
}

/*
 * A running worker costs a descriptor or two (fdwatch.h, forkclient.h):
 * the soft limit that a systemd service starts with (1024) would end a
 * host's instances near a thousand.  Nothing here uses select(), so the
 * soft limit goes up to the hard one.
 */
static void raise_fd_limit(void)
{
        struct rlimit r;

        if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
                rlim_t was = r.rlim_cur;

                r.rlim_cur = r.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &r) < 0)
                        g_warning("raising the descriptor limit from %llu: %s",
                                  (unsigned long long)was, g_strerror(errno));
        }
}

int main(int argc, char **argv)
{
        Options o = { 0 };
        g_autoptr(GError) error = NULL;
        g_autoptr(VrotConfig) cfg = vrot_config_new();
        g_autofree gchar *vtpm = NULL;
        int ret;

        if (!parse_options(&argc, &argv, &o, &error) || !configure(&o, cfg, &error)) {
                fprintf(stderr, "vrotd: %s\n", error->message);
                return 2;
        }
        if (o.version) {
                puts("vrotd " VROT_VERSION);
                return 0;
        }
        /* tpm2-tss logs failed commands itself; vrotd reports them as errors. */
        g_setenv("TSS2_LOG", "all+none", FALSE);
        if (g_str_equal(cfg->log_level, "debug"))
                g_setenv("G_MESSAGES_DEBUG", "all", TRUE);
        /* Workers whose fork server dies are re-parented here and reaped. */
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        raise_fd_limit();
        vtpm = o.vtpm ? g_strdup(o.vtpm) : default_vtpm(argv[0]);
#ifdef VROT_FAULT_INJECTION
        if (o.fault_stop)
                g_warning("a test build: stops at fault point %s (daemon/fault.h)", o.fault_stop);
        vrot_fault_stop_at(o.fault_stop);
#endif
        ret = run(cfg, vtpm);
        g_free(o.config);
        g_free(o.state_dir);
        g_free(o.runtime_dir);
        g_free(o.vtpm);
        g_free(o.log_level);
        g_free(o.fault_stop);
        return ret;
}
