// What the guest is told (see launcher_internal.h): the PodSetup that
// makes the pod inside its VM (identity, network, DNS, /etc/hosts,
// volumes, each container's root), and the StartContainer for each run of
// a container, resolved at that moment (container_run.h).
#include "launcher_internal.h"

#include "kube_objects.h"
#include "pod_dns.h"
#include "volume_refresh.h"
#include "volumes.h"

#include "vmlet/kube_api.h"
#include "vmlet/pb.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

// --- fetching from the API server ----------------------------------------------------

static int s_no_api(vmlet_err_t *err)
{
    return vmlet_err_set(err, "vm-launcher has no API server to ask (set --kubeconfig)");
}

static int s_fetch_object(void *ctx, const char *kind, const char *ns, const char *name,
                          object_data_t *out, vmlet_err_t *err)
{
    launcher_t *l = ctx;
    if (!l->kube)
        return s_no_api(err);
    return kube_objects_get(l->kube, kind, ns, name, out, err);
}

// The same for volumes, whose callbacks get the pod.
static int s_fetch_pod_object(void *ctx, const char *kind, const char *ns, const char *name,
                              object_data_t *out, vmlet_err_t *err)
{
    return s_fetch_object(((pod_vm_t *)ctx)->l, kind, ns, name, out, err);
}

int pod_setup_fetch_secret(void *ctx, const char *ns, const char *name, cJSON **data,
                           vmlet_err_t *err)
{
    object_data_t obj;
    int rc = s_fetch_object(ctx, "secrets", ns, name, &obj, err);
    if (rc != 0)
        return rc;
    *data = object_data_to_json(&obj);
    object_data_clear(&obj);
    return 0;
}

// The Services' variables for a container (service_env.h). Without an API
// server there are none, as on a kubelet without one.
static int s_service_env(void *ctx, const char *ns, bool links, service_env_t *env,
                         vmlet_err_t *err)
{
    launcher_t *l = ctx;
    return l->kube ? service_env_fetch(l->kube, ns, links, env, err) : 0;
}

// A bound service account token (TokenRequest), for projected volumes.
static int s_fetch_token(void *ctx, const char *ns, const char *sa, const char *audience,
                         int64_t expiration, char **token, vmlet_err_t *err)
{
    pod_vm_t *pod = ctx;
    launcher_t *l = pod->l;
    if (!l->kube)
        return s_no_api(err);
    return kube_objects_token(l->kube, ns, sa, audience, expiration, pod->spec->pod->name,
                              pod->uid, token, err);
}

// --- identity, DNS and hosts ---------------------------------------------------------------

static void s_hostname(const pod_vm_t *self, char *out, size_t cap)
{
    char name[POD_HOSTNAME_MAX + 1];
    pod_dns_hostname(self->spec, name);
    snprintf(out, cap, "%s", name);
}

