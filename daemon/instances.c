/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "endorse.h"
#include "forkclient.h"
#include "instances.h"
#include "instkey.h"
#include "seal.h"
#include "uuid.h"

G_DEFINE_QUARK(vrot-instances-error-quark, vrot_instances_error)

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000
#define MAX_BACKOFF_S 60

typedef struct Running {
        VrotInstances *owner;
        gchar *uuid;
        VrotWorker *worker;
        gboolean stopping;              /* we asked it to end */
        guint restart_source;
        guint failures;                 /* consecutive unexpected ends */
} Running;

struct VrotInstances {
        VrotHost *host;                 /* transfer none */
        const VrotConfig *cfg;          /* transfer none */
        gchar *vtpm_path;
        gchar *registry_path;
        VrotRegistry *registry;
        VrotForkServer *forkd;
        GHashTable *running;            /* uuid -> Running */
};

static gboolean fail(GError **error, gint code, const gchar *fmt, ...) G_GNUC_PRINTF(3, 4);
static gboolean fail(GError **error, gint code, const gchar *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        g_propagate_error(error, g_error_new_valist(VROT_INSTANCES_ERROR, code, fmt, ap));
        va_end(ap);
        return FALSE;
}

static gchar *state_dir(VrotInstances *self, const gchar *uuid)
{
        return g_build_filename(self->cfg->state_dir, "instances", uuid, NULL);
}

static gchar *cert_path(VrotInstances *self, const gchar *uuid, const gchar *type)
{
        g_autofree gchar *name = g_strdup_printf("%s-ek-%s.pem", uuid, type);
        return g_build_filename(self->cfg->state_dir, "certs", name, NULL);
}

static gchar *run_path(VrotInstances *self, const gchar *uuid, const gchar *name)
{
        return g_build_filename(self->cfg->runtime_dir, uuid, name, NULL);
}

static gboolean save(VrotInstances *self, GError **error)
{
        return vrot_registry_save(self->registry, self->registry_path,
                                  vrot_host_registry_key(self->host), error);
}

/* The generation of a stopped worker's state, from the plaintext header of
 * its sealed generation record (0 when it has none yet). */
static guint64 state_generation(VrotInstances *self, const gchar *uuid)
{
        g_autofree gchar *dir = state_dir(self, uuid);
        g_autofree gchar *path = g_build_filename(dir, "generation", NULL);
        g_autofree gchar *data = NULL;
        VrotSealHeader h;
        gsize len = 0;

        if (!g_file_get_contents(path, &data, &len, NULL) ||
            vrot_seal_parse_header((const uint8_t *)data, len, &h, NULL) < 0)
                return 0;
        return h.generation;
}

/* Registry and rollback anchor: the registry's checkpoint must equal the
 * host TPM's NV counter, which only ever moves forward. */
static gboolean open_registry(VrotInstances *self, GError **error)
{
        g_autoptr(GError) local = NULL;
        guint64 counter = 0;

        if (!vrot_host_tpm_counter_read(vrot_host_tpm(self->host), &counter, error))
                return FALSE;
        self->registry = vrot_registry_load(self->registry_path, vrot_host_registry_key(self->host), &local);
        if (!self->registry && g_error_matches(local, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_NOT_FOUND) &&
            vrot_host_first_start(self->host)) {
                self->registry = vrot_registry_new();
                vrot_registry_set_checkpoint(self->registry, counter);
                return save(self, error);
        }
        if (!self->registry)
                return fail(error, VROT_INSTANCES_ERROR_REFUSED, "instance registry: %s", local->message);
        if (vrot_registry_checkpoint(self->registry) != counter)
                return fail(error, VROT_INSTANCES_ERROR_REFUSED,
                            "instance registry is at checkpoint %" G_GUINT64_FORMAT " but the host TPM's "
                            "counter is at %" G_GUINT64_FORMAT ": the state directory was restored from an "
                            "older copy; refusing to run it",
                            vrot_registry_checkpoint(self->registry), counter);
        return TRUE;
}

