#!/bin/sh
# CT-Ops agent installer for Linux (systemd) and macOS (launchd).
#
# Runs from an extracted offline bundle folder (docs/bundle-format.md) and installs the files
# next to it. It only copies files: it never sources, evaluates or pastes into a command any
# value from agent.toml, manifest.json or TARGET (tags and addresses stay data).
#
# Usage: sudo ./install.sh [options]
#   --root DIR                 install into DIR instead of / (tests, image building);
#                              also CT_OPS_INSTALL_ROOT=DIR; implies --no-start
#   --no-start                 enable the units but start nothing (chroot, image building)
#   --dry-run                  verify the bundle, print every action, change nothing
#   --replace-config           overwrite an existing /etc/ct-ops/agent.toml and ca.crt
#   --bundle-key KEY           refuse the bundle unless SHA256SUMS.minisig verifies with this
#                              bundle public key: its base64 line "RW..." (the second line of
#                              the appliance's bundle.pub), obtained out of band
#   --bundle-pubkey FILE       the same, the key read from a minisign public key file
#   --bundle-key-id ID         with --bundle-key/--bundle-pubkey: the key id (16 hex digits, as
#                              minisign prints it) the key must have; a typo check, not a proof
#   --insecure-skip-checksums  install even without a SHA-256 tool (NOT RECOMMENDED)
#   -h, --help                 show this help
#
# Also: install.sh verify-minisig FILE SIGNATURE PUBLIC-KEY
#   prints the trusted comment of SIGNATURE when it is a valid minisign prehashed signature of
#   FILE by PUBLIC-KEY (the base64 key line, "RW..."); else prints why to stderr and exits 1
#   (exit 3: usage). With minisign when installed, else with OpenSSL >= 1.1.1. The root helper
#   checks releases with the installed copy (/usr/local/libexec/ct-ops/install.sh): the host has
#   one verifier, and install.sh never runs a verifier from the media it is verifying.
#
# Exit codes:
#   0  installed (or upgraded)
#   1  usage error
#   2  not running as root
#   3  wrong platform: the bundle's TARGET is not this OS / CPU
#   4  bundle verification failed: checksum mismatch, missing, extra or unsafe file, bad signature
#   5  a required tool is missing (sha256sum/shasum, minisign or openssl, systemctl, useradd/adduser)
#   6  an install step failed, the service did not start, or another install held the lock too long
set -eu
umask 022
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

# --- minisign signatures -----------------------------------------------------------------------

# size_of FILE: its size in bytes.
size_of() { wc -c <"$1" | tr -d ' '; }

# bytes_hex: the bytes of stdin as lower-case hex, no separators.
bytes_hex() { od -An -v -tx1 | tr -d ' \n'; }

# base64_decode TEXT: the bytes TEXT encodes (coreutils/BSD base64, or openssl).
base64_decode() {
  if command -v base64 >/dev/null 2>&1; then
    printf '%s\n' "$1" | base64 -d 2>/dev/null
  else
    printf '%s\n' "$1" | openssl base64 -d -A 2>/dev/null
  fi
}

