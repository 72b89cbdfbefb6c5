// What a launcher remembers of its VMs, and what it tells the others
// (see launcher_internal.h):
//
//   vmlet:vm:<uid>            STRING VmRecord (protobuf): the pod's VM, whole
//   vmlet:vms:<launcher-id>   SET    the uids of that launcher's VMs
//   <state-dir>/<uid>/record.pb      the same VmRecord, next to the VM
//   <state-dir>/<uid>/agent.seq      the last agent message taken
//
// Every change is saved, then published as a VmEvent (whole, numbered by
// generation), so a subscriber that missed one still ends up right. After
// a restart the launcher adopts every VM its records name.
#include "launcher_internal.h"

#include "vmlet/image_index.h"
#include "vmlet/pb.h"
#include "vmlet/pod_store.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static Vmlet__VmState s_vm_state(pv_state_t s)
{
    switch (s) {
    case PV_PENDING: return VMLET__VM_STATE__VM_STATE_PENDING;
    case PV_BOOTING:
    case PV_SETUP: return VMLET__VM_STATE__VM_STATE_BOOTING;
    case PV_RUNNING: return VMLET__VM_STATE__VM_STATE_RUNNING;
    case PV_STOPPING: return VMLET__VM_STATE__VM_STATE_STOPPING;
    case PV_STOPPED: return VMLET__VM_STATE__VM_STATE_STOPPED;
    case PV_FAILED: return VMLET__VM_STATE__VM_STATE_FAILED;
    }
    return VMLET__VM_STATE__VM_STATE_UNSPECIFIED;
}

static pv_state_t s_pv_state(Vmlet__VmState s, bool setup_done)
{
    switch (s) {
    case VMLET__VM_STATE__VM_STATE_BOOTING: return setup_done ? PV_SETUP : PV_BOOTING;
    case VMLET__VM_STATE__VM_STATE_RUNNING: return PV_RUNNING;
    case VMLET__VM_STATE__VM_STATE_STOPPING: return PV_STOPPING;
    case VMLET__VM_STATE__VM_STATE_STOPPED: return PV_STOPPED;
    case VMLET__VM_STATE__VM_STATE_FAILED: return PV_FAILED;
    default: return PV_PENDING;
    }
}

// "docker.io/library/busybox@sha256:..." from a reference and its digest,
// as CRI runtimes report imageID.
static void s_image_id(const char *reference, const char *digest, char *out, size_t cap)
{
    out[0] = '\0';
    if (!reference || !digest || !*digest)
        return;
    size_t repo_len = strcspn(reference, "@");
    const char *slash = strrchr(reference, '/');
    const char *colon = strrchr(slash ? slash : reference, ':');
    if (colon && (size_t)(colon - reference) < repo_len)
        repo_len = (size_t)(colon - reference);
    snprintf(out, cap, "%.*s@%s", (int)repo_len, reference, digest);
}

static Vmlet__ContainerRecord *s_container_record(const pod_vm_t *self, size_t i)
{
    const Vmlet__Container *c = !self->spec ? NULL
                                : i < self->n_init ? self->spec->init_containers[i]
                                                   : self->spec->containers[i - self->n_init];
    char image_id[400];
    s_image_id(c ? c->image_normalized : NULL, self->images[i].digest, image_id, sizeof image_id);
    return ctr_to_record(&self->ctrs[i], c ? c->image : NULL, image_id[0] ? image_id : NULL,
                         self->uid);
}

