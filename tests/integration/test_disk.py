#!/usr/bin/env python3
"""A full and a read-only state directory (issue 7, R-SEAL-4, R-MGT-3):
clear errors, no corrupt or half-made state, and everything works again
once space (or write access) returns.  The state directory is a small
tmpfs the test mounts (root only) and unmounts."""

import os
import subprocess

import harness as H
import tpmcmd as T
import vrotd as V
from harness import Failure, check

NV_BASE = 0x01500100
ENOSPC_TEXT = "No space left on device"
EROFS_TEXT = "Read-only file system"


def mount_tmpfs(path, size):
    if os.geteuid() != 0:
        raise Failure("this test needs root (it mounts a tmpfs as the state directory)")
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path], check=True)


def make_read_only(path):
    """A read-only bind mount over @path.  Files open before (the simulated
    host TPM's, a --dev daemon keeps its state in the state directory) stay
    writable through the mount below; every new open here sees EROFS."""
    subprocess.run(["mount", "--bind", path, path], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", path], check=True)


def make_writable(path):
    subprocess.run(["umount", path], check=True)


def listed(d):
    """The live instances (tombstones are listed too, as "deleted")."""
    return {i["uuid"] for i in d.call("instance.list")["instances"] if i["state"] != "deleted"}


def fill_with_creates(d):
    """Creates until the disk is full; returns the made UUIDs and the error."""
    made = []
    for i in range(1000):
        try:
            made.append(d.call("instance.create", kind="service", name=f"fill-{i}", ek="ecc")["uuid"])
        except V.RpcError as e:
            return made, e
    raise Failure("1000 creates fit into the small state directory")


def fill_with_nv(sock):
    """NV indices defined and written until the TPM refuses; returns the
    indices whose write was acknowledged and the refusing response code."""
    done = []
    for k in range(200):
        index = NV_BASE + k
        rc, _ = H.transact(sock, T.nv_define_cmd(index, 1024))
        if rc == 0:
            rc, _ = H.transact(sock, T.nv_write_cmd(index, bytes([k]) * 1024))
        if rc != 0:
            return done, rc
        done.append(k)
    raise Failure("200 KiB of NV fitted into the small state directory")


def check_nv(sock, done):
    for k in done:
        got = T.nv_read(sock, NV_BASE + k, 16)
        check(got == bytes([k]) * 16, f"NV index {k}: {got.hex()} after the disk was full")


def test_disk_full_then_space():
    with V.Harness("vrot-disk") as h:
        state = h.path("state")
        mount_tmpfs(state, "1200k")
        try:
            d = V.Vrotd(h, state_dir=state, config=write_conf(h)).start()
            made, err = fill_with_creates(d)
            check(err.code == V.INTERNAL_ERROR and ENOSPC_TEXT in err.message,
                  f"create on a full disk: {err.code} {err.message}")
            check(listed(d) == set(made), "the failed create left an instance behind")
            # A service's start writes its state (TPM2_Startup): on the full
            # disk it may fail, and then only for the lack of space, changing
            # nothing.  Deleting an instance makes room.
            u = made[0]
            try:
                info = d.call("instance.start", uuid=u)
            except V.RpcError as e:
                check(e.code == V.INTERNAL_ERROR and ENOSPC_TEXT in e.message,
                      f"start on a full disk: {e.code} {e.message}")
                check(listed(d) == set(made), "a failed start changed the list")
                d.call("instance.delete", uuid=made.pop())
                info = d.call("instance.start", uuid=u)
            # A running vTPM whose state write fails: the command that needed
            # it is refused, nothing acknowledged is lost.
            with H.connect(info["data"]) as s:
                done, rc = fill_with_nv(s)
            check(rc != 0, "no refusal")
            log = open(os.path.join(d.runtime_dir, u, "worker.log"), errors="replace").read()
            check(ENOSPC_TEXT in log, f"the worker's log does not say why:\n{log[-2000:]}")
            # Space returns: the vTPM recovers at its next start, with every
            # acknowledged write, and takes new ones.
            for x in made[-4:]:
                d.call("instance.delete", uuid=x)
            d.call("instance.stop", uuid=u)
            info = d.call("instance.start", uuid=u)
            with H.connect(info["data"]) as s:
                check_nv(s, done)
                T.nv_define(s, NV_BASE + 500, 8)
            d.call("instance.stop", uuid=u)
            again = d.call("instance.create", kind="service", name="after-space", ek="ecc")["uuid"]
            d.call("instance.start", uuid=again)
            d.stop_clean()
            # And a restarted daemon agrees with all of it.
            d.start()
            now, want = listed(d), set(made[:-4]) | {again}
            check(now == want, f"the registry changed across a restart: extra {now - want}, "
                               f"missing {want - now}")
            info = d.call("instance.start", uuid=u)
            with H.connect(info["data"]) as s:
                check_nv(s, done)
            d.stop_clean()
        finally:
            subprocess.run(["umount", "-l", state])


def test_read_only_then_writable():
    with V.Harness("vrot-disk-ro") as h:
        state = h.path("state")
        mount_tmpfs(state, "16m")
        read_only = False
        try:
            d = V.Vrotd(h, state_dir=state, config=write_conf(h)).start()
            svc = d.call("instance.create", kind="service", name="svc", ek="ecc")["uuid"]
            vm = d.call("instance.create", kind="vm", name="vm", ek="ecc")["uuid"]
            info = d.call("instance.start", uuid=svc)
            with H.connect(info["data"]) as s:
                T.nv_define(s, NV_BASE, 16)
                T.nv_write(s, NV_BASE, b"before read-only")
            d.call("instance.stop", uuid=svc)
            before = listed(d)
            make_read_only(state)
            read_only = True
            e = V.expect_error(V.INTERNAL_ERROR, d.call, "instance.create", kind="vm", name="ro")
            check(EROFS_TEXT in e.message, f"create on a read-only state dir: {e.message}")
            check(listed(d) == before, "a create on a read-only state dir changed the list")
            e = V.expect_error(V.INTERNAL_ERROR, d.call, "instance.start", uuid=svc)
            check(EROFS_TEXT in e.message or "not writable" in e.message,
                  f"start on a read-only state dir: {e.code} {e.message}")
            make_writable(state)
            read_only = False
            info = d.call("instance.start", uuid=svc)
            with H.connect(info["data"]) as s:
                check(T.nv_read(s, NV_BASE, 16) == b"before read-only", "NV after the read-only spell")
            d.call("instance.start", uuid=vm)
            d.call("instance.create", kind="vm", name="rw-again", ek="ecc")
            d.stop_clean()
        finally:
            if read_only:
                subprocess.run(["umount", "-l", state])
            subprocess.run(["umount", "-l", state])


def write_conf(h):
    path = h.path("vrotd.conf")
    with open(path, "w") as f:
        f.write("[daemon]\npool-size=0\n")
    return path


if __name__ == "__main__":
    H.main([test_disk_full_then_space, test_read_only_then_writable])