# minisig_check FILE SIGNATURE KEY SCRATCH: verifies a minisign signature (format:
# https://jedisct1.github.io/minisign/, as common/minisign.ts writes it) of FILE by KEY, the
# base64 line of a public key ("Ed" || key id[8] || Ed25519 key[32]). Only the prehashed
# algorithm "ED" (Ed25519 over BLAKE2b-512 of FILE) is accepted; the global signature over
# signature || trusted comment is checked too, so the trusted comment can be relied on.
# SCRATCH is an empty private directory. Prints the trusted comment; on failure prints the
# reason (one word) and returns 1.
minisig_check() {
  file=$1 signature=$2 key=$3 scratch=$4
  case $key in *[!A-Za-z0-9+/=]* | '') echo bad-public-key; return 1 ;; esac
  [ ${#key} -eq 56 ] || { echo bad-public-key; return 1; }
  base64_decode "$key" >"$scratch/key.bin"
  if [ "$(size_of "$scratch/key.bin")" != 42 ] || [ "$(head -c 2 "$scratch/key.bin")" != Ed ]; then
    echo bad-public-key
    return 1
  fi
  [ "$(wc -l <"$signature" | tr -d ' ')" = 4 ] || { echo malformed-signature; return 1; }
  case $(sed -n 1p "$signature") in 'untrusted comment:'*) ;; *) echo malformed-signature; return 1 ;; esac
  trusted=$(sed -n 3p "$signature")
  case $trusted in 'trusted comment: '*) trusted=${trusted#trusted comment: } ;; *) echo malformed-signature; return 1 ;; esac
  case $trusted in *"$(printf '\r')"*) echo malformed-signature; return 1 ;; esac
  base64_decode "$(sed -n 2p "$signature")" >"$scratch/signature.bin"
  base64_decode "$(sed -n 4p "$signature")" >"$scratch/global.sig"
  if [ "$(size_of "$scratch/signature.bin")" != 74 ] || [ "$(size_of "$scratch/global.sig")" != 64 ]; then
    echo malformed-signature
    return 1
  fi
  [ "$(head -c 2 "$scratch/signature.bin")" = ED ] || { echo not-prehashed; return 1; }
  [ "$(head -c 10 "$scratch/signature.bin" | tail -c 8 | bytes_hex)" = "$(head -c 10 "$scratch/key.bin" | tail -c 8 | bytes_hex)" ] ||
    { echo signed-by-another-key; return 1; }
  if command -v minisign >/dev/null 2>&1; then
    printf 'untrusted comment: CT-Ops key\n%s\n' "$key" >"$scratch/key.pub"
    minisign -V -q -p "$scratch/key.pub" -m "$file" -x "$signature" >/dev/null 2>&1 || { echo signature-mismatch; return 1; }
  elif command -v openssl >/dev/null 2>&1; then
    # SubjectPublicKeyInfo (DER) of an Ed25519 key: a fixed 12-byte prefix, then the 32 key bytes.
    printf '\060\052\060\005\006\003\053\145\160\003\041\000' >"$scratch/key.der"
    tail -c 32 "$scratch/key.bin" >>"$scratch/key.der"
    tail -c 64 "$scratch/signature.bin" >"$scratch/ed25519.sig"
    openssl dgst -blake2b512 -binary "$file" >"$scratch/digest" 2>/dev/null || { echo no-verifier; return 1; }
    openssl pkeyutl -verify -pubin -keyform DER -inkey "$scratch/key.der" -rawin -in "$scratch/digest" \
      -sigfile "$scratch/ed25519.sig" >/dev/null 2>&1 || { echo signature-mismatch; return 1; }
    { cat "$scratch/ed25519.sig"; printf '%s' "$trusted"; } >"$scratch/global.msg"
    openssl pkeyutl -verify -pubin -keyform DER -inkey "$scratch/key.der" -rawin -in "$scratch/global.msg" \
      -sigfile "$scratch/global.sig" >/dev/null 2>&1 || { echo trusted-comment-altered; return 1; }
  else
    echo no-verifier
    return 1
  fi
  printf '%s\n' "$trusted"
}

