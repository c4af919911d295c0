/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The pool of pre-manufactured vTPMs (pool.h).  Three parts: the entries
 * on disk (open, verify, discard), taking one (re-seal it for an instance),
 * and the refill, a small state machine on the main loop whose one
 * blocking step (the TPM commands that make the EKs) runs in a thread.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "endorse.h"
#include "instkey.h"
#include "pidfile.h"
#include "proc.h"
#include "pool.h"
#include "store.h"
#include "uuid.h"
#include "workeruser.h"

G_DEFINE_QUARK(vrot-pool-error-quark, vrot_pool_error)

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000
#define MAX_BACKOFF_S 60

/* The entry being made, from spawn to listing. */
typedef struct Refill {
        VrotPool *pool;
        gchar *id;
        gchar *dir, *rundir;
        VrotWorker *worker;
        GPid pid;
        GThread *thread;                /* makes the EKs */
        GSource *done;                  /* attached by the thread when it ends */
        VrotEndorsement *made;          /* the thread's result ... */
        GError *error;                  /* ... or its error */
        gboolean stopping;              /* asked to end after the EKs were made */
        gboolean ended;                 /* its worker is gone */
        gint64 started;
} Refill;

/* The warm entry: a listed entry's vTPM kept running, so that a create
 * only certifies its EKs and binds it (vrot_pool_claim_warm()). */
typedef struct Warm {
        VrotPool *pool;
        gchar *id;
        gchar *dir, *rundir, *data_path, *key_path;   /* data_path: its vTPM's data socket */
        VrotWorker *worker;
        GPid pid;
        VrotEndorseSession *session;    /* its vTPM inspected, until claimed */
        gboolean ready;                 /* it listens */
        gboolean claimed;               /* a create has it */
        gboolean ended;                 /* its worker is gone */
} Warm;

struct VrotPool {
        gchar *state_dir, *runtime_dir;
        const VrotWorkerUser *worker_user;     /* transfer none, NULL: none */
        guint size;
        gboolean warm_wanted;           /* VrotPoolParams.warm */
        const VrotSecret *master;
        VrotForkServer *forkd;
        VrotRegistry *registry;
        VrotPoolSaveFunc save;
        gpointer save_data;
        Refill *refill;                 /* NULL when no entry is being made */
        guint refill_source;            /* the next refill, scheduled */
        guint failures;                 /* consecutive failed refills */
        Warm *warm;                     /* NULL: none (yet) */
        guint warm_source;              /* the next warm-up, scheduled */
        guint warm_failures;            /* warm workers that ended unasked */
        guint64 made, taken, discarded;
};

static void schedule_refill(VrotPool *self, guint delay_s);
static void schedule_warm(VrotPool *self, guint delay_s);
static void warm_free(Warm *w);

/* 1, 2, 4 ... 60 s after that many failures in a row. */
static guint backoff_s(guint failures)
{
        return MIN(1u << MIN(failures, 6u), (guint)MAX_BACKOFF_S);
}

/* ---- entries on disk ------------------------------------------------------------ */

static gchar *entry_dir(const VrotPool *self, const gchar *id)
{
        return g_build_filename(self->state_dir, id, NULL);
}

/* Removes the files in @dir, then @dir; quietly, as far as it can. */
static void remove_dir(const gchar *dir)
{
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const gchar *name;

        while (d && (name = g_dir_read_name(d))) {
                g_autofree gchar *path = g_build_filename(dir, name, NULL);
                if (unlink(path) < 0 && errno != ENOENT)
                        g_warning("%s: %s", path, g_strerror(errno));
        }
        if (rmdir(dir) < 0 && errno != ENOENT)
                g_warning("%s: %s", dir, g_strerror(errno));
}

