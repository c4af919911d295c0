"""Shared harness for vrot's integration tests and benchmarks.

Every test that starts a process does it through a Harness, which owns a
private temporary directory and kills every process it started, by PID, when
the test ends (also on failure).  Nothing here mocks a component: the TPM
servers are the real vrot-vtpm and the real Debian swtpm.

The vrot-vtpm binary is taken from $VROT_VTPM (set by meson) or from the
default build directory.
"""

import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))


class Failure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def vtpm_binary():
    path = os.environ.get("VROT_VTPM") or os.path.join(TOP, "build", "vtpm", "vrot-vtpm")
    if not os.access(path, os.X_OK):
        raise Failure(f"vrot-vtpm not found at {path}: build first or set VROT_VTPM")
    return path


def require(prog):
    """Return the path of a program the test needs, or fail loudly."""
    path = shutil.which(prog)
    if not path:
        raise Failure(f"missing program {prog!r}: run scripts/install-deps.sh")
    return path


class Server:
    """A TPM server process (vrot-vtpm or swtpm) with its socket paths."""

    def __init__(self, kind, proc, ctrl, data, state_dir, log):
        self.kind, self.proc, self.ctrl, self.data = kind, proc, ctrl, data
        self.state_dir, self.log = state_dir, log

    @property
    def pid(self):
        return self.proc.pid

    def wait_exit(self, timeout=30):
        """For a start expected to fail: (exit status, log); fail if it runs on."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"{self.kind} is still running, expected it to exit:\n"
                          f"{self.log_text()}") from None
        return rc, self.log_text()

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def become_subreaper():
    """Adopt orphans (workers whose fork server is gone) so we can reap them."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)          # PR_SET_CHILD_SUBREAPER


class Harness:
    """Context manager: temp dir + processes killed by PID on exit."""

    def __init__(self, name="vrot-test", keep=False):
        become_subreaper()
        self.dir = tempfile.mkdtemp(prefix=name + ".")
        self.procs = []
        self.pids = []
        self.keep = keep or bool(os.environ.get("VROT_KEEP_TMP"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def spawn(self, argv, log=None, pass_fds=(), stdin=subprocess.DEVNULL, **kw):
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=subprocess.STDOUT,
                                    pass_fds=pass_fds, **kw)
        finally:
            if log:
                out.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc, sig=signal.SIGKILL):
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def cleanup(self):
        for proc in self.procs:
            self.kill(proc)
        self.procs = []
        for pid in self.pids:           # started by a fork server, not by us
            kill_pid(pid)
        self.pids = []
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- TPM servers -----------------------------------------------------

    def start_vtpm(self, name="vtpm", uuid="6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b",
                   key=b"\x11" * 32, server=False, state_dir=None, extra=(),
                   wait=True):
        """Start vrot-vtpm; key=None means --insecure-plaintext.

        The key goes through a pipe whose read end the worker inherits as
        --key-fd, as the daemon does: never argv, never the environment.
        """
        state_dir = state_dir or self.path(name + ".state")
        os.makedirs(state_dir, exist_ok=True)
        data, ctrl = socket_paths(self, name, server)
        log = self.path(name + ".log")
        argv = [vtpm_binary(), "--uuid", uuid, "--state-dir", state_dir, "--ctrl", ctrl]
        if data:
            argv += ["--server", data]
        fds = ()
        rfd = None
        if key is None:
            argv.append("--insecure-plaintext")
        else:
            rfd, wfd = os.pipe()
            os.write(wfd, key)
            os.close(wfd)
            argv += ["--key-fd", str(rfd)]
            fds = (rfd,)
        argv += list(extra)
        ready_r = ready_w = None
        if wait:
            # --ready-fd: no polling; the sockets must accept once it says so.
            ready_r, ready_w = os.pipe()
            argv += ["--ready-fd", str(ready_w)]
            fds += (ready_w,)
        try:
            proc = self.spawn(argv, log=log, pass_fds=fds)
        finally:
            if rfd is not None:
                os.close(rfd)
            if ready_w is not None:
                os.close(ready_w)
        srv = Server("vrot", proc, ctrl, data, state_dir, log)
        if wait:
            with os.fdopen(ready_r, "rb") as f:
                ready, _, _ = select.select([f], [], [], 20.0)
                line = f.readline() if ready else b"(nothing within 20 s)"
            if line != b"ready\n":
                raise Failure(f"vrot-vtpm did not say ready: {line!r}\n{srv.log_text()}")
            for path in (ctrl, data):
                if path:
                    connect_now(path)
        return srv

    def start_forkserver(self, name="forkd"):
        """Start `vrot-vtpm --fork-server`; returns a ForkServer."""
        path = self.path(name + ".sock")
        proc = self.spawn([vtpm_binary(), "--fork-server", path], log=self.path(name + ".log"))
        srv = Server("forkd", proc, path, None, None, self.path(name + ".log"))
        wait_listening(srv, path)
        return ForkServer(self, srv)

    def start_swtpm(self, name="swtpm", server=False, state_dir=None, extra=(), wait=True):
        state_dir = state_dir or self.path(name + ".state")
        os.makedirs(state_dir, exist_ok=True)
        data, ctrl = socket_paths(self, name, server)
        log = self.path(name + ".log")
        argv = [require("swtpm"), "socket", "--tpm2", "--tpmstate", "dir=" + state_dir,
                "--ctrl", "type=unixio,path=" + ctrl, "--log", "file=" + log + ",level=1"]
        if data:
            argv += ["--server", "type=unixio,path=" + data]
        argv += list(extra)
        proc = self.spawn(argv, log=self.path(name + ".out"))
        srv = Server("swtpm", proc, ctrl, data, state_dir, log)
        if wait:
            wait_listening(srv, ctrl)
            if data:
                wait_listening(srv, data)
        return srv


