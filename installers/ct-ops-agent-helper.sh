#!/bin/sh
# CT-Ops agent privileged helper. Installed root-owned to /usr/local/libexec/ct-ops/ and run
# as root by ct-ops-agent-helper.service (Linux, triggered by ct-ops-agent-helper.path) or the
# com.ct-ops.agent-helper launch daemon (macOS, WatchPaths) whenever the agent drops a request
# file into the spool directory. See docs/install.md, "Privilege model".
#
# A request is one line of at most 1024 bytes, read as data only (never evaluated):
#   uninstall                       run the installed uninstall.sh, detached
#   uninstall <task_id>             the same, and the uninstaller reports the outcome of that
#                                   agent_uninstall task to the appliance (tsk_ + 1-64 letters
#                                   or digits)
#   update <path> <sha256>          install the staged agent binary <path> (a file directly in
#                                   the spool directory) if its SHA-256 is <sha256>; restart the
#                                   agent; roll back if the new binary does not stay up
# Anything else is refused. The outcome is written to <spool>/result for the agent to read:
#   "<verb> ok", "<verb> refused <reason>", "update rolled-back <reason>".
# "uninstall ok" is written only after the uninstaller was started; when it cannot be started
# (systemd-run failing, no setsid) the answer is "uninstall refused start-failed".
#
# Exit codes: 0 done (or nothing to do), 1 request refused, 2 update rolled back, 3 internal error.
set -eu
umask 077
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

case $(uname -s) in
  Darwin)
    SPOOL="/Library/Application Support/CT-Ops/requests"
    WORK="/Library/Application Support/CT-Ops/helper"
    ;;
  *)
    SPOOL=/var/lib/ct-ops/requests
    WORK=/var/lib/ct-ops/helper
    ;;
esac
readonly SPOOL WORK
readonly AGENT_BIN=/usr/local/bin/ct-ops-agent
readonly LIBEXEC=/usr/local/libexec/ct-ops
readonly PREVIOUS=$LIBEXEC/ct-ops-agent.previous
readonly UNINSTALL_LOG=/var/log/ct-ops-uninstall.log
# How long a freshly updated agent must keep the same process before the update counts.
SETTLE_SECS=${CT_OPS_UPDATE_SETTLE_SECS:-20}
case $SETTLE_SECS in '' | *[!0-9]*) SETTLE_SECS=20 ;; esac

log() { printf 'ct-ops-agent-helper: %s\n' "$*"; }

# result TEXT: tells the agent what happened (atomic replace; the agent may delete it).
result() {
  printf '%s\n' "$*" >"$WORK/result.tmp"
  chmod 0644 "$WORK/result.tmp"
  rm -f "$SPOOL/result"
  mv -f "$WORK/result.tmp" "$SPOOL/result"
}

refuse() {
  log "refused: $1"
  result "${VERB:-request} refused $1"
  exit 1
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum -- "$1" | cut -d ' ' -f 1
  else
    shasum -a 256 -- "$1" | cut -d ' ' -f 1
  fi
}

# copy_nofollow SOURCE DEST: copies a regular file that the agent's user could have replaced
# by a symbolic link at any moment; the copy never follows a link.
copy_nofollow() {
  if [ "$(uname -s)" = Darwin ]; then
    [ -L "$1" ] && return 1
    cp "$1" "$2"
  else
    dd if="$1" of="$2" iflag=nofollow bs=65536 status=none 2>/dev/null
  fi
}

if [ -L "$WORK" ] || [ ! -d "$WORK" ]; then
  log "work directory $WORK is missing"
  exit 3
fi

# --- take the request ------------------------------------------------------------------------

# Spurious trigger: nothing to do.
if [ ! -e "$SPOOL/request" ] && [ ! -L "$SPOOL/request" ]; then
  exit 0
fi
# Move it out of the agent's reach first (a rename: the agent can no longer swap the name),
# then read it once into memory; only that copy is parsed.
rm -f "$WORK/request"
mv -f "$SPOOL/request" "$WORK/request"
if [ -L "$WORK/request" ] || [ ! -f "$WORK/request" ]; then
  rm -f "$WORK/request"
  refuse "not-a-regular-file"
fi
size=$(wc -c <"$WORK/request" | tr -d ' ')
if [ "$size" -gt 1024 ]; then
  rm -f "$WORK/request"
  refuse "too-long"
fi
REQUEST=$(cat "$WORK/request")
rm -f "$WORK/request"

# --- parse it: a closed grammar, no evaluation -----------------------------------------------

case $REQUEST in
  *"
"*) refuse "more-than-one-line" ;;
esac
case $REQUEST in
  *[!A-Za-z0-9\ _./-]*) refuse "unexpected-characters" ;;
esac
VERB=${REQUEST%% *}
case $VERB in
  uninstall | update) ;;
  *)
    VERB=request
    refuse "unknown-verb"
    ;;
esac

# --- uninstall -------------------------------------------------------------------------------

