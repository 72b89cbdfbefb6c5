# Shell helpers shared by the test bed scripts, ./vmlet and CI. Source it.

# The cache outside the work tree: expensive builds survive fresh clones.
VMLET_CACHE=${VMLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmlet}
K8S_VERSION=${K8S_VERSION:-1.20.2}
K8S_BIN=${K8S_BIN:-$VMLET_CACHE/kubernetes-$K8S_VERSION/bin}

bed_log() { printf '%s vmlet: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

bed_die() {
    printf '%s vmlet: error: %s\n' "$(date +%H:%M:%S)" "$*" >&2
    exit 1
}

# bed_free_port VAR: set VAR to a TCP port on 127.0.0.1 that no socket uses
# now and that this shell has not handed out before. It is picked at random
# below the kernel's ephemeral range, so no outgoing connection can take it
# between now and the server's bind, and two concurrent runs rarely pick
# the same one.
BED_PORTS_GIVEN=" "
bed_free_port() {
    local port used low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    ((low > 21000)) || low=32768
    used=" $(ss -Htan 2>/dev/null | awk '{n=split($4,a,":"); printf "%s ", a[n]}') "
    while :; do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % (low - 20000)))
        case "$used$BED_PORTS_GIVEN" in *" $port "*) continue ;; esac
        BED_PORTS_GIVEN="$BED_PORTS_GIVEN$port "
        printf -v "$1" '%s' "$port"
        return 0
    done
}

# bed_wait_for DESCRIPTION TIMEOUT_S CMD...: poll CMD every 0.2 s until it
# succeeds; fail with DESCRIPTION after TIMEOUT_S.
bed_wait_for() {
    local what=$1 timeout=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            bed_log "timed out after ${timeout}s waiting for $what"
            return 1
        fi
        sleep 0.2
    done
}

# bed_tcp_open PORT: true if something accepts on 127.0.0.1:PORT.
bed_tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# bed_pid_alive PIDFILE
bed_pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# bed_stop_pidfile PIDFILE NAME: SIGTERM, wait up to 10 s, then SIGKILL.
bed_stop_pidfile() {
    local pidfile=$1 name=$2 pid i
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            bed_log "$name (pid $pid) ignored SIGTERM for 10 s; killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    rm -f "$pidfile"
}

# bed_piece_comm NAME: the name the kernel gives a bed piece's process
# (/proc/PID/comm, at most 15 characters).
bed_piece_comm() {
    case $1 in
    etcd) echo etcd ;;
    apiserver) echo kube-apiserver ;;
    controller-manager) echo kube-controller ;;
    scheduler) echo kube-scheduler ;;
    redis) echo redis-server ;;
    registry) echo docker-registry ;;
    *) bed_die "unknown piece '$1'" ;;
    esac
}

# bed_piece_running PID NAME: PID is a live process of piece NAME. A zombie
# waiting for its reaper counts as gone; a stranger that reused the pid is
# not ours.
bed_piece_running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$(bed_piece_comm "$2")" ]
}
