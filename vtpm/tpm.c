/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>
#include <libtpms/tpm_nvfilename.h>

#include "bytes.h"
#include "log.h"
#include "ptm.h"
#include "seal.h"
#include "tpm.h"

#define TPM2_RC_FAILURE 0x101

/* libtpms's TPM is process-global; so is its glue (STYLE: the one exception). */
static VrotStore *tpm_store;
/* Why the last state write failed: libtpms reports only TPM_RC_FAILURE. */
static char store_failure[sizeof(((VrotError *)0)->msg)];
static uint8_t tpm_locality;
static bool tpm_running;
static unsigned char *resp_buf;
static uint32_t resp_cap;
static uint8_t fail_resp[10];

static int blob_of_name(const char *name, uint32_t *ret)
{
        if (strcmp(name, TPM_PERMANENT_ALL_NAME) == 0)
                *ret = VROT_BLOB_PERMANENT;
        else if (strcmp(name, TPM_VOLATILESTATE_NAME) == 0)
                *ret = VROT_BLOB_VOLATILE;
        else if (strcmp(name, TPM_SAVESTATE_NAME) == 0)
                *ret = VROT_BLOB_SAVESTATE;
        else
                return -1;
        return 0;
}

static TPM_RESULT cb_nvram_init(void)
{
        return TPM_SUCCESS;
}

static TPM_RESULT cb_nvram_load(unsigned char **data, uint32_t *length,
                                uint32_t tpm_number, const char *name)
{
        VrotError err = { 0 };
        uint32_t type;
        int r;

        (void)tpm_number;
        if (blob_of_name(name, &type) < 0)
                return TPM_FAIL;
        r = vrot_store_load(tpm_store, type, data, length, &err);
        if (r == -ENOENT)
                return TPM_RETRY;       /* libtpms: "does not exist yet" */
        if (r < 0) {
                log_error("loading TPM state: %s", err.msg);
                return TPM_FAIL;
        }
        return TPM_SUCCESS;
}

static TPM_RESULT cb_nvram_store(const unsigned char *data, uint32_t length,
                                 uint32_t tpm_number, const char *name)
{
        VrotError err = { 0 };
        uint32_t type;

        (void)tpm_number;
        if (blob_of_name(name, &type) < 0)
                return TPM_FAIL;
        if (vrot_store_save(tpm_store, type, data, length, &err) < 0) {
                log_error("storing TPM state: %s", err.msg);
                snprintf(store_failure, sizeof(store_failure), "%s", err.msg);
                return TPM_FAIL;
        }
        log_debug("stored %s, generation %llu", name,
                  (unsigned long long)vrot_store_generation(tpm_store));
        return TPM_SUCCESS;
}

static TPM_RESULT cb_nvram_delete(uint32_t tpm_number, const char *name, TPM_BOOL must_exist)
{
        VrotError err = { 0 };
        uint32_t type;

        (void)tpm_number;
        (void)must_exist;
        if (blob_of_name(name, &type) < 0)
                return TPM_FAIL;
        if (vrot_store_delete(tpm_store, type, &err) < 0) {
                log_error("deleting TPM state: %s", err.msg);
                return TPM_FAIL;
        }
        return TPM_SUCCESS;
}

static TPM_RESULT cb_io_init(void)
{
        return TPM_SUCCESS;
}

static TPM_RESULT cb_get_locality(TPM_MODIFIER_INDICATOR *loc, uint32_t tpm_number)
{
        (void)tpm_number;
        *loc = tpm_locality;
        return TPM_SUCCESS;
}

static TPM_RESULT cb_get_pp(TPM_BOOL *pp, uint32_t tpm_number)
{
        (void)tpm_number;
        *pp = FALSE;
        return TPM_SUCCESS;
}

static struct libtpms_callbacks callbacks = {
        .sizeOfStruct = sizeof(struct libtpms_callbacks),
        .tpm_nvram_init = cb_nvram_init,
        .tpm_nvram_loaddata = cb_nvram_load,
        .tpm_nvram_storedata = cb_nvram_store,
        .tpm_nvram_deletename = cb_nvram_delete,
        .tpm_io_init = cb_io_init,
        .tpm_io_getlocality = cb_get_locality,
        .tpm_io_getphysicalpresence = cb_get_pp,
};

const char *vtpm_tpm_store_failure(void)
{
        return store_failure[0] ? store_failure : NULL;
}

