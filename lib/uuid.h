/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

#include <stdint.h>

#include "err.h"

#define VROT_UUID_STR_LEN 36

/**
 * vrot_uuid_parse:
 * Parses the canonical 8-4-4-4-12 hex form (either case) into 16 bytes.
 * Returns 0, or -EINVAL with @err set; @ret is written only on success.
 */
int vrot_uuid_parse(const char *s, uint8_t ret[16], VrotError *err);

/** vrot_uuid_format: writes the lower-case canonical form and a NUL. */
void vrot_uuid_format(const uint8_t uuid[16], char out[VROT_UUID_STR_LEN + 1]);
