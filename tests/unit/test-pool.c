/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * daemon/pool with real vrot-vtpm workers from a real fork server
 * ($VROT_VTPM): entries are made in the background and listed in the
 * registry, taken entries verify only as the instance they were re-sealed
 * for, and entries that are tampered with, swapped, unlisted, sealed under
 * another master key or left empty are never used.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "instkey.h"
#include "mkey.h"
#include "pool.h"
#include "proc.h"
#include "store.h"
#include "unit.h"
#include "uuid.h"

#define FILL_TIMEOUT_S 120

static const gchar *vtpm_binary;
static VrotForkServer *fork_server;
static const guint8 registry_key[VROT_REGISTRY_KEY_LEN] = { 0x33 };
static const guint8 instance_key[32] = { 0x44, 0x45 };

/* One pool with its registry, in a directory of its own. */
typedef struct Fixture {
        gchar *dir, *state, *run, *registry_path;
        VrotRegistry *registry;
        VrotSecret *master;
        VrotPool *pool;
        guint saves;
        gboolean fail_saves;
        gboolean warm;                  /* VrotPoolParams.warm */
} Fixture;

static gboolean save(gpointer data, GError **error)
{
        Fixture *fx = data;

        fx->saves++;
        if (fx->fail_saves) {
                g_set_error_literal(error, G_FILE_ERROR, G_FILE_ERROR_NOSPC, "disk full (test)");
                return FALSE;
        }
        return vrot_registry_save(fx->registry, fx->registry_path, registry_key, error);
}

static VrotSecret *master_key(guint8 first)
{
        VrotError err = { 0 };
        VrotSecret *s = vrot_secret_new(32, &err);

        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        memset(vrot_secret_data(s), 0x5c, 32);
        vrot_secret_data(s)[0] = first;
        return s;
}

static VrotPool *pool_open(Fixture *fx, guint size)
{
        VrotPoolParams p = { .state_dir = fx->state, .runtime_dir = fx->run, .size = size,
                             .master = fx->master, .forkd = fork_server,
                             .registry = fx->registry, .save = save, .save_data = fx,
                             .warm = fx->warm };
        g_autoptr(GError) err = NULL;
        VrotPool *pool = vrot_pool_new(&p, &err);

        if (!pool)
                fprintf(stderr, "vrot_pool_new: %s\n", err->message);
        CU_ASSERT_PTR_NOT_NULL_FATAL(pool);
        return pool;
}

static Fixture *fixture_new_warm(guint size, gboolean warm)
{
        Fixture *fx = g_new0(Fixture, 1);

        fx->dir = g_build_filename(unit_tmpdir(), "pool.XXXXXX", NULL);
        CU_ASSERT_FATAL(g_mkdtemp(fx->dir) != NULL);
        fx->state = g_build_filename(fx->dir, "pool", NULL);
        fx->run = g_build_filename(fx->dir, "run", NULL);
        fx->registry_path = g_build_filename(fx->dir, "registry", NULL);
        fx->registry = vrot_registry_new();
        fx->master = master_key(1);
        fx->warm = warm;
        fx->pool = pool_open(fx, size);
        return fx;
}

static Fixture *fixture_new(guint size)
{
        return fixture_new_warm(size, FALSE);
}

static void fixture_free(Fixture *fx)
{
        g_autofree gchar *rm = NULL;

        if (!fx)
                return;
        vrot_pool_free(fx->pool);
        vrot_registry_free(fx->registry);
        vrot_secret_free(fx->master);
        rm = g_strdup_printf("rm -rf '%s'", fx->dir);
        CU_ASSERT_EQUAL(system(rm), 0);
        g_free(fx->dir);
        g_free(fx->state);
        g_free(fx->run);
        g_free(fx->registry_path);
        g_free(fx);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Fixture, fixture_free)

static VrotPoolStatus status(Fixture *fx)
{
        VrotPoolStatus st;

        vrot_pool_status(fx->pool, &st);
        return st;
}

