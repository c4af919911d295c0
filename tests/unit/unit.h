/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Shared scaffolding of the CUnit programs: one suite per program (one
 * program per module), cases listed in a table, a private temp directory
 * removed afterwards.
 */

#include <stdbool.h>
#include <stddef.h>

#include <CUnit/Basic.h>

typedef struct UnitCase {
        const char *name;
        void (*fn)(void);
} UnitCase;

#define UNIT_CASE(f) { #f, f }

/** unit_run: runs @cases as suite @suite; returns the process exit status. */
int unit_run(const char *suite, const UnitCase *cases, size_t n);

/** unit_tmpdir: a fresh directory for this program, removed at exit. */
const char *unit_tmpdir(void);

/** unit_write_file / unit_read_file: whole-file helpers for fixtures. */
void unit_write_file(const char *path, const void *buf, size_t len);
size_t unit_read_file(const char *path, void *buf, size_t max);

#define UNIT_RUN(suite, cases) unit_run(suite, cases, sizeof(cases) / sizeof(cases[0]))
