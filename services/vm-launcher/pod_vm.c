// One pod's life on this launcher (see launcher_internal.h):
//
//   pending -> booting -> setup -> running -> stopping -> stopped
//      |          |  (boot deadline: kill, back off, boot again)
//      +-> failed (it cannot run here: too big for the host)
//
// Images and fixable problems keep a pod pending; a VM that dies under
// running containers is booted again when restartPolicy says so; a pod
// whose containers all finished for good has its VM powered off (stopped)
// while Kubernetes still shows the pod, as a kubelet removes a finished
// pod's sandbox.
#include "launcher_internal.h"
#include "pod_hooks.h"

#include "vmlet/fsutil.h"
#include "vmlet/image_index.h"
#include "vmlet/pb.h"
#include "vmlet/pod_store.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RETRY_MS 2000          // a pending pod looks again this often
#define CONNECT_RETRY_MS 200   // the agent's socket, while booting
#define POWEROFF_WAIT_MS 10000 // after PowerOff, before the hard stop
#define BOOT_BACKOFF_INITIAL_MS 1000
#define BOOT_BACKOFF_MAX_MS 60000
#define TEMPLATE_WAIT_POLL_MS 100     // a pod waiting for its template looks this often
#define RESTORE_HELLO_TIMEOUT_MS 20000 // a restored guest says Hello in well under 1 s idle

static const char *const state_names[] = {"pending",  "booting", "setup", "running",
                                          "stopping", "stopped", "failed"};

const char *pod_vm_state_name(pv_state_t state)
{
    return state_names[state];
}

// The first time the pod runs: how long each part of its start took.
static void s_time_start(pod_vm_t *self)
{
    int64_t now = vmlet_now_ms();
    const int64_t spans[] = {self->boot_started_ms - self->made_ms,
                             self->hello_ms - self->boot_started_ms, now - self->hello_ms,
                             now - self->made_ms};
    for (int p = START_IMAGE; p <= START_TOTAL; p++)
        vmlet_histogram_observe(self->l->start_phase[p], (double)spans[p] / 1000.0);
    self->start_timed = true;
}

void pod_vm_set_state(pod_vm_t *self, pv_state_t state, const char *reason, const char *message)
{
    bool same = self->state == state && strcmp(self->reason, reason ? reason : "") == 0 &&
                strcmp(self->message, message ? message : "") == 0;
    if (self->state != state)
        vmlet_log_info(self->l->log,
                       VMLET_KV({"pod", self->desc}, {"from", state_names[self->state]},
                                {"to", state_names[state]}, {"reason", reason ? reason : ""}),
                       "%s", message && *message ? message : "state");
    if (state == PV_RUNNING && !self->start_timed && self->made_ms && self->hello_ms)
        s_time_start(self);
    self->state = state;
    snprintf(self->reason, sizeof self->reason, "%s", reason ? reason : "");
    snprintf(self->message, sizeof self->message, "%s", message ? message : "");
    if (!same)
        pod_record_changed(self);
}

ctr_t *pod_vm_ctr(pod_vm_t *self, const char *name, size_t *index)
{
    for (size_t i = 0; name && i < self->n_ctrs; i++)
        if (strcmp(self->ctrs[i].name, name) == 0) {
            if (index)
                *index = i;
            return &self->ctrs[i];
        }
    return NULL;
}

static const Vmlet__Container *s_spec_container(const pod_vm_t *self, size_t i)
{
    return i < self->n_init ? self->spec->init_containers[i]
                            : self->spec->containers[i - self->n_init];
}

const Vmlet__Container *pod_vm_spec_container(const pod_vm_t *self, size_t i)
{
    return self->spec && i < self->n_ctrs ? s_spec_container(self, i) : NULL;
}

// --- making and forgetting ---------------------------------------------------------------

pod_vm_t *pod_vm_new(launcher_t *l, const char *uid)
{
    pod_vm_t *self = vmlet_xcalloc(1, sizeof *self);
    self->made_ms = vmlet_now_ms();
    self->l = l;
    snprintf(self->uid, sizeof self->uid, "%s", uid);
    snprintf(self->desc, sizeof self->desc, "%s", uid);
    snprintf(self->state_dir, sizeof self->state_dir, "%s/%s", l->settings->state_dir, uid);
    self->state = PV_PENDING;
    self->created_unix_ms = vmlet_unix_ms();
    self->steps.launch = self->created_unix_ms;
    self->execs = zlistx_new();
    return self;
}

static void s_free_containers(pod_vm_t *self)
{
    for (size_t i = 0; i < self->n_ctrs; i++) {
        cri_log_close(&self->logs[i]);
        if (self->images[i].config)
            vmlet__image_config__free_unpacked(self->images[i].config, NULL);
    }
    free(self->ctrs);
    free(self->images);
    free(self->logs);
    self->ctrs = NULL, self->images = NULL, self->logs = NULL;
    self->n_ctrs = self->n_init = 0;
}

