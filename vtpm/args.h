/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/* The worker's command line, shared by main() and the fork server, whose
 * requests carry the same options. */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "log.h"

typedef struct VtpmArgs {
        const char *uuid;
        const char *state_dir;
        const char *ctrl;
        const char *server;
        const char *migrate;       /* the migration-key socket; NULL: none */
        const char *runas;
        mode_t ctrl_mode, server_mode;
        int key_fd;
        int ready_fd;              /* -1: none; else "ready\n" once listening */
        bool insecure;
        bool not_need_init, startup_clear;
        bool defer_writes;         /* state written once, at exit (manufacture) */
        bool end_with_starter;     /* ends, writing nothing, once --ready-fd's reader is gone */
        bool prefault;             /* pages in code and data once ready (vtpm_tpm_prefault) */
        uint64_t min_generation;
        VrotLogLevel log_level;
        const char *fork_server;   /* --fork-server PATH: serve spawn requests */
} VtpmArgs;

/**
 * vtpm_args_parse:
 * Parses and checks the options; prints what is wrong to stderr.
 * Returns 0, or -1 for a usage error.  Exits for --help and --version.
 */
int vtpm_args_parse(int argc, char **argv, VtpmArgs *a);

void vtpm_args_usage(FILE *f);
