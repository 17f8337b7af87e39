#!/usr/bin/env bash
# Memory: peak RSS of czload loading 1,000,000 and 5,000,000 rows into a sandbox.
#
# Goal (issue 5): the 5M-row peak under 64 MiB and within 10% of the 1M-row peak, i.e.
# memory bounded by the queues and requests in flight, never by the input. Peak RSS is
# `/usr/bin/time -v`'s "Maximum resident set size" of the czload process alone (the
# sandbox runs apart). Each load uses its own file name, so its auto refs are new and
# every row is created. Loopback only; bounded in time; not run in CI.
#
#     benches/memory.sh            # MEM_ROWS="1000000 5000000"
set -euo pipefail
source "$(dirname "$0")/common.sh"
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt-get install -y time)" >&2; exit 1; }

build_czload
start_sandbox
echo "== sandbox at $URL" >&2

declare -A RSS
for rows in ${MEM_ROWS:-1000000 5000000}; do
    echo "== $rows rows" >&2
    gen_csv "$rows" "$WORK/mem$rows.csv"
    timeout 900 /usr/bin/time -v -o "$WORK/time$rows.txt" \
        "$CZLOAD" load "$WORK/mem$rows.csv" --conv-id $CONV --url "$URL" --api-login $LOGIN \
        --batch-size 100 --quiet --results "$WORK/results$rows.ndjson" \
        --summary-json "$WORK/summary$rows.json"
    [[ $(json "$WORK/summary$rows.json" created) == "$rows" ]] || {
        echo "not every row was created" >&2; cat "$WORK/summary$rows.json" >&2; exit 1; }
    RSS[$rows]=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$WORK/time$rows.txt")
    printf "%9d rows: peak RSS %6.1f MiB, %.0f rows/s\n" "$rows" \
        "$(echo "${RSS[$rows]} / 1024" | bc -l)" "$(json "$WORK/summary$rows.json" rows_per_sec)"
    rm -f "$WORK/mem$rows.csv" "$WORK/results$rows.ndjson"
done
if [[ -n ${RSS[1000000]:-} && -n ${RSS[5000000]:-} ]]; then
    echo "5M / 1M peak RSS: $(echo "scale=3; ${RSS[5000000]} / ${RSS[1000000]}" | bc)  (goal <= 1.10, and 5M under 64 MiB)"
fi