if [ "${1:-}" = verify-minisig ]; then
  [ $# -eq 4 ] || { echo 'usage: install.sh verify-minisig FILE SIGNATURE PUBLIC-KEY' >&2; exit 3; }
  # Never $TMPDIR: root may run with a TMPDIR another user can write (sudo -E).
  scratch=$(mktemp -d /tmp/ct-ops-minisig.XXXXXXXX) || exit 3
  trap 'rm -rf "$scratch"' EXIT
  if outcome=$(minisig_check "$2" "$3" "$4" "$scratch"); then
    printf '%s\n' "$outcome"
    exit 0
  fi
  printf '%s\n' "$outcome" >&2
  exit 1
fi

readonly EX_USAGE=1 EX_NOT_ROOT=2 EX_PLATFORM=3 EX_TAMPERED=4 EX_MISSING_TOOL=5 EX_STEP=6
readonly AGENT_USER=ct-ops AGENT_GROUP=ct-ops

say() { printf 'ct-ops install: %s\n' "$*"; }
warn() { printf 'ct-ops install: WARNING: %s\n' "$*" >&2; }
die() {
  code=$1
  shift
  printf 'ct-ops install: error: %s\n' "$*" >&2
  exit "$code"
}
usage() { sed -n '/^# Usage:/,/^# *-h, --help/s/^# \{0,1\}//p' "$0"; }

ROOT=${CT_OPS_INSTALL_ROOT:-}
NO_START=0
DRY_RUN=0
REPLACE_CONFIG=0
SKIP_CHECKSUMS=0
BUNDLE_PUBKEY=
BUNDLE_KEY=
BUNDLE_KEY_ID=
while [ $# -gt 0 ]; do
  case $1 in
    --root) [ $# -ge 2 ] || die $EX_USAGE "--root needs a directory"; ROOT=$2; shift ;;
    --root=*) ROOT=${1#--root=} ;;
    --no-start) NO_START=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --replace-config) REPLACE_CONFIG=1 ;;
    --insecure-skip-checksums) SKIP_CHECKSUMS=1 ;;
    --bundle-pubkey) [ $# -ge 2 ] || die $EX_USAGE "--bundle-pubkey needs a file"; BUNDLE_PUBKEY=$2; shift ;;
    --bundle-pubkey=*) BUNDLE_PUBKEY=${1#--bundle-pubkey=} ;;
    --bundle-key) [ $# -ge 2 ] || die $EX_USAGE "--bundle-key needs a key"; BUNDLE_KEY=$2; shift ;;
    --bundle-key=*) BUNDLE_KEY=${1#--bundle-key=} ;;
    --bundle-key-id) [ $# -ge 2 ] || die $EX_USAGE "--bundle-key-id needs a key id"; BUNDLE_KEY_ID=$2; shift ;;
    --bundle-key-id=*) BUNDLE_KEY_ID=${1#--bundle-key-id=} ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die $EX_USAGE "unknown argument: $1" ;;
  esac
  shift
done
if [ -n "$ROOT" ]; then
  case $ROOT in /*) ;; *) die $EX_USAGE "--root must be an absolute path" ;; esac
  [ -d "$ROOT" ] || die $EX_USAGE "--root $ROOT is not a directory"
  ROOT=${ROOT%/}
  NO_START=1
fi
if [ -n "$BUNDLE_PUBKEY" ]; then
  [ -z "$BUNDLE_KEY" ] || die $EX_USAGE "give --bundle-key or --bundle-pubkey, not both"
  [ -f "$BUNDLE_PUBKEY" ] || die $EX_USAGE "--bundle-pubkey $BUNDLE_PUBKEY is not a file"
  BUNDLE_KEY=$(grep -v '^untrusted comment:' "$BUNDLE_PUBKEY" | head -n 1 | tr -d '\r')
fi
# A key id is 8 bytes whoever makes a key can choose: it identifies, it does not authenticate.
if [ -n "$BUNDLE_KEY_ID" ] && [ -z "$BUNDLE_KEY" ]; then
  die $EX_USAGE "--bundle-key-id alone proves nothing (anyone can make a key with any id): give the full key with --bundle-key RW... (the id is then checked against it)"
fi

# The bundle folder is the directory this script sits in.
case $0 in */*) BUNDLE_DIR=${0%/*} ;; *) BUNDLE_DIR=. ;; esac
BUNDLE_DIR=$(cd "$BUNDLE_DIR" && pwd -P) || die $EX_USAGE "cannot enter the bundle folder"

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

# outcome MESSAGE: says what the run achieved. A dry run achieved nothing, so it prints no
# outcome; its last line says that nothing was changed (see the end of this script).
outcome() { [ "$DRY_RUN" = 1 ] || say "$*"; }

# --- preflight: who, where ---------------------------------------------------------------

if [ "$(id -u)" != 0 ] && [ "$DRY_RUN" = 0 ]; then
  die $EX_NOT_ROOT "must run as root (try: sudo $0)"
fi

case $(uname -s) in
  Linux) OS=linux ;;
  Darwin) OS=darwin ;;
  *) die $EX_PLATFORM "unsupported operating system: $(uname -s)" ;;
esac
case $(uname -m) in
  x86_64 | amd64) ARCH=x64 ;;
  aarch64 | arm64) ARCH=arm64 ;;
  *) die $EX_PLATFORM "unsupported CPU architecture: $(uname -m)" ;;
esac
[ -f "$BUNDLE_DIR/TARGET" ] || die $EX_TAMPERED "TARGET is missing from the bundle"
TARGET=$(head -n 1 "$BUNDLE_DIR/TARGET")
[ "$TARGET" = "$OS-$ARCH" ] || die $EX_PLATFORM "this bundle is for $TARGET but this machine is $OS-$ARCH"

# --- one install or uninstall at a time ------------------------------------------------

# take_lock: waits (at most 10 minutes) while another install.sh or uninstall.sh works on the
# same root. flock where util-linux has it (released by the kernel when we exit); else a lock
# folder holding our pid, taken over only when that process is gone.
LOCK_DIR=
take_lock() {
  case $OS in darwin) lock=/var/run/ct-ops-install.lock ;; *) lock=$ROOT/run/ct-ops-install.lock ;; esac
  mkdir -p "${lock%/*}"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$lock"
    flock -n 9 && return 0
    say "another ct-ops install or uninstall is running: waiting for it (at most 10 minutes)"
    flock -w 600 9 || die $EX_STEP "another ct-ops install or uninstall still holds $lock"
    return 0
  fi
  waited=0
  until mkdir "$lock.d" 2>/dev/null; do
    holder=$(cat "$lock.d/pid" 2>/dev/null || true)
    if [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null; then
      say "removing the lock of process $holder, which is gone"
      rm -rf "$lock.d"
      continue
    fi
    [ "$waited" = 0 ] && say "another ct-ops install or uninstall is running: waiting for it (at most 10 minutes)"
    [ "$waited" -lt 600 ] || die $EX_STEP "another ct-ops install or uninstall still holds $lock.d"
    sleep 1
    waited=$((waited + 1))
  done
  LOCK_DIR=$lock.d
  echo $$ >"$LOCK_DIR/pid"
}
[ "$DRY_RUN" = 1 ] || take_lock

# --- preflight: the bundle is exactly what SHA256SUMS lists ----------------------------

if command -v sha256sum >/dev/null 2>&1; then
  sha256_of() { sha256sum -- "$1" | cut -d ' ' -f 1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256_of() { shasum -a 256 -- "$1" | cut -d ' ' -f 1; }
elif [ "$SKIP_CHECKSUMS" = 1 ]; then
  sha256_of() { echo unchecked; }
else
  die $EX_MISSING_TOOL "no SHA-256 tool (sha256sum or shasum) found: cannot verify the bundle. Install coreutils, or (NOT RECOMMENDED) pass --insecure-skip-checksums"
fi

# Every file is copied into a private staging folder first and verified there, so nothing
# can change between the check and the install.
# Never $TMPDIR: root may run with a TMPDIR another user can write (sudo -E) and swap the stage.
STAGE=$(mktemp -d /tmp/ct-ops-install.XXXXXXXX) || die $EX_STEP "cannot create a staging folder"
trap 'rm -rf "$STAGE" ${LOCK_DIR:+"$LOCK_DIR"}' EXIT
trap 'exit 130' INT TERM HUP

if [ -L "$BUNDLE_DIR/SHA256SUMS" ] || [ ! -f "$BUNDLE_DIR/SHA256SUMS" ]; then
  die $EX_TAMPERED "SHA256SUMS is missing from the bundle"
fi
cp "$BUNDLE_DIR/SHA256SUMS" "$STAGE/SHA256SUMS"
if grep -Evx '[0-9a-f]{64}  [A-Za-z0-9_][A-Za-z0-9._-]*' "$STAGE/SHA256SUMS" >/dev/null; then
  die $EX_TAMPERED "SHA256SUMS has a malformed line"
fi
if cut -d ' ' -f 3 "$STAGE/SHA256SUMS" | sort | uniq -d | grep . >/dev/null; then
  die $EX_TAMPERED "SHA256SUMS lists a file twice"
fi
if cut -d ' ' -f 3 "$STAGE/SHA256SUMS" | grep -Ex 'SHA256SUMS|SHA256SUMS\.minisig' >/dev/null; then
  die $EX_TAMPERED "SHA256SUMS lists itself"
fi

# No file in the folder may be unlisted (besides the sums and their signature), and every name
# is made of [A-Za-z0-9._-] only: a newline or a slash in a name cannot pass for a listed one.
for path in "$BUNDLE_DIR"/* "$BUNDLE_DIR"/.[!.]* "$BUNDLE_DIR"/..?*; do
  [ -e "$path" ] || [ -L "$path" ] || continue
  name=${path##*/}
  case $name in
    *[!A-Za-z0-9._-]*) die $EX_TAMPERED "a bundle file name has characters outside [A-Za-z0-9._-]: $(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '?')" ;;
  esac
  case $name in SHA256SUMS | SHA256SUMS.minisig) continue ;; esac
  if ! cut -d ' ' -f 3 "$STAGE/SHA256SUMS" | grep -Fx -- "$name" >/dev/null; then
    die $EX_TAMPERED "unexpected file in the bundle (not in SHA256SUMS): $name"
  fi
