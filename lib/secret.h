/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Locked, non-dumpable buffers for key material (R-VTPM-6).
 *
 * A VrotSecret lives in its own anonymous mapping so that mlock() and
 * MADV_DONTDUMP apply to it alone, not to whatever shares a malloc page.
 * It is wiped with OPENSSL_cleanse() (a store the compiler may not drop)
 * when freed; up to 16 freed one-page secrets stay mapped and locked, wiped,
 * for the next ones (at most 64 KiB locked per process), the others' mappings
 * go away.
 */

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct VrotSecret VrotSecret;

/**
 * vrot_secret_new:
 * Allocates @len zeroed bytes, locked in memory and excluded from core dumps.
 * Returns (transfer full) a secret, or NULL with @err set (ENOMEM, or the
 * mlock() error when the memlock limit is too small).
 */
VrotSecret *vrot_secret_new(size_t len, VrotError *err);

/**
 * vrot_secret_read_fd:
 * Reads exactly @len bytes from @fd into a new secret; more or fewer bytes is
 * an error (a key fd must carry the key and nothing else).  Does not close @fd.
 */
VrotSecret *vrot_secret_read_fd(int fd, size_t len, VrotError *err);

/** vrot_secret_data: (transfer none) the bytes. */
uint8_t *vrot_secret_data(const VrotSecret *s);
size_t vrot_secret_len(const VrotSecret *s);

/** vrot_secret_free: wipes and unmaps (or keeps the wiped page); accepts NULL. */
void vrot_secret_free(VrotSecret *s);

static inline void vrot_secret_freep(VrotSecret **s)
{
        vrot_secret_free(*s);
}
#define _cleanup_secret_ __attribute__((cleanup(vrot_secret_freep)))
