/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The operator's keys and fleet root (daemon/operator.c): from vrotd.conf
 * every missing, unreadable or wrong file is refused with a message naming
 * the configuration key; --dev makes them once and finds them again.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>

#include "autoptr.h"
#include "operator.h"
#include "unit.h"
#include "x509.h"

static gchar *dir;

static gchar *file(const char *name)
{
        return g_build_filename(dir, name, NULL);
}

static void write_key(const char *name, EVP_PKEY *key, gboolean private)
{
        g_autofree gchar *path = file(name);
        g_autoptr(BIO) bio = BIO_new_file(path, "w");

        CU_ASSERT_FATAL(bio != NULL);
        CU_ASSERT_FATAL(private ? PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
                                : PEM_write_bio_PUBKEY(bio, key));
}

static void write_cert(const char *name, X509 *x)
{
        g_autofree gchar *path = file(name);
        g_autofree gchar *pem = vrot_x509_to_pem(x, NULL);

        unit_write_file(path, pem, strlen(pem));
}

/* The files every case draws from. */
static void make_files(void)
{
        static const VrotX509CaParams root_params = { .common_name = "fleet root" };
        g_autoptr(EVP_PKEY) ec = EVP_EC_gen("P-256"), p384 = EVP_EC_gen("P-384");
        g_autoptr(EVP_PKEY) rsa = EVP_RSA_gen(3072), rsa1024 = EVP_RSA_gen(1024);
        g_autoptr(X509) root = vrot_x509_root_cert(ec, &root_params, NULL);
        g_autofree gchar *garbage = file("garbage.pem");

        CU_ASSERT_FATAL(root != NULL);
        write_key("policy.pub.pem", ec, FALSE);
        write_key("policy.key.pem", ec, TRUE);
        write_key("p384.pub.pem", p384, FALSE);
        write_key("recovery.pub.pem", rsa, FALSE);
        write_key("rsa1024.pub.pem", rsa1024, FALSE);
        write_cert("root.pem", root);
        unit_write_file(garbage, "not a key\n", 10);
}

typedef struct LoadCase {
        const char *what;
        const char *policy, *recovery, *root;   /* file names in dir, or NULL */
        gboolean need_recovery;
        int code;                               /* -1: accepted */
        const char *needle;
} LoadCase;

static const LoadCase load_cases[] = {
        { "all", "policy.pub.pem", "recovery.pub.pem", "root.pem", TRUE, -1, NULL },
        { "no recovery key after the first start", "policy.pub.pem", NULL, "root.pem", FALSE, -1,
          NULL },
        { "no policy key", NULL, "recovery.pub.pem", "root.pem", TRUE,
          VROT_OPERATOR_ERROR_MISSING, "[operator] policy-key is not set" },
        { "no recovery key at first start", "policy.pub.pem", NULL, "root.pem", TRUE,
          VROT_OPERATOR_ERROR_MISSING, "[operator] recovery-key is not set" },
        { "no fleet root", "policy.pub.pem", "recovery.pub.pem", NULL, TRUE,
          VROT_OPERATOR_ERROR_MISSING, "[operator] fleet-root is not set" },
        { "policy key file missing", "nonexistent.pem", NULL, "root.pem", FALSE,
          VROT_OPERATOR_ERROR_INVALID, "[operator] policy-key: " },
        { "policy key private", "policy.key.pem", NULL, "root.pem", FALSE,
          VROT_OPERATOR_ERROR_INVALID, "holds a private key" },
        { "policy key RSA", "recovery.pub.pem", NULL, "root.pem", FALSE,
          VROT_OPERATOR_ERROR_INVALID, "[operator] policy-key: " },
        { "policy key P-384", "p384.pub.pem", NULL, "root.pem", FALSE,
          VROT_OPERATOR_ERROR_INVALID, "not an ECC P-256 public key" },
        { "policy key garbage", "garbage.pem", NULL, "root.pem", FALSE,
          VROT_OPERATOR_ERROR_INVALID, "is not a PEM public key" },
        { "recovery key ECC", "policy.pub.pem", "policy.pub.pem", "root.pem", FALSE,
          VROT_OPERATOR_ERROR_INVALID, "[operator] recovery-key: " },
        { "recovery key RSA 1024", "policy.pub.pem", "rsa1024.pub.pem", "root.pem", FALSE,
          VROT_OPERATOR_ERROR_INVALID, "2048 bits or more" },
        { "fleet root not a certificate", "policy.pub.pem", NULL, "policy.pub.pem", FALSE,
          VROT_OPERATOR_ERROR_INVALID, "[operator] fleet-root: " },
        { "fleet root file missing", "policy.pub.pem", NULL, "nonexistent.pem", FALSE,
          VROT_OPERATOR_ERROR_INVALID, "[operator] fleet-root: " },
};

