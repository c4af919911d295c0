/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "mbundle.h"
#include "unit.h"

static void test_mbundle_round_trip(void)
{
        static const guint8 perm[] = "permanent", save[] = "savestate";
        VrotMbundle b = { .data = { perm, NULL, save }, .len = { sizeof(perm), 0, sizeof(save) } };
        g_autoptr(GBytes) packed = vrot_mbundle_pack(&b);
        g_autoptr(GError) err = NULL;
        VrotMbundle back;
        gsize len = 0;
        const guint8 *p = g_bytes_get_data(packed, &len);

        CU_ASSERT_TRUE_FATAL(vrot_mbundle_parse(p, len, &back, &err));
        CU_ASSERT_EQUAL(back.len[0], sizeof(perm));
        CU_ASSERT_EQUAL(memcmp(back.data[0], perm, sizeof(perm)), 0);
        CU_ASSERT_EQUAL(back.len[1], 0);
        CU_ASSERT_EQUAL(back.len[2], sizeof(save));
        CU_ASSERT_EQUAL(memcmp(back.data[2], save, sizeof(save)), 0);
        /* Every shorter prefix is refused, and so is a byte more. */
        for (gsize cut = 0; cut < len; cut++)
                CU_ASSERT_FALSE(vrot_mbundle_parse(p, cut, &back, NULL));
        {
                g_autofree guint8 *more = g_malloc(len + 1);
                memcpy(more, p, len);
                more[len] = 0;
                CU_ASSERT_FALSE(vrot_mbundle_parse(more, len + 1, &back, NULL));
        }
}

static void test_mbundle_refuses(void)
{
#define HDR "VROTBND1"
        static const struct { const char *bytes; gsize len; } bad[] = {
                { "VROTBND2\0\0\0\1\0\0\0\1\0\0\0\1x", 21 },             /* magic */
                { HDR "\0\0\0\0", 12 },                                 /* no blob */
                { HDR "\0\0\0\4", 12 },                                 /* too many */
                { HDR "\0\0\0\1\0\0\0\2\0\0\0\1x", 21 },                 /* no permanent */
                { HDR "\0\0\0\1\0\0\0\4\0\0\0\1x", 21 },                 /* type 4 */
                { HDR "\0\0\0\1\0\0\0\1\0\0\0\0", 20 },                  /* empty blob */
                { HDR "\0\0\0\1\0\0\0\1\0\0\0\2x", 21 },                 /* truncated */
                { HDR "\0\0\0\2\0\0\0\1\0\0\0\1x\0\0\0\1\0\0\0\1y", 30 }, /* twice type 1 */
                { HDR "\0\0\0\2\0\0\0\2\0\0\0\1x\0\0\0\1\0\0\0\1y", 30 }, /* descending */
        };

        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GError) err = NULL;
                VrotMbundle b;

                CU_ASSERT_FALSE(vrot_mbundle_parse((const guint8 *)bad[i].bytes, bad[i].len, &b, &err));
                CU_ASSERT(g_error_matches(err, VROT_MBUNDLE_ERROR, VROT_MBUNDLE_ERROR_INVALID));
        }
#undef HDR
}

static void test_mbundle_live(void)
{
        static const gchar *const certs[2] = { NULL, "-----BEGIN CERTIFICATE-----\nMIIB\n" };
        guint8 key[VROT_MBUNDLE_KEY_LEN];
        g_autoptr(GBytes) packed = NULL;
        g_auto(GStrv) back = NULL;
        const guint8 *got = NULL, *p;
        gsize len = 0;

        memset(key, 0x5a, sizeof(key));
        packed = vrot_mbundle_pack_live(key, certs);
        p = g_bytes_get_data(packed, &len);
        CU_ASSERT_EQUAL(len, sizeof(key) + 8 + strlen(certs[1]));
        CU_ASSERT_TRUE_FATAL(vrot_mbundle_parse_live(p, len, &got, &back, NULL));
        CU_ASSERT_PTR_EQUAL(got, p);
        CU_ASSERT_EQUAL(memcmp(got, key, sizeof(key)), 0);
        CU_ASSERT_STRING_EQUAL(back[0], "");
        CU_ASSERT_STRING_EQUAL(back[1], certs[1]);
        /* Every cut is refused, and so is a byte more or a control character. */
        for (gsize cut = 0; cut < len; cut++) {
                g_auto(GStrv) none = NULL;
                CU_ASSERT_FALSE(vrot_mbundle_parse_live(p, cut, &got, &none, NULL));
        }
        {
                g_autofree guint8 *bad = g_memdup2(p, len + 1);
                g_auto(GStrv) none = NULL;
                g_autoptr(GError) err = NULL;

                bad[len] = 0;
                CU_ASSERT_FALSE(vrot_mbundle_parse_live(bad, len + 1, &got, &none, &err));
                CU_ASSERT(g_error_matches(err, VROT_MBUNDLE_ERROR, VROT_MBUNDLE_ERROR_INVALID));
                bad[len - 2] = 0x07;
                CU_ASSERT_FALSE(vrot_mbundle_parse_live(bad, len, &got, &none, NULL));
        }
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_mbundle_round_trip),
                UNIT_CASE(test_mbundle_refuses),
                UNIT_CASE(test_mbundle_live),
        };

        return UNIT_RUN("mbundle", cases);
}
