/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durable.h"

static int write_all(int fd, const uint8_t *p, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

#define TMP_NAME_MAX 256

/* The temporary name of @name: ".@name.tmp"; false when it does not fit. */
static bool tmp_name(char tmp[TMP_NAME_MAX], const char *name)
{
        return snprintf(tmp, TMP_NAME_MAX, ".%s.tmp", name) < TMP_NAME_MAX;
}

/* The temporary file of a recycling write: the one the last write left,
 * written over, or a new one when there is none or it will not do. */
static int open_recycled(int dirfd, const char *tmp, mode_t mode)
{
        struct stat st;
        int fd;

        /* O_NONBLOCK: a FIFO in the way fails (ENXIO) instead of blocking. */
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, mode);
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
            (st.st_mode & 07777) == mode)
                return fd;
        if (fd >= 0)
                close(fd);
        if (unlinkat(dirfd, tmp, 0) < 0 && errno != ENOENT)
                return -1;
        return openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
}

int vrot_durable_stage(int dirfd, const char *name, const void *buf, size_t len, mode_t mode,
                       unsigned flags, VrotError *err)
{
        char tmp[TMP_NAME_MAX];
        int fd, r;

        if (!tmp_name(tmp, name))
                return vrot_err(err, ENAMETOOLONG, "%s: name too long", name);

        if (flags & VROT_DURABLE_RECYCLE)
                fd = open_recycled(dirfd, tmp, mode);
        else
                fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                            mode);
        if (fd < 0)
                return vrot_err(err, errno, "creating %s: %s", tmp, strerror(errno));
        r = write_all(fd, buf, len);
        if (r == 0 && (flags & VROT_DURABLE_RECYCLE) && ftruncate(fd, (off_t)len) < 0)
                r = -errno;
        if (r < 0) {
                close(fd);
                (void)unlinkat(dirfd, tmp, 0);
                return vrot_err(err, -r, "writing %s: %s", tmp, strerror(-r));
        }
        return fd;
}

int vrot_durable_sync_staged(int dirfd, const char *name, int fd, VrotError *err)
{
        char tmp[TMP_NAME_MAX];
        int r;

        if (fsync(fd) == 0)
                return 0;
        r = errno;
        (void)tmp_name(tmp, name);      /* it fitted when the file was staged */
        vrot_durable_abandon(dirfd, name, fd);
        return vrot_err(err, r, "writing %s: %s", tmp, strerror(r));
}

/* Puts @tmp in @name's place; recycling, @name's old file becomes @tmp.
 * Returns 1 when a recycling write found no @name to exchange with, 0
 * otherwise, -1 on error. */
static int put_in_place(int dirfd, const char *tmp, const char *name, unsigned flags)
{
        int first = 0;

        if (flags & VROT_DURABLE_RECYCLE) {
                if (renameat2(dirfd, tmp, dirfd, name, RENAME_EXCHANGE) == 0)
                        return 0;
                /* No @name yet, or a file system that cannot exchange. */
                if (errno != ENOENT && errno != EINVAL)
                        return -1;
                first = errno == ENOENT;
        }
        return renameat(dirfd, tmp, dirfd, name) < 0 ? -1 : first;
}

int vrot_durable_rename_staged(int dirfd, const char *name, int fd, unsigned flags, VrotError *err)
{
        char tmp[TMP_NAME_MAX];
        struct stat st;
        int r;

        (void)tmp_name(tmp, name);
        if (!(flags & VROT_DURABLE_RECYCLE) || fstat(fd, &st) < 0)
                st.st_mode = 0;
        if (close(fd) < 0) {
                r = errno;
                (void)unlinkat(dirfd, tmp, 0);
                return vrot_err(err, r, "writing %s: %s", tmp, strerror(r));
        }
        r = put_in_place(dirfd, tmp, name, flags);
        if (r < 0) {
                r = errno;
                (void)unlinkat(dirfd, tmp, 0);
                return vrot_err(err, r, "renaming %s to %s: %s", tmp, name, strerror(r));
        }
        /* A recycled file's first version replaced nothing, so nothing is
         * left to write the next version over: an empty file is, made now
         * rather than by the next write (see durable.h). */
        if (r == 1 && st.st_mode)
                vrot_durable_prepare(dirfd, name, st.st_mode & 07777);
        return 0;
}

void vrot_durable_prepare(int dirfd, const char *name, mode_t mode)
{
        char tmp[TMP_NAME_MAX];
        int fd;

        if (!tmp_name(tmp, name))
                return;
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd >= 0)
                close(fd);
}

int vrot_durable_commit(int dirfd, const char *name, int fd, unsigned flags, VrotError *err)
{
        int r = vrot_durable_sync_staged(dirfd, name, fd, err);

        return r < 0 ? r : vrot_durable_rename_staged(dirfd, name, fd, flags, err);
}

void vrot_durable_abandon(int dirfd, const char *name, int fd)
{
        char tmp[TMP_NAME_MAX];

        if (fd >= 0)
                close(fd);
        if (tmp_name(tmp, name))
                (void)unlinkat(dirfd, tmp, 0);
}

