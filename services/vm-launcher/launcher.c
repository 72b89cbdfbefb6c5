// vm-launcher: settings, wiring, bus handlers, the tick and capacity
// announcements (see launcher.h and launcher_internal.h).
#include "launcher_internal.h"
#include "vmm_host_client.h"
#include "session.h"
#include "volume_refresh.h"

#include "vmlet/fsutil.h"
#include "vmlet/pb.h"
#include "vmlet/quantity.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef VMLET_DEFAULT_KERNEL
#define VMLET_DEFAULT_KERNEL ""
#endif
#ifndef VMLET_DEFAULT_INITRAMFS
#define VMLET_DEFAULT_INITRAMFS ""
#endif

#define TICK_MS 250
#define RECONCILE_MS 10000

#define OPT(field) offsetof(launcher_settings_t, field)
const vmlet_cfg_option_t launcher_options[] = {
    {"launcher-id", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(launcher_id),
     "this launcher's name: its VMs, announcements and records (default: the host name)"},
    {"reserve-cpu", VMLET_CFG_STRING, "500m", 0, 0, NULL, OPT(reserve_cpu),
     "CPU kept for the host and vmlet itself (a Kubernetes quantity)"},
    {"reserve-memory", VMLET_CFG_STRING, "1Gi", 0, 0, NULL, OPT(reserve_memory),
     "memory kept for the host and vmlet itself (a Kubernetes quantity)"},
    {"max-pods", VMLET_CFG_INT, "110", 1, 100000, NULL, OPT(max_pods),
     "pods (VMs) this launcher takes at most"},
    {"announce-interval", VMLET_CFG_DURATION, "5s", 100, 600000, NULL, OPT(announce_interval_ms),
     "how often the capacity is announced (valid for 3 intervals)"},
    {"stats-interval", VMLET_CFG_DURATION, "10s", 500, 600000, NULL, OPT(stats_interval_ms),
     "how often each VM's resource figures are sampled for kubectl top (valid for 3 intervals)"},
    {"volume-refresh-interval", VMLET_CFG_DURATION, "10s", 500, 600000, NULL,
     OPT(volume_refresh_interval_ms),
     "how often running pods' configMap, secret and projected volumes are read again (a "
     "changed one is swapped into the guest)"},
    {"kubeconfig", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(kubeconfig),
     "kubeconfig to read Secrets and ConfigMaps pods use; empty: the in-cluster service account"},
    {"host-ip", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(host_ip),
     "status.hostIP for the pods' downward API (default: this host's first non-loopback IPv4)"},
    {"state-dir", VMLET_CFG_STRING, "/var/lib/vmlet/vms", 0, 0, NULL, OPT(state_dir),
     "one directory per VM: sockets, writable disk, console log, record"},
    {"log-dir", VMLET_CFG_STRING, "/var/log/pods", 0, 0, NULL, OPT(log_dir),
     "containers' logs, as the kubelet keeps them (<ns>_<pod>_<uid>/<container>/<n>.log)"},
    {"container-log-max-size", VMLET_CFG_STRING, "10Mi", 0, 0, NULL, OPT(container_log_max_size),
     "a container's log file rotates at this size"},
    {"container-log-max-files", VMLET_CFG_INT, "5", 1, 100, NULL, OPT(container_log_max_files),
     "log files kept per container run, the current one included"},
    {"vmm", VMLET_CFG_ENUM, "qemu", 0, 0, "qemu|firecracker", OPT(vmm),
     "the VMM: QEMU microvm, or Firecracker (>= 1.8, needs working KVM)"},
    {"qemu-binary", VMLET_CFG_STRING, "qemu-system-x86_64", 0, 0, NULL, OPT(qemu_binary),
     "QEMU's system emulator"},
    {"firecracker-binary", VMLET_CFG_STRING, "firecracker", 0, 0, NULL, OPT(firecracker_binary),
     "Firecracker's binary"},
    {"vmm-host", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(vmm_host),
     "a vmlet-vmm-host socket that starts the VMMs, so VMs outlive this process's container "
     "(\"\": the launcher starts them)"},
    {"accel", VMLET_CFG_ENUM, "auto", 0, 0, "auto|kvm|tcg", OPT(accel),
     "QEMU acceleration: auto uses KVM only when a real KVM_RUN probe works"},
    {"tcg-tb-size", VMLET_CFG_INT, "32", 0, 4096, NULL, OPT(tcg_tb_size_mib),
     "QEMU under TCG: translation cache MiB per VM (bounds each VM's host memory)"},
    {"kernel", VMLET_CFG_STRING, VMLET_DEFAULT_KERNEL, 0, 0, NULL, OPT(kernel),
     "guest kernel (vmlinuz for QEMU; the uncompressed vmlinux for Firecracker)"},
    {"initramfs", VMLET_CFG_STRING, VMLET_DEFAULT_INITRAMFS, 0, 0, NULL, OPT(initramfs),
     "guest initramfs holding the agent and its modules"},
    {"kernel-cmdline", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(kernel_cmdline),
     "extra guest kernel arguments"},
    {"default-vcpus", VMLET_CFG_INT, "1", 1, 256, NULL, OPT(default_vcpus),
     "vCPUs of a pod without CPU limits"},
    {"default-memory", VMLET_CFG_STRING, "256Mi", 0, 0, NULL, OPT(default_memory),
     "memory of a pod's containers without memory limits"},
    {"guest-memory-overhead", VMLET_CFG_STRING, "64Mi", 0, 0, NULL, OPT(guest_memory_overhead),
     "added to the pod's memory for the guest's kernel and agent"},
    {"vmm-memory-overhead", VMLET_CFG_STRING, "160Mi", 0, 0, NULL, OPT(vmm_memory_overhead),
     "host memory a VM costs beyond its guest memory (the VMM itself), for admission"},
    {"scratch-disk-size", VMLET_CFG_STRING, "2Gi", 0, 0, NULL, OPT(scratch_disk_size),
     "a pod's writable disk (sparse: it costs what is written)"},
    {"boot-timeout", VMLET_CFG_DURATION, "60s", 1000, 3600000, NULL, OPT(boot_timeout_ms),
     "a VM whose agent has not spoken by then is killed and booted again"},
    {"templates", VMLET_CFG_BOOL, "true", 0, 0, NULL, OPT(templates),
     "start pods by restoring a saved VM (a template) instead of booting one "
     "(docs/templates.md); false: every pod boots cold"},
    {"template-dir", VMLET_CFG_STRING, "/var/lib/vmlet/templates", 0, 0, NULL, OPT(template_dir),
     "where templates are kept (guest memory files: about the VM's memory each)"},
    {"template-disks", VMLET_CFG_INT, "8", 1, 16, NULL, OPT(template_disks),
     "disks every template VM has (the writable disk and one per distinct image); pods with "
     "more images boot cold"},
    {"crashloop-backoff-initial", VMLET_CFG_DURATION, "10s", 0, 3600000, NULL,
     OPT(crashloop_backoff_initial_ms), "CrashLoopBackOff: the first delay (the kubelet's 10 s)"},
    {"crashloop-backoff-max", VMLET_CFG_DURATION, "300s", 0, 86400000, NULL,
     OPT(crashloop_backoff_max_ms), "CrashLoopBackOff: the longest delay (the kubelet's 300 s)"},
    {"net-netns", VMLET_CFG_STRING, "vmlet", 0, 0, NULL, OPT(net_netns),
     "network namespace of the pods' bridge; empty: the launcher's own"},
    {"net-bridge", VMLET_CFG_STRING, "vmlet0", 0, 0, NULL, OPT(net_bridge), "the pods' bridge"},
    {"pod-cidr", VMLET_CFG_STRING, "10.213.0.0/24", 0, 0, NULL, OPT(pod_cidr),
     "pod addresses (shared in Redis by every launcher on it)"},
    {"pod-gateway", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(pod_gateway),
     "the pods' gateway; empty: the CIDR's first address"},
    {"net-mtu", VMLET_CFG_INT, "1500", 576, 65535, NULL, OPT(net_mtu), "MTU of the pod network"},
    {"net-host-veth", VMLET_CFG_STRING, "vmlet-host", 0, 0, NULL, OPT(net_host_veth),
     "the veth end in the launcher's namespace"},
    {"net-link-cidr", VMLET_CFG_STRING, "169.254.213.0/30", 0, 0, NULL, OPT(net_link_cidr),
     "addresses of the veth pair (.1 host side, .2 pods' side)"},
    {"net-nat", VMLET_CFG_BOOL, "true", 0, 0, NULL, OPT(net_nat),
     "masquerade the pods' traffic to the outside"},
    {"cluster-dns", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(cluster_dns),
     "the cluster DNS servers (comma-separated) for dnsPolicy ClusterFirst; empty: the host's"},
    {"cluster-domain", VMLET_CFG_STRING, "cluster.local", 0, 0, NULL, OPT(cluster_domain),
     "the cluster's DNS domain"},
    {"resolv-conf", VMLET_CFG_STRING, "/etc/resolv.conf", 0, 0, NULL, OPT(resolv_conf),
     "resolver settings pods with dnsPolicy Default get"},
    {"accept-pods", VMLET_CFG_BOOL, "true", 0, 0, NULL, OPT(accept_pods),
     "take new pods; false drains this launcher: its VMs run on, new pods go to others"},
    {"stop-vms-on-exit", VMLET_CFG_BOOL, "false", 0, 0, NULL, OPT(stop_vms_on_exit),
     "on SIGTERM, kill every VM and remove the pod network (`vmlet down`, tests); normally "
     "VMs outlive the launcher"},
    {"session-listen", VMLET_CFG_STRING, "127.0.0.1:10351", 0, 0, NULL, OPT(session_listen),
     "where the kubelet API front opens sessions (kubectl logs/exec/attach/port-forward)"},
    {"session-advertise", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(session_advertise),
     "HOST:PORT others reach the session endpoint at (default: the listen address)"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

// --- capacity --------------------------------------------------------------------

// A snapshot of the pods: work on them may look through the table again
// (capacity), which a live iteration would not survive.
static zlistx_t *s_snapshot(launcher_t *self)
{
    zlistx_t *list = zlistx_new();
    for (pod_vm_t *p = zhashx_first(self->pods); p; p = zhashx_next(self->pods))
        zlistx_add_end(list, p);
    return list;
}

// A pod counts once it holds (or is about to hold) a VM, until it stops.
static bool s_counts(const pod_vm_t *pod)
{
    if (pod->state == PV_STOPPED || pod->state == PV_FAILED)
        return false;
    return pod->state != PV_PENDING || pod->boots > 0;
}

int64_t launcher_used(launcher_t *l, int64_t *cpu_millis, int64_t *memory_bytes)
{
    int64_t pods = 0;
    *cpu_millis = *memory_bytes = 0;
    for (pod_vm_t *p = zhashx_first(l->pods); p; p = zhashx_next(l->pods)) {
        if (!s_counts(p))
            continue;
        pods++;
        *cpu_millis += p->size.cpu_millis_request;
        *memory_bytes += p->size.host_memory_bytes;
    }
    return pods;
}

// vmlet_launcher_vms_by_state: this launcher's pods by their VM's state.
static void s_count_states(launcher_t *self)
{
    int counts[PV_FAILED + 1] = {0};
    for (pod_vm_t *p = zhashx_first(self->pods); p; p = zhashx_next(self->pods))
        counts[p->state]++;
    for (int s = 0; s <= PV_FAILED; s++)
        vmlet_gauge_set(self->vms_by_state[s], counts[s]);
}

static void s_announce(launcher_t *self)
{
    Vmlet__LauncherCapacity cap = VMLET__LAUNCHER_CAPACITY__INIT;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    int64_t cpu_used, mem_used;
    int64_t pods_used = launcher_used(self, &cpu_used, &mem_used);
    cap.launcher_id = self->id;
    cap.host = host;
    PB_SET(&cap, cpu_millis, self->allocatable.cpu_millis);
    PB_SET(&cap, memory_bytes, self->allocatable.memory_bytes);
    PB_SET(&cap, pods, (int32_t)self->settings->max_pods);
    PB_SET(&cap, cpu_millis_used, cpu_used);
    PB_SET(&cap, memory_bytes_used, mem_used);
    PB_SET(&cap, pods_used, (int32_t)pods_used);
    PB_SET(&cap, valid_until_unix_ms, vmlet_unix_ms() + 3 * self->settings->announce_interval_ms);
    cap.version = VMLET_VERSION;
    vmlet_err_t err = {0};
    // Redis first: a k8s-watcher that starts later finds it there at once.
    size_t len = vmlet__launcher_capacity__get_packed_size(&cap);
    uint8_t *bytes = vmlet_xmalloc(len);
    vmlet__launcher_capacity__pack(&cap, bytes);
    char key[300];
    snprintf(key, sizeof key, "vmlet:launcher:%s", self->id);
    redisReply *r = vmlet_store_command(
        self->store, &err,
        "EVAL %s 1 %s %b %s %lld", // the record expires with its validity; the index names it
        "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) "
        "redis.call('SADD', 'vmlet:launchers', ARGV[2]) return 1",
        key, bytes, len, self->id, (long long)(3 * self->settings->announce_interval_ms));
    if (!r)
        vmlet_log_warn(self->log, NULL, "%s", err.msg);
    freeReplyObject(r);
    free(bytes);
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_LAUNCHER_CAPACITY;
    env.launcher_capacity = &cap;
    launcher_publish(self, &env);
    vmlet_gauge_set(self->vms, (double)pods_used);
    s_count_states(self);
    launcher_drained(self);                  // vmlet_launcher_draining follows `vmletctl drain`
    session_server_announce(self->sessions); // its presence expires with the capacity's
}

static int s_on_announce(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    s_announce(arg);
    return 0;
}

// Announces once as soon as the broker hears us, so the node need not wait
// a whole interval to count this launcher; then this timer ends.
static int s_on_first_announce(zloop_t *loop, int timer_id, void *arg)
{
    launcher_t *self = arg;
    if (!vmlet_bus_publisher_ready(vmlet_service_publisher(self->service)))
        return 0;
    s_announce(self);
    // What adoption found was published before the broker heard us: again.
    zlistx_t *pods = s_snapshot(self);
    for (pod_vm_t *p = zlistx_first(pods); p; p = zlistx_next(pods))
        pod_record_changed(p);
    zlistx_destroy(&pods);
    zloop_timer_end(loop, timer_id);
    self->first_announce_timer = 0;
    return 0;
}

void launcher_publish(launcher_t *l, vmlet_envelope_t *env)
{
    vmlet_err_t err = {0};
    if (vmlet_bus_publish(vmlet_service_publisher(l->service), env, &err) < 0)
        vmlet_log_warn(l->log, NULL, "%s", err.msg);
}

// --- the pods ------------------------------------------------------------------------

static pod_vm_t *s_pod(launcher_t *self, const char *uid, bool create)
{
    pod_vm_t *pod = zhashx_lookup(self->pods, uid);
    if (!pod && create) {
        pod = pod_vm_new(self, uid);
        zhashx_insert(self->pods, uid, pod);
    }
    return pod;
}

// Forgets pods that are gone for good, once the others were told.
static void s_forget_finished(launcher_t *self)
{
    zlistx_t *done = zlistx_new();
    for (pod_vm_t *p = zhashx_first(self->pods); p; p = zhashx_next(self->pods))
        if (pod_vm_finished(p))
            zlistx_add_end(done, p);
    for (pod_vm_t *p = zlistx_first(done); p; p = zlistx_next(done)) {
        vmlet_log_info(self->log, VMLET_KV({"pod", p->desc}), "stopped and cleaned up");
        pod_record_drop(p);
        zhashx_delete(self->pods, p->uid);
    }
    zlistx_destroy(&done);
}

// Taps and addresses of ours that no pod holds (a crash between attaching
// and saving the record leaves them): freed.
static void s_release_leaks(launcher_t *self)
{
    char **uids;
    size_t n;
    vmlet_err_t err = {0};
    if (net_list(self->net, &uids, &n, &err) < 0) {
        vmlet_log_warn(self->log, NULL, "listing the pod network: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        pod_vm_t *p = zhashx_lookup(self->pods, uids[i]);
        if (p && p->has_lease)
            continue;
        vmlet_log_info(self->log, VMLET_KV({"pod", uids[i]}),
                       "releasing a network lease no pod of ours holds");
        if (net_detach(self->net, uids[i], &err) < 0)
            vmlet_log_warn(self->log, VMLET_KV({"pod", uids[i]}), "%s", err.msg);
    }
    net_list_free(uids, n);
}

// Level-triggered: pods of ours whose spec is gone or being deleted stop,
// whatever events were missed; leaked leases are freed.
static void s_reconcile(launcher_t *self)
{
    s_release_leaks(self);
    zlistx_t *pods = s_snapshot(self);
    for (pod_vm_t *p = zlistx_first(pods); p; p = zlistx_next(pods))
        if (!p->stop_requested && p->state != PV_PENDING)
            pod_vm_desired(p, NULL);
    zlistx_destroy(&pods);
}

static int s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    launcher_t *self = arg;
    zlistx_t *pods = s_snapshot(self);
    for (pod_vm_t *p = zlistx_first(pods); p; p = zlistx_next(pods))
        pod_vm_tick(p);
    zlistx_destroy(&pods);
    volume_refresh_tick(self->volume_refresh);
    if (vmlet_now_ms() >= self->next_reconcile_ms) {
        self->next_reconcile_ms = vmlet_now_ms() + RECONCILE_MS;
        s_reconcile(self);
    }
    s_forget_finished(self);
    return 0;
}

// --- bus handlers -------------------------------------------------------------------

// Whether another launcher that is alive holds the pod (its record names it
// and its capacity record has not expired).
static bool s_owned_elsewhere(launcher_t *self, const char *uid)
{
    redisReply *r = vmlet_store_command(self->store, NULL, "GET vmlet:vm:%s", uid);
    Vmlet__VmRecord *rec = r && r->type == REDIS_REPLY_STRING
                               ? vmlet__vm_record__unpack(NULL, r->len, (const uint8_t *)r->str)
                               : NULL;
    freeReplyObject(r);
    bool theirs = false;
    if (rec && rec->launcher_id && strcmp(rec->launcher_id, self->id) != 0) {
        redisReply *alive =
            vmlet_store_command(self->store, NULL, "EXISTS vmlet:launcher:%s", rec->launcher_id);
        theirs = alive && alive->type == REDIS_REPLY_INTEGER && alive->integer == 1;
        freeReplyObject(alive);
    }
    if (rec)
        vmlet__vm_record__free_unpacked(rec, NULL);
    return theirs;
}

int launcher_on_launch(void *arg, const vmlet_envelope_t *env)
{
    launcher_t *self = arg;
    const Vmlet__LaunchRequest *req = env->launch_request;
    if (!req->pod || !req->pod->uid)
        return 0;
    if (launcher_drain_declines(self, req->pod->uid))
        return 0; // drained: k8s-watcher asks again while no launcher holds the pod
    if (s_owned_elsewhere(self, req->pod->uid))
        return 0; // another launcher that is alive has it already
    pod_vm_t *pod = s_pod(self, req->pod->uid, true);
    if (pod->generation == 0)
        pod_record_changed(pod); // ours now, for every launcher to see
    pod_vm_desired(pod, req->spec_hash);
    return 0;
}

int launcher_on_pod_desired(void *arg, const vmlet_envelope_t *env)
{
    launcher_t *self = arg;
    const Vmlet__PodDesired *d = env->pod_desired;
    pod_vm_t *pod = d->pod && d->pod->uid ? s_pod(self, d->pod->uid, false) : NULL;
    if (pod) { // only ours; new pods come as LaunchRequests
        pod_vm_desired(pod, d->spec_hash);
        volume_refresh_pod_desired(self->volume_refresh, pod, d->spec_hash); // labels...
    }
    return 0;
}

int launcher_on_pod_deleted(void *arg, const vmlet_envelope_t *env)
{
    launcher_t *self = arg;
    const Vmlet__PodDeleted *d = env->pod_deleted;
    pod_vm_t *pod = d->pod && d->pod->uid ? s_pod(self, d->pod->uid, false) : NULL;
    if (pod)
        pod_vm_stop(pod, d->has_grace_period_seconds ? d->grace_period_seconds : -1, "deleted");
    return 0;
}

int launcher_on_stop(void *arg, const vmlet_envelope_t *env)
{
    launcher_t *self = arg;
    const Vmlet__StopRequest *req = env->stop_request;
    if (!req->pod || !req->pod->uid)
        return 0;
    pod_vm_t *pod = s_pod(self, req->pod->uid, false);
    if (!pod)
        return s_owned_elsewhere(self, req->pod->uid) ? -1 : 0;
    pod_vm_stop(pod, req->has_grace_period_seconds ? req->grace_period_seconds : -1,
                req->reason ? req->reason : "requested");
    return 0;
}

int launcher_on_restart(void *arg, const vmlet_envelope_t *env)
{
    launcher_t *self = arg;
    const Vmlet__RestartRequest *req = env->restart_request;
    if (!req->pod || !req->pod->uid)
        return 0;
    pod_vm_t *pod = s_pod(self, req->pod->uid, false);
    if (!pod) // another launcher's pod: hand it back so the broker tries another
        return s_owned_elsewhere(self, req->pod->uid) ? -1 : 0;
    pod_vm_restart_container(pod, req->container, req->reason, req->message,
                             req->has_grace_period_seconds ? req->grace_period_seconds : -1);
    return 0;
}

int launcher_on_image(void *arg, const vmlet_envelope_t *env)
{
    (void)env;
    launcher_t *self = arg;
    // A built image may be the one a pending pod waits for: look now.
    zlistx_t *pods = s_snapshot(self);
    for (pod_vm_t *p = zlistx_first(pods); p; p = zlistx_next(pods))
        if (p->state == PV_PENDING) {
            p->next_retry_ms = 0;
            pod_vm_tick(p);
        }
    zlistx_destroy(&pods);
    return 0;
}

int launcher_on_exec(void *arg, const vmlet_envelope_t *env)
{
    return pod_exec_request(arg, env->exec_request);
}

// --- start and stop -------------------------------------------------------------------

static int s_allocatable(launcher_t *self, vmlet_err_t *err)
{
    host_resources_t total, reserve;
    if (host_read(&total, err) < 0)
        return -1;
    if (vmlet_quantity_milli(self->settings->reserve_cpu, &reserve.cpu_millis, err) < 0)
        return vmlet_err_wrap(err, "setting --reserve-cpu");
    if (vmlet_quantity_value(self->settings->reserve_memory, &reserve.memory_bytes, err) < 0)
        return vmlet_err_wrap(err, "setting --reserve-memory");
    self->allocatable = host_allocatable(&total, &reserve);
    char cpu[32], mem[32];
    vmlet_log_info(self->log,
                   VMLET_KV({"cpu", vmlet_quantity_format_milli(self->allocatable.cpu_millis, cpu,
                                                                sizeof cpu)},
                            {"memory", vmlet_quantity_format_bytes(self->allocatable.memory_bytes,
                                                                   mem, sizeof mem)}),
                   "capacity for pods (host less reserve)");
    return 0;
}

static int s_bytes_setting(const char *name, const char *text, int64_t *out, vmlet_err_t *err)
{
    if (vmlet_quantity_value(text, out, err) < 0)
        return vmlet_err_wrap(err, "setting --%s", name);
    return 0;
}

static int s_sizes(launcher_t *self, vmlet_err_t *err)
{
    const launcher_settings_t *s = self->settings;
    int64_t log_size;
    if (s_bytes_setting("default-memory", s->default_memory, &self->sizes.default_memory_bytes,
                        err) < 0 ||
        s_bytes_setting("guest-memory-overhead", s->guest_memory_overhead,
                        &self->sizes.guest_overhead_bytes, err) < 0 ||
        s_bytes_setting("vmm-memory-overhead", s->vmm_memory_overhead,
                        &self->sizes.vmm_overhead_bytes, err) < 0 ||
        s_bytes_setting("scratch-disk-size", s->scratch_disk_size, &self->scratch_bytes, err) < 0 ||
        s_bytes_setting("container-log-max-size", s->container_log_max_size, &log_size, err) < 0)
        return -1;
    self->sizes.default_vcpus = (int)s->default_vcpus;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    self->sizes.max_vcpus = cpus > 0 ? (int)cpus : 1;
    self->backoff.initial_ms = s->crashloop_backoff_initial_ms;
    self->backoff.max_ms = s->crashloop_backoff_max_ms;
    self->log_limits.max_bytes = log_size;
    self->log_limits.max_files = (int)s->container_log_max_files;
    return 0;
}

// The host's first IPv4 address that is not loopback nor vmlet's own veth.
static void s_host_ip(launcher_t *self)
{
    if (self->settings->host_ip[0]) {
        snprintf(self->host_ip, sizeof self->host_ip, "%s", self->settings->host_ip);
        return;
    }
    struct ifaddrs *list = NULL;
    if (getifaddrs(&list) < 0)
        return;
    for (struct ifaddrs *a = list; a; a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET)
            continue;
        if (strcmp(a->ifa_name, "lo") == 0 ||
            strcmp(a->ifa_name, self->settings->net_host_veth) == 0)
            continue;
        inet_ntop(AF_INET, &((struct sockaddr_in *)a->ifa_addr)->sin_addr, self->host_ip,
                  sizeof self->host_ip);
        break;
    }
    freeifaddrs(list);
}

static int s_vmm(launcher_t *self, vmlet_err_t *err)
{
    const launcher_settings_t *s = self->settings;
    if (!s->kernel[0] || access(s->kernel, R_OK) != 0)
        return vmlet_err_set(err,
                             "guest kernel \"%s\" is not readable: set --kernel (the build "
                             "fetches one with guest/kernel/fetch.sh)",
                             s->kernel);
    if (!s->initramfs[0] || access(s->initramfs, R_OK) != 0)
        return vmlet_err_set(err,
                             "guest initramfs \"%s\" is not readable: set --initramfs (the "
                             "build makes build/guest/initramfs.cpio.gz)",
                             s->initramfs);
    vmm_settings_t vs = {
        .backend = s->vmm,
        .qemu_binary = s->qemu_binary,
        .firecracker_binary = s->firecracker_binary,
        .accel = s->accel,
        .tcg_tb_size_mib = (int)s->tcg_tb_size_mib,
        .vmm_host = s->vmm_host,
    };
    self->vmm = vmm_new(&vs, err);
    if (!self->vmm)
        return -1;
    char desc[256];
    vmlet_log_info(self->log, VMLET_KV({"kernel", s->kernel}, {"initramfs", s->initramfs}),
                   "VMM: %s", vmm_describe(self->vmm, desc, sizeof desc));
    if (s->vmm_host[0]) {
        // Not fatal: the vmm-host may come up after us; starts say why they fail.
        vmlet_err_t e = {0};
        if (vmm_host_ping(s->vmm_host, 2000, &e) < 0)
            vmlet_log_warn(self->log, NULL, "VMs will not start until it answers: %s", e.msg);
        else
            vmlet_log_info(self->log, VMLET_KV({"vmm_host", s->vmm_host}),
                           "VMMs are started by the vmm-host");
    }
    return 0;
}

// Templates, when on: the one for pods of the default size is made now,
// in the background (docs/templates.md).
static int s_templates(launcher_t *self, vmlet_err_t *err)
{
    const launcher_settings_t *s = self->settings;
    if (!s->templates) {
        vmlet_log_info(self->log, NULL, "templates off: every pod's VM boots cold");
        return 0;
    }
    if (strcmp(vmm_ops(self->vmm)->name, "firecracker") == 0) {
        // Its snapshots name the template's tap, and the API vmlet pins
        // (v1.8) has no network_overrides: restored pods would share it.
        vmlet_log_warn(self->log, NULL,
                       "templates off: Firecracker v1.8 cannot give a restored VM its own tap "
                       "(docs/templates.md); every pod's VM boots cold");
        return 0;
    }
    vm_templates_config_t cfg = {
        .dir = s->template_dir,
        .disk_slots = (int)s->template_disks,
        .kernel = s->kernel,
        .initramfs = s->initramfs,
        .cmdline = s->kernel_cmdline,
        .vmm = self->vmm,
        .build_timeout_ms = (int)s->boot_timeout_ms,
        .log = self->log,
        .metrics = vmlet_service_metrics(self->service),
        .loop = self->loop,
    };
    self->templates = vm_templates_new(&cfg, err);
    if (!self->templates)
        return vmlet_err_wrap(err, "templates (--templates=false turns them off)");
    Vmlet__PodSpec no_containers = VMLET__POD_SPEC__INIT;
    vm_size_t size;
    vm_size_of(&no_containers, &self->sizes, &size);
    vm_templates_prepare(self->templates, size.vcpus, (int)(size.memory_bytes >> 20));
    return 0;
}

static int s_network(launcher_t *self, vmlet_err_t *err)
{
    const launcher_settings_t *s = self->settings;
    net_settings_t ns;
    net_settings_defaults(&ns);
    ns.netns = s->net_netns;
    ns.bridge = s->net_bridge;
    ns.pod_cidr = s->pod_cidr;
    ns.gateway = s->pod_gateway;
    ns.mtu = (unsigned)s->net_mtu;
    ns.host_veth = s->net_host_veth;
    ns.link_cidr = s->net_link_cidr;
    ns.nat = s->net_nat;
    ns.owner = self->id;
    self->net = net_new(&ns, self->store, self->log, err);
    if (!self->net || net_setup(self->net, err) < 0)
        return vmlet_err_wrap(err, "pod network");
    return 0;
}

static void s_metrics(launcher_t *self)
{
    vmlet_metrics_t *m = vmlet_service_metrics(self->service);
    self->vms = vmlet_metrics_gauge(m, "vmlet_launcher_vms", "VMs this launcher holds.", NULL);
    self->boots = vmlet_metrics_counter(m, "vmlet_launcher_boots_total", "VMs booted cold.", NULL);
    self->restores = vmlet_metrics_counter(m, "vmlet_launcher_restores_total",
                                           "VMs restored from a template.", NULL);
    self->restore_failures =
        vmlet_metrics_counter(m, "vmlet_launcher_restore_failures_total",
                              "Restores from a template that failed: the pod booted cold.", NULL);
    self->boot_failures = vmlet_metrics_counter(m, "vmlet_launcher_boot_failures_total",
                                                "Boots that failed or timed out.", NULL);
    self->protocol_errors =
        vmlet_metrics_counter(m, "vmlet_launcher_agent_protocol_errors_total",
                              "Guest agents cut off for breaking the protocol.", NULL);
    self->output_bytes = vmlet_metrics_counter(m, "vmlet_launcher_output_bytes_total",
                                               "Container output written to logs.", NULL);
    self->adopted = vmlet_metrics_counter(m, "vmlet_launcher_vms_adopted_total",
                                          "Running VMs found again after a restart.", NULL);
    self->refused = vmlet_metrics_counter(m, "vmlet_launcher_pods_refused_total",
                                          "Pods refused for lack of capacity.", NULL);
    self->stats_samples = vmlet_metrics_counter(m, "vmlet_launcher_stats_samples_total",
                                                "Resource samples taken from guests.", NULL);
    self->stats_guest_cpu = vmlet_metrics_counter(
        m, "vmlet_launcher_stats_guest_cpu_seconds_total",
        "Guest CPU time the agents spent taking those samples (what kubectl top costs a pod).",
        NULL);
    static const double bounds[] = {0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60};
    self->boot_seconds = vmlet_metrics_histogram(m, "vmlet_launcher_boot_seconds",
                                                 "From VMM start to the guest agent's hello.", NULL,
                                                 bounds, sizeof bounds / sizeof bounds[0]);
    for (int s = 0; s <= PV_FAILED; s++) {
        char labels[64];
        snprintf(labels, sizeof labels, "state=\"%s\"", pod_vm_state_name((pv_state_t)s));
        self->vms_by_state[s] =
            vmlet_metrics_gauge(m, "vmlet_launcher_vms_by_state",
                                "This launcher's pods by the state of their VM.", labels);
    }
    static const char *const phases[] = {"image", "boot", "container", "total"};
    static const double start_bounds[] = {0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120};
    for (int p = 0; p < 4; p++) {
        char labels[64];
        snprintf(labels, sizeof labels, "phase=\"%s\"", phases[p]);
        self->start_phase[p] = vmlet_metrics_histogram(
            m, "vmlet_launcher_pod_start_seconds",
            "A pod's start by phase: image (until its VMM starts), boot (until the agent's "
            "hello), container (until its containers run), total.",
            labels, start_bounds, sizeof start_bounds / sizeof start_bounds[0]);
    }
}

// `vmlet down`: every VM killed, every record and lease dropped, the
// network removed.
static void s_stop_everything(launcher_t *self)
{
    zlistx_t *pods = s_snapshot(self);
    for (pod_vm_t *p = zlistx_first(pods); p; p = zlistx_next(pods)) {
        pod_vm_unpoll(p);
        if (p->vm) {
            vmm_kill(p->vm, 5000, NULL);
            vmm_remove_files(p->vm, NULL);
            vmm_release(&p->vm);
        }
        pod_record_drop(p);
    }
    zlistx_destroy(&pods);
    vmlet_err_t err = {0};
    if (net_teardown(self->net, &err) < 0)
        vmlet_log_warn(self->log, NULL, "removing the pod network: %s", err.msg);
    vmlet_log_info(self->log, NULL, "stopped every VM and removed the pod network");
}

static void s_pod_free(void **item)
{
    pod_vm_destroy((pod_vm_t **)item);
}

void *launcher_start(vmlet_service_t *service, vmlet_err_t *err)
{
    launcher_t *self = vmlet_xcalloc(1, sizeof *self);
    self->service = service;
    self->settings = vmlet_service_def(service)->settings;
    self->log = vmlet_service_log(service);
    self->store = vmlet_service_store(service);
    self->loop = vmlet_service_loop(service);
    self->pods = zhashx_new();
    zhashx_set_destructor(self->pods, s_pod_free);
    if (self->settings->launcher_id[0])
        snprintf(self->id, sizeof self->id, "%s", self->settings->launcher_id);
    else
        gethostname(self->id, sizeof self->id - 1);
    s_metrics(self);
    s_host_ip(self);
    const launcher_settings_t *s = self->settings;
    if (s_allocatable(self, err) < 0 || s_sizes(self, err) < 0 ||
        vmlet_mkdirs(s->state_dir, 0750, err) < 0 || vmlet_mkdirs(s->log_dir, 0755, err) < 0 ||
        s_vmm(self, err) < 0 || s_network(self, err) < 0 || s_templates(self, err) < 0) {
        void *p = self;
        launcher_stop(&p);
        return NULL;
    }
    // The API server is only needed for pods with Secrets or ConfigMaps:
    // without one, such pods wait with a clear message.
    vmlet_err_t kerr = {0};
    if (vmlet_kube_config_load(s->kubeconfig, &self->kube_config, &kerr) < 0 ||
        !(self->kube = vmlet_kube_new(&self->kube_config, &kerr)))
        vmlet_log_warn(self->log, NULL,
                       "no API server (%s): pods that use Secrets or ConfigMaps "
                       "will wait",
                       kerr.msg);
    else
        vmlet_kube_set_metrics(self->kube, vmlet_service_metrics(self->service));
    self->sessions = session_server_new(self);
    self->volume_refresh = volume_refresh_new(self);
    int adopted = pod_record_adopt_all(self);
    if (adopted > 0)
        vmlet_log_info(self->log, NULL, "adopted %d pods' VMs from before the restart", adopted);
    self->announce_timer =
        zloop_timer(self->loop, (size_t)s->announce_interval_ms, 0, s_on_announce, self);
    self->first_announce_timer = zloop_timer(self->loop, 50, 0, s_on_first_announce, self);
    self->tick_timer = zloop_timer(self->loop, TICK_MS, 0, s_on_tick, self);
    return self;
}

void launcher_stop(void **self_p)
{
    launcher_t *self = *self_p;
    if (!self)
        return;
    if (self->announce_timer > 0)
        zloop_timer_end(self->loop, self->announce_timer);
    if (self->first_announce_timer > 0)
        zloop_timer_end(self->loop, self->first_announce_timer);
    if (self->tick_timer > 0)
        zloop_timer_end(self->loop, self->tick_timer);
    session_server_destroy(&self->sessions); // their agent streams close while agents are there
    volume_refresh_destroy(&self->volume_refresh);
    if (self->settings->stop_vms_on_exit && self->net)
        s_stop_everything(self);
    // Otherwise the VMs run on (DESIGN.md §3): only our handles go.
    zhashx_destroy(&self->pods);
    net_destroy(&self->net);
    vm_templates_destroy(&self->templates);
    vmm_destroy(&self->vmm);
    vmlet_kube_destroy(&self->kube);
    vmlet_kube_config_clear(&self->kube_config);
    free(self);
    *self_p = NULL;
}
