#!/usr/bin/env python3
"""vrot-vtpm refuses bad sealed state and leaves it exactly as found (R-SEAL-3).

Two instances, A and B (other UUID, same key), are given real state: an NV
index written twice (a copy of A's permall and generation is kept after the
first write) and a STORE_VOLATILE over the control channel, so that permall,
generation and volatilestate all exist.  Then, for each damage done to a
copy of A's state directory - one byte flipped in the header, the ciphertext
or the tag, the file emptied or cut by one byte, swapped with B's file of the
same name, permall's bytes under volatilestate's name, an older permall, an
older permall+generation pair with --min-generation at the newer generation,
permall deleted - the worker must:

  - exit with status 3 before listening on anything,
  - log "refusing to start: state file NAME: REASON" for the damaged file,
  - leave every file in the state directory as it was (content, inode, mtime).

Then the good file is put back and the worker must start and read the NV
data.  Finally a second worker on a state directory locked by a running one
must exit non-zero with a clear message, without disturbing the first.

Usage: test_bad_state.py [test_name ...]
"""

import hashlib
import os
import signal
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (Failure, Harness, check, connect, get_random, main,  # noqa: E402
                     startup_clear, transact)
from tpmcmd import header_generation, nv_define, nv_read, nv_write  # noqa: E402

