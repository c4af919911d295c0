/* SPDX-License-Identifier: BSD-3-Clause */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "instkey.h"
#include "kdf.h"
#include "unit.h"

static VrotSecret *secret_from(const guint8 *buf, gsize len)
{
        VrotError err = { 0 };
        VrotSecret *s = vrot_secret_new(len, &err);

        CU_ASSERT_FATAL(s != NULL);
        memcpy(vrot_secret_data(s), buf, len);
        return s;
}

static const guint8 master_bytes[32] = {
        0x6b, 0x1f, 0x2a, 0x7e, 0x11, 0x90, 0x3c, 0x44, 0x5d, 0xee, 0x02, 0x71, 0x88, 0x19, 0xa4, 0x3b,
        0xc0, 0x0d, 0x5e, 0x6f, 0x70, 0x81, 0x92, 0xa3, 0xb4, 0xc5, 0xd6, 0xe7, 0xf8, 0x09, 0x1a, 0x2b,
};
static const guint8 uuid_a[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef,
                                   0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };
static const guint8 uuid_b[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef,
                                   0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xee };

static VrotSecret *derive(const guint8 *master, const guint8 *salt, const guint8 *uuid)
{
        g_autoptr(VrotSecret) m = secret_from(master, 32);
        g_autoptr(GError) error = NULL;
        VrotSecret *key = NULL;

        CU_ASSERT_FATAL(vrot_instkey_derive(m, salt, uuid, &key, &error));
        CU_ASSERT_FATAL(key != NULL);
        CU_ASSERT_EQUAL(vrot_secret_len(key), VROT_INSTKEY_LEN);
        return key;
}

static void test_instkey_derive_deterministic(void)
{
        guint8 salt[VROT_INSTKEY_SALT_LEN], info[64], want[32];
        gsize info_len = strlen(VROT_INSTKEY_INFO);
        g_autoptr(VrotSecret) k1 = NULL;
        g_autoptr(VrotSecret) k2 = NULL;

        memset(salt, 0xa5, sizeof(salt));
        k1 = derive(master_bytes, salt, uuid_a);
        k2 = derive(master_bytes, salt, uuid_a);
        CU_ASSERT(memcmp(vrot_secret_data(k1), vrot_secret_data(k2), 32) == 0);

        /* The documented construction: info = "vrot instance state key v1" || UUID. */
        memcpy(info, VROT_INSTKEY_INFO, info_len);
        memcpy(info + info_len, uuid_a, 16);
        CU_ASSERT_FATAL(vrot_kdf_hkdf_sha256(master_bytes, 32, salt, sizeof(salt), info,
                                                 info_len + 16, want, 32, NULL));
        CU_ASSERT(memcmp(vrot_secret_data(k1), want, 32) == 0);
}

static void test_instkey_derive_inputs_matter(void)
{
        guint8 salt1[VROT_INSTKEY_SALT_LEN], salt2[VROT_INSTKEY_SALT_LEN], other[32];
        g_autoptr(VrotSecret) base = NULL;
        g_autoptr(VrotSecret) by_uuid = NULL;
        g_autoptr(VrotSecret) by_salt = NULL;
        g_autoptr(VrotSecret) by_master = NULL;

        memset(salt1, 0x01, sizeof(salt1));
        memcpy(salt2, salt1, sizeof(salt2));
        salt2[31] ^= 1;
        memcpy(other, master_bytes, sizeof(other));
        other[0] ^= 0x80;
        base = derive(master_bytes, salt1, uuid_a);
        by_uuid = derive(master_bytes, salt1, uuid_b);
        by_salt = derive(master_bytes, salt2, uuid_a);
        by_master = derive(other, salt1, uuid_a);
        CU_ASSERT(memcmp(vrot_secret_data(base), vrot_secret_data(by_uuid), 32) != 0);
        CU_ASSERT(memcmp(vrot_secret_data(base), vrot_secret_data(by_salt), 32) != 0);
        CU_ASSERT(memcmp(vrot_secret_data(base), vrot_secret_data(by_master), 32) != 0);
}

/* The pool key: the documented construction, and never an instance key
 * of the same UUID, whatever the salt. */
