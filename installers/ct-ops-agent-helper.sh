#!/bin/sh
# CT-Ops agent privileged helper. Installed root-owned to /usr/local/libexec/ct-ops/ and run
# as root by ct-ops-agent-helper.service (Linux, triggered by ct-ops-agent-helper.path) or the
# com.ct-ops.agent-helper launch daemon (macOS, WatchPaths) whenever the agent drops a request
# file into the spool directory. See docs/install.md, "Privilege model".
#
# Everything in the spool is written by the agent's unprivileged account and is treated as
# hostile: the request, the staged files, even their kind (links, FIFOs). A request is one line
# of at most 1024 bytes, read as data only (never evaluated):
#   uninstall                       run the installed uninstall.sh, detached
#   uninstall <task_id>             the same, and the uninstaller reports the outcome of that
#                                   agent_uninstall task to the appliance (tsk_ + 1-64 letters
#                                   or digits), with the agent's privileges
#   update <release-file>           install the agent release staged in the spool as three files:
#                                   <release-file> (ct-ops-agent-<os>-<arch> of THIS host),
#                                   SHA256SUMS and SHA256SUMS.minisig, as published with each
#                                   release. Installed only when SHA256SUMS.minisig verifies with
#                                   the root-owned release key /etc/ct-ops/release.pub (minisign
#                                   prehashed Ed25519, global signature included), SHA256SUMS lists
#                                   the file's SHA-256, and the version in the signed trusted
#                                   comment is strictly greater than the installed one
#                                   (/usr/local/libexec/ct-ops/agent.version); then the agent is
#                                   restarted, and rolled back unless the new agent opens a
#                                   heartbeat stream within STREAM_WITHIN_SECS (it writes its
#                                   version into <spool>/streaming after its first acknowledged
#                                   heartbeat) and then keeps the same process for SETTLE_SECS
# Anything else is refused. The outcome is written to <spool>/result for the agent to read:
#   "<verb> ok", "<verb> refused <reason>", "update rolled-back <reason>".
# "uninstall ok" is written only after the uninstaller was started; when it cannot be started
# (systemd-run failing, no setsid) the answer is "uninstall refused start-failed".
#
# Signatures are checked by the installed, root-owned install.sh (`install.sh verify-minisig`):
# one verifier for the host, which install.sh needs before it trusts anything from the media.
#
# Exit codes: 0 done (or nothing to do), 1 request refused, 2 update rolled back, 3 internal error.
set -eu
umask 077
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

log() { printf 'ct-ops-agent-helper: %s\n' "$*"; }

# size_of FILE: its size in bytes.
size_of() { wc -c <"$1" | tr -d ' '; }

[ $# -eq 0 ] || { log "unknown arguments: $*"; exit 3; }

case $(uname -s) in
  Darwin)
    OS=darwin
    SPOOL="/Library/Application Support/CT-Ops/requests"
    WORK="/Library/Application Support/CT-Ops/helper"
    ;;
  *)
    OS=linux
    SPOOL=/var/lib/ct-ops/requests
    WORK=/var/lib/ct-ops/helper
    ;;
esac
case $(uname -m) in
  x86_64 | amd64) ARCH=x64 ;;
  aarch64 | arm64) ARCH=arm64 ;;
  *) ARCH=unsupported ;;
esac
readonly SPOOL WORK OS ARCH
readonly AGENT_BIN=/usr/local/bin/ct-ops-agent
readonly LIBEXEC=/usr/local/libexec/ct-ops
readonly PREVIOUS=$LIBEXEC/ct-ops-agent.previous
readonly INSTALLED_VERSION=$LIBEXEC/agent.version
readonly RELEASE_KEY=/etc/ct-ops/release.pub
readonly UNINSTALL_LOG=/var/log/ct-ops-uninstall.log
# Largest staged files taken from the spool (the agent executable is ~100 MB).
readonly MAX_EXECUTABLE_BYTES=536870912 MAX_SUMS_BYTES=65536 MAX_SIGNATURE_BYTES=4096
# How long a freshly updated agent has to open its first heartbeat stream, and then how long it must
# keep the same process, before the update counts (docs/operations.md, "Rollouts").
STREAM_WITHIN_SECS=${CT_OPS_UPDATE_STREAM_WITHIN_SECS:-120}
case $STREAM_WITHIN_SECS in '' | *[!0-9]*) STREAM_WITHIN_SECS=120 ;; esac
SETTLE_SECS=${CT_OPS_UPDATE_SETTLE_SECS:-300}
case $SETTLE_SECS in '' | *[!0-9]*) SETTLE_SECS=300 ;; esac

