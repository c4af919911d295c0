/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrot-libvirt-hook: libvirt's QEMU hook (/etc/libvirt/hooks/qemu.d/vrot)
 * for domains whose TPM is a vrot vTPM, i.e. libvirt's external backend on
 * RUNTIME/<domain UUID>/ctrl.sock (vrot-libvirt-hook(8)).  libvirt runs it
 * as "vrot DOMAIN OPERATION SUB-OPERATION EXTRA" with the domain XML on
 * stdin, and shows its stderr when it fails; a failed "prepare begin"
 * keeps the domain from starting without its vTPM.
 *
 *   prepare begin    create the instance if absent (bound to the domain
 *                    UUID), start it: the socket listens before QEMU runs
 *   reconnect begin  make sure it runs (libvirtd restarted)
 *   release end      stop it
 *   migrate begin    refused until vrot migrates vTPMs (issue 6)
 *   anything else    nothing
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "domxml.h"
#include "jsonrpc.h"
#include "rpcclient.h"

#define CALL_TIMEOUT_MS (120 * 1000)

typedef struct Hook {
        const char *domain, *op, *subop;
        VrotDomxml *xml;
        gchar *api;             /* RUNTIME/vrotd.sock */
} Hook;

typedef gboolean (*HookFunc)(Hook *h, GError **error);

static gboolean call(Hook *h, const char *method, JsonObject *params, JsonNode **ret,
                     GError **error)
{
        if (vrot_rpcclient_call_once(h->api, method, params, CALL_TIMEOUT_MS, ret, error))
                return TRUE;
        g_prefix_error(error, "vrotd (%s) %s: ", h->api, method);
        return FALSE;
}

static JsonObject *uuid_params(Hook *h)
{
        JsonObject *p = json_object_new();

        json_object_set_string_member(p, "uuid", h->xml->uuid);
        return p;
}

/* A domain name as an instance name: at most 64 bytes of valid UTF-8,
 * control characters replaced (vrotd refuses them: log forgery). */
static gchar *instance_name(const char *domain)
{
        g_autofree gchar *valid = g_utf8_make_valid(domain, -1);
        GString *s = g_string_new(NULL);

        for (const gchar *p = valid; *p; p = g_utf8_next_char(p)) {
                gunichar c = g_utf8_get_char(p);
                gchar buf[6];
                gint n = g_unichar_to_utf8(g_unichar_iscntrl(c) ? '?' : c, buf);

                if (s->len + (gsize)n > 64)
                        break;
                g_string_append_len(s, buf, n);
        }
        if (s->len == 0)
                g_string_append(s, "domain");
        return g_string_free(s, FALSE);
}

static gboolean ensure_created(Hook *h, GError **error)
{
        g_autoptr(JsonObject) p = uuid_params(h);
        g_autoptr(JsonNode) res = NULL;
        g_autoptr(GError) local = NULL;
        g_autofree gchar *name = NULL;
        JsonObject *o;

        if (call(h, "instance.info", p, &res, &local)) {
                o = json_node_get_object(res);
                if (g_strcmp0(json_object_get_string_member_with_default(o, "state", ""), "deleted") == 0) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS, "the vTPM of domain %s (%s) "
                                    "was deleted; its UUID cannot have a vTPM again", h->domain,
                                    h->xml->uuid);
                        return FALSE;
                }
                if (g_strcmp0(json_object_get_string_member_with_default(o, "kind", ""), "vm") != 0) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                    "instance %s is a service's vTPM, not a VM's", h->xml->uuid);
                        return FALSE;
                }
                return TRUE;
        }
        if (!g_error_matches(local, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_NOT_FOUND)) {
                g_propagate_error(error, g_steal_pointer(&local));
                return FALSE;
        }
        name = instance_name(h->domain);
        json_object_set_string_member(p, "kind", "vm");
        json_object_set_string_member(p, "name", name);
        g_clear_pointer(&res, json_node_unref);
        return call(h, "instance.create", p, &res, error);
}

