#!/usr/bin/env bash
# Loopback throughput of a load with no rate flag (`--rate auto`, the default) into a fresh
# sandbox with no limit, alternated round by round with a second run: `--rate unlimited`
# on the same build, or, with BASE, another build's czload with no rate flag (to compare
# two builds on the same machine at the same hour: this machine's speed drifts by 10%
# and more from one hour to the next). One line per run: who, rows, rows/s.
#
#   benches/loopback.sh                                # auto against --rate unlimited
#   BASE=/tmp/base/target/release/czload benches/loopback.sh   # this build against BASE
#
# Environment: ROWS (1000000), ROUNDS (3), NO_BUILD=1 (use the release binary as is).
# Loopback only; not run in CI.
set -euo pipefail
source "$(dirname "$0")/common.sh"

ROWS=${ROWS:-1000000}
[[ ${NO_BUILD:-} == 1 ]] || build_czload
gen_csv "$ROWS" "$WORK/loop.csv"

run() { # run WHO BINARY [FLAGS...]
    local who=$1 bin=$2
    shift 2
    start_sandbox
    "$bin" load "$WORK/loop.csv" --conv-id $CONV --url "$URL" --api-login $LOGIN --quiet \
        --results "$WORK/loop.results.ndjson" --summary-json "$WORK/loop.json" "$@" \
        > /dev/null 2>&1 || true
    stop_sandbox
    rm -f "$WORK/loop.results.ndjson"
    python3 - "$WORK/loop.json" "$who" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
done = s["created"] + s["exists"]
print(f"{sys.argv[2]:<10} {done:>9} rows {done / max(s['elapsed_secs'], 1e-9):>10.0f} rows/s", flush=True)
PY
}

for _ in $(seq "${ROUNDS:-3}"); do
    if [[ -n ${BASE:-} ]]; then
        run base "$BASE"
        run main "$CZLOAD"
    else
        run auto "$CZLOAD"
        run unlimited "$CZLOAD" --rate unlimited
    fi
done
