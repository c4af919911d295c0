#!/usr/bin/env python3
"""The fork server (`vrot-vtpm --fork-server`): workers it starts are the same
workers, report how they end, cost less private memory than exec'd ones, and
bad requests are refused without harming the server or its workers.
"""

import os
import signal
import struct
import time

import harness as H
from harness import check

UUID2 = "00000000-0000-4000-8000-0000000000f2"


def private_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))


def random8(srv):
    with H.connect(srv.data) as s:
        rc, resp = H.transact(s, H.get_random(8))
    check(rc == 0 and len(resp) == 20, f"GetRandom on {srv.data}: rc 0x{rc:x}")
    return resp[12:]


def test_spawned_workers_serve_and_report_exit():
    flags = ["--flags", "not-need-init,startup-clear"]
    with H.Harness("vrot-forkd") as h:
        fs = h.start_forkserver()
        a = fs.spawn("a", server=True, extra=flags)
        b = fs.spawn("b", server=True, uuid=UUID2, extra=flags)
        check(random8(a) != random8(b), "two workers gave the same random bytes")
        check(len({a.pid, b.pid, fs.srv.pid}) == 3, "workers must be processes of their own")
        os.kill(a.pid, signal.SIGTERM)
        check(a.status() == "exit 0", "SIGTERM must end a worker with exit 0")
        check(not os.path.exists(a.ctrl), "the worker left its control socket behind")
        os.kill(b.pid, signal.SIGKILL)
        check(b.status() == "signal 9", "a killed worker must be reported as such")


def test_refused_state_is_reported():
    flags = ["--flags", "not-need-init,startup-clear"]
    with H.Harness("vrot-forkd") as h:
        fs = h.start_forkserver()
        w = fs.spawn("w", server=True, extra=flags)
        os.kill(w.pid, signal.SIGTERM)
        check(w.status() == "exit 0", "first run did not end cleanly")
        bad = fs.spawn("w", server=True, key=b"\x99" * 32, extra=flags, wait=False)
        check(bad.status() == "exit 3", "a wrong key must be reported as refused state (exit 3)")
        check("refusing to start: state file" in open(bad.log).read(), "no refusal in the log")


def test_bad_requests_refused_server_survives():
    with H.Harness("vrot-forkd") as h:
        fs = h.start_forkserver()
        good = fs.spawn("good", server=True, extra=["--flags", "not-need-init,startup-clear"])
        cases = {
            "empty": struct.pack(">I", 0),
            "too long": struct.pack(">I", 1 << 20) + b"x",
            "short": b"\x00\x00",
            "not NUL-terminated": struct.pack(">I", 6) + b"--uuid",
            "key fd option": struct.pack(">I", 11) + b"--key-fd\x003\x00",
            "ready fd option": struct.pack(">I", 13) + b"--ready-fd\x004\x00",
            "watch not a worker": struct.pack(">I", 10) + b"--watch\x001\x00",
            "watch junk": struct.pack(">I", 12) + b"--watch\x00abc\x00",
            "fork server option": struct.pack(">I", 16) + b"--fork-server\x00x\x00",
        }
        for what, payload in cases.items():
            _, line = fs.request(None, payload=payload)
            check(line.startswith("error "), f"{what}: expected an error, got {line!r}")
        # A request the worker itself refuses: no key and no --insecure-plaintext.
        bad = fs.spawn("nokey", key=b"", wait=False)
        check(bad.status() in ("exit 1", "exit 2"), "a worker without its key must not run")
        check(fs.srv.proc.poll() is None, "the fork server died")
        check(len(random8(good)) == 8, "a running worker was disturbed")
        late = fs.spawn("late", server=True, uuid=UUID2, extra=["--flags", "not-need-init"])
        check(late.pid > 0, "the server no longer spawns")


