/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Internal to the host TPM module, shared by its two files and nothing
 * else: hosttpm.c (the context, provisioning, the CA key, NV) and
 * hosttpm-evidence.c (the certification of the CA key and credential
 * activation, docs/host-evidence.md).  The hosttpm_ prefix marks what is
 * not part of hosttpm.h.
 */

#include <tss2/tss2_tcti.h>

#include "hosttpm.h"

/* ESYS hands out malloc()ed results to be freed with Esys_Free(). */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_PUBLIC, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_PRIVATE, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_NAME, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_NV_PUBLIC, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_MAX_NV_BUFFER, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_ATTEST, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_DIGEST, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPMT_SIGNATURE, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPMS_CAPABILITY_DATA, Esys_Free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TPM2B_ECC_POINT, Esys_Free)

/*
 * A pass-through TCTI in front of the real one that counts every command
 * handed to the TPM.  It sits below ESYS so that nothing escapes the count:
 * not the commands ESYS sends on its own (Esys_TR_FromTPMPublic's
 * ReadPublic, resubmissions after TPM_RC_RETRY), nor those of sibling
 * modules that use the ESYS context directly.
 */
typedef struct CountingTcti {
        TSS2_TCTI_CONTEXT_COMMON_V2 common;     /* first: ESYS casts to it */
        TSS2_TCTI_CONTEXT *inner;
        guint64 count;
        guint64 usec;                           /* spent from transmit to answer */
        gint64 sent_at;                         /* monotonic time of the last transmit */
        TSS2_RC lost;                           /* first transport failure, or 0 */
} CountingTcti;

struct VrotHostTpm {
        CountingTcti tcti;
        ESYS_CONTEXT *esys;
        ESYS_TR srk;
        ESYS_TR ca_key;
        ESYS_TR transport_key;                  /* ESYS_TR_NONE until asked for */
        ESYS_TR counter;
        TPM2B_PUBLIC ca_public;
        TPM2B_PUBLIC transport_public;
        guint32 nv_buffer_max;                  /* 0: not asked yet */
        gboolean provisioned;
};

/* Empty inputs of TPM2_CreatePrimary and TPM2_Create. */
extern const TPM2B_SENSITIVE_CREATE hosttpm_empty_sensitive;
extern const TPM2B_DATA hosttpm_empty_data;
extern const TPML_PCR_SELECTION hosttpm_no_pcrs;

/* FALSE with VROT_HOST_TPM_ERROR_IO once the connection to the TPM broke. */
gboolean hosttpm_usable(VrotHostTpm *self, GError **error);

/* Flushes a transient object or session; ESYS_TR_NONE afterwards. */
TSS2_RC hosttpm_flush(VrotHostTpm *self, ESYS_TR *h);

/*
 * Looks up persistent @handle.  Found: *@ret and, if asked, its public
 * area (one ReadPublic more).  Absent: TRUE with *@ret ESYS_TR_NONE.
 */
gboolean hosttpm_find_persistent(VrotHostTpm *self, TPM2_HANDLE handle, ESYS_TR *ret,
                                 TPM2B_PUBLIC **ret_public, GError **error);

