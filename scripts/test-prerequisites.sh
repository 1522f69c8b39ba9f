#!/bin/sh
# The Debian packages the test suite runs, and the one place that lists them: `npm test` runs this
# first (package.json pretest) and so does .ci/run. Installed packages are only looked up (dpkg-query),
# so with everything present this needs no network and changes nothing. What is missing is installed
# with apt-get when run as root; otherwise it exits 69 naming the packages and the command to run.
#
# Why each package:
# python3-grpcio + python3-grpc-tools + python3-protobuf: an independent gRPC implementation drives the
# appliance; python3-cryptography: tests read keys with it. openssl: tests read the agent's key files
# with it. minisign: the standard tool verifies our signatures. shellcheck, systemd (systemd-analyze
# verify), debootstrap: install scripts are linted, units verified, and install.sh runs in a Debian root.
# llvm (llvm-strip, llvm-objcopy signs darwin executables), file, qemu-user + arm64 cross libc (runs the
# linux-arm64 agent), wine (runs the windows-x64 agent), zip/unzip (bundles read back by real tools).
# rpm, pacman-package-manager + makepkg (+ libarchive-tools for its bsdtar): the inventory parsers read
# real rpm and pacman output of packages built and installed in a private root by the tests.
# systemd-container: systemd-nspawn boots a real systemd in the Debian root, which runs the installed
# agent under its hardened unit. libarchive-tools' bsdtar and python3's zipfile also read the hostile
# zips of the bundle verifier's differential tests. faketime (libfaketime): agents and appliances run
# with their own clock shifted by minutes or days (the appliance judges freshness, not the agent's clock).
# age: the standard tool decrypts an appliance backup (util-linux's script(1), essential, gives it a terminal).
# g++, make, g++-aarch64-linux-gnu, binutils (objdump): the appliance image compiles better-sqlite3 for
# its own Node with node-gyp, for x64 and cross for arm64, and reads the glibc its ELF files need.
# skopeo, umoci, podman: tools that did not write the appliance's OCI archive read, copy, unpack and load
# it (podman into a private vfs store; no container runs).
# postgresql: the store's PostgreSQL backend is tested against a real PostgreSQL 15 cluster that each test
# file starts privately (test/helpers/postgres.ts: initdb in a temp directory, a free loopback port).
# chromium: the admin console's end-to-end tests drive Debian's chromium with playwright-core
# (test/helpers/browser.ts), offline and trusting the appliance's certificate by its key.
set -eu

PACKAGES='openssl python3 python3-grpcio python3-grpc-tools python3-protobuf python3-cryptography
minisign shellcheck systemd debootstrap
llvm file qemu-user libc6-arm64-cross libstdc++6-arm64-cross wine wine64 zip unzip
rpm pacman-package-manager makepkg libarchive-tools systemd-container faketime
age g++ make g++-aarch64-linux-gnu binutils
skopeo umoci podman
postgresql chromium'

EX_UNAVAILABLE=69
me=test-prerequisites

if ! command -v dpkg-query >/dev/null 2>&1; then
  printf '%s\n' "$me: the test suite needs a Debian-based system (no dpkg-query here) with these packages:" "$PACKAGES" >&2
  exit "$EX_UNAVAILABLE"
fi

# One dpkg-query for all (it names only the packages it knows; unknown ones count as missing).
# shellcheck disable=SC2086 # one word per package
installed=" $(dpkg-query -W -f='${Package} ${db:Status-Status}\n' $PACKAGES 2>/dev/null | awk '$2 == "installed" { printf "%s ", $1 }')"
missing=''
for package in $PACKAGES; do
  case "$installed" in
    *" $package "*) ;;
    *) missing="$missing $package" ;;
  esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "$me: the test suite needs Debian packages that are not installed:$missing" >&2
  echo "$me: install them with: sudo scripts/test-prerequisites.sh   (from the repository's folder)" >&2
  exit "$EX_UNAVAILABLE"
fi

echo "$me: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086 # one word per package
apt-get install -y --no-install-recommends $missing
