/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The libvirt domain XML, read with libxml2 (domxml.h).  Parser options:
 * XML_PARSE_NONET (never fetch), no XML_PARSE_NOENT (entities stay
 * references, so no expansion bombs), no DTD loading or validation,
 * XML_PARSE_NOBLANKS; XML_PARSE_HUGE is not set, which keeps libxml2's
 * own depth and size limits.
 */
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "domxml.h"
#include "uuid.h"

G_DEFINE_QUARK(vrot-domxml-error-quark, vrot_domxml_error)

G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlDoc, xmlFreeDoc)

void vrot_domxml_free(VrotDomxml *d)
{
        if (!d)
                return;
        g_free(d->name);
        g_free(d->uuid);
        g_free(d->tpm_model);
        g_free(d->tpm_socket);
        g_free(d);
}

static gboolean is(const xmlNode *n, const char *name)
{
        return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static const xmlNode *child(const xmlNode *parent, const char *name)
{
        for (const xmlNode *n = parent->children; n; n = n->next)
                if (is(n, name))
                        return n;
        return NULL;
}

/* The first <domain>, depth first: libvirt wraps it in <domstatus> at times. */
static const xmlNode *find_domain(const xmlNode *n)
{
        for (; n; n = n->next) {
                const xmlNode *found;
                if (is(n, "domain"))
                        return n;
                if (n->type == XML_ELEMENT_NODE && (found = find_domain(n->children)))
                        return found;
        }
        return NULL;
}

/* (transfer full) an element's text, stripped; NULL if empty. */
static gchar *text_of(const xmlNode *n)
{
        xmlChar *t = n ? xmlNodeGetContent(n) : NULL;
        gchar *s = t ? g_strstrip(g_strdup((const char *)t)) : NULL;

        xmlFree(t);
        if (s && !*s)
                g_clear_pointer(&s, g_free);
        return s;
}

static gchar *attr(const xmlNode *n, const char *name)
{
        xmlChar *v = n ? xmlGetProp(n, (const xmlChar *)name) : NULL;
        gchar *s = v ? g_strdup((const char *)v) : NULL;

        xmlFree(v);
        return s;
}

static gboolean invalid(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static gboolean invalid(GError **error, const char *fmt, ...)
{
        va_list ap;
        g_autofree gchar *msg = NULL;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error_literal(error, VROT_DOMXML_ERROR, VROT_DOMXML_ERROR_INVALID, msg);
        return FALSE;
}

/* <tpm model=M><backend type='external'><source type='unix' path=P/></backend></tpm> */
static gboolean read_tpm(const xmlNode *devices, VrotDomxml *d, GError **error)
{
        for (const xmlNode *t = devices ? devices->children : NULL; t; t = t->next) {
                const xmlNode *backend = is(t, "tpm") ? child(t, "backend") : NULL;
                const xmlNode *source = backend ? child(backend, "source") : NULL;
                g_autofree gchar *btype = attr(backend, "type"), *stype = attr(source, "type");

                if (!is(t, "tpm"))
                        continue;
                if (!btype || strcmp(btype, "external") != 0)
                        continue;       /* libvirt's own swtpm, or a passthrough TPM */
                if (d->tpm_socket)
                        return invalid(error, "domain %s has more than one external TPM", d->name);
                if (!stype || strcmp(stype, "unix") != 0 || !(d->tpm_socket = attr(source, "path")) ||
                    !g_path_is_absolute(d->tpm_socket))
                        return invalid(error, "domain %s: its external TPM backend has no absolute "
                                       "UNIX socket path", d->name);
                d->tpm_model = attr(t, "model");
        }
        return TRUE;
}

VrotDomxml *vrot_domxml_parse(const gchar *buf, gsize len, GError **error)
{
        g_autoptr(VrotDomxml) d = g_new0(VrotDomxml, 1);
        g_autoptr(xmlDoc) doc = NULL;
        g_autofree gchar *uuid = NULL;
        const xmlNode *dom;
        guint8 raw[16];
        char canon[VROT_UUID_STR_LEN + 1];

        if (len > VROT_DOMXML_MAX || len > G_MAXINT) {
                g_set_error(error, VROT_DOMXML_ERROR, VROT_DOMXML_ERROR_PARSE,
                            "the domain XML is larger than %u bytes", VROT_DOMXML_MAX);
                return NULL;
        }
        doc = xmlReadMemory(buf, (int)len, "domain.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR |
                            XML_PARSE_NOWARNING);
        if (!doc) {
                xmlErrorPtr e = xmlGetLastError();
                g_autofree gchar *why = g_strdup(e && e->message ? e->message : "");

                g_set_error(error, VROT_DOMXML_ERROR, VROT_DOMXML_ERROR_PARSE,
                            "the domain XML is not well-formed%s%s", *g_strstrip(why) ? ": " : "", why);
                xmlResetLastError();
                return NULL;
        }
        /* libvirt never sends a DTD; refusing one keeps entities (and the
         * expansion attacks they allow) out altogether. */
        if (doc->intSubset || doc->extSubset) {
                invalid(error, "the domain XML has a document type declaration");
                return NULL;
        }
        if (!(dom = find_domain(xmlDocGetRootElement(doc)))) {
                invalid(error, "no <domain> element in the XML");
                return NULL;
        }
        d->name = text_of(child(dom, "name"));
        uuid = text_of(child(dom, "uuid"));
        if (!d->name || !uuid || vrot_uuid_parse(uuid, raw, NULL) < 0) {
                invalid(error, "the domain has no name or no valid UUID");
                return NULL;
        }
        vrot_uuid_format(raw, canon);
        d->uuid = g_strdup(canon);
        if (!read_tpm(child(dom, "devices"), d, error))
                return NULL;
        return g_steal_pointer(&d);
}
