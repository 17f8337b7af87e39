#!/usr/bin/env bash
# Issue 11: how `czload load --rate auto` does against license limits, cell by cell.
#
# For each cell of round trip (sandbox --delay-ms) × license (sandbox --rps, tasks/s) ×
# refusal mode (request: HTTP 429 + Retry-After for the whole request; op: a per-op
# "RPS limit reached") [× limiter shape], a fresh release `czload sandbox` is started and
# `czload load --rate $RATE` runs against it for DURATION seconds (then Ctrl-C: the run
# drains its requests in flight and writes its summary). The input has
# limit × DURATION × 1.2 rows, more than the limit lets through in DURATION, so the load
# never runs out of rows before it is stopped. One line per cell:
#
#   rtt_ms limit mode shape rate | rows rows/s share_of_limit throttled% czload_throttled requests elapsed_s exit
#
# rows/s is over the whole run (rows created / czload's elapsed time, drain included);
# share is rows/s over the limit (fixed cells: over the rate, marked `r`); exit is czload's
# (130: stopped at DURATION, as planned; 0: every row done before it);
# throttled% is the sandbox's count: refused requests / requests in request mode, refused
# ops / ops in op mode; czload_throttled is what czload counted (requests or ops refused).
#
#   benches/grid.sh                          # the full grid, 24 cells of DURATION s each
#   DURATION=10 benches/grid.sh 50:2000:op 200:500:request:bucket
#   CELLS="0:500:request 0:500:op" benches/grid.sh
#   SHAPES="window bucket sliding" MODES=op benches/grid.sh
#   benches/grid.sh 200:fixed:10000          # fixed rate: unlimited sandbox, --rate 10000
#
# A cell is RTT:LIMIT:MODE[:SHAPE] (SHAPE defaults to window), or RTT:fixed:RATE for a
# fixed-rate cell against an unlimited sandbox. Cells come from the arguments, else from
# CELLS, else the grid RTTS × LIMITS × MODES × SHAPES.
#
# Environment: DURATION (30), RTTS ("0 50 100 200"), LIMITS ("500 2000 20000"),
# MODES ("request op"), SHAPES ("window"), RATE (auto; the --rate of limited cells),
# CZLOAD_FLAGS (extra `czload load` flags, e.g. "--concurrency 16 --batch-size 50"),
# SANDBOX_FLAGS (extra `czload sandbox` flags, e.g. "--delay-jitter-ms 5"), SHARE (other
# clients' percent of the license, `30`, or `30,0@15` for 30% then none from 15 s; share
# is then of what they leave), NO_BUILD=1 (use the release binary as is).
# Loopback only; not run in CI. Takes the machine's CPU: run it on a quiet machine.
set -euo pipefail
source "$(dirname "$0")/common.sh"

DURATION=${DURATION:-30}
RATE=${RATE:-auto}
read -r -a EXTRA_LOAD <<< "${CZLOAD_FLAGS:-}"
read -r -a EXTRA_SANDBOX <<< "${SANDBOX_FLAGS:-}"

