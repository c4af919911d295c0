/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * vrotd's side of the migration channel (docs/migration.md, R-MIG-1): the
 * listener of [migration] listen, and the attested handshake both ends run
 * before anything else.  Each side sends a hello (a fresh nonce, and the
 * host PCRs its policy wants), then its evidence: a quote of those PCRs by
 * the host AK and the AK's certification of the host CA key, both over
 * SHA-256("vrot migration quote v1" ‖ the peer's nonce ‖ the TLS exporter),
 * so they are fresh and bound to this TLS session.  Each side checks that
 * the certified key is the key of the CA that issued the peer's transport
 * certificate, and that the PCRs satisfy its migration policy.  A peer that
 * fails gets nothing but an error frame.
 *
 * Each connection runs in a thread; host-TPM work goes to the main loop
 * (maincall.h).  Then one request: a cold migration's offer, state and
 * decision, or a decision told again after a broken session.
 */

#include <glib.h>
#include <json-glib/json-glib.h>

#include "config.h"
#include "host.h"
#include "instances.h"

#define VROT_MIGRATE_ERROR (vrot_migrate_error_quark())
GQuark vrot_migrate_error_quark(void);

typedef enum {
        VROT_MIGRATE_ERROR_CONFIG,      /* [migration] is incomplete or unreadable */
        VROT_MIGRATE_ERROR_REFUSED,     /* the peer's evidence fails the policy */
        VROT_MIGRATE_ERROR_PEER,        /* the peer refused us, or broke the protocol */
} VrotMigrateError;

typedef struct VrotMigration VrotMigration;

/**
 * vrot_migration_new:
 * From [migration] of @cfg: NULL without error when the host does not
 * migrate (no name).  With a name, a policy is required; with listen, the
 * socket is bound and served from the main loop at once.
 */
VrotMigration *vrot_migration_new(VrotHost *host, VrotInstances *instances, const VrotConfig *cfg,
                                  GError **error);
void vrot_migration_free(VrotMigration *m);

/**
 * vrot_migration_quiesce:
 * At exit, while the API can still answer: stops listening, shuts down
 * every migration connection and returns when every thread has ended and
 * every job has answered (the host-TPM work they wait for runs here).  A
 * source decision that was not heard is told again after the restart.
 */
void vrot_migration_quiesce(VrotMigration *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotMigration, vrot_migration_free)

/** vrot_migration_port: the TCP port listened on (0: not listening). */
guint16 vrot_migration_port(const VrotMigration *m);

typedef void (*VrotMigrateDoneFunc)(JsonNode *result, GError *error, gpointer data);

/**
 * vrot_migration_check_async:
 * migration.check: connects to @to ("ADDR:PORT"), runs the attested
 * handshake, and calls @fn on the main loop with {"peer", "pcrs"} or the
 * reason it failed.
 */
void vrot_migration_check_async(VrotMigration *m, const gchar *to, VrotMigrateDoneFunc fn,
                                gpointer data);

/**
 * vrot_migration_migrate_async:
 * instance.migrate (cold; docs/migration.md "The protocol"): the stopped
 * instance @uuid goes to @to.  @fn hears {"uuid", "peer", "migration_id",
 * "decision": "commit", "peer_confirmed", "ms", ...} once this host
 * committed (the instance is the destination's), or the reason it did not
 * (the instance is live here, as it was).
 */
void vrot_migration_migrate_async(VrotMigration *m, const gchar *uuid, const gchar *to,
                                  VrotMigrateDoneFunc fn, gpointer data);

/**
 * vrot_migration_prepare_async:
 * instance.migrate_prepare (docs/migration.md "Live migration"): the
 * running VM @uuid's vTPM and the destination @to share a fresh migration
 * key: the source is LOCKED and its worker seals its stateblobs under the
 * key; the destination runs an incoming worker that takes only those.
 * QEMU's migration moves the state; then vrot_migration_commit_async().
 * @fn hears {"uuid", "peer", "migration_id", "state": "prepared"}.
 */
void vrot_migration_prepare_async(VrotMigration *m, const gchar *uuid, const gchar *to,
                                  VrotMigrateDoneFunc fn, gpointer data);

/**
 * vrot_migration_commit_async:
 * instance.migrate_commit: once the destination's worker took the state
 * from QEMU, the source decides commit (its worker stopped, a tombstone,
 * the NV counter) and the destination's copy goes live.  Refused, nothing
 * decided, while the destination has not received the state.
 */
void vrot_migration_commit_async(VrotMigration *m, const gchar *uuid, VrotMigrateDoneFunc fn,
                                 gpointer data);

/**
 * vrot_migration_abort:
 * instance.migrate_abort: the source decides abort (its worker hands out
 * no more stateblobs; the instance stays here) and tells the destination,
 * which discards its incoming worker.
 */
JsonNode *vrot_migration_abort(VrotMigration *m, const gchar *uuid, GError **error);