static gboolean make_dirs(const VrotConfig *cfg, GError **error)
{
        static const gchar *const subdirs[] = { "instances", "certs" };

        for (gsize i = 0; i < G_N_ELEMENTS(subdirs); i++) {
                g_autofree gchar *dir = g_build_filename(cfg->state_dir, subdirs[i], NULL);
                if (g_mkdir_with_parents(dir, 0700) < 0)
                        return fail(error, VROT_INSTANCES_ERROR_FAILED, "%s: %s", dir, g_strerror(errno));
        }
        return TRUE;
}

VrotInstances *vrot_instances_new(VrotHost *host, const VrotConfig *cfg, const gchar *vtpm_path,
                                  GError **error)
{
        g_autoptr(VrotInstances) self = g_new0(VrotInstances, 1);
        g_autofree gchar *sock = g_build_filename(cfg->runtime_dir, "forkd.sock", NULL);
        g_autofree gchar *log = g_build_filename(cfg->runtime_dir, "forkd.log", NULL);

        self->host = host;
        self->cfg = cfg;
        self->vtpm_path = g_strdup(vtpm_path);
        self->registry_path = g_build_filename(cfg->state_dir, "registry", NULL);
        self->running = g_hash_table_new(g_str_hash, g_str_equal);
        if (!make_dirs(cfg, error) || !open_registry(self, error))
                return NULL;
        self->forkd = vrot_fork_server_start(vtpm_path, sock, log, error);
        if (!self->forkd)
                return NULL;
        return g_steal_pointer(&self);
}

static VrotInstance *lookup(VrotInstances *self, const gchar *uuid, gboolean live, GError **error)
{
        VrotInstance *inst = vrot_registry_lookup(self->registry, uuid);

        if (!inst || (live && inst->deleted)) {
                fail(error, VROT_INSTANCES_ERROR_NOT_FOUND, "no instance %s", uuid);
                return NULL;
        }
        return inst;
}

/* Waits until @pid is gone (pidfd: works for processes that are not our
 * children, as workers are the fork server's); SIGKILL after the timeout. */
static void wait_gone(GPid pid)
{
        int fd = (int)syscall(SYS_pidfd_open, pid, 0);
        struct pollfd p = { .fd = fd, .events = POLLIN };

        if (fd < 0)
                return;                 /* already gone */
        if (poll(&p, 1, STOP_TIMEOUT_MS) <= 0) {
                g_warning("worker %d ignored SIGTERM for %d ms: killing it", (int)pid, STOP_TIMEOUT_MS);
                kill(pid, SIGKILL);
                (void)poll(&p, 1, STOP_TIMEOUT_MS);
        }
        close(fd);
}

static void running_free(Running *r)
{
        if (r->restart_source)
                g_source_remove(r->restart_source);
        vrot_worker_free(r->worker);
        g_free(r->uuid);
        g_free(r);
}

static gboolean spawn(VrotInstances *self, Running *r, GError **error);

static gboolean restart_now(gpointer data)
{
        Running *r = data;
        g_autoptr(GError) error = NULL;

        r->restart_source = 0;
        if (!spawn(r->owner, r, &error)) {
                g_warning("instance %s: restart failed: %s", r->uuid, error->message);
                g_hash_table_remove(r->owner->running, r->uuid);
                running_free(r);
        }
        return G_SOURCE_REMOVE;
}