/* The entry's sealer, its key (transfer full) in *@ret_key. */
static gboolean entry_sealer(const VrotPool *self, const gchar *id, VrotSealer *sealer,
                             VrotSecret **ret_key, GError **error)
{
        *sealer = (VrotSealer){ 0 };
        if (vrot_uuid_parse(id, sealer->uuid, NULL) < 0) {
                g_set_error(error, VROT_POOL_ERROR, VROT_POOL_ERROR_FAILED,
                            "pool entry %s: not a UUID", id);
                return FALSE;
        }
        if (!vrot_instkey_derive_pool(self->master, sealer->uuid, ret_key, error))
                return FALSE;
        sealer->key = vrot_secret_data(*ret_key);
        return TRUE;
}

/*
 * Opens entry @id's state under its own sealer: every file verified, and
 * a state there at all (a listed entry with no files is no vTPM).  The
 * store (transfer full) keeps @sealer, which must outlive it.
 */
static VrotStore *open_entry(const VrotPool *self, const gchar *id, const VrotSealer *sealer,
                             GError **error)
{
        g_autofree gchar *dir = entry_dir(self, id);
        VrotError err = { 0 };
        VrotStore *s = NULL;

        if (vrot_store_open(dir, sealer, 0, &s, &err) < 0) {
                g_set_error(error, VROT_POOL_ERROR, VROT_POOL_ERROR_FAILED, "%s", err.msg);
                return NULL;
        }
        if (vrot_store_generation(s) == 0) {
                vrot_store_free(s);
                g_set_error(error, VROT_POOL_ERROR, VROT_POOL_ERROR_FAILED,
                            "%s holds no state", dir);
                return NULL;
        }
        return s;
}

static gboolean verify_entry(const VrotPool *self, const gchar *id, GError **error)
{
        g_autoptr(VrotSecret) key = NULL;
        VrotSealer sealer;
        VrotStore *s;

        if (!entry_sealer(self, id, &sealer, &key, error) ||
            !(s = open_entry(self, id, &sealer, error)))
                return FALSE;
        vrot_store_free(s);
        return TRUE;
}

/* Unlists entry @id and removes its files (the registry is saved later). */
static void discard(VrotPool *self, const gchar *id)
{
        g_autofree gchar *dir = entry_dir(self, id);

        vrot_registry_pool_remove(self->registry, id);
        remove_dir(dir);
        self->discarded++;
}

/* Listed entries that fail to verify, and those beyond the size, go. */
static gboolean check_listed(VrotPool *self)
{
        const GPtrArray *listed = vrot_registry_pool(self->registry);
        g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func(g_free);
        gboolean changed = FALSE;

        for (guint i = 0; i < listed->len; i++)
                g_ptr_array_add(ids, g_strdup(listed->pdata[i]));
        for (guint i = 0; i < ids->len; i++) {
                const gchar *id = ids->pdata[i];
                g_autoptr(GError) why = NULL;

                if (i >= self->size) {
                        g_debug("pool: entry %s is beyond pool-size %u: discarded", id, self->size);
                } else if (!verify_entry(self, id, &why)) {
                        g_warning("pool: entry %s refused and discarded: %s", id, why->message);
                } else {
                        g_debug("pool: entry %s verified", id);
                        continue;
                }
                discard(self, id);
                changed = TRUE;
        }
        return changed;
}

/* Directories of entries that are not listed: an unfinished refill, or a
 * taken entry's copy put back.  Never used; removed. */
static void remove_unlisted(VrotPool *self)
{
        g_autoptr(GDir) d = g_dir_open(self->state_dir, 0, NULL);
        const gchar *name;

        while (d && (name = g_dir_read_name(d))) {
                g_autofree gchar *dir = NULL;

                if (g_ptr_array_find_with_equal_func(
                            (GPtrArray *)vrot_registry_pool(self->registry), name, g_str_equal, NULL))
                        continue;
                dir = entry_dir(self, name);
                g_debug("pool: removing %s, which is not a listed entry", dir);
                remove_dir(dir);
        }
}

/* A pool worker a crash left running holds its entry: stop it; then the
 * runtime directories of entries go (their sockets, logs, PID files). */
