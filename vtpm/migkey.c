/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The migration-key socket (--migrate, lib/mkey.h): vrotd gives the worker
 * the key of a prepared live migration, asks what crossed under it, and
 * clears it; and a pool entry's worker becomes an instance's (BIND).  One
 * request per connection; a client that has not sent all of it within
 * 200 ms is dropped, so the single-threaded loop is never held up for
 * longer.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"
#include "ptm.h"
#include "sandbox.h"
#include "store.h"
#include "tpm.h"
#include "uuid.h"
#include "worker.h"

#define REQUEST_WAIT_MS 200

void vtpm_migkey_clear(Worker *w)
{
        vrot_secret_free(w->mig.key);
        w->mig.key = NULL;
        w->mig.role = 0;
        w->mig.exported = w->mig.imported = 0;
        memset(&w->mig.sealer, 0, sizeof(w->mig.sealer));
}

static uint32_t set_key(Worker *w, const VrotMkeyRequest *r)
{
        VrotError err = { 0 };
        VrotSecret *key = vrot_secret_new(VROT_MKEY_KEY_LEN, &err);

        if (!key) {
                log_error("migration key: %s", err.msg);
                return VROT_TPM_FAIL;
        }
        vtpm_migkey_clear(w);
        memcpy(vrot_secret_data(key), r->key, VROT_MKEY_KEY_LEN);
        w->mig.key = key;
        w->mig.role = r->role;
        w->mig.sealer.key = vrot_secret_data(key);
        memcpy(w->mig.sealer.uuid, r->id, VROT_MKEY_ID_LEN);
        log_info("live migration prepared: this worker is its %s",
                 r->role == VROT_MKEY_OUT ? "source" : "destination");
        return 0;
}

/* The EKs of a pre-made vTPM (vrotd(8) POOL), as BIND names them, and
 * their certificates' NV indices (TCG EK Credential Profile). */
static const struct {
        uint8_t bit;
        uint32_t handle, nv_index;
} pool_eks[] = {
        { VROT_MKEY_EK_RSA, 0x81010001, 0x01c00002 },
        { VROT_MKEY_EK_ECC, 0x8101000a, 0x01c0000a },
};

/* Stores BIND's certificates, each at its EK's index; a TPM rc or 0. */
static uint32_t store_certs(const VrotMkeyRequest *r, const char *uuid)
{
        for (uint8_t i = 0; i < r->n_certs; i++) {
                const VrotMkeyCert *c = &r->certs[i];
                uint32_t index = 0, rc;

                for (size_t k = 0; k < sizeof(pool_eks) / sizeof(pool_eks[0]); k++)
                        if (pool_eks[k].bit == c->ek)
                                index = pool_eks[k].nv_index;   /* the parser knows no other */
                rc = vtpm_tpm_nv_store(index, VROT_MKEY_CERT_NV_ATTRIBUTES, c->der, c->len);
                if (rc != 0) {
                        log_error("BIND to instance %s: storing the EK certificate at 0x%08x: "
                                  "TPM rc 0x%x", uuid, index, rc);
                        return rc;
                }
        }
        return 0;
}

/* BIND: the pre-manufactured vTPM this worker runs becomes instance
 * @r->id's: the EKs it did not ask for are evicted and the certificates
 * of the others stored (in process: vrotd writes the certificate files
 * meanwhile), its whole state is sealed under that instance's key; then
 * the worker ends (the state is no pool entry's any more).  Once, and
 * never during a migration. */
