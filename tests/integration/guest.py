"""Boot a real Linux guest under QEMU (TCG) against a TPM server.

The guest is Debian's kernel (see scripts/get-kernel.sh) with a tiny
busybox-static initramfs whose /init prints what the kernel sees of the TPM
as marker lines on the serial console, then powers off:

    VROT-TPM-VERSION 2
    VROT-PCR <n> <hex>           sha256 bank, n = 0..23
    VROT-RANDOM <hex>            TPM2_GetRandom(32) sent through /dev/tpm0
    VROT-HWRNG <rng> <hex>       16 bytes of /dev/hwrng and its source
    VROT-DONE

QEMU reaches the TPM server only through its control socket, exactly as
libvirt drives `swtpm socket --tpm2 --ctrl ...`: the server under test is
whatever listens on that socket (swtpm or vrot-vtpm).
"""

import glob
import gzip
import os
import re
import struct
import subprocess
import time

from harness import Failure, require, tpm_cmd

KERNEL_CACHE = "/var/cache/vrot-test/vmlinuz"
BUSYBOX = "/bin/busybox"

# /init.  `tpm_cmd HEX` sends one TPM command through /dev/tpm0 (one open
# fd, command in a single write) and prints the response as hex, for use by
# extra_init snippets too.  @EXTRA@ runs before the PCRs and the random value
# are read, so a snippet that extends a PCR shows up in the VROT-PCR lines.
INIT = r"""#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security
echo
say() { echo "VROT-$*"; }
tpm_cmd() {
    echo "$1" | xxd -r -p > /tmp/tpm.cmd
    { dd if=/tmp/tpm.cmd bs=4096 count=1 2>/dev/null >&3
      dd bs=4096 count=1 2>/dev/null <&3 | xxd -p | tr -d '\n'; } 3<>/dev/tpm0
}
say UPTIME-INIT $(cut -d' ' -f1 /proc/uptime)
T=/sys/class/tpm/tpm0
n=0
while [ ! -e /dev/tpm0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
dmesg | grep -i tpm | while read -r l; do say DMESG "$l"; done
if [ -e /dev/tpm0 ]; then
    say TPM-VERSION $(cat $T/tpm_version_major)
@EXTRA@
    for i in $(seq 0 23); do say PCR $i $(cat $T/pcr-sha256/$i); done
    r=$(tpm_cmd 80010000000c0000017b0020)
    case $r in
        8001????????00000000*) say RANDOM ${r:24} ;;
        *) say RANDOM-ERROR "$r" ;;
    esac
    say HWRNG $(cat /sys/class/misc/hw_random/rng_current) \
        $(timeout 10 dd if=/dev/hwrng bs=16 count=1 2>/dev/null | xxd -p)
else
    say NO-TPM
fi
say UPTIME-DONE $(cut -d' ' -f1 /proc/uptime)
say DONE
poweroff -f
"""


# -- initramfs -------------------------------------------------------------

S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR = 0o040000, 0o100000, 0o120000, 0o020000


def _cpio_entry(ino, name, mode, data=b"", rdev=(0, 0)):
    """One newc record; mtime and owners are 0 so the archive is reproducible."""
    name_b = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0)
    hdr = b"070701" + b"".join(b"%08x" % f for f in fields)
    pad = lambda n: b"\0" * (-n % 4)
    return hdr + name_b + pad(len(hdr) + len(name_b)) + data + pad(len(data))


def _busybox_applets():
    out = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True)
    return sorted(a for a in out.stdout.split() if a not in ("busybox", "init"))


def init_script(extra_init=""):
    return INIT.replace("@EXTRA@", extra_init.rstrip("\n"))