static void clear_runtime(VrotPool *self)
{
        g_autoptr(GDir) d = g_dir_open(self->runtime_dir, 0, NULL);
        const gchar *name;

        while (d && (name = g_dir_read_name(d))) {
                g_autofree gchar *rundir = g_build_filename(self->runtime_dir, name, NULL);
                g_autofree gchar *pidfile = g_build_filename(rundir, "worker.pid", NULL);
                GPid pid = vrot_pidfile_live(pidfile);

                if (pid > 0) {
                        g_debug("pool: stopping worker %d of unfinished entry %s", (int)pid, name);
                        (void)vrot_proc_stop(pid, SIGTERM, STOP_TIMEOUT_MS);
                }
                remove_dir(rundir);
        }
}

static gboolean make_dirs(const VrotPool *self, GError **error)
{
        if (g_mkdir_with_parents(self->state_dir, 0700) < 0 ||
            g_mkdir_with_parents(self->runtime_dir, 0755) < 0) {
                int e = errno;
                g_set_error(error, VROT_POOL_ERROR, VROT_POOL_ERROR_FAILED, "pool directories: %s",
                            g_strerror(e));
                return FALSE;
        }
        return TRUE;
}

VrotPool *vrot_pool_new(const VrotPoolParams *params, GError **error)
{
        g_autoptr(VrotPool) self = g_new0(VrotPool, 1);

        g_return_val_if_fail(params && params->master && params->registry && params->save, NULL);
        self->state_dir = g_strdup(params->state_dir);
        self->runtime_dir = g_strdup(params->runtime_dir);
        self->worker_user = params->worker_user;
        self->size = params->size;
        self->warm_wanted = params->warm;
        self->master = params->master;
        self->forkd = params->forkd;
        self->registry = params->registry;
        self->save = params->save;
        self->save_data = params->save_data;
        if (!make_dirs(self, error))
                return NULL;
        clear_runtime(self);
        if (check_listed(self) && !self->save(self->save_data, error)) {
                g_prefix_error(error, "pool: ");
                return NULL;
        }
        remove_unlisted(self);
        g_debug("pool: %u of %u entries ready", vrot_registry_pool(self->registry)->len, self->size);
        schedule_refill(self, 0);
        schedule_warm(self, 0);
        return g_steal_pointer(&self);
}

/* ---- taking an entry ------------------------------------------------------------- */

/* Removes the state files a failed copy left in @dir (the directory stays). */
static void clear_dir(const gchar *dir)
{
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const gchar *name;

        while (d && (name = g_dir_read_name(d))) {
                g_autofree gchar *path = g_build_filename(dir, name, NULL);
                (void)unlink(path);
        }
}

typedef enum { COPIED, REFUSED, FAILED } CopyResult;

/* Entry @id's state into @dst_dir under @dst.  REFUSED: the entry is at
 * fault (@why says how); FAILED: the target is (@error). */
static CopyResult copy_entry(VrotPool *self, const gchar *id, const gchar *dst_dir,
                             const VrotSealer *dst, GError **why, GError **error)
{
        g_autoptr(VrotSecret) key = NULL;
        VrotStore *src = NULL, *out = NULL;
        VrotSealer sealer;
        VrotError err = { 0 };
        CopyResult res = REFUSED;
        int r;

        if (!entry_sealer(self, id, &sealer, &key, why) ||
            !(src = open_entry(self, id, &sealer, why)))
                return REFUSED;
        if (vrot_store_open(dst_dir, dst, 0, &out, &err) < 0) {
                g_set_error(error, VROT_POOL_ERROR, VROT_POOL_ERROR_FAILED, "%s", err.msg);
                res = FAILED;
        } else if ((r = vrot_store_copy(src, out, &err)) < 0) {
                res = r == -EUCLEAN ? REFUSED : FAILED;
                g_set_error(res == REFUSED ? why : error, VROT_POOL_ERROR, VROT_POOL_ERROR_FAILED,
                            "%s", err.msg);
        } else {
                res = COPIED;
        }
        vrot_store_free(out);
        vrot_store_free(src);
        return res;
}

/* The copies belong to whoever owns @dir: with [daemon] worker-user the
 * worker, which reads its blobs after it dropped to that user. */
