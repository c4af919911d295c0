#!/usr/bin/env python3
"""Benchmarks of the host daemon, vrotd --dev (see bench/README.md).

  create  N rounds, each timing at the client an `instance.create` (vTPM
          manufactured, RSA-2048 and ECC P-256 EKs, both certificates
          signed in the simulated host TPM and written to NV) on a vrotd
          --dev whose pool of pre-made vTPMs is warm and on one without a
          pool, an ECC-only create on each, and one run of `swtpm_setup
          --tpm2 --create-ek-cert --create-platform-cert` with swtpm_localca
          certificates (RSA-2048 and ECC P-384 EKs, three certificates),
          from a private swtpm-localca configuration in the temporary
          directory; the order rotates, and the pool is full and idle
          before anything is timed.  swtpm_setup runs under a forked
          wrapper that is a child subreaper and blocks in waitpid(-1), so
          the swtpm it double-forks is reaped at once (FIELD-NOTES).
  storm   M instances created (not timed) and stopped, then all started:
          sequential `instance.start` calls over one connection, then again
          with several concurrent clients; total time until every start has
          answered (the daemon answers once the control socket listens),
          host-TPM commands used by the starts, the daemon's memory before
          and after, the workers' private memory.  Side by side, right
          after each of the first two rounds: as many swtpm 0.7.1, started
          the way libvirt starts one (`swtpm socket --daemon`, the first
          process exits once the sockets listen; a service's with a data
          socket and not-need-init,startup-clear) from copies of a state
          swtpm made, sequentially and by as many concurrent clients;
          total time until every one has returned, and the ratio.

  migrate N cold migrations of one stopped service vTPM between two vrotd
          --dev hosts of one fleet on loopback, alternating direction
          (`instance.migrate`: attested handshake both ways, import key,
          sealed state, destination stores, runs and endorses it, commit
          with the NV counter), timed at the client; the host-TPM commands
          each side used and the share of the wall time they took
          (host.info host_tpm_usec).  swtpm has no such protocol (libvirt
          copies its state files, sealed with a passphrase every host
          shares), so there is no ratio.

Used by bench/run.py (`--only create,storm,migrate`); also runnable alone:

  python3 bench/daemon.py --build build [--quick] [--only create,storm,migrate] [--json out.json]
"""

import ctypes
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

import harness as H  # noqa: E402  (path set up just above)
import vrotd as V  # noqa: E402
from memprobe import rollup  # noqa: E402  (bench/memprobe.py, next to this file)