done

# Every listed file must be present, a plain file, and match its checksum.
while IFS= read -r line; do
  expected=${line%% *}
  name=${line#*  }
  source=$BUNDLE_DIR/$name
  if [ -L "$source" ] || [ ! -f "$source" ]; then
    die $EX_TAMPERED "missing or not a regular file: $name"
  fi
  cp "$source" "$STAGE/$name"
  actual=$(sha256_of "$STAGE/$name")
  if [ "$SKIP_CHECKSUMS" = 1 ]; then
    continue
  fi
  [ "$actual" = "$expected" ] || die $EX_TAMPERED "checksum mismatch for $name: the bundle was altered or damaged"
done <"$STAGE/SHA256SUMS"
if [ "$SKIP_CHECKSUMS" = 1 ]; then
  warn "**********************************************************************"
  warn "NO SHA-256 TOOL: THE BUNDLE WAS NOT VERIFIED (--insecure-skip-checksums)"
  warn "A damaged or tampered agent may be installed and run on this machine."
  warn "**********************************************************************"
else
  say "all $(wc -l <"$STAGE/SHA256SUMS" | tr -d ' ') bundle files match SHA256SUMS"
fi

# key_id_of KEY: the key id inside a public key's base64 line, as minisign prints it (the
# little-endian 64-bit number in upper-case hex).
key_id_of() {
  printf '%s\n' "$1" | base64 -d 2>/dev/null | head -c 10 | tail -c 8 | od -An -v -tx1 |
    awk '{ for (i = NF; i >= 1; i--) id = id $i } END { print toupper(id) }'
}

if [ -n "$BUNDLE_KEY" ]; then
  # The verifier is this script's own: anything else on the media is unverified until this passes.
  command -v minisign >/dev/null 2>&1 || command -v openssl >/dev/null 2>&1 ||
    die $EX_MISSING_TOOL "a bundle key was given but neither minisign nor openssl is installed to check the signature"
  if [ -n "$BUNDLE_KEY_ID" ]; then
    [ "$(key_id_of "$BUNDLE_KEY")" = "$(printf '%s' "$BUNDLE_KEY_ID" | tr 'a-f' 'A-F')" ] ||
      die $EX_USAGE "the bundle key given has key id $(key_id_of "$BUNDLE_KEY"), not $BUNDLE_KEY_ID"
  fi
  if [ -L "$BUNDLE_DIR/SHA256SUMS.minisig" ] || [ ! -f "$BUNDLE_DIR/SHA256SUMS.minisig" ]; then
    die $EX_TAMPERED "SHA256SUMS.minisig is missing from the bundle"
  fi
  cp "$BUNDLE_DIR/SHA256SUMS.minisig" "$STAGE/SHA256SUMS.minisig"
  mkdir "$STAGE/.minisig"
  if ! why=$(minisig_check "$STAGE/SHA256SUMS" "$STAGE/SHA256SUMS.minisig" "$BUNDLE_KEY" "$STAGE/.minisig"); then
    case $why in no-verifier) die $EX_MISSING_TOOL "cannot check SHA256SUMS.minisig: no minisign, and openssl cannot verify Ed25519 (OpenSSL 1.1.1 or later needed)" ;; esac
    die $EX_TAMPERED "SHA256SUMS.minisig does not verify with bundle key $(key_id_of "$BUNDLE_KEY") ($why): the bundle was altered or signed by another key"
  fi
  say "SHA256SUMS signature verified with bundle key $(key_id_of "$BUNDLE_KEY")"
