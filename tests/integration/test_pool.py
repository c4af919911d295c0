#!/usr/bin/env python3
"""vrotd's pool of pre-manufactured vTPMs, end to end (vrotd(8) POOL).

Every test starts its own `vrotd --dev` with a small [daemon] pool-size,
waits until the pool is full (host.info "pool"), and checks what a client,
a relying party and a guest can see of a vTPM that came from the pool:

- its EK certificates chain to the fleet root through the host CA, certify
  the EKs the vTPM holds (`tpm2_createek`, `tpm2_readpublic`), and sit in
  NV (`tpm2_nvread`); no two creates ever share an EK
- a create takes the warm entry (a running pre-made vTPM, bound to the
  instance by BIND) whatever EKs it asks for; an RSA-only one has no ECC
  EK, handle or certificate, an ECC-only one no RSA EK
- a tampered or swapped pool entry is refused and discarded, never used;
  a taken entry put back is never listed again
- entries survive a restart, and a daemon killed while it makes one, or
  while one is warm, or between binding a warm entry and recording the
  instance, leaves neither a process nor an entry half made, and the
  instance's UUID can be created again

At the end of every test the daemon (SIGTERM) must exit 0 and leave no
process behind.

Needs: tpm2-tools, swtpm, openssl.

Usage: test_pool.py [test_name ...]
"""

import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Failure, check, main, tpm2  # noqa: E402
from test_vrotd import (ECC_HANDLE, ECC_INDEX, RSA_HANDLE, RSA_INDEX, cert_der,  # noqa: E402
                        cert_pubkey_der, check_pem, pubkey_file_der, start, verify_ek, write)
from vrotd import (NOT_FOUND, Harness, Vrotd, expect_error, proc_state,  # noqa: E402
                   wait_fault_stop)

FILL_TIMEOUT = 180.0        # a hang guard, not a performance threshold


def pool_daemon(h, size, name="vrotd"):
    conf = write(h, f"{name}-pool.conf", f"[daemon]\npool-size={size}\n")
    return Vrotd(h, name=name, config=conf)


def pool_info(d):
    p = d.call("host.info")["pool"]
    check(isinstance(p, dict) and {"size", "ready", "warm", "filling", "made", "taken",
                                   "discarded"} <= set(p), f"host.info pool: {p!r}")
    return p


def wait_full(d):
    """Until the pool holds pool-size entries, one of them warm, and makes
    none."""
    deadline = time.monotonic() + FILL_TIMEOUT
    while True:
        p = pool_info(d)
        if p["ready"] >= p["size"] and not p["filling"] and (p["warm"] or p["size"] == 0):
            return p
        if time.monotonic() > deadline:
            raise Failure(f"the pool did not fill within {FILL_TIMEOUT}s: {p}\n"
                          f"{d.log_text()[-3000:]}")
        time.sleep(0.02)


def entries(d):
    """The pool's entry directories (STATE/pool/<id>)."""
    top = os.path.join(d.state_dir, "pool")
    return sorted(os.listdir(top)) if os.path.isdir(top) else []


def cert_files(d):
    """STATE/certs, temporary files included."""
    top = os.path.join(d.state_dir, "certs")
    return sorted(os.listdir(top)) if os.path.isdir(top) else []


def check_no_cert_tmp(d, what):
    """A create made the temporary files of the certificates it writes in
    advance (an inode costs up to a millisecond here): none may be left."""
    left = [f for f in cert_files(d) if f.endswith(".tmp")]
    check(not left, f"{what}: temporary certificate files left: {left}")


def create(d, name, kind="service", **kw):
    res = d.call("instance.create", kind=kind, name=name, **kw)
    check(isinstance(res.get("from_pool"), bool), f"instance.create: no from_pool: {sorted(res)}")
    return res


def ek_keys(res):
    return [cert_pubkey_der(res[k]) for k in ("ek_rsa_cert_pem", "ek_ecc_cert_pem") if res.get(k)]