uint32_t vtpm_tpm_setup(VrotStore *store)
{
        uint32_t rc;

        tpm_store = store;
        rc = TPMLIB_ChooseTPMVersion(TPMLIB_TPM_VERSION_2);
        if (rc == TPM_SUCCESS)
                rc = TPMLIB_RegisterCallbacks(&callbacks);
        vrot_put_be16(fail_resp, 0x8001);
        vrot_put_be32(fail_resp + 2, sizeof(fail_resp));
        vrot_put_be32(fail_resp + 6, TPM2_RC_FAILURE);
        return rc;
}

/*
 * libtpms keeps its TPM in ~200 KiB of .bss and clears all of it when the TPM
 * starts, which makes every page private and dirty although most of them
 * hold only zeroes (bench/: 168 KiB of the 200).  Handing the all-zero pages
 * back with MADV_DONTNEED changes nothing the TPM can see - a dropped page
 * reads as zeroes again - and saves ~150 KiB per running vTPM.  Only the
 * anonymous part of the segment qualifies: a file-backed page would revert
 * to the file's contents.  The worker has one thread, so no page changes
 * between the check and the madvise.
 */
static void drop_zero_runs(uintptr_t start, uintptr_t end, uintptr_t page, const uint8_t *zero)
{
        uintptr_t run = end;    /* start of the current run of zero pages */

        /* One madvise per run, not per page: each call flushes the TLB,
         * which a hypervisor makes expensive (bench/README.md "Boot storm"). */
        for (uintptr_t p = start; p <= end; p += page) {
                int is_zero = p < end && memcmp((const void *)p, zero, page) == 0;

                if (is_zero && run == end)
                        run = p;
                else if (!is_zero && run != end) {
                        (void)madvise((void *)run, p - run, MADV_DONTNEED);
                        run = end;
                }
        }
}

/* What to do with the anonymous part of libtpms' writable segments (its
 * .bss past the file's data). */
typedef void (*BssFn)(uintptr_t start, uintptr_t end, uintptr_t page);

static int on_libtpms_bss(struct dl_phdr_info *info, size_t size, void *data)
{
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        BssFn fn = *(BssFn *)data;

        (void)size;
        if (!info->dlpi_name || !strstr(info->dlpi_name, "libtpms.so"))
                return 0;
        for (int i = 0; i < info->dlpi_phnum; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                uintptr_t start, end;

                if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W) || ph->p_memsz <= ph->p_filesz)
                        continue;
                start = (info->dlpi_addr + ph->p_vaddr + ph->p_filesz + page - 1) & ~(page - 1);
                end = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + page - 1) & ~(page - 1);
                fn(start, end, page);
        }
        return 1;
}

static void for_libtpms_bss(BssFn fn)
{
        dl_iterate_phdr(on_libtpms_bss, &fn);
}

static void drop_zero_bss(uintptr_t start, uintptr_t end, uintptr_t page)
{
        static const uint8_t zero[4096];

        if (page == sizeof(zero))
                drop_zero_runs(start, end, page, zero);
}

/*
 * The pages of libtpms' .bss that nothing touched yet are not mapped at
 * all, and fork() copies no page-table entry it has not got: so in every
 * worker drop_zero_bss() read-faulted the ~25 pages its TPM leaves alone,
 * to find them zero (bench/README.md "Boot storm").  Mapped to the zero
 * page here, once, they come mapped into every worker.  fork() copies an
 * anonymous mapping's entries only once the mapping has a page of its own,
 * hence the first page written (it stays zero: 4 KiB, once).
 */
static void map_zero_bss(uintptr_t start, uintptr_t end, uintptr_t page)
{
        if (end <= start)
                return;
        (void)madvise((void *)start, page, MADV_POPULATE_WRITE);
        (void)madvise((void *)start, end - start, MADV_POPULATE_READ);
}

void vtpm_tpm_map_bss(void)
{
        for_libtpms_bss(map_zero_bss);
}

/*
 * A forked worker shares its code with the fork server but has none of it
 * mapped: every first call into a page of libtpms or OpenSSL is a page
 * fault, and so is every first write to a data page (copy-on-write).  On
 * this kind of host a fault costs 10-40 us (bench/README.md "Boot storm"),
 * which the first commands of a fresh worker pay by the dozen.  A worker
 * that waits for its first commands (the pool's warm vTPM) takes them all
 * at once, in bulk, before anybody waits: every loaded object's segments,
 * read-only ones read, writable ones written.  Errors are no reason to
 * stop: the pages then come one fault at a time, as usual.
 */