def build_initramfs(dir, extra_init="", name="initramfs.cpio.gz"):
    """Write a gzipped newc initramfs into dir and return its path.

    Byte-identical for the same busybox and extra_init, so two boots of the
    same guest measure the same things.
    """
    if not os.access(BUSYBOX, os.X_OK):
        raise Failure(f"{BUSYBOX} missing: apt-get install busybox-static")
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    entries = [(d, S_IFDIR | 0o755, b"") for d in ("bin", "dev", "proc", "sys", "tmp")]
    entries.append(("bin/busybox", S_IFREG | 0o755, busybox))
    entries += [("bin/" + a, S_IFLNK | 0o777, b"busybox") for a in _busybox_applets()]
    entries.append(("init", S_IFREG | 0o755, init_script(extra_init).encode()))
    archive = b"".join(_cpio_entry(i + 1, n, m, data) for i, (n, m, data) in enumerate(entries))
    # The kernel opens /dev/console for /init before devtmpfs is mounted.
    archive += _cpio_entry(len(entries) + 1, "dev/console", S_IFCHR | 0o600, rdev=(5, 1))
    archive += _cpio_entry(0, "TRAILER!!!", 0)
    path = os.path.join(dir, name)
    with open(path, "wb") as f:
        f.write(gzip.compress(archive, compresslevel=6, mtime=0))
    return path


def pcr_extend_snippet(pcr, digest):
    """extra_init line: TPM2_PCR_Extend(pcr, sha256 digest) from the guest.

    Prints `VROT-EXTEND <pcr> <response hex>`; check it with response_rc().
    """
    if len(digest) != 32:
        raise ValueError("sha256 digest must be 32 bytes")
    pw_session = struct.pack(">IHBH", 0x40000009, 0, 0, 0)   # TPM_RS_PW, empty auth
    body = (struct.pack(">II", pcr, len(pw_session)) + pw_session
            + struct.pack(">IH", 1, 0x000B) + digest)
    cmd = tpm_cmd(0x182, body, tag=0x8002)
    return f"    say EXTEND {pcr} $(tpm_cmd {cmd.hex()})"


def response_rc(resp_hex):
    """Response code of a TPM response printed as hex by tpm_cmd."""
    if len(resp_hex) < 20:
        return None
    return int(resp_hex[12:20], 16)


# -- kernel ------------------------------------------------------------------

def find_kernel():
    """$VROT_TEST_KERNEL, else the cached Debian kernel, else /boot; or fail."""
    env = os.environ.get("VROT_TEST_KERNEL")
    if env:
        if not os.path.isfile(env):
            raise Failure(f"VROT_TEST_KERNEL={env} does not exist")
        return env
    if os.path.isfile(KERNEL_CACHE):
        return KERNEL_CACHE
    boot = sorted(glob.glob("/boot/vmlinuz-*"))
    if boot:
        return boot[-1]
    raise Failure("no guest kernel: run scripts/get-kernel.sh as root "
                  f"(fills {KERNEL_CACHE}) or set VROT_TEST_KERNEL")


# -- serial output -------------------------------------------------------------

# CSI sequences (SeaBIOS clears the screen), other ESC sequences, bare CRs.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_c]|\r")
_MARKER = re.compile(r"VROT-([A-Z0-9-]+)(?: (.*))?$")


def clean_serial(raw):
    return _ESCAPES.sub("", raw.decode("utf-8", errors="replace"))