static gboolean start(Hook *h, GError **error)
{
        g_autoptr(JsonObject) p = uuid_params(h);
        g_autoptr(JsonNode) res = NULL;

        return call(h, "instance.start", p, &res, error);
}

static gboolean on_prepare(Hook *h, GError **error)
{
        return ensure_created(h, error) && start(h, error);
}

/* The instance's state and, when a migration holds it, whether it is live. */
static gchar *instance_state(Hook *h, gboolean *ret_live)
{
        g_autoptr(JsonObject) p = uuid_params(h);
        g_autoptr(JsonNode) res = NULL;
        JsonObject *o, *mig;

        *ret_live = FALSE;
        if (!call(h, "instance.info", p, &res, NULL) || !JSON_NODE_HOLDS_OBJECT(res))
                return NULL;
        o = json_node_get_object(res);
        mig = json_object_has_member(o, "migration") &&
              JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "migration"))
              ? json_object_get_object_member(o, "migration") : NULL;
        *ret_live = mig != NULL;
        return g_strdup(json_object_get_string_member_with_default(o, "state", ""));
}

static gboolean on_release(Hook *h, GError **error)
{
        g_autoptr(JsonObject) p = uuid_params(h);
        g_autoptr(JsonNode) res = NULL;
        g_autoptr(GError) local = NULL;
        g_autofree gchar *state = NULL;
        gboolean migrating = FALSE;

        /* The source of a live migration: its QEMU ended, so the state went
         * to the destination, or the domain just stopped.  The daemon
         * commits only if the destination's vTPM took the state; else the
         * migration is aborted and the vTPM stays here. */
        state = instance_state(h, &migrating);
        if (migrating && g_strcmp0(state, "locked") == 0) {
                if (call(h, "instance.migrate_commit", p, &res, &local))
                        return TRUE;
                g_printerr("vrot: domain %s: the live migration of its vTPM was not "
                           "committed (%s): aborting it, the vTPM stays here\n", h->domain,
                           local->message);
                g_clear_error(&local);
                g_clear_pointer(&res, json_node_unref);
                if (!call(h, "instance.migrate_abort", p, &res, error))
                        return FALSE;
                g_clear_pointer(&res, json_node_unref);
        }
        if (call(h, "instance.stop", p, &res, &local) ||
            g_error_matches(local, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_NOT_FOUND))
                return TRUE;    /* gone already: nothing to stop */
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
}

/* On the destination, before libvirt starts the incoming QEMU: its vTPM
 * must be a prepared live migration here (vrotctl migrate --live on the
 * source), whose worker waits for QEMU's stateblobs. */
static gboolean on_migrate(Hook *h, GError **error)
{
        gboolean migrating = FALSE;
        g_autofree gchar *state = instance_state(h, &migrating);

        if (migrating && g_strcmp0(state, "prepared") == 0)
                return TRUE;
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "no prepared migration for the vTPM of domain %s (%s): prepare one on the "
                    "source first (vrotctl migrate %s --to THIS-HOST:PORT --live); a migration "
                    "without it would lose or duplicate the TPM",
                    h->domain, h->xml->uuid, h->xml->uuid);
        return FALSE;
}

static const struct {
        const char *op, *subop;
        HookFunc fn;
} actions[] = {
        { "prepare", "begin", on_prepare },
        { "reconnect", "begin", start },
        { "release", "end", on_release },
        { "migrate", "begin", on_migrate },
};

static HookFunc action_of(const char *op, const char *subop)
{
        for (gsize i = 0; i < G_N_ELEMENTS(actions); i++)
                if (g_str_equal(actions[i].op, op) && g_str_equal(actions[i].subop, subop))
                        return actions[i].fn;
        return NULL;
}

