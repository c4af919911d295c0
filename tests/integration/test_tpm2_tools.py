#!/usr/bin/env python3
"""tpm2-tools (5.4, tpm2-tss swtpm TCTI) against vrot-vtpm's data socket.

The worker is started with --flags not-need-init so the TPM is running
without a control-channel INIT; the tools then reach it through
TPM2TOOLS_TCTI=swtpm:path=DATA, which also uses DATA.ctrl.  Checked: the
basic commands, that NV data survives a clean stop and a restart on the same
sealed state while PCRs do not, and that the wrong key is refused without
touching the state.

Usage: test_tpm2_tools.py [test_name ...]
"""

import hashlib
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Harness, check, main, tpm2  # noqa: E402

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NV_INDEX = "0x1500016"
NV_DATA = b"vrot NV test data \x00\x01\x02\xff" + bytes(range(32, 70))
PCR = 16                    # the debug PCR: resettable, extendable at locality 0
START = ["--flags", "not-need-init"]


def read_pcr(h, srv, name):
    out = h.path(name)
    tpm2(srv, "pcrread", f"sha256:{PCR}", "-o", out)
    with open(out, "rb") as f:
        value = f.read()
    check(len(value) == 32, f"pcrread gave {len(value)} bytes")
    return value


def nv_read(h, srv, name):
    out = h.path(name)
    tpm2(srv, "nvread", NV_INDEX, "-C", "o", "-s", str(len(NV_DATA)), "-o", out)
    with open(out, "rb") as f:
        return f.read()


def create_primary(h, srv):
    """An ECC P-256 owner primary; returns its public point (x, y) as hex.

    The key derives from the owner seed, which lives in permall: the same
    template gives the same point for as long as the seed persists."""
    ctx = h.path("primary.ctx")
    out = tpm2(srv, "createprimary", "-C", "o", "-G", "ecc256", "-c", ctx).decode()
    fields = dict(line.split(": ", 1) for line in out.splitlines()
                  if line.startswith(("x: ", "y: ")))
    check(len(fields.get("x", "")) == 64 and len(fields.get("y", "")) == 64
          and os.path.getsize(ctx) > 0, f"createprimary output:\n{out}")
    tpm2(srv, "flushcontext", "-t")
    return fields["x"], fields["y"]


def state_hashes(state_dir):
    hashes = {}
    for name in sorted(os.listdir(state_dir)):
        with open(os.path.join(state_dir, name), "rb") as f:
            hashes[name] = hashlib.sha256(f.read()).hexdigest()
    return hashes


def stop(h, srv):
    """SIGTERM: the worker must exit 0 and remove both its sockets."""
    h.kill(srv.proc, signal.SIGTERM)
    check(srv.proc.returncode == 0,
          f"SIGTERM: worker exited {srv.proc.returncode}:\n{srv.log_text()[-2000:]}")
    left = [p for p in (srv.data, srv.ctrl) if os.path.lexists(p)]
    check(not left, f"sockets left after a clean exit: {left}")


def first_life(h, state):
    """Fresh TPM: the basic commands, a PCR extend and an NV index."""
    srv = h.start_vtpm(name="first", server=True, state_dir=state, key=KEY, extra=START)
    tpm2(srv, "startup", "-c")

    r1 = tpm2(srv, "getrandom", "--hex", "32").decode().strip()
    r2 = tpm2(srv, "getrandom", "--hex", "32").decode().strip()
    check(len(r1) == 64 and int(r1, 16) >= 0, f"getrandom: {r1!r}")
    check(r1 != r2, "two getrandom calls gave the same 32 bytes")

    old = read_pcr(h, srv, "pcr-old")
    check(old == bytes(32), f"PCR {PCR} after Startup(CLEAR) is {old.hex()}, not zero")
    digest = hashlib.sha256(b"vrot pcrextend test").digest()
    tpm2(srv, "pcrextend", f"{PCR}:sha256={digest.hex()}")
    new = read_pcr(h, srv, "pcr-new")
    want = hashlib.sha256(old + digest).digest()
    check(new == want, f"PCR {PCR} after extend is {new.hex()}, expected "
          f"sha256(old||digest) = {want.hex()}")

    primary = create_primary(h, srv)

    tpm2(srv, "nvdefine", NV_INDEX, "-C", "o", "-s", str(len(NV_DATA)),
         "-a", "ownerread|ownerwrite|no_da")
    data = h.path("nv-in")
    with open(data, "wb") as f:
        f.write(NV_DATA)
    tpm2(srv, "nvwrite", NV_INDEX, "-C", "o", "-i", data)
    got = nv_read(h, srv, "nv-out-1")
    check(got == NV_DATA, f"nvread right after nvwrite: {got!r}")
    return srv, primary


def test_tools_persist_and_restart():
    with Harness("tpm2-tools") as h:
        state = h.path("state")
        os.makedirs(state)
        srv, primary = first_life(h, state)
        stop(h, srv)
        check({"permall", "generation"} <= set(os.listdir(state)),
              f"state files after stop: {sorted(os.listdir(state))}")

        srv = h.start_vtpm(name="second", server=True, state_dir=state, key=KEY, extra=START)
        tpm2(srv, "startup", "-c")
        got = nv_read(h, srv, "nv-out-2")
        check(got == NV_DATA, f"NV data after restart: {got!r}, expected {NV_DATA!r}")
        pcr = read_pcr(h, srv, "pcr-after")
        check(pcr == bytes(32), f"PCR {PCR} survived the restart: {pcr.hex()}")
        again = create_primary(h, srv)
        check(again == primary, f"owner primary changed across the restart (owner seed "
              f"lost?): {primary} then {again}")
        stop(h, srv)


def test_wrong_key_refused():
    with Harness("tpm2-tools-key") as h:
        state = h.path("state")
        os.makedirs(state)
        stop(h, first_life(h, state)[0])
        before = state_hashes(state)

        srv = h.start_vtpm(name="wrong", server=True, state_dir=state, key=OTHER_KEY,
                           extra=START, wait=False)
        rc, log = srv.wait_exit()
        check(rc == 3, f"wrong key: exit {rc}, expected 3:\n{log}")
        check("refusing to start: state file " in log and "authentication failed" in log,
              f"wrong key: no refusal naming the file and reason in the log:\n{log}")
        check(state_hashes(state) == before,
              f"wrong key: state changed:\n{before}\n{state_hashes(state)}")
        left = [p for p in (srv.data, srv.ctrl) if os.path.lexists(p)]
        check(not left, f"refused worker left sockets: {left}")

        # The right key still opens the untouched state.
        srv = h.start_vtpm(name="right", server=True, state_dir=state, key=KEY, extra=START)
        tpm2(srv, "startup", "-c")
        got = nv_read(h, srv, "nv-out")
        check(got == NV_DATA, f"NV data with the right key after a refusal: {got!r}")
        stop(h, srv)


if __name__ == "__main__":
    main([test_tools_persist_and_restart, test_wrong_key_refused])
