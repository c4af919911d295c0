/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The instance registry: every vTPM this host knows, live or deleted
 * (tombstones keep a UUID from being silently reused), with the salt of its
 * state key and the generation its state must have at least.
 *
 * On disk (<state>/registry): the registry as compact JSON on one line, then
 * a line "hmac-sha256 <hex>" over exactly those bytes, under a key the
 * daemon derives from the host's state master key.  The MAC is checked
 * before the JSON is parsed, so an edited or swapped registry is refused
 * whole.  Rollback of the whole state directory is caught by "checkpoint",
 * which the daemon compares with the host TPM's NV counter (DESIGN "Sealed
 * state").
 *
 * "pool" lists the entries of the pool of pre-manufactured vTPM states
 * (daemon/pool.h), oldest first, by their entry IDs (UUIDs).  An entry is
 * live only while listed: taking one for an instance removes it in the
 * same registry write that adds the instance, so a restored copy of a
 * taken entry is never listed again, and is discarded (R-SEAL-3).
 * Registries written before the pool existed have no "pool": empty.
 */

#include <glib.h>
#include <json-glib/json-glib.h>

#define VROT_REGISTRY_ERROR (vrot_registry_error_quark())
GQuark vrot_registry_error_quark(void);

typedef enum {
        VROT_REGISTRY_ERROR_IO,
        VROT_REGISTRY_ERROR_REFUSED,     /* MAC or content wrong: tampered or foreign */
        VROT_REGISTRY_ERROR_EXISTS,      /* UUID in use, or a tombstone */
        VROT_REGISTRY_ERROR_NOT_FOUND,
} VrotRegistryError;

typedef enum {
        VROT_INSTANCE_VM,
        VROT_INSTANCE_SERVICE,
} VrotInstanceKind;

#define VROT_INSTANCE_SALT_LEN 32
#define VROT_REGISTRY_KEY_LEN 32

typedef struct VrotInstance {
        gchar *uuid;                    /* canonical lower-case form */
        gchar *name;
        VrotInstanceKind kind;
        guint32 owner;                  /* uid that created it */
        guint8 salt[VROT_INSTANCE_SALT_LEN];
        guint64 generation;             /* its state's generation at least */
        gint64 created;                 /* unix seconds */
        gboolean deleted;               /* a tombstone */
        gboolean migrated;              /* a tombstone because it migrated away: it may
                                         * migrate back (registry member "migrated") */
        gboolean reendorse;             /* came live: its EK certificates are the source
                                         * host's until the next start issues ours
                                         * (registry member "reendorse") */
} VrotInstance;

typedef struct VrotRegistry VrotRegistry;

VrotRegistry *vrot_registry_new(void);
void vrot_registry_free(VrotRegistry *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotRegistry, vrot_registry_free)

void vrot_instance_free(VrotInstance *inst);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotInstance, vrot_instance_free)

/**
 * vrot_registry_parse:
 * Authenticates and parses @len bytes of @data (untrusted) under @key.
 * Returns (transfer full) the registry, or NULL with REFUSED (wrong MAC,
 * malformed, duplicate UUIDs, bad fields).
 */
VrotRegistry *vrot_registry_parse(const gchar *data, gsize len, const guint8 *key, GError **error);

/** vrot_registry_load: vrot_registry_parse() of @path; NOT_FOUND if absent. */
VrotRegistry *vrot_registry_load(const gchar *path, const guint8 *key, GError **error);

/** vrot_registry_serialize: (transfer full) the file contents. */
gchar *vrot_registry_serialize(const VrotRegistry *r, const guint8 *key, gsize *ret_len);

/** vrot_registry_save: writes @path durably (temp, fsync, rename, fsync dir). */
gboolean vrot_registry_save(const VrotRegistry *r, const gchar *path, const guint8 *key,
                            GError **error);

/**
 * VrotRegistryWrite:
 * vrot_registry_save() in two halves, for a write that must wait for
 * something else to be durable first but need not wait to be prepared:
 * vrot_registry_stage() serializes @r as it is now and makes it durable
 * under the file's temporary name; vrot_registry_commit() puts it in place
 * and syncs the directory, and only then does it count.  In between,
 * nothing else may write the registry.  Both free the write on failure;
 * vrot_registry_abandon() drops it (NULL: nothing).  Either thread may
 * stage, with @r not changed meanwhile.
 */