# is_task_id TEXT: tsk_ followed by 1 to 64 letters or digits, nothing else.
is_task_id() {
  case $1 in tsk_?*) ;; *) return 1 ;; esac
  case ${1#tsk_} in *[!A-Za-z0-9]*) return 1 ;; esac
  [ ${#1} -le 68 ]
}

# start_uninstaller COMMAND...: starts COMMAND detached from this helper, its output appended to
# UNINSTALL_LOG; fails when it could not be started.
start_uninstaller() {
  if [ "$(uname -s)" = Darwin ]; then
    # The launch daemon has AbandonProcessGroup: launchd leaves this child alone, and the new
    # session keeps it alive when the uninstaller boots out the daemons themselves.
    [ -x /usr/bin/perl ] || return 1
    (/usr/bin/perl -MPOSIX -e 'POSIX::setsid(); exec { $ARGV[0] } @ARGV' "$@" \
      </dev/null >>"$UNINSTALL_LOG" 2>&1 &)
  elif command -v systemd-run >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    # A transient unit of its own: stopping the agent's or this helper's units cannot kill it.
    # Its name is unique (task, time, this helper's pid): a name in use makes systemd-run fail.
    systemd-run --no-block --collect --quiet --unit="ct-ops-uninstall-${task:-manual}-$(date +%s)-$$" \
      --description="CT-Ops agent uninstall" \
      --property=StandardOutput="append:$UNINSTALL_LOG" --property=StandardError="append:$UNINSTALL_LOG" \
      "$@"
  else
    command -v setsid >/dev/null 2>&1 || return 1
    (setsid "$@" </dev/null >>"$UNINSTALL_LOG" 2>&1 &)
  fi
}

do_uninstall() {
  uninstaller=$LIBEXEC/uninstall.sh
  task=
  set -- /bin/sh "$uninstaller"
  if [ "$REQUEST" != uninstall ]; then
    task=${REQUEST#uninstall }
    is_task_id "$task" || refuse "malformed-task-id"
    set -- "$@" --report-task "$task"
  fi
  if [ -L "$uninstaller" ] || [ ! -f "$uninstaller" ]; then refuse "uninstaller-missing"; fi
  # /var/log is root's: nobody else can plant a link there. Start a fresh private log.
  rm -f "$UNINSTALL_LOG"
  : >"$UNINSTALL_LOG"
  chmod 0600 "$UNINSTALL_LOG"
  log "starting $* detached; log: $UNINSTALL_LOG"
  # "ok" tells the agent the uninstall is handed off (it then leaves the task to the uninstaller's
  # report): answered only once the uninstaller really started.
  start_uninstaller "$@" || refuse "start-failed"
  # The uninstaller removes the spool only after copying the agent for its report, so this answer
  # normally lands first; if not, the agent it was meant for is being stopped anyway.
  if result "uninstall ok"; then
    log "answered: uninstall ok"
  else
    log "could not answer: the uninstaller already removed $SPOOL"
  fi
}

# --- update ----------------------------------------------------------------------------------

# agent_pid: the agent's process id as the service manager sees it ("" or 0 when not running).
agent_pid() {
  if [ "$(uname -s)" = Darwin ]; then
    launchctl print system/com.ct-ops.agent 2>/dev/null | awk '$1 == "pid" && $2 == "=" { print $3; exit }'
  else
    systemctl show --property=MainPID --value ct-ops-agent.service 2>/dev/null
  fi
}

restart_agent() {
  if [ "$(uname -s)" = Darwin ]; then
    launchctl kickstart -k system/com.ct-ops.agent
  else
    systemctl restart ct-ops-agent.service
  fi
}

# agent_stays_up: true when the agent runs now and is the same process SETTLE_SECS later.
agent_stays_up() {
  sleep 2
  first=$(agent_pid)
  case $first in '' | 0) return 1 ;; esac
  sleep "$SETTLE_SECS"
  [ "$(agent_pid)" = "$first" ] || return 1
  if [ "$(uname -s)" != Darwin ]; then
    [ "$(systemctl show --property=ActiveState --value ct-ops-agent.service)" = active ] || return 1
  fi
}

# swap_in FILE: atomically makes FILE (already root-owned and verified) the agent binary.
swap_in() {
  cp "$1" "$AGENT_BIN.ct-ops-new"
  chown 0:0 "$AGENT_BIN.ct-ops-new"
  chmod 0755 "$AGENT_BIN.ct-ops-new"
  mv -f "$AGENT_BIN.ct-ops-new" "$AGENT_BIN"
}

do_update() {
  rest=${REQUEST#update }
  [ "$rest" != "$REQUEST" ] || refuse "update-needs-path-and-sha256"
  sha=${rest##* }
  staged=${rest% *}
  [ "$staged" != "$rest" ] || refuse "update-needs-path-and-sha256"
  case $sha in *[!0-9a-f]*) refuse "malformed-sha256" ;; esac
  [ ${#sha} -eq 64 ] || refuse "malformed-sha256"
  # The staged file must sit directly in the spool: no other directory, no "..", no dot files.
  name=${staged##*/}
  [ "$staged" = "$SPOOL/$name" ] || refuse "staged-file-outside-spool"
  case $name in
    '' | .* | request | result) refuse "bad-staged-name" ;;
  esac

  candidate=$WORK/ct-ops-agent.candidate
  rm -f "$candidate"
  copy_nofollow "$staged" "$candidate" || refuse "staged-file-unreadable-or-link"
  rm -f "$staged"
  actual=$(sha256_of "$candidate")
  if [ "$actual" != "$sha" ]; then
    rm -f "$candidate"
    refuse "sha256-mismatch"
  fi
  [ -f "$AGENT_BIN" ] || refuse "agent-not-installed"

  # Keep the running version for rollback, then swap.
  cp "$AGENT_BIN" "$PREVIOUS.tmp"
  chmod 0755 "$PREVIOUS.tmp"
  mv -f "$PREVIOUS.tmp" "$PREVIOUS"
  swap_in "$candidate"
  rm -f "$candidate"
  log "installed agent binary $sha; restarting the agent"
  if restart_agent && agent_stays_up; then
    log "update ok: the new agent stayed up for ${SETTLE_SECS}s"
    result "update ok $sha"
    return 0
  fi
  log "the new agent did not stay up: rolling back to the previous binary"
  swap_in "$PREVIOUS"
  restart_agent || log "restarting the previous agent failed too"
  result "update rolled-back new-binary-did-not-stay-up"
  exit 2
}

case $VERB in
  uninstall) do_uninstall ;;
  update) do_update ;;
esac
