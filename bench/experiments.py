#!/usr/bin/env python3
"""Experiments: what would each candidate change save per worker?

Not a benchmark of shipped code: it measures vrot-vtpm as built, then the
same worker with changes applied from the outside, so that each idea gets a
measured gain before anybody writes it:

  vrot                  vrot-vtpm exec'ed per worker, as run.py starts it
  vrot+trim             ... then malloc_trim(0) called in each worker (gdb)
  vrot+zero             ... then the all-zero private pages of libtpms' .bss
                        dropped with madvise(MADV_DONTNEED) (gdb); they read
                        back as zeroes from the shared zero page
  vrot+zero+trim        both
  fork                  workers forked by `vrot-vtpm --fork-server`
  fork+zero, fork+zero+trim   the same changes on forked workers
  swtpm                 swtpm 0.7.1 with the same flags, for the ratio

Each configuration starts N workers one after the other, all kept running
(INIT + TPM2_Startup(CLEAR) at start, empty state, a GetRandom answered
before and after any change), then reports the median private
(Private_Clean + Private_Dirty) and Pss per worker, and the median time from
the spawn (or fork request) of each worker until its control socket accepts
and until its first GetRandom is answered.  gdb's inferior calls leave a
page or two of libc/ld.so text private in the processes they touch (about
8 KiB), so the +trim/+zero gains are slightly understated.  Needs gdb.

  python3 bench/experiments.py --build build [-n 50] [--workload] [--json out.json]

With --workload every worker then defines and writes an NV index and runs
TPM2_CreatePrimary (ECC P-256) + FlushContext and three PCR_Extends, three
times, and is measured again, and once more after trim/zero are re-applied:
do the gains survive use?
"""

import argparse
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

import harness as H  # noqa: E402
import run as R  # noqa: E402
import tpmcmd as T  # noqa: E402
from memprobe import (PAGE, label_mappings, print_probe, private_pages, probe,  # noqa: E402
                      read_page, smaps)

MADV_DONTNEED = 4


def gdb_batch(pid, commands, tries=3):
    """Run gdb commands in @pid; retried, as an attach now and then finds no
    executable on this busy machine (the binary is named explicitly too)."""
    exe = os.readlink(f"/proc/{pid}/exe")
    argv = ["gdb", "-q", "-batch", "-nx", exe, "-p", str(pid)]
    for c in commands:
        argv += ["-ex", c]
    for _ in range(tries):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if out.returncode == 0 and "No symbol table" not in out.stderr:
            return out.stdout
        time.sleep(0.2)
    raise H.Failure(f"gdb on {pid} failed: {out.stderr[-2000:]}")


def zero_ranges(pid, obj="libtpms", sec=".bss"):
    """(start, length) runs of all-zero private pages in obj's .bss."""
    runs = []
    with open(f"/proc/{pid}/pagemap", "rb") as pm, open(f"/proc/{pid}/mem", "rb") as mem:
        for m in label_mappings(smaps(pid)):
            if not (m["obj"].startswith(obj) and m["sec"] == sec):
                continue
            for addr in private_pages(pid, m, pm):
                data = read_page(mem, addr)
                if data is not None and data.count(0) == PAGE:
                    if runs and runs[-1][0] + runs[-1][1] == addr:
                        runs[-1][1] += PAGE
                    else:
                        runs.append([addr, PAGE])
    return runs


# -- a small workload: what a booting guest does, roughly ----------------------

def create_primary_ecc():
    """TPM2_CreatePrimary(owner): an ECC P-256 storage key, as tpm2-tss does."""
    pub = struct.pack(">HHI", 0x0023, 0x000B, 0x00030072)     # ECC, SHA256, attrs
    pub += struct.pack(">H", 0)                                # authPolicy
    pub += struct.pack(">HHH", 0x0006, 128, 0x0043)           # AES-128-CFB
    pub += struct.pack(">HHH", 0x0010, 0x0003, 0x0010)        # no scheme, P-256, no KDF
    pub += struct.pack(">HH", 0, 0)                            # unique x, y
    params = struct.pack(">HHH", 4, 0, 0)                      # inSensitive
    params += struct.pack(">H", len(pub)) + pub
    params += struct.pack(">HI", 0, 0)                         # outsideInfo, creationPCR
    return T.session_cmd(0x131, [T.TPM_RH_OWNER], params)