def check_vtpm_matches(h, d, res, tag):
    """Start the service instance: tpm2_createek derives the certified keys,
    the persistent EKs are those keys, NV holds the certificates."""
    s = start(d, res["uuid"])
    for typ, handle, index in (("rsa", RSA_HANDLE, RSA_INDEX), ("ecc", ECC_HANDLE, ECC_INDEX)):
        pem = res[f"ek_{typ}_cert_pem"]
        out = h.path(f"{tag}-createek-{typ}.pem")
        tpm2(s, "createek", "-G", typ, "-c", h.path(f"{tag}-ek-{typ}.ctx"), "-u", out, "-f", "pem")
        tpm2(s, "flushcontext", "-t")
        check(pubkey_file_der(out) == cert_pubkey_der(pem),
              f"{tag} {typ}: tpm2_createek's EK is not the key of the EK certificate")
        out = h.path(f"{tag}-persistent-{typ}.pem")
        tpm2(s, "readpublic", "-c", f"0x{handle:x}", "-o", out, "-f", "pem")
        check(pubkey_file_der(out) == cert_pubkey_der(pem),
              f"{tag} {typ}: persistent EK 0x{handle:x} is not the key of the certificate")
        out = h.path(f"{tag}-nv-{typ}.der")
        tpm2(s, "nvread", f"0x{index:x}", "-o", out)
        with open(out, "rb") as f:
            check(f.read() == cert_der(pem), f"{tag} {typ}: NV 0x{index:x} is not the certificate")
        check_cert_index(s, index, len(cert_der(pem)), f"{tag} {typ}")
    d.call("instance.stop", uuid=res["uuid"])


# TPMA_NV of an EK certificate index, written and write-locked: PPWRITE,
# WRITELOCKED, WRITEDEFINE, PPREAD, OWNERREAD, AUTHREAD, NO_DA, WRITTEN,
# PLATFORMCREATE (what vrotd's endorse.h defines, and the worker's BIND).
CERT_INDEX_ATTRIBUTES = 0x62072801


def check_cert_index(s, index, size, tag):
    """The index is a certificate index as the TCG profile has it: defined
    by the platform, SHA-256, the certificate's size, written and locked."""
    out = tpm2(s, "nvreadpublic", f"0x{index:x}").decode()
    fields, section = {}, None
    for line in out.splitlines():
        key, _, val = line.strip().partition(":")
        if not val.strip():
            section = key               # "hash algorithm:", "attributes:"
        elif key in ("value", "size"):
            fields[f"{section}.{key}" if key == "value" else key] = val.strip().lower()
    want = {"hash algorithm.value": "0xb", "attributes.value": f"0x{CERT_INDEX_ATTRIBUTES:x}",
            "size": str(size)}
    check(all(fields.get(k) == v for k, v in want.items()),
          f"{tag}: NV 0x{index:x} is not a locked SHA-256 certificate index of {size} bytes:\n{out}")


def flip_byte(path, at=None):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        i = len(data) // 2 if at is None else at
        data[i] ^= 0x01
        f.seek(0)
        f.write(data)


# -- tests ---------------------------------------------------------------------

def test_pool_create_endorses():
    """From the pool: certificates that verify and certify the vTPM's own
    EKs; more creates than the pool holds never share an EK."""
    with Harness("vrotd-pool-endorse") as h:
        d = pool_daemon(h, 2).start()
        info = d.call("host.info")
        root, ca = info["fleet_root_pem"], info["host_ca_pem"]
        p = wait_full(d)
        check(p["size"] == 2 and p["ready"] == 2 and p["made"] == 2, f"pool: {p}")
        check(len(entries(d)) == 2, f"entry directories: {entries(d)}")
        c0 = d.call("host.info")["host_tpm_commands"]
        svc = create(d, "svc-1")
        check(svc["from_pool"], "the first create did not come from a full pool")
        n = d.call("host.info")["host_tpm_commands"] - c0
        check(n == 2, f"a create from the pool cost {n} host-TPM commands, not the 2 signatures")
        for typ in ("rsa", "ecc"):
            check_pem(svc[f"ek_{typ}_cert_pem"], f"ek_{typ}_cert_pem")
            verify_ek(h, root, ca, svc[f"ek_{typ}_cert_pem"], f"pool-{typ}")
        check_vtpm_matches(h, d, svc, "svc-1")

        seen = set(ek_keys(svc))
        pooled = 1
        for i in range(5):
            wait_full(d)
            res = create(d, f"more-{i}", kind="vm" if i % 2 else "service")
            pooled += res["from_pool"]
            for k in ek_keys(res):
                check(k not in seen, f"create {i} reuses an EK another instance has")
                seen.add(k)
        check(pooled == 6, f"only {pooled} of 6 creates came from a full pool")
        p = pool_info(d)
        check(p["taken"] == 6 and p["discarded"] == 0, f"pool after 6 creates: {p}")
        d.stop_clean()