void pod_vm_destroy(pod_vm_t **self_p)
{
    pod_vm_t *self = *self_p;
    if (!self)
        return;
    pod_exec_tick(self, true, "the launcher is stopping");
    session_on_pod_gone(self, "the launcher is stopping");
    pod_stats_free(self); // its key expires, unless a restarted launcher adopts the VM
    pod_vm_unpoll(self);
    vmm_release(&self->vm); // the VM, if any, runs on: a restarted launcher adopts it
    s_free_containers(self);
    if (self->spec)
        vmlet__pod_spec__free_unpacked(self->spec, NULL);
    zlistx_destroy(&self->execs);
    free(self);
    *self_p = NULL;
}

bool pod_vm_finished(const pod_vm_t *self)
{
    return (self->state == PV_STOPPED || self->state == PV_FAILED) && self->stop_requested &&
           !self->vm;
}

// The containers of a spec, init containers first; keeps what is known of
// containers with the same names (an adopted pod's record).
static void s_take_spec(pod_vm_t *self, Vmlet__PodSpec *spec)
{
    if (self->spec)
        vmlet__pod_spec__free_unpacked(self->spec, NULL);
    self->spec = spec;
    snprintf(self->desc, sizeof self->desc, "%s_%s(%s)", spec->pod->name, spec->pod->namespace_,
             self->uid);
    size_t n = spec->n_init_containers + spec->n_containers;
    if (self->n_ctrs == n)
        return; // the same containers (a pod's containers never change)
    s_free_containers(self);
    self->n_ctrs = n;
    self->n_init = spec->n_init_containers;
    self->ctrs = vmlet_xcalloc(n + 1, sizeof *self->ctrs);
    self->images = vmlet_xcalloc(n + 1, sizeof *self->images);
    self->logs = vmlet_xcalloc(n + 1, sizeof *self->logs);
    for (size_t i = 0; i < n; i++) {
        ctr_init(&self->ctrs[i], s_spec_container(self, i)->name, i < self->n_init);
        if (i >= self->n_init && self->n_init)
            ctr_wait(&self->ctrs[i], "PodInitializing", NULL);
    }
}

// --- pending: spec, images, admission ------------------------------------------------

// Loads the spec from Redis. Returns 1 when there is one to run, 0 when the
// pod is gone or being deleted (stop it), -1 when Redis did not answer.
static int s_load_spec(pod_vm_t *self)
{
    vmlet_err_t err = {0};
    Vmlet__PodSpec *spec = vmlet_pod_store_get(self->l->store, self->uid, &err);
    if (!spec)
        return err.code == ENOENT ? 0 : -1;
    bool deleting = spec->has_deletion_unix_ms && spec->deletion_unix_ms > 0;
    int64_t grace =
        spec->has_deletion_grace_period_seconds ? spec->deletion_grace_period_seconds : -1;
    s_take_spec(self, spec);
    if (deleting) {
        pod_vm_stop(self, grace, "deleted");
        return 0;
    }
    return 1;
}

// The first problem that keeps the whole pod from starting, if any.
static const Vmlet__ConfigProblem *s_spec_problem(const pod_vm_t *self)
{
    if (self->spec->problem)
        return self->spec->problem;
    for (size_t i = 0; i < self->n_ctrs; i++) {
        const Vmlet__ConfigProblem *p = s_spec_container(self, i)->problem;
        if (p)
            return p;
    }
    return NULL;
}

// Every container's image from the index. Returns true when all are built.
static bool s_images_ready(pod_vm_t *self)
{
    for (size_t i = 0; i < self->n_ctrs; i++) {
        pod_image_t *img = &self->images[i];
        if (img->rootfs[0])
            continue;
        const char *ref = s_spec_container(self, i)->image_normalized;
        vmlet_image_index_entry_t entry;
        vmlet_err_t err = {0};
        if (!ref || vmlet_image_index_lookup(self->l->store, ref, &entry, &err) != 1)
            return false;
        snprintf(img->digest, sizeof img->digest, "%s", entry.digest);
        snprintf(img->rootfs, sizeof img->rootfs, "%s", entry.rootfs);
        const char *hex = strchr(entry.digest, ':') ? strchr(entry.digest, ':') + 1 : entry.digest;
        snprintf(img->serial, sizeof img->serial, "img-%.12s", hex);
        img->config = entry.config;
        entry.config = NULL;
        vmlet_image_index_entry_clear(&entry);
    }
    return true;
}

