/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durable.h"
#include "unit.h"

static int open_dir(const char *name)
{
        char path[512];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", unit_tmpdir(), name);
        mkdir(path, 0700);
        fd = open(path, O_RDONLY | O_DIRECTORY);
        CU_ASSERT_FATAL(fd >= 0);
        return fd;
}

static void test_durable_write_read_replace(void)
{
        int d = open_dir("rw");
        uint8_t *buf = NULL;
        size_t len = 0;
        struct stat st;

        CU_ASSERT_EQUAL(vrot_durable_write(d, "f", "first", 5, 0600, 0, NULL), 0);
        CU_ASSERT_EQUAL(vrot_durable_write(d, "f", "second!", 7, 0600, 0, NULL), 0);
        CU_ASSERT_EQUAL(vrot_durable_read(d, "f", 100, &buf, &len, NULL), 0);
        CU_ASSERT_EQUAL(len, 7);
        CU_ASSERT(memcmp(buf, "second!", 7) == 0);
        free(buf);
        CU_ASSERT_EQUAL(fstatat(d, "f", &st, 0), 0);
        CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
        /* No temporary file is left behind. */
        CU_ASSERT_EQUAL(faccessat(d, ".f.tmp", F_OK, 0), -1);
        close(d);
}

/* Two files replaced, then their directory synced once: both there, no
 * temporary file; a directory that cannot be synced says which. */
static void test_durable_replace_then_sync_dir(void)
{
        int d = open_dir("replace");
        uint8_t *buf = NULL;
        size_t len = 0;
        VrotError err = { 0 };

        CU_ASSERT_EQUAL(vrot_durable_replace(d, "a", "one", 3, 0600, 0, NULL), 0);
        CU_ASSERT_EQUAL(vrot_durable_replace(d, "b", "two", 3, 0600, 0, NULL), 0);
        CU_ASSERT_EQUAL(vrot_durable_sync_dir(d, "a and b", NULL), 0);
        CU_ASSERT_EQUAL(vrot_durable_read(d, "b", 100, &buf, &len, NULL), 0);
        CU_ASSERT(len == 3 && memcmp(buf, "two", 3) == 0);
        free(buf);
        CU_ASSERT_EQUAL(faccessat(d, ".a.tmp", F_OK, 0), -1);
        CU_ASSERT_EQUAL(faccessat(d, ".b.tmp", F_OK, 0), -1);
        close(d);
        CU_ASSERT_EQUAL(vrot_durable_sync_dir(d, "a and b", &err), -EBADF);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "a and b"));
}

/* @name's content in @d is exactly @text. */
static void expect_content(int d, const char *name, const char *text)
{
        uint8_t *buf = NULL;
        size_t len = 0;

        CU_ASSERT_EQUAL_FATAL(vrot_durable_read(d, name, 100, &buf, &len, NULL), 0);
        CU_ASSERT(len == strlen(text) && memcmp(buf, text, len) == 0);
        free(buf);
}

/* Recycling: the replaced version stays under the temporary name, and
 * the next write goes over that file (its inode, cut to length); a FIFO
 * or a file of other permissions in the way is replaced, not used. */
static void test_durable_recycle(void)
{
        const unsigned R = VROT_DURABLE_RECYCLE;
        int d = open_dir("recycle");
        struct stat old_tmp, st;

        CU_ASSERT_EQUAL(vrot_durable_write(d, "f", "first version", 13, 0600, R, NULL), 0);
        /* Nothing replaced yet: an empty file waits for the second write. */
        CU_ASSERT_EQUAL_FATAL(fstatat(d, ".f.tmp", &old_tmp, AT_SYMLINK_NOFOLLOW), 0);
        CU_ASSERT(S_ISREG(old_tmp.st_mode) && old_tmp.st_size == 0 &&
                  (old_tmp.st_mode & 07777) == 0600);
        CU_ASSERT_EQUAL(vrot_durable_write(d, "f", "second", 6, 0600, R, NULL), 0);
        expect_content(d, "f", "second");
        CU_ASSERT_EQUAL_FATAL(fstatat(d, "f", &st, 0), 0);
        CU_ASSERT_EQUAL(st.st_ino, old_tmp.st_ino);
        expect_content(d, ".f.tmp", "first version");
        CU_ASSERT_EQUAL_FATAL(fstatat(d, ".f.tmp", &old_tmp, AT_SYMLINK_NOFOLLOW), 0);

        CU_ASSERT_EQUAL(vrot_durable_write(d, "f", "3", 1, 0600, R, NULL), 0);
        expect_content(d, "f", "3");
        expect_content(d, ".f.tmp", "second");
        CU_ASSERT_EQUAL_FATAL(fstatat(d, "f", &st, 0), 0);
        CU_ASSERT_EQUAL(st.st_ino, old_tmp.st_ino);

        CU_ASSERT_EQUAL(unlinkat(d, ".f.tmp", 0), 0);
        CU_ASSERT_EQUAL_FATAL(mkfifoat(d, ".f.tmp", 0600), 0);
        CU_ASSERT_EQUAL(vrot_durable_write(d, "f", "after a fifo", 12, 0600, R, NULL), 0);
        expect_content(d, "f", "after a fifo");

        CU_ASSERT_EQUAL(fchmodat(d, ".f.tmp", 0644, 0), 0);
        CU_ASSERT_EQUAL(vrot_durable_write(d, "f", "mode", 4, 0600, R, NULL), 0);
        CU_ASSERT_EQUAL_FATAL(fstatat(d, "f", &st, 0), 0);
        CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);
        expect_content(d, "f", "mode");
        close(d);
}

