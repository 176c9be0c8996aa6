#!/usr/bin/env bash
# Stop the Firestore emulator started by emulator/start.sh.
#
#   emulator/stop.sh                # the default instance (<repo>/.emulator)
#   emulator/stop.sh --state-dir D  # the instance started with --state-dir D
#
# Sends TERM to the emulator's process group, KILL after FIRESTORE_EMULATOR_STOP_TIMEOUT
# seconds (default 5), and removes the pid/host files. The log is kept until the next start.
# Nothing running is not an error.
set -euo pipefail


SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
readonly SCRIPT_DIR REPO_ROOT
# shellcheck source=emulator/lib.sh
. "$SCRIPT_DIR/lib.sh"

log() { printf 'emulator: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# Signals the process group led by $1 if it leads one (start.sh makes it a session leader),
# else only the process.
signal() {
  local sig=$1 pid=$2 pgid
  pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ' || true)
  if [[ $pgid == "$pid" ]]; then
    kill "-$sig" -- "-$pid" 2>/dev/null || true
  else
    kill "-$sig" "$pid" 2>/dev/null || true
  fi
}

STATE_DIR=$REPO_ROOT/.emulator
while (($#)); do
  case $1 in
  --state-dir)
    (($# >= 2)) || die "--state-dir needs a directory"
    STATE_DIR=$2
    shift 2
    ;;
  --state-dir=*)
    STATE_DIR=${1#*=}
    shift
    ;;
  -h | --help)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    exit 0
    ;;
  *) die "unknown argument: $1" ;;
  esac
done

if [[ ! -d $STATE_DIR ]]; then
  log "nothing to stop ($STATE_DIR does not exist)"
  exit 0
fi
STATE_DIR=$(cd "$STATE_DIR" && pwd)
readonly PID_FILE=$STATE_DIR/pid HOST_FILE=$STATE_DIR/host

# Wait for a start.sh still working on this state dir (its own trap cleans up if interrupted).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$STATE_DIR/lock"
  flock -w 90 9 || log "start.sh still holds $STATE_DIR/lock; stopping anyway"
fi

if [[ ! -f $PID_FILE ]]; then
  rm -f "$HOST_FILE"
  log "nothing to stop (no emulator recorded in $STATE_DIR)"
  exit 0
fi

pid=$(<"$PID_FILE")
host=$(cat "$HOST_FILE" 2>/dev/null || true)
timeout_s=${FIRESTORE_EMULATOR_STOP_TIMEOUT:-5}

if ! [[ $pid =~ ^[0-9]+$ ]]; then
  log "ignoring malformed pid file $PID_FILE"
elif ! alive "$pid"; then
  log "emulator (pid $pid) was not running any more"
elif ! is_emulator "$pid"; then
  log "pid $pid is not a Firestore emulator any more; leaving it alone"
else
  signal TERM "$pid"
  deadline=$((SECONDS + timeout_s))
  while alive "$pid" && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if alive "$pid"; then
    log "emulator (pid $pid) ignored TERM for ${timeout_s}s; killing it"
    signal KILL "$pid"
    for _ in $(seq 1 25); do
      alive "$pid" || break
      sleep 0.2
    done
  fi
  if alive "$pid"; then
    die "could not stop the emulator (pid $pid)"
  fi
  log "stopped emulator ${host:+at $host }(pid $pid)"
fi
rm -f "$PID_FILE" "$HOST_FILE"
