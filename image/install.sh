#!/bin/sh
# CT-Ops appliance installer: installs (or upgrades to) the appliance image this script sits in,
# on a Linux host with systemd, glibc and nothing else (the image brings its own Node runtime).
# docs/operations.md, "Installing the appliance from media" and "Upgrades and rollback".
#
# Run from the extracted top folder (ct-ops-appliance-<version>-linux-<arch>/). It copies the
# folder to a private staging folder under /opt/ct-ops, checks every file there against
# SHA256SUMS (and its signature), then installs exactly what it checked:
#   /opt/ct-ops/<version>/          the image (root-owned; the service account cannot write it)
#   /opt/ct-ops/current             -> <version>, switched atomically
#   /usr/local/bin/ct-ops-appliance, /usr/local/bin/ct-ops-bundle   -> /opt/ct-ops/current/bin/…
#   /etc/ct-ops/appliance.toml      written only when absent (data_dir, sans)
#   /etc/ct-ops/appliance-release.pub   the image's agent release key, which bundles are checked against
#   DATA_DIR (/var/lib/ct-ops/appliance)   0700, owned by the system user ct-ops-appliance; its parent
#                                   /var/lib/ct-ops is made 0755 root when absent, else left as it is
# The agent (installers/install.sh) may be installed on this host too: it owns /etc/ct-ops/agent.toml,
# ca.crt, release.pub and /var/lib/ct-ops/{agent,requests,helper}. Neither product touches the
# other's files (docs/decisions.md, 77).
#   /etc/systemd/system/ct-ops-appliance.service   enabled and started
# When /opt/ct-ops/current names another version this is an upgrade: the service is stopped, the
# data directory copied to /var/lib/ct-ops-backups/pre-upgrade-<old>-<UTC time>/, the new version
# started; if it is not healthy within --health-timeout, current is switched back, the data
# directory restored from that copy and the old version started again; a failed step or Ctrl-C
# after the stop brings the old version back the same way. The previous version's folder is kept
# for that; older ones are removed (two versions stay installed), and so are all but the two newest
# pre-upgrade copies (they hold the CA key).
# Once the appliance is healthy, the image's agent release (dist/agents/<version>/) is imported into
# it (`ct-ops-appliance releases import`), ready for `releases rollout`.
#
# Usage: sudo ./install.sh [options]
#   --dry-run               verify the image, print every action, change nothing
#   --data-dir DIR          the appliance's data directory (default: data_dir of an existing
#                           /etc/ct-ops/appliance.toml, else /var/lib/ct-ops/appliance); a system
#                           folder (exit 1), a symbolic link or a folder holding files that are
#                           not the appliance's (exit 7) is refused
#   --san NAME              a host name or IP address agents use to reach the appliance,
#                           written into a new appliance.toml with localhost, 127.0.0.1 and ::1
#                           (the local admin CLI uses them) (repeatable; default: those three
#                           and this machine's host name)
#   --http-port PORT        the admin HTTPS port written into a new appliance.toml (default 8443)
#   --grpc-port PORT        the agents' gRPC port written into a new appliance.toml (default 9443)
#   --release-key KEY       refuse the image unless SHA256SUMS.minisig verifies with this release
#                           public key: its base64 line "RW...", obtained out of band. Checked with
#                           this host's minisign, or the verifier of an earlier install, never with
#                           one from the media; without either it is refused (exit 5). This script
#                           itself comes from the media: the check that counts is minisign -V on
#                           the transfer station, before extracting (docs/operations.md)
#   --release-key-id ID     with --release-key: the key id (16 hex digits) the key must have
#   --health-timeout SECS   how long the started appliance has to answer /healthz (default 60)
#   --yes                   do not ask before an upgrade
#   -h, --help              show this help
#
# Exit codes:
#   0  installed, upgraded, or already installed (nothing changed)
#   1  usage error
#   2  not running as root
#   3  wrong platform: another CPU than the image's, no glibc or one older than 2.34, the image's
#      Node or SQLite addon does not load here, no systemd
#   4  image verification failed: checksum mismatch, missing, extra or unsafe file, bad signature
#   5  a required tool is missing (sha256sum, systemctl, useradd; with --release-key: minisign or
#      an installed verifier)
#   6  an install step failed, or another install held the lock too long; during an upgrade the
#      previous version is brought back and started again (exit 9 if that failed; 130 on Ctrl-C)
#   7  preflight refused: not enough free space (for the data, or in /var/lib/ct-ops-backups for
#      the pre-upgrade copy), port 8443/9443 (or those configured) held by another program, or the
#      data directory is a symbolic link, not a folder, or holds files that are not the appliance's
#   8  the started version did not become healthy: after an upgrade the previous version runs
#      again on the untouched pre-upgrade data; after a first install the service is stopped
#   9  the upgrade failed AND the rollback did not bring the previous version back: see journalctl
set -eu
umask 022
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

readonly EX_USAGE=1 EX_NOT_ROOT=2 EX_PLATFORM=3 EX_TAMPERED=4 EX_MISSING_TOOL=5 EX_STEP=6 EX_PREFLIGHT=7 EX_UNHEALTHY=8 EX_ROLLBACK_FAILED=9
readonly SERVICE_USER=ct-ops-appliance UNIT=ct-ops-appliance.service
readonly OPT=/opt/ct-ops CONFIG=/etc/ct-ops/appliance.toml RELEASE_KEY_FILE=/etc/ct-ops/appliance-release.pub BACKUPS=/var/lib/ct-ops-backups
readonly UNIT_FILE=/etc/systemd/system/$UNIT DROPIN_DIR=/etc/systemd/system/$UNIT.d
# The data directory the unit lets the service write (its ReadWritePaths=); others get a drop-in.
readonly DEFAULT_DATA_DIR=/var/lib/ct-ops/appliance
# The newest glibc symbol version the image's Node and SQLite addon use (the image's README names it,
# from objdump -T); the runtime is also started once after verification, which proves the rest.
readonly GLIBC_MIN_MAJOR=2 GLIBC_MIN_MINOR=34