else
  warn "the bundle's signature was NOT checked (no --bundle-key): this host trusts the media it was given."
  warn "Check it with 'ct-ops-bundle verify' at the transfer station, or pass --bundle-key RW... (docs/install.md)."
fi

require_staged() {
  for name in "$@"; do
    [ -f "$STAGE/$name" ] || die $EX_TAMPERED "the bundle has no $name"
  done
}
require_staged ct-ops-agent agent.toml ca.crt uninstall.sh

# --- install helpers ---------------------------------------------------------------------

# make_dir MODE OWNER GROUP PATH: creates PATH (under ROOT) or fixes its owner and mode.
make_dir() {
  target=$ROOT$4
  [ -L "$target" ] && die $EX_STEP "$4 is a symbolic link: refusing to use it"
  run mkdir -p "$target"
  run chown "$2:$3" "$target"
  run chmod "$1" "$target"
}

# make_shared_dir MODE OWNER GROUP PATH: creates PATH (under ROOT) when absent; an existing one is
# left as it is, never chowned or chmodded: it may be another product's (the CT-Ops appliance keeps
# /etc/ct-ops/appliance.toml and /var/lib/ct-ops/appliance, docs/decisions.md 77) or the system's.
# With "private" as a fifth argument an existing PATH must be root's and writable by root only,
# because the agent's files below it rely on that (docs/install.md, "No link or rename races").
make_shared_dir() {
  target=$ROOT$4
  [ -L "$target" ] && die $EX_STEP "$4 is a symbolic link: refusing to use it"
  if [ ! -d "$target" ]; then
    make_dir "$1" "$2" "$3" "$4"
  elif [ "${5:-}" = private ] && [ -z "$(find "$target" -prune -user 0 ! -perm -020 ! -perm -002)" ]; then
    die $EX_STEP "$4 exists but is not root's or is writable by others: the agent's files cannot live in it"
  fi
}

# put_file SOURCE MODE OWNER GROUP PATH: copies SOURCE next to PATH under a fresh unique name,
# sets owner and mode, then renames it over PATH, so PATH is never half-written (and a running
# binary is never written into: no "text file busy").
put_file() {
  target=$ROOT$5
  [ -L "$target" ] && run rm -f "$target"
  if [ "$DRY_RUN" = 1 ]; then
    temporary=${target%/*}/.${target##*/}.XXXXXXXX
  else
    temporary=$(mktemp "${target%/*}/.${target##*/}.XXXXXXXX") || die $EX_STEP "cannot create a temporary file beside $5"
  fi
  run cp "$1" "$temporary"
  run chown "$3:$4" "$temporary"
  run chmod "$2" "$temporary"
  run mv -f "$temporary" "$target"
}