/* All of stdin (libvirt writes the whole XML), at most VROT_DOMXML_MAX + 1. */
static gchar *read_stdin(gsize *ret_len, GError **error)
{
        g_autoptr(GString) s = g_string_new(NULL);
        gchar buf[65536];
        ssize_t n;

        while ((n = read(STDIN_FILENO, buf, sizeof(buf))) != 0) {
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                                    "reading the domain XML: %s", g_strerror(errno));
                        return NULL;
                }
                if (s->len <= VROT_DOMXML_MAX)
                        g_string_append_len(s, buf, n);
        }
        *ret_len = s->len;
        return g_string_free(g_steal_pointer(&s), FALSE);
}

/* The runtime directory of vrotd.conf (the hook runs without an environment). */
static gchar *runtime_dir(const char *config, GError **error)
{
        g_autoptr(VrotConfig) cfg = vrot_config_new();
        const char *path = config ? config : "/etc/vrot/vrotd.conf";

        if ((config || g_file_test(path, G_FILE_TEST_EXISTS)) && !vrot_config_load(cfg, path, error))
                return NULL;
        return g_strdup(cfg->runtime_dir);
}

/* The domain's TPM socket is vrot's if it is in the runtime directory; it
 * must then be this domain's instance's. */
static gboolean ours(Hook *h, const char *rundir, gboolean *ret_ours, GError **error)
{
        g_autofree gchar *prefix = g_strconcat(rundir, "/", NULL);
        g_autofree gchar *want = g_build_filename(rundir, h->xml->uuid, "ctrl.sock", NULL);
        g_autofree gchar *sock = g_canonicalize_filename(h->xml->tpm_socket, "/");

        *ret_ours = g_str_has_prefix(sock, prefix);
        if (*ret_ours && !g_str_equal(sock, want)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "domain %s (%s): its TPM socket %s is vrot's but not its own vTPM's (%s)",
                            h->domain, h->xml->uuid, sock, want);
                return FALSE;
        }
        return TRUE;
}

static gboolean run(Hook *h, const char *config, HookFunc fn, GError **error)
{
        g_autofree gchar *xml = NULL, *rundir = NULL;
        gboolean mine = FALSE;
        gsize len = 0;

        /* Read all of it even when nothing is to be done: libvirt writes it. */
        if (!(xml = read_stdin(&len, error)))
                return FALSE;
        if (!fn)
                return TRUE;
        if (!(h->xml = vrot_domxml_parse(xml, len, error))) {
                g_prefix_error(error, "domain %s: ", h->domain);
                return FALSE;
        }
        if (!h->xml->tpm_socket)
                return TRUE;    /* no vrot vTPM: touch nothing */
        if (!(rundir = runtime_dir(config, error)) || !ours(h, rundir, &mine, error))
                return FALSE;
        if (!mine)
                return TRUE;
        h->api = g_build_filename(rundir, "vrotd.sock", NULL);
        return fn(h, error);
}

int main(int argc, char **argv)
{
        g_autofree gchar *config = NULL;
        GOptionEntry entries[] = {
                { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config,
                  "vrotd.conf to read the runtime directory from", "FILE" },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr(GOptionContext) oc = g_option_context_new("DOMAIN OPERATION SUB-OPERATION [EXTRA]");
        g_autoptr(GError) error = NULL;
        Hook h = { 0 };
        gboolean ok;

        g_option_context_add_main_entries(oc, entries, NULL);
        if (!g_option_context_parse(oc, &argc, &argv, &error) || argc < 4) {
                fprintf(stderr, "vrot: %s\nusage: %s [--config FILE] DOMAIN OPERATION SUB-OPERATION "
                        "[EXTRA] < domain.xml\n", error ? error->message : "missing arguments", argv[0]);
                return 2;
        }
        h.domain = argv[1];
        h.op = argv[2];
        h.subop = argv[3];
        ok = run(&h, config, action_of(h.op, h.subop), &error);
        vrot_domxml_free(h.xml);
        g_free(h.api);
        if (ok)
                return 0;
        g_strdelimit(error->message, "\n", ' ');
        fprintf(stderr, "vrot: %s %s: %s\n", h.op, h.subop, error->message);
        return 1;
}
