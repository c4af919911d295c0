/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "unit.h"

/* Captures what vrot_log writes to stderr. */
static size_t capture(VrotLogLevel max, VrotLogLevel level, const char *text, char *out, size_t n)
{
        int p[2], saved = dup(STDERR_FILENO);
        ssize_t got;

        CU_ASSERT_FATAL(pipe(p) == 0);
        dup2(p[1], STDERR_FILENO);
        vrot_log_init("unit", max);
        vrot_log(level, "%s", text);
        dup2(saved, STDERR_FILENO);
        close(saved);
        close(p[1]);
        got = read(p[0], out, n - 1);
        close(p[0]);
        out[got > 0 ? got : 0] = '\0';
        return got > 0 ? (size_t)got : 0;
}

static void test_log_format_and_filter(void)
{
        char buf[256], want[64];

        capture(VROT_LOG_INFO, VROT_LOG_WARN, "hello", buf, sizeof(buf));
        snprintf(want, sizeof(want), "unit[%d] warning: hello\n", (int)getpid());
        CU_ASSERT_STRING_EQUAL(buf, want);
        CU_ASSERT_EQUAL(capture(VROT_LOG_INFO, VROT_LOG_DEBUG, "quiet", buf, sizeof(buf)), 0);
        CU_ASSERT(capture(VROT_LOG_DEBUG, VROT_LOG_DEBUG, "loud", buf, sizeof(buf)) > 0);
}

static void test_log_long_line_is_one_line(void)
{
        char text[3000], buf[4096];
        size_t n;

        memset(text, 'x', sizeof(text) - 1);
        text[sizeof(text) - 1] = '\0';
        n = capture(VROT_LOG_INFO, VROT_LOG_ERROR, text, buf, sizeof(buf));
        CU_ASSERT(n > 100 && n <= 1024);
        CU_ASSERT(strchr(buf, '\n') == NULL || strchr(buf, '\n') == buf + n - 1);
}

static void test_log_level_parse(void)
{
        VrotLogLevel l;

        CU_ASSERT(vrot_log_level_parse("debug", &l) == 0 && l == VROT_LOG_DEBUG);
        CU_ASSERT(vrot_log_level_parse("warn", &l) == 0 && l == VROT_LOG_WARN);
        CU_ASSERT(vrot_log_level_parse("warning", &l) == 0 && l == VROT_LOG_WARN);
        CU_ASSERT(vrot_log_level_parse("loud", &l) == -1);
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_log_format_and_filter),
                UNIT_CASE(test_log_long_line_is_one_line),
                UNIT_CASE(test_log_level_parse),
        };
        return UNIT_RUN("log", cases);
}