say() { printf 'ct-ops-appliance install: %s\n' "$*"; }
warn() { printf 'ct-ops-appliance install: WARNING: %s\n' "$*" >&2; }
die() {
  code=$1
  shift
  printf 'ct-ops-appliance install: error: %s\n' "$*" >&2
  exit "$code"
}
usage() { sed -n '/^# Usage:/,/^# *-h, --help/s/^# \{0,1\}//p' "$0"; }

DRY_RUN=0
DATA_DIR=
SANS=
RELEASE_KEY=
RELEASE_KEY_ID=
HEALTH_TIMEOUT=60
ASSUME_YES=0
HTTP_PORT_FLAG=
GRPC_PORT_FLAG=
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --data-dir) [ $# -ge 2 ] || die $EX_USAGE "--data-dir needs a directory"; DATA_DIR=$2; shift ;;
    --data-dir=*) DATA_DIR=${1#--data-dir=} ;;
    --san) [ $# -ge 2 ] || die $EX_USAGE "--san needs a name"; SANS="$SANS $2"; shift ;;
    --san=*) SANS="$SANS ${1#--san=}" ;;
    --release-key) [ $# -ge 2 ] || die $EX_USAGE "--release-key needs a key"; RELEASE_KEY=$2; shift ;;
    --release-key=*) RELEASE_KEY=${1#--release-key=} ;;
    --release-key-id) [ $# -ge 2 ] || die $EX_USAGE "--release-key-id needs a key id"; RELEASE_KEY_ID=$2; shift ;;
    --release-key-id=*) RELEASE_KEY_ID=${1#--release-key-id=} ;;
    --http-port) [ $# -ge 2 ] || die $EX_USAGE "--http-port needs a port"; HTTP_PORT_FLAG=$2; shift ;;
    --http-port=*) HTTP_PORT_FLAG=${1#--http-port=} ;;
    --grpc-port) [ $# -ge 2 ] || die $EX_USAGE "--grpc-port needs a port"; GRPC_PORT_FLAG=$2; shift ;;
    --grpc-port=*) GRPC_PORT_FLAG=${1#--grpc-port=} ;;
    --health-timeout) [ $# -ge 2 ] || die $EX_USAGE "--health-timeout needs seconds"; HEALTH_TIMEOUT=$2; shift ;;
    --health-timeout=*) HEALTH_TIMEOUT=${1#--health-timeout=} ;;
    --yes) ASSUME_YES=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die $EX_USAGE "unknown argument: $1" ;;
  esac
  shift
done
case $HEALTH_TIMEOUT in '' | *[!0-9]*) die $EX_USAGE "--health-timeout must be whole seconds" ;; esac
{ [ "$HEALTH_TIMEOUT" -ge 1 ] && [ "$HEALTH_TIMEOUT" -le 3600 ]; } || die $EX_USAGE "--health-timeout must be from 1 to 3600 seconds"
for port in $HTTP_PORT_FLAG $GRPC_PORT_FLAG; do
  case $port in *[!0-9]*) die $EX_USAGE "a port is a number from 1 to 65535, not $port" ;; esac
  { [ "$port" -ge 1 ] && [ "$port" -le 65535 ]; } || die $EX_USAGE "a port is a number from 1 to 65535, not $port"
done
# Names go into appliance.toml and paths into a unit file: only characters that need no quoting pass.
for san in $SANS; do
  case $san in *[!A-Za-z0-9.:-]*) die $EX_USAGE "--san $san: a host name or IP address may hold only letters, digits, '.', '-' and ':'" ;; esac
done
# Checked with the data directory an existing appliance.toml names (preflight, below).
[ "$DATA_DIR" = / ] || DATA_DIR=${DATA_DIR%/}
case $RELEASE_KEY in *[!A-Za-z0-9+/=]*) die $EX_USAGE "--release-key is the base64 line of a minisign public key (RW...)" ;; esac
if [ -n "$RELEASE_KEY_ID" ] && [ -z "$RELEASE_KEY" ]; then
  die $EX_USAGE "--release-key-id alone proves nothing (anyone can make a key with any id): give the full key with --release-key RW..."
fi

