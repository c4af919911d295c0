/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The host CA certificate checks (daemon/hostca.c) with certificates made
 * here the way an operator's CA might make them (OpenSSL's X509 API and
 * openssl.cnf-style extension strings): what is accepted, what is refused
 * and why, the file round trip, and a file changed behind vrotd's back.
 * The --dev issuance against a real swtpm is covered by test-tpmevidence
 * (the exchange) and the vrotd integration tests.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "autoptr.h"
#include "hostca.h"
#include "unit.h"
#include "x509.h"

static EVP_PKEY *root_key, *other_root_key, *inter_key, *tpm_key, *other_key;

/* A certificate for @key signed by @issuer_key, with openssl.cnf-style @exts
 * ("basicConstraints=critical,CA:TRUE;keyUsage=keyCertSign"). */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                       const char *exts, long days)
{
        X509 *x = X509_new();
        g_auto(GStrv) list = g_strsplit(exts, ";", -1);
        X509V3_CTX ctx;

        CU_ASSERT_FATAL(x != NULL);
        X509_set_version(x, X509_VERSION_3);
        ASN1_INTEGER_set(X509_get_serialNumber(x), g_random_int() & 0x7fffffff);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0);
        X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(x));
        X509_gmtime_adj(X509_getm_notBefore(x), days < 0 ? days * 86400 * 2 : -60);
        X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
        X509_set_pubkey(x, key);
        X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
        for (gchar **e = list; *e && **e; e++) {
                gchar **kv = g_strsplit(*e, "=", 2);
                X509_EXTENSION *ext = X509V3_EXT_conf(NULL, &ctx, kv[0], kv[1]);

                CU_ASSERT_FATAL(ext != NULL);
                X509_add_ext(x, ext, -1);
                X509_EXTENSION_free(ext);
                g_strfreev(kv);
        }
        CU_ASSERT_FATAL(X509_sign(x, issuer_key, EVP_sha256()) > 0);
        return x;
}

#define ROOT_EXTS "basicConstraints=critical,CA:TRUE;keyUsage=critical,keyCertSign,cRLSign;" \
                  "subjectKeyIdentifier=hash"
#define HOSTCA_EXTS "basicConstraints=critical,CA:TRUE,pathlen:0;" \
                    "keyUsage=critical,keyCertSign,cRLSign;subjectKeyIdentifier=hash;" \
                    "authorityKeyIdentifier=keyid"

static X509 *root_cert(void)
{
        return make_cert("fleet root", root_key, NULL, root_key, ROOT_EXTS, 3650);
}

/* How the host CA certificate reaches the root: issued by it, or by an
 * intermediate that is passed as the chain, is the configured anchor, or
 * is not given at all. */
typedef enum { DIRECT, VIA_INTERMEDIATE, INTERMEDIATE_AS_ANCHOR, INTERMEDIATE_MISSING } Path;

typedef struct CheckCase {
        const char *what;
        gboolean tpm_key;               /* certify the TPM's key (else another) */
        gboolean other_root;            /* issued by another root */
        const char *exts;
        long days;
        Path path;
        int code;                       /* -1: accepted */
        const char *needle;
} CheckCase;

static const CheckCase check_cases[] = {
        { "good", TRUE, FALSE, HOSTCA_EXTS, 365, DIRECT, -1, NULL },
        { "good, through an intermediate", TRUE, FALSE, HOSTCA_EXTS, 365, VIA_INTERMEDIATE, -1,
          NULL },
        { "good, the intermediate as the configured anchor", TRUE, FALSE, HOSTCA_EXTS, 365,
          INTERMEDIATE_AS_ANCHOR, -1, NULL },
        { "another key", FALSE, FALSE, HOSTCA_EXTS, 365, DIRECT, VROT_HOSTCA_ERROR_WRONG_KEY,
          "another key" },
        { "another root", TRUE, TRUE, HOSTCA_EXTS, 365, DIRECT, VROT_HOSTCA_ERROR_UNTRUSTED,
          "does not chain to the configured fleet root" },
        { "not a CA", TRUE, FALSE, "basicConstraints=critical,CA:FALSE;keyUsage=digitalSignature;"
          "subjectKeyIdentifier=hash", 365, DIRECT, VROT_HOSTCA_ERROR_NOT_CA, "cA is not set" },
        { "no basicConstraints", TRUE, FALSE, "keyUsage=keyCertSign;subjectKeyIdentifier=hash",
          365, DIRECT, VROT_HOSTCA_ERROR_NOT_CA, "cA is not set" },
        { "no keyCertSign", TRUE, FALSE, "basicConstraints=critical,CA:TRUE;"
          "keyUsage=critical,cRLSign,digitalSignature;subjectKeyIdentifier=hash", 365, DIRECT,
          VROT_HOSTCA_ERROR_NOT_CA, "keyCertSign" },
        { "no keyUsage", TRUE, FALSE, "basicConstraints=critical,CA:TRUE;subjectKeyIdentifier=hash",
          365, DIRECT, VROT_HOSTCA_ERROR_NOT_CA, "keyCertSign" },
        { "no subjectKeyIdentifier", TRUE, FALSE, "basicConstraints=critical,CA:TRUE;"
          "keyUsage=critical,keyCertSign", 365, DIRECT, VROT_HOSTCA_ERROR_NOT_CA,
          "subjectKeyIdentifier" },
        { "expired", TRUE, FALSE, HOSTCA_EXTS, -1, DIRECT, VROT_HOSTCA_ERROR_UNTRUSTED, "expired" },
        { "intermediate missing", TRUE, FALSE, HOSTCA_EXTS, 365, INTERMEDIATE_MISSING,
          VROT_HOSTCA_ERROR_UNTRUSTED, "does not chain" },
};