# write_ip_allow_list: the agent unit's IP allow-list (docs/install.md, "The agent unit's sandbox"),
# written only when every ingest address in the agent.toml the agent will read ([ingest] address, or
# the one-line [ingest] addresses list bundles write) is an IP address; a host name needs DNS servers
# the installer cannot know, and a list spread over several lines is not read (none is written then).
# That agent.toml is the bundle's when it replaces (or, in a dry run, would replace) the installed
# one, else the installed one. The values go into a unit file, so only digits, dots, hex digits and
# colons pass.
write_ip_allow_list() {
  dropin=/etc/systemd/system/ct-ops-agent.service.d/appliance-address.conf
  if config_replaced; then config=$STAGE/agent.toml; else config=$ROOT/etc/ct-ops/agent.toml; fi
  setting=$(sed -n '/^\[ingest\][[:space:]]*$/,/^\[/{
/^address\(es\)\{0,1\}[[:space:]]*=/{
s/[[:space:]]*$//
p
}
}' "$config" 2>/dev/null | head -n 1)
  appliance_ips=''
  case "$setting" in
    address[!e]* | addresses*']')
      # Each quoted host:port of the line: an IPv4 or bracketed IPv6 address (its IP kept), or nothing at all.
      appliance_ips=$(printf '%s\n' "$setting" | awk -F'"' '{
        for (i = 2; i <= NF; i += 2) {
          target = $i
          if (target ~ /^[0-9][0-9.]*:[0-9][0-9]*$/) sub(/:[0-9]*$/, "", target)
          else if (target ~ /^\[[0-9A-Fa-f:.]+\]:[0-9][0-9]*$/) { sub(/\]:[0-9]*$/, "", target); target = substr(target, 2) }
          else unusable = 1
          ips = ips (ips == "" ? "" : " ") target
        }
      } END { if (!unusable) print ips }')
      case "$appliance_ips" in
        *[!0-9A-Fa-f.:\ ]*) appliance_ips='' ;;
      esac ;;
  esac
  if [ -z "$appliance_ips" ]; then
    run rm -f "$ROOT$dropin"
    say "the appliance is named by a host name (or by a list install.sh does not read): no IP allow-list for the agent unit"
    return 0
  fi
  printf '# Written by install.sh from agent.toml: the agent talks to its appliance only.\n[Service]\nIPAddressDeny=any\nIPAddressAllow=%s\n' "$appliance_ips" >"$STAGE/appliance-address.conf"
  make_dir 0755 0 0 "${dropin%/*}"
  put_file "$STAGE/appliance-address.conf" 0644 0 0 "$dropin"
  outcome "agent unit: IP traffic limited to the appliance at $appliance_ips"
}

# install_update_trust OWNER GROUP: what the root helper checks a self-update against, root-owned
# where the agent's account cannot write: /etc/ct-ops/release.pub (the release public key from
# agent.toml's [update] section) and /usr/local/libexec/ct-ops/agent.version (manifest.json's
# agent_version). Both come from the bundle verified above.
install_update_trust() {
  key=$(sed -n 's/^release_public_key *= *"\(.*\)" *$/\1/p' "$STAGE/agent.toml" | head -n 1 | sed 's/.*\\n//')
  if printf '%s\n' "$key" | grep -Ex 'RW[A-Za-z0-9+/]{54}' >/dev/null; then
    printf 'untrusted comment: CT-Ops agent release key (from the bundle)\n%s\n' "$key" >"$STAGE/release.pub"
    put_file "$STAGE/release.pub" 0644 "$1" "$2" /etc/ct-ops/release.pub
  else
    warn "agent.toml names no release key ([update] release_public_key): the root helper refuses every self-update"
  fi
  version=$(sed -n 's/^ *"agent_version": *"\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\)",\{0,1\} *$/\1/p' "$STAGE/manifest.json" 2>/dev/null | head -n 1)
  if [ -n "$version" ]; then
    printf '%s\n' "$version" >"$STAGE/agent.version"
    put_file "$STAGE/agent.version" 0644 "$1" "$2" /usr/local/libexec/ct-ops/agent.version
  else
    warn "manifest.json names no agent_version: the root helper refuses every self-update"
  fi
}

# config_replaced: true when the bundle's agent.toml and ca.crt replace the installed ones (a first
# installation, or --replace-config).
config_replaced() { [ "$REPLACE_CONFIG" = 1 ] || [ ! -e "$ROOT/etc/ct-ops/agent.toml" ]; }

# --- Linux ---------------------------------------------------------------------------------

linux_systemctl() {
  if [ -n "$ROOT" ]; then
    run systemctl --root="$ROOT" "$@"
  elif [ "$NO_START" = 1 ]; then
    run systemctl --root=/ "$@"
  else
    run systemctl "$@"
  fi
}

# id_of user|group NAME: the numeric id in ROOT's passwd/group (names alone would be
# resolved against the host's databases when --root is used).
id_of() {
  case $1 in user) db=$ROOT/etc/passwd ;; group) db=$ROOT/etc/group ;; esac
  awk -F: -v name="$2" '$1 == name { print $3; exit }' "$db"
}