static uint32_t bind_instance(Worker *w, const VrotMkeyRequest *r)
{
        VrotError err = { 0 };
        char uuid[VROT_UUID_STR_LEN + 1];

        if (w->mig.role || w->bind_key) {
                log_warn("BIND refused: this worker is %s", w->bind_key ? "bound already"
                                                                         : "in a live migration");
                return VROT_TPM_BAD_PARAMETER;
        }
        w->bind_key = vrot_secret_new(VROT_MKEY_KEY_LEN, &err);
        if (!w->bind_key) {
                log_error("BIND: %s", err.msg);
                return VROT_TPM_FAIL;
        }
        memcpy(vrot_secret_data(w->bind_key), r->key, VROT_MKEY_KEY_LEN);
        w->bind_sealer.key = vrot_secret_data(w->bind_key);
        memcpy(w->bind_sealer.uuid, r->id, VROT_MKEY_ID_LEN);
        vrot_uuid_format(r->id, uuid);
        w->terminate = true;    /* bound or not, this vTPM serves nobody any more */
        for (size_t i = 0; i < sizeof(pool_eks) / sizeof(pool_eks[0]); i++) {
                uint32_t rc;

                if (!(r->evict & pool_eks[i].bit))
                        continue;
                rc = vtpm_tpm_evict(pool_eks[i].handle);
                if (rc != 0) {
                        log_error("BIND to instance %s: evicting the EK at 0x%08x: TPM rc 0x%x",
                                  uuid, pool_eks[i].handle, rc);
                        return VROT_TPM_FAIL;
                }
        }
        if (store_certs(r, uuid) != 0)
                return VROT_TPM_FAIL;
        if (vrot_store_rebind(w->store, &w->bind_sealer, &err) < 0) {
                log_error("BIND to instance %s: %s", uuid, err.msg);
                return VROT_TPM_FAIL;
        }
        w->sealer = &w->bind_sealer;
        /* The answer is vrotd's go-ahead to start the instance: its next
         * worker must find the directory unlocked, and nothing of ours
         * may be written there any more. */
        vrot_store_release(w->store);
        return 0;
}

/* One request from @fd into @buf (@cap bytes), read until it is whole:
 * the parser's answer, or -EINVAL for a client too slow or gone. */
static int read_request(int fd, uint8_t *buf, size_t cap, VrotMkeyRequest *r)
{
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int64_t deadline = vtpm_now_ms() + REQUEST_WAIT_MS;
        size_t got = 0;
        int e = -EAGAIN;

        while (e == -EAGAIN && got < cap) {
                int64_t left = deadline - vtpm_now_ms();
                ssize_t n;

                if (left <= 0 || poll(&p, 1, (int)left) != 1)
                        return -EINVAL;
                n = read(fd, buf + got, cap - got);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n <= 0)
                        return -EINVAL;
                got += (size_t)n;
                e = vrot_mkey_parse_request(buf, got, r);
        }
        return e;
}

void vtpm_migkey_serve(Worker *w)
{
        static uint8_t buf[VROT_MKEY_REQUEST_MAX + 1];
        uint8_t out[VROT_MKEY_ANSWER_LEN];
        VrotMkeyRequest r;
        VrotMkeyAnswer a = { 0 };
        bool bind = false;
        int fd = accept4(w->mig.listen, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0)
                return;
        if (read_request(fd, buf, sizeof(buf), &r) < 0) {
                log_warn("migration-key socket: a malformed or late request, dropped");
                a.result = VROT_TPM_BAD_PARAMETER;
        } else if (r.op == VROT_MKEY_SET) {
                a.result = set_key(w, &r);
        } else if (r.op == VROT_MKEY_BIND) {
                a.result = bind_instance(w, &r);
                bind = true;
        } else if (r.op == VROT_MKEY_CLEAR) {
                if (w->mig.role)
                        log_info("live migration key cleared");
                vtpm_migkey_clear(w);
        }
        OPENSSL_cleanse(buf, sizeof(buf));
        OPENSSL_cleanse(&r, sizeof(r));
        a.role = w->mig.role;
        memcpy(a.id, w->mig.sealer.uuid, VROT_MKEY_ID_LEN);
        a.exported = w->mig.exported;
        a.imported = w->mig.imported;
        vrot_mkey_encode_answer(&a, out);
        if (write(fd, out, sizeof(out)) < 0)
                log_debug("migration-key socket: %s", strerror(errno));
        close(fd);
        /* What is left, the clean-up and the exit, is waited for by nobody:
         * vrotd, woken by the answer, runs first.  Not before the answer,
         * which an idle task could not send while the CPUs are busy. */
        if (bind)
                vtpm_sandbox_idle();
        if (bind && a.result == 0) {
                char uuid[VROT_UUID_STR_LEN + 1];

                vrot_uuid_format(w->bind_sealer.uuid, uuid);
                log_info("bound to instance %s: its state is written, its directory released; "
                         "ending", uuid);
        }
}
