/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "autoptr.h"
#include "durable.h"
#include "endorse.h"
#include "fault.h"
#include "hex.h"
#include "mbundle.h"
#include "mkey.h"
#include "forkclient.h"
#include "instances.h"
#include "instkey.h"
#include "pidfile.h"
#include "proc.h"
#include "pool.h"
#include "seal.h"
#include "store.h"
#include "uuid.h"
#include "workeruser.h"

G_DEFINE_QUARK(vrot-instances-error-quark, vrot_instances_error)

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000
#define MAX_BACKOFF_S 60
/* A worker that served this long before it crashed starts again at once:
 * only crash loops back off (1, 2, 4 ... MAX_BACKOFF_S s). */
#define STABLE_USEC (30 * G_USEC_PER_SEC)
/* How long a start waits for the report of a worker found gone. */
#define SETTLE_MS 500

/* Someone waiting for a start to finish (an API call). */
typedef struct Waiter {
        VrotInstancesStartFunc fn;
        gpointer data;
} Waiter;

typedef struct Running {
        VrotInstances *owner;
        gchar *uuid;
        VrotWorker *worker;             /* NULL while waiting out a back-off */
        gboolean ready;                 /* its control socket listens */
        gboolean stopping;              /* we asked it to end */
        guint restart_source;
        guint failures;                 /* consecutive unexpected ends */
        gint64 ready_since;             /* monotonic time it last became ready */
        GArray *waiters;                /* Waiter, until ready or failed */
} Running;