def test_pool_one_ek():
    """One EK from the warm entry: the other pre-made EK is evicted; no
    certificate, handle or index of it; instance.ek_cert of the missing
    type says why."""
    with Harness("vrotd-pool-one-ek") as h:
        d = pool_daemon(h, 1).start()
        info = d.call("host.info")
        for ek, other in (("rsa", "ecc"), ("ecc", "rsa")):
            wait_full(d)
            res = create(d, f"{ek}-only", ek=ek)
            check(res["from_pool"], f"ek {ek}: not from the warm pool entry")
            check(res[f"ek_{other}_cert_pem"] is None, f"ek {ek}: a certificate of the other EK")
            verify_ek(h, info["fleet_root_pem"], info["host_ca_pem"], res[f"ek_{ek}_cert_pem"], ek)
            e = expect_error(NOT_FOUND, d.call, "instance.ek_cert", uuid=res["uuid"], type=other)
            check(other in e.message.lower() and res["uuid"] in e.message and
                  "created with only the other EK" in e.message, f"unclear message: {e.message!r}")
            s = start(d, res["uuid"])
            handle, index = {"rsa": (RSA_HANDLE, RSA_INDEX), "ecc": (ECC_HANDLE, ECC_INDEX)}[ek]
            o_handle, o_index = {"rsa": (RSA_HANDLE, RSA_INDEX), "ecc": (ECC_HANDLE, ECC_INDEX)}[other]
            handles = tpm2(s, "getcap", "handles-persistent").decode().lower()
            check(f"0x{o_handle:x}" not in handles and f"0x{handle:x}" in handles,
                  f"persistent handles of an {ek}-only vTPM: {handles}")
            indices = tpm2(s, "getcap", "handles-nv-index").decode().lower()
            check(f"0x{o_index:x}" not in indices and f"0x{index:x}" in indices,
                  f"NV indices of an {ek}-only vTPM: {indices}")
            out = h.path(f"{ek}-createek.pem")
            tpm2(s, "createek", "-G", ek, "-c", h.path(f"{ek}.ctx"), "-u", out, "-f", "pem")
            check(pubkey_file_der(out) == cert_pubkey_der(res[f"ek_{ek}_cert_pem"]),
                  f"tpm2_createek's {ek} EK is not the key of the certificate")
            d.call("instance.stop", uuid=res["uuid"])
            check(f"{res['uuid']}-ek-{ek}.pem" in cert_files(d) and
                  f"{res['uuid']}-ek-{other}.pem" not in cert_files(d),
                  f"ek {ek}: certificate files {cert_files(d)}")
            check_no_cert_tmp(d, f"an {ek}-only create")
        p = pool_info(d)
        check(p["taken"] == 2, f"both creates should take an entry: {p}")
        d.stop_clean()


def test_pool_tampered_and_swapped_refused():
    """An edited entry and an entry holding another one's record are
    refused and discarded, never used: a create either manufactures or
    takes an entry made afterwards, and the pool fills again with good
    entries.  (Entries are edited while vrotd is stopped: a warm entry's
    worker holds its verified state in memory and seals it anew at BIND.)"""
    with Harness("vrotd-pool-tamper") as h:
        d = pool_daemon(h, 2).start()
        info = d.call("host.info")
        wait_full(d)
        a, b = entries(d)
        d.stop_clean()
        top = os.path.join(d.state_dir, "pool")
        flip_byte(os.path.join(top, a, "permall"))
        shutil.copy2(os.path.join(top, a, "generation"), os.path.join(top, b, "generation"))
        d.start()
        res = create(d, "after-tamper")
        verify_ek(h, info["fleet_root_pem"], info["host_ca_pem"], res["ek_rsa_cert_pem"], "t")
        p = pool_info(d)
        check(p["discarded"] == 2 and p["taken"] == (1 if res["from_pool"] else 0),
              f"pool after the refusals: {p}")
        check(not res["from_pool"] or p["made"] >= 1,
              "a create came from the pool before any good entry was made")
        check(a not in entries(d) and b not in entries(d), f"refused entries kept: {entries(d)}")
        log = d.log_text()
        for x in (a, b):
            check(f"pool: entry {x} refused and discarded" in log, f"no refusal logged for {x}")
        wait_full(d)
        res = create(d, "after-refill")
        check(res["from_pool"], "the refilled pool was not used")
        check_vtpm_matches(h, d, res, "refilled")
        d.stop_clean()


