#!/usr/bin/env bash
# start.sh DIR [--only piece,...]: the real test bed on 127.0.0.1 — etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, redis-server and
# docker-registry — each on a free port, logs in DIR/logs, pidfiles in
# DIR/run, and DIR/bed.env (shell-sourceable KEY='value') describing it.
# Idempotent: pieces already running with the same settings are kept.
# Pieces: etcd apiserver controller-manager scheduler redis registry
# (--only adds what a piece needs: the apiserver needs etcd, and so on).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

usage() { bed_die "usage: $0 DIR [--only etcd,apiserver,controller-manager,scheduler,redis,registry]"; }
[ $# -ge 1 ] || usage
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
shift
only=""
while [ $# -gt 0 ]; do
    case $1 in
    --only) [ $# -ge 2 ] || usage; only=$2; shift 2 ;;
    --only=*) only=${1#--only=}; shift ;;
    *) usage ;;
    esac
done

ALL_PIECES="etcd apiserver controller-manager scheduler redis registry"
SERVICE_CIDR=${BED_SERVICE_CIDR:-10.32.0.0/24}
NODE_NAME=${BED_NODE_NAME:-vmlet}
PKI=$DIR/pki
RUN=$DIR/run
LOGS=$DIR/logs
AUTH=$DIR/auth
STARTED=""

# --- which pieces --------------------------------------------------------

needs() {
    case $1 in
    apiserver) echo etcd ;;
    controller-manager | scheduler) echo "etcd apiserver" ;;
    esac
}

select_pieces() {
    local want p d sel=" "
    [ -n "$only" ] || { echo "$ALL_PIECES"; return; }
    for p in ${only//,/ }; do
        case " $ALL_PIECES " in *" $p "*) ;; *) bed_die "unknown piece '$p' (pieces: $ALL_PIECES)" ;; esac
        for d in $(needs "$p") "$p"; do sel="$sel$d "; done
    done
    for p in $ALL_PIECES; do
        case $sel in *" $p "*) want="${want:-} $p" ;; esac
    done
    echo "${want# }"
}
PIECES=$(select_pieces)
# Pieces that use NAME, those furthest from it first.
dependents() {
    case $1 in
    etcd) echo "scheduler controller-manager apiserver" ;;
    apiserver) echo "scheduler controller-manager" ;;
    esac
}
wants() { case " $PIECES " in *" $1 "*) return 0 ;; esac; return 1; }

# --- ports, secrets ------------------------------------------------------

# port_for NAME VAR [OWNER]: sets VAR to the port NAME used last time
# (DIR/run/NAME.port) if its piece OWNER (default NAME) still runs, or if
# nothing listens on it and it lies below the ephemeral range, else to a
# fresh free port. Keeping the port matters: a piece restarted alone (the
# API server, say) must come back where its clients look for it, whatever
# connections to it linger in TIME_WAIT. But a kept port inside the
# ephemeral range (chosen by an older bed) can be taken by any outgoing
# connection, which no listener check sees: such a port is chosen again.
port_for() {
    local name=$1 var=$2 owner=${3:-$1} p low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    p=$(cat "$RUN/$name.port" 2>/dev/null || true)
    if [ -z "$p" ] || { ! piece_alive "$owner" &&
        { ((p >= low)) || [ -n "$(ss -Hltn "sport = :$p")" ]; }; }; then
        bed_free_port p # (bed_free_port has a local named "port")
    fi
    echo "$p" >"$RUN/$name.port"
    printf -v "$var" '%s' "$p"
}

# secret FILE: a random hex string kept in FILE (made once).
secret() {
    [ -s "$1" ] || (umask 077 && openssl rand -hex 24 >"$1")
    cat "$1"
}

write_tokens() {
    ADMIN_TOKEN=$(secret "$AUTH/admin.token")
    NODE_TOKEN=$(secret "$AUTH/node.token")
    VMLET_TOKEN=$(secret "$AUTH/vmlet.token")
    KCM_TOKEN=$(secret "$AUTH/controller-manager.token")
    SCHED_TOKEN=$(secret "$AUTH/scheduler.token")
    (umask 077 && cat >"$AUTH/tokens.csv.tmp" <<EOF
$ADMIN_TOKEN,admin,uid-admin,"system:masters"
$NODE_TOKEN,system:node:$NODE_NAME,uid-node-$NODE_NAME,"system:nodes"
$VMLET_TOKEN,vmlet,uid-vmlet,"vmlet:components"
$KCM_TOKEN,system:kube-controller-manager,uid-kcm
$SCHED_TOKEN,system:kube-scheduler,uid-scheduler
EOF
    )
    mv "$AUTH/tokens.csv.tmp" "$AUTH/tokens.csv"
}

