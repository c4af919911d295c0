/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * vrotd's configuration: vrotd.conf (a GKeyFile, see vrotd.conf(5)) with
 * command-line overrides applied on top.  Unknown groups and keys are
 * errors, so that a typo never silently leaves a default in force.
 */

#include <glib.h>

#define VROT_CONFIG_ERROR (vrot_config_error_quark())
GQuark vrot_config_error_quark(void);

typedef enum {
        VROT_CONFIG_ERROR_INVALID,      /* malformed file or value */
        VROT_CONFIG_ERROR_UNKNOWN_KEY,  /* a group or key vrotd does not know */
} VrotConfigError;

typedef struct VrotConfig {
        gchar *state_dir;               /* default /var/lib/vrot */
        gchar *runtime_dir;             /* default /run/vrot */
        gchar *tcti;                    /* host TPM; default device:/dev/tpmrm0 */
        gchar *admin_group;             /* may manage besides root; NULL: root only */
        gchar *worker_user;             /* workers' --runas; NULL: the default, "root": none */
        gchar *log_level;               /* error, warning, info, debug */
        guint seal_pcrs;                /* bit n: host PCR n in the sealing policy */
        guint pool_size;                /* pre-manufactured vTPMs kept; 0: no pool */
        /* [operator]: the operator's public trust material, files on the
         * host (vrotd.conf(5)); NULL: not set.  Unused with --dev. */
        gchar *policy_key;              /* ECC P-256 public key (PEM): signs PCR authorisations */
        gchar *recovery_key;            /* RSA public key (PEM): the master key's recovery copy */
        gchar *fleet_root;              /* CA certificate (PEM): the host CA's trust anchor */
        /* [migration]: this host as migration peers know it (the transport
         * certificate's dNSName); NULL: the host does not migrate. */
        gchar *migration_name;
        gchar *migration_listen;        /* ADDR:PORT to accept peers on; NULL: none */
        gchar *migration_policy;        /* the policy file (lib/mpolicy.h) */
        gchar *migration_crl;           /* a CRL of host CAs or transport certs; NULL: none */
        gboolean dev;                   /* --dev: simulated host TPM, local fleet root */
} VrotConfig;

#define VROT_CONFIG_POOL_SIZE_DEFAULT 4
/* Workers' user without --dev when vrotd.conf names none (sysusers.d/vrot.conf). */
#define VROT_CONFIG_WORKER_USER_DEFAULT "vrot-vtpm"
#define VROT_CONFIG_POOL_SIZE_MAX 64

/** vrot_config_new: (transfer full) the defaults. */
VrotConfig *vrot_config_new(void);

/**
 * vrot_config_parse:
 * Applies the contents of a vrotd.conf (@len bytes of @data, untrusted) to
 * @cfg.  On error @cfg is unchanged and @error names the group, key and
 * problem.
 */
gboolean vrot_config_parse(VrotConfig *cfg, const gchar *data, gsize len, GError **error);

/** vrot_config_load: vrot_config_parse() of the file at @path. */
gboolean vrot_config_load(VrotConfig *cfg, const gchar *path, GError **error);

/**
 * vrot_config_parse_pcrs:
 * "0,2,4,7" -> bitmask of host PCRs 0..23; empty or out of range is an error.
 */
gboolean vrot_config_parse_pcrs(const gchar *s, guint *ret, GError **error);

/**
 * vrot_config_worker_user:
 * The user workers drop to: [daemon] worker-user if set ("root": none, they
 * stay root without capabilities), else VROT_CONFIG_WORKER_USER_DEFAULT,
 * or none with --dev.  Returns: (transfer none) (nullable) the name.
 */
const gchar *vrot_config_worker_user(const VrotConfig *cfg);

void vrot_config_free(VrotConfig *cfg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VrotConfig, vrot_config_free)
