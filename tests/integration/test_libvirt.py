#!/usr/bin/env python3
"""The libvirt hook with a real libvirt (issues 5 and 6): the test runs its own
libvirtd (Debian 12 has no virtqemud) in a private mount namespace - its
own /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and
/var/log/libvirt bind-mounted from the test's temporary directory, so the
host's libvirt is never touched - with vrot-libvirt-hook installed as
/etc/libvirt/hooks/qemu.d/vrot there (a wrapper that records each call and
names the test's vrotd.conf), and a `vrotd --dev` of its own.

A TCG domain whose TPM is the external backend on its vTPM's control
socket (`vrotctl libvirt-xml`) boots the test kernel: the guest finds a
TPM 2.0, reads its PCRs and reads the EK certificate from NV 0x01c00002.
`virsh destroy` stops the worker.  A domain without a TPM starts without
vrot being asked anything, and with vrotd down `virsh start` fails with
the hook's message.  The calls libvirt made to the hook are checked in
order.  FIELD-NOTES "libvirt 9.0.0 on Debian 12" has the setup's reasons.

Then two such libvirt daemons side by side (each its own PID file, mount
namespace and vrotd of one fleet): a running domain moves with `vrotctl
migrate --live` and `virsh migrate --live --xml` (the destination's XML
names its vTPM's control socket there); the hook accepts it on B (migrate
begin, prepare begin finds the incoming worker) and commits on A (release
end), and the guest reads on B the PCR and NV it wrote on A.
"""

import os
import ssl
import struct
import subprocess
import time
import uuid as uuidlib

import guest
import harness as H
import vrotd as V
from harness import Failure, check, require
from vrotd import vrotctl

DIRS = ("etc/libvirt", "run/libvirt", "var/lib/libvirt", "var/cache/libvirt", "var/log/libvirt")
QEMU_CONF = """user = "root"
group = "root"
security_driver = "none"
dynamic_ownership = 0
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""
DOMAIN = """<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='maximum'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{qemu}</emulator>
    <serial type='file'><source path='{serial}'/><target port='0'/></serial>
    <memballoon model='none'/>
    {tpm}
  </devices>