def workload(srv, rounds=3):
    """An NV index defined and written, then CreatePrimary + FlushContext and
    three PCR_Extends per round: roughly what a guest's boot does."""
    with H.connect(srv.data, timeout=60) as s:
        T.nv_define(s, 0x01500016, 64)
        T.nv_write(s, 0x01500016, b"\x5a" * 64)
        for i in range(rounds):
            rc, resp = H.transact(s, create_primary_ecc())
            H.check(rc == 0, f"{srv.kind} {srv.pid}: CreatePrimary rc 0x{rc:x}")
            handle = struct.unpack(">I", resp[10:14])[0]
            rc, _ = H.transact(s, H.tpm_cmd(0x165, struct.pack(">I", handle)))
            H.check(rc == 0, f"{srv.kind} {srv.pid}: FlushContext rc 0x{rc:x}")
            for pcr in (0, 7, 16):
                ext = struct.pack(">IH", 1, T.TPM_ALG_SHA256) + bytes([i + pcr]) * 32
                rc, _ = H.transact(s, T.session_cmd(0x182, [pcr], ext))
                H.check(rc == 0, f"{srv.kind} {srv.pid}: PCR_Extend rc 0x{rc:x}")


def apply_changes(srv, trim, zero):
    cmds = []
    if zero:
        # The pages are checked while the worker runs, then dropped under
        # gdb: safe because the worker is idle (no client is connected), not
        # because of any locking.  A real implementation checks and drops
        # in the worker's own loop.
        for addr, n in zero_ranges(srv.pid):
            cmds.append(f"call (int)madvise((void*){addr:#x}, {n}, {MADV_DONTNEED})")
    if trim:
        cmds.append("call (int)malloc_trim(0)")
    if cmds:
        gdb_batch(srv.pid, cmds)