static int prefault_object(struct dl_phdr_info *info, size_t size, void *data)
{
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);

        (void)size, (void)data;
        for (int i = 0; i < info->dlpi_phnum; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                uintptr_t start = (info->dlpi_addr + ph->p_vaddr) & ~(page - 1);
                uintptr_t end = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + page - 1) & ~(page - 1);

                if (ph->p_type != PT_LOAD || end <= start)
                        continue;
                (void)madvise((void *)start, end - start,
                              (ph->p_flags & PF_W) ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
        }
        return 0;
}

void vtpm_tpm_prefault(void)
{
        dl_iterate_phdr(prefault_object, NULL);
}

uint32_t vtpm_tpm_init(uint32_t init_flags)
{
        uint32_t rc;

        vtpm_tpm_stop();
        rc = TPMLIB_MainInit();
        if (rc != TPM_SUCCESS) {
                log_error("the TPM did not start (0x%x)", rc);
                return rc;
        }
        if (init_flags & VROT_PTM_INIT_DELETE_VOLATILE) {
                rc = cb_nvram_delete(0, TPM_VOLATILESTATE_NAME, FALSE);
                if (rc != TPM_SUCCESS) {
                        TPMLIB_Terminate();
                        return rc;
                }
        }
        tpm_running = true;
        for_libtpms_bss(drop_zero_bss);
        return TPM_SUCCESS;
}

void vtpm_tpm_stop(void)
{
        if (!tpm_running)
                return;
        TPMLIB_Terminate();
        tpm_running = false;
}

bool vtpm_tpm_running(void)
{
        return tpm_running;
}

void vtpm_tpm_set_locality(uint8_t locality)
{
        tpm_locality = locality;
}

uint8_t vtpm_tpm_locality(void)
{
        return tpm_locality;
}

void vtpm_tpm_process(const uint8_t *cmd, uint32_t len, const uint8_t **resp,
                      uint32_t *resp_len)
{
        uint32_t rlen = 0;

        if (!tpm_running ||
            TPMLIB_Process(&resp_buf, &rlen, &resp_cap, (unsigned char *)cmd, len) != TPM_SUCCESS ||
            rlen < 10) {
                /* Not started, or libtpms failed outside the TPM: a TPM 2.0
                 * failure response, as swtpm gives (FIELD-NOTES: QEMU probes
                 * with ReadClock before INIT and expects 0x101). */
                *resp = fail_resp;
                *resp_len = sizeof(fail_resp);
                return;
        }
        *resp = resp_buf;
        *resp_len = rlen;
}

uint32_t vtpm_tpm_startup_clear(void)
{
        static const uint8_t startup[12] = { 0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0 };
        const uint8_t *resp;
        uint32_t len;

        vtpm_tpm_process(startup, sizeof(startup), &resp, &len);
        return vrot_get_be32(resp + 6);
}

#define TPM_RH_OWNER 0x40000001
#define TPM_RH_PLATFORM 0x4000000c
#define TPM_RS_PW 0x40000009
#define NV_WRITE_CHUNK 512      /* every TPM's TPM_PT_NV_BUFFER_MAX is at least this */

/* Command @cc on @handles, the first authorized with its empty password
 * (TPM_RS_PW), then @params; its response code. */
static uint32_t run_pw(uint32_t cc, const uint32_t *handles, size_t n_handles,
                       const uint8_t *params, size_t params_len)
{
        uint8_t cmd[10 + 2 * 4 + 4 + 9 + 2 + NV_WRITE_CHUNK + 2];
        const uint8_t *resp;
        uint32_t resp_len;
        size_t off = 10;

        if (n_handles > 2 || params_len > sizeof(cmd) - 10 - 2 * 4 - 4 - 9)
                return VROT_TPM_FAIL;
        vrot_put_be16(cmd, 0x8002);                     /* TPM_ST_SESSIONS */
        vrot_put_be32(cmd + 6, cc);
        for (size_t i = 0; i < n_handles; i++, off += 4)
                vrot_put_be32(cmd + off, handles[i]);
        vrot_put_be32(cmd + off, 9);                    /* the authorization area: */
        vrot_put_be32(cmd + off + 4, TPM_RS_PW);        /* no nonce, no attributes, */
        memset(cmd + off + 8, 0, 5);                    /* the empty password */
        off += 13;
        if (params_len) {
                memcpy(cmd + off, params, params_len);
                off += params_len;
        }
        vrot_put_be32(cmd + 2, (uint32_t)off);
        vtpm_tpm_process(cmd, (uint32_t)off, &resp, &resp_len);
        return vrot_get_be32(resp + 6);
}

