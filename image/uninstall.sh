#!/bin/sh
# CT-Ops appliance uninstaller: reverses image/install.sh. Stops and disables the service, then
# removes its unit (and drop-ins), /opt/ct-ops (every installed version) and the
# /usr/local/bin/ct-ops-appliance and ct-ops-bundle links. The configuration (/etc/ct-ops/appliance.toml,
# /etc/ct-ops/appliance-release.pub), the data directory and the pre-upgrade copies are KEPT, so a later
# install.sh picks up the same CA, keys, hosts and tokens; --purge removes them and the
# ct-ops-appliance account too. It never touches the agent's files (/etc/ct-ops/agent.toml, ca.crt,
# release.pub, /var/lib/ct-ops/{agent,requests,helper}): /etc/ct-ops and /var/lib/ct-ops are removed
# only when nothing else is left in them. Safe to run again: whatever is already gone is skipped.
# docs/operations.md, "Installing the appliance from media".
#
# Usage: sudo ./uninstall.sh [--purge] [--dry-run]
#   --purge      also remove the configuration, the data directory (every host, token, key and
#                the CA agents trust: they must enrol again with a new appliance; only a folder
#                holding appliance.db or ca.crt, or owned by ct-ops-appliance), the
#                pre-upgrade copies in /var/lib/ct-ops-backups and the ct-ops-appliance account
#   --dry-run    print every action, change nothing
#   -h, --help   show this help
#
# Exit codes: 0 removed (or nothing to remove), 1 usage, 2 not root, 6 a removal step failed.
set -eu
umask 077
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

readonly EX_USAGE=1 EX_NOT_ROOT=2 EX_STEP=6
readonly SERVICE_USER=ct-ops-appliance UNIT=ct-ops-appliance.service
readonly OPT=/opt/ct-ops CONFIG=/etc/ct-ops/appliance.toml RELEASE_KEY_FILE=/etc/ct-ops/appliance-release.pub BACKUPS=/var/lib/ct-ops-backups

say() { printf 'ct-ops-appliance uninstall: %s\n' "$*"; }
die() {
  code=$1
  shift
  printf 'ct-ops-appliance uninstall: error: %s\n' "$*" >&2
  exit "$code"
}
usage() { sed -n '/^# Usage:/,/^# *-h, --help/s/^# \{0,1\}//p' "$0"; }

PURGE=0
DRY_RUN=0
while [ $# -gt 0 ]; do
  case $1 in
    --purge) PURGE=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die $EX_USAGE "unknown argument: $1" ;;
  esac
  shift
done
if [ "$(id -u)" != 0 ] && [ "$DRY_RUN" = 0 ]; then
  die $EX_NOT_ROOT "must run as root (try: sudo $0)"
fi

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

if [ "$DRY_RUN" = 0 ] && command -v flock >/dev/null 2>&1; then
  exec 9>/run/ct-ops-appliance-install.lock
  flock -w 600 9 || die $EX_STEP "another ct-ops-appliance install or uninstall still holds /run/ct-ops-appliance-install.lock"
fi

# The data directory the configuration names (--purge deletes it), read before the configuration is purged, by
# the installed appliance (or the one of the image this script sits in): ct-ops-appliance config,
# run as the unit runs it (from /, no CT_OPS_APPLIANCE_* variables); TOML is never parsed here.
DATA_DIR=/var/lib/ct-ops/appliance
if [ -f "$CONFIG" ] && [ "$PURGE" = 1 ]; then
  case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
  here=$(cd "$here" && pwd -P)
  DATA_DIR=
  for top in "$OPT/current" "$here"; do
    if [ -x "$top/runtime/bin/node" ] && [ -f "$top/dist/ct-ops-appliance.js" ]; then
      DATA_DIR=$(cd / && env -i PATH="$PATH" "$top/runtime/bin/node" "$top/dist/ct-ops-appliance.js" config --config "$CONFIG" data_dir) ||
        die $EX_USAGE "cannot read data_dir from $CONFIG (see above): fix it, or remove the data directory by hand"
      break
    fi
  done
  [ -n "$DATA_DIR" ] || die $EX_USAGE "no ct-ops-appliance here to read data_dir from $CONFIG: run the uninstall.sh of an extracted image"
fi
# It is deleted with --purge: only a path install.sh would have written (absolute, plain, not /).
case $DATA_DIR in
  / | *[!A-Za-z0-9._/-]* | */../* | */.. | [!/]*) die $EX_USAGE "$CONFIG names data_dir \"$DATA_DIR\", which install.sh would not have written: remove it by hand" ;;
esac

if command -v systemctl >/dev/null 2>&1 && [ -f "/etc/systemd/system/$UNIT" ]; then
  run systemctl disable --now "$UNIT"
fi
[ -f "/etc/systemd/system/$UNIT" ] && run rm -f "/etc/systemd/system/$UNIT"
[ -d "/etc/systemd/system/$UNIT.d" ] && run rm -rf "/etc/systemd/system/$UNIT.d"
command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ] && run systemctl daemon-reload
for command in ct-ops-appliance ct-ops-bundle; do
  case $(readlink "/usr/local/bin/$command" 2>/dev/null) in "$OPT"/*) run rm -f "/usr/local/bin/$command" ;; esac
done
[ -d "$OPT" ] && run rm -rf "$OPT"

if [ "$PURGE" = 1 ]; then
  [ -f "$CONFIG" ] && run rm -f "$CONFIG"
  [ -f "$RELEASE_KEY_FILE" ] && run rm -f "$RELEASE_KEY_FILE"
  # Only a real folder holding the appliance's files (or owned by its account) is deleted: a
  # data_dir edited to name another folder is left alone.
  if [ -d "$DATA_DIR" ] && [ ! -L "$DATA_DIR" ]; then
    if [ -f "$DATA_DIR/appliance.db" ] || [ -f "$DATA_DIR/ca.crt" ] || [ "$(stat -c '%U' "$DATA_DIR")" = "$SERVICE_USER" ]; then
      run rm -rf "$DATA_DIR"
    else
      say "kept $DATA_DIR: it holds no appliance files (appliance.db, ca.crt) and is not owned by $SERVICE_USER"
    fi
  fi
  # /etc/ct-ops and /var/lib/ct-ops may hold an agent's files too (installers/install.sh): removed
  # only when empty (a dry run removed nothing, so it cannot tell and says so).
  for parent in /etc/ct-ops /var/lib/ct-ops; do
    [ -d "$parent" ] || continue
    if [ "$DRY_RUN" = 1 ]; then
      printf '[dry-run] rmdir %s (if empty)\n' "$parent"
    elif [ -z "$(ls -A "$parent")" ]; then
      run rmdir "$parent"
    fi
  done
  [ -d "$BACKUPS" ] && run rm -rf "$BACKUPS"
  getent passwd "$SERVICE_USER" >/dev/null 2>&1 && run userdel "$SERVICE_USER"
  getent group "$SERVICE_USER" >/dev/null 2>&1 && run groupdel "$SERVICE_USER"
  say "removed the appliance, its configuration, its data ($DATA_DIR) and the $SERVICE_USER account"
elif [ "$DRY_RUN" = 0 ]; then
  say "removed the appliance; kept $CONFIG and the data directory it names (uninstall.sh --purge removes them)"
fi
[ "$DRY_RUN" = 0 ] || say "dry run: nothing was changed; the [dry-run] lines above are what an uninstall would do"