static void run_check_case(const CheckCase *c, X509 *root)
{
        g_autoptr(X509) other_root = make_cert("other root", other_root_key, NULL,
                                               other_root_key, ROOT_EXTS, 3650);
        g_autoptr(X509) inter = make_cert("operator CA", inter_key, root, root_key,
                                          ROOT_EXTS ";authorityKeyIdentifier=keyid", 3650);
        gboolean via = c->path != DIRECT;
        X509 *issuer = c->other_root ? other_root : via ? inter : root;
        EVP_PKEY *issuer_key = c->other_root ? other_root_key : via ? inter_key : root_key;
        g_autoptr(X509) cert = make_cert("host CA", c->tpm_key ? tpm_key : other_key, issuer,
                                         issuer_key, c->exts, c->days);
        STACK_OF(X509) *chain = sk_X509_new_null();
        g_autoptr(VrotHostca) ca = NULL;
        g_autoptr(GError) err = NULL;

        if (c->path == VIA_INTERMEDIATE)
                sk_X509_push(chain, inter);
        ca = vrot_hostca_check(cert, chain, c->path == INTERMEDIATE_AS_ANCHOR ? inter : root,
                               tpm_key, &err);
        sk_X509_free(chain);
        if (c->code < 0) {
                if (err)
                        fprintf(stderr, "\n  %s: %s\n", c->what, err->message);
                CU_ASSERT_FATAL(ca != NULL);
                CU_ASSERT_EQUAL(X509_cmp(ca->cert, cert), 0);
                CU_ASSERT_EQUAL(sk_X509_num(ca->path), c->path == VIA_INTERMEDIATE ? 3 : 2);
                CU_ASSERT_EQUAL(sk_X509_num(ca->chain), c->path == VIA_INTERMEDIATE ? 1 : 0);
                return;
        }
        CU_ASSERT_PTR_NULL(ca);
        if (!g_error_matches(err, VROT_HOSTCA_ERROR, c->code) || !strstr(err->message, c->needle)) {
                fprintf(stderr, "\n  %s: %s\n", c->what, err ? err->message : "accepted");
                CU_FAIL(c->what);
        }
}

static void test_hostca_check_table(void)
{
        g_autoptr(X509) root = root_cert();

        for (gsize i = 0; i < G_N_ELEMENTS(check_cases); i++)
                run_check_case(&check_cases[i], root);
}

/* vrot_x509_ca_cert()'s host CA profile passes, as vrotctl issues it. */
static void test_hostca_check_vrot_profile(void)
{
        static const VrotX509CaParams params = { .common_name = "vrot host CA test" };
        g_autoptr(X509) root = root_cert();
        g_autoptr(VrotX509Signer) signer = vrot_x509_signer_new_software(root, root_key, NULL);
        g_autoptr(X509) cert = vrot_x509_ca_cert(signer, tpm_key, &params, NULL);
        g_autoptr(VrotHostca) ca = NULL;
        g_autoptr(GError) err = NULL;

        CU_ASSERT_FATAL(cert != NULL);
        ca = vrot_hostca_check(cert, NULL, root, tpm_key, &err);
        CU_ASSERT_PTR_NOT_NULL(ca);
        CU_ASSERT_PTR_NULL(err);
}

static gchar *pem_of(X509 *x)
{
        gchar *pem = vrot_x509_to_pem(x, NULL);

        CU_ASSERT_FATAL(pem != NULL);
        return pem;
}

