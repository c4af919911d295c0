#!/usr/bin/env python3
"""The worker's least privilege after start-up (R-VTPM-4, R-VTPM-6): --runas
drops to an unprivileged user, no_new_privs and a seccomp filter are in force,
core dumps are off, and the sockets and state files carry the narrowest modes.
"""

import os
import pwd
import stat
import time

import harness as H
import vrotd as V
from harness import check


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def proc_limits_core(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max core file size"):
                return line.split()[4:6]
    return None


def test_runas_nobody_and_sandbox():
    if os.geteuid() != 0:
        raise H.Failure("this test needs root (it drops to 'nobody')")
    nobody = pwd.getpwnam("nobody")
    with H.Harness("vrot-priv") as h:
        state = h.path("state")
        os.makedirs(state)
        os.chown(state, nobody.pw_uid, nobody.pw_gid)
        os.chmod(h.dir, 0o755)
        srv = h.start_vtpm(server=True, state_dir=state,
                           extra=["--runas", "nobody", "--flags", "not-need-init,startup-clear"])
        st = proc_status(srv.pid)
        uids = st["Uid"].split()
        check(all(int(u) == nobody.pw_uid for u in uids), f"uids {uids}, want all {nobody.pw_uid}")
        check(all(int(g) == nobody.pw_gid for g in st["Gid"].split()), f"gids {st['Gid']}")
        check(st["Groups"].strip() == "", f"supplementary groups kept: {st['Groups']!r}")
        check(st["NoNewPrivs"].strip() == "1", "no_new_privs is not set")
        check(st["Seccomp"].strip() == "2", "no seccomp filter in force")
        check(st["CapEff"].strip() == "0000000000000000", f"capabilities kept: {st['CapEff']}")
        check(st["CapPrm"].strip() == "0000000000000000", f"permitted capabilities: {st['CapPrm']}")
        check(st["CapBnd"].strip() == "0000000000000000", f"bounding set kept: {st['CapBnd']}")
        check(proc_limits_core(srv.pid) == ["0", "0"], "core dumps are not disabled")
        # It still works as nobody, and what it writes is nobody's and private.
        with H.connect(srv.data) as s:
            rc, _ = H.transact(s, H.get_random(8))
        check(rc == 0, f"GetRandom as nobody: 0x{rc:x}")
        for name in os.listdir(state):
            m = os.stat(os.path.join(state, name))
            check(stat.S_IMODE(m.st_mode) == 0o600, f"{name} has mode {oct(m.st_mode)}")
            check(m.st_uid == nobody.pw_uid, f"{name} is owned by uid {m.st_uid}")
        for path in (srv.ctrl, srv.data):
            check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, f"{path} is not 0600")


def test_root_worker_has_no_capabilities():
    """Without --runas the worker stays uid 0 but holds no capability: it
    owns its files and nothing more."""
    if os.geteuid() != 0:
        raise H.Failure("this test needs root")
    with H.Harness("vrot-priv") as h:
        srv = h.start_vtpm(server=True, extra=["--flags", "not-need-init,startup-clear"])
        st = proc_status(srv.pid)
        for k in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
            check(st[k].strip() == "0000000000000000", f"{k} {st[k]}")
        with H.connect(srv.data) as s:
            rc, _ = H.transact(s, H.get_random(8))
        check(rc == 0, f"GetRandom without capabilities: 0x{rc:x}")


def test_runas_needs_a_writable_state_dir():
    if os.geteuid() != 0:
        raise H.Failure("this test needs root (it drops to 'nobody')")
    with H.Harness("vrot-priv") as h:
        state = h.path("rootonly")
        os.makedirs(state, mode=0o700)
        srv = h.start_vtpm(state_dir=state, extra=["--runas", "nobody"], wait=False)
        check(srv.proc.wait(timeout=20) == 1, "a state dir nobody cannot write must stop the start")
        check("not writable" in srv.log_text(), f"no clear message: {srv.log_text()!r}")


def test_socket_modes_as_given():
    with H.Harness("vrot-priv") as h:
        srv = h.start_vtpm(server=True, extra=["--ctrl-mode", "0660", "--server-mode", "0640"])
        check(stat.S_IMODE(os.stat(srv.ctrl).st_mode) == 0o660, "ctrl socket mode not 0660")
        check(stat.S_IMODE(os.stat(srv.data).st_mode) == 0o640, "data socket mode not 0640")


def owned_private(path, uid, mode):
    m = os.stat(path)
    check(m.st_uid == uid, f"{path} is owned by uid {m.st_uid}, want {uid}")
    check(stat.S_IMODE(m.st_mode) == mode, f"{path} has mode {oct(stat.S_IMODE(m.st_mode))}, "
                                           f"want {oct(mode)}")


def test_vrotd_worker_user():
    """[daemon] worker-user: vrotd's workers run as that user, and it owns
    (alone) each instance's state, from a fresh create, from a pool entry,
    and after restarts."""
    if os.geteuid() != 0:
        raise H.Failure("this test needs root (vrotd drops its workers to 'nobody')")
    nobody = pwd.getpwnam("nobody")
    with V.Harness("vrot-priv-vrotd") as h:
        conf = h.path("vrotd.conf")
        with open(conf, "w") as f:
            f.write("[daemon]\nworker-user=nobody\npool-size=1\n")
        d = V.Vrotd(h, config=conf).start()
        deadline = time.monotonic() + 120
        while d.call("host.info")["pool"]["ready"] < 1:
            check(time.monotonic() < deadline, "the pool did not fill")
            time.sleep(0.1)
        r = d.call("instance.create", kind="service", name="pooled")
        check(r["from_pool"], "the first create did not take the pool entry")
        for kind in ("vm", "service"):      # made whole, not from the pool
            d.call("instance.create", kind=kind, name=f"{kind}-ecc", ek="ecc")
        for uuid in [u["uuid"] for u in d.call("instance.list")["instances"]]:
            for round_ in range(2):     # a restart writes the state again
                r = d.call("instance.start", uuid=uuid)
                st = proc_status(r["pid"])
                check(all(int(u) == nobody.pw_uid for u in st["Uid"].split()),
                      f"{uuid}: worker uids {st['Uid']}")
                check(st["CapEff"].strip() == "0000000000000000", f"capabilities kept: {st['CapEff']}")
                if r.get("data"):
                    with H.connect(r["data"]) as s:
                        rc, _ = H.transact(s, H.get_random(8))
                    check(rc == 0, f"{uuid}: GetRandom as nobody: 0x{rc:x}")
                d.call("instance.stop", uuid=uuid)
            sdir = os.path.join(d.state_dir, "instances", uuid)
            owned_private(sdir, nobody.pw_uid, 0o700)
            names = os.listdir(sdir)
            check(names, f"{uuid}: no state files")
            for name in names:
                owned_private(os.path.join(sdir, name), nobody.pw_uid, 0o600)
            log = d.log_text()
            check("Permission denied" not in log, f"permission errors in vrotd's log:\n{log[-3000:]}")
        d.stop()
        d.check_nothing_left()


if __name__ == "__main__":
    H.main([test_runas_nobody_and_sandbox, test_root_worker_has_no_capabilities,
            test_runas_needs_a_writable_state_dir,
            test_socket_modes_as_given, test_vrotd_worker_user])
