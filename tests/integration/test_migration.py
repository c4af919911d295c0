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
- cold migration (instance.migrate, `vrotctl migrate`): a stopped service
  vTPM with an NV index and a persistent key moves from A to B; on B it
  starts with the same NV data, the same persistent key and the same EKs,
  whose certificates B's host CA issued again (NV and instance.ek_cert);
  on A it is a tombstone that cannot start, and restoring A's older state
  directory is refused (the NV counter moved at the commit); it can move
  back to A; a running instance, a destination that fails A's policy and
  an unknown UUID are refused with the instance still live on A.
- the crash matrix: for every step of the protocol, on either side, the
  daemon is stopped exactly there (a test build's --fault-stop, daemon/
  fault.h) and killed with SIGKILL, then started again; once the journals
  have settled exactly one of A and B holds a live copy, the one the
  protocol says (A before A's commit, B after), and it starts with its NV
  data intact; the other holds no state.
- the stream: a byte flipped in the state as it crosses a TCP proxy makes
  the migration fail (TLS refuses the record) with the instance live on A
  and nothing on B, and a second attempt succeeds; the recorded bytes of a
  whole migration, replayed later to B or to a third host, are refused
  before any frame is read; a destination of another fleet is refused.
- live migration at the vTPM's level, the test playing QEMU on both
  control channels: without a prepared migration the source's worker hands
  out no stateblob; `vrotctl migrate --live` prepares (the source locked,
  an incoming worker on B); commit is refused, nothing decided, until B's
  worker took the state; then the guest on B reads the NV index and the
  PCR it extended on A (PCRs survive a live migration), the EK certificate
  in NV is B's, and A holds a tombstone; an abort leaves the VM's vTPM on A,
  handing out no more blobs, and B discards its incoming worker; a service
  cannot migrate live.
- live migration across a kill -9: of the source after QEMU moved the
  state (the restarted source asks the destination and commits), of the
  source before (it aborts: the vTPM stays on A, B discards), and of the
  destination while prepared (its incoming worker is adopted and the
  migration completes).
- live migration with real QEMU: a guest on A extends PCR 16 and writes an
  NV index, then keeps reading both; QEMU's migration to a QEMU on B
  without a prepared vTPM migration fails and the guest keeps running on
  A; prepared, QEMU's migration completes (source QEMU to B's with
  -incoming, driven over QMP), the source QEMU quits, vrotctl commits, and
  the guest, now on B, reads the same PCR value and NV data.
(The channel's TLS checks are also tested in tests/unit/test-mchannel.c,
the import keys with the host TPM in tests/unit/test-hosttpm.c.)"""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import uuid as uuidlib

import guest
import guesttpm
import harness as H
import test_hook
import ptm
import vrotd as V
from harness import check
from vrotd import (ZERO, address, config, free_port, policy, share_fleet_root,  # noqa: F401
                   transport, two_hosts)

MIGRATION_PEER = "2.25.21260699799348664199561699285766518384.2.1"


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


NV_INDEX = "0x1500016"
KEY_HANDLE = "0x81000001"


class Service:
    """A service instance's data socket, for tpm2-tools."""

    def __init__(self, info):
        self.data = info["data"]
        self.kind = "service"

    def log_text(self):
        return ""


def tpm2(d, uuid, *args):
    return H.tpm2(Service(d.call("instance.start", uuid=uuid)), *args)


def pubkey(h, d, uuid, handle, tag):
    out = h.path(f"{tag}.pem")
    tpm2(d, uuid, "readpublic", "-c", handle, "-o", out, "-f", "pem")
    with open(out) as f:
        return f.read()


def nv_read(h, d, uuid, index, tag):
    out = h.path(f"{tag}.bin")
    tpm2(d, uuid, "nvread", index, "-C", "o", "-o", out)
    with open(out, "rb") as f:
        return f.read()


def ek_cert_der(h, d, uuid, tag):
    out = h.path(f"{tag}.der")
    tpm2(d, uuid, "nvread", "0x1c00002", "-o", out)
    with open(out, "rb") as f:
        return f.read()


def verifies(h, info, cert_pem, tag):
    root, ca, cert = (h.path(f"{tag}-{n}.pem") for n in ("root", "ca", "cert"))
    for path, pem in ((root, info["fleet_root_pem"]), (ca, info["host_ca_pem"]), (cert, cert_pem)):
        with open(path, "w") as f:
            f.write(pem)
    return openssl("verify", "-CAfile", root, "-untrusted", ca, cert).returncode == 0


