/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The one TPM of this process.  libtpms keeps its TPM in process-global
 * state, so this module is the only place that touches it; everything else
 * in the worker goes through these functions.  One TPM per process is also
 * the isolation boundary between vTPMs (R-VTPM-4).
 */

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

/**
 * vtpm_tpm_setup:
 * Chooses TPM 2.0 and routes libtpms's NVRAM callbacks to @store
 * (transfer none; must outlive the TPM).  Returns a TPM result code.
 */
uint32_t vtpm_tpm_setup(VrotStore *store);

/**
 * vtpm_tpm_store_failure:
 * Why the TPM's last state write failed (a full or read-only disk), which
 * libtpms reports only as TPM_RC_FAILURE; NULL if none failed.
 */
const char *vtpm_tpm_store_failure(void);

/** vtpm_tpm_map_bss: maps libtpms' untouched .bss to the zero page, for the workers the
 *  fork server forks (it calls this once, before any). */
void vtpm_tpm_map_bss(void);

/** vtpm_tpm_prefault: pages in every loaded object's code and data, in bulk (--flags prefault). */
void vtpm_tpm_prefault(void);

/** vtpm_tpm_init: (re)starts the TPM, as INIT does; see VROT_PTM_INIT_*. */
uint32_t vtpm_tpm_init(uint32_t init_flags);

/** vtpm_tpm_stop: terminates the TPM if it runs (state is already durable). */
void vtpm_tpm_stop(void);

bool vtpm_tpm_running(void);
void vtpm_tpm_set_locality(uint8_t locality);
uint8_t vtpm_tpm_locality(void);

/**
 * vtpm_tpm_process:
 * Executes one TPM 2.0 command.  Before INIT, answers TPM_RC_FAILURE as
 * swtpm does.  *@resp points into a buffer owned by this module, valid until
 * the next call.
 */
void vtpm_tpm_process(const uint8_t *cmd, uint32_t len, const uint8_t **resp,
                      uint32_t *resp_len);

/** vtpm_tpm_startup_clear: sends TPM2_Startup(SU_CLEAR); returns its rc. */
uint32_t vtpm_tpm_startup_clear(void);

/** vtpm_tpm_evict: TPM2_EvictControl of the persistent object at
 *  @persistent, with the owner's empty password; returns its rc. */
uint32_t vtpm_tpm_evict(uint32_t persistent);

/**
 * vtpm_tpm_nv_store:
 * NV index @index defined with the platform's authorization, @attributes
 * (they must allow TPM2_NV_Write and TPM2_NV_WriteLock with it: PPWRITE,
 * WRITEDEFINE), SHA-256 and no policy, for @len bytes; @data written in
 * chunks of 512 bytes; the index write-locked.  The first TPM response
 * code that is not 0, or 0.
 */
uint32_t vtpm_tpm_nv_store(uint32_t index, uint32_t attributes, const uint8_t *data, uint16_t len);

/**
 * vtpm_tpm_get_state / vtpm_tpm_set_state:
 * The raw libtpms blobs behind GET_STATEBLOB / SET_STATEBLOB (PTM blob
 * types 1-3).  Get: (transfer full) malloc()ed; an absent savestate blob
 * answers VROT_TPM_RETRY, as swtpm does and QEMU expects.  Set: only while
 * the TPM is stopped; libtpms takes it at the next INIT.
 */
uint32_t vtpm_tpm_get_state(uint32_t ptm_type, uint8_t **ret, uint32_t *ret_len);
uint32_t vtpm_tpm_set_state(uint32_t ptm_type, const uint8_t *buf, uint32_t len);

/** vtpm_tpm_store_volatile: writes the volatile state, as STORE_VOLATILE. */
uint32_t vtpm_tpm_store_volatile(void);

void vtpm_tpm_free(void);