# result TEXT: tells the agent what happened (atomic replace; the agent may delete it).
result() {
  answer=$(mktemp "$WORK/result.XXXXXXXX")
  printf '%s\n' "$*" >"$answer"
  chmod 0644 "$answer"
  rm -rf "$SPOOL/result"
  # The agent's account may plant "result" again, as a link to a folder, right after the rm:
  # mv must replace the name itself (rename(2)), never move into what it points at.
  if [ "$(uname -s)" = Darwin ]; then
    mv -fh "$answer" "$SPOOL/result"
  else
    mv -fT "$answer" "$SPOOL/result"
  fi
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

# take_from_spool NAME DEST MAX_BYTES: moves the agent's file NAME out of the spool into DEST
# (root-only) and checks it there: the copy never follows a link nor waits on a FIFO, holds at
# most MAX_BYTES, and only the copy is used afterwards. Fails for anything but a regular file;
# NAME is gone from the spool either way.
take_from_spool() {
  source=$SPOOL/$1
  copied=0
  if [ ! -L "$source" ] && [ -f "$source" ]; then
    if [ "$OS" = darwin ]; then
      cp "$source" "$2" && copied=1
    else
      dd if="$source" of="$2" iflag=nofollow,nonblock bs=65536 count=$(($3 / 65536 + 1)) status=none 2>/dev/null && copied=1
    fi
  fi
  rm -rf "$source"
  [ "$copied" = 1 ] && [ -f "$2" ] && [ "$(size_of "$2")" -le "$3" ]
}

if [ -L "$WORK" ] || [ ! -d "$WORK" ]; then
  log "work directory $WORK is missing"
  exit 3
fi

# One request at a time (the path unit starts one instance; a hand-run one waits).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$WORK/lock"
  flock -w 600 9 || { log "another helper run holds $WORK/lock"; exit 3; }
fi
RUN=$(mktemp -d "$WORK/run.XXXXXXXX") || exit 3
trap 'rm -rf "$RUN"' EXIT

# --- take the request ------------------------------------------------------------------------

# Spurious trigger: nothing to do.
if [ ! -e "$SPOOL/request" ] && [ ! -L "$SPOOL/request" ]; then
  exit 0
fi
# Move it out of the agent's reach first (a rename: the agent can no longer swap the name),
# then read it once into memory; only that copy is parsed.
mv -f "$SPOOL/request" "$RUN/request"
if [ -L "$RUN/request" ] || [ ! -f "$RUN/request" ]; then
  refuse "not-a-regular-file"
fi
if [ "$(size_of "$RUN/request")" -gt 1024 ]; then
  refuse "too-long"
fi
REQUEST=$(cat "$RUN/request")

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
      </dev/null >>"$UNINSTALL_LOG" 2>&1 9>&- &)
  elif command -v systemd-run >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    # A transient unit of its own: stopping the agent's or this helper's units cannot kill it.
    # Its name is unique (task, time, this helper's pid): a name in use makes systemd-run fail.
    systemd-run --no-block --collect --quiet --unit="ct-ops-uninstall-${task:-manual}-$(date +%s)-$$" \
      --description="CT-Ops agent uninstall" \
      --property=StandardOutput="append:$UNINSTALL_LOG" --property=StandardError="append:$UNINSTALL_LOG" \
      "$@"
  else
    command -v setsid >/dev/null 2>&1 || return 1
    (setsid "$@" </dev/null >>"$UNINSTALL_LOG" 2>&1 9>&- &)
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
    # A new binary that crash-looped used up the unit's start limit (StartLimitBurst): systemd then
    # refuses every start, the rollback's too, until the counter is reset.
    systemctl reset-failed ct-ops-agent.service 2>/dev/null || true
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

# new_agent_streams VERSION: true once the restarted agent says it streams as VERSION (the line it
# writes into the spool's "streaming" after its first acknowledged heartbeat), within
# STREAM_WITHIN_SECS. The file is the agent account's: taken out of the spool like any staged file,
# at most 64 bytes, read as data.
new_agent_streams() {
  waited=0
  while [ "$waited" -le "$STREAM_WITHIN_SECS" ]; do
    if [ -e "$SPOOL/streaming" ] || [ -L "$SPOOL/streaming" ]; then
      if take_from_spool streaming "$RUN/streaming" 64 && [ "$(head -n 1 "$RUN/streaming")" = "$1" ]; then
        return 0
      fi
    fi
    sleep 1
    waited=$((waited + 1))
  done
  return 1
}

# swap_in FILE: atomically makes FILE (already root-owned and verified) the agent binary.
swap_in() {
  incoming=$(mktemp "${AGENT_BIN%/*}/.ct-ops-agent.XXXXXXXX")
  cp "$1" "$incoming"
  chown 0:0 "$incoming"
  chmod 0755 "$incoming"
  mv -f "$incoming" "$AGENT_BIN"
}

