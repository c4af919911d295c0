#!/usr/bin/env python3
"""Migration (issue 6, docs/migration.md), what of it vrotd runs so far,
against a real `vrotd --dev` with its simulated host TPM:

- `[migration] name` gives the host a transport certificate: issued by its
  own host CA inside the host TPM for the transport key at 0x81007602, with
  the name as dNSName and id-vrot-kp-migration-peer, chaining to the fleet
  root; kept across restarts, made anew when the name changes; host.info
  shows it.  A bad name stops vrotd with a message naming the key.
- two hosts of one fleet (the second --dev daemon is given the first one's
  local fleet root) run the attested handshake over TCP on loopback:
  TLS 1.3 with their transport certificates, then each one's host-TPM
  quote and CA-key certification bound to the session, checked against
  the other's policy (migration.check); refused: a peer the policy does not
  name, host PCR values outside it, a host of another fleet.
(The channel's TLS checks are also tested in tests/unit/test-mchannel.c,
the import keys with the host TPM in tests/unit/test-hosttpm.c.)"""

import json
import os
import shutil

import subprocess

import harness as H
import vrotd as V
from harness import check

MIGRATION_PEER = "2.25.21260699799348664199561699285766518384.2.1"


def config(h, name, policy=None, listen=None):
    path = h.path(f"vrotd-{name}.conf")
    with open(path, "w") as f:
        f.write(f"[migration]\nname = {name}\n")
        if policy:
            f.write(f"policy = {policy}\n")
        if listen:
            f.write(f"listen = {listen}\n")
    return path


ZERO = "00" * 32


def policy(h, name, peers, pcr0=ZERO):
    path = h.path(f"policy-{name}.json")
    with open(path, "w") as f:
        json.dump({"peers": peers, "pcrs": {"sha256": {"0": [pcr0]}}}, f)
    return path


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], input=input, capture_output=True, text=True,
                          timeout=60)


def start_refused(d, conf):
    """Starts @d with configuration @conf, which it must refuse; returns why."""
    d.config = conf
    try:
        d.start(timeout=30)
    except H.Failure as e:
        return str(e)
    raise H.Failure(f"vrotd started with {conf}")


def transport(d):
    m = d.call("host.info")["migration"]
    check(m is not None and m["transport_cert_pem"], f"host.info migration: {m}")
    return m


def test_transport_certificate():
    with V.Harness("migration") as h:
        d = V.Vrotd(h).start()
        check(d.call("host.info")["migration"] is None, "a host without [migration] has a name")
        d.stop_clean()

        d.config = config(h, "host-a.example", policy(h, "a", []))
        d.start()
        info = d.call("host.info")
        m = transport(d)
        check(m["name"] == "host-a.example", f"the name: {m}")
        cert, ca, root = (h.path(n) for n in ("transport.pem", "host-ca.pem", "root.pem"))
        for path, pem in ((cert, m["transport_cert_pem"]), (ca, info["host_ca_pem"]),
                          (root, info["fleet_root_pem"])):
            with open(path, "w") as f:
                f.write(pem)
        for purpose in ("sslserver", "sslclient"):
            r = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", root,
                        "-untrusted", ca, cert)
            check(r.returncode == 0, f"openssl verify -purpose {purpose}: {r.stdout} {r.stderr}")
        text = openssl("x509", "-in", cert, "-noout", "-text").stdout
        check("DNS:host-a.example" in text and MIGRATION_PEER in text
              and "CN = host-a.example" in text, f"the transport certificate:\n{text}")
        serial = openssl("x509", "-in", cert, "-noout", "-serial").stdout

        # Kept across a restart; made anew for another name.
        d.stop_clean()
        d.start()
        again = transport(d)["transport_cert_pem"]
        check(openssl("x509", "-noout", "-serial", input=again).stdout == serial,
              "the transport certificate changed across a restart")
        d.stop_clean()
        d.config = config(h, "host-b.example", policy(h, "b", []))
        d.start()
        renamed = transport(d)["transport_cert_pem"]
        text = openssl("x509", "-noout", "-text", input=renamed).stdout
        check("DNS:host-b.example" in text and renamed != again, f"after the rename:\n{text}")
        # The key stayed the host TPM's transport key.
        keys = {openssl("x509", "-noout", "-pubkey", input=p).stdout for p in (again, renamed)}
        check(len(keys) == 1, "the transport key changed with the name")
        d.stop_clean()

        # A name without a policy, and a name that is not a host name: vrotd stops.
        refusal = start_refused(d, config(h, "host-b.example"))
        check("[migration] policy is required" in refusal, f"a name without a policy: {refusal}")
        refusal = start_refused(d, config(h, "not a name"))
        check("[migration] name" in refusal and "not a host name" in refusal,
              f"the refusal does not name the key: {refusal}")