static void run_load_case(const LoadCase *c)
{
        g_autoptr(VrotConfig) cfg = vrot_config_new();
        g_autoptr(VrotOperator) op = NULL;
        g_autoptr(GError) err = NULL;

        cfg->policy_key = c->policy ? file(c->policy) : NULL;
        cfg->recovery_key = c->recovery ? file(c->recovery) : NULL;
        cfg->fleet_root = c->root ? file(c->root) : NULL;
        op = vrot_operator_load(cfg, c->need_recovery, &err);
        if (c->code < 0) {
                if (err)
                        fprintf(stderr, "\n  %s: %s\n", c->what, err->message);
                CU_ASSERT_FATAL(op != NULL);
                CU_ASSERT_PTR_NOT_NULL(op->policy_key);
                CU_ASSERT_EQUAL(op->recovery_key != NULL, c->recovery != NULL);
                CU_ASSERT_PTR_NOT_NULL(op->fleet_root);
                CU_ASSERT_PTR_NULL(op->fleet_root_key);
                return;
        }
        CU_ASSERT_PTR_NULL(op);
        if (!g_error_matches(err, VROT_OPERATOR_ERROR, c->code) || !strstr(err->message, c->needle)) {
                fprintf(stderr, "\n  %s: %s\n", c->what, err ? err->message : "accepted");
                CU_FAIL(c->what);
        }
}

static void test_operator_load_table(void)
{
        make_files();
        for (gsize i = 0; i < G_N_ELEMENTS(load_cases); i++)
                run_load_case(&load_cases[i]);
}

/* Unreadable files name the key too, and the message never holds key bytes. */
static void test_operator_load_message_has_no_key(void)
{
        g_autoptr(VrotConfig) cfg = vrot_config_new();
        g_autoptr(VrotOperator) op = NULL;
        g_autoptr(GError) err = NULL;
        g_autofree gchar *pem = NULL;

        cfg->policy_key = file("policy.key.pem");
        cfg->fleet_root = file("root.pem");
        CU_ASSERT_TRUE_FATAL(g_file_get_contents(cfg->policy_key, &pem, NULL, NULL));
        op = vrot_operator_load(cfg, FALSE, &err);
        CU_ASSERT_PTR_NULL(op);
        CU_ASSERT_FATAL(err != NULL);
        CU_ASSERT(strstr(err->message, cfg->policy_key) != NULL);
        CU_ASSERT(strstr(err->message, "MII") == NULL);         /* no base64 of the key */
}

static void test_operator_dev_made_once(void)
{
        g_autofree gchar *host = g_build_filename(dir, "host", NULL);
        g_autoptr(VrotOperator) first = NULL, again = NULL;
        g_autoptr(GError) err = NULL;

        CU_ASSERT_EQUAL_FATAL(g_mkdir_with_parents(host, 0700), 0);
        first = vrot_operator_dev(host, &err);
        CU_ASSERT_FATAL(first != NULL);
        CU_ASSERT_PTR_NOT_NULL(first->fleet_root_key);
        CU_ASSERT_PTR_NOT_NULL(first->recovery_key);
        CU_ASSERT_EQUAL(X509_check_private_key(first->fleet_root, first->fleet_root_key), 1);
        again = vrot_operator_dev(host, &err);
        CU_ASSERT_FATAL(again != NULL);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(first->policy_key, again->policy_key), 1);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(first->recovery_key, again->recovery_key), 1);
        CU_ASSERT_EQUAL(X509_cmp(first->fleet_root, again->fleet_root), 0);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_operator_load_table),
                UNIT_CASE(test_operator_load_message_has_no_key),
                UNIT_CASE(test_operator_dev_made_once),
        };
        int rc;

        dir = g_strdup(unit_tmpdir());
        rc = UNIT_RUN("operator", cases);
        g_free(dir);
        return rc;
}
