/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/* The methods of vrotd's socket API (vrot-api(7)), as a server table. */

#include "host.h"
#include "identity.h"
#include "instances.h"
#include "migrate.h"
#include "server.h"

typedef struct VrotApi {
        VrotHost *host;                 /* transfer none */
        VrotInstances *instances;       /* transfer none */
        VrotIdentities *identities;     /* transfer none */
        gboolean dev;
        const gchar *migration_name;    /* [migration] name, or NULL */
        VrotMigration *migration;       /* transfer none; NULL: the host does not migrate */
} VrotApi;

/** vrot_api_methods: (transfer none) the table; *@ret_n its length. */
const VrotMethod *vrot_api_methods(gsize *ret_n);
