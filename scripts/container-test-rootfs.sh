#!/usr/bin/env bash
# Writes a tarball of a minimal root filesystem for the container tests (no registry:
# `docker import` / `podman import` turn it into an image): the host's dash as /bin/sh,
# node, socat, curl and a few coreutils, each with the shared libraries ldd lists.
# Usage: container-test-rootfs.sh OUT.tar
set -euo pipefail
out=$1
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
copy() {
  local file=$1
  mkdir -p "$root$(dirname "$file")"
  cp -L "$file" "$root$file"
}
for tool in dash node socat curl cat rm grep sleep ls touch stat env id mkdir tr sort sed; do
  bin=$(command -v "$tool")
  real=$(readlink -f "$bin")
  copy "$real"
  [ "$bin" = "$real" ] || { mkdir -p "$root$(dirname "$bin")"; ln -sf "$real" "$root$bin"; }
  # Every library the binary loads, and the loader itself (ldd lists it by absolute path).
  for lib in $(ldd "$real" | grep -o '/[^ ]*' | sort -u); do copy "$lib"; done
done
mkdir -p "$root/bin" "$root/usr/bin" "$root/tmp" "$root/run" "$root/etc" "$root/proc" "$root/dev" "$root/sys"
ln -sf "$(readlink -f "$(command -v dash)")" "$root/bin/sh"
# node where the official node images keep it, not at the host's path: what runs node inside
# must find it on PATH (a host path would only work by luck).
node=$(readlink -f "$(command -v node)")
mkdir -p "$root/usr/local/bin"
mv "$root$node" "$root/usr/local/bin/node"
rm -f "$root$(command -v node)"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
tar -C "$root" -cf "$out" .