</domain>
"""
START_TIMEOUT = 120
BOOT_TIMEOUT = 240


class Libvirt:
    """A private libvirtd and virsh bound to it."""

    def __init__(self, h, vrotd_conf, hook_log, name="libvirt"):
        self.h, self.name = h, name
        self.root = h.path(name)
        for d in DIRS:
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        etc = os.path.join(self.root, "etc/libvirt")
        with open(os.path.join(etc, "qemu.conf"), "w") as f:
            f.write(QEMU_CONF)
        with open(os.path.join(etc, "libvirtd.conf"), "w") as f:
            f.write('log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n')
        hooks = os.path.join(etc, "hooks", "qemu.d")
        os.makedirs(hooks)
        hook = os.path.join(hooks, "vrot")
        with open(hook, "w") as f:
            f.write("#!/bin/sh\n"
                    f"echo \"$2 $3\" >> '{hook_log}'\n"
                    f"exec '{hook_binary()}' --config '{vrotd_conf}' \"$@\"\n")
        os.chmod(hook, 0o755)
        self.sock = os.path.join(self.root, "run/libvirt/libvirt-sock")
        self.uri = f"qemu:///system?socket={self.sock}"
        self.proc = None

    def start(self):
        # Empty mount points on the host where the package made none yet.
        mounts = " && ".join(f"mkdir -p '/{d}' && mount --bind '{os.path.join(self.root, d)}' '/{d}'"
                             for d in DIRS)
        # Its own PID file: /run/libvirtd.pid would keep a second daemon out.
        script = (f"{mounts} && exec '{require('libvirtd')}' --pid-file "
                  f"'{os.path.join(self.root, 'libvirtd.pid')}'")
        self.proc = self.h.spawn(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                  script], log=self.h.path(f"{self.name}d.out"))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise Failure(f"libvirtd exited with {self.proc.returncode}:\n{self.log()}")
            if H.accepts(self.sock):
                break
            if time.monotonic() > deadline:
                raise Failure(f"libvirtd did not listen within {START_TIMEOUT}s:\n{self.log()}")
            time.sleep(0.1)
        return self

    def log(self):
        out = []
        for p in (self.h.path(f"{self.name}d.out"),
                  os.path.join(self.root, "var/log/libvirt/libvirtd.log")):
            try:
                with open(p, errors="replace") as f:
                    out.append(f.read()[-3000:])
            except OSError:
                pass
        return "\n".join(out)

    def virsh(self, *args, timeout=180):
        r = subprocess.run([require("virsh"), "-c", self.uri, *args], capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout, r.stderr

    def ok(self, *args):
        rc, out, err = self.virsh(*args)
        check(rc == 0, f"virsh {' '.join(args)} exited {rc}:\n{err}{out}\n{self.log()}")
        return out

    def state(self, name):
        return self.ok("domstate", name).strip()

    def wait_state(self, name, want, timeout):
        deadline = time.monotonic() + timeout
        while self.state(name) != want:
            if time.monotonic() > deadline:
                raise Failure(f"domain {name} is {self.state(name)!r}, not {want!r}, after "
                              f"{timeout}s\n{self.log()}")
            time.sleep(0.5)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.h.kill(self.proc)


def hook_binary():
    path = os.environ.get("VROT_HOOK") or os.path.join(H.TOP, "build", "cli", "vrot-libvirt-hook")
    if not os.access(path, os.X_OK):
        raise Failure(f"vrot-libvirt-hook not found at {path}: build first or set VROT_HOOK")
    return path


def hook_calls(path):
    try:
        with open(path) as f:
            return [line.strip() for line in f if line.strip()]
    except OSError:
        return []


def domain_xml(h, name, uuid, tpm, initrd, serial=None, path=None):
    path = path or h.path(name + ".xml")
    with open(path, "w") as f:
        f.write(DOMAIN.format(name=name, uuid=uuid, kernel=guest.find_kernel(), initrd=initrd,
                              cmdline=guest.APPEND, qemu=require("qemu-system-x86_64"),
                              serial=serial or h.path(name + ".serial"), tpm=tpm))
    return path


def define(lv, h, name, uuid, tpm, initrd):
    lv.ok("define", domain_xml(h, name, uuid, tpm, initrd))


def test_libvirt_domain_with_vrot_tpm():
    with V.Harness("vrot-libvirt") as h:
        d = V.Vrotd(h).start()
        conf = h.path("hook-vrotd.conf")
        with open(conf, "w") as f:
            f.write(f"[daemon]\nruntime-dir={d.runtime_dir}\n")
        log = h.path("hook-calls.log")
        lv = Libvirt(h, conf, log)
        try:
            run_domain_tests(h, d, lv, log)
        finally:
            lv.stop()


def run_domain_tests(h, d, lv, log):
    lv.start()
    uuid, name = str(uuidlib.uuid4()), "vrot-guest"
    # The vTPM exists before the domain (an orchestrator's order); the
    # domain's <tpm> is what vrotctl prints for it.
    made = d.call("instance.create", uuid=uuid, kind="vm", name=name)
    rc, tpm, err = vrotctl(d.socket, "libvirt-xml", uuid)
    check(rc == 0, f"vrotctl libvirt-xml: {err}")
    der = ssl.PEM_cert_to_DER_cert(made["ek_rsa_cert_pem"])
    initrd = guest.build_initramfs(h.dir, guest.ek_nv_snippet(0x01c00002, len(der)),
                                   "libvirt.initrd.cpio.gz")
    define(lv, h, name, uuid, tpm, initrd)
    open(log, "w").close()

    # 1. A boot: the hook starts the vTPM, the guest powers off by itself.
    lv.ok("start", name)
    lv.wait_state(name, "shut off", BOOT_TIMEOUT)
    b = guest.BootResult(guest.clean_serial(open(h.path(name + ".serial"), "rb").read()), 0, 0)
    b.check(b.done, "the guest under libvirt did not finish")
    b.check(b.tpm_version == "2", f"no TPM 2.0 in the guest (VROT-TPM-VERSION {b.tpm_version!r})")
    b.check(len(b.pcrs) == 24 and b.pcrs[0] != "0" * 64, f"PCRs not read: {b.pcrs}")
    got = b""
    for line in b.values("EKNV"):
        off, _, hexresp = line.partition(" ")
        resp = bytes.fromhex(hexresp.strip())
        b.check(len(resp) >= 16 and struct.unpack(">I", resp[6:10])[0] == 0,
                f"NV_Read at {off} in the guest: {hexresp[:40]!r}")
        (n,) = struct.unpack(">H", resp[14:16])
        got += resp[16:16 + n]
    b.check(got == der, "the guest read another EK certificate from NV 0x01c00002")
    calls = hook_calls(log)
    check(calls[:3] == ["prepare begin", "start begin", "started begin"]
          and calls[-2:] == ["stopped end", "release end"],
          f"hook calls for a boot: {calls}")
    print(f"     libvirt's hook calls for a boot and power-off: {calls}", flush=True)
    check(d.call("instance.info", uuid=uuid)["state"] == "stopped", "the vTPM outlived its domain")

    # 2. virsh destroy of a running domain stops the worker.
    open(log, "w").close()
    lv.ok("start", name)
    info = d.call("instance.info", uuid=uuid)
    check(info["state"] == "running", f"after virsh start: {info}")
    lv.ok("destroy", name)
    deadline = time.monotonic() + 30
    while d.call("instance.info", uuid=uuid)["state"] != "stopped":
        check(time.monotonic() < deadline, "virsh destroy did not stop the worker")
        time.sleep(0.2)
    check(not V.alive(info["pid"]), f"worker {info['pid']} survived virsh destroy")
    calls = hook_calls(log)
    check("release end" in calls, f"hook calls for virsh destroy: {calls}")
    print(f"     libvirt's hook calls for start and destroy: {calls}", flush=True)

    # 3. A domain without a TPM: the hook is called, vrot is not touched.
    plain, puuid = "plain-guest", str(uuidlib.uuid4())
    define(lv, h, plain, puuid, "", initrd)
    before = d.call("instance.list")
    open(log, "w").close()
    lv.ok("start", plain)
    check(hook_calls(log)[:3] == ["prepare begin", "start begin", "started begin"],
          f"hook calls for a plain domain: {hook_calls(log)}")
    lv.ok("destroy", plain)
    check(d.call("instance.list") == before, "the hook touched vrot for a domain without vTPM")

    # 4. vrotd down: the domain does not start without its vTPM.
    d.stop_clean()
    rc, out, err = lv.virsh("start", name)
    check(rc != 0 and "vrot: prepare begin" in err, f"virsh start with vrotd down: {rc} {err}")
    check(lv.state(name) == "shut off", "the domain started without its vTPM")
    print(f"     with vrotd down, virsh start says: {err.strip().splitlines()[-1]}", flush=True)


def test_virsh_migrate_live():
    """Two libvirt daemons side by side, each with its own vrotd: `vrotctl
    migrate --live` prepares, `virsh migrate --live` moves the domain, the
    hooks accept it on the destination (migrate begin) and commit it on the
    source (release end); the guest reads the same PCR and NV on B."""
    with V.Harness("vrot-libvirt-migrate") as h:
        a, b = V.two_hosts(h)
        lvs = {}
        for d in (a, b):
            conf = h.path(f"hook-{d.name}.conf")
            with open(conf, "w") as f:
                f.write(f"[daemon]\nruntime-dir={d.runtime_dir}\n")
            lvs[d.name] = Libvirt(h, conf, h.path(f"hook-calls-{d.name}.log"), name=f"libvirt-{d.name}")
        try:
            t0 = time.monotonic()
            for lv in lvs.values():
                lv.start()
            print(f"     two libvirt daemons up in {time.monotonic() - t0:.1f} s", flush=True)
            run_migration(h, a, b, lvs["a"], lvs["b"])
        finally:
            for lv in lvs.values():
                lv.stop()


def run_migration(h, a, b, lva, lvb):
    uuid, name = str(uuidlib.uuid4()), "migrating-guest"
    a.call("instance.create", uuid=uuid, kind="vm", name=name)
    rc, tpm, err = vrotctl(a.socket, "libvirt-xml", uuid)
    check(rc == 0, f"vrotctl libvirt-xml: {err}")
    data = b"NV written on host A, read on host B"
    init = guest.ticking_init(16, bytes(range(32)), 0x1500018, data)
    initrd = guest.build_initramfs(h.dir, init, "migrate.initrd.cpio.gz")
    define(lva, h, name, uuid, tpm, initrd)
    t0 = time.monotonic()
    lva.ok("start", name)
    serial_a = h.path(name + ".serial")
    deadline = time.monotonic() + BOOT_TIMEOUT
    while not guest.ticks(serial_a):
        check(time.monotonic() < deadline, f"the guest on A never ticked:\n{lva.log()}")
        time.sleep(0.5)
    before = guest.ticks(serial_a)[-1]
    print(f"     the guest ticks on A {time.monotonic() - t0:.1f} s after virsh start", flush=True)
    t0 = time.monotonic()
    rc, out, err = vrotctl(a.socket, "migrate", uuid, "--to", V.address(b), "--live")
    check(rc == 0, f"vrotctl migrate --live: {rc} {out} {err}")
    # On B the domain's TPM is B's vTPM of the same instance; its serial another file.
    tpm_b = tpm.replace(a.runtime_dir, b.runtime_dir)
    serial_b = h.path(name + ".b.serial")
    xml_b = domain_xml(h, name, uuid, tpm_b, initrd, serial=serial_b, path=h.path("dest.xml"))
    port = V.free_port()
    rc, out, err = lva.virsh("migrate", "--live", "--xml", xml_b, "--migrateuri",
                             f"tcp:127.0.0.1:{port}", name, lvb.uri, timeout=300)
    check(rc == 0, f"virsh migrate exited {rc}:\n{err}{out}\n{lva.log()}\n{lvb.log()}")
    print(f"     vrotctl migrate --live and virsh migrate --live: {time.monotonic() - t0:.1f} s",
          flush=True)
    check(lvb.state(name) == "running", "the domain does not run on B")
    deadline = time.monotonic() + 60
    while a.call("instance.info", uuid=uuid)["state"] != "migrated":
        check(time.monotonic() < deadline, f"A's release end did not commit: "
              f"{a.call('instance.info', uuid=uuid)} {hook_calls(h.path('hook-calls-a.log'))}")
        time.sleep(0.2)
    check(b.call("instance.info", uuid=uuid)["state"] == "running", "B's vTPM is not live")
    deadline = time.monotonic() + 60
    while not guest.ticks(serial_b):
        check(time.monotonic() < deadline, "the guest on B never ticked")
        time.sleep(0.3)
    after = guest.ticks(serial_b)[-1]
    check(after[1:] == before[1:], f"on B the guest reads {after}, on A it read {before}")
    print(f"     hook calls on A: {hook_calls(h.path('hook-calls-a.log'))}; on B: "
          f"{hook_calls(h.path('hook-calls-b.log'))}", flush=True)
    lvb.ok("destroy", name)
    for d in (a, b):
        d.stop_clean()


if __name__ == "__main__":
    H.main([test_libvirt_domain_with_vrot_tpm, test_virsh_migrate_live])