def test_cold_migration():
    with V.Harness("migration-cold") as h:
        a, b = two_hosts(h)
        u = a.call("instance.create", kind="service", name="billing")["uuid"]
        data = b"vrot migrates this NV index intact"
        with open(h.path("nv.in"), "wb") as f:
            f.write(data)
        tpm2(a, u, "nvdefine", NV_INDEX, "-C", "o", "-s", str(len(data)),
             "-a", "ownerread|ownerwrite|authread|authwrite")
        tpm2(a, u, "nvwrite", NV_INDEX, "-C", "o", "-i", h.path("nv.in"))
        tpm2(a, u, "createprimary", "-C", "o", "-g", "sha256", "-G", "ecc", "-c", h.path("p.ctx"))
        tpm2(a, u, "evictcontrol", "-C", "o", "-c", h.path("p.ctx"), KEY_HANDLE)
        key = pubkey(h, a, u, KEY_HANDLE, "key-a")
        ek = pubkey(h, a, u, "0x81010001", "ek-a")
        old_cert = a.call("instance.ek_cert", uuid=u, type="rsa")["pem"]

        # Running: refused, nothing changes.
        e = V.expect_error(-32003, a.call, "instance.migrate", uuid=u, to=address(b))
        check("stop it first" in e.message, f"a running instance: {e.message}")
        a.call("instance.stop", uuid=u)
        # A copy of A's state directory from before the migration.
        a.stop_clean()
        backup = h.path("a-backup")
        a.backup_state(backup)
        a.start()

        rc, out, err = V.vrotctl(a.socket, "migrate", u, "--to", address(b))
        check(rc == 0 and f"{u}: migrated to host-b.example" in out, f"vrotctl migrate: {rc} {out} {err}")

        # A: a tombstone that cannot start.
        info = a.call("instance.info", uuid=u)
        check(info["state"] == "migrated" and info["migration"] is None, f"A's instance: {info}")
        V.expect_error(V.NOT_FOUND, a.call, "instance.start", uuid=u)
        check(not os.path.exists(os.path.join(a.state_dir, "instances", u)),
              "A kept the state files of a migrated instance")
        # B: the same vTPM, endorsed by B.
        info = b.call("instance.info", uuid=u)
        check(info["state"] == "stopped" and info["name"] == "billing" and info["kind"] == "service",
              f"B's instance: {info}")
        check(nv_read(h, b, u, NV_INDEX, "nv-b") == data, "the NV index changed on the way")
        check(pubkey(h, b, u, KEY_HANDLE, "key-b") == key, "the persistent key changed")
        check(pubkey(h, b, u, "0x81010001", "ek-b") == ek, "the EK changed")
        new_cert = b.call("instance.ek_cert", uuid=u, type="rsa")["pem"]
        check(new_cert != old_cert, "B did not issue the EK certificate again")
        b_info, a_info = b.call("host.info"), a.call("host.info")
        check(verifies(h, b_info, new_cert, "new-b"), "B's EK certificate does not verify under B")
        check(not verifies(h, a_info, new_cert, "new-a"), "B's EK certificate verifies under A's CA")
        check(ek_cert_der(h, b, u, "ekcert-b") ==
              subprocess.run(["openssl", "x509", "-outform", "DER"], input=new_cert.encode(),
                             capture_output=True, timeout=60).stdout,
              "NV 0x01c00002 does not hold B's certificate")
        b.call("instance.stop", uuid=u)

        # A VM's vTPM (no data socket) moves too, and keeps its kind.
        vm = a.call("instance.create", kind="vm", name="web-vm")["uuid"]
        rc, out, err = V.vrotctl(a.socket, "migrate", vm)
        check(rc == 2 and "--to" in err, f"vrotctl migrate without --to: {rc} {out} {err}")
        r = a.call("instance.migrate", uuid=vm, to=address(b))
        check(r["decision"] == "commit", f"the VM's migration: {r}")
        info = b.call("instance.start", uuid=vm)
        check(info["kind"] == "vm" and info["data"] is None and info["state"] == "running",
              f"the VM's vTPM on B: {info}")
        check(verifies(h, b_info, b.call("instance.ek_cert", uuid=vm, type="ecc")["pem"], "vm-b"),
              "the VM's ECC EK certificate does not verify under B")
        b.call("instance.stop", uuid=vm)

        # Back to A (a migrated tombstone may come back), and A sees the NV index.
        r = b.call("instance.migrate", uuid=u, to=address(a))
        check(r["peer"] == "host-a.example" and r["decision"] == "commit" and r["peer_confirmed"],
              f"instance.migrate back: {r}")
        check(nv_read(h, a, u, NV_INDEX, "nv-back") == data, "the NV index changed coming back")
        a.call("instance.stop", uuid=u)
        check(b.call("instance.info", uuid=u)["state"] == "migrated", "B still has it")

        # Refusals that change nothing: unknown UUID, a destination that fails the policy.
        V.expect_error(V.NOT_FOUND, a.call, "instance.migrate",
                       uuid="00000000-0000-4000-8000-000000000009", to=address(b))
        b.stop_clean()
        b.config = config(h, "host-b.example", policy(h, "b-ff", ["host-a.example"]),
                          "127.0.0.1:0")
        b.start()
        a.stop_clean()
        a.config = config(h, "host-a.example", policy(h, "a-ff", ["host-b.example"], "ff" * 32),
                          "127.0.0.1:0")
        a.start()
        e = V.expect_error(-32008, a.call, "instance.migrate", uuid=u, to=address(b))
        check("PCR 0" in e.message, f"a destination outside the policy: {e.message}")
        info = a.call("instance.info", uuid=u)
        check(info["state"] == "stopped" and info["migration"] is None, f"after the refusal: {info}")
        a.call("instance.start", uuid=u)
        a.call("instance.stop", uuid=u)

        # A's state directory of before the first migration: refused as a rollback.
        a.stop_clean()
        a.restore_state(backup)
        refusal = start_refused(a, a.config)
        check("restored from an older copy" in refusal + a.log_text(),
              f"a restored source state directory: {refusal}")
        b.stop_clean()