static gboolean match_owner(const gchar *dir, GError **error)
{
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const gchar *name;
        struct stat st;

        if (stat(dir, &st) < 0)
                goto fail;
        while (d && (name = g_dir_read_name(d))) {
                g_autofree gchar *path = g_build_filename(dir, name, NULL);
                if (lchown(path, st.st_uid, st.st_gid) < 0)
                        goto fail;
        }
        return TRUE;
fail:
        g_set_error(error, VROT_POOL_ERROR, VROT_POOL_ERROR_FAILED, "%s: %s", dir, g_strerror(errno));
        return FALSE;
}

/* The entry is the instance's now: unlisted in the registry write that
 * records the instance, then its files go. */
static gboolean hand_over(VrotPool *self, const gchar *id, GError **error)
{
        g_autofree gchar *dir = entry_dir(self, id);

        vrot_registry_pool_remove(self->registry, id);
        if (!self->save(self->save_data, error)) {
                /* Listed again in memory, as it still is on disk. */
                (void)vrot_registry_pool_add(self->registry, id, NULL);
                return FALSE;
        }
        remove_dir(dir);
        self->taken++;
        schedule_refill(self, 0);
        return TRUE;
}

gboolean vrot_pool_take(VrotPool *self, const gchar *dst_dir, const VrotSealer *dst,
                        gchar **ret_id, GError **error)
{
        const GPtrArray *listed = vrot_registry_pool(self->registry);

        g_return_val_if_fail(self && dst_dir && dst && ret_id, FALSE);
        for (;;) {
                g_autofree gchar *id = NULL;
                g_autoptr(GError) why = NULL;

                /* The warm entry's directory is its worker's: not copied. */
                for (guint i = 0; !id && i < listed->len; i++)
                        if (!self->warm || g_strcmp0(listed->pdata[i], self->warm->id) != 0)
                                id = g_strdup(listed->pdata[i]);
                if (!id && self->warm && !self->warm->claimed) {
                        /* Only the entry being warmed is left: a create does
                         * not wait for that, it takes the entry cold.  The
                         * worker is killed and waited for, even one that is
                         * still starting, so it has written nothing and
                         * holds no lock (warm_free()). */
                        g_debug("pool: warming entry %s given up for a create", self->warm->id);
                        warm_free(self->warm);
                        schedule_warm(self, 0);         /* another, once there is one */
                        continue;
                }
                if (!id)
                        break;

                switch (copy_entry(self, id, dst_dir, dst, &why, error)) {
                case COPIED:
                        if (!match_owner(dst_dir, error) || !hand_over(self, id, error)) {
                                clear_dir(dst_dir);
                                return FALSE;
                        }
                        *ret_id = g_steal_pointer(&id);
                        return TRUE;
                case REFUSED:
                        g_warning("pool: entry %s refused and discarded: %s", id, why->message);
                        clear_dir(dst_dir);
                        discard(self, id);
                        schedule_refill(self, 0);
                        continue;
                case FAILED:
                        clear_dir(dst_dir);
                        return FALSE;
                }
        }
        *ret_id = NULL;
        return TRUE;
}

void vrot_pool_status(const VrotPool *self, VrotPoolStatus *ret)
{
        *ret = (VrotPoolStatus){
                .size = self->size,
                .ready = vrot_registry_pool(self->registry)->len,
                .warm = self->warm && self->warm->ready && !self->warm->claimed,
                .filling = self->refill != NULL || (self->warm && !self->warm->ready),
                .made = self->made,
                .taken = self->taken,
                .discarded = self->discarded,
        };
}

/* ---- the refill ------------------------------------------------------------------- */

/* Ends the refill: its worker stopped if it still runs (killed, unless it
 * is writing its state on the way out), its thread joined, its directories
 * removed (unless @keep_entry: it is listed now). */
