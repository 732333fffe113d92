#!/usr/bin/env bash
# Snapshot throughput and memory: a 3-node `cluster up` is filled with SIZE_MIB of data in one
# region, its log is compacted, then a fourth node joins and can only catch up by receiving the
# region as a snapshot. Measured once per limit in LIMITS (snapshot.max-bytes-per-sec, 0 =
# unlimited), each on a fresh cluster:
#   - generate: the leader builds the snapshot file ("built snapshot" in its log),
#   - transfer: first to last byte on the wire, sender's file to the receiver's verified file
#     (the sender's "snapshot sent" log line minus the generation end),
#   - apply: the joining node ingests it ("applied snapshot" in its log),
#   - memory: the joining node's and the sending leader's highest RSS while the file streams
#     (sampled every 50 ms) and over the whole join (VmHWM; the leader's is reset at the join).
#
#   bench/snapshot.sh                     # 1 GiB, unlimited then 100 MiB/s
#   SIZE_MIB=256 LIMITS="0" bench/snapshot.sh
#
# Only 127.0.0.1 is used; everything started is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE_MIB=${SIZE_MIB:-1024}
VALUE_SIZE=${VALUE_SIZE:-65536}
LIMITS=${LIMITS:-"0 100MiB"}
KEEP=${KEEP:-0}
TINYKV="$ROOT/target/dist/tinykv"
WORK=$(mktemp -d /tmp/tinykv-snapbench.XXXXXX)

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