def measure(srvs, times):
    per = []
    for s in srvs:
        r = R.rollup(s.pid)
        per.append((s, r))
    per.sort(key=lambda x: x[1]["Private"])
    rep = per[len(per) // 2][0]
    other = per[0][0] if per[0][0] is not rep else per[-1][0]
    return {
        "private_kib_median": statistics.median(r["Private"] for _, r in per),
        "private_kib_min": min(r["Private"] for _, r in per),
        "private_kib_max": max(r["Private"] for _, r in per),
        "pss_kib_median": statistics.median(r["Pss"] for _, r in per),
        "pages": probe(rep.pid, other.pid),
        "pid": rep.pid,
        "start_ctrl_ms_median": statistics.median(t[0] for t in times),
        "start_answer_ms_median": statistics.median(t[1] for t in times),
    }


def timed_start(spawn, srv_of):
    """(server, ms until ctrl accepts, ms until a first GetRandom is answered)."""
    t0 = time.perf_counter()
    srv = srv_of(spawn())
    t1, c = R.wait_accept(srv, srv.ctrl, 0.0001)
    c.close()
    R.wait_accept(srv, srv.data, 0.0001)[1].close()
    R.check_up(srv)
    t2 = time.perf_counter()
    return srv, (t1 - t0) * 1000, (t2 - t0) * 1000


WORKLOAD = False


def after_workload(res, srvs, trim, zero, settle):
    """Private KiB after the workload, and after re-applying the changes."""
    for s in srvs:
        workload(s)
    time.sleep(settle)
    res["after_workload_kib_median"] = statistics.median(R.rollup(s.pid)["Private"] for s in srvs)
    if trim or zero:
        for s in srvs:
            apply_changes(s, trim, zero)
        time.sleep(settle)
    res["after_workload_reapplied_kib_median"] = statistics.median(
        R.rollup(s.pid)["Private"] for s in srvs)


def run_exec(h, kind, n, trim=False, zero=False, settle=1.0):
    srvs, times = [], []
    for i in range(n):
        srv, tc, ta = timed_start(lambda: R.start(h, kind, f"{kind}{i}", wait=False),
                                  lambda x: x)
        srvs.append(srv)
        times.append((tc, ta))
    time.sleep(settle)
    if trim or zero:
        for s in srvs:
            apply_changes(s, trim, zero)
        for s in srvs:
            R.check_up(s)       # still a working TPM
        time.sleep(settle)
    res = measure(srvs, times)
    if WORKLOAD:
        after_workload(res, srvs, trim, zero, settle)
    return res


def run_fork(h, n, trim=False, zero=False, settle=1.0):
    fs = h.start_forkserver()
    kids, times = [], []
    for i in range(n):
        kid, tc, ta = timed_start(
            lambda: fs.spawn(name=f"fork{i}", server=True, extra=R.UP_FLAGS, wait=False),
            lambda x: x)
        kids.append(kid)
        times.append((tc, ta))
    time.sleep(settle)
    if trim or zero:
        for k in kids:
            apply_changes(k, trim, zero)
        for k in kids:
            R.check_up(k)
        time.sleep(settle)
    res = measure(kids, times)
    if WORKLOAD:
        after_workload(res, kids, trim, zero, settle)
    # its clean file pages (libcrypto text...) count as private until a
    # worker touches them; what it really costs is its dirty memory
    res["forkserver_private_dirty_kib"] = R.rollup(fs.srv.pid)["Private_Dirty"]
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(TOP, "build"))
    p.add_argument("-n", "--instances", type=int, default=50)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--workload", action="store_true",
                   help="then run CreatePrimary/FlushContext/PCR_Extend x3 on every worker and "
                        "measure again (and again after re-applying trim/zero)")
    p.add_argument("--pages", action="store_true",
                   help="print the private-page content table of each configuration")
    a = p.parse_args()
    signal.signal(signal.SIGTERM, R.on_term)
    global WORKLOAD
    WORKLOAD = a.workload
    build = os.path.abspath(a.build)
    os.environ["VROT_VTPM"] = os.path.join(build, "vtpm", "vrot-vtpm")
    H.vtpm_binary()
    H.require("gdb")
    H.require("swtpm")

    configs = [
        ("swtpm", lambda h: run_exec(h, "swtpm", a.instances, settle=a.settle)),
        ("vrot", lambda h: run_exec(h, "vrot", a.instances, settle=a.settle)),
        ("vrot+trim", lambda h: run_exec(h, "vrot", a.instances, trim=True, settle=a.settle)),
        ("vrot+zero", lambda h: run_exec(h, "vrot", a.instances, zero=True, settle=a.settle)),
        ("vrot+zero+trim", lambda h: run_exec(h, "vrot", a.instances, trim=True, zero=True,
                                              settle=a.settle)),
        ("fork", lambda h: run_fork(h, a.instances, settle=a.settle)),
        ("fork+zero", lambda h: run_fork(h, a.instances, zero=True, settle=a.settle)),
        ("fork+zero+trim", lambda h: run_fork(h, a.instances, trim=True, zero=True,
                                              settle=a.settle)),
    ]
    res = {}
    for name, fn in configs:
        with H.Harness("vrot-experiments") as h:
            res[name] = fn(h)
        r = res[name]
        extra = (f", fork server itself {r['forkserver_private_dirty_kib']} KiB private dirty"
                 if "forkserver_private_dirty_kib" in r else "")
        print(f"{name:22s} private median {r['private_kib_median']:6.0f} KiB "
              f"(min {r['private_kib_min']}, max {r['private_kib_max']}), "
              f"Pss {r['pss_kib_median']:6.0f} KiB, start->ctrl {r['start_ctrl_ms_median']:.1f} ms, "
              f"->1st answer {r['start_answer_ms_median']:.1f} ms{extra}", flush=True)
    base_s = res["swtpm"]["private_kib_median"]
    base_v = res["vrot"]["private_kib_median"]
    print()
    print(f"{'configuration (N=' + str(a.instances) + ')':24s} {'private':>8s} {'saved':>7s} "
          f"{'/swtpm':>7s} {'Pss':>7s} {'->ctrl':>7s} {'->answer':>9s}")
    for name, r in res.items():
        v = r["private_kib_median"]
        print(f"{name:24s} {v:8.0f} {base_v - v:7.0f} {v / base_s:7.2f} {r['pss_kib_median']:7.0f} "
              f"{r['start_ctrl_ms_median']:7.1f} {r['start_answer_ms_median']:9.1f}")
    print("(private, saved, Pss: KiB per worker, medians; ->ctrl, ->answer: ms from spawn)")
    if a.workload:
        print()
        print(f"{'after the workload':24s} {'private':>8s} {'re-applied':>11s} {'/swtpm':>7s}")
        base_w = res["swtpm"]["after_workload_kib_median"]
        for name, r in res.items():
            w, ra = r["after_workload_kib_median"], r["after_workload_reapplied_kib_median"]
            print(f"{name:24s} {w:8.0f} {ra:11.0f} {ra / base_w:7.2f}")
    print(f"(target: private <= {base_s / 2:.0f} KiB, half of swtpm's)")
    for name in (res if a.pages else ("fork", "fork+zero+trim")):
        print()
        print_probe(res[name]["pages"], f"{name}: private pages of pid {res[name]['pid']}, KiB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"instances": a.instances, "results": res}, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
