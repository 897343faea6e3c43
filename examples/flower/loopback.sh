#!/usr/bin/env bash
# A loopback Flower deployment for local trials: one SuperLink and N SuperNodes, every port on 127.0.0.1,
# insecure mode (plain HTTP, no TLS, no node authentication: for this machine only, never across a network).
#
#   examples/flower/loopback.sh start [N] [--data-root DIR] [--key-dir KEYS [--roster FILE]]
#       SuperLink on 127.0.0.1:$PRIVFED_SUPERLINK_PORT (default 9093) and N SuperNodes (default 3); with
#       --data-root, node i reads only DIR/node-i (node-config data-path). Then, for a privfed run:
#   privfed schema --source text --path PUBLIC.txt --out schema.json
#   privfed run -c runtime.kind=flower -c runtime.superlink=127.0.0.1:9093 -c data.source=text \
#       -c data.schema=schema.json -c plan="1-2:plaintext,3:secagg" -c fl.rounds=3 -c fl.clients_per_round=3 \
#       --out RUN
#   examples/flower/loopback.sh stop          # stops every process it started, and their descendants
#
# Active modes (-o active=true) need identities made by a registrar before the nodes start:
#   privfed keys roster --clients 3 --out keys/roster.json --key-dir keys
#   examples/flower/loopback.sh start 3 --data-root DIR --key-dir keys [--roster keys/roster.json]
#       node i gets node-config roster=ROSTER signing-key=keys/client-i.key.json (its own key only); then
#   privfed run -c runtime.kind=flower -c runtime.roster=keys/roster.json -c plan=secagg \
#       -c protection.options.secagg.active=true ... --out RUN
#
# Or with Flower's own CLI and this directory's app (synthetic bench vectors):
#   export FLWR_HOME="$PWD/.privfed-flower/flwr-home"
#   flwr run examples/flower privfed-loopback --stream \
#       --run-config 'protection="secagg" report="'"$PWD"'/secagg-report.json"'
#
# CKKS needs keys dealt before the nodes start (secret context to the nodes, public one to the server):
#   python -m privfed.runtime.flower.keys .privfed-flower/keys
#   PRIVFED_NODE_CONFIG='key-dir="'"$PWD"'/.privfed-flower/keys/nodes"' examples/flower/loopback.sh start 3
#   flwr run examples/flower privfed-loopback --stream \
#       --run-config 'protection="ckks" key-dir="'"$PWD"'/.privfed-flower/keys/server"'
#
# Run it in the environment where privfed is installed with the flower extra: the SuperLink and SuperNodes start
# the ServerApp/ClientApp processes with the flwr tools found on PATH. Node i gets node-config partition-id=i,
# num-partitions=N (and data-path=DIR/node-i), plus whatever PRIVFED_NODE_CONFIG adds (e.g.
# protections="secagg,plaintext" to pin the protections the nodes accept).
set -euo pipefail

DIR="${PRIVFED_FLOWER_DIR:-$PWD/.privfed-flower}"
LINK_PORT="${PRIVFED_SUPERLINK_PORT:-9093}"
NODE_PORT_BASE="${PRIVFED_NODE_PORT_BASE:-9100}"
HOST=127.0.0.1
export FLWR_HOME="$DIR/flwr-home"
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1 FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
export FLWR_SUPEREXEC_TASK_POLL_INTERVAL=0.1  # start ServerApp/ClientApp processes sooner (default 1 s)
# SuperNodes through privfed's launcher: Flower's own flower-supernode, its 3 s idle poll cut to
# PRIVFED_NODE_POLL_SECONDS (default 0.2; see privfed/runtime/flower/fastnode.py). PRIVFED_FAST_NODES=0: flower-supernode
if [ "${PRIVFED_FAST_NODES:-1}" = 1 ]; then
    SUPERNODE=("$(dirname "$(command -v flower-supernode)")/python" -m privfed.runtime.flower.fastnode)
else
    SUPERNODE=(flower-supernode)
fi

