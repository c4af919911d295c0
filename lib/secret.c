/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "secret.h"

struct VrotSecret {
        size_t len;        /* usable bytes */
        size_t map_len;    /* whole mapping, header included */
        uint8_t data[];
};

/*
 * Freed one-page secrets, wiped and still locked, for the next one: a
 * mapping, mlock() and madvise(), then munlock() and munmap() (a TLB
 * flush on every CPU the process runs on) cost more than the key
 * derivation they serve (bench/README.md).  Locks are not inherited by
 * fork(): a child drops its copies of the parent's pages.
 */
#define SPARE_MAX 16

static struct {
        pthread_mutex_t lock;
        pid_t pid;                      /* whose locked pages they are */
        size_t n;
        VrotSecret *page[SPARE_MAX];
} spare = { .lock = PTHREAD_MUTEX_INITIALIZER };

static size_t page_size(void)
{
        return (size_t)sysconf(_SC_PAGESIZE);
}

/* Under the lock: the spares are this process's, or there are none. */
static void spares_own(void)
{
        pid_t pid = getpid();

        if (spare.pid == pid)
                return;
        while (spare.n > 0)
                munmap(spare.page[--spare.n], page_size());
        spare.pid = pid;
}

static VrotSecret *spare_take(size_t map_len)
{
        VrotSecret *s = NULL;

        if (map_len != page_size())
                return NULL;
        pthread_mutex_lock(&spare.lock);
        spares_own();
        if (spare.n > 0)
                s = spare.page[--spare.n];
        pthread_mutex_unlock(&spare.lock);
        return s;
}

/* Takes @s, wiped, if there is room. */
static bool spare_put(VrotSecret *s, size_t map_len)
{
        bool kept = false;

        if (map_len != page_size())
                return false;
        pthread_mutex_lock(&spare.lock);
        spares_own();
        if (spare.n < SPARE_MAX) {
                spare.page[spare.n++] = s;
                kept = true;
        }
        pthread_mutex_unlock(&spare.lock);
        return kept;
}

VrotSecret *vrot_secret_new(size_t len, VrotError *err)
{
        size_t page = page_size();
        size_t map_len = (sizeof(VrotSecret) + len + page - 1) / page * page;
        VrotSecret *s = spare_take(map_len);

        if (s) {
                s->len = len;           /* wiped to zeros when it was freed */
                s->map_len = map_len;
                return s;
        }
        s = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (s == MAP_FAILED) {
                vrot_err(err, ENOMEM, "cannot map %zu bytes for a secret", len);
                return NULL;
        }
        if (mlock(s, map_len) < 0) {
                int e = errno;
                munmap(s, map_len);
                vrot_err(err, e, "cannot lock secret memory: %s", strerror(e));
                return NULL;
        }
        /* Keep keys out of core dumps even if someone re-enables them. */
        (void)madvise(s, map_len, MADV_DONTDUMP);
        s->len = len;
        s->map_len = map_len;
        return s;
}

VrotSecret *vrot_secret_read_fd(int fd, size_t len, VrotError *err)
{
        VrotSecret *s = vrot_secret_new(len, err);
        size_t got = 0;
        uint8_t extra;
        ssize_t n;

        if (!s)
                return NULL;
        while (got < len) {
                n = read(fd, s->data + got, len - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        vrot_err(err, errno, "reading key fd %d: %s", fd, strerror(errno));
                        goto fail;
                }
                if (n == 0) {
                        vrot_err(err, EINVAL, "key fd %d: got %zu bytes, need %zu", fd, got, len);
                        goto fail;
                }
                got += (size_t)n;
        }
        /* The descriptor must end right after the key (a pipe whose writer
         * has closed, a file, a memfd): trailing bytes mean a confused caller. */
        do
                n = read(fd, &extra, 1);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
                OPENSSL_cleanse(&extra, 1);
                vrot_err(err, EINVAL, "key fd %d: more than %zu bytes", fd, len);
                goto fail;
        }
        return s;
fail:
        vrot_secret_free(s);
        return NULL;
}

uint8_t *vrot_secret_data(const VrotSecret *s)
{
        return (uint8_t *)s->data;
}

size_t vrot_secret_len(const VrotSecret *s)
{
        return s->len;
}

void vrot_secret_free(VrotSecret *s)
{
        size_t map_len;

        if (!s)
                return;
        map_len = s->map_len;
        OPENSSL_cleanse(s, map_len);
        if (spare_put(s, map_len))
                return;
        munlock(s, map_len);
        munmap(s, map_len);
}
