/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vrot-vtpm: one TPM 2.0 (libtpms) per process, reached by QEMU or libvirt
 * through the swtpm control-channel protocol, with its state sealed under a
 * key that arrives on an inherited descriptor.  See vrot-vtpm(8).
 *
 * Exit status: 0 clean shutdown, 1 runtime error, 2 usage, 3 state refused.
 */
#include <stdio.h>

#include "args.h"
#include "run.h"

int main(int argc, char **argv)
{
        VtpmArgs a;

        if (vtpm_args_parse(argc, argv, &a) < 0) {
                vtpm_args_usage(stderr);
                return VTPM_EXIT_USAGE;
        }
        if (a.fork_server)
                return vtpm_forkserver_run(a.fork_server, a.log_level);
        return vtpm_run(&a, NULL);
}
