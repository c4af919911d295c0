#!/usr/bin/env python3
"""vrotd --dev end to end: the daemon, its simulated host TPM, real workers.

Every test starts its own `vrotd --dev` (state and runtime directories in
the test's temporary directory) with the build's vrot-vtpm, talks to it
only through the JSON-RPC socket API (vrot-api(7)) and checks what a client,
a relying party and a guest can see:

- first start provisions the host (fleet root, host CA whose key is in the
  host TPM); a second start on the same state directory reuses all of it
- EK certificates chain to the fleet root (`openssl verify`), certify the
  very EKs the vTPM holds (`tpm2_createek`) and sit in NV 0x01c00002 /
  0x01c0000a (`tpm2_nvread`, and a QEMU guest through /dev/tpm0)
- start returns with the control socket listening and costs no host-TPM
  command; stop leaves neither process nor socket
- delete keeps a tombstone; a restart keeps the registry and the vTPMs' NV
  data; state copied to another host is refused
- bad input of every kind gets the right JSON-RPC error and the daemon keeps
  serving; a non-root caller may not manage

At the end of every test the daemon (SIGTERM) must exit 0 and leave no
process behind: workers, fork server and simulated host TPM included.

Needs: tpm2-tools, swtpm, openssl, QEMU and the guest kernel (for
test_vm_guest_reads_ek_cert; scripts/get-kernel.sh).

Usage: test_vrotd.py [test_name ...]
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid as uuidlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Failure, check, main, require, tpm2, tpm_cmd  # noqa: E402
import guest  # noqa: E402
import ptm  # noqa: E402
from vrotd import (CONFLICT, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND,  # noqa: E402
                   NOT_FOUND, PARSE_ERROR, PERMISSION_DENIED, STATE_REFUSED, TOO_LARGE,
                   Client, Harness, RpcError, Vrotd, alive, as_user, describe,
                   descendants, expect_error, kill_tree, proc_table)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\n.+?\n-----END CERTIFICATE-----\n?", re.S)
RSA_INDEX, ECC_INDEX = 0x01c00002, 0x01c0000a
RSA_HANDLE, ECC_HANDLE = 0x81010001, 0x8101000a
NV_INDEX = "0x1500016"
NV_DATA = b"vrotd restart test \x00\x01\x02\xff" + bytes(range(40, 90))
NOBODY = 65534


def note(msg):
    """Behaviour the contract leaves open: printed, not judged."""
    print(f"     note: {msg}", flush=True)


# -- helpers -------------------------------------------------------------------

def write(h, name, data):
    path = h.path(name)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


def openssl(*args, stdin=None):
    r = subprocess.run([require("openssl"), *args], input=stdin, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise Failure(f"openssl {' '.join(args)} exited {r.returncode}:\n"
                      f"{r.stderr.decode(errors='replace')}{r.stdout.decode(errors='replace')}")
    return r.stdout


def check_pem(pem, what):
    check(isinstance(pem, str) and PEM_CERT.fullmatch(pem.strip() + "\n"),
          f"{what} is not one PEM certificate: {str(pem)[:200]!r}")


def verify_ek(h, root_pem, ca_pem, ek_pem, tag):
    """`openssl verify -CAfile root -untrusted hostca ek` must say OK."""
    root, ca, ek = (write(h, f"{tag}-{n}.pem", p) for n, p in
                    (("root", root_pem), ("hostca", ca_pem), ("ek", ek_pem)))
    r = subprocess.run([require("openssl"), "verify", "-CAfile", root, "-untrusted", ca, ek],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and r.stdout.strip().endswith(": OK"),
          f"{tag}: openssl verify failed ({r.returncode}):\n{r.stdout}{r.stderr}\n"
          f"{openssl('x509', '-noout', '-text', '-in', ek).decode(errors='replace')}")
    return ek


def cert_pubkey_der(pem):
    pub = openssl("x509", "-pubkey", "-noout", stdin=pem.encode())
    return openssl("pkey", "-pubin", "-outform", "DER", stdin=pub)


def pubkey_file_der(path):
    return openssl("pkey", "-pubin", "-in", path, "-outform", "DER")


def cert_der(pem):
    return ssl.PEM_cert_to_DER_cert(pem)


def cert_text(pem):
    return openssl("x509", "-noout", "-text", stdin=pem.encode()).decode(errors="replace")


def tree_hashes(top):
    out = {}
    for dirpath, _, files in os.walk(top):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, top)] = hashlib.sha256(fh.read()).hexdigest()
    return out


class Inst:
    """A started instance, enough of harness.Server for harness.tpm2()."""

    def __init__(self, d, started):
        self.d, self.uuid = d, started["uuid"]
        self.pid, self.ctrl, self.data = started["pid"], started["ctrl"], started["data"]

    def log_text(self):
        worker_log = os.path.join(self.d.runtime_dir, self.uuid, "worker.log")
        try:
            with open(worker_log, errors="replace") as f:
                w = f.read()
        except OSError:
            w = "(no worker.log)"
        return f"{w[-2000:]}\n--- vrotd log ---\n{self.d.log_text()[-2000:]}"


def start(d, u):
    return Inst(d, d.call("instance.start", uuid=u))


def create(d, kind, name, **kw):
    res = d.call("instance.create", kind=kind, name=name, **kw)
    check(set(res) >= {"uuid", "ek_rsa_cert_pem", "ek_ecc_cert_pem"},
          f"instance.create result lacks fields: {sorted(res)}")
    check(UUID_RE.match(res["uuid"]), f"instance.create: uuid {res['uuid']!r} is not canonical")
    check_pem(res["ek_rsa_cert_pem"], "ek_rsa_cert_pem")
    check_pem(res["ek_ecc_cert_pem"], "ek_ecc_cert_pem")
    return res


def listed(d):
    res = d.call("instance.list")
    check(isinstance(res, dict) and isinstance(res.get("instances"), list),
          f"instance.list: {res!r}")
    out = {}
    for e in res["instances"]:
        check({"uuid", "name", "kind", "state", "owner"} <= set(e),
              f"instance.list entry lacks fields: {e!r}")
        out[e["uuid"]] = e
    return out


def pid_gone(pid, timeout=0.0):
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def check_listening(path, what):
    """The socket must accept right now: no waiting, no retry."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        raise Failure(f"{what} {path} does not accept right after instance.start returned: {e}") \
            from None
    finally:
        s.close()


