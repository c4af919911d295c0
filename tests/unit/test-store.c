/* SPDX-License-Identifier: BSD-3-Clause */
/* The generation rules of lib/store.h, one case each (R-SEAL-3, R-SEAL-4),
 * and the re-binding of a state to another key and instance. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "unit.h"

static const uint8_t key[32] = { 7, 7, 7 };

static VrotSealer sealer_for(uint8_t uuid_byte)
{
        VrotSealer s = { .key = key };
        memset(s.uuid, uuid_byte, 16);
        return s;
}

static VrotSealer sealer1;

static const char *fresh_dir(const char *name)
{
        static char paths[4][512];      /* a test uses at most two at once */
        static unsigned next;
        char *path = paths[next++ % 4];

        snprintf(path, 512, "%s/%s", unit_tmpdir(), name);
        CU_ASSERT_FATAL(mkdir(path, 0700) == 0);
        return path;
}

static void file_path(char *out, const char *dir, const char *name)
{
        snprintf(out, 512, "%s/%s", dir, name);
}

static void copy_file(const char *dir, const char *from, const char *to_dir, const char *to)
{
        char a[512], b[512];
        uint8_t buf[8192];
        size_t n;

        file_path(a, dir, from);
        file_path(b, to_dir, to);
        n = unit_read_file(a, buf, sizeof(buf));
        unit_write_file(b, buf, n);
}

static VrotStore *open_ok(const char *dir)
{
        VrotStore *s = NULL;
        VrotError err = { 0 };

        if (vrot_store_open(dir, &sealer1, 0, &s, &err) < 0)
                fprintf(stderr, "unexpected: %s\n", err.msg);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        return s;
}

static void save(VrotStore *s, uint32_t type, const char *text)
{
        CU_ASSERT_EQUAL_FATAL(vrot_store_save(s, type, (const uint8_t *)text,
                                              (uint32_t)strlen(text), NULL), 0);
}

static void expect_refused(const char *dir, uint64_t min_gen, const char *msg)
{
        VrotStore *s = NULL;
        VrotError err = { 0 };

        CU_ASSERT_EQUAL(vrot_store_open(dir, &sealer1, min_gen, &s, &err), -EUCLEAN);
        CU_ASSERT_PTR_NULL(s);
        if (!strstr(err.msg, msg)) {
                fprintf(stderr, "wanted '%s' in '%s'\n", msg, err.msg);
                CU_FAIL("wrong refusal message");
        }
}

static void test_store_round_trip_and_generations(void)
{
        const char *dir = fresh_dir("round");
        VrotStore *s = open_ok(dir);
        uint8_t *buf;
        uint32_t len;

        CU_ASSERT_EQUAL(vrot_store_generation(s), 0);
        CU_ASSERT_EQUAL(vrot_store_load(s, VROT_BLOB_PERMANENT, &buf, &len, NULL), -ENOENT);
        save(s, VROT_BLOB_PERMANENT, "perm-1");
        save(s, VROT_BLOB_VOLATILE, "vol-1");
        save(s, VROT_BLOB_PERMANENT, "perm-2");
        CU_ASSERT_EQUAL(vrot_store_generation(s), 3);
        vrot_store_free(s);

        s = open_ok(dir);
        CU_ASSERT_EQUAL(vrot_store_generation(s), 3);
        CU_ASSERT_EQUAL_FATAL(vrot_store_load(s, VROT_BLOB_PERMANENT, &buf, &len, NULL), 0);
        CU_ASSERT(len == 6 && memcmp(buf, "perm-2", 6) == 0);
        free(buf);
        CU_ASSERT_EQUAL(vrot_store_delete(s, VROT_BLOB_VOLATILE, NULL), 0);
        CU_ASSERT_EQUAL(vrot_store_load(s, VROT_BLOB_VOLATILE, &buf, &len, NULL), -ENOENT);
        vrot_store_free(s);
        vrot_store_free(open_ok(dir));
}

/* defer-writes: saves stay in memory (loads see them), nothing reaches the
 * disk until the flush, which writes each blob once; freeing without a
 * flush leaves the directory as it was. */