static void refill_free(Refill *f, gboolean keep_entry)
{
        GPid pid = f->worker && !f->ended ? vrot_worker_pid(f->worker) : 0;

        if (pid > 0)    /* a stopping worker had its SIGTERM */
                (void)vrot_proc_stop(pid, f->stopping ? 0 : SIGKILL, STOP_TIMEOUT_MS);
        if (f->thread)
                g_thread_join(f->thread);
        if (f->done) {
                g_source_destroy(f->done);
                g_source_unref(f->done);
        }
        vrot_worker_free(f->worker);
        vrot_endorsement_free(f->made);
        g_clear_error(&f->error);
        if (!keep_entry)
                remove_dir(f->dir);
        remove_dir(f->rundir);
        f->pool->refill = NULL;
        g_free(f->id);
        g_free(f->dir);
        g_free(f->rundir);
        g_free(f);
}

/* The refill failed: try again later, after a back-off that doubles. */
static void refill_failed(Refill *f, const gchar *why)
{
        VrotPool *self = f->pool;
        guint delay = backoff_s(self->failures);

        g_warning("pool: making entry %s failed: %s; trying again in %u s", f->id, why, delay);
        refill_free(f, FALSE);
        self->failures++;
        schedule_refill(self, delay);
}

/* The worker wrote the entry and ended: verify it, then list it. */
static void refill_finish(Refill *f)
{
        VrotPool *self = f->pool;
        g_autoptr(GError) error = NULL;
        gint64 ms = (g_get_monotonic_time() - f->started) / 1000;

        if (!verify_entry(self, f->id, &error) ||
            !vrot_registry_pool_add(self->registry, f->id, &error)) {
                refill_failed(f, error->message);
                return;
        }
        if (!self->save(self->save_data, &error)) {
                vrot_registry_pool_remove(self->registry, f->id);
                refill_failed(f, error->message);
                return;
        }
        self->made++;
        self->failures = 0;
        g_debug("pool: entry %s ready in %" G_GINT64_FORMAT " ms; %u of %u", f->id, ms,
                vrot_registry_pool(self->registry)->len, self->size);
        refill_free(f, TRUE);
        schedule_refill(self, 0);
        schedule_warm(self, 0);
}

static void on_exit_(VrotWorker *w, gboolean signaled, gint code, gpointer data)
{
        Refill *f = data;
        g_autofree gchar *why = NULL;

        (void)w;
        f->ended = TRUE;
        if (f->stopping && !signaled && code == 0) {
                refill_finish(f);
                return;
        }
        if (f->thread) {
                /* The thread fails on its own now; its end reports. */
                g_clear_pointer(&f->worker, vrot_worker_free);
                return;
        }
        why = g_strdup_printf("its worker ended (%s %d)", signaled ? "signal" : "exit", code);
        refill_failed(f, why);
}

/* Back on the main loop: the EKs are made (or not); the worker is told to
 * end, which writes the entry's state once (defer-writes). */
static gboolean on_made(gpointer data)
{
        Refill *f = data;
        const VrotEndorsement *e;

        g_thread_join(f->thread);
        f->thread = NULL;
        g_clear_pointer(&f->done, g_source_unref);
        if (f->error || !f->worker) {
                refill_failed(f, f->error ? f->error->message : "its worker ended");
                return G_SOURCE_REMOVE;
        }
        e = f->made;
        g_debug("pool: entry %s: EKs made (rsa %" G_GINT64_FORMAT " ms, ecc %" G_GINT64_FORMAT
                " ms)", f->id, e->step_usec[VROT_ENDORSE_STEP_CREATE_RSA] / 1000,
                e->step_usec[VROT_ENDORSE_STEP_CREATE_ECC] / 1000);
        f->stopping = TRUE;
        kill(f->pid, SIGTERM);
        return G_SOURCE_REMOVE;
}

/* The thread: the TPM commands that make both EKs, in the new vTPM only. */
static gpointer make_thread(gpointer data)
{
        Refill *f = data;
        g_autofree gchar *data_path = g_build_filename(f->rundir, "data.sock", NULL);
        g_autofree gchar *tcti = g_strdup_printf("swtpm:path=%s", data_path);

        (void)vrot_endorse_make_eks(tcti, &f->made, &f->error);
        g_source_attach(f->done, NULL);         /* the main context: on_made() */
        return NULL;
}