class BootResult:
    """What the guest printed, parsed.  check() failures carry the log tail."""

    def __init__(self, serial, elapsed, returncode):
        self.serial, self.elapsed, self.returncode = serial, elapsed, returncode
        self.markers = []                      # [(tag, rest-of-line)]
        for line in serial.splitlines():
            m = _MARKER.search(line)
            if m:
                self.markers.append((m.group(1), (m.group(2) or "").strip()))
        self.pcrs = {}
        for rest in self.values("PCR"):
            n, _, value = rest.partition(" ")
            self.pcrs[int(n)] = value.strip().lower()
        self.tpm_version = self.value("TPM-VERSION")
        self.random = (self.value("RANDOM") or "").lower()
        hwrng = (self.value("HWRNG") or "").split()
        self.hwrng_source = hwrng[0] if hwrng else None
        self.hwrng = hwrng[1].lower() if len(hwrng) > 1 else ""
        self.done = "DONE" in self.tags()

    def tags(self):
        return [t for t, _ in self.markers]

    def values(self, tag):
        return [v for t, v in self.markers if t == tag]

    def value(self, tag):
        vals = self.values(tag)
        return vals[-1] if vals else None

    def uptime(self, tag="DONE"):
        """Guest uptime in seconds at UPTIME-INIT / UPTIME-DONE."""
        v = self.value("UPTIME-" + tag)
        return float(v) if v else None

    def tail(self, n=40):
        lines = self.serial.splitlines()[-n:]
        return "\n".join(lines) if lines else "(the guest printed nothing)"

    def check(self, cond, msg):
        if not cond:
            raise Failure(f"{msg}\n--- guest serial (last lines) ---\n{self.tail()}")


# -- boot ----------------------------------------------------------------------

APPEND = "console=ttyS0 quiet panic=-1 rdinit=/init"


def qemu_argv(kernel, initrd, ctrl, device, serial):
    return [
        require("qemu-system-x86_64"),
        "-nodefaults", "-machine", "q35", "-accel", "tcg",
        "-cpu", "max,vendor=GenuineIntel", "-m", "256",
        "-display", "none", "-monitor", "none", "-no-reboot",
        "-serial", "file:" + serial,
        "-kernel", kernel, "-initrd", initrd, "-append", APPEND,
        "-chardev", "socket,id=chrtpm,path=" + ctrl,
        "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
        "-device", f"{device},tpmdev=tpm0",
    ]


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def boot(h, ctrl_socket, device="tpm-crb", timeout=120, extra_init="", name="guest"):
    """Boot the test guest with its TPM on ctrl_socket; return a BootResult.

    QEMU is bounded by timeout and killed by PID.  Fails (with the serial
    tail) if QEMU times out, exits non-zero or the guest never says DONE.
    """
    if device not in ("tpm-crb", "tpm-tis"):
        raise ValueError(f"unknown TPM device {device!r}")
    kernel = find_kernel()
    initrd = build_initramfs(h.dir, extra_init, name + ".initrd.cpio.gz")
    serial, log = h.path(name + ".serial"), h.path(name + ".qemu.log")
    t0 = time.monotonic()
    proc = h.spawn(qemu_argv(kernel, initrd, ctrl_socket, device, serial), log=log)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        h.kill(proc)
        r = BootResult(clean_serial(_read(serial)), time.monotonic() - t0, None)
        hint = "" if r.serial.strip() else (
            " and printed nothing: QEMU probably waits on the TPM control channel")
        r.check(False, f"guest ({device}) did not power off within {timeout}s{hint}")
    r = BootResult(clean_serial(_read(serial)), time.monotonic() - t0, proc.returncode)
    qemu_log = _read(log).decode(errors="replace").strip()
    r.check(proc.returncode == 0, f"qemu exited with {proc.returncode}: {qemu_log}")
    r.check(r.done, f"guest ({device}) powered off without printing VROT-DONE")
    return r


# -- reading EK certificates in the guest ------------------------------------

def ek_nv_snippet(index, size, chunk=512):
    """extra_init lines: TPM2_NV_ReadPublic and TPM2_NV_Read of all of
    @index (authorised by the index itself, empty password) through
    /dev/tpm0, printed as VROT-EKNVPUB and VROT-EKNV <offset> lines."""
    lines = [f"    say EKNVPUB $(tpm_cmd {tpm_cmd(0x169, struct.pack('>I', index)).hex()})"]
    pw = struct.pack(">IHBH", 0x40000009, 0, 0, 0)
    for off in range(0, size, chunk):
        n = min(chunk, size - off)
        body = struct.pack(">II", index, index) + struct.pack(">I", len(pw)) + pw
        body += struct.pack(">HH", n, off)
        cmd = tpm_cmd(0x14E, body, tag=0x8002)
        lines.append(f"    say EKNV {off} $(tpm_cmd {cmd.hex()})")
    return "\n".join(lines)


