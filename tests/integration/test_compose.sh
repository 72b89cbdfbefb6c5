#!/usr/bin/env bash
# test_compose.sh: docker-compose.yml end to end against the test bed. Starts
# a dockerd of its own (no iptables, no bridge: every container uses the
# host's network on 127.0.0.1), builds the images (deploy/images/build.sh,
# cached by rootfs hash in a data root kept in the build dir), brings the
# stack up with three probers and two image-builders, waits for every
# healthcheck, and then, as an operator would see it:
#  - a bus peer without a CURVE certificate is refused;
#  - six pods, each in its own VM, converge while the status-reporter's
#    container is replaced under them (no status lost); the image was
#    pulled once across the builders; each pod is probed once per period
#    across the probers (its probe counts its own runs);
#  - kubectl exec reaches a VM through the kubelet API container;
#  - `docker-compose restart vm-launcher`: the same QEMU processes run on,
#    the pods stay Running with no restart, and each container's log (a
#    ticker) has every line, none missing, none twice;
#  - `docker-compose down` leaves no container, VM, network namespace or
#    link, and stopping dockerd leaves the firewall rules as they were.
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
for name in REDIS BUS_PUBLISH BUS_SUBSCRIBE BUS_WORK BUS_HTTP WATCHER_HTTP LAUNCHER_HTTP \
    REPORTER_HTTP KAPI_HTTP KUBELET SESSION; do
    bed_free_port p
    P[$name]=$p