static void on_ready(VrotWorker *w, const GError *error, gpointer data)
{
        Refill *f = data;
        g_autofree gchar *pidfile = g_build_filename(f->rundir, "worker.pid", NULL);
        g_autoptr(GError) local = NULL;

        if (error) {
                f->ended = TRUE;        /* it never listened: gone, or killed */
                refill_failed(f, error->message);
                return;
        }
        f->pid = vrot_worker_pid(w);
        if (!vrot_pidfile_write(pidfile, f->pid, &local))
                g_warning("pool: %s", local->message);
        f->done = g_idle_source_new();
        g_source_set_callback(f->done, on_made, f, NULL);
        f->thread = g_thread_try_new("vrotd-pool", make_thread, f, &local);
        if (!f->thread) {
                g_clear_pointer(&f->done, g_source_unref);
                refill_failed(f, local->message);
        }
}

/* The new entry's worker: its own directory, key, sockets; a service-like
 * vTPM started at once, whose state is written once, when it ends.  It
 * ends with this daemon: an unfinished entry is of no use to the next one,
 * which could not even find the worker if both this daemon and the fork
 * server were killed before on_ready() wrote its PID file. */
static gboolean spawn_entry(Refill *f, GError **error)
{
        VrotPool *self = f->pool;
        g_autoptr(VrotSecret) key = NULL;
        g_autofree gchar *ctrl = g_build_filename(f->rundir, "data.sock.ctrl", NULL);
        g_autofree gchar *data = g_build_filename(f->rundir, "data.sock", NULL);
        g_autofree gchar *log = g_build_filename(f->rundir, "worker.log", NULL);
        VrotWorkerSpec spec = { .uuid = f->id, .state_dir = f->dir, .ctrl_path = ctrl,
                                .data_path = data, .log_path = log, .runas = vrot_worker_user_name(self->worker_user),
                                .not_need_init = TRUE, .defer_writes = TRUE, .end_with_daemon = TRUE };
        VrotSealer sealer;
        int key_fd;

        if (!vrot_worker_user_make_dir(self->worker_user, f->dir, 0700, error) ||
            !vrot_worker_user_make_dir(self->worker_user, f->rundir, 0755, error))
                return FALSE;
        if (!entry_sealer(self, f->id, &sealer, &key, error) ||
            (key_fd = vrot_instkey_pipe(key, error)) < 0)
                return FALSE;
        f->worker = vrot_fork_server_spawn(self->forkd, &spec, key_fd, error);
        close(key_fd);
        if (!f->worker)
                return FALSE;
        vrot_worker_watch(f->worker, START_TIMEOUT_MS, on_ready, on_exit_, f);
        return TRUE;
}

static gboolean refill_now(gpointer data)
{
        VrotPool *self = data;
        g_autoptr(GError) error = NULL;
        Refill *f;

        self->refill_source = 0;
        if (self->refill || vrot_registry_pool(self->registry)->len >= self->size)
                return G_SOURCE_REMOVE;
        f = g_new0(Refill, 1);
        f->pool = self;
        f->id = g_uuid_string_random();
        f->dir = entry_dir(self, f->id);
        f->rundir = g_build_filename(self->runtime_dir, f->id, NULL);
        f->started = g_get_monotonic_time();
        self->refill = f;
        g_debug("pool: making entry %s", f->id);
        if (!spawn_entry(f, &error))
                refill_failed(f, error->message);
        return G_SOURCE_REMOVE;
}

/* A refill in @delay_s seconds (0: from the main loop, soon), unless one
 * is under way or scheduled. */
static void schedule_refill(VrotPool *self, guint delay_s)
{
        if (self->refill || self->refill_source || self->size == 0)
                return;
        self->refill_source = delay_s ? g_timeout_add_seconds(delay_s, refill_now, self)
                                      : g_idle_add(refill_now, self);
}