static void test_store_deferred_writes(void)
{
        const char *dir = fresh_dir("deferred");
        VrotStore *s = open_ok(dir);
        char path[512];
        uint8_t *buf;
        uint32_t len;

        vrot_store_defer(s);
        save(s, VROT_BLOB_PERMANENT, "perm-1");
        save(s, VROT_BLOB_PERMANENT, "perm-2");
        save(s, VROT_BLOB_VOLATILE, "vol-1");
        CU_ASSERT_EQUAL(vrot_store_delete(s, VROT_BLOB_VOLATILE, NULL), 0);
        file_path(path, dir, "permall");
        CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0);
        CU_ASSERT_EQUAL(vrot_store_generation(s), 0);
        CU_ASSERT_EQUAL_FATAL(vrot_store_load(s, VROT_BLOB_PERMANENT, &buf, &len, NULL), 0);
        CU_ASSERT(len == 6 && memcmp(buf, "perm-2", 6) == 0);
        free(buf);
        CU_ASSERT_EQUAL(vrot_store_load(s, VROT_BLOB_VOLATILE, &buf, &len, NULL), -ENOENT);
        CU_ASSERT_EQUAL(vrot_store_flush(s, NULL), 0);
        CU_ASSERT_EQUAL(vrot_store_generation(s), 1);
        CU_ASSERT_EQUAL(access(path, F_OK), 0);
        save(s, VROT_BLOB_PERMANENT, "perm-3");         /* deferral ended */
        CU_ASSERT_EQUAL(vrot_store_generation(s), 2);
        vrot_store_free(s);

        s = open_ok(dir);
        CU_ASSERT_EQUAL_FATAL(vrot_store_load(s, VROT_BLOB_PERMANENT, &buf, &len, NULL), 0);
        CU_ASSERT(len == 6 && memcmp(buf, "perm-3", 6) == 0);
        free(buf);
        vrot_store_defer(s);
        save(s, VROT_BLOB_PERMANENT, "lost");
        vrot_store_free(s);                             /* no flush: nothing written */
        s = open_ok(dir);
        CU_ASSERT_EQUAL(vrot_store_generation(s), 2);
        vrot_store_free(s);
}

/* The text of the permall blob when the store at @dir opens. */
static void expect_permall(const char *dir, const char *text, uint64_t gen)
{
        VrotStore *s = open_ok(dir);
        uint8_t *buf = NULL;
        uint32_t len = 0;

        CU_ASSERT_EQUAL(vrot_store_generation(s), gen);
        CU_ASSERT_EQUAL_FATAL(vrot_store_load(s, VROT_BLOB_PERMANENT, &buf, &len, NULL), 0);
        CU_ASSERT(len == strlen(text) && memcmp(buf, text, len) == 0);
        free(buf);
        vrot_store_free(s);
}

static bool exists(const char *dir, const char *name)
{
        char path[512];

        file_path(path, dir, name);
        return access(path, F_OK) == 0;
}

/* Staged, the new state is in temporary files and the old one current;
 * committed, the new one is; staged and dropped, nothing changed. */
