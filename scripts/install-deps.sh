#!/bin/sh
# Installs what vrot needs to build and test on Debian 12, if it is missing,
# and fetches the guest kernel for the QEMU tests.  Safe to run again: when
# everything is there it changes nothing.
set -eu

PACKAGES="
  meson ninja-build pkg-config gcc python3 openssl
  libtpms-dev libssl-dev libseccomp-dev libcunit1-dev scdoc
  libglib2.0-dev libjson-glib-dev libtss2-dev libxml2-dev
  swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0 libtss2-tcti-cmd0 tpm2-openssl
  qemu-system-x86 busybox-static cpio
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
  clang
  systemd
"

sudo=
if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
fi

missing=
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    echo "install-deps: installing:$missing" >&2
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends $missing </dev/null
fi

$sudo "$(dirname "$0")/get-kernel.sh" >/dev/null
