/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "bytes.h"
#include "durable.h"
#include "store.h"

#define NBLOBS 3                      /* permall, volatilestate, savestate */
#define RECORD_LEN (8 * (1 + NBLOBS))
#define FILE_MAX (VROT_SEAL_MAX_PAYLOAD + VROT_SEAL_OVERHEAD)
/* Every file is sealed: its replaced version may stay under the temporary
 * name for the next write (lib/durable.h). */
#define RECYCLE VROT_DURABLE_RECYCLE

struct VrotStore {
        int dirfd;
        const VrotSealer *sealer;
        uint64_t gen;                 /* current generation G */
        uint64_t blob_gen[NBLOBS];    /* generation of each blob, 0 = absent */
        bool record_stale;            /* the record on disk lags behind */
        bool deferred;                /* saves wait in memory for the flush */
        uint8_t *pending[NBLOBS];     /* plaintext not yet written */
        uint32_t pending_len[NBLOBS];
        uint8_t *opened[NBLOBS];      /* plaintext authenticated at open, not yet loaded */
        size_t opened_len[NBLOBS];
        int staged;                   /* the slot of the staged blob, or -1 */
        int staged_fd[2];             /* its file's and its record's */
};

static void drop_pending(VrotStore *s, int i)
{
        vrot_free_wiped(s->pending[i], s->pending_len[i]);
        s->pending[i] = NULL;
        s->pending_len[i] = 0;
}

static void drop_opened(VrotStore *s, int i)
{
        vrot_free_wiped(s->opened[i], s->opened_len[i]);
        s->opened[i] = NULL;
        s->opened_len[i] = 0;
}

const char *vrot_store_file_name(uint32_t type)
{
        return vrot_blob_type_name(type);
}

static int slot(uint32_t type)
{
        return (int)type - VROT_BLOB_PERMANENT;
}

static const char *slot_name(int i)
{
        return vrot_store_file_name((uint32_t)i + VROT_BLOB_PERMANENT);
}

/* Reads and authenticates one file; -ENOENT when absent. */
static int read_sealed(VrotStore *s, uint32_t type, uint8_t **ret, size_t *ret_len,
                       uint64_t *ret_gen, VrotError *err)
{
        const char *name = vrot_store_file_name(type);
        uint8_t *blob = NULL;
        size_t len = 0;
        int r;

        r = vrot_durable_read(s->dirfd, name, FILE_MAX, &blob, &len, err);
        if (r < 0)
                return r;
        r = vrot_seal_open(s->sealer, type, blob, len, ret, ret_len, ret_gen, err);
        free(blob);
        if (r < 0) {
                /* The content is refused, whatever the cause in the message. */
                if (err)
                        err->code = EUCLEAN;
                vrot_err_prefix(err, "state file %s: ", name);
                return -EUCLEAN;
        }
        return 0;
}

/* The generation record of generation @gen with @blob_gen, sealed. */
static int seal_record(VrotStore *s, uint64_t gen, const uint64_t blob_gen[NBLOBS],
                       uint8_t **blob, size_t *len, VrotError *err)
{
        uint8_t rec[RECORD_LEN];

        vrot_put_be64(rec, gen);
        for (int i = 0; i < NBLOBS; i++)
                vrot_put_be64(rec + 8 * (i + 1), blob_gen[i]);
        return vrot_seal(s->sealer, VROT_BLOB_GENERATION, gen, rec, sizeof(rec), blob, len, err);
}

/* A rebind's write of @name: over the file in place when there is one
 * (vrot_store_rebind() says why that is safe), else a new file, and
 * *@dir_changed is set. */
static int rebind_put(VrotStore *s, const char *name, const uint8_t *blob, size_t len,
                      bool *dir_changed, VrotError *err)
{
        return vrot_durable_put(s->dirfd, name, blob, len, 0600, RECYCLE, dir_changed, err);
}

/* The generation record, replaced durably, its directory synced; or,
 * with @rebind_dir_changed, written as a rebind writes (rebind_put()). */