static void test_store_staged_write(void)
{
        const char *dir = fresh_dir("staged");
        VrotStore *s = open_ok(dir);
        VrotError err = { 0 };
        struct stat before, after;
        char path[512];
        pid_t pid;
        int status;

        save(s, VROT_BLOB_PERMANENT, "perm-1");
        file_path(path, dir, "permall");
        CU_ASSERT_FATAL(stat(path, &before) == 0);
        vrot_store_defer(s);
        save(s, VROT_BLOB_PERMANENT, "perm-2");
        CU_ASSERT_EQUAL_FATAL(vrot_store_stage(s, NULL), 0);
        CU_ASSERT_EQUAL(vrot_store_generation(s), 1);
        CU_ASSERT(exists(dir, ".permall.tmp") && exists(dir, ".generation.tmp"));
        CU_ASSERT_EQUAL(vrot_store_commit(s, NULL), 0);
        CU_ASSERT_EQUAL(vrot_store_generation(s), 2);
        /* Committed: the files changed places (lib/durable.h, recycling). */
        file_path(path, dir, ".permall.tmp");
        CU_ASSERT(stat(path, &after) == 0 && after.st_ino == before.st_ino);
        CU_ASSERT_EQUAL(vrot_store_commit(s, NULL), 0);         /* nothing staged */
        vrot_store_free(s);
        expect_permall(dir, "perm-2", 2);

        /* Dropped before its commit: its files go, the state is as before. */
        s = open_ok(dir);
        vrot_store_defer(s);
        save(s, VROT_BLOB_PERMANENT, "perm-dropped");
        CU_ASSERT_EQUAL_FATAL(vrot_store_stage(s, NULL), 0);
        vrot_store_free(s);
        CU_ASSERT(!exists(dir, ".permall.tmp") && !exists(dir, ".generation.tmp"));
        expect_permall(dir, "perm-2", 2);

        /* A crash between stage and commit leaves the temporary files;
         * the state is as before, and the next write replaces them. */
        pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
                s = open_ok(dir);
                vrot_store_defer(s);
                save(s, VROT_BLOB_PERMANENT, "perm-crashed");
                _exit(vrot_store_stage(s, NULL) == 0 ? 0 : 1);
        }
        CU_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CU_ASSERT(exists(dir, ".permall.tmp") && exists(dir, ".generation.tmp"));
        expect_permall(dir, "perm-2", 2);

        /* A save after the stage commits it first. */
        s = open_ok(dir);
        vrot_store_defer(s);
        save(s, VROT_BLOB_PERMANENT, "perm-3");
        CU_ASSERT_EQUAL_FATAL(vrot_store_stage(s, NULL), 0);
        save(s, VROT_BLOB_VOLATILE, "vol-1");
        CU_ASSERT_EQUAL(vrot_store_generation(s), 4);
        vrot_store_free(s);
        expect_permall(dir, "perm-3", 4);

        /* Two blobs waiting are written at once, in order. */
        s = open_ok(dir);
        vrot_store_defer(s);
        save(s, VROT_BLOB_PERMANENT, "perm-4");
        save(s, VROT_BLOB_VOLATILE, "vol-2");
        CU_ASSERT_EQUAL(vrot_store_stage(s, NULL), 0);
        CU_ASSERT_EQUAL(vrot_store_generation(s), 6);
        vrot_store_free(s);
        expect_permall(dir, "perm-4", 6);

        /* A file that cannot be written fails the stage, which changes
         * nothing (a directory in the way: the tests run as root). */
        file_path(path, dir, ".generation.tmp");
        CU_ASSERT_FATAL(unlink(path) == 0 && mkdir(path, 0700) == 0);
        s = open_ok(dir);
        vrot_store_defer(s);
        save(s, VROT_BLOB_PERMANENT, "perm-refused");
        CU_ASSERT(vrot_store_stage(s, &err) < 0);
        CU_ASSERT(strstr(err.msg, ".generation.tmp") != NULL);
        CU_ASSERT(!exists(dir, ".permall.tmp"));
        CU_ASSERT_EQUAL(vrot_store_commit(s, NULL), 0);         /* nothing staged */
        vrot_store_free(s);
        CU_ASSERT(rmdir(path) == 0);
        expect_permall(dir, "perm-4", 6);
}

/* What vrot_store_open() authenticated is what the first load returns:
 * the file is decrypted once, not read again (here it is gone by then);
 * a save in between makes the kept copy stale, and drops it. */
static void test_store_first_load_is_what_open_checked(void)
{
        const char *dir = fresh_dir("kept");
        char path[512];
        uint8_t *plain = NULL;
        uint32_t len = 0;
        VrotStore *s = open_ok(dir);

        save(s, VROT_BLOB_PERMANENT, "checked at open");
        save(s, VROT_BLOB_VOLATILE, "volatile");
        vrot_store_free(s);

        s = open_ok(dir);
        file_path(path, dir, "permall");
        CU_ASSERT_EQUAL_FATAL(unlink(path), 0);
        CU_ASSERT_EQUAL(vrot_store_load(s, VROT_BLOB_PERMANENT, &plain, &len, NULL), 0);
        CU_ASSERT(len == strlen("checked at open") && plain &&
                  memcmp(plain, "checked at open", len) == 0);
        free(plain);
        plain = NULL;
        /* Handed out once: the next load reads the file, which is gone. */
        CU_ASSERT(vrot_store_load(s, VROT_BLOB_PERMANENT, &plain, &len, NULL) < 0);
        CU_ASSERT_PTR_NULL(plain);

        save(s, VROT_BLOB_VOLATILE, "saved after open");
        CU_ASSERT_EQUAL(vrot_store_load(s, VROT_BLOB_VOLATILE, &plain, &len, NULL), 0);
        CU_ASSERT(len == strlen("saved after open") && plain &&
                  memcmp(plain, "saved after open", len) == 0);
        free(plain);
        vrot_store_free(s);
}