def check_state_result(res, u, state, what):
    """{"uuid", "state"}: extra members are tolerated but reported."""
    check(isinstance(res, dict) and res.get("uuid") == u and res.get("state") == state,
          f"{what}: {res!r}, expected uuid {u} and state {state!r}")
    extra = sorted(set(res) - {"uuid", "state"})
    if extra:
        note(f"{what} answers more than uuid and state: also {extra}")


def host_commands(d):
    n = d.call("host.info")["host_tpm_commands"]
    check(isinstance(n, int) and not isinstance(n, bool), f"host_tpm_commands is {n!r}")
    return n


def nv_write(h, inst):
    tpm2(inst, "nvdefine", NV_INDEX, "-C", "o", "-s", str(len(NV_DATA)),
         "-a", "ownerread|ownerwrite|no_da")
    tpm2(inst, "nvwrite", NV_INDEX, "-C", "o", "-i", write(h, "nv-in", NV_DATA))


def nv_read(h, inst, name="nv-out"):
    out = h.path(name)
    tpm2(inst, "nvread", NV_INDEX, "-C", "o", "-s", str(len(NV_DATA)), "-o", out)
    with open(out, "rb") as f:
        return f.read()


def dev_warning(log):
    return re.search(r"simulat", log, re.I) and re.search(r"warn|WARNING|insecure|not.*trust",
                                                          log, re.I)


# -- tests ---------------------------------------------------------------------

def test_provision_then_reuse():
    with Harness("vrotd-provision") as h:
        d = Vrotd(h).start()
        info = d.call("host.info")
        want = {"dev", "tcti", "host_tpm_commands", "instances", "running",
                "fleet_root_pem", "host_ca_pem"}
        check(want <= set(info), f"host.info lacks {sorted(want - set(info))}: {info!r}")
        check(info["dev"] is True, f"host.info dev is {info['dev']!r}")
        check(isinstance(info["tcti"], str) and info["tcti"], f"host.info tcti {info['tcti']!r}")
        check(isinstance(info["host_tpm_commands"], int) and info["host_tpm_commands"] > 0,
              f"host.info host_tpm_commands {info['host_tpm_commands']!r} after provisioning")
        check(info["instances"] == 0 and info["running"] == 0, f"fresh host: {info!r}")
        check_pem(info["fleet_root_pem"], "fleet_root_pem")
        check_pem(info["host_ca_pem"], "host_ca_pem")
        check(info["fleet_root_pem"] != info["host_ca_pem"], "fleet root and host CA are the same")
        root = write(h, "root1.pem", info["fleet_root_pem"])
        ca = write(h, "ca1.pem", info["host_ca_pem"])
        out = openssl("verify", "-CAfile", root, ca).decode()
        check(out.strip().endswith(": OK"), f"host CA does not chain to the fleet root: {out}")
        check(os.path.isdir(os.path.join(d.state_dir, "dev-host-tpm")),
              f"no {d.state_dir}/dev-host-tpm: {sorted(os.listdir(d.state_dir))}")
        check(os.path.isdir(os.path.join(d.state_dir, "host")),
              f"no {d.state_dir}/host: {sorted(os.listdir(d.state_dir))}")
        check(dev_warning(d.log_text(1)), f"first start: no loud --dev warning on stderr:\n"
              f"{d.log_text(1)[-3000:]}")
        host_files = tree_hashes(os.path.join(d.state_dir, "host"))
        print(f"     first start: {info['host_tpm_commands']} host-TPM commands, tcti "
              f"{info['tcti']}; state/host: {sorted(host_files)}", flush=True)
        d.stop_clean()

        d.start()
        again = d.call("host.info")
        check(again["fleet_root_pem"] == info["fleet_root_pem"],
              "second start: the fleet root certificate changed (re-provisioned?)")
        check(again["host_ca_pem"] == info["host_ca_pem"],
              "second start: the host CA certificate changed (re-provisioned?)")
        after = tree_hashes(os.path.join(d.state_dir, "host"))
        changed = sorted(k for k in set(host_files) | set(after) if host_files.get(k) != after.get(k))
        check(not changed, f"second start rewrote or changed state/host files: {changed}")
        check(dev_warning(d.log_text(2)), f"second start: no --dev warning:\n{d.log_text(2)[-3000:]}")
        print(f"     second start: {again['host_tpm_commands']} host-TPM commands", flush=True)
        # The CA key in the host TPM is the same one: what it signs now
        # verifies under the certificate made at the first start.
        inst = create(d, "service", "after-restart")
        verify_ek(h, info["fleet_root_pem"], info["host_ca_pem"], inst["ek_rsa_cert_pem"], "rsa")
        verify_ek(h, info["fleet_root_pem"], info["host_ca_pem"], inst["ek_ecc_cert_pem"], "ecc")
        d.stop_clean()