static gboolean wake(gpointer data)
{
        (void)data;
        return G_SOURCE_CONTINUE;
}

/* Runs the main loop until @n entries are listed and none is being made. */
static void wait_ready(Fixture *fx, guint n)
{
        gint64 deadline = g_get_monotonic_time() + FILL_TIMEOUT_S * G_USEC_PER_SEC;
        guint tick = g_timeout_add(50, wake, NULL);

        while (g_get_monotonic_time() < deadline &&
               (status(fx).ready < n || status(fx).filling))
                g_main_context_iteration(NULL, TRUE);
        g_source_remove(tick);
        CU_ASSERT_EQUAL_FATAL(status(fx).ready, n);
}

static gchar *listed(Fixture *fx, guint i)
{
        const GPtrArray *ids = vrot_registry_pool(fx->registry);

        CU_ASSERT_FATAL(i < ids->len);
        return g_strdup(ids->pdata[i]);
}

static gchar *entry_path(Fixture *fx, const gchar *id, const gchar *file)
{
        return g_build_filename(fx->state, id, file, NULL);
}

static gboolean exists(const gchar *path)
{
        return g_file_test(path, G_FILE_TEST_EXISTS);
}

static gchar *target_dir(Fixture *fx, const gchar *name)
{
        gchar *dir = g_build_filename(fx->dir, name, NULL);

        CU_ASSERT_FATAL(g_mkdir(dir, 0700) == 0);
        return dir;
}

static VrotSealer instance_sealer(void)
{
        VrotSealer s = { .key = instance_key };

        CU_ASSERT_FATAL(vrot_uuid_parse("6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b", s.uuid, NULL) == 0);
        return s;
}

/* The generation of the state in @dir under @sealer, or -errno. */
static gint64 open_state(const gchar *dir, const VrotSealer *sealer)
{
        VrotStore *s = NULL;
        int r = vrot_store_open(dir, sealer, 0, &s, NULL);
        gint64 gen;

        if (r < 0)
                return r;
        gen = (gint64)vrot_store_generation(s);
        vrot_store_free(s);
        return gen;
}

static guint dir_entries(const gchar *dir)
{
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        guint n = 0;

        while (d && g_dir_read_name(d))
                n++;
        return n;
}

/* Every file in @dir has @dir's owner and group. */
static gboolean owned_like_dir(const gchar *dir)
{
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const gchar *name;
        struct stat top, st;
        guint n = 0;

        CU_ASSERT_FATAL(stat(dir, &top) == 0);
        while (d && (name = g_dir_read_name(d))) {
                g_autofree gchar *path = g_build_filename(dir, name, NULL);
                CU_ASSERT_FATAL(lstat(path, &st) == 0);
                if (st.st_uid != top.st_uid || st.st_gid != top.st_gid)
                        return FALSE;
                n++;
        }
        return n > 0;
}

static void copy_file(const gchar *from, const gchar *to)
{
        g_autofree gchar *data = NULL;
        gsize len = 0;

        CU_ASSERT_FATAL(g_file_get_contents(from, &data, &len, NULL));
        CU_ASSERT_FATAL(g_file_set_contents(to, data, (gssize)len, NULL));
}

/* ---- cases ------------------------------------------------------------------------ */

/*
 * Made in the background, listed, one file set per entry; a take gives
 * the oldest, re-sealed for the instance (its UUID and key only), removes
 * it, and the pool fills up again with a new entry.
 */
