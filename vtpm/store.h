/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The worker's state directory: libtpms's three blobs, each sealed
 * (lib/seal.h) and written durably (lib/durable.h), plus a sealed generation
 * record that says which generation of each blob is current.
 *
 * Every write takes the next generation number G+1: first the blob under
 * its name, then the record.  A crash between the two leaves a blob exactly
 * one generation ahead of the record, which the next start accepts as the
 * completed write.  Anything else that disagrees with the record - an older
 * blob restored from a backup, a blob of another instance or type, a torn or
 * edited file - makes vtpm_store_open() fail, naming the file and the reason,
 * and the file is left exactly as found (R-SEAL-3).  Deletion removes the
 * file first and then records it, so a file the record calls deleted can only
 * be a restored copy, and is refused too.
 */

#include <stdint.h>

#include "err.h"
#include "seal.h"

typedef struct VtpmStore VtpmStore;

/**
 * vtpm_store_open:
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
int vtpm_store_open(const char *dir, const VrotSealer *sealer, uint64_t min_generation,
                    VtpmStore **ret, VrotError *err);

/** vtpm_store_load: -ENOENT when the blob does not exist, -EUCLEAN when it
 *  is refused; plaintext is (transfer full) malloc()ed TPM state. */
int vtpm_store_load(VtpmStore *s, uint32_t type, uint8_t **ret, uint32_t *ret_len,
                    VrotError *err);

int vtpm_store_save(VtpmStore *s, uint32_t type, const uint8_t *buf, uint32_t len,
                    VrotError *err);

int vtpm_store_delete(VtpmStore *s, uint32_t type, VrotError *err);

/**
 * vtpm_store_defer:
 * From now on saves are kept in memory (loads see them) until
 * vtpm_store_flush(): for the first start that manufactures a vTPM, where
 * a crash fails the whole create anyway and eight durable writes would
 * cost more than the rest of the manufacture.
 */
void vtpm_store_defer(VtpmStore *s);

/** vtpm_store_flush: writes what waits, durably, and ends deferral. */
int vtpm_store_flush(VtpmStore *s, VrotError *err);

/** vtpm_store_generation: the current generation (0 for a new instance). */
uint64_t vtpm_store_generation(const VtpmStore *s);

const char *vtpm_store_file_name(uint32_t type);

void vtpm_store_free(VtpmStore *s);