static void on_worker_end(VrotWorker *w, gboolean signaled, gint code, gpointer data)
{
        Running *r = data;
        VrotInstances *self = r->owner;
        guint delay;

        (void)w;
        if (r->stopping)
                return;
        vrot_worker_free(g_steal_pointer(&r->worker));
        if (!signaled && (code == 0 || code == 3)) {
                /* 0: told to shut down (QEMU sends SHUTDOWN when the VM ends);
                 * 3: its state was refused, which a restart would not change. */
                if (code == 0)
                        g_message("instance %s: worker shut down: stopped", r->uuid);
                else
                        g_warning("instance %s: state refused by its worker (exit 3): not restarted", r->uuid);
                g_hash_table_remove(self->running, r->uuid);
                running_free(r);
                return;
        }
        delay = MIN(1u << MIN(r->failures, 6u), (guint)MAX_BACKOFF_S);
        r->failures++;
        g_warning("instance %s: worker ended (%s %d): restarting in %u s", r->uuid,
                  signaled ? "signal" : "exit", code, delay);
        r->restart_source = g_timeout_add_seconds(delay, restart_now, r);
}

/* A worker that ended before listening: when its log says it refused its
 * state (exit 3), that is the error, with the worker's reason. */
static gboolean refused_or_failed(const gchar *uuid, const gchar *log, GError **error)
{
        g_autofree gchar *text = NULL;
        const gchar *at;

        if (error && *error && g_error_matches(*error, VROT_FORK_ERROR, VROT_FORK_ERROR_WORKER_EXITED) &&
            g_file_get_contents(log, &text, NULL, NULL) && (at = g_strrstr(text, "refusing to start: "))) {
                g_autofree gchar *reason = g_strndup(at, strcspn(at, "\n"));
                g_clear_error(error);
                return fail(error, VROT_INSTANCES_ERROR_REFUSED, "instance %s: %s", uuid, reason);
        }
        g_prefix_error(error, "instance %s: ", uuid);
        return FALSE;
}

static gboolean spawn(VrotInstances *self, Running *r, GError **error)
{
        VrotInstance *inst = lookup(self, r->uuid, TRUE, error);
        g_autofree gchar *dir = inst ? state_dir(self, r->uuid) : NULL;
        g_autofree gchar *rundir = g_build_filename(self->cfg->runtime_dir, r->uuid, NULL);
        g_autofree gchar *ctrl = run_path(self, r->uuid, "ctrl.sock");
        g_autofree gchar *data = run_path(self, r->uuid, "data.sock");
        g_autofree gchar *data_ctrl = run_path(self, r->uuid, "data.sock.ctrl");
        g_autofree gchar *log = run_path(self, r->uuid, "worker.log");
        g_autoptr(VrotSecret) key = NULL;
        guint8 raw[16];
        VrotWorkerSpec spec = { 0 };
        int key_fd;

        if (!inst)
                return FALSE;
        if (g_mkdir_with_parents(rundir, 0755) < 0)
                return fail(error, VROT_INSTANCES_ERROR_FAILED, "%s: %s", rundir, g_strerror(errno));
        vrot_uuid_parse(r->uuid, raw, NULL);
        if (!vrot_instkey_derive(vrot_host_master(self->host), inst->salt, raw, &key, error) ||
            (key_fd = vrot_instkey_pipe(key, error)) < 0)
                return FALSE;
        spec = (VrotWorkerSpec){ .uuid = r->uuid, .state_dir = dir, .ctrl_path = ctrl, .log_path = log,
                                 .runas = self->cfg->worker_user, .min_generation = inst->generation };
        if (inst->kind == VROT_INSTANCE_SERVICE) {
                /* tpm2-tss's swtpm TCTI finds the control socket at DATA.ctrl. */
                spec.data_path = data;
                spec.not_need_init = TRUE;
                (void)unlink(data_ctrl);
                if (symlink("ctrl.sock", data_ctrl) < 0 && errno != EEXIST)
                        g_warning("%s: %s", data_ctrl, g_strerror(errno));
        }
        r->worker = vrot_fork_server_spawn(self->forkd, &spec, key_fd, START_TIMEOUT_MS, on_worker_end, r,
                                           error);
        close(key_fd);
        if (!r->worker)
                return refused_or_failed(r->uuid, log, error);
        return TRUE;
}