def log(msg=""):
    print(msg, flush=True)


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    k = max(1, min(len(v), -(-len(v) * p // 100)))
    return v[int(k) - 1]


def stats_ms(seconds):
    ms = [x * 1000.0 for x in seconds]
    return {"n": len(ms), "median_ms": statistics.median(ms), "p90_ms": pct(ms, 90),
            "p99_ms": pct(ms, 99), "min_ms": min(ms), "max_ms": max(ms),
            "mean_ms": statistics.mean(ms), "all_ms": ms}


def mem_brief(r):
    return {k: r.get(k) for k in ("Rss", "Pss", "Private", "Private_Dirty", "VmHWM", "Threads")}


def start_daemon(h, name="vrotd", runtime_dir=None):
    # log level "info": what a production daemon would log (one line per start)
    return V.Vrotd(h, name=name, log_level="info", runtime_dir=runtime_dir).start()


def tmpfs_dir(prefix):
    """A directory on a tmpfs, as /run is in production (sockets are bound
    there at every start: on ext4 each bind costs a new inode); the caller
    removes it."""
    return tempfile.mkdtemp(prefix=prefix, dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


# -- 1. create + endorse ---------------------------------------------------------

SWTPM_SETUP_CONF = """\
create_certs_tool= {localca}
create_certs_tool_config = {dir}/swtpm-localca.conf
create_certs_tool_options = {dir}/swtpm-localca.options
active_pcr_banks = sha256
"""

LOCALCA_CONF = """\
statedir = {dir}/ca
signingkey = {dir}/ca/signkey.pem
issuercert = {dir}/ca/issuercert.pem
certserial = {dir}/ca/certserial
"""

LOCALCA_OPTIONS = """\
--platform-manufacturer vrot-bench
--platform-version 2.1
--platform-model QEMU
"""


def private_localca(h):
    """A swtpm_setup configuration whose swtpm_localca CA lives in the
    Harness's directory: nothing system-wide is read or written."""
    d = h.path("swtpm-localca")
    os.makedirs(os.path.join(d, "ca"), exist_ok=True)
    for name, text in (("swtpm_setup.conf", SWTPM_SETUP_CONF),
                       ("swtpm-localca.conf", LOCALCA_CONF),
                       ("swtpm-localca.options", LOCALCA_OPTIONS)):
        with open(os.path.join(d, name), "w") as f:
            f.write(text.format(dir=d, localca=H.require("swtpm_localca")))
    return os.path.join(d, "swtpm_setup.conf")


_libc = ctypes.CDLL(None, use_errno=True)


def run_subreaped(argv, env, log_path):
    """Run argv to its end under a forked wrapper that is a child subreaper
    and blocks in waitpid(-1): every process argv leaves behind (swtpm_setup
    double-forks swtpm and polls until it is gone, a zombie counting as
    alive) is reaped the moment it exits.  Returns (seconds, exit status),
    timed in the caller from before the fork to the wrapper's exit."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:                                    # the wrapper
        code = 127
        try:
            _libc.prctl(36, 1, 0, 0, 0)             # PR_SET_CHILD_SUBREAPER
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            child = os.fork()
            if child == 0:
                try:
                    os.dup2(fd, 1)
                    os.dup2(fd, 2)
                    devnull = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(devnull, 0)
                    os.execve(argv[0], argv, env)
                finally:
                    os._exit(127)
            os.close(fd)
            while True:
                p, st = os.waitpid(-1, 0)
                if p == child:
                    code = os.waitstatus_to_exitcode(st)
                    break
            # anything still around is re-parented to the bench (a subreaper
            # too) when we exit and killed by the Harness
            while True:
                try:
                    p, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if p == 0:
                    break
        finally:
            os._exit(code if 0 <= code < 256 else 126)
    _, st = os.waitpid(pid, 0)
    return time.perf_counter() - t0, os.waitstatus_to_exitcode(st)


def swtpm_setup_once(h, conf, i, env):
    state = h.path(f"swtpm-setup-{i}.state")
    os.makedirs(state)
    argv = [H.require("swtpm_setup"), "--tpm2", "--tpmstate", state, "--create-ek-cert",
            "--create-platform-cert", "--config", conf]
    logp = h.path(f"swtpm-setup-{i}.log")
    dt, rc = run_subreaped(argv, env, logp)
    with open(logp, errors="replace") as f:
        text = f.read()
    H.check(rc == 0, f"swtpm_setup failed ({rc}):\n{text[-3000:]}")
    H.check("Successfully authored TPM state" in text, f"swtpm_setup:\n{text[-3000:]}")
    shutil.rmtree(state, ignore_errors=True)
    return dt


# The create variants, each timed N times per run, interleaved with swtpm_setup:
# (key, daemon, instance.create params, from the pool?, label).  With the
# pool full, every create takes its warm entry (a running pre-made vTPM,
# vrotd(8) POOL), whichever EKs it asks for.
CREATE_VARIANTS = (
    ("pool", "pool", {}, True, "vrot, pool warm"),
    ("nopool", "nopool", {}, False, "vrot, pool disabled"),
    ("pool_ecc", "pool", {"ek": "ecc"}, True, "vrot ECC-only, pool warm"),
    ("nopool_ecc", "nopool", {"ek": "ecc"}, False, "vrot ECC-only, pool disabled"),
)


def pool_daemon(h, name, size, runtime_dir=None):
    conf = h.path(f"{name}.conf")
    with open(conf, "w") as f:
        f.write(f"[daemon]\npool-size={size}\n")
    return V.Vrotd(h, name=name, log_level="info", config=conf, runtime_dir=runtime_dir).start()


def wait_pool_full(c, timeout=180.0):
    """Until the daemon's pool is full and it makes no entry: nothing of
    the refill runs while anything is timed (swtpm_setup included)."""
    deadline = time.monotonic() + timeout
    while True:
        p = c.call("host.info")["pool"]
        if p["ready"] >= p["size"] and not p["filling"] and (p["warm"] or p["size"] == 0):
            return
        H.check(time.monotonic() < deadline, f"the pool did not fill within {timeout}s: {p}")
        time.sleep(0.005)


def time_create(c, name, params, want_pool):
    t0 = time.perf_counter()
    r = c.call("instance.create", kind="service", name=name, **params)
    dt = time.perf_counter() - t0
    H.check(r["ek_ecc_cert_pem"] and (r["ek_rsa_cert_pem"] is None) == ("ek" in params),
            f"instance.create {params} gave the wrong certificates: {sorted(r)}")
    H.check(r["from_pool"] == want_pool, f"instance.create {name}: from_pool {r['from_pool']}, "
            f"expected {want_pool}")
    return dt


def create_round(i, h, conf, env, conns, times):
    """One round: every variant and one swtpm_setup, in an order that
    rotates, so that a slow phase of the shared machine hits all alike."""
    kinds = [v[0] for v in CREATE_VARIANTS] + ["swtpm"]
    k = i % len(kinds)
    for who in kinds[k:] + kinds[:k]:
        wait_pool_full(conns["pool"])
        if who == "swtpm":
            times["swtpm_setup"].append(swtpm_setup_once(h, conf, i, env))
            continue
        _, daemon, params, pooled, _ = next(v for v in CREATE_VARIANTS if v[0] == who)
        times[who].append(time_create(conns[daemon], f"{who}-{i}", params, pooled))


def bench_create(args):
    n = args.creates
    log(f"== create: {n} rounds, each of: vrotd instance.create (RSA-2048 + ECC P-256 EKs, 2 certs) "
        f"with the pool warm and with it disabled, the same ECC-only, and one swtpm_setup "
        f"--create-ek-cert --create-platform-cert (RSA-2048 + ECC P-384 EKs, 3 certs, "
        f"swtpm_localca); the order rotates; the pool is full before anything is timed")
    # the daemons' runtime directories on a tmpfs, as /run is in production
    # (workers bind their sockets there); the state stays on disk
    runs = {k: tmpfs_dir(f"vrot-bench-create-{k}.") for k in ("pool", "nopool")}
    try:
        return create_all(n, runs)
    finally:
        for r in runs.values():
            shutil.rmtree(r, ignore_errors=True)


def create_all(n, runs):
    times = {k: [] for k in [v[0] for v in CREATE_VARIANTS] + ["swtpm_setup"]}
    cmds = {}
    with V.Harness("vrot-bench-create") as h:
        conf = private_localca(h)
        tmp = h.path("tmp")
        os.makedirs(tmp)
        env = dict(os.environ, TMPDIR=tmp)   # swtpm_setup's certificate temp dirs
        swtpm_setup_once(h, conf, "warmup", env)   # creates the local CA (not timed)
        daemons = {"pool": pool_daemon(h, "vrotd-pool", 4, runs["pool"]),
                   "nopool": pool_daemon(h, "vrotd-nopool", 0, runs["nopool"])}
        conns = {k: d.connect() for k, d in daemons.items()}
        try:
            for k, c in conns.items():
                wait_pool_full(conns["pool"])
                c.call("instance.create", kind="service", name="warmup")   # not timed
                cmds[k] = c.call("host.info")["host_tpm_commands"]
            for i in range(n):
                create_round(i, h, conf, env, conns, times)
            for k, c in conns.items():
                cmds[k] = (c.call("host.info")["host_tpm_commands"] - cmds[k]) / (2 * n)
        finally:
            for c in conns.values():
                c.close()
    return create_report(n, times, cmds)


def create_report(n, times, cmds):
    s = stats_ms(times["swtpm_setup"])
    res = {"n": n, "swtpm_setup": s, "host_tpm_commands_per_create": cmds}
    for key, _, _, _, label in CREATE_VARIANTS:
        v = stats_ms(times[key])
        v["ratio_median"] = v["median_ms"] / s["median_ms"]
        v["ratio_p90"] = v["p90_ms"] / s["p90_ms"]
        res[key] = v
        log(f"   {label:30s}: median {v['median_ms']:6.1f} ms  p90 {v['p90_ms']:6.1f} ms  "
            f"(min {v['min_ms']:.1f}, max {v['max_ms']:.1f}); vs swtpm_setup: median "
            f"{v['ratio_median']:.3f}, p90 {v['ratio_p90']:.3f}")
    log(f"   {'swtpm_setup':30s}: median {s['median_ms']:6.1f} ms  p90 {s['p90_ms']:6.1f} ms  "
        f"(min {s['min_ms']:.1f}, max {s['max_ms']:.1f})")
    log(f"   host-TPM commands per create: {cmds}; targets: <= 1/3 of swtpm_setup (median and "
        f"p90), ECC-only <= 5 ms")
    # the names earlier runs used, for comparisons across commits
    res["vrot"], res["vrot_ecc_only"] = res["pool"], res["pool_ecc"]
    res["ratio_median"], res["ratio_p90"] = res["pool"]["ratio_median"], res["pool"]["ratio_p90"]
    return res


# -- 2. boot storm ---------------------------------------------------------------

def listening(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def run_parallel(parts, fn):
    """fn(part) for every part, each in its own thread, all released at
    once; returns the seconds from the release until the last is done.
    The first exception a thread raised is raised here."""
    errors = []
    barrier = threading.Barrier(len(parts) + 1)

    def body(part):
        try:
            barrier.wait()
            fn(part)
        except Exception as e:     # noqa: B902 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=body, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    total = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return total, t0


def start_all(d, uuids, clients):
    """Start every instance through @clients connections, the list split
    round-robin among them; returns (total seconds, {uuid: (seconds, result)})."""
    out = {}
    conns = [d.connect() for _ in range(clients)]

    def client(part):
        conn, uuids_part = part
        for u in uuids_part:
            t0 = time.perf_counter()
            r = conn.call("instance.start", uuid=u)
            out[u] = (time.perf_counter() - t0, r, t0)

    try:
        total, t0 = run_parallel([(conns[i], uuids[i::clients]) for i in range(clients)], client)
    finally:
        for c in conns:
            c.close()
    return total, out, t0


def start_pipelined(d, uuids):
    """Start every instance over one connection, all requests sent at once
    (as an orchestrator does in a boot storm), answers matched by id."""
    out = {}
    with d.connect(timeout=600) as c:
        lines = b"".join(c.request_line("instance.start", {"uuid": u}, i) for i, u in enumerate(uuids))
        t0 = time.perf_counter()
        H.check(c.send_raw(lines), "the daemon closed the connection on the batch")
        for _ in uuids:
            line = c.read_line()
            t = time.perf_counter() - t0
            reply = json.loads(line)
            rid = reply.get("id")
            H.check(isinstance(rid, int) and 0 <= rid < len(uuids), f"reply with id {rid!r}")
            out[uuids[rid]] = (t, V.check_reply(b"instance.start", line, rid), t0)
        total = time.perf_counter() - t0
    return total, out, t0


def stop_all(d, uuids):
    t0 = time.perf_counter()
    with d.connect() as c:
        for u in uuids:
            c.call("instance.stop", uuid=u)
    return time.perf_counter() - t0


def cpu_ms(pid):
    """CPU time of every thread of @pid (ns-exact, /proc/PID/task/*/schedstat)."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e6


def storm_round(d, h, uuids, kinds, clients, forkd_pid):
    """One storm: every instance stopped, start all; returns the figures."""
    with d.connect() as c:
        wait_pool_full(c)       # no refill in the background while timed
        info0 = c.call("host.info")
    H.check(info0["running"] == 0, f"{info0['running']} instances still running")
    dmem0 = rollup(d.pid)
    cpu0 = (cpu_ms(d.pid), cpu_ms(forkd_pid) if forkd_pid else 0.0)
    if clients == "pipelined":
        total, out, t_begin = start_pipelined(d, uuids)
    else:
        total, out, t_begin = start_all(d, uuids, clients)
    with d.connect() as c:
        info1 = c.call("host.info")
    dmem1 = rollup(d.pid)
    cpu1 = (cpu_ms(d.pid), cpu_ms(forkd_pid) if forkd_pid else 0.0)
    # every control socket listens (checked after the clock stopped; the
    # daemon answers a start only once it does)
    ctrl_ok = sum(listening(out[u][1]["ctrl"]) for u in uuids)
    H.check(ctrl_ok == len(uuids), f"only {ctrl_ok} of {len(uuids)} control sockets listen")
    pids = [out[u][1]["pid"] for u in uuids]
    wm, wcpu = [], []
    for p in pids:
        try:
            wcpu.append(cpu_ms(p))
            wm.append(rollup(p))
        except OSError:
            pass
    H.check(len(wm) == len(uuids), f"only {len(wm)} of {len(uuids)} workers are alive")
    lat = {k: [out[u][0] for u, kk in zip(uuids, kinds) if kk == k] for k in sorted(set(kinds))}
    seq = [out[u][0] for u in uuids]
    q = max(1, len(uuids) // 10)
    res = {
        "clients": clients,
        "instances": len(uuids),
        "total_s": total,
        "starts_per_s": len(uuids) / total,
        "host_tpm_commands": info1["host_tpm_commands"] - info0["host_tpm_commands"],
        "running_after": info1["running"],
        "latency_all": stats_ms(seq),
        "latency_by_kind": {k: stats_ms(v) for k, v in lat.items()},
        # growth with the number already running: first vs last tenth, in
        # the order the starts were issued (sequential run only)
        "first_tenth_median_ms": statistics.median(seq[:q]) * 1000.0,
        "last_tenth_median_ms": statistics.median(seq[-q:]) * 1000.0,
        "daemon_before": mem_brief(dmem0),
        "daemon_after": mem_brief(dmem1),
        "workers_private_kib": {"mean": statistics.mean(r["Private"] for r in wm),
                                "median": statistics.median(r["Private"] for r in wm),
                                "max": max(r["Private"] for r in wm)},
        "workers_private_by_kind": {k: statistics.mean(r["Private"] for r, kk in zip(wm, kinds)
                                                       if kk == k) for k in sorted(set(kinds))},
        # CPU per start: where a storm's time goes (2 cores: the sum / 2 is
        # a floor for the total)
        "cpu_per_start_ms": {"vrotd": (cpu1[0] - cpu0[0]) / len(uuids),
                             "forkserver": (cpu1[1] - cpu0[1]) / len(uuids),
                             "worker": statistics.mean(wcpu)},
        "forkserver": mem_brief(rollup(forkd_pid)) if forkd_pid else None,
    }
    res["stop_all_s"] = stop_all(d, uuids)
    return res


def swtpm_template(h):
    """A swtpm state made by swtpm itself (INIT, TPM2_Startup, a clean
    stop): what each swtpm of the storm starts from."""
    srv = h.start_swtpm(name="swtpm-storm-template", server=True,
                        extra=["--flags", "not-need-init,startup-clear"])
    with H.connect(srv.data) as s:
        rc, _ = H.transact(s, H.get_random(8))
    H.check(rc == 0, f"the template swtpm failed GetRandom (0x{rc:x})")
    h.kill(srv.proc, signal.SIGTERM)
    H.check(os.listdir(srv.state_dir), "the template swtpm wrote no state")
    return srv.state_dir


def swtpm_storm_prepare(h, run, kinds, template):
    """One state directory per instance (a copy of @template, not timed)
    and the argv that starts its swtpm as libvirt does: `swtpm socket
    --daemon`, whose first process exits once the sockets listen; a
    service's TPM is started at once, as a vrot service's is."""
    swtpm = H.require("swtpm")
    argvs = []
    for i, kind in enumerate(kinds):
        state = h.path(f"swtpm-storm-{i}.state")
        if not os.path.isdir(state):
            shutil.copytree(template, state)
        r = os.path.join(run, f"swtpm-{i}")
        os.makedirs(r, exist_ok=True)
        argv = [swtpm, "socket", "--tpm2", "--daemon", "--tpmstate", f"dir={state},mode=0600",
                "--ctrl", f"type=unixio,path={r}/ctrl.sock,mode=0600",
                "--pid", f"file={r}/pid", "--log", f"file={r}/log,level=1"]
        if kind == "service":
            argv += ["--server", f"type=unixio,path={r}/data.sock,mode=0600",
                     "--flags", "not-need-init,startup-clear"]
        argvs.append((argv, r))
    return argvs


def swtpm_storm_round(argvs, clients):
    """Start every swtpm through @clients threads, each running its share
    one after the other; returns the seconds until all listen.  They are
    checked (ctrl, and data for services), stopped by PID and reaped."""
    def client(part):
        for argv, _ in part:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            if p.returncode != 0:
                raise H.Failure(f"swtpm failed ({p.returncode}): {p.stderr.decode()[-500:]}")

    error = None
    try:
        total, _ = run_parallel([argvs[i::clients] for i in range(clients)], client)
    except Exception as e:     # noqa: B902 - raised below, once what started is stopped
        error = e
    pids = []
    for argv, r in argvs:
        try:
            with open(os.path.join(r, "pid")) as f:
                pids.append(int(f.read().strip()))
        except (OSError, ValueError):
            pass
    try:
        if error:
            raise error
        H.check(len(pids) == len(argvs), f"only {len(pids)} of {len(argvs)} swtpm wrote a pid file")
        socks = [os.path.join(r, n) for argv, r in argvs
                 for n in (("ctrl.sock", "data.sock") if "--server" in argv else ("ctrl.sock",))]
        ok = sum(listening(p) for p in socks)
        H.check(ok == len(socks), f"only {ok} of {len(socks)} swtpm sockets listen")
    finally:
        for pid in pids:        # our children now: the Harness is a subreaper
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in pids:
            H.kill_pid(pid, signal.SIGTERM)     # waits until it is gone and reaped
    return total


def forkserver_pid(d):
    table = V.proc_table()
    for p in V.descendants(d.pid, table):
        if table[p][0] == d.pid and table[p][2] == "vrot-vtpm":
            return p
    return None


def bench_storm(args):
    n, kind = args.storm, args.storm_kind
    kinds = ([("vm", "service")[i % 2] for i in range(n)] if kind == "mixed" else [kind] * n)
    log(f"== storm: {n} instances ({kind}), created and stopped, then all started; "
        f"sequentially over one connection, with {args.storm_clients} concurrent clients, "
        f"and all requests at once on one connection")
    run = tmpfs_dir("vrot-bench-storm-run.")
    try:
        return storm_all(args, n, kind, kinds, run)
    finally:
        shutil.rmtree(run, ignore_errors=True)


def storm_all(args, n, kind, kinds, run):
    with V.Harness("vrot-bench-storm") as h:
        d = start_daemon(h, runtime_dir=run)
        t0 = time.perf_counter()
        uuids = []
        failures = []       # instance.create errors, retried (a daemon bug if any)
        with d.connect(timeout=600) as c:
            for i in range(n):
                for attempt in range(3):
                    try:
                        uuids.append(c.call("instance.create", kind=kinds[i],
                                            name=f"storm-{i}")["uuid"])
                        break
                    except V.RpcError as e:
                        failures.append(f"#{i} attempt {attempt + 1}: {e.code} {e.message}")
                        log(f"   instance.create #{i} failed, retrying: {e.code} {e.message}")
                        if attempt == 2:
                            raise
        t_create = time.perf_counter() - t0
        log(f"   created {n} in {t_create:.1f} s ({t_create / n * 1000:.0f} ms each, not timed "
            f"as a benchmark; {len(failures)} failed create(s) retried)")
        stop_all(d, uuids)                       # they are stopped after create: a no-op
        fpid = forkserver_pid(d)
        swtpm_argvs = swtpm_storm_prepare(h, run, kinds, swtpm_template(h))
        out = {"instances": n, "kind": kind, "create_all_s": t_create,
               "create_failures": failures, "rounds": {}, "swtpm": {}}
        for clients in (1, args.storm_clients, "pipelined"):
            r = storm_round(d, h, uuids, kinds, clients, fpid)
            out["rounds"][str(clients)] = r
            la = r["latency_all"]
            how = "1 connection, all requests at once" if clients == "pipelined" else f"{clients} client(s)"
            log(f"   {how}: all {n} listening after {r['total_s']:.2f} s "
                f"({r['starts_per_s']:.0f}/s); host-TPM commands {r['host_tpm_commands']}; "
                f"per start median {la['median_ms']:.1f} ms p90 {la['p90_ms']:.1f} ms "
                f"max {la['max_ms']:.1f} ms; "
                + ", ".join(f"{k} median {v['median_ms']:.1f} ms"
                            for k, v in r["latency_by_kind"].items()))
            cp = r["cpu_per_start_ms"]
            log(f"      CPU per start: vrotd {cp['vrotd']:.2f} ms, fork server "
                f"{cp['forkserver']:.2f} ms, worker {cp['worker']:.2f} ms (its own, fork to now)")
            log(f"      first tenth median {r['first_tenth_median_ms']:.1f} ms, last tenth "
                f"{r['last_tenth_median_ms']:.1f} ms; stop all took {r['stop_all_s']:.2f} s")
            b, a = r["daemon_before"], r["daemon_after"]
            log(f"      vrotd: Rss {b['Rss']} -> {a['Rss']} KiB, private {b['Private']} -> "
                f"{a['Private']} KiB (dirty {b['Private_Dirty']} -> {a['Private_Dirty']}); "
                f"workers private mean {r['workers_private_kib']['mean']:.0f} KiB ("
                + ", ".join(f"{k} {v:.0f}" for k, v in r["workers_private_by_kind"].items())
                + ")" + (f"; fork server private {r['forkserver']['Private']} KiB"
                         if r["forkserver"] else ""))
            if clients != "pipelined":
                # swtpm right after, in the same phase of the shared machine
                sw = swtpm_storm_round(swtpm_argvs, clients)
                out["swtpm"][str(clients)] = {"total_s": sw}
                log(f"   swtpm, {how}: all {n} listening after {sw:.2f} s ({n / sw:.0f}/s); "
                    f"vrot/swtpm {r['total_s'] / sw:.2f}")
        d.stop()
    return out


# -- 3. cold migration -------------------------------------------------------------

def tpm_counters(c):
    i = c.call("host.info")
    return i["host_tpm_commands"], i["host_tpm_usec"]


def bench_migrate(args):
    n = args.migrations
    log(f"== migrate: {n} cold migrations of one stopped service vTPM between two vrotd --dev "
        f"hosts on loopback, alternating direction, timed at the client")
    wall, share, cmds_src, cmds_dst, daemon_ms = [], [], [], [], []
    with V.Harness("vrot-bench-migrate") as h:
        a, b = V.two_hosts(h, log_level="info")
        hosts = {"a": (a, a.connect()), "b": (b, b.connect())}
        try:
            u = hosts["a"][1].call("instance.create", kind="service", name="bench")["uuid"]
            where = "a"
            for i in range(n + 2):              # two warm-up runs, not counted
                src, dst = where, "b" if where == "a" else "a"
                before = {k: tpm_counters(c) for k, (_, c) in hosts.items()}
                t0 = time.perf_counter()
                r = hosts[src][1].call("instance.migrate", uuid=u, to=V.address(hosts[dst][0]))
                dt = time.perf_counter() - t0
                H.check(r["decision"] == "commit" and r["peer_confirmed"], f"migration {i}: {r}")
                after = {k: tpm_counters(c) for k, (_, c) in hosts.items()}
                where = dst
                if i < 2:
                    continue
                wall.append(dt)
                daemon_ms.append(r["ms"])
                cmds_src.append(after[src][0] - before[src][0])
                cmds_dst.append(after[dst][0] - before[dst][0])
                usec = sum(after[k][1] - before[k][1] for k in hosts)
                share.append(usec / 1e6 / dt)
        finally:
            for _, c in hosts.values():
                c.close()
    w = stats_ms(wall)
    res = {"n": n, "wall": w, "daemon_ms_median": statistics.median(daemon_ms),
           "host_tpm_commands_source": statistics.median(cmds_src),
           "host_tpm_commands_destination": statistics.median(cmds_dst),
           "host_tpm_share_median": statistics.median(share),
           "host_tpm_share_all": share}
    log(f"   cold migration: median {w['median_ms']:6.1f} ms  p90 {w['p90_ms']:6.1f} ms  "
        f"(min {w['min_ms']:.1f}, max {w['max_ms']:.1f}); as the source's vrotd measured it: "
        f"median {res['daemon_ms_median']:.0f} ms")
    log(f"   host-TPM commands per migration: source {res['host_tpm_commands_source']:.0f}, "
        f"destination {res['host_tpm_commands_destination']:.0f}; share of the wall time in "
        f"host-TPM commands (both hosts): median {100 * res['host_tpm_share_median']:.0f} %")
    return res


# -- table rows for run.py -------------------------------------------------------

def table_rows(res):
    """(name, vrot, swtpm or None, target) rows: target a float is a maximum
    of vrot/swtpm; a tuple (limit, unit) is a maximum of the vrot figure."""
    rows = []
    if "create" in res:
        c = res["create"]
        for key, what in (("pool", "pool warm"), ("nopool", "no pool")):
            for q in ("median", "p90"):
                rows.append((f"create+endorse {what} N={c['n']} {q} [ms]", c[key][f"{q}_ms"],
                             c["swtpm_setup"][f"{q}_ms"], 1 / 3))
        for key, what in (("pool_ecc", "pool warm"), ("nopool_ecc", "no pool")):
            rows.append((f"ECC-only create, {what}, median [ms]", c[key]["median_ms"],
                         c["swtpm_setup"]["median_ms"], (5.0, "ms")))
    if "storm" in res:
        s = res["storm"]
        for clients, r in s["rounds"].items():
            how = {"1": "sequential", "pipelined": "pipelined"}.get(clients, f"{clients} clients")
            sw = s.get("swtpm", {}).get(clients)
            rows.append((f"storm {s['instances']} starts, {how} [s]", r["total_s"],
                         sw["total_s"] if sw else None, (2.0, "s")))
            rows.append((f"  storm host-TPM commands, {how}", r["host_tpm_commands"], None,
                         (0, "")))
        r1 = s["rounds"]["1"]
        rows.append(("  (info) storm per start median [ms]", r1["latency_all"]["median_ms"],
                     None, None))
        rows.append(("  (info) vrotd private before [KiB]", r1["daemon_before"]["Private"],
                     None, None))
        rows.append(("  (info) vrotd private after [KiB]", r1["daemon_after"]["Private"],
                     None, None))
        rows.append(("  (info) worker private mean [KiB]", r1["workers_private_kib"]["mean"],
                     None, None))
    if "migrate" in res:
        m = res["migrate"]
        for q in ("median", "p90"):
            rows.append((f"cold migration N={m['n']} {q} [ms]", m["wall"][f"{q}_ms"], None, None))
        rows.append(("  host-TPM share of it, median [%]", 100 * m["host_tpm_share_median"],
                     None, None))
        rows.append(("  host-TPM commands, source + destination",
                     m["host_tpm_commands_source"] + m["host_tpm_commands_destination"],
                     None, None))
    return rows


def add_args(p):
    p.add_argument("--creates", type=int, help="instance.create / swtpm_setup runs (20)")
    p.add_argument("--storm", type=int, help="instances in the boot storm (500)")
    p.add_argument("--storm-kind", choices=("mixed", "vm", "service"), default="mixed",
                   help="kind of the storm's instances; mixed alternates (%(default)s)")
    p.add_argument("--storm-clients", type=int, default=8,
                   help="concurrent clients of the second storm round (%(default)s)")
    p.add_argument("--migrations", type=int, help="cold migrations timed (20)")


def fill_defaults(a):
    for name, full, quick in (("creates", 20, 4), ("storm", 500, 40), ("migrations", 20, 4)):
        if getattr(a, name) is None:
            setattr(a, name, quick if a.quick else full)


def main():
    import argparse
    import json
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(TOP, "build"))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="create,storm,migrate")
    p.add_argument("--json", metavar="PATH")
    add_args(p)
    a = p.parse_args()
    fill_defaults(a)
    build = os.path.abspath(a.build)
    os.environ["VROT_VTPM"] = os.path.join(build, "vtpm", "vrot-vtpm")
    os.environ["VROT_VROTD"] = os.path.join(build, "daemon", "vrotd")
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(SystemExit(128 + s)))
    res = {}
    if "create" in a.only:
        res["create"] = bench_create(a)
    if "storm" in a.only:
        res["storm"] = bench_storm(a)
    if "migrate" in a.only:
        res["migrate"] = bench_migrate(a)
    for row in table_rows(res):
        log(f"{row[0]:42s} {row[1]:9.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except H.Failure as e:
        print(f"bench failed: {e}", file=sys.stderr)
        sys.exit(1)
