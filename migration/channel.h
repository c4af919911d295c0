/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The host-to-host migration channel (docs/migration.md, "The channel";
 * R-MIG-1, R-AUTH-2): TLS 1.3 only, both hosts authenticated by transport
 * certificates under the fleet root, whose keys sign in each host's TPM
 * (lib/tlskey.h).  A peer is accepted only if its chain reaches the fleet
 * root (and survives the CRL, if one is given), its certificate carries
 * id-vrot-kp-migration-peer, and its name (the certificate's dNSName) is in
 * the migration policy.  All of that is decided during the handshake:
 * nothing is read from a peer that fails it.  After the handshake the
 * channel carries frames (lib/mframe.h).
 *
 * Blocking I/O on a connected socket, each call bounded by the
 * configuration's timeout: the protocol code runs it in a thread of its own,
 * which opens and frees the channel (SIGPIPE is blocked in that thread
 * meanwhile, lib/sigpipe.h).
 */

#include <glib.h>
#include <openssl/x509.h>

#include "mframe.h"
#include "mpolicy.h"

#define VROT_MCHANNEL_ERROR (vrot_mchannel_error_quark())
GQuark vrot_mchannel_error_quark(void);

typedef enum {
        VROT_MCHANNEL_ERROR_PEER,       /* the peer failed authentication: chain, EKU, name */
        VROT_MCHANNEL_ERROR_TLS,        /* the TLS handshake or a record failed */
        VROT_MCHANNEL_ERROR_IO,         /* the connection closed or timed out */
        VROT_MCHANNEL_ERROR_FRAME,      /* the peer sent a malformed frame */
} VrotMchannelError;

typedef struct VrotMchannelConfig {
        X509 *cert;                     /* this host's transport certificate */
        STACK_OF(X509) *chain;          /* its issuers up to, not including, the root */
        EVP_PKEY *key;                  /* its key (lib/tlskey.h: signs in the host TPM) */
        X509 *root;                     /* the fleet root */
        X509_CRL *crl;                  /* nullable: revoked host CAs or transport certs */
        const VrotMpolicy *policy;      /* the peers accepted */
        guint timeout_ms;               /* per read or write; 0: 30 s */
} VrotMchannelConfig;

typedef struct VrotMchannel VrotMchannel;

/**
 * vrot_mchannel_accept / vrot_mchannel_connect:
 * @fd: a connected stream socket (taken: the channel closes it)
 *
 * The TLS 1.3 handshake as server or client, and the checks above.
 * Returns: (transfer full): the channel, or NULL with @error (_PEER naming
 * what failed, _TLS, _IO).
 */
VrotMchannel *vrot_mchannel_accept(int fd, const VrotMchannelConfig *cfg, GError **error);
VrotMchannel *vrot_mchannel_connect(int fd, const VrotMchannelConfig *cfg, GError **error);

void vrot_mchannel_free(VrotMchannel *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotMchannel, vrot_mchannel_free)

/** vrot_mchannel_peer_name: (transfer none) the authenticated peer's name. */
const gchar *vrot_mchannel_peer_name(const VrotMchannel *c);

/** vrot_mchannel_peer_issuer: (transfer none) the peer's host CA, as its verified chain has it. */
X509 *vrot_mchannel_peer_issuer(const VrotMchannel *c);

/**
 * vrot_mchannel_binding:
 * 32 bytes of the TLS exporter ("EXPORTER-vrot-migration"), the same on
 * both ends of this session only: what each side's quote is bound to.
 */
gboolean vrot_mchannel_binding(VrotMchannel *c, guint8 out[32], GError **error);

gboolean vrot_mchannel_send(VrotMchannel *c, const VrotMframe *frame, GError **error);

/** vrot_mchannel_receive: (transfer full) the next frame, or NULL with @error. */
VrotMframe *vrot_mchannel_receive(VrotMchannel *c, GError **error);
