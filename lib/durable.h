/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Crash-safe files (R-SEAL-4): a crash or power cut at any point leaves
 * either the old or the new content under a name, never a torn or empty
 * file.  Write to a temporary name, fsync it, rename it over the target,
 * fsync the directory so the rename itself is durable.
 *
 * VROT_DURABLE_RECYCLE, for files rewritten often whose old versions are
 * no secret (sealed state, the authenticated registry): the replaced file
 * is not removed but exchanged with the new one (renameat2()
 * RENAME_EXCHANGE), so that it stays under the temporary name, and the
 * next write writes over it.  Freeing a file's blocks is what makes a
 * rename over it or an unlink slow (0.1-0.4 ms on this host, whose file
 * system discards freed blocks at once), and creating a file costs an
 * inode (0.1-1 ms here, on ext4 without a journal, which skips recently
 * freed inodes one by one); recycling does neither.  A recycled file's
 * first version leaves an empty temporary file (vrot_durable_prepare())
 * for the second to write over: a pool entry's first rebind then
 * allocates no inode either.  Without the flag, a write leaves no
 * temporary file behind.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define VROT_DURABLE_RECYCLE 1u         /* flags: see above */

/**
 * vrot_durable_write:
 * @dirfd: open directory (O_DIRECTORY) the file lives in
 * @name: file name inside @dirfd, no slashes
 * @mode: permissions of the new file
 * @flags: 0 or VROT_DURABLE_RECYCLE
 *
 * Replaces @name atomically and durably with @len bytes of @buf.  The
 * temporary file is ".@name.tmp"; callers must not write the same name
 * concurrently (the worker is the only writer of its state directory).
 * Returns 0, or a negative errno with @err set; on failure @name is unchanged.
 */
int vrot_durable_write(int dirfd, const char *name, const void *buf, size_t len,
                       mode_t mode, unsigned flags, VrotError *err);

/**
 * vrot_durable_replace:
 * vrot_durable_write() but for the directory's fsync: the content is
 * durable, the rename is not until vrot_durable_sync_dir().  For several
 * files that become durable together, with one fsync of their directory
 * (vrot_store_rebind()); until then a crash may leave any of them old.
 */
int vrot_durable_replace(int dirfd, const char *name, const void *buf, size_t len,
                         mode_t mode, unsigned flags, VrotError *err);

/**
 * vrot_durable_stage:
 * The first half of vrot_durable_replace(), for a write whose cost should
 * come later but whose failure must show now: the temporary file of @name
 * is created and written, not synced or renamed.  A read-only or full file
 * system fails here.  Returns the file's descriptor for
 * vrot_durable_commit() or vrot_durable_abandon(), or a negative errno
 * with @err set (no file left behind).
 */
int vrot_durable_stage(int dirfd, const char *name, const void *buf, size_t len, mode_t mode,
                       unsigned flags, VrotError *err);

/**
 * vrot_durable_commit:
 * The second half: fsync()s and closes @fd (in any case), and renames the
 * file over @name.  As after vrot_durable_replace(), the rename is durable
 * only after vrot_durable_sync_dir().  It is vrot_durable_sync_staged()
 * then vrot_durable_rename_staged(), which may also be called apart: the
 * file made durable early, put in place later.
 */
int vrot_durable_commit(int dirfd, const char *name, int fd, unsigned flags, VrotError *err);

/** vrot_durable_sync_staged: fsync() of the staged @fd; on failure it is abandoned. */
int vrot_durable_sync_staged(int dirfd, const char *name, int fd, VrotError *err);

/** vrot_durable_rename_staged: closes the staged, synced @fd and renames it over @name
 *  (@flags as it was staged with). */
int vrot_durable_rename_staged(int dirfd, const char *name, int fd, unsigned flags,
                               VrotError *err);

/** vrot_durable_abandon: closes @fd, a staged file of @name (or -1: a file
 *  of vrot_durable_prepare()), and removes it. */
void vrot_durable_abandon(int dirfd, const char *name, int fd);

/**
 * vrot_durable_overwrite:
 * Writes @len bytes of @buf over @name in place (from its start, then
 * truncated to @len) and fdatasync()s it: no temporary file, no rename,
 * so no fsync of the directory either.  Not atomic: a crash may leave
 * the file torn.  Only for a file whose content counts for nothing until
 * this returns: a new one made empty and durable beforehand, or one of a
 * directory that is thrown away unless the whole write completes
 * (vrot_store_rebind()).  @name must be a regular file with no other
 * link; a missing one is -ENOENT, for the caller to write it otherwise.
 * Returns 0, or a negative errno with @err set.
 */
int vrot_durable_overwrite(int dirfd, const char *name, const void *buf, size_t len,
                           VrotError *err);

/**
 * vrot_durable_put:
 * vrot_durable_overwrite() of @name when it exists, else
 * vrot_durable_replace() (@mode, @flags) and *@dir_changed set: the
 * directory then needs vrot_durable_sync_dir().  For the same files.
 */
int vrot_durable_put(int dirfd, const char *name, const void *buf, size_t len, mode_t mode,
                     unsigned flags, bool *dir_changed, VrotError *err);

/** vrot_durable_sync_dir: fsync() of @dirfd, the directory of @name (for @err's message). */
int vrot_durable_sync_dir(int dirfd, const char *name, VrotError *err);

/**
 * vrot_durable_write_path:
 * vrot_durable_write() of the file at @path (its directory must exist),
 * for callers that hold a path rather than a directory descriptor.
 */
int vrot_durable_write_path(const char *path, const void *buf, size_t len, mode_t mode,
                            VrotError *err);

/**
 * vrot_durable_read:
 * Reads the whole of @name (at most @max bytes; larger is -EFBIG).  On
 * success *@ret_buf is (transfer full) malloc()ed memory of *@ret_len bytes.
 * A missing file returns -ENOENT with @err set; the out-params are written
 * only on success.
 */
int vrot_durable_read(int dirfd, const char *name, size_t max,
                      uint8_t **ret_buf, size_t *ret_len, VrotError *err);

/**
 * vrot_durable_unlink:
 * Removes @name and makes the removal durable.  A missing file is success.
 */
int vrot_durable_unlink(int dirfd, const char *name, VrotError *err);

/**
 * vrot_durable_prepare:
 * Creates the empty temporary file of @name (mode @mode) if there is none,
 * so that the next write of @name with VROT_DURABLE_RECYCLE, or without it,
 * allocates no inode.  Best effort: a failure only means the next write
 * creates the file itself.
 */
void vrot_durable_prepare(int dirfd, const char *name, mode_t mode);
