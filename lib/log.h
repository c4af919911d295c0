/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Logging for the plain-C binaries (the worker).  Only top-level code logs
 * (main, request handlers); lib/ modules return errors instead.  Lines go to
 * stderr as "<prog>[pid] <level>: message", which the daemon or journald
 * captures.  Never pass key material here.
 */

typedef enum VrotLogLevel {
        VROT_LOG_ERROR,
        VROT_LOG_WARN,
        VROT_LOG_INFO,
        VROT_LOG_DEBUG,
} VrotLogLevel;

void vrot_log_init(const char *prog, VrotLogLevel level);
int vrot_log_level_parse(const char *s, VrotLogLevel *ret);
void vrot_log(VrotLogLevel level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) vrot_log(VROT_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  vrot_log(VROT_LOG_WARN, __VA_ARGS__)
#define log_info(...)  vrot_log(VROT_LOG_INFO, __VA_ARGS__)
#define log_debug(...) vrot_log(VROT_LOG_DEBUG, __VA_ARGS__)
