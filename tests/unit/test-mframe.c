/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "mframe.h"
#include "unit.h"

static const char id[] = "00112233445566778899aabbccddeeff";

/* A frame from @json, with its length prefix. */
static GBytes *raw(const char *json)
{
        gsize n = strlen(json);
        guint8 *b = g_malloc(n + 4);

        b[0] = (guint8)(n >> 24);
        b[1] = (guint8)(n >> 16);
        b[2] = (guint8)(n >> 8);
        b[3] = (guint8)n;
        memcpy(b + 4, json, n);
        return g_bytes_new_take(b, n + 4);
}

static VrotMframe *parse(GBytes *b, GError **err)
{
        gsize used = 0;
        VrotMframe *f = vrot_mframe_parse(g_bytes_get_data(b, NULL), g_bytes_get_size(b), &used,
                                          err);

        if (f)
                CU_ASSERT_EQUAL(used, g_bytes_get_size(b));
        return f;
}

/* What is encoded parses back to the same members. */
static void test_mframe_round_trip(void)
{
        g_autoptr(VrotMframe) f = vrot_mframe_new(VROT_MFRAME_OFFER_REQUEST);
        g_autoptr(VrotMframe) back = NULL;
        g_autoptr(GBytes) wire = NULL;
        g_autoptr(GError) err = NULL;

        vrot_mframe_set_string(f, "uuid", "6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b");
        vrot_mframe_set_string(f, "kind", "vm");
        vrot_mframe_set_string(f, "name", "web-1");
        vrot_mframe_set_uint(f, "generation", 12345678901ull);
        vrot_mframe_set_uint(f, "owner", 1000);
        vrot_mframe_set_uint(f, "live", TRUE);
        wire = vrot_mframe_encode(f, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(wire);
        back = parse(wire, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(back);
        CU_ASSERT_EQUAL(vrot_mframe_type(back), VROT_MFRAME_OFFER_REQUEST);
        CU_ASSERT_STRING_EQUAL(vrot_mframe_string(back, "name"), "web-1");
        CU_ASSERT_EQUAL(vrot_mframe_uint(back, "generation"), 12345678901ull);
        CU_ASSERT_EQUAL(vrot_mframe_uint(back, "live"), 1);
        CU_ASSERT_EQUAL(vrot_mframe_uint(back, "owner"), 1000);
        CU_ASSERT_STRING_EQUAL(vrot_mframe_type_name(vrot_mframe_type(back)), "offer_request");
}

static void test_mframe_bytes_and_short_input(void)
{
        guint8 nonce[32];
        g_autoptr(GBytes) nb = NULL, wire = NULL;
        g_autoptr(VrotMframe) f = vrot_mframe_new(VROT_MFRAME_HELLO);
        g_autoptr(VrotMframe) back = NULL;
        g_autoptr(GError) err = NULL;
        gsize used = 0;

        memset(nonce, 0x5a, sizeof(nonce));
        nb = g_bytes_new(nonce, sizeof(nonce));
        vrot_mframe_set_bytes(f, "nonce", nb);
        vrot_mframe_set_uint(f, "pcr_mask", 0x81);
        wire = vrot_mframe_encode(f, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(wire);
        /* Every proper prefix is "short": read more, nothing is wrong yet. */
        for (gsize n = 0; n < g_bytes_get_size(wire); n++) {
                CU_ASSERT_PTR_NULL(vrot_mframe_parse(g_bytes_get_data(wire, NULL), n, &used, &err));
                CU_ASSERT(g_error_matches(err, VROT_MFRAME_ERROR, VROT_MFRAME_ERROR_SHORT));
                g_clear_error(&err);
        }
        back = parse(wire, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(back);
        CU_ASSERT_TRUE(g_bytes_equal(vrot_mframe_bytes(back, "nonce"), nb));
}

static void test_mframe_refusals(void)
{
        static const char *const bad[] = {
                "", "[]", "null", "{}", "{\"type\":\"nope\"}", "{\"type\":1}",
                "{\"type\":\"commit\"}",
                "{\"type\":\"commit\",\"migration_id\":\"00112233\"}",
                "{\"type\":\"commit\",\"migration_id\":\"00112233445566778899AABBCCDDEEFF\"}",
                "{\"type\":\"commit\",\"migration_id\":\"00112233445566778899aabbccddeeff\",\"x\":1}",
                "{\"type\":\"hello\",\"nonce\":\"AAAA\",\"pcr_mask\":1}",   /* 3 bytes < 16 */
                "{\"type\":\"hello\",\"nonce\":\"not base64!\",\"pcr_mask\":1}",
                "{\"type\":\"hello\",\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\",\"pcr_mask\":0}",
                "{\"type\":\"abort\",\"migration_id\":\"00112233445566778899aabbccddeeff\","
                "\"reason\":\"\"}",
                "{\"type\":\"offer_request\",\"uuid\":\"6F1C2C1E-7D3A-4A53-9D64-0C1D2E3F4A5B\","
                "\"kind\":\"vm\",\"name\":\"x\",\"generation\":1,\"live\":false}",
                "{\"type\":\"offer_request\",\"uuid\":\"6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b\","
                "\"kind\":\"vm\",\"name\":\"x\",\"generation\":-1,\"live\":false}",
                "{\"type\":\"offer_request\",\"uuid\":\"6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b\","
                "\"kind\":\"vm\",\"name\":\"x\",\"generation\":1,\"owner\":0,\"live\":0}",
                "{\"type\":\"offer_request\",\"uuid\":\"6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b\","
                "\"kind\":\"vm\",\"name\":\"x\",\"generation\":1,\"owner\":4294967296,\"live\":false}",
                "{\"type\":\"evidence\",\"ak_public\":\"AAA=\",\"attest\":\"AA==\","
                "\"signature\":\"AA==\",\"pcr_mask\":16777216,\"pcr_values\":\"AA==\"}",
        };

        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GBytes) b = raw(bad[i]);
                g_autoptr(GError) err = NULL;
                g_autoptr(VrotMframe) f = parse(b, &err);

                if (f)
                        fprintf(stderr, "\n  accepted: %s\n", bad[i]);
                CU_ASSERT_PTR_NULL(f);
                CU_ASSERT(g_error_matches(err, VROT_MFRAME_ERROR, VROT_MFRAME_ERROR_INVALID));
        }
        /* The template the cases edit parses. */
        {
                g_autoptr(GBytes) b = raw("{\"type\":\"commit\",\"migration_id\":\"" "00112233445566778899aabbccddeeff" "\"}");
                g_autoptr(VrotMframe) f = parse(b, NULL);

                CU_ASSERT_PTR_NOT_NULL(f);
                CU_ASSERT_STRING_EQUAL(f ? vrot_mframe_string(f, "migration_id") : "", id);
        }
        /* A length over the limit is refused before anything is read. */
        {
                static const guint8 huge[] = { 0x00, 0x40, 0x00, 0x01, '{' };
                g_autoptr(GError) err = NULL;
                gsize used = 0;

                CU_ASSERT_PTR_NULL(vrot_mframe_parse(huge, sizeof(huge), &used, &err));
                CU_ASSERT(g_error_matches(err, VROT_MFRAME_ERROR, VROT_MFRAME_ERROR_TOO_LARGE));
        }
        /* An incomplete frame does not encode. */
        {
                g_autoptr(VrotMframe) f = vrot_mframe_new(VROT_MFRAME_ABORT);
                g_autoptr(GError) err = NULL;

                vrot_mframe_set_string(f, "migration_id", id);
                CU_ASSERT_PTR_NULL(vrot_mframe_encode(f, &err));
                CU_ASSERT(g_error_matches(err, VROT_MFRAME_ERROR, VROT_MFRAME_ERROR_INVALID));
        }
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_mframe_round_trip),
                UNIT_CASE(test_mframe_bytes_and_short_input),
                UNIT_CASE(test_mframe_refusals),
        };

        return UNIT_RUN("mframe", cases);
}
