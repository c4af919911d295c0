#!/usr/bin/env python3
"""vrot-libvirt-hook against a real `vrotd --dev`, called exactly as
libvirt calls a qemu.d hook: "vrot DOMAIN OPERATION SUB-OPERATION EXTRA",
the domain XML on stdin, an empty environment (vrot-libvirt-hook(8))."""

import os
import subprocess
import uuid as uuidlib

import harness as H
import vrotd as V
from harness import check

DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='KiB'>262144</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    {tpm}
  </devices>
</domain>
"""
VROT_TPM = ("<tpm model='tpm-crb'><backend type='external'>"
            "<source type='unix' mode='connect' path='{path}'/></backend></tpm>")


def hook_binary():
    path = os.environ.get("VROT_HOOK") or os.path.join(H.TOP, "build", "cli", "vrot-libvirt-hook")
    if not os.access(path, os.X_OK):
        raise H.Failure(f"vrot-libvirt-hook not found at {path}: build first or set VROT_HOOK")
    return path


def domain(name, uuid, tpm=""):
    return DOMAIN_XML.format(name=name, uuid=uuid, tpm=tpm)


def vrot_domain(d, name, uuid):
    return domain(name, uuid, VROT_TPM.format(path=os.path.join(d.runtime_dir, uuid, "ctrl.sock")))


class Hook:
    def __init__(self, h, d):
        self.conf = h.path(f"hook-{d.name}.conf")
        with open(self.conf, "w") as f:
            f.write(f"[daemon]\nruntime-dir={d.runtime_dir}\n")

    def __call__(self, xml, name, op, subop, conf=None):
        r = subprocess.run([hook_binary(), "--config", conf or self.conf, name, op, subop, "-"],
                           input=xml.encode(), capture_output=True, env={}, timeout=180)
        return r.returncode, r.stderr.decode(errors="replace")


def ok(hook, xml, name, op, subop):
    rc, err = hook(xml, name, op, subop)
    check(rc == 0, f"hook {op} {subop} exited {rc}: {err}")


def refused(hook, xml, name, op, subop, says):
    rc, err = hook(xml, name, op, subop)
    check(rc == 1, f"hook {op} {subop} exited {rc}, want 1: {err}")
    check(says in err and err.startswith("vrot: ") and err.count("\n") == 1,
          f"hook {op} {subop}: {err!r} is not one line saying {says!r}")


def info(d, u):
    return d.call("instance.info", uuid=u)


def test_hook_lifecycle():
    with V.Harness("vrot-hook") as h:
        d = V.Vrotd(h).start()
        hook = Hook(h, d)
        u = str(uuidlib.uuid4())
        xml = vrot_domain(d, "web-1", u)
        # libvirt's order for "virsh start": prepare, start, started.
        ok(hook, xml, "web-1", "prepare", "begin")
        inst = info(d, u)
        check(inst["state"] == "running" and inst["kind"] == "vm" and inst["name"] == "web-1",
              f"after prepare begin: {inst}")
        H.connect_now(inst["ctrl"])     # listening before QEMU would start
        for op in ("start", "started"):
            ok(hook, xml, "web-1", op, "begin")
        check(info(d, u)["pid"] == inst["pid"], "start/started changed the worker")
        # "virsh destroy": stopped end, release end.
        ok(hook, xml, "web-1", "stopped", "end")
        ok(hook, xml, "web-1", "release", "end")
        check(info(d, u)["state"] == "stopped", "release end did not stop the vTPM")
        ok(hook, xml, "web-1", "release", "end")        # twice: nothing to do
        # libvirtd restarted while the domain runs: reconnect.
        ok(hook, xml, "web-1", "reconnect", "begin")
        check(info(d, u)["state"] == "running", "reconnect begin did not start the vTPM")
        # The next boot reuses the instance (same EK), never makes a second.
        ok(hook, xml, "web-1", "release", "end")
        ok(hook, xml, "web-1", "prepare", "begin")
        check([i["uuid"] for i in d.call("instance.list")["instances"]] == [u], "a second instance")
        refused(hook, xml, "web-1", "migrate", "begin", "no prepared migration")
        check(info(d, u)["state"] == "running", "a refused migration stopped the vTPM")
        d.stop_clean()


def test_hook_leaves_other_domains_alone():
    with V.Harness("vrot-hook-other") as h:
        d = V.Vrotd(h).start()
        hook = Hook(h, d)
        u = str(uuidlib.uuid4())
        swtpm = "<tpm model='tpm-tis'><backend type='emulator' version='2.0'/></tpm>"
        elsewhere = VROT_TPM.format(path=h.path("other-tpm.sock"))
        for xml in (domain("plain", u), domain("swtpm", u, swtpm), domain("other", u, elsewhere)):
            for op, subop in (("prepare", "begin"), ("release", "end"), ("migrate", "begin")):
                ok(hook, xml, "x", op, subop)
        check(d.call("instance.list")["instances"] == [], "the hook touched vrot for another domain")
        # Not even vrotd being down matters to them.
        d.stop_clean()
        ok(hook, domain("plain", u), "plain", "prepare", "begin")


def test_hook_refusals():
    with V.Harness("vrot-hook-bad") as h:
        d = V.Vrotd(h).start()
        hook = Hook(h, d)
        u, other = str(uuidlib.uuid4()), str(uuidlib.uuid4())
        refused(hook, "<domain><name>x</name>", "x", "prepare", "begin", "not well-formed")
        refused(hook, "<domain><name>x</name></domain>", "x", "prepare", "begin", "UUID")
        # A vrot socket, but another instance's: never start someone else's TPM.
        xml = domain("thief", u, VROT_TPM.format(path=os.path.join(d.runtime_dir, other,
                                                                    "ctrl.sock")))
        refused(hook, xml, "thief", "prepare", "begin", "not its own vTPM")
        check(d.call("instance.list")["instances"] == [], "a refused hook call created something")
        # A deleted instance's UUID cannot get a vTPM again.
        d.call("instance.create", uuid=u, kind="vm", name="gone", ek="ecc")
        d.call("instance.delete", uuid=u)
        refused(hook, vrot_domain(d, "gone", u), "gone", "prepare", "begin", "was deleted")
        # vrotd down: the domain must not start without its vTPM.
        d.stop_clean()
        refused(hook, vrot_domain(d, "web", other), "web", "prepare", "begin", "vrotd")
        rc, err = hook(vrot_domain(d, "web", other), "web", "prepare", "begin",
                       conf=h.path("no-such.conf"))
        check(rc == 1 and "no-such.conf" in err, f"a missing --config: {rc} {err!r}")


if __name__ == "__main__":
    H.main([test_hook_lifecycle, test_hook_leaves_other_domains_alone, test_hook_refusals])