# The image folder is the directory this script sits in.
case $0 in */*) IMAGE_DIR=${0%/*} ;; *) IMAGE_DIR=. ;; esac
IMAGE_DIR=$(cd "$IMAGE_DIR" && pwd -P) || die $EX_USAGE "cannot enter the image folder"

# run CMD ARGS...: performs one action, or prints it under --dry-run.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run]'
    printf ' %s' "$@"
    printf '\n'
  else
    "$@" || die $EX_STEP "failed: $*"
  fi
}

# outcome MESSAGE: says what the run achieved; a dry run achieved nothing and prints no outcome.
outcome() { [ "$DRY_RUN" = 1 ] || say "$*"; }

# --- preflight: who, where -------------------------------------------------------------------

if [ "$(id -u)" != 0 ] && [ "$DRY_RUN" = 0 ]; then
  die $EX_NOT_ROOT "must run as root (try: sudo $0)"
fi
[ "$(uname -s)" = Linux ] || die $EX_PLATFORM "the appliance runs on Linux only, not $(uname -s)"

VERSION=$(sed -n 's/^[[:space:]]*"version"[[:space:]]*:[[:space:]]*"\([0-9A-Za-z.+-]*\)".*$/\1/p' "$IMAGE_DIR/package.json" 2>/dev/null | head -n 1)
[ -n "$VERSION" ] || die $EX_TAMPERED "package.json names no version: is this an extracted ct-ops-appliance image folder?"

# The image's CPU is the one its Node runtime is built for: the ELF header's e_machine field.
[ -f "$IMAGE_DIR/runtime/bin/node" ] || die $EX_TAMPERED "runtime/bin/node is missing from the image"
case $(od -An -j 18 -N 2 -tx1 "$IMAGE_DIR/runtime/bin/node" | tr -d ' \n') in
  3e00) IMAGE_ARCH=x64 ;;
  b700) IMAGE_ARCH=arm64 ;;
  *) die $EX_TAMPERED "runtime/bin/node is not an x86-64 or aarch64 executable" ;;
esac
case $(uname -m) in
  x86_64 | amd64) HOST_ARCH=x64 ;;
  aarch64 | arm64) HOST_ARCH=arm64 ;;
  *) HOST_ARCH=$(uname -m) ;;
esac
[ "$IMAGE_ARCH" = "$HOST_ARCH" ] || die $EX_PLATFORM "this image is for linux-$IMAGE_ARCH but this machine is linux-$HOST_ARCH"

glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc \([0-9]*\)\.\([0-9]*\).*$/\1 \2/p')
[ -n "$glibc" ] || die $EX_PLATFORM "no GNU C library found (getconf GNU_LIBC_VERSION): the image's Node runtime needs glibc $GLIBC_MIN_MAJOR.$GLIBC_MIN_MINOR or later (musl-based systems such as Alpine are not supported)"
# shellcheck disable=SC2086 # two numbers, split on purpose
set -- $glibc
if [ "$1" -lt "$GLIBC_MIN_MAJOR" ] || { [ "$1" -eq "$GLIBC_MIN_MAJOR" ] && [ "$2" -lt "$GLIBC_MIN_MINOR" ]; }; then
  die $EX_PLATFORM "glibc $1.$2 is too old: the image's Node runtime needs $GLIBC_MIN_MAJOR.$GLIBC_MIN_MINOR or later"
fi
set --

for tool in sha256sum systemctl; do
  command -v "$tool" >/dev/null 2>&1 || die $EX_MISSING_TOOL "$tool is missing: the installer needs it"
done
[ -d /run/systemd/system ] || [ "$DRY_RUN" = 1 ] || die $EX_PLATFORM "systemd is not running on this machine (no /run/systemd/system): the appliance is installed as a systemd service"

# --- one install or uninstall at a time ------------------------------------------------------

if [ "$DRY_RUN" = 0 ]; then
  if command -v flock >/dev/null 2>&1; then
    exec 9>/run/ct-ops-appliance-install.lock
    flock -w 600 9 || die $EX_STEP "another ct-ops-appliance install or uninstall still holds /run/ct-ops-appliance-install.lock"
  fi
fi

# --- preflight: the image is exactly what SHA256SUMS lists -----------------------------------

# verify_tree DIR: every file of DIR is listed in DIR/SHA256SUMS with its checksum, and nothing
# else is there (besides SHA256SUMS and its signature). Only plain files and folders: a symbolic
# link or device could point the install outside the image.
verify_tree() {
  tree=$1
  sums=$tree/SHA256SUMS
  if [ -L "$sums" ] || [ ! -f "$sums" ]; then die $EX_TAMPERED "SHA256SUMS is missing from the image"; fi
  if grep -Evx '[0-9a-f]{64}  [A-Za-z0-9_][A-Za-z0-9._/+-]*' "$sums" >/dev/null || grep -E '(^|/)\.\.?(/|$)|//' "$sums" >/dev/null; then
    die $EX_TAMPERED "SHA256SUMS has a malformed line or an unsafe path"
  fi
  odd=$(cd "$tree" && find . ! -type f ! -type d | head -n 1)
  [ -z "$odd" ] || die $EX_TAMPERED "the image holds something other than plain files and folders: $odd"
  cut -d ' ' -f 3 "$sums" | LC_ALL=C sort >"$SCRATCH/listed"
  (cd "$tree" && find . -type f ! -path ./SHA256SUMS ! -path ./SHA256SUMS.minisig | sed 's|^\./||' | LC_ALL=C sort) >"$SCRATCH/present"
  unlisted=$(LC_ALL=C comm -13 "$SCRATCH/listed" "$SCRATCH/present" | head -n 1)
  [ -z "$unlisted" ] || die $EX_TAMPERED "unexpected file in the image (not in SHA256SUMS): $unlisted"
  missing=$(LC_ALL=C comm -23 "$SCRATCH/listed" "$SCRATCH/present" | head -n 1)
  [ -z "$missing" ] || die $EX_TAMPERED "a file listed in SHA256SUMS is missing: $missing"
  if ! mismatched=$(cd "$tree" && sha256sum --quiet -c SHA256SUMS 2>/dev/null); then
    die $EX_TAMPERED "checksum mismatch: the image was altered or damaged: $(printf '%s\n' "$mismatched" | head -n 3 | tr '\n' ' ')"
  fi
}

# key_id_of KEY: the key id inside a public key's base64 line, as minisign prints it.
key_id_of() {
  printf '%s\n' "$1" | base64 -d 2>/dev/null | head -c 10 | tail -c 8 | od -An -v -tx1 |
    awk '{ for (i = NF; i >= 1; i--) id = id $i } END { print toupper(id) }'
}

# trusted_verifier: a minisign verifier that does not come from the media being checked (only
# SHA256SUMS, which the signature is to prove, vouches for the media's own installers/install.sh):
# "minisign" when the host has it, else the path of an installed, root-owned verify-minisig
# (installers/install.sh of an earlier verified appliance install, or the agent's copy). Prints
# nothing when there is none.
trusted_verifier() {
  if command -v minisign >/dev/null 2>&1; then echo minisign; return 0; fi
  for installed in "$OPT/current/installers/install.sh" /usr/local/libexec/ct-ops/install.sh; do
    # Root-owned and writable by root only, or it proves nothing.
    if [ -f "$installed" ] && [ ! -L "$installed" ] && [ "$(stat -L -c '%u' "$installed")" = 0 ] &&
      [ -z "$(find "$installed" -perm /022)" ]; then
      echo "$installed"
      return 0
    fi
  done
}

# verify_signature DIR: SHA256SUMS.minisig is a signature of DIR/SHA256SUMS by --release-key,
# checked by trusted_verifier (never by a program from DIR; docs/decisions.md, 79).
verify_signature() {
  if [ -z "$RELEASE_KEY" ]; then
    warn "the image's signature was NOT checked (no --release-key): this host trusts the media it was given."
    warn "Check it with minisign -V at the transfer station, or pass --release-key RW... (docs/operations.md)."
    return 0
  fi
  if [ -n "$RELEASE_KEY_ID" ] && [ "$(key_id_of "$RELEASE_KEY")" != "$(printf '%s' "$RELEASE_KEY_ID" | tr 'a-f' 'A-F')" ]; then
    die $EX_USAGE "the release key given has key id $(key_id_of "$RELEASE_KEY"), not $RELEASE_KEY_ID"
  fi
  if [ -L "$1/SHA256SUMS.minisig" ] || [ ! -f "$1/SHA256SUMS.minisig" ]; then die $EX_TAMPERED "SHA256SUMS.minisig is missing from the image"; fi
  verifier=$(trusted_verifier)
  if [ -z "$verifier" ]; then
    die $EX_MISSING_TOOL "cannot check SHA256SUMS.minisig: this host has no minisign and no verifier from an earlier install, and the media's own verifier proves nothing. Verify the image on the transfer station (minisign -Vm SHA256SUMS -P RW...) before extracting it, or install minisign here"
  fi
  if [ "$verifier" = minisign ]; then
    printf 'untrusted comment: CT-Ops release key\n%s\n' "$RELEASE_KEY" >"$SCRATCH/release.pub"
    verified=0
    why=$(minisign -V -q -p "$SCRATCH/release.pub" -m "$1/SHA256SUMS" -x "$1/SHA256SUMS.minisig" 2>&1 >/dev/null) && verified=1
  else
    verified=0
    why=$(sh "$verifier" verify-minisig "$1/SHA256SUMS" "$1/SHA256SUMS.minisig" "$RELEASE_KEY" 2>&1 >/dev/null) && verified=1
  fi
  if [ "$verified" = 0 ]; then
    why=${why:-signature-mismatch}
    case $why in no-verifier) die $EX_MISSING_TOOL "cannot check SHA256SUMS.minisig with $verifier: no minisign, and openssl cannot verify Ed25519 (OpenSSL 1.1.1 or later needed)" ;; esac
    die $EX_TAMPERED "SHA256SUMS.minisig does not verify with release key $(key_id_of "$RELEASE_KEY") ($why): the image was altered or signed by another key"
  fi
  say "SHA256SUMS signature verified with release key $(key_id_of "$RELEASE_KEY")"
}

# Never $TMPDIR: root may run with a TMPDIR another user can write (sudo -E).
SCRATCH=$(mktemp -d /tmp/ct-ops-appliance-install.XXXXXXXX) || die $EX_STEP "cannot create a scratch folder"
STAGE=
# Set while an upgrade has the service stopped and has not finished: any exit then (a failed step,
# Ctrl-C) rolls back (roll_back, below).
UPGRADING=0
# on_exit: rolls an unfinished upgrade back, removes the scratch and staging folders, keeps the exit
# code (or makes it 9 when the rollback failed).
on_exit() {
  status=$?
  if [ "$UPGRADING" = 1 ]; then
    warn "the upgrade to $VERSION stopped before it finished (exit $status): bringing $UPGRADE_FROM back"
    if roll_back; then
      warn "$UPGRADE_FROM was started again on the data as it was before the upgrade"
    else
      warn "the rollback to $UPGRADE_FROM failed: see journalctl -u $UNIT and docs/operations.md"
      status=$EX_ROLLBACK_FAILED
    fi
  fi
  rm -rf "$SCRATCH" ${STAGE:+"$STAGE"}
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT TERM HUP

# What is installed now: the version current names, and whether its folder is this very image.
PREVIOUS=
[ -L "$OPT/current" ] && PREVIOUS=$(readlink "$OPT/current")
SAME_INSTALLED=0
if [ -f "$OPT/$VERSION/SHA256SUMS" ] && cmp -s "$OPT/$VERSION/SHA256SUMS" "$IMAGE_DIR/SHA256SUMS" &&
  (cd "$OPT/$VERSION" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1); then
  SAME_INSTALLED=1
fi

if [ "$DRY_RUN" = 1 ] || [ "$SAME_INSTALLED" = 1 ]; then
  # Nothing will be copied from the media: check it where it is.
  verify_tree "$IMAGE_DIR"
  verify_signature "$IMAGE_DIR"
  say "all $(wc -l <"$IMAGE_DIR/SHA256SUMS" | tr -d ' ') image files match SHA256SUMS"
else
  # The copy that will be installed is the copy that is checked: nothing on the media can change in between.
  run mkdir -p "$OPT"
  run chmod 0755 "$OPT"
  # Staging folders of installs that were killed (this one holds the lock, so no other is running).
  for stale in "$OPT"/.staging-*; do
    [ ! -d "$stale" ] || rm -rf "$stale"
  done
  STAGE=$(mktemp -d "$OPT/.staging-$VERSION.XXXXXXXX") || die $EX_STEP "cannot create a staging folder in $OPT"
  # -p keeps the build time as the files' mtime: doctor's clock check compares the clock with it.
  cp -Rp "$IMAGE_DIR/." "$STAGE/" || die $EX_STEP "cannot copy the image to $STAGE"
  verify_tree "$STAGE"
  verify_signature "$STAGE"
  say "all $(wc -l <"$STAGE/SHA256SUMS" | tr -d ' ') image files match SHA256SUMS"
  # The version was read from the media before the copy: the verified copy must name the same.
  [ "$(sed -n 's/^[[:space:]]*"version"[[:space:]]*:[[:space:]]*"\([0-9A-Za-z.+-]*\)".*$/\1/p' "$STAGE/package.json" | head -n 1)" = "$VERSION" ] ||
    die $EX_TAMPERED "package.json changed on the media while it was being copied"
  # Root-owned, writable by root only, whatever the tarball or the media said.
  { chown -R 0:0 "$STAGE" && chmod -R u+rwX,go+rX,go-w "$STAGE" && chmod 0755 "$STAGE"; } || die $EX_STEP "cannot set the owner and modes of $STAGE"
fi

# The verified runtime must run here and load the verified addon (a missing library or glibc symbol
# shows now, not as a crash-looping service).
checked=${STAGE:-$IMAGE_DIR}
[ "$SAME_INSTALLED" = 0 ] || checked=$OPT/$VERSION
if ! loaded=$("$checked/runtime/bin/node" -e 'process.dlopen({ exports: {} }, process.argv[1]); console.log(process.version)' "$checked/dist/better_sqlite3.node" 2>&1); then
  die $EX_PLATFORM "the image's Node runtime or its SQLite addon does not run on this machine: $loaded"
fi
say "the image's Node $loaded and its SQLite addon run on this machine"

# --- preflight: settings, space, ports -------------------------------------------------------

# config_value SETTING: a setting of the existing appliance.toml as the verified appliance resolves
# it (ct-ops-appliance config; TOML is never parsed here). Run as the unit runs it: from /, with no
# CT_OPS_APPLIANCE_* variables.
config_value() {
  (cd / && env -i PATH="$PATH" "$checked/runtime/bin/node" "$checked/dist/ct-ops-appliance.js" config --config "$CONFIG" "$1") ||
    die $EX_USAGE "cannot read $1 from $CONFIG (see above): fix the file, or move it away for a new one"
}
if [ -f "$CONFIG" ]; then
  if [ -z "$DATA_DIR" ]; then DATA_DIR=$(config_value data_dir); fi
  HTTP_PORT=$(config_value http_port)
  GRPC_PORT=$(config_value grpc_port)
else
  HTTP_PORT=${HTTP_PORT_FLAG:-8443}
  GRPC_PORT=${GRPC_PORT_FLAG:-9443}
fi
[ -n "$DATA_DIR" ] || DATA_DIR=$DEFAULT_DATA_DIR
# It goes into a unit drop-in (ReadWritePaths=): only characters that need no quoting pass.
case $DATA_DIR in
  *[!A-Za-z0-9._/-]* | */../* | */.. | [!/]*) die $EX_USAGE "data directory $DATA_DIR: an absolute path of letters, digits, '.', '_', '-' and '/' only, no '..'" ;;
