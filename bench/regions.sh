#!/usr/bin/env bash
# Regions under load, on a local 3-node playground of the built binary:
#   1. `bench --op fill` of FILL_MIB (default 1024) MiB with the default region sizes: how
#      many regions the split checker leaves;
#   2. the same fill with `region: {split-size: 1MiB, max-size: 2MiB}`;
#   3. 16-client puts with 1 region, then on another cluster with the key space split into 64
#      regions by hand: QPS and the nodes' CPU per put, each after an untimed warm-up run;
#   4. the nodes' idle CPU while they hold 1,000 regions (with hibernate-regions on).
# Usage: bench/regions.sh [path/to/tinykv]   (default: target/dist/tinykv, else target/release)
# Environment: FILL_MIB, PUT_SECS (default 10), IDLE_SECS (default 30), BASE_PORT (24160),
#   STEPS (default "1 2 3 4": which of the steps above to run).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
if [[ -z "$BIN" ]]; then
  BIN=target/dist/tinykv
  [[ -x "$BIN" ]] || BIN=target/release/tinykv
fi
FILL_MIB=${FILL_MIB:-1024}
PUT_SECS=${PUT_SECS:-10}
IDLE_SECS=${IDLE_SECS:-30}
BASE_PORT=${BASE_PORT:-24160}
STEPS=${STEPS:-1 2 3 4}
step() { [[ " $STEPS " == *" $1 "* ]]; }
VALUE=4096
KEYS=$((FILL_MIB * 1024 * 1024 / VALUE))
WORK=$(mktemp -d /tmp/tinykv-regions.XXXXXX)
trap '"$BIN" cluster down --dir "$WORK/pg" --clean >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
HZ=$(getconf CLK_TCK)

# Starts a fresh playground; `KEY=VALUE` arguments replace keys of the configs (split-size=1MiB,
# hibernate-regions=true ...).
up() {
  "$BIN" cluster down --dir "$WORK/pg" --clean >/dev/null 2>&1 || true
  "$BIN" cluster up --dir "$WORK/pg" --base-port "$BASE_PORT" --detach >/dev/null
  if [[ -n "${1:-}" ]]; then
    "$BIN" cluster down --dir "$WORK/pg" >/dev/null
    for c in "$WORK"/pg/node*/config.yaml; do
      for kv in "$@"; do sed -i "s/^  ${kv%%=*}: .*/  ${kv%%=*}: ${kv#*=}/" "$c"; done
    done
    "$BIN" cluster up --dir "$WORK/pg" --base-port "$BASE_PORT" --detach >/dev/null
  fi
  # shellcheck disable=SC1091
  . "$WORK/pg/env"
}

# CPU seconds (user + system) the node processes have used so far.
cpu() {
  local total=0 pid
  for p in "$WORK"/pg/node*/pid; do
    pid=$(cat "$p")
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "scale=2; $total / $HZ" | bc
}

regions() { "$BIN" region list -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["regions"]))'; }

# Waits until the region count has not changed for three split-check intervals.
settle() {
  local interval=$1 last=-1 same=0 n
  while ((same < 3)); do
    sleep "$interval"
    n=$(regions)
    if [[ $n == "$last" ]]; then same=$((same + 1)); else same=0; last=$n; fi
  done
  echo "$last"
}

fill() {
  local t0 t1
  t0=$(date +%s.%N)
  "$BIN" bench --op fill --keys "$KEYS" --value-size "$VALUE" --clients 16 -o json >"$WORK/fill.json"
  t1=$(date +%s.%N)
  echo "scale=1; $FILL_MIB / ($t1 - $t0)" | bc
}

puts() {
  local c0 c1 out qps ops
  c0=$(cpu)
  out=$("$BIN" bench --op put --clients 16 --duration "${PUT_SECS}s" --keys 100000 -o json)
  c1=$(cpu)
  qps=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["qps"]))' "$out")
  ops=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ops"])' "$out")
  p99=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["latency_ms"]["p99"])' "$out")
  echo "$qps puts/s, p99 ${p99} ms, CPU per 1,000 puts $(echo "scale=3; ($c1 - $c0) * 1000 / $ops" | bc) s"
}

split_evenly() {
  # Split points spread over bench/0000000000..bench/0000099999, ten keys per command.
  local n=$1 step keys=() i
  step=$((100000 / n))
  for ((i = 1; i < n; i++)); do
    keys+=(--split-key "$(printf 'bench/%010d' $((i * step)))")
    if ((${#keys[@]} == 20)) || ((i == n - 1)); then
      # Splits go left to right, so the batch's keys all lie in the region of its first.
      local region
      region=$("$BIN" region locate "${keys[1]}" -o json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
      "$BIN" region split "$region" "${keys[@]}" >/dev/null
      keys=()
    fi
  done
}

echo "binary: $BIN; $(nproc) cores"
if step 1; then
  up
  echo "1. fill ${FILL_MIB} MiB (${KEYS} keys of ${VALUE} B), default region sizes: $(fill) MiB/s"
  echo "   regions once split checks settle: $(settle 12)"
fi

if step 2; then
  up split-size=1MiB max-size=2MiB split-check-interval=1s
  echo "2. fill ${FILL_MIB} MiB with split-size 1MiB, max-size 2MiB: $(fill) MiB/s"
  echo "   regions once split checks settle: $(settle 3)"
fi

if step 3; then
  # Each count on a fresh cluster, split before any write and warmed up by one untimed run of
  # the same puts: the engines' state (memtable size, files, compactions under way) then has
  # the same history for both, where measuring 64 regions after 1 on one cluster charged the
  # second run for the first run's data (about a tenth more CPU per put by itself).
  up
  puts >/dev/null
  echo "3. 16-client puts, 1 region:   $(puts)"
  up
  split_evenly 64
  puts >/dev/null
  echo "   16-client puts, $(regions) regions: $(puts)"
fi

if step 4; then
  up hibernate-regions=true
  split_evenly 1000
  n=$(regions)
  sleep 5
  c0=$(cpu)
  sleep "$IDLE_SECS"
  c1=$(cpu)
  echo "4. idle with $n regions: $(echo "scale=1; ($c1 - $c0) * 100 / $IDLE_SECS" | bc) % of one core for the 3 nodes over ${IDLE_SECS} s"
fi