static void test_pool_fill_and_take(void)
{
        g_autoptr(Fixture) fx = fixture_new(2);
        g_autofree gchar *first = NULL, *second = NULL, *taken = NULL, *dst = NULL;
        g_autofree gchar *permall = NULL, *record = NULL;
        g_autoptr(VrotSecret) entry_key = NULL;
        g_autoptr(GError) err = NULL;
        VrotSealer inst = instance_sealer(), entry = { 0 };
        guint saves;

        wait_ready(fx, 2);
        CU_ASSERT_EQUAL(status(fx).made, 2);
        first = listed(fx, 0);
        second = listed(fx, 1);
        permall = entry_path(fx, first, "permall");
        record = entry_path(fx, first, "generation");
        CU_ASSERT_TRUE(exists(permall) && exists(record));
        CU_ASSERT_EQUAL(dir_entries(fx->run), 0);       /* no worker, socket or log left */

        dst = target_dir(fx, "instance");
        /* As with [daemon] worker-user: the worker's directory, the worker's files. */
        if (geteuid() == 0)
                CU_ASSERT_FATAL(chown(dst, 65534, 65534) == 0);
        saves = fx->saves;
        CU_ASSERT_TRUE_FATAL(vrot_pool_take(fx->pool, dst, &inst, &taken, &err));
        CU_ASSERT_STRING_EQUAL(taken, first);
        CU_ASSERT_EQUAL(fx->saves, saves + 1);
        CU_ASSERT_EQUAL(vrot_registry_pool(fx->registry)->len, 1);
        CU_ASSERT_STRING_EQUAL(vrot_registry_pool(fx->registry)->pdata[0], second);
        CU_ASSERT_FALSE(exists(permall));
        CU_ASSERT(open_state(dst, &inst) > 0);
        CU_ASSERT_TRUE(owned_like_dir(dst));
        /* Not the entry's any more: its own key and ID do not open it. */
        CU_ASSERT_FATAL(vrot_uuid_parse(first, entry.uuid, NULL) == 0);
        CU_ASSERT_FATAL(vrot_instkey_derive_pool(fx->master, entry.uuid, &entry_key, NULL));
        entry.key = vrot_secret_data(entry_key);
        CU_ASSERT_EQUAL(open_state(dst, &entry), -EUCLEAN);

        wait_ready(fx, 2);
        CU_ASSERT_EQUAL(status(fx).taken, 1);
        CU_ASSERT_EQUAL(status(fx).made, 3);
        CU_ASSERT_STRING_NOT_EQUAL(vrot_registry_pool(fx->registry)->pdata[1], first);
}

/*
 * An edited entry, and two entries with each other's files, are refused
 * and discarded when taken, never used: the next good one is taken.
 */
static void test_pool_refuses_tampered_and_swapped(void)
{
        g_autoptr(Fixture) fx = fixture_new(4);
        g_auto(GStrv) ids = g_new0(gchar *, 5);
        g_autofree gchar *taken = NULL, *dst = NULL;
        g_autoptr(GError) err = NULL;
        VrotSealer inst = instance_sealer();
        static const gchar *const files[] = { "permall", "generation" };

        wait_ready(fx, 4);
        for (guint i = 0; i < 4; i++)
                ids[i] = listed(fx, i);
        {
                g_autofree gchar *p = entry_path(fx, ids[0], "permall");
                g_autofree gchar *data = NULL;
                gsize len = 0;

                CU_ASSERT_FATAL(g_file_get_contents(p, &data, &len, NULL));
                data[len / 2] ^= 0x01;
                CU_ASSERT_FATAL(g_file_set_contents(p, data, (gssize)len, NULL));
        }
        for (gsize k = 0; k < G_N_ELEMENTS(files); k++) {
                g_autofree gchar *a = entry_path(fx, ids[1], files[k]);
                g_autofree gchar *b = entry_path(fx, ids[2], files[k]);
                g_autofree gchar *tmp = g_build_filename(fx->dir, "swap", NULL);

                copy_file(a, tmp);
                copy_file(b, a);
                copy_file(tmp, b);
                CU_ASSERT_EQUAL(unlink(tmp), 0);
        }
        dst = target_dir(fx, "instance");
        CU_ASSERT_TRUE_FATAL(vrot_pool_take(fx->pool, dst, &inst, &taken, &err));
        CU_ASSERT_STRING_EQUAL(taken, ids[3]);
        CU_ASSERT_EQUAL(status(fx).discarded, 3);
        CU_ASSERT_EQUAL(status(fx).ready, 0);
        for (guint i = 0; i < 3; i++) {
                g_autofree gchar *d = g_build_filename(fx->state, ids[i], NULL);
                CU_ASSERT_FALSE(exists(d));
        }
        CU_ASSERT(open_state(dst, &inst) > 0);
}