wait_port() {  # wait_port PORT WHAT: until something listens on 127.0.0.1:PORT (60 s at most)
    for _ in $(seq 1 120); do
        if (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; then return 0; fi
        sleep 0.5
    done
    echo "$2 did not start; see $DIR/logs" >&2
    return 1
}

start() {
    local nodes=3 data_root="" key_dir="" roster="" i data identity
    while [ $# -gt 0 ]; do
        case "$1" in
            --data-root) data_root="${2:?--data-root needs a directory}"; shift 2 ;;
            --data-root=*) data_root="${1#--data-root=}"; shift ;;
            --key-dir) key_dir="${2:?--key-dir needs a directory}"; shift 2 ;;
            --key-dir=*) key_dir="${1#--key-dir=}"; shift ;;
            --roster) roster="${2:?--roster needs a file}"; shift 2 ;;
            --roster=*) roster="${1#--roster=}"; shift ;;
            ''|*[!0-9]*) echo "start: unknown argument '$1'" >&2; exit 2 ;;
            *) nodes="$1"; shift ;;
        esac
    done
    if [ -n "$data_root" ]; then
        data_root="$(cd "$data_root" && pwd)"
        for i in $(seq 0 $((nodes - 1))); do
            [ -e "$data_root/node-$i" ] || { echo "no $data_root/node-$i for node $i" >&2; exit 1; }
        done
    fi
    if [ -n "$roster" ] && [ -z "$key_dir" ]; then echo "--roster needs --key-dir" >&2; exit 2; fi
    if [ -n "$key_dir" ]; then
        key_dir="$(cd "$key_dir" && pwd)"
        roster="${roster:-$key_dir/roster.json}"
        [ -f "$roster" ] || { echo "no roster $roster (give --roster FILE; made by privfed keys roster)" >&2; exit 1; }
        roster="$(cd "$(dirname "$roster")" && pwd)/$(basename "$roster")"
        for i in $(seq 0 $((nodes - 1))); do
            [ -f "$key_dir/client-$i.key.json" ] || { echo "no $key_dir/client-$i.key.json for node $i" >&2; exit 1; }
        done
    fi
    if [ -s "$DIR/pids" ]; then echo "already running (pids in $DIR/pids); run: $0 stop" >&2; exit 1; fi
    mkdir -p "$DIR/logs" "$FLWR_HOME"
    # nodes that train at the same time share this machine's cores (torch threads per forked ClientApp)
    local cores
    cores="$(nproc 2>/dev/null || echo 1)"
    export PRIVFED_CLIENTAPP_THREADS="${PRIVFED_CLIENTAPP_THREADS:-$(( cores / nodes > 0 ? cores / nodes : 1 ))}"
    printf '[superlink]\ndefault = "privfed-loopback"\n\n[superlink.privfed-loopback]\naddress = "%s:%s"\ninsecure = true\n' \
        "$HOST" "$LINK_PORT" > "$FLWR_HOME/config.toml"
    setsid flower-superlink --insecure --host "$HOST" --port "$LINK_PORT" \
        --disable-runtime-dependency-installation > "$DIR/logs/superlink.log" 2>&1 < /dev/null &
    echo $! >> "$DIR/pids"
    wait_port "$LINK_PORT" flower-superlink
    for i in $(seq 0 $((nodes - 1))); do
        data=""
        if [ -n "$data_root" ]; then data="data-path=\"$data_root/node-$i\""; fi
        identity=""
        if [ -n "$key_dir" ]; then identity="roster=\"$roster\" signing-key=\"$key_dir/client-$i.key.json\""; fi
        setsid "${SUPERNODE[@]}" --insecure --superlink "$HOST:$LINK_PORT" --host "$HOST" \
            --port $((NODE_PORT_BASE + i)) \
            --node-config "partition-id=$i num-partitions=$nodes $data $identity ${PRIVFED_NODE_CONFIG:-}" \
            > "$DIR/logs/supernode-$i.log" 2>&1 < /dev/null &
        echo $! >> "$DIR/pids"
    done
    for i in $(seq 0 $((nodes - 1))); do wait_port $((NODE_PORT_BASE + i)) "flower-supernode $i"; done
    echo "SuperLink on $HOST:$LINK_PORT with $nodes SuperNodes${data_root:+ (node i reads $data_root/node-i)}${key_dir:+ (node i signs with $key_dir/client-i.key.json, roster $roster)}"
    echo "logs in $DIR/logs; for flwr: export FLWR_HOME=\"$FLWR_HOME\""
}

descendants() {  # descendants PID...: every process below these (Flower starts app processes in new sessions)
    local pid child
    for pid in "$@"; do
        for child in $(ps -o pid= --ppid "$pid" 2>/dev/null || true); do
            echo "$child"
            descendants "$child"
        done
    done
}

stop() {
    [ -s "$DIR/pids" ] || { echo "nothing to stop"; return 0; }
    local started all pid alive
    started="$(cat "$DIR/pids")"
    # shellcheck disable=SC2086
    all="$(descendants $started) $started"
    for pid in $all; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 20); do
        alive=0
        for pid in $all; do if kill -0 "$pid" 2>/dev/null; then alive=1; fi; done
        [ "$alive" = 0 ] && break
        sleep 0.25
    done
    for pid in $all; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -f "$DIR/pids"
    echo "stopped"
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) stop ;;
    *) echo "usage: $0 start [N] [--data-root DIR] [--key-dir KEYS [--roster FILE]] | stop" >&2; exit 2 ;;
esac