# Fault points (daemon/fault.h) and who must hold the live copy after a
# kill -9 there: the source until its commit is durable, then the destination.
CRASH_POINTS = [
    ("a", "src-offered", "a"), ("a", "src-locked", "a"), ("a", "src-sent", "a"),
    ("a", "src-prepared", "a"), ("a", "src-committed", "b"), ("a", "src-told", "b"),
    ("b", "dst-offered", "a"), ("b", "dst-importing", "a"), ("b", "dst-prepared", "a"),
    ("b", "dst-committed", "b"),
]
SETTLE_TIMEOUT = 120.0      # a hang guard, not a performance threshold


def wait_fault_stop(d, point):
    V.wait_fault_stop(d, point, SETTLE_TIMEOUT)


def restart(d, extra=()):
    d.extra = list(extra)
    d.start()


def settled(d, uuid):
    return not [m for m in d.call("host.info")["migrations"] if m["uuid"] == uuid]


def live(d, uuid):
    try:
        return d.call("instance.info", uuid=uuid)["state"] not in ("migrated", "deleted")
    except V.RpcError as e:
        check(e.code == V.NOT_FOUND, f"instance.info: {e}")
        return False


def test_crash_matrix():
    with V.Harness("migration-crash") as h:
        a, b = two_hosts(h)
        data = b"one live copy, whatever crashes"
        with open(h.path("nv.in"), "wb") as f:
            f.write(data)
        for victim_name, point, owner in CRASH_POINTS:
            victim = a if victim_name == "a" else b
            victim.stop_clean()
            restart(victim, ["--fault-stop", point])
            u = a.call("instance.create", kind="service", name=point)["uuid"]
            tpm2(a, u, "nvdefine", NV_INDEX, "-C", "o", "-s", str(len(data)),
                 "-a", "ownerread|ownerwrite|authread|authwrite")
            tpm2(a, u, "nvwrite", NV_INDEX, "-C", "o", "-i", h.path("nv.in"))
            a.call("instance.stop", uuid=u)
            client = a.connect()
            client.send_raw((json.dumps({"jsonrpc": "2.0", "id": 1, "method": "instance.migrate",
                                         "params": {"uuid": u, "to": address(b)}}) + "\n").encode())
            wait_fault_stop(victim, point)
            victim.stop(signal.SIGKILL)
            client.close()
            restart(victim)
            # The source tells its decision at start (and every 30 s): start
            # it again so the journals settle without waiting.
            deadline = time.monotonic() + SETTLE_TIMEOUT
            while not (settled(a, u) and settled(b, u)):
                if time.monotonic() > deadline:
                    raise H.Failure(f"{point}: the journals did not settle: A "
                                    f"{a.call('host.info')['migrations']} B "
                                    f"{b.call('host.info')['migrations']}\n"
                                    f"{a.log_text()[-2000:]}\n{b.log_text()[-2000:]}")
                if not settled(a, u):
                    a.stop_clean()
                    a.start()
                time.sleep(0.2)
            on_a, on_b = live(a, u), live(b, u)
            check(on_a != on_b, f"{point}: live on A {on_a}, on B {on_b}: not exactly one copy")
            holder = a if on_a else b
            check(holder.name == owner, f"{point}: the live copy is on {holder.name}, not {owner}")
            other = b if on_a else a
            check(not os.path.exists(os.path.join(other.state_dir, "instances", u)),
                  f"{point}: {other.name} kept state of an instance that lives on {holder.name}")
            check(nv_read(h, holder, u, NV_INDEX, f"nv-{point}") == data,
                  f"{point}: the NV data changed")
            holder.call("instance.stop", uuid=u)
            print(f"  {point}: kill -9 of {victim.name}: one live copy, on {holder.name}")
        a.stop_clean()
        b.stop_clean()