def alive_pid(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_list_and_watch():
    """What a restarted vrotd uses to adopt workers: --list names every
    worker with its UUID, --watch moves a worker's exit report to a new
    connection (the old one hears nothing more)."""
    with H.Harness("vrot-forkd") as h:
        fs = h.start_forkserver()
        a = fs.spawn("a", server=True, extra=["--flags", "not-need-init,startup-clear"])
        b = fs.spawn("b", uuid=UUID2)
        reader, line = fs.request(["--list"])
        lines = [line]
        while lines[-1] != "end":
            lines.append(reader.readline().strip())
            check(lines[-1] != "", f"--list ended without 'end': {lines!r}")
        want = {f"worker {a.pid} 6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b", f"worker {b.pid} {UUID2}"}
        check(set(lines[:-1]) == want, f"--list answered {lines!r}, expected {sorted(want)}")
        watcher, line = fs.request(["--watch", str(a.pid)])
        check(line == f"ok {a.pid}", f"--watch answered {line!r}")
        os.kill(a.pid, signal.SIGTERM)
        check(watcher.readline().strip() == "exit 0", "the new watcher did not hear the exit")
        check(a.conn.readline() == "", "the old watcher still hears the worker")
        check(alive_pid(b.pid), "the other worker was disturbed")


def test_workers_outlive_the_server():
    with H.Harness("vrot-forkd") as h:
        fs = h.start_forkserver()
        w = fs.spawn("w", server=True, extra=["--flags", "not-need-init,startup-clear"])
        h.kill(fs.srv.proc, signal.SIGTERM)
        check(fs.srv.proc.returncode == 0, "the fork server must exit 0 on SIGTERM")
        check(not os.path.exists(fs.srv.ctrl), "the fork server left its socket behind")
        check(len(random8(w)) == 8, "the worker must keep serving without its server")


def reap_orphan(pid, timeout):
    """Exit status of a worker re-parented to us (the harness makes the test
    a subreaper) once it ends; None if it still runs after timeout s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    return None


def test_worker_ends_with_its_starter():
    """end-with-starter (vrotd's pool): the worker ends when the connection
    of its request is closed, even with its fork server gone, and writes
    none of its deferred state; a worker without the flag serves on."""
    with H.Harness("vrot-forkd") as h:
        fs = h.start_forkserver()
        w = fs.spawn("w", server=True,
                     extra=["--flags", "not-need-init,startup-clear,defer-writes,end-with-starter"])
        other = fs.spawn("other", server=True, uuid=UUID2, extra=["--flags", "not-need-init,startup-clear"])
        check(len(random8(w)) == 8, "the worker must serve while its starter is there")
        before = sorted(os.listdir(w.state_dir))
        # As when vrotd and its fork server are both killed: nothing is
        # left that knows the worker's PID, and the worker still ends.
        h.kill(fs.srv.proc, signal.SIGKILL)
        w.conn.close()
        status = reap_orphan(w.pid, 60)
        check(status == 1, f"the worker outlived its starter or did not end with exit 1: {status}")
        log = open(w.log).read()
        check("whoever started this worker is gone" in log, f"no log line about its end:\n{log}")
        check(sorted(os.listdir(w.state_dir)) == before,
              f"the worker wrote state after its starter was gone: {before} -> {os.listdir(w.state_dir)}")
        check(len(random8(other)) == 8, "a worker without the flag must serve on")


def test_forked_workers_share_library_memory():
    """Not a benchmark: the point of the fork server, as a property."""
    flags = ["--flags", "not-need-init,startup-clear"]
    with H.Harness("vrot-forkd") as h:
        fs = h.start_forkserver()
        forked = [fs.spawn(f"f{i}", server=True, extra=flags) for i in range(3)]
        execd = [h.start_vtpm(f"e{i}", server=True, extra=flags) for i in range(3)]
        time.sleep(0.2)
        f = max(private_kib(w.pid) for w in forked)
        e = min(private_kib(w.pid) for w in execd)
        print(f"     private memory: forked {f} KiB, exec'd {e} KiB")
        check(f < e, f"forked workers ({f} KiB) must hold less private memory than exec'd ({e} KiB)")


if __name__ == "__main__":
    H.main([test_spawned_workers_serve_and_report_exit, test_refused_state_is_reported,
            test_bad_requests_refused_server_survives, test_list_and_watch,
            test_workers_outlive_the_server, test_worker_ends_with_its_starter,
            test_forked_workers_share_library_memory])
