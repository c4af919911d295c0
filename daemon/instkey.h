/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Per-instance state keys (DESIGN "Sealed state", R-SEAL-1).
 *
 *     key = HKDF-SHA256(IKM  = the host's state master key,
 *                       salt = the instance's 32 random bytes,
 *                       info = "vrot instance state key v1" || UUID (16 bytes))
 *
 * Starting a VM costs no host-TPM command: the master key is unsealed once
 * per daemon start (sealkey.h) and every instance key is derived from it.
 * The salt is stored with the instance (it is not secret); the UUID in
 * `info` ties the key to the instance even if two salts were ever equal.
 * A key reaches its worker through a pipe (vrot_instkey_pipe), never argv,
 * environment or logs.
 */

#include <glib.h>

#include "autoptr.h"


#define VROT_INSTKEY_ERROR (vrot_instkey_error_quark())
GQuark vrot_instkey_error_quark(void);

/**
 * VrotInstkeyError:
 * @VROT_INSTKEY_ERROR_FAILED: OpenSSL, memory or pipe failure.
 * @VROT_INSTKEY_ERROR_INVALID: a master key of the wrong length.
 */
typedef enum {
        VROT_INSTKEY_ERROR_FAILED,
        VROT_INSTKEY_ERROR_INVALID,
} VrotInstkeyError;

#define VROT_INSTKEY_LEN 32
#define VROT_INSTKEY_SALT_LEN 32
#define VROT_INSTKEY_INFO "vrot instance state key v1"
#define VROT_INSTKEY_POOL_INFO "vrot pool state key v1"

/**
 * vrot_instkey_new_salt:
 * Fills @ret_salt with fresh random bytes for a new instance (written only
 * on success).  Errors: VROT_INSTKEY_ERROR_FAILED.
 */
gboolean vrot_instkey_new_salt(guint8 ret_salt[VROT_INSTKEY_SALT_LEN], GError **error);

/**
 * vrot_instkey_derive:
 * @master: (transfer none): the 32-byte state master key
 * @salt: the instance's salt
 * @uuid: the instance UUID, 16 bytes in RFC 4122 byte order
 * @ret_key: (out) (transfer full): the instance state key, 32 bytes of
 *   locked memory, written only on success
 *
 * Deterministic: the same inputs give the same key on every start.
 * Errors: VROT_INSTKEY_ERROR_INVALID (@master not 32 bytes), _FAILED.
 */
gboolean vrot_instkey_derive(const VrotSecret *master,
                             const guint8 salt[VROT_INSTKEY_SALT_LEN],
                             const guint8 uuid[16], VrotSecret **ret_key, GError **error);

/**
 * vrot_instkey_derive_pool:
 * @master: (transfer none): the 32-byte state master key
 * @entry_id: the pool entry's ID, 16 random bytes (daemon/pool.h)
 * @ret_key: (out) (transfer full): the entry's state key, written only on
 *   success
 *
 * The state key of a pre-manufactured vTPM in the pool:
 * HKDF-SHA256(master, no salt, "vrot pool state key v1" || entry ID).
 * The label keeps it apart from every instance key, whatever the UUIDs;
 * the entry ID (random, never reused) makes one key per entry.  A new
 * master key makes every pool entry unreadable (they are then discarded).
 * Errors: as vrot_instkey_derive().
 */
gboolean vrot_instkey_derive_pool(const VrotSecret *master, const guint8 entry_id[16],
                                  VrotSecret **ret_key, GError **error);

/**
 * vrot_instkey_pipe:
 * Writes @key into a new pipe, closes the write end and returns the read
 * end, for the worker's --key-fd.  The descriptor is O_CLOEXEC: pass it
 * with g_subprocess_launcher_take_fd() or dup2() in the child, which clear
 * the flag on the target number.  The key never touches the file system;
 * it sits in the pipe buffer until the worker reads it (vrot_secret_read_fd
 * reads exactly the key and checks that nothing follows).
 * Returns the fd (transfer full: the caller closes it), or -1 with @error.
 */
int vrot_instkey_pipe(const VrotSecret *key, GError **error);