# kubeconfig FILE TOKEN: a token kubeconfig for the apiserver.
kubeconfig() {
    (umask 077 && cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vmlet-bed
  cluster:
    server: $APISERVER_URL
    certificate-authority: $PKI/ca.crt
users:
- name: user
  user:
    token: $2
contexts:
- name: vmlet-bed
  context:
    cluster: vmlet-bed
    user: user
    namespace: default
current-context: vmlet-bed
EOF
    )
}

# --- processes -----------------------------------------------------------

# piece_alive NAME: its pidfile names a live process of that piece.
piece_alive() {
    local pid
    pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
    bed_piece_running "$pid" "$1"
}

stop_piece() {
    if piece_alive "$1"; then
        QUIET=1 "$here/stop.sh" "$DIR" --only "$1"
    fi
    rm -f "$RUN/$1.pid" "$RUN/$1.cmd"
}

# launch NAME CMD...: start CMD in its own session (it outlives this
# script and a Ctrl-C in the terminal), stdout+stderr to DIR/logs/NAME.log.
launch() {
    local name=$1
    shift
    echo "===== $(date '+%F %T') start: $*" >>"$LOGS/$name.log"
    # shellcheck disable=SC2016 # $$ and $@ are the child shell's
    setsid sh -c 'echo $$ >"$0"; exec "$@"' "$RUN/$name.pid" "$@" \
        </dev/null >>"$LOGS/$name.log" 2>&1 &
    printf '%s\n' "$*" >"$RUN/$name.cmd"
    bed_wait_for "$name pidfile" 5 test -s "$RUN/$name.pid"
}

fail() {
    local name=$1 why=$2 hint=$3
    printf '\n' >&2
    bed_log "error: $name $why"
    if [ -f "$LOGS/$name.log" ]; then
        bed_log "last lines of $LOGS/$name.log:"
        tail -n 25 "$LOGS/$name.log" | sed 's/^/    /' >&2
    fi
    bed_log "what to do: $hint"
    if [ -n "$STARTED" ]; then
        bed_log "stopping what this run started:$STARTED"
        for p in $(echo "$STARTED" | tr ' ' '\n' | tac); do stop_piece "$p"; done
    fi
    exit 1
}

# run_piece NAME PORT TIMEOUT HINT -- CMD...: keep NAME if it runs the same
# command and is healthy (health_NAME), else (re)start it and poll health.
run_piece() {
    local name=$1 port=$2 timeout=$3 hint=$4 t0 d
    shift 5
    # A piece that runs as wanted gets a while to become healthy (say the
    # apiserver, when etcd was just restarted under it) before a restart.
    if piece_alive "$name" && [ "$(cat "$RUN/$name.cmd" 2>/dev/null)" = "$*" ] &&
        bed_wait_for "$name to be healthy" 15 "health_$name"; then
        bed_log "$name on 127.0.0.1:$port already running (pid $(cat "$RUN/$name.pid"))"
        return 0
    fi
    if piece_alive "$name"; then
        bed_log "$name runs with other settings or is unhealthy; restarting it"
        for d in $(dependents "$name"); do stop_piece "$d"; done
    fi
    stop_piece "$name"
    printf '%s vmlet: starting %s on 127.0.0.1:%s ... ' "$(date +%H:%M:%S)" "$name" "$port" >&2
    t0=$EPOCHREALTIME
    launch "$name" "$@" || fail "$name" "did not start" "$hint"
    STARTED="$STARTED $name"
    local deadline=$((SECONDS + timeout))
    until "health_$name" >/dev/null 2>&1; do
        piece_alive "$name" || fail "$name" "exited during start-up" "$hint"
        ((SECONDS < deadline)) || fail "$name" "not healthy after ${timeout}s" "$hint"
        sleep 0.2
    done
    printf 'ready in %s\n' "$(elapsed "$t0")" >&2
}

