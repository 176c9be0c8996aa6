#!/usr/bin/env bash
# THE test command (CI runs it too):  scripts/test.sh [extra cargo test arguments]
#
#   1. scripts/install-deps.sh (installs/checks curl, Java, cargo, the Firestore emulator)
#   2. if CI=true: cargo fmt --check and cargo clippy -D warnings
#   3. starts a dedicated Firestore emulator (emulator/start.sh, state under .emulator/test/),
#      exports FIRESTORE_EMULATOR_HOST and FIRESTORE_EMULATOR_JAR (for tests that start an
#      emulator of their own), runs `cargo test --all-targets --locked "$@"`,
#      and always stops the emulator again, even on failure or Ctrl-C.
#   4. scripts/fuzz-api.sh: schemathesis (pinned, fixed seed) holds the service, on that
#      emulator, to its /openapi.json. Only in a full run (no arguments), or with
#      FUNNELFLOW_FUZZ=1; it can also run on its own.
# Exits with the status of the first failing step. Works from any directory.
#
#   scripts/test.sh                   # everything
#   scripts/test.sh store::           # only tests whose name contains store::
#   scripts/test.sh --test api -- --nocapture
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
cd "$REPO_ROOT"

log() { printf 'test.sh: %s\n' "$*" >&2; }

# One emulator per test run, so that concurrent runs in the same tree cannot stop each other's.
readonly RUNS_DIR=$REPO_ROOT/.emulator/test
readonly STATE_DIR=$RUNS_DIR/run-$$
readonly FAILED_LOG=$RUNS_DIR/last-failure.log

step="setup"
started=$SECONDS

elapsed() {
  local s=$((SECONDS - started))
  if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

finish() {
  local rc=$? log_file kept_log=""
  trap - EXIT INT TERM
  if [[ -d $STATE_DIR ]]; then
    "$REPO_ROOT/emulator/stop.sh" --state-dir "$STATE_DIR" 2>/dev/null ||
      log "could not stop the emulator recorded in $STATE_DIR"
    if ((rc != 0)); then
      # Keep the emulator's log of the last failed run for a post-mortem.
      for log_file in "$STATE_DIR"/emulator-*.log; do
        if [[ -f $log_file ]]; then
          mv -f "$log_file" "$FAILED_LOG"
          kept_log="; emulator log: $FAILED_LOG"
        fi
      done
    fi
    rm -rf "$STATE_DIR"
  fi
  if ((rc == 0)); then
    log "PASSED in $(elapsed)"
  elif ((rc == 130 || rc == 143)); then
    log "INTERRUPTED during $step after $(elapsed)"
  else
    log "FAILED: $step exited with status $rc after $(elapsed)$kept_log"
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# True if pid $1 is still a running test.sh (the owner of a run directory).
owner_alive() {
  local cmd
  kill -0 "$1" 2>/dev/null || return 1
  if [[ -r /proc/$1/cmdline ]]; then
    cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  else
    cmd=$(ps -o command= -p "$1" 2>/dev/null) || return 1
  fi
  [[ $cmd == *test.sh* ]]
}

# Emulators of runs that were killed without a chance to clean up (SIGKILL, a closed terminal...).
reap_orphans() {
  local dir owner
  for dir in "$RUNS_DIR"/run-*; do
    [[ -d $dir ]] || continue
    owner=${dir##*/run-}
    [[ $owner =~ ^[0-9]+$ ]] || continue
    if ((owner != $$)) && ! owner_alive "$owner"; then
      log "stopping the leftover emulator of test run $owner"
      "$REPO_ROOT/emulator/stop.sh" --state-dir "$dir" 2>/dev/null || true
      rm -rf "$dir"
    fi
  done
}

step="scripts/install-deps.sh"
"$REPO_ROOT/scripts/install-deps.sh"
if ! command -v cargo >/dev/null 2>&1; then
  PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH # install-deps.sh found it there
fi

if [[ ${CI:-} == true ]]; then
  step="cargo fmt --check"
  log "$step"
  cargo fmt --all -- --check
  step="cargo clippy"
  log "cargo clippy --all-targets --locked -- -D warnings"
  cargo clippy --all-targets --locked -- -D warnings
fi

step="emulator/start.sh"
mkdir -p "$RUNS_DIR"
reap_orphans
exports=$("$REPO_ROOT/emulator/start.sh" --state-dir "$STATE_DIR")
FIRESTORE_EMULATOR_HOST=${exports#export FIRESTORE_EMULATOR_HOST=}
[[ $FIRESTORE_EMULATOR_HOST =~ ^[0-9.]+:[0-9]+$ ]] ||
  {
    log "unexpected output from emulator/start.sh: $exports"
    exit 1
  }
FIRESTORE_EMULATOR_JAR=$("$REPO_ROOT/emulator/start.sh" --print-jar)
export FIRESTORE_EMULATOR_HOST FIRESTORE_EMULATOR_JAR
log "FIRESTORE_EMULATOR_HOST=$FIRESTORE_EMULATOR_HOST"

step="cargo test"
log "cargo test --all-targets --locked${*:+ $*}"
cargo test --all-targets --locked "$@"

# --- Firestore rules (tests/rules/README.md) ---------------------------------------------------
# The allow/deny cases of firestore.rules through the Firebase JS SDK on the same emulator, and the
# service's own documents read back under the rules (with the debug binary `cargo test` just built).
# Part of every full run; with extra arguments (a filtered cargo test run) only when RULES_TESTS=1.
if (($# == 0)) || [[ ${RULES_TESTS:-} == 1 ]]; then
  step="rules tests"
  target_dir=${CARGO_TARGET_DIR:-target}
  [[ $target_dir == /* ]] || target_dir=$REPO_ROOT/$target_dir
  export FUNNELFLOW_BIN=${FUNNELFLOW_BIN:-$target_dir/debug/funnelflow}
  log "rules tests: npm test in tests/rules (FUNNELFLOW_BIN=$FUNNELFLOW_BIN)"
  npm --prefix "$REPO_ROOT/tests/rules" test
else
  log "rules tests skipped (extra cargo test arguments given; RULES_TESTS=1 runs them too)"
fi

if (($# == 0)) || [[ ${FUNNELFLOW_FUZZ:-} == 1 ]]; then
  step="scripts/fuzz-api.sh"
  log "$step"
  "$REPO_ROOT/scripts/fuzz-api.sh"
else
  log "skipping scripts/fuzz-api.sh in a filtered run (FUNNELFLOW_FUZZ=1 runs it)"
fi