// The record, borrowing the pod's strings (free with s_record_free).
static Vmlet__VmRecord *s_record(pod_vm_t *self)
{
    Vmlet__VmRecord *r = PB_NEW(Vmlet__VmRecord, VMLET__VM_RECORD__INIT);
    r->pod = PB_NEW(Vmlet__PodRef, VMLET__POD_REF__INIT);
    r->pod->uid = self->uid;
    if (self->spec) {
        r->pod->namespace_ = self->spec->pod->namespace_;
        r->pod->name = self->spec->pod->name;
    }
    r->launcher_id = self->l->id;
    r->spec_hash = self->spec_hash;
    r->state_dir = self->state_dir;
    PB_SET(r, state, s_vm_state(self->state));
    r->reason = self->reason;
    r->message = self->message;
    PB_SET(r, generation, self->generation);
    PB_SET(r, vcpus, self->size.vcpus);
    PB_SET(r, memory_bytes, self->size.memory_bytes);
    PB_SET(r, host_memory_bytes, self->size.host_memory_bytes);
    PB_SET(r, cpu_millis_request, self->size.cpu_millis_request);
    if (self->has_lease) {
        r->pod_ip = self->lease.ip;
        PB_SET(r, prefix_len, self->lease.prefix_len);
        r->gateway = self->lease.gateway;
        r->mac = self->lease.mac;
        r->tap = self->lease.tap;
    }
    r->init_containers = vmlet_xcalloc(self->n_init + 1, sizeof *r->init_containers);
    r->containers = vmlet_xcalloc(self->n_ctrs - self->n_init + 1, sizeof *r->containers);
    for (size_t i = 0; i < self->n_ctrs; i++) {
        if (i < self->n_init)
            r->init_containers[r->n_init_containers++] = s_container_record(self, i);
        else
            r->containers[r->n_containers++] = s_container_record(self, i);
    }
    PB_SET(r, boots, self->boots);
    PB_SET(r, stop_deadline_unix_ms, self->stop_deadline_unix_ms);
    PB_SET(r, stop_requested, self->stop_requested);
    PB_SET(r, setup_done, self->setup_done);
    PB_SET(r, created_unix_ms, self->created_unix_ms);
    if (self->failure_reason[0]) {
        r->pod_failure_reason = self->failure_reason;
        r->pod_failure_message = self->failure_message;
    }
    if (self->steps.launch) {
        const start_steps_t *s = &self->steps;
        Vmlet__StartTimings *t = PB_NEW(Vmlet__StartTimings, VMLET__START_TIMINGS__INIT);
        PB_SET(t, launch_unix_ms, s->launch);
        PB_SET(t, images_ready_unix_ms, s->images_ready);
        PB_SET(t, vm_start_unix_ms, s->vm_start);
        PB_SET(t, agent_hello_unix_ms, s->agent_hello);
        PB_SET(t, setup_done_unix_ms, s->setup_done);
        PB_SET(t, running_unix_ms, s->running);
        if (s->running && s->vmm_cpu_ms >= 0)
            PB_SET(t, vmm_cpu_ms, s->vmm_cpu_ms);
        t->vm_start = s->vm_start_kind[0] ? (char *)s->vm_start_kind : NULL;
        t->template_skipped = s->template_skipped[0] ? (char *)s->template_skipped : NULL;
        r->start = t;
    }
    return r;
}

static void s_record_free(Vmlet__VmRecord *r)
{
    for (size_t i = 0; i < r->n_init_containers; i++)
        vmlet__container_record__free_unpacked(r->init_containers[i], NULL);
    for (size_t i = 0; i < r->n_containers; i++)
        vmlet__container_record__free_unpacked(r->containers[i], NULL);
    free(r->init_containers);
    free(r->containers);
    free(r->pod);
    free(r->start);
    free(r);
}

static void s_write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return; // no state dir yet (a pending pod): Redis has it
    bool ok = write(fd, data, len) == (ssize_t)len;
    close(fd);
    if (ok)
        rename(tmp, path);
    else
        unlink(tmp);
}