// The kubelet's admission: the pod must fit what this launcher has left.
static bool s_admit(pod_vm_t *self)
{
    launcher_t *l = self->l;
    int64_t cpu_used, mem_used;
    int64_t pods = launcher_used(l, &cpu_used, &mem_used);
    char message[512];
    if (pods >= l->settings->max_pods) {
        snprintf(message, sizeof message,
                 "Pod Node didn't have enough resource: pods, "
                 "requested: 1, used: %lld, capacity: %ld",
                 (long long)pods, l->settings->max_pods);
        pod_vm_set_state(self, PV_FAILED, "OutOfpods", message);
    } else if (self->size.cpu_millis_request + cpu_used > l->allocatable.cpu_millis) {
        snprintf(message, sizeof message,
                 "Pod Node didn't have enough resource: cpu, "
                 "requested: %lld, used: %lld, capacity: %lld",
                 (long long)self->size.cpu_millis_request, (long long)cpu_used,
                 (long long)l->allocatable.cpu_millis);
        pod_vm_set_state(self, PV_FAILED, "OutOfcpu", message);
    } else if (self->size.host_memory_bytes + mem_used > l->allocatable.memory_bytes) {
        snprintf(message, sizeof message,
                 "Pod Node didn't have enough resource: memory, "
                 "requested: %lld, used: %lld, capacity: %lld",
                 (long long)self->size.host_memory_bytes, (long long)mem_used,
                 (long long)l->allocatable.memory_bytes);
        pod_vm_set_state(self, PV_FAILED, "OutOfmemory", message);
    } else {
        return true;
    }
    vmlet_counter_inc(l->refused);
    self->stop_requested = false;
    for (size_t i = 0; i < self->n_ctrs; i++)
        self->ctrs[i].done = true;
    return false;
}

// --- booting ---------------------------------------------------------------------------

static void s_boot_failed(pod_vm_t *self, const char *why)
{
    launcher_t *l = self->l;
    vmlet_counter_inc(l->boot_failures);
    self->boot_failures++;
    pod_vm_unpoll(self);
    if (self->vm) {
        vmm_kill(self->vm, 5000, NULL);
        vmm_remove_files(self->vm, NULL);
        vmm_release(&self->vm);
    }
    int64_t delay = BOOT_BACKOFF_INITIAL_MS
                    << (self->boot_failures < 7 ? self->boot_failures - 1 : 6);
    if (delay > BOOT_BACKOFF_MAX_MS)
        delay = BOOT_BACKOFF_MAX_MS;
    self->next_boot_ms = vmlet_now_ms() + delay;
    char message[512];
    snprintf(message, sizeof message,
             "booting the VM failed (%d so far): %s; trying again in %llds", self->boot_failures,
             why, (long long)(delay / 1000));
    vmlet_log_warn(l->log, VMLET_KV({"pod", self->desc}), "%s", message);
    for (size_t i = 0; i < self->n_ctrs; i++)
        if (!self->ctrs[i].done && self->ctrs[i].phase == CTR_WAITING &&
            strcmp(self->ctrs[i].reason, "CrashLoopBackOff") != 0)
            ctr_wait(&self->ctrs[i], self->ctrs[i].reason, message);
    pod_vm_set_state(self, PV_PENDING, "BootFailed", message);
}

// The pod's disks: its writable disk, then each distinct image once.
// Returns how many, or 0 if there are more than a VM takes.
static size_t s_disks(pod_vm_t *self, const char *scratch, vmm_disk_t disks[VMM_MAX_DISKS])
{
    size_t n = 0;
    disks[n++] = (vmm_disk_t){scratch, false, "scratch"};
    for (size_t i = 0; i < self->n_ctrs; i++) {
        bool seen = false;
        for (size_t d = 1; d < n; d++)
            seen = seen || strcmp(disks[d].serial, self->images[i].serial) == 0;
        if (seen)
            continue;
        if (n == VMM_MAX_DISKS)
            return 0;
        disks[n++] = (vmm_disk_t){self->images[i].rootfs, true, self->images[i].serial};
    }
    return n;
}

// Which template to restore the pod's VM from. READY: *dir; BUILDING:
// worth waiting for; NONE: boot cold (why says why, when templates are on).
static template_lookup_t s_pick_template(pod_vm_t *self, const char **dir, char *why, size_t cap)
{
    why[0] = '\0';
    if (!self->l->templates)
        return TEMPLATE_NONE;
    vmm_disk_t disks[VMM_MAX_DISKS];
    size_t n = s_disks(self, "", disks);
    return vm_templates_get(self->l->templates, self->size.vcpus,
                            (int)(self->size.memory_bytes >> 20), n ? n : VMM_MAX_DISKS + 1, dir,
                            why, cap);
}

// Starts the VM from the template in dir: the template's disk slots, the
// pod's disks in the first ones. NULL + err when that fails.
static vmm_vm_t *s_restore(pod_vm_t *self, vmm_spec_t spec, const char *dir, vmlet_err_t *err)
{
    vm_templates_t *t = self->l->templates;
    vmm_disk_t disks[VMM_MAX_DISKS];
    char serials[VMM_MAX_DISKS][32];
    size_t slots = (size_t)vm_templates_disk_slots(t);
    memcpy(disks, spec.disks, spec.n_disks * sizeof *disks);
    for (size_t i = spec.n_disks; i < slots; i++) {
        snprintf(serials[i], sizeof serials[i], "unused%zu", i);
        disks[i] = (vmm_disk_t){vm_templates_placeholder(t), true, serials[i]};
    }
    spec.disks = disks;
    spec.n_disks = slots;
    if (vm_templates_verify(t, dir, err) < 0)
        return NULL;
    return vmm_restore(self->l->vmm, &spec, dir, err);
}