done
octet=$((0x${SUFFIX:0:2} % 200 + 20))
REDIS_PASSWORD=$(openssl rand -hex 24)
VETH=vhc$SUFFIX
cat >"$TMP/vmlet.env" <<EOF
VMLET_VERSION=$(sed -n 's/^project(vmlet VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
VMLET_REDIS_PASSWORD=$REDIS_PASSWORD
REDIS_PORT=${P[REDIS]}
BUS_PUBLISH_PORT=${P[BUS_PUBLISH]}
BUS_SUBSCRIBE_PORT=${P[BUS_SUBSCRIBE]}
BUS_WORK_PORT=${P[BUS_WORK]}
BUS_HTTP_PORT=${P[BUS_HTTP]}
WATCHER_HTTP_PORT=${P[WATCHER_HTTP]}
LAUNCHER_HTTP_PORT=${P[LAUNCHER_HTTP]}
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
COMPOSE up -d --scale prober=3 --scale image-builder=2 >"$TMP/up.log" 2>&1 ||
    { cat "$TMP/up.log" >&2; fail "docker-compose up failed"; }
containers() { $DOCKER ps -a -q --filter "label=com.docker.compose.project=$PROJECT"; }
# redis, bus, k8s-watcher, 2 image-builders, vmm-host, vm-launcher,
# 3 probers, status-reporter, kubelet-api.
N_CONTAINERS=12
all_healthy() {
    local ids n
    ids=$(containers)
    n=$(echo "$ids" | grep -c . || true)
    [ "$n" = $N_CONTAINERS ] || return 1
    ! $DOCKER inspect -f '{{.Name}} {{.State.Health.Status}}' $ids | grep -v ' healthy$' >"$TMP/unhealthy"
}
bed_wait_for "the $N_CONTAINERS containers to be healthy" 180 all_healthy ||
    fail "not healthy after 180 s: $(tr '\n' ' ' <"$TMP/unhealthy")"
phase "compose up (prober x3, image-builder x2) to healthy in $((SECONDS - t)) s"

REDIS() { redis-cli -h 127.0.0.1 -p "${P[REDIS]}" --no-auth-warning -a "$REDIS_PASSWORD" "$@"; }
# instances SERVICE: the HTTP address of each live instance, from the
# presence keys the services keep in Redis (replicas listen on port 0).
instances() {
    local key
    for key in $(REDIS --scan --pattern "vmlet:instances:$1:*"); do
        REDIS GET "$key" | jq -r .http
    done | sort
}
metric_sum() { # metric_sum SERVICE SERIES: the series summed over the instances
    local addr total=0 v
    for addr in $(instances "$1"); do
        v=$(curl -sf --noproxy '*' "http://$addr/metrics" | awk -v s="$2" '$1 == s { print $2 }')
        total=$(awk -v a="$total" -v b="${v:-0}" 'BEGIN { print a + b }')
    done
    echo "$total"
}
ready_all() {
    local port addr n svc
    for port in ${P[WATCHER_HTTP]} ${P[LAUNCHER_HTTP]} ${P[REPORTER_HTTP]} ${P[KAPI_HTTP]}; do
        curl -sf --noproxy '*' -o /dev/null "http://127.0.0.1:$port/readyz" || return 1
    done
    for svc in prober:3 image-builder:2; do
        n=0
        for addr in $(instances "${svc%:*}"); do
            curl -sf --noproxy '*' -o /dev/null "http://$addr/readyz" || return 1
            n=$((n + 1))
        done
        [ "$n" = "${svc#*:}" ] || return 1
    done
}
bed_wait_for "every service and replica to be ready (Redis and bus connected)" 60 ready_all ||
    fail "a service is not ready (prober at $(instances prober | tr '\n' ' '), image-builder at $(instances image-builder | tr '\n' ' '))"
say "replicas on ports the kernel picked: prober $(instances prober | tr '\n' ' ')image-builder $(instances image-builder | tr '\n' ' ')"

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

# --- six pods, the status-reporter replaced meanwhile -----------------------
LAYOUT=$(dirname "$BIN")/compose-busybox
if [ ! -d "$LAYOUT" ]; then
    "$ROOT/tests/support/make-image.sh" "$LAYOUT" busybox || fail "could not make the busybox image"
fi
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$TMP/policy.json"
IMAGE=$BED_REGISTRY/compose/busybox:$SUFFIX
skopeo --policy "$TMP/policy.json" copy -q --dest-tls-verify=false "oci:$LAYOUT:busybox" \
    "docker://$IMAGE" || fail "pushing busybox to $BED_REGISTRY failed"
node_ready() {
    [ "$(KUBECTL get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
bed_wait_for "node $NODE to be Ready" 60 node_ready || fail "node $NODE is not Ready"
KUBECTL create namespace "$NS" >/dev/null || fail "kubectl create namespace $NS failed"
PODS="w0 w1 w2 w3 w4 w5"
PROBE_PERIOD=2
# Each pod: a web server, a ticker on stdout, and a readiness probe that
# counts its own runs.
pod_yaml() {
    cat <<EOF
---
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $NS}
spec:
  nodeName: $NODE
  containers:
  - name: web
    image: $IMAGE
    command: ["sh", "-c", "echo compose-$SUFFIX-$1 >/www/who; httpd -p 8080 -h /www; i=0; while :; do i=\$((i+1)); echo tick \$i; sleep 1; done"]
    readinessProbe:
      exec: {command: ["sh", "-c", "echo run >>/tmp/probes"]}
      periodSeconds: $PROBE_PERIOD
EOF
}
t=$SECONDS
for pod in $PODS; do pod_yaml "$pod"; done | KUBECTL apply -f - >/dev/null ||
    fail "kubectl apply of the pods failed"
REPORTER_BEFORE=$(COMPOSE ps -q status-reporter)
COMPOSE up -d --no-deps --force-recreate status-reporter >"$TMP/swap.log" 2>&1 ||
    { cat "$TMP/swap.log" >&2; fail "replacing the status-reporter's container failed"; }
REPORTER_AFTER=$(COMPOSE ps -q status-reporter)
[ -n "$REPORTER_AFTER" ] && [ "$REPORTER_AFTER" != "$REPORTER_BEFORE" ] ||
    fail "the status-reporter's container was not replaced"
phase "status-reporter container ${REPORTER_BEFORE:0:12} replaced by ${REPORTER_AFTER:0:12} while the pods start"

pod_state() { # phase, ready, restarts, pod IP
    KUBECTL -n "$NS" get pod "$1" -o jsonpath='{.status.phase} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].restartCount} {.status.podIP}' 2>/dev/null
}
all_running() {
    local pod
    for pod in $PODS; do
        [[ "$(pod_state "$pod")" =~ ^Running\ true\ 0\ [0-9.]+$ ]] || return 1
    done
}
if ! bed_wait_for "the six pods to run in their VMs, ready" 480 all_running; then
    for pod in $PODS; do say "  $pod: $(pod_state "$pod")"; done
    KUBECTL -n "$NS" get events --sort-by=.lastTimestamp | tail -n 20 >&2
    fail "the pods did not all converge"
fi
phase "six pods Running and ready $((SECONDS - t)) s after kubectl apply"
# No status lost: each pod's status has the address the launcher gave its VM.
for pod in $PODS; do
    uid=$(KUBECTL -n "$NS" get pod "$pod" -o jsonpath='{.metadata.uid}')
    ip=$(KUBECTL -n "$NS" get pod "$pod" -o jsonpath='{.status.podIP}')
    record=$(REDIS HGET "vmlet:ipam-pod:$uid" ip)
    [ -n "$ip" ] && [ "$ip" = "$record" ] ||
        fail "$pod: status.podIP '$ip' is not the launcher's address for it ('$record')"
done
pulls=$(metric_sum image-builder 'vmlet_image_builder_ready_total{from="pull"}')
cached=$(metric_sum image-builder 'vmlet_image_builder_ready_total{from="cache"}')
say "image-builders: $pulls pull(s), $cached answer(s) from the cache"
[ "$pulls" = 1 ] || fail "the image was pulled $pulls times across the two builders (once expected)"
owned=$(metric_sum prober vmlet_prober_pods_owned)
say "probers: $owned pods owned between the three"
[ "$owned" = 6 ] || fail "the probers own $owned pods between them (6 expected: each pod by one)"

# Each pod's probe counts its runs: over a window, one per period.
probe_runs() { KUBECTL -n "$NS" exec "$1" -c web -- sh -c 'wc -l </tmp/probes' 2>/dev/null | tr -d ' '; }
declare -A RUNS
for pod in $PODS; do RUNS[$pod]=$(probe_runs "$pod"); done
w0=$SECONDS
sleep 30 # the measurement window
for pod in $PODS; do
    after=$(probe_runs "$pod")
    window=$((SECONDS - w0))
    got=$((after - RUNS[$pod]))
    expect=$((window / PROBE_PERIOD))
    say "  $pod: $got probe runs in $window s (one per $PROBE_PERIOD s: ~$expect)"
    [ "$got" -ge $((expect * 3 / 4)) ] && [ "$got" -le $((expect * 5 / 4 + 1)) ] ||
        fail "$pod: $got probe runs in $window s where one per $PROBE_PERIOD s (~$expect) was due"
done

out=$(KUBECTL -n "$NS" exec w0 -c web -- cat /www/who 2>&1) ||
    fail "kubectl exec through the kubelet API container failed: $out"
[ "$out" = "compose-$SUFFIX-w0" ] || fail "kubectl exec: expected compose-$SUFFIX-w0, got '$out'"
say "kubectl exec into the VM through the kubelet API: '$out'"

# --- the launcher restarted under running VMs --------------------------------
VMM_HOST=$(COMPOSE ps -q vmm-host)
# The QEMUs are the vmm-host's (in its container's cgroup), not the launcher's.
qemu_pids() {
    local pid
    for pid in $(pgrep -f qemu-system-x86_64 || true); do
        grep -qs "$VMM_HOST" "/proc/$pid/cgroup" && echo "$pid"
    done | sort -n
}
QEMU_PIDS=$(qemu_pids)
[ "$(echo "$QEMU_PIDS" | grep -c .)" = 6 ] ||
    fail "expected 6 QEMUs in the vmm-host's container, found: $(echo $QEMU_PIDS)"
NETNS_IDS=$(for pid in $QEMU_PIDS; do stat -L -c %i "/proc/$pid/ns/net"; done | sort -u | tr '\n' ' ')
say "the VMs: qemu pids $(echo $QEMU_PIDS), network namespace $NETNS_IDS, host link $VETH"
ip link show "$VETH" >/dev/null 2>&1 || fail "the launcher's host link $VETH is missing"
declare -A TICK
for pod in $PODS; do
    TICK[$pod]=$(KUBECTL -n "$NS" logs "$pod" -c web --tail=1 2>/dev/null | awk '$1 == "tick" { print $2 }')
done
t=$SECONDS
COMPOSE restart -t 20 vm-launcher >"$TMP/restart.log" 2>&1 ||
    { cat "$TMP/restart.log" >&2; fail "docker-compose restart vm-launcher failed"; }
launcher_back() {
    curl -sf --noproxy '*' -o /dev/null "http://127.0.0.1:${P[LAUNCHER_HTTP]}/readyz" &&
        curl -sf --noproxy '*' "http://127.0.0.1:${P[LAUNCHER_HTTP]}/metrics" |
        grep -q '^vmlet_launcher_vms_adopted_total 6$'
}
bed_wait_for "the restarted launcher to adopt the six VMs" 60 launcher_back ||
    fail "the restarted launcher did not adopt the six VMs"
phase "vm-launcher restarted; VMs adopted $((SECONDS - t)) s after the restart began"
[ "$(qemu_pids)" = "$QEMU_PIDS" ] ||
    fail "the QEMUs changed across the launcher's restart: before $(echo $QEMU_PIDS), after $(echo $(qemu_pids))"
sleep 3 # a few ticks after the restart, so a gap would show
for pod in $PODS; do
    [[ "$(pod_state "$pod")" =~ ^Running\ true\ 0\  ]] || fail "$pod after the launcher's restart: $(pod_state "$pod")"
    KUBECTL -n "$NS" logs "$pod" -c web >"$TMP/$pod.log" 2>&1 || fail "kubectl logs $pod: $(cat "$TMP/$pod.log")"
    last=$(awk -v pod="$pod" '
        $1 == "tick" { if ($2 != n + 1) { printf "%s: tick %s where %d was due\n", pod, $2, n + 1 > "/dev/stderr"; exit 1 } n = $2 }
        END { print n }' "$TMP/$pod.log") || fail "$pod's log has a gap or a repeat across the restart"
    [ "$last" -gt $((${TICK[$pod]:-0} + SECONDS - t - 3)) ] ||
        fail "$pod's log ends at tick $last: ${TICK[$pod]:-?} before a restart of $((SECONDS - t)) s"
done
say "every ticker's log is whole across the restart (last ticks $(for pod in $PODS; do tail -n 1 "$TMP/$pod.log" | cut -d' ' -f2; done | tr '\n' ' '))"

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
