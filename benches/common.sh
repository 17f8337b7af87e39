# Shared by benches/e2e.sh, memory.sh and rate.sh: build, generate input, run sandboxes.
# Needs bash >= 4.4 (empty arrays under `set -u`).
# Source it after `set -euo pipefail`. Everything stays on 127.0.0.1; every sandbox
# started here is stopped (by its own pid) when the script exits, however it exits.

export COREZOID_API_SECRET=bench-secret
LOGIN=1001
CONV=555

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET=${CARGO_TARGET_DIR:-target}
CZLOAD=$TARGET/release/czload
WORK=$(mktemp -d)
# `--rate auto` keeps the limit it found in the state directory and starts the next run
# there: each bench measures a first run, and leaves the user's own state alone.
export XDG_STATE_HOME="$WORK/state"
SANDBOX_PIDS=()
cleanup() {
    for pid in "${SANDBOX_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

build_czload() {
    echo "== build (release)" >&2
    cargo build --release --quiet --bin czload
    [[ -x $CZLOAD ]] || { echo "no $CZLOAD after the build" >&2; exit 1; }
}

# gen_csv ROWS FILE: 10 columns, ~116 bytes a row (the rows of benches/pipeline.rs).
gen_csv() {
    awk -v n="$1" 'BEGIN {
        split("Kyiv Lviv Odesa Kharkiv", city, " ");
        print "id,name,email,city,country,amount,qty,paid,created_at,note";
        for (i = 0; i < n; i++)
            printf "%d,Customer %06d,customer%06d@example.com,%s,UA,%d.%02d,%d,%s,2024-05-%02dT12:%02d:00Z,first order via web\n",
                100000 + i, i % 1000000, i % 1000000, city[i % 4 + 1], (i * 37) % 10000,
                i % 100, i % 17, (i % 3 == 0) ? "true" : "false", 1 + i % 28, i % 60;
    }' > "$2"
}

# start_sandbox [EXTRA FLAGS...]: starts one on a free loopback port; sets URL. A
# command in the array SANDBOX_WRAP (e.g. taskset -c 1) runs it.
SANDBOX_WRAP=()
start_sandbox() {
    local log=$WORK/sandbox.$((${#SANDBOX_PIDS[@]} + 1)).log
    "${SANDBOX_WRAP[@]}" "$CZLOAD" sandbox --listen 127.0.0.1:0 --api-login $LOGIN --conv $CONV "$@" 2> "$log" &
    SANDBOX_PIDS+=($!)
    URL=
    for _ in $(seq 100); do
        URL=$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$log" | cut -d' ' -f3 || true)
        [[ -n $URL ]] && return 0
        kill -0 "${SANDBOX_PIDS[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    cat "$log" >&2
    echo "the sandbox did not start" >&2
    exit 1
}

# stop_sandbox: stops the sandbox started last.
stop_sandbox() {
    local pid=${SANDBOX_PIDS[-1]}
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# stat URL FIELD: one counter of a sandbox.
stat() {
    curl -sf --max-time 5 "$1/__sandbox/stats" |
        python3 -c "import json, sys; print(json.load(sys.stdin)['$2'])"
}

# json FILE FIELD: one field of a JSON file (a --summary-json).
json() {
    python3 -c "import json, sys; print(json.load(open('$1'))['$2'])"
}