// A restore failed (or its guest never spoke): the template is dropped
// and made again, the pod told why, and its VM booted cold.
static void s_restore_failed(pod_vm_t *self, const char *dir, const char *why)
{
    char message[1024];
    snprintf(message, sizeof message, "restoring the VM from template %s failed: %s; booting it cold",
             dir, why);
    vmlet_log_warn(self->l->log, VMLET_KV({"pod", self->desc}), "%s", message);
    vmlet_counter_inc(self->l->restore_failures);
    pod_record_event(self, NULL, "TemplateRestoreFailed", message);
    vm_templates_drop(self->l->templates, dir, why);
    snprintf(self->steps.template_skipped, sizeof self->steps.template_skipped,
             "restore failed: %.150s", why);
}

static void s_boot(pod_vm_t *self, const char *template_dir, const char *why_cold)
{
    launcher_t *l = self->l;
    vmlet_err_t err = {0};
    if (vmlet_mkdirs(self->state_dir, 0750, &err) < 0)
        return s_boot_failed(self, err.msg);
    if (!self->has_lease) {
        if (net_attach(l->net, self->uid, &self->lease, &err) < 0)
            return s_boot_failed(self, err.msg);
        self->has_lease = true;
    }
    char scratch[PATH_MAX + 16];
    snprintf(scratch, sizeof scratch, "%s/scratch.img", self->state_dir);
    unlink(scratch); // a new VM gets a clean writable disk, as a new sandbox does
    if (scratch_disk_make(scratch, l->scratch_bytes, &err) < 0)
        return s_boot_failed(self, err.msg);
    vmm_disk_t disks[VMM_MAX_DISKS];
    size_t n = s_disks(self, scratch, disks);
    if (n == 0)
        return s_boot_failed(self, "too many distinct images for one VM");
    vmm_nic_t nic = {self->lease.tap, self->lease.mac};
    vmm_spec_t spec = {
        .id = self->uid,
        .kernel = l->settings->kernel,
        .initrd = l->settings->initramfs,
        .cmdline = l->settings->kernel_cmdline,
        .vcpus = self->size.vcpus,
        .mem_mib = (int)(self->size.memory_bytes >> 20),
        .disks = disks,
        .n_disks = n,
        .nic = &nic,
        .netns = self->lease.netns_path,
        .state_dir = self->state_dir,
    };
    self->boot_started_ms = vmlet_now_ms();
    bool first = !self->steps.vm_start;
    if (first)
        self->steps.vm_start = vmlet_unix_ms();
    self->restored_from[0] = '\0';
    self->vm = NULL;
    if (template_dir) {
        self->vm = s_restore(self, spec, template_dir, &err);
        if (self->vm) {
            snprintf(self->restored_from, sizeof self->restored_from, "%s", template_dir);
            vmlet_counter_inc(l->restores);
            vmlet_log_info(l->log, VMLET_KV({"pod", self->desc}, {"template", template_dir}),
                           "VM restored in %lld ms",
                           (long long)(vmlet_now_ms() - self->boot_started_ms));
        } else {
            s_restore_failed(self, template_dir, err.msg);
            err = (vmlet_err_t){0};
        }
    } else if (first && why_cold && *why_cold) {
        snprintf(self->steps.template_skipped, sizeof self->steps.template_skipped, "%s",
                 why_cold);
    }
    if (first)
        snprintf(self->steps.vm_start_kind, sizeof self->steps.vm_start_kind, "%s",
                 self->vm ? "template" : "cold");
    if (!self->vm) {
        self->vm = vmm_start(l->vmm, &spec, &err);
        if (!self->vm)
            return s_boot_failed(self, err.msg);
        vmlet_counter_inc(l->boots);
    }
    self->boots++;
    self->setup_sent = self->setup_done = false;
    self->last_seen_seq = 0;
    self->next_connect_ms = 0;
    pod_vm_watch_exit(self);
    pod_vm_set_state(self, PV_BOOTING, NULL, NULL);
    pod_agent_connect(self);
}

// --- the VMM's exit ------------------------------------------------------------------

static int s_on_exit_fd(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    (void)item;
    pod_vm_on_vm_exit(arg);
    return 0;
}

void pod_vm_watch_exit(pod_vm_t *self)
{
    int fd = vmm_vm_exit_fd(self->vm);
    if (fd < 0 || self->exit_polled)
        return;
    zmq_pollitem_t item = {NULL, fd, ZMQ_POLLIN, 0};
    self->exit_polled = zloop_poller(self->l->loop, &item, s_on_exit_fd, self) == 0;
}

void pod_vm_unpoll(pod_vm_t *self)
{
    if (self->exit_polled && self->vm) {
        zmq_pollitem_t item = {NULL, vmm_vm_exit_fd(self->vm), 0, 0};
        zloop_poller_end(self->l->loop, &item);
    }
    self->exit_polled = false;
    pod_agent_close(self);
}

