/* SPDX-License-Identifier: BSD-3-Clause */
/* The control-channel executor against the real libtpms TPM of this process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "ptm.h"
#include "tpm.h"
#include "unit.h"
#include "worker.h"

static const uint8_t key[32] = { 9, 8, 7 };
static VrotSealer sealer = { .key = key, .uuid = { 1, 2, 3 } };
static Worker w;

static uint32_t run(uint32_t cmd, const uint8_t *body, size_t body_len, int fd, Reply *rep)
{
        uint8_t buf[64];

        vrot_put_be32(buf, cmd);
        if (body_len)
                memcpy(buf + 4, body, body_len);
        vtpm_ctrl_execute(&w, buf, 4 + body_len, fd, rep);
        CU_ASSERT_FATAL(rep->head_len >= 4);
        return vrot_get_be32(rep->head);
}

static void drop(Reply *rep)
{
        if (rep->tail_owned)
                free(rep->tail);
        memset(rep, 0, sizeof(*rep));
}

static uint32_t simple(uint32_t cmd, const uint8_t *body, size_t body_len)
{
        Reply rep;
        uint32_t rc = run(cmd, body, body_len, -1, &rep);

        drop(&rep);
        return rc;
}

static const uint8_t zero4[4];

static void test_ctrl_capability(void)
{
        Reply rep;

        CU_ASSERT_EQUAL(run(VROT_PTM_GET_CAPABILITY, NULL, 0, -1, &rep), 0);
        CU_ASSERT_EQUAL(rep.head_len, 8);
        /* Everything swtpm 0.7.1 has but SEND_COMMAND_HEADER, plus LOCK_STORAGE. */
        CU_ASSERT_EQUAL(vrot_get_be32(rep.head + 4), 0x17fff);
        drop(&rep);
}

static void test_ctrl_not_running(void)
{
        static const uint32_t need_running[] = {
                VROT_PTM_GET_TPMESTABLISHED, VROT_PTM_HASH_START, VROT_PTM_HASH_END,
                VROT_PTM_CANCEL_TPM_CMD, VROT_PTM_STORE_VOLATILE,
        };

        vtpm_tpm_stop();
        for (size_t i = 0; i < sizeof(need_running) / sizeof(need_running[0]); i++)
                CU_ASSERT_EQUAL(simple(need_running[i], NULL, 0), VROT_TPM_BAD_ORDINAL);
        /* State is checked before parameters, as swtpm does. */
        CU_ASSERT_EQUAL(simple(VROT_PTM_GET_TPMESTABLISHED, zero4, 4), VROT_TPM_BAD_ORDINAL);
}

static void test_ctrl_init_and_bad_params(void)
{
        CU_ASSERT_EQUAL(simple(VROT_PTM_INIT, zero4, 2), VROT_TPM_BAD_PARAMETER);
        CU_ASSERT_FALSE(vtpm_tpm_running());
        CU_ASSERT_EQUAL(simple(VROT_PTM_INIT, zero4, 4), 0);
        CU_ASSERT_TRUE(vtpm_tpm_running());
        CU_ASSERT_EQUAL(vtpm_tpm_startup_clear(), 0);
        CU_ASSERT_EQUAL(simple(VROT_PTM_STOP, zero4, 1), VROT_TPM_BAD_PARAMETER);
        CU_ASSERT_TRUE(vtpm_tpm_running());
        CU_ASSERT_EQUAL(simple(0x99, NULL, 0), VROT_TPM_BAD_ORDINAL);
}

