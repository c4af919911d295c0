/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "bytes.h"
#include "seal.h"

static const uint8_t magic[4] = { 'V', 'R', 'T', 'S' };
static const uint8_t zero_key[VROT_SEAL_KEY_LEN];

const char *vrot_blob_type_name(uint32_t type)
{
        switch (type) {
        case VROT_BLOB_PERMANENT: return "permall";
        case VROT_BLOB_VOLATILE: return "volatilestate";
        case VROT_BLOB_SAVESTATE: return "savestate";
        case VROT_BLOB_GENERATION: return "generation";
        }
        return "unknown";
}

void vrot_free_wiped(void *p, size_t len)
{
        if (!p)
                return;
        OPENSSL_cleanse(p, len);
        free(p);
}

int vrot_seal_parse_header(const uint8_t *buf, size_t len, VrotSealHeader *ret,
                           VrotError *err)
{
        VrotSealHeader h;

        if (len == 0)
                return vrot_err(err, EINVAL, "empty file");
        if (len < VROT_SEAL_OVERHEAD)
                return vrot_err(err, EINVAL, "truncated: %zu bytes, a sealed blob has at least %d",
                                len, VROT_SEAL_OVERHEAD);
        if (memcmp(buf, magic, sizeof(magic)) != 0)
                return vrot_err(err, EINVAL, "not a vrot sealed blob (bad magic)");
        h.version = vrot_get_be16(buf + 4);
        h.flags = vrot_get_be16(buf + 6);
        h.type = vrot_get_be32(buf + 8);
        memcpy(h.uuid, buf + 12, 16);
        h.generation = vrot_get_be64(buf + 28);
        h.length = vrot_get_be32(buf + 36);
        memcpy(h.iv, buf + 40, 12);

        if (h.version != 1)
                return vrot_err(err, EPROTO, "unsupported format version %u", h.version);
        if (h.flags & ~VROT_SEAL_FLAG_INSECURE)
                return vrot_err(err, EPROTO, "unknown flags 0x%04x", h.flags);
        if (h.type < VROT_BLOB_PERMANENT || h.type > VROT_BLOB_GENERATION)
                return vrot_err(err, EINVAL, "unknown blob type %u", h.type);
        if (h.length > VROT_SEAL_MAX_PAYLOAD || (size_t)h.length + VROT_SEAL_OVERHEAD != len)
                return vrot_err(err, EINVAL, "length mismatch: header says %u payload bytes, "
                                "file has %zu", h.length, len - VROT_SEAL_OVERHEAD);
        *ret = h;
        return 0;
}

/* AES-256-GCM fetched once per process, not at every EVP_CipherInit_ex()
 * (EVP_aes_256_gcm() fetches implicitly, through the method store's locks
 * and caches).  A forked worker inherits it fetched: its first seal then
 * takes ~10 page faults fewer, 26 -> 15 (bench/README.md "Boot storm").
 * Never freed. */
static EVP_CIPHER *gcm;
static pthread_once_t gcm_once = PTHREAD_ONCE_INIT;

static void fetch_gcm(void)
{
        gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

int vrot_seal_gcm(int enc, const uint8_t *key, const uint8_t *iv, const uint8_t *aad,
                  size_t aad_len, const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int ok, n = 0;

        if (!ctx)
                return -ENOMEM;
        (void)pthread_once(&gcm_once, fetch_gcm);
        ok = EVP_CipherInit_ex(ctx, gcm ? gcm : EVP_aes_256_gcm(), NULL, key, iv, enc) &&
             EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) &&
             (len == 0 || EVP_CipherUpdate(ctx, out, &n, in, (int)len));
        if (ok && !enc)
                ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, VROT_SEAL_TAG_LEN, tag);
        if (ok)
                ok = EVP_CipherFinal_ex(ctx, out + n, &n);
        if (ok && enc)
                ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, VROT_SEAL_TAG_LEN, tag);
        EVP_CIPHER_CTX_free(ctx);
        return ok ? 0 : -EBADMSG;
}

int vrot_seal(const VrotSealer *s, uint32_t type, uint64_t generation,
              const uint8_t *plain, size_t len,
              uint8_t **ret_blob, size_t *ret_len, VrotError *err)
{
        size_t total = len + VROT_SEAL_OVERHEAD;
        uint8_t *blob;

        if (len > VROT_SEAL_MAX_PAYLOAD)
                return vrot_err(err, EFBIG, "%s: %zu bytes is too large to seal",
                                vrot_blob_type_name(type), len);
        blob = malloc(total);
        if (!blob)
                return vrot_err(err, ENOMEM, "out of memory");
        memcpy(blob, magic, 4);
        vrot_put_be16(blob + 4, 1);
        vrot_put_be16(blob + 6, s->key ? 0 : VROT_SEAL_FLAG_INSECURE);
        vrot_put_be32(blob + 8, type);
        memcpy(blob + 12, s->uuid, 16);
        vrot_put_be64(blob + 28, generation);
        vrot_put_be32(blob + 36, (uint32_t)len);
        if (RAND_bytes(blob + 40, 12) != 1) {
                free(blob);
                return vrot_err(err, EIO, "no randomness for the IV");
        }
        if (vrot_seal_gcm(1, s->key ? s->key : zero_key, blob + 40, blob, VROT_SEAL_HEADER_LEN,
                plain, len, blob + VROT_SEAL_HEADER_LEN,
                blob + VROT_SEAL_HEADER_LEN + len) < 0) {
                vrot_free_wiped(blob, total);
                return vrot_err(err, EIO, "AES-256-GCM encryption failed");
        }
        *ret_blob = blob;
        *ret_len = total;
        return 0;
}

int vrot_seal_open(const VrotSealer *s, uint32_t type,
                   const uint8_t *blob, size_t len,
                   uint8_t **ret_plain, size_t *ret_len, uint64_t *ret_generation,
                   VrotError *err)
{
        bool insecure = !s->key;
        VrotSealHeader h;
        uint8_t tag[VROT_SEAL_TAG_LEN];
        uint8_t *plain;
        int r;

        r = vrot_seal_parse_header(blob, len, &h, err);
        if (r < 0)
                return r;
        if (memcmp(h.uuid, s->uuid, 16) != 0)
                return vrot_err(err, EXDEV, "belongs to another instance");
        if (h.type != type)
                return vrot_err(err, EMEDIUMTYPE, "is a %s blob, expected %s",
                                vrot_blob_type_name(h.type), vrot_blob_type_name(type));
        if (!!(h.flags & VROT_SEAL_FLAG_INSECURE) != insecure)
                return vrot_err(err, EKEYREJECTED, insecure
                                ? "sealed with a key, but the worker runs with --insecure-plaintext"
                                : "written with --insecure-plaintext, refusing it under a real key");
        plain = malloc(h.length ? h.length : 1);
        if (!plain)
                return vrot_err(err, ENOMEM, "out of memory");
        memcpy(tag, blob + VROT_SEAL_HEADER_LEN + h.length, sizeof(tag));
        if (vrot_seal_gcm(0, insecure ? zero_key : s->key, h.iv, blob, VROT_SEAL_HEADER_LEN,
                blob + VROT_SEAL_HEADER_LEN, h.length, plain, tag) < 0) {
                vrot_free_wiped(plain, h.length);
                return vrot_err(err, EBADMSG, "authentication failed (tampered, or sealed under another key)");
        }
        *ret_plain = plain;
        *ret_len = h.length;
        if (ret_generation)
                *ret_generation = h.generation;
        return 0;
}