static void s_publish(pod_vm_t *self, Vmlet__VmRecord *r)
{
    Vmlet__VmEvent ev = VMLET__VM_EVENT__INIT;
    ev.pod = r->pod;
    ev.launcher_id = r->launcher_id;
    PB_SET(&ev, state, r->state);
    ev.reason = r->reason && *r->reason ? r->reason : NULL;
    ev.message = r->message && *r->message ? r->message : NULL;
    ev.pod_ip = r->pod_ip;
    // A finished pod keeps the address it had in its status, as on a kubelet.
    ev.init_containers = vmlet_xcalloc(r->n_init_containers + 1, sizeof *ev.init_containers);
    ev.containers = vmlet_xcalloc(r->n_containers + 1, sizeof *ev.containers);
    for (size_t i = 0; i < r->n_init_containers; i++)
        ev.init_containers[ev.n_init_containers++] = r->init_containers[i]->status;
    for (size_t i = 0; i < r->n_containers; i++)
        ev.containers[ev.n_containers++] = r->containers[i]->status;
    PB_SET(&ev, observed_unix_ms, vmlet_unix_ms());
    PB_SET(&ev, generation, r->generation);
    ev.pod_failure_reason = r->pod_failure_reason;
    ev.pod_failure_message = r->pod_failure_message;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_VM_EVENT;
    env.vm_event = &ev;
    launcher_publish(self->l, &env);
    free(ev.init_containers);
    free(ev.containers);
    (void)self;
}

void pod_record_event(pod_vm_t *self, const char *container, const char *reason,
                      const char *message)
{
    if (!self->spec || !self->spec->pod)
        return;
    Vmlet__PodEvent e = VMLET__POD_EVENT__INIT;
    e.pod = self->spec->pod;
    e.container = (char *)container;
    e.type = "Warning";
    e.reason = (char *)reason;
    e.message = (char *)message;
    e.launcher_id = self->l->id;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_POD_EVENT;
    env.pod_event = &e;
    launcher_publish(self->l, &env);
}

void pod_record_changed(pod_vm_t *self)
{
    self->generation++;
    Vmlet__VmRecord *r = s_record(self);
    size_t len = vmlet__vm_record__get_packed_size(r);
    uint8_t *bytes = vmlet_xmalloc(len + 1);
    vmlet__vm_record__pack(r, bytes);
    vmlet_err_t err = {0};
    char set[300];
    snprintf(set, sizeof set, "vmlet:vms:%s", self->l->id);
    redisReply *reply = vmlet_store_command(
        self->l->store, &err, "EVAL %s 2 vmlet:vm:%s %s %b %s",
        "redis.call('SET', KEYS[1], ARGV[1]) redis.call('SADD', KEYS[2], ARGV[2]) return 1",
        self->uid, set, bytes, len, self->uid);
    if (!reply)
        vmlet_log_warn(self->l->log, VMLET_KV({"pod", self->desc}), "saving its record: %s",
                       err.msg);
    freeReplyObject(reply);
    s_write_file(self->state_dir, "record.pb", bytes, len);
    free(bytes);
    s_publish(self, r);
    s_record_free(r);
    self->event_sent_ms = vmlet_now_ms();
}

// Events reach only the subscribers there when they are sent: a
// status-reporter or prober being replaced misses a change, and nothing
// would tell it again until the next one. So the standing state goes out
// again now and then, same generation (a repeat is a no-op for them).
void pod_record_resend(pod_vm_t *self)
{
    if (self->generation == 0 || vmlet_now_ms() - self->event_sent_ms < VM_EVENT_RESEND_MS)
        return;
    Vmlet__VmRecord *r = s_record(self);
    s_publish(self, r);
    s_record_free(r);
    self->event_sent_ms = vmlet_now_ms();
}

void pod_record_drop(pod_vm_t *self)
{
    char set[300];
    snprintf(set, sizeof set, "vmlet:vms:%s", self->l->id);
    freeReplyObject(vmlet_store_command(self->l->store, NULL, "DEL vmlet:vm:%s", self->uid));
    freeReplyObject(vmlet_store_command(self->l->store, NULL, "SREM %s %s", set, self->uid));
    char path[PATH_MAX + 16];
    static const char *const files[] = {"record.pb", "agent.seq", "console.log", "scratch.img"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", self->state_dir, files[i]);
        unlink(path);
    }
    rmdir(self->state_dir);
}

void pod_record_save_seq(pod_vm_t *self)
{
    char text[32];
    int n = snprintf(text, sizeof text, "%llu\n",
                     (unsigned long long)vmlet_agent_channel_last_seen(self->ch));
    s_write_file(self->state_dir, "agent.seq", text, (size_t)n);
}

