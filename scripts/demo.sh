#!/bin/sh
# The main job: build vrot, then scripts/demo.py: vrotd --dev in a temporary
# directory, a VM vTPM a QEMU guest boots against (PCRs, EK certificate chain
# verified), two service identities used for mutual TLS 1.3 with keys inside
# their vTPMs, a revocation that makes the handshake fail, a summary, clean-up.
set -eu
cd "$(dirname "$0")/.."

if [ -f build/build.ninja ]; then
    meson setup --reconfigure build >/dev/null
else
    meson setup build
fi
meson compile -C build
exec python3 scripts/demo.py --build build