def test_pool_replayed_entry_refused():
    """A taken entry's copy put back in the pool directory is not listed:
    never used (the next create takes another entry, with other EKs), and
    removed at the next start."""
    with Harness("vrotd-pool-replay") as h:
        d = pool_daemon(h, 1).start()
        wait_full(d)
        (x,) = entries(d)
        top = os.path.join(d.state_dir, "pool")
        saved = h.path("saved-entry")
        shutil.copytree(os.path.join(top, x), saved)
        first = create(d, "first")
        check(first["from_pool"] and x not in entries(d), f"entry {x} not taken: {entries(d)}")
        wait_full(d)
        shutil.copytree(saved, os.path.join(top, x))        # the replay
        second = create(d, "second")
        check(second["from_pool"], "the second create did not use the refilled pool")
        check(not set(ek_keys(first)) & set(ek_keys(second)),
              "the replayed pool entry was used: two instances share an EK")
        check(x in entries(d), "the unlisted copy should sit there until the next start")
        d.stop_clean()
        d.start()
        check(x not in entries(d), f"the replayed entry {x} survived a restart: {entries(d)}")
        wait_full(d)
        third = create(d, "third")
        check(not set(ek_keys(first)) & set(ek_keys(third)), "the replayed entry was used")
        d.stop_clean()


def test_pool_survives_restart():
    """Entries made by one run are used by the next: full at once, none
    made again, the oldest taken first."""
    with Harness("vrotd-pool-restart") as h:
        d = pool_daemon(h, 2).start()
        wait_full(d)
        before = entries(d)
        d.stop_clean()
        d.start()
        p = pool_info(d)
        check(p["ready"] == 2 and p["made"] == 0, f"pool right after the restart: {p}")
        check(entries(d) == before, f"entries changed over the restart: {before} -> {entries(d)}")
        res = create(d, "after-restart")
        check(res["from_pool"], "the create did not use the entries of the previous run")
        check(len(set(before) - set(entries(d))) == 1, "no entry of the previous run was taken")
        check_vtpm_matches(h, d, res, "restart")
        d.stop_clean()


def test_pool_disabled():
    """pool-size=0: no entries, every create manufactures the whole vTPM."""
    with Harness("vrotd-pool-off") as h:
        d = pool_daemon(h, 0).start()
        p = pool_info(d)
        check(p == {"size": 0, "ready": 0, "warm": False, "filling": False, "made": 0, "taken": 0,
                    "discarded": 0}, f"disabled pool: {p}")
        res = create(d, "no-pool")
        check(not res["from_pool"], "a create came from a disabled pool")
        check(entries(d) == [], f"entries of a disabled pool: {entries(d)}")
        d.stop_clean()


def test_pool_daemon_killed_while_filling():
    """kill -9 of vrotd while it makes entries: the next vrotd stops the
    entry's worker, removes the unfinished entry, fills up, and every
    entry it lists works."""
    with Harness("vrotd-pool-kill") as h:
        d = pool_daemon(h, 4).start()
        deadline = time.monotonic() + FILL_TIMEOUT
        while not pool_info(d)["filling"] and time.monotonic() < deadline:
            time.sleep(0.005)
        d.stop(signal.SIGKILL)
        d.start()
        wait_full(d)
        keys = set()
        for i in range(4):
            res = create(d, f"after-kill-{i}")
            check(res["from_pool"], f"create {i} did not come from the pool")
            keys |= set(ek_keys(res))
        check(len(keys) == 8, "creates after the kill share EKs")
        d.stop_clean()


def warm_worker(d):
    """(entry ID, PID) of the warm entry's worker (RUNTIME/pool/<id>/worker.pid)."""
    top = os.path.join(d.runtime_dir, "pool")
    found = [x for x in os.listdir(top) if os.path.exists(os.path.join(top, x, "worker.pid"))]
    check(len(found) == 1, f"warm worker runtime directories: {found}")
    with open(os.path.join(top, found[0], "worker.pid")) as f:
        return found[0], int(f.read().split()[0])


def wait_gone(pid, what):
    deadline = time.monotonic() + FILL_TIMEOUT
    while proc_state(pid) not in (None, "Z"):
        check(time.monotonic() < deadline, f"{what} (pid {pid}) is still running")
        time.sleep(0.02)


