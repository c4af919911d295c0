#!/usr/bin/env python3
"""The main job (see demo.sh): run `vrotd --dev` in a temporary directory,
create a vTPM through its socket API, boot a QEMU guest against it, and show
what a relying party would check: the guest's PCRs, and the vTPM's EK
certificate chained to the (simulated) host's endorsement CA and fleet root.
"""

import argparse
import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

import guest  # noqa: E402
import harness  # noqa: E402
import vrotd  # noqa: E402


def openssl(*args):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--device", default="tpm-crb", choices=["tpm-crb", "tpm-tis"])
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    os.environ["VROT_VTPM"] = os.path.join(build, "vtpm", "vrot-vtpm")
    os.environ["VROT_VROTD"] = os.path.join(build, "daemon", "vrotd")

    with vrotd.Harness("vrot-demo") as h:
        d = vrotd.Vrotd(h)
        d.start()
        info = d.call("host.info")
        print(f"vrotd --dev is up (state in {d.state_dir}); host TPM {info['tcti']} "
              "(a SIMULATED root of trust: swtpm)")
        inst = d.call("instance.create", kind="vm", name="demo")
        uuid = inst["uuid"]
        print(f"created vTPM {uuid}: EKs made and endorsed, "
              f"{d.call('host.info')['host_tpm_commands']} host-TPM commands so far")
        started = d.call("instance.start", uuid=uuid)
        print(f"vrot-vtpm pid {started['pid']} listens on {started['ctrl']}")
        print(f"booting a TCG guest with {args.device} (about 10 s)...", flush=True)
        res = guest.boot(h, started["ctrl"], device=args.device)
        res.check(res.value("TPM-VERSION") == "2", "the guest found no TPM 2.0")
        print(f"guest booted in {res.elapsed:.1f} s and found a TPM 2.0; its PCRs:")
        for n in sorted(res.pcrs):
            print(f"  PCR{n:>2} sha256 {res.pcrs[n]}")

        root, ca, ek = h.path("fleet-root.pem"), h.path("host-ca.pem"), h.path("ek-rsa.pem")
        for path, pem in ((root, info["fleet_root_pem"]), (ca, info["host_ca_pem"]),
                          (ek, d.call("instance.ek_cert", uuid=uuid)["pem"])):
            with open(path, "w") as f:
                f.write(pem)
        print("the vTPM's RSA EK certificate:")
        print("  " + openssl("x509", "-in", ek, "-noout", "-subject"))
        print("  " + openssl("x509", "-in", ek, "-noout", "-issuer"))
        print("  openssl verify (fleet root -> host CA, whose key is in the host TPM -> EK): "
              + openssl("verify", "-CAfile", root, "-untrusted", ca, ek))
        d.call("instance.stop", uuid=uuid)
        d.stop_clean()
    return 0


if __name__ == "__main__":
    sys.exit(main())