struct VrotInstances {
        VrotHost *host;                 /* transfer none */
        const VrotConfig *cfg;          /* transfer none */
        gchar *vtpm_path;
        gchar *registry_path;
        VrotRegistry *registry;
        VrotForkServer *forkd;
        VrotPool *pool;                 /* pre-manufactured vTPMs (pool.h) */
        VrotWorkerUser *wuser;          /* [daemon] worker-user, NULL: none */
        GHashTable *running;            /* uuid -> Running */
        VrotRegistryWrite *staged;      /* the registry as it is, staged by
                                         * create_warm(): save() commits it */
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

/* A certificate's file name in the certificate directory: @kind "ek-rsa",
 * "ek-ecc" or "ak" (a service vTPM's attestation key, docs/attestation.md). */
static gchar *cert_name(const gchar *uuid, const gchar *kind)
{
        return g_strdup_printf("%s-%s.pem", uuid, kind);
}

#define CERT_MODE 0644
static const gchar *const ek_cert_kinds[VROT_ENDORSE_N_EK] = { "ek-rsa", "ek-ecc" };

/* STATE/certs, where every certificate file is. */
static gchar *certs_dir(VrotInstances *self)
{
        return g_build_filename(self->cfg->state_dir, "certs", NULL);
}

/* The path of @uuid's certificate of @kind (cert_name()). */
static gchar *cert_file(VrotInstances *self, const gchar *uuid, const gchar *kind)
{
        g_autofree gchar *dir = certs_dir(self);
        g_autofree gchar *name = cert_name(uuid, kind);

        return g_build_filename(dir, name, NULL);
}

/* The path of @uuid's EK certificate of @type, "rsa" or "ecc". */
static gchar *cert_path(VrotInstances *self, const gchar *uuid, const gchar *type)
{
        g_autofree gchar *kind = g_strconcat("ek-", type, NULL);

        return cert_file(self, uuid, kind);
}

/*
 * @n certificates of @uuid into the certificate directory, cert_name() of
 * each of @kinds (a NULL or empty PEM is skipped): each file replaced
 * durably, then the directory synced once for all (R-SEAL-4; GLib's
 * consistent write syncs no directory).
 *
 * @in_place is for a new instance whose files were made empty under
 * their names beforehand, by a thread that also syncs the directory
 * (create_warm()): each is written over (vrot_durable_put()), with no
 * rename and no fsync of the directory here; one not there yet is replaced
 * as above.  Nothing of it counts before the registry lists the
 * instance, after that thread has ended.
 */
static gboolean write_certs(VrotInstances *self, const gchar *uuid, const gchar *const *kinds,
                            const gchar *const *pems, gsize n, gboolean in_place, GError **error)
{
        g_autofree gchar *dir = certs_dir(self);
        VrotError verr = { 0 };
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        bool dir_changed = false;
        int r = 0;

        if (dfd < 0)
                return fail(error, VROT_INSTANCES_ERROR_FAILED, "opening %s: %s", dir,
                            g_strerror(errno));
        for (gsize i = 0; r == 0 && i < n; i++) {
                g_autofree gchar *name = cert_name(uuid, kinds[i]);
                gsize len = pems[i] ? strlen(pems[i]) : 0;

                if (len == 0)
                        continue;
                if (in_place) {
                        r = vrot_durable_put(dfd, name, pems[i], len, CERT_MODE, 0, &dir_changed,
                                             &verr);
                } else {
                        dir_changed = true;
                        r = vrot_durable_replace(dfd, name, pems[i], len, CERT_MODE, 0, &verr);
                }
        }
        if (r == 0 && dir_changed)
                r = vrot_durable_sync_dir(dfd, dir, &verr);
        close(dfd);
        if (r < 0)
                return fail(error, VROT_INSTANCES_ERROR_FAILED, "%s: %s", dir, verr.msg);
        return TRUE;
}

static gchar *run_path(VrotInstances *self, const gchar *uuid, const gchar *name)
{
        return g_build_filename(self->cfg->runtime_dir, uuid, name, NULL);
}

static gboolean save(VrotInstances *self, GError **error)
{
        if (self->staged)
                return vrot_registry_commit(g_steal_pointer(&self->staged), error);
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

/* SIGTERM (the worker saves its state), SIGKILL if it does not end. */
static void stop_pid(GPid pid)
{
        if (!vrot_proc_stop(pid, SIGTERM, STOP_TIMEOUT_MS))
                g_warning("worker %d ignored SIGTERM for %d ms: killed it", (int)pid, STOP_TIMEOUT_MS);
}

static Running *running_new(VrotInstances *self, const gchar *uuid);
static void on_worker_end(VrotWorker *w, gboolean signaled, gint code, gpointer data);
static void record_pid(VrotInstances *self, const gchar *uuid, GPid pid);

/*
 * After a crash (kill -9) of the previous daemon, its fork server still
 * runs and parents its workers: QEMU keeps its TPM.  Take them over; a
 * worker of an instance the registry does not know as live is stopped.
 * FALSE when there is no server to adopt.
 */
static gboolean adopt_workers(VrotInstances *self, const gchar *sock, const gchar *log)
{
        g_autoptr(GHashTable) workers = NULL;
        g_autoptr(GError) local = NULL;
        GHashTableIter it;
        gpointer k, v;

        self->forkd = vrot_fork_server_adopt(self->vtpm_path, sock, log, &workers, &local);
        if (!self->forkd)
                return FALSE;
        g_message("adopting the fork server (pid %d) of a previous vrotd with %u workers",
                  (int)vrot_fork_server_pid(self->forkd), g_hash_table_size(workers));
        g_hash_table_iter_init(&it, workers);
        while (g_hash_table_iter_next(&it, &k, &v)) {
                const VrotInstance *inst = vrot_registry_lookup(self->registry, k);
                GPid pid = GPOINTER_TO_INT(v);
                VrotWorker *w;
                Running *r;

                if (!inst || inst->deleted || g_hash_table_contains(self->running, k)) {
                        g_warning("worker %d serves %s, which is not a live instance: stopping it", (int)pid,
                                  (const gchar *)k);
                        kill(pid, SIGTERM);
                        continue;
                }
                w = vrot_fork_server_watch(self->forkd, pid, &local);
                if (!w) {
                        g_warning("instance %s: cannot adopt worker %d: %s", inst->uuid, (int)pid, local->message);
                        g_clear_error(&local);
                        continue;
                }
                r = running_new(self, inst->uuid);
                r->worker = w;
                r->ready = TRUE;
                r->ready_since = g_get_monotonic_time();
                vrot_worker_watch(w, 0, NULL, on_worker_end, r);
                /* Our predecessor may have been killed before it wrote the
                 * PID file (it does once the worker is ready): without it,
                 * stop_orphans() would not find the worker should this
                 * daemon and the fork server be killed too. */
                record_pid(self, inst->uuid, pid);
                g_message("instance %s: adopted running worker %d", inst->uuid, (int)pid);
        }
        return TRUE;
}

/*
 * No fork server to adopt, yet a worker may have outlived both it and the
 * previous daemon (each killed).  It holds its state directory, so a new
 * worker could not start: stop it (it saves its state) and start it again
 * through our own fork server.  Returns (transfer full) their UUIDs.
 */
static GPtrArray *stop_orphans(VrotInstances *self)
{
        g_autoptr(GPtrArray) all = vrot_registry_list(self->registry);
        GPtrArray *stopped = g_ptr_array_new_with_free_func(g_free);

        for (guint i = 0; i < all->len; i++) {
                const VrotInstance *inst = all->pdata[i];
                g_autofree gchar *pidfile = run_path(self, inst->uuid, "worker.pid");
                GPid pid = vrot_pidfile_live(pidfile);

                if (pid <= 0)
                        continue;
                g_warning("instance %s: worker %d outlived its fork server and the previous vrotd: "
                          "stopping it to start it again", inst->uuid, (int)pid);
                stop_pid(pid);
                if (!inst->deleted)
                        g_ptr_array_add(stopped, g_strdup(inst->uuid));
        }
        return stopped;
}

static void on_resumed(const gchar *uuid, const GError *error, gpointer data)
{
        (void)data;
        if (error)
                g_warning("instance %s: not started again: %s", uuid, error->message);
}

/* Starts the instances in @uuids again (they were running before). */
static void resume(VrotInstances *self, GPtrArray *uuids)
{
        for (guint i = 0; uuids && i < uuids->len; i++) {
                const VrotInstance *inst = vrot_registry_lookup(self->registry, uuids->pdata[i]);
                if (inst && !inst->deleted)
                        vrot_instances_start_async(self, inst->uuid, on_resumed, NULL);
        }
}

static gchar *resume_path(VrotInstances *self)
{
        return g_build_filename(self->cfg->runtime_dir, "resume", NULL);
}

/* A clean shutdown (SIGTERM) stopped every worker and wrote down which
 * ran; they run again now.  The list lives in the runtime directory, so
 * a reboot forgets it: after a reboot libvirt and the orchestrator decide. */
static void resume_after_shutdown(VrotInstances *self)
{
        g_autofree gchar *path = resume_path(self);
        g_autofree gchar *text = NULL;
        g_auto(GStrv) lines = NULL;
        g_autoptr(GPtrArray) uuids = g_ptr_array_new();

        if (!g_file_get_contents(path, &text, NULL, NULL))
                return;
        (void)unlink(path);
        lines = g_strsplit(text, "\n", 0);
        for (gchar **l = lines; *l; l++)
                if (**l)
                        g_ptr_array_add(uuids, *l);
        g_message("starting again the %u instances that ran at the last shutdown", uuids->len);
        resume(self, uuids);
}

static void recover_migrations(VrotInstances *self);

static gboolean save_registry(gpointer data, GError **error)
{
        return save(data, error);
}

/* The pool of pre-manufactured vTPMs: STATE/pool, RUNTIME/pool. */
static gboolean open_pool(VrotInstances *self, GError **error)
{
        g_autofree gchar *state = g_build_filename(self->cfg->state_dir, "pool", NULL);
        g_autofree gchar *run = g_build_filename(self->cfg->runtime_dir, "pool", NULL);
        VrotPoolParams p = { .state_dir = state, .runtime_dir = run,
                             .worker_user = self->wuser, .size = self->cfg->pool_size,
                             .master = vrot_host_master(self->host), .forkd = self->forkd,
                             .registry = self->registry, .save = save_registry, .save_data = self,
                             .warm = TRUE };

        self->pool = vrot_pool_new(&p, error);
        return self->pool != NULL;
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
        if (vrot_config_worker_user(cfg) &&
            !(self->wuser = vrot_worker_user_lookup(vrot_config_worker_user(cfg), error))) {
                if (!cfg->worker_user)
                        g_prefix_error(error, "the default worker user is missing (create it: "
                                       "systemd-sysusers with the sysusers.d/vrot.conf vrot "
                                       "installs, or useradd --system %s; or name another, or "
                                       "root, in vrotd.conf [daemon] worker-user): ",
                                       VROT_CONFIG_WORKER_USER_DEFAULT);
                return NULL;
        }
        if (!make_dirs(cfg, error) || !open_registry(self, error))
                return NULL;
        if (!adopt_workers(self, sock, log)) {
                g_autoptr(GPtrArray) orphans = stop_orphans(self);
                self->forkd = vrot_fork_server_start(vtpm_path, sock, log, error);
                if (!self->forkd)
                        return NULL;
                resume(self, orphans);
        }
        resume_after_shutdown(self);
        recover_migrations(self);
        if (!open_pool(self, error))
                return NULL;
        return g_steal_pointer(&self);
}

/* Refused while a migration holds @uuid: a source that may have sent its
 * state, or a destination copy the source has not committed (R-MIG-3). */
static gboolean not_migrating(VrotInstances *self, const gchar *uuid, GError **error)
{
        VrotMigrationRecord *m = vrot_registry_migration_of(self->registry, uuid);

        if (!m)
                return TRUE;
        return fail(error, VROT_INSTANCES_ERROR_REFUSED,
                    "instance %s is in migration %s (%s, %s %s): it cannot start or be deleted "
                    "until the migration ends", uuid, m->id, vrot_migration_state_name(m->state),
                    vrot_migration_state_outgoing(m->state) ? "to" : "from", m->peer_name);
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
static Running *running_new(VrotInstances *self, const gchar *uuid)
{
        Running *r = g_new0(Running, 1);

        r->owner = self;
        r->uuid = g_strdup(uuid);
        r->waiters = g_array_new(FALSE, FALSE, sizeof(Waiter));
        g_hash_table_insert(self->running, r->uuid, r);
        return r;
}

/* Tells everyone waiting for the start how it went (@error NULL: ready). */
static void answer_waiters(Running *r, const GError *error)
{
        g_autoptr(GArray) waiters = g_steal_pointer(&r->waiters);

        r->waiters = g_array_new(FALSE, FALSE, sizeof(Waiter));
        for (guint i = 0; i < waiters->len; i++) {
                Waiter *wt = &g_array_index(waiters, Waiter, i);
                wt->fn(r->uuid, error, wt->data);
        }
}

/* Forgets a running entry; its waiters hear @why (nullable: "stopped"). */
static void running_drop(Running *r, const GError *why)
{
        g_autoptr(GError) stopped = NULL;

        g_hash_table_remove(r->owner->running, r->uuid);
        if (r->waiters->len > 0) {
                if (!why)
                        why = stopped = g_error_new(VROT_INSTANCES_ERROR, VROT_INSTANCES_ERROR_FAILED,
                                                    "instance %s was stopped while starting", r->uuid);
                answer_waiters(r, why);
        }
        g_clear_handle_id(&r->restart_source, g_source_remove);
        vrot_worker_free(r->worker);
        g_array_unref(r->waiters);
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
                running_drop(r, error);
        }
        return G_SOURCE_REMOVE;
}

/* An unexpected end: try again after a back-off that doubles up to 60 s. */
static void schedule_restart(Running *r, const gchar *why)
{
        guint delay;

        if (r->ready && g_get_monotonic_time() - r->ready_since >= STABLE_USEC)
                r->failures = 0;
        delay = r->failures ? MIN(1u << MIN(r->failures - 1, 6u), (guint)MAX_BACKOFF_S) : 0;
        vrot_worker_free(g_steal_pointer(&r->worker));
        r->ready = FALSE;
        r->failures++;
        g_warning("instance %s: worker %s: restarting in %u s", r->uuid, why, delay);
        r->restart_source = delay ? g_timeout_add_seconds(delay, restart_now, r)
                                  : g_idle_add(restart_now, r);
}

static void on_worker_end(VrotWorker *w, gboolean signaled, gint code, gpointer data)
{
        Running *r = data;
        g_autofree gchar *why = NULL;

        (void)w;
        if (r->stopping)
                return;
        if (!signaled && (code == 0 || code == 3)) {
                /* 0: told to shut down (QEMU sends SHUTDOWN when the VM ends);
                 * 3: its state was refused, which a restart would not change. */
                if (code == 0)
                        g_message("instance %s: worker shut down: stopped", r->uuid);
                else
                        g_warning("instance %s: state refused by its worker (exit 3): not restarted", r->uuid);
                running_drop(r, NULL);
                return;
        }
        why = g_strdup_printf("ended (%s %d)", signaled ? "signal" : "exit", code);
        schedule_restart(r, why);
}

/* A worker that refused its state (exit 3): the error carries the
 * worker's reason, from its log. */
static GError *start_error(const gchar *uuid, const gchar *log, const GError *error)
{
        g_autofree gchar *text = NULL;
        const gchar *at;

        if (!g_error_matches(error, VROT_FORK_ERROR, VROT_FORK_ERROR_REFUSED))
                return g_error_new(VROT_INSTANCES_ERROR, VROT_INSTANCES_ERROR_FAILED, "instance %s: %s",
                                   uuid, error->message);
        if (g_file_get_contents(log, &text, NULL, NULL) && (at = g_strrstr(text, "refusing to start: "))) {
                g_autofree gchar *reason = g_strndup(at, strcspn(at, "\n"));
                return g_error_new(VROT_INSTANCES_ERROR, VROT_INSTANCES_ERROR_REFUSED, "instance %s: %s",
                                   uuid, reason);
        }
        return g_error_new(VROT_INSTANCES_ERROR, VROT_INSTANCES_ERROR_REFUSED, "instance %s: %s", uuid,
                           error->message);
}

static void record_pid(VrotInstances *self, const gchar *uuid, GPid pid)
{
        g_autofree gchar *path = run_path(self, uuid, "worker.pid");
        g_autoptr(GError) error = NULL;

        if (!vrot_pidfile_write(path, pid, &error))
                g_warning("instance %s: %s", uuid, error->message);
}

static void on_worker_ready(VrotWorker *w, const GError *error, gpointer data)
{
        Running *r = data;
        g_autofree gchar *log = NULL;
        g_autoptr(GError) why = NULL;

        if (!error) {
                r->ready = TRUE;
                r->ready_since = g_get_monotonic_time();
                record_pid(r->owner, r->uuid, vrot_worker_pid(w));
                g_message("instance %s: started (pid %d)", r->uuid, (int)vrot_worker_pid(w));
                answer_waiters(r, NULL);
                return;
        }
        log = run_path(r->owner, r->uuid, "worker.log");
        why = start_error(r->uuid, log, error);
        g_warning("%s", why->message);
        /* Someone is waiting: the start failed, tell them.  A restart after
         * a crash that fails the same way backs off again, unless the state
         * was refused: a restart would not change that. */
        if (r->waiters->len > 0 || g_error_matches(why, VROT_INSTANCES_ERROR, VROT_INSTANCES_ERROR_REFUSED))
                running_drop(r, why);
        else
                schedule_restart(r, "failed to start");
}

/* The worker's spec, with its state key on a pipe (*@ret_key_fd). */
static gboolean prepare(VrotInstances *self, const VrotInstance *inst, gboolean as_service,
                        VrotWorkerSpec *spec, gchar **owned, int *ret_key_fd, GError **error)
{
        g_autofree gchar *rundir = g_build_filename(self->cfg->runtime_dir, inst->uuid, NULL);
        g_autofree gchar *sdir = state_dir(self, inst->uuid);
        g_autoptr(VrotSecret) key = NULL;
        guint8 raw[16];

        if (!vrot_worker_user_make_dir(self->wuser, rundir, 0755, error) ||
            !vrot_worker_user_make_dir(self->wuser, sdir, 0700, error))
                return FALSE;
        vrot_uuid_parse(inst->uuid, raw, NULL);
        if (!vrot_instkey_derive(vrot_host_master(self->host), inst->salt, raw, &key, error) ||
            (*ret_key_fd = vrot_instkey_pipe(key, error)) < 0)
                return FALSE;
        owned[0] = state_dir(self, inst->uuid);
        owned[1] = run_path(self, inst->uuid, "ctrl.sock");
        owned[2] = run_path(self, inst->uuid, "data.sock");
        owned[3] = run_path(self, inst->uuid, "worker.log");
        owned[4] = run_path(self, inst->uuid, "migrate.sock");
        /* Stateblobs leave or enter only under a live migration's key. */
        *spec = (VrotWorkerSpec){ .uuid = inst->uuid, .state_dir = owned[0], .ctrl_path = owned[1],
                                  .log_path = owned[3], .migrate_path = owned[4],
                                  .runas = vrot_worker_user_name(self->wuser),
                                  .min_generation = inst->generation };
        if (as_service) {
                /* tpm2-tss's swtpm TCTI finds the control socket at DATA.ctrl. */
                g_autofree gchar *data_ctrl = run_path(self, inst->uuid, "data.sock.ctrl");
                spec->data_path = owned[2];
                spec->not_need_init = TRUE;
                (void)unlink(data_ctrl);
                if (symlink("ctrl.sock", data_ctrl) < 0 && errno != EEXIST)
                        g_warning("%s: %s", data_ctrl, g_strerror(errno));
        }
        return TRUE;
}

/* Starts the worker; it reports readiness and its end to @r. */
static gboolean spawn(VrotInstances *self, Running *r, GError **error)
{
        VrotInstance *inst = lookup(self, r->uuid, TRUE, error);
        g_auto(GStrv) owned = g_new0(gchar *, 6);
        VrotWorkerSpec spec;
        int key_fd = -1;

        if (!inst || !prepare(self, inst, inst->kind == VROT_INSTANCE_SERVICE, &spec, owned, &key_fd, error))
                return FALSE;
        r->worker = vrot_fork_server_spawn(self->forkd, &spec, key_fd, error);
        close(key_fd);
        if (!r->worker) {
                g_prefix_error(error, "instance %s: ", r->uuid);
                return FALSE;
        }
        r->ready = FALSE;
        vrot_worker_watch(r->worker, START_TIMEOUT_MS, on_worker_ready, on_worker_end, r);
        return TRUE;
}

static gboolean endorse_run(VrotInstances *self, VrotInstance *inst, VrotEndorseParams *params,
                            GError **error);

/* The first start after a live migration: before the VM's worker starts,
 * one run in which this host's CA issues the EK certificates again and
 * they replace the source host's in NV (as a cold migration does at once). */
static gboolean reendorse(VrotInstances *self, VrotInstance *inst, GError **error)
{
        VrotEndorseParams params = { .reissue = TRUE };

        if (!inst || !inst->reendorse)
                return TRUE;
        if (!endorse_run(self, inst, &params, error)) {
                g_prefix_error(error, "instance %s: issuing its EK certificates here after its live "
                               "migration: ", inst->uuid);
                return FALSE;
        }
        inst->reendorse = FALSE;
        if (!save(self, error))
                return FALSE;
        g_message("instance %s: EK certificates issued by this host after its live migration",
                  inst->uuid);
        return TRUE;
}

void vrot_instances_start_async(VrotInstances *self, const gchar *uuid, VrotInstancesStartFunc fn,
                                gpointer data)
{
        g_autoptr(GError) error = NULL;
        Waiter wt = { fn, data };
        Running *r;

        r = g_hash_table_lookup(self->running, uuid);
        /* A worker that ended on its own a moment ago (QEMU's SHUTDOWN)
         * may not be known to be gone yet: its end is taken first. */
        if (r && r->ready && r->worker && vrot_worker_settle(r->worker, SETTLE_MS))
                r = g_hash_table_lookup(self->running, uuid);
        if (r && r->ready && lookup(self, uuid, TRUE, NULL)) {
                fn(uuid, NULL, data);   /* idempotent: a prepared live migration's worker too */
                return;
        }
        if (!lookup(self, uuid, TRUE, &error) || !not_migrating(self, uuid, &error)) {
                fn(uuid, error, data);
                return;
        }
        if (r && r->ready) {
                fn(uuid, NULL, data);   /* idempotent */
                return;
        }
        if (r && r->worker) {
                g_array_append_val(r->waiters, wt);     /* starting already */
                return;
        }
        if (!r && !reendorse(self, vrot_registry_lookup(self->registry, uuid), &error)) {
                fn(uuid, error, data);
                return;
        }
        if (r) {
                /* Waiting out a restart back-off: start now instead. */
                g_clear_handle_id(&r->restart_source, g_source_remove);
        } else {
                r = running_new(self, uuid);
        }
        g_array_append_val(r->waiters, wt);
        if (!spawn(self, r, &error))
                running_drop(r, error);
}

static gboolean start_worker_now(VrotInstances *self, const VrotInstance *inst, gboolean manufacture,
                                 GError **error);

/* Starts a worker and waits for it here, outside the main loop (the first
 * start, which manufactures the vTPM). */
static gboolean start_now(VrotInstances *self, const VrotInstance *inst, GError **error)
{
        return start_worker_now(self, inst, TRUE, error);
}

/* Starts a worker and waits for it; @manufacture: as a service, writes
 * deferred to its end; else as a VM's (an incoming live migration's worker,
 * which waits for QEMU's stateblobs and INIT). */
static gboolean start_worker_now(VrotInstances *self, const VrotInstance *inst, gboolean manufacture,
                                 GError **error)
{
        g_auto(GStrv) owned = g_new0(gchar *, 6);
        g_autoptr(GError) local = NULL;
        VrotWorkerSpec spec;
        Running *r;
        int key_fd = -1;

        if (!prepare(self, inst, manufacture, &spec, owned, &key_fd, error))
                return FALSE;
        /* Manufacture changes the state a dozen times; a crash fails the
         * create anyway, so the worker writes it once, when it stops. */
        spec.defer_writes = manufacture;
        r = running_new(self, inst->uuid);
        r->worker = vrot_fork_server_spawn(self->forkd, &spec, key_fd, error);
        close(key_fd);
        if (r->worker)
                record_pid(self, inst->uuid, vrot_worker_pid(r->worker));
        if (r->worker && !vrot_worker_wait_ready(r->worker, START_TIMEOUT_MS, &local))
                g_propagate_error(error, start_error(inst->uuid, owned[3], local));
        else if (r->worker) {
                r->ready = TRUE;
                r->ready_since = g_get_monotonic_time();
                vrot_worker_watch(r->worker, 0, NULL, on_worker_end, r);
                return TRUE;
        }
        running_drop(r, NULL);
        return FALSE;
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
                        if (pid > 0)
                                stop_pid(pid);
                }
                running_drop(r, NULL);
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

/* @e's certificates of @uuid, by write_certs() (@in_place: see there). */
static gboolean save_certs(VrotInstances *self, const gchar *uuid, VrotEndorsement *e,
                           gboolean in_place, GError **error)
{
        gchar *pems[VROT_ENDORSE_N_EK] = { NULL };
        gboolean ok = TRUE;

        for (gsize i = 0; ok && i < VROT_ENDORSE_N_EK; i++)
                if (e->ek[i].cert_der)  /* else not asked for */
                        ok = (pems[i] = vrot_x509_der_to_pem(e->ek[i].cert_der, error)) != NULL;
        ok = ok && write_certs(self, uuid, ek_cert_kinds, (const gchar *const *)pems,
                               VROT_ENDORSE_N_EK, in_place, error);
        for (gsize i = 0; i < VROT_ENDORSE_N_EK; i++)
                g_free(pems[i]);
        return ok;
}

/* Where an endorsement's time went, at debug level. */
static void log_steps(const gchar *uuid, const VrotEndorsement *e)
{
        g_autoptr(GString) steps = g_string_new(NULL);
        gint64 total = 0;

        for (gsize i = 0; i < VROT_ENDORSE_N_STEPS; i++) {
                total += e->step_usec[i];
                g_string_append_printf(steps, " %s %.1f", vrot_endorse_step_name((VrotEndorseStep)i),
                                       e->step_usec[i] / 1000.0);
        }
        g_debug("instance %s: endorsed in %.1f ms:%s", uuid, total / 1000.0, steps->str);
}

/* What every endorsement of @inst's EKs says besides the vTPM's own facts. */
static void instance_params(const VrotInstance *inst, VrotEndorseParams *params)
{
        params->host_attestation_uri = "urn:vrot:host-attestation";
        vrot_uuid_parse(inst->uuid, params->instance_uuid, NULL);
}

/* Runs the vTPM with a data socket (as a service, its TPM starts at once),
 * endorses it by @params (creating its EKs, or certifying those it holds)
 * and stops it; its state must have been written. */
static gboolean endorse_run(VrotInstances *self, VrotInstance *inst, VrotEndorseParams *params,
                            GError **error)
{
        g_autofree gchar *data = run_path(self, inst->uuid, "data.sock");
        g_autofree gchar *tcti = g_strdup_printf("swtpm:path=%s", data);
        g_autoptr(VrotEndorsement) e = NULL;
        g_autoptr(GError) stop_error = NULL;
        guint64 before = state_generation(self, inst->uuid);   /* a pool entry's: > 0 */
        gboolean ok;

        instance_params(inst, params);
        if (!start_now(self, inst, error))
                return FALSE;
        ok = vrot_endorse_vtpm(tcti, vrot_host_ca_signer(self->host), params, &e, error);
        if (ok)
                log_steps(inst->uuid, e);
        ok = ok && save_certs(self, inst->uuid, e, FALSE, error);
        if (!stop_worker(self, inst->uuid, &stop_error) && ok) {
                g_propagate_error(error, g_steal_pointer(&stop_error));
                return FALSE;
        }
        if (ok && inst->generation <= before) {
                g_autofree gchar *log = run_path(self, inst->uuid, "worker.log");
                g_autofree gchar *said = vrot_worker_log_last_line(log);

                return fail(error, VROT_INSTANCES_ERROR_FAILED,
                            "the endorsed state of %s was not written%s%s", inst->uuid,
                            said ? ": " : " (see its worker.log)", said ? said : "");
        }
        if (inst->kind == VROT_INSTANCE_VM) {
                g_autofree gchar *data_ctrl = run_path(self, inst->uuid, "data.sock.ctrl");
                (void)unlink(data_ctrl);        /* a VM's TPM has no data socket */
        }
        return ok;
}

/* First start of a new vTPM: create (unless @premade: a pool entry's) and
 * endorse its EKs. */
static gboolean manufacture(VrotInstances *self, VrotInstance *inst, guint ek_mask, gboolean premade,
                            GError **error)
{
        VrotEndorseParams params = { .ek_mask = ek_mask, .premade = premade };

        return endorse_run(self, inst, &params, error);
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

/* The new instance's state from the pool, if it has an entry left. */
static gboolean take_premade(VrotInstances *self, const VrotInstance *inst, gboolean *ret_taken,
                             GError **error)
{
        g_autofree gchar *dir = state_dir(self, inst->uuid);
        g_autofree gchar *id = NULL;
        g_autoptr(VrotSecret) key = NULL;
        VrotSealer sealer = { 0 };

        vrot_uuid_parse(inst->uuid, sealer.uuid, NULL);
        if (!vrot_instkey_derive(vrot_host_master(self->host), inst->salt, sealer.uuid, &key, error))
                return FALSE;
        sealer.key = vrot_secret_data(key);
        if (!vrot_pool_take(self->pool, dir, &sealer, &id, error))
                return FALSE;
        if (id)
                g_debug("pool: entry %s taken for instance %s", id, inst->uuid);
        *ret_taken = id != NULL;
        return TRUE;
}

static void wipe_instance_files(VrotInstances *self, const gchar *uuid);
static int mkey_send(const gchar *path, const VrotMkeyRequest *req);
static gboolean mkey_answer(int fd, VrotMkeyAnswer *ret);

/* fsync() of directory @path: what was renamed in it stays so. */
static gboolean sync_dir(const gchar *path, GError **error)
{
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        gboolean ok = fd >= 0 && fsync(fd) == 0;

        if (!ok)
                (void)fail(error, VROT_INSTANCES_ERROR_FAILED, "syncing %s: %s", path, g_strerror(errno));
        if (fd >= 0)
                close(fd);
        return ok;
}

/* What create_warm() has done in a thread of its own while the
 * certificates are made and signed: the certificate files made, empty,
 * and their directory synced (an inode costs up to a millisecond here,
 * durable.h; the certificates are then written over them, write_certs()),
 * the renamed entry's two parent directories synced, and the registry
 * write that records the instance staged (NULL if it could not be: save()
 * then writes it whole). */
typedef struct {
        const gchar *certs_dir;
        gchar *certs[VROT_ENDORSE_N_EK];        /* names, NULL: not asked for */
        const gchar *dirs[3];
        GError *error;
        const VrotRegistry *registry;
        const gchar *registry_path;
        const guint8 *registry_key;
        VrotRegistryWrite *staged;
} Background;

static gpointer in_background(gpointer data)
{
        Background *bg = data;
        int dfd = open(bg->certs_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        /* A file there already (a create cut short by a crash left it)
         * is written over all the same. */
        for (gsize i = 0; dfd >= 0 && i < G_N_ELEMENTS(bg->certs); i++) {
                int fd = bg->certs[i] ? openat(dfd, bg->certs[i], O_WRONLY | O_CREAT | O_EXCL |
                                               O_CLOEXEC | O_NOFOLLOW, CERT_MODE) : -1;

                if (fd >= 0)
                        close(fd);
        }
        if (dfd >= 0)
                close(dfd);
        for (gsize i = 0; i < G_N_ELEMENTS(bg->dirs) && sync_dir(bg->dirs[i], &bg->error); i++)
                ;
        bg->staged = vrot_registry_stage(bg->registry, bg->registry_path, bg->registry_key, NULL);
        return NULL;
}

/*
 * The new instance from the pool's warm entry, when one is ready
 * (*@ret_used): the entry's directory becomes the instance's (a rename),
 * the EKs of its running vTPM are certified (endorse.h, the session's
 * second half), and its worker stores the certificates, seals the whole
 * state under the instance's key and UUID and ends (BIND, lib/mkey.h);
 * the entry is unlisted in the registry write that records the instance.
 * No worker starts and nothing is copied: the quickest create
 * (bench/README.md "create + endorse").
 *
 * Little waits for anything else.  While the certificates are made and
 * signed, a thread makes their files, empty, makes them and the rename
 * durable, and stages the registry write (registry.h), with the generation
 * the rebound state will have: one more than the entry's
 * (vrot_store_rebind()).  While the worker writes the state (over its
 * files in place), this writes the certificates over theirs.  Neither
 * renames, so neither syncs a directory.  Once the worker has answered
 * (its state is durable), save() commits the staged write: a rename and a
 * directory fsync.  Should the state's generation not be the one
 * predicted, the staged write is dropped and save() writes the registry
 * whole.
 *
 * A warm entry that fails (its worker, its vTPM, the signer) is discarded
 * with a warning and the create goes on without it (*@ret_used FALSE),
 * nothing of it left; only a registry that cannot be written fails the
 * create.
 */
static gboolean create_warm(VrotInstances *self, VrotInstance *inst, guint ek_mask,
                            gboolean *ret_used, GError **error)
{
        g_autofree gchar *dir = state_dir(self, inst->uuid);
        g_autofree gchar *parent = g_path_get_dirname(dir);
        g_autofree gchar *entry_parent = NULL, *id = NULL;
        g_autofree gchar *certs = certs_dir(self);
        g_autoptr(VrotSecret) key = NULL;
        g_autoptr(VrotEndorsement) e = NULL;
        g_autoptr(GError) why = NULL;
        VrotEndorseParams params = { .ek_mask = ek_mask, .premade = TRUE };
        VrotMkeyRequest req = { .op = VROT_MKEY_BIND };
        VrotMkeyAnswer ans = { 0 };
        VrotPoolWarm w;
        Background bg = { .certs_dir = certs, .registry = self->registry,
                          .registry_path = self->registry_path,
                          .registry_key = vrot_host_registry_key(self->host) };
        GThread *thread = NULL;
        gint64 t0 = g_get_monotonic_time();
        guint64 generation = 0;
        int fd = -1;
        gboolean ok;

        *ret_used = vrot_pool_claim_warm(self->pool, &w);
        if (!*ret_used)
                return TRUE;
        id = g_strdup(w.id);    /* w's strings end with the claim */
        entry_parent = g_path_get_dirname(w.dir);
        instance_params(inst, &params);
        memcpy(req.id, params.instance_uuid, sizeof(req.id));
        ok = vrot_instkey_derive(vrot_host_master(self->host), inst->salt, req.id, &key, &why);
        if (ok && rename(w.dir, dir) < 0)
                ok = fail(&why, VROT_INSTANCES_ERROR_FAILED, "moving it to %s: %s", dir,
                          g_strerror(errno));
        if (ok) {
                /* The registry as the commit will write it (staged below). */
                generation = state_generation(self, inst->uuid) + 1;
                inst->generation = generation;
                vrot_registry_pool_remove(self->registry, id);
                for (gsize i = 0; i < VROT_ENDORSE_N_EK; i++)
                        if (ek_mask == 0 || (ek_mask & (1u << i)))
                                bg.certs[i] = cert_name(inst->uuid, ek_cert_kinds[i]);
                bg.dirs[0] = certs;
                bg.dirs[1] = parent;
                bg.dirs[2] = entry_parent;
                if (!(thread = g_thread_try_new("vrotd-create", in_background, &bg, NULL)))
                        (void)in_background(&bg);       /* no thread: here, then */
        }
        ok = ok && vrot_endorse_session_finish(w.session, vrot_host_ca_signer(self->host), &params,
                                               &e, &why);
        if (ok) {
                log_steps(inst->uuid, e);
                /* The worker stores the certificates and evicts the EKs
                 * not asked for, which have none (endorse.h). */
                for (gsize i = 0; i < VROT_ENDORSE_N_EK; i++) {
                        guint8 bit = i == VROT_ENDORSE_EK_RSA ? VROT_MKEY_EK_RSA : VROT_MKEY_EK_ECC;
                        gsize len = 0;

                        if (!e->ek[i].cert_der) {
                                req.evict |= bit;
                                continue;
                        }
                        req.certs[req.n_certs].ek = bit;
                        req.certs[req.n_certs].der = g_bytes_get_data(e->ek[i].cert_der, &len);
                        req.certs[req.n_certs++].len = (guint16)MIN(len, G_MAXUINT16);
                }
                memcpy(req.key, vrot_secret_data(key), VROT_MKEY_KEY_LEN);
                fd = mkey_send(w.key_path, &req);
                OPENSSL_cleanse(&req, sizeof(req));
        }
        /* Closed once BIND is sent: the worker woke up for the close
         * before it could read BIND. */
        g_clear_pointer(&w.session, vrot_endorse_session_free);
        ok = ok && save_certs(self, inst->uuid, e, TRUE, &why);
        if (!mkey_answer(fd, &ans) || ans.result != 0)
                ok = ok && fail(&why, VROT_INSTANCES_ERROR_FAILED,
                                "its worker did not take BIND (0x%x)", ans.result);
        if (thread)
                g_thread_join(thread);
        for (gsize i = 0; i < VROT_ENDORSE_N_EK; i++)
                g_free(bg.certs[i]);
        if (bg.error && ok)
                ok = fail(&why, bg.error->code, "%s", bg.error->message);
        g_clear_error(&bg.error);
        if (ok && (inst->generation = state_generation(self, inst->uuid)) != generation) {
                g_debug("instance %s: state generation %" G_GUINT64_FORMAT ", not %" G_GUINT64_FORMAT
                        " as predicted; the registry is written again", inst->uuid,
                        inst->generation, generation);
                g_clear_pointer(&bg.staged, vrot_registry_abandon);
        }
        if (!ok) {
                g_warning("instance %s: pool entry %s failed and is discarded: %s", inst->uuid, id,
                          why->message);
                g_clear_pointer(&bg.staged, vrot_registry_abandon);
                inst->generation = 0;
                (void)vrot_pool_warm_done(self->pool, FALSE, NULL);
                wipe_instance_files(self, inst->uuid);
                *ret_used = FALSE;
                return TRUE;
        }
        vrot_fault_point("warm-bound");
        self->staged = g_steal_pointer(&bg.staged);
        if (!vrot_pool_warm_done(self->pool, TRUE, error)) {
                g_clear_pointer(&self->staged, vrot_registry_abandon);
                return FALSE;
        }
        g_debug("instance %s: made of pool entry %s in %.1f ms", inst->uuid, id,
                (g_get_monotonic_time() - t0) / 1000.0);
        return TRUE;
}

static void undo_create(VrotInstances *self, const gchar *uuid);

/* The new instance @inst without the warm entry: from a cold entry
 * (*@ret_premade), else made whole; undone on failure. */
static gboolean create_cold(VrotInstances *self, VrotInstance *inst, guint ek_mask,
                            gboolean *ret_premade, GError **error)
{
        g_autofree gchar *uuid = g_strdup(inst->uuid);     /* inst goes with an undo */
        g_autofree gchar *dir = state_dir(self, uuid);

        if (!vrot_worker_user_make_dir(self->wuser, dir, 0700, error)) {
                vrot_registry_forget(self->registry, uuid);
                return FALSE;
        }
        /* A cold entry saves the RSA EK's generation, the slow part; an
         * ECC-only vTPM is as quick to make whole (bench/README.md), and
         * would waste an entry's RSA key.  One registry write either way:
         * the pool's, or ours. */
        if (((ek_mask == 0 || (ek_mask & (1u << VROT_ENDORSE_EK_RSA))) &&
             !take_premade(self, inst, ret_premade, error)) ||
            (!*ret_premade && !save(self, error))) {
                undo_create(self, uuid);
                return FALSE;
        }
        if (!manufacture(self, inst, ek_mask, *ret_premade, error)) {
                g_prefix_error(error, "manufacturing %s: ", uuid);
                undo_create(self, uuid);
                return FALSE;
        }
        return TRUE;
}

static void wipe_dir(const gchar *dir);

/* Everything of @uuid on disk but its registry entry: state, runtime
 * directory, certificates. */
static void wipe_instance_files(VrotInstances *self, const gchar *uuid)
{
        g_autofree gchar *rundir = g_build_filename(self->cfg->runtime_dir, uuid, NULL);
        g_autofree gchar *dir = state_dir(self, uuid);
        g_autofree gchar *certs = certs_dir(self);
        int dfd;

        wipe_dir(dir);
        wipe_dir(rundir);
        /* Each certificate, and the temporary file a create that failed
         * may have left of it. */
        if ((dfd = open(certs, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
                return;
        for (gsize i = 0; i <= VROT_ENDORSE_N_EK; i++) {
                g_autofree gchar *name = cert_name(uuid, i < VROT_ENDORSE_N_EK ? ek_cert_kinds[i]
                                                                                : "ak");

                (void)unlinkat(dfd, name, 0);
                vrot_durable_abandon(dfd, name, -1);
        }
        close(dfd);
}

/* A create that failed changes nothing: the instance's files go and the
 * registry forgets it (it never served; no tombstone).  If the registry
 * cannot be written now (a full disk), it is on disk until the next
 * write succeeds. */
static void undo_create(VrotInstances *self, const gchar *uuid)
{
        g_autoptr(GError) local = NULL;

        (void)stop_worker(self, uuid, NULL);
        wipe_instance_files(self, uuid);
        if (vrot_registry_forget(self->registry, uuid) && !save(self, &local))
                g_warning("instance %s: a failed create stays in the registry file until it can be "
                          "written again: %s", uuid, local->message);
}

gboolean vrot_instances_create(VrotInstances *self, const gchar *uuid, VrotInstanceKind kind,
                               const gchar *name, uid_t owner, guint ek_mask, gchar **ret_uuid,
                               gboolean *ret_premade, GError **error)
{
        g_autoptr(VrotInstance) inst = g_new0(VrotInstance, 1);
        g_autofree gchar *dir = NULL;
        gboolean premade = FALSE;
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
        if (g_file_test(dir, G_FILE_TEST_EXISTS)) {
                /* Not in the registry: what a create cut short by a crash left. */
                g_message("instance %s: removing the files of an unfinished create", canon);
                wipe_instance_files(self, canon);
        }
        if (!vrot_registry_add(self->registry, g_steal_pointer(&inst), error))
                return FALSE;
        entry = vrot_registry_lookup(self->registry, canon);
        if (!create_warm(self, entry, ek_mask, &premade, error)) {
                g_prefix_error(error, "creating %s from the pool: ", canon);
                undo_create(self, canon);
                return FALSE;
        }
        if (!premade && !create_cold(self, entry, ek_mask, &premade, error))
                return FALSE;
        g_message("instance %s: created (%s, \"%s\", owner %u%s)", canon,
                  kind == VROT_INSTANCE_VM ? "vm" : "service", name, (unsigned)owner,
                  premade ? ", from the pool" : "");
        *ret_uuid = g_strdup(canon);
        if (ret_premade)
                *ret_premade = premade;
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
        guint64 counter = 0;

        if (!inst || !not_migrating(self, uuid, error) || !stop_worker(self, uuid, error))
                return FALSE;
        wipe_instance_files(self, uuid);
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
        ret->running = r && r->ready;
        ret->starting = r && !r->ready;
        ret->pid = r && r->worker ? vrot_worker_pid(r->worker) : 0;
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
        if (!g_file_get_contents(path, &pem, NULL, NULL)) {
                g_autofree gchar *other = cert_path(self, uuid, g_str_equal(type, "rsa") ? "ecc" : "rsa");
                gboolean one_only = g_file_test(other, G_FILE_TEST_EXISTS);

                fail(error, VROT_INSTANCES_ERROR_NOT_FOUND, "instance %s has no %s EK certificate%s",
                     uuid, type, one_only ? ": it was created with only the other EK "
                                            "(instance.create \"ek\")" : "");
        }
        return pem;
}

gchar *vrot_instances_ak_cert_pem(VrotInstances *self, const gchar *uuid)
{
        g_autofree gchar *path = cert_file(self, uuid, "ak");
        gchar *pem = NULL;

        return g_file_get_contents(path, &pem, NULL, NULL) ? pem : NULL;
}

gboolean vrot_instances_set_ak_cert_pem(VrotInstances *self, const gchar *uuid, const gchar *pem,
                                        GError **error)
{
        static const gchar *const kind[] = { "ak" };

        return write_certs(self, uuid, kind, &pem, 1, FALSE, error);
}

VrotRegistry *vrot_instances_registry(VrotInstances *self)
{
        return self->registry;
}

gboolean vrot_instances_commit(VrotInstances *self, GError **error)
{
        return save(self, error);
}

void vrot_instances_pool_status(VrotInstances *self, VrotPoolStatus *ret)
{
        vrot_pool_status(self->pool, ret);
}

guint vrot_instances_n_running(VrotInstances *self)
{
        GHashTableIter it;
        gpointer v;
        guint n = 0;

        g_hash_table_iter_init(&it, self->running);
        while (g_hash_table_iter_next(&it, NULL, &v))
                n += ((Running *)v)->ready;
        return n;
}

/* ---- migration (instances.h) ------------------------------------------------------------ */

gboolean vrot_instances_migrate_check(VrotInstances *self, const gchar *uuid, gboolean live,
                                      VrotInstance **ret_copy, GError **error)
{
        VrotInstance *inst = lookup(self, uuid, TRUE, error);
        Running *r = g_hash_table_lookup(self->running, uuid);
        VrotInstance *copy;

        if (!inst || !not_migrating(self, uuid, error))
                return FALSE;
        if (!live && r)
                return fail(error, VROT_INSTANCES_ERROR_REFUSED,
                            "instance %s is running: stop it first (a cold migration moves a "
                            "stopped vTPM)", uuid);
        if (live && (inst->kind != VROT_INSTANCE_VM || !r || !r->ready))
                return fail(error, VROT_INSTANCES_ERROR_REFUSED,
                            inst->kind != VROT_INSTANCE_VM
                            ? "instance %s is a service: only a VM's vTPM migrates live (QEMU "
                              "carries its state); migrate a service cold"
                            : "instance %s is not running: a live migration moves the vTPM of a "
                              "running VM (instance.migrate moves a stopped one)", uuid);
        copy = g_new0(VrotInstance, 1);
        *copy = *inst;
        copy->uuid = g_strdup(inst->uuid);
        copy->name = g_strdup(inst->name);
        copy->generation = MAX(inst->generation, state_generation(self, uuid));
        *ret_copy = copy;
        return TRUE;
}

static VrotMigrationRecord *record_new(const gchar *id, const gchar *uuid, VrotMigrationState state,
                                       const gchar *peer, const gchar *peer_name)
{
        VrotMigrationRecord *m = g_new0(VrotMigrationRecord, 1);

        m->id = g_strdup(id);
        m->uuid = g_strdup(uuid);
        m->state = state;
        m->peer = g_strdup(peer);
        m->peer_name = g_strdup(peer_name);
        m->since = g_get_real_time() / G_USEC_PER_SEC;
        return m;
}

gboolean vrot_instances_migrate_lock(VrotInstances *self, const gchar *uuid, guint64 generation,
                                     const gchar *id, const gchar *peer, const gchar *peer_name,
                                     GError **error)
{
        g_autoptr(VrotInstance) now = NULL;

        /* Checked again: a start may have come while the peer answered. */
        if (!vrot_instances_migrate_check(self, uuid, FALSE, &now, error))
                return FALSE;
        if (now->generation != generation)
                return fail(error, VROT_INSTANCES_ERROR_REFUSED,
                            "instance %s changed while the migration was offered", uuid);
        if (!vrot_registry_migration_add(self->registry,
                                         record_new(id, uuid, VROT_MIGRATION_LOCKED, peer, peer_name),
                                         error))
                return FALSE;
        if (!save(self, error)) {
                vrot_registry_migration_remove(self->registry, id);
                return FALSE;
        }
        g_message("instance %s: locked for migration %s to %s", uuid, id, peer_name);
        return TRUE;
}

/* @inst's store, opened with its key (transfer full; *@ret_key must outlive it). */
static VrotStore *open_store(VrotInstances *self, const VrotInstance *inst, guint64 min_generation,
                             VrotSealer *sealer, VrotSecret **ret_key, GError **error)
{
        g_autofree gchar *dir = state_dir(self, inst->uuid);
        VrotStore *store = NULL;
        VrotError err = { 0 };

        vrot_uuid_parse(inst->uuid, sealer->uuid, NULL);
        if (!vrot_instkey_derive(vrot_host_master(self->host), inst->salt, sealer->uuid, ret_key, error))
                return NULL;
        sealer->key = vrot_secret_data(*ret_key);
        if (vrot_store_open(dir, sealer, min_generation, &store, &err) < 0) {
                fail(error, VROT_INSTANCES_ERROR_REFUSED, "instance %s: %s", inst->uuid, err.msg);
                return NULL;
        }
        return store;
}

GBytes *vrot_instances_export(VrotInstances *self, const gchar *uuid, GError **error)
{
        VrotInstance *inst = lookup(self, uuid, TRUE, error);
        VrotMigrationRecord *m = inst ? vrot_registry_migration_of(self->registry, uuid) : NULL;
        g_autoptr(VrotSecret) key = NULL;
        VrotSealer sealer = { 0 };
        VrotStore *store;
        VrotMbundle b = { 0 };
        uint8_t *plain[VROT_MBUNDLE_N_BLOBS] = { NULL };
        uint32_t len[VROT_MBUNDLE_N_BLOBS] = { 0 };
        GBytes *out = NULL;
        VrotError err = { 0 };

        if (!inst)
                return NULL;
        if (!m || m->state != VROT_MIGRATION_LOCKED) {
                fail(error, VROT_INSTANCES_ERROR_FAILED, "instance %s is not locked for migration", uuid);
                return NULL;
        }
        if (!(store = open_store(self, inst, inst->generation, &sealer, &key, error)))
                return NULL;
        for (guint32 t = VROT_BLOB_PERMANENT; t <= VROT_BLOB_SAVESTATE; t++) {
                int r = vrot_store_load(store, t, &plain[t - 1], &len[t - 1], &err);

                if (r == -ENOENT)
                        continue;
                if (r < 0) {
                        fail(error, VROT_INSTANCES_ERROR_REFUSED, "instance %s: %s", uuid, err.msg);
                        goto out;
                }
                b.data[t - 1] = plain[t - 1];
                b.len[t - 1] = len[t - 1];
        }
        if (!b.len[VROT_BLOB_PERMANENT - 1]) {
                fail(error, VROT_INSTANCES_ERROR_REFUSED, "instance %s has no TPM state", uuid);
                goto out;
        }
        out = vrot_mbundle_pack(&b);
out:
        for (gsize i = 0; i < VROT_MBUNDLE_N_BLOBS; i++)
                vrot_free_wiped(plain[i], len[i]);
        vrot_store_free(store);
        return out;
}

/* The record of @id, with the role asked for. */
static VrotMigrationRecord *journal(VrotInstances *self, const gchar *id, gboolean outgoing,
                                   GError **error)
{
        VrotMigrationRecord *m = vrot_registry_migration(self->registry, id);

        if (!m || vrot_migration_state_outgoing(m->state) != outgoing) {
                fail(error, VROT_INSTANCES_ERROR_NOT_FOUND, "unknown migration %s", id);
                return NULL;
        }
        return m;
}

gboolean vrot_instances_migrate_decide(VrotInstances *self, const gchar *id, gboolean commit,
                                       GError **error)
{
        VrotMigrationRecord *m = journal(self, id, TRUE, error);
        VrotInstance *inst;
        guint64 counter = 0;

        if (!m)
                return FALSE;
        if (m->state != VROT_MIGRATION_LOCKED)
                return m->state == (commit ? VROT_MIGRATION_COMMITTED : VROT_MIGRATION_ABORTED) ||
                       fail(error, VROT_INSTANCES_ERROR_REFUSED, "migration %s was %s already",
                            id, vrot_migration_state_name(m->state));
        inst = vrot_registry_lookup(self->registry, m->uuid);
        if (!commit) {
                if (m->live) {
                        /* The source VM keeps its TPM: no more stateblobs. */
                        VrotMkeyRequest clear = { .op = VROT_MKEY_CLEAR };
                        VrotMkeyAnswer a;
                        if (g_hash_table_lookup(self->running, m->uuid))
                                (void)vrot_instances_migrate_key(self, m->uuid, &clear, &a, NULL);
                }
                m->state = VROT_MIGRATION_ABORTED;
                m->since = g_get_real_time() / G_USEC_PER_SEC;
                if (!save(self, error)) {
                        m->state = VROT_MIGRATION_LOCKED;
                        return FALSE;
                }
                g_message("instance %s: migration %s aborted; the instance is live here", m->uuid, id);
                return TRUE;
        }
        /* The decision: a tombstone, as for a delete, at a checkpoint the
         * host TPM's counter makes final (a restored copy of the state
         * directory is refused as a rollback, R-MIG-4).  A live source's
         * worker (its VM paused or gone after QEMU's migration) ends first. */
        if (m->live && !stop_worker(self, m->uuid, error))
                return FALSE;
        if (!vrot_host_tpm_counter_increment(vrot_host_tpm(self->host), &counter, error))
                return FALSE;
        inst->deleted = TRUE;
        inst->migrated = TRUE;
        m->state = VROT_MIGRATION_COMMITTED;
        m->since = g_get_real_time() / G_USEC_PER_SEC;
        vrot_registry_set_checkpoint(self->registry, counter);
        if (!save(self, error)) {
                /* The counter moved: this daemon cannot start again until
                 * the registry is written (it says so at start). */
                inst->deleted = inst->migrated = FALSE;
                m->state = VROT_MIGRATION_LOCKED;
                return FALSE;
        }
        wipe_instance_files(self, m->uuid);
        g_message("instance %s: migration %s committed: it lives on %s now (tombstone kept, "
                  "checkpoint %" G_GUINT64_FORMAT ")", m->uuid, id, m->peer_name, counter);
        return TRUE;
}

gboolean vrot_instances_migrate_forget(VrotInstances *self, const gchar *id, GError **error)
{
        if (!vrot_registry_migration_remove(self->registry, id))
                return TRUE;
        return save(self, error);
}

gboolean vrot_instances_import_check(VrotInstances *self, const gchar *uuid, GError **error)
{
        VrotInstance *inst = vrot_registry_lookup(self->registry, uuid);

        if (inst && !(inst->deleted && inst->migrated))
                return fail(error, VROT_INSTANCES_ERROR_EXISTS,
                            inst->deleted ? "instance %s was deleted here; it cannot come back"
                                          : "instance %s lives here already", uuid);
        if (vrot_registry_migration_of(self->registry, uuid))
                return fail(error, VROT_INSTANCES_ERROR_EXISTS,
                            "instance %s is in another migration here", uuid);
        return TRUE;
}

/* An incoming copy that will not go live: its files go, and its entry
 * becomes a "migrated" tombstone (the instance lives elsewhere; it may
 * come here again). */
static void discard_import(VrotInstances *self, VrotMigrationRecord *m)
{
        VrotInstance *inst = vrot_registry_lookup(self->registry, m->uuid);
        g_autofree gchar *uuid = g_strdup(m->uuid), *id = g_strdup(m->id);
        g_autoptr(GError) local = NULL;

        (void)stop_worker(self, uuid, NULL);
        wipe_instance_files(self, uuid);
        if (inst) {
                inst->deleted = TRUE;
                inst->migrated = TRUE;
                inst->reendorse = FALSE;
        }
        vrot_registry_migration_remove(self->registry, id);
        if (!save(self, &local))
                g_warning("migration %s: discarding instance %s: %s", id, uuid, local->message);
        g_message("instance %s: incoming migration %s discarded", uuid, id);
}

/* The bundle into @inst's fresh store, under this host's key. */
static gboolean write_state(VrotInstances *self, VrotInstance *inst, GBytes *bundle, GError **error)
{
        g_autofree gchar *dir = state_dir(self, inst->uuid);
        g_autoptr(VrotSecret) key = NULL;
        VrotSealer sealer = { 0 };
        VrotStore *store;
        VrotMbundle b;
        VrotError err = { 0 };
        gsize len = 0;
        const guint8 *p = g_bytes_get_data(bundle, &len);
        int r = 0;

        if (!vrot_mbundle_parse(p, len, &b, error))
                return FALSE;
        wipe_dir(dir);          /* what a crashed import may have left */
        if (!vrot_worker_user_make_dir(self->wuser, dir, 0700, error) ||
            !(store = open_store(self, inst, 0, &sealer, &key, error)))
                return FALSE;
        for (guint32 t = VROT_BLOB_PERMANENT; r == 0 && t <= VROT_BLOB_SAVESTATE; t++)
                if (b.len[t - 1])
                        r = vrot_store_save(store, t, b.data[t - 1], (uint32_t)b.len[t - 1], &err);
        inst->generation = vrot_store_generation(store);
        vrot_store_free(store);
        if (r < 0)
                return fail(error, VROT_INSTANCES_ERROR_FAILED, "instance %s: %s", inst->uuid, err.msg);
        return vrot_worker_user_give_files(self->wuser, dir, error);
}

/* The first half of an import: a new entry for @meta (a migrated tombstone
 * replaced), this host's salt, and the journal's IMPORTING record, written
 * durably.  Returns: (transfer none) the record, or NULL. */
static VrotMigrationRecord *import_begin(VrotInstances *self, const VrotInstance *meta,
                                         const gchar *id, const gchar *peer_name, gboolean live,
                                         GError **error)
{
        VrotInstance *inst;
        VrotMigrationRecord *m;

        if (!valid_name(meta->name)) {
                fail(error, VROT_INSTANCES_ERROR_INVALID, "instance %s: a bad name", meta->uuid);
                return NULL;
        }
        if (!vrot_instances_import_check(self, meta->uuid, error))
                return NULL;
        inst = g_new0(VrotInstance, 1);
        inst->uuid = g_strdup(meta->uuid);
        inst->name = g_strdup(meta->name);
        inst->kind = meta->kind;
        inst->owner = meta->owner;
        inst->created = g_get_real_time() / G_USEC_PER_SEC;
        inst->reendorse = live;         /* live: its EK certificates come at its next start */
        if (!vrot_instkey_new_salt(inst->salt, error)) {
                vrot_instance_free(inst);
                return NULL;
        }
        vrot_registry_replace(self->registry, inst);
        m = record_new(id, inst->uuid, VROT_MIGRATION_IMPORTING, "", peer_name);
        m->live = live;
        if (!vrot_registry_migration_add(self->registry, m, error)) {
                inst->deleted = inst->migrated = TRUE;
                inst->reendorse = FALSE;
                return NULL;
        }
        m = vrot_registry_migration(self->registry, id);
        if (!save(self, error)) {
                discard_import(self, m);
                return NULL;
        }
        return m;
}

/* The second half: PREPARED, written durably; anything failed before
 * (@ok FALSE) or now discards the copy. */
static gboolean import_end_prepared(VrotInstances *self, VrotMigrationRecord *m, gboolean ok,
                                    GError **error)
{
        if (ok) {
                m->state = VROT_MIGRATION_PREPARED;
                m->since = g_get_real_time() / G_USEC_PER_SEC;
                ok = save(self, error);
        } else {
                g_prefix_error(error, "importing %s: ", m->uuid);
        }
        if (!ok)
                discard_import(self, m);
        return ok;
}

gboolean vrot_instances_import(VrotInstances *self, const VrotInstance *meta, const gchar *id,
                               const gchar *peer_name, GBytes *bundle, GError **error)
{
        VrotMigrationRecord *m = import_begin(self, meta, id, peer_name, FALSE, error);
        VrotInstance *inst;
        VrotEndorseParams params = { .reissue = TRUE };

        if (!m)
                return FALSE;
        vrot_fault_point("dst-importing");
        inst = vrot_registry_lookup(self->registry, meta->uuid);
        if (!import_end_prepared(self, m, write_state(self, inst, bundle, error) &&
                                          endorse_run(self, inst, &params, error), error))
                return FALSE;
        g_message("instance %s: migration %s from %s prepared (EK certificates issued again by "
                  "this host; not startable until the source commits)", meta->uuid, id, peer_name);
        return TRUE;
}

gboolean vrot_instances_import_end(VrotInstances *self, const gchar *id, const gchar *peer_name,
                                   gboolean commit, GError **error)
{
        VrotMigrationRecord *m = journal(self, id, FALSE, error);

        if (!m)
                return FALSE;
        if (!g_str_equal(m->peer_name, peer_name))
                return fail(error, VROT_INSTANCES_ERROR_REFUSED,
                            "migration %s came from %s, not from %s", id, m->peer_name, peer_name);
        if (m->state == VROT_MIGRATION_DONE)
                return commit || fail(error, VROT_INSTANCES_ERROR_REFUSED,
                                      "migration %s was committed already", id);
        if (!commit) {
                discard_import(self, m);
                return TRUE;
        }
        if (m->state != VROT_MIGRATION_PREPARED)
                return fail(error, VROT_INSTANCES_ERROR_REFUSED,
                            "migration %s is not prepared here", id);
        m->state = VROT_MIGRATION_DONE;
        m->since = g_get_real_time() / G_USEC_PER_SEC;
        if (!save(self, error)) {
                m->state = VROT_MIGRATION_PREPARED;
                return FALSE;
        }
        if (m->live) {
                /* Live here now: its stateblobs stay home from now on. */
                VrotMkeyRequest clear = { .op = VROT_MKEY_CLEAR };
                VrotMkeyAnswer a;
                g_autoptr(GError) local = NULL;
                if (!vrot_instances_migrate_key(self, m->uuid, &clear, &a, &local))
                        g_message("instance %s: %s", m->uuid, local->message);
        }
        g_message("instance %s: migration %s from %s committed: the instance is live here",
                  m->uuid, id, peer_name);
        return TRUE;
}

/* At start: an IMPORTING copy is discarded, a LOCKED source decides abort. */
static void recover_migrations(VrotInstances *self)
{
        const GPtrArray *all = vrot_registry_migrations(self->registry);
        g_autoptr(GPtrArray) discard = g_ptr_array_new();
        g_autoptr(GError) local = NULL;
        gboolean changed = FALSE;

        for (guint i = 0; i < all->len; i++) {
                VrotMigrationRecord *m = all->pdata[i];

                if (m->state == VROT_MIGRATION_IMPORTING) {
                        g_ptr_array_add(discard, m);
                } else if (m->state == VROT_MIGRATION_LOCKED && m->live) {
                        /* QEMU may have moved the state meanwhile, and the VM
                         * may run on the destination: ask it before deciding
                         * (the source tells, migrate.c). */
                        g_message("instance %s: live migration %s was not decided before a "
                                  "restart: asking %s whether it has the state", m->uuid, m->id,
                                  m->peer_name);
                        m->unresolved = TRUE;
                } else if (m->state == VROT_MIGRATION_LOCKED) {
                        /* Crashed before deciding: abort is always safe, the
                         * destination never goes live without our commit. */
                        g_message("instance %s: migration %s was not decided before a restart: "
                                  "aborted", m->uuid, m->id);
                        m->state = VROT_MIGRATION_ABORTED;
                        changed = TRUE;
                }
        }
        for (guint i = 0; i < discard->len; i++)
                discard_import(self, discard->pdata[i]);
        if (changed && !save(self, &local))
                g_warning("migration journal: %s", local->message);
}

GPtrArray *vrot_instances_migrations_pending(VrotInstances *self)
{
        const GPtrArray *all = vrot_registry_migrations(self->registry);
        GPtrArray *pending = g_ptr_array_new_with_free_func((GDestroyNotify)vrot_migration_record_free);

        for (guint i = 0; i < all->len; i++) {
                VrotMigrationRecord *m = all->pdata[i];
                if (m->state == VROT_MIGRATION_COMMITTED || m->state == VROT_MIGRATION_ABORTED ||
                    (m->state == VROT_MIGRATION_LOCKED && m->unresolved)) {
                        VrotMigrationRecord *copy = record_new(m->id, m->uuid, m->state, m->peer,
                                                               m->peer_name);
                        copy->live = m->live;
                        g_ptr_array_add(pending, copy);
                }
        }
        return pending;
}

/* ---- live migration (instances.h) ---------------------------------------------------- */

/* Sends one request on a worker's migration-key socket at @path
 * (lib/mkey.h); returns the connection to read the answer from
 * (mkey_answer()), or -1. */
static int mkey_send(const gchar *path, const VrotMkeyRequest *req)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = 5 };
        guint8 buf[VROT_MKEY_REQUEST_MAX];
        size_t len = vrot_mkey_encode_request(req, buf);
        int fd = len ? socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;

        if (strlen(path) < sizeof(sa.sun_path))
                g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
        if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
                        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
                        send(fd, buf, len, MSG_NOSIGNAL) != (ssize_t)len)) {
                close(fd);
                fd = -1;
        }
        OPENSSL_cleanse(buf, sizeof(buf));
        return fd;
}

/* The answer on @fd (from mkey_send(), closed here); FALSE when nothing
 * well-formed came. */
static gboolean mkey_answer(int fd, VrotMkeyAnswer *ret)
{
        guint8 ans[VROT_MKEY_ANSWER_LEN];
        gsize got = 0;
        ssize_t n;

        if (fd < 0)
                return FALSE;
        while (got < sizeof(ans) && (n = read(fd, ans + got, sizeof(ans) - got)) > 0)
                got += (gsize)n;
        close(fd);
        return vrot_mkey_parse_answer(ans, got, ret) == 0;
}

/* One request and its answer; FALSE when nothing (well-formed) answered. */
static gboolean mkey_call(const gchar *path, const VrotMkeyRequest *req, VrotMkeyAnswer *ret)
{
        return mkey_answer(mkey_send(path, req), ret);
}

gboolean vrot_instances_migrate_key(VrotInstances *self, const gchar *uuid,
                                    const VrotMkeyRequest *req, VrotMkeyAnswer *ret, GError **error)
{
        g_autofree gchar *path = run_path(self, uuid, "migrate.sock");

        if (!mkey_call(path, req, ret))
                return fail(error, VROT_INSTANCES_ERROR_FAILED,
                            "instance %s: its worker's migration-key socket did not answer (is it "
                            "running?)", uuid);
        if (ret->result != 0)
                return fail(error, VROT_INSTANCES_ERROR_FAILED,
                            "instance %s: its worker refused the migration key (0x%x)", uuid,
                            ret->result);
        return TRUE;
}

/* The worker of @uuid gets the key of migration @id for @role. */
static gboolean give_key(VrotInstances *self, const gchar *uuid, guint8 role, const gchar *id,
                         const guint8 *key, GError **error)
{
        VrotMkeyRequest r = { .op = VROT_MKEY_SET, .role = role };
        VrotMkeyAnswer a;
        gboolean ok;

        vrot_hex_decode(id, 2 * VROT_MKEY_ID_LEN, r.id);
        memcpy(r.key, key, VROT_MKEY_KEY_LEN);
        ok = vrot_instances_migrate_key(self, uuid, &r, &a, error);
        OPENSSL_cleanse(&r, sizeof(r));
        return ok;
}

gboolean vrot_instances_migrate_lock_live(VrotInstances *self, const gchar *uuid, const gchar *id,
                                          const gchar *peer, const gchar *peer_name,
                                          const guint8 *key, GError **error)
{
        VrotInstance *inst = lookup(self, uuid, TRUE, error);
        Running *r;
        VrotMigrationRecord *m;

        if (!inst || !not_migrating(self, uuid, error))
                return FALSE;
        r = g_hash_table_lookup(self->running, uuid);
        if (!r || !r->ready)
                return fail(error, VROT_INSTANCES_ERROR_REFUSED,
                            "instance %s is not running: a live migration moves a running VM's "
                            "vTPM (use instance.migrate for a stopped one)", uuid);
        m = record_new(id, uuid, VROT_MIGRATION_LOCKED, peer, peer_name);
        m->live = TRUE;
        if (!vrot_registry_migration_add(self->registry, m, error))
                return FALSE;
        if (!save(self, error) || !give_key(self, uuid, VROT_MKEY_OUT, id, key, error)) {
                vrot_registry_migration_remove(self->registry, id);
                (void)save(self, NULL);
                return FALSE;
        }
        g_message("instance %s: live migration %s to %s prepared: its stateblobs leave under the "
                  "migration key only", uuid, id, peer_name);
        return TRUE;
}

/* The source's EK certificates of a live migration, each checked to be
 * one certificate for the instance (its subject CN is the UUID), stored as
 * this instance's until its next start issues ours. */
static gboolean store_source_certs(VrotInstances *self, const gchar *uuid, const gchar *const pems[2],
                                   GError **error)
{
        static const gchar *const names[2] = { "rsa", "ecc" };

        for (gsize i = 0; i < 2; i++) {
                g_autoptr(BIO) bio = NULL;
                ASN1_STRING *data;
                X509 *cert;
                gboolean ours;
                int cn;

                if (!pems[i] || !*pems[i])
                        continue;
                bio = BIO_new_mem_buf(pems[i], -1);
                cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
                cn = cert ? X509_NAME_get_index_by_NID(X509_get_subject_name(cert),
                                                       NID_commonName, -1) : -1;
                data = cn >= 0 ? X509_NAME_ENTRY_get_data(
                                         X509_NAME_get_entry(X509_get_subject_name(cert), cn))
                               : NULL;
                ours = data && (gsize)ASN1_STRING_length(data) == strlen(uuid) &&
                       g_ascii_strncasecmp((const gchar *)ASN1_STRING_get0_data(data), uuid,
                                           strlen(uuid)) == 0;
                X509_free(cert);
                if (!ours)
                        return fail(error, VROT_INSTANCES_ERROR_INVALID,
                                    "instance %s: the source's %s EK certificate is not one of it",
                                    uuid, names[i]);
        }
        return write_certs(self, uuid, ek_cert_kinds, pems, 2, FALSE, error);
}

gboolean vrot_instances_import_live(VrotInstances *self, const VrotInstance *meta, const gchar *id,
                                    const gchar *peer_name, const guint8 *key,
                                    const gchar *const certs[2], GError **error)
{
        g_autofree gchar *dir = state_dir(self, meta->uuid);
        VrotMigrationRecord *m;
        VrotInstance *inst;

        if (meta->kind != VROT_INSTANCE_VM)
                return fail(error, VROT_INSTANCES_ERROR_INVALID,
                            "instance %s is a service: only a VM's vTPM migrates live (QEMU "
                            "carries its state); migrate a service cold", meta->uuid);
        if (!(m = import_begin(self, meta, id, peer_name, TRUE, error)))
                return FALSE;
        inst = vrot_registry_lookup(self->registry, meta->uuid);
        wipe_dir(dir);          /* what a crashed import may have left */
        if (!import_end_prepared(self, m, store_source_certs(self, inst->uuid, certs, error) &&
                                          start_worker_now(self, inst, FALSE, error) &&
                                          give_key(self, inst->uuid, VROT_MKEY_IN, id, key, error),
                                 error))
                return FALSE;
        g_message("instance %s: live migration %s from %s prepared: an incoming worker waits for "
                  "QEMU's stateblobs, under the migration key only", meta->uuid, id, peer_name);
        return TRUE;
}

gboolean vrot_instances_migrate_received(VrotInstances *self, const gchar *id,
                                         const gchar *peer_name, GError **error)
{
        VrotMigrationRecord *m = journal(self, id, FALSE, error);
        VrotMkeyRequest r = { .op = VROT_MKEY_STATUS };
        VrotMkeyAnswer a;

        if (!m)
                return FALSE;
        if (!g_str_equal(m->peer_name, peer_name) || m->state != VROT_MIGRATION_PREPARED || !m->live)
                return fail(error, VROT_INSTANCES_ERROR_REFUSED,
                            "migration %s is not a live migration prepared here for %s", id, peer_name);
        if (!vrot_instances_migrate_key(self, m->uuid, &r, &a, error))
                return FALSE;
        if (!(a.imported & (1u << VROT_BLOB_PERMANENT)))
                return fail(error, VROT_INSTANCES_ERROR_REFUSED,
                            "migration %s: the vTPM here has not received its state from QEMU "
                            "yet", id);
        return TRUE;
}

void vrot_instances_stop_all(VrotInstances *self)
{
        g_autoptr(GList) uuids = g_hash_table_get_keys(self->running);
        g_autofree gchar *path = resume_path(self);
        g_autoptr(GString) list = g_string_new(NULL);
        g_autoptr(GError) werr = NULL;

        for (GList *l = uuids; l; l = l->next)
                g_string_append_printf(list, "%s\n", (const gchar *)l->data);
        if (!g_file_set_contents_full(path, list->str, list->len, G_FILE_SET_CONTENTS_NONE, 0600, &werr))
                g_warning("%s: %s", path, werr->message);

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
                g_autoptr(GList) all = g_hash_table_get_values(self->running);
                for (GList *l = all; l; l = l->next)
                        running_drop(l->data, NULL);
                g_hash_table_unref(self->running);
        }
        vrot_pool_free(self->pool);
        vrot_worker_user_free(self->wuser);
        vrot_fork_server_free(self->forkd);
        vrot_registry_free(self->registry);
        g_free(self->registry_path);
        g_free(self->vtpm_path);
        g_free(self);
}
