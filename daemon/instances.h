/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Instance lifecycle (DESIGN "Lifecycle"): create (state, manufacture, EK
 * endorsement) -> start/stop any number of times -> delete (state wiped,
 * tombstone kept).  Workers run through the fork server; a worker that
 * dies unexpectedly is restarted from its last durable state with backoff,
 * one whose state is refused (exit 3) is not.
 */

#include <glib.h>
#include <sys/types.h>

#include "config.h"
#include "host.h"
#include "mkey.h"
#include "pool.h"
#include "registry.h"

#define VROT_INSTANCES_ERROR (vrot_instances_error_quark())
GQuark vrot_instances_error_quark(void);

typedef enum {
        VROT_INSTANCES_ERROR_FAILED,
        VROT_INSTANCES_ERROR_NOT_FOUND,
        VROT_INSTANCES_ERROR_EXISTS,
        VROT_INSTANCES_ERROR_INVALID,
        VROT_INSTANCES_ERROR_REFUSED,   /* state refused, rollback detected */
} VrotInstancesError;

typedef struct VrotInstances VrotInstances;

/** What the API reports of one instance. */
typedef struct VrotInstanceStatus {
        const VrotInstance *entry;      /* transfer none */
        gboolean running;               /* its control socket listens */
        gboolean starting;              /* started, not listening yet, or backing off */
        GPid pid;
        gchar *ctrl_path;               /* transfer full */
        gchar *data_path;               /* transfer full; services only */
} VrotInstanceStatus;

VrotInstances *vrot_instances_new(VrotHost *host, const VrotConfig *cfg, const gchar *vtpm_path,
                                  GError **error);
void vrot_instances_free(VrotInstances *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotInstances, vrot_instances_free)

/** @uuid nullable: a new one is made.  @ek_mask: the EKs to make and
 *  endorse (1 << VrotEndorseEk each; 0: both).  *@ret_uuid (transfer full).
 *  *@ret_premade (nullable): TRUE when the vTPM came from the pool (its
 *  EKs made before; pool.h), FALSE when it was manufactured whole. */
gboolean vrot_instances_create(VrotInstances *self, const gchar *uuid, VrotInstanceKind kind,
                               const gchar *name, uid_t owner, guint ek_mask, gchar **ret_uuid,
                               gboolean *ret_premade, GError **error);

/** vrot_instances_pool_status: the pool's state, for host.info. */
void vrot_instances_pool_status(VrotInstances *self, VrotPoolStatus *ret);
/**
 * VrotInstancesStartFunc:
 * How a start went: @error NULL when the control socket listens.
 */
typedef void (*VrotInstancesStartFunc)(const gchar *uuid, const GError *error, gpointer data);

/**
 * vrot_instances_start_async:
 * Starts the instance's worker (idempotent) and calls @fn once its control
 * socket listens or the start failed (REFUSED: its state was refused);
 * maybe at once, before returning.  Starts of many instances overlap.
 */
void vrot_instances_start_async(VrotInstances *self, const gchar *uuid, VrotInstancesStartFunc fn,
                                gpointer data);
gboolean vrot_instances_stop(VrotInstances *self, const gchar *uuid, GError **error);
gboolean vrot_instances_delete(VrotInstances *self, const gchar *uuid, GError **error);

/** vrot_instances_status: fills @ret (free with _status_clear); NOT_FOUND. */
gboolean vrot_instances_status(VrotInstances *self, const gchar *uuid, VrotInstanceStatus *ret,
                               GError **error);
void vrot_instances_status_clear(VrotInstanceStatus *st);

/** vrot_instances_list: (transfer container) UUIDs of every entry, tombstones too. */
GPtrArray *vrot_instances_list(VrotInstances *self);

/** vrot_instances_ak_cert_pem: (transfer full) the certificate of a service vTPM's AK, or NULL. */
gchar *vrot_instances_ak_cert_pem(VrotInstances *self, const gchar *uuid);
/** vrot_instances_set_ak_cert_pem: stores it (durably, 0644: it is public). */
gboolean vrot_instances_set_ak_cert_pem(VrotInstances *self, const gchar *uuid, const gchar *pem,
                                        GError **error);

/** vrot_instances_ek_cert_pem: (transfer full) an EK certificate; @type "rsa" or "ecc". */
gchar *vrot_instances_ek_cert_pem(VrotInstances *self, const gchar *uuid, const gchar *type,
                                  GError **error);

guint vrot_instances_n_running(VrotInstances *self);

/**
 * vrot_instances_registry:
 * (transfer none) the registry, for the modules whose records live in it
 * (service identities, identity.c); after changing it, _commit().
 */
VrotRegistry *vrot_instances_registry(VrotInstances *self);

/** vrot_instances_commit: writes the registry durably (REGISTRY_ERROR_IO). */
gboolean vrot_instances_commit(VrotInstances *self, GError **error);

