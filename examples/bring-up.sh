#!/usr/bin/env bash
# A scripted bring-up with tinykv commands only: a CA and node certificates, three founding
# nodes on 127.0.0.1 (from examples/three-nodes/*.yaml), a fourth node that joins, a write and
# a read, then every node is stopped.
#
#   TINYKV_BIN=target/release/tinykv examples/bring-up.sh WORK_DIR
#
# BASE_PORT (default 20160) moves the four UDP ports to BASE_PORT..BASE_PORT+3.
# Exits non-zero on any failure; the nodes are stopped either way.
set -euo pipefail

bin="${TINYKV_BIN:?set TINYKV_BIN to the tinykv binary}"
work="${1:?usage: bring-up.sh WORK_DIR}"
base="${BASE_PORT:-20160}"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
certs="$work/certs"

pids=()
stop_nodes() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_nodes EXIT

# Retries a command until it succeeds, for at most 30 s.
retry() {
    for _ in $(seq 1 60); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    echo "gave up waiting for: $*" >&2
    "$@"
}

addr() { echo "127.0.0.1:$((base + $1 - 1))"; }

echo "== certificates"
"$bin" cert init-ca --out "$certs"
for i in 1 2 3 4; do
    "$bin" cert issue "store-$i" --ca-dir "$certs" --san 127.0.0.1 --san localhost
done
"$bin" cert issue client --client --role admin --ca-dir "$certs"

export TINYKV_ENDPOINTS="$(addr 1),$(addr 2),$(addr 3)"
export TINYKV_CA="$certs/ca.pem" TINYKV_CERT="$certs/client.pem" TINYKV_KEY="$certs/client-key.pem"

start() { # start I CONFIG VERB...
    local i="$1" config="$2"
    shift 2
    mkdir -p "$work/node$i"
    env -u TINYKV_ENDPOINTS -u TINYKV_CA -u TINYKV_CERT -u TINYKV_KEY \
        "$bin" node "$@" --config "$config" >"$work/node$i/node.log" 2>&1 &
    pids+=("$!")
    echo "$!" >"$work/node$i/pid"
}

echo "== three founding nodes"
for i in 1 2 3; do
    mkdir -p "$work/node$i"
    sed -e "s#CERTS#$certs#g" \
        -e "s#tinykv-data/#$work/data/#" \
        -e "s#127.0.0.1:20160#$(addr 1)#" \
        -e "s#127.0.0.1:20161#$(addr 2)#" \
        -e "s#127.0.0.1:20162#$(addr 3)#" \
        "$here/three-nodes/node$i.yaml" >"$work/node$i/config.yaml"
    "$bin" config check "$work/node$i/config.yaml"
    start "$i" "$work/node$i/config.yaml" start
done
retry "$bin" kv put greeting hello
"$bin" kv get greeting

echo "== a fourth node joins"
mkdir -p "$work/node4"
cat >"$work/node4/config.yaml" <<YAML
store-id: 4
listen-addr: $(addr 4)
data-dir: $work/data/node4
initial-cluster-token: tinykv-example
tls:
  ca: $certs/ca.pem
  cert: $certs/store-4.pem
  key: $certs/store-4-key.pem
YAML
"$bin" config check "$work/node4/config.yaml"
start 4 "$work/node4/config.yaml" join --seed "$(addr 1)"
# Store 4 serves the key once its peer has the data: ask it alone, allowing a stale read.
retry "$bin" -e "$(addr 4)" kv get greeting --stale
"$bin" region list

echo "== writes reach every node"
"$bin" kv put after-join yes
"$bin" -e "$(addr 4)" kv get after-join

echo "== stopping"
stop_nodes
pids=()
echo "bring-up ok"
