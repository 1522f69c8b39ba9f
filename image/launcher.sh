#!/bin/sh
# Launcher of the CT-Ops appliance image, installed as bin/ct-ops-appliance and
# bin/ct-ops-bundle: runs dist/<its own name>.js of the image with the image's own
# Node (runtime/bin/node), so the host needs no Node.js. It follows symlinks to find
# the image (/usr/local/bin/ct-ops-appliance -> /opt/ct-ops/current/bin/ct-ops-appliance
# -> /opt/ct-ops/<version>/bin/...). Built by scripts/build-image.mjs from image/launcher.sh.
#
# Exit codes: those of the program it runs; 127 when the image's Node or the program
# is missing (a damaged or partial image).
set -eu

self=$0
# readlink without -f: POSIX has no -f, and a relative link target is relative to the link's folder.
while [ -L "$self" ]; do
  target=$(readlink "$self")
  case $target in
    /*) self=$target ;;
    *) self=$(dirname "$self")/$target ;;
  esac
done
name=$(basename "$self")
top=$(cd "$(dirname "$self")/.." && pwd -P)

node="$top/runtime/bin/node"
program="$top/dist/$name.js"
if [ ! -x "$node" ] || [ ! -f "$program" ]; then
  echo "$name: the image at $top is incomplete ($node or $program is missing); verify it with its SHA256SUMS" >&2
  exit 127
fi
CT_OPS_LAUNCHER=$name
export CT_OPS_LAUNCHER
exec "$node" "$program" "$@"
