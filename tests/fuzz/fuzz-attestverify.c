/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The offline verifier of attestation bundles (vrotctl verify) on
 * arbitrary bytes: the first byte chooses the bundle parser with the
 * checks behind it, or the policy parser.  Whatever the input, the
 * verifier answers with an error or a verdict; a verdict never says
 * "trusted" for a root that signed nothing in it.
 */
#include <stdint.h>
#include <stdlib.h>

#include <openssl/ec.h>

#include "attestverify.h"
#include "autoptr.h"
#include "x509.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static X509 *root;
static VrotAttestPolicy *policy;

/* A root of our own: no bundle in the corpus chains to it. */
static void init(void)
{
        g_autoptr(EVP_PKEY) key = EVP_EC_gen("P-256");
        VrotX509CaParams params = { .common_name = "fuzz root" };
        static const char any[] = "{\"host\": [{}], \"guest\": [{}]}";

        root = key ? vrot_x509_root_cert(key, &params, NULL) : NULL;
        policy = vrot_attest_policy_parse(any, sizeof(any) - 1, NULL);
        if (!root || !policy)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autoptr(GBytes) nonce = g_bytes_new_static("fuzz", 4);
        g_autoptr(GPtrArray) checks = NULL;
        g_autofree gchar *text = NULL;

        if (!root)
                init();
        if (size < 1)
                return 0;
        text = g_strndup((const gchar *)data + 1, size - 1);
        if (data[0] & 1) {
                vrot_attest_policy_free(vrot_attest_policy_parse(text, size - 1, NULL));
                return 0;
        }
        if (vrot_attest_verify(text, size - 1, root, NULL, nonce, policy, &checks, NULL) &&
            vrot_attest_trusted(checks))
                abort();
        return 0;
}
