/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The simulated host TPM of `vrotd --dev`: a swtpm process with EK
 * certificates from swtpm_localca, so that the whole trust chain (TPM
 * vendor CA -> host TPM EK -> host endorsement CA -> vTPM EKs) exists on
 * one machine (DESIGN "Trust chain").  Never used in production, where the
 * host TPM is real and reached through `device:/dev/tpmrm0`.
 *
 * Everything lives in one directory, which nothing else writes:
 *
 *   tpm2-00.permall         the swtpm state (swtpm_setup --tpmstate DIR)
 *   swtpm_setup.conf        swtpm_setup's configuration: certificates from
 *   swtpm-localca.conf      swtpm_localca, with its CA kept in localca/
 *   swtpm-localca.options   (no system-wide configuration is read or changed)
 *   localca/                the local CA: root (the "TPM vendor") and issuer
 *   ek-certs/               ek-rsa2048.crt, ek-secp384r1.crt (DER), as
 *                           swtpm_setup wrote them into NV
 *   manufactured            written last by the first start: setup is complete
 *   devtpm.lock             flock()ed by the starting process and the running
 *                           swtpm: one simulated TPM per directory
 *   swtpm_setup.log         swtpm_setup's and swtpm_localca's output
 *   swtpm.log               the running swtpm's output
 *   tpm.sock, tpm.sock.ctrl the data and control sockets (TCTI
 *                           `swtpm:path=DIR/tpm.sock`)
 *
 * swtpm_setup double-forks a swtpm and polls until it is gone, where a
 * zombie still counts as alive.  It therefore runs under a small reaper
 * process of our own (a child subreaper that reaps at once), so that
 * neither the caller nor a slow init has to reap for it; callers need no
 * special set-up.
 *
 * The running swtpm is a direct child of the caller: the caller must not
 * reap it behind our back (vrot_dev_tpm_stop() does).  It gets SIGTERM if
 * the thread that started it ends (PR_SET_PDEATHSIG), so start it from
 * the main thread.  No function here logs.
 */

#include <glib.h>

#define VROT_DEV_TPM_ERROR (vrot_dev_tpm_error_quark())
GQuark vrot_dev_tpm_error_quark(void);

/**
 * VrotDevTpmError:
 * @VROT_DEV_TPM_ERROR_FAILED: the system said no (a directory, a file, fork)
 * @VROT_DEV_TPM_ERROR_NOT_INSTALLED: swtpm, swtpm_setup or swtpm_localca
 *   is not in PATH
 * @VROT_DEV_TPM_ERROR_SETUP: swtpm_setup failed (the message carries the
 *   end of swtpm_setup.log)
 * @VROT_DEV_TPM_ERROR_EXITED: swtpm ended before it listened (the message
 *   carries the end of swtpm.log)
 * @VROT_DEV_TPM_ERROR_TIMEOUT: swtpm did not listen in time
 * @VROT_DEV_TPM_ERROR_BUSY: another simulated TPM runs in this directory
 */
typedef enum {
        VROT_DEV_TPM_ERROR_FAILED,
        VROT_DEV_TPM_ERROR_NOT_INSTALLED,
        VROT_DEV_TPM_ERROR_SETUP,
        VROT_DEV_TPM_ERROR_EXITED,
        VROT_DEV_TPM_ERROR_TIMEOUT,
        VROT_DEV_TPM_ERROR_BUSY,
} VrotDevTpmError;

/**
 * VrotDevTpmEk:
 * The two EKs swtpm_setup always makes (no flag skips either).
 * @VROT_DEV_TPM_EK_RSA2048: persistent 0x81010001, certificate at NV 0x01c00002
 * @VROT_DEV_TPM_EK_ECC_P384: persistent 0x81010016, certificate at NV 0x01c00016
 */
typedef enum {
        VROT_DEV_TPM_EK_RSA2048,
        VROT_DEV_TPM_EK_ECC_P384,
} VrotDevTpmEk;

typedef struct VrotDevTpm VrotDevTpm;

/**
 * vrot_dev_tpm_start:
 * @dir: the simulated TPM's directory; created (mode 0700) if missing
 * @error: return location for a #VrotDevTpmError
 *
 * The first time (no @dir/manufactured), runs `swtpm_setup --tpm2
 * --create-ek-cert --create-platform-cert --lock-nvram` with swtpm_localca
 * certificates (re-running it with --overwrite over an unfinished earlier
 * attempt).  Then starts `swtpm socket --tpm2 --flags
 * not-need-init,startup-clear` on @dir/tpm.sock and returns once it
 * accepts connections: the TPM is started (TPM2_Startup done) and ready.
 *
 * Returns: (transfer full): the running simulated TPM, or NULL with @error
 *   set; no process is left behind on failure.
 */
VrotDevTpm *vrot_dev_tpm_start(const char *dir, GError **error);

/** vrot_dev_tpm_tcti: (transfer none) "swtpm:path=DIR/tpm.sock". */
const char *vrot_dev_tpm_tcti(const VrotDevTpm *self);

/** vrot_dev_tpm_pid: the swtpm process, or 0 once stopped. */
GPid vrot_dev_tpm_pid(const VrotDevTpm *self);

/** vrot_dev_tpm_dir: (transfer none) the absolute directory. */
const char *vrot_dev_tpm_dir(const VrotDevTpm *self);

/**
 * vrot_dev_tpm_manufactured:
 * TRUE when this start ran swtpm_setup (a new TPM, new EKs and a new
 * local CA or at least new certificates), FALSE when it found one.
 */
gboolean vrot_dev_tpm_manufactured(const VrotDevTpm *self);

/**
 * vrot_dev_tpm_ek_cert:
 * Returns: (transfer none): the DER EK certificate swtpm_setup made for
 *   @which (the same bytes as in the TPM's NV index).
 */
GBytes *vrot_dev_tpm_ek_cert(const VrotDevTpm *self, VrotDevTpmEk which);

/**
 * vrot_dev_tpm_root_cert:
 * Returns: (transfer none): DER of the local CA's self-signed root: the
 *   "TPM vendor" root of --dev, the trust anchor of the EK certificates.
 */
GBytes *vrot_dev_tpm_root_cert(const VrotDevTpm *self);

/**
 * vrot_dev_tpm_issuer_cert:
 * Returns: (transfer none): DER of the intermediate that signed the EK
 *   certificates (issued by the root).
 */
GBytes *vrot_dev_tpm_issuer_cert(const VrotDevTpm *self);

/**
 * vrot_dev_tpm_stop:
 * Sends SIGTERM and reaps the swtpm (SIGKILL after 5 s).  Accepts a swtpm
 * that has already died.  Idempotent; the object stays valid (certificates,
 * directory) but vrot_dev_tpm_pid() is 0 afterwards.
 */
void vrot_dev_tpm_stop(VrotDevTpm *self);

/** vrot_dev_tpm_free: stops the swtpm if running, then frees; accepts NULL. */
void vrot_dev_tpm_free(VrotDevTpm *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotDevTpm, vrot_dev_tpm_free)
