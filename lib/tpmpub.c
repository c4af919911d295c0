/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <tss2/tss2_mu.h>

#include "autoptr.h"
#include "tpmpub.h"

G_DEFINE_QUARK(vrot-tpmpub-error-quark, vrot_tpmpub_error)

/*
 * TCG EK Credential Profile for TPM 2.0 (2.x), B.3.3 "Template L-1" and
 * B.3.4 "Template L-2": the low-range default EK templates, the ones
 * `tpm2_createek -G rsa` / `-G ecc` use when no template is in NV.  Both
 * are restricted decryption keys with no userWithAuth: their authPolicy is
 * PolicySecret(TPM_RH_ENDORSEMENT), and the unique field is zero-filled to
 * the key size, which makes the key a pure function of the EPS.
 */
#define EK_ATTRIBUTES                                                                    \
        (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | \
         TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT)

/* PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256 (EK profile B.3.2, policy A). */
#define EK_POLICY_A                                                                      \
        {                                                                                \
                .size = 32,                                                              \
                .buffer = {                                                              \
                        0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8,                  \
                        0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,                  \
                        0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64,                  \
                        0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,                  \
                },                                                                       \
        }

#define EK_SYMMETRIC { .algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB }

const TPM2B_PUBLIC vrot_tpmpub_ek_rsa_template = {
        .publicArea = {
                .type = TPM2_ALG_RSA,
                .nameAlg = TPM2_ALG_SHA256,
                .objectAttributes = EK_ATTRIBUTES,
                .authPolicy = EK_POLICY_A,
                .parameters.rsaDetail = {
                        .symmetric = EK_SYMMETRIC,
                        .scheme.scheme = TPM2_ALG_NULL,
                        .keyBits = 2048,
                        .exponent = 0,
                },
                .unique.rsa.size = 256,
        },
};

const TPM2B_PUBLIC vrot_tpmpub_ek_ecc_template = {
        .publicArea = {
                .type = TPM2_ALG_ECC,
                .nameAlg = TPM2_ALG_SHA256,
                .objectAttributes = EK_ATTRIBUTES,
                .authPolicy = EK_POLICY_A,
                .parameters.eccDetail = {
                        .symmetric = EK_SYMMETRIC,
                        .scheme.scheme = TPM2_ALG_NULL,
                        .curveID = TPM2_ECC_NIST_P256,
                        .kdf.scheme = TPM2_ALG_NULL,
                },
                .unique.ecc = { .x.size = 32, .y.size = 32 },
        },
};

static EVP_PKEY *from_params(const char *type, OSSL_PARAM *params, GError **error)
{
        g_autoptr(EVP_PKEY_CTX) ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
        EVP_PKEY *pkey = NULL;

        if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
            EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
                unsigned long e = ERR_peek_last_error();
                g_set_error(error, VROT_TPMPUB_ERROR, VROT_TPMPUB_ERROR_CRYPTO,
                            "OpenSSL refused the %s public key: %s", type,
                            e ? ERR_reason_error_string(e) : "no reason given");
                ERR_clear_error();
                return NULL;
        }
        return pkey;
}

static EVP_PKEY *rsa_key(const TPMT_PUBLIC *pub, GError **error)
{
        const TPM2B_PUBLIC_KEY_RSA *n = &pub->unique.rsa;
        guint32 e = pub->parameters.rsaDetail.exponent ? pub->parameters.rsaDetail.exponent : 65537;
        guint8 n_native[TPM2_MAX_RSA_KEY_BYTES];        /* OSSL_PARAM integers are native-endian */
        OSSL_PARAM params[3];

        if (n->size == 0 || n->size > sizeof(n_native)) {
                g_set_error(error, VROT_TPMPUB_ERROR, VROT_TPMPUB_ERROR_UNSUPPORTED,
                            "an RSA modulus of %u bytes", n->size);
                return NULL;
        }
        for (gsize i = 0; i < n->size; i++)
                n_native[i] = G_BYTE_ORDER == G_LITTLE_ENDIAN ? n->buffer[n->size - 1 - i] : n->buffer[i];
        params[0] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_N, n_native, n->size);
        params[1] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_E, (guint8 *)&e, sizeof(e));
        params[2] = OSSL_PARAM_construct_end();
        return from_params("RSA", params, error);
}

