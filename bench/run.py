#!/usr/bin/env python3
"""vrot-vtpm against swtpm 0.7.1, side by side in one run.

Four benchmarks (see bench/README.md):

  rtt    TPM2_GetRandom(8) round trip on one data-channel connection,
         measured by the C client bench/rtt (COUNT round trips per run),
         client and server pinned to the same CPU for both alike.
  mem    private memory (Private_Clean + Private_Dirty of
         /proc/PID/smaps_rollup) per idle running TPM, N of each kind running
         at once, each started with INIT and TPM2_Startup(CLEAR) done and
         answering a GetRandom before it is measured.
  blob   the TPM's share of live-migration downtime: GET_STATEBLOB of the
         permanent, volatile and savestate blobs from a source, then STOP,
         SET_STATEBLOB of each and INIT on a destination, over the control
         channel as QEMU does; vrot under a migration key (--migrate, blobs
         sealed with AES-256-GCM), swtpm in plaintext.
  start  spawn until the control socket accepts a connection (no flags, as
         libvirt starts swtpm), with existing and with empty state; and spawn
         until a first GetRandom is answered with not-need-init,startup-clear.

Three more, of the host daemon vrotd --dev, in bench/daemon.py, run only when
asked for (`--only create,storm,migrate`):

  create instance.create (EKs made, certificates signed in the host TPM)
         with the pool of pre-made vTPMs warm and disabled, both EKs and
         ECC-only,
         against swtpm_setup with swtpm_localca certificates.
  storm  start many stopped instances at once: total time until all listen,
         host-TPM commands, daemon and worker memory.
  migrate cold migrations between two vrotd --dev hosts: time, host-TPM
         commands and their share of the time.

vrot is measured both ways it can start a worker: "vrot" exec's vrot-vtpm
per TPM, "vrot-fork" asks one `vrot-vtpm --fork-server` to fork it (how the
daemon starts workers).  The round trip is the same worker code either way
and is measured on the exec'd one.

Benchmarks are not tests: nothing here has a threshold, the exit status only
says whether the benchmarks could run.  Every process is started through the
integration-test Harness, which kills it by PID at the end, also on failure,
Ctrl-C or SIGTERM.

  python3 bench/run.py --build build [--quick] [--json out.json]
  meson compile -C build bench          # or bench-quick
"""

import argparse
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

import daemon as D  # noqa: E402  (bench/daemon.py, next to this file)
import harness as H  # noqa: E402  (path set up just above)
import ptm  # noqa: E402
from memprobe import breakdown, print_probe, probe, rollup  # noqa: E402

KINDS = ("vrot", "swtpm")                   # the round trip
ALL_KINDS = ("vrot", "vrot-fork", "swtpm")  # memory and start-up
UP_FLAGS = ["--flags", "not-need-init,startup-clear"]


# -- helpers -------------------------------------------------------------------

def log(msg=""):
    print(msg, flush=True)


def forkserver(h):
    """The Harness's one `vrot-vtpm --fork-server`, started on first use."""
    if not hasattr(h, "bench_forkserver"):
        h.bench_forkserver = h.start_forkserver()
    return h.bench_forkserver


def start(h, kind, name, up=True, server=True, wait=True, state_dir=None):
    """Start one server of @kind; up: INIT and TPM2_Startup(CLEAR) at start."""
    extra = UP_FLAGS if up else []
    if kind == "vrot":
        return h.start_vtpm(name=name, server=server, extra=extra, wait=wait,
                            state_dir=state_dir)
    if kind == "vrot-fork":
        return forkserver(h).spawn(name=name, server=server, extra=extra, wait=wait,
                                   state_dir=state_dir)
    return h.start_swtpm(name=name, server=server, extra=extra, wait=wait,
                         state_dir=state_dir)


def stop(h, srv):
    if isinstance(srv, H.ForkedWorker):
        H.kill_pid(srv.pid, signal.SIGTERM)
        srv.conn.close()
        if srv.pid in h.pids:
            h.pids.remove(srv.pid)
        return
    h.kill(srv.proc, signal.SIGTERM)
    if srv.proc in h.procs:
        h.procs.remove(srv.proc)