def test_endorsement():
    with Harness("vrotd-endorse") as h:
        d = Vrotd(h).start()
        info = d.call("host.info")
        root, ca = info["fleet_root_pem"], info["host_ca_pem"]
        t0 = time.monotonic()
        svc = create(d, "service", "svc-1")
        t_create = time.monotonic() - t0
        vm_uuid = str(uuidlib.uuid4())
        vm = create(d, "vm", "vm-1", uuid=vm_uuid)
        check(vm["uuid"] == vm_uuid, f"create with uuid {vm_uuid} returned {vm['uuid']}")
        check(svc["uuid"] != vm["uuid"], "two creates gave the same UUID")
        print(f"     create + endorse: {t_create:.2f}s", flush=True)

        for inst, kind in ((svc, "service"), (vm, "vm")):
            u = inst["uuid"]
            for typ in ("rsa", "ecc"):
                pem = inst[f"ek_{typ}_cert_pem"]
                verify_ek(h, root, ca, pem, f"{kind}-{typ}")
                got = d.call("instance.ek_cert", uuid=u, type=typ)
                check(got.get("pem") == pem, f"instance.ek_cert {typ} of {kind} differs from "
                      f"create's: {got!r}")
                text = cert_text(pem)
                if typ == "rsa":
                    check("2048 bit" in text and "rsaEncryption" in text,
                          f"{kind} RSA EK certificate key is not RSA-2048:\n{text}")
                else:
                    check("prime256v1" in text or "P-256" in text,
                          f"{kind} ECC EK certificate key is not P-256:\n{text}")
                check(u in text.lower() or u.replace("-", "") in text.lower(),
                      f"{kind} {typ} EK certificate does not name the instance UUID {u}:\n{text}")
            default = d.call("instance.ek_cert", uuid=u)
            check(default.get("pem") == inst["ek_rsa_cert_pem"],
                  f"instance.ek_cert without type is not the RSA certificate: {default!r}")
            check(cert_pubkey_der(inst["ek_rsa_cert_pem"]) != cert_pubkey_der(inst["ek_ecc_cert_pem"]),
                  "RSA and ECC certificates certify the same key")
        check(cert_pubkey_der(svc["ek_rsa_cert_pem"]) != cert_pubkey_der(vm["ek_rsa_cert_pem"]),
              "two vTPMs have the same RSA EK")

        # The certificates certify the EKs the service's vTPM really has.
        s = start(d, svc["uuid"])
        for typ, alg, handle, index in (("rsa", "rsa", RSA_HANDLE, RSA_INDEX),
                                        ("ecc", "ecc", ECC_HANDLE, ECC_INDEX)):
            pem = svc[f"ek_{typ}_cert_pem"]
            out = h.path(f"createek-{typ}.pem")
            tpm2(s, "createek", "-G", alg, "-c", h.path(f"ek-{typ}.ctx"), "-u", out, "-f", "pem")
            tpm2(s, "flushcontext", "-t")
            check(pubkey_file_der(out) == cert_pubkey_der(pem),
                  f"{typ}: tpm2_createek's EK is not the key of the EK certificate")
            out = h.path(f"persistent-{typ}.pem")
            tpm2(s, "readpublic", "-c", f"0x{handle:x}", "-o", out, "-f", "pem")
            check(pubkey_file_der(out) == cert_pubkey_der(pem),
                  f"{typ}: persistent EK 0x{handle:x} is not the key of the EK certificate")
            out = h.path(f"nv-{typ}.der")
            tpm2(s, "nvread", f"0x{index:x}", "-o", out)
            with open(out, "rb") as f:
                nv = f.read()
            check(nv == cert_der(pem), f"{typ}: NV 0x{index:x} holds {len(nv)} bytes, not the "
                  f"{len(cert_der(pem))}-byte DER certificate ({nv[:16].hex()}...)")
        d.call("instance.stop", uuid=svc["uuid"])
        d.stop_clean()


def test_ecc_only():
    """ek "ecc": only the ECC EK is made and endorsed; no RSA certificate,
    no RSA EK handle, no RSA certificate index; a bad value is refused."""
    with Harness("vrotd-ecc-only") as h:
        d = Vrotd(h).start()
        info = d.call("host.info")
        res = d.call("instance.create", kind="service", name="ecc-only", ek="ecc")
        u = res["uuid"]
        check(res["ek_rsa_cert_pem"] is None, f"an RSA certificate although only ECC was asked: "
              f"{str(res['ek_rsa_cert_pem'])[:80]!r}")
        check_pem(res["ek_ecc_cert_pem"], "ek_ecc_cert_pem")
        verify_ek(h, info["fleet_root_pem"], info["host_ca_pem"], res["ek_ecc_cert_pem"], "ecc-only")
        e = expect_error(NOT_FOUND, d.call, "instance.ek_cert", uuid=u, type="rsa")
        check("rsa" in e.message, f"unclear message: {e.message!r}")
        s = start(d, u)
        out = h.path("ecc-only.pem")
        tpm2(s, "readpublic", "-c", f"0x{ECC_HANDLE:x}", "-o", out, "-f", "pem")
        check(pubkey_file_der(out) == cert_pubkey_der(res["ek_ecc_cert_pem"]),
              "the persistent ECC EK is not the key of the certificate")
        handles = tpm2(s, "getcap", "handles-persistent").decode()
        check(f"0x{RSA_HANDLE:x}" not in handles.lower(), f"an RSA EK was persisted: {handles}")
        indices = tpm2(s, "getcap", "handles-nv-index").decode()
        check(f"0x{RSA_INDEX:x}" not in indices.lower() and f"0x{ECC_INDEX:x}" in indices.lower(),
              f"NV indices: {indices}")
        d.call("instance.stop", uuid=u)
        n = len(listed(d))
        for bad in ("ECC", "p256", 1, ["ecc"], None):
            expect_error(INVALID_PARAMS, d.call, "instance.create", kind="vm", name="bad-ek", ek=bad)
        check(len(listed(d)) == n, "a refused create left an instance")
        d.stop_clean()


