/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "domxml.h"
#include "unit.h"

#define UUID "c7a5fdbd-cdaf-9455-926a-d65c16db1809"
#define SOCK "/run/vrot/" UUID "/ctrl.sock"
#define EXTERNAL_TPM "<tpm model='tpm-crb'><backend type='external'><source type='unix' " \
                     "mode='connect' path='" SOCK "'/></backend></tpm>"

static const char *domain(const char *devices)
{
        static char buf[4096];

        g_snprintf(buf, sizeof(buf),
                   "<domain type='qemu' id='7'>\n  <name>web-1</name>\n  <uuid>" UUID "</uuid>\n"
                   "  <memory unit='KiB'>262144</memory>\n  <os><type arch='x86_64'>hvm</type></os>\n"
                   "  <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n    %s\n"
                   "  </devices>\n</domain>\n", devices);
        return buf;
}

static VrotDomxml *parse(const char *xml, GError **error)
{
        return vrot_domxml_parse(xml, strlen(xml), error);
}

static void test_domxml_parse_external_tpm(void)
{
        g_autoptr(GError) err = NULL;
        g_autoptr(VrotDomxml) d = parse(domain("<disk type='file'/>" EXTERNAL_TPM), &err);

        CU_ASSERT_PTR_NOT_NULL_FATAL(d);
        CU_ASSERT_STRING_EQUAL(d->name, "web-1");
        CU_ASSERT_STRING_EQUAL(d->uuid, UUID);
        CU_ASSERT_STRING_EQUAL(d->tpm_model, "tpm-crb");
        CU_ASSERT_STRING_EQUAL(d->tpm_socket, SOCK);
}

static void test_domxml_parse_no_vrot_tpm(void)
{
        static const char *const devices[] = {
                "",
                "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>",
                ("<tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/>"
                 "</backend></tpm>"),
        };

        for (gsize i = 0; i < G_N_ELEMENTS(devices); i++) {
                g_autoptr(GError) err = NULL;
                g_autoptr(VrotDomxml) d = parse(domain(devices[i]), &err);

                CU_ASSERT_PTR_NOT_NULL_FATAL(d);
                CU_ASSERT_PTR_NULL(d->tpm_socket);
                CU_ASSERT_STRING_EQUAL(d->uuid, UUID);
        }
}

static void test_domxml_parse_wrapped(void)
{
        g_autofree gchar *xml = g_strdup_printf("<domstatus state='running'><monitor path='/x'/>%s"
                                                "</domstatus>", domain(EXTERNAL_TPM));
        g_autoptr(VrotDomxml) d = parse(xml, NULL);

        CU_ASSERT_PTR_NOT_NULL_FATAL(d);
        CU_ASSERT_STRING_EQUAL(d->tpm_socket, SOCK);
}

static void test_domxml_uuid_made_canonical(void)
{
        const char *xml = "<domain><name>a</name><uuid>  C7A5FDBD-CDAF-9455-926A-D65C16DB1809 </uuid>"
                          "</domain>";
        g_autoptr(VrotDomxml) d = parse(xml, NULL);

        CU_ASSERT_PTR_NOT_NULL_FATAL(d);
        CU_ASSERT_STRING_EQUAL(d->uuid, UUID);
}

static void test_domxml_refusals(void)
{
        static const struct {
                const char *xml;
                gint code;
        } cases[] = {
                { "", VROT_DOMXML_ERROR_PARSE },
                { "<domain><name>a</name>", VROT_DOMXML_ERROR_PARSE },
                { "not xml at all", VROT_DOMXML_ERROR_PARSE },
                { "<domain><name>a</name><uuid>" UUID "</uuid></domain><x/>", VROT_DOMXML_ERROR_PARSE },
                { "<network><name>a</name></network>", VROT_DOMXML_ERROR_INVALID },
                { "<domain><uuid>" UUID "</uuid></domain>", VROT_DOMXML_ERROR_INVALID },
                { "<domain><name>a</name></domain>", VROT_DOMXML_ERROR_INVALID },
                { "<domain><name>a</name><uuid>c7a5fdbd</uuid></domain>", VROT_DOMXML_ERROR_INVALID },
                { "<domain><name> </name><uuid>" UUID "</uuid></domain>", VROT_DOMXML_ERROR_INVALID },
                { "<!DOCTYPE domain [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;'>]>"
                  "<domain><name>&b;</name><uuid>" UUID "</uuid></domain>", VROT_DOMXML_ERROR_INVALID },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) err = NULL;
                g_autoptr(VrotDomxml) d = parse(cases[i].xml, &err);

                CU_ASSERT_PTR_NULL(d);
                CU_ASSERT_TRUE(g_error_matches(err, VROT_DOMXML_ERROR, cases[i].code));
        }
}

static void test_domxml_bad_tpm_refused(void)
{
        static const char *const devices[] = {
                EXTERNAL_TPM EXTERNAL_TPM,
                "<tpm model='tpm-crb'><backend type='external'/></tpm>",
                "<tpm><backend type='external'><source type='unix' path='relative.sock'/></backend></tpm>",
                "<tpm><backend type='external'><source type='tcp' host='h' service='1'/></backend></tpm>",
        };

        for (gsize i = 0; i < G_N_ELEMENTS(devices); i++) {
                g_autoptr(GError) err = NULL;
                g_autoptr(VrotDomxml) d = parse(domain(devices[i]), &err);

                CU_ASSERT_PTR_NULL(d);
                CU_ASSERT_TRUE(g_error_matches(err, VROT_DOMXML_ERROR, VROT_DOMXML_ERROR_INVALID));
        }
}

static void test_domxml_too_large(void)
{
        gsize len = VROT_DOMXML_MAX + 1;
        g_autofree gchar *big = g_malloc(len);
        g_autoptr(GError) err = NULL;

        memset(big, ' ', len);
        CU_ASSERT_PTR_NULL(vrot_domxml_parse(big, len, &err));
        CU_ASSERT_TRUE(g_error_matches(err, VROT_DOMXML_ERROR, VROT_DOMXML_ERROR_PARSE));
}

static const UnitCase cases[] = {
        UNIT_CASE(test_domxml_parse_external_tpm),
        UNIT_CASE(test_domxml_parse_no_vrot_tpm),
        UNIT_CASE(test_domxml_parse_wrapped),
        UNIT_CASE(test_domxml_uuid_made_canonical),
        UNIT_CASE(test_domxml_refusals),
        UNIT_CASE(test_domxml_bad_tpm_refused),
        UNIT_CASE(test_domxml_too_large),
};

int main(void)
{
        return UNIT_RUN("domxml", cases);
}