# elapsed T0: seconds since T0 (an $EPOCHREALTIME value), one decimal.
elapsed() {
    local us=$((${EPOCHREALTIME/./} - ${1/./}))
    printf '%d.%ds' $((us / 1000000)) $((us / 100000 % 10))
}

CURL=(curl -sf --noproxy '*' --max-time 3)

# --- the pieces ----------------------------------------------------------

health_etcd() {
    "${CURL[@]}" --cacert "$PKI/ca.crt" --cert "$PKI/etcd-client.crt" --key "$PKI/etcd-client.key" \
        "https://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'
}
start_etcd() {
    port_for etcd ETCD_PORT
    port_for etcd-peer ETCD_PEER_PORT etcd
    ETCD_URL=https://127.0.0.1:$ETCD_PORT
    mkdir -p "$DIR/etcd" && chmod 700 "$DIR/etcd"
    run_piece etcd "$ETCD_PORT" 30 "check $LOGS/etcd.log; if its data is damaged, run tests/bed/stop.sh $DIR and remove $DIR/etcd" -- \
        etcd --name vmlet-bed --data-dir "$DIR/etcd" \
        --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "vmlet-bed=http://127.0.0.1:$ETCD_PEER_PORT" \
        --cert-file "$PKI/etcd-server.crt" --key-file "$PKI/etcd-server.key" \
        --client-cert-auth --trusted-ca-file "$PKI/ca.crt" --logger zap --log-level warn
}

# Audit: request metadata (user, verb, resource, code; never bodies) of the
# vmlet identities only, so tests can check the services' RBAC needs
# from the log without slowing every other request.
write_audit_policy() {
    cat >"$DIR/audit-policy.yaml.tmp" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: ["vmlet:components", "system:serviceaccounts:vmlet-audit"]
- level: None
EOF
    mv "$DIR/audit-policy.yaml.tmp" "$DIR/audit-policy.yaml"
}

health_apiserver() {
    "${CURL[@]}" --cacert "$PKI/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" \
        "$APISERVER_URL/readyz" | grep -q ok
}
start_apiserver() {
    port_for apiserver APISERVER_PORT
    APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
    write_audit_policy
    run_piece apiserver "$APISERVER_PORT" 90 "check $LOGS/apiserver.log (etcd at $ETCD_URL must be healthy; the binary comes from tests/bed/k8s-build.sh)" -- \
        "$K8S_BIN/kube-apiserver" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
        --secure-port "$APISERVER_PORT" \
        --etcd-servers "$ETCD_URL" --etcd-cafile "$PKI/ca.crt" \
        --etcd-certfile "$PKI/etcd-client.crt" --etcd-keyfile "$PKI/etcd-client.key" \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --client-ca-file "$PKI/ca.crt" --token-auth-file "$AUTH/tokens.csv" \
        --authorization-mode Node,RBAC --allow-privileged=true \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --api-audiences https://kubernetes.default.svc.cluster.local \
        --kubelet-preferred-address-types InternalIP \
        --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority "$PKI/ca.crt" \
        --requestheader-client-ca-file "$PKI/ca.crt" \
        --requestheader-allowed-names front-proxy-client \
        --requestheader-username-headers X-Remote-User \
        --requestheader-group-headers X-Remote-Group \
        --requestheader-extra-headers-prefix X-Remote-Extra- \
        --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
        --proxy-client-key-file "$PKI/front-proxy-client.key" \
        --endpoint-reconciler-type none \
        --audit-policy-file "$DIR/audit-policy.yaml" --audit-log-path "$LOGS/audit.log" \
        --audit-log-maxsize 100 --audit-log-maxbackup 1 \
        --enable-admission-plugins NodeRestriction --profiling=false \
        --cert-dir "$RUN/apiserver-certs"
}

# The vmlet user's rights: what k8s-watcher and status-reporter do.
apply_rbac() {
    "$K8S_BIN/kubectl" --kubeconfig "$DIR/admin.kubeconfig" apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: vmlet}
rules:
- apiGroups: [""]
  resources: [nodes, nodes/status, pods, pods/status, events, secrets, configmaps, services, namespaces, endpoints]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [get, list, watch, create, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: vmlet}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: vmlet}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "vmlet:components"}
