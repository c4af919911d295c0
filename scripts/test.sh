#!/bin/sh
# Builds vrot three times and runs every test: as built for production
# (warnings are errors), the fuzz targets with clang's libFuzzer, and everything
# again with AddressSanitizer and UndefinedBehaviorSanitizer.
# The output ends with meson test's summary of the sanitizer run.
set -eu
cd "$(dirname "$0")/.."

setup() {   # setup DIR [meson options...]
    dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@"
    fi
    meson compile -C "$dir"
}

# -Dfault_injection: the crash tests stop vrotd at migration steps (daemon/fault.h).
setup build -Dwerror=true -Dfault_injection=true
meson test -C build --print-errorlogs

# Every parser of untrusted input under libFuzzer, for a bounded time each.
CC=clang setup build-fuzz -Dwerror=true -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dfuzz_seconds=${VROT_FUZZ_SECONDS:-30}
meson test -C build-fuzz --suite fuzz --print-errorlogs

setup build-sanitize -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false -Dfault_injection=true
VROT_CRASH_KILLS=${VROT_CRASH_KILLS_SANITIZE:-40} \
    meson test -C build-sanitize --setup=sanitize --print-errorlogs
