#!/usr/bin/env bash
# Rate limit precision: `--rate 5000` for ~20 s.
#
# 1. Against an unlimited sandbox: the achieved rate (rows / czload's elapsed time) must be
#    within 2% of 5000 (issue 5).
# 2. Against a sandbox with `--rps 5000` (whole-request refusals, HTTP 429): no request may
#    be throttled, by czload's count or the sandbox's.
# Each load uses its own file name, so every row is created. Loopback only; not run in CI.
#
#     benches/rate.sh            # RATE=5000 RATE_SECS=20
set -euo pipefail
source "$(dirname "$0")/common.sh"

RATE=${RATE:-5000}
ROWS=$((RATE * ${RATE_SECS:-20}))
build_czload

load() { # load NAME URL
    gen_csv "$ROWS" "$WORK/$1.csv"
    timeout 300 "$CZLOAD" load "$WORK/$1.csv" --conv-id $CONV --url "$2" --api-login $LOGIN \
        --batch-size 100 --rate "$RATE" --quiet --results "$WORK/$1.results.ndjson" \
        --summary-json "$WORK/$1.json"
    [[ $(json "$WORK/$1.json" created) == "$ROWS" ]] || {
        echo "not every row was created" >&2; cat "$WORK/$1.json" >&2; exit 1; }
}

echo "== --rate $RATE, $ROWS rows, unlimited sandbox" >&2
start_sandbox
load unlimited "$URL"
python3 - "$WORK/unlimited.json" "$RATE" <<'PY'
import json, sys
s, rate = json.load(open(sys.argv[1])), int(sys.argv[2])
got = s["rows"] / s["elapsed_secs"]
print(f"unlimited sandbox: {s['rows']} rows in {s['elapsed_secs']:.3f} s = {got:.1f} rows/s, "
      f"{(got / rate - 1) * 100:+.2f}% off {rate} (goal within 2%)")
PY

echo "== --rate $RATE against --rps $RATE" >&2
start_sandbox --rps "$RATE"
load limited "$URL"
echo "sandbox --rps $RATE: czload saw $(json "$WORK/limited.json" throttled) throttled, the sandbox refused $(stat "$URL" throttled_requests) requests ($(stat "$URL" throttled_ops) ops); rate $(json "$WORK/limited.json" rows_per_sec | cut -d. -f1) rows/s (goal: 0 throttled)"