// --- adoption ----------------------------------------------------------------------

static Vmlet__VmRecord *s_load(launcher_t *l, const char *uid)
{
    redisReply *r = vmlet_store_command(l->store, NULL, "GET vmlet:vm:%s", uid);
    Vmlet__VmRecord *rec = NULL;
    if (r && r->type == REDIS_REPLY_STRING)
        rec = vmlet__vm_record__unpack(NULL, r->len, (const uint8_t *)r->str);
    freeReplyObject(r);
    // The state directory's copy is written with the same change: take
    // whichever is newer.
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s/record.pb", l->settings->state_dir, uid);
    FILE *f = fopen(path, "rb");
    if (f) {
        static uint8_t buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        Vmlet__VmRecord *local = vmlet__vm_record__unpack(NULL, n, buf);
        if (local && (!rec || local->generation > rec->generation)) {
            if (rec)
                vmlet__vm_record__free_unpacked(rec, NULL);
            rec = local;
        } else if (local) {
            vmlet__vm_record__free_unpacked(local, NULL);
        }
    }
    return rec;
}

static uint64_t s_load_seq(const char *state_dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/agent.seq", state_dir);
    FILE *f = fopen(path, "r");
    unsigned long long seq = 0;
    if (f) {
        if (fscanf(f, "%llu", &seq) != 1)
            seq = 0;
        fclose(f);
    }
    return seq;
}

static void s_restore(pod_vm_t *self, const Vmlet__VmRecord *rec)
{
    launcher_t *l = self->l;
    vmlet_err_t err = {0};
    Vmlet__PodSpec *spec = vmlet_pod_store_get(l->store, self->uid, &err);
    size_t n = rec->n_init_containers + rec->n_containers;
    self->n_init = rec->n_init_containers;
    self->n_ctrs = n;
    self->ctrs = vmlet_xcalloc(n + 1, sizeof *self->ctrs);
    self->images = vmlet_xcalloc(n + 1, sizeof *self->images);
    self->logs = vmlet_xcalloc(n + 1, sizeof *self->logs);
    for (size_t i = 0; i < n; i++) {
        const Vmlet__ContainerRecord *cr = i < self->n_init ? rec->init_containers[i]
                                                            : rec->containers[i - self->n_init];
        ctr_from_record(&self->ctrs[i], cr);
        const char *id = cr->status ? cr->status->image_id : NULL;
        const char *at = id ? strchr(id, '@') : NULL;
        if (at)
            snprintf(self->images[i].digest, sizeof self->images[i].digest, "%s", at + 1);
    }
    if (spec) {
        self->spec = spec;
        snprintf(self->desc, sizeof self->desc, "%s_%s(%s)", spec->pod->name,
                 spec->pod->namespace_, self->uid);
        // Image configs again (stop signals, the next run's entrypoint).
        for (size_t i = 0; i < n && n == spec->n_init_containers + spec->n_containers; i++) {
            const Vmlet__Container *c = i < self->n_init ? spec->init_containers[i]
                                                         : spec->containers[i - self->n_init];
            vmlet_image_index_entry_t entry;
            if (c->image_normalized &&
                vmlet_image_index_lookup(l->store, c->image_normalized, &entry, NULL) == 1) {
                snprintf(self->images[i].rootfs, sizeof self->images[i].rootfs, "%s",
                         entry.rootfs);
                const char *hex = strchr(entry.digest, ':') ? strchr(entry.digest, ':') + 1
                                                            : entry.digest;
                snprintf(self->images[i].serial, sizeof self->images[i].serial, "img-%.12s", hex);
                self->images[i].config = entry.config;
                entry.config = NULL;
                vmlet_image_index_entry_clear(&entry);
            }
        }
    }
    if (rec->spec_hash)
        snprintf(self->spec_hash, sizeof self->spec_hash, "%s", rec->spec_hash);
    self->generation = rec->generation;
    self->created_unix_ms = rec->created_unix_ms;
    self->boots = rec->boots;
    self->stop_requested = rec->stop_requested;
    self->stop_deadline_unix_ms = rec->stop_deadline_unix_ms;
    self->setup_done = self->setup_sent = rec->setup_done;
    self->size.vcpus = rec->vcpus;
    self->size.memory_bytes = rec->memory_bytes;
    self->size.host_memory_bytes = rec->host_memory_bytes;
    self->size.cpu_millis_request = rec->cpu_millis_request;
    if (rec->pod_ip && *rec->pod_ip) {
        snprintf(self->lease.ip, sizeof self->lease.ip, "%s", rec->pod_ip);
        self->has_lease = true;
    }
    self->state = s_pv_state(rec->state, rec->setup_done);
    snprintf(self->reason, sizeof self->reason, "%s", rec->reason ? rec->reason : "");
    snprintf(self->message, sizeof self->message, "%s", rec->message ? rec->message : "");
    snprintf(self->failure_reason, sizeof self->failure_reason, "%s",
             rec->pod_failure_reason ? rec->pod_failure_reason : "");
    snprintf(self->failure_message, sizeof self->failure_message, "%s",
             rec->pod_failure_message ? rec->pod_failure_message : "");
}