static void test_ctrl_locality_and_established(void)
{
        uint8_t loc;
        Reply rep;

        for (loc = 0; loc <= 4; loc++)
                CU_ASSERT_EQUAL(simple(VROT_PTM_SET_LOCALITY, &loc, 1), 0);
        loc = 5;
        CU_ASSERT_EQUAL(simple(VROT_PTM_SET_LOCALITY, &loc, 1), VROT_TPM_BAD_LOCALITY);
        CU_ASSERT_EQUAL(vtpm_tpm_locality(), 4);
        loc = 0;
        simple(VROT_PTM_SET_LOCALITY, &loc, 1);

        CU_ASSERT_EQUAL(simple(VROT_PTM_HASH_START, NULL, 0), 0);
        CU_ASSERT_EQUAL(simple(VROT_PTM_HASH_DATA, (const uint8_t *)"\0\0\0\3abc", 7), 0);
        CU_ASSERT_EQUAL(simple(VROT_PTM_HASH_END, NULL, 0), 0);
        CU_ASSERT_EQUAL(run(VROT_PTM_GET_TPMESTABLISHED, NULL, 0, -1, &rep), 0);
        CU_ASSERT_EQUAL(rep.head_len, 8);
        CU_ASSERT_EQUAL(rep.head[4], 1);
        drop(&rep);
        loc = 0;
        CU_ASSERT_NOT_EQUAL(simple(VROT_PTM_RESET_TPMESTABLISHED, &loc, 1), 0);
        loc = 3;
        CU_ASSERT_EQUAL(simple(VROT_PTM_RESET_TPMESTABLISHED, &loc, 1), 0);
        CU_ASSERT_EQUAL(vtpm_tpm_locality(), 0);    /* restored afterwards */
        run(VROT_PTM_GET_TPMESTABLISHED, NULL, 0, -1, &rep);
        CU_ASSERT_EQUAL(rep.head[4], 0);
        drop(&rep);
}

static void test_ctrl_config_buffersize_info(void)
{
        uint8_t size[4];
        uint8_t info[16] = { 0 };
        Reply rep;

        CU_ASSERT_EQUAL(run(VROT_PTM_GET_CONFIG, NULL, 0, -1, &rep), 0);
        CU_ASSERT_EQUAL(vrot_get_be32(rep.head + 4), VROT_PTM_CONFIG_FILE_KEY);
        drop(&rep);

        vrot_put_be32(size, 0);
        CU_ASSERT_EQUAL(run(VROT_PTM_SET_BUFFERSIZE, size, 4, -1, &rep), 0);
        CU_ASSERT_EQUAL(rep.head_len, 16);
        CU_ASSERT(vrot_get_be32(rep.head + 4) >= vrot_get_be32(rep.head + 8));
        drop(&rep);
        vrot_put_be32(size, 2048);
        CU_ASSERT_EQUAL(simple(VROT_PTM_SET_BUFFERSIZE, size, 4), VROT_TPM_BAD_ORDINAL);

        vrot_put_be64(info, 1);         /* SWTPM_INFO_TPMSPECIFICATION */
        CU_ASSERT_EQUAL(run(VROT_PTM_GET_INFO, info, 16, -1, &rep), 0);
        CU_ASSERT(rep.tail_len > 10);
        CU_ASSERT(memmem(rep.tail, rep.tail_len, "TPMSpecification", 16) != NULL);
        drop(&rep);
        vrot_put_be32(info + 8, 100000);
        CU_ASSERT_EQUAL(simple(VROT_PTM_GET_INFO, info, 16), VROT_TPM_BAD_PARAMETER);
}

static uint32_t get_state(uint32_t type, uint32_t flags, Reply *rep)
{
        uint8_t req[12];

        vrot_put_be32(req, flags);
        vrot_put_be32(req + 4, type);
        vrot_put_be32(req + 8, 0);
        return run(VROT_PTM_GET_STATEBLOB, req, 12, -1, rep);
}