static int put_record(VrotStore *s, bool *rebind_dir_changed, VrotError *err)
{
        uint8_t *blob = NULL;
        size_t len;
        int r;

        r = seal_record(s, s->gen, s->blob_gen, &blob, &len, err);
        if (r == 0 && rebind_dir_changed)
                r = rebind_put(s, "generation", blob, len, rebind_dir_changed, err);
        else if (r == 0)
                r = vrot_durable_write(s->dirfd, "generation", blob, len, 0600, RECYCLE, err);
        free(blob);
        s->record_stale = r < 0;
        return r;
}

static int write_record(VrotStore *s, VrotError *err)
{
        return put_record(s, NULL, err);
}

static int load_record(VrotStore *s, uint64_t min_generation, VrotError *err)
{
        uint8_t *rec = NULL;
        size_t len = 0;
        uint64_t hdr_gen;
        int r;

        r = read_sealed(s, VROT_BLOB_GENERATION, &rec, &len, &hdr_gen, err);
        if (r == -ENOENT) {
                s->gen = 0;        /* new instance, or its first write was cut short */
                r = 0;
        } else if (r == 0) {
                if (len != RECORD_LEN || vrot_get_be64(rec) != hdr_gen) {
                        r = vrot_err(err, EUCLEAN, "state file generation: malformed record");
                } else {
                        s->gen = hdr_gen;
                        for (int i = 0; i < NBLOBS; i++)
                                s->blob_gen[i] = vrot_get_be64(rec + 8 * (i + 1));
                }
                vrot_free_wiped(rec, len);
        }
        if (r == 0 && s->gen < min_generation)
                r = vrot_err(err, EUCLEAN, "state file generation: generation %" PRIu64
                             " is older than the expected %" PRIu64 " (rolled back)",
                             s->gen, min_generation);
        return r;
}

/* Checks one blob against the record; see the header for the rules. */
static int check_blob(VrotStore *s, uint32_t type, bool *pending, VrotError *err)
{
        const char *name = vrot_store_file_name(type);
        uint64_t want = s->blob_gen[slot(type)], got;
        uint8_t *plain = NULL;
        size_t len = 0;
        int r;

        r = read_sealed(s, type, &plain, &len, &got, err);
        if (r == -ENOENT) {
                if (type == VROT_BLOB_PERMANENT && want)
                        return vrot_err(err, EUCLEAN, "state file %s: missing, but generation %"
                                        PRIu64 " was recorded", name, want);
                s->blob_gen[slot(type)] = 0;   /* deletion cut short before its record */
                return 0;
        }
        if (r < 0)
                return r;
        /* Kept for the first vrot_store_load(): the file is decrypted once,
         * and what the TPM loads is what was checked here. */
        if ((got == want && want != 0) || (got == s->gen + 1 && !*pending)) {
                if (got != want) {
                        /* The write that crashed before its record: complete it. */
                        *pending = true;
                        s->blob_gen[slot(type)] = got;
                }
                s->opened[slot(type)] = plain;
                s->opened_len[slot(type)] = len;
                return 0;
        }
        vrot_free_wiped(plain, len);
        if (got < want || (want == 0 && got <= s->gen))
                return vrot_err(err, EUCLEAN, "state file %s: generation %" PRIu64
                                " is older than the current %" PRIu64 " (rolled back or restored)",
                                name, got, want ? want : s->gen);
        return vrot_err(err, EUCLEAN, "state file %s: generation %" PRIu64
                        " does not match the record (%" PRIu64 ")", name, got, want);
}