def share_fleet_root(h, source, target):
    """A --dev daemon's local fleet root, given to another before its first
    start: both hosts then belong to one fleet."""
    os.makedirs(os.path.join(target.state_dir, "host"), mode=0o700, exist_ok=True)
    for name in ("fleet-root.key", "fleet-root.pem"):
        shutil.copy2(os.path.join(source.state_dir, "host", name),
                     os.path.join(target.state_dir, "host", name))


def test_attested_handshake():
    with V.Harness("migration-hs") as h:
        a = V.Vrotd(h, name="a")
        a.config = config(h, "host-a.example", policy(h, "a", ["host-b.example"]),
                          "127.0.0.1:0")
        a.start()
        a_port = transport(a)["port"]
        check(a_port > 0, "host A does not listen")
        b = V.Vrotd(h, name="b")
        share_fleet_root(h, a, b)
        b.config = config(h, "host-b.example", policy(h, "b", ["host-a.example"]))
        b.start()
        check(b.call("host.info")["fleet_root_pem"] == a.call("host.info")["fleet_root_pem"],
              "the two hosts are not of one fleet")
        to = f"127.0.0.1:{a_port}"
        r = b.call("migration.check", to=to)
        check(r["peer"] == "host-a.example" and r["pcr_mask"] == 1, f"migration.check: {r}")
        check("host-b.example attested" in a.log_text(), f"A's log:\n{a.log_text()[-2000:]}")
        rc, out, err = V.vrotctl(b.socket, "migration", "check", to)
        check(rc == 0 and out.startswith("host-a.example: authenticated"),
              f"vrotctl migration check: {rc} {out} {err}")

        # B's policy wants another PCR 0: A's evidence is refused, naming the PCR.
        b.stop_clean()
        b.config = config(h, "host-b.example", policy(h, "b2", ["host-a.example"], "ff" * 32))
        b.start()
        e = V.expect_error(-32008, b.call, "migration.check", to=to)
        check("PCR 0" in e.message, f"the refusal: {e.message}")
        rc, out, err = V.vrotctl(b.socket, "migration", "check", to)
        check(rc == 1 and "PCR 0" in err and not out, f"vrotctl, refused: {rc} {out} {err}")
        # A's policy does not name B: A refuses B in the TLS handshake.
        b.stop_clean()
        b.config = config(h, "host-b.example", policy(h, "b", ["host-a.example"]))
        b.start()
        a.stop_clean()
        a.config = config(h, "host-a.example", policy(h, "a2", ["host-c.example"]),
                          "127.0.0.1:0")
        a.start()
        to = f"127.0.0.1:{transport(a)['port']}"
        V.expect_error(-32008, b.call, "migration.check", to=to)
        check("not in the migration policy" in a.log_text(), f"A's log:\n{a.log_text()[-2000:]}")
        # A host of another fleet.
        c = V.Vrotd(h, name="c")
        c.config = config(h, "host-b.example", policy(h, "c", ["host-a.example"]))
        c.start()
        e = V.expect_error(-32008, c.call, "migration.check", to=to)
        # Nothing listens there: a clear error, not a hang.
        e = V.expect_error(-32008, b.call, "migration.check", to="127.0.0.1:1")
        check("connecting to" in e.message, f"a closed port: {e.message}")
        V.expect_error(-32602, b.call, "migration.check", to="not-an-address")
        for d in (a, b, c):
            d.stop_clean()


if __name__ == "__main__":
    H.main([test_transport_certificate, test_attested_handshake])