linux_create_account() {
  if [ -n "$(id_of group "$AGENT_GROUP")" ] && [ -n "$(id_of user "$AGENT_USER")" ]; then
    say "system user $AGENT_USER exists"
    return
  fi
  nologin=/usr/sbin/nologin
  [ -x "$ROOT$nologin" ] || nologin=/sbin/nologin
  [ -x "$ROOT$nologin" ] || nologin=/bin/false
  root_flag=
  [ -n "$ROOT" ] && root_flag=--root=$ROOT
  if command -v useradd >/dev/null 2>&1 && command -v groupadd >/dev/null 2>&1; then
    [ -n "$(id_of group "$AGENT_GROUP")" ] || run groupadd --system ${root_flag:+"$root_flag"} "$AGENT_GROUP"
    [ -n "$(id_of user "$AGENT_USER")" ] || run useradd --system --no-create-home --home-dir /var/lib/ct-ops/agent \
      --shell "$nologin" --gid "$AGENT_GROUP" ${root_flag:+"$root_flag"} "$AGENT_USER"
  elif [ -n "$ROOT" ]; then
    die $EX_MISSING_TOOL "--root needs useradd and groupadd (package passwd/shadow-utils)"
  elif command -v adduser >/dev/null 2>&1 && adduser --help 2>&1 | grep -q BusyBox; then
    [ -n "$(id_of group "$AGENT_GROUP")" ] || run addgroup -S "$AGENT_GROUP"
    [ -n "$(id_of user "$AGENT_USER")" ] || run adduser -S -D -H -h /var/lib/ct-ops/agent -s "$nologin" -G "$AGENT_GROUP" "$AGENT_USER"
  elif command -v adduser >/dev/null 2>&1; then
    run adduser --system --group --no-create-home --home /var/lib/ct-ops/agent --shell "$nologin" "$AGENT_USER"
  else
    die $EX_MISSING_TOOL "no useradd or adduser: cannot create the $AGENT_USER system user"
  fi
}

install_linux() {
  command -v systemctl >/dev/null 2>&1 || die $EX_MISSING_TOOL "systemd (systemctl) is required on Linux"
  require_staged ct-ops-agent.service ct-ops-agent-helper.path ct-ops-agent-helper.service ct-ops-agent-helper.sh
  live=1
  if [ "$NO_START" = 1 ]; then
    live=0
  elif [ ! -d /run/systemd/system ]; then
    if [ "$DRY_RUN" = 1 ]; then
      warn "systemd is not running here (container or chroot?): the agent would be enabled but not started"
    else
      warn "systemd is not running here (container or chroot?): the agent is enabled but not started"
    fi
    live=0
    NO_START=1
  fi

  upgrade=0
  if [ -e "$ROOT/usr/local/bin/ct-ops-agent" ]; then
    upgrade=1
    say "existing installation found: upgrading in place"
    # Stop first: the old binary must not be running while it is replaced.
    if [ "$live" = 1 ] && systemctl is-active --quiet ct-ops-agent.service; then
      run systemctl stop ct-ops-agent.service
    fi
  fi

  linux_create_account
  if [ "$DRY_RUN" = 1 ] && [ -z "$(id_of user "$AGENT_USER")" ]; then
    uid=$AGENT_USER gid=$AGENT_GROUP
  else
    uid=$(id_of user "$AGENT_USER") gid=$(id_of group "$AGENT_GROUP")
    if [ -z "$uid" ] || [ -z "$gid" ]; then
      die $EX_STEP "the $AGENT_USER user or group was not created"
    fi
  fi

  make_shared_dir 0755 0 0 /etc/ct-ops private
  make_shared_dir 0755 0 0 /var/lib/ct-ops private
  make_dir 0700 "$uid" "$gid" /var/lib/ct-ops/agent
  make_dir 0770 0 "$gid" /var/lib/ct-ops/requests
  make_dir 0700 0 0 /var/lib/ct-ops/helper
  make_shared_dir 0755 0 0 /usr/local/bin
  make_shared_dir 0755 0 0 /usr/local/libexec
  make_dir 0755 0 0 /usr/local/libexec/ct-ops
  make_shared_dir 0755 0 0 /etc/systemd/system

  put_file "$STAGE/ct-ops-agent" 0755 0 0 /usr/local/bin/ct-ops-agent
  put_file "$STAGE/ct-ops-agent-helper.sh" 0755 0 0 /usr/local/libexec/ct-ops/ct-ops-agent-helper.sh
  put_file "$STAGE/uninstall.sh" 0755 0 0 /usr/local/libexec/ct-ops/uninstall.sh
  put_file "$STAGE/install.sh" 0755 0 0 /usr/local/libexec/ct-ops/install.sh
  install_update_trust 0 0
  if config_replaced; then
    put_file "$STAGE/agent.toml" 0640 0 "$gid" /etc/ct-ops/agent.toml
    put_file "$STAGE/ca.crt" 0644 0 0 /etc/ct-ops/ca.crt
  else
    say "keeping the existing /etc/ct-ops/agent.toml and ca.crt (pass --replace-config to overwrite)"
  fi
  for unit in ct-ops-agent.service ct-ops-agent-helper.path ct-ops-agent-helper.service; do
    put_file "$STAGE/$unit" 0644 0 0 "/etc/systemd/system/$unit"
  done
  write_ip_allow_list

  if [ "$live" = 1 ]; then
    run systemctl daemon-reload
  fi
  linux_systemctl enable ct-ops-agent-helper.path ct-ops-agent.service
  if [ "$live" = 1 ]; then
    run systemctl restart ct-ops-agent-helper.path
    run systemctl start ct-ops-agent.service
    if [ "$DRY_RUN" = 0 ]; then
      sleep 3
      if systemctl is-failed --quiet ct-ops-agent.service; then
        systemctl --no-pager status ct-ops-agent.service >&2 || true
        die $EX_STEP "ct-ops-agent failed to start; see: journalctl -u ct-ops-agent"
      elif ! systemctl is-active --quiet ct-ops-agent.service; then
        warn "ct-ops-agent is not running yet (restarting?); see: journalctl -u ct-ops-agent -f"
      fi
    fi
    outcome "ct-ops-agent is running; logs: journalctl -u ct-ops-agent -f"
  else
    outcome "ct-ops-agent is enabled but was not started (--no-start)"
  fi
  if [ "$upgrade" = 1 ]; then outcome "upgrade complete"; else outcome "installation complete"; fi
}

