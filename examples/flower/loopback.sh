#!/usr/bin/env bash
# A loopback Flower deployment for local trials: one SuperLink and N SuperNodes, every port on 127.0.0.1,
# insecure mode (plain HTTP, no TLS, no node authentication: for this machine only, never across a network).
#
#   examples/flower/loopback.sh start [N]     # SuperLink on 127.0.0.1:$PRIVFED_SUPERLINK_PORT (default 9093)
#   export FLWR_HOME="$PWD/.privfed-flower/flwr-home"
#   flwr run examples/flower privfed-loopback --stream \
#       --run-config 'protection="secagg" report="'"$PWD"'/secagg-report.json"'
#   examples/flower/loopback.sh stop
#
# CKKS needs keys dealt before the nodes start (secret context to the nodes, public one to the server):
#   python -m privfed.runtime.flower.keys .privfed-flower/keys
#   PRIVFED_NODE_CONFIG='key-dir="'"$PWD"'/.privfed-flower/keys/nodes"' examples/flower/loopback.sh start 3
#   flwr run examples/flower privfed-loopback --stream \
#       --run-config 'protection="ckks" key-dir="'"$PWD"'/.privfed-flower/keys/server"'
#
# Run it from the repository root, in the environment where privfed is installed with the flower extra: the
# SuperLink and SuperNodes start the ServerApp/ClientApp processes with the flwr tools found on PATH.
# Node i gets node-config partition-id=i, num-partitions=N, plus whatever PRIVFED_NODE_CONFIG adds (e.g.
# protections="secagg,ckks" to pin the protections the nodes accept).
set -euo pipefail

DIR="${PRIVFED_FLOWER_DIR:-$PWD/.privfed-flower}"
LINK_PORT="${PRIVFED_SUPERLINK_PORT:-9093}"
NODE_PORT_BASE="${PRIVFED_NODE_PORT_BASE:-9100}"
HOST=127.0.0.1
export FLWR_HOME="$DIR/flwr-home"
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1 FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1

wait_port() {  # wait_port PORT WHAT: until something listens on 127.0.0.1:PORT (60 s at most)
    for _ in $(seq 1 120); do
        if (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; then return 0; fi
        sleep 0.5
    done
    echo "$2 did not start; see $DIR/logs" >&2
    return 1
}

start() {
    local nodes="${1:-3}"
    if [ -s "$DIR/pids" ]; then echo "already running (pids in $DIR/pids); run: $0 stop" >&2; exit 1; fi
    mkdir -p "$DIR/logs" "$FLWR_HOME"
    cat > "$FLWR_HOME/config.toml" <<EOF
[superlink]
default = "privfed-loopback"

[superlink.privfed-loopback]
address = "$HOST:$LINK_PORT"
insecure = true
EOF
    setsid flower-superlink --insecure --host "$HOST" --port "$LINK_PORT" \
        --disable-runtime-dependency-installation > "$DIR/logs/superlink.log" 2>&1 < /dev/null &
    echo $! >> "$DIR/pids"
    wait_port "$LINK_PORT" flower-superlink
    for i in $(seq 0 $((nodes - 1))); do
        setsid flower-supernode --insecure --superlink "$HOST:$LINK_PORT" --host "$HOST" \
            --port $((NODE_PORT_BASE + i)) \
            --node-config "partition-id=$i num-partitions=$nodes ${PRIVFED_NODE_CONFIG:-}" \
            > "$DIR/logs/supernode-$i.log" 2>&1 < /dev/null &
        echo $! >> "$DIR/pids"
    done
    for i in $(seq 0 $((nodes - 1))); do wait_port $((NODE_PORT_BASE + i)) "flower-supernode $i"; done
    echo "SuperLink on $HOST:$LINK_PORT with $nodes SuperNodes; logs in $DIR/logs"
    echo "export FLWR_HOME=\"$FLWR_HOME\"   # then: flwr run examples/flower privfed-loopback --stream"
}

stop() {
    [ -s "$DIR/pids" ] || { echo "nothing to stop"; return 0; }
    # each process leads its own process group (setsid); signal exactly those groups
    while read -r pid; do kill -TERM -- "-$pid" 2>/dev/null || true; done < "$DIR/pids"
    sleep 3
    while read -r pid; do kill -KILL -- "-$pid" 2>/dev/null || true; done < "$DIR/pids"
    rm -f "$DIR/pids"
    echo "stopped"
}

case "${1:-}" in
    start) start "${2:-3}" ;;
    stop) stop ;;
    *) echo "usage: $0 start [N] | stop" >&2; exit 2 ;;
esac
