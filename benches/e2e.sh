#!/usr/bin/env bash
# End to end: czload against a bare client, same sandbox, same connections, same run.
#
# Builds release, starts `czload sandbox` on a free loopback port, generates a CSV of
# $E2E_ROWS rows (10 columns, ~120 bytes a row), then:
#   1. the bare client (benches/bare_client.rs) sends one pre-signed body of 100 creates
#      over $E2E_CONCURRENCY keep-alive connections for $E2E_BARE_SECS seconds;
#   2. czload loads the file with --batch-size 100 --concurrency $E2E_CONCURRENCY
#      (results log and all, as a user would run it);
#   3. the bare client again (the store grew meanwhile; the two bare runs bracket czload).
# It prints rows/s for both and czload / mean(bare). Goal (issue 5): >= 0.8.
#
# The sandbox's own counters must show every czload row created once, or the run fails.
# Traffic goes only to 127.0.0.1; every step has a time limit; the sandbox is stopped on
# any exit. Not run in CI (it takes a minute and wants quiet cores).
#
#     benches/e2e.sh            # E2E_ROWS=1000000 E2E_CONCURRENCY=4 E2E_BARE_SECS=5
set -euo pipefail

ROWS=${E2E_ROWS:-1000000}
CONC=${E2E_CONCURRENCY:-4}
BARE_SECS=${E2E_BARE_SECS:-5}
LOGIN=1001
CONV=555
export COREZOID_API_SECRET=e2e-bench-secret

cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
WORK=$(mktemp -d)
SANDBOX_PID=
cleanup() {
    if [[ -n $SANDBOX_PID ]] && kill -0 "$SANDBOX_PID" 2>/dev/null; then
        kill -TERM "$SANDBOX_PID" 2>/dev/null || true
        wait "$SANDBOX_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== build (release)" >&2
cargo build --release --quiet --bin czload
BARE=$(cargo bench --no-run --bench bare_client --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("target", {}).get("name") == "bare_client" and m.get("executable"):
        print(m["executable"])')
CZLOAD=$TARGET/release/czload
[[ -x $CZLOAD && -x $BARE ]] || { echo "build failed" >&2; exit 1; }

echo "== generate $ROWS rows" >&2
awk -v n="$ROWS" 'BEGIN {
    split("Kyiv Lviv Odesa Kharkiv", city, " ");
    print "id,name,email,city,country,amount,qty,paid,created_at,note";
    for (i = 0; i < n; i++)
        printf "%d,Customer %06d,customer%06d@example.com,%s,UA,%d.%02d,%d,%s,2024-05-%02dT12:%02d:00Z,first order via web\n",
            100000 + i, i % 1000000, i % 1000000, city[i % 4 + 1], (i * 37) % 10000, i % 100,
            i % 17, (i % 3 == 0) ? "true" : "false", 1 + i % 28, i % 60;
}' > "$WORK/e2e.csv"
ls -l "$WORK/e2e.csv" | awk '{printf "   %d bytes, %.1f bytes/row\n", $5, $5 / '"$ROWS"'}' >&2

echo "== sandbox" >&2
"$CZLOAD" sandbox --listen 127.0.0.1:0 --api-login $LOGIN --conv $CONV 2> "$WORK/sandbox.log" &
SANDBOX_PID=$!
URL=
for _ in $(seq 100); do
    URL=$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$WORK/sandbox.log" | cut -d' ' -f3 || true)
    [[ -n $URL ]] && break
    kill -0 "$SANDBOX_PID" 2>/dev/null || { cat "$WORK/sandbox.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n $URL ]] || { echo "the sandbox did not start" >&2; exit 1; }
ADDR=${URL#http://}
echo "   $URL" >&2

stat() { curl -sf --max-time 5 "$URL/__sandbox/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
json() { python3 -c "import json,sys; print(json.load(open('$1'))['$2'])"; }

bare() {
    timeout $((BARE_SECS + 30)) "$BARE" --addr "$ADDR" --login $LOGIN --conv $CONV \
        --connections "$CONC" --ops 100 --seconds "$BARE_SECS" > "$WORK/bare$1.json"
    echo "   bare client $1: $(json "$WORK/bare$1.json" ops_per_sec) ops/s" >&2
}

echo "== bare client, $CONC connections, ${BARE_SECS}s" >&2
bare 1

echo "== czload load, --batch-size 100 --concurrency $CONC" >&2
before=$(stat created)
start=$(date +%s.%N)
timeout 600 "$CZLOAD" load "$WORK/e2e.csv" --conv-id $CONV --url "$URL" --api-login $LOGIN \
    --batch-size 100 --concurrency "$CONC" --quiet \
    --results "$WORK/results.ndjson" --summary-json "$WORK/summary.json"
wall=$(echo "$(date +%s.%N) - $start" | bc -l)
created=$(($(stat created) - before))
[[ $(json "$WORK/summary.json" rows) == "$ROWS" && $(json "$WORK/summary.json" created) == "$ROWS" && $created == "$ROWS" ]] || {
    echo "czload did not create every row once: summary $(cat "$WORK/summary.json"), sandbox created $created" >&2
    exit 1
}
echo "   czload: $(json "$WORK/summary.json" rows_per_sec) rows/s (its summary; wall clock incl. process start: $(echo "$ROWS / $wall" | bc) rows/s)" >&2

echo "== bare client again" >&2
bare 2

python3 - "$WORK" "$ROWS" "$CONC" <<'EOF'
import json, sys
work, rows, conc = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = json.load(open(f"{work}/summary.json"))
b = [json.load(open(f"{work}/bare{i}.json"))["ops_per_sec"] for i in (1, 2)]
bare = sum(b) / 2
cz = s["rows_per_sec"]
print(f"rows: {rows}  connections: {conc}  batch: 100")
print(f"bare client: {b[0]:,.0f} / {b[1]:,.0f} ops/s (mean {bare:,.0f})")
print(f"czload:      {cz:,.0f} rows/s ({s['requests']} requests, {s['elapsed_secs']:.2f} s)")
print(f"ratio czload / bare: {cz / bare:.2f}  (goal >= 0.80)")
EOF