cleanup() {
    local pidfile
    for pidfile in "$WORK"/*/node*/pid; do
        [[ -f $pidfile ]] && kill -9 "$(<"$pidfile")" 2>/dev/null || true
    done
    if [[ $KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

(cd "$ROOT" && cargo build --profile dist --quiet --bin tinykv)

free_base() { # four consecutive free UDP ports
    python3 - <<'PY'
import socket
for _ in range(200):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
    base = s.getsockname()[1]; s.close()
    held = []
    try:
        for i in range(4):
            t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); t.bind(("127.0.0.1", base + i)); held.append(t)
        print(base); break
    except OSError:
        pass
    finally:
        for t in held: t.close()
PY
}

kib() { awk -v k="$1" '/^'"$1"':/ {print $2}' "/proc/$2/status" 2>/dev/null || echo 0; }
# Milliseconds since the epoch of the first log line of FILE matching PATTERN.
log_ms() {
    local line
    line=$(grep -m1 -- "$2" "$1" || true)
    [[ -n $line ]] || { echo 0; return; }
    date -u -d "$(echo "$line" | sed -E 's/\x1b\[[0-9;]*m//g' | awk '{print $1}')" +%s%3N
}

run_once() {
    local limit=$1 dir="$WORK/limit-${1}"
    local base keys=$((SIZE_MIB * 1024 * 1024 / VALUE_SIZE))
    base=$(free_base)
    log "limit $limit: 3 nodes on ports $base.., filling $SIZE_MIB MiB ($keys keys x $VALUE_SIZE B)"
    "$TINYKV" cluster up --nodes 3 --detach --dir "$dir" --base-port "$base" >/dev/null
    "$TINYKV" cluster down --dir "$dir" >/dev/null
    for i in 1 2 3; do
        sed -i -E "s/^(  max-bytes-per-sec:).*/\1 $limit/" "$dir/node$i/config.yaml"
    done
    "$TINYKV" cluster up --nodes 3 --detach --dir "$dir" --base-port "$base" >/dev/null
    # shellcheck disable=SC1091
    . "$dir/env"
    "$TINYKV" bench --op fill --keys "$keys" --value-size "$VALUE_SIZE" --clients 8 -o json \
        | python3 -c 'import json,sys; r=json.load(sys.stdin); print("fill: %d puts in %.1f s, %.0f MiB/s" % (r["ops"], r["seconds"], r["ops"]*'"$VALUE_SIZE"'/r["seconds"]/1048576))' >&2
    "$TINYKV" compact log 1 >/dev/null

    local leader leader_pid
    leader=$("$TINYKV" region show 1 -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader_store"])')
    leader_pid=$(<"$dir/node$leader/pid")
    echo 5 >"/proc/$leader_pid/clear_refs" # restart the leader's peak-RSS count here

    mkdir -p "$dir/node4"
    "$TINYKV" cert issue store-4 --ca-dir "$dir/certs" --san 127.0.0.1 --out "$dir/node4" >/dev/null
    sed -e "s/^store-id:.*/store-id: 4/" \
        -e "s#^listen-addr:.*#listen-addr: 127.0.0.1:$((base + 3))#" \
        -e "s#^data-dir:.*#data-dir: $dir/node4/data#" \
        -e "s#node1/store-1#node4/store-4#g" \
        -e "/^- [0-9]*=/d" \
        -e "s/^initial-cluster:.*/initial-cluster: []/" \
        "$dir/node1/config.yaml" >"$dir/node4/config.yaml"
    "$TINYKV" config check "$dir/node4/config.yaml" >/dev/null
    local start_ms joiner
    start_ms=$(date -u +%s%3N)
    env -u TINYKV_ENDPOINTS "$TINYKV" node join --config "$dir/node4/config.yaml" \
        --seed "127.0.0.1:$base" >"$dir/node4/node.log" 2>&1 &
    joiner=$!
    echo "$joiner" >"$dir/node4/pid"
    local want applied=0 rss lrss stream_peak=0 leader_base leader_stream_peak=0 streaming=1
    leader_base=$(kib VmRSS "$leader_pid")
    want=$("$TINYKV" -e "127.0.0.1:$((base + leader - 1))" raft state 1 -o json \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["applied"])')
    # The loop must cost next to nothing while the file streams: it shares the two cores with
    # both ends of the transfer. So it reads /proc and the joiner's log then, and only asks the
    # joiner for its applied index once the file is in.
    while ((applied < want)); do
        if ((streaming)) && grep -q "snapshot received" "$dir/node4/node.log"; then streaming=0; fi
        if ((streaming)); then
            # Until the joiner has the whole file: the streaming phase, where both ends must
            # stay within a few chunks of memory whatever the snapshot's size.
            rss=$(kib VmRSS "$joiner"); ((rss > stream_peak)) && stream_peak=$rss
            lrss=$(kib VmRSS "$leader_pid"); ((lrss > leader_stream_peak)) && leader_stream_peak=$lrss
        else
            applied=$("$TINYKV" -e "127.0.0.1:$((base + 3))" raft state 1 -o json 2>/dev/null \
                | sed -n -E 's/^ *"applied": *([0-9]+).*/\1/p' | head -1)
            applied=${applied:-0}
        fi
        sleep 0.05
        if ! kill -0 "$joiner" 2>/dev/null; then log "node 4 exited"; cat "$dir/node4/node.log" >&2; exit 1; fi
    done
    local done_ms
    done_ms=$(date -u +%s%3N)
    local gen_end sent recv applied_at joiner_hwm leader_hwm
    gen_end=$(log_ms "$dir/node$leader/node.log" "built snapshot")
    sent=$(log_ms "$dir/node$leader/node.log" "snapshot sent")
    recv=$(log_ms "$dir/node4/node.log" "snapshot received")
    applied_at=$(log_ms "$dir/node4/node.log" "applied snapshot")
    joiner_hwm=$(kib VmHWM "$joiner")
    leader_hwm=$(kib VmHWM "$leader_pid")
    local size
    size=$(grep -m1 "snapshot sent" "$dir/node$leader/node.log" | sed -E 's/.*size=([0-9]+).*/\1/')
    python3 - "$limit" "$size" "$start_ms" "$gen_end" "$sent" "$recv" "$applied_at" "$done_ms" \
        "$stream_peak" "$joiner_hwm" "$leader_base" "$leader_stream_peak" "$leader_hwm" <<'PY'
import sys
limit, size, start, gen_end, sent, recv, applied, done = sys.argv[1:9]
js, jh, lb, ls, lh = (int(v) / 1024 for v in sys.argv[9:])
size = int(size); start, gen_end, sent, recv, applied, done = map(int, (start, gen_end, sent, recv, applied, done))
mib = size / 1048576
transfer = (sent - gen_end) / 1000
print(f"| {limit if limit != '0' else 'unlimited'} | {mib:.0f} | {(gen_end - start) / 1000:.1f} "
      f"| {transfer:.2f} | {mib / transfer:.0f} | {(applied - recv) / 1000:.1f} "
      f"| {(done - start) / 1000:.1f} | {js:.0f} / {jh:.0f} | {lb:.0f} → {ls:.0f} / {lh:.0f} |")
PY
    "$TINYKV" cluster down --dir "$dir" >/dev/null 2>&1 || true
    kill "$joiner" 2>/dev/null || true
    wait "$joiner" 2>/dev/null || true
}

rows=()
for limit in $LIMITS; do
    rows+=("$(run_once "$limit")")
done
echo
echo "tinykv $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs"
echo
echo "| limit | snapshot MiB | join to file generated s | transfer s | transfer MiB/s | apply s | join to caught up s | joiner RSS MiB: streaming / whole join | leader RSS MiB: before → streaming / whole join |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
