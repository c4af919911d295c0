#!/usr/bin/env python3
"""The main job (see demo.sh): run `vrotd --dev` in a temporary directory,
create a vTPM through its socket API, boot a QEMU guest against it, and show
what a relying party would check: the guest's PCRs, and the vTPM's EK
certificate chained to the (simulated) host's endorsement CA and fleet root.
Then two service vTPMs get service identities (ISO/IEC 27071 B.3.2.3) with
vrotctl, the two services authenticate each other over TLS 1.3 with keys that
never leave their vTPMs, and after one identity is revoked the handshake
with the CRL check fails.  Everything is removed at the end.
"""

import argparse
import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

import guest  # noqa: E402
import harness  # noqa: E402
import tlspeer  # noqa: E402
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
    os.environ["VROT_VROTCTL"] = os.path.join(build, "cli", "vrotctl")
    os.environ["VROT_TLSPEER"] = os.path.join(build, "tests", "tools", "vrot-tlspeer")
    summary = []

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
        summary.append(f"VM vTPM {uuid}: guest booted with a TPM 2.0, EK certificate verified")
        d.call("instance.stop", uuid=uuid)

        services = [service_identity(h, d, name, root) for name in ("billing", "ledger")]
        print("TLS 1.3 between billing (server) and ledger (client), each key used inside "
              "its own vTPM, each side verifying the other's chain to the fleet root:")
        ok, srv, cli = tlspeer.handshake(h, services[0], services[1])
        show(srv, cli)
        harness.check(ok, "the TLS 1.3 handshake failed")
        summary.append("service identities issued in two service vTPMs; mutual TLS 1.3: ok")

        print(f"revoking billing's identity {services[0]['serial']}:")
        print("  " + vrotctl(d, "identity", "revoke", services[0]["serial"]).strip())
        crl = h.path("host.crl")
        vrotctl(d, "crl", "--out", crl)
        for line in openssl("crl", "-in", crl, "-noout", "-crlnumber", "-lastupdate").splitlines():
            print(f"  CRL signed by the host CA in the host TPM: {line}")
        print("the same handshake, now with the host CA's CRL:")
        ok, srv, cli = tlspeer.handshake(h, services[0], services[1], crl)
        show(srv, cli)
        harness.check(not ok, "a revoked identity still authenticated")
        summary.append("after revocation the handshake with the CRL check fails, as it must")
        d.stop_clean()
    print("\nsummary:")
    for line in summary:
        print(f"  - {line}")
    print("  - vrotd, its workers, the simulated host TPM and the temporary directory "
          "are gone")
    return 0


def vrotctl(d, *args):
    code, out, err = vrotd.vrotctl(d.socket, *args)
    harness.check(code == 0, f"vrotctl {' '.join(args)}: {err.strip()}")
    return out


def show(server, client):
    for who, out in (("server", server), ("client", client)):
        for line in out.splitlines():
            if not line.startswith("listening"):
                print(f"  {who}: {line}")


def service_identity(h, d, name, root):
    """A service vTPM and its identity, issued with vrotctl."""
    uuid = d.call("instance.create", kind="service", name=name)["uuid"]
    data = d.call("instance.start", uuid=uuid)["data"]
    chain = h.path(f"{name}.chain.pem")
    out = vrotctl(d, "identity", "issue", uuid, "--name", name,
                  "--uri", f"spiffe://demo.vrot/{name}", "--out", chain)
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    print(f"service {name} ({uuid}): identity issued by `vrotctl identity issue`")
    for line in out.splitlines():
        print(f"  {line}")
    return {"data": data, "handle": fields["key handle"].strip(), "fullchain": chain,
            "root": root, "serial": fields["serial"].strip()}


if __name__ == "__main__":
    sys.exit(main())
