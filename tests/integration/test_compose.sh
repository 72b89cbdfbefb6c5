#!/usr/bin/env bash
# test_compose.sh: docker-compose.yml end to end against the test bed. Starts
# a dockerd of its own (no iptables, no bridge: every container uses the
# host's network on 127.0.0.1), builds the images (deploy/images/build.sh,
# cached by rootfs hash in a data root kept in the build dir), brings the
# stack up, waits for every healthcheck, runs a busybox pod to Running in a
# VM and execs in it through the kubelet API, then checks that
# `docker-compose down` leaves no container, VM, network namespace or link,
# and that stopping dockerd leaves the firewall rules as they were.
#
# A shell script rather than C: every step is a command (dockerd, docker,
# docker-compose, kubectl, skopeo), as an operator would type it.
#
# Environment (set by CTest): VMLET_BED_DIR, VMLET_BIN_DIR. Exit 77: skipped.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/bed/lib.sh"
BED=${VMLET_BED_DIR:?VMLET_BED_DIR not set (run through ctest)}
BIN=${VMLET_BIN_DIR:?VMLET_BIN_DIR not set (run through ctest)}
. "$BED/bed.env"

say() { bed_log "compose: $*"; }
fail() { say "FAIL: $*"; exit 1; }
skip() { say "SKIP: $*"; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root (dockerd, taps, network namespaces)"
for c in dockerd docker docker-compose skopeo; do
    command -v "$c" >/dev/null || skip "$c not installed (./vmlet deps installs PKGS_COMPOSE)"
done
[ -c /dev/net/tun ] || skip "/dev/net/tun missing: the launcher cannot make taps"
DOCKER=/usr/bin/docker # Debian's CLI, matching its dockerd and docker-compose
T0=$SECONDS
phase() { say "[$((SECONDS - T0)) s] $*"; }

# --- dockerd of our own ---------------------------------------------------
# Its data root lives in the build dir so the images survive between runs;
# its sockets and runtime state live in a short temporary dir.
DATA=${VMLET_COMPOSE_DOCKER_DIR:-$(dirname "$BIN")/compose-docker}
TMP=$(mktemp -d /tmp/vmlet-compose.XXXXXX)
SUFFIX=$(openssl rand -hex 3)
PROJECT=vmletc$SUFFIX
NODE=compose-$SUFFIX
NS=compose-$SUFFIX
export DOCKER_HOST=unix://$TMP/docker.sock
mkdir -p "$DATA" "$TMP/exec"
# The rules without comments and counters.
fw_rules() { { iptables-save || true; ip6tables-save || true; } 2>/dev/null | sed -e '/^#/d' -e 's/\[[0-9:]*\]//'; }
fw_rules >"$TMP/fw.before"

DOCKERD_PID=""
KUBECTL() { "$BED_KUBECTL" --kubeconfig "$BED_KUBECONFIG" "$@"; }
COMPOSE() { docker-compose -f "$ROOT/docker-compose.yml" --env-file "$TMP/vmlet.env" -p "$PROJECT" "$@"; }

stop_dockerd() {
    [ -n "$DOCKERD_PID" ] || return 0
    kill "$DOCKERD_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 150); do
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
        say "dockerd ($DOCKERD_PID) did not stop in 30 s; killing it"
        kill -9 "$DOCKERD_PID" 2>/dev/null || true
    fi
    DOCKERD_PID=""
}

cleanup() {
    local rc=$?
    set +e
    if [ $rc -ne 0 ] && [ -f "$TMP/vmlet.env" ] && [ -n "$DOCKERD_PID" ]; then
        say "logs of the stack (last lines of each):"
        COMPOSE logs --no-color --tail=15 2>&1 | sed 's/^/    /' >&2
        COMPOSE down -v --remove-orphans -t 20 >/dev/null 2>&1
    fi
    KUBECTL delete namespace "$NS" --wait=false >/dev/null 2>&1
    KUBECTL delete node "$NODE" >/dev/null 2>&1
    stop_dockerd
    # dockerd leaves its host-network handle mounted (exec-root/netns/default).
    awk -v t="$TMP/" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l
    [ $rc -ne 0 ] && [ -f "$TMP/dockerd.log" ] && tail -n 5 "$TMP/dockerd.log" | sed 's/^/    dockerd: /' >&2
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT

phase "starting dockerd (data root $DATA, no iptables, no bridge)"
setsid dockerd --data-root "$DATA" --exec-root "$TMP/exec" --pidfile "$TMP/dockerd.pid" \
    -H "$DOCKER_HOST" --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
    >"$TMP/dockerd.log" 2>&1 </dev/null &
DOCKERD_PID=$!
docker_up() { $DOCKER version >/dev/null 2>&1; }
bed_wait_for "dockerd to answer" 60 docker_up ||
    fail "dockerd did not start; is another dockerd using $DATA? ($(tail -n 3 "$TMP/dockerd.log"))"

# --- images ---------------------------------------------------------------
t=$SECONDS
VMLET_BIN_DIR=$BIN "$ROOT/deploy/images/build.sh" || fail "building the images failed"
phase "images ready in $((SECONDS - t)) s"

# --- what the stack is given -----------------------------------------------
# The bed's files are root's, mode 0600; the services run as uid 10001 and
# the kubeconfig names its CA by a path that does not exist in a container:
# a self-contained copy each, owned by 10001.
mkdir -p "$TMP/kubelet-tls"
KUBECTL --kubeconfig "$BED_VMLET_KUBECONFIG" config view --flatten --minify >"$TMP/kubeconfig" ||
    fail "could not flatten $BED_VMLET_KUBECONFIG"
cp "$BED_NODE_CERT" "$TMP/kubelet-tls/node.crt"
cp "$BED_NODE_KEY" "$TMP/kubelet-tls/node.key"
cp "$BED_CA" "$TMP/kubelet-tls/client-ca.crt"
chown -R 10001:10001 "$TMP/kubeconfig" "$TMP/kubelet-tls"
chmod 0400 "$TMP/kubeconfig" "$TMP/kubelet-tls"/*
chmod 0500 "$TMP/kubelet-tls"

# The bus's CURVE certificates: the broker's, and one the services share,
# authorized by the broker (vmlet-bus --make-cert, as docs/bus.md says).
mkdir -p "$TMP/curve/authorized"
"$BIN/vmlet-bus" --make-cert "$TMP/curve/broker" >/dev/null || fail "making the broker's certificate"
"$BIN/vmlet-bus" --make-cert "$TMP/curve/services" >/dev/null || fail "making the services' certificate"
cp "$TMP/curve/services" "$TMP/curve/authorized/services"
chown -R 10001:10001 "$TMP/curve"

declare -A P
for name in REDIS BUS_PUBLISH BUS_SUBSCRIBE BUS_WORK BUS_HTTP WATCHER_HTTP BUILDER_HTTP \
    LAUNCHER_HTTP PROBER_HTTP REPORTER_HTTP KAPI_HTTP KUBELET SESSION; do
    bed_free_port p
    P[$name]=$p
done
octet=$((0x${SUFFIX:0:2} % 200 + 20))
VETH=vhc$SUFFIX
cat >"$TMP/vmlet.env" <<EOF
VMLET_VERSION=$(sed -n 's/^project(vmlet VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
VMLET_REDIS_PASSWORD=$(openssl rand -hex 24)
REDIS_PORT=${P[REDIS]}
BUS_PUBLISH_PORT=${P[BUS_PUBLISH]}
BUS_SUBSCRIBE_PORT=${P[BUS_SUBSCRIBE]}
BUS_WORK_PORT=${P[BUS_WORK]}
BUS_HTTP_PORT=${P[BUS_HTTP]}
WATCHER_HTTP_PORT=${P[WATCHER_HTTP]}
BUILDER_HTTP_PORT=${P[BUILDER_HTTP]}
LAUNCHER_HTTP_PORT=${P[LAUNCHER_HTTP]}
PROBER_HTTP_PORT=${P[PROBER_HTTP]}
REPORTER_HTTP_PORT=${P[REPORTER_HTTP]}
KAPI_HTTP_PORT=${P[KAPI_HTTP]}
KUBELET_PORT=${P[KUBELET]}
SESSION_PORT=${P[SESSION]}
NODE_NAME=$NODE
KUBECONFIG_FILE=$TMP/kubeconfig
KUBELET_TLS_DIR=$TMP/kubelet-tls
CURVE_DIR=$TMP/curve
INSECURE_REGISTRIES=$BED_REGISTRY
LAUNCHER_ID=launcher-$SUFFIX
NET_NETNS=vmletc$SUFFIX
NET_BRIDGE=vbc$SUFFIX
NET_HOST_VETH=$VETH
POD_CIDR=10.$((octet + 1)).$octet.0/24
NET_LINK_CIDR=169.254.$octet.0/30
NET_NAT=false
RESERVE_MEMORY=512Mi
BOOT_TIMEOUT=120s
EOF
chmod 0600 "$TMP/vmlet.env"

# --- up -------------------------------------------------------------------
t=$SECONDS
COMPOSE up -d >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log" >&2; fail "docker-compose up failed"; }
containers() { $DOCKER ps -a -q --filter "label=com.docker.compose.project=$PROJECT"; }
all_healthy() {
    local ids n
    ids=$(containers)
    n=$(echo "$ids" | grep -c . || true)
    [ "$n" = 8 ] || return 1
    ! $DOCKER inspect -f '{{.Name}} {{.State.Health.Status}}' $ids | grep -v ' healthy$' >"$TMP/unhealthy"
}
bed_wait_for "the 8 containers to be healthy" 180 all_healthy ||
    fail "not healthy after 180 s: $(tr '\n' ' ' <"$TMP/unhealthy")"
phase "compose up to healthy in $((SECONDS - t)) s"
ready_all() {
    local port
    for port in ${P[WATCHER_HTTP]} ${P[BUILDER_HTTP]} ${P[LAUNCHER_HTTP]} ${P[PROBER_HTTP]} \
        ${P[REPORTER_HTTP]} ${P[KAPI_HTTP]}; do
        curl -sf --noproxy '*' -o /dev/null "http://127.0.0.1:$port/readyz" || return 1
    done
}
bed_wait_for "every service to be ready (Redis and bus connected)" 60 ready_all ||
    fail "a service is not ready"

# The bus is CURVE-only: a subscriber without a certificate is refused,
# and the broker counts it.
timeout 3 "$BIN/vmlet-test-bus-peer" --mode=subscribe \
    --subscribe="tcp://127.0.0.1:${P[BUS_SUBSCRIBE]}" --tag=rogue --ready-timeout=2s \
    >"$TMP/rogue.out" 2>&1 || true
refused() {
    curl -s --noproxy '*' "http://127.0.0.1:${P[BUS_HTTP]}/metrics" |
        grep -q '^vmlet_bus_broker_auth_refused_total{socket="subscribe",reason="no-curve"} [1-9]'
}
bed_wait_for "the broker to refuse a peer without a certificate" 10 refused ||
    fail "the compose bus took a peer without a CURVE certificate"

# --- a pod in a VM --------------------------------------------------------
LAYOUT=$(dirname "$BIN")/compose-busybox
if [ ! -d "$LAYOUT" ]; then
    "$ROOT/tests/support/make-image.sh" "$LAYOUT" busybox || fail "could not make the busybox image"
fi
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$TMP/policy.json"
IMAGE=$BED_REGISTRY/compose/busybox:1
skopeo --policy "$TMP/policy.json" copy -q --dest-tls-verify=false "oci:$LAYOUT:busybox" \
    "docker://$IMAGE" || fail "pushing busybox to $BED_REGISTRY failed"
node_ready() {
    [ "$(KUBECTL get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
bed_wait_for "node $NODE to be Ready" 60 node_ready || fail "node $NODE is not Ready"
KUBECTL create namespace "$NS" >/dev/null || fail "kubectl create namespace $NS failed"
t=$SECONDS
KUBECTL apply -f - >/dev/null <<EOF || fail "kubectl apply of the pod failed"
apiVersion: v1
kind: Pod
metadata: {name: hello, namespace: $NS}
spec:
  nodeName: $NODE
  containers:
  - name: web
    image: $IMAGE
    command: ["sh", "-c", "echo compose-$SUFFIX >/www/who; exec httpd -f -p 8080 -h /www"]
EOF
running() {
    [ "$(KUBECTL -n "$NS" get pod hello -o jsonpath='{.status.phase} {.status.containerStatuses[0].ready}' 2>/dev/null)" = "Running true" ]
}
if ! bed_wait_for "pod hello to run in a VM" 300 running; then
    KUBECTL -n "$NS" describe pod hello | tail -n 20 >&2
    fail "the pod did not reach Running in 300 s"
fi
phase "pod Running $((SECONDS - t)) s after kubectl apply"
LAUNCHER=$(COMPOSE ps -q vm-launcher)
# The QEMUs in the launcher's cgroup (its container's).
QEMU_PIDS=$(for pid in $(pgrep -f qemu-system-x86_64 || true); do
    grep -qs "$LAUNCHER" "/proc/$pid/cgroup" && echo "$pid"
done)
[ -n "$QEMU_PIDS" ] || fail "no QEMU runs in the launcher's container"
NETNS_IDS=""
for pid in $QEMU_PIDS; do
    NETNS_IDS="$NETNS_IDS $(stat -L -c %i "/proc/$pid/ns/net")"
done
say "the VM: qemu pid(s) $QEMU_PIDS, network namespace(s)$NETNS_IDS, host link $VETH"
ip link show "$VETH" >/dev/null 2>&1 || fail "the launcher's host link $VETH is missing"
out=$(KUBECTL -n "$NS" exec hello -c web -- cat /www/who 2>&1) ||
    fail "kubectl exec through the kubelet API container failed: $out"
[ "$out" = "compose-$SUFFIX" ] || fail "kubectl exec: expected compose-$SUFFIX, got '$out'"
say "kubectl exec into the VM through the kubelet API: '$out'"

# --- down -----------------------------------------------------------------
t=$SECONDS
COMPOSE down -v --remove-orphans -t 30 >"$TMP/down.log" 2>&1 ||
    { cat "$TMP/down.log" >&2; fail "docker-compose down failed"; }
phase "compose down in $((SECONDS - t)) s"
left=$(containers)
[ -z "$left" ] || fail "containers left after down: $left"
for pid in $QEMU_PIDS; do
    ! kill -0 "$pid" 2>/dev/null || fail "QEMU $pid still runs after down"
done
for id in $NETNS_IDS; do
    ! lsns -n -t net -o NS | grep -qx " *$id" || fail "network namespace $id still exists after down"
done
! ip link show "$VETH" >/dev/null 2>&1 || fail "link $VETH left in the host after down"
! $DOCKER volume ls -q | grep -q "^${PROJECT}_" || fail "volumes left after down -v"
stop_dockerd
fw_rules >"$TMP/fw.after"
diff "$TMP/fw.before" "$TMP/fw.after" >&2 || fail "the firewall rules changed while dockerd ran"
phase "PASS: no container, VM, network namespace, link or firewall rule left behind"
