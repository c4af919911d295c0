#!/usr/bin/env python3
"""Soak with faults (issue 7, R-SEAL-4, R-MGT-3): many instances under a
random but reproducible mix of start, stop, guest-like NV writes, kill -9 of
workers, and restarts of vrotd itself (SIGTERM, and kill -9 with adoption).
Afterwards every instance starts with the NV contents it last acknowledged,
no process is left as a zombie or an orphan, and vrotd's memory stays flat
over rounds without restarts.

Bounded by default (200 instances, 4 + 2 rounds); a longer run:

    VROT_SOAK_INSTANCES=500 VROT_SOAK_ROUNDS=20 VROT_SOAK_OPS=1000 \\
        python3 tests/integration/test_soak.py

VROT_SOAK_SEED picks another sequence (the seed is printed).
"""

import os
import random
import signal
import struct
import subprocess
import time

import harness as H
import tpmcmd as T
import vrotd as V
from harness import Failure, check

N = int(os.environ.get("VROT_SOAK_INSTANCES", "200"))
ROUNDS = int(os.environ.get("VROT_SOAK_ROUNDS", "4"))        # with a daemon restart after each
CALM_ROUNDS = 3                                               # then without: memory
# The first calm round after the last restart warms the daemon up (its heap
# and its threads' malloc arenas reach their working size: measured 3.4 MiB
# after it once, 5.9-6.0 MiB after every later one); growth is judged from
# the second calm round on, where a leak would show as steady growth.
OPS = int(os.environ.get("VROT_SOAK_OPS", "250"))             # per round
SEED = int(os.environ.get("VROT_SOAK_SEED", "27070"))
NV_INDEX = 0x01500020
MEMORY_SLACK_KIB = 2048     # growth allowed over the calm rounds (allocator noise)
WEIGHTS = {"start": 30, "stop": 20, "nv": 30, "kill": 10}


class Model:
    """What the test expects of every instance."""

    def __init__(self):
        self.kind = {}
        self.running = set()
        self.nv = {}            # uuid -> last value acknowledged by NV_Write (services)
        self.counts = {k: 0 for k in list(WEIGHTS) + ["restart-term", "restart-kill", "zombie-checks"]}


def say(msg):
    print(f"     {msg}", flush=True)


