#!/bin/sh
# Fetch the vmlinuz of Debian's current amd64 kernel for the guest boot test.
#
# Downloads the versioned linux-image package that linux-image-amd64 depends
# on with `apt-get download` (the package is NOT installed) and extracts only
# its /boot/vmlinuz-* to $VROT_KERNEL_CACHE/vmlinuz (default
# /var/cache/vrot-test/vmlinuz).  Idempotent: does nothing if the file is
# already there.  Prints the path on stdout.  Needs root (apt, /var/cache).
set -eu

cache=${VROT_KERNEL_CACHE:-/var/cache/vrot-test}
dest=$cache/vmlinuz

if [ -s "$dest" ]; then
    echo "$dest"
    exit 0
fi

# "  Depends: linux-image-6.1.0-NN-amd64" -> linux-image-6.1.0-NN-amd64
pkg=$(apt-cache depends linux-image-amd64 |
      sed -n 's/^[ |]*Depends: *\(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
if [ -z "$pkg" ]; then
    echo "get-kernel.sh: cannot resolve the kernel package behind linux-image-amd64" \
         "(run apt-get update?)" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# apt-get downloads into the current directory as the unprivileged _apt user
# when it can write there; give it the directory to keep the sandbox.
if id _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi
(cd "$tmp" && apt-get download -q "$pkg" >&2)
set -- "$tmp"/*.deb
deb=$1

mkdir -p "$tmp/x"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards './boot/vmlinuz-*'
set -- "$tmp"/x/boot/vmlinuz-*
kernel=$1

mkdir -p "$cache"
cp "$kernel" "$dest.tmp"
mv "$dest.tmp" "$dest"
echo "get-kernel.sh: $pkg -> $dest" >&2
echo "$dest"
