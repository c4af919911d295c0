/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdlib.h>
#include <string.h>

#include "ptm.h"
#include "unit.h"
#include "worker.h"

static const uint8_t key[32] = { 3 };
static const VrotSealer sealer = { .key = key, .uuid = { 5 } };
static const VrotSealer other = { .key = key, .uuid = { 6 } };

static void test_stateblob_decrypted_is_plain(void)
{
        Worker w = { .sealer = &sealer };
        uint8_t plain[] = "libtpms blob";
        uint8_t *out = NULL;
        uint32_t len = 0, flags = 99;

        CU_ASSERT_EQUAL(vtpm_stateblob_export(&w, VROT_PTM_BLOB_PERMANENT, VROT_PTM_STATE_DECRYPTED,
                                              plain, sizeof(plain), &out, &len, &flags), 0);
        CU_ASSERT_EQUAL(flags, 0);
        CU_ASSERT(len == sizeof(plain) && memcmp(out, plain, len) == 0);
        free(out);
}

static void test_stateblob_sealed_round_trip_and_refusals(void)
{
        Worker w = { .sealer = &sealer }, w2 = { .sealer = &other };
        uint8_t plain[] = "libtpms blob";
        uint8_t *sealed = NULL, *back = NULL;
        uint32_t len = 0, back_len = 0, flags = 0;

        CU_ASSERT_EQUAL_FATAL(vtpm_stateblob_export(&w, VROT_PTM_BLOB_VOLATILE, 0, plain,
                                                    sizeof(plain), &sealed, &len, &flags), 0);
        CU_ASSERT_EQUAL(flags, VROT_PTM_STATE_ENCRYPTED);
        CU_ASSERT(memmem(sealed, len, "libtpms", 7) == NULL);
        CU_ASSERT_EQUAL(vtpm_stateblob_import(&w, VROT_PTM_BLOB_VOLATILE, VROT_PTM_STATE_ENCRYPTED,
                                              sealed, len, &back, &back_len), 0);
        CU_ASSERT(back_len == sizeof(plain) && memcmp(back, plain, back_len) == 0);
        free(back);
        /* Another instance, another blob type, a flipped bit: refused. */
        CU_ASSERT_NOT_EQUAL(vtpm_stateblob_import(&w2, VROT_PTM_BLOB_VOLATILE, VROT_PTM_STATE_ENCRYPTED,
                                                  sealed, len, &back, &back_len), 0);
        CU_ASSERT_NOT_EQUAL(vtpm_stateblob_import(&w, VROT_PTM_BLOB_PERMANENT, VROT_PTM_STATE_ENCRYPTED,
                                                  sealed, len, &back, &back_len), 0);
        sealed[len - 1] ^= 1;
        CU_ASSERT_NOT_EQUAL(vtpm_stateblob_import(&w, VROT_PTM_BLOB_VOLATILE, VROT_PTM_STATE_ENCRYPTED,
                                                  sealed, len, &back, &back_len), 0);
        CU_ASSERT_EQUAL(vtpm_stateblob_import(&w, 4, 0, sealed, len, &back, &back_len),
                        VROT_TPM_BAD_PARAMETER);
        free(sealed);
}

static void test_stateblob_plain_import_copies(void)
{
        Worker w = { .sealer = &sealer };
        uint8_t *back = NULL;
        uint32_t back_len = 0;

        CU_ASSERT_EQUAL(vtpm_stateblob_import(&w, VROT_PTM_BLOB_SAVESTATE, 0,
                                              (const uint8_t *)"abc", 3, &back, &back_len), 0);
        CU_ASSERT(back_len == 3 && memcmp(back, "abc", 3) == 0);
        free(back);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_stateblob_decrypted_is_plain),
                UNIT_CASE(test_stateblob_sealed_round_trip_and_refusals),
                UNIT_CASE(test_stateblob_plain_import_copies),
        };
        return UNIT_RUN("stateblob", cases);
}
