#!/usr/bin/env bash
# N copies of one load (`--shard i/N`) with `--rate R` total against a sandbox whose
# license is R (`--rps R`, whole-request refusals): together they should reach at least
# 0.85 R with at most 2% of requests throttled, and load every row exactly once (issue 14).
# Then the cost of skipping other shards' rows: a `--shard 0/8` dry run of a 1M-row file
# against a full dry run (goal: at most 0.4 of its time). Loopback only; not run in CI.
#
#     benches/shard.sh           # RATE=3000 SECS=20 COPIES=3 ROUNDS=10
#     benches/shard.sh skip      # the skipping part alone
set -euo pipefail
source "$(dirname "$0")/common.sh"

RATE=${RATE:-3000}
SECS=${SECS:-20}
COPIES=${COPIES:-3}
ROWS=$((RATE * SECS))
build_czload

if [[ ${1:-} != skip ]]; then
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
fi

# The two runs alternate, ROUNDS times, so that the VM's moods fall on both alike. Wall
# time includes the kernel's copy of the file into the read buffer, the same for both
# (on a VM with slow memory, most of a --shard run); the CPU time (user + system, of the
# process and its threads) is what czload spends.
ROUNDS=${ROUNDS:-10}
echo "== skipping: --shard 0/8 dry run vs a full dry run, 1M rows, $ROUNDS rounds" >&2
gen_csv 1000000 "$WORK/big.csv"
python3 - "$ROUNDS" "$CZLOAD" "$WORK/big.csv" "$CONV" <<'PY'
import resource, statistics, subprocess, sys, time
rounds, czload, big, conv = int(sys.argv[1]), *sys.argv[2:]
runs = {
    "full": [czload, "load", big, "--conv-id", conv, "--dry-run", "--quiet"],
    "--shard 0/8": [czload, "load", big, "--conv-id", conv, "--dry-run", "--quiet", "--shard", "0/8"],
}
took = {k: [] for k in runs}
for cmd in runs.values():  # once untimed: the file in the page cache
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(rounds):
    for name, cmd in runs.items():
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        user, sys_ = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
        took[name].append((wall, user, sys_))
med = statistics.median
stats = {}
for name, t in took.items():
    wall, user, sys_ = ([x[i] for x in t] for i in range(3))
    cpu = [u + s for u, s in zip(user, sys_)]
    stats[name] = (min(wall), med(wall), med(user), med(sys_), med(cpu))
    print(f"{name:>11}: wall best {min(wall):.3f} s, median {med(wall):.3f} s; CPU median "
          f"user {med(user):.3f} + sys {med(sys_):.3f} = {med(cpu):.3f} s")
f, p = stats["full"], stats["--shard 0/8"]
print(f"--shard 0/8 / full: wall best {p[0] / f[0]:.2f}, median {p[1] / f[1]:.2f}; CPU (user+sys) "
      f"median {p[4] / f[4]:.2f}, user alone {p[2] / f[2]:.2f} (goal <= 0.4)")
PY