def test_start_stop():
    with Harness("vrotd-startstop") as h:
        d = Vrotd(h).start()
        svc = create(d, "service", "svc")["uuid"]
        vm = create(d, "vm", "vm")["uuid"]
        names = {svc: "svc", vm: "vm"}
        before = host_commands(d)
        started = {}
        for u, kind in ((svc, "service"), (vm, "vm")):
            t0 = time.monotonic()
            r = d.call("instance.start", uuid=u)
            dt = time.monotonic() - t0
            check({"uuid", "pid", "ctrl", "data"} <= set(r), f"instance.start result: {r!r}")
            check_listening(r["ctrl"], f"{kind} control socket")
            check(r["uuid"] == u, f"start {u} answered uuid {r['uuid']}")
            check(r["ctrl"] == os.path.join(d.runtime_dir, u, "ctrl.sock"),
                  f"{kind} ctrl is {r['ctrl']!r}")
            check(isinstance(r["pid"], int) and alive(r["pid"]), f"{kind} pid {r['pid']!r} not alive")
            if kind == "service":
                check(r["data"] == os.path.join(d.runtime_dir, u, "data.sock"),
                      f"service data is {r['data']!r}")
                check_listening(r["data"], "service data socket")
                check_listening(r["data"] + ".ctrl", "service DATA.ctrl")
                # TPM2_Startup was done: tpm2-tools work without tpm2_startup.
                rnd = tpm2(Inst(d, r), "getrandom", "--hex", "16").decode().strip()
                check(len(rnd) == 32, f"getrandom on the service vTPM: {rnd!r}")
            else:
                check(r["data"] is None, f"vm data is {r['data']!r}, expected null")
            print(f"     start {kind}: {dt * 1000:.0f} ms", flush=True)
            again = d.call("instance.start", uuid=u)
            check(again == r, f"starting a running {kind} again: {again!r}, first {r!r}")
            inf = d.call("instance.info", uuid=u)
            want = {"uuid", "name", "kind", "state", "owner", "pid", "ctrl", "data", "generation"}
            check(want <= set(inf), f"instance.info lacks {sorted(want - set(inf))}: {inf!r}")
            check(inf["state"] == "running" and inf["pid"] == r["pid"] and inf["ctrl"] == r["ctrl"]
                  and inf["data"] == r["data"] and inf["kind"] == kind and inf["owner"] == 0
                  and inf["uuid"] == u and inf["name"] == names[u],
                  f"instance.info of running {kind}: {inf!r}")
            check(isinstance(inf["generation"], int), f"generation {inf['generation']!r}")
            started[u] = r
        lst = listed(d)
        check(lst[svc]["state"] == "running" and lst[vm]["state"] == "running",
              f"instance.list while running: {lst!r}")
        hi = d.call("host.info")
        check(hi["instances"] == 2 and hi["running"] == 2, f"host.info: instances "
              f"{hi['instances']}, running {hi['running']}, expected 2 and 2")
        mid = host_commands(d)
        check(mid == before, f"instance.start cost {mid - before} host-TPM commands "
              f"({before} -> {mid}); DESIGN: none per start")

        for u, r in started.items():
            res = d.call("instance.stop", uuid=u)
            check_state_result(res, u, "stopped", "instance.stop")
            check(pid_gone(r["pid"]), f"worker {r['pid']} still alive when instance.stop returned")
            left = [p for p in (r["ctrl"], r["data"]) if p and os.path.lexists(p)]
            check(not left, f"sockets left after instance.stop: {left}")
            if r["data"]:
                check(not os.path.exists(r["data"] + ".ctrl"),
                      f"{r['data']}.ctrl still leads to a socket after stop")
            inf = d.call("instance.info", uuid=u)
            check(inf["state"] == "stopped" and inf.get("pid") is None,
                  f"instance.info after stop: {inf!r}")
        after = host_commands(d)
        check(after == before, f"start/stop cost {after - before} host-TPM commands")
        hi = d.call("host.info")
        check(hi["running"] == 0, f"host.info running {hi['running']} after stopping all")

        # Start again after a stop: same state, works.
        r = d.call("instance.start", uuid=svc)
        check_listening(r["ctrl"], "control socket on the second start")
        check(r["pid"] != started[svc]["pid"] or not alive(started[svc]["pid"]), "stale pid")
        try:
            res = d.call("instance.stop", uuid=vm)
            note(f"instance.stop of a stopped instance: {res!r}")
        except RpcError as e:
            note(f"instance.stop of a stopped instance: error {e.code} {e.message!r}")

        missing = str(uuidlib.uuid4())
        for m in ("instance.start", "instance.stop", "instance.info", "instance.ek_cert",
                  "instance.delete"):
            expect_error(NOT_FOUND, d.call, m, uuid=missing)
        d.stop_clean()
        check(not os.path.lexists(r["ctrl"]), f"{r['ctrl']} left after the daemon's SIGTERM")


def test_start_after_worker_exit():
    """A worker that ends on its own (QEMU sends SHUTDOWN when it exits):
    instance.start afterwards must again return a listening worker, at
    once and during any restart back-off of the daemon."""
    with Harness("vrotd-workerexit") as h:
        d = Vrotd(h).start()
        u = create(d, "vm", "shut")["uuid"]
        r = d.call("instance.start", uuid=u)
        with ptm.connect(r["ctrl"]) as c:
            check(c.shutdown().result == 0, "CMD_SHUTDOWN failed")
        check(pid_gone(r["pid"], 10), "the worker outlived CMD_SHUTDOWN")
        inf = d.call("instance.info", uuid=u)
        note(f"right after the worker's own exit 0: state {inf['state']!r}, pid {inf.get('pid')!r}")
        again = d.call("instance.start", uuid=u)
        check(isinstance(again.get("pid"), int) and alive(again["pid"]),
              f"instance.start after the worker's exit: {again!r}")
        check_listening(again["ctrl"], "control socket after the worker's exit")
        time.sleep(2.5)             # past a restart back-off: still one worker
        inf = d.call("instance.info", uuid=u)
        workers = [p for p in d.note_tree() if alive(p) and p != inf.get("pid")
                   and f"--uuid\0{u}".encode() in cmdline(p)]
        check(inf["state"] == "running" and inf["pid"] == again["pid"] and not workers,
              f"2.5 s later: instance.info {inf!r}; other workers for {u}: {workers}")
        d.stop_clean()


def test_vm_guest_reads_ek_cert():
    with Harness("vrotd-guest") as h:
        d = Vrotd(h).start()
        vm = create(d, "vm", "guest-vm")
        der = cert_der(vm["ek_rsa_cert_pem"])
        r = d.call("instance.start", uuid=vm["uuid"])
        check_listening(r["ctrl"], "vm control socket")
        b = guest.boot(h, r["ctrl"], extra_init=guest.ek_nv_snippet(RSA_INDEX, len(der)))
        b.check(b.tpm_version == "2", f"guest found no TPM 2.0 (VROT-TPM-VERSION {b.tpm_version!r})")
        pub = b.value("EKNVPUB")
        b.check(pub, "guest printed no NV_ReadPublic response")
        index, attrs, size = guest.parse_nv_public(bytes.fromhex(pub))
        b.check(index == RSA_INDEX and size == len(der),
                f"guest: NV 0x{index:x} of {size} bytes, expected 0x{RSA_INDEX:x} of {len(der)}")
        got = b""
        for line in b.values("EKNV"):
            off, _, hexresp = line.partition(" ")
            resp = bytes.fromhex(hexresp.strip())
            rc = struct.unpack(">I", resp[6:10])[0] if len(resp) >= 10 else None
            b.check(rc == 0, f"guest NV_Read at {off}: response {hexresp[:40]!r}")
            (n,) = struct.unpack(">H", resp[14:16])
            b.check(int(off) == len(got), f"NV_Read chunks out of order at {off}")
            got += resp[16:16 + n]
        b.check(got == der, f"guest read {len(got)} bytes of NV 0x{RSA_INDEX:x}, differing from "
                f"the {len(der)}-byte certificate (first bytes {got[:16].hex()} vs {der[:16].hex()})")
        print(f"     guest read the {len(der)}-byte EK certificate (attributes 0x{attrs:08x}) "
              f"in {b.elapsed:.1f}s boot", flush=True)
        # QEMU sends SHUTDOWN on the control channel when the guest powers
        # off, which ends the worker (as it ends swtpm).
        time.sleep(1.5)
        inf = d.call("instance.info", uuid=vm["uuid"])
        note(f"after the guest powered off: worker {r['pid']} "
             f"{'alive' if alive(r['pid']) else 'gone'}; instance.info state {inf['state']!r}, "
             f"pid {inf.get('pid')!r}")
        res = d.call("instance.stop", uuid=vm["uuid"])
        check_state_result(res, vm["uuid"], "stopped", "instance.stop after the guest's end")
        check(pid_gone(r["pid"]) and (inf.get("pid") is None or pid_gone(inf["pid"])),
              "a worker outlived instance.stop")
        d.stop_clean()


