#!/usr/bin/env python3
"""Migration (issue 6, docs/migration.md), what of it vrotd runs so far,
against a real `vrotd --dev` with its simulated host TPM:

- `[migration] name` gives the host a transport certificate: issued by its
  own host CA inside the host TPM for the transport key at 0x81007602, with
  the name as dNSName and id-vrot-kp-migration-peer, chaining to the fleet
  root; kept across restarts, made anew when the name changes; host.info
  shows it.  A bad name stops vrotd with a message naming the key.
(The channel itself is tested with real TLS in tests/unit/test-mchannel.c;
the import keys with the host TPM in tests/unit/test-hosttpm.c.)"""

import subprocess

import harness as H
import vrotd as V
from harness import check

MIGRATION_PEER = "2.25.21260699799348664199561699285766518384.2.1"


def config(h, name):
    path = h.path(f"vrotd-{name}.conf")
    with open(path, "w") as f:
        f.write(f"[migration]\nname = {name}\n")
    return path


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], input=input, capture_output=True, text=True,
                          timeout=60)


def transport(d):
    m = d.call("host.info")["migration"]
    check(m is not None and m["transport_cert_pem"], f"host.info migration: {m}")
    return m


def test_transport_certificate():
    with V.Harness("migration") as h:
        d = V.Vrotd(h).start()
        check(d.call("host.info")["migration"] is None, "a host without [migration] has a name")
        d.stop_clean()

        d.config = config(h, "host-a.example")
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
        d.config = config(h, "host-b.example")
        d.start()
        renamed = transport(d)["transport_cert_pem"]
        text = openssl("x509", "-noout", "-text", input=renamed).stdout
        check("DNS:host-b.example" in text and renamed != again, f"after the rename:\n{text}")
        # The key stayed the host TPM's transport key.
        keys = {openssl("x509", "-noout", "-pubkey", input=p).stdout for p in (again, renamed)}
        check(len(keys) == 1, "the transport key changed with the name")
        d.stop_clean()

        d.config = config(h, "not a name")
        refusal = None
        try:
            d.start(timeout=30)
        except H.Failure as e:
            refusal = str(e)
        check(refusal is not None, "vrotd started with [migration] name = 'not a name'")
        check("[migration] name" in refusal and "not a host name" in refusal,
              f"the refusal does not name the key: {refusal}")


if __name__ == "__main__":
    H.main([test_transport_certificate])