gboolean vrot_instances_start(VrotInstances *self, const gchar *uuid, GError **error)
{
        Running *r;

        if (!lookup(self, uuid, TRUE, error))
                return FALSE;
        r = g_hash_table_lookup(self->running, uuid);
        if (r && r->worker)
                return TRUE;            /* idempotent */
        if (r) {
                /* Waiting out a restart back-off: start now instead. */
                g_clear_handle_id(&r->restart_source, g_source_remove);
                return spawn(self, r, error);
        }
        r = g_new0(Running, 1);
        r->owner = self;
        r->uuid = g_strdup(uuid);
        if (!spawn(self, r, error)) {
                running_free(r);
                return FALSE;
        }
        g_hash_table_insert(self->running, r->uuid, r);
        g_message("instance %s: started (pid %d)", uuid, (int)vrot_worker_pid(r->worker));
        return TRUE;
}

/* Stops a running worker (if any) and records its state's generation. */
static gboolean stop_worker(VrotInstances *self, const gchar *uuid, GError **error)
{
        Running *r = g_hash_table_lookup(self->running, uuid);
        VrotInstance *inst = vrot_registry_lookup(self->registry, uuid);
        guint64 gen;

        if (r) {
                r->stopping = TRUE;
                if (r->worker) {
                        GPid pid = vrot_worker_pid(r->worker);
                        kill(pid, SIGTERM);
                        wait_gone(pid);
                }
                g_hash_table_remove(self->running, uuid);
                running_free(r);
        }
        gen = state_generation(self, uuid);
        if (inst && gen > inst->generation) {
                inst->generation = gen;
                return save(self, error);
        }
        return TRUE;
}

gboolean vrot_instances_stop(VrotInstances *self, const gchar *uuid, GError **error)
{
        if (!lookup(self, uuid, TRUE, error) || !stop_worker(self, uuid, error))
                return FALSE;
        g_message("instance %s: stopped", uuid);
        return TRUE;
}

static gboolean save_certs(VrotInstances *self, const gchar *uuid, VrotEndorsement *e, GError **error)
{
        static const gchar *const names[VROT_ENDORSE_N_EK] = { "rsa", "ecc" };

        for (gsize i = 0; i < VROT_ENDORSE_N_EK; i++) {
                g_autofree gchar *path = cert_path(self, uuid, names[i]);
                g_autofree gchar *pem = vrot_x509_to_pem(e->ek[i].cert, error);
                if (!pem || !g_file_set_contents_full(path, pem, -1, G_FILE_SET_CONTENTS_CONSISTENT,
                                                      0644, error))
                        return FALSE;
        }
        return TRUE;
}

/* First start of a new vTPM: run it with a data socket (as a service, its
 * TPM starts at once), create and endorse its EKs, stop it. */
static gboolean manufacture(VrotInstances *self, VrotInstance *inst, GError **error)
{
        g_autofree gchar *data = run_path(self, inst->uuid, "data.sock");
        g_autofree gchar *tcti = g_strdup_printf("swtpm:path=%s", data);
        g_autoptr(VrotEndorsement) e = NULL;
        g_autoptr(GError) stop_error = NULL;
        VrotInstanceKind kind = inst->kind;
        VrotEndorseParams params = { .host_attestation_uri = "urn:vrot:host-attestation" };
        gboolean ok;

        inst->kind = VROT_INSTANCE_SERVICE;
        ok = vrot_instances_start(self, inst->uuid, error);
        inst->kind = kind;
        if (!ok)
                return FALSE;
        vrot_uuid_parse(inst->uuid, params.instance_uuid, NULL);
        ok = vrot_endorse_vtpm(tcti, vrot_host_ca_signer(self->host), &params, &e, error) &&
             save_certs(self, inst->uuid, e, error);
        if (!stop_worker(self, inst->uuid, &stop_error) && ok) {
                g_propagate_error(error, g_steal_pointer(&stop_error));
                return FALSE;
        }
        if (kind == VROT_INSTANCE_VM) {
                g_autofree gchar *data_ctrl = run_path(self, inst->uuid, "data.sock.ctrl");
                (void)unlink(data_ctrl);        /* a VM's TPM has no data socket */
        }
        return ok;
}

