/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * rtt: round-trip time of TPM2_GetRandom(8) on one data-channel connection.
 *
 *   rtt SOCKET COUNT [WARMUP]
 *
 * Connects to the UNIX stream socket SOCKET (a raw TPM 2.0 command channel,
 * as vrot-vtpm --server and swtpm --server type=unixio offer), sends WARMUP
 * commands unmeasured (default: COUNT / 10, at most 1000), then COUNT
 * commands, each timed from just before the write of the command to just
 * after the last byte of the answer with CLOCK_MONOTONIC.  Every answer must
 * be a success carrying 8 random bytes.  Prints one JSON line:
 *
 *   {"count":N,"median_us":..,"p99_us":..,"mean_us":..,"min_us":..,"max_us":..}
 *
 * Percentiles are nearest-rank.  Exit status 0 on success, 1 on any error
 * (message on stderr), 2 on usage.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* TPM2_GetRandom(bytesRequested = 8): tag NO_SESSIONS, size 12, cc 0x17b. */
static const uint8_t get_random_8[12] = {
        0x80, 0x01, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x7b, 0x00, 0x08,
};
#define ANSWER_LEN 20   /* header 10, TPM2B size 2, 8 bytes */

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return -1;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

static int read_all(int fd, uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t r = read(fd, p, n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return -1;
                p += r;
                n -= (size_t)r;
        }
        return 0;
}

/* One GetRandom(8) round trip; 0 on a well-formed success answer. */
static int transact(int fd)
{
        uint8_t ans[ANSWER_LEN];
        uint32_t size, rc;

        if (write_all(fd, get_random_8, sizeof(get_random_8)) < 0) {
                fprintf(stderr, "rtt: write: %s\n", strerror(errno));
                return -1;
        }
        if (read_all(fd, ans, 10) < 0) {
                fprintf(stderr, "rtt: reading the answer header: %s\n",
                        errno ? strerror(errno) : "connection closed");
                return -1;
        }
        size = be32(ans + 2);
        rc = be32(ans + 6);
        if (rc != 0 || size != ANSWER_LEN) {
                fprintf(stderr, "rtt: unexpected answer: size %" PRIu32 ", rc 0x%" PRIx32 "\n",
                        size, rc);
                return -1;
        }
        if (read_all(fd, ans + 10, ANSWER_LEN - 10) < 0) {
                fprintf(stderr, "rtt: reading the answer body: %s\n",
                        errno ? strerror(errno) : "connection closed");
                return -1;
        }
        if (ans[10] != 0 || ans[11] != 8) {
                fprintf(stderr, "rtt: GetRandom returned %u bytes, not 8\n",
                        (unsigned)ans[10] << 8 | ans[11]);
                return -1;
        }
        return 0;
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

        return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted @v (n >= 1), in µs. */
static double pct_us(const int64_t *v, size_t n, double p)
{
        size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999999);

        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return (double)v[rank - 1] / 1000.0;
}

static int parse_count(const char *s, unsigned long max, unsigned long *ret)
{
        char *end;

        errno = 0;
        *ret = strtoul(s, &end, 10);
        return !*s || *end || errno || s[0] == '-' || *ret > max ? -1 : 0;
}

int main(int argc, char **argv)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        unsigned long count, warmup;
        int64_t *lat, sum = 0;
        int fd;

        if (argc < 3 || argc > 4 || parse_count(argv[2], 100000000, &count) < 0 || count == 0) {
                fputs("Usage: rtt SOCKET COUNT [WARMUP]\n", stderr);
                return 2;
        }
        warmup = count / 10 > 1000 ? 1000 : count / 10;
        if (argc == 4 && parse_count(argv[3], 100000000, &warmup) < 0) {
                fputs("rtt: bad WARMUP\n", stderr);
                return 2;
        }
        if (strlen(argv[1]) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "rtt: socket path too long: %s\n", argv[1]);
                return 2;
        }
        strcpy(sa.sun_path, argv[1]);

        lat = calloc(count, sizeof(*lat));
        if (!lat) {
                fputs("rtt: out of memory\n", stderr);
                return 1;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                fprintf(stderr, "rtt: connecting to %s: %s\n", argv[1], strerror(errno));
                return 1;
        }
        for (unsigned long i = 0; i < warmup; i++)
                if (transact(fd) < 0)
                        return 1;
        for (unsigned long i = 0; i < count; i++) {
                int64_t t0 = now_ns();
                if (transact(fd) < 0)
                        return 1;
                lat[i] = now_ns() - t0;
                sum += lat[i];
        }
        close(fd);

        qsort(lat, count, sizeof(*lat), cmp_i64);
        printf("{\"count\":%lu,\"warmup\":%lu,\"median_us\":%.3f,\"p99_us\":%.3f,"
               "\"mean_us\":%.3f,\"min_us\":%.3f,\"max_us\":%.3f}\n",
               count, warmup, pct_us(lat, count, 50), pct_us(lat, count, 99),
               (double)sum / (double)count / 1000.0, (double)lat[0] / 1000.0,
               (double)lat[count - 1] / 1000.0);
        free(lat);
        return 0;
}