static void test_store_lock_excludes_second_worker(void)
{
        const char *dir = fresh_dir("lock");
        VrotStore *s = open_ok(dir), *t = NULL;
        VrotError err = { 0 };

        CU_ASSERT_EQUAL(vrot_store_open(dir, &sealer1, 0, &t, &err), -EBUSY);
        CU_ASSERT(strstr(err.msg, "in use") != NULL);
        vrot_store_free(s);
}

static void test_store_refuses_older_blob(void)
{
        const char *dir = fresh_dir("older");
        char bak[512];
        VrotStore *s = open_ok(dir);

        save(s, VROT_BLOB_PERMANENT, "perm-1");
        snprintf(bak, sizeof(bak), "%s-bak", dir);
        mkdir(bak, 0700);
        copy_file(dir, "permall", bak, "permall");
        save(s, VROT_BLOB_PERMANENT, "perm-2");
        vrot_store_free(s);
        copy_file(bak, "permall", dir, "permall");
        expect_refused(dir, 0, "state file permall: generation 1 is older than the current 2");
}

static void test_store_refuses_rolled_back_record(void)
{
        const char *dir = fresh_dir("record");
        VrotStore *s = open_ok(dir);

        save(s, VROT_BLOB_PERMANENT, "a");
        save(s, VROT_BLOB_PERMANENT, "b");
        vrot_store_free(s);
        expect_refused(dir, 5, "generation 2 is older than the expected 5");
        vrot_store_free(open_ok(dir));
}

static void test_store_accepts_write_cut_before_record(void)
{
        const char *dir = fresh_dir("cut");
        char rec[512], bak[512];
        VrotStore *s = open_ok(dir);
        uint8_t *buf;
        uint32_t len;

        save(s, VROT_BLOB_PERMANENT, "old");
        snprintf(bak, sizeof(bak), "%s-bak", dir);
        mkdir(bak, 0700);
        copy_file(dir, "generation", bak, "generation");
        save(s, VROT_BLOB_PERMANENT, "new");
        vrot_store_free(s);
        /* Simulate the crash: the blob landed, its record did not. */
        copy_file(bak, "generation", dir, "generation");
        s = open_ok(dir);
        CU_ASSERT_EQUAL(vrot_store_generation(s), 2);
        CU_ASSERT_EQUAL_FATAL(vrot_store_load(s, VROT_BLOB_PERMANENT, &buf, &len, NULL), 0);
        CU_ASSERT(len == 3 && memcmp(buf, "new", 3) == 0);
        free(buf);
        vrot_store_free(s);
        file_path(rec, dir, "generation");
        CU_ASSERT_EQUAL(access(rec, F_OK), 0);
}

static void test_store_first_write_cut_before_record(void)
{
        const char *dir = fresh_dir("first");
        char rec[512];
        VrotStore *s = open_ok(dir);

        save(s, VROT_BLOB_PERMANENT, "first");
        vrot_store_free(s);
        file_path(rec, dir, "generation");
        CU_ASSERT_EQUAL(unlink(rec), 0);
        s = open_ok(dir);
        CU_ASSERT_EQUAL(vrot_store_generation(s), 1);
        vrot_store_free(s);
}