/* Names end up in logs and listings: no control characters (log forgery). */
static gboolean valid_name(const gchar *name)
{
        if (!name || !*name || strlen(name) > 64 || !g_utf8_validate(name, -1, NULL))
                return FALSE;
        for (const gchar *p = name; *p; p = g_utf8_next_char(p))
                if (g_unichar_iscntrl(g_utf8_get_char(p)))
                        return FALSE;
        return TRUE;
}

gboolean vrot_instances_create(VrotInstances *self, const gchar *uuid, VrotInstanceKind kind,
                               const gchar *name, uid_t owner, gchar **ret_uuid, GError **error)
{
        g_autoptr(VrotInstance) inst = g_new0(VrotInstance, 1);
        g_autofree gchar *dir = NULL;
        guint8 raw[16];
        gchar canon[VROT_UUID_STR_LEN + 1];
        VrotInstance *entry;

        if (uuid) {
                if (vrot_uuid_parse(uuid, raw, NULL) < 0)
                        return fail(error, VROT_INSTANCES_ERROR_INVALID, "'%s' is not a UUID", uuid);
                vrot_uuid_format(raw, canon);
        } else {
                g_autofree gchar *fresh = g_uuid_string_random();
                g_strlcpy(canon, fresh, sizeof(canon));
        }
        if (!valid_name(name))
                return fail(error, VROT_INSTANCES_ERROR_INVALID,
                            "a name is 1 to 64 bytes of printable UTF-8, without control characters");
        if (vrot_registry_lookup(self->registry, canon))
                return fail(error, VROT_INSTANCES_ERROR_EXISTS,
                            vrot_registry_lookup(self->registry, canon)->deleted
                            ? "instance %s was deleted; its UUID cannot be reused" : "instance %s exists",
                            canon);
        inst->uuid = g_strdup(canon);
        inst->name = g_strdup(name);
        inst->kind = kind;
        inst->owner = owner;
        inst->created = g_get_real_time() / G_USEC_PER_SEC;
        dir = state_dir(self, canon);
        if (!vrot_instkey_new_salt(inst->salt, error))
                return FALSE;
        if (g_mkdir_with_parents(dir, 0700) < 0)
                return fail(error, VROT_INSTANCES_ERROR_FAILED, "%s: %s", dir, g_strerror(errno));
        if (!vrot_registry_add(self->registry, g_steal_pointer(&inst), error) || !save(self, error))
                return FALSE;
        entry = vrot_registry_lookup(self->registry, canon);
        if (!manufacture(self, entry, error)) {
                g_prefix_error(error, "manufacturing %s: ", canon);
                return FALSE;           /* the entry stays: delete cleans up */
        }
        g_message("instance %s: created (%s, \"%s\", owner %u)", canon,
                  kind == VROT_INSTANCE_VM ? "vm" : "service", name, (unsigned)owner);
        *ret_uuid = g_strdup(canon);
        return TRUE;
}

static void wipe_dir(const gchar *dir)
{
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const gchar *name;

        while (d && (name = g_dir_read_name(d))) {
                g_autofree gchar *path = g_build_filename(dir, name, NULL);
                if (unlink(path) < 0)
                        g_warning("%s: %s", path, g_strerror(errno));
        }
        if (rmdir(dir) < 0 && errno != ENOENT)
                g_warning("%s: %s", dir, g_strerror(errno));
}