esac
# Every check of the data directory comes before anything is stopped or changed. install.sh chowns
# it to the service account, makes it 0700, and uninstall.sh --purge deletes it: a system folder,
# or a folder already holding something else, is refused (docs/decisions.md, 80).
case $DATA_DIR in
  / | /bin | /boot | /dev | /etc | /home | /lib | /lib32 | /lib64 | /media | /mnt | /opt | /proc | /root | /run | /sbin | /srv | /sys | /tmp | /usr | /var | \
    /var/lib | /var/log | /var/tmp | /var/cache | /var/spool | /var/mail | /var/lib/ct-ops | "$BACKUPS" | "$BACKUPS"/* | \
    /bin/* | /boot/* | /dev/* | /etc/* | /lib/* | /lib32/* | /lib64/* | /proc/* | /run/* | /sbin/* | /sys/* | /usr/* | /opt/ct-ops | /opt/ct-ops/*)
    die $EX_USAGE "data directory $DATA_DIR is a system folder (or inside one): choose a folder of its own, such as $DEFAULT_DATA_DIR" ;;
esac
if [ -L "$DATA_DIR" ]; then die $EX_PREFLIGHT "data directory $DATA_DIR is a symbolic link: refusing to use it (name the real folder)"; fi
if [ -e "$DATA_DIR" ] && [ ! -d "$DATA_DIR" ]; then die $EX_PREFLIGHT "data directory $DATA_DIR exists and is not a folder"; fi
if [ -d "$DATA_DIR" ] && [ -n "$(ls -A "$DATA_DIR")" ] && [ "$(stat -c '%U' "$DATA_DIR")" != "$SERVICE_USER" ] &&
  [ ! -f "$DATA_DIR/appliance.db" ] && [ ! -f "$DATA_DIR/ca.crt" ]; then
  die $EX_PREFLIGHT "data directory $DATA_DIR holds files that are not the appliance's: choose an empty or new folder"
fi
if [ -f "$CONFIG" ] && [ -n "$SANS$HTTP_PORT_FLAG$GRPC_PORT_FLAG" ]; then warn "$CONFIG exists and is kept: --san, --http-port and --grpc-port change nothing (edit it and restart the service)"; fi

# free_kib DIR: free space of the volume DIR (or its nearest existing parent) is on, in KiB.
free_kib() {
  dir=$1
  while [ ! -d "$dir" ]; do dir=${dir%/*}; [ -n "$dir" ] || dir=/; done
  df -Pk "$dir" | awk 'NR == 2 { print $4 }'
}
if [ "$SAME_INSTALLED" = 0 ]; then
  image_kib=$(du -sk "$IMAGE_DIR" | cut -f 1)
  # The staged copy already takes its space: only the margin must be free.
  [ "$(free_kib "$OPT")" -ge 51200 ] || die $EX_PREFLIGHT "less than 50 MiB free in $OPT besides the image ($image_kib KiB)"
fi
data_kib=0
[ -d "$DATA_DIR" ] && data_kib=$(du -sk "$DATA_DIR" | cut -f 1)
# The data needs room to grow.
[ "$(free_kib "$DATA_DIR")" -ge 262144 ] || die $EX_PREFLIGHT "less than 256 MiB free for $DATA_DIR"
# An upgrade copies the data where the pre-upgrade copies go, and that copy must fit (plus 64 MiB).
if [ -n "$PREVIOUS" ] && [ "$PREVIOUS" != "$VERSION" ] && [ "$(free_kib "$BACKUPS")" -lt $((data_kib + 65536)) ]; then
  die $EX_PREFLIGHT "less than $(((data_kib + 65536) / 1024)) MiB free in $BACKUPS for the pre-upgrade copy of the data ($data_kib KiB, plus 64 MiB)"
fi

SERVICE_ACTIVE=0
systemctl is-active --quiet "$UNIT" 2>/dev/null && SERVICE_ACTIVE=1
# port_listened PORT: something listens on TCP PORT (IPv4 or IPv6), read from /proc/net (no ss or netstat needed).
port_listened() {
  hex=$(printf '%04X' "$1")
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v port="$hex" '$4 == "0A" { split($2, local, ":"); if (local[2] == port) found = 1 } END { exit !found }'
}
if [ "$SERVICE_ACTIVE" = 0 ]; then
  for port in "$HTTP_PORT" "$GRPC_PORT"; do
    if port_listened "$port"; then die $EX_PREFLIGHT "port $port is in use by another program: the appliance listens on $HTTP_PORT (admin HTTPS) and $GRPC_PORT (agents' gRPC)"; fi
  done
fi

# --- the service account ---------------------------------------------------------------------

if ! getent passwd "$SERVICE_USER" >/dev/null 2>&1; then
  command -v useradd >/dev/null 2>&1 || die $EX_MISSING_TOOL "useradd is missing: cannot create the $SERVICE_USER account"
  run useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$SERVICE_USER"
  outcome "created the system account $SERVICE_USER (no shell, no home)"
fi

# --- upgrade: stop, copy the data aside ------------------------------------------------------

UPGRADE_FROM=
BACKUP=
# What roll_back undoes, set as each is done.
SWITCHED=0
DATA_TOUCHED=0
# The unit, its drop-in and the release key as they were before the upgrade, under SAVED/<path>.
SAVED=$SCRATCH/before-upgrade
# roll_back: brings UPGRADE_FROM back after a failed or interrupted upgrade: current, the saved
# unit, drop-in and release key, and (when the new version was started) the data from BACKUP,
# copied beside the data directory and then renamed over it; then starts the service. Returns 1
# when a step failed.
roll_back() {
  UPGRADING=0
  failed=0
  systemctl stop "$UNIT" 2>/dev/null || true
  systemctl reset-failed "$UNIT" 2>/dev/null || true
  if [ "$SWITCHED" = 1 ]; then
    { ln -sfn "$UPGRADE_FROM" "$OPT/.current.new" && mv -T "$OPT/.current.new" "$OPT/current"; } || failed=1
  fi
  for file in "$UNIT_FILE" "$DROPIN_DIR/data-dir.conf" "$RELEASE_KEY_FILE"; do
    if [ -f "$SAVED$file" ]; then
      cmp -s "$SAVED$file" "$file" || { mkdir -p "${file%/*}" && cp -p "$SAVED$file" "$file"; } || failed=1
    else
      rm -f "$file" || failed=1
    fi
  done
  systemctl daemon-reload || failed=1
  if [ -n "$BACKUP" ] && [ "$DATA_TOUCHED" = 1 ]; then
    # The new version may have migrated the data: the pre-upgrade copy comes back, and stays.
    { rm -rf "$DATA_DIR.restore" "$DATA_DIR.failed-upgrade" && cp -a "$BACKUP" "$DATA_DIR.restore" &&
      mv "$DATA_DIR" "$DATA_DIR.failed-upgrade" && mv "$DATA_DIR.restore" "$DATA_DIR" && rm -rf "$DATA_DIR.failed-upgrade"; } || failed=1
  elif [ -n "$BACKUP" ]; then
    # The data was not touched: a copy that may be partial is no use.
    rm -rf "$BACKUP" || failed=1
  fi
  systemctl start "$UNIT" || failed=1
  return $failed
}
if [ -n "$PREVIOUS" ] && [ "$PREVIOUS" != "$VERSION" ]; then
  UPGRADE_FROM=$PREVIOUS
  if [ "$ASSUME_YES" = 0 ] && [ "$DRY_RUN" = 0 ] && [ -t 0 ]; then
    printf 'Upgrade the appliance from %s to %s (the service stops for the upgrade)? [y/N] ' "$PREVIOUS" "$VERSION"
    read -r answer
    case $answer in y | Y | yes) ;; *) die $EX_USAGE "upgrade cancelled" ;; esac
  fi
  say "upgrading from $PREVIOUS to $VERSION"
  if [ "$DRY_RUN" = 0 ]; then
    for file in "$UNIT_FILE" "$DROPIN_DIR/data-dir.conf" "$RELEASE_KEY_FILE"; do
      if [ -f "$file" ]; then { mkdir -p "$SAVED${file%/*}" && cp -p "$file" "$SAVED$file"; } || die $EX_STEP "cannot save $file for a rollback"; fi
    done
    UPGRADING=1
  fi
  run systemctl stop "$UNIT"
  if [ -d "$DATA_DIR" ]; then
    BACKUP=$BACKUPS/pre-upgrade-$PREVIOUS-$(date -u +%Y%m%dT%H%M%SZ)
    run mkdir -p "$BACKUPS"
    run chmod 0700 "$BACKUPS"
    # The service is stopped: the database and its WAL are at rest, so a file copy is consistent.
    run mkdir -m 0700 "$BACKUP"
    run cp -a "$DATA_DIR/." "$BACKUP/"
    outcome "copied the data directory to $BACKUP (the rollback restores from it)"
  fi
fi

# --- the image -------------------------------------------------------------------------------

if [ "$SAME_INSTALLED" = 0 ]; then
  [ -e "$OPT/$VERSION" ] && [ "$VERSION" != "$PREVIOUS" ] && run rm -rf "$OPT/$VERSION"
  if [ "$VERSION" = "$PREVIOUS" ]; then
    # A damaged copy of the running version: replace it while the service is stopped.
    run systemctl stop "$UNIT"
    run rm -rf "$OPT/$VERSION"
  fi
  if [ "$DRY_RUN" = 1 ]; then
    run cp -Rp "$IMAGE_DIR/." "$OPT/$VERSION"
  else
    run mv "$STAGE" "$OPT/$VERSION"
  fi
  STAGE=
  outcome "installed the image to $OPT/$VERSION"
fi

# switch_current TARGET: points $OPT/current at TARGET in one rename.
switch_current() {
  run ln -sfn "$1" "$OPT/.current.new"
  run mv -T "$OPT/.current.new" "$OPT/current"
}
if [ "$PREVIOUS" != "$VERSION" ]; then
  SWITCHED=1
  switch_current "$VERSION"
  outcome "$OPT/current -> $VERSION"
fi
run mkdir -p /usr/local/bin
for command in ct-ops-appliance ct-ops-bundle; do
  if [ "$(readlink "/usr/local/bin/$command" 2>/dev/null)" != "$OPT/current/bin/$command" ]; then
    run ln -sfn "$OPT/current/bin/$command" "/usr/local/bin/$command"
    outcome "/usr/local/bin/$command -> $OPT/current/bin/$command"
  fi
done

# --- configuration, release key, data directory, unit ----------------------------------------

CHANGED=0
# put_if_different SOURCE MODE GROUP PATH: installs SOURCE as PATH (root-owned) unless it is there already.
put_if_different() {
  if [ -f "$4" ] && cmp -s "$1" "$4"; then return 0; fi
  run cp "$1" "$4.new"
  run chown "0:$3" "$4.new"
  run chmod "$2" "$4.new"
  run mv -f "$4.new" "$4"
  CHANGED=1
  outcome "wrote $4"
}

# /etc/ct-ops and /var/lib/ct-ops may be the agent's too: made when absent, never changed when present.
[ -d /etc/ct-ops ] || { run mkdir -p /etc/ct-ops && run chmod 0755 /etc/ct-ops; }
if [ ! -f "$CONFIG" ]; then
  {
    printf '# The CT-Ops appliance settings (docs/operations.md), written by install.sh on %s.\n' "$(date -u +%Y-%m-%d)"
    printf 'data_dir = "%s"\n' "$DATA_DIR"
    [ -z "$HTTP_PORT_FLAG" ] || printf 'http_port = %s\n' "$HTTP_PORT_FLAG"
    [ -z "$GRPC_PORT_FLAG" ] || printf 'grpc_port = %s\n' "$GRPC_PORT_FLAG"
    if [ -n "$SANS" ]; then
      # Loopback stays named: the admin CLI on this host calls the appliance at 127.0.0.1.
      printf 'sans = ['
      separator=
      written=
      for san in $SANS localhost 127.0.0.1 ::1; do
        case " $written " in *" $san "*) continue ;; esac
        written="$written $san"
        printf '%s"%s"' "$separator" "$san"
        separator=', '
      done
      printf ']\n'
    fi
    printf '# The agent release key bundles are checked against; install.sh replaces it with each image'"'"'s.\n'
    printf 'release_public_key_file = "%s"\n' "$RELEASE_KEY_FILE"
  } >"$SCRATCH/appliance.toml"
  put_if_different "$SCRATCH/appliance.toml" 0640 "$SERVICE_USER" "$CONFIG"
fi
# The files to install from: the installed copy (a dry run installed none: the checked media).
SOURCE_DIR=$OPT/$VERSION
[ "$DRY_RUN" = 0 ] || SOURCE_DIR=$IMAGE_DIR
# The image holds one agent release (dist/agents/<agent version>/), signed by the release key.
set -- "$SOURCE_DIR"/dist/agents/*/release.pub
{ [ $# -eq 1 ] && [ -f "$1" ]; } || die $EX_TAMPERED "the image holds no agent release key, or more than one (dist/agents/*/release.pub)"
release_pub=$1
set --
put_if_different "$release_pub" 0644 0 "$RELEASE_KEY_FILE"

if [ ! -d "$DATA_DIR" ] || [ "$(stat -c '%U %a' "$DATA_DIR")" != "$SERVICE_USER 700" ]; then
  [ -d "${DATA_DIR%/*}" ] || { run mkdir -p "${DATA_DIR%/*}" && run chmod 0755 "${DATA_DIR%/*}"; }
  run mkdir -p "$DATA_DIR"
  run chown "$SERVICE_USER:$SERVICE_USER" "$DATA_DIR"
  run chmod 0700 "$DATA_DIR"
  CHANGED=1
  outcome "data directory $DATA_DIR (0700, owner $SERVICE_USER)"
fi

UNIT_CHANGED=0
put_if_different_unit() {
  changed_before=$CHANGED
  CHANGED=0
  put_if_different "$@"
  [ "$CHANGED" = 0 ] || UNIT_CHANGED=1
  [ "$changed_before" = 0 ] || CHANGED=1
}
put_if_different_unit "$SOURCE_DIR/systemd/$UNIT" 0644 0 "$UNIT_FILE"
if [ "$DATA_DIR" != "$DEFAULT_DATA_DIR" ]; then
  # The unit lets the service write $DEFAULT_DATA_DIR only: another data directory is added here.
  printf '# Written by install.sh: the data directory named in %s.\n[Service]\nReadWritePaths=%s\n' "$CONFIG" "$DATA_DIR" >"$SCRATCH/data-dir.conf"
  run mkdir -p "$DROPIN_DIR"
  put_if_different_unit "$SCRATCH/data-dir.conf" 0644 0 "$DROPIN_DIR/data-dir.conf"
elif [ -f "$DROPIN_DIR/data-dir.conf" ]; then
  run rm -f "$DROPIN_DIR/data-dir.conf"
  UNIT_CHANGED=1
fi
[ "$UNIT_CHANGED" = 0 ] || run systemctl daemon-reload
if ! systemctl is-enabled --quiet "$UNIT" 2>/dev/null; then
  run systemctl enable "$UNIT"
  CHANGED=1
fi

# --- start and judge -------------------------------------------------------------------------

# healthy COMMAND-DIR: the appliance answers /healthz 200 within HEALTH_TIMEOUT seconds and the
# doctor of the version in COMMAND-DIR finds nothing failed (its output is shown).
healthy() {
  "$1/bin/ct-ops-appliance" doctor --config "$CONFIG" --wait-healthy "$HEALTH_TIMEOUT"
}

if [ "$DRY_RUN" = 1 ]; then
  printf '[dry-run] systemctl restart %s, then wait up to %s s for a healthy /healthz\n' "$UNIT" "$HEALTH_TIMEOUT"
  say "dry run: nothing was changed; the [dry-run] lines above are what an installation would do"
  exit 0
fi

# import_agent_release: the agents in the image become a release the appliance can offer for
# self-update, imported through the running appliance, so with the same checks as any `releases
# import` (its trusted release key, the signed version, every SHA-256). Importing it again is a no-op
# (a re-run retries one that failed). A failure leaves the healthy appliance as it is and says how to
# import by hand; an older release than one already imported (a site that imported a newer one from
# media) is expected and kept out.
import_agent_release() {
  agents_dir=${release_pub%/release.pub}
  if imported=$("$OPT/$VERSION/bin/ct-ops-appliance" releases import "$agents_dir" --data-dir "$DATA_DIR" 2>&1); then
    say "$imported"
  else
    case $imported in
      *ERR_RELEASE_OLDER*) say "the image's agent release ${agents_dir##*/} was not imported: a newer release is imported already" ;;
      *) warn "the image's agent release was not imported ($imported); import it with: ct-ops-appliance releases import $agents_dir --data-dir $DATA_DIR" ;;
    esac
  fi
}

