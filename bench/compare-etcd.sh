#!/usr/bin/env bash
# Side-by-side benchmark of tinykv against etcd 3.4 on this machine: 3 etcd members and a
# 3-node tinykv cluster on 127.0.0.1, each workload run against etcd then tinykv by the same
# driver (bench/driver, `kvbench`), one Markdown table at the end. Then tinykv's failover time
# and server resource use. Everything it starts is stopped on exit, also on failure or Ctrl-C.
#
# Environment:
#   DURATION=10         seconds per timed workload
#   ROUNDS=3            times every workload is run (all workloads per round, etcd then tinykv
#                       each time); the table shows each system's median-QPS run and the range
#   SEQ_OPS=1000        puts of the sequential (1 client) workload
#   FAILOVER_TRIALS=10  leader kills for the failover figure (0 skips it)
#   SNAPSHOT_MIB=1024   size of the region snapshot streamed to a joining node (0 skips it)
#   RESULTS=FILE        also copy the raw JSON result lines there
#   KEEP=1              keep the work directory (data, logs) instead of deleting it
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SEQ_OPS=${SEQ_OPS:-1000}
FAILOVER_TRIALS=${FAILOVER_TRIALS:-10}
SNAPSHOT_MIB=${SNAPSHOT_MIB:-1024}
KEEP=${KEEP:-0}
TINYKV="$ROOT/target/dist/tinykv"
DRIVER_DIR="$ROOT/bench/driver"
KVBENCH="$DRIVER_DIR/target/release/kvbench"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'compare-etcd: %s\n' "$*" >&2; exit 1; }