/* ---- the warm entry ------------------------------------------------------------------ */

/* Ends the warm entry: its worker killed unless it ended (killed, not
 * stopped: it must not write the entry's state), its runtime directory
 * removed.  The entry stays listed unless the caller unlists it. */
static void warm_free(Warm *w)
{
        /* A worker still starting has no pid yet: it is asked of the fork
         * server, so that this one is killed too, and waited for; else it
         * would go on and lock the entry's directory against the create
         * that gave the warm-up up (vrot_pool_take()). */
        GPid pid = w->worker && !w->ended ? (w->pid > 0 ? w->pid : vrot_worker_pid(w->worker)) : 0;

        if (pid > 0)
                (void)vrot_proc_stop(pid, SIGKILL, STOP_TIMEOUT_MS);
        vrot_endorse_session_free(w->session);
        vrot_worker_free(w->worker);
        remove_dir(w->rundir);
        w->pool->warm = NULL;
        g_free(w->id);
        g_free(w->dir);
        g_free(w->rundir);
        g_free(w->data_path);
        g_free(w->key_path);
        g_free(w);
}

/* A warm-up that failed once its worker ran: the entry is discarded (a
 * refill makes another), so that a bad entry is never tried again. */
static void warm_failed(Warm *w, const gchar *why)
{
        VrotPool *self = w->pool;
        g_autofree gchar *id = g_strdup(w->id);
        g_autoptr(GError) error = NULL;
        guint delay = backoff_s(self->warm_failures);

        g_warning("pool: warming entry %s failed: %s; the entry is discarded", id, why);
        warm_free(w);
        discard(self, id);
        if (!self->save(self->save_data, &error))
                g_warning("pool: %s", error->message);
        self->warm_failures++;
        schedule_refill(self, 0);
        schedule_warm(self, delay);
}

static void on_warm_exit(VrotWorker *vw, gboolean signaled, gint code, gpointer data)
{
        Warm *w = data;
        g_autofree gchar *why = g_strdup_printf("its worker ended (%s %d)",
                                                signaled ? "signal" : "exit", code);

        (void)vw;
        w->ended = TRUE;
        if (w->claimed)
                return;         /* its create ends it (vrot_pool_warm_done()) */
        warm_failed(w, why);
}

static void on_warm_ready(VrotWorker *vw, const GError *error, gpointer data)
{
        Warm *w = data;
        g_autofree gchar *pidfile = g_build_filename(w->rundir, "worker.pid", NULL);
        g_autofree gchar *tcti = NULL;
        g_autoptr(GError) local = NULL;

        if (error) {
                w->ended = TRUE;        /* it never listened: gone, or killed */
                warm_failed(w, error->message);
                return;
        }
        w->pid = vrot_worker_pid(vw);
        if (!vrot_pidfile_write(pidfile, w->pid, &local))
                g_warning("pool: %s", local->message);
        g_clear_error(&local);
        /* What the vTPM is and its EKs, read now: a create only certifies. */
        tcti = g_strdup_printf("swtpm:path=%s", w->data_path);
        w->session = vrot_endorse_session_open(tcti, &local);
        if (!w->session) {
                warm_failed(w, local->message);
                return;
        }
        w->ready = TRUE;
        g_debug("pool: entry %s is warm (worker %d)", w->id, (int)w->pid);
}

/* The newest listed entry's vTPM, started as a service (its TPM up) with
 * a migration-key socket for BIND; it ends, writing nothing, with us. */