EOF
}

# Healthy once /healthz answers and the default service account has its
# token, so a test can create a Pod straight away.
health_controller-manager() {
    "${CURL[@]}" -k "https://127.0.0.1:$KCM_PORT/healthz" | grep -q ok &&
        [ -n "$("$K8S_BIN/kubectl" --kubeconfig "$DIR/admin.kubeconfig" --request-timeout 3s \
            -n default get serviceaccount default -o 'jsonpath={.secrets[0].name}')" ]
}
start_controller_manager() {
    port_for controller-manager KCM_PORT
    kubeconfig "$AUTH/controller-manager.kubeconfig" "$KCM_TOKEN"
    local kc=$AUTH/controller-manager.kubeconfig
    run_piece controller-manager "$KCM_PORT" 60 "check $LOGS/controller-manager.log (the apiserver at $APISERVER_URL must be ready)" -- \
        "$K8S_BIN/kube-controller-manager" --master "$APISERVER_URL" --kubeconfig "$kc" \
        --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
        --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --port 0 \
        --cert-dir "$RUN/controller-manager-certs" --leader-elect=false \
        --use-service-account-credentials \
        --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
        --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false \
        --node-monitor-period 2s --node-monitor-grace-period 20s \
        --pod-eviction-timeout 30s --node-startup-grace-period 20s \
        --controllers '*,-service,-route,-cloud-node-lifecycle' --profiling=false
}

health_scheduler() { "${CURL[@]}" -k "https://127.0.0.1:$SCHED_PORT/healthz" | grep -q ok; }
start_scheduler() {
    port_for scheduler SCHED_PORT
    kubeconfig "$AUTH/scheduler.kubeconfig" "$SCHED_TOKEN"
    local kc=$AUTH/scheduler.kubeconfig
    run_piece scheduler "$SCHED_PORT" 60 "check $LOGS/scheduler.log (the apiserver at $APISERVER_URL must be ready)" -- \
        "$K8S_BIN/kube-scheduler" --master "$APISERVER_URL" --kubeconfig "$kc" \
        --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
        --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --port 0 \
        --cert-dir "$RUN/scheduler-certs" --leader-elect=false --profiling=false
}

health_redis() {
    REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping | grep -q PONG
}
start_redis() {
    port_for redis REDIS_PORT
    REDIS_PASSWORD=$(secret "$AUTH/redis.password")
    mkdir -p "$DIR/redis" && chmod 700 "$DIR/redis"
    (umask 077 && cat >"$DIR/redis/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
requirepass $REDIS_PASSWORD
appendonly yes
appendfsync everysec
save ""
dir $DIR/redis
daemonize no
logfile ""
EOF
    )
    # The password lives in the config file, not on the command line (ps).
    run_piece redis "$REDIS_PORT" 20 "check $LOGS/redis.log (a damaged AOF under $DIR/redis can be checked with redis-check-aof)" -- \
        redis-server "$DIR/redis/redis.conf"
}

health_registry() { "${CURL[@]}" -o /dev/null "http://127.0.0.1:$REGISTRY_PORT/v2/"; }
start_registry() {
    port_for registry REGISTRY_PORT
    mkdir -p "$DIR/registry/data"
    cat >"$DIR/registry/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $DIR/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
    run_piece registry "$REGISTRY_PORT" 20 "check $LOGS/registry.log and $DIR/registry/config.yml" -- \
        docker-registry serve "$DIR/registry/config.yml"
}

# --- bed.env -------------------------------------------------------------

# present NAME: NAME is part of this bed now (started by this run, or
# running from an earlier one with another --only); fills in its port.
present() {
    wants "$1" && return 0
    piece_alive "$1" || return 1
    local port
    port=$(cat "$RUN/$1.port")
    case $1 in
    etcd) ETCD_URL=https://127.0.0.1:$port ;;
    apiserver) APISERVER_URL=https://127.0.0.1:$port ;;
    redis) REDIS_PORT=$port REDIS_PASSWORD=$(secret "$AUTH/redis.password") ;;
    registry) REGISTRY_PORT=$port ;;
    esac
}

env_line() { printf "%s='%s'\n" "$1" "${2//\'/\'\\\'\'}"; }

