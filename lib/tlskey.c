/* SPDX-License-Identifier: BSD-3-Clause */

/* EC_KEY_METHOD is deprecated in OpenSSL 3, not removed: tlskey.h says why it is used. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <string.h>

#include <openssl/ec.h>
#include <openssl/err.h>

#include "tlskey.h"

typedef struct Signer {
        VrotSignDigestFunc sign;
        gpointer data;
} Signer;

static EC_KEY_METHOD *method;
static int signer_index = -1;

static void signer_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                        void *argp)
{
        (void)parent;
        (void)ad;
        (void)idx;
        (void)argl;
        (void)argp;
        g_free(ptr);
}

/* ECDSA_sign through the Signer: @dgst is the digest libssl wants signed. */
static int sign_digest(int type, const unsigned char *dgst, int dlen, unsigned char *sig,
                       unsigned int *siglen, const BIGNUM *kinv, const BIGNUM *r, EC_KEY *eckey)
{
        const Signer *s = EC_KEY_get_ex_data(eckey, signer_index);
        g_autoptr(GBytes) der = NULL;
        g_autoptr(GError) error = NULL;
        gsize len = 0;
        const guint8 *p;

        (void)type;
        (void)kinv;
        (void)r;
        if (!s || dlen != 32 || !s->sign(dgst, (gsize)dlen, &der, s->data, &error)) {
                if (error)
                        g_warning("TLS signature in the TPM: %s", error->message);
                return 0;
        }
        p = g_bytes_get_data(der, &len);
        if (len > (gsize)ECDSA_size(eckey))
                return 0;
        memcpy(sig, p, len);
        *siglen = (unsigned int)len;
        return 1;
}

static gpointer init_method(gpointer unused)
{
        int (*setup)(EC_KEY *, BN_CTX *, BIGNUM **, BIGNUM **) = NULL;
        ECDSA_SIG *(*sign_sig)(const unsigned char *, int, const BIGNUM *, const BIGNUM *,
                               EC_KEY *) = NULL;

        (void)unused;
        signer_index = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, signer_free);
        method = EC_KEY_METHOD_new(EC_KEY_OpenSSL());
        if (signer_index < 0 || !method)
                g_error("cannot make vrot's TPM-backed EC key method");
        EC_KEY_METHOD_get_sign(EC_KEY_OpenSSL(), NULL, &setup, &sign_sig);
        EC_KEY_METHOD_set_sign(method, sign_digest, setup, sign_sig);
        return NULL;
}

EVP_PKEY *vrot_tlskey_new(X509 *cert, VrotSignDigestFunc sign, gpointer data, GError **error)
{
        static GOnce once = G_ONCE_INIT;
        EVP_PKEY *pub = X509_get0_pubkey(cert);
        const EC_KEY *pub_ec = pub ? EVP_PKEY_get0_EC_KEY(pub) : NULL;
        const EC_GROUP *group = pub_ec ? EC_KEY_get0_group(pub_ec) : NULL;
        EC_KEY *ec = NULL;
        EVP_PKEY *pkey = NULL;
        Signer *s;

        g_once(&once, init_method, NULL);
        ERR_clear_error();
        if (!group || EC_GROUP_get_curve_name(group) != NID_X9_62_prime256v1) {
                g_set_error_literal(error, VROT_X509_ERROR, VROT_X509_ERROR_UNSUPPORTED_KEY,
                                    "the certificate's key is not ECC NIST P-256");
                return NULL;
        }
        s = g_new0(Signer, 1);
        *s = (Signer){ .sign = sign, .data = data };
        if (!(ec = EC_KEY_dup(pub_ec)) || !EC_KEY_set_method(ec, method) ||
            !EC_KEY_set_ex_data(ec, signer_index, s)) {
                g_free(s);
                goto fail;
        }
        s = NULL;       /* the key owns it now */
        if (!(pkey = EVP_PKEY_new()) || !EVP_PKEY_assign_EC_KEY(pkey, ec))
                goto fail;
        return pkey;
fail:
        EVP_PKEY_free(pkey);
        EC_KEY_free(ec);
        ERR_clear_error();
        g_set_error_literal(error, VROT_X509_ERROR, VROT_X509_ERROR_CRYPTO,
                            "cannot make a TPM-backed TLS key");
        return NULL;
}