class Proxy:
    """A TCP relay on loopback between a source and a destination that
    records what the source sends and may flip one byte of it: the first
    byte at or after @flip_at in the source's stream."""

    def __init__(self, to_port, flip_at=None):
        self.to_port, self.flip_at = to_port, flip_at
        self.sent = bytearray()         # source -> destination, as the source sent it
        self.flipped = False
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.threads = []
        t = threading.Thread(target=self.accept, daemon=True)
        t.start()
        self.threads.append(t)

    def accept(self):
        try:
            src, _ = self.listener.accept()
        except OSError:
            return
        dst = socket.create_connection(("127.0.0.1", self.to_port))
        back = threading.Thread(target=self.pump, args=(dst, src, False), daemon=True)
        back.start()
        self.threads.append(back)
        self.pump(src, dst, True)

    def pump(self, a, b, forward):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if forward:
                    start = len(self.sent)
                    self.sent += data
                    if (self.flip_at is not None and not self.flipped and
                            start + len(data) > self.flip_at):
                        data = bytearray(data)
                        data[max(self.flip_at - start, 0)] ^= 0x40
                        self.flipped = True
                b.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (a, b):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def replay(port, data):
    """Sends @data to a peer as a new connection; returns what came back."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
    return got


def test_tampered_and_replayed():
    with V.Harness("migration-stream") as h:
        a, b = two_hosts(h)
        b_port = int(address(b).rsplit(":", 1)[1])
        data = b"the state must arrive intact or not at all"
        with open(h.path("nv.in"), "wb") as f:
            f.write(data)
        u = a.call("instance.create", kind="service", name="tamper")["uuid"]
        tpm2(a, u, "nvdefine", NV_INDEX, "-C", "o", "-s", str(len(data)),
             "-a", "ownerread|ownerwrite|authread|authwrite")
        tpm2(a, u, "nvwrite", NV_INDEX, "-C", "o", "-i", h.path("nv.in"))
        a.call("instance.stop", uuid=u)

        # First a clean run through the proxy, to learn where the state starts:
        # the source's bytes up to its offer request, then the state frame.
        v = a.call("instance.create", kind="service", name="recorded")["uuid"]
        clean = Proxy(b_port)
        r = a.call("instance.migrate", uuid=v, to=f"127.0.0.1:{clean.port}")
        check(r["decision"] == "commit", f"through the proxy: {r}")
        clean.close()
        recorded = bytes(clean.sent)
        check(len(recorded) > 8000, f"the stream is {len(recorded)} bytes: where is the state?")

        # A byte flipped well inside the state frame (past the first 60 %).
        proxy = Proxy(b_port, flip_at=len(recorded) * 6 // 10)
        e = V.expect_error(-32008, a.call, "instance.migrate", uuid=u,
                           to=f"127.0.0.1:{proxy.port}")
        proxy.close()
        check(proxy.flipped, "the proxy flipped nothing")
        info = a.call("instance.info", uuid=u)
        check(info["state"] == "stopped" and info["migration"] is None,
              f"A after a tampered transfer: {info} ({e.message})")
        V.expect_error(V.NOT_FOUND, b.call, "instance.info", uuid=u)
        check("the channel from host-a.example broke: decryption failed or bad record mac"
              in b.log_text(), f"B's log does not name the tampering:\n{b.log_text()[-2000:]}")
        check(nv_read(h, a, u, NV_INDEX, "nv-after-tamper") == data, "A's NV data changed")
        a.call("instance.stop", uuid=u)

        # The recorded stream, replayed: to B, and to a third host of the fleet.
        before = b.call("host.info")["instances"]
        replay(b_port, recorded)
        c = V.Vrotd(h, name="c")
        share_fleet_root(h, a, c)
        c.config = config(h, "host-c.example", policy(h, "c", ["host-a.example"]),
                          f"127.0.0.1:{free_port()}")
        c.start()
        replay(int(address(c).rsplit(":", 1)[1]), recorded)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not ("refused a connection" in b.log_text() and "refused a connection" in c.log_text()):
            check(time.monotonic() < deadline, f"no refusal of the replay:\n{b.log_text()[-2000:]}"
                  f"\n{c.log_text()[-2000:]}")
            time.sleep(0.1)
        check(b.call("host.info")["instances"] == before and not b.call("host.info")["migrations"],
              "B changed after a replay")
        check(c.call("host.info")["instances"] == 0, "C took something from a replay")

        # A destination of another fleet.
        other = V.Vrotd(h, name="other")
        other.config = config(h, "host-b.example", policy(h, "o", ["host-a.example"]),
                              f"127.0.0.1:{free_port()}")
        other.start()
        V.expect_error(-32008, a.call, "instance.migrate", uuid=u, to=address(other))
        check(a.call("instance.info", uuid=u)["state"] == "stopped", "A after another fleet")

        # The tampered attempt left nothing behind: the migration now succeeds.
        r = a.call("instance.migrate", uuid=u, to=address(b))
        check(r["decision"] == "commit" and r["peer_confirmed"], f"after the tampering: {r}")
        check(nv_read(h, b, u, NV_INDEX, "nv-b") == data, "B's NV data differs")
        b.call("instance.stop", uuid=u)

        # A migration ID reused: a source (a test build playing a replaying
        # peer) sends its state under the ID of its previous migration.
        a.stop_clean()
        a.extra = ["--fault-stop", "reuse-id"]
        a.start()
        first = a.call("instance.create", kind="service", name="first")["uuid"]
        used = a.call("instance.migrate", uuid=first, to=address(b))["migration_id"]
        again = a.call("instance.create", kind="service", name="again")["uuid"]
        e = V.expect_error(-32008, a.call, "instance.migrate", uuid=again, to=address(b))
        info = a.call("instance.info", uuid=again)
        check(info["state"] == "stopped" and info["migration"] is None,
              f"A after a reused migration ID: {info} ({e.message})")
        V.expect_error(V.NOT_FOUND, b.call, "instance.info", uuid=again)
        check(f"sent state for migration {used}" in b.log_text(),
              f"B's log does not name the reused ID {used}:\n{b.log_text()[-1500:]}")
        a.stop_clean()
        a.extra = []
        a.start()
        for d in (a, b, c, other):
            d.stop_clean()


def test_live_migration_protocol():
    with V.Harness("migration-live") as h:
        a, b = two_hosts(h)
        u = a.call("instance.create", kind="vm", name="web-live")["uuid"]
        info = a.call("instance.start", uuid=u)
        g = guesttpm.GuestTpm(h, info["ctrl"], name="guest-a")
        g.tools("tpm2_startup", "-c")
        data = b"written by the guest before the live migration"
        with open(h.path("nv.in"), "wb") as f:
            f.write(data)
        g.tools("tpm2_nvdefine", NV_INDEX, "-C", "o", "-s", str(len(data)),
                "-a", "ownerread|ownerwrite|authread|authwrite")
        g.tools("tpm2_nvwrite", NV_INDEX, "-C", "o", "-i", h.path("nv.in"))
        g.tools("tpm2_pcrextend", "16:sha256=" + "5a" * 32)
        pcr16 = g.tools("tpm2_pcrread", "sha256:16").stdout
        check(b"0x" in pcr16 and b"0x0000000000" not in pcr16, f"PCR 16 on A: {pcr16!r}")

        # QEMU's migration without a prepared vTPM migration: no stateblob.
        r = g.ctrl.get_stateblob(ptm.BLOB_TYPE_PERMANENT, flags=0)
        check(r.result == 0x09, f"GET_STATEBLOB without a prepared migration: {r!r}")
        svc = a.call("instance.create", kind="service", name="no-live")["uuid"]
        a.call("instance.start", uuid=svc)
        e = V.expect_error(-32003, a.call, "instance.migrate_prepare", uuid=svc, to=address(b))
        check("only a VM's vTPM migrates live" in e.message, f"a service, live: {e.message}")

        rc, out, err = V.vrotctl(a.socket, "migrate", u, "--to", address(b), "--live")
        check(rc == 0 and "prepared" in out, f"vrotctl migrate --live: {rc} {out} {err}")
        check(a.call("instance.info", uuid=u)["state"] == "locked", "A is not locked")
        dst = b.call("instance.info", uuid=u)
        check(dst["state"] == "prepared" and dst["pid"], f"B's incoming worker: {dst}")
        e = V.expect_error(-32008, a.call, "instance.migrate_commit", uuid=u)
        check("has not received its state" in e.message, f"an early commit: {e.message}")
        check(a.call("instance.info", uuid=u)["state"] == "locked", "an early commit decided")

        # QEMU moves the state: GET on A's channel, SET + INIT on B's.
        blobs = {}
        for btype in (ptm.BLOB_TYPE_PERMANENT, ptm.BLOB_TYPE_VOLATILE, ptm.BLOB_TYPE_SAVESTATE):
            r = g.ctrl.get_stateblob(btype, flags=0)
            check(r.result in (0, 0x800), f"GET_STATEBLOB {btype} under the key: {r!r}")
            if r.result == 0:
                check(r.state_flags == ptm.STATE_FLAG_ENCRYPTED, f"a plaintext blob: {r!r}")
                blobs[btype] = (r.data, r.state_flags)
        g.ctrl.shutdown()       # the source QEMU ends; its vTPM with it
        g.close()
        # libvirt's hooks on B: "migrate begin" finds the prepared migration, and
        # "prepare begin" starts nothing new (the incoming worker runs).
        hook_a, hook_b = test_hook.Hook(h, a), test_hook.Hook(h, b)
        xml_b = test_hook.vrot_domain(b, "web-live", u)
        test_hook.ok(hook_b, xml_b, "web-live", "migrate", "begin")
        test_hook.ok(hook_b, xml_b, "web-live", "prepare", "begin")
        check(b.call("instance.info", uuid=u)["pid"] == dst["pid"], "the hook restarted B's worker")
        g2 = guesttpm.GuestTpm(h, dst["ctrl"], name="guest-b", incoming=blobs)
        # The source domain ends: libvirt's "release end" on A commits.
        test_hook.ok(hook_a, test_hook.vrot_domain(a, "web-live", u), "web-live", "release", "end")
        check(a.call("instance.info", uuid=u)["state"] == "migrated", "A kept the instance")
        check(b.call("instance.info", uuid=u)["state"] == "running",
              f"B's copy is not live: {b.call('instance.info', uuid=u)} {out}\n{b.log_text()[-1500:]}")
        check(g2.tools("tpm2_pcrread", "sha256:16").stdout == pcr16, "PCR 16 changed on the way")
        g2.tools("tpm2_nvread", NV_INDEX, "-C", "o", "-o", h.path("nv.out"))
        with open(h.path("nv.out"), "rb") as f:
            check(f.read() == data, "the NV index changed on the way")
        # Until its next start on B, the EK certificate is A's (NV and API alike).
        a_info, b_info = a.call("host.info"), b.call("host.info")
        pem = b.call("instance.ek_cert", uuid=u, type="ecc")["pem"]
        check(verifies(h, a_info, pem, "live-a") and not verifies(h, b_info, pem, "live-b"),
              "B's EK certificate right after a live migration is not A's")
        # B's worker hands out no stateblob any more.
        r = g2.ctrl.get_stateblob(ptm.BLOB_TYPE_PERMANENT, flags=0)
        check(r.result == 0x09, f"GET_STATEBLOB after the commit: {r!r}")
        g2.ctrl.shutdown()
        g2.close()
        b.call("instance.stop", uuid=u)
        # The next start on B issues B's certificates, into NV too; the state stays.
        info = b.call("instance.start", uuid=u)
        pem = b.call("instance.ek_cert", uuid=u, type="ecc")["pem"]
        check(verifies(h, b_info, pem, "live-b2"), "B did not issue the EK certificate at the start")
        g3 = guesttpm.GuestTpm(h, info["ctrl"], name="guest-b2")
        g3.tools("tpm2_startup", "-c")
        g3.tools("tpm2_nvread", "0x1c0000a", "-o", h.path("ek.der"))
        with open(h.path("ek.der"), "rb") as f:
            check(f.read() == subprocess.run(["openssl", "x509", "-outform", "DER"],
                                             input=pem.encode(), capture_output=True,
                                             timeout=60).stdout,
                  "NV 0x01c0000a on B does not hold B's certificate")
        g3.tools("tpm2_nvread", NV_INDEX, "-C", "o", "-o", h.path("nv.out2"))
        with open(h.path("nv.out2"), "rb") as f:
            check(f.read() == data, "the NV index changed at the re-endorsing start")
        g3.close()
        b.call("instance.stop", uuid=u)

        # An abort: the vTPM stays on A, B discards its incoming worker.
        v = a.call("instance.create", kind="vm", name="stays")["uuid"]
        info = a.call("instance.start", uuid=v)
        a.call("instance.migrate_prepare", uuid=v, to=address(b))
        check(b.call("instance.info", uuid=v)["state"] == "prepared", "B has no incoming worker")
        r = a.call("instance.migrate_abort", uuid=v)
        check(r["decision"] == "abort", f"instance.migrate_abort: {r}")
        check(a.call("instance.info", uuid=v)["state"] == "running", "A lost the VM's vTPM")
        with ptm.Ctrl(info["ctrl"]) as c:
            check(c.init().result == 0, "INIT on A after the abort")
            r = c.get_stateblob(ptm.BLOB_TYPE_PERMANENT, flags=0)
            check(r.result == 0x09, f"GET_STATEBLOB after the abort: {r!r}")
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while live(b, v) or not settled(a, v):
            check(time.monotonic() < deadline, f"B kept the aborted incoming worker: "
                  f"{b.call('instance.info', uuid=v)} {a.call('host.info')['migrations']}")
            time.sleep(0.1)
        a.call("instance.stop", uuid=v)
        a.call("instance.stop", uuid=svc)

        # A domain that stops while its vTPM's live migration is prepared but
        # QEMU never moved the state: "release end" aborts, the vTPM stays on A.
        w = a.call("instance.create", kind="vm", name="shut-down")["uuid"]
        a.call("instance.start", uuid=w)
        rc, out, err = V.vrotctl(a.socket, "migrate", w, "--to", address(b), "--live", "--prepare")
        check(rc == 0, f"vrotctl migrate --live: {rc} {out} {err}")
        test_hook.refused(hook_b, test_hook.vrot_domain(b, "x", str(uuidlib.uuid4())), "x",
                          "migrate", "begin", "no prepared migration")
        test_hook.ok(hook_a, test_hook.vrot_domain(a, "shut-down", w), "shut-down", "release", "end")
        info = a.call("instance.info", uuid=w)
        check(info["state"] == "stopped" and info["migration"] is None, f"A after release: {info}")
        a.call("instance.start", uuid=w)
        a.call("instance.stop", uuid=w)
        a.stop_clean()
        b.stop_clean()


def move_state(h, src_ctrl, dst_ctrl, tag):
    """What QEMU does at a live migration's switch-over, played over the two
    control channels; returns the destination's guest view (GuestTpm)."""
    g = guesttpm.GuestTpm(h, src_ctrl, name=f"{tag}-src")
    g.tools("tpm2_startup", "-c")
    g.tools("tpm2_pcrextend", "16:sha256=" + "77" * 32)
    pcr = g.tools("tpm2_pcrread", "sha256:16").stdout
    blobs = {}
    for btype in (ptm.BLOB_TYPE_PERMANENT, ptm.BLOB_TYPE_VOLATILE):
        r = g.ctrl.get_stateblob(btype, flags=0)
        check(r.result == 0, f"{tag}: GET_STATEBLOB {btype}: {r!r}")
        blobs[btype] = (r.data, r.state_flags)
    g.close()
    g2 = guesttpm.GuestTpm(h, dst_ctrl, name=f"{tag}-dst", incoming=blobs)
    check(g2.tools("tpm2_pcrread", "sha256:16").stdout == pcr, f"{tag}: PCR 16 changed")
    return g2


