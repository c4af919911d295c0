/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The pool of pre-manufactured vTPMs (vrotd(8) POOL, README "Decisions").
 *
 * Making the RSA-2048 EK is the slow and erratic part of instance.create
 * (libtpms's prime search: ~25 ms median, a tail past 100 ms).  The pool
 * keeps up to N vTPM states in which both EKs already exist at their
 * persistent handles (vrot_endorse_make_eks()), and nothing else: no
 * certificate, no instance.  A create takes the oldest, re-seals it as the
 * new instance's state, and only certifies the EKs (endorse.h, premade).
 *
 * Sealed like any other state: an entry is a state directory (lib/store.h)
 * at STATE/pool/<id>/, sealed with AES-256-GCM under a key derived from the
 * state master key and the entry's random ID (vrot_instkey_derive_pool()),
 * with the ID in every blob's associated data.  So an entry's files moved
 * to another entry, edited, or sealed under another master key fail to
 * verify.  The registry lists the live entries (registry.h "pool"); taking
 * one unlists it in the same registry write that adds the instance, so a
 * restored copy of a taken entry is never listed, and is removed.  An
 * entry that does not verify is refused and discarded, never used: the
 * create takes the next one, or does the whole manufacture.
 *
 * Taking re-seals through lib/store (vrot_store_copy()): the entry's state
 * under the instance's key, with the instance UUID as the associated
 * data's UUID; the entry ID never reaches the instance.
 *
 * The warm entry (VrotPoolParams.warm): one listed entry's vTPM runs,
 * inspected by an open endorsement session, so that a create needs no
 * worker start and no copy (vrot_pool_claim_warm()): the caller renames
 * the entry's directory to the instance's, finishes the session and sends
 * BIND, and the worker seals the state for the instance itself
 * (vrot_store_rebind()).  A cold take never copies a claimed warm entry;
 * one still warming up is given up when it is the only entry left.  A
 * warm-up that fails once its worker ran discards the entry.
 *
 * Refilling runs in the background, one entry at a time: the worker is
 * spawned through the fork server and watched from the main loop (as every
 * worker), the TPM commands that make the EKs run in a thread of their own
 * (they block for tens of ms), and the worker's end and the registry write
 * come back to the main loop.  That thread talks only to the new vTPM,
 * never to the host TPM: pool entries need no host-TPM command.  A failed
 * refill is retried after 1, 2, 4 ... 60 s.  An entry is listed only after
 * its worker wrote its state and ended cleanly, and the state verified.
 *
 * At start the listed entries are verified (a master key that changed
 * makes them all fail: discarded, then refilled), directories that are not
 * listed (an unfinished refill, a taken entry restored) are removed, and a
 * pool worker a crash left running is stopped.  Routine events are logged
 * at debug level, refusals as warnings.
 */

#include <glib.h>

#include "autoptr.h"
#include "endorse.h"
#include "forkclient.h"
#include "registry.h"
#include "seal.h"
#include "workeruser.h"

#define VROT_POOL_ERROR (vrot_pool_error_quark())
GQuark vrot_pool_error_quark(void);

/**
 * VrotPoolError:
 * @VROT_POOL_ERROR_FAILED: a directory or the target state could not be
 *   made or written (the registry's own errors pass through)
 */
typedef enum {
        VROT_POOL_ERROR_FAILED,
} VrotPoolError;

typedef struct VrotPool VrotPool;

/** VrotPoolSaveFunc: writes the registry durably (the daemon's own save). */
typedef gboolean (*VrotPoolSaveFunc)(gpointer data, GError **error);

/**
 * VrotPoolParams:
 * @state_dir: where the entries live (STATE/pool), created if missing
 * @runtime_dir: their workers' sockets, logs and PID files (RUNTIME/pool)
 * @worker_user: (nullable) (transfer none): the user workers drop to; it
 *   must outlive the pool
 * @size: how many entries to keep; 0: no pool (listed ones are discarded)
 * @master: (transfer none): the state master key; outlives the pool
 * @forkd: (transfer none): the fork server; outlives the pool
 * @registry: (transfer none): lists the entries; outlives the pool
 * @save: writes @registry durably; called from the main thread only
 * @warm: keep one listed entry's vTPM running for the next create
 *   (vrot_pool_claim_warm()); vrotd does, unit tests of the rest may not
 */
typedef struct VrotPoolParams {
        const gchar *state_dir;
        const gchar *runtime_dir;
        const VrotWorkerUser *worker_user;
        guint size;
        const VrotSecret *master;
        VrotForkServer *forkd;
        VrotRegistry *registry;
        VrotPoolSaveFunc save;
        gpointer save_data;
        gboolean warm;
} VrotPoolParams;

/**
 * VrotPoolStatus:
 * @size: entries wanted; @ready: entries listed; @warm: one of them is
 * running for the next create; @filling: an entry is being made or
 * warmed; @made, @taken, @discarded: counts since the daemon started
 * (discarded: refused when verified or taken, or beyond @size).
 */
typedef struct VrotPoolStatus {
        guint size, ready;
        gboolean warm;
        gboolean filling;
        guint64 made, taken, discarded;
} VrotPoolStatus;

/**
 * vrot_pool_new:
 * Opens the pool: stops pool workers a crash left running, verifies every
 * listed entry (discarding those that fail), removes what is not listed,
 * saves the registry if that changed it, and schedules the refill on the
 * thread-default main context (the main loop's).  Returns (transfer full)
 * the pool, or NULL with @error (a directory, or the registry's save).
 */
VrotPool *vrot_pool_new(const VrotPoolParams *params, GError **error);

/**
 * vrot_pool_take:
 * @dst_dir: the new instance's state directory (exists, holds no state)
 * @dst: (transfer none): the instance's key and UUID
 * @ret_id: (out) (transfer full) (nullable): the ID of the entry taken,
 *   NULL when none was left
 *
 * Re-seals the oldest listed entry that verifies into @dst_dir under @dst,
 * unlists it and saves the registry (with whatever the caller changed in
 * it meanwhile, e.g. the new instance), then removes the entry and
 * schedules a refill.  Entries that fail to verify are discarded on the
 * way (a warning each).  The warm entry is not taken while it is claimed;
 * when it is the only one left otherwise, its warm-up is given up (the
 * worker killed, so it wrote nothing) and it is taken cold.  With no entry
 * left nothing is written and the
 * registry is not saved: *@ret_id is NULL and the result TRUE.  Errors
 * (FALSE): writing @dst_dir, or saving the registry.
 */
gboolean vrot_pool_take(VrotPool *self, const gchar *dst_dir, const VrotSealer *dst,
                        gchar **ret_id, GError **error);

/**
 * VrotPoolWarm:
 * The warm entry a create claimed: its ID and state directory, its
 * worker's migration-key socket (BIND, lib/mkey.h) and PID, all owned by
 * the pool and valid until vrot_pool_warm_done(); and (transfer full) the
 * endorsement session open on its running vTPM (service-like: started,
 * both EKs persisted and read, no certificate; endorse.h), the caller's
 * to finish and free.
 */
typedef struct VrotPoolWarm {
        const gchar *id;
        const gchar *dir;
        const gchar *key_path;
        GPid pid;
        VrotEndorseSession *session;
} VrotPoolWarm;

/**
 * vrot_pool_claim_warm:
 * The warm entry, when one is ready: it is the caller's (no other create
 * or copy touches it) until vrot_pool_warm_done().  The caller may rename
 * its directory, finish the endorsement session and bind the vTPM to an
 * instance (BIND); the worker then ends.  FALSE: none is ready.
 */
gboolean vrot_pool_claim_warm(VrotPool *self, VrotPoolWarm *ret);

/**
 * vrot_pool_warm_done:
 * Ends the claim.  @bound: the worker took BIND (it released the
 * directory before it answered, and ends on its own; nobody waits), the
 * entry is unlisted and the registry saved (with the caller's changes,
 * the new instance).  Not @bound: the worker is killed and the entry
 * unlisted, not saved (the caller's undo saves).  A refill and the next
 * warm-up follow.  FALSE with @error: the save failed; the entry is gone
 * (discarded) all the same.
 */
gboolean vrot_pool_warm_done(VrotPool *self, gboolean bound, GError **error);

/** vrot_pool_status: what host.info reports. */
void vrot_pool_status(const VrotPool *self, VrotPoolStatus *ret);

/**
 * vrot_pool_free:
 * Stops a refill under way (its worker killed, its thread joined, its
 * files removed); listed entries stay for the next start.  Call before the
 * fork server is freed.  Accepts NULL.
 */
void vrot_pool_free(VrotPool *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotPool, vrot_pool_free)