# is_version TEXT: MAJOR.MINOR.PATCH, decimal numbers of at most 9 digits (no pre-releases).
is_version() {
  case $1 in *[!0-9.]* | .* | *. | *..*) return 1 ;; esac
  printf '%s\n' "$1" | grep -Ex '[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}' >/dev/null
}

# version_newer A B: true when version A is strictly greater than version B.
version_newer() {
  newer_rest=$1 older_rest=$2
  for _ in 1 2 3; do
    a=${newer_rest%%.*} b=${older_rest%%.*}
    newer_rest=${newer_rest#*.} older_rest=${older_rest#*.}
    [ "$a" -gt "$b" ] && return 0
    [ "$a" -lt "$b" ] && return 1
  done
  return 1
}

do_update() {
  # The only argument is the release file's name; it must be this host's.
  name=${REQUEST#update }
  case $name in update | '' | *' '*) refuse "update-needs-release-file" ;; esac
  case $name in ct-ops-agent-*) ;; *) refuse "not-a-release-file" ;; esac
  [ "$name" = "ct-ops-agent-$OS-$ARCH" ] || refuse "wrong-target"
  [ -f "$AGENT_BIN" ] || refuse "agent-not-installed"
  if [ -L "$RELEASE_KEY" ] || [ ! -f "$RELEASE_KEY" ]; then refuse "no-release-key"; fi
  release_key=$(grep -v '^untrusted comment:' "$RELEASE_KEY" | head -n 1)
  installed=$(cat "$INSTALLED_VERSION" 2>/dev/null || true)
  is_version "$installed" || refuse "installed-version-unknown"

  # Out of the agent's reach first; from here on only the root-only copies are read.
  taken=yes
  take_from_spool SHA256SUMS "$RUN/SHA256SUMS" "$MAX_SUMS_BYTES" || taken=no
  take_from_spool SHA256SUMS.minisig "$RUN/SHA256SUMS.minisig" "$MAX_SIGNATURE_BYTES" || taken=no
  take_from_spool "$name" "$RUN/candidate" "$MAX_EXECUTABLE_BYTES" || taken=no
  [ "$taken" = yes ] || refuse "staged-file-unreadable-or-link"
  if ! trusted=$(sh "$LIBEXEC/install.sh" verify-minisig "$RUN/SHA256SUMS" "$RUN/SHA256SUMS.minisig" "$release_key" 2>"$RUN/minisig-why"); then
    refuse "release-signature-invalid-$(sed -n '1{s/[^a-z-]/?/g;p;}' "$RUN/minisig-why")"
  fi
  # The trusted comment is covered by the global signature: it names the release's version.
  version=$(printf '%s\n' "$trusted" | sed -n 's/^ct-ops-agent \([0-9.]*\) executables, .*$/\1/p')
  is_version "$version" || refuse "release-version-unreadable"
  version_newer "$version" "$installed" || refuse "not-newer-than-installed-$installed"
  expected=$(awk -v name="$name" 'length($1) == 64 && $2 == name && NF == 2 { print $1; exit }' "$RUN/SHA256SUMS")
  [ -n "$expected" ] || refuse "not-in-release"
  sha=$(sha256_of "$RUN/candidate")
  [ "$sha" = "$expected" ] || refuse "sha256-mismatch"

  # Keep the running version for rollback, then swap.
  kept=$(mktemp "$LIBEXEC/.ct-ops-agent.previous.XXXXXXXX")
  cp "$AGENT_BIN" "$kept"
  chmod 0755 "$kept"
  mv -f "$kept" "$PREVIOUS"
  swap_in "$RUN/candidate"
  log "installed agent release $version ($sha, was $installed); restarting the agent"
  # A marker left from before says nothing about this start.
  rm -rf "$SPOOL/streaming"
  why=
  if ! restart_agent; then
    why=new-binary-did-not-start
  elif ! new_agent_streams "$version"; then
    why=new-agent-never-streamed
  elif ! agent_stays_up; then
    why=new-binary-did-not-stay-up
  fi
  if [ -z "$why" ]; then
    printf '%s\n' "$version" >"$RUN/version"
    chmod 0644 "$RUN/version"
    mv -f "$RUN/version" "$INSTALLED_VERSION"
    log "update ok: agent $version streamed and stayed up for ${SETTLE_SECS}s"
    result "update ok $version"
    return 0
  fi
  log "the new agent failed ($why): rolling back to the previous binary ($installed)"
  swap_in "$PREVIOUS"
  restart_agent || log "restarting the previous agent failed too"
  result "update rolled-back $why"
  exit 2
}

case $VERB in
  uninstall) do_uninstall ;;
  update) do_update ;;
esac