static void test_store_refuses_restored_deleted_blob(void)
{
        const char *dir = fresh_dir("deleted");
        char bak[512];
        VrotStore *s = open_ok(dir);

        save(s, VROT_BLOB_PERMANENT, "p");
        save(s, VROT_BLOB_VOLATILE, "v");
        snprintf(bak, sizeof(bak), "%s-bak", dir);
        mkdir(bak, 0700);
        copy_file(dir, "volatilestate", bak, "volatilestate");
        CU_ASSERT_EQUAL(vrot_store_delete(s, VROT_BLOB_VOLATILE, NULL), 0);
        vrot_store_free(s);
        copy_file(bak, "volatilestate", dir, "volatilestate");
        expect_refused(dir, 0, "state file volatilestate: generation 2 is older");
}

static void test_store_refuses_missing_permall(void)
{
        const char *dir = fresh_dir("missing");
        char p[512];
        VrotStore *s = open_ok(dir);

        save(s, VROT_BLOB_PERMANENT, "p");
        vrot_store_free(s);
        file_path(p, dir, "permall");
        unlink(p);
        expect_refused(dir, 0, "state file permall: missing");
}

static void test_store_refuses_swapped_and_damaged(void)
{
        const char *dir = fresh_dir("swap"), *other;
        char p[512], q[512];
        VrotSealer sealer2 = sealer_for(2);
        VrotStore *s = open_ok(dir), *t = NULL;
        uint8_t buf[4096];
        size_t n;

        save(s, VROT_BLOB_PERMANENT, "p");
        save(s, VROT_BLOB_VOLATILE, "v");
        vrot_store_free(s);

        /* Type swap: permall's bytes under volatilestate's name. */
        copy_file(dir, "volatilestate", dir, "vol.bak");
        copy_file(dir, "permall", dir, "volatilestate");
        expect_refused(dir, 0, "state file volatilestate: is a permall blob");
        copy_file(dir, "vol.bak", dir, "volatilestate");

        /* Instance swap: another instance's permall. */
        other = fresh_dir("swap-other");
        CU_ASSERT_EQUAL_FATAL(vrot_store_open(other, &sealer2, 0, &t, NULL), 0);
        CU_ASSERT_EQUAL(vrot_store_save(t, VROT_BLOB_PERMANENT, (const uint8_t *)"x", 1, NULL), 0);
        vrot_store_free(t);
        copy_file(dir, "permall", dir, "perm.bak");
        copy_file(other, "permall", dir, "permall");
        expect_refused(dir, 0, "state file permall: belongs to another instance");

        /* Empty, truncated, flipped. */
        file_path(p, dir, "permall");
        unit_write_file(p, "", 0);
        expect_refused(dir, 0, "state file permall: empty file");
        file_path(q, dir, "perm.bak");
        n = unit_read_file(q, buf, sizeof(buf));
        unit_write_file(p, buf, n - 1);
        expect_refused(dir, 0, "state file permall: length mismatch");
        buf[n - 20] ^= 0x40;
        unit_write_file(p, buf, n);
        expect_refused(dir, 0, "state file permall: authentication failed");
        buf[n - 20] ^= 0x40;
        unit_write_file(p, buf, n);
        vrot_store_free(open_ok(dir));
}

/* A copy verifies only under the target's key and UUID, holds the same
 * plaintext, and is refused by the source's sealer; a target with state is
 * not written to. */
