#!/usr/bin/env bash
# stop.sh DIR [--only piece,...]: stops the test bed that start.sh DIR
# started, dependents first: SIGTERM, then SIGKILL after 10 s. Harmless
# when nothing runs. Data (etcd, redis AOF, registry blobs) stays in DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ $# -ge 1 ] || bed_die "usage: $0 DIR [--only piece,...]"
[ -d "$1" ] || exit 0
DIR=$(cd "$1" && pwd)
shift
pieces="scheduler controller-manager apiserver etcd registry redis"
case "${1:-}" in
--only) pieces=${2//,/ } ;;
--only=*) pieces=${1#--only=}; pieces=${pieces//,/ } ;;
"") ;;
*) bed_die "usage: stop.sh DIR [--only piece,...]" ;;
esac


# stop PID NAME: SIGTERM, up to 10 s to exit, then SIGKILL.
stop() {
    local pid=$1 name=$2
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        bed_piece_running "$pid" "$name" || return 0
        sleep 0.1
    done
    bed_log "$name (pid $pid) ignored SIGTERM for 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

stopped=""
for p in $pieces; do
    pidfile=$DIR/run/$p.pid
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if bed_piece_running "$pid" "$p"; then
        stop "$pid" "$p"
        stopped="$stopped $p"
    fi
    rm -f "$pidfile" "$DIR/run/$p.cmd"
done
if [ -n "${QUIET:-}" ]; then
    :
elif [ -n "$stopped" ]; then
    bed_log "stopped:$stopped (data kept in $DIR)"
else
    bed_log "nothing of the test bed in $DIR was running"
fi