/* Nothing left to take: no state written, no registry write. */
static void test_pool_take_when_empty(void)
{
        g_autoptr(Fixture) fx = fixture_new(0);
        g_autofree gchar *taken = NULL, *dst = target_dir(fx, "instance");
        g_autoptr(GError) err = NULL;
        VrotSealer inst = instance_sealer();

        CU_ASSERT_TRUE(vrot_pool_take(fx->pool, dst, &inst, &taken, &err));
        CU_ASSERT_PTR_NULL(taken);
        CU_ASSERT_EQUAL(fx->saves, 0);
        CU_ASSERT_EQUAL(dir_entries(dst), 0);
        CU_ASSERT_FALSE(status(fx).filling);
}

/* A take whose registry write fails leaves the entry listed and usable,
 * and no state in the target. */
static void test_pool_take_save_fails(void)
{
        g_autoptr(Fixture) fx = fixture_new(1);
        g_autofree gchar *id = NULL, *taken = NULL, *dst = NULL, *permall = NULL;
        g_autoptr(GError) err = NULL;
        VrotSealer inst = instance_sealer();

        wait_ready(fx, 1);
        id = listed(fx, 0);
        permall = entry_path(fx, id, "permall");
        dst = target_dir(fx, "instance");
        fx->fail_saves = TRUE;
        CU_ASSERT_FALSE(vrot_pool_take(fx->pool, dst, &inst, &taken, &err));
        CU_ASSERT(err && strstr(err->message, "disk full"));
        CU_ASSERT_PTR_NULL(taken);
        CU_ASSERT_EQUAL(dir_entries(dst), 0);
        CU_ASSERT_EQUAL(vrot_registry_pool(fx->registry)->len, 1);
        CU_ASSERT_TRUE(exists(permall));
        fx->fail_saves = FALSE;
        g_clear_error(&err);
        CU_ASSERT_TRUE(vrot_pool_take(fx->pool, dst, &inst, &taken, &err));
        CU_ASSERT_STRING_EQUAL(taken, id);
}

/*
 * Entries survive a restart; at the next start a directory that is not
 * listed (a taken entry put back) is removed, a listed entry without its
 * files is discarded, and a smaller size discards the newest.
 */
static void test_pool_restart(void)
{
        g_autoptr(Fixture) fx = fixture_new(3);
        g_auto(GStrv) ids = g_new0(gchar *, 4);
        g_autofree gchar *ghost = NULL, *ghost_permall = NULL, *p = NULL, *g = NULL;

        wait_ready(fx, 3);
        for (guint i = 0; i < 3; i++)
                ids[i] = listed(fx, i);
        g_clear_pointer(&fx->pool, vrot_pool_free);

        /* A copy of entry 0 under an unlisted name, and entry 1 emptied. */
        ghost = g_build_filename(fx->state, "00000000-0000-4000-8000-00000000dead", NULL);
        CU_ASSERT_FATAL(g_mkdir(ghost, 0700) == 0);
        ghost_permall = g_build_filename(ghost, "permall", NULL);
        p = entry_path(fx, ids[0], "permall");
        copy_file(p, ghost_permall);
        g_free(p);
        p = entry_path(fx, ids[1], "permall");
        g = entry_path(fx, ids[1], "generation");
        CU_ASSERT_EQUAL(unlink(p), 0);
        CU_ASSERT_EQUAL(unlink(g), 0);

        fx->pool = pool_open(fx, 3);
        CU_ASSERT_EQUAL(status(fx).ready, 2);           /* at once: no refill needed */
        CU_ASSERT_EQUAL(status(fx).discarded, 1);
        CU_ASSERT_STRING_EQUAL(vrot_registry_pool(fx->registry)->pdata[0], ids[0]);
        CU_ASSERT_STRING_EQUAL(vrot_registry_pool(fx->registry)->pdata[1], ids[2]);
        CU_ASSERT_FALSE(exists(ghost));
        wait_ready(fx, 3);

        g_clear_pointer(&fx->pool, vrot_pool_free);
        fx->pool = pool_open(fx, 1);                    /* pool-size lowered */
        CU_ASSERT_EQUAL(status(fx).ready, 1);
        CU_ASSERT_STRING_EQUAL(vrot_registry_pool(fx->registry)->pdata[0], ids[0]);
}

