#!/bin/sh
# CT-Ops agent uninstaller for Linux (systemd) and macOS (launchd). Reverses install.sh:
# stops and disables the agent and its root helper, then removes the unit files / launch
# daemons, the binary, its files in /etc/ct-ops (agent.toml, ca.crt, release.pub), its data, spool
# and helper directories, the helper and (Linux) the ct-ops system user and group. Only the agent's
# own files go: /etc/ct-ops and /var/lib/ct-ops are removed only when nothing else is left in them
# (the CT-Ops appliance keeps its configuration and data there, docs/decisions.md 77). Safe to run
# again: whatever is already gone is skipped.
#
# Installed as /usr/local/libexec/ct-ops/uninstall.sh, where the root helper (or an agent
# running as root) runs it for a remote uninstall, detached, with its output in
# /var/log/ct-ops-uninstall.log. Run by hand, it writes to the terminal only.
#
# Usage: sudo ./uninstall.sh [--root DIR] [--dry-run] [--report-task ID]
#   --root DIR   remove from DIR instead of / (also CT_OPS_INSTALL_ROOT); stops nothing
#   --dry-run    print every action, change nothing
#   --report-task ID
#                remote uninstall: first copy the agent binary, its config, CA and identity and
#                task ledger files to a private folder (Linux /var/lib/ct-ops-report.*, macOS
#                /Library/Application Support/CT-Ops-report.*); at the end report to the
#                appliance, with those copies, that agent_uninstall task ID succeeded (or failed,
#                naming the failed step); then delete the copies. On Linux the report runs as the
#                agent's user (setpriv), never as root
#
# Exit codes: 0 removed (or nothing to remove), 1 usage, 2 not root, 6 a removal step failed.
set -eu
umask 077
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

readonly EX_USAGE=1 EX_NOT_ROOT=2 EX_STEP=6
readonly AGENT_BIN=/usr/local/bin/ct-ops-agent

say() { printf 'ct-ops uninstall: %s\n' "$*"; }
# FAILURE: the last error, named in the failure report of a remote uninstall.
FAILURE=
die() {
  code=$1
  shift
  FAILURE=$*
  printf 'ct-ops uninstall: error: %s\n' "$*" >&2
  exit "$code"
}

ROOT=${CT_OPS_INSTALL_ROOT:-}
DRY_RUN=0
REPORT_TASK=
while [ $# -gt 0 ]; do
  case $1 in
    --root) [ $# -ge 2 ] || die $EX_USAGE "--root needs a directory"; ROOT=$2; shift ;;
    --root=*) ROOT=${1#--root=} ;;
    --dry-run) DRY_RUN=1 ;;
    --report-task) [ $# -ge 2 ] || die $EX_USAGE "--report-task needs a task id"; REPORT_TASK=$2; shift ;;
    --report-task=*) REPORT_TASK=${1#--report-task=} ;;
    -h | --help) sed -n '/^# Usage:/,/^# *agent.s user (setpriv), never as root/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) die $EX_USAGE "unknown argument: $1" ;;
  esac
  shift
