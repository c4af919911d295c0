/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "config.h"
#include "unit.h"

static void test_config_defaults(void)
{
        g_autoptr(VrotConfig) c = vrot_config_new();

        CU_ASSERT_STRING_EQUAL(c->state_dir, "/var/lib/vrot");
        CU_ASSERT_STRING_EQUAL(c->runtime_dir, "/run/vrot");
        CU_ASSERT_STRING_EQUAL(c->tcti, "device:/dev/tpmrm0");
        CU_ASSERT_PTR_NULL(c->admin_group);
        CU_ASSERT_EQUAL(c->seal_pcrs, 0x95u);
        CU_ASSERT_EQUAL(c->pool_size, 4);
        CU_ASSERT_PTR_NULL(c->policy_key);
        CU_ASSERT_PTR_NULL(c->recovery_key);
        CU_ASSERT_PTR_NULL(c->fleet_root);
}

static void test_config_worker_user_default(void)
{
        static const struct {
                gboolean dev;
                const char *set;        /* NULL: not in vrotd.conf */
                const char *want;       /* NULL: no drop */
        } cases[] = {
                { FALSE, NULL, VROT_CONFIG_WORKER_USER_DEFAULT },
                { TRUE, NULL, NULL },
                { FALSE, "root", NULL },
                { TRUE, "root", NULL },
                { FALSE, "nobody", "nobody" },
                { TRUE, "nobody", "nobody" },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(VrotConfig) c = vrot_config_new();
                g_autofree gchar *conf = cases[i].set
                        ? g_strdup_printf("[daemon]\nworker-user=%s\n", cases[i].set) : g_strdup("");
                g_autoptr(GError) err = NULL;

                c->dev = cases[i].dev;
                CU_ASSERT_TRUE_FATAL(vrot_config_parse(c, conf, strlen(conf), &err));
                if (cases[i].want) {
                        CU_ASSERT_STRING_EQUAL(vrot_config_worker_user(c), cases[i].want);
                } else {
                        CU_ASSERT_PTR_NULL(vrot_config_worker_user(c));
                }
        }
}

static void test_config_parse_all_keys(void)
{
        static const char conf[] =
                "# comment\n"
                "[daemon]\nstate-dir=/srv/vrot\nruntime-dir=/run/v\nadmin-group=vrot-admin\n"
                "worker-user=vrot-vtpm\nlog-level=debug\npool-size=0\n"
                "[host-tpm]\ntcti=swtpm:path=/tmp/x\nseal-pcrs=0, 7 ,23\n"
                "[operator]\npolicy-key=/etc/vrot/policy.pem\nrecovery-key=/etc/vrot/recovery.pem\n"
                "fleet-root=/etc/vrot/fleet-root.pem\n"
                "[migration]\nname=host-7.example\n";
        g_autoptr(VrotConfig) c = vrot_config_new();
        g_autoptr(GError) err = NULL;

        CU_ASSERT_TRUE_FATAL(vrot_config_parse(c, conf, strlen(conf), &err));
        CU_ASSERT_STRING_EQUAL(c->state_dir, "/srv/vrot");
        CU_ASSERT_STRING_EQUAL(c->runtime_dir, "/run/v");
        CU_ASSERT_STRING_EQUAL(c->admin_group, "vrot-admin");
        CU_ASSERT_STRING_EQUAL(c->worker_user, "vrot-vtpm");
        CU_ASSERT_STRING_EQUAL(c->log_level, "debug");
        CU_ASSERT_STRING_EQUAL(c->tcti, "swtpm:path=/tmp/x");
        CU_ASSERT_EQUAL(c->seal_pcrs, 1u << 0 | 1u << 7 | 1u << 23);
        CU_ASSERT_EQUAL(c->pool_size, 0);
        CU_ASSERT_STRING_EQUAL(c->policy_key, "/etc/vrot/policy.pem");
        CU_ASSERT_STRING_EQUAL(c->recovery_key, "/etc/vrot/recovery.pem");
        CU_ASSERT_STRING_EQUAL(c->fleet_root, "/etc/vrot/fleet-root.pem");
        CU_ASSERT_STRING_EQUAL(c->migration_name, "host-7.example");
}

typedef struct BadCase {
        const char *conf;
        int code;
        const char *msg;
} BadCase;