typedef struct VrotRegistryWrite VrotRegistryWrite;

VrotRegistryWrite *vrot_registry_stage(const VrotRegistry *r, const gchar *path,
                                       const guint8 *key, GError **error);
gboolean vrot_registry_commit(VrotRegistryWrite *w, GError **error);
void vrot_registry_abandon(VrotRegistryWrite *w);

/** vrot_registry_lookup: (transfer none) the entry for @uuid, tombstones included. */
VrotInstance *vrot_registry_lookup(const VrotRegistry *r, const gchar *uuid);

/** vrot_registry_add: takes @inst (transfer full); EXISTS if its UUID is known. */
gboolean vrot_registry_add(VrotRegistry *r, VrotInstance *inst, GError **error);

/**
 * vrot_registry_forget:
 * Drops @uuid's entry as if it had never been added, for a create that
 * failed before its instance ever served.  A tombstone is never dropped.
 * Returns: TRUE if an entry was dropped.
 */
gboolean vrot_registry_forget(VrotRegistry *r, const gchar *uuid);

/** vrot_registry_list: (transfer container) every entry, tombstones included. */
GPtrArray *vrot_registry_list(const VrotRegistry *r);

/** Most pool entries a registry may list (a parsed registry is refused above it). */
#define VROT_REGISTRY_POOL_MAX 256

/**
 * vrot_registry_pool:
 * Returns: (transfer none) (element-type utf8): the live pool entries'
 *   IDs, canonical UUIDs, oldest first.
 */
const GPtrArray *vrot_registry_pool(const VrotRegistry *r);

/**
 * vrot_registry_pool_add:
 * Lists pool entry @id (a canonical UUID, copied) as the newest.  Errors:
 * EXISTS (listed already, or an instance's UUID), REFUSED (the list holds
 * VROT_REGISTRY_POOL_MAX).
 */
gboolean vrot_registry_pool_add(VrotRegistry *r, const gchar *id, GError **error);

/** vrot_registry_pool_remove: unlists @id; FALSE if it was not listed. */
gboolean vrot_registry_pool_remove(VrotRegistry *r, const gchar *id);

/*
 * Service identities (docs/identity.md) the host CA issued, revoked or
 * not, in issue order.  In the registry so that the MAC and the
 * checkpoint protect revocations too: restoring an older state directory
 * to un-revoke an identity is the rollback the checkpoint refuses.
 * "crl_number" is the cRLNumber of the newest CRL.
 */
#define VROT_IDENTITY_SERIAL_MAX 40     /* hex digits: 20 octets (RFC 5280 4.1.2.2) */
#define VROT_REGISTRY_IDENTITIES_MAX 4096

typedef struct VrotIdentity {
        gchar *serial;                  /* certificate serial, upper-case hex (BN_bn2hex) */
        gchar *instance;                /* the vTPM instance's UUID */
        gchar *name;                    /* subject CN */
        gchar *uri;                     /* the SAN URI */
        guint32 handle;                 /* persistent handle of the key in the vTPM; 0: the
                                         * guest keeps it (identity.complete) */
        gint64 issued, not_after;       /* unix seconds */
        gint64 revoked;                 /* unix seconds; 0: not revoked */
} VrotIdentity;

void vrot_identity_free(VrotIdentity *id);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotIdentity, vrot_identity_free)

/** vrot_registry_identity_add: takes @id (transfer full); EXISTS on a known serial or when full. */
gboolean vrot_registry_identity_add(VrotRegistry *r, VrotIdentity *id, GError **error);
/** vrot_registry_identity_lookup: (transfer none) the identity of @serial (any case), or NULL. */
VrotIdentity *vrot_registry_identity_lookup(const VrotRegistry *r, const gchar *serial);
/** vrot_registry_identity_remove: drops @serial's entry (a failed issue); FALSE if unknown. */
gboolean vrot_registry_identity_remove(VrotRegistry *r, const gchar *serial);
/** vrot_registry_identities: (transfer none) (element-type VrotIdentity) all, in issue order. */
const GPtrArray *vrot_registry_identities(const VrotRegistry *r);
guint64 vrot_registry_crl_number(const VrotRegistry *r);
void vrot_registry_set_crl_number(VrotRegistry *r, guint64 value);

