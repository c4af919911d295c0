#!/bin/sh
# Builds vrot twice and runs every test: once as built for production
# (warnings are errors), once with AddressSanitizer and UndefinedBehaviorSanitizer.
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

setup build -Dwerror=true
meson test -C build --print-errorlogs

setup build-sanitize -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false
VROT_CRASH_KILLS=${VROT_CRASH_KILLS_SANITIZE:-40} \
    meson test -C build-sanitize --setup=sanitize --print-errorlogs