static void test_instkey_derive_pool(void)
{
        g_autoptr(VrotSecret) m = secret_from(master_bytes, 32);
        g_autoptr(VrotSecret) pool = NULL;
        g_autoptr(VrotSecret) pool_b = NULL;
        g_autoptr(VrotSecret) inst = NULL;
        guint8 info[64], want[32], salt[VROT_INSTKEY_SALT_LEN] = { 0 };
        gsize n = strlen(VROT_INSTKEY_POOL_INFO);

        CU_ASSERT_FATAL(vrot_instkey_derive_pool(m, uuid_a, &pool, NULL));
        CU_ASSERT_FATAL(vrot_instkey_derive_pool(m, uuid_b, &pool_b, NULL));
        CU_ASSERT_FATAL(vrot_instkey_derive(m, salt, uuid_a, &inst, NULL));
        memcpy(info, VROT_INSTKEY_POOL_INFO, n);
        memcpy(info + n, uuid_a, 16);
        CU_ASSERT_FATAL(vrot_kdf_hkdf_sha256(master_bytes, 32, NULL, 0, info, n + 16, want, 32,
                                                 NULL));
        CU_ASSERT(memcmp(vrot_secret_data(pool), want, 32) == 0);
        CU_ASSERT(memcmp(vrot_secret_data(pool), vrot_secret_data(pool_b), 32) != 0);
        CU_ASSERT(memcmp(vrot_secret_data(pool), vrot_secret_data(inst), 32) != 0);
}

static void test_instkey_derive_bad_master(void)
{
        static const gsize lens[] = { 0, 16, 31, 33, 64 };
        guint8 salt[VROT_INSTKEY_SALT_LEN] = { 0 };
        guint8 buf[64] = { 0 };

        for (gsize i = 0; i < G_N_ELEMENTS(lens); i++) {
                g_autoptr(VrotSecret) m = secret_from(buf, lens[i]);
                g_autoptr(GError) error = NULL;
                VrotSecret *key = NULL;

                CU_ASSERT_FALSE(vrot_instkey_derive(m, salt, uuid_a, &key, &error));
                CU_ASSERT(key == NULL);
                CU_ASSERT(g_error_matches(error, VROT_INSTKEY_ERROR, VROT_INSTKEY_ERROR_INVALID));
                g_clear_error(&error);
                CU_ASSERT_FALSE(vrot_instkey_derive_pool(m, uuid_a, &key, &error));
                CU_ASSERT(key == NULL);
                CU_ASSERT(g_error_matches(error, VROT_INSTKEY_ERROR, VROT_INSTKEY_ERROR_INVALID));
        }
}

static void test_instkey_new_salt_random(void)
{
        guint8 a[VROT_INSTKEY_SALT_LEN] = { 0 }, b[VROT_INSTKEY_SALT_LEN] = { 0 };

        CU_ASSERT_FATAL(vrot_instkey_new_salt(a, NULL));
        CU_ASSERT_FATAL(vrot_instkey_new_salt(b, NULL));
        CU_ASSERT(memcmp(a, b, sizeof(a)) != 0);
}

static void test_instkey_pipe_roundtrip(void)
{
        guint8 salt[VROT_INSTKEY_SALT_LEN] = { 7 };
        g_autoptr(VrotSecret) key = derive(master_bytes, salt, uuid_a);
        g_autoptr(GError) error = NULL;
        VrotError err = { 0 };
        VrotSecret *got;
        guint8 extra;
        int fd;

        fd = vrot_instkey_pipe(key, &error);
        CU_ASSERT_FATAL(fd >= 0);
        CU_ASSERT(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        /* What the worker does with --key-fd: exactly the key, then EOF
         * (the write end is closed, else this read would block). */
        got = vrot_secret_read_fd(fd, VROT_INSTKEY_LEN, &err);
        CU_ASSERT_FATAL(got != NULL);
        CU_ASSERT(memcmp(vrot_secret_data(got), vrot_secret_data(key), VROT_INSTKEY_LEN) == 0);
        CU_ASSERT_EQUAL(read(fd, &extra, 1), 0);
        vrot_secret_free(got);
        close(fd);
}

static const UnitCase cases[] = {
        UNIT_CASE(test_instkey_derive_deterministic),
        UNIT_CASE(test_instkey_derive_inputs_matter),
        UNIT_CASE(test_instkey_derive_pool),
        UNIT_CASE(test_instkey_derive_bad_master),
        UNIT_CASE(test_instkey_new_salt_random),
        UNIT_CASE(test_instkey_pipe_roundtrip),
};

int main(void)
{
        return UNIT_RUN("instkey", cases);
}