int vrot_store_open(const char *dir, const VrotSealer *sealer, uint64_t min_generation,
                    VrotStore **ret, VrotError *err)
{
        VrotStore *s = calloc(1, sizeof(*s));
        bool pending = false;
        int r;

        if (!s)
                return vrot_err(err, ENOMEM, "out of memory");
        s->sealer = sealer;
        s->staged = -1;
        s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dirfd < 0) {
                r = vrot_err(err, errno, "state directory %s: %s", dir, strerror(errno));
                goto fail;
        }
        if (flock(s->dirfd, LOCK_EX | LOCK_NB) < 0) {
                r = vrot_err(err, errno == EWOULDBLOCK ? EBUSY : errno,
                             "state directory %s is in use by another worker", dir);
                goto fail;
        }
        r = load_record(s, min_generation, err);
        for (uint32_t t = VROT_BLOB_PERMANENT; r == 0 && t <= VROT_BLOB_SAVESTATE; t++)
                r = check_blob(s, t, &pending, err);
        if (r < 0)
                goto fail;
        if (pending) {
                s->gen++;
                r = write_record(s, err);
                if (r < 0)
                        goto fail;
        }
        *ret = s;
        return 0;
fail:
        vrot_store_free(s);
        return r;
}

int vrot_store_load(VrotStore *s, uint32_t type, uint8_t **ret, uint32_t *ret_len,
                    VrotError *err)
{
        uint8_t *plain = NULL;
        size_t len = 0;
        uint64_t got;
        int r;

        if (s->pending[slot(type)]) {
                *ret = malloc(s->pending_len[slot(type)] ? s->pending_len[slot(type)] : 1);
                if (!*ret)
                        return vrot_err(err, ENOMEM, "out of memory");
                memcpy(*ret, s->pending[slot(type)], s->pending_len[slot(type)]);
                *ret_len = s->pending_len[slot(type)];
                return 0;
        }
        if (s->blob_gen[slot(type)] == 0)
                return vrot_err(err, ENOENT, "no %s", vrot_store_file_name(type));
        if (s->opened[slot(type)]) {
                *ret = s->opened[slot(type)];
                *ret_len = (uint32_t)s->opened_len[slot(type)];
                s->opened[slot(type)] = NULL;
                s->opened_len[slot(type)] = 0;
                return 0;
        }
        r = read_sealed(s, type, &plain, &len, &got, err);
        if (r < 0)
                return r;
        if (got != s->blob_gen[slot(type)]) {
                vrot_free_wiped(plain, len);
                return vrot_err(err, EUCLEAN, "state file %s: generation %" PRIu64
                                " changed under the worker (expected %" PRIu64 ")",
                                vrot_store_file_name(type), got, s->blob_gen[slot(type)]);
        }
        *ret = plain;
        *ret_len = (uint32_t)len;
        return 0;
}

int vrot_store_save(VrotStore *s, uint32_t type, const uint8_t *buf, uint32_t len,
                    VrotError *err)
{
        uint8_t *blob = NULL;
        size_t blob_len;
        int r;

        if ((r = vrot_store_commit(s, err)) < 0)
                return r;
        drop_opened(s, slot(type));
        if (s->deferred) {
                uint8_t *copy = malloc(len ? len : 1);
                if (!copy)
                        return vrot_err(err, ENOMEM, "out of memory");
                memcpy(copy, buf, len);
                drop_pending(s, slot(type));
                s->pending[slot(type)] = copy;
                s->pending_len[slot(type)] = len;
                return 0;
        }
        /* A record left behind by a failed write must land before the next
         * blob, or that blob would be two generations ahead of it. */
        if (s->record_stale && (r = write_record(s, err)) < 0)
                return r;
        r = vrot_seal(s->sealer, type, s->gen + 1, buf, len, &blob, &blob_len, err);
        if (r == 0)
                r = vrot_durable_write(s->dirfd, vrot_store_file_name(type), blob, blob_len,
                                       0600, RECYCLE, err);
        free(blob);
        if (r < 0)
                return r;
        s->gen++;
        s->blob_gen[slot(type)] = s->gen;
        return write_record(s, err);
}

int vrot_store_delete(VrotStore *s, uint32_t type, VrotError *err)
{
        int r;

        if ((r = vrot_store_commit(s, err)) < 0)
                return r;
        drop_pending(s, slot(type));
        drop_opened(s, slot(type));
        if (s->blob_gen[slot(type)] == 0)
                return 0;
        r = vrot_durable_unlink(s->dirfd, vrot_store_file_name(type), err);
        if (r < 0)
                return r;
        s->gen++;
        s->blob_gen[slot(type)] = 0;
        return write_record(s, err);
}