/* A new master key: every entry fails to verify, is discarded, and the
 * pool fills again under the new key. */
static void test_pool_other_master_key(void)
{
        g_autoptr(Fixture) fx = fixture_new(2);
        g_autofree gchar *old0 = NULL, *new0 = NULL, *d0 = NULL;

        wait_ready(fx, 2);
        old0 = listed(fx, 0);
        d0 = g_build_filename(fx->state, old0, NULL);
        g_clear_pointer(&fx->pool, vrot_pool_free);
        vrot_secret_free(fx->master);
        fx->master = master_key(2);
        fx->pool = pool_open(fx, 2);
        CU_ASSERT_EQUAL(status(fx).ready, 0);
        CU_ASSERT_EQUAL(status(fx).discarded, 2);
        CU_ASSERT_FALSE(exists(d0));
        wait_ready(fx, 2);
        new0 = listed(fx, 0);
        CU_ASSERT_STRING_NOT_EQUAL(new0, old0);
}

/* Freed while an entry is being made: its worker is stopped, nothing of
 * the unfinished entry stays, nothing is listed. */
static void test_pool_free_during_refill(void)
{
        g_autoptr(Fixture) fx = fixture_new(1);
        gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
        guint tick = g_timeout_add(5, wake, NULL);

        /* Until the worker runs (its runtime directory has a PID file). */
        while (g_get_monotonic_time() < deadline && status(fx).ready == 0) {
                g_autoptr(GDir) d = g_dir_open(fx->run, 0, NULL);
                const gchar *name = d ? g_dir_read_name(d) : NULL;
                g_autofree gchar *pidfile = name ? g_build_filename(fx->run, name, "worker.pid", NULL)
                                                 : NULL;

                if (pidfile && exists(pidfile))
                        break;
                g_main_context_iteration(NULL, TRUE);
        }
        g_source_remove(tick);
        CU_ASSERT_TRUE(status(fx).filling);
        g_clear_pointer(&fx->pool, vrot_pool_free);
        CU_ASSERT_EQUAL(vrot_registry_pool(fx->registry)->len, 0);
        CU_ASSERT_EQUAL(dir_entries(fx->state), 0);
        CU_ASSERT_EQUAL(dir_entries(fx->run), 0);
}

/* Runs the main loop until an entry is warm. */
static void wait_warm(Fixture *fx)
{
        gint64 deadline = g_get_monotonic_time() + FILL_TIMEOUT_S * G_USEC_PER_SEC;
        guint tick = g_timeout_add(50, wake, NULL);

        while (g_get_monotonic_time() < deadline && !status(fx).warm)
                g_main_context_iteration(NULL, TRUE);
        g_source_remove(tick);
        CU_ASSERT_TRUE_FATAL(status(fx).warm);
}

