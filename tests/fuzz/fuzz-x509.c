/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The certificate parsers on arbitrary bytes: what vrotd reads from
 * host.import_ca_cert (a PEM certificate and a PEM chain) and what vrotctl
 * reads from host.evidence (a PEM certification request), and DER.  What
 * parses must write out and parse back to the same object.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "autoptr.h"
#include "x509.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(gboolean ok)
{
        if (!ok)
                abort();
}

static void cert_back(X509 *x)
{
        g_autofree gchar *pem = vrot_x509_to_pem(x, NULL);
        g_autoptr(X509) back = pem ? vrot_x509_from_pem(pem, strlen(pem), NULL) : NULL;

        check(back && X509_cmp(x, back) == 0);
}

static void fuzz_csr(const char *text, size_t size)
{
        g_autoptr(X509_REQ) req = vrot_x509_csr_from_pem(text, size, NULL);
        g_autofree gchar *pem = NULL;
        g_autoptr(X509_REQ) back = NULL;

        if (!req)
                return;
        pem = vrot_x509_csr_to_pem(req, NULL);
        back = pem ? vrot_x509_csr_from_pem(pem, strlen(pem), NULL) : NULL;
        check(back != NULL && i2d_X509_REQ(req, NULL) == i2d_X509_REQ(back, NULL));
        (void)X509_REQ_verify(req, X509_REQ_get0_pubkey(req));
        ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *text = g_memdup2(data, size);     /* exact size: ASan sees overreads */
        g_autoptr(X509) pem = vrot_x509_from_pem(text, size, NULL);
        g_autoptr(X509) der = vrot_x509_from_der(data, size, NULL);
        STACK_OF(X509) *chain = vrot_x509_chain_from_pem(text, size, 8, NULL);

        if (pem)
                cert_back(pem);
        if (der)
                cert_back(der);
        if (chain) {
                check(sk_X509_num(chain) >= 1 && sk_X509_num(chain) <= 8);
                /* The first block of a chain is what the single parser reads. */
                check(pem && X509_cmp(pem, sk_X509_value(chain, 0)) == 0);
                sk_X509_pop_free(chain, X509_free);
        }
        fuzz_csr(text, size);
        g_free(text);
        return 0;
}