# --- macOS ---------------------------------------------------------------------------------

readonly DARWIN_SUPPORT="/Library/Application Support/CT-Ops"

install_darwin() {
  require_staged com.ct-ops.agent.plist com.ct-ops.agent-helper.plist ct-ops-agent-helper.sh
  command -v launchctl >/dev/null 2>&1 || [ "$NO_START" = 1 ] || die $EX_MISSING_TOOL "launchctl not found"
  if [ -e "$ROOT/usr/local/bin/ct-ops-agent" ]; then
    say "existing installation found: upgrading in place"
    if [ "$NO_START" = 0 ] && launchctl print system/com.ct-ops.agent >/dev/null 2>&1; then
      run launchctl bootout system/com.ct-ops.agent
    fi
  fi
  # On macOS the agent runs as root (docs/install.md, "macOS"): files are root:wheel.
  make_shared_dir 0755 root wheel /etc/ct-ops private
  make_dir 0755 root wheel "$DARWIN_SUPPORT"
  make_dir 0700 root wheel "$DARWIN_SUPPORT/agent"
  make_dir 0700 root wheel "$DARWIN_SUPPORT/requests"
  make_dir 0700 root wheel "$DARWIN_SUPPORT/helper"
  make_shared_dir 0755 root wheel /usr/local/bin
  make_shared_dir 0755 root wheel /usr/local/libexec
  make_dir 0755 root wheel /usr/local/libexec/ct-ops
  put_file "$STAGE/ct-ops-agent" 0755 root wheel /usr/local/bin/ct-ops-agent
  put_file "$STAGE/ct-ops-agent-helper.sh" 0755 root wheel /usr/local/libexec/ct-ops/ct-ops-agent-helper.sh
  put_file "$STAGE/uninstall.sh" 0755 root wheel /usr/local/libexec/ct-ops/uninstall.sh
  put_file "$STAGE/install.sh" 0755 root wheel /usr/local/libexec/ct-ops/install.sh
  install_update_trust root wheel
  if config_replaced; then
    put_file "$STAGE/agent.toml" 0640 root wheel /etc/ct-ops/agent.toml
    put_file "$STAGE/ca.crt" 0644 root wheel /etc/ct-ops/ca.crt
  else
    say "keeping the existing /etc/ct-ops/agent.toml and ca.crt (pass --replace-config to overwrite)"
  fi
  for log in /var/log/ct-ops-agent.log /var/log/ct-ops-agent-helper.log; do
    [ -L "$ROOT$log" ] && run rm -f "$ROOT$log"
    [ -e "$ROOT$log" ] || run touch "$ROOT$log"
    run chown root:wheel "$ROOT$log"
    run chmod 0640 "$ROOT$log"
  done
  for plist in com.ct-ops.agent.plist com.ct-ops.agent-helper.plist; do
    put_file "$STAGE/$plist" 0644 root wheel "/Library/LaunchDaemons/$plist"
  done
  if [ "$NO_START" = 1 ]; then
    outcome "launch daemons installed but not loaded (--no-start)"
    return
  fi
  for label in com.ct-ops.agent-helper com.ct-ops.agent; do
    if launchctl print "system/$label" >/dev/null 2>&1; then
      run launchctl bootout "system/$label"
    fi
    run launchctl enable "system/$label"
    run launchctl bootstrap system "/Library/LaunchDaemons/$label.plist"
  done
  outcome "ct-ops-agent is running; logs: tail -f /var/log/ct-ops-agent.log"
}

case $OS in
  linux) install_linux ;;
  darwin) install_darwin ;;
esac
[ "$DRY_RUN" = 0 ] || say "dry run: nothing was changed; the [dry-run] lines above are what an installation would do"
