#!/usr/bin/env bash
# End to end: czload against a bare client, same sandbox build, same connections, same run.
#
# Builds release, generates a CSV of $E2E_ROWS rows (10 columns, ~116 bytes a row), then
# for each layout, $E2E_ROUNDS rounds of four runs, each against a fresh `czload sandbox`
# on a free loopback port (so every run starts from an empty store and leaves it the same
# size: a store that grew under an earlier run makes the sandbox slower per op):
#   bare    the bare client (benches/bare_client.rs) sends one pre-signed body of 100
#           creates without refs, ROWS / 100 times, over $E2E_CONCURRENCY keep-alive
#           connections: the issue's baseline;
#   czload  czload loads the file with --batch-size 100 --concurrency $E2E_CONCURRENCY
#           --rate unlimited (no pacing: the client at full speed, as before --rate auto
#           became the default)
#           (auto refs, results log and all, as a user would run it);
#   noref   czload again with --no-ref: the very ops the bare client sends (no refs);
#   refs    the bare client again, every op with a ref of its own as czload's carry (all
#           bodies signed before the clock starts): what the same server work costs
#           without czload.
# czload / refs and noref / bare compare a client with czload on the same server work;
# czload / bare also counts the server's extra work for refs (it indexes each one).
# The bare client's CPU is its sending alone, not building and signing its bodies.
# Layouts:
#   pinned  the sandbox on core 1 with one worker thread, the client on core 0: the
#           server has a core of its own, as a real one on another machine has, and the
#           question is whether the client keeps it busy;
#   shared  no pinning: client and sandbox compete for the same 2 cores, so the figure
#           follows their total CPU per op, not the client's speed alone.
# It prints the median ops/s of each, the ratios (goal in issue 5: czload >= 0.8 of the
# bare client), and the CPU seconds each side used per million ops.
#
# The sandbox's own counters must show every czload row created once, or the run fails.
# Traffic goes only to 127.0.0.1; every step has a time limit; sandboxes are stopped on
# any exit. Not run in CI (it takes a couple of minutes and wants quiet cores).
#
#     benches/e2e.sh     # E2E_ROWS=1000000 E2E_CONCURRENCY=4 E2E_ROUNDS=3
#                        # E2E_LAYOUTS="pinned shared"
set -euo pipefail
source "$(dirname "$0")/common.sh"

ROWS=${E2E_ROWS:-1000000}
CONC=${E2E_CONCURRENCY:-4}
ROUNDS=${E2E_ROUNDS:-3}
LAYOUTS=${E2E_LAYOUTS:-pinned shared}
(( ROWS % 100 == 0 )) || { echo "E2E_ROWS must be a multiple of 100" >&2; exit 1; }

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

# CPU seconds (user + system) a process has used so far.
cpu() { awk '{ printf "%.2f\n", ($14 + $15) / 100 }' "/proc/$1/stat"; }

# run LAYOUT KIND ROUND: one run against a fresh sandbox; leaves $WORK/LAYOUT.KIND.ROUND.json
# with ops, ops_per_sec, client_cpu and sandbox_cpu.
run() {
    local layout=$1 kind=$2 round=$3 client=()
    local out=$WORK/$layout.$kind.$round
    if [[ $layout == pinned ]]; then
        SANDBOX_WRAP=(taskset -c 1)
        client=(taskset -c 0)
        start_sandbox --threads 1
    else
        SANDBOX_WRAP=()
        start_sandbox
    fi
    local sb=${SANDBOX_PIDS[-1]} s0 rate ops=$ROWS
    s0=$(cpu "$sb")
    local client_cpu
    if [[ $kind == czload || $kind == noref ]]; then
        local flags=(); [[ $kind == noref ]] && flags=(--no-ref)
        # Not timed: truncating the last run's 100 MB log (and its writeback) would be.
        rm -f "$WORK/results.ndjson"; sync
        timeout 600 /usr/bin/time -f "%U %S" -o "$out.time" "${client[@]}" \
            "$CZLOAD" load "$WORK/e2e.csv" --conv-id $CONV --url "$URL" --api-login $LOGIN \
            --batch-size 100 --concurrency "$CONC" --rate unlimited --quiet "${flags[@]}" \
            --results "$WORK/results.ndjson" --summary-json "$out.summary.json"
        local created; created=$(stat "$URL" created)
        if [[ $(json "$out.summary.json" created) != "$ROWS" || $created != "$ROWS" ]]; then
            echo "czload did not create every row once: sandbox created $created" >&2
            cat "$out.summary.json" >&2
            exit 1
        fi
        rate=$(json "$out.summary.json" rows_per_sec)
        read -r user sys < "$out.time"
        client_cpu=$(awk "BEGIN { print $user + $sys }")
    else
        local flags=(); [[ $kind == refs ]] && flags=(--refs)
        timeout 600 "${client[@]}" "$BARE" --addr "${URL#http://}" --login $LOGIN --conv $CONV \
            --connections "$CONC" --ops 100 --requests $((ROWS / 100)) "${flags[@]}" \
            > "$out.bare.json"
        rate=$(json "$out.bare.json" ops_per_sec)
        ops=$(json "$out.bare.json" ops)
        # Its CPU while sending, without building and signing the bodies beforehand.
        client_cpu=$(json "$out.bare.json" send_cpu_secs)
    fi
    local s1; s1=$(cpu "$sb")
    stop_sandbox
    printf '{"ops":%s,"ops_per_sec":%s,"client_cpu":%s,"sandbox_cpu":%s}\n' \
        "$ops" "$rate" "$client_cpu" "$(awk "BEGIN { print $s1 - $s0 }")" > "$out.json"
    printf '   %-6s %-6s round %s: %9.0f ops/s\n' "$layout" "$kind" "$round" "$rate" >&2
}

for layout in $LAYOUTS; do
    echo "== $layout: $ROUNDS rounds of bare, czload, noref, refs; $CONC connections, 100 ops a request" >&2
    for round in $(seq "$ROUNDS"); do
        for kind in bare czload noref refs; do
            run "$layout" "$kind" "$round"
        done
    done
done

python3 - "$WORK" "$ROWS" "$CONC" "$ROUNDS" $LAYOUTS <<'PY'
import json, statistics, sys
work, rows, conc, rounds, layouts = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5:]
print(f"rows: {rows:,}  connections: {conc}  ops per request: 100  rounds: {rounds} (medians)")
for layout in layouts:
    med = {}
    print(f"{layout}:")
    for kind in ("bare", "czload", "noref", "refs"):
        runs = [json.load(open(f"{work}/{layout}.{kind}.{r}.json")) for r in range(1, rounds + 1)]
        m = lambda f: statistics.median(f(x) for x in runs)
        med[kind] = m(lambda x: x["ops_per_sec"])
        per_m = lambda key: m(lambda x: x[key] / x["ops"] * 1e6)
        each = ", ".join(f"{x['ops_per_sec']:,.0f}" for x in runs)
        print(f"  {kind:<6} {med[kind]:>9,.0f} ops/s  CPU s per 1M ops: client {per_m('client_cpu'):.2f}, sandbox {per_m('sandbox_cpu'):.2f}  (runs: {each})")
    print(f"  like for like: czload / refs {med['czload'] / med['refs']:.2f}, noref / bare {med['noref'] / med['bare']:.2f}"
          f"   czload / bare {med['czload'] / med['bare']:.2f}   (goal >= 0.80)")
PY
