#!/usr/bin/env bash
# N copies of one load (`--shard i/N`) with `--rate R` total against a sandbox whose
# license is R (`--rps R`, whole-request refusals): together they should reach at least
# 0.85 R with at most 2% of requests throttled, and load every row exactly once (issue 14).
# Then the cost of skipping other shards' rows: a `--shard 0/8` dry run of a 1M-row file
# against a full dry run (goal: at most 0.4 of its time). Loopback only; not run in CI.
#
#     benches/shard.sh           # RATE=3000 SECS=20 COPIES=3
set -euo pipefail
source "$(dirname "$0")/common.sh"

RATE=${RATE:-3000}
SECS=${SECS:-20}
COPIES=${COPIES:-3}
ROWS=$((RATE * SECS))
build_czload

echo "== $COPIES copies, --rate $RATE total, $ROWS rows, sandbox --rps $RATE" >&2
gen_csv "$ROWS" "$WORK/orders.csv"
start_sandbox --rps "$RATE"
start=$(date +%s.%N)
pids=()
for i in $(seq 0 $((COPIES - 1))); do
    timeout 600 "$CZLOAD" load "$WORK/orders.csv" --conv-id $CONV --url "$URL" --api-login $LOGIN \
        --rate "$RATE" --shard "$i/$COPIES" --quiet --summary-json "$WORK/s$i.json" 2>"$WORK/c$i.log" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
end=$(date +%s.%N)
logs=()
for i in $(seq 0 $((COPIES - 1))); do logs+=("$WORK/orders.shard-$i-of-$COPIES.results.ndjson"); done
"$CZLOAD" merge-results "${logs[@]}" -o "$WORK/merged.ndjson"
python3 - "$WORK" "$COPIES" "$RATE" "$ROWS" "$start" "$end" "$(stat "$URL" created)" \
    "$(stat "$URL" requests)" "$(stat "$URL" throttled_requests)" <<'PY'
import json, sys
work, n, rate, rows, start, end, created, requests, throttled = sys.argv[1:]
n, rate, rows, created, requests, throttled = map(int, (n, rate, rows, created, requests, throttled))
secs = float(end) - float(start)
merged = [json.loads(l) for l in open(f"{work}/merged.ndjson")][1:]
merged_rows = [l["row"] for l in merged if "row" in l]
assert sorted(merged_rows) == list(range(1, rows + 1)), "merged log: not every row once"
assert created == rows, f"sandbox created {created} of {rows}"
for i in range(n):
    s = json.load(open(f"{work}/s{i}.json"))
    print(f"copy {i}/{n}: {s['rows']} rows in {s['elapsed_secs']:.2f} s, {s['throttled']} throttled")
tot = rows / secs
print(f"together: {rows} rows in {secs:.2f} s = {tot:.0f} rows/s = {tot / rate:.3f} of the license "
      f"(goal >= 0.85); the sandbox refused {throttled} of {requests} requests = "
      f"{100 * throttled / max(requests, 1):.2f}% (goal <= 2%); exactly once: {created} tasks, "
      f"merged log {len(merged_rows)} rows")
PY
stop_sandbox

echo "== skipping: --shard 0/8 dry run vs a full dry run, 1M rows (best of 5)" >&2
gen_csv 1000000 "$WORK/big.csv"
best() { # best CMD...: the shortest wall time of 5 runs, in seconds
    local b=999
    for _ in 1 2 3 4 5; do
        local t0 t1
        t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
        b=$(python3 -c "print(min($b, $t1 - $t0))")
    done
    echo "$b"
}
full=$(best "$CZLOAD" load "$WORK/big.csv" --conv-id $CONV --dry-run --quiet)
part=$(best "$CZLOAD" load "$WORK/big.csv" --conv-id $CONV --dry-run --quiet --shard 0/8)
python3 -c "print(f'full dry run {$full:.3f} s, --shard 0/8 {$part:.3f} s: {$part / $full:.2f} of it (goal <= 0.4)')"
