#!/bin/sh
# CT-Ops agent uninstaller for Linux (systemd) and macOS (launchd). Reverses install.sh:
# stops and disables the agent and its root helper, then removes the unit files / launch
# daemons, the binary, /etc/ct-ops, the data and spool directories, the helper and (Linux)
# the ct-ops system user and group. Safe to run again: whatever is already gone is skipped.
#
# Installed as /usr/local/libexec/ct-ops/uninstall.sh, where the root helper runs it for a
# remote uninstall (detached, output in /var/log/ct-ops-uninstall.log, created by the
# helper). Run by hand, it writes to the terminal only.
#
# Usage: sudo ./uninstall.sh [--root DIR] [--dry-run]
#   --root DIR   remove from DIR instead of / (also CT_OPS_INSTALL_ROOT); stops nothing
#   --dry-run    print every action, change nothing
#
# Exit codes: 0 removed (or nothing to remove), 1 usage, 2 not root, 6 a removal step failed.
set -eu
umask 077
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

readonly EX_USAGE=1 EX_NOT_ROOT=2 EX_STEP=6

say() { printf 'ct-ops uninstall: %s\n' "$*"; }
die() {
  code=$1
  shift
  printf 'ct-ops uninstall: error: %s\n' "$*" >&2
  exit "$code"
}

ROOT=${CT_OPS_INSTALL_ROOT:-}
DRY_RUN=0
while [ $# -gt 0 ]; do
  case $1 in
    --root) [ $# -ge 2 ] || die $EX_USAGE "--root needs a directory"; ROOT=$2; shift ;;
    --root=*) ROOT=${1#--root=} ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help) sed -n '/^# Usage:/,/^# *--dry-run/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) die $EX_USAGE "unknown argument: $1" ;;
  esac
  shift
done
if [ -n "$ROOT" ]; then
  case $ROOT in /*) ;; *) die $EX_USAGE "--root must be an absolute path" ;; esac
  [ -d "$ROOT" ] || die $EX_USAGE "--root $ROOT is not a directory"
  ROOT=${ROOT%/}
fi
if [ "$(id -u)" != 0 ] && [ "$DRY_RUN" = 0 ]; then
  die $EX_NOT_ROOT "must run as root"
fi

run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run]'
    printf ' %s' "$@"
    printf '\n'
  else
    "$@" || die $EX_STEP "failed: $*"
  fi
}

# remove PATH...: deletes each path under ROOT that exists (a link is removed, not followed).
remove() {
  for path in "$@"; do
    if [ -e "$ROOT$path" ] || [ -L "$ROOT$path" ]; then
      run rm -rf "$ROOT$path"
    fi
  done
}

in_db() { [ -f "$ROOT/etc/$1" ] && awk -F: -v name="$2" '$1 == name { found = 1 } END { exit !found }' "$ROOT/etc/$1"; }

uninstall_linux() {
  units="ct-ops-agent.service ct-ops-agent-helper.path ct-ops-agent-helper.service"
  live=0
  if [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    live=1
  fi
  present=
  for unit in $units; do
    [ -e "$ROOT/etc/systemd/system/$unit" ] && present="$present $unit"
  done
  if [ -n "$present" ]; then
    # The agent first (it may be the one that asked), then its helper.
    if [ "$live" = 1 ]; then
      # shellcheck disable=SC2086 # a list of unit names without spaces
      run systemctl disable --now $present
    elif command -v systemctl >/dev/null 2>&1; then
      # shellcheck disable=SC2086
      run systemctl --root="${ROOT:-/}" disable $present
    fi
  fi
  for unit in $units; do
    remove "/etc/systemd/system/$unit"
  done
  if [ "$live" = 1 ]; then
    run systemctl daemon-reload
    systemctl reset-failed ct-ops-agent.service ct-ops-agent-helper.service >/dev/null 2>&1 || true
  fi

  remove /usr/local/bin/ct-ops-agent /usr/local/bin/ct-ops-agent.ct-ops-new /usr/local/bin/.ct-ops-agent.ct-ops-new
  remove /usr/local/libexec/ct-ops /etc/ct-ops /var/lib/ct-ops
  # install.sh created /usr/local/libexec if it was missing; leave it only if something else uses it.
  if [ -d "$ROOT/usr/local/libexec" ] && [ -z "$(ls -A "$ROOT/usr/local/libexec")" ]; then
    run rmdir "$ROOT/usr/local/libexec"
  fi

  root_flag=
  [ -n "$ROOT" ] && root_flag=--root=$ROOT
  if in_db passwd ct-ops; then
    if command -v userdel >/dev/null 2>&1; then
      run userdel ${root_flag:+"$root_flag"} ct-ops
    elif command -v deluser >/dev/null 2>&1; then
      run deluser ct-ops
    fi
  fi
  if in_db group ct-ops; then
    if command -v groupdel >/dev/null 2>&1; then
      run groupdel ${root_flag:+"$root_flag"} ct-ops
    elif command -v delgroup >/dev/null 2>&1; then
      run delgroup ct-ops
    fi
  fi
}

uninstall_darwin() {
  if [ -z "$ROOT" ]; then
    # The agent first; the helper last (it may be the one that started this script).
    for label in com.ct-ops.agent com.ct-ops.agent-helper; do
      if launchctl print "system/$label" >/dev/null 2>&1; then
        run launchctl bootout "system/$label"
      fi
    done
  fi
  remove /Library/LaunchDaemons/com.ct-ops.agent.plist /Library/LaunchDaemons/com.ct-ops.agent-helper.plist
  remove /usr/local/bin/ct-ops-agent /usr/local/bin/.ct-ops-agent.ct-ops-new
  remove /usr/local/libexec/ct-ops /etc/ct-ops "/Library/Application Support/CT-Ops"
  remove /var/log/ct-ops-agent.log /var/log/ct-ops-agent-helper.log
}

case $(uname -s) in
  Darwin) uninstall_darwin ;;
  *) uninstall_linux ;;
esac
say "CT-Ops agent removed"
