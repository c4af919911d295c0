/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "mpolicy.h"
#include "unit.h"

#define A "aa" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define B "bb" "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
static const char good[] =
        "{\"peers\": [\"host-b.example\", \"Host-C.example\"],"
        " \"pcrs\": {\"sha256\": {\"0\": [\"" A "\", \"" B "\"], \"7\": [\"" B "\"]}}}";

static VrotMpolicy *policy(void)
{
        g_autoptr(GError) err = NULL;
        VrotMpolicy *p = vrot_mpolicy_parse(good, strlen(good), &err);

        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        return p;
}

/* Values for PCRs 0 and 7. */
static GBytes *values(guint8 v0, guint8 v7)
{
        guint8 b[64];

        memset(b, v0, 32);
        memset(b + 32, v7, 32);
        return g_bytes_new(b, sizeof(b));
}

static void test_mpolicy_accepts(void)
{
        g_autoptr(VrotMpolicy) p = policy();
        g_autoptr(GBytes) ok1 = values(0xaa, 0xbb), ok2 = values(0xbb, 0xbb);

        CU_ASSERT_EQUAL(vrot_mpolicy_pcr_mask(p), 0x81);
        CU_ASSERT_TRUE(vrot_mpolicy_check_peer(p, "host-b.example", NULL));
        CU_ASSERT_TRUE(vrot_mpolicy_check_peer(p, "HOST-c.EXAMPLE", NULL));
        CU_ASSERT_TRUE(vrot_mpolicy_check_pcrs(p, 0x81, ok1, NULL));
        CU_ASSERT_TRUE(vrot_mpolicy_check_pcrs(p, 0x81, ok2, NULL));
}

static void test_mpolicy_refuses(void)
{
        g_autoptr(VrotMpolicy) p = policy();
        g_autoptr(GBytes) bad7 = values(0xaa, 0xaa), ok = values(0xaa, 0xbb);
        g_autoptr(GError) err = NULL;

        CU_ASSERT_FALSE(vrot_mpolicy_check_peer(p, "host-d.example", &err));
        CU_ASSERT(g_error_matches(err, VROT_MPOLICY_ERROR, VROT_MPOLICY_ERROR_PEER));
        g_clear_error(&err);
        CU_ASSERT_FALSE(vrot_mpolicy_check_pcrs(p, 0x81, bad7, &err));
        CU_ASSERT(g_error_matches(err, VROT_MPOLICY_ERROR, VROT_MPOLICY_ERROR_PCRS) &&
                  strstr(err->message, "PCR 7"));
        g_clear_error(&err);
        /* Not the PCRs the policy lists: more, fewer, or values missing. */
        CU_ASSERT_FALSE(vrot_mpolicy_check_pcrs(p, 0x83, ok, &err));
        g_clear_error(&err);
        CU_ASSERT_FALSE(vrot_mpolicy_check_pcrs(p, 0x01, ok, &err));
        g_clear_error(&err);
        CU_ASSERT_FALSE(vrot_mpolicy_check_pcrs(p, 0x81, NULL, &err));
        CU_ASSERT(g_error_matches(err, VROT_MPOLICY_ERROR, VROT_MPOLICY_ERROR_PCRS));
}

static void test_mpolicy_bad_files(void)
{
        static const char *const bad[] = {
                "", "[]", "{}", "{\"peers\": []}",
                "{\"peers\": [], \"pcrs\": {}}",
                "{\"peers\": [], \"pcrs\": {\"sha1\": {\"0\": [\"" A "\"]}}}",
                "{\"peers\": [], \"pcrs\": {\"sha256\": {}}}",
                "{\"peers\": [], \"pcrs\": {\"sha256\": {\"24\": [\"" A "\"]}}}",
                "{\"peers\": [], \"pcrs\": {\"sha256\": {\"07\": [\"" A "\"]}}}",
                "{\"peers\": [], \"pcrs\": {\"sha256\": {\"0\": []}}}",
                "{\"peers\": [], \"pcrs\": {\"sha256\": {\"0\": [\"aa\"]}}}",
                "{\"peers\": [\"a b\"], \"pcrs\": {\"sha256\": {\"0\": [\"" A "\"]}}}",
                "{\"peers\": [1], \"pcrs\": {\"sha256\": {\"0\": [\"" A "\"]}}}",
                "{\"peers\": [], \"pcrs\": {\"sha256\": {\"0\": [\"" A "\"]}}, \"x\": 1}",
        };

        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GError) err = NULL;
                g_autoptr(VrotMpolicy) p = vrot_mpolicy_parse(bad[i], strlen(bad[i]), &err);

                if (p)
                        fprintf(stderr, "\n  accepted: %s\n", bad[i]);
                CU_ASSERT_PTR_NULL(p);
                CU_ASSERT(g_error_matches(err, VROT_MPOLICY_ERROR, VROT_MPOLICY_ERROR_PARSE));
        }
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_mpolicy_accepts),
                UNIT_CASE(test_mpolicy_refuses),
                UNIT_CASE(test_mpolicy_bad_files),
        };

        return UNIT_RUN("mpolicy", cases);
}