done
if [ -n "$REPORT_TASK" ]; then
  # It becomes an argument of the agent: tsk_ and 1 to 64 letters or digits, nothing else.
  case $REPORT_TASK in tsk_?*) ;; *) die $EX_USAGE "--report-task: not a task id" ;; esac
  case ${REPORT_TASK#tsk_} in *[!A-Za-z0-9]*) die $EX_USAGE "--report-task: not a task id" ;; esac
  [ ${#REPORT_TASK} -le 68 ] || die $EX_USAGE "--report-task: not a task id"
  if [ -n "$ROOT" ] || [ "$DRY_RUN" = 1 ]; then
    die $EX_USAGE "--report-task is for a real uninstall of this machine (not with --root or --dry-run)"
  fi
fi
if [ -n "$ROOT" ]; then
  case $ROOT in /*) ;; *) die $EX_USAGE "--root must be an absolute path" ;; esac
  [ -d "$ROOT" ] || die $EX_USAGE "--root $ROOT is not a directory"
  ROOT=${ROOT%/}
fi
if [ "$(id -u)" != 0 ] && [ "$DRY_RUN" = 0 ]; then
  die $EX_NOT_ROOT "must run as root"
fi

# take_lock: waits (at most 10 minutes) while another install.sh or uninstall.sh works on the
# same root (the same lock as install.sh's; the two scripts ship and run apart, so each has it). flock where util-linux has it (released by the kernel when we exit); else a lock
# folder holding our pid, taken over only when that process is gone.
LOCK_DIR=
take_lock() {
  case $(uname -s) in Darwin) lock=/var/run/ct-ops-install.lock ;; *) lock=$ROOT/run/ct-ops-install.lock ;; esac
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
release_lock() { [ -z "$LOCK_DIR" ] || rm -rf "$LOCK_DIR"; }
[ "$DRY_RUN" = 1 ] || take_lock
trap release_lock EXIT

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

# The agent's own files in /etc/ct-ops (installers/install.sh writes them; with any leftovers of an
# interrupted put_file, .NAME.XXXXXXXX).
readonly OWN_CONFIG_FILES="agent.toml ca.crt release.pub"

# remove_own_config: the agent's files in /etc/ct-ops, then the folder if nothing else is in it.
remove_own_config() {
  for name in $OWN_CONFIG_FILES; do
    remove "/etc/ct-ops/$name"
    for leftover in "$ROOT/etc/ct-ops/.$name".*; do
      remove "${leftover#"$ROOT"}"
    done
  done
  remove_dir_if_empty /etc/ct-ops
}

# remove_dir_if_empty PATH: removes the folder PATH (under ROOT) when nothing is left in it; a dry
# run removed nothing, so it cannot tell and says so.
remove_dir_if_empty() {
  [ -d "$ROOT$1" ] && [ ! -L "$ROOT$1" ] || return 0
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run] rmdir %s (if empty)\n' "$ROOT$1"
  elif [ -z "$(ls -A "$ROOT$1")" ]; then
    run rmdir "$ROOT$1"
  else
    say "kept $1: it holds files that are not the agent's"
  fi
}

# --- remote uninstall: keep what the report needs -------------------------------------------

# KIT_TEMPLATE: where the report's copies go. Not /tmp: it is often mounted noexec (the report
# runs the copied executable) or a small tmpfs (that executable is ~100 MB). A folder on the root
# file system instead, in a parent only root can write to, under a name the removal below never
# deletes. macOS: beside (not inside) "/Library/Application Support/CT-Ops", on the same data
# volume as the agent; /private/var/root would do too, but is root's home folder.
case $(uname -s) in
  Darwin)
    AGENT_DATA="/Library/Application Support/CT-Ops/agent"
    KIT_TEMPLATE="/Library/Application Support/CT-Ops-report.XXXXXXXX"
    ;;
  *)
    AGENT_DATA=/var/lib/ct-ops/agent
    KIT_TEMPLATE=/var/lib/ct-ops-report.XXXXXXXX
    ;;
esac
readonly AGENT_DATA KIT_TEMPLATE
# What report-task reads from the data folder (agent/identity/paths.ts, agent/tasks/ledger.ts).
readonly REPORT_FILES="agent_key.pem agent_key.pub agent_state.json tasks.json trusted_cas.json"

# copy_nofollow SOURCE DEST: copies a regular file in the agent's data folder, which the agent's
# (unprivileged) user owns and could have replaced by a link to a root-only file, or a FIFO. The
# copy never follows a link (as in ct-ops-agent-helper.sh) and never waits on a FIFO.
copy_nofollow() {
  if [ -L "$1" ] || [ ! -f "$1" ]; then return 1; fi
  # A second hard link could be a root-only file (where fs.protected_hardlinks is off): its
  # content would reach the agent's copies.
  [ -z "$(find "$1" -maxdepth 0 -links +1)" ] || return 1
  if [ "$(uname -s)" = Darwin ]; then
    cp "$1" "$2"
  else
    dd if="$1" of="$2" iflag=nofollow,nonblock bs=65536 status=none 2>/dev/null
  fi
}

# The report is sent after everything is gone, so it runs from private copies: the binary,
# agent.toml, the CA and the files of REPORT_FILES (key, credential, task ledger, trust bundle) that are
# regular files; a missing one or a link is skipped.
# Nothing running as root executes a file the agent's account could have written: the binary
# copied is the root-owned installed one (only root, or the helper after a release-signature
# check, writes it), and on Linux the report runs as the agent's uid and gid (recorded here,
# before the account is deleted) through setpriv. The kit is root:<agent gid> 0750, the binary
# root's (readable and executable by all, if it was), agent.toml root:<agent gid> 0640 (as
# installed), the data copies the agent's own (its report may save a renewed credential).
# On macOS the agent itself runs as root (docs/install.md, "macOS"), so its report does too.
KIT=
REPORT_UID=
REPORT_GID=
keep_report_kit() {
  if [ "$(uname -s)" != Darwin ]; then
    command -v setpriv >/dev/null 2>&1 || { say "setpriv (util-linux) is missing: the report cannot drop root"; return 1; }
    REPORT_UID=$(awk -F: '$1 == "ct-ops" { print $3; exit }' /etc/passwd)
    REPORT_GID=$(awk -F: '$1 == "ct-ops" { print $4; exit }' /etc/passwd)
    case $REPORT_UID$REPORT_GID in '' | *[!0-9]*) say "no ct-ops account to run the report as"; return 1 ;; esac
  fi
  if [ -z "$(find "$AGENT_BIN" -prune -type f -user 0 ! -perm -020 ! -perm -002 2>/dev/null)" ]; then
    say "$AGENT_BIN is not a regular file that only root can write"
    return 1
  fi
  KIT=$(mktemp -d "$KIT_TEMPLATE") || return 1
  cp "$AGENT_BIN" "$KIT/ct-ops-agent" && chmod a+rX "$KIT/ct-ops-agent" || return 1
  cp /etc/ct-ops/agent.toml "$KIT/agent.toml" || return 1
  if [ -f /etc/ct-ops/ca.crt ]; then cp /etc/ct-ops/ca.crt "$KIT/ca.crt" && chmod 0644 "$KIT/ca.crt" || return 1; fi
  mkdir "$KIT/agent" || return 1
  for file in $REPORT_FILES; do
    if ! copy_nofollow "$AGENT_DATA/$file" "$KIT/agent/$file"; then
      rm -f "$KIT/agent/$file"
      if [ -e "$AGENT_DATA/$file" ] || [ -L "$AGENT_DATA/$file" ]; then
        say "not copying $AGENT_DATA/$file for the report: not a regular file"
      fi
    fi
  done
  if [ -n "$REPORT_UID" ]; then
    chown -R "$REPORT_UID:$REPORT_GID" "$KIT/agent" && chgrp "$REPORT_GID" "$KIT" "$KIT/agent.toml" &&
      chmod 0750 "$KIT" && chmod 0640 "$KIT/agent.toml" || return 1
  fi
}

# as_agent COMMAND...: runs COMMAND with the agent's uid and gid (no other groups, no new
# privileges) where it has an account of its own (Linux).
as_agent() {
  if [ -n "$REPORT_UID" ]; then
    setpriv --reuid="$REPORT_UID" --regid="$REPORT_GID" --clear-groups --no-new-privs -- "$@"
  else
    "$@"
  fi
}

# report_outcome: the EXIT trap of a remote uninstall. Reports success when the script got to
# the end, else failure with the step that failed; retries a few times while the appliance is
# unreachable (exit 69/75); always deletes the copies. Keeps the script's exit status.
report_outcome() {
  status=$?
  trap - EXIT
  set +e
  if [ "$status" = 0 ]; then
    set -- --outcome=succeeded "--message=the CT-Ops agent was removed from $(uname -n)"
  else
    set -- --outcome=failed --error-code=ERR_UNINSTALL_FAILED "--message=uninstall.sh exited $status on $(uname -n): ${FAILURE:-interrupted}"
  fi
  CT_OPS_DATA_DIR=$KIT/agent
  export CT_OPS_DATA_DIR
  if [ -f "$KIT/ca.crt" ]; then
    CT_OPS_INGEST_CA_CERT=$KIT/ca.crt
    export CT_OPS_INGEST_CA_CERT
  fi
  attempt=1
  while :; do
    as_agent "$KIT/ct-ops-agent" -config "$KIT/agent.toml" report-task "--task-id=$REPORT_TASK" "$@"
    reported=$?
    case $reported in 69 | 75) ;; *) break ;; esac
    [ "$attempt" -lt 3 ] || break
    attempt=$((attempt + 1))
    sleep 5
  done
  case $reported in
    0) say "reported task $REPORT_TASK to the appliance" ;;
    126 | 127)
      printf 'ct-ops uninstall: error: reporting task %s failed: the copied agent %s could not be run (exit %s; is %s mounted noexec?); it times out on the appliance\n' \
        "$REPORT_TASK" "$KIT/ct-ops-agent" "$reported" "${KIT%/*}" >&2
      ;;
    *) printf 'ct-ops uninstall: error: reporting task %s failed (exit %s); it times out on the appliance\n' "$REPORT_TASK" "$reported" >&2 ;;
  esac
  rm -rf "$KIT"
  release_lock
  exit "$status"
}

if [ -n "$REPORT_TASK" ]; then
  if keep_report_kit; then
    say "copied what the report needs to $KIT"
    trap report_outcome EXIT
    trap 'exit 130' INT TERM HUP
  else
    printf 'ct-ops uninstall: error: %s\n' "cannot copy the agent for the report: uninstalling without reporting task $REPORT_TASK" >&2
    rm -rf "$KIT"
    KIT=
  fi
fi

# --- removal ---------------------------------------------------------------------------------

# agent_pids: the processes running the installed agent binary (Linux /proc), also one whose
# file an upgrade has since replaced ("… (deleted)").
agent_pids() {
  for exe in /proc/[0-9]*/exe; do
    case $(readlink "$exe" 2>/dev/null) in
      "$AGENT_BIN" | "$AGENT_BIN (deleted)") ;;
      *) continue ;;
    esac
    pid=${exe#/proc/}
    printf '%s ' "${pid%/exe}"
  done
}

# stop_unmanaged_agent: without systemd (chroot, container, OpenRC) nothing else stops a running
# agent, and userdel refuses a user that still runs a process: TERM it, KILL it after 10 s.
stop_unmanaged_agent() {
  # shellcheck disable=SC2046 # a list of process ids
  set -- $(agent_pids)
  [ $# -gt 0 ] || return 0
  if [ "$DRY_RUN" = 1 ]; then
    run kill -TERM "$@"
    return 0
  fi
  say "stopping the running agent (pid $*)"
  kill -TERM "$@" 2>/dev/null || true
  waited=0
  while [ -n "$(agent_pids)" ] && [ "$waited" -lt 10 ]; do
    sleep 1
    waited=$((waited + 1))
  done
  # shellcheck disable=SC2046
  set -- $(agent_pids)
  [ $# -gt 0 ] || return 0
  say "the agent did not stop within 10 s: killing pid $*"
  kill -KILL "$@" 2>/dev/null || true
  sleep 1
}

# remove_stale_kits: report copies left by an earlier remote uninstall that was killed before it
# could delete them (they hold a copy of the agent's key); this run's own copies stay.
remove_stale_kits() {
  for stale in "$ROOT${KIT_TEMPLATE%.XXXXXXXX}".*; do
    [ "$stale" = "$KIT" ] || remove "${stale#"$ROOT"}"
  done
}

# remove_staging_leftovers: half-written agent binaries (.ct-ops-agent.XXXXXXXX) that an
# interrupted install.sh or helper update left beside the real one.
remove_staging_leftovers() {
  for leftover in "$ROOT"/usr/local/bin/.ct-ops-agent.*; do
    remove "${leftover#"$ROOT"}"
  done
}

in_db() { [ -f "$ROOT/etc/$1" ] && awk -F: -v name="$2" '$1 == name { found = 1 } END { exit !found }' "$ROOT/etc/$1"; }

uninstall_linux() {
  units="ct-ops-agent.service ct-ops-agent-helper.path ct-ops-agent-helper.service"
  live=0
  if [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    live=1
  fi
  if [ "$live" = 0 ] && [ -z "$ROOT" ]; then
    stop_unmanaged_agent
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
  remove /etc/systemd/system/ct-ops-agent.service.d
  if [ "$live" = 1 ]; then
    run systemctl daemon-reload
    # A unit that never failed has nothing to reset: reset-failed's complaint is no failure here.
    if [ "$DRY_RUN" = 1 ]; then
      run systemctl reset-failed ct-ops-agent.service ct-ops-agent-helper.service
    else
      systemctl reset-failed ct-ops-agent.service ct-ops-agent-helper.service >/dev/null 2>&1 || true
    fi
  fi

  remove "$AGENT_BIN"
  remove_staging_leftovers
  remove /usr/local/libexec/ct-ops /var/lib/ct-ops/agent /var/lib/ct-ops/requests /var/lib/ct-ops/helper
  remove_own_config
  remove_dir_if_empty /var/lib/ct-ops
  remove_stale_kits
  # install.sh created /usr/local/libexec if it was missing; leave it only if something else uses it.
  # (A dry run removed nothing: ct-ops, which it would remove, does not count.)
  if [ -d "$ROOT/usr/local/libexec" ] && [ -z "$(find "$ROOT/usr/local/libexec" -mindepth 1 -maxdepth 1 ! -name ct-ops)" ]; then
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
  remove /usr/local/bin/ct-ops-agent
  remove_staging_leftovers
  remove /usr/local/libexec/ct-ops "/Library/Application Support/CT-Ops"
  remove_own_config
  remove /var/log/ct-ops-agent.log /var/log/ct-ops-agent-helper.log
  remove_stale_kits
}

case $(uname -s) in
  Darwin) uninstall_darwin ;;
  *) uninstall_linux ;;
esac
if [ "$DRY_RUN" = 1 ]; then
  say "dry run: nothing was changed; the [dry-run] lines above are what an uninstall would do"
else
  say "CT-Ops agent removed"
fi
