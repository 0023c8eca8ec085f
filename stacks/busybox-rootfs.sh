#!/usr/bin/env bash
# Builds a tiny stack: a root file system tarball with only a static busybox (sh, httpd, the
# usual tools), for `zeroku stacks:import NAME OUT.tar`. Needs Debian's busybox-static.
#
#   stacks/busybox-rootfs.sh /tmp/zk-busybox.tar
#
# Any root file system works as a stack: `debootstrap bookworm DIR && tar -C DIR -cf out.tar .`
# for a Debian one, or `docker export $(docker create IMAGE) > out.tar` from an image you have.
set -euo pipefail
OUT="${1:?usage: stacks/busybox-rootfs.sh OUT.tar}"
BB="${BUSYBOX:-/bin/busybox}"
{ ldd "$BB" 2>&1 || true; } | grep -q "not a dynamic executable" || {
  echo "stacks/busybox-rootfs.sh: $BB is not a static busybox (apt-get install busybox-static)" >&2
  exit 1
}
ROOT="$(mktemp -d)"
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,app,proc,sys,dev}
cp "$BB" "$ROOT/bin/busybox"
for applet in $("$BB" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$ROOT/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ROOT/etc/group"
chmod 1777 "$ROOT/tmp"
tar --numeric-owner --owner=0 --group=0 -C "$ROOT" -cf "$OUT" .
echo "$OUT: $(du -h "$OUT" | cut -f1), busybox $("$BB" | head -1 | awk '{print $2}')"
