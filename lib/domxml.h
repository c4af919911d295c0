/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * What the libvirt hook needs from a domain's XML (libvirt's domain format,
 * https://libvirt.org/formatdomain.html): the domain's name and UUID, and
 * its TPM if it has one on libvirt's external backend
 * (<tpm><backend type='external'><source type='unix' path='...'/>), the
 * backend vrot's vTPMs use.  The XML comes from libvirt on the hook's
 * stdin and is parsed as untrusted input: no network, no document type
 * declaration (so no entities), at most VROT_DOMXML_MAX bytes.
 */

#include <glib.h>

#define VROT_DOMXML_ERROR (vrot_domxml_error_quark())
GQuark vrot_domxml_error_quark(void);

typedef enum {
        VROT_DOMXML_ERROR_PARSE,        /* not well-formed, or too large */
        VROT_DOMXML_ERROR_INVALID,      /* well-formed, but not a usable domain */
} VrotDomxmlError;

#define VROT_DOMXML_MAX (4u << 20)

typedef struct VrotDomxml {
        gchar *name;            /* <name> */
        gchar *uuid;            /* <uuid>, canonical lower case */
        gchar *tpm_model;       /* <tpm model=...>, NULL without a TPM */
        gchar *tpm_socket;      /* the external backend's UNIX socket, else NULL */
} VrotDomxml;

/**
 * vrot_domxml_parse:
 * Parses @len bytes of @buf, a libvirt <domain> (also wrapped, as libvirt's
 * hooks sometimes send it, in <domstatus> or another element: the first
 * <domain> found is used).  A domain must have a name and a valid UUID.
 * Several <tpm> elements on the external backend are refused (a domain
 * has one TPM).
 * Returns: (transfer full) the result, or NULL with an error.
 */
VrotDomxml *vrot_domxml_parse(const gchar *buf, gsize len, GError **error);

void vrot_domxml_free(VrotDomxml *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotDomxml, vrot_domxml_free)