/*
 * The migration journal (docs/migration.md "Recovery"): one record per
 * migration this host takes part in and has not finished, kept in the
 * registry so that the MAC, the durable write and the checkpoint cover it,
 * and so that a record changes in the same write as the instance it is
 * about.  The source (the coordinator) records LOCKED before any state
 * leaves, then COMMITTED or ABORTED, and drops the record when the
 * destination has heard the decision.  The destination records IMPORTING
 * before it writes the state, PREPARED when the copy is complete, and
 * DONE when the source's commit made it live; DONE records stay (at most
 * VROT_REGISTRY_DONE_KEPT, oldest dropped first) so that a repeated commit
 * is answered again and a consumed migration ID is never taken twice.
 */
#define VROT_MIGRATION_ID_LEN 32        /* hex digits */
#define VROT_REGISTRY_MIGRATIONS_MAX 1024
#define VROT_REGISTRY_DONE_KEPT 256

typedef enum {
        VROT_MIGRATION_LOCKED,          /* out: start refused; the source has not decided */
        VROT_MIGRATION_COMMITTED,       /* out: decided commit (tombstone); the peer must hear it */
        VROT_MIGRATION_ABORTED,         /* out: decided abort (live again); the peer must hear it */
        VROT_MIGRATION_IMPORTING,       /* in: state being written; discarded after a crash */
        VROT_MIGRATION_PREPARED,        /* in: complete, not startable until the commit */
        VROT_MIGRATION_DONE,            /* in: committed; kept to answer a repeated commit */
        VROT_MIGRATION_N_STATES,
} VrotMigrationState;

typedef struct VrotMigrationRecord {
        gchar *id;                      /* VROT_MIGRATION_ID_LEN lower-case hex digits */
        gchar *uuid;                    /* the instance */
        VrotMigrationState state;
        gchar *peer;                    /* out: the destination's ADDR:PORT; in: "" */
        gchar *peer_name;               /* the peer's transport certificate name */
        gint64 since;                   /* unix seconds of the last state change */
        gboolean live;                  /* a live migration: QEMU carries the state
                                         * (registry member "live", only when true) */
        gboolean unresolved;            /* not kept: a live source LOCKED when vrotd
                                         * started, which asks the destination whether
                                         * QEMU moved the state before it decides */
} VrotMigrationRecord;

void vrot_migration_record_free(VrotMigrationRecord *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotMigrationRecord, vrot_migration_record_free)

/**
 * vrot_migration_record_to_json:
 * (transfer full) {"id", "uuid", "state", "peer" (ADDR:PORT or ""),
 * "peer_name", "since"}: the registry's form, and host.info's.
 */
JsonNode *vrot_migration_record_to_json(const VrotMigrationRecord *m);

/** vrot_migration_state_name: "locked", "committed", ... */
const gchar *vrot_migration_state_name(VrotMigrationState state);
/** vrot_migration_state_outgoing: TRUE for the source's states. */
gboolean vrot_migration_state_outgoing(VrotMigrationState state);

/** vrot_registry_migration_add: takes @m (transfer full); EXISTS on a known ID or when full. */
gboolean vrot_registry_migration_add(VrotRegistry *r, VrotMigrationRecord *m, GError **error);
/** vrot_registry_migration: (transfer none) the record of @id, or NULL. */
VrotMigrationRecord *vrot_registry_migration(const VrotRegistry *r, const gchar *id);
/**
 * vrot_registry_migration_of:
 * (transfer none) the record of @uuid that keeps it from starting
 * (LOCKED, IMPORTING, PREPARED), or NULL.
 */
VrotMigrationRecord *vrot_registry_migration_of(const VrotRegistry *r, const gchar *uuid);
/** vrot_registry_migration_remove: drops @id's record; FALSE if unknown. */
gboolean vrot_registry_migration_remove(VrotRegistry *r, const gchar *id);
/** vrot_registry_migrations: (transfer none) (element-type VrotMigrationRecord) all, oldest first. */
const GPtrArray *vrot_registry_migrations(const VrotRegistry *r);

/**
 * vrot_registry_replace:
 * Puts @inst (transfer full) in place of the entry of its UUID, which must
 * be a tombstone or absent: an instance that migrated away and comes back.
 */
void vrot_registry_replace(VrotRegistry *r, VrotInstance *inst);

guint64 vrot_registry_checkpoint(const VrotRegistry *r);
void vrot_registry_set_checkpoint(VrotRegistry *r, guint64 value);
