/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "kdf.h"
#include "unit.h"

static gsize unhex(const char *hex, guint8 *out, gsize max)
{
        gsize n = strlen(hex) / 2;

        CU_ASSERT_FATAL(n <= max);
        for (gsize i = 0; i < n; i++)
                out[i] = (guint8)(g_ascii_xdigit_value(hex[2 * i]) << 4 |
                                  g_ascii_xdigit_value(hex[2 * i + 1]));
        return n;
}

/* RFC 5869 appendix A, the three SHA-256 cases. */
static const struct {
        const char *ikm, *salt, *info, *okm;
} rfc5869[] = {
        { "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
          "000102030405060708090a0b0c",
          "f0f1f2f3f4f5f6f7f8f9",
          "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
          "34007208d5b887185865" },
        { "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
          "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
          "404142434445464748494a4b4c4d4e4f",
          "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
          "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
          "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
          "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
          "d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef"
          "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
          "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
          "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
          "cc30c58179ec3e87c14c01d5c1f3434f1d87" },
        { "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
          "",
          "",
          "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
          "9d201395faa4b61a96c8" },
};

static void test_kdf_hkdf_sha256_rfc5869(void)
{
        for (gsize i = 0; i < G_N_ELEMENTS(rfc5869); i++) {
                guint8 ikm[128], salt[128], info[128], okm[128], out[128];
                gsize ikm_len = unhex(rfc5869[i].ikm, ikm, sizeof(ikm));
                gsize salt_len = unhex(rfc5869[i].salt, salt, sizeof(salt));
                gsize info_len = unhex(rfc5869[i].info, info, sizeof(info));
                gsize okm_len = unhex(rfc5869[i].okm, okm, sizeof(okm));
                g_autoptr(GError) error = NULL;

                CU_ASSERT_FATAL(vrot_kdf_hkdf_sha256(ikm, ikm_len, salt, salt_len, info, info_len,
                                                     out, okm_len, &error));
                CU_ASSERT(memcmp(out, okm, okm_len) == 0);
        }
}

static const UnitCase cases[] = {
        UNIT_CASE(test_kdf_hkdf_sha256_rfc5869),
};

int main(void)
{
        return UNIT_RUN("kdf", cases);
}
