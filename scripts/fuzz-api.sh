#!/usr/bin/env bash
# API fuzzing: holds the service to the OpenAPI document it serves.
#
#   scripts/fuzz-api.sh [extra `schemathesis run` options]
#
# Builds the service (debug), starts it against the Firestore emulator (the one in
# FIRESTORE_EMULATOR_HOST, as scripts/test.sh provides, else one of its own) under a
# fresh project id, mints a dev token for a fresh user, and runs the pinned
# schemathesis (.venv, from tests/fuzz/requirements.txt) with every check on
# http://127.0.0.1:PORT/openapi.json, configured by tests/fuzz/schemathesis.toml
# (fixed seed, examples per operation). Stops what it started and exits with
# schemathesis' status. scripts/install-deps.sh creates the venv.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
cd "$REPO_ROOT"

log() { printf 'fuzz-api: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

readonly SCHEMATHESIS=$REPO_ROOT/.venv/bin/schemathesis
[[ -x $SCHEMATHESIS ]] || die "$SCHEMATHESIS is missing: run scripts/install-deps.sh"
if ! command -v cargo >/dev/null 2>&1; then
  PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/funnelflow-fuzz.XXXXXX")
service_pid=""
own_emulator=""
cleanup() {
  local rc=$?
  if [[ -n $service_pid ]]; then
    kill "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
  fi
  if [[ -n $own_emulator ]]; then
    "$REPO_ROOT/emulator/stop.sh" --state-dir "$work/emulator" 2>/dev/null || true
  fi
  if ((rc != 0)) && [[ -f $work/service.log ]]; then
    log "service log (last 40 lines):"
    tail -n 40 "$work/service.log" >&2 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${FIRESTORE_EMULATOR_HOST:-} ]]; then
  exports=$("$REPO_ROOT/emulator/start.sh" --state-dir "$work/emulator")
  own_emulator=1
  FIRESTORE_EMULATOR_HOST=${exports#export FIRESTORE_EMULATOR_HOST=}
fi
export FIRESTORE_EMULATOR_HOST

log "cargo build --locked --bin funnelflow"
cargo build --locked --quiet --bin funnelflow
readonly BIN=$REPO_ROOT/target/debug/funnelflow

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# A project and a user of their own: earlier runs leave nothing this one sees.
export GOOGLE_CLOUD_PROJECT=demo-fuzz-$$-$RANDOM
export FUNNELFLOW_STORE=firestore FUNNELFLOW_AUTH=dev
FUNNELFLOW_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export FUNNELFLOW_SECRET
# The generator sends hundreds of requests a minute; the rate limit is tested elsewhere.
PORT=$port FUNNELFLOW_HOST=127.0.0.1 FUNNELFLOW_RATE_LIMIT=100000/1s RUST_LOG=${RUST_LOG:-warn} \
  "$BIN" serve >"$work/service.log" 2>&1 &
service_pid=$!

for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$service_pid" 2>/dev/null || die "the service exited at startup"
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || die "the service is not ready"

FUNNELFLOW_FUZZ_TOKEN=$("$BIN" dev-token --uid "fuzz-$$-$RANDOM" --email fuzz@example.com --ttl 3600)
export FUNNELFLOW_FUZZ_TOKEN

log "schemathesis run http://127.0.0.1:$port/openapi.json (tests/fuzz/schemathesis.toml)"
"$SCHEMATHESIS" --config-file "$REPO_ROOT/tests/fuzz/schemathesis.toml" --no-color \
  run "http://127.0.0.1:$port/openapi.json" --checks all "$@"