static EVP_PKEY *ecc_key(const TPMT_PUBLIC *pub, GError **error)
{
        const TPMS_ECC_POINT *q = &pub->unique.ecc;
        TPMI_ECC_CURVE curve = pub->parameters.eccDetail.curveID;
        char p256[] = "prime256v1", p384[] = "secp384r1";
        gsize size = curve == TPM2_ECC_NIST_P256 ? 32 : curve == TPM2_ECC_NIST_P384 ? 48 : 0;
        guint8 point[1 + 2 * 48] = { 0x04 };    /* uncompressed: 04 || X || Y (SEC 1, 2.3.3) */
        OSSL_PARAM params[3];

        if (!size || q->x.size > size || q->y.size > size) {
                g_set_error(error, VROT_TPMPUB_ERROR, VROT_TPMPUB_ERROR_UNSUPPORTED,
                            "not an ECC NIST P-256 or P-384 point (curve 0x%04x)", curve);
                return NULL;
        }
        /* TPM coordinates may come without their leading zero bytes. */
        memcpy(point + 1 + size - q->x.size, q->x.buffer, q->x.size);
        memcpy(point + 1 + 2 * size - q->y.size, q->y.buffer, q->y.size);
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                     size == 32 ? p256 : p384, 0);
        params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * size);
        params[2] = OSSL_PARAM_construct_end();
        return from_params("EC", params, error);
}

EVP_PKEY *vrot_tpmpub_to_pkey(const TPMT_PUBLIC *pub, GError **error)
{
        switch (pub->type) {
        case TPM2_ALG_RSA:
                return rsa_key(pub, error);
        case TPM2_ALG_ECC:
                return ecc_key(pub, error);
        }
        g_set_error(error, VROT_TPMPUB_ERROR, VROT_TPMPUB_ERROR_UNSUPPORTED,
                    "a TPM key of algorithm 0x%04x has no OpenSSL form here", pub->type);
        return NULL;
}

GBytes *vrot_tpmpub_marshal(const TPM2B_PUBLIC *pub)
{
        guint8 buf[sizeof(TPM2B_PUBLIC)];
        size_t off = 0;

        if (Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof(buf), &off) != TSS2_RC_SUCCESS)
                g_assert_not_reached();         /* a TPM2B_PUBLIC always fits */
        return g_bytes_new(buf, off);
}

gboolean vrot_tpmpub_signature_to_der(const TPMT_SIGNATURE *sig, GBytes **ret, GError **error)
{
        const TPMS_SIGNATURE_ECC *e = &sig->signature.ecdsa;
        g_autoptr(ECDSA_SIG) es = NULL;
        g_autoptr(BIGNUM) r = NULL, s = NULL;
        unsigned char *der = NULL;
        int len = -1;

        if (sig->sigAlg != TPM2_ALG_ECDSA || e->hash != TPM2_ALG_SHA256) {
                g_set_error(error, VROT_TPMPUB_ERROR, VROT_TPMPUB_ERROR_SCHEME,
                            "the TPM signed with scheme 0x%x, not ECDSA-SHA256", sig->sigAlg);
                return FALSE;
        }
        r = BN_bin2bn(e->signatureR.buffer, e->signatureR.size, NULL);
        s = BN_bin2bn(e->signatureS.buffer, e->signatureS.size, NULL);
        es = ECDSA_SIG_new();
        if (r && s && es && ECDSA_SIG_set0(es, r, s) == 1) {
                r = s = NULL;                   /* owned by es now */
                len = i2d_ECDSA_SIG(es, &der);
        }
        if (len <= 0) {
                ERR_clear_error();
                g_set_error_literal(error, VROT_TPMPUB_ERROR, VROT_TPMPUB_ERROR_CRYPTO,
                                    "encoding an ECDSA signature failed");
                return FALSE;
        }
        *ret = g_bytes_new(der, (gsize)len);
        OPENSSL_free(der);
        return TRUE;
}