write_env() {
    {
        echo "# The vmlet test bed in $DIR, written by tests/bed/start.sh. Source it."
        env_line BED_DIR "$DIR"
        local p running=""
        for p in $ALL_PIECES; do piece_alive "$p" && running="$running $p"; done
        env_line BED_PIECES "${running# }"
        env_line BED_CA "$PKI/ca.crt"
        if present etcd; then
            env_line BED_ETCD_URL "$ETCD_URL"
            env_line BED_ETCD_CERT "$PKI/etcd-client.crt"
            env_line BED_ETCD_KEY "$PKI/etcd-client.key"
        fi
        if present apiserver; then
            env_line BED_APISERVER_URL "$APISERVER_URL"
            env_line BED_KUBECONFIG "$DIR/admin.kubeconfig"
            env_line BED_ADMIN_TOKEN "$ADMIN_TOKEN"
            env_line BED_ADMIN_CERT "$PKI/admin.crt"
            env_line BED_ADMIN_KEY "$PKI/admin.key"
            env_line BED_NODE_NAME "$NODE_NAME"
            env_line BED_NODE_TOKEN "$NODE_TOKEN"
            env_line BED_NODE_KUBECONFIG "$DIR/node.kubeconfig"
            env_line BED_VMLET_TOKEN "$VMLET_TOKEN"
            env_line BED_VMLET_KUBECONFIG "$DIR/vmlet.kubeconfig"
            env_line BED_NODE_CERT "$PKI/node.crt"
            env_line BED_NODE_KEY "$PKI/node.key"
            env_line BED_KUBELET_CLIENT_CERT "$PKI/apiserver-kubelet-client.crt"
            env_line BED_KUBELET_CLIENT_KEY "$PKI/apiserver-kubelet-client.key"
            env_line BED_SERVICE_CIDR "$SERVICE_CIDR"
            env_line BED_KUBECTL "$K8S_BIN/kubectl"
            env_line BED_AUDIT_LOG "$LOGS/audit.log"
        fi
        if present redis; then
            env_line BED_REDIS_URL "redis://127.0.0.1:$REDIS_PORT"
            env_line BED_REDIS_PASSWORD "$REDIS_PASSWORD"
        fi
        present registry && env_line BED_REGISTRY "127.0.0.1:$REGISTRY_PORT"
        true
    } >"$DIR/bed.env.tmp"
    chmod 600 "$DIR/bed.env.tmp"
    mv "$DIR/bed.env.tmp" "$DIR/bed.env"
}

# --- main ----------------------------------------------------------------

main() {
    local t0=$EPOCHREALTIME p
    mkdir -p "$RUN" "$LOGS" "$AUTH"
    chmod 700 "$AUTH"
    if wants apiserver; then
        for p in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
            [ -x "$K8S_BIN/$p" ] || bed_die "$K8S_BIN/$p is missing: run tests/bed/k8s-build.sh first (about 10 minutes, once)"
        done
    fi
    for p in etcd redis-server redis-cli docker-registry openssl curl ss setsid; do
        command -v "$p" >/dev/null || bed_die "$p is missing: apt-get install etcd-server redis-server redis-tools docker-registry openssl curl iproute2 util-linux"
    done
    "$here/pki.sh" "$DIR" || bed_die "making certificates under $PKI failed (see above)"
    write_tokens
    wants redis && start_redis
    wants registry && start_registry
    wants etcd && start_etcd
    if wants apiserver; then
        start_apiserver
        kubeconfig "$DIR/admin.kubeconfig" "$ADMIN_TOKEN"
        kubeconfig "$DIR/node.kubeconfig" "$NODE_TOKEN"
        kubeconfig "$DIR/vmlet.kubeconfig" "$VMLET_TOKEN"
        apply_rbac || fail apiserver "refused the vmlet RBAC rules" "check $LOGS/apiserver.log"
    fi
    wants controller-manager && start_controller_manager
    wants scheduler && start_scheduler
    write_env
    if [ -z "$STARTED" ]; then
        bed_log "test bed in $DIR already running; nothing to do (settings in $DIR/bed.env)"
    else
        bed_log "test bed up in $(elapsed "$t0") (started:$STARTED); settings in $DIR/bed.env"
    fi
}

main