def test_delete_tombstone():
    with Harness("vrotd-delete") as h:
        d = Vrotd(h).start()
        u = create(d, "service", "doomed")["uuid"]
        state = os.path.join(d.state_dir, "instances", u)
        check(os.path.isdir(state), f"no state directory {state} after create "
              f"(state/instances: {os.listdir(os.path.dirname(state))})")
        r = d.call("instance.start", uuid=u)
        res = d.call("instance.delete", uuid=u)
        check_state_result(res, u, "deleted", "instance.delete")
        check(pid_gone(r["pid"]), "the worker outlived instance.delete")
        check(not os.path.lexists(r["ctrl"]) and not os.path.lexists(r["data"]),
              "sockets left after delete")
        check(not os.path.exists(state), f"state directory {state} still there after delete: "
              f"{os.listdir(state) if os.path.isdir(state) else ''}")
        for kind in ("service", "vm"):
            expect_error(CONFLICT, d.call, "instance.create", uuid=u, kind=kind, name="again")
        lst = listed(d)
        check(u in lst and lst[u]["state"] == "deleted", f"tombstone not listed as deleted: {lst!r}")
        for m in ("instance.start", "instance.info", "instance.ek_cert", "instance.delete",
                  "instance.stop"):
            try:
                note(f"{m} on a tombstone: {d.call(m, uuid=u)!r}")
            except RpcError as e:
                note(f"{m} on a tombstone: error {e.code} {e.message!r}")
        check(not os.path.exists(state), "a call on the tombstone recreated its state")
        d.stop_clean()
        d.start()           # tombstones survive a restart
        expect_error(CONFLICT, d.call, "instance.create", uuid=u, kind="service", name="again")
        check(listed(d)[u]["state"] == "deleted", "tombstone lost across a restart")
        d.stop_clean()


def test_restart_keeps_instances():
    with Harness("vrotd-restart") as h:
        d = Vrotd(h).start()
        svc = create(d, "service", "keeper")["uuid"]
        vm = create(d, "vm", "stopped-vm")["uuid"]
        gone = create(d, "vm", "gone")["uuid"]
        d.call("instance.delete", uuid=gone)
        s = start(d, svc)
        nv_write(h, s)
        check(nv_read(h, s, "nv-1") == NV_DATA, "nvread right after nvwrite")
        d.call("instance.start", uuid=vm)
        d.call("instance.stop", uuid=vm)
        before = listed(d)
        gen = d.call("instance.info", uuid=svc)["generation"]
        # SIGTERM with the service still running: its worker is stopped too.
        d.stop_clean()
        check(not alive(s.pid), "the service's worker outlived the daemon's SIGTERM")

        d.start()
        after = listed(d)
        check(set(after) == set(before), f"instances before {sorted(before)}, after {sorted(after)}")
        for u in before:
            a, b = before[u], after[u]
            check((a["name"], a["kind"], a["owner"]) == (b["name"], b["kind"], b["owner"]),
                  f"{u} changed across the restart: {a!r} -> {b!r}")
        check(after[vm]["state"] == "stopped", f"stopped vm after restart: {after[vm]!r}")
        check(after[gone]["state"] == "deleted", f"tombstone after restart: {after[gone]!r}")
        # "As they were": what ran at SIGTERM is started again.
        info = wait_state(d, svc, "running")
        check(info["pid"] != s.pid, "the service runs the worker of before the SIGTERM?")
        s = start(d, svc)
        check_listening(s.ctrl, "control socket after the restart")
        check(nv_read(h, s, "nv-2") == NV_DATA, "NV data lost across the daemon restart")
        gen2 = d.call("instance.info", uuid=svc)["generation"]
        check(gen2 >= gen, f"generation went back across the restart: {gen} -> {gen2}")
        check(d.call("instance.info", uuid=vm)["state"] == "stopped", "a stopped vm was started")
        start(d, vm)
        d.call("instance.stop", uuid=vm)
        d.call("instance.stop", uuid=svc)
        d.stop_clean()
        # Nothing ran at this SIGTERM: nothing is started again.
        d.start()
        check(listed(d)[svc]["state"] == "stopped", "the resume list outlived its use")
        d.stop_clean()


def wait_state(d, u, state, timeout=30.0, not_pid=None):
    deadline = time.monotonic() + timeout
    while True:
        info = d.call("instance.info", uuid=u)
        if info["state"] == state and (not_pid is None or info["pid"] != not_pid):
            return info
        if time.monotonic() > deadline:
            raise Failure(f"instance {u} is {info['state']!r}, not {state!r}, after {timeout}s:\n"
                          f"{d.log_text()[-2000:]}")
        time.sleep(0.05)


def fork_server_of(d):
    """The daemon's child running --fork-server (its forked workers share
    that command line, but are its grandchildren)."""
    table = proc_table()
    for pid in descendants(d.pid, table):
        if table[pid][0] == d.pid and b"--fork-server" in cmdline(pid):
            return pid
    raise Failure(f"no fork server below vrotd {d.pid}")