// Frees what the VM held: its process files, scratch disk, network.
static void s_release_vm(pod_vm_t *self)
{
    pod_exec_tick(self, true, "the pod's VM stopped");
    session_on_pod_gone(self, "the pod's VM stopped");
    pod_stats_forget(self);
    pod_vm_unpoll(self);
    if (self->vm) {
        vmm_remove_files(self->vm, NULL);
        vmm_release(&self->vm);
    }
    char scratch[PATH_MAX + 16];
    snprintf(scratch, sizeof scratch, "%s/scratch.img", self->state_dir);
    unlink(scratch);
}

static void s_release_network(pod_vm_t *self)
{
    vmlet_err_t err = {0};
    if (self->has_lease && net_detach(self->l->net, self->uid, &err) < 0)
        vmlet_log_warn(self->l->log, VMLET_KV({"pod", self->desc}), "%s", err.msg);
    self->has_lease = false;
}

void pod_vm_on_vm_exit(pod_vm_t *self)
{
    if (!self->vm || vmm_alive(self->vm))
        return;
    vmlet_log_info(self->l->log, VMLET_KV({"pod", self->desc}), "the VM's process exited");
    pv_state_t was = self->state;
    bool expected = self->stop_requested || self->poweroff_sent;
    // Whatever ran in it ended with it.
    pod_vm_end_running(self,
                       expected ? "stopped with the pod's VM" : "the pod's VM stopped unexpectedly",
                       !expected);
    s_release_vm(self);
    if (expected || was == PV_STOPPING) {
        s_release_network(self);
        pod_vm_set_state(self, PV_STOPPED, self->stop_requested ? "Deleted" : "Completed", NULL);
        return;
    }
    if ((was == PV_BOOTING || was == PV_SETUP) && self->restored_from[0]) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", self->restored_from);
        s_restore_failed(self, dir, "the restored VM's VMM exited before the pod was set up");
        return s_boot(self, NULL, NULL);
    }
    if (was == PV_BOOTING || was == PV_SETUP)
        return s_boot_failed(self, "the VMM exited before the pod was set up (see its console "
                                   "log in the state directory)");
    // A VM that died under containers that should run: boot again and run
    // them (init containers too), as a kubelet makes a new sandbox.
    if (pod_vm_all_done(self)) {
        s_release_network(self);
        pod_vm_set_state(self, PV_STOPPED, "Completed", NULL);
        return;
    }
    pod_vm_schedule_restarts(self);
    pod_vm_set_state(self, PV_PENDING, "VmStopped", "the pod's VM stopped; booting a new one");
}

void pod_vm_end_running(pod_vm_t *self, const char *message, bool may_restart)
{
    int64_t now = vmlet_unix_ms();
    for (size_t i = 0; i < self->n_ctrs; i++) {
        ctr_t *c = &self->ctrs[i];
        if (c->phase != CTR_RUNNING)
            continue;
        cri_log_close(&self->logs[i]);
        ctr_exit_t e = {.exit_code = 137,
                        .signal = SIGKILL,
                        .started_unix_ms = c->started_unix_ms,
                        .finished_unix_ms = now};
        snprintf(e.reason, sizeof e.reason, "Error");
        snprintf(e.message, sizeof e.message, "%s", message);
        ctr_exited(c, &e);
        session_on_container_exit(self, i, e.exit_code, e.signal);
        if (!may_restart || !self->spec ||
            !ctr_should_restart(self->spec->restart_policy, c->init, e.exit_code))
            c->done = true;
    }
}

void pod_vm_fail(pod_vm_t *self, const char *reason, const char *message)
{
    pod_vm_end_running(self, message, false);
    for (size_t i = 0; i < self->n_ctrs; i++)
        self->ctrs[i].done = true;
    if (self->vm) {
        vmlet_err_t err = {0};
        if (vmm_kill(self->vm, 5000, &err) < 0)
            vmlet_log_warn(self->l->log, VMLET_KV({"pod", self->desc}), "%s", err.msg);
    }
    s_release_vm(self);
    s_release_network(self);
    pod_vm_set_state(self, PV_FAILED, reason, message);
}

void pod_vm_schedule_restarts(pod_vm_t *self)
{
    for (size_t i = 0; i < self->n_ctrs; i++)
        if (!self->ctrs[i].done && self->ctrs[i].phase == CTR_TERMINATED)
            ctr_schedule_restart(&self->ctrs[i], &self->l->backoff, self->desc);
}

// --- running: what starts when ---------------------------------------------------------

bool pod_vm_all_done(const pod_vm_t *self)
{
    for (size_t i = self->n_init; i < self->n_ctrs; i++)
        if (!self->ctrs[i].done)
            return false;
    // Also done when an init container failed for good: nothing else runs.
    return true;
}

static bool s_init_failed_for_good(const pod_vm_t *self)
{
    for (size_t i = 0; i < self->n_init; i++)
        if (self->ctrs[i].done && self->ctrs[i].has_exit && self->ctrs[i].exit.exit_code != 0)
            return true;
    return false;
}

