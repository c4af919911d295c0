/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What crosses the control channel as a state blob.  This is the seam where
 * live migration will put its per-migration key (DESIGN "Migration" 4): only
 * this file decides how a blob leaving or entering the worker is protected.
 */
#include <stdlib.h>
#include <string.h>

#include <libtpms/tpm_error.h>

#include "log.h"
#include "ptm.h"
#include "seal.h"
#include "worker.h"

static uint32_t dup_blob(const uint8_t *in, uint32_t len, uint8_t **ret, uint32_t *ret_len)
{
        uint8_t *copy = malloc(len ? len : 1);

        if (!copy)
                return VROT_TPM_SIZE;
        memcpy(copy, in, len);
        *ret = copy;
        *ret_len = len;
        return TPM_SUCCESS;
}

/* With --migrate a blob crosses only under a live migration's key, in the
 * direction of the worker's role: never in plaintext, never otherwise. */
static bool migration_allows(const Worker *w, uint8_t role, const char *what)
{
        if (w->mig.role == role)
                return true;
        log_warn("%s refused: %s", what,
                 w->mig.role ? "this worker is the other end of the live migration"
                             : "no live migration is prepared for this vTPM (vrotd "
                               "instance.migrate_prepare)");
        return false;
}

uint32_t vtpm_stateblob_export(Worker *w, uint32_t type, uint32_t req_flags,
                               uint8_t *plain, uint32_t len,
                               uint8_t **ret, uint32_t *ret_len, uint32_t *ret_flags)
{
        VrotError err = { 0 };
        size_t sealed_len;
        const VrotSealer *sealer = w->sealer;

        if (w->mig.enabled) {
                if (!migration_allows(w, VROT_MKEY_OUT, "GET_STATEBLOB"))
                        return VROT_TPM_FAIL;
                sealer = &w->mig.sealer;
        } else if (req_flags & VROT_PTM_STATE_DECRYPTED) {
                *ret_flags = 0;
                return dup_blob(plain, len, ret, ret_len);
        }
        /* Generation 0: a transport copy, never a state file. PTM blob types
         * 1-3 are vrot's VROT_BLOB_* 1-3. */
        if (vrot_seal(sealer, type, 0, plain, len, ret, &sealed_len, &err) < 0) {
                log_error("GET_STATEBLOB: %s", err.msg);
                return TPM_FAIL;
        }
        *ret_len = (uint32_t)sealed_len;
        *ret_flags = VROT_PTM_STATE_ENCRYPTED;
        if (w->mig.enabled)
                w->mig.exported |= (uint8_t)(1u << type);
        return TPM_SUCCESS;
}

uint32_t vtpm_stateblob_import(Worker *w, uint32_t type, uint32_t flags,
                               const uint8_t *in, uint32_t len,
                               uint8_t **ret, uint32_t *ret_len)
{
        VrotError err = { 0 };
        uint8_t *plain = NULL;
        size_t plain_len = 0;
        const VrotSealer *sealer = w->sealer;

        if (type < VROT_PTM_BLOB_PERMANENT || type > VROT_PTM_BLOB_SAVESTATE)
                return VROT_TPM_BAD_PARAMETER;
        if (w->mig.enabled) {
                if (!migration_allows(w, VROT_MKEY_IN, "SET_STATEBLOB"))
                        return VROT_TPM_FAIL;
                if (!(flags & VROT_PTM_STATE_ENCRYPTED)) {
                        log_warn("SET_STATEBLOB refused: a plaintext %s blob during a live migration",
                                 vrot_blob_type_name(type));
                        return TPM_DECRYPT_ERROR;
                }
                sealer = &w->mig.sealer;
        } else if (!(flags & VROT_PTM_STATE_ENCRYPTED)) {
                return dup_blob(in, len, ret, ret_len);
        }
        if (vrot_seal_open(sealer, type, in, len, &plain, &plain_len, NULL, &err) < 0) {
                log_warn("SET_STATEBLOB: encrypted %s blob refused: %s",
                         vrot_blob_type_name(type), err.msg);
                return TPM_DECRYPT_ERROR;
        }
        *ret = plain;
        *ret_len = (uint32_t)plain_len;
        if (w->mig.enabled)
                w->mig.imported |= (uint8_t)(1u << type);
        return TPM_SUCCESS;
}