/* BIND on a worker's key socket, as vrotd sends it; the worker's answer. */
static guint32 send_bind(const gchar *path, const VrotSealer *to)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        VrotMkeyRequest r = { .op = VROT_MKEY_BIND };
        guint8 buf[VROT_MKEY_REQUEST_MAX], ans[VROT_MKEY_ANSWER_LEN];
        VrotMkeyAnswer a = { .result = ~0u };
        size_t len, got = 0;
        ssize_t n;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        memcpy(r.id, to->uuid, sizeof(r.id));
        memcpy(r.key, to->key, sizeof(r.key));
        len = vrot_mkey_encode_request(&r, buf);
        g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
        CU_ASSERT_FATAL(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
        CU_ASSERT_FATAL(write(fd, buf, len) == (ssize_t)len);
        while (got < sizeof(ans) && (n = read(fd, ans + got, sizeof(ans) - got)) > 0)
                got += (size_t)n;
        close(fd);
        CU_ASSERT_EQUAL(vrot_mkey_parse_answer(ans, got, &a), 0);
        return a.result;
}

/*
 * The warm entry: a running worker on a listed entry, with its vTPM
 * inspected (an endorsement session open).  Claimed, moved and bound
 * (BIND), it seals the state under the instance's key and ends; done, the
 * entry is unlisted in one save.  Never copied by a cold take meanwhile.
 */
static void test_pool_warm_bind(void)
{
        g_autoptr(Fixture) fx = fixture_new_warm(2, TRUE);
        g_autofree gchar *warm_id = NULL, *dst = NULL, *taken = NULL, *cold_dst = NULL;
        g_autofree gchar *first = NULL, *second = NULL;
        g_autoptr(GError) err = NULL;
        VrotSealer inst = instance_sealer();
        VrotPoolWarm w;
        guint saves;

        wait_ready(fx, 2);
        wait_warm(fx);
        CU_ASSERT_TRUE_FATAL(vrot_pool_claim_warm(fx->pool, &w));
        warm_id = g_strdup(w.id);
        first = listed(fx, 0);
        second = listed(fx, 1);
        CU_ASSERT(g_strcmp0(warm_id, first) == 0 || g_strcmp0(warm_id, second) == 0);
        CU_ASSERT_PTR_NOT_NULL(w.session);
        CU_ASSERT(w.pid > 0 && kill(w.pid, 0) == 0);
        CU_ASSERT_FALSE(status(fx).warm);
        CU_ASSERT_FALSE(vrot_pool_claim_warm(fx->pool, &(VrotPoolWarm){ 0 }));  /* once */
        vrot_endorse_session_free(w.session);

        /* A cold take meanwhile copies the other entry, not the claimed one. */
        cold_dst = target_dir(fx, "cold");
        CU_ASSERT_TRUE_FATAL(vrot_pool_take(fx->pool, cold_dst, &inst, &taken, &err));
        CU_ASSERT_STRING_NOT_EQUAL(taken, warm_id);

        dst = g_build_filename(fx->dir, "bound", NULL);
        CU_ASSERT_FATAL(rename(w.dir, dst) == 0);
        CU_ASSERT_EQUAL(send_bind(w.key_path, &inst), 0);
        saves = fx->saves;
        CU_ASSERT_TRUE(vrot_pool_warm_done(fx->pool, TRUE, &err));
        CU_ASSERT_EQUAL(fx->saves, saves + 1);
        /* Not waited for (it released the directory before it answered,
         * test-store): it ends by itself. */
        CU_ASSERT_TRUE(vrot_proc_stop(w.pid, 0, 10000));
        CU_ASSERT_EQUAL(status(fx).taken, 2);
        for (guint i = 0; i < vrot_registry_pool(fx->registry)->len; i++)
                CU_ASSERT_STRING_NOT_EQUAL(vrot_registry_pool(fx->registry)->pdata[i], warm_id);
        /* The instance's now: its sealer opens it, the entry's does not. */
        CU_ASSERT(open_state(dst, &inst) > 0);
        {
                g_autoptr(VrotSecret) entry_key = NULL;
                VrotSealer entry = { 0 };

                CU_ASSERT_FATAL(vrot_uuid_parse(warm_id, entry.uuid, NULL) == 0);
                CU_ASSERT_FATAL(vrot_instkey_derive_pool(fx->master, entry.uuid, &entry_key, NULL));
                entry.key = vrot_secret_data(entry_key);
                CU_ASSERT_EQUAL(open_state(dst, &entry), -EUCLEAN);
        }
        wait_ready(fx, 2);
        wait_warm(fx);                          /* the next one */
}