static void test_ctrl_stateblobs(void)
{
        uint8_t req[16];
        Reply rep, sealed;

        CU_ASSERT_EQUAL(get_state(VROT_PTM_BLOB_SAVESTATE, VROT_PTM_STATE_DECRYPTED, &rep), VROT_TPM_RETRY);
        CU_ASSERT_EQUAL(rep.tail_len, 0);
        drop(&rep);
        CU_ASSERT_EQUAL(get_state(VROT_PTM_BLOB_PERMANENT, VROT_PTM_STATE_DECRYPTED, &rep), 0);
        CU_ASSERT(rep.tail_len > 100);
        CU_ASSERT_EQUAL(vrot_get_be32(rep.head + 4), 0);
        CU_ASSERT_EQUAL(vrot_get_be32(rep.head + 12), rep.tail_len);
        drop(&rep);
        CU_ASSERT_EQUAL(get_state(VROT_PTM_BLOB_PERMANENT, 0, &sealed), 0);
        CU_ASSERT_EQUAL(vrot_get_be32(sealed.head + 4), VROT_PTM_STATE_ENCRYPTED);
        CU_ASSERT(memcmp(sealed.tail, "VRTS", 4) == 0);
        CU_ASSERT_EQUAL(get_state(7, VROT_PTM_STATE_DECRYPTED, &rep), VROT_TPM_BAD_PARAMETER);
        drop(&rep);

        /* SET only while stopped. */
        vrot_put_be32(req, 0);
        vrot_put_be32(req + 4, VROT_PTM_BLOB_PERMANENT);
        vrot_put_be32(req + 8, 0);
        CU_ASSERT_EQUAL(simple(VROT_PTM_SET_STATEBLOB, req, 12), VROT_TPM_BAD_ORDINAL);
        CU_ASSERT_EQUAL(simple(VROT_PTM_STOP, NULL, 0), 0);

        /* A sealed blob goes back in; a tampered one is refused. */
        {
                uint8_t *buf = malloc(16 + sealed.tail_len);
                Reply r2;
                vrot_put_be32(buf, VROT_PTM_SET_STATEBLOB);
                vrot_put_be32(buf + 4, VROT_PTM_STATE_ENCRYPTED);
                vrot_put_be32(buf + 8, VROT_PTM_BLOB_PERMANENT);
                vrot_put_be32(buf + 12, (uint32_t)sealed.tail_len);
                memcpy(buf + 16, sealed.tail, sealed.tail_len);
                vtpm_ctrl_execute(&w, buf, 16 + sealed.tail_len, -1, &r2);
                CU_ASSERT_EQUAL(vrot_get_be32(r2.head), 0);
                buf[16 + sealed.tail_len - 1] ^= 1;
                vtpm_ctrl_execute(&w, buf, 16 + sealed.tail_len, -1, &r2);
                CU_ASSERT_EQUAL(vrot_get_be32(r2.head), 0x21);       /* TPM_DECRYPT_ERROR */
                free(buf);
        }
        drop(&sealed);
        CU_ASSERT_EQUAL(simple(VROT_PTM_INIT, zero4, 4), 0);
        CU_ASSERT_EQUAL(vtpm_tpm_startup_clear(), 0);
}

static void test_ctrl_set_datafd(void)
{
        int sv[2];
        Reply rep;

        CU_ASSERT_EQUAL(simple(VROT_PTM_SET_DATAFD, NULL, 0), VROT_TPM_BAD_PARAMETER);
        CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        CU_ASSERT_EQUAL(run(VROT_PTM_SET_DATAFD, NULL, 0, sv[1], &rep), 0);
        CU_ASSERT_EQUAL(w.data.fd, sv[1]);
        CU_ASSERT_TRUE(w.data_passed);
        CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        CU_ASSERT_EQUAL(run(VROT_PTM_SET_DATAFD, NULL, 0, sv[1], &rep), VROT_TPM_IOERROR);
        /* A descriptor sent with another command is closed, not leaked. */
        CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        CU_ASSERT_EQUAL(run(VROT_PTM_GET_CONFIG, NULL, 0, sv[1], &rep), 0);
        CU_ASSERT_EQUAL(fcntl(sv[1], F_GETFD), -1);
        close(sv[0]);
}

static void test_ctrl_shutdown(void)
{
        CU_ASSERT_FALSE(w.terminate);
        CU_ASSERT_EQUAL(simple(VROT_PTM_SHUTDOWN, NULL, 0), 0);
        CU_ASSERT_TRUE(w.terminate);
        CU_ASSERT_FALSE(vtpm_tpm_running());
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_ctrl_capability),
                UNIT_CASE(test_ctrl_not_running),
                UNIT_CASE(test_ctrl_init_and_bad_params),
                UNIT_CASE(test_ctrl_locality_and_established),
                UNIT_CASE(test_ctrl_config_buffersize_info),
                UNIT_CASE(test_ctrl_stateblobs),
                UNIT_CASE(test_ctrl_set_datafd),
                UNIT_CASE(test_ctrl_shutdown),
        };
        char dir[512];
        int ret;

        snprintf(dir, sizeof(dir), "%s/state", unit_tmpdir());
        mkdir(dir, 0700);
        w = (Worker){ .ctrl_listen = -1, .data_listen = -1, .ctrl = { .fd = -1 },
                      .data = { .fd = -1 }, .sealer = &sealer };
        if (vrot_store_open(dir, &sealer, 0, &w.store, NULL) < 0 || vtpm_tpm_setup(w.store) != 0)
                return 1;
        ret = UNIT_RUN("ctrl", cases);
        vtpm_tpm_free();
        vrot_store_free(w.store);
        if (w.data.fd >= 0)
                close(w.data.fd);
        return ret;
}