/*
 * Migration (docs/migration.md), on the main loop.  The journal is the
 * registry's (registry.h): each step below changes it and writes it
 * durably before it returns.
 *
 * Source: _migrate_check() (a live, unjournaled instance, stopped for a
 * cold migration, a running VM for a live one; what an offer request says
 * of it), _migrate_lock() (LOCKED: it cannot start),
 * _export() (its state's plaintext, lib/mbundle.h), then
 * _migrate_decide() (COMMITTED: a tombstone, the host NV counter moves,
 * the state files go; or ABORTED: live again), and _migrate_forget() once
 * the destination heard the decision.
 *
 * Destination: _import_check(), _import() (IMPORTING, the state written
 * under this host's key, the EK certificates issued again by this host's
 * CA and written into the vTPM's NV, then PREPARED: not startable), and
 * _import_end() (the source's decision: DONE and live, or discarded).
 */
gboolean vrot_instances_migrate_check(VrotInstances *self, const gchar *uuid, gboolean live,
                                      VrotInstance **ret_copy, GError **error);
gboolean vrot_instances_migrate_lock(VrotInstances *self, const gchar *uuid, guint64 generation,
                                     const gchar *id, const gchar *peer, const gchar *peer_name,
                                     GError **error);
/** vrot_instances_export: (transfer full) the bundle of a LOCKED instance, wiped when freed. */
GBytes *vrot_instances_export(VrotInstances *self, const gchar *uuid, GError **error);
gboolean vrot_instances_migrate_decide(VrotInstances *self, const gchar *id, gboolean commit,
                                       GError **error);
gboolean vrot_instances_migrate_forget(VrotInstances *self, const gchar *id, GError **error);

/** vrot_instances_import_check: may @uuid come here?  (EXISTS: it lives here, or was deleted.) */
gboolean vrot_instances_import_check(VrotInstances *self, const gchar *uuid, GError **error);
/**
 * vrot_instances_import:
 * @meta: uuid, name, kind, owner of the instance (from the offer request)
 * @bundle: the opened envelope's plaintext
 */
gboolean vrot_instances_import(VrotInstances *self, const VrotInstance *meta, const gchar *id,
                               const gchar *peer_name, GBytes *bundle, GError **error);
/**
 * vrot_instances_import_end:
 * The source's decision on migration @id, which must come from @peer_name:
 * commit makes a PREPARED instance live (DONE; a DONE one answers again),
 * abort discards an IMPORTING or PREPARED one.  NOT_FOUND: no such
 * migration here.
 */
gboolean vrot_instances_import_end(VrotInstances *self, const gchar *id, const gchar *peer_name,
                                   gboolean commit, GError **error);

/*
 * Live migration (docs/migration.md "Live migration"): QEMU carries the
 * state in its migration stream as stateblobs, which every worker vrotd
 * starts hands out or takes in only under a migration key (vrot-vtpm
 * --migrate).  The source's running worker gets the key with the LOCKED
 * record (_migrate_lock_live()); the destination starts an incoming worker
 * with it (_import_live(): PREPARED at once, it waits for QEMU).  The
 * source commits only when the destination's worker took the permanent
 * state (_migrate_received() on the destination).
 */
gboolean vrot_instances_migrate_lock_live(VrotInstances *self, const gchar *uuid, const gchar *id,
                                          const gchar *peer, const gchar *peer_name,
                                          const guint8 *key, GError **error);
/* @certs: the source's RSA and ECC EK certificates (PEM, nullable), kept as
 * this instance's until its first start here issues ours. */
gboolean vrot_instances_import_live(VrotInstances *self, const VrotInstance *meta, const gchar *id,
                                    const gchar *peer_name, const guint8 *key,
                                    const gchar *const certs[2], GError **error);
gboolean vrot_instances_migrate_received(VrotInstances *self, const gchar *id,
                                         const gchar *peer_name, GError **error);

/** vrot_instances_migrate_key: one request on the worker's migration-key socket (lib/mkey.h). */
gboolean vrot_instances_migrate_key(VrotInstances *self, const gchar *uuid,
                                    const VrotMkeyRequest *req, VrotMkeyAnswer *ret, GError **error);

/**
 * vrot_instances_migrations_pending:
 * (At daemon start vrot_instances_new() discarded every IMPORTING copy and
 * decided abort for every cold LOCKED source.)  Returns: (transfer full)
 * copies of the records whose decision the destination has yet to hear
 * (COMMITTED, ABORTED), and of the live LOCKED ones found at start, whose
 * decision waits for the destination's word on the state.
 */
GPtrArray *vrot_instances_migrations_pending(VrotInstances *self);

/** vrot_instances_stop_all: at daemon exit, every worker stopped cleanly. */
void vrot_instances_stop_all(VrotInstances *self);