# --- prerequisites -------------------------------------------------------------------------
missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v etcdctl >/dev/null || missing+=(etcd-client)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
if ((${#missing[@]})); then
    log "installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

log "building tinykv (dist profile: the shipped build)"
(cd "$ROOT" && cargo build --profile dist --quiet --bin tinykv)
log "building kvbench (release)"
(cd "$DRIVER_DIR" && cargo build --release --quiet)

# --- teardown ------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tinykv-vs-etcd.XXXXXX")
ETCD_PIDS=()
TKV_DIR="$WORK/tinykv"

# True if PID is alive and its command line mentions MARK (a pid may have been reused).
pid_is() {
    local pid=$1 mark=$2
    [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$mark"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    for pid in "${ETCD_PIDS[@]}"; do
        pid_is "$pid" "$WORK" && kill "$pid" 2>/dev/null
    done
    if [[ -f "$TKV_DIR/env" ]]; then
        "$TINYKV" cluster down --dir "$TKV_DIR" >/dev/null 2>&1
    fi
    # Whatever did not stop by request (or was restarted by the failover trials) is killed.
    local pidfile pid
    for pidfile in "$TKV_DIR"/node*/pid; do
        [[ -f $pidfile ]] || continue
        pid=$(<"$pidfile")
        pid_is "$pid" "$TKV_DIR" && kill -9 "$pid" 2>/dev/null
    done
    for pid in "${ETCD_PIDS[@]}"; do
        for _ in $(seq 50); do pid_is "$pid" "$WORK" || break; sleep 0.1; done
        pid_is "$pid" "$WORK" && kill -9 "$pid" 2>/dev/null
    done
    if [[ $KEEP == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- clusters ------------------------------------------------------------------------------
read -r -a PORTS <<<"$("$KVBENCH" free-ports --tcp 6 --udp-run 3)"
((${#PORTS[@]} == 7)) || die "could not choose free ports"
ETCD_CLIENT_URLS=()
CL=""
for i in 1 2 3; do
    cl=${PORTS[$((i - 1))]} pe=${PORTS[$((i + 2))]}
    ETCD_CLIENT_URLS+=("http://127.0.0.1:$cl")
    CL+="${CL:+,}n$i=http://127.0.0.1:$pe"
done
TKV_BASE=${PORTS[6]}

log "starting 3 etcd members ($(etcd --version | head -1))"
for i in 1 2 3; do
    cl=${PORTS[$((i - 1))]} pe=${PORTS[$((i + 2))]}
    etcd --name "n$i" --data-dir "$WORK/etcd-n$i" \
        --listen-client-urls "http://127.0.0.1:$cl" --advertise-client-urls "http://127.0.0.1:$cl" \
        --listen-peer-urls "http://127.0.0.1:$pe" --initial-advertise-peer-urls "http://127.0.0.1:$pe" \
        --initial-cluster "$CL" --initial-cluster-token "bench-$$" --initial-cluster-state new \
        --logger zap --log-outputs "$WORK/etcd-n$i.log" >/dev/null 2>&1 &
    ETCD_PIDS+=($!)
done
ETCD_ALL=$(IFS=,; echo "${ETCD_CLIENT_URLS[*]}")
for _ in $(seq 150); do
    ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ALL" endpoint health >/dev/null 2>&1 && break
    sleep 0.2
done
ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ALL" endpoint health >/dev/null 2>&1 ||
    die "etcd did not become healthy; see $WORK/etcd-n*.log (KEEP=1 keeps them)"
ETCD_LEADER=$("$KVBENCH" etcd-leader --endpoints "$ETCD_ALL")

log "starting a 3-node tinykv cluster"
"$TINYKV" cluster up --nodes 3 --dir "$TKV_DIR" --base-port "$TKV_BASE" --detach -o json >/dev/null
# shellcheck disable=SC1091
. "$TKV_DIR/env"
TKV_PIDS=$(cat "$TKV_DIR"/node{1,2,3}/pid | paste -sd, -)
ETCD_PID_LIST=$(IFS=,; echo "${ETCD_PIDS[*]}")
log "etcd leader $ETCD_LEADER (pids $ETCD_PID_LIST); tinykv $TINYKV_ENDPOINTS (pids $TKV_PIDS)"

rss_line() {
    local name=$1 pids=$2 total=0 each=() kib
    for pid in ${pids//,/ }; do
        kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
        each+=("$((kib / 1024))")
        total=$((total + kib))
    done
    printf '%s idle RSS MiB per member: %s (sum %d)\n' "$name" "${each[*]}" "$((total / 1024))"
}
IDLE_RSS="$(rss_line etcd "$ETCD_PID_LIST"; rss_line tinykv "$TKV_PIDS")"

# --- workloads -----------------------------------------------------------------------------
RESULTS_FILE="$WORK/results.jsonl"
: >"$RESULTS_FILE"

# run LABEL TARGET ARGS...: one measured run, its JSON line appended to the results.
run() {
    local label=$1 target=$2
    shift 2
    local endpoints pids
    if [[ $target == etcd ]]; then
        endpoints=$ETCD_LEADER pids=$ETCD_PID_LIST
    else
        endpoints=$TINYKV_ENDPOINTS pids=$TKV_PIDS
    fi
    log "$label: $target"
    "$KVBENCH" run --target "$target" --endpoints "$endpoints" --pids "$pids" \
        --label "$label" "$@" | tee -a "$RESULTS_FILE" >&2
}

# workload LABEL ARGS...: the same run against etcd, then tinykv.
workload() {
    local label=$1
    shift
    run "$label" etcd "$@"
    run "$label" tinykv "$@"
}

# Rounds spread each workload's runs over the whole measurement: on this kind of machine the
# throughput of both systems drifts by tens of percent within minutes.
for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    workload "put, 1 client, $SEQ_OPS sequential" --op put --clients 1 --total "$SEQ_OPS"
    workload "put, 16 clients" --op put --clients 16 --duration "$DURATION"
    workload "put, 64 clients (etcd: 4 conns)" --op put --clients 64 --conns 4 --duration "$DURATION"
    workload "linearizable get, 16 clients" --op get --clients 16 --duration "$DURATION"
    workload "90% get / 10% put, 16 clients" --op mixed --clients 16 --duration "$DURATION"
    workload "put 1 KiB, 16 clients" --op put --clients 16 --value-size 1024 --duration "$DURATION"
    workload "put 16 KiB, 16 clients" --op put --clients 16 --value-size 16384 --duration "$DURATION"
done

if [[ -n ${RESULTS:-} ]]; then cp "$RESULTS_FILE" "$RESULTS"; fi

# --- failover ------------------------------------------------------------------------------
FAILOVER=""
if ((FAILOVER_TRIALS > 0)); then
    # etcd is no longer needed: stop it so it does not compete for the two cores.
    for pid in "${ETCD_PIDS[@]}"; do pid_is "$pid" "$WORK" && kill "$pid" 2>/dev/null; done
    for pid in "${ETCD_PIDS[@]}"; do
        for _ in $(seq 50); do pid_is "$pid" "$WORK" || break; sleep 0.1; done
    done
    log "failover: $FAILOVER_TRIALS kills of the tinykv leader"
    FAILOVER=$("$KVBENCH" failover --tinykv "$TINYKV" --dir "$TKV_DIR" --trials "$FAILOVER_TRIALS")
fi

# --- snapshot ------------------------------------------------------------------------------
SNAPSHOT_TABLE=""
if ((SNAPSHOT_MIB > 0)); then
    # The comparison's clusters are idle or stopped by now; the snapshot runs on fresh clusters.
    log "snapshot: $SNAPSHOT_MIB MiB to a joining node, unlimited and at 100 MiB/s"
    SNAPSHOT_TABLE=$(SIZE_MIB=$SNAPSHOT_MIB LIMITS="0 100MiB" "$ROOT/bench/snapshot.sh" | grep '^|')
fi

# --- report --------------------------------------------------------------------------------
echo
echo "tinykv $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') vs $(etcd --version | head -1)," \
    "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, ${DURATION}s per timed workload," \
    "$ROUNDS round$([[ $ROUNDS == 1 ]] || echo s)"
echo
"$KVBENCH" table "$RESULTS_FILE"
echo
echo "$IDLE_RSS"
if [[ -n $FAILOVER ]]; then
    echo "failover (kill -9 of the leader to the next acknowledged put): $FAILOVER"
fi
if [[ -n $SNAPSHOT_TABLE ]]; then
    echo
    echo "snapshot of one region to a joining node (bench/snapshot.sh):"
    echo
    echo "$SNAPSHOT_TABLE"
fi