// A container that cannot start yet (CreateContainerConfigError: a
// missing Secret, a failed Service list, runAsNonRoot) is tried again
// after a delay doubling from 1 s to 10 s, the kubelet's pod worker
// back-off, not at every tick (each try may cost API requests).
#define CONFIG_RETRY_FIRST_MS 1000
#define CONFIG_RETRY_MAX_MS 10000

static void s_start(pod_vm_t *self, size_t i)
{
    ctr_t *c = &self->ctrs[i];
    int rc = pod_setup_start_container(self, i);
    if (rc == 0) {
        c->restart_at_unix_ms = INT64_MAX; // asked; ContainerStarted or Exited follows
        c->config_retry_ms = 0;
    } else if (rc > 0) {
        c->config_retry_ms = c->config_retry_ms ? c->config_retry_ms * 2 : CONFIG_RETRY_FIRST_MS;
        if (c->config_retry_ms > CONFIG_RETRY_MAX_MS)
            c->config_retry_ms = CONFIG_RETRY_MAX_MS;
        c->restart_at_unix_ms = vmlet_unix_ms() + c->config_retry_ms;
    }
}

void pod_vm_start_due(pod_vm_t *self)
{
    if (self->state != PV_RUNNING || self->stop_requested)
        return;
    int64_t now = vmlet_unix_ms();
    // Init containers one at a time, in order, each to success.
    for (size_t i = 0; i < self->n_init; i++) {
        ctr_t *c = &self->ctrs[i];
        if (c->done && c->has_exit && c->exit.exit_code == 0)
            continue;
        if (c->done) // failed for good: the pod has failed
            return;
        if (c->phase != CTR_RUNNING && c->restart_at_unix_ms <= now)
            s_start(self, i);
        return;
    }
    for (size_t i = self->n_init; i < self->n_ctrs; i++) {
        ctr_t *c = &self->ctrs[i];
        if (c->done || c->phase == CTR_RUNNING || c->restart_at_unix_ms > now)
            continue;
        s_start(self, i);
    }
}

// --- stopping --------------------------------------------------------------------------

static int s_stop_signal(const pod_vm_t *self, size_t i)
{
    const Vmlet__ImageConfig *img = self->images[i].config;
    const char *name = img && img->stop_signal ? img->stop_signal : "";
    static const struct {
        const char *name;
        int sig;
    } signals[] = {{"SIGTERM", SIGTERM}, {"SIGINT", SIGINT},    {"SIGQUIT", SIGQUIT},
                   {"SIGKILL", SIGKILL}, {"SIGHUP", SIGHUP},    {"SIGUSR1", SIGUSR1},
                   {"SIGUSR2", SIGUSR2}, {"SIGWINCH", SIGWINCH}};
    for (size_t s = 0; s < sizeof signals / sizeof signals[0]; s++)
        if (strcmp(name, signals[s].name) == 0 || strcmp(name, signals[s].name + 3) == 0)
            return signals[s].sig;
    int n = atoi(name);
    return n > 0 && n < 65 ? n : SIGTERM;
}

static void s_signal(pod_vm_t *self, size_t i, int signal)
{
    Vmlet__SignalContainer sig = VMLET__SIGNAL_CONTAINER__INIT;
    sig.name = self->ctrs[i].name;
    PB_SET(&sig, signal, signal);
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_SIGNAL;
    msg.signal = &sig;
    pod_agent_send(self, &msg);
}

void pod_vm_signal_stop(pod_vm_t *self, size_t i)
{
    if (self->ctrs[i].phase == CTR_RUNNING)
        s_signal(self, i, s_stop_signal(self, i));
}

static void s_signal_all(pod_vm_t *self, bool kill_now)
{
    for (size_t i = 0; i < self->n_ctrs; i++)
        if (self->ctrs[i].phase == CTR_RUNNING)
            s_signal(self, i, kill_now ? SIGKILL : s_stop_signal(self, i));
}

// The pod stops: each running container's preStop hook first (it then
// sends the stop signal), or the stop signal now.
static void s_stop_all(pod_vm_t *self)
{
    for (size_t i = 0; i < self->n_ctrs; i++)
        if (self->ctrs[i].phase == CTR_RUNNING &&
            !pod_hooks_pre_stop(self, i, self->stop_deadline_unix_ms))
            s_signal(self, i, s_stop_signal(self, i));
}

static bool s_any_running(const pod_vm_t *self)
{
    for (size_t i = 0; i < self->n_ctrs; i++)
        if (self->ctrs[i].phase == CTR_RUNNING)
            return true;
    return false;
}