static void test_store_copy_rebinds(void)
{
        static const uint8_t key2[32] = { 9, 9, 9 };
        const char *from = fresh_dir("copy-from"), *to = fresh_dir("copy-to");
        VrotSealer target = sealer_for(3);
        VrotStore *s = open_ok(from), *t = NULL;
        VrotError err = { 0 };
        uint8_t *buf;
        uint32_t len;

        target.key = key2;
        save(s, VROT_BLOB_PERMANENT, "perm-1");
        save(s, VROT_BLOB_PERMANENT, "perm-2");
        save(s, VROT_BLOB_VOLATILE, "vol-1");
        CU_ASSERT_EQUAL_FATAL(vrot_store_open(to, &target, 0, &t, NULL), 0);
        vrot_store_defer(t);
        CU_ASSERT_EQUAL(vrot_store_copy(s, t, &err), 0);
        CU_ASSERT_EQUAL(vrot_store_copy(s, t, &err), -EEXIST);  /* pending counts as state */
        CU_ASSERT(strstr(err.msg, "holds state") != NULL);
        CU_ASSERT_EQUAL(vrot_store_flush(t, NULL), 0);
        CU_ASSERT_EQUAL(vrot_store_copy(s, t, NULL), -EEXIST);
        vrot_store_free(t);
        vrot_store_free(s);

        t = NULL;
        CU_ASSERT_EQUAL_FATAL(vrot_store_open(to, &target, 0, &t, NULL), 0);
        CU_ASSERT_EQUAL(vrot_store_generation(t), 2);
        CU_ASSERT_EQUAL(vrot_store_load(t, VROT_BLOB_SAVESTATE, &buf, &len, NULL), -ENOENT);
        CU_ASSERT_EQUAL_FATAL(vrot_store_load(t, VROT_BLOB_PERMANENT, &buf, &len, NULL), 0);
        CU_ASSERT(len == 6 && memcmp(buf, "perm-2", 6) == 0);
        free(buf);
        CU_ASSERT_EQUAL_FATAL(vrot_store_load(t, VROT_BLOB_VOLATILE, &buf, &len, NULL), 0);
        CU_ASSERT(len == 5 && memcmp(buf, "vol-1", 5) == 0);
        free(buf);
        vrot_store_free(t);
        expect_refused(to, 0, "state file generation");        /* not the source's any more */
}

/* A source blob that does not verify stops the copy with -EUCLEAN. */
static void test_store_copy_refuses_bad_source(void)
{
        const char *from = fresh_dir("copy-bad-from"), *to = fresh_dir("copy-bad-to");
        VrotSealer target = sealer_for(4);
        VrotStore *s = open_ok(from), *t = NULL;
        char p[512];
        uint8_t buf[4096];
        size_t n;

        save(s, VROT_BLOB_PERMANENT, "perm");
        file_path(p, from, "permall");
        n = unit_read_file(p, buf, sizeof(buf));
        buf[n - 3] ^= 1;                /* edited after the store verified it */
        unit_write_file(p, buf, n);
        CU_ASSERT_EQUAL_FATAL(vrot_store_open(to, &target, 0, &t, NULL), 0);
        CU_ASSERT_EQUAL(vrot_store_copy(s, t, NULL), -EUCLEAN);
        CU_ASSERT_EQUAL(vrot_store_generation(t), 0);
        vrot_store_free(t);
        vrot_store_free(s);
}

/* Rebinding in place: what waits in memory and what is on disk, all under
 * the new sealer one generation on, a file that was there written over
 * (its inode kept); a blob the record calls deleted goes with its file;
 * the old sealer refuses the directory afterwards. */