/* A claim given up: the worker killed, the entry unlisted and its files
 * gone, nothing saved (the caller's undo does). */
static void test_pool_warm_given_up(void)
{
        g_autoptr(Fixture) fx = fixture_new_warm(1, TRUE);
        g_autofree gchar *warm_id = NULL, *dir = NULL, *next = NULL;
        VrotPoolWarm w;
        guint saves;

        wait_ready(fx, 1);
        wait_warm(fx);
        warm_id = listed(fx, 0);
        CU_ASSERT_TRUE_FATAL(vrot_pool_claim_warm(fx->pool, &w));
        dir = g_strdup(w.dir);
        vrot_endorse_session_free(w.session);
        saves = fx->saves;
        CU_ASSERT_FALSE(vrot_pool_warm_done(fx->pool, FALSE, NULL));
        CU_ASSERT_EQUAL(fx->saves, saves);
        CU_ASSERT_EQUAL(vrot_registry_pool(fx->registry)->len, 0);
        CU_ASSERT_FALSE(exists(dir));
        CU_ASSERT_EQUAL(status(fx).discarded, 1);
        CU_ASSERT(kill(w.pid, 0) < 0 || waitpid(w.pid, NULL, WNOHANG) >= 0);
        wait_ready(fx, 1);
        wait_warm(fx);
        next = listed(fx, 0);
        CU_ASSERT_STRING_NOT_EQUAL(next, warm_id);
}

/* A cold take that finds only the warm entry (its warm-up not done, or
 * done but not claimed) gives the warm-up up and takes the entry cold:
 * a create never goes without an entry the pool has. */
static void test_pool_take_gives_up_warm(void)
{
        g_autoptr(Fixture) fx = fixture_new_warm(1, TRUE);
        g_autofree gchar *only = NULL, *taken = NULL, *dst = NULL;
        g_autoptr(GError) err = NULL;
        VrotSealer inst = instance_sealer();

        wait_ready(fx, 1);
        wait_warm(fx);
        only = listed(fx, 0);
        dst = target_dir(fx, "instance");
        CU_ASSERT_TRUE_FATAL(vrot_pool_take(fx->pool, dst, &inst, &taken, &err));
        CU_ASSERT_STRING_EQUAL(taken, only);
        CU_ASSERT_FALSE(status(fx).warm);
        CU_ASSERT(open_state(dst, &inst) > 0);
        wait_ready(fx, 1);
        wait_warm(fx);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_pool_fill_and_take),
                UNIT_CASE(test_pool_refuses_tampered_and_swapped),
                UNIT_CASE(test_pool_take_when_empty),
                UNIT_CASE(test_pool_take_save_fails),
                UNIT_CASE(test_pool_restart),
                UNIT_CASE(test_pool_other_master_key),
                UNIT_CASE(test_pool_free_during_refill),
                UNIT_CASE(test_pool_warm_bind),
                UNIT_CASE(test_pool_warm_given_up),
                UNIT_CASE(test_pool_take_gives_up_warm),
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
        g_setenv("TSS2_LOG", "all+none", TRUE);
        sock = g_build_filename(unit_tmpdir(), "forkd.sock", NULL);
        log = g_build_filename(unit_tmpdir(), "forkd.log", NULL);
        fork_server = vrot_fork_server_start(vtpm_binary, sock, log, &err);
        g_assert_no_error(err);
        ret = UNIT_RUN("pool", cases);
        vrot_fork_server_free(fork_server);
        return ret;
}
