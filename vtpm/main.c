/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrot-vtpm: one TPM 2.0 (libtpms) per process, reached by QEMU or libvirt
 * through the swtpm control-channel protocol, with its state sealed under a
 * key that arrives on an inherited descriptor.  See vrot-vtpm(8).
 *
 * Exit status: 0 clean shutdown, 1 runtime error, 2 usage, 3 state refused.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "args.h"
#include "run.h"

/*
 * The fork server's children inherit its relocated libraries.  Bind every
 * symbol once, in the server, rather than lazily in each child: a lazy
 * binding costs a child a symbol lookup and a copy-on-write fault on a GOT
 * page, about 5% of a boot storm (bench/README.md "Boot storm").  The
 * dynamic linker reads LD_BIND_NOW only at exec, hence the re-exec; if it
 * fails the server runs lazily bound, which is only slower.
 */
static void reexec_bound(char **argv)
{
        const char *now = getenv("LD_BIND_NOW");
        char self[PATH_MAX];
        ssize_t n;

        if (now && *now)
                return;
        /* The binary by its path, not /proc/self/exe: the process name
         * (comm) is the name exec'ed. */
        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0 || setenv("LD_BIND_NOW", "1", 1) < 0)
                return;
        self[n] = '\0';
        execv(self, argv);
        unsetenv("LD_BIND_NOW");
}

int main(int argc, char **argv)
{
        VtpmArgs a;

        if (vtpm_args_parse(argc, argv, &a) < 0) {
                vtpm_args_usage(stderr);
                return VTPM_EXIT_USAGE;
        }
        if (a.fork_server) {
                reexec_bound(argv);
                return vtpm_forkserver_run(a.fork_server, a.log_level);
        }
        return vtpm_run(&a, NULL);
}