// Ends the VM: PowerOff through the agent, then the hard stop if it does
// not go in time. Containers are already stopped or past their grace.
static void s_power_off(pod_vm_t *self)
{
    if (!self->vm) {
        s_release_vm(self);
        s_release_network(self);
        pod_vm_set_state(self, PV_STOPPED, self->stop_requested ? "Deleted" : "Completed", NULL);
        return;
    }
    if (!self->poweroff_sent) {
        Vmlet__PowerOff off = VMLET__POWER_OFF__INIT;
        Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
        msg.body_case = VMLET__GUEST_MESSAGE__BODY_POWER_OFF;
        msg.power_off = &off;
        if (!pod_agent_send(self, &msg))
            vmm_shutdown(self->vm, NULL); // no agent: the ACPI power button
        self->poweroff_sent = true;
        self->poweroff_deadline_ms = vmlet_now_ms() + POWEROFF_WAIT_MS;
        return;
    }
    if (vmlet_now_ms() >= self->poweroff_deadline_ms) {
        vmlet_err_t err = {0};
        vmlet_log_warn(self->l->log, VMLET_KV({"pod", self->desc}),
                       "the VM did not power off in %d s; killing it", POWEROFF_WAIT_MS / 1000);
        if (vmm_kill(self->vm, 5000, &err) < 0)
            vmlet_log_warn(self->l->log, VMLET_KV({"pod", self->desc}), "%s", err.msg);
        pod_vm_on_vm_exit(self);
    }
}

void pod_vm_stop(pod_vm_t *self, int64_t grace_s, const char *reason)
{
    if (self->stop_requested)
        return;
    self->stop_requested = true;
    if (grace_s < 0)
        grace_s = self->spec && self->spec->has_termination_grace_period_seconds
                      ? self->spec->termination_grace_period_seconds
                      : 30;
    self->grace_s = grace_s;
    self->stop_deadline_unix_ms = vmlet_unix_ms() + grace_s * 1000;
    vmlet_log_info(self->l->log, VMLET_KV({"pod", self->desc}, {"reason", reason}),
                   "stopping, grace period %llds", (long long)grace_s);
    for (size_t i = 0; i < self->n_ctrs; i++)
        self->ctrs[i].done = true; // nothing starts again
    if (!self->vm) {
        s_power_off(self);
        return;
    }
    if (grace_s == 0)
        s_signal_all(self, true);
    else
        s_stop_all(self);
    pod_vm_set_state(self, PV_STOPPING, "Killing", NULL);
}

void pod_vm_restart_container(pod_vm_t *self, const char *name, const char *reason,
                              const char *message, int64_t grace_s)
{
    size_t i;
    ctr_t *c = pod_vm_ctr(self, name, &i);
    if (!c || c->phase != CTR_RUNNING || self->stop_requested)
        return;
    vmlet_log_info(
        self->l->log,
        VMLET_KV({"pod", self->desc}, {"container", name}, {"reason", reason ? reason : ""}),
        "restarting: %s", message ? message : "");
    if (grace_s < 0)
        grace_s = self->spec->has_termination_grace_period_seconds
                      ? self->spec->termination_grace_period_seconds
                      : 30;
    c->kill_at_unix_ms = vmlet_unix_ms() + grace_s * 1000;
    if (!pod_hooks_pre_stop(self, i, c->kill_at_unix_ms))
        s_signal(self, i, s_stop_signal(self, i));
}

// Containers asked to stop that are still running at their deadline.
static void s_kill_overdue(pod_vm_t *self)
{
    int64_t now = vmlet_unix_ms();
    for (size_t i = 0; i < self->n_ctrs; i++) {
        ctr_t *c = &self->ctrs[i];
        if (c->phase == CTR_RUNNING && c->kill_at_unix_ms && now >= c->kill_at_unix_ms) {
            vmlet_log_info(self->l->log, VMLET_KV({"pod", self->desc}, {"container", c->name}),
                           "still running after its grace period: SIGKILL");
            s_signal(self, i, SIGKILL);
            c->kill_at_unix_ms = 0;
        }
    }
}

// --- the tick ------------------------------------------------------------------------

static void s_tick_pending(pod_vm_t *self, int64_t now_ms)
{
    if (now_ms < self->next_retry_ms || now_ms < self->next_boot_ms)
        return;
    self->next_retry_ms = now_ms + RETRY_MS;
    if (!self->spec && s_load_spec(self) != 1)
        return;
    if (self->stop_requested)
        return;
    if (s_spec_problem(self) || !s_images_ready(self))
        return; // the watcher fixes problems, the builder builds images: each says so
    if (!self->steps.images_ready)
        self->steps.images_ready = vmlet_unix_ms();
    vm_size_of(self->spec, &self->l->sizes, &self->size);
    if (self->boots == 0 && !s_admit(self))
        return;
    const char *template_dir = NULL;
    char why[256];
    template_lookup_t found = s_pick_template(self, &template_dir, why, sizeof why);
    if (found == TEMPLATE_BUILDING) {
        // Its template is on the way: the rest of a boot, or less.
        self->next_retry_ms = now_ms + TEMPLATE_WAIT_POLL_MS;
        return;
    }
    s_boot(self, found == TEMPLATE_READY ? template_dir : NULL, why);
}

