#!/usr/bin/env python3
"""Real-guest boot test: Linux under QEMU (TCG) finds and uses the TPM.

QEMU's `-tpmdev emulator` backend drives the TPM server through its control
socket, as with `swtpm socket --tpm2`.  The same guest is booted against
Debian's swtpm (the baseline) and against vrot-vtpm; the checks are the same
function for both.  Needs the guest kernel: run scripts/get-kernel.sh first.

Usage: test_guest_boot.py [test_name ...]
"""

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Harness, check, main  # noqa: E402
import guest  # noqa: E402

ZERO = "00" * 32


def start_server(h, kind):
    """swtpm or vrot-vtpm on a control socket only (QEMU sends the data fd)."""
    return h.start_swtpm() if kind == "swtpm" else h.start_vtpm()


def boot_against(kind, device="tpm-crb", extra_init=""):
    with Harness(f"guest-{kind}") as h:
        srv = start_server(h, kind)
        r = guest.boot(h, srv.ctrl, device=device, extra_init=extra_init)
        check(srv.proc.poll() is None or srv.proc.returncode == 0,
              f"{kind} died with {srv.proc.returncode}:\n{srv.log_text()[-2000:]}")
        print(f"     {kind}/{device}: boot {r.elapsed:.1f}s, guest uptime at init "
              f"{r.uptime('INIT')}s, done {r.uptime()}s", flush=True)
        return r


def check_guest_tpm(r, device):
    """What every guest must have seen of its TPM, whatever the server."""
    r.check(r.tpm_version == "2", f"{device}: guest found no TPM 2.0 "
            f"(VROT-TPM-VERSION {r.tpm_version!r})")
    r.check(sorted(r.pcrs) == list(range(24)),
            f"{device}: expected sha256 PCRs 0..23, got {sorted(r.pcrs)}")
    bad = {n: v for n, v in r.pcrs.items() if len(v) != 64}
    r.check(not bad, f"{device}: malformed sha256 PCR values {bad}")
    r.check(r.pcrs[0] != ZERO, f"{device}: PCR0 is zero, SeaBIOS measured nothing")
    r.check(r.pcrs[23] == ZERO, f"{device}: PCR23 is not zero: {r.pcrs[23]}")
    r.check(len(r.random) > 0 and r.random != "00" * (len(r.random) // 2),
            f"{device}: no random value from TPM2_GetRandom "
            f"(error: {r.value('RANDOM-ERROR')})")
    r.check(r.hwrng_source and r.hwrng_source.startswith("tpm-rng") and r.hwrng,
            f"{device}: kernel hwrng is not the TPM: {r.value('HWRNG')!r}")


def run(kind, device):
    check_guest_tpm(boot_against(kind, device), device)


def test_swtpm_crb():
    run("swtpm", "tpm-crb")


def test_swtpm_tis():
    run("swtpm", "tpm-tis")


def test_vrot_crb():
    run("vrot", "tpm-crb")


def test_vrot_tis():
    run("vrot", "tpm-tis")


def test_vrot_matches_swtpm_pcrs():
    """Same QEMU, firmware, kernel and initrd: same measurements, same PCRs."""
    ref = boot_against("swtpm")
    got = boot_against("vrot")
    check_guest_tpm(got, "tpm-crb")
    diff = [f"PCR {n}: swtpm {ref.pcrs.get(n)} vrot {got.pcrs.get(n)}"
            for n in range(24) if ref.pcrs.get(n) != got.pcrs.get(n)]
    got.check(not diff, "PCRs differ from swtpm's:\n" + "\n".join(diff))


def test_vrot_guest_pcr_extend():
    """The guest extends PCR16 through /dev/tpm0; the kernel reads it back."""
    digest = hashlib.sha256(b"vrot guest extend").digest()
    r = boot_against("vrot", extra_init=guest.pcr_extend_snippet(16, digest))
    check_guest_tpm(r, "tpm-crb")
    resp = (r.value("EXTEND") or " ").split(" ", 1)[1]
    r.check(guest.response_rc(resp) == 0, f"TPM2_PCR_Extend failed: response {resp!r}")
    want = hashlib.sha256(bytes(32) + digest).hexdigest()
    r.check(r.pcrs[16] == want, f"PCR16 is {r.pcrs[16]}, expected {want}")


TESTS = [test_swtpm_crb, test_swtpm_tis, test_vrot_crb, test_vrot_tis,
         test_vrot_matches_swtpm_pcrs, test_vrot_guest_pcr_extend]

if __name__ == "__main__":
    main(TESTS)