def parse_nv_public(resp):
    _, _, rc = struct.unpack(">HII", resp[:10])
    if rc != 0:
        raise Failure(f"NV_ReadPublic in the guest: response code 0x{rc:x}")
    p = 12
    index, _alg, attrs, plen = struct.unpack(">IHIH", resp[p:p + 12])
    p += 12 + plen
    (size,) = struct.unpack(">H", resp[p:p + 2])
    return index, attrs, size


# -- a guest that keeps running, for live migration ---------------------------

PW_SESSION = struct.pack(">IHBH", 0x40000009, 0, 0, 0)     # TPM_RS_PW, empty auth
NV_ATTRS = 0x02060006       # OWNERWRITE | AUTHWRITE | OWNERREAD | AUTHREAD | NO_DA


def nv_define_cmd(index, size):
    """TPM2_NV_DefineSpace under the owner (empty auth) of a plain index."""
    public = struct.pack(">IHIHH", index, 0x000B, NV_ATTRS, 0, size)
    body = (struct.pack(">II", 0x40000001, len(PW_SESSION)) + PW_SESSION
            + struct.pack(">H", 0) + struct.pack(">H", len(public)) + public)
    return tpm_cmd(0x12A, body, tag=0x8002)


def nv_write_cmd(index, data):
    body = (struct.pack(">III", index, index, len(PW_SESSION)) + PW_SESSION
            + struct.pack(">H", len(data)) + data + struct.pack(">H", 0))
    return tpm_cmd(0x137, body, tag=0x8002)


def nv_read_cmd(index, size):
    body = (struct.pack(">III", index, index, len(PW_SESSION)) + PW_SESSION
            + struct.pack(">HH", size, 0))
    return tpm_cmd(0x14E, body, tag=0x8002)


def ticking_init(pcr, digest, index, data):
    """extra_init for a guest that extends @pcr, defines and writes NV
    @index with @data, says `VROT-READY`, then forever every 0.3 s
    `VROT-TICK <n> <pcr value> <NV_Read response hex>`: a guest that lives
    through a live migration and shows what its TPM holds on either side."""
    return "\n".join([
        pcr_extend_snippet(pcr, digest),
        f"    say NVDEFINE $(tpm_cmd {nv_define_cmd(index, len(data)).hex()})",
        f"    say NVWRITE $(tpm_cmd {nv_write_cmd(index, data).hex()})",
        "    say READY",
        "    n=0",
        "    while true; do",
        f"        say TICK $n $(cat $T/pcr-sha256/{pcr}) "
        f"$(tpm_cmd {nv_read_cmd(index, len(data)).hex()})",
        "        n=$((n + 1)); sleep 0.3",
        "    done",
    ])


def spawn_vm(h, ctrl_socket, extra_init, name, qmp, incoming=None, device="tpm-crb"):
    """QEMU with its TPM on @ctrl_socket and a QMP socket at @qmp, not
    waited for (a live-migration test drives it); @incoming: the
    destination's "tcp:ADDR:PORT".  Returns (proc, serial path)."""
    kernel = find_kernel()
    initrd = build_initramfs(h.dir, extra_init, name + ".initrd.cpio.gz")
    serial, log = h.path(name + ".serial"), h.path(name + ".qemu.log")
    argv = qemu_argv(kernel, initrd, ctrl_socket, device, serial)
    argv += ["-qmp", f"unix:{qmp},server=on,wait=off"]
    if incoming:
        argv += ["-incoming", incoming]
    return h.spawn(argv, log=log), serial


def ticks(serial_path):
    """The VROT-TICK lines so far: [(n, pcr hex, NV_Read response hex)]."""
    out = []
    for line in clean_serial(_read(serial_path)).splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "VROT-TICK":
            out.append((int(parts[1]), parts[2].lower(), parts[3].lower()))
    return out