// A restored VM whose agent has not spoken in time: drop the template and
// boot the pod cold now, rather than wait out a whole boot timeout.
static void s_restore_timed_out(pod_vm_t *self)
{
    char dir[PATH_MAX], why[128];
    snprintf(dir, sizeof dir, "%s", self->restored_from);
    snprintf(why, sizeof why, "no word from the guest agent within %d s of the restore",
             RESTORE_HELLO_TIMEOUT_MS / 1000);
    pod_vm_unpoll(self);
    vmm_kill(self->vm, 5000, NULL);
    vmm_remove_files(self->vm, NULL);
    vmm_release(&self->vm);
    s_restore_failed(self, dir, why);
    s_boot(self, NULL, NULL);
}

static void s_tick_booting(pod_vm_t *self, int64_t now_ms)
{
    int64_t deadline = self->boot_started_ms + self->l->settings->boot_timeout_ms;
    if (self->vm && !vmm_alive(self->vm))
        return pod_vm_on_vm_exit(self);
    if (self->restored_from[0] && now_ms >= self->boot_started_ms + RESTORE_HELLO_TIMEOUT_MS)
        return s_restore_timed_out(self);
    if (now_ms >= deadline) {
        char why[128];
        snprintf(why, sizeof why, "no word from the guest agent within %llds",
                 (long long)(self->l->settings->boot_timeout_ms / 1000));
        return s_boot_failed(self, why);
    }
    if (!self->ch && now_ms >= self->next_connect_ms)
        pod_agent_connect(self);
}

static void s_tick_stopping(pod_vm_t *self)
{
    if (s_any_running(self) && self->ch) {
        if (!self->killed && vmlet_unix_ms() >= self->stop_deadline_unix_ms) {
            vmlet_log_info(self->l->log, VMLET_KV({"pod", self->desc}),
                           "grace period over; killing what still runs");
            s_signal_all(self, true);
            self->killed = true;
        }
        // Killed containers exit at once; give them a moment, then power off anyway.
        if (!(self->killed && vmlet_unix_ms() >= self->stop_deadline_unix_ms + 3000))
            return;
    }
    s_power_off(self);
}

void pod_vm_tick(pod_vm_t *self)
{
    int64_t now_ms = vmlet_now_ms();
    pod_record_resend(self);
    pod_exec_tick(self, false, NULL);
    pod_deadline_tick(self);
    switch (self->state) {
    case PV_PENDING:
        s_tick_pending(self, now_ms);
        break;
    case PV_BOOTING:
        s_tick_booting(self, now_ms);
        break;
    case PV_SETUP:
    case PV_RUNNING:
        if (self->vm && !vmm_alive(self->vm))
            return pod_vm_on_vm_exit(self);
        if (!self->ch && now_ms >= self->next_connect_ms)
            pod_agent_connect(self);
        pod_agent_tick(self);
        if (self->state == PV_SETUP && !self->setup_sent && now_ms >= self->next_setup_ms)
            pod_setup_send(self);
        if (self->state == PV_RUNNING) {
            s_kill_overdue(self); // also once all are done (a killed pod's last ones)
            if (pod_vm_all_done(self) || s_init_failed_for_good(self)) {
                if (!s_any_running(self))
                    s_power_off(self);
            } else {
                pod_vm_start_due(self);
            }
            pod_stats_tick(self);
        }
        break;
    case PV_STOPPING:
        if (self->vm && !vmm_alive(self->vm))
            return pod_vm_on_vm_exit(self);
        if (!self->ch && now_ms >= self->next_connect_ms)
            pod_agent_connect(self);
        s_tick_stopping(self);
        break;
    case PV_STOPPED:
    case PV_FAILED:
        break;
    }
}

void pod_vm_desired(pod_vm_t *self, const char *spec_hash)
{
    if (spec_hash)
        snprintf(self->spec_hash, sizeof self->spec_hash, "%s", spec_hash);
    if (self->state != PV_PENDING && self->spec) {
        // Running already; only deletion and activeDeadlineSeconds matter
        // now (a pod's spec is otherwise fixed once it runs).
        vmlet_err_t err = {0};
        Vmlet__PodSpec *spec = vmlet_pod_store_get(self->l->store, self->uid, &err);
        if (!spec && err.code == ENOENT)
            pod_vm_stop(self, -1, "gone");
        else if (spec && spec->has_deletion_unix_ms && spec->deletion_unix_ms > 0)
            pod_vm_stop(
                self,
                spec->has_deletion_grace_period_seconds ? spec->deletion_grace_period_seconds : -1,
                "deleted");
        pod_deadline_spec_changed(self, spec); // activeDeadlineSeconds may be set or lowered
        if (spec)
            vmlet__pod_spec__free_unpacked(spec, NULL);
        return;
    }
    // Pending: read the spec again (a fixed problem, a new image) and try now.
    if (s_load_spec(self) == 0 && !self->stop_requested)
        pod_vm_stop(self, -1, "gone");
    self->next_retry_ms = 0;
    pod_vm_tick(self);
}
