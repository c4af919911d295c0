/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

int vrot_err(VrotError *err, int code, const char *fmt, ...)
{
        va_list ap;

        if (code <= 0)
                code = EIO;
        if (err) {
                err->code = code;
                va_start(ap, fmt);
                vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
                va_end(ap);
        }
        return -code;
}

int vrot_err_prefix(VrotError *err, const char *fmt, ...)
{
        char prefix[sizeof(err->msg)];
        size_t n;
        va_list ap;

        if (!err)
                return -EIO;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof(prefix), fmt, ap);
        va_end(ap);
        n = strlen(prefix);
        /* Shift the old message right, truncating its end if it must. */
        memmove(err->msg + n, err->msg, sizeof(err->msg) - n - 1);
        memcpy(err->msg, prefix, n);
        err->msg[sizeof(err->msg) - 1] = '\0';
        return -(err->code ? err->code : EIO);
}
