#!/usr/bin/env bash
# Start a Cloud Firestore emulator for this repo in the background.
#
#   eval "$(emulator/start.sh)"                # default instance, state in <repo>/.emulator
#   eval "$(emulator/start.sh --state-dir D)"  # a separate instance, state in D
#   emulator/start.sh --print-jar              # only locate the emulator jar and print its path
#
# stdout carries only `export FIRESTORE_EMULATOR_HOST=127.0.0.1:PORT`; messages go to stderr.
# If the instance recorded in the state dir is alive and answering, it is reused.
#
# Environment:
#   FIRESTORE_EMULATOR_JAR   path of cloud-firestore-emulator.jar (wins over everything else)
#   FIRESTORE_EMULATOR_BIN   path of the cloud_firestore_emulator wrapper; the jar is next to it
#   FIRESTORE_EMULATOR_PORT  port to listen on (default: a free port on 127.0.0.1)
#   FIRESTORE_EMULATOR_START_TIMEOUT  seconds to wait for it to answer (default 60)
#   FIRESTORE_EMULATOR_JAVA_OPTS      extra JVM options, e.g. "-Xmx512m"
#   JAVA / JAVA_HOME         which java to run (default: java on PATH)
set -euo pipefail

readonly DEFAULT_BIN=/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator
readonly JAR_NAME=cloud-firestore-emulator.jar
readonly HOST=127.0.0.1

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

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
}

emulator_install_help() {
  cat >&2 <<'EOF'
emulator: the Cloud Firestore emulator is not installed. Install it with one of:
  - Debian/Ubuntu, from Google's Cloud SDK apt repository
    (https://cloud.google.com/sdk/docs/install#deb sets up the repository):
        sudo apt-get install google-cloud-cli-firestore-emulator
  - an existing gcloud installation (not the apt-packaged one):
        gcloud components install cloud-firestore-emulator
  or point FIRESTORE_EMULATOR_JAR at an existing cloud-firestore-emulator.jar
  (FIRESTORE_EMULATOR_BIN at the cloud_firestore_emulator script also works).
EOF
}

java_install_help() {
  cat >&2 <<'EOF'
emulator: Java (11 or newer) is needed to run the Firestore emulator. Install it with:
    sudo apt-get update && sudo apt-get install -y openjdk-17-jre-headless
  (or run scripts/install-deps.sh; set JAVA or JAVA_HOME to use another java)
EOF
}

# Prints the path of the emulator jar, or explains how to install it and fails.
find_jar() {
  local candidate sdk_root
  if [[ -n ${FIRESTORE_EMULATOR_JAR:-} ]]; then
    [[ -f $FIRESTORE_EMULATOR_JAR ]] ||
      die "FIRESTORE_EMULATOR_JAR=$FIRESTORE_EMULATOR_JAR: no such file"
    # Absolute, as callers export it to processes with another working directory.
    printf '%s/%s\n' "$(cd "$(dirname "$FIRESTORE_EMULATOR_JAR")" && pwd)" "$(basename "$FIRESTORE_EMULATOR_JAR")"
    return
  fi
  if [[ -n ${FIRESTORE_EMULATOR_BIN:-} ]]; then
    candidate=$(dirname "$(readlink -f "$FIRESTORE_EMULATOR_BIN" 2>/dev/null || printf '%s' "$FIRESTORE_EMULATOR_BIN")")/$JAR_NAME
    [[ -f $candidate ]] ||
      die "FIRESTORE_EMULATOR_BIN=$FIRESTORE_EMULATOR_BIN: no $JAR_NAME next to it ($candidate)"
    printf '%s\n' "$candidate"
    return
  fi
  candidate=$(dirname "$DEFAULT_BIN")/$JAR_NAME
  if [[ -f $candidate ]]; then
    printf '%s\n' "$candidate"
    return
  fi
  if command -v gcloud >/dev/null 2>&1; then
    sdk_root=$(timeout 60 gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)
    candidate=$sdk_root/platform/cloud-firestore-emulator/$JAR_NAME
    if [[ -n $sdk_root && -f $candidate ]]; then
      printf '%s\n' "$candidate"
      return
    fi
  fi
  emulator_install_help
  exit 1
}

find_java() {
  local java=${JAVA:-}
  if [[ -z $java && -n ${JAVA_HOME:-} && -x ${JAVA_HOME}/bin/java ]]; then
    java=$JAVA_HOME/bin/java
  fi
  java=${java:-java}
  if ! command -v "$java" >/dev/null 2>&1; then
    java_install_help
    exit 1
  fi
  printf '%s\n' "$java"
}

answers() {
  curl -sf --max-time 2 "http://$1/" >/dev/null 2>&1
}

port_in_use() {
  (: <"/dev/tcp/$HOST/$1") 2>/dev/null
}

free_port() {
  if command -v python3 >/dev/null 2>&1 &&
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' 2>/dev/null; then
    return
  fi
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" || {
      printf '%s\n' "$port"
      return
    }
  done
  die "could not find a free port on $HOST"
}

# Kills the whole process group of an emulator we started (it is its own session leader).
kill_group() {
  local pid=$1
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do
    alive "$pid" || return 0
    sleep 0.25
  done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

# --- arguments ---------------------------------------------------------------

STATE_DIR=$REPO_ROOT/.emulator
print_jar=false
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
  --print-jar)
    print_jar=true
    shift
    ;;
  -h | --help)
    usage
    exit 0
    ;;
  *)
    usage
    die "unknown argument: $1"
    ;;
  esac
done

if $print_jar; then
  find_jar
  exit 0
fi