def wait_running(d, u, not_pid=None, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        info = d.call("instance.info", uuid=u)
        if info["state"] == "running" and (not_pid is None or info["pid"] != not_pid):
            return info
        if time.monotonic() > deadline:
            raise Failure(f"{u} is {info['state']!r} after {timeout}s, want running:\n"
                          f"{d.log_text()[-3000:]}")
        time.sleep(0.05)


def nv_write_next(m, info):
    u = info["uuid"] if "uuid" in info else None
    value = m.nv.get(u, 0) + 1
    with H.connect(info["data"]) as s:
        if u not in m.nv:
            T.nv_define(s, NV_INDEX, 8)
        T.nv_write(s, NV_INDEX, struct.pack(">Q", value))
    m.nv[u] = value         # acknowledged: durable from here on


def nv_value(info):
    with H.connect(info["data"]) as s:
        return struct.unpack(">Q", T.nv_read(s, NV_INDEX, 8))[0]


def one_op(d, m, rng):
    op = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    uuids = sorted(m.kind)
    if op == "start":
        u = rng.choice(uuids)
        d.call("instance.start", uuid=u)
        m.running.add(u)
    elif op == "stop":
        u = rng.choice(uuids)
        d.call("instance.stop", uuid=u)
        m.running.discard(u)
    elif op == "nv":
        u = rng.choice([x for x in uuids if m.kind[x] == "service"])
        info = dict(d.call("instance.start", uuid=u), uuid=u)
        m.running.add(u)
        nv_write_next(m, info)
    elif op == "kill":
        if not m.running:
            return
        u = rng.choice(sorted(m.running))
        pid = wait_running(d, u)["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_running(d, u, not_pid=pid)     # restarted from its last durable state
    m.counts[op] += 1


def check_no_zombies(d, m):
    table = V.proc_table()
    below = V.descendants(d.pid, table)
    zombies = []
    for p in below:
        try:
            with open(f"/proc/{p}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            zombies.append(p)
    check(not zombies, f"zombies below vrotd: {V.describe(zombies)}")
    m.counts["zombie-checks"] += 1


def restart_daemon(d, m, rnd):
    if rnd % 2 == 0:
        check(d.stop(signal.SIGTERM) == 0, f"SIGTERM: {d.log_text()[-2000:]}")
        m.counts["restart-term"] += 1
    else:
        d.stop(signal.SIGKILL)              # workers run on; the next vrotd adopts them
        m.counts["restart-kill"] += 1
    d.start()
    for u in sorted(m.running):             # resumed or adopted, as they were
        wait_running(d, u)


def private_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))


def sanitized():
    """An ASan build: its quarantine keeps freed memory, so private memory
    grows with churn whether or not anything leaks."""
    out = subprocess.run(["ldd", V.vrotd_binary()], capture_output=True, text=True).stdout
    return "libasan" in out


def final_check(d, m):
    for u in sorted(m.kind):
        info = d.call("instance.start", uuid=u)
        check(info.get("pid", 0) > 0, f"{u}: no worker after start: {info!r}")
        if m.kind[u] == "service" and u in m.nv:
            got = nv_value(info)
            check(got == m.nv[u], f"{u}: NV holds {got}, the last acknowledged write was {m.nv[u]}")
        else:
            H.connect_now(info["ctrl"])        # raises if it does not accept
    # The state each worker saves at stop is loaded again by the next start.
    for u in sorted(m.kind):
        d.call("instance.stop", uuid=u)
    for u in sorted(x for x in m.kind if m.kind[x] == "service" and x in m.nv):
        info = d.call("instance.start", uuid=u)
        check(nv_value(info) == m.nv[u], f"{u}: NV changed across stop and start")
        d.call("instance.stop", uuid=u)


def test_soak():
    rng = random.Random(SEED)
    m = Model()
    say(f"seed {SEED}, {N} instances, {ROUNDS} rounds with a daemon restart and {CALM_ROUNDS} "
        f"without, {OPS} operations each")
    with V.Harness("vrot-soak") as h:
        d = V.Vrotd(h, log_level="info").start()
        t0 = time.monotonic()
        for i in range(N):
            kind = ("vm", "service")[i % 2]
            ek = "both" if i % 8 == 0 else "ecc"
            u = d.call("instance.create", kind=kind, name=f"soak-{i}", ek=ek)["uuid"]
            m.kind[u] = kind
        say(f"created {N} in {time.monotonic() - t0:.1f} s")
        memory = []
        for rnd in range(ROUNDS + CALM_ROUNDS):
            t0 = time.monotonic()
            for _ in range(OPS):
                one_op(d, m, rng)
            check_no_zombies(d, m)
            if rnd < ROUNDS:
                restart_daemon(d, m, rnd)
            else:
                memory.append(private_kib(d.pid))
            say(f"round {rnd + 1}: {time.monotonic() - t0:.1f} s, {len(m.running)} running")
        final_check(d, m)
        check_no_zombies(d, m)
        say("vrotd private memory after each calm round: "
            + ", ".join(f"{k} KiB" for k in memory))
        if sanitized():
            # LeakSanitizer judges leaks instead, at vrotd's exit: it makes
            # the exit status non-zero, which stop_clean() refuses.
            say("ASan build: memory growth is ASan's quarantine; LeakSanitizer checks leaks at exit")
        else:
            check(memory[-1] <= memory[1] + MEMORY_SLACK_KIB,
                  f"vrotd's private memory grew from {memory[1]} to {memory[-1]} KiB "
                  f"(after the warm-up round: {memory[0]} KiB)")
        d.stop_clean()      # SIGTERM: exit 0 (no leak under LSan), every worker stopped
        say("counts: " + ", ".join(f"{k} {v}" for k, v in m.counts.items())
            + f"; NV-writing services {len(m.nv)}, highest NV value {max(m.nv.values(), default=0)}")


if __name__ == "__main__":
    H.main([test_soak])