def test_daemon_crash_adopts_workers():
    """kill -9 of vrotd: its fork server and workers run on (QEMU keeps its
    TPM); the next vrotd adopts them - same PIDs, exits still reported - and
    leaves nothing behind when it stops.  kill -9 of vrotd and the fork
    server together: the orphaned worker is stopped and started again."""
    with Harness("vrotd-adopt") as h:
        d = Vrotd(h).start()
        svc = create(d, "service", "survivor")["uuid"]
        s = start(d, svc)
        nv_write(h, s)
        forkd = fork_server_of(d)
        rc = d.stop(signal.SIGKILL)
        check(rc == -signal.SIGKILL, f"kill -9 gave {rc}")
        check(alive(s.pid) and alive(forkd), "the worker or the fork server died with vrotd")
        # As if vrotd had been killed before the worker was ready: then it
        # had not written the PID file stop_orphans() goes by.
        pidfile = os.path.join(d.runtime_dir, svc, "worker.pid")
        os.unlink(pidfile)
        d.start()
        info = d.call("instance.info", uuid=svc)
        check(info["state"] == "running" and info["pid"] == s.pid,
              f"the running worker {s.pid} was not adopted: {info!r}\n{d.log_text()[-1500:]}")
        check("adopted running worker" in d.log_text(), "no log line about the adoption")
        recorded = open(pidfile).read().split() if os.path.exists(pidfile) else []
        check(recorded and recorded[0] == str(s.pid), f"the adopted worker's PID file says {recorded!r}")
        check(nv_read(h, s, "nv-adopted") == NV_DATA, "NV data through the adopted worker")
        # The adopted worker's crash is seen and handled like any other.
        os.kill(s.pid, signal.SIGKILL)
        info = wait_state(d, svc, "running", not_pid=s.pid)
        s = start(d, svc)
        check(nv_read(h, s, "nv-restarted") == NV_DATA, "NV data after the adopted worker's crash")

        # Both the daemon and its fork server (the adopted one, still the
        # parent of the restarted worker) killed: the worker is orphaned.
        check(alive(forkd), "the adopted fork server is gone")
        rc = d.stop(signal.SIGKILL)
        os.kill(forkd, signal.SIGKILL)
        check(pid_gone(forkd, 10), "the fork server survived SIGKILL")
        check(alive(s.pid), "the worker died with its fork server")
        d.start()
        info = wait_state(d, svc, "running", not_pid=s.pid)
        check(pid_gone(s.pid, 10),
              f"the orphaned worker {s.pid} still runs beside {info!r}")
        check("outlived its fork server" in d.log_text(), "no log line about the orphan")
        s = start(d, svc)
        check(nv_read(h, s, "nv-orphan") == NV_DATA, "NV data after the orphaned worker's restart")
        d.stop_clean()


def test_overlapping_starts():
    """Starts are answered when each control socket listens, not in order:
    a client may pipeline many, several clients may wait for the same one,
    and one that half-closes after its request still gets its answer."""
    with Harness("vrotd-overlap") as h:
        d = Vrotd(h).start()
        uuids = [create(d, "vm", f"storm-{i}")["uuid"] for i in range(6)]
        with d.connect() as c1, d.connect() as c2:
            lines = [c1.request_line("instance.start", {"uuid": u}, i + 1) for i, u in enumerate(uuids)]
            lines.insert(3, c1.request_line("host.info", None, 100))
            check(c1.send_raw(b"".join(lines)), "the daemon closed on a pipelined batch")
            check(c2.send_raw(c2.request_line("instance.start", {"uuid": uuids[0]}, 7)), "second client")
            replies = {}
            for _ in range(len(lines)):
                r = c1.read_reply()
                check(r is not None and "result" in r, f"pipelined start: {r!r}")
                replies[r["id"]] = r["result"]
            check(set(replies) == set(range(1, 7)) | {100}, f"answered ids {sorted(replies)}")
            other = c2.read_reply()
            check(other and other.get("id") == 7 and "result" in other, f"second client: {other!r}")
        pids = set()
        for i, u in enumerate(uuids):
            res = replies[i + 1]
            check(res["uuid"] == u and res["state"] == "running", f"start {u}: {res!r}")
            check_listening(res["ctrl"], f"control socket of {u}")
            pids.add(res["pid"])
        check(len(pids) == 6, f"six starts, workers {sorted(pids)}")
        check(other["result"]["pid"] == replies[1]["pid"],
              "two clients starting the same instance got different workers")
        d.call("instance.stop", uuid=uuids[0])
        with d.connect() as c:
            c.send_raw(c.request_line("instance.start", {"uuid": uuids[0]}, 1))
            c.sock.shutdown(socket.SHUT_WR)
            r = c.read_reply()
            check(r and r.get("result", {}).get("state") == "running",
                  f"a client that half-closed after its start: {r!r}")
        d.stop_clean()


def test_state_copied_to_other_host():
    with Harness("vrotd-copy") as h:
        a = Vrotd(h, "hostA").start()
        b = Vrotd(h, "hostB").start()
        ia, ib = a.call("host.info"), b.call("host.info")
        check(ia["fleet_root_pem"] != ib["fleet_root_pem"] and ia["host_ca_pem"] != ib["host_ca_pem"],
              "two --dev hosts share a fleet root or host CA")
        u = create(a, "service", "mover")["uuid"]
        s = start(a, u)
        nv_write(h, s)
        a.call("instance.stop", uuid=u)
        src = os.path.join(a.state_dir, "instances", u)
        dst = os.path.join(b.state_dir, "instances", u)
        check(os.path.isdir(src), f"no state directory {src}")

        # 1. The directory alone: host B's registry does not know the instance.
        shutil.copytree(src, dst)
        e = expect_error(NOT_FOUND, b.call, "instance.start", uuid=u)
        print(f"     copied state, unknown to B's registry: {e.code} {e.message!r}", flush=True)
        check(u not in listed(b), "host B lists an instance it never created")

        # 2. Known to B (created there), but its state replaced by A's copy:
        #    B's master key differs, the worker refuses the state.
        shutil.rmtree(dst)
        check(create(b, "service", "mover", uuid=u)["uuid"] == u, "create on B")
        shutil.rmtree(dst)
        shutil.copytree(src, dst)
        copied = tree_hashes(dst)
        e = expect_error(STATE_REFUSED, b.call, "instance.start", uuid=u)
        print(f"     A's state under B's key: {e.code} {e.message!r}", flush=True)
        check(tree_hashes(dst) == copied, "the refused state was changed")
        inf = b.call("instance.info", uuid=u)
        check(inf["state"] != "running" and inf.get("pid") is None,
              f"instance.info after the refusal: {inf!r}")
        check(not os.path.lexists(os.path.join(b.runtime_dir, u, "ctrl.sock")),
              "a refused instance left a control socket")
        check(b.call("host.info")["running"] == 0, "host B counts a refused instance as running")
        expect_error(STATE_REFUSED, b.call, "instance.start", uuid=u)   # refused every time

        # Host A's copy is untouched and still works there.
        s = start(a, u)
        check(nv_read(h, s, "nv-a") == NV_DATA, "host A's instance lost its NV data")
        a.call("instance.stop", uuid=u)
        a.stop_clean()
        b.stop_clean()