int vrot_store_copy(VrotStore *src, VrotStore *dst, VrotError *err)
{
        bool empty = dst->gen == 0;
        int r = 0;

        for (int i = 0; i < NBLOBS; i++)
                empty = empty && !dst->pending[i];
        if (!empty)
                return vrot_err(err, EEXIST, "the target state directory holds state already "
                                "(generation %" PRIu64 ")", dst->gen);
        for (uint32_t t = VROT_BLOB_PERMANENT; r == 0 && t <= VROT_BLOB_SAVESTATE; t++) {
                uint8_t *plain = NULL;
                uint32_t len = 0;

                r = vrot_store_load(src, t, &plain, &len, err);
                if (r == -ENOENT) {
                        r = 0;          /* not every blob exists */
                        continue;
                }
                if (r == 0)
                        r = vrot_store_save(dst, t, plain, len, err);
                vrot_free_wiped(plain, len);
        }
        return r;
}

int vrot_store_rebind(VrotStore *s, const VrotSealer *sealer, VrotError *err)
{
        uint8_t *plain[NBLOBS] = { NULL };
        uint32_t len[NBLOBS] = { 0 };
        bool dir_changed = false;
        int r = 0;

        for (uint32_t t = VROT_BLOB_PERMANENT; r == 0 && t <= VROT_BLOB_SAVESTATE; t++) {
                r = vrot_store_load(s, t, &plain[slot(t)], &len[slot(t)], err);
                if (r == -ENOENT)
                        r = 0;          /* not every blob exists */
        }
        if (r == 0) {
                s->sealer = sealer;
                s->deferred = false;
                s->gen++;
        }
        /* Each file is written over in place and fdatasync()ed, which
         * needs no fsync of the directory: a file torn by a crash fails
         * authentication under either sealer, like a mix of both, and
         * nothing of the new sealer counts before this returns (see
         * store.h).  Only a file made or removed changes the directory,
         * which is then synced once for all. */
        for (int i = 0; r == 0 && i < NBLOBS; i++) {
                const char *name = slot_name(i);
                uint8_t *blob = NULL;
                size_t blob_len;

                drop_pending(s, i);
                if (!plain[i]) {
                        /* A file the record calls deleted would be refused
                         * under the new sealer too; it goes. */
                        s->blob_gen[i] = 0;
                        if (unlinkat(s->dirfd, name, 0) == 0)
                                dir_changed = true;
                        else if (errno != ENOENT)
                                r = vrot_err(err, errno, "removing %s: %s", name, strerror(errno));
                        continue;
                }
                r = vrot_seal(sealer, (uint32_t)i + VROT_BLOB_PERMANENT, s->gen, plain[i], len[i],
                              &blob, &blob_len, err);
                if (r == 0)
                        r = rebind_put(s, name, blob, blob_len, &dir_changed, err);
                free(blob);
                s->blob_gen[i] = s->gen;
        }
        for (int i = 0; i < NBLOBS; i++)
                vrot_free_wiped(plain[i], len[i]);
        if (r == 0)
                r = put_record(s, &dir_changed, err);
        if (r == 0 && dir_changed)
                r = vrot_durable_sync_dir(s->dirfd, "the rebound state", err);
        return r;
}

int vrot_store_dirfd(const VrotStore *s)
{
        return s->dirfd;
}

uint64_t vrot_store_generation(const VrotStore *s)
{
        return s->gen;
}

void vrot_store_defer(VrotStore *s)
{
        s->deferred = true;
}