def wait_settled(a, b, u):
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not (settled(a, u) and settled(b, u)):
        check(time.monotonic() < deadline, f"the journals did not settle: A "
              f"{a.call('host.info')['migrations']} B {b.call('host.info')['migrations']}")
        time.sleep(0.1)


def test_live_migration_crashes():
    with V.Harness("migration-live-crash") as h:
        a, b = two_hosts(h)

        # kill -9 of the source after QEMU moved the state: commit on restart.
        u = a.call("instance.create", kind="vm", name="moved")["uuid"]
        src = a.call("instance.start", uuid=u)["ctrl"]
        a.call("instance.migrate_prepare", uuid=u, to=address(b))
        g2 = move_state(h, src, b.call("instance.info", uuid=u)["ctrl"], "moved")
        a.stop(signal.SIGKILL)
        a.start()
        wait_settled(a, b, u)
        check(a.call("instance.info", uuid=u)["state"] == "migrated", "A kept the moved vTPM")
        check(b.call("instance.info", uuid=u)["state"] == "running", "B's copy is not live")
        check("decided commit after the restart" in a.log_text(), "no log line for the decision")
        g2.ctrl.shutdown()
        g2.close()

        # kill -9 of the source before QEMU moved anything: abort on restart.
        v = a.call("instance.create", kind="vm", name="not-moved")["uuid"]
        a.call("instance.start", uuid=v)
        a.call("instance.migrate_prepare", uuid=v, to=address(b))
        a.stop(signal.SIGKILL)
        a.start()
        wait_settled(a, b, v)
        info = a.call("instance.info", uuid=v)
        check(info["state"] == "running" and info["migration"] is None, f"A after the abort: {info}")
        check(not live(b, v), "B kept an incoming worker of an aborted migration")
        a.call("instance.stop", uuid=v)

        # kill -9 of the destination while prepared: adopted, and completed.
        w = a.call("instance.create", kind="vm", name="dest-crash")["uuid"]
        src = a.call("instance.start", uuid=w)["ctrl"]
        a.call("instance.migrate_prepare", uuid=w, to=address(b))
        pid = b.call("instance.info", uuid=w)["pid"]
        b.stop(signal.SIGKILL)
        b.start()
        info = b.call("instance.info", uuid=w)
        check(info["state"] == "prepared" and info["pid"] == pid, f"B after kill -9: {info}")
        g3 = move_state(h, src, info["ctrl"], "dest-crash")
        r = a.call("instance.migrate_commit", uuid=w)
        check(r["decision"] == "commit" and r["peer_confirmed"], f"commit: {r}")
        check(b.call("instance.info", uuid=w)["state"] == "running", "B's copy is not live")
        g3.ctrl.shutdown()
        g3.close()
        for d in (a, b):
            d.stop_clean()