if (($# > 0)); then
    CELL_LIST=("$@")
elif [[ -n ${CELLS:-} ]]; then
    read -r -a CELL_LIST <<< "$CELLS"
else
    CELL_LIST=()
    for rtt in ${RTTS:-0 50 100 200}; do
        for limit in ${LIMITS:-500 2000 20000}; do
            for mode in ${MODES:-request op}; do
                for shape in ${SHAPES:-window}; do
                    CELL_LIST+=("$rtt:$limit:$mode:$shape")
                done
            done
        done
    done
fi

# rows_for RATE: the rows a run at RATE tasks/s cannot finish within DURATION.
rows_for() { echo $(($1 * DURATION * 12 / 10)); }

# Check every cell before starting anything, and find the largest input needed.
MAX_ROWS=0
for cell in "${CELL_LIST[@]}"; do
    IFS=: read -r rtt limit third shape <<< "$cell"
    if [[ $limit == fixed ]]; then
        [[ $rtt =~ ^[0-9]+$ && $third =~ ^[0-9]+$ && -z $shape ]] || {
            echo "bad cell $cell: want RTT:fixed:RATE" >&2; exit 1; }
        n=$(rows_for "$third")
    else
        [[ $rtt =~ ^[0-9]+$ && $limit =~ ^[1-9][0-9]*$ && $third =~ ^(request|op)$ \
            && ${shape:-window} =~ ^(window|bucket|sliding)$ ]] || {
            echo "bad cell $cell: want RTT:LIMIT:request|op[:window|bucket|sliding]" >&2; exit 1; }
        n=$(rows_for "$limit")
    fi
    if ((n > MAX_ROWS)); then MAX_ROWS=$n; fi
done

[[ ${NO_BUILD:-} == 1 ]] || build_czload
echo "== $MAX_ROWS rows of input" >&2
gen_csv "$MAX_ROWS" "$WORK/all.csv"

printf '%-6s %-6s %-8s %-8s %-6s | %9s %9s %7s %10s %9s %9s %9s %4s\n' \
    rtt_ms limit mode shape rate rows rows/s share throttled% cz_thrott requests elapsed exit

for cell in "${CELL_LIST[@]}"; do
    IFS=: read -r rtt limit third shape <<< "$cell"
    if [[ $limit == fixed ]]; then
        rate=$third mode=- shape=- rows=$(rows_for "$third")
        start_sandbox --delay-ms "$rtt" "${EXTRA_SANDBOX[@]}"
    else
        rate=$RATE mode=$third shape=${shape:-window} rows=$(rows_for "$limit")
        others=()
        if [[ -n ${SHARE:-} ]]; then
            # Other clients take SHARE% of the license (`A,B@T`: A%, then B% from T s).
            IFS=',@' read -r s1 s2 st <<< "$SHARE"
            bg=$((limit * s1 / 100))
            [[ -n ${s2:-} ]] && bg="$bg,$((limit * s2 / 100))@$st"
            others=(--background-rps "$bg")
        fi
        start_sandbox --delay-ms "$rtt" --rps "$limit" --rps-mode "$mode" \
            --rps-shape "$shape" "${others[@]}" "${EXTRA_SANDBOX[@]}"
    fi
    echo "== cell $cell: $rows rows, --rate $rate, $DURATION s" >&2
    head -n $((rows + 1)) "$WORK/all.csv" > "$WORK/cell.csv"
    rm -f "$WORK/cell.json" "$WORK/cell.results.ndjson" "$WORK"/cell.retry*
    # A first run in every cell: no limit learned by the cell before.
    rm -rf "$XDG_STATE_HOME"
    code=0
    # --foreground: timeout signals czload alone, once. Without it the signal also goes to
    # timeout's process group, czload takes the second SIGINT for a second Ctrl-C and
    # exits at once, without its summary.
    timeout --foreground --preserve-status -s INT -k 60 "$DURATION" "$CZLOAD" load "$WORK/cell.csv" --conv-id $CONV \
        --url "$URL" --api-login $LOGIN --rate "$rate" --quiet \
        --results "$WORK/cell.results.ndjson" --summary-json "$WORK/cell.json" \
        "${EXTRA_LOAD[@]}" || code=$?
    curl -sf --max-time 5 "$URL/__sandbox/stats" > "$WORK/stats.json"
    stop_sandbox
    [[ -s $WORK/cell.json ]] || { echo "cell $cell: no summary (exit $code)" >&2; continue; }
    python3 - "$WORK/cell.json" "$WORK/stats.json" "$rtt" "$limit" "$mode" "$shape" "$rate" "$code" "${SHARE:-0}" "$DURATION" <<'PY'
import json, sys
s, st = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
rtt, limit, mode, shape, rate, code, others, secs = sys.argv[3:11]
done = s["created"] + s["exists"]
rps = done / max(s["elapsed_secs"], 1e-9)
# What the license leaves czload: the limit less the other clients' share (averaged over
# the run when it changes at T seconds).
parts = others.replace("@", ",").split(",")
a = float(parts[0]) / 100
if len(parts) == 3:
    b, t = float(parts[1]) / 100, min(float(parts[2]), float(secs))
    a = (a * t + b * (float(secs) - t)) / float(secs)
left = int(limit) * (1 - a) if limit.isdigit() else 0
share = f"{100 * rps / left:.1f}%" if limit.isdigit() else (
    f"{100 * rps / int(rate):.1f}%r" if rate.isdigit() else "-")
if mode == "op":
    thr = 100 * st["throttled_ops"] / max(st["ops"], 1)
else:
    thr = 100 * st["throttled_requests"] / max(st["requests"], 1)
print(f"{rtt:<6} {limit:<6} {mode:<8} {shape:<8} {rate:<6} | {done:>9} {rps:>9.0f} {share:>7} "
      f"{thr:>9.1f}% {s['throttled']:>9} {s['requests']:>9} {s['elapsed_secs']:>9.1f} {code:>4}",
      flush=True)
PY
done