static void test_hostca_import_parse_errors(void)
{
        g_autoptr(X509) root = root_cert();
        g_autoptr(X509) cert = make_cert("host CA", tpm_key, root, root_key, HOSTCA_EXTS, 365);
        g_autofree gchar *pem = pem_of(cert);
        const char *bad[][2] = {
                { "", NULL },
                { "not PEM", NULL },
                { "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", NULL },
                { pem, "garbage chain" },
                { pem, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GError) err = NULL;
                g_autoptr(VrotHostca) ca = vrot_hostca_import(bad[i][0], strlen(bad[i][0]), bad[i][1],
                                                              bad[i][1] ? strlen(bad[i][1]) : 0,
                                                              root, tpm_key, &err);

                CU_ASSERT_PTR_NULL(ca);
                CU_ASSERT_TRUE(g_error_matches(err, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_INVALID));
        }
}

static void test_hostca_save_load(void)
{
        g_autoptr(X509) root = root_cert();
        g_autoptr(X509) inter = make_cert("operator CA", inter_key, root, root_key,
                                          ROOT_EXTS ";authorityKeyIdentifier=keyid", 3650);
        g_autoptr(X509) cert = make_cert("host CA", tpm_key, inter, inter_key, HOSTCA_EXTS, 365);
        g_autofree gchar *cert_pem = pem_of(cert), *chain_pem = pem_of(inter);
        g_autofree gchar *path = g_build_filename(unit_tmpdir(), "host-ca.pem", NULL);
        g_autoptr(VrotHostca) ca = NULL, back = NULL, refused = NULL, other = NULL;
        g_autoptr(GError) err = NULL, err2 = NULL, err3 = NULL;
        g_autoptr(X509) other_root = make_cert("other root", other_root_key, NULL, other_root_key,
                                               ROOT_EXTS, 3650);
        g_autofree gchar *text = NULL;

        ca = vrot_hostca_import(cert_pem, strlen(cert_pem), chain_pem, strlen(chain_pem), root,
                                tpm_key, &err);
        CU_ASSERT_FATAL(ca != NULL);
        CU_ASSERT_TRUE_FATAL(vrot_hostca_save(ca, path, &err));
        CU_ASSERT_TRUE(g_file_get_contents(path, &text, NULL, NULL));
        CU_ASSERT(text && g_str_has_prefix(text, cert_pem) && strstr(text, chain_pem));
        back = vrot_hostca_load(path, root, tpm_key, &err);
        CU_ASSERT_FATAL(back != NULL);
        CU_ASSERT_EQUAL(X509_cmp(back->cert, cert), 0);
        CU_ASSERT_EQUAL(sk_X509_num(back->path), 3);
        /* The fleet root of the configuration changed: refused. */
        refused = vrot_hostca_load(path, other_root, tpm_key, &err2);
        CU_ASSERT_PTR_NULL(refused);
        CU_ASSERT_TRUE(g_error_matches(err2, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_UNTRUSTED));
        /* The CA key in the TPM was made anew: refused. */
        other = vrot_hostca_load(path, root, other_key, &err3);
        CU_ASSERT_PTR_NULL(other);
        CU_ASSERT_TRUE(g_error_matches(err3, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_WRONG_KEY));
}

static void test_hostca_load_damaged(void)
{
        g_autoptr(X509) root = root_cert();
        g_autofree gchar *path = g_build_filename(unit_tmpdir(), "damaged.pem", NULL);
        g_autofree gchar *missing = g_build_filename(unit_tmpdir(), "missing.pem", NULL);
        g_autoptr(GError) e1 = NULL, e2 = NULL;
        VrotHostca *ca;

        unit_write_file(path, "-----BEGIN CERTIFICATE-----\nAAAA\n", 33);
        ca = vrot_hostca_load(path, root, tpm_key, &e1);
        CU_ASSERT_PTR_NULL(ca);
        CU_ASSERT_TRUE(g_error_matches(e1, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_INVALID));
        ca = vrot_hostca_load(missing, root, tpm_key, &e2);
        CU_ASSERT_PTR_NULL(ca);
        CU_ASSERT_TRUE(g_error_matches(e2, VROT_HOSTCA_ERROR, VROT_HOSTCA_ERROR_FAILED));
}

static void free_keys(void)
{
        EVP_PKEY *all[] = { root_key, other_root_key, inter_key, tpm_key, other_key };

        for (gsize i = 0; i < G_N_ELEMENTS(all); i++)
                EVP_PKEY_free(all[i]);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_hostca_check_table),
                UNIT_CASE(test_hostca_check_vrot_profile),
                UNIT_CASE(test_hostca_import_parse_errors),
                UNIT_CASE(test_hostca_save_load),
                UNIT_CASE(test_hostca_load_damaged),
        };
        int rc;

        root_key = EVP_EC_gen("P-256");
        other_root_key = EVP_EC_gen("P-256");
        inter_key = EVP_EC_gen("P-256");
        tpm_key = EVP_EC_gen("P-256");
        other_key = EVP_EC_gen("P-256");
        rc = UNIT_RUN("hostca", cases);
        free_keys();
        return rc;
}
