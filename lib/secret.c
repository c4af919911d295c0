/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
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

VrotSecret *vrot_secret_new(size_t len, VrotError *err)
{
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        size_t map_len = (sizeof(VrotSecret) + len + page - 1) / page * page;
        VrotSecret *s;

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
        munlock(s, map_len);
        munmap(s, map_len);
}
