#!/usr/bin/env bash
# After a load (issue 22): a 100,000-row load, then `czload undo` killed with SIGKILL in
# the middle and resumed, then `czload verify --all`, through a sandbox that fails 2% of
# requests before applying them, 2% after (502) and drops 2% after; then the peak RSS and
# rate of `czload verify --all` over a 1,000,000-row log. Loopback only; not run in CI.
#
#     benches/after.sh               # AFTER_ROWS=100000 VERIFY_ROWS=1000000
set -euo pipefail
source "$(dirname "$0")/common.sh"
# One line per message: the summaries are grepped.
export COLUMNS=100000
ROWS=${AFTER_ROWS:-100000}
BIG=${VERIFY_ROWS:-1000000}
build_czload
start_sandbox --fail-before 0.02 --fail-after 0.02 --drop-after 0.02 --seed 1
AUTH=(--url "$URL" --api-login $LOGIN)
echo "== $ROWS rows into a faulty sandbox at $URL" >&2
gen_csv "$ROWS" "$WORK/after.csv"
LOG=$WORK/after.results.ndjson
"$CZLOAD" load "$WORK/after.csv" --conv-id $CONV "${AUTH[@]}" --quiet --max-attempts 30 \
    --results "$LOG" --summary-json "$WORK/load.json"
CREATED=$(stat "$URL" tasks)
echo "load: $(json "$WORK/load.json" created) created, $(json "$WORK/load.json" exists) exists (resent after a lost answer); sandbox stores $CREATED"

UNDO=$WORK/after.undo.ndjson
"$CZLOAD" undo "$LOG" --yes "${AUTH[@]}" --max-attempts 30 2> "$WORK/undo1.err" &
PID=$!
while [[ $( (wc -l < "$UNDO") 2>/dev/null || echo 0) -lt $((ROWS / 3)) ]]; do
    kill -0 $PID 2>/dev/null || { echo "undo ended before the kill" >&2; exit 1; }
    sleep 0.01
done
kill -KILL $PID; wait $PID 2>/dev/null || true
echo "undo killed with SIGKILL at $(wc -l < "$UNDO") lines of its log"
start=$(date +%s.%N)
"$CZLOAD" undo "$LOG" --yes --resume "${AUTH[@]}" --max-attempts 30 2> "$WORK/undo2.err"
echo "undo --resume: $(grep '^undo:' "$WORK/undo2.err" | head -1) in $(echo "$(date +%s.%N) - $start" | bc) s"
set +e
"$CZLOAD" verify "$LOG" --all "${AUTH[@]}" --max-attempts 30 2> "$WORK/verify.err"
code=$?
set -e
echo "verify --all (exit $code): $(grep '^verify:' "$WORK/verify.err")"
DELETED=$(stat "$URL" deleted)
echo "sandbox: $(stat "$URL" tasks) tasks left, $DELETED deleted (once each: $CREATED stored by the load), faults $(stat "$URL" faults_fail_before)/$(stat "$URL" faults_fail_after)/$(stat "$URL" faults_drop_after) (503 before / 502 after / dropped after)"
[[ $(stat "$URL" tasks) == 0 && $DELETED == "$CREATED" && $code == 2 ]] || { echo "FAILED" >&2; exit 1; }
stop_sandbox

start_sandbox
AUTH=(--url "$URL" --api-login $LOGIN)
echo "== verify of $BIG rows" >&2
gen_csv "$BIG" "$WORK/big.csv"
"$CZLOAD" load "$WORK/big.csv" --conv-id $CONV "${AUTH[@]}" --quiet --results "$WORK/big.results.ndjson"
rm -f "$WORK/big.csv"
for mode in --all "--sample 10000"; do
    # shellcheck disable=SC2086
    /usr/bin/time -v -o "$WORK/time.txt" "$CZLOAD" verify "$WORK/big.results.ndjson" $mode "${AUTH[@]}" \
        -o "$WORK/big.verify.ndjson" 2> "$WORK/big.err"
    rss=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$WORK/time.txt")
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$WORK/time.txt")
    printf "verify %-14s peak RSS %.1f MiB, %.1f s: %s\n" "$mode:" "$(echo "$rss / 1024" | bc -l)" "$secs" "$(grep '^verify:' "$WORK/big.err")"
done