static void test_config_parse_refusals_change_nothing(void)
{
        static const BadCase cases[] = {
                { "[daemon]\nstate-dir=relative\n", VROT_CONFIG_ERROR_INVALID, "absolute path" },
                { "[daemon]\nstatedir=/x\n", VROT_CONFIG_ERROR_UNKNOWN_KEY, "unknown key [daemon] statedir" },
                { "[demon]\nstate-dir=/x\n", VROT_CONFIG_ERROR_UNKNOWN_KEY, "unknown key [demon]" },
                { "[daemon]\nlog-level=loud\n", VROT_CONFIG_ERROR_INVALID, "log-level" },
                { "[host-tpm]\nseal-pcrs=24\n", VROT_CONFIG_ERROR_INVALID, "seal-pcrs" },
                { "[host-tpm]\nseal-pcrs=\n", VROT_CONFIG_ERROR_INVALID, "seal-pcrs: empty value" },
                { "[host-tpm]\ntcti=\n", VROT_CONFIG_ERROR_INVALID, "empty value" },
                { "[daemon]\npool-size=65\n", VROT_CONFIG_ERROR_INVALID,
                  "[daemon] pool-size: '65' is not a number 0-64" },
                { "[daemon]\npool-size=-1\n", VROT_CONFIG_ERROR_INVALID, "pool-size" },
                { "[migration]\nname=host 7\n", VROT_CONFIG_ERROR_INVALID,
                  "[migration] name: 'host 7' is not a host name" },
                { "[migration]\nname=-host\n", VROT_CONFIG_ERROR_INVALID, "[migration] name" },
                { "[daemon]\npool-size=4x\n", VROT_CONFIG_ERROR_INVALID, "pool-size" },
                { "[daemon]\npool-size= \n", VROT_CONFIG_ERROR_INVALID, "pool-size" },
                /* A good pool-size before a bad key: not applied either. */
                { "[daemon]\npool-size=9\nlog-level=loud\n", VROT_CONFIG_ERROR_INVALID, "log-level" },
                { "[operator]\npolicy-key=policy.pem\n", VROT_CONFIG_ERROR_INVALID,
                  "[operator] policy-key: 'policy.pem' is not an absolute path" },
                { "[operator]\nfleet-root=\n", VROT_CONFIG_ERROR_INVALID, "fleet-root" },
                { "[operator]\npolicy_key=/x\n", VROT_CONFIG_ERROR_UNKNOWN_KEY,
                  "unknown key [operator] policy_key" },
                { "[operator]\nrecovery-key=/r.pem\nfleet-root=rel\n", VROT_CONFIG_ERROR_INVALID,
                  "fleet-root" },
                { "state-dir=/x\n", VROT_CONFIG_ERROR_INVALID, "malformed" },
                { "[daemon\n", VROT_CONFIG_ERROR_INVALID, "malformed" },
                /* The first key is good: still nothing may be applied. */
                { "[daemon]\nruntime-dir=/good\nstate-dir=bad\n", VROT_CONFIG_ERROR_INVALID, "state-dir" },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(VrotConfig) c = vrot_config_new();
                g_autoptr(GError) err = NULL;

                CU_ASSERT_FALSE(vrot_config_parse(c, cases[i].conf, strlen(cases[i].conf), &err));
                CU_ASSERT_PTR_NOT_NULL_FATAL(err);
                CU_ASSERT(err->domain == VROT_CONFIG_ERROR && err->code == cases[i].code);
                if (!strstr(err->message, cases[i].msg))
                        CU_FAIL(cases[i].conf);
                CU_ASSERT_STRING_EQUAL(c->runtime_dir, "/run/vrot");
                CU_ASSERT_STRING_EQUAL(c->state_dir, "/var/lib/vrot");
                CU_ASSERT_EQUAL(c->seal_pcrs, 0x95u);
                CU_ASSERT_EQUAL(c->pool_size, 4);
                CU_ASSERT_PTR_NULL(c->recovery_key);
        }
}

static void test_config_nul_byte(void)
{
        static const char conf[] = "[daemon]\nstate-dir=/a\0b\n";
        g_autoptr(VrotConfig) c = vrot_config_new();
        g_autoptr(GError) err = NULL;

        CU_ASSERT_FALSE(vrot_config_parse(c, conf, sizeof(conf) - 1, &err));
        CU_ASSERT(err && strstr(err->message, "NUL"));
}

static void test_config_load_missing_file(void)
{
        g_autoptr(VrotConfig) c = vrot_config_new();
        g_autoptr(GError) err = NULL;

        CU_ASSERT_FALSE(vrot_config_load(c, "/nonexistent/vrotd.conf", &err));
        CU_ASSERT(err && strstr(err->message, "/nonexistent/vrotd.conf"));
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_config_defaults),
                UNIT_CASE(test_config_worker_user_default),
                UNIT_CASE(test_config_parse_all_keys),
                UNIT_CASE(test_config_parse_refusals_change_nothing),
                UNIT_CASE(test_config_nul_byte),
                UNIT_CASE(test_config_load_missing_file),
        };
        return UNIT_RUN("config", cases);
}
