/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "uuid.h"

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int vrot_uuid_parse(const char *s, uint8_t ret[16], VrotError *err)
{
        uint8_t out[16];
        size_t i, o = 0;

        if (!s || strlen(s) != VROT_UUID_STR_LEN)
                return vrot_err(err, EINVAL, "invalid UUID: expected 36 characters");
        for (i = 0; i < VROT_UUID_STR_LEN; ) {
                int hi, lo;
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return vrot_err(err, EINVAL, "invalid UUID: '-' expected at %zu", i);
                        i++;
                        continue;
                }
                hi = hexval(s[i]);
                lo = hexval(s[i + 1]);
                if (hi < 0 || lo < 0)
                        return vrot_err(err, EINVAL, "invalid UUID: bad hex digit at %zu", i);
                out[o++] = (uint8_t)(hi << 4 | lo);
                i += 2;
        }
        memcpy(ret, out, 16);
        return 0;
}

void vrot_uuid_format(const uint8_t u[16], char out[VROT_UUID_STR_LEN + 1])
{
        snprintf(out, VROT_UUID_STR_LEN + 1,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
                 u[10], u[11], u[12], u[13], u[14], u[15]);
}