def kill_pid(pid, sig=signal.SIGKILL, timeout=10.0):
    """Kill a process we did not fork and wait until it is gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:    # reaped by us if we are its subreaper, else by its parent
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.01)


class ForkServer:
    """Client of `vrot-vtpm --fork-server` (protocol in vtpm/forkserver.c)."""

    def __init__(self, h, srv):
        self.h, self.srv = h, srv

    def request(self, options, fds=(), payload=None):
        """Send one raw request; return (answer reader, first answer line)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.srv.ctrl)
        if payload is None:
            payload = b"".join(o.encode() + b"\0" for o in options)
            payload = struct.pack(">I", len(payload)) + payload
        socket.send_fds(s, [payload], list(fds))
        reader = s.makefile("r")
        s.close()       # the reader keeps the connection open
        return reader, reader.readline().strip()

    def spawn(self, name="vtpm", uuid="6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b",
              key=b"\x11" * 32, server=False, state_dir=None, extra=(), wait=True):
        """Start a worker through the server, as start_vtpm does by exec."""
        state_dir = state_dir or self.h.path(name + ".state")
        os.makedirs(state_dir, exist_ok=True)
        data, ctrl = socket_paths(self.h, name, server)
        log = self.h.path(name + ".log")
        opts = ["--uuid", uuid, "--state-dir", state_dir, "--ctrl", ctrl]
        opts += ["--server", data] if data else []
        opts += ["--insecure-plaintext"] if key is None else []
        opts += list(extra)
        fds = []
        if key is not None:
            rfd, wfd = os.pipe()
            os.write(wfd, key)
            os.close(wfd)
            fds.append(rfd)
        logfd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fds.append(logfd)
        try:
            conn, line = self.request(opts, fds)
        finally:
            for fd in fds:
                os.close(fd)
        ready = line == "ready"         # the worker may say it before the server's "ok"
        if ready:
            line = conn.readline().strip()
        check(line.startswith("ok "), f"fork server refused the spawn: {line!r}")
        pid = int(line.split()[1])
        self.h.pids.append(pid)
        w = ForkedWorker(pid, conn, ctrl, data, state_dir, log, ready)
        if wait:
            w.wait_ready()
        return w