uint32_t vtpm_tpm_evict(uint32_t persistent)
{
        const uint32_t handles[] = { TPM_RH_OWNER, persistent };
        uint8_t params[4];

        vrot_put_be32(params, persistent);
        return run_pw(0x120, handles, 2, params, sizeof(params));    /* TPM2_EvictControl */
}

uint32_t vtpm_tpm_nv_store(uint32_t index, uint32_t attributes, const uint8_t *data, uint16_t len)
{
        const uint32_t platform[] = { TPM_RH_PLATFORM }, nv[] = { TPM_RH_PLATFORM, index };
        uint8_t params[2 + NV_WRITE_CHUNK + 2] = { 0 };
        uint32_t rc;

        /* TPM2_NV_DefineSpace: an empty authValue, then TPM2B_NV_PUBLIC. */
        vrot_put_be16(params + 2, 14);
        vrot_put_be32(params + 4, index);
        vrot_put_be16(params + 8, 0x000b);              /* nameAlg SHA-256 */
        vrot_put_be32(params + 10, attributes);
        vrot_put_be16(params + 14, 0);                  /* no authPolicy */
        vrot_put_be16(params + 16, len);
        rc = run_pw(0x12a, platform, 1, params, 18);
        for (uint32_t off = 0; rc == 0 && off < len; off += NV_WRITE_CHUNK) {
                uint16_t n = len - off < NV_WRITE_CHUNK ? (uint16_t)(len - off) : NV_WRITE_CHUNK;

                vrot_put_be16(params, n);               /* TPM2_NV_Write */
                memcpy(params + 2, data + off, n);
                vrot_put_be16(params + 2 + n, (uint16_t)off);
                rc = run_pw(0x137, nv, 2, params, 2u + n + 2u);
        }
        return rc ? rc : run_pw(0x138, nv, 2, NULL, 0);       /* TPM2_NV_WriteLock */
}

static enum TPMLIB_StateType state_type(uint32_t ptm_type)
{
        switch (ptm_type) {
        case VROT_PTM_BLOB_PERMANENT: return TPMLIB_STATE_PERMANENT;
        case VROT_PTM_BLOB_VOLATILE: return TPMLIB_STATE_VOLATILE;
        case VROT_PTM_BLOB_SAVESTATE: return TPMLIB_STATE_SAVE_STATE;
        }
        return 0;
}

uint32_t vtpm_tpm_get_state(uint32_t ptm_type, uint8_t **ret, uint32_t *ret_len)
{
        enum TPMLIB_StateType st = state_type(ptm_type);
        unsigned char *buf = NULL;
        uint32_t len = 0, rc;

        if (!st)
                return VROT_TPM_BAD_PARAMETER;
        rc = TPMLIB_GetState(st, &buf, &len);
        if (rc == TPM_SUCCESS && !buf && st == TPMLIB_STATE_SAVE_STATE)
                rc = TPM_RETRY;
        if (rc != TPM_SUCCESS) {
                free(buf);
                return rc;
        }
        *ret = buf;
        *ret_len = len;
        return TPM_SUCCESS;
}

uint32_t vtpm_tpm_set_state(uint32_t ptm_type, const uint8_t *buf, uint32_t len)
{
        enum TPMLIB_StateType st = state_type(ptm_type);

        if (!st)
                return VROT_TPM_BAD_PARAMETER;
        return TPMLIB_SetState(st, len ? buf : NULL, len);
}

uint32_t vtpm_tpm_store_volatile(void)
{
        unsigned char *buf = NULL;
        uint32_t len = 0, rc;

        rc = TPMLIB_VolatileAll_Store(&buf, &len);
        if (rc == TPM_SUCCESS)
                rc = cb_nvram_store(buf, len, 0, TPM_VOLATILESTATE_NAME);
        vrot_free_wiped(buf, len);
        return rc;
}

void vtpm_tpm_free(void)
{
        vtpm_tpm_stop();
        vrot_free_wiped(resp_buf, resp_cap);
        resp_buf = NULL;
        resp_cap = 0;
}
