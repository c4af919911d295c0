#!/bin/sh
# The main job, for now: build vrot, start one vrot-vtpm worker with a fresh
# random state key, boot a QEMU guest against it and print what the guest
# sees of its TPM 2.0 (its PCRs and random bytes).
set -eu
cd "$(dirname "$0")/.."

if [ -f build/build.ninja ]; then
    meson setup --reconfigure build >/dev/null
else
    meson setup build
fi
meson compile -C build
exec python3 scripts/demo.py --build build