gboolean vrot_instances_delete(VrotInstances *self, const gchar *uuid, GError **error)
{
        VrotInstance *inst = lookup(self, uuid, TRUE, error);
        g_autofree gchar *dir = NULL, *rsa = NULL, *ecc = NULL, *rundir = NULL;
        guint64 counter = 0;

        if (!inst || !stop_worker(self, uuid, error))
                return FALSE;
        dir = state_dir(self, uuid);
        rsa = cert_path(self, uuid, "rsa");
        ecc = cert_path(self, uuid, "ecc");
        rundir = g_build_filename(self->cfg->runtime_dir, uuid, NULL);
        wipe_dir(dir);
        wipe_dir(rundir);
        (void)unlink(rsa);
        (void)unlink(ecc);
        /* A checkpoint that must not be undone: the host TPM counter moves. */
        if (!vrot_host_tpm_counter_increment(vrot_host_tpm(self->host), &counter, error))
                return FALSE;
        inst->deleted = TRUE;
        vrot_registry_set_checkpoint(self->registry, counter);
        if (!save(self, error))
                return FALSE;
        g_message("instance %s: deleted (tombstone kept, checkpoint %" G_GUINT64_FORMAT ")", uuid, counter);
        return TRUE;
}

gboolean vrot_instances_status(VrotInstances *self, const gchar *uuid, VrotInstanceStatus *ret,
                               GError **error)
{
        VrotInstance *inst = lookup(self, uuid, FALSE, error);
        Running *r;

        if (!inst)
                return FALSE;
        r = g_hash_table_lookup(self->running, uuid);
        *ret = (VrotInstanceStatus){ .entry = inst };
        ret->running = r && r->worker;
        ret->pid = ret->running ? vrot_worker_pid(r->worker) : 0;
        ret->ctrl_path = run_path(self, uuid, "ctrl.sock");
        if (inst->kind == VROT_INSTANCE_SERVICE)
                ret->data_path = run_path(self, uuid, "data.sock");
        return TRUE;
}

void vrot_instances_status_clear(VrotInstanceStatus *st)
{
        g_clear_pointer(&st->ctrl_path, g_free);
        g_clear_pointer(&st->data_path, g_free);
}

GPtrArray *vrot_instances_list(VrotInstances *self)
{
        GPtrArray *all = vrot_registry_list(self->registry);
        GPtrArray *uuids = g_ptr_array_new_with_free_func(g_free);

        for (guint i = 0; i < all->len; i++)
                g_ptr_array_add(uuids, g_strdup(((VrotInstance *)all->pdata[i])->uuid));
        g_ptr_array_unref(all);
        return uuids;
}

gchar *vrot_instances_ek_cert_pem(VrotInstances *self, const gchar *uuid, const gchar *type,
                                  GError **error)
{
        g_autofree gchar *path = NULL;
        gchar *pem = NULL;

        if (!lookup(self, uuid, TRUE, error))
                return NULL;
        path = cert_path(self, uuid, type);
        if (!g_file_get_contents(path, &pem, NULL, NULL))
                fail(error, VROT_INSTANCES_ERROR_NOT_FOUND, "instance %s has no %s EK certificate", uuid, type);
        return pem;
}

guint vrot_instances_n_running(VrotInstances *self)
{
        GHashTableIter it;
        gpointer v;
        guint n = 0;

        g_hash_table_iter_init(&it, self->running);
        while (g_hash_table_iter_next(&it, NULL, &v))
                n += ((Running *)v)->worker != NULL;
        return n;
}

void vrot_instances_stop_all(VrotInstances *self)
{
        g_autoptr(GList) uuids = g_hash_table_get_keys(self->running);

        for (GList *l = uuids; l; l = l->next) {
                g_autofree gchar *uuid = g_strdup(l->data);
                g_autoptr(GError) error = NULL;
                if (!stop_worker(self, uuid, &error))
                        g_warning("instance %s: %s", uuid, error->message);
        }
}

void vrot_instances_free(VrotInstances *self)
{
        if (!self)
                return;
        if (self->running) {
                GHashTableIter it;
                gpointer v;
                g_hash_table_iter_init(&it, self->running);
                while (g_hash_table_iter_next(&it, NULL, &v))
                        running_free(v);
                g_hash_table_unref(self->running);
        }
        vrot_fork_server_free(self->forkd);
        vrot_registry_free(self->registry);
        g_free(self->registry_path);
        g_free(self->vtpm_path);
        g_free(self);
}