mkdir -p "$STATE_DIR"
STATE_DIR=$(cd "$STATE_DIR" && pwd)
readonly STATE_DIR PID_FILE=$STATE_DIR/pid HOST_FILE=$STATE_DIR/host

# One start.sh at a time per state dir (fd 9 is closed for the emulator itself).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$STATE_DIR/lock"
  flock 9
fi

# --- reuse a running instance ------------------------------------------------

if [[ -f $PID_FILE ]]; then
  old_pid=$(<"$PID_FILE")
  old_host=$(cat "$HOST_FILE" 2>/dev/null || true)
  if [[ $old_pid =~ ^[0-9]+$ ]] && alive "$old_pid" && is_emulator "$old_pid"; then
    if [[ -n $old_host ]] && answers "$old_host"; then
      log "already running at $old_host (pid $old_pid, state $STATE_DIR)"
      printf 'export FIRESTORE_EMULATOR_HOST=%s\n' "$old_host"
      exit 0
    fi
    log "recorded emulator (pid $old_pid) does not answer; restarting it"
    kill_group "$old_pid"
  fi
  rm -f "$PID_FILE" "$HOST_FILE"
fi

# --- start a new one ---------------------------------------------------------

JAR=$(find_jar)
JAVA_BIN=$(find_java)
java_opts=()
if [[ -n ${FIRESTORE_EMULATOR_JAVA_OPTS:-} ]]; then
  read -r -a java_opts <<<"$FIRESTORE_EMULATOR_JAVA_OPTS"
fi
rules_args=()
if [[ -f $REPO_ROOT/firestore.rules ]]; then
  rules_args=(--rules "$REPO_ROOT/firestore.rules")
fi
timeout_s=${FIRESTORE_EMULATOR_START_TIMEOUT:-60}
[[ $timeout_s =~ ^[0-9]+$ ]] || die "FIRESTORE_EMULATOR_START_TIMEOUT must be a number of seconds"

fixed_port=${FIRESTORE_EMULATOR_PORT:-}
if [[ -n $fixed_port ]]; then
  [[ $fixed_port =~ ^[0-9]+$ ]] || die "FIRESTORE_EMULATOR_PORT must be a port number"
  ! port_in_use "$fixed_port" || die "port $fixed_port on $HOST is already in use (FIRESTORE_EMULATOR_PORT)"
fi

# Old logs of this state dir belong to instances that are gone.
rm -f "$STATE_DIR"/emulator-*.log

pid=""
ready=false
on_exit() {
  if ! $ready && [[ -n $pid ]]; then
    kill_group "$pid"
    rm -f "$PID_FILE" "$HOST_FILE"
  fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port picked as free can be taken before java binds it: retry a few times unless it was fixed.
for attempt in 1 2 3; do
  port=${fixed_port:-$(free_port)}
  address=$HOST:$port
  log_file=$STATE_DIR/emulator-$port.log
  launch_pid_file=$STATE_DIR/pid.launch
  rm -f "$launch_pid_file"
  log "starting Firestore emulator on $address (log: $log_file)"
  # setsid: own session and process group, so stop.sh can kill everything and Ctrl-C in the
  # caller's terminal does not reach it. The inner bash records its pid and execs java, so the
  # recorded pid is java's even if setsid had to fork.
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c 'printf "%s\n" "$$" >"$1.tmp" && mv "$1.tmp" "$1" && shift && exec "$@"' launcher \
    "$launch_pid_file" \
    "$JAVA_BIN" -Duser.language=en ${java_opts[@]+"${java_opts[@]}"} -cp "$JAR" "$MAIN_CLASS" \
    start --host="$HOST" --port="$port" ${rules_args[@]+"${rules_args[@]}"} \
    </dev/null >>"$log_file" 2>&1 9>&- &
  for _ in $(seq 1 40); do
    [[ -s $launch_pid_file ]] && break
    sleep 0.05
  done
  [[ -s $launch_pid_file ]] || die "the emulator process did not start (log: $log_file)"
  pid=$(<"$launch_pid_file")
  rm -f "$launch_pid_file"
  printf '%s\n' "$pid" >"$PID_FILE"
  printf '%s\n' "$address" >"$HOST_FILE"

  deadline=$((SECONDS + timeout_s))
  while alive "$pid" && ((SECONDS < deadline)); do
    if answers "$address"; then
      ready=true
      break
    fi
    sleep 0.25
  done
  $ready && break

  if alive "$pid"; then
    log "no answer from $address after ${timeout_s}s; last lines of $log_file:"
    tail -n 30 "$log_file" >&2 || true
    exit 1
  fi
  pid=""
  rm -f "$PID_FILE" "$HOST_FILE"
  if [[ -z $fixed_port && $attempt -lt 3 ]] && grep -qi 'address already in use' "$log_file"; then
    log "port $port was taken meanwhile; trying another one"
    continue
  fi
  log "the emulator exited during startup; last lines of $log_file:"
  tail -n 30 "$log_file" >&2 || true
  if grep -q UnsupportedClassVersionError "$log_file"; then
    log "this emulator needs a newer Java than $("$JAVA_BIN" -version 2>&1 | head -n 1)"
    java_install_help
  fi
  exit 1
done

stop_cmd=$SCRIPT_DIR/stop.sh
if [[ $STATE_DIR != "$REPO_ROOT/.emulator" ]]; then
  stop_cmd+=$(printf ' --state-dir %q' "$STATE_DIR")
fi
log "ready at $address (pid $pid); stop it with: $stop_cmd"
printf 'export FIRESTORE_EMULATOR_HOST=%s\n' "$address"