class Qmp:
    """A QMP client: one command at a time, events skipped."""

    def __init__(self, path, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                check(time.monotonic() < deadline, f"QMP at {path} never answered")
                time.sleep(0.1)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.read()                                     # the greeting
        self.call("qmp_capabilities")

    def read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            check(chunk, "QMP closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, name, **args):
        self.sock.sendall(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        while True:
            msg = self.read()
            if "return" in msg:
                return msg["return"]
            check("error" not in msg, f"QMP {name}: {msg.get('error')}")

    def close(self):
        self.sock.close()


def wait_migration(qmp, timeout=120.0):
    deadline = time.monotonic() + timeout
    while True:
        st = qmp.call("query-migrate").get("status")
        if st in ("completed", "failed", "cancelled"):
            return st
        check(time.monotonic() < deadline, f"QEMU's migration still {st} after {timeout}s")
        time.sleep(0.2)


def wait_ticks(serial, after=-1, timeout=120.0):
    deadline = time.monotonic() + timeout
    while True:
        t = [x for x in guest.ticks(serial) if x[0] > after]
        if t:
            return t[-1]
        check(time.monotonic() < deadline, f"no VROT-TICK after {after} in {serial}:\n"
              f"{guest.clean_serial(guest._read(serial))[-2000:]}")
        time.sleep(0.2)


def test_live_migration_qemu():
    with V.Harness("migration-qemu") as h:
        a, b = two_hosts(h)
        u = a.call("instance.create", kind="vm", name="web-qemu")["uuid"]
        src_ctrl = a.call("instance.start", uuid=u)["ctrl"]
        data = b"the guest wrote this on host A"
        init = guest.ticking_init(16, bytes(range(32)), 0x1500017, data)
        qemu_a, serial_a = guest.spawn_vm(h, src_ctrl, init, "vm-a", h.path("qmp-a"))
        qa = Qmp(h.path("qmp-a"))
        before = wait_ticks(serial_a)
        check(before[2].startswith("8002") and before[2][12:20] == "00000000" and
              data.hex() in before[2], f"the guest's NV_Read on A: {before}")

        # QEMU's migration with no vTPM migration prepared: it fails, the guest runs on.
        other = b.call("instance.create", kind="vm", name="not-prepared")["uuid"]
        port = free_port()
        qemu_x, _ = guest.spawn_vm(h, b.call("instance.start", uuid=other)["ctrl"], init,
                                   "vm-x", h.path("qmp-x"), incoming=f"tcp:127.0.0.1:{port}")
        qx = Qmp(h.path("qmp-x"))
        qa.call("migrate", uri=f"tcp:127.0.0.1:{port}")
        check(wait_migration(qa) == "failed", "QEMU migrated a vTPM that was not prepared")
        check(qa.call("query-status")["status"] == "running", "the source guest stopped")
        after_fail = wait_ticks(serial_a, before[0])
        check(after_fail[1:] == before[1:], "the guest's TPM changed after the failed migration")
        qx.close()
        h.kill(qemu_x)
        b.call("instance.stop", uuid=other)

        # Prepared: QEMU's migration carries the vTPM.
        rc, out, err = V.vrotctl(a.socket, "migrate", u, "--to", address(b), "--live")
        check(rc == 0, f"vrotctl migrate --live: {rc} {out} {err}")
        port = free_port()
        qemu_b, serial_b = guest.spawn_vm(h, b.call("instance.info", uuid=u)["ctrl"], init,
                                          "vm-b", h.path("qmp-b"),
                                          incoming=f"tcp:127.0.0.1:{port}")
        qb = Qmp(h.path("qmp-b"))
        qa.call("migrate", uri=f"tcp:127.0.0.1:{port}")
        check(wait_migration(qa) == "completed", "QEMU's migration did not complete")
        qa.call("quit")
        qa.close()
        qemu_a.wait(timeout=60)
        rc, out, err = V.vrotctl(a.socket, "migrate", u, "--commit")
        check(rc == 0 and "migrated to host-b.example" in out, f"--commit: {rc} {out} {err}")
        check(qb.call("query-status")["status"] == "running", "the guest does not run on B")
        on_b = wait_ticks(serial_b)
        check(on_b[1:] == before[1:], f"on B the guest reads {on_b}, on A it read {before}")
        check(a.call("instance.info", uuid=u)["state"] == "migrated", "A kept the instance")
        qb.call("quit")
        qb.close()
        qemu_b.wait(timeout=60)
        for d in (a, b):
            d.stop_clean()


if __name__ == "__main__":
    H.main([test_transport_certificate, test_attested_handshake, test_cold_migration,
            test_crash_matrix, test_tampered_and_replayed, test_live_migration_protocol,
            test_live_migration_crashes, test_live_migration_qemu])