def check_up(srv):
    """The TPM really runs: a GetRandom(8) on the data channel succeeds."""
    with H.connect(srv.data) as s:
        rc, resp = H.transact(s, H.get_random(8))
    H.check(rc == 0 and len(resp) == 20,
            f"{srv.kind} pid {srv.pid}: GetRandom failed (rc 0x{rc:x})")


def pin(pid, cpu):
    """Pin every thread of @pid to @cpu."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    k = max(1, min(len(v), -(-len(v) * p // 100)))
    return v[int(k) - 1]


def ratio(a, b):
    return a / b if b else float("nan")


def git_describe():
    try:
        out = subprocess.run(["git", "-C", TOP, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def swtpm_version():
    out = subprocess.run([H.require("swtpm"), "--version"], capture_output=True, text=True)
    return out.stdout.strip()


# -- 1. round trip ---------------------------------------------------------------

def run_rtt_client(h, rtt, sock, count, cpu, tag):
    out = h.path(f"rtt-{tag}.out")
    kw = {}
    if cpu is not None:
        kw["preexec_fn"] = lambda: os.sched_setaffinity(0, {cpu})
    proc = h.spawn([rtt, sock, str(count)], log=out, **kw)
    rc = proc.wait()
    with open(out) as f:
        text = f.read()
    h.procs.remove(proc)
    H.check(rc == 0, f"rtt against {sock} failed ({rc}): {text.strip()}")
    return json.loads(text.strip().splitlines()[-1])


def bench_rtt(args, rtt):
    log(f"== rtt: GetRandom(8) x {args.count} on one connection, {args.rounds} round(s), "
        + (f"client+server pinned to CPU {args.cpu}" if args.cpu is not None else "unpinned"))
    runs = {k: [] for k in KINDS}
    with H.Harness("vrot-bench-rtt") as h:
        srv = {}
        for k in KINDS:
            srv[k] = start(h, k, k)
            check_up(srv[k])
            if args.cpu is not None:
                pin(srv[k].pid, args.cpu)
        for r in range(args.rounds):
            order = KINDS if r % 2 == 0 else KINDS[::-1]
            for k in order:
                res = run_rtt_client(h, rtt, srv[k].data, args.count, args.cpu, f"{k}-{r}")
                runs[k].append(res)
                log(f"   round {r + 1} {k:5s}: median {res['median_us']:8.2f} us  "
                    f"p99 {res['p99_us']:8.2f} us  mean {res['mean_us']:8.2f} us")
    summary = {}
    for k in KINDS:
        summary[k] = {f: statistics.median(x[f] for x in runs[k])
                      for f in ("median_us", "p99_us", "mean_us", "min_us")}
    # vrot/swtpm within each round (the two runs of a round are back to back,
    # so a slow phase of the shared machine hits both): the median of those
    paired = {f: statistics.median(v[f] / s[f] for v, s in zip(runs["vrot"], runs["swtpm"]))
              for f in ("median_us", "p99_us")}
    log(f"   paired ratio vrot/swtpm, median over rounds: median {paired['median_us']:.2f}, "
        f"p99 {paired['p99_us']:.2f}")
    return {"count": args.count, "rounds": args.rounds, "cpu": args.cpu,
            "runs": runs, "summary": summary, "paired_ratio": paired}


# -- 2. memory -----------------------------------------------------------------

def bench_mem(args):
    n = args.instances
    log(f"== mem: {n} idle running TPMs of each kind (INIT + Startup(CLEAR) done, "
        f"one GetRandom answered), measured after {args.settle}s")
    out = {"instances": n, "settle_s": args.settle}
    for k in ALL_KINDS:
        with H.Harness(f"vrot-bench-mem-{k}") as h:
            t0 = time.monotonic()
            srvs = [start(h, k, f"{k}{i}") for i in range(n)]
            for s in srvs:
                check_up(s)
            t_up = time.monotonic() - t0
            time.sleep(args.settle)
            for s in srvs:
                H.check(s.proc.poll() is None, f"{k} pid {s.pid} exited:\n{s.log_text()}")
            per = [(s, rollup(s.pid)) for s in srvs]
            per.sort(key=lambda x: x[1]["Private"])
            rep_srv, rep = per[len(per) // 2]       # the median instance
            priv = [r["Private"] for _, r in per]
            res = {
                "private_kib": {"median": statistics.median(priv), "mean": statistics.mean(priv),
                                "min": min(priv), "max": max(priv)},
                "private_dirty_kib_median": statistics.median(r["Private_Dirty"] for _, r in per),
                "pss_kib_median": statistics.median(r["Pss"] for _, r in per),
                "rss_kib_median": statistics.median(r["Rss"] for _, r in per),
                "pte_kib_median": statistics.median(r.get("VmPTE", 0) for _, r in per),
                "threads": rep.get("Threads"),
                "start_all_s": t_up,
                "representative": {"pid": rep_srv.pid, "rollup": rep},
                "breakdown": breakdown(rep_srv.pid),
                "pages": probe(rep_srv.pid, per[0][0].pid if per[0][0] is not rep_srv
                               else per[-1][0].pid),
            }
            if k == "vrot-fork":
                # one per host, shared by all its workers; its clean file
                # pages count as private until a worker touches them
                fr = rollup(forkserver(h).srv.pid)
                res["forkserver"] = {"private_kib": fr["Private"],
                                     "private_dirty_kib": fr["Private_Dirty"]}
            out[k] = res
            log(f"   {k:9s}: private median {res['private_kib']['median']:.0f} KiB "
                f"(min {min(priv)}, max {max(priv)}; dirty {res['private_dirty_kib_median']:.0f}), "
                f"Pss {res['pss_kib_median']:.0f} KiB, Rss {res['rss_kib_median']:.0f} KiB, "
                f"page tables {res['pte_kib_median']:.0f} KiB, threads {res['threads']}; "
                f"{n} started in {t_up:.1f}s")
            if k == "vrot-fork":
                log(f"   {'':9s}  (the fork server itself: {res['forkserver']['private_dirty_kib']} "
                    f"KiB private dirty, {res['forkserver']['private_kib']} KiB private)")
    return out


def print_breakdown(mem, top):
    kinds = [k for k in ALL_KINDS if k in mem]
    log()
    log("Private memory by object (median instance of each kind), KiB private (dirty):")
    objs = []
    for k in kinds:
        objs += [o for o in mem[k]["breakdown"]["by_object"] if o not in objs]
    zero = {"private_kib": 0, "private_dirty_kib": 0}
    rows = []
    for o in objs:
        cells = [mem[k]["breakdown"]["by_object"].get(o, zero) for k in kinds]
        if any(c["private_kib"] for c in cells):
            rows.append((o, cells))
    rows.sort(key=lambda r: -max(c["private_kib"] for c in r[1]))
    log(f"   {'object':30s}" + "".join(f" {k:>15s}" for k in kinds))
    for o, cells in rows:
        log(f"   {o[:30]:30s}" + "".join(f" {c['private_kib']:7d} ({c['private_dirty_kib']:5d})"
                                        for c in cells))
    log(f"   {'total':30s}" + "".join(f" {sum(r[1][i]['private_kib'] for r in rows):7d}        "
                                     for i in range(len(kinds))))
    for k in kinds:
        log()
        log(f"Biggest private mappings of one {k} process (pid "
            f"{mem[k]['representative']['pid']}), KiB:")
        log(f"   {'mapping (object + section guess)':44s} {'private':>8s} {'dirty':>7s} "
            f"{'rss':>7s} {'size':>7s}")
        items = list(mem[k]["breakdown"]["by_mapping"].items())
        for name, e in items[:top]:
            if not e["private_kib"]:
                break
            log(f"   {name[:44]:44s} {e['private_kib']:8d} {e['private_dirty_kib']:7d} "
                f"{e['rss_kib']:7d} {e['size_kib']:7d}")
        rest = sum(e["private_kib"] for _, e in items[top:])
        if rest:
            log(f"   {'(all others)':44s} {rest:8d}")
    for k in kinds:
        log()
        print_probe(mem[k]["pages"], f"Content of the private pages of that {k} process, KiB "
                    f"(zero: all-zero page; same: equal to another {k} at the same offset):",
                    out=log)


# -- 3. start-up -------------------------------------------------------------------

def wait_accept(srv, path, poll_s, timeout=20.0):
    """Busy-ish wait until @path accepts; returns the monotonic time it did."""
    deadline = time.perf_counter() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            t = time.perf_counter()
            return t, s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
        if srv.proc.poll() is not None:
            raise H.Failure(f"{srv.kind} exited with {srv.proc.returncode}:\n{srv.log_text()}")
        if time.perf_counter() > deadline:
            raise H.Failure(f"{srv.kind} did not listen on {path} within {timeout}s")
        time.sleep(poll_s)


def time_listen(h, kind, name, state_dir, poll_s):
    t0 = time.perf_counter()
    srv = start(h, kind, name, up=False, server=False, wait=False, state_dir=state_dir)
    t1, s = wait_accept(srv, srv.ctrl, poll_s)
    s.close()
    stop(h, srv)
    return (t1 - t0) * 1000.0


def time_serving(h, kind, name, state_dir, poll_s):
    t0 = time.perf_counter()
    srv = start(h, kind, name, up=True, server=True, wait=False, state_dir=state_dir)
    _, s = wait_accept(srv, srv.data, poll_s)
    with s:
        s.settimeout(20)
        rc, _ = H.transact(s, H.get_random(8))
    t1 = time.perf_counter()
    H.check(rc == 0, f"{kind}: GetRandom failed (0x{rc:x})")
    stop(h, srv)
    return (t1 - t0) * 1000.0


def bench_start(args):
    reps, poll_s = args.start_reps, args.poll_us / 1e6
    log(f"== start: {reps} starts of each kind per variant, interleaved, "
        f"socket polled every {args.poll_us} us")
    variants = {
        "listen_existing": "spawn -> ctrl socket accepts (no flags, existing state)",
        "listen_empty": "spawn -> ctrl socket accepts (no flags, empty state dir)",
        "serving_existing": "spawn -> first GetRandom answered (not-need-init,startup-clear, "
                            "existing state)",
    }
    times = {v: {k: [] for k in ALL_KINDS} for v in variants}
    with H.Harness("vrot-bench-start") as h:
        forkserver(h)       # started once, before any timing
        prepared = {}
        for k in ALL_KINDS:     # a state made by that server, then a clean stop
            srv = start(h, k, f"{k}-prep")
            check_up(srv)
            stop(h, srv)
            prepared[k] = srv.state_dir
        for i in range(reps):
            order = ALL_KINDS[i % 3:] + ALL_KINDS[:i % 3]
            for k in order:
                times["listen_existing"][k].append(
                    time_listen(h, k, f"{k}-l{i}", prepared[k], poll_s))
                empty = h.path(f"{k}-e{i}.state")
                times["listen_empty"][k].append(time_listen(h, k, f"{k}-e{i}", empty, poll_s))
                times["serving_existing"][k].append(
                    time_serving(h, k, f"{k}-s{i}", prepared[k], poll_s))
    out = {"reps": reps, "poll_us": args.poll_us, "variants": variants}
    for v in variants:
        out[v] = {}
        for k in ALL_KINDS:
            t = times[v][k]
            out[v][k] = {"median_ms": statistics.median(t), "p90_ms": pct(t, 90),
                         "min_ms": min(t), "max_ms": max(t), "all_ms": t}
        log(f"   {v:17s} " + ", ".join(
            f"{k} {out[v][k]['median_ms']:6.2f} ms (min {out[v][k]['min_ms']:5.2f})"
            for k in ALL_KINDS))
    return out


# -- blob: the TPM's share of live-migration downtime ---------------------------------

def fill_state(srv, h, tag):
    """Some guest state, so that the blobs are not empty shells: an NV
    index of 1 KiB and a persistent ECC key."""
    data = h.path(f"{tag}.nv")
    with open(data, "wb") as f:
        f.write(os.urandom(1024))
    H.tpm2(srv, "nvdefine", "0x1500030", "-C", "o", "-s", "1024", "-a", "ownerread|ownerwrite")
    H.tpm2(srv, "nvwrite", "0x1500030", "-C", "o", "-i", data)
    H.tpm2(srv, "createprimary", "-C", "o", "-G", "ecc", "-c", h.path(f"{tag}.ctx"))
    H.tpm2(srv, "evictcontrol", "-C", "o", "-c", h.path(f"{tag}.ctx"), "0x81000001")


def blob_pair(h, kind):
    """A source with state and a fresh destination; vrot's with the keys of
    one prepared migration."""
    if kind == "swtpm":
        src = h.start_swtpm(name="ssrc", server=True, extra=UP_FLAGS)
        dst = h.start_swtpm(name="sdst", server=True, extra=UP_FLAGS)
    else:
        ms, md = h.path("vsrc.migrate"), h.path("vdst.migrate")
        src = h.start_vtpm(name="vsrc", server=True, extra=UP_FLAGS + ["--migrate", ms])
        dst = h.start_vtpm(name="vdst", server=True, key=b"\x22" * 32,
                           extra=UP_FLAGS + ["--migrate", md])
        mid, key = os.urandom(16), os.urandom(32)
        H.check(ptm.mkey(ms, ptm.MKEY_SET, ptm.MKEY_OUT, mid, key)[0] == 0, "source key")
        H.check(ptm.mkey(md, ptm.MKEY_SET, ptm.MKEY_IN, mid, key)[0] == 0, "destination key")
    fill_state(src, h, kind)
    return src, dst


class Lean:
    """A control-channel client that reads answers by their lengths and
    never waits for quiet (tests/integration/ptm.py checks the protocol and
    drains; here only the servers' time may count)."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(path)

    def close(self):
        self.s.close()

    def read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            H.check(chunk, "the server closed the control channel")
            buf += chunk
        return buf

    def simple(self, msg):
        self.s.sendall(msg)
        return int.from_bytes(self.read(4), "big")

    def get(self, btype, flags):
        """(result, state flags, data); TPM_RETRY (0x800) comes with a header."""
        self.s.sendall(struct.pack(">IIII", ptm.CMD_GET_STATEBLOB, flags, btype, 0))
        res = int.from_bytes(self.read(4), "big")
        if res not in (0, 0x800):
            return res, 0, b""
        sflags, _, length = struct.unpack(">III", self.read(12))
        return res, sflags, self.read(length) if res == 0 else b""

    def set(self, btype, data, flags):
        return self.simple(struct.pack(">IIII", ptm.CMD_SET_STATEBLOB, flags, btype, len(data))
                           + data)


def blob_round(src, dst, flags):
    """One migration's TPM part, as QEMU runs it: (get seconds, set seconds, bytes)."""
    cs, cd = Lean(src.ctrl), Lean(dst.ctrl)
    try:
        t0 = time.perf_counter()
        blobs = []
        for btype in (ptm.BLOB_TYPE_PERMANENT, ptm.BLOB_TYPE_VOLATILE, ptm.BLOB_TYPE_SAVESTATE):
            res, sflags, data = cs.get(btype, flags)
            H.check(res in (0, 0x800), f"GET_STATEBLOB {btype}: 0x{res:x}")
            if data:
                blobs.append((btype, data, sflags))
        t1 = time.perf_counter()
        H.check(cd.simple(struct.pack(">I", ptm.CMD_STOP)) == 0, "STOP on the destination")
        for btype, data, sflags in blobs:
            res = cd.set(btype, data, sflags)
            H.check(res == 0, f"SET_STATEBLOB {btype}: 0x{res:x}")
        H.check(cd.simple(struct.pack(">II", ptm.CMD_INIT, 0)) == 0, "INIT on the destination")
        t2 = time.perf_counter()
    finally:
        cs.close()
        cd.close()
    return t1 - t0, t2 - t1, sum(len(d) for _, d, _ in blobs)


def bench_blob(args):
    n = args.blob_rounds
    log(f"== blob: {n} rounds each, alternating: GET_STATEBLOB x3 from a source, STOP + "
        f"SET_STATEBLOB + INIT on a destination; vrot under a migration key, swtpm plaintext")
    times = {k: {"get": [], "set": [], "total": []} for k in KINDS}
    size = {}
    with H.Harness("vrot-bench-blob") as h:
        pairs = {k: blob_pair(h, k) for k in KINDS}
        for k in KINDS:                     # one untimed round each
            blob_round(*pairs[k], 0 if k == "vrot" else ptm.STATE_FLAG_DECRYPTED)
        for i in range(n):
            for k in (KINDS if i % 2 == 0 else KINDS[::-1]):
                g, st, size[k] = blob_round(*pairs[k], 0 if k == "vrot" else
                                            ptm.STATE_FLAG_DECRYPTED)
                times[k]["get"].append(g * 1000)
                times[k]["set"].append(st * 1000)
                times[k]["total"].append((g + st) * 1000)
    res = {"n": n, "bytes": size}
    for k in KINDS:
        res[k] = {part: {"median_ms": statistics.median(v), "p90_ms": pct(v, 90)}
                  for part, v in times[k].items()}
        log(f"   {k:6s}: get {res[k]['get']['median_ms']:6.2f} ms, set+init "
            f"{res[k]['set']['median_ms']:6.2f} ms, total median "
            f"{res[k]['total']['median_ms']:6.2f} ms p90 {res[k]['total']['p90_ms']:6.2f} ms "
            f"({size[k]} bytes of blobs)")
    return res


# -- table -------------------------------------------------------------------------

def table(res):
    rows = []   # (name, vrot, swtpm, target ratio or None)
    if "rtt" in res:
        s = res["rtt"]["summary"]
        for f, what in (("median_us", "median"), ("p99_us", "p99")):
            rows.append((f"rtt GetRandom(8) {what} [us]", s["vrot"][f], s["swtpm"][f], 1.0))
    if "mem" in res:
        m = res["mem"]
        sw = m["swtpm"]
        rows.append((f"private/idle TPM N={m['instances']}, exec [KiB]",
                     m["vrot"]["private_kib"]["median"], sw["private_kib"]["median"], 0.5))
        rows.append((f"private/idle TPM N={m['instances']}, fork [KiB]",
                     m["vrot-fork"]["private_kib"]["median"], sw["private_kib"]["median"], 0.5))
        rows.append(("  (info) Pss, exec [KiB]", m["vrot"]["pss_kib_median"],
                     sw["pss_kib_median"], None))
        rows.append(("  (info) Pss, fork [KiB]", m["vrot-fork"]["pss_kib_median"],
                     sw["pss_kib_median"], None))
    if "start" in res:
        st = res["start"]
        names = {"listen_existing": ("start->listening, existing", 1.0),
                 "listen_empty": ("  (info) start->listening, empty", None),
                 "serving_existing": ("  (info) start->1st answer", None)}
        for v, (name, target) in names.items():
            for k, how in (("vrot", "exec"), ("vrot-fork", "fork")):
                rows.append((f"{name}, {how} [ms]", st[v][k]["median_ms"],
                             st[v]["swtpm"]["median_ms"], target))
    if "blob" in res:
        b = res["blob"]
        for q in ("median", "p90"):
            rows.append((f"live-migration TPM downtime {q} [ms]", b["vrot"]["total"][f"{q}_ms"],
                         b["swtpm"]["total"][f"{q}_ms"], (5.0, "ms")))
    # the daemon's rows: swtpm None when there is no swtpm counterpart, and
    # target (limit, unit) when it bounds the vrot figure itself
    rows += D.table_rows(res)
    log()
    log(f"{'benchmark':42s} {'vrot':>9s} {'swtpm':>9s} {'vrot/swtpm':>11s} {'target':>8s}  status")
    summary = []
    for name, v, s, target in rows:
        r = ratio(v, s) if s is not None else None
        if isinstance(target, tuple):
            limit, unit = target
            tgt = f"<= {limit:g}{(' ' + unit) if unit else ''}"
            status = "meets" if v <= limit else "MISSES"
        else:
            tgt = f"<= {target:.2f}" if target is not None else "-"
            status = "" if target is None else ("meets" if r <= target else "MISSES")
        s_txt = f"{s:9.1f}" if s is not None else f"{'-':>9s}"
        r_txt = f"{r:11.2f}" if r is not None else f"{'-':>11s}"
        log(f"{name:42s} {v:9.1f} {s_txt} {r_txt} {tgt:>8s}  {status}")
        summary.append({"benchmark": name.strip(), "vrot": v, "swtpm": s, "ratio": r,
                        "target_ratio_max": target if not isinstance(target, tuple) else None,
                        "target_max": target[0] if isinstance(target, tuple) else None,
                        "status": status or None})
    return summary


# -- main ----------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(TOP, "build"),
                   help="meson build directory (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="smoke-test sizes: well under a minute")
    p.add_argument("--only", default="rtt,mem,start,blob",
                   help="comma-separated subset of rtt,mem,start,blob,create,storm,migrate "
                        "(default: %(default)s; create, storm and migrate are bench/daemon.py's)")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON to PATH")
    p.add_argument("--count", type=int, help="round trips per rtt run (10000)")
    p.add_argument("--rounds", type=int, help="rtt runs per server, alternating (5)")
    p.add_argument("--cpu", type=int,
                   help="CPU to pin rtt client and both servers to (default: last allowed)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the rtt benchmark")
    p.add_argument("--instances", type=int, help="TPMs of each kind for mem (50)")
    p.add_argument("--settle", type=float, help="idle seconds before measuring memory (2)")
    p.add_argument("--start-reps", type=int, help="starts per kind and variant (30)")
    p.add_argument("--blob-rounds", type=int, help="stateblob migrations per kind (30)")
    p.add_argument("--poll-us", type=int, default=100,
                   help="socket poll interval while timing starts (%(default)s us)")
    p.add_argument("--top", type=int, default=14, help="mappings shown per process")
    D.add_args(p)
    a = p.parse_args(argv)
    q = a.quick
    for name, full, quick in (("count", 10000, 2000), ("rounds", 5, 1), ("instances", 50, 4),
                              ("settle", 2.0, 0.3), ("start_reps", 30, 5),
                              ("blob_rounds", 30, 5)):
        if getattr(a, name) is None:
            setattr(a, name, quick if q else full)
    D.fill_defaults(a)
    if a.instances < 2:
        p.error("--instances must be >= 2 (a lone process owns its libraries' pages privately)")
    a.only = [x for x in a.only.split(",") if x]
    bad = set(a.only) - {"rtt", "mem", "start", "blob", "create", "storm", "migrate"}
    if bad:
        p.error(f"unknown benchmark(s) {','.join(sorted(bad))}")
    if a.no_pin:
        a.cpu = None
    elif a.cpu is None:
        a.cpu = max(os.sched_getaffinity(0))
    return a


def on_term(signum, _frame):
    # unwinds through the Harness context managers, which kill by PID
    raise SystemExit(128 + signum)


def main():
    args = parse_args(sys.argv[1:] + shlex.split(os.environ.get("VROT_BENCH_ARGS", "")))
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    build = os.path.abspath(args.build)
    os.environ["VROT_VTPM"] = os.path.join(build, "vtpm", "vrot-vtpm")
    os.environ["VROT_VROTD"] = os.path.join(build, "daemon", "vrotd")
    H.vtpm_binary()
    if {"create", "storm", "migrate"} & set(args.only):
        D.V.vrotd_binary()
        H.require("swtpm_setup")
        H.require("swtpm_localca")
    rtt = os.path.join(build, "bench", "rtt")
    if "rtt" in args.only and not os.access(rtt, os.X_OK):
        raise SystemExit(f"{rtt} not found: run `ninja -C {args.build}` first")
    H.require("swtpm")

    meta = {
        "vrot_vtpm": os.environ["VROT_VTPM"],
        "vrot_version": subprocess.run([os.environ["VROT_VTPM"], "--version"],
                                       capture_output=True, text=True).stdout.strip(),
        "swtpm_version": swtpm_version(),
        "git": git_describe(),
        "kernel": platform.release(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "loadavg_start": os.getloadavg(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
    }
    log(f"{meta['vrot_version']} vs {meta['swtpm_version'].splitlines()[0]}; "
        f"git {meta['git']}; {meta['cpus_allowed']} CPUs; "
        f"load {' '.join(f'{x:.2f}' for x in meta['loadavg_start'])}")
    res = {}
    t0 = time.monotonic()
    if "rtt" in args.only:
        res["rtt"] = bench_rtt(args, rtt)
    if "mem" in args.only:
        res["mem"] = bench_mem(args)
    if "start" in args.only:
        res["start"] = bench_start(args)
    if "blob" in args.only:
        res["blob"] = bench_blob(args)
    if "create" in args.only:
        res["create"] = D.bench_create(args)
    if "storm" in args.only:
        res["storm"] = D.bench_storm(args)
    if "migrate" in args.only:
        res["migrate"] = D.bench_migrate(args)
    if "mem" in res:
        print_breakdown(res["mem"], args.top)
    summary = table(res)
    meta["loadavg_end"] = os.getloadavg()
    meta["duration_s"] = time.monotonic() - t0
    log(f"\n{meta['duration_s']:.0f}s; load at end "
        f"{' '.join(f'{x:.2f}' for x in meta['loadavg_end'])} (the machine is shared: "
        "compare ratios from one run, not absolute numbers across runs)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "summary": summary, "results": res}, f, indent=1)
        log(f"results written to {args.json}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    except H.Failure as e:
        print(f"bench failed: {e}", file=sys.stderr)
        sys.exit(1)
