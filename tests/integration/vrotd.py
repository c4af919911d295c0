"""Start `vrotd --dev` (or, with dev=False, vrotd on a host TPM and an
operator configuration of the test's own) in a test's temporary directory
and talk to it.

    with Harness("vrotd-x") as h:
        d = Vrotd(h).start()
        info = d.call("host.info")
        try:
            d.call("instance.start", uuid="...")
        except RpcError as e:
            ...e.code, e.message...
        d.stop()                    # SIGTERM; exit status 0 expected
        d.check_nothing_left()

The daemon is the build's: $VROT_VROTD (meson sets it), else
build/daemon/vrotd; its workers are $VROT_VTPM (else build/vtpm/vrot-vtpm),
passed with --vtpm.

vrotd starts processes of its own (the simulated host TPM, the fork server,
one worker per running instance) which the plain harness does not know.
This module's Harness kills every daemon's whole process tree by PID at the
end: the descendants found in /proc/*/stat, and every process re-parented to
the test (the harness makes the test process a child subreaper, so nothing
vrotd started can escape to init).  Never by name.
"""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import harness
from harness import Failure, check, kill_pid, vtpm_binary

JSONRPC_MAX_LINE = 1 << 20

# Error codes of the socket API (vrot-api(7)).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
PERMISSION_DENIED = -32000
NOT_FOUND = -32001
CONFLICT = -32002
STATE_REFUSED = -32003
HOST_TPM_FAILURE = -32004
BUSY = -32005
TOO_LARGE = -32006
NOT_ENROLLED = -32007
EVIDENCE_REFUSED = -32008


def vrotctl_binary():
    path = os.environ.get("VROT_VROTCTL") or os.path.join(harness.TOP, "build", "cli", "vrotctl")
    if not os.access(path, os.X_OK):
        raise Failure(f"vrotctl not found at {path}: build first or set VROT_VROTCTL")
    return path