if [ "$SERVICE_ACTIVE" = 1 ] && [ -z "$UPGRADE_FROM" ] && [ "$SAME_INSTALLED" = 1 ] && [ "$CHANGED" = 0 ] && [ "$UNIT_CHANGED" = 0 ]; then
  import_agent_release
  say "version $VERSION is installed and running; nothing changed"
  exit 0
fi

STARTED_AT=$(date +%s)
DATA_TOUCHED=1
# A unit that failed before (an earlier attempt) must not be held back by its start limit.
systemctl reset-failed "$UNIT" 2>/dev/null || true
say "starting $UNIT: waiting up to $HEALTH_TIMEOUT s for /healthz"
if ! systemctl restart "$UNIT" || ! healthy "$OPT/$VERSION"; then
  journalctl -u "$UNIT" --since "@$STARTED_AT" --no-pager -n 30 -o cat >&2 2>/dev/null || true
  if [ -z "$UPGRADE_FROM" ]; then
    systemctl stop "$UNIT" || true
    die $EX_UNHEALTHY "version $VERSION did not become healthy within $HEALTH_TIMEOUT s; the service is stopped (journalctl -u $UNIT)"
  fi
  warn "version $VERSION did not become healthy within $HEALTH_TIMEOUT s: rolling back to $UPGRADE_FROM"
  roll_back || die $EX_ROLLBACK_FAILED "the rollback to $UPGRADE_FROM failed (current, unit, data from $BACKUP, or the start): journalctl -u $UNIT"
  healthy "$OPT/$UPGRADE_FROM" || die $EX_ROLLBACK_FAILED "$UPGRADE_FROM did not become healthy again after the rollback (journalctl -u $UNIT)"
  die $EX_UNHEALTHY "the upgrade to $VERSION failed its health check and was rolled back: $UPGRADE_FROM runs on the data as it was before the upgrade ($BACKUP); $OPT/$VERSION is left for inspection"