static gboolean warm_now(gpointer data)
{
        VrotPool *self = data;
        const GPtrArray *listed = vrot_registry_pool(self->registry);
        g_autoptr(GError) error = NULL;
        g_autoptr(VrotSecret) key = NULL;
        g_autofree gchar *ctrl = NULL, *log = NULL;
        VrotSealer sealer;
        Warm *w;
        int key_fd;

        self->warm_source = 0;
        if (self->warm || listed->len == 0)
                return G_SOURCE_REMOVE;
        w = g_new0(Warm, 1);
        w->pool = self;
        w->id = g_strdup(listed->pdata[listed->len - 1]);
        w->dir = entry_dir(self, w->id);
        w->rundir = g_build_filename(self->runtime_dir, w->id, NULL);
        w->data_path = g_build_filename(w->rundir, "data.sock", NULL);
        w->key_path = g_build_filename(w->rundir, "migrate.sock", NULL);
        ctrl = g_build_filename(w->rundir, "data.sock.ctrl", NULL);
        log = g_build_filename(w->rundir, "worker.log", NULL);
        self->warm = w;
        VrotWorkerSpec spec = { .uuid = w->id, .state_dir = w->dir, .ctrl_path = ctrl,
                                .data_path = w->data_path, .migrate_path = w->key_path,
                                .log_path = log, .runas = vrot_worker_user_name(self->worker_user),
                                .not_need_init = TRUE, .defer_writes = TRUE, .end_with_daemon = TRUE,
                                .prefault = TRUE };
        if (vrot_worker_user_make_dir(self->worker_user, w->rundir, 0755, &error) &&
            entry_sealer(self, w->id, &sealer, &key, &error) &&
            (key_fd = vrot_instkey_pipe(key, &error)) >= 0) {
                w->worker = vrot_fork_server_spawn(self->forkd, &spec, key_fd, &error);
                close(key_fd);
        }
        if (!w->worker) {
                g_warning("pool: warming entry %s: %s", w->id, error->message);
                warm_free(w);
                self->warm_failures++;
                schedule_warm(self, backoff_s(self->warm_failures));
                return G_SOURCE_REMOVE;
        }
        vrot_worker_watch(w->worker, START_TIMEOUT_MS, on_warm_ready, on_warm_exit, w);
        return G_SOURCE_REMOVE;
}

static void schedule_warm(VrotPool *self, guint delay_s)
{
        if (self->warm || self->warm_source || self->size == 0 || !self->warm_wanted)
                return;
        self->warm_source = delay_s ? g_timeout_add_seconds(delay_s, warm_now, self)
                                    : g_idle_add(warm_now, self);
}

gboolean vrot_pool_claim_warm(VrotPool *self, VrotPoolWarm *ret)
{
        Warm *w = self->warm;

        g_return_val_if_fail(ret != NULL, FALSE);
        if (!w || !w->ready || w->claimed || w->ended)
                return FALSE;
        w->claimed = TRUE;
        *ret = (VrotPoolWarm){ .id = w->id, .dir = w->dir, .key_path = w->key_path, .pid = w->pid,
                               .session = g_steal_pointer(&w->session) };
        return TRUE;
}

gboolean vrot_pool_warm_done(VrotPool *self, gboolean bound, GError **error)
{
        Warm *w = self->warm;
        g_autofree gchar *id = NULL;
        gboolean ok;

        g_return_val_if_fail(w && w->claimed, FALSE);
        id = g_strdup(w->id);
        vrot_registry_pool_remove(self->registry, id);
        /* Bound, it released the directory before it answered and ends on
         * its own (its starter connection closes in warm_free()): nobody
         * waits for its exit.  Else it is killed first. */
        ok = bound && self->save(self->save_data, error);
        if (!ok)
                (void)vrot_proc_stop(w->pid, SIGKILL, STOP_TIMEOUT_MS);
        w->ended = TRUE;
        if (!bound)
                remove_dir(w->dir);     /* unless the caller moved it */
        warm_free(w);
        self->warm_failures = 0;
        if (ok)
                self->taken++;
        else
                self->discarded++;
        schedule_refill(self, 0);
        schedule_warm(self, 0);
        return ok;
}

void vrot_pool_free(VrotPool *self)
{
        if (!self)
                return;
        g_clear_handle_id(&self->refill_source, g_source_remove);
        g_clear_handle_id(&self->warm_source, g_source_remove);
        if (self->refill)
                refill_free(self->refill, FALSE);
        if (self->warm)
                warm_free(self->warm);
        g_free(self->state_dir);
        g_free(self->runtime_dir);
        g_free(self);
}
