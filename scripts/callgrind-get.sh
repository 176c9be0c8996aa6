#!/usr/bin/env bash
# Instructions the service executes per uncached `GET /v1/analyses/{id}`, counted
# by valgrind's callgrind: repeatable on a shared machine, where wall-clock
# throughput is not (docs/benchmarks.md, "Uncached single get").
#
#   scripts/callgrind-get.sh [N]      # N measured requests (default 300), after 50 to warm up
#
# Starts (or reuses) an emulator with state in target/tmp/callgrind-emu, runs
# target/release/funnelflow (build it first: `cargo build --release`; BIN=...
# selects another binary) under callgrind on port 18123, creates a profile and
# one analysis through the API with a dev token, sends the requests one after
# another on one keep-alive connection (curl), and prints the instructions per
# request with the functions that cost the most (self cost). The profile is in
# target/tmp/callgrind-get/. Needs valgrind, curl and python3. The emulator keeps
# running for the next run: emulator/stop.sh --state-dir target/tmp/callgrind-emu
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
N=${1:-300}
BIN=${BIN:-target/release/funnelflow}
PORT=${CALLGRIND_PORT:-18123}
OUT=target/tmp/callgrind-get
[ -x "$BIN" ] || { echo "callgrind-get: $BIN missing: cargo build --release" >&2; exit 1; }
eval "$(emulator/start.sh --state-dir target/tmp/callgrind-emu)"
export GOOGLE_CLOUD_PROJECT=callgrind-$$ FUNNELFLOW_STORE=firestore FUNNELFLOW_AUTH=dev \
  FUNNELFLOW_RATE_LIMIT=100000000/1s FUNNELFLOW_LOG_FORMAT=json RUST_LOG=info \
  FUNNELFLOW_HOST=127.0.0.1 PORT=$PORT FUNNELFLOW_STORE_TIMEOUT_MS=60000
TOKEN=$("$BIN" dev-token --uid u1 | tail -1)
rm -rf "$OUT" && mkdir -p "$OUT"
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" "$BIN" >/dev/null 2>"$OUT/stderr" &
VG=$!
trap 'kill -INT $VG 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
AUTH=(-H "Authorization: Bearer $TOKEN")
curl -sf "${AUTH[@]}" "http://127.0.0.1:$PORT/v1/me" >/dev/null
ID=$(curl -sf "${AUTH[@]}" -H 'Content-Type: application/json' -X POST "http://127.0.0.1:$PORT/v1/analyses" -d '{
  "input": {"offerDetails": "https://example.com/offers/1", "inputType": "link", "persona": "Founder"},
  "status": "completed", "aiModel": "gpt-x", "version": "1.0", "requestId": "'"$(cat /proc/sys/kernel/random/uuid)"'",
  "results": {"analysis": [
    {"category": "Headline", "score": 72, "finding": "Vague promise", "recommendation": "Name the outcome"},
    {"category": "Offer", "score": 64, "finding": "No guarantee", "recommendation": "Add a risk reversal"},
    {"category": "Call to action", "score": 81, "finding": "Clear", "recommendation": "Keep it"}],
   "confidence": 0.8, "processingTimeMs": 1200}}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["analysisId"])')
URL=http://127.0.0.1:$PORT/v1/analyses/$ID
urls() { for _ in $(seq 1 "$1"); do printf '%s -o /dev/null ' "$URL"; done; }
# shellcheck disable=SC2046 # one curl, one keep-alive connection, many URLs
curl -sf "${AUTH[@]}" $(urls 50)
callgrind_control -z $VG >/dev/null
# shellcheck disable=SC2046
curl -sf "${AUTH[@]}" $(urls "$N")
callgrind_control -d $VG >/dev/null
python3 - "$OUT/callgrind.out.1" "$N" <<'EOF'
import collections, re, sys
path, n = sys.argv[1], int(sys.argv[2])
names, selfcost, fn, after_call = {}, collections.Counter(), None, False
for line in open(path, errors="replace"):
    m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3)
        if m.group(1) == "fn":
            fn = names[m.group(2)]
        continue
    if line.startswith("calls="):
        after_call = True
    elif line[:1].isdigit() or line[:1] in "+-*":
        parts = line.split()
        if len(parts) >= 2 and not after_call:
            selfcost[fn] += int(parts[1])
        after_call = False
total = sum(selfcost.values())
print(f"{total:,} instructions for {n} requests: {total // n:,} per request")
for f, c in selfcost.most_common(25):
    print(f"{c // n:>9,} {100 * c / total:5.1f}%  {f[:120]}")
EOF