static void test_store_rebind_in_place(void)
{
        static const uint8_t key2[32] = { 5, 5, 5 };
        const char *dir = fresh_dir("rebind");
        VrotSealer target = sealer_for(6);
        VrotStore *s = open_ok(dir), *t = NULL;
        struct stat perm_before, perm_after, rec_before, rec_after;
        char p[512], q[512], r[512];
        uint8_t *buf;
        uint32_t len;
        uint64_t gen;

        target.key = key2;
        save(s, VROT_BLOB_PERMANENT, "perm-1");
        save(s, VROT_BLOB_SAVESTATE, "save-1");
        CU_ASSERT_EQUAL(vrot_store_delete(s, VROT_BLOB_SAVESTATE, NULL), 0);
        file_path(p, dir, "permall");
        file_path(q, dir, "savestate");
        copy_file(dir, "permall", dir, "savestate");   /* a file the record calls deleted */
        vrot_store_defer(s);
        save(s, VROT_BLOB_VOLATILE, "vol-pending");
        gen = vrot_store_generation(s);
        file_path(r, dir, "generation");
        CU_ASSERT_EQUAL_FATAL(stat(p, &perm_before), 0);
        CU_ASSERT_EQUAL_FATAL(stat(r, &rec_before), 0);
        CU_ASSERT_EQUAL_FATAL(vrot_store_rebind(s, &target, NULL), 0);
        CU_ASSERT_EQUAL(vrot_store_generation(s), gen + 1);
        CU_ASSERT(access(q, F_OK) < 0);
        CU_ASSERT_EQUAL_FATAL(stat(p, &perm_after), 0);
        CU_ASSERT_EQUAL_FATAL(stat(r, &rec_after), 0);
        CU_ASSERT_EQUAL(perm_after.st_ino, perm_before.st_ino);
        CU_ASSERT_EQUAL(rec_after.st_ino, rec_before.st_ino);
        save(s, VROT_BLOB_PERMANENT, "perm-2");         /* written at once: deferral ended */
        vrot_store_free(s);

        expect_refused(dir, 0, "state file generation");
        CU_ASSERT_EQUAL_FATAL(vrot_store_open(dir, &target, gen + 2, &t, NULL), 0);
        CU_ASSERT_EQUAL_FATAL(vrot_store_load(t, VROT_BLOB_PERMANENT, &buf, &len, NULL), 0);
        CU_ASSERT(len == 6 && memcmp(buf, "perm-2", 6) == 0);
        free(buf);
        CU_ASSERT_EQUAL_FATAL(vrot_store_load(t, VROT_BLOB_VOLATILE, &buf, &len, NULL), 0);
        CU_ASSERT(len == 11 && memcmp(buf, "vol-pending", 11) == 0);
        free(buf);
        CU_ASSERT_EQUAL(vrot_store_load(t, VROT_BLOB_SAVESTATE, &buf, &len, NULL), -ENOENT);
        vrot_store_free(t);
}

/* A released store (a bound pool worker's) holds no lock, drops what
 * waits, and writes nothing more. */
static void test_store_release_unlocks_and_refuses_writes(void)
{
        const char *dir = fresh_dir("release");
        VrotStore *s = open_ok(dir), *next = NULL;
        VrotError err = { 0 };
        uint8_t *buf;
        uint32_t len;

        save(s, VROT_BLOB_PERMANENT, "perm-1");
        vrot_store_defer(s);
        save(s, VROT_BLOB_VOLATILE, "vol-pending");
        CU_ASSERT_EQUAL(vrot_store_open(dir, &sealer1, 0, &next, NULL), -EBUSY);
        vrot_store_release(s);
        CU_ASSERT_EQUAL(vrot_store_save(s, VROT_BLOB_PERMANENT, (const uint8_t *)"perm-2", 6, &err),
                        -EBADF);
        CU_ASSERT_EQUAL(vrot_store_flush(s, NULL), 0);  /* nothing waits any more */
        next = open_ok(dir);                            /* while @s still exists */
        vrot_store_free(s);
        CU_ASSERT_EQUAL_FATAL(vrot_store_load(next, VROT_BLOB_PERMANENT, &buf, &len, NULL), 0);
        CU_ASSERT(len == 6 && memcmp(buf, "perm-1", 6) == 0);
        free(buf);
        CU_ASSERT_EQUAL(vrot_store_load(next, VROT_BLOB_VOLATILE, &buf, &len, NULL), -ENOENT);
        vrot_store_free(next);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_store_round_trip_and_generations),
                UNIT_CASE(test_store_deferred_writes),
                UNIT_CASE(test_store_staged_write),
                UNIT_CASE(test_store_first_load_is_what_open_checked),
                UNIT_CASE(test_store_lock_excludes_second_worker),
                UNIT_CASE(test_store_refuses_older_blob),
                UNIT_CASE(test_store_refuses_rolled_back_record),
                UNIT_CASE(test_store_accepts_write_cut_before_record),
                UNIT_CASE(test_store_first_write_cut_before_record),
                UNIT_CASE(test_store_refuses_restored_deleted_blob),
                UNIT_CASE(test_store_refuses_missing_permall),
                UNIT_CASE(test_store_refuses_swapped_and_damaged),
                UNIT_CASE(test_store_copy_rebinds),
                UNIT_CASE(test_store_copy_refuses_bad_source),
                UNIT_CASE(test_store_rebind_in_place),
                UNIT_CASE(test_store_release_unlocks_and_refuses_writes),
        };
        sealer1 = sealer_for(1);
        return UNIT_RUN("store", cases);
}