class ForkedWorker(Server):
    """A worker started by the fork server: no Popen, a PID and a status line."""

    def __init__(self, pid, conn, ctrl, data, state_dir, log, ready=False):
        super().__init__("vrot(forked)", None, ctrl, data, state_dir, log)
        self._pid, self.conn, self.ready = pid, conn, ready
        self.proc = self

    def wait_ready(self):
        """Read the worker's "ready"; its sockets must accept at once then."""
        if not self.ready:
            line = self.conn.readline().strip()
            check(line == "ready", f"worker {self._pid}: expected \"ready\", got {line!r}")
            self.ready = True
        for path in (self.ctrl, self.data):
            if path:
                connect_now(path)

    @property
    def pid(self):
        return self._pid

    def poll(self):     # enough of Popen for wait_listening
        try:
            os.kill(self._pid, 0)
            return None
        except ProcessLookupError:
            return -1

    returncode = None

    def status(self):
        """The server's final line for this worker: "exit N" or "signal N"."""
        line = self.conn.readline().strip()
        while line == "ready":
            line = self.conn.readline().strip()
        return line


def socket_paths(h, name, server):
    """Data and control socket paths.

    With a data socket the control socket sits at DATA.ctrl, the layout
    tpm2-tss's swtpm TCTI expects (swtpm:path=DATA).
    """
    if not server:
        return None, h.path(name + ".ctrl")
    data = h.path(name + ".sock")
    return data, data + ".ctrl"


def accepts(path):
    """Whether a UNIX stream socket at path accepts a connection now."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def connect_now(path):
    """The UNIX socket at path must accept right now."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        raise Failure(f"{path} refuses a connection although the worker said ready: {e}") from None
    finally:
        s.close()


def wait_listening(srv, path, timeout=20.0):
    """Wait until a UNIX socket at path accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.proc.poll() is not None:
            raise Failure(f"{srv.kind} exited with {srv.proc.returncode} before listening "
                          f"on {path}:\n{srv.log_text()}")
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.005)
    raise Failure(f"{srv.kind} did not listen on {path} within {timeout}s")


# -- tpm2-tools ------------------------------------------------------------

def tpm2(srv, *args, timeout=60):
    """Run one tpm2-tools command (`tpm2(srv, "pcrread", ...)`) against srv's
    data socket through tpm2-tss's swtpm TCTI; fail with its output on error."""
    prog = require("tpm2_" + args[0])
    env = dict(os.environ, TPM2TOOLS_TCTI=f"swtpm:path={srv.data}")
    r = subprocess.run([prog, *args[1:]], env=env, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise Failure(f"tpm2_{' '.join(args)} exited {r.returncode}:\n"
                      f"{r.stderr.decode(errors='replace')}{r.stdout.decode(errors='replace')}\n"
                      f"worker log:\n{srv.log_text()[-2000:]}")
    return r.stdout


# -- raw TPM 2.0 commands ------------------------------------------------

TPM2_ST_NO_SESSIONS = 0x8001


def tpm_cmd(cc, body=b"", tag=TPM2_ST_NO_SESSIONS):
    return struct.pack(">HII", tag, 10 + len(body), cc) + body


def startup_clear():
    return tpm_cmd(0x144, struct.pack(">H", 0))


def get_random(n):
    return tpm_cmd(0x17B, struct.pack(">H", n))


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise Failure(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def transact(sock, cmd):
    """Send one TPM command on a data channel, return (rc, whole response)."""
    sock.sendall(cmd)
    hdr = recv_exact(sock, 10)
    _, size, rc = struct.unpack(">HII", hdr)
    return rc, hdr + recv_exact(sock, size - 10)


def connect(path, timeout=10.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def main(tests):
    """Run test functions, print a summary line, exit non-zero on failure."""
    only = sys.argv[1:]
    passed = failed = 0
    for fn in tests:
        if only and fn.__name__ not in only:
            continue
        t0 = time.monotonic()
        try:
            fn()
        except Exception as e:  # report every kind of failure, keep going
            failed += 1
            print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}", flush=True)
        else:
            passed += 1
            print(f"ok   {fn.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or not passed else 0)