def raw_expect(c, line, code, what):
    """Send a raw line on c; the reply must be error code; returns the reply."""
    check(c.send_raw(line), f"{what}: daemon closed the connection while we sent")
    reply = c.read_reply(timeout=30)
    check(reply is not None, f"{what}: connection closed without a reply to {line[:200]!r}")
    err = reply.get("error") if isinstance(reply, dict) else None
    check(isinstance(err, dict) and err.get("code") == code and isinstance(err.get("message"), str)
          and reply.get("jsonrpc") == "2.0" and "result" not in reply,
          f"{what}: expected error {code}\n  request: {line[:200]!r}\n  reply:   {reply!r}")
    return reply


def still_serving(d, c=None, what=""):
    res = (c.call("host.info") if c else d.connect(30).call("host.info"))
    check(res.get("dev") is True, f"host.info after {what}: {res!r}")


def test_bad_input():
    with Harness("vrotd-badinput") as h:
        d = Vrotd(h).start()
        mode = os.stat(d.socket).st_mode & 0o777
        check(mode == 0o666, f"API socket mode {mode:o}, expected 666 without an admin group")
        mine = create(d, "service", "root-owned")["uuid"]
        c = d.connect(30)
        cases = [
            (b"{bad json\n", PARSE_ERROR, "malformed JSON"),
            (b'{"jsonrpc":"2.0","id":1,"method":"host.info"\n', PARSE_ERROR, "truncated JSON"),
            (b"\xff\xfe\n", PARSE_ERROR, "not UTF-8"),
            (b'{"jsonrpc":"2.0","id":2,"method":"no.such.method","params":{}}\n',
             METHOD_NOT_FOUND, "unknown method"),
            (b'{"jsonrpc":"2.0","id":3}\n', INVALID_REQUEST, "no method"),
            (b'{"jsonrpc":"1.0","id":4,"method":"host.info"}\n', INVALID_REQUEST, "jsonrpc 1.0"),
            (b'[]\n', INVALID_REQUEST, "empty batch"),
            (b'"host.info"\n', INVALID_REQUEST, "a string"),
            (b'{"jsonrpc":"2.0","id":5,"method":"host.info","params":{"bogus":1}}\n',
             INVALID_PARAMS, "unknown param"),
            (b'{"jsonrpc":"2.0","id":6,"method":"instance.list","params":{"all":true}}\n',
             INVALID_PARAMS, "unknown param to instance.list"),
            (b'{"jsonrpc":"2.0","id":7,"method":"instance.create","params":{"kind":5,"name":"x"}}\n',
             INVALID_PARAMS, "kind of the wrong type"),
            (b'{"jsonrpc":"2.0","id":8,"method":"instance.create","params":{"kind":"vm","name":7}}\n',
             INVALID_PARAMS, "name of the wrong type"),
            (b'{"jsonrpc":"2.0","id":9,"method":"instance.create",'
             b'"params":{"kind":"container","name":"x"}}\n', INVALID_PARAMS, "unknown kind"),
            (b'{"jsonrpc":"2.0","id":10,"method":"instance.create","params":{"kind":"vm","name":"'
             + b"n" * 65 + b'"}}\n', INVALID_PARAMS, "name of 65 characters"),
            (b'{"jsonrpc":"2.0","id":11,"method":"instance.create","params":{"kind":"vm"}}\n',
             INVALID_PARAMS, "no name"),
            (b'{"jsonrpc":"2.0","id":12,"method":"instance.create",'
             b'"params":{"kind":"vm","name":"x","uuid":"not-a-uuid"}}\n', INVALID_PARAMS, "bad uuid"),
            (b'{"jsonrpc":"2.0","id":13,"method":"instance.create",'
             b'"params":{"kind":"vm","name":"x","uuid":42}}\n', INVALID_PARAMS, "uuid a number"),
            (b'{"jsonrpc":"2.0","id":14,"method":"instance.create",'
             b'"params":{"kind":"vm","name":"x","colour":0}}\n', INVALID_PARAMS, "unknown create param"),
            (b'{"jsonrpc":"2.0","id":14,"method":"instance.create",'
             b'"params":{"kind":"vm","name":"x","owner":"root"}}\n', INVALID_PARAMS, "owner a string"),
            (b'{"jsonrpc":"2.0","id":14,"method":"instance.create",'
             b'"params":{"kind":"vm","name":"x","owner":-1}}\n', INVALID_PARAMS, "owner negative"),
            (b'{"jsonrpc":"2.0","id":15,"method":"instance.start","params":{"uuid":42}}\n',
             INVALID_PARAMS, "uuid of the wrong type"),
            (b'{"jsonrpc":"2.0","id":16,"method":"instance.start","params":{}}\n',
             INVALID_PARAMS, "missing uuid"),
            (b'{"jsonrpc":"2.0","id":17,"method":"instance.start","params":{"uuid":"'
             + mine.encode() + b'","force":true}}\n', INVALID_PARAMS, "unknown start param"),
            (b'{"jsonrpc":"2.0","id":18,"method":"instance.ek_cert","params":{"uuid":"'
             + mine.encode() + b'","type":"dsa"}}\n', INVALID_PARAMS, "unknown EK type"),
            (b'{"jsonrpc":"2.0","id":19,"method":"instance.stop","params":["' + mine.encode()
             + b'"]}\n', INVALID_PARAMS, "params by position"),
        ]
        for line, code, what in cases:
            reply = raw_expect(c, line, code, what)
            m = re.search(rb'"id":(\d+)', line)
            if code != PARSE_ERROR and m and line.startswith(b"{"):
                check(reply.get("id") == int(m.group(1)), f"{what}: reply id {reply.get('id')!r}")
            if code == PARSE_ERROR:
                check("id" in reply and reply["id"] is None, f"{what}: parse error id {reply!r}")
            still_serving(d, c, what)
        still_serving(d, None, "all the bad requests")
        lst = listed(d)
        check(set(lst) == {mine}, f"bad requests created or removed instances: {lst!r}")

        # JSON-RPC 2.0: params may be omitted; a notification gets no reply.
        check(c.call_params("host.info", None).get("dev") is True, "host.info without params")
        c.send_raw(b'{"jsonrpc":"2.0","method":"host.info"}\n')
        check(c.call("host.info").get("dev") is True, "the reply after a notification")

        # A client that half-closes after its request (echo ... | socat) is
        # answered before the daemon closes.
        hc = d.connect(30)
        hc.send_raw(hc.request_line("host.info", {}, 77))
        hc.sock.shutdown(socket.SHUT_WR)
        reply = hc.read_reply(timeout=30)
        check(isinstance(reply, dict) and reply.get("id") == 77 and "result" in reply,
              f"request then half-close: reply {str(reply)[:200]}")
        check(hc.at_eof(5), "the daemon did not close after the client's half-close")
        hc.close()

        # A line over 1 MiB: -32006, then the daemon disconnects.
        big = d.connect(30)
        line = (b'{"jsonrpc":"2.0","id":20,"method":"host.info","params":{"x":"'
                + b"a" * (1 << 20) + b'"}}\n')
        t0 = time.monotonic()
        big.send_raw(line)
        reply = big.read_reply(timeout=30)
        check(isinstance(reply, dict) and isinstance(reply.get("error"), dict)
              and reply["error"].get("code") == TOO_LARGE,
              f"line of {len(line)} bytes: reply {str(reply)[:300]}, expected error {TOO_LARGE}")
        check(big.at_eof(10), "the daemon did not disconnect after a line over 1 MiB")
        print(f"     over-long line: {reply['error']} after {time.monotonic() - t0:.2f}s", flush=True)
        big.close()
        still_serving(d, None, "the over-long line")

        # Half a line, then silence: the daemon disconnects after its timeout,
        # serving others meanwhile.
        half = d.connect(30)
        half.send_raw(b'{"jsonrpc":"2.0","id":21,"meth')
        t0 = time.monotonic()
        still_serving(d, None, "half a line elsewhere")
        check(half.at_eof(20), "half a line then silence: not disconnected within 20 s")
        dt = time.monotonic() - t0
        check(dt <= 15.5, f"half a line: disconnected only after {dt:.1f}s")
        print(f"     half a line: disconnected after {dt:.1f}s", flush=True)
        half.close()

        # 100 clients at once, each calling host.info.
        clients = [d.connect(60) for _ in range(100)]
        for i, cl in enumerate(clients):
            check(cl.send_raw(cl.request_line("host.info", {}, 1000 + i)),
                  f"client {i}: closed before its request")
        bad = []
        for i, cl in enumerate(clients):
            r = cl.read_reply(timeout=60)
            if not (isinstance(r, dict) and r.get("id") == 1000 + i
                    and isinstance(r.get("result"), dict) and r["result"].get("dev") is True):
                bad.append((i, r))
        for cl in clients:
            cl.close()
        check(not bad, f"{len(bad)} of 100 concurrent clients were not served: {bad[:3]!r}")
        still_serving(d, None, "100 concurrent clients")

        # A non-root caller (uid nobody) on the 0666 socket.
        path = d.socket

        def nobody(method, **params):
            def fn():
                with Client(path, 60) as cl:
                    return cl.call(method, **params)
            return as_user(NOBODY, NOBODY, fn)

        e = expect_error(PERMISSION_DENIED, nobody, "instance.create", kind="service", name="mine")
        print(f"     nobody instance.create: {e.code} {e.message!r}", flush=True)
        res = nobody("instance.list")
        check(res == {"instances": []}, f"nobody's instance.list: {res!r}")
        for m in ("instance.start", "instance.stop", "instance.delete", "instance.info",
                  "instance.ek_cert"):
            try:
                res = nobody(m, uuid=mine)
                check(m in ("instance.ek_cert",), f"nobody may {m} root's instance: {res!r}")
                note(f"nobody {m} of root's instance: {str(res)[:80]!r}")
            except RpcError as e:
                check(e.code in (PERMISSION_DENIED, NOT_FOUND),
                      f"nobody {m} of root's instance: error {e.code} {e.message!r}")
                note(f"nobody {m} of root's instance: {e.code} {e.message!r}")
        try:
            res = nobody("host.info")
            note(f"nobody host.info: fields {sorted(res)}")
        except RpcError as e:
            note(f"nobody host.info: error {e.code} {e.message!r}")
        check(set(listed(d)) == {mine} and listed(d)[mine]["state"] == "stopped",
              "nobody's calls changed root's instance")
        still_serving(d, None, "the non-root calls")
        d.stop_clean()