static void test_durable_write_path(void)
{
        char path[512];
        int d = open_dir("bypath");
        uint8_t *buf = NULL;
        size_t len = 0;
        VrotError err = { 0 };

        snprintf(path, sizeof(path), "%s/bypath/cert.pem", unit_tmpdir());
        CU_ASSERT_EQUAL(vrot_durable_write_path(path, "pem", 3, 0644, NULL), 0);
        CU_ASSERT_EQUAL(vrot_durable_read(d, "cert.pem", 100, &buf, &len, NULL), 0);
        CU_ASSERT(len == 3 && memcmp(buf, "pem", 3) == 0);
        free(buf);
        CU_ASSERT_EQUAL(vrot_durable_write_path("relative", "x", 1, 0644, &err), -EINVAL);
        CU_ASSERT_EQUAL(vrot_durable_write_path("/tmp/dir/", "x", 1, 0644, &err), -EINVAL);
        CU_ASSERT_EQUAL(vrot_durable_write_path("/nonexistent/dir/f", "x", 1, 0644, &err), -ENOENT);
        CU_ASSERT(strstr(err.msg, "/nonexistent/dir") != NULL);
        close(d);
}

static void test_durable_read_errors(void)
{
        int d = open_dir("errors");
        uint8_t *buf = (uint8_t *)"untouched";
        size_t len = 42;
        VrotError err = { 0 };

        CU_ASSERT_EQUAL(vrot_durable_read(d, "missing", 100, &buf, &len, &err), -ENOENT);
        CU_ASSERT(strstr(err.msg, "missing") != NULL);
        CU_ASSERT_EQUAL(len, 42);
        CU_ASSERT_EQUAL(vrot_durable_write(d, "big", "0123456789", 10, 0600, 0, NULL), 0);
        CU_ASSERT_EQUAL(vrot_durable_read(d, "big", 9, &buf, &len, &err), -EFBIG);
        CU_ASSERT_EQUAL(mkdirat(d, "adir", 0700), 0);
        CU_ASSERT_EQUAL(vrot_durable_read(d, "adir", 100, &buf, &len, &err), -EINVAL);
        CU_ASSERT_EQUAL(symlinkat("big", d, "link"), 0);
        CU_ASSERT_EQUAL(vrot_durable_read(d, "link", 100, &buf, &len, &err), -ELOOP);
        CU_ASSERT_EQUAL(len, 42);
        close(d);
}

static void test_durable_write_fails_cleanly(void)
{
        int d = open_dir("ro");
        VrotError err = { 0 };

        /* A directory in the way of the rename: the old content stays. */
        CU_ASSERT_EQUAL(mkdirat(d, "target", 0700), 0);
        CU_ASSERT_EQUAL(mkdirat(d, "target/x", 0700), 0);
        CU_ASSERT(vrot_durable_write(d, "target", "data", 4, 0600, 0, &err) < 0);
        CU_ASSERT(strstr(err.msg, "target") != NULL);
        CU_ASSERT_EQUAL(faccessat(d, ".target.tmp", F_OK, 0), -1);
        close(d);
}

/* Written over in place: same inode, new content and length, no
 * temporary file; a missing file is -ENOENT and none is made; a link, a
 * file of two links or a directory are refused and left alone. */
