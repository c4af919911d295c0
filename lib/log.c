/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static const char *log_prog = "vrot";
static VrotLogLevel log_max = VROT_LOG_INFO;
static const char *const names[] = { "error", "warning", "info", "debug" };

void vrot_log_init(const char *prog, VrotLogLevel level)
{
        log_prog = prog;
        log_max = level;
}

int vrot_log_level_parse(const char *s, VrotLogLevel *ret)
{
        for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                if (strcmp(s, names[i]) == 0 || (i == VROT_LOG_WARN && strcmp(s, "warn") == 0)) {
                        *ret = (VrotLogLevel)i;
                        return 0;
                }
        }
        return -1;
}

void vrot_log(VrotLogLevel level, const char *fmt, ...)
{
        char line[1024];
        va_list ap;
        int n;

        if (level > log_max)
                return;
        n = snprintf(line, sizeof(line), "%s[%d] %s: ", log_prog, (int)getpid(), names[level]);
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        /* One write per line so lines of concurrent workers do not interleave. */
        n = (int)strlen(line);
        if (n < (int)sizeof(line) - 1)
                line[n++] = '\n';
        (void)!write(STDERR_FILENO, line, (size_t)n);
}