def test_crashed_worker_restarted():
    """kill -9 of a worker: vrotd restarts it from its last durable state."""
    with Harness("vrotd-crash") as h:
        d = Vrotd(h).start()
        u = create(d, "service", "crashy")["uuid"]
        s = start(d, u)
        nv_write(h, s)
        os.kill(s.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        info = {}
        while time.monotonic() < deadline:
            info = d.call("instance.info", uuid=u)
            if info["state"] == "running" and info["pid"] not in (None, s.pid):
                break
            time.sleep(0.2)
        check(info.get("state") == "running" and info.get("pid") not in (None, s.pid),
              f"the killed worker was not restarted: {info!r}\n{d.log_text()[-1500:]}")
        s2 = start(d, u)          # idempotent: the restarted worker
        check(s2.pid == info["pid"], "instance.start did not return the restarted worker")
        check(nv_read(h, s2, "nv-after-crash") == NV_DATA, "NV data lost by the crash")
        check("restarting in" in d.log_text(), "no log line about the restart")


def test_restored_state_dir_refused():
    """An older copy of the whole state directory is refused at start: the
    registry's checkpoint lags the host TPM's NV counter (DESIGN "Sealed
    state").  The simulated host TPM lives inside the state directory with
    --dev, so it is kept at its newest state, as a real TPM would be."""
    with Harness("vrotd-rollback") as h:
        d = Vrotd(h).start()
        a = create(d, "vm", "old")["uuid"]
        d.stop_clean()
        backup = h.path("state-backup")
        d.backup_state(backup)
        d.start()
        d.call("instance.delete", uuid=a)       # advances the NV counter
        d.stop_clean()
        d.restore_state(backup)
        proc = h.spawn(d.argv(), log=h.path("rollback.log"))
        try:
            rc = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise Failure("vrotd started on a restored state directory")
        with open(h.path("rollback.log"), errors="replace") as f:
            log = f.read()
        check(rc != 0, "vrotd must refuse a restored state directory")
        check("restored from an older copy" in log, f"no clear message:\n{log[-1500:]}")


TESTS = [test_provision_then_reuse, test_endorsement, test_ecc_only, test_start_stop, test_start_after_worker_exit,
         test_vm_guest_reads_ek_cert, test_delete_tombstone, test_restart_keeps_instances,
         test_daemon_crash_adopts_workers, test_overlapping_starts,
         test_state_copied_to_other_host, test_bad_input, test_crashed_worker_restarted,
         test_restored_state_dir_refused]

if __name__ == "__main__":
    main(TESTS)