int vrot_store_flush(VrotStore *s, VrotError *err)
{
        int r = vrot_store_commit(s, err);

        s->deferred = false;
        for (uint32_t t = VROT_BLOB_PERMANENT; r == 0 && t <= VROT_BLOB_SAVESTATE; t++) {
                if (!s->pending[slot(t)])
                        continue;
                r = vrot_store_save(s, t, s->pending[slot(t)], s->pending_len[slot(t)], err);
                drop_pending(s, slot(t));
        }
        return r;
}

/* Closes and removes the staged files, if any. */
static void abandon_staged(VrotStore *s)
{
        if (s->staged < 0)
                return;
        vrot_durable_abandon(s->dirfd, slot_name(s->staged), s->staged_fd[0]);
        vrot_durable_abandon(s->dirfd, "generation", s->staged_fd[1]);
        s->staged = -1;
}

int vrot_store_stage(VrotStore *s, VrotError *err)
{
        uint64_t blob_gen[NBLOBS];
        uint8_t *blob = NULL;
        size_t len;
        int n = 0, i = -1, r;

        for (int k = 0; k < NBLOBS; k++)
                if (s->pending[k]) {
                        n++;
                        i = k;
                }
        /* One blob and its record, or nothing to stage: the rule that a
         * blob's rename is durable before its record's would take a
         * directory fsync per blob anyway. */
        if (n != 1 || s->record_stale || s->staged >= 0)
                return vrot_store_flush(s, err);

        r = vrot_seal(s->sealer, (uint32_t)i + VROT_BLOB_PERMANENT, s->gen + 1, s->pending[i],
                      s->pending_len[i], &blob, &len, err);
        if (r == 0)
                r = s->staged_fd[0] = vrot_durable_stage(s->dirfd, slot_name(i), blob, len, 0600,
                                                         RECYCLE, err);
        free(blob);
        if (r < 0)
                return r;
        memcpy(blob_gen, s->blob_gen, sizeof(blob_gen));
        blob_gen[i] = s->gen + 1;
        blob = NULL;
        r = seal_record(s, s->gen + 1, blob_gen, &blob, &len, err);
        if (r == 0)
                r = s->staged_fd[1] = vrot_durable_stage(s->dirfd, "generation", blob, len, 0600,
                                                         RECYCLE, err);
        free(blob);
        if (r < 0) {
                vrot_durable_abandon(s->dirfd, slot_name(i), s->staged_fd[0]);
                return r;
        }
        s->staged = i;
        s->deferred = false;
        return 0;
}

/* The staged file @fd in @name's place, durably, its directory synced. */
static int commit_one(VrotStore *s, const char *name, int fd, VrotError *err)
{
        int r = vrot_durable_commit(s->dirfd, name, fd, RECYCLE, err);

        return r < 0 ? r : vrot_durable_sync_dir(s->dirfd, name, err);
}

int vrot_store_commit(VrotStore *s, VrotError *err)
{
        int i = s->staged, r;

        if (i < 0)
                return 0;
        s->staged = -1;
        /* The blob's rename is durable before its record's (store.h). */
        r = commit_one(s, slot_name(i), s->staged_fd[0], err);
        if (r < 0) {
                vrot_durable_abandon(s->dirfd, "generation", s->staged_fd[1]);
                return r;
        }
        s->gen++;
        s->blob_gen[i] = s->gen;
        drop_pending(s, i);
        r = commit_one(s, "generation", s->staged_fd[1], err);
        s->record_stale = r < 0;
        return r;
}

void vrot_store_release(VrotStore *s)
{
        abandon_staged(s);
        for (int i = 0; i < NBLOBS; i++) {
                drop_pending(s, i);
                drop_opened(s, i);
        }
        s->deferred = false;
        if (s->dirfd >= 0)
                close(s->dirfd);        /* the flock() goes with it */
        s->dirfd = -1;
}

void vrot_store_free(VrotStore *s)
{
        if (!s)
                return;
        abandon_staged(s);              /* none after vrot_store_release() */
        for (int i = 0; i < NBLOBS; i++) {
                drop_pending(s, i);
                drop_opened(s, i);
        }
        if (s->dirfd >= 0)
                close(s->dirfd);
        free(s);
}