fi

UPGRADING=0
# After an upgrade two versions stay installed: this one and the one a rollback returns to; and
# the two newest pre-upgrade copies of the data (they hold the CA key: no more than needed).
if [ -n "$UPGRADE_FROM" ]; then
  # shellcheck disable=SC2012 # names are install.sh's own (pre-upgrade-<version>-<UTC time>): no odd characters
  ls -1dt "$BACKUPS"/pre-upgrade-* 2>/dev/null | tail -n +3 | while read -r copy; do
    rm -rf "$copy" && say "removed the old pre-upgrade copy $copy"
  done
  for old in "$OPT"/*; do
    name=${old##*/}
    case $name in current | "$VERSION" | "$UPGRADE_FROM") continue ;; esac
    if [ -L "$old" ] || [ ! -f "$old/package.json" ]; then continue; fi
    rm -rf "$old" && say "removed the old version $name"
  done
fi

# --- the image's own agent release -------------------------------------------------------------

import_agent_release
# --- what the admin needs once ---------------------------------------------------------------

# The appliance prints its fingerprints at each start to the journal: shown here once, as the
# appliance printed them. The first admin's one-time password never goes to the journal (the adm and
# systemd-journal groups read it for as long as it is kept): the appliance writes it to a 0600 file in
# the data directory, which root reads here; the file goes at that admin's first login.
welcome=
for _ in 1 2 3 4 5 6 7 8 9 10; do
  welcome=$(journalctl -u "$UNIT" --since "@$STARTED_AT" --no-pager -o cat 2>/dev/null |
    grep -E '^(CT-Ops appliance is running|CA certificate for agents|Bundle signing key|Trusted agent release key|First start|  username|  password)' || true)
  case $welcome in *'Trusted agent release key'*) break ;; esac
  sleep 1
done
[ -n "$welcome" ] && printf '\n%s\n\n' "$welcome"
# Only after the first start, which names the file in the journal: a re-run shows no password again.
case $welcome in *'password file:'*) if [ -f "$DATA_DIR/initial-admin-password" ]; then
  printf '  password: %s\n\n' "$(cat "$DATA_DIR/initial-admin-password")"
  say "store the password above now: $DATA_DIR/initial-admin-password is removed at the first login of admin (new one: ct-ops-appliance admin reset-password). Local admin CLI: ct-ops-appliance (as root, or as $SERVICE_USER)"
fi ;; esac
if [ -n "$UPGRADE_FROM" ]; then
  say "upgraded from $UPGRADE_FROM to $VERSION; $OPT/$UPGRADE_FROM and $BACKUP are kept for a rollback"
else
  say "installed $VERSION: $UNIT is running"
fi
