#!/usr/bin/env python3
"""vrotctl's instance commands against a real `vrotd --dev` (issue 5,
vrotctl(1)): create, start, stop, delete, list, info, ek-cert, libvirt-xml,
readable by default and JSON with --json; exit status 0, 1 with one line on
stderr when the daemon refuses or cannot be reached, 2 for a usage error."""

import json
import os
import subprocess
import xml.etree.ElementTree as ET

import harness as H
import vrotd as V
from harness import check
from vrotd import vrotctl

UUID = "3c9d2f0e-4b1a-4c3d-9e8f-0a1b2c3d4e5f"


def ok(sock, *args):
    rc, out, err = vrotctl(sock, *args)
    check(rc == 0, f"vrotctl {' '.join(args)} exited {rc}:\n{err}{out}")
    return out


def fails(sock, want_rc, *args, says=None):
    rc, out, err = vrotctl(sock, *args)
    check(rc == want_rc, f"vrotctl {' '.join(args)} exited {rc}, want {want_rc}:\n{err}{out}")
    lines = err.strip().splitlines()
    check(len(lines) == 1 and lines[0].startswith("vrotctl: "),
          f"vrotctl {' '.join(args)}: not one error line on stderr: {err!r}")
    if says:
        check(says in err, f"vrotctl {' '.join(args)}: {err.strip()!r} does not say {says!r}")
    return err


def openssl_text(pem_or_der, der=False):
    r = subprocess.run(["openssl", "x509", "-noout", "-subject", "-issuer"]
                       + (["-inform", "DER"] if der else []),
                       input=pem_or_der, capture_output=True, timeout=60)
    check(r.returncode == 0, f"openssl cannot read the certificate: {r.stderr!r}")
    return r.stdout.decode()


def fields(text):
    """The "name: value" lines of an instance, as a dict."""
    out = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def test_instance_commands():
    with V.Harness("vrotctl") as h:
        d = V.Vrotd(h).start()
        s = d.socket
        out = ok(s, "create", "--kind", "vm", "--name", "web-1", "--uuid", UUID, "--ek", "ecc")
        check(out.splitlines()[0] == UUID, f"create did not print the UUID first:\n{out}")
        check(fields(out)["state"] == "stopped", f"a new instance is not stopped:\n{out}")
        created = json.loads(ok(s, "--json", "create", "--kind", "service", "--name", "svc",
                                "--owner", "65534"))
        svc = created["uuid"]
        check(created["owner"] == 65534 and created["ek_rsa_cert_pem"], f"create --json: {created}")

        listing = ok(s, "list")
        check(listing.splitlines()[0].split()[:3] == ["UUID", "KIND", "STATE"], listing)
        check(any(l.startswith(UUID) and "web-1" in l for l in listing.splitlines()), listing)
        listed = json.loads(ok(s, "--json", "list"))["instances"]
        check({i["uuid"] for i in listed} == {UUID, svc}, f"list --json: {listed}")

        started = fields(ok(s, "start", UUID))
        check(started["state"] == "running" and int(started["pid"]) > 0, f"start: {started}")
        H.connect_now(started["ctrl"])
        info = json.loads(ok(s, "--json", "info", UUID))
        check(info["pid"] == int(started["pid"]) and info["ctrl"] == started["ctrl"], f"info: {info}")

        # EK certificates: PEM, DER, to a file; the one not made is refused.
        text = openssl_text(ok(s, "ek-cert", UUID, "--type", "ecc").encode())
        check(UUID in text or "vrot" in text.lower(), f"the ECC EK certificate: {text}")
        der = h.path("ek.der")
        ok(s, "ek-cert", svc, "--der", "--out", der)
        with open(der, "rb") as f:
            openssl_text(f.read(), der=True)
        fails(s, 1, "ek-cert", UUID, "--type", "rsa", says="-32001")

        # libvirt's <tpm> element: well-formed, on the control socket.
        tpm = ET.fromstring(ok(s, "libvirt-xml", UUID))
        src = tpm.find("./backend[@type='external']/source")
        check(tpm.get("model") == "tpm-crb" and src is not None and src.get("path") == info["ctrl"]
              and src.get("type") == "unix" and src.get("mode") == "connect",
              f"libvirt-xml: {ET.tostring(tpm)!r}")
        check(ET.fromstring(ok(s, "libvirt-xml", UUID, "--model", "tpm-tis")).get("model")
              == "tpm-tis", "--model tpm-tis")
        fails(s, 1, "libvirt-xml", svc, says="not a VM")
        fails(s, 2, "libvirt-xml", UUID, "--model", "tpm-spi")

        stopped = fields(ok(s, "stop", UUID))
        check(stopped["state"] == "stopped" and stopped["pid"] == "-", f"stop: {stopped}")
        check(fields(ok(s, "delete", svc))["state"] == "deleted", "delete")
        fails(s, 1, "start", svc, says="-32001")

        # Refusals and usage errors, each one line and the right status.
        fails(s, 1, "info", "6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b", says="-32001")
        fails(s, 1, "info", "not-a-uuid", says="-32602")
        fails(s, 1, "create", "--kind", "container", "--name", "x", says="-32602")
        fails(s, 1, "create", "--kind", "vm", "--name", "again", "--uuid", UUID, says="-32002")
        fails(s, 2, "create", "--name", "no-kind")
        fails(s, 2, "start")
        fails(s, 2, "start", UUID, UUID)
        fails(s, 2, "nosuchcommand")
        fails(h.path("nowhere.sock"), 1, "list")
        check(json.loads(ok(s, "--json", "info", UUID))["state"] == "stopped",
              "the refused calls changed the instance")
        d.stop_clean()


if __name__ == "__main__":
    H.main([test_instance_commands])
