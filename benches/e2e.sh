#!/usr/bin/env bash
# End to end: czload against a bare client, same sandbox, same connections, same run.
#
# Builds release, starts `czload sandbox` on a free loopback port, generates a CSV of
# $E2E_ROWS rows (10 columns, ~116 bytes a row), then:
#   1. the bare client (benches/bare_client.rs) sends one pre-signed body of 100 creates
#      (no refs, so each op creates a task) over $E2E_CONCURRENCY keep-alive connections
#      for $E2E_BARE_SECS seconds;
#   2. czload loads the file with --batch-size 100 --concurrency $E2E_CONCURRENCY
#      (results log and all, as a user would run it);
#   3. the bare client again: the store grew meanwhile, so the two bare runs bracket czload.
# It prints rows/s for both, czload / mean(bare) (goal in issue 5: >= 0.8), and the CPU
# seconds each side used per million ops, which is what decides the ratio on 2 cores.
#
# The sandbox's own counters must show every czload row created once, or the run fails.
# Traffic goes only to 127.0.0.1; every step has a time limit; the sandbox is stopped on
# any exit. Not run in CI (it takes a minute and wants quiet cores).
#
#     benches/e2e.sh            # E2E_ROWS=1000000 E2E_CONCURRENCY=4 E2E_BARE_SECS=5
set -euo pipefail
source "$(dirname "$0")/common.sh"

ROWS=${E2E_ROWS:-1000000}
CONC=${E2E_CONCURRENCY:-4}
BARE_SECS=${E2E_BARE_SECS:-5}

build_czload
BARE=$(cargo bench --no-run --bench bare_client --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("target", {}).get("name") == "bare_client" and m.get("executable"):
        print(m["executable"])')
[[ -x $BARE ]] || { echo "no bare_client binary" >&2; exit 1; }

echo "== generate $ROWS rows" >&2
gen_csv "$ROWS" "$WORK/e2e.csv"

start_sandbox
SB=${SANDBOX_PIDS[-1]}
echo "== sandbox at $URL" >&2
# CPU seconds (user + system) a process has used so far.
cpu() { awk '{ printf "%.2f\n", ($14 + $15) / 100 }' "/proc/$1/stat"; }

bare() {
    local s0; s0=$(cpu "$SB")
    timeout $((BARE_SECS + 30)) /usr/bin/time -f "%U %S" -o "$WORK/bare$1.time" \
        "$BARE" --addr "${URL#http://}" --login $LOGIN --conv $CONV \
        --connections "$CONC" --ops 100 --seconds "$BARE_SECS" > "$WORK/bare$1.json"
    echo "$(echo "$(cpu "$SB") - $s0" | bc)" > "$WORK/bare$1.sandbox_cpu"
    echo "   bare client $1: $(json "$WORK/bare$1.json" ops_per_sec) ops/s" >&2
}

echo "== bare client, $CONC connections, ${BARE_SECS}s" >&2
bare 1

echo "== czload load, --batch-size 100 --concurrency $CONC" >&2
before=$(stat "$URL" created)
s0=$(cpu "$SB")
timeout 600 /usr/bin/time -f "%U %S" -o "$WORK/czload.time" \
    "$CZLOAD" load "$WORK/e2e.csv" --conv-id $CONV --url "$URL" --api-login $LOGIN \
    --batch-size 100 --concurrency "$CONC" --quiet \
    --results "$WORK/results.ndjson" --summary-json "$WORK/summary.json"
echo "$(echo "$(cpu "$SB") - $s0" | bc)" > "$WORK/czload.sandbox_cpu"
created=$(($(stat "$URL" created) - before))
if [[ $(json "$WORK/summary.json" created) != "$ROWS" || $created != "$ROWS" ]]; then
    echo "czload did not create every row once: sandbox created $created" >&2
    cat "$WORK/summary.json" >&2
    exit 1
fi
echo "   czload: $(json "$WORK/summary.json" rows_per_sec) rows/s" >&2

echo "== bare client again" >&2
bare 2

python3 - "$WORK" "$ROWS" "$CONC" <<'PY'
import json, sys
work, rows, conc = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def cpu(name):
    return sum(map(float, open(f"{work}/{name}.time").read().split()))
def sandbox_cpu(name):
    return float(open(f"{work}/{name}.sandbox_cpu").read())
s = json.load(open(f"{work}/summary.json"))
bares = [json.load(open(f"{work}/bare{i}.json")) for i in (1, 2)]
bare = sum(b["ops_per_sec"] for b in bares) / 2
cz = s["rows_per_sec"]
per_m = lambda secs, ops: secs / ops * 1e6
print(f"rows: {rows}  connections: {conc}  ops per request: 100")
for i, b in enumerate(bares, 1):
    print(f"bare client {i}: {b['ops_per_sec']:>9,.0f} ops/s   CPU s per 1M ops: client {per_m(cpu(f'bare{i}'), b['ops']):.2f}, sandbox {per_m(sandbox_cpu(f'bare{i}'), b['ops']):.2f}")
print(f"czload:        {cz:>9,.0f} rows/s  CPU s per 1M ops: client {per_m(cpu('czload'), rows):.2f}, sandbox {per_m(sandbox_cpu('czload'), rows):.2f}  ({s['requests']} requests, {s['elapsed_secs']:.2f} s, p50 {s['latency']['p50_ms']} ms)")
print(f"ratio czload / mean(bare): {cz / bare:.2f}  (goal >= 0.80)")
PY