def vrotctl(sock, *args, timeout=120):
    """Run vrotctl; returns (exit status, stdout, stderr) as text."""
    r = subprocess.run([vrotctl_binary(), "--socket", sock, *args], capture_output=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def vrotd_binary():
    path = os.environ.get("VROT_VROTD") or os.path.join(harness.TOP, "build", "daemon", "vrotd")
    if not os.access(path, os.X_OK):
        raise Failure(f"vrotd not found at {path}: build first or set VROT_VROTD")
    return path


class RpcError(Exception):
    """A JSON-RPC error reply; .request and .reply are the raw lines."""

    def __init__(self, code, message, data=None, request=None, reply=None):
        super().__init__(f"JSON-RPC error {code}: {message}")
        self.code, self.message, self.data = code, message, data
        self.request, self.reply = request, reply


class ProtocolError(Failure):
    """The daemon's answer is not a valid JSON-RPC 2.0 response to our request."""


# -- process trees -------------------------------------------------------------

def proc_table():
    """{pid: (ppid, state, comm)} of every process, from /proc/*/stat."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm is in parentheses and may itself hold spaces and ')'.
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(name)] = (int(fields[1]), fields[0], comm)
    return table


def descendants(root, table=None):
    """PIDs of every descendant of root (not root itself)."""
    table = table if table is not None else proc_table()
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def alive(pid, table=None):
    """True if pid exists and is not a zombie."""
    table = table if table is not None else proc_table()
    return pid in table and table[pid][1] != "Z"


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:300]
    except OSError:
        return "?"


def describe(pids, table=None):
    table = table if table is not None else proc_table()
    return ", ".join(f"{p} ({table[p][2]}, state {table[p][1]}, parent {table[p][0]}: "
                     f"{cmdline(p)})" if p in table else str(p) for p in sorted(pids))


def reap_adopted(known=()):
    """Reap zombies re-parented to us (we are a subreaper), except known
    children that subprocess.Popen objects will reap themselves."""
    me = os.getpid()
    for pid, (ppid, state, _) in proc_table().items():
        if ppid == me and state == "Z" and pid not in known:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def adopted(known=()):
    """Live processes whose parent is the test process and which it did not
    start itself: orphans of the daemons, handed to us as subreaper."""
    me = os.getpid()
    return {pid for pid, (ppid, state, _) in proc_table().items()
            if ppid == me and state != "Z" and pid not in known}


def kill_tree(pids, known=(), timeout=15.0):
    """SIGKILL every PID in pids and, until none is left, every process that
    is re-parented to us meanwhile; wait until all are gone."""
    targets = set(pids)
    deadline = time.monotonic() + timeout
    while True:
        table = proc_table()
        for p in list(targets):
            targets |= descendants(p, table)
        targets |= adopted(known)
        live = {p for p in targets if alive(p, table)}
        if not live:
            break
        for p in live:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reap_adopted(known)
        if time.monotonic() > deadline:
            raise Failure(f"processes survive SIGKILL: {describe(live, table)}")
        time.sleep(0.02)
    reap_adopted(known)


# -- the client ------------------------------------------------------------------

class Client:
    """One connection to the API socket."""

    def __init__(self, path, timeout=120.0):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 1

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def send_raw(self, data):
        """Send bytes as they are; returns False if the daemon closed on us."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def read_line(self, timeout=None):
        """One reply line (bytes, without the newline), or None at EOF."""
        old = self.sock.gettimeout()
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            while b"\n" not in self.buf:
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    if self.buf:
                        raise ProtocolError(f"reply without a newline before EOF: {self.buf[:200]!r}")
                    return None
                self.buf += chunk
        finally:
            self.sock.settimeout(old)
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def read_reply(self, timeout=None):
        """The next reply parsed as JSON, or None at EOF."""
        line = self.read_line(timeout)
        if line is None:
            return None
        try:
            return json.loads(line)
        except ValueError:
            raise ProtocolError(f"reply is not JSON: {line[:300]!r}") from None

    def at_eof(self, timeout):
        """True if the daemon closes the connection within timeout seconds
        (any reply lines before the EOF are discarded)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                if self.read_line(timeout=left) is None:
                    return True
            except socket.timeout:
                return False

    def request_line(self, method, params, rid):
        req = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            req["params"] = params
        return json.dumps(req).encode() + b"\n"

    def call_params(self, method, params):
        """Call with params as given (a dict, or None to omit the member)."""
        rid = self.next_id
        self.next_id += 1
        line = self.request_line(method, params, rid)
        if not self.send_raw(line):
            raise ProtocolError(f"daemon closed the connection while we sent {line[:300]!r}")
        reply_line = self.read_line()
        if reply_line is None:
            raise ProtocolError(f"no reply (EOF) to {line[:300]!r}")
        return check_reply(line, reply_line, rid)

    def call(self, method, **params):
        return self.call_params(method, params)


def check_reply(request, reply_line, rid):
    """Validate one JSON-RPC 2.0 response; the result, or raise RpcError."""
    try:
        reply = json.loads(reply_line)
    except ValueError:
        raise ProtocolError(f"reply to {request[:300]!r} is not JSON: {reply_line[:300]!r}") from None
    where = f"request {request[:300]!r}, reply {reply_line[:600]!r}"
    if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0":
        raise ProtocolError(f"not a JSON-RPC 2.0 response: {where}")
    if reply.get("id") != rid:
        raise ProtocolError(f"reply id {reply.get('id')!r}, expected {rid!r}: {where}")
    if ("result" in reply) == ("error" in reply):
        raise ProtocolError(f"reply must have exactly one of result and error: {where}")
    if "error" in reply:
        err = reply["error"]
        if not isinstance(err, dict) or not isinstance(err.get("code"), int) \
                or not isinstance(err.get("message"), str):
            raise ProtocolError(f"malformed error object: {where}")
        raise RpcError(err["code"], err["message"], err.get("data"), request, reply_line)
    return reply["result"]


def expect_error(code, fn, *args, **kw):
    """Run fn, which must fail with JSON-RPC error code; return the RpcError."""
    try:
        result = fn(*args, **kw)
    except RpcError as e:
        check(e.code == code, f"expected error {code}, got {e.code} ({e.message}):\n"
              f"  request: {e.request!r}\n  reply:   {e.reply!r}")
        return e
    raise Failure(f"expected error {code}, got the result {json.dumps(result)[:500]}")


# -- the daemon ----------------------------------------------------------------

class Vrotd:
    """One `vrotd --dev` with its own state and runtime directories (dev=False:
    without --dev; the configuration must then name the host TPM and the
    operator's keys)."""

    def __init__(self, h, name="vrotd", state_dir=None, runtime_dir=None, config=None,
                 extra=(), log_level="debug", dev=True):
        self.h, self.name, self.dev = h, name, dev
        self.state_dir = state_dir or h.path(name + ".state")
        self.runtime_dir = runtime_dir or h.path(name + ".run")
        self.config, self.extra, self.log_level = config, list(extra), log_level
        self.proc = None
        self.starts = 0
        self.seen = set()           # every PID ever seen below the daemon
        self.client = None
        h.daemons.append(self)

    @property
    def socket(self):
        return os.path.join(self.runtime_dir, "vrotd.sock")

    @property
    def pid(self):
        return self.proc.pid

    def log_path(self, n=None):
        return self.h.path(f"{self.name}.{self.starts if n is None else n}.log")

    def log_text(self, n=None):
        try:
            with open(self.log_path(n), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def argv(self):
        argv = [vrotd_binary()] + (["--dev"] if self.dev else [])
        argv += ["--state-dir", self.state_dir, "--runtime-dir", self.runtime_dir,
                 "--vtpm", vtpm_binary()]
        if self.config:
            argv += ["--config", self.config]
        if self.log_level:
            argv += ["--log-level", self.log_level]
        return argv + self.extra

    def start(self, timeout=120.0):
        """Start the daemon and wait until its API socket accepts."""
        check(self.proc is None or self.proc.poll() is not None, f"{self.name} is already running")
        # Non-root test callers must reach the 0666 socket: the temporary
        # directory is 0700 from mkdtemp.
        os.chmod(self.h.dir, 0o711)
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        os.makedirs(self.runtime_dir, mode=0o755, exist_ok=True)
        self.starts += 1
        self.client = None
        self.proc = self.h.spawn(self.argv(), log=self.log_path())
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise Failure(f"{self.name} exited with {self.proc.returncode} before listening "
                              f"on {self.socket}:\n{self.log_text()[-4000:]}")
            if harness.accepts(self.socket):
                break
            if time.monotonic() > deadline:
                raise Failure(f"{self.name} did not listen on {self.socket} within {timeout}s:\n"
                              f"{self.log_text()[-4000:]}")
            time.sleep(0.02)
        self.note_tree()
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def note_tree(self):
        """Remember the daemon's current descendants (for the end-of-test check)."""
        if self.running():
            self.seen |= descendants(self.proc.pid)
        return self.seen

    def connect(self, timeout=120.0):
        return Client(self.socket, timeout)

    def call(self, method, **params):
        """Call on a persistent connection; result, or raise RpcError."""
        check(self.running(), f"{self.name} is not running (exit {self.proc.returncode}):\n"
              f"{self.log_text()[-4000:]}")
        if self.client is None:
            self.client = self.connect()
        try:
            return self.client.call(method, **params)
        except RpcError:
            raise
        except Exception:
            self.client.close()         # do not reuse a connection in an unknown state
            self.client = None
            raise
        finally:
            self.note_tree()

    def stop(self, sig=signal.SIGTERM, timeout=60.0):
        """Signal the daemon and wait for its exit; returns the exit status."""
        self.note_tree()
        if self.client:
            self.client.close()
            self.client = None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"{self.name} did not exit within {timeout}s of signal {sig}:\n"
                          f"{self.log_text()[-4000:]}") from None
        return rc

    def stop_clean(self):
        """SIGTERM must end the daemon with status 0 and leave no process."""
        rc = self.stop(signal.SIGTERM)
        check(rc == 0, f"{self.name}: SIGTERM gave exit status {rc}, expected 0:\n"
              f"{self.log_text()[-4000:]}")
        self.check_nothing_left()

    def others(self):
        """Processes of the harness's other running daemons: after a kill -9
        one's fork server lives on, re-parented to the test, and its next
        start adopts it (vrotd(8) SIGNALS)."""
        pids = set()
        for d in self.h.daemons:
            if d is not self and d.running():
                pids |= d.note_tree()
        return pids

    def leftovers(self, grace=10.0):
        """Processes the daemon started that are still alive after grace s."""
        deadline = time.monotonic() + grace
        while True:
            reap_adopted(self.h.known_pids())
            table = proc_table()
            live = {p for p in self.seen if alive(p, table)}
            live |= adopted(self.h.known_pids()) - self.others()
            if self.running():
                live |= descendants(self.proc.pid, table)
            if not live or time.monotonic() > deadline:
                return live
            time.sleep(0.05)

    def check_nothing_left(self):
        live = self.leftovers()
        if live:
            desc = describe(live)
            kill_tree(live, self.h.known_pids())
            raise Failure(f"{self.name} (pid {self.proc.pid}, exit {self.proc.returncode}) left "
                          f"processes running: {desc}")

    def backup_state(self, path):
        """A copy of the state directory, but the simulated host TPM: it
        stays at its newest state, as a real TPM would."""
        shutil.copytree(self.state_dir, path, symlinks=True,
                        ignore=shutil.ignore_patterns("dev-host-tpm"))

    def restore_state(self, path):
        """Puts a backup_state() copy back over the state directory (the
        daemon stopped): the rollback the registry's checkpoint refuses."""
        for name in os.listdir(path):
            dst = os.path.join(self.state_dir, name)
            shutil.rmtree(dst) if os.path.isdir(dst) else os.remove(dst)
            src = os.path.join(path, name)
            (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, dst)

    def kill_all(self):
        """SIGKILL the daemon and everything below it; wait until all are gone."""
        self.note_tree()
        pids = set(self.seen)
        if self.proc is not None:
            pids.add(self.proc.pid)
        if self.client:
            self.client.close()
            self.client = None
        kill_tree(pids, self.h.known_pids() - {self.proc.pid} if self.proc else ())
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.seen = set()


class Harness(harness.Harness):
    """harness.Harness that also kills every daemon's whole process tree."""

    def __init__(self, name="vrotd-test", keep=False):
        super().__init__(name, keep)
        self.daemons = []

    def known_pids(self):
        """Children the test itself started (Popen objects reap them)."""
        return {p.pid for p in self.procs if p.returncode is None}

    def __exit__(self, exc_type, *exc):
        errors = self.cleanup()
        if errors and exc_type is None:
            raise Failure("cleanup: " + "; ".join(errors))
        return False

    def cleanup(self):
        """Kill everything; returns what could not be killed (also printed)."""
        errors = []
        for d in self.daemons:
            try:
                d.kill_all()
            except Failure as e:
                errors.append(str(e))
        super().cleanup()
        try:
            kill_tree(adopted(), ())
        except Failure as e:
            errors.append(str(e))
        for e in errors:
            print(f"     cleanup: {e}", flush=True)
        return errors


# -- calls as another user -------------------------------------------------------

def as_user(uid, gid, fn):
    """Run fn() in a forked child with the given uid/gid (no supplementary
    groups) and return what it returned (JSON-serialisable), or raise the
    RpcError it raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                            # child
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            try:
                out = {"result": fn()}
            except RpcError as e:
                out = {"error": [e.code, e.message, e.request.decode(errors="replace")
                                 if isinstance(e.request, bytes) else e.request,
                                 e.reply.decode(errors="replace")
                                 if isinstance(e.reply, bytes) else e.reply]}
            except BaseException as e:       # noqa: B902 - report everything to the parent
                out = {"exception": f"{type(e).__name__}: {e}"}
            os.write(w, json.dumps(out).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    if not data:
        raise Failure(f"child running as uid {uid} reported nothing")
    out = json.loads(data)
    if "exception" in out:
        raise Failure(f"as uid {uid}: {out['exception']}")
    if "error" in out:
        code, msg, req, rep = out["error"]
        raise RpcError(code, msg, None, req, rep)
    return out["result"]


def proc_state(pid):
    """The state letter of process @pid (R, S, T, Z ...), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def wait_fault_stop(d, point, timeout):
    """Until daemon @d, started with `--fault-stop POINT` (a test build's,
    daemon/fault.h), stopped itself there; a hang guard of @timeout s."""
    deadline = time.monotonic() + timeout
    while proc_state(d.pid) != "T":
        if not d.running():
            raise Failure(f"{d.name} exited before fault point {point}:\n{d.log_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise Failure(f"{d.name} never reached fault point {point} (a build without "
                          f"-Dfault_injection?):\n{d.log_text()[-3000:]}")
        time.sleep(0.02)
    check(f"fault point {point}: stopping" in d.log_text(), f"{d.name} stopped elsewhere")


def errno_name(e):
    return errno.errorcode.get(e, str(e))


# -- two hosts of one fleet, for the migration tests and benchmarks ----------

def config(h, name, policy=None, listen=None):
    path = h.path(f"vrotd-{name}.conf")
    with open(path, "w") as f:
        f.write(f"[migration]\nname = {name}\n")
        if policy:
            f.write(f"policy = {policy}\n")
        if listen:
            f.write(f"listen = {listen}\n")
    return path


ZERO = "00" * 32


def policy(h, name, peers, pcr0=ZERO):
    path = h.path(f"policy-{name}.json")
    with open(path, "w") as f:
        json.dump({"peers": peers, "pcrs": {"sha256": {"0": [pcr0]}}}, f)
    return path


def transport(d):
    m = d.call("host.info")["migration"]
    check(m is not None and m["transport_cert_pem"], f"host.info migration: {m}")
    return m


def share_fleet_root(h, source, target):
    """A --dev daemon's local fleet root, given to another before its first
    start: both hosts then belong to one fleet."""
    os.makedirs(os.path.join(target.state_dir, "host"), mode=0o700, exist_ok=True)
    for name in ("fleet-root.key", "fleet-root.pem"):
        shutil.copy2(os.path.join(source.state_dir, "host", name),
                     os.path.join(target.state_dir, "host", name))


def free_port():
    """A loopback port free now: a host keeps its address across restarts,
    as the source's journal expects of a destination."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_hosts(h, log_level="debug"):
    """Hosts A and B of one fleet, each listening on loopback, each
    accepting the other."""
    a = Vrotd(h, name="a", log_level=log_level)
    a.config = config(h, "host-a.example", policy(h, "a", ["host-b.example"]),
                      f"127.0.0.1:{free_port()}")
    a.start()
    b = Vrotd(h, name="b", log_level=log_level)
    share_fleet_root(h, a, b)
    b.config = config(h, "host-b.example", policy(h, "b", ["host-a.example"]),
                      f"127.0.0.1:{free_port()}")
    b.start()
    return a, b


def address(d):
    return f"127.0.0.1:{transport(d)['port']}"
