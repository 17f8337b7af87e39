#!/usr/bin/env bash
# `--rate auto` against a sandbox whose license limit is RPS tasks per second (HTTP 429
# with Retry-After beyond it): prints the achieved rate, as a share of the limit, and the
# share of requests that were throttled. Not run in CI.
#   usage: benches/rate_auto.sh [RPS] [ROWS]   (defaults 2000 and 60000)
set -euo pipefail
RPS=${1:-2000}
ROWS=${2:-60000}
cd "$(dirname "$0")/.."
cargo build --release -q
BIN=target/release/czload
WORK=$(mktemp -d)
trap 'kill $SANDBOX 2>/dev/null || true; rm -rf "$WORK"' EXIT
export COREZOID_API_SECRET=rate-secret
PORT=$((20000 + RANDOM % 20000))
awk -v n="$ROWS" 'BEGIN { print "id,v"; for (i = 1; i <= n; i++) printf "%d,%d\n", i, i }' > "$WORK/rate.csv"
$BIN sandbox --listen 127.0.0.1:$PORT --api-login 1001 --conv 555 --rps "$RPS" 2> "$WORK/sandbox.log" &
SANDBOX=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/__sandbox/stats" >/dev/null 2>&1 && break; sleep 0.1; done
$BIN load "$WORK/rate.csv" --conv-id 555 --url http://127.0.0.1:$PORT --api-login 1001 \
    --rate auto --quiet --summary-json "$WORK/summary.json"
S=$(tr -d '\n ' < "$WORK/summary.json")
num() { echo "$S" | grep -o "\"$1\":[0-9.]*" | head -1 | cut -d: -f2; }
awk -v rows="$(num rows)" -v secs="$(num elapsed_secs)" -v req="$(num requests)" -v thr="$(num throttled)" -v rps="$RPS" \
    'BEGIN { r = rows / secs; printf "limit %d tasks/s: achieved %.0f tasks/s (%.1f%% of the limit); %d of %d requests throttled (%.1f%%)\n", rps, r, 100 * r / rps, thr, req, 100 * thr / req }'