KEY = bytes(range(100, 132))
UUID_A = "3b0c1f0e-5a8d-4c2b-9e7f-1a2b3c4d5e6f"
UUID_B = "9d4e2a71-0b6c-4f3e-8a19-7c6d5e4f3a2b"
NV_INDEX = 0x01500030
NV_SIZE = 48
OLD_DATA = b"old " * (NV_SIZE // 4)
NEW_DATA = b"NEW!" * (NV_SIZE // 4)
# With startup-clear on a state dir holding a volatilestate, the TPM resumes
# and the worker's own Startup gets TPM_RC_INITIALIZE, which it must treat as
# started (as swtpm does); the good-state restarts below prove it.  The tests'
# own Startup(CLEAR) then also answers TPM_RC_INITIALIZE.
START = ["--flags", "not-need-init,startup-clear"]
TPM_RC_INITIALIZE = 0x100
STATE_FILES = ("permall", "generation", "volatilestate")
CMD_STORE_VOLATILE = 0x0A
HEADER_LEN, TAG_LEN = 52, 16

# Where to flip a byte (lib/seal.h layout) and the reason the log must give.
FLIPS = [
    ("magic", lambda n: 0, "bad magic"),
    ("version", lambda n: 5, "version"),
    ("flags", lambda n: 7, "flags"),
    ("type", lambda n: 11, "blob type"),
    ("uuid", lambda n: 20, "another instance"),
    ("generation", lambda n: 35, "authentication failed"),
    ("length", lambda n: 39, "length mismatch"),
    ("iv", lambda n: 45, "authentication failed"),
    ("ciphertext-first", lambda n: HEADER_LEN, "authentication failed"),
    ("ciphertext-middle", lambda n: (HEADER_LEN + n - TAG_LEN) // 2, "authentication failed"),
    ("tag-first", lambda n: n - TAG_LEN, "authentication failed"),
    ("tag-last", lambda n: n - 1, "authentication failed"),
]


# -- helpers -------------------------------------------------------------------

def store_volatile(ctrl_path):
    """Control command STORE_VOLATILE: 4-byte command, 4-byte result."""
    with connect(ctrl_path) as s:
        s.sendall(struct.pack(">I", CMD_STORE_VOLATILE))
        buf = b""
        while len(buf) < 4:
            chunk = s.recv(4 - len(buf))
            check(chunk, f"STORE_VOLATILE: connection closed after {len(buf)} bytes")
            buf += chunk
    (rc,) = struct.unpack(">I", buf)
    check(rc == 0, f"STORE_VOLATILE: result 0x{rc:x}")


def snapshot(d):
    """{name: bytes} of every file in a state directory."""
    out = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out[name] = f.read()
    return out


def fingerprint(d):
    """Every file: sha256, size, inode and mtime - a rewrite changes it."""
    out = {}
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        st = os.lstat(p)
        with open(p, "rb") as f:
            out[name] = (hashlib.sha256(f.read()).hexdigest(), st.st_size, st.st_ino,
                         st.st_mtime_ns)
    return out


def put(d, name, data):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, 0o600)


def stop(h, srv):
    h.kill(srv.proc, signal.SIGTERM)
    check(srv.proc.returncode == 0,
          f"SIGTERM: worker exited {srv.proc.returncode}:\n{srv.log_text()[-2000:]}")


def make_instance(h, name, uuid):
    """Real state for one instance; returns (good files, older permall+generation)."""
    d = h.path(name + ".made")
    os.makedirs(d)
    srv = h.start_vtpm(name=name, uuid=uuid, key=KEY, server=True, state_dir=d, extra=START)
    with connect(srv.data) as s:
        startup(s, name)
        nv_define(s, NV_INDEX, NV_SIZE)
        nv_write(s, NV_INDEX, OLD_DATA)
        # The record is written before the answer: permall+generation are a pair now.
        old = {n: v for n, v in snapshot(d).items() if n in ("permall", "generation")}
        for i in range(3):
            nv_write(s, NV_INDEX, NEW_DATA[:16 * i] + OLD_DATA[16 * i:])
        nv_write(s, NV_INDEX, NEW_DATA)
    store_volatile(srv.ctrl)
    stop(h, srv)
    good = snapshot(d)
    check(set(STATE_FILES) <= set(good), f"{name}: state files after set-up: {sorted(good)}")
    check(header_generation(os.path.join(d, "generation")) >
          struct.unpack(">Q", old["generation"][28:36])[0],
          f"{name}: the generation did not advance after the older copy was taken")
    return good, old


class Fixture:
    def __init__(self, h):
        self.h = h
        self.good, self.old = make_instance(h, "a", UUID_A)
        self.other, _ = make_instance(h, "b", UUID_B)
        self.gen = struct.unpack(">Q", self.good["generation"][28:36])[0]
        self.cases = 0

    def fresh_dir(self, label):
        self.cases += 1
        d = self.h.path(f"case{self.cases:02d}.state")
        os.makedirs(d)
        for name, data in self.good.items():
            put(d, name, data)
        return d


def startup(s, what):
    """Startup(CLEAR); a TPM resumed from volatilestate is already started."""
    rc, _ = transact(s, startup_clear())
    check(rc in (0, TPM_RC_INITIALIZE), f"{what}: TPM2_Startup: 0x{rc:x}")


def read_back(h, srv, what, start=True):
    with connect(srv.data) as s:
        if start:
            startup(s, what)
        data = nv_read(s, NV_INDEX, NV_SIZE)
    check(data == NEW_DATA, f"{what}: NV data {data!r}, expected {NEW_DATA!r}")


def refused(fx, label, damage, file, reason, extra=()):
    """Damage a copy of A's state; the worker must refuse it and touch nothing;
    with the damaged files restored it must start and read the NV data."""
    h = fx.h
    d = fx.fresh_dir(label)
    touched = damage(d)
    before = fingerprint(d)
    name = f"case{fx.cases:02d}"
    srv = h.start_vtpm(name=name, uuid=UUID_A, key=KEY, server=True, state_dir=d,
                       extra=START + list(extra), wait=False)
    rc, log = srv.wait_exit()
    check(rc == 3, f"{label}: exit status {rc}, expected 3:\n{log}")
    lines = [ln for ln in log.splitlines() if f"refusing to start: state file {file}: " in ln]
    check(lines, f"{label}: no 'refusing to start: state file {file}: ' in the log:\n{log}")
    check(any(reason in ln for ln in lines),
          f"{label}: the refusal does not give the reason {reason!r}:\n{log}")
    after = fingerprint(d)
    check(after == before, f"{label}: the state directory changed:\n"
          f"before {before}\nafter  {after}")
    left = [p for p in (srv.data, srv.ctrl) if os.path.lexists(p)]
    check(not left, f"{label}: a refused worker created sockets {left}")

    for n in touched:
        if n in fx.good:
            put(d, n, fx.good[n])
    check(snapshot(d) == fx.good, f"{label}: restoring did not give back the good state")
    srv = h.start_vtpm(name=name + "-ok", uuid=UUID_A, key=KEY, server=True, state_dir=d,
                       extra=START + list(extra))
    read_back(h, srv, f"{label}, restored")
    stop(h, srv)


def flip(name, offset_of):
    def damage(d):
        p = os.path.join(d, name)
        with open(p, "r+b") as f:
            data = bytearray(f.read())
            off = offset_of(len(data))
            data[off] ^= 0xFF
            f.seek(0)
            f.write(data)
        return [name]
    return damage


def truncate(name, length_of):
    def damage(d):
        p = os.path.join(d, name)
        os.truncate(p, length_of(os.path.getsize(p)))
        return [name]
    return damage


# -- tests -----------------------------------------------------------------------

def test_good_state_starts():
    with Harness("bad-state-good") as h:
        fx = Fixture(h)
        d = fx.fresh_dir("good")
        srv = h.start_vtpm(name="good", uuid=UUID_A, key=KEY, server=True, state_dir=d,
                           extra=START + ["--min-generation", str(fx.gen)])
        read_back(h, srv, "untouched state")
        stop(h, srv)


def test_flipped_bytes():
    with Harness("bad-state-flip") as h:
        fx = Fixture(h)
        for name in STATE_FILES:
            for where, offset_of, reason in FLIPS:
                refused(fx, f"{name}: byte flipped in the {where}", flip(name, offset_of),
                        name, reason)
        print(f"     {fx.cases} flipped-byte cases refused", flush=True)


def test_truncated():
    with Harness("bad-state-trunc") as h:
        fx = Fixture(h)
        for name in STATE_FILES:
            refused(fx, f"{name} emptied", truncate(name, lambda n: 0), name, "empty file")
            refused(fx, f"{name} cut by one byte", truncate(name, lambda n: n - 1), name,
                    "length mismatch")


def test_other_instance():
    with Harness("bad-state-swap") as h:
        fx = Fixture(h)
        for name in STATE_FILES:
            def damage(d, name=name):
                put(d, name, fx.other[name])
                return [name]
            refused(fx, f"{name} of instance B", damage, name, "another instance")


def test_type_swap():
    with Harness("bad-state-type") as h:
        fx = Fixture(h)

        def damage(d):
            put(d, "volatilestate", fx.good["permall"])
            return ["volatilestate"]
        refused(fx, "permall's bytes as volatilestate", damage, "volatilestate",
                "is a permall blob")


def test_rollback():
    with Harness("bad-state-rollback") as h:
        fx = Fixture(h)

        def old_permall(d):
            put(d, "permall", fx.old["permall"])
            return ["permall"]
        refused(fx, "older permall", old_permall, "permall", "older than")

        def old_pair(d):
            for n, data in fx.old.items():
                put(d, n, data)
            return list(fx.old)
        refused(fx, f"older permall+generation, --min-generation {fx.gen}", old_pair,
                "generation", "older than", extra=["--min-generation", str(fx.gen)])

        def no_permall(d):
            os.unlink(os.path.join(d, "permall"))
            return ["permall"]
        refused(fx, "permall deleted", no_permall, "permall", "missing")


def test_locked_state_dir():
    with Harness("bad-state-lock") as h:
        fx = Fixture(h)
        d = fx.fresh_dir("locked")
        first = h.start_vtpm(name="locked", uuid=UUID_A, key=KEY, server=True, state_dir=d,
                             extra=START)
        read_back(h, first, "first worker")
        before = fingerprint(d)
        log_start = os.path.getsize(first.log)
        # Same state dir and the same socket paths: the loser must not take them.
        second = h.start_vtpm(name="locked", uuid=UUID_A, key=KEY, server=True, state_dir=d,
                              extra=START, wait=False)
        try:
            rc = second.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Failure("a second worker runs on a locked state directory")
        with open(first.log, errors="replace") as f:
            f.seek(log_start)
            log = f.read()
        check(rc != 0, f"second worker on a locked state dir exited 0:\n{log}")
        check(rc != 3, f"a locked state dir is not bad state, yet exit 3:\n{log}")
        check("in use by another worker" in log,
              f"second worker: no clear message about the lock:\n{log}")
        check(fingerprint(d) == before, "the second worker changed the state directory")
        check(first.proc.poll() is None, "the first worker died")
        read_back(h, first, "first worker after the second was refused", start=False)
        with connect(first.data) as s:
            rc, _ = transact(s, get_random(8))
            check(rc == 0, f"GetRandom on the first worker: 0x{rc:x}")
        print(f"     second worker: exit {second.proc.returncode}: "
              f"{log.strip().splitlines()[-1] if log.strip() else ''}", flush=True)
        stop(h, first)


if __name__ == "__main__":
    main([test_good_state_starts, test_flipped_bytes, test_truncated, test_other_instance,
          test_type_swap, test_rollback, test_locked_state_dir])