def test_pool_warm_killed():
    """kill -9 of vrotd while an entry is warm: its worker ends on its own
    and writes nothing; the next vrotd finds every entry intact and warms
    one again; a create from it works."""
    with Harness("vrotd-pool-warm-kill") as h:
        d = pool_daemon(h, 2).start()
        wait_full(d)
        before = entries(d)
        wid, pid = warm_worker(d)
        check(wid in before, f"the warm entry {wid} is not listed: {before}")
        d.stop(signal.SIGKILL)
        wait_gone(pid, "the warm worker of a killed vrotd")
        d.start()
        p = wait_full(d)
        check(entries(d) == before and p["discarded"] == 0 and p["made"] == 0,
              f"entries after the kill: {before} -> {entries(d)}, {p}")
        res = create(d, "after-kill", ek="ecc")
        check(res["from_pool"], "the create after the kill did not use the warm entry")
        check(res["ek_rsa_cert_pem"] is None, "an ECC-only create has an RSA certificate")
        s = start(d, res["uuid"])
        out = h.path("ecc.pem")
        tpm2(s, "createek", "-G", "ecc", "-c", h.path("ecc.ctx"), "-u", out, "-f", "pem")
        check(pubkey_file_der(out) == cert_pubkey_der(res["ek_ecc_cert_pem"]),
              "tpm2_createek's ECC EK is not the key of the certificate")
        d.call("instance.stop", uuid=res["uuid"])
        d.stop_clean()


def test_pool_create_while_warming():
    """A create that comes while the only entry's vTPM is still starting
    (being warmed) takes that entry cold: the warming worker is killed and
    waited for, even before the fork server has said its pid, so that it
    holds no lock on the entry's directory.  The create is asked for as
    soon as host.info lists the entry; should the warm-up have finished
    first, a fresh daemon tries again, and the test fails if the path was
    never taken."""
    for attempt in range(5):
        with Harness("vrotd-pool-warming") as h:
            d = pool_daemon(h, 1).start()
            deadline = time.monotonic() + FILL_TIMEOUT
            while pool_info(d)["ready"] < 1:
                check(time.monotonic() < deadline, f"the pool did not fill within {FILL_TIMEOUT}s")
                time.sleep(0.002)
            res = create(d, "while-warming")
            log = d.log_text()
            check(res["from_pool"], "a create during the warm-up did not take the entry:\n"
                  + log[-3000:])
            check("refused and discarded" not in log, f"the entry was discarded:\n{log[-3000:]}")
            d.call("instance.start", uuid=res["uuid"])
            d.call("instance.stop", uuid=res["uuid"])
            d.stop_clean()
            if "given up for a create" in log:
                return
    raise Failure("the warm-up finished before the create in every attempt: the path was not "
                  "exercised")


def test_pool_crash_after_bind():
    """vrotd killed after the warm entry's worker sealed it for the new
    instance (BIND) and before the registry recorded the instance (a test
    build's --fault-stop warm-bound): the next vrotd discards the listed
    entry, whose directory is gone; the instance does not exist; creating
    the same UUID again removes the leftovers and works."""
    with Harness("vrotd-pool-crash-bind") as h:
        d = pool_daemon(h, 1)
        d.extra = ["--fault-stop", "warm-bound"]
        d.start()
        wait_full(d)
        wid, _ = warm_worker(d)
        uuid = "0c9a4a52-3f0e-4c4e-8f61-7d2b5e9a1c03"
        c = d.connect()
        c.send_raw(c.request_line("instance.create", {"uuid": uuid, "kind": "service",
                                                      "name": "cut-short"}, 1))
        wait_fault_stop(d, "warm-bound", FILL_TIMEOUT)
        c.close()
        d.stop(signal.SIGKILL)
        leftover = os.path.join(d.state_dir, "instances", uuid)
        check(os.path.isdir(leftover), "the bound state is not where the instance's goes")
        d.extra = []
        d.start()
        check(f"pool: entry {wid} refused and discarded" in d.log_text(),
              f"the half-taken entry {wid} was not discarded")
        expect_error(NOT_FOUND, d.call, "instance.info", uuid=uuid)
        wait_full(d)
        res = create(d, "again", uuid=uuid)
        check(res["uuid"] == uuid and res["from_pool"], f"create again: {res}")
        check(f"instance {uuid}: removing the files of an unfinished create" in d.log_text(),
              "the leftovers were not removed")
        check_no_cert_tmp(d, "a create after one cut short")
        check_vtpm_matches(h, d, res, "again")
        d.stop_clean()


TESTS = [test_pool_create_endorses, test_pool_one_ek, test_pool_tampered_and_swapped_refused,
         test_pool_replayed_entry_refused, test_pool_survives_restart, test_pool_disabled,
         test_pool_daemon_killed_while_filling, test_pool_warm_killed,
         test_pool_create_while_warming, test_pool_crash_after_bind]

if __name__ == "__main__":
    main(TESTS)
