/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Errors as values for the plain-C modules the worker links.
 *
 * The worker (vtpm/) runs once per VM, so it and the lib/ code it uses stay
 * free of GLib (see README "Worker memory"); instead of GError they report
 * failures as a negative errno return plus a message in a caller-provided
 * VrotError.  Library code never logs: the caller decides what to print.
 */

#include <stdarg.h>

typedef struct VrotError {
        int code;              /* positive errno value, 0 when unset */
        char msg[512];
} VrotError;

/**
 * vrot_err:
 * @err: (nullable): where to store the error
 * @code: positive errno value
 *
 * Formats the message into @err.  Returns -@code so that callers can write
 * `return vrot_err(err, EINVAL, "...")`.
 */
int vrot_err(VrotError *err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/**
 * vrot_err_prefix:
 * Prepends context ("loading permall: ") to an error already set.
 * Returns -err->code (or -EIO when err is NULL), for the same tail-call use.
 */
int vrot_err_prefix(VrotError *err, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