static bool s_needs_vm(pv_state_t s)
{
    return s == PV_BOOTING || s == PV_SETUP || s == PV_RUNNING || s == PV_STOPPING;
}

static void s_adopt_one(launcher_t *l, const char *uid)
{
    Vmlet__VmRecord *rec = s_load(l, uid);
    if (!rec)
        return;
    pod_vm_t *pod = pod_vm_new(l, uid);
    pod->made_ms = 0; // found again after a restart: its start is not this launcher's to time
    s_restore(pod, rec);
    vmlet__vm_record__free_unpacked(rec, NULL);
    vmlet_err_t err = {0};
    if (pod->has_lease && net_attach(l->net, uid, &pod->lease, &err) < 0) {
        vmlet_log_warn(l->log, VMLET_KV({"pod", pod->desc}), "its network: %s", err.msg);
        pod->has_lease = false;
    }
    if (s_needs_vm(pod->state)) {
        pod->vm = vmm_adopt(l->vmm, pod->state_dir, &err);
        if (pod->vm) {
            vmlet_counter_inc(l->adopted);
            pod->last_seen_seq = s_load_seq(pod->state_dir);
            pod->boot_started_ms = vmlet_now_ms(); // a booting VM gets a new deadline
            pod_vm_watch_exit(pod);
            vmlet_log_info(l->log, VMLET_KV({"pod", pod->desc}, {"state", pod_vm_state_name(pod->state)}),
                           "adopted its running VM (pid %d)", (int)vmm_vm_pid(pod->vm));
            pod_agent_connect(pod);
        } else {
            // The VM went while we were away: what ran in it ended with it.
            vmlet_log_warn(l->log, VMLET_KV({"pod", pod->desc}), "its VM is gone: %s", err.msg);
            pod_vm_end_running(pod, "the pod's VM was gone when its launcher came back",
                               !pod->stop_requested);
            pod_vm_schedule_restarts(pod);
            pod_vm_set_state(pod, pod->stop_requested || pod_vm_all_done(pod) ? PV_STOPPED : PV_PENDING,
                             "VmStopped", "the pod's VM was gone when its launcher came back");
        }
    }
    zhashx_insert(l->pods, uid, pod);
    pod_record_changed(pod); // tell the others what we found
}

int pod_record_adopt_all(launcher_t *l)
{
    char set[300];
    snprintf(set, sizeof set, "vmlet:vms:%s", l->id);
    vmlet_err_t err = {0};
    redisReply *r = vmlet_store_command(l->store, &err, "SMEMBERS %s", set);
    if (!r) {
        vmlet_log_warn(l->log, NULL, "reading this launcher's VMs: %s", err.msg);
        return -1;
    }
    int n = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        if (zhashx_lookup(l->pods, r->element[i]->str))
            continue;
        s_adopt_one(l, r->element[i]->str);
        n++;
    }
    freeReplyObject(r);
    return n;
}
