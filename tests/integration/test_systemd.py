#!/usr/bin/env python3
"""The systemd unit shipped for vrotd (daemon/vrotd.service.in, vrotd(8)
"SYSTEMD"): systemd accepts it, and the sandbox and lifecycle settings the
man page promises are the ones in force.

The test machine's PID 1 is not systemd, so the unit is checked with
`systemd-analyze verify` (syntax, directive names and values, the binary
it starts), not started.
"""

import os
import shutil
import subprocess

import harness as H
from harness import check


def unit_path():
    vrotd = os.environ.get("VROT_VROTD") or os.path.join(H.TOP, "build", "daemon", "vrotd")
    path = os.path.join(os.path.dirname(vrotd), "vrotd.service")
    if not os.path.exists(path):
        raise H.Failure(f"no generated unit at {path}: build first")
    return vrotd, path


def settings(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def test_unit_verifies():
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        raise H.Failure("systemd-analyze is missing: scripts/install-deps.sh installs systemd")
    vrotd, path = unit_path()
    with H.Harness("vrot-unit") as h:
        with open(path) as f:
            text = f.read()
        # The installed unit names the installed binary; check this build's.
        text = "".join(f"ExecStart={vrotd}\n" if line.startswith("ExecStart=") else line
                       for line in text.splitlines(keepends=True))
        local = h.path("vrotd.service")
        with open(local, "w") as f:
            f.write(text)
        r = subprocess.run([analyze, "verify", "--man=no", local], capture_output=True, text=True,
                           timeout=120)
        check(r.returncode == 0, f"systemd-analyze verify failed ({r.returncode}):\n{r.stderr}")
        check("vrotd.service" not in r.stderr, f"systemd complains about the unit:\n{r.stderr}")
        # A broken copy must fail, or the check above proves nothing.
        bad = h.path("broken.service")
        with open(bad, "w") as f:
            f.write(text.replace("KillMode=process", "KillMode=sideways"))
        r = subprocess.run([analyze, "verify", "--man=no", bad], capture_output=True, text=True,
                           timeout=120)
        check("kill mode" in r.stderr.lower(), f"a bad KillMode went unnoticed:\n{r.stderr}")


def test_unit_settings():
    _, path = unit_path()
    with open(path) as f:
        s = settings(f.read())
    want = {
        "KillMode": "process",            # workers survive a crash, adoption
        "RuntimeDirectoryPreserve": "yes",  # /run/vrot/resume across restarts
        "StateDirectoryMode": "0700",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
        "DeviceAllow": "/dev/tpmrm0 rw",
        "RestrictNamespaces": "yes",
        "MemoryDenyWriteExecute": "yes",
        "Restart": "on-failure",
    }
    for k, v in want.items():
        check(s.get(k) == v, f"{k}={s.get(k)!r}, want {v!r}")
    caps = set(s.get("CapabilityBoundingSet", "").split())
    check(caps and not caps & {"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_NET_ADMIN", "CAP_SYS_MODULE"},
          f"capability bounding set {sorted(caps)}")
    families = set(s.get("RestrictAddressFamilies", "").split())
    check(families == {"AF_UNIX", "AF_INET", "AF_INET6"}, f"address families {sorted(families)}")


if __name__ == "__main__":
    H.main([test_unit_verifies, test_unit_settings])
