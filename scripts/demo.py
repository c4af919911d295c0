#!/usr/bin/env python3
"""Boot a QEMU guest against a vrot-vtpm worker and show its TPM (see demo.sh)."""

import argparse
import os
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

import guest  # noqa: E402
import harness  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--device", default="tpm-crb", choices=["tpm-crb", "tpm-tis"])
    args = ap.parse_args()
    os.environ["VROT_VTPM"] = os.path.join(os.path.abspath(args.build), "vtpm", "vrot-vtpm")

    with harness.Harness("vrot-demo") as h:
        # A fresh random key, handed over through a pipe, as vrotd will.
        srv = h.start_vtpm(name="demo", key=os.urandom(32))
        print(f"vrot-vtpm pid {srv.pid}: control socket {srv.ctrl}, state {srv.state_dir}")
        print(f"booting a TCG guest with {args.device} (about 10 s)...", flush=True)
        res = guest.boot(h, srv.ctrl, device=args.device)
        res.check(res.value("TPM-VERSION") == "2", "the guest found no TPM 2.0")
        print(f"guest booted in {res.elapsed:.1f} s and found a TPM 2.0")
        for n in sorted(res.pcrs):
            print(f"  PCR{n:>2} sha256 {res.pcrs[n]}")
        print(f"  random from the vTPM: {res.random}")
        print("state files (sealed with AES-256-GCM):", ", ".join(sorted(os.listdir(srv.state_dir))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
