/* SPDX-License-Identifier: BSD-3-Clause */
/* vtpm/tpm.c against the real libtpms: manufacture, persistence, state blobs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bytes.h"
#include "ptm.h"
#include "tpm.h"
#include "unit.h"

static const uint8_t key[32] = { 4, 4, 4 };
static VrotSealer sealer = { .key = key, .uuid = { 9 } };
static VrotStore *store;

static uint32_t rc_of(const uint8_t *cmd, uint32_t len)
{
        const uint8_t *resp;
        uint32_t rlen;

        vtpm_tpm_process(cmd, len, &resp, &rlen);
        CU_ASSERT_FATAL(rlen >= 10);
        return vrot_get_be32(resp + 6);
}

static const uint8_t get_random8[12] = { 0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8 };

static void test_tpm_process_before_init_fails(void)
{
        CU_ASSERT_FALSE(vtpm_tpm_running());
        CU_ASSERT_EQUAL(rc_of(get_random8, sizeof(get_random8)), 0x101);
}

static void test_tpm_manufacture_and_run(void)
{
        const uint8_t *resp;
        uint32_t rlen;

        CU_ASSERT_EQUAL(vrot_store_generation(store), 0);
        CU_ASSERT_EQUAL_FATAL(vtpm_tpm_init(0), 0);
        CU_ASSERT(vrot_store_generation(store) > 0);   /* permall manufactured and stored */
        CU_ASSERT_EQUAL(vtpm_tpm_startup_clear(), 0);
        vtpm_tpm_process(get_random8, sizeof(get_random8), &resp, &rlen);
        CU_ASSERT_EQUAL(rlen, 10 + 2 + 8);
        CU_ASSERT_EQUAL(vrot_get_be32(resp + 6), 0);
        /* Garbage is the TPM's problem, answered, not a crash. */
        CU_ASSERT_NOT_EQUAL(rc_of((const uint8_t *)"\x80\x01\0\0\0\x0a\xff\xff\xff\xff", 10), 0);
}

static void test_tpm_state_blobs(void)
{
        uint8_t *blob = NULL;
        uint32_t len = 0;

        CU_ASSERT_EQUAL(vtpm_tpm_get_state(VROT_PTM_BLOB_SAVESTATE, &blob, &len), VROT_TPM_RETRY);
        CU_ASSERT_EQUAL(vtpm_tpm_get_state(9, &blob, &len), VROT_TPM_BAD_PARAMETER);
        CU_ASSERT_EQUAL_FATAL(vtpm_tpm_get_state(VROT_PTM_BLOB_PERMANENT, &blob, &len), 0);
        CU_ASSERT(len > 1000);
        /* Setting state is refused while the TPM runs. */
        CU_ASSERT_NOT_EQUAL(vtpm_tpm_set_state(VROT_PTM_BLOB_PERMANENT, blob, len), 0);
        vtpm_tpm_stop();
        CU_ASSERT_EQUAL(vtpm_tpm_set_state(VROT_PTM_BLOB_PERMANENT, blob, len), 0);
        blob[len / 2] ^= 0xff;
        blob[len / 2 + 1] ^= 0xff;
        CU_ASSERT_EQUAL(vtpm_tpm_set_state(9, blob, len), VROT_TPM_BAD_PARAMETER);
        free(blob);
        CU_ASSERT_EQUAL(vtpm_tpm_init(0), 0);
}

static void test_tpm_volatile_store_and_delete(void)
{
        uint64_t before = vrot_store_generation(store);
        struct stat st;
        char path[512];

        CU_ASSERT_EQUAL(vtpm_tpm_startup_clear(), 0);
        CU_ASSERT_EQUAL(vtpm_tpm_store_volatile(), 0);
        CU_ASSERT(vrot_store_generation(store) > before);
        snprintf(path, sizeof(path), "%s/state/volatilestate", unit_tmpdir());
        CU_ASSERT_EQUAL(stat(path, &st), 0);
        /* INIT with DELETE_VOLATILE loads it and then removes it. */
        CU_ASSERT_EQUAL(vtpm_tpm_init(VROT_PTM_INIT_DELETE_VOLATILE), 0);
        CU_ASSERT_EQUAL(stat(path, &st), -1);
}

static void test_tpm_locality(void)
{
        vtpm_tpm_set_locality(3);
        CU_ASSERT_EQUAL(vtpm_tpm_locality(), 3);
        vtpm_tpm_set_locality(0);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_tpm_process_before_init_fails),
                UNIT_CASE(test_tpm_manufacture_and_run),
                UNIT_CASE(test_tpm_state_blobs),
                UNIT_CASE(test_tpm_volatile_store_and_delete),
                UNIT_CASE(test_tpm_locality),
        };
        char dir[512];
        int ret;

        snprintf(dir, sizeof(dir), "%s/state", unit_tmpdir());
        mkdir(dir, 0700);
        if (vrot_store_open(dir, &sealer, 0, &store, NULL) < 0 || vtpm_tpm_setup(store) != 0)
                return 1;
        ret = UNIT_RUN("tpm", cases);
        vtpm_tpm_free();
        vrot_store_free(store);
        return ret;
}
