#!/usr/bin/env bash
# Soak: the chaos test at scale (not run in CI). Starts `czload sandbox` on loopback with
# 10% of requests failing before applying, 10% after, 10% dropped after applying, shuffled
# answers and an RPS limit; loads ROWS generated rows; then checks that the sandbox holds
# exactly one task per row and that the results log has exactly one line per row, all
# created or exists.
#   usage: benches/soak.sh [ROWS]   (default 1000000)
set -euo pipefail
ROWS=${1:-1000000}
cd "$(dirname "$0")/.."
cargo build --release -q
BIN=target/release/czload
WORK=$(mktemp -d)
trap 'kill $SANDBOX 2>/dev/null || true; rm -rf "$WORK"' EXIT
export COREZOID_API_SECRET=soak-secret
PORT=$((20000 + RANDOM % 20000))

awk -v n="$ROWS" 'BEGIN { print "id,name,amount"; for (i = 1; i <= n; i++) printf "%d,name %d,%d.%02d\n", i, i, i % 1000, i % 100 }' > "$WORK/soak.csv"

$BIN sandbox --listen 127.0.0.1:$PORT --api-login 1001 --conv 555 \
    --fail-before 0.1 --fail-after 0.1 --drop-after 0.1 --rps 40000 \
    --dump "$WORK/tasks.ndjson" 2> "$WORK/sandbox.log" &
SANDBOX=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/__sandbox/stats" >/dev/null 2>&1 && break; sleep 0.1; done

set +e
$BIN load "$WORK/soak.csv" --conv-id 555 --url http://127.0.0.1:$PORT --api-login 1001 \
    --concurrency 8 --max-attempts 30 --quiet --summary-json "$WORK/summary.json"
CODE=$?
set -e
kill -INT $SANDBOX; wait $SANDBOX || true

fail=0
check() { if [ "$2" = "$3" ]; then echo "ok   $1: $2"; else echo "FAIL $1: got $2, want $3"; fail=1; fi; }
check "exit code" "$CODE" 0
TASKS=$(wc -l < "$WORK/tasks.ndjson")
check "tasks stored" "$TASKS" "$ROWS"
DUPS=$(grep -o '"ref":"[^"]*"' "$WORK/tasks.ndjson" | sort | uniq -d | wc -l)
check "refs stored twice" "$DUPS" 0
LINES=$(tail -n +2 "$WORK/soak.results.ndjson" | wc -l)
check "results lines" "$LINES" "$ROWS"
ROWS_LOGGED=$(tail -n +2 "$WORK/soak.results.ndjson" | grep -o '"row":[0-9]*' | sort -u | wc -l)
check "distinct rows in the log" "$ROWS_LOGGED" "$ROWS"
BAD=$(tail -n +2 "$WORK/soak.results.ndjson" | grep -vc '"status":"\(created\|exists\)"' || true)
check "rows not created/exists" "$BAD" 0
echo "summary: $(tr -d '\n ' < "$WORK/summary.json" | head -c 600)"
echo "sandbox: $(tail -n 1 "$WORK/sandbox.log")"
exit $fail