// The host's resolv.conf as text (NULL when --resolv-conf is empty; an
// unreadable one reads as empty and is logged).
static char *s_host_resolv(const pod_vm_t *self)
{
    const char *path = self->l->settings->resolv_conf;
    if (!path || !*path)
        return NULL;
    FILE *f = fopen(path, "r");
    char *text = vmlet_xcalloc(1, 16384);
    if (!f) {
        vmlet_log_warn(self->l->log, VMLET_KV({"pod", self->desc}, {"resolv_conf", path}),
                       "cannot read the host's resolv.conf: %s", strerror(errno));
        return text;
    }
    size_t n = fread(text, 1, 16383, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

// The pod's /etc/resolv.conf by its dnsPolicy and dnsConfig (pod_dns.h).
static char *s_resolv_conf(const pod_vm_t *self)
{
    const launcher_settings_t *s = self->l->settings;
    char *host = s_host_resolv(self);
    pod_dns_settings_t dns = {s->cluster_dns, s->cluster_domain, host};
    char *out = pod_dns_resolv_conf(self->spec, &dns);
    free(host);
    return out;
}

// The kubelet's managed /etc/hosts.
static char *s_hosts(const pod_vm_t *self, const char *hostname)
{
    return pod_dns_hosts(self->spec, self->lease.ip, hostname, self->l->settings->cluster_domain);
}

// --- PodSetup ------------------------------------------------------------------------

static void s_inputs(pod_vm_t *self, const Vmlet__Container *c, size_t i, const char *hostname,
                     run_inputs_t *out)
{
    *out = (run_inputs_t){
        .pod = self->spec,
        .container = c,
        .image = self->images[i].config,
        .pod_ip = self->lease.ip,
        .host_ip = self->l->host_ip,
        .hostname = hostname,
        .vm_cpu_millis = self->size.cpu_millis_limit,
        .vm_memory_bytes = self->size.memory_bytes_limit,
        .fetch_secret = pod_setup_fetch_secret,
        .service_env = s_service_env,
        .fetch_ctx = self->l,
    };
}

static const Vmlet__Container *s_container(const pod_vm_t *self, size_t i)
{
    return i < self->n_init ? self->spec->init_containers[i]
                            : self->spec->containers[i - self->n_init];
}

// configMap, secret, downwardAPI and projected volumes are mounted
// read-only whatever the volumeMount says, as the kubelet does since the
// fix for CVE-2017-1002102: their content is the API's, and a container
// writing there would only be overwritten by the next update.
static bool s_api_data_volume(const pod_vm_t *self, const char *name)
{
    for (size_t v = 0; name && v < self->spec->n_volumes; v++) {
        const Vmlet__Volume *vol = self->spec->volumes[v];
        if (vol->name && strcmp(vol->name, name) == 0)
            return volumes_kind(vol) != NULL; // the files volumes: API data
    }
    return false;
}

static Vmlet__GuestContainer *s_guest_container(const pod_vm_t *self, size_t i)
{
    const Vmlet__Container *c = s_container(self, i);
    Vmlet__GuestContainer *g = PB_NEW(Vmlet__GuestContainer, VMLET__GUEST_CONTAINER__INIT);
    g->name = vmlet_xstrdup(c->name);
    g->image_disk = vmlet_xstrdup(self->images[i].serial);
    PB_SET(g, init, i < self->n_init);
    PB_SET(g, tty, c->tty);
    PB_SET(g, stdin, c->stdin);
    g->termination_message_path = vmlet_xstrdup(
        c->termination_message_path && *c->termination_message_path ? c->termination_message_path
                                                                     : "/dev/termination-log");
    g->mounts = vmlet_xcalloc(c->n_volume_mounts + 1, sizeof *g->mounts);
    for (size_t m = 0; m < c->n_volume_mounts; m++) {
        const Vmlet__VolumeMount *vm = c->volume_mounts[m];
        Vmlet__GuestMount *gm = PB_NEW(Vmlet__GuestMount, VMLET__GUEST_MOUNT__INIT);
        gm->volume = vmlet_xstrdup(vm->name);
        gm->path = vmlet_xstrdup(vm->mount_path);
        PB_SET(gm, read_only, vm->read_only || s_api_data_volume(self, vm->name));
        if (vm->sub_path && *vm->sub_path)
            gm->sub_path = vmlet_xstrdup(vm->sub_path);
        g->mounts[g->n_mounts++] = gm;
    }
    return g;
}

// Every container waits with why the pod cannot be set up yet.
static int s_wait_all(pod_vm_t *self, const run_problem_t *problem)
{
    for (size_t i = 0; i < self->n_ctrs; i++)
        if (self->ctrs[i].phase == CTR_WAITING)
            ctr_wait(&self->ctrs[i], problem->reason, problem->message);
    pod_record_changed(self);
    return 1;
}

int pod_setup_send(pod_vm_t *self)
{
    launcher_t *l = self->l;
    char hostname[64];
    s_hostname(self, hostname, sizeof hostname);
    run_inputs_t run;
    s_inputs(self, s_container(self, self->n_init), self->n_init, hostname, &run);
    volume_inputs_t vin = {.run = &run, .fetch = s_fetch_pod_object, .token = s_fetch_token,
                           .ctx = self};
    Vmlet__GuestVolume **volumes = NULL;
    size_t n_volumes = 0;
    run_problem_t problem;
    vmlet_err_t err = {0};
    int rc = volumes_build(&vin, &volumes, &n_volumes, &problem, &err);
    self->next_setup_ms = vmlet_now_ms() + 5000; // a problem is looked at again then
    if (rc < 0 && problem.reason[0])
        return s_wait_all(self, &problem);
    if (rc < 0) {
        vmlet_log_warn(l->log, VMLET_KV({"pod", self->desc}), "volumes: %s", err.msg);
        return -1;
    }
    Vmlet__PodSetup setup = VMLET__POD_SETUP__INIT;
    char ip_cidr[64];
    snprintf(ip_cidr, sizeof ip_cidr, "%s/%d", self->lease.ip, self->lease.prefix_len);
    setup.pod_uid = self->uid;
    setup.hostname = hostname;
    setup.ip_cidr = ip_cidr;
    setup.gateway = self->lease.gateway;
    PB_SET(&setup, mtu, (int32_t)self->lease.mtu);
    setup.mac = self->lease.mac;
    setup.resolv_conf = s_resolv_conf(self);
    setup.hosts = s_hosts(self, hostname);
    PB_SET(&setup, unix_time_ns, vmlet_unix_ns());
    uint8_t seed[32];
    vmlet_random_bytes(seed, sizeof seed);
    setup.has_random_seed = 1;
    setup.random_seed = (ProtobufCBinaryData){sizeof seed, seed};
    setup.volumes = volumes;
    setup.n_volumes = n_volumes;
    setup.containers = vmlet_xcalloc(self->n_ctrs + 1, sizeof *setup.containers);
    for (size_t i = 0; i < self->n_ctrs; i++)
        setup.containers[setup.n_containers++] = s_guest_container(self, i);
    setup.scratch_disk = "scratch";
    // The disks in the order the VM has them: scratch, then each image once.
    setup.disk_serials = vmlet_xcalloc(self->n_ctrs + 2, sizeof *setup.disk_serials);
    setup.disk_serials[setup.n_disk_serials++] = "scratch";
    for (size_t i = 0; i < self->n_ctrs; i++) {
        bool seen = false;
        for (size_t d = 0; d < setup.n_disk_serials; d++)
            seen = seen || strcmp(setup.disk_serials[d], self->images[i].serial) == 0;
        if (!seen)
            setup.disk_serials[setup.n_disk_serials++] = self->images[i].serial;
    }
    const Vmlet__PodSecurityContext *psc = self->spec->security_context;
    char **sysctls = vmlet_xcalloc((psc ? psc->n_sysctls : 0) + 1, sizeof *sysctls);
    for (size_t i = 0; psc && i < psc->n_sysctls; i++) {
        size_t len = strlen(psc->sysctls[i]->name) + strlen(psc->sysctls[i]->value) + 2;
        sysctls[i] = vmlet_xmalloc(len);
        snprintf(sysctls[i], len, "%s=%s", psc->sysctls[i]->name, psc->sysctls[i]->value);
        setup.n_sysctls++;
    }
    setup.sysctls = sysctls;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_SETUP;
    msg.setup = &setup;
    bool sent = pod_agent_send(self, &msg);
    if (sent) // the baseline live updates compare against
        volume_refresh_setup_sent(l->volume_refresh, self, volumes, n_volumes);
    explicit_bzero(seed, sizeof seed);
    free(setup.resolv_conf);
    free(setup.hosts);
    for (size_t i = 0; i < setup.n_containers; i++)
        vmlet__guest_container__free_unpacked(setup.containers[i], NULL);
    free(setup.containers);
    free(setup.disk_serials);
    for (size_t i = 0; i < setup.n_sysctls; i++)
        free(sysctls[i]);
    free(sysctls);
    volumes_free(volumes, n_volumes);
    if (!sent)
        return -1;
    self->setup_sent = true;
    for (size_t i = 0; i < self->n_ctrs; i++) // a retried setup clears what it said
        if (self->ctrs[i].phase == CTR_WAITING &&
            (strcmp(self->ctrs[i].reason, "ContainerCreating") == 0 ||
             strcmp(self->ctrs[i].reason, "CreateContainerError") == 0))
            ctr_wait(&self->ctrs[i], i >= self->n_init && self->n_init ? "PodInitializing"
                                                                        : "ContainerCreating",
                     NULL);
    return 0;
}

// --- StartContainer ---------------------------------------------------------------------

int pod_setup_start_container(pod_vm_t *self, size_t i)
{
    ctr_t *c = &self->ctrs[i];
    char hostname[64];
    s_hostname(self, hostname, sizeof hostname);
    run_inputs_t in;
    s_inputs(self, s_container(self, i), i, hostname, &in);
    // Each run after the first is a new instance with a fresh writable root.
    in.instance = c->has_exit ? c->instance + 1 : c->instance;
    in.fresh_root = in.instance > 0;
    run_problem_t problem;
    vmlet_err_t err = {0};
    Vmlet__StartContainer *start = container_run_build(&in, &problem, &err);
    if (!start) {
        if (problem.reason[0]) {
            if (strcmp(c->reason, problem.reason) != 0 || strcmp(c->message, problem.message) != 0) {
                ctr_wait(c, problem.reason, problem.message);
                pod_record_changed(self);
            }
        } else {
            vmlet_log_warn(self->l->log, VMLET_KV({"pod", self->desc}, {"container", c->name}),
                           "%s", err.msg);
        }
        return 1;
    }
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_START;
    msg.start = start;
    bool sent = pod_agent_send(self, &msg);
    // The environment may hold secret values: nothing of it stays here.
    for (size_t e = 0; e < start->n_env; e++)
        explicit_bzero(start->env[e], strlen(start->env[e]));
    vmlet__start_container__free_unpacked(start, NULL);
    return sent ? 0 : -1;
}
