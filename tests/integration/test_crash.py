#!/usr/bin/env python3
"""Crash safety of the sealed state (R-SEAL-4): kill -9 during NV writes.

One vrot-vtpm instance gets a stream of raw TPM2_NV_Write commands on its
data socket, each writing the next value of a counter into one NV index,
while a timer kills the worker with SIGKILL at a random moment.  After every
kill the worker is started again on the same state directory and key, and
the NV index is read back: the value must be the last one the TPM
acknowledged or the one that was in flight when the worker died - never an
error, never a refusal to start, never an older value.

Between the kill and the restart the plaintext headers of `permall` and
`generation` are compared, to count how often the kill landed between a
blob's rename and its record's (the case the store completes at start).

VROT_CRASH_KILLS sets the number of kills (default 200, the number the full
run requires); VROT_CRASH_SEED makes the kill moments reproducible.

Usage: test_crash.py [test_name ...]
"""

import os
import random
import signal
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Failure, Harness, check, connect, main, transact  # noqa: E402
from tpmcmd import (TPM_RC_RETRY, TPM_RC_TESTING, TPM_RC_YIELDED,  # noqa: E402
                    header_generation, nv_define, nv_read, nv_write, nv_write_cmd)

NV_INDEX = 0x01500020

# -- the test -----------------------------------------------------------------

VALUE_REPEAT = 8            # the counter, 8 bytes big-endian, 8 times over
NV_SIZE = 8 * VALUE_REPEAT
START_FLAGS = ["--flags", "not-need-init,startup-clear"]


def encode(n):
    return struct.pack(">Q", n) * VALUE_REPEAT


def decode(data):
    check(len(data) == NV_SIZE, f"NV value of {len(data)} bytes")
    check(data == data[:8] * VALUE_REPEAT, f"NV value is not one counter repeated: {data.hex()}")
    return struct.unpack(">Q", data[:8])[0]


class Stream:
    """Writes counter values until the connection dies; remembers what was acked."""

    def __init__(self, acked):
        self.acked = acked        # last value the TPM answered TPM_RC_SUCCESS for
        self.inflight = acked     # last value sent (== acked when nothing is pending)
        self.writes = 0

    def run(self, path):
        try:
            sock = connect(path)
        except OSError:
            return                    # killed before the first write
        try:
            while True:
                n = self.inflight + 1
                self.inflight = n
                try:
                    rc, _ = transact(sock, nv_write_cmd(NV_INDEX, encode(n)))
                except (Failure, OSError):
                    return            # the worker is gone (the kill, we check)
                if rc in (TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING):
                    self.inflight = self.acked
                    continue
                check(rc == 0, f"NV_Write of {n}: TPM response code 0x{rc:x}")
                self.acked = n
                self.writes += 1
        finally:
            sock.close()


def start(h, state_dir, run):
    try:
        return h.start_vtpm(name=f"w{run:03d}", server=True, state_dir=state_dir,
                            extra=START_FLAGS)
    except Failure as e:
        raise Failure(f"start #{run} after a kill failed: {e}") from None


def test_kill9_during_nv_writes():
    kills = int(os.environ.get("VROT_CRASH_KILLS", "200"))
    seed = int(os.environ.get("VROT_CRASH_SEED", str(random.randrange(1 << 32))))
    rng = random.Random(seed)
    check(kills > 0, "VROT_CRASH_KILLS must be positive")

    with Harness("crash") as h:
        state = h.path("state")
        os.makedirs(state)
        srv = start(h, state, 0)
        with connect(srv.data) as s:
            nv_define(s, NV_INDEX, NV_SIZE)
            nv_write(s, NV_INDEX, encode(0))
        acked = 0
        writes = 1
        got_inflight = 0      # restarts that found the unacknowledged value
        pending_record = 0    # kills between a blob's rename and its record's
        t0 = time.monotonic()
        streaming = 0.0       # time spent writing, restarts excluded

        for run in range(1, kills + 1):
            stream = Stream(acked)
            # Short delays land in the first writes, longer ones deep in the stream.
            delay = rng.choice((rng.uniform(0, 0.02), rng.uniform(0, 0.5)))
            timer = threading.Timer(delay, os.kill, (srv.pid, signal.SIGKILL))
            timer.start()
            ts = time.monotonic()
            try:
                stream.run(srv.data)
            finally:
                timer.join()          # the PID stays ours: not reaped before this
            streaming += time.monotonic() - ts
            srv.proc.wait(timeout=10)
            check(srv.proc.returncode == -signal.SIGKILL,
                  f"kill #{run}: worker ended with {srv.proc.returncode} before the kill "
                  f"(acked {stream.acked}, in flight {stream.inflight}):\n"
                  f"{srv.log_text()[-2000:]}")
            writes += stream.writes

            gen = header_generation(os.path.join(state, "generation"))
            perm = header_generation(os.path.join(state, "permall"))
            if gen is not None and perm == gen + 1:
                pending_record += 1

            srv = start(h, state, run)
            with connect(srv.data) as s:
                try:
                    value = decode(nv_read(s, NV_INDEX, NV_SIZE))
                except Failure as e:
                    raise Failure(f"kill #{run} (after {delay * 1000:.1f} ms, acked "
                                  f"{stream.acked}, in flight {stream.inflight}): {e}") from None
            check(value in (stream.acked, stream.inflight),
                  f"kill #{run} (after {delay * 1000:.1f} ms, seed {seed}): NV holds {value}, "
                  f"but the last acknowledged write was {stream.acked} and the one in "
                  f"flight {stream.inflight}")
            if value != stream.acked:
                got_inflight += 1
            acked = value

        h.kill(srv.proc, signal.SIGTERM)
        check(srv.proc.returncode == 0, f"final SIGTERM: exit {srv.proc.returncode}")
        elapsed = time.monotonic() - t0
        print(f"     {kills} kills, {writes} acknowledged NV writes in {elapsed:.1f}s "
              f"({writes / max(streaming, 1e-9):.0f} writes/s while streaming); "
              f"{got_inflight} restarts found the write in flight, {pending_record} kills "
              f"fell between blob and record; seed {seed}", flush=True)


if __name__ == "__main__":
    main([test_kill9_during_nv_writes])