static void test_durable_overwrite(void)
{
        int d = open_dir("overwrite");
        struct stat before, after;
        VrotError err = { 0 };
        uint8_t *buf = NULL;
        size_t len = 0;

        CU_ASSERT_EQUAL(vrot_durable_write(d, "f", "a longer first", 14, 0600, 0, NULL), 0);
        CU_ASSERT_EQUAL_FATAL(fstatat(d, "f", &before, 0), 0);
        CU_ASSERT_EQUAL(vrot_durable_overwrite(d, "f", "second", 6, NULL), 0);
        CU_ASSERT_EQUAL(vrot_durable_read(d, "f", 100, &buf, &len, NULL), 0);
        CU_ASSERT(len == 6 && memcmp(buf, "second", 6) == 0);
        free(buf);
        CU_ASSERT_EQUAL_FATAL(fstatat(d, "f", &after, 0), 0);
        CU_ASSERT_EQUAL(after.st_ino, before.st_ino);
        CU_ASSERT_EQUAL(faccessat(d, ".f.tmp", F_OK, 0), -1);

        CU_ASSERT_EQUAL(vrot_durable_overwrite(d, "missing", "x", 1, &err), -ENOENT);
        CU_ASSERT(strstr(err.msg, "missing") != NULL);
        CU_ASSERT_EQUAL(faccessat(d, "missing", F_OK, 0), -1);

        CU_ASSERT_EQUAL(symlinkat("f", d, "link"), 0);
        CU_ASSERT(vrot_durable_overwrite(d, "link", "x", 1, NULL) < 0);
        CU_ASSERT_EQUAL(linkat(d, "f", d, "second-name", 0), 0);
        CU_ASSERT_EQUAL(vrot_durable_overwrite(d, "f", "x", 1, &err), -EINVAL);
        CU_ASSERT(strstr(err.msg, "one link") != NULL);
        CU_ASSERT_EQUAL(mkdirat(d, "dir", 0700), 0);
        CU_ASSERT(vrot_durable_overwrite(d, "dir", "x", 1, NULL) < 0);
        CU_ASSERT_EQUAL(vrot_durable_read(d, "f", 100, &buf, &len, NULL), 0);
        CU_ASSERT(len == 6 && memcmp(buf, "second", 6) == 0);
        free(buf);
        close(d);
}

/* Put: a missing file is made (replaced) and the directory said changed;
 * an existing one is written over, its inode kept, the directory not. */
static void test_durable_put(void)
{
        int d = open_dir("put");
        struct stat before, after;
        bool changed = false;
        uint8_t *buf = NULL;
        size_t len = 0;

        CU_ASSERT_EQUAL(vrot_durable_put(d, "f", "first", 5, 0600, 0, &changed, NULL), 0);
        CU_ASSERT(changed);
        CU_ASSERT_EQUAL_FATAL(fstatat(d, "f", &before, 0), 0);
        CU_ASSERT_EQUAL(before.st_mode & 0777, 0600);
        changed = false;
        CU_ASSERT_EQUAL(vrot_durable_put(d, "f", "second", 6, 0600, 0, &changed, NULL), 0);
        CU_ASSERT(!changed);
        CU_ASSERT_EQUAL_FATAL(fstatat(d, "f", &after, 0), 0);
        CU_ASSERT_EQUAL(after.st_ino, before.st_ino);
        CU_ASSERT_EQUAL(vrot_durable_read(d, "f", 100, &buf, &len, NULL), 0);
        CU_ASSERT(len == 6 && memcmp(buf, "second", 6) == 0);
        free(buf);
        close(d);
}

static void test_durable_unlink(void)
{
        int d = open_dir("unlink");

        CU_ASSERT_EQUAL(vrot_durable_write(d, "f", "x", 1, 0600, 0, NULL), 0);
        CU_ASSERT_EQUAL(vrot_durable_unlink(d, "f", NULL), 0);
        CU_ASSERT_EQUAL(faccessat(d, "f", F_OK, 0), -1);
        CU_ASSERT_EQUAL(vrot_durable_unlink(d, "f", NULL), 0);  /* missing is fine */
        close(d);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_durable_write_read_replace),
                UNIT_CASE(test_durable_replace_then_sync_dir),
                UNIT_CASE(test_durable_recycle),
                UNIT_CASE(test_durable_write_path),
                UNIT_CASE(test_durable_read_errors),
                UNIT_CASE(test_durable_write_fails_cleanly),
                UNIT_CASE(test_durable_overwrite),
                UNIT_CASE(test_durable_put),
                UNIT_CASE(test_durable_unlink),
        };
        return UNIT_RUN("durable", cases);
}
