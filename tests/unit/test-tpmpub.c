/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include <openssl/core_names.h>

#include "autoptr.h"
#include "tpmpub.h"
#include "unit.h"

/* A TPMT_PUBLIC carrying @key's public numbers, as a TPM would show it. */
static void fill_from(EVP_PKEY *key, TPMT_PUBLIC *pub, gboolean strip_zero)
{
        memset(pub, 0, sizeof(*pub));
        if (EVP_PKEY_is_a(key, "RSA")) {
                g_autoptr(BIGNUM) n = NULL;
                CU_ASSERT_FATAL(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) == 1);
                pub->type = TPM2_ALG_RSA;
                pub->parameters.rsaDetail.exponent = 0;         /* 0 = 65537 */
                pub->unique.rsa.size = (UINT16)BN_bn2bin(n, pub->unique.rsa.buffer);
        } else {
                guint8 point[97];
                size_t len = 0;
                gsize half;
                CU_ASSERT_FATAL(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point,
                                                                sizeof(point), &len) == 1);
                half = (len - 1) / 2;
                pub->type = TPM2_ALG_ECC;
                pub->parameters.eccDetail.curveID = half == 32 ? TPM2_ECC_NIST_P256 : TPM2_ECC_NIST_P384;
                pub->unique.ecc.x.size = (UINT16)half;
                memcpy(pub->unique.ecc.x.buffer, point + 1, half);
                pub->unique.ecc.y.size = (UINT16)half;
                memcpy(pub->unique.ecc.y.buffer, point + 1 + half, half);
                if (strip_zero && pub->unique.ecc.x.buffer[0] == 0) {
                        memmove(pub->unique.ecc.x.buffer, pub->unique.ecc.x.buffer + 1, half - 1);
                        pub->unique.ecc.x.size--;
                }
        }
}

static void round_trip(EVP_PKEY *key)
{
        TPMT_PUBLIC pub;
        g_autoptr(GError) err = NULL;
        g_autoptr(EVP_PKEY) back = NULL;

        fill_from(key, &pub, TRUE);
        back = vrot_tpmpub_to_pkey(&pub, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(back);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(key, back), 1);
}

static void test_tpmpub_rsa_and_ecc(void)
{
        g_autoptr(EVP_PKEY) rsa = EVP_RSA_gen(2048);
        g_autoptr(EVP_PKEY) p256 = EVP_EC_gen("P-256");
        g_autoptr(EVP_PKEY) p384 = EVP_EC_gen("P-384");

        round_trip(rsa);
        round_trip(p256);
        round_trip(p384);
        /* Points whose X starts with a zero byte come shorter from a TPM. */
        for (int i = 0; i < 64; i++) {
                g_autoptr(EVP_PKEY) k = EVP_EC_gen("P-256");
                round_trip(k);
        }
}

static void test_tpmpub_refusals(void)
{
        g_autoptr(EVP_PKEY) p256 = EVP_EC_gen("P-256");
        g_autoptr(GError) err = NULL;
        TPMT_PUBLIC pub;

        fill_from(p256, &pub, FALSE);
        pub.parameters.eccDetail.curveID = TPM2_ECC_BN_P256;
        CU_ASSERT_PTR_NULL(vrot_tpmpub_to_pkey(&pub, &err));
        CU_ASSERT(g_error_matches(err, VROT_TPMPUB_ERROR, VROT_TPMPUB_ERROR_UNSUPPORTED));
        g_clear_error(&err);
        fill_from(p256, &pub, FALSE);
        pub.unique.ecc.y.buffer[5] ^= 0x55;             /* not on the curve */
        CU_ASSERT_PTR_NULL(vrot_tpmpub_to_pkey(&pub, &err));
        CU_ASSERT(g_error_matches(err, VROT_TPMPUB_ERROR, VROT_TPMPUB_ERROR_CRYPTO));
        g_clear_error(&err);
        pub.type = TPM2_ALG_KEYEDHASH;
        CU_ASSERT_PTR_NULL(vrot_tpmpub_to_pkey(&pub, &err));
        CU_ASSERT(g_error_matches(err, VROT_TPMPUB_ERROR, VROT_TPMPUB_ERROR_UNSUPPORTED));
        g_clear_error(&err);
        memset(&pub, 0, sizeof(pub));
        pub.type = TPM2_ALG_RSA;
        CU_ASSERT_PTR_NULL(vrot_tpmpub_to_pkey(&pub, &err));
        CU_ASSERT(err && strstr(err->message, "modulus of 0 bytes"));
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_tpmpub_rsa_and_ecc),
                UNIT_CASE(test_tpmpub_refusals),
        };
        return UNIT_RUN("tpmpub", cases);
}