int vrot_durable_replace(int dirfd, const char *name, const void *buf, size_t len,
                         mode_t mode, unsigned flags, VrotError *err)
{
        int fd = vrot_durable_stage(dirfd, name, buf, len, mode, flags, err);

        return fd < 0 ? fd : vrot_durable_commit(dirfd, name, fd, flags, err);
}

int vrot_durable_overwrite(int dirfd, const char *name, const void *buf, size_t len,
                           VrotError *err)
{
        struct stat st;
        int fd, r = 0;

        /* O_NONBLOCK: a FIFO in the way fails (ENXIO) instead of blocking. */
        fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return vrot_err(err, errno, "opening %s: %s", name, strerror(errno));
        if (fstat(fd, &st) < 0) {
                r = vrot_err(err, errno, "stat %s: %s", name, strerror(errno));
        } else if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
                r = vrot_err(err, EINVAL, "%s: not a regular file of one link", name);
        } else {
                r = write_all(fd, buf, len);
                if (r == 0 && st.st_size != (off_t)len && ftruncate(fd, (off_t)len) < 0)
                        r = -errno;
                if (r == 0 && fdatasync(fd) < 0)
                        r = -errno;
                if (r < 0)
                        r = vrot_err(err, -r, "writing %s: %s", name, strerror(-r));
        }
        close(fd);
        return r;
}

int vrot_durable_put(int dirfd, const char *name, const void *buf, size_t len, mode_t mode,
                     unsigned flags, bool *dir_changed, VrotError *err)
{
        int r = vrot_durable_overwrite(dirfd, name, buf, len, err);

        if (r != -ENOENT)
                return r;
        *dir_changed = true;
        return vrot_durable_replace(dirfd, name, buf, len, mode, flags, err);
}

int vrot_durable_sync_dir(int dirfd, const char *name, VrotError *err)
{
        if (fsync(dirfd) < 0)
                return vrot_err(err, errno, "syncing the directory of %s: %s", name,
                                strerror(errno));
        return 0;
}

int vrot_durable_write(int dirfd, const char *name, const void *buf, size_t len,
                       mode_t mode, unsigned flags, VrotError *err)
{
        int r = vrot_durable_replace(dirfd, name, buf, len, mode, flags, err);

        return r < 0 ? r : vrot_durable_sync_dir(dirfd, name, err);
}

int vrot_durable_write_path(const char *path, const void *buf, size_t len, mode_t mode,
                            VrotError *err)
{
        const char *slash = strrchr(path, '/');
        char dir[4096];
        int dirfd, r;

        if (!slash || !slash[1])
                return vrot_err(err, EINVAL, "%s: not a path to a file", path);
        if ((size_t)(slash - path) >= sizeof(dir))
                return vrot_err(err, ENAMETOOLONG, "%s: path too long", path);
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash == path ? 1 : slash - path] = '\0';
        if (slash == path)
                dir[0] = '/';
        dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return vrot_err(err, errno, "opening directory %s: %s", dir, strerror(errno));
        r = vrot_durable_write(dirfd, slash + 1, buf, len, mode, 0, err);
        close(dirfd);
        return r;
}

int vrot_durable_read(int dirfd, const char *name, size_t max,
                      uint8_t **ret_buf, size_t *ret_len, VrotError *err)
{
        uint8_t *buf = NULL;
        struct stat st;
        size_t got = 0;
        int fd, r = 0;

        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return vrot_err(err, errno, "opening %s: %s", name, strerror(errno));
        if (fstat(fd, &st) < 0) {
                r = vrot_err(err, errno, "stat %s: %s", name, strerror(errno));
                goto out;
        }
        if (!S_ISREG(st.st_mode)) {
                r = vrot_err(err, EINVAL, "%s: not a regular file", name);
                goto out;
        }
        if ((uintmax_t)st.st_size > max) {
                r = vrot_err(err, EFBIG, "%s: %jd bytes, more than %zu", name,
                             (intmax_t)st.st_size, max);
                goto out;
        }
        buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        if (!buf) {
                r = vrot_err(err, ENOMEM, "%s: out of memory", name);
                goto out;
        }
        while (got < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = vrot_err(err, errno, "reading %s: %s", name, strerror(errno));
                        goto out;
                }
                if (n == 0)
                        break;     /* shrank under us: the caller's parser decides */
                got += (size_t)n;
        }
        *ret_buf = buf;
        *ret_len = got;
        buf = NULL;
out:
        free(buf);
        close(fd);
        return r;
}

int vrot_durable_unlink(int dirfd, const char *name, VrotError *err)
{
        if (unlinkat(dirfd, name, 0) < 0) {
                if (errno == ENOENT)
                        return 0;
                return vrot_err(err, errno, "removing %s: %s", name, strerror(errno));
        }
        if (fsync(dirfd) < 0)
                return vrot_err(err, errno, "syncing directory after removing %s: %s",
                                name, strerror(errno));
        return 0;
}
