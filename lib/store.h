/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * A vTPM's state directory: libtpms's three blobs, each sealed
 * (lib/seal.h) and written durably (lib/durable.h), plus a sealed generation
 * record that says which generation of each blob is current.
 *
 * Every write takes the next generation number G+1: first the blob under
 * its name, then the record.  A crash between the two leaves a blob exactly
 * one generation ahead of the record, which the next start accepts as the
 * completed write.  Anything else that disagrees with the record - an older
 * blob restored from a backup, a blob of another instance or type, a torn or
 * edited file - makes vrot_store_open() fail, naming the file and the reason,
 * and the file is left exactly as found (R-SEAL-3).  Deletion removes the
 * file first and then records it, so a file the record calls deleted can only
 * be a restored copy, and is refused too.
 *
 * The worker (vrot-vtpm) keeps its TPM's state here; vrotd uses the same
 * code to re-seal a pre-manufactured state of its pool under a new
 * instance's key and UUID (vrot_store_copy()).  Plain C: the worker links
 * it.
 */

#include <stdint.h>

#include "err.h"
#include "seal.h"

typedef struct VrotStore VrotStore;

/**
 * vrot_store_open:
 * @dir: the state directory (must exist)
 * @sealer: (transfer none) key and instance UUID; must outlive the store
 * @min_generation: lowest acceptable generation of the record (the daemon's
 *   rollback anchor; 0 when there is none)
 *
 * Takes an exclusive lock on @dir (a second worker on the same state fails
 * with -EBUSY) and verifies every state file present.  Returns (transfer
 * full) the store in *@ret, or a negative errno with @err set: -EUCLEAN when
 * the content of the state is refused (tampered, swapped, rolled back,
 * missing), anything else for a problem of the directory itself.
 */
int vrot_store_open(const char *dir, const VrotSealer *sealer, uint64_t min_generation,
                    VrotStore **ret, VrotError *err);

/** vrot_store_load: -ENOENT when the blob does not exist, -EUCLEAN when it
 *  is refused; plaintext is (transfer full) malloc()ed TPM state.  The
 *  first load of a blob after vrot_store_open() returns the plaintext the
 *  open authenticated, without reading the file again (a save or delete of
 *  that blob first drops it); later loads read and authenticate the file. */
int vrot_store_load(VrotStore *s, uint32_t type, uint8_t **ret, uint32_t *ret_len,
                    VrotError *err);

int vrot_store_save(VrotStore *s, uint32_t type, const uint8_t *buf, uint32_t len,
                    VrotError *err);

int vrot_store_delete(VrotStore *s, uint32_t type, VrotError *err);

/**
 * vrot_store_defer:
 * From now on saves are kept in memory (loads see them) until
 * vrot_store_flush(): for the first start that manufactures a vTPM, where
 * a crash fails the whole create anyway and eight durable writes would
 * cost more than the rest of the manufacture.
 */
void vrot_store_defer(VrotStore *s);

/** vrot_store_flush: writes what waits, durably, and ends deferral. */
int vrot_store_flush(VrotStore *s, VrotError *err);

/**
 * vrot_store_stage:
 * vrot_store_flush() in two halves, for a write that must fail now if it
 * fails at all, but whose fsyncs may come later: a service vTPM's
 * TPM2_Startup at start, whose worker says it is ready in between.  When
 * one blob waits, its file and the record's are written under their
 * temporary names (a read-only or full file system fails here), and
 * deferral ends; vrot_store_commit() makes them durable and current.
 * Until then the state on disk is the one before, and nothing may be
 * answered from the TPM's new state.  More than one blob waiting (or a
 * record left stale) is flushed at once instead, as a blob's rename must
 * be durable before its record's.  Any later save, delete or flush
 * commits first.
 */
int vrot_store_stage(VrotStore *s, VrotError *err);

/** vrot_store_commit: the second half: fsync, rename, fsync the directory,
 *  blob then record.  Nothing staged: 0. */
int vrot_store_commit(VrotStore *s, VrotError *err);

/**
 * vrot_store_copy:
 * @src: (transfer none) an open store, only read
 * @dst: (transfer none) an open store without any state yet (generation 0)
 *
 * Re-binds a state: every blob present in @src (saved or pending) is
 * loaded, authenticated under @src's sealer, and saved into @dst under
 * @dst's sealer (its key and UUID in every blob's associated data), so
 * the copy verifies only as @dst's instance.  When @dst is deferred
 * (vrot_store_defer()) the copies wait in memory for vrot_store_flush().
 * Plaintext is wiped after use.  Returns 0, -EEXIST when @dst holds state
 * already (nothing is written), or the error of a load or save (a blob
 * refused in @src is -EUCLEAN; what was copied before stays in @dst).
 */
int vrot_store_copy(VrotStore *src, VrotStore *dst, VrotError *err);

/**
 * vrot_store_rebind:
 * The whole state, sealed again under @sealer (another key and UUID) and
 * written durably into the same directory, one generation on: every blob
 * there is (what waits in memory included), then the record, each
 * written over its file in place and fdatasync()ed (vrot_durable_overwrite():
 * no rename, so no fsync of the directory unless a file had to be made or
 * removed).  Deferral ends.  The store keeps @sealer, which must outlive it.  A pool entry's
 * running worker becomes an instance's this way (vrot-vtpm(8), BIND): its
 * directory was renamed to the instance's before.  On failure, or after
 * a crash before it returns, the files are a mix of both sealers, or torn,
 * and refused by either: the caller discards them.
 */
int vrot_store_rebind(VrotStore *s, const VrotSealer *sealer, VrotError *err);

/**
 * vrot_store_release:
 * Gives up the state directory before the store is freed: what waits in
 * memory is dropped, the directory's lock is released, and every later
 * write fails (EBADF) instead of racing the next holder.  A bound pool
 * worker does this before it answers BIND, so that vrotd may start the
 * instance without waiting for the worker's exit.
 */
void vrot_store_release(VrotStore *s);

/** vrot_store_generation: the current generation (0 for a new instance). */
uint64_t vrot_store_generation(const VrotStore *s);

const char *vrot_store_file_name(uint32_t type);

/** vrot_store_dirfd: the state directory's descriptor (transfer none). */
int vrot_store_dirfd(const VrotStore *s);

void vrot_store_free(VrotStore *s);
