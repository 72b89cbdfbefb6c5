// Templates (vm_template.h, docs/templates.md). Layout of the directory:
//
//   <dir>/<key>/inputs            what the template was made from, then
//                                 "state <size> <fnv1a-64>" of its state file
//   <dir>/<key>/mem, state        the backend's files (vmm_backend.h)
//   <dir>/<key>.building.<pid>/   a template being made by process <pid>
//   <dir>/placeholder.img         the disk of unused slots
//
// A finished template is renamed into place whole, so a reader never sees
// half of one; two launchers sharing the directory may both build a key,
// and the second rename loses harmlessly.
#include "vm_template.h"

#include "agent_channel.h"

#include "vmlet/fsutil.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_TEMPLATES 16
#define TICK_MS 100
#define QUIESCE_MS 200         // after the Hello, before the save: the guest sees us gone
#define SAVE_TIMEOUT_MS 20000
#define RETRY_AFTER_MS 60000   // a failed build is tried again after this
#define PLACEHOLDER_BYTES 4096 // one block: the guest sees a disk it never mounts
#define INPUTS_FILE "inputs"

typedef enum { T_BUILDING, T_QUIESCE, T_READY, T_FAILED } t_state_t;

typedef struct {
    char key[17];
    int vcpus, mem_mib;
    t_state_t state;
    char dir[PATH_MAX];       // the finished template
    char build_dir[PATH_MAX]; // while building
    char *inputs;             // what it is made from (the key hashes it)
    vmm_vm_t *vm;
    vmlet_agent_channel_t *ch;
    int64_t started_ms, quiesce_until_ms, retry_after_ms;
    char why[512];
} template_t;

struct vm_templates {
    vm_templates_config_t cfg; // strings owned
    char placeholder[PATH_MAX];
    template_t *templates[MAX_TEMPLATES];
    size_t n;
    int timer;
    vmlet_metric_t *ready, *builds_ok, *builds_failed, *dropped, *build_seconds;
};

// --- inputs and keys --------------------------------------------------------------------

// FNV-1a, 64 bits: names a template by its inputs and notices a damaged
// state file. Not a defence against an attacker: the directory is the
// launcher's own.
static uint64_t s_fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ULL

static void s_file_identity(char *out, size_t cap, const char *label, const char *path)
{
    struct stat st;
    if (!path || !*path)
        snprintf(out, cap, "%s=-\n", label);
    else if (stat(path, &st) < 0)
        snprintf(out, cap, "%s=%s missing\n", label, path);
    else
        snprintf(out, cap, "%s=%s size=%lld mtime=%lld.%09ld ino=%llu\n", label, path,
                 (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                 (unsigned long long)st.st_ino);
}

// Everything a template depends on, one input per line (malloc'd).
static char *s_inputs(const vm_templates_t *self, int vcpus, int mem_mib)
{
    char kernel[PATH_MAX + 128], initramfs[PATH_MAX + 128], vmm[512], boot[64] = "";
    s_file_identity(kernel, sizeof kernel, "kernel", self->cfg.kernel);
    s_file_identity(initramfs, sizeof initramfs, "initramfs", self->cfg.initramfs);
    vmm_template_inputs(self->cfg.vmm, vmm, sizeof vmm);
    // A template does not outlive the host's boot: its memory file may not
    // have reached the disk whole, and the host may have changed.
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, boot, sizeof boot - 1);
        boot[n > 0 ? n : 0] = '\0';
        boot[strcspn(boot, "\n")] = '\0';
        close(fd);
    }
    return vmlet_xasprintf(
        "vmlet template 1\n%s%svmm=%s\ncmdline=%s\nvcpus=%d\nmemory=%dMiB\ndisks=%d\n"
        "host-boot=%s\n",
        kernel, initramfs, vmm, self->cfg.cmdline ? self->cfg.cmdline : "", vcpus, mem_mib,
        self->cfg.disk_slots, boot);
}

static void s_key(const char *inputs, char out[17])
{
    snprintf(out, 17, "%016" PRIx64, s_fnv1a(FNV_INIT, inputs, strlen(inputs)));
}

// "state <size> <fnv>" of a template's state file, or -1.
static int s_state_digest(const char *dir, char *out, size_t cap, vmlet_err_t *err)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/state", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vmlet_err_errno(err, errno, "%s", path);
    uint64_t h = FNV_INIT;
    long long size = 0;
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        h = s_fnv1a(h, buf, (size_t)n);
        size += n;
    }
    int saved = errno;
    close(fd);
    if (n < 0)
        return vmlet_err_errno(err, saved, "reading %s", path);
    snprintf(out, cap, "state %lld %016" PRIx64 "\n", size, h);
    return 0;
}

// --- files ------------------------------------------------------------------------------

static void s_remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char child[PATH_MAX + 260];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
            s_remove_tree(child);
        else
            unlink(child);
    }
    closedir(d);
    rmdir(path);
}

static int s_write_file(const char *path, const char *text, vmlet_err_t *err)
{
    char tmp[PATH_MAX + 64];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "we");
    if (!f)
        return vmlet_err_errno(err, errno, "%s", tmp);
    bool ok = fputs(text, f) >= 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) < 0) {
        unlink(tmp);
        return vmlet_err_errno(err, errno, "writing %s", path);
    }
    return 0;
}

// A template's inputs file into have (NUL-terminated; "" if unreadable).
static void s_read_inputs(const char *dir, char *have, size_t cap)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/" INPUTS_FILE, dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, have, cap - 1) : -1;
    if (fd >= 0)
        close(fd);
    have[n > 0 ? n : 0] = '\0';
}

// The inputs file of a finished template matches what it should be made of.
static bool s_template_valid(const char *dir, const char *inputs)
{
    char have[4096];
    s_read_inputs(dir, have, sizeof have);
    return have[0] && strncmp(have, inputs, strlen(inputs)) == 0;
}

// Removes templates no longer wanted by the default shape (made with other
// inputs), and builds left behind by processes that are gone.
static void s_prune(vm_templates_t *self, const char *keep_key)
{
    DIR *d = opendir(self->cfg.dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        const char *name = e->d_name;
        char path[PATH_MAX + 260];
        snprintf(path, sizeof path, "%s/%s", self->cfg.dir, name);
        const char *building = strstr(name, ".building.");
        if (building) {
            long pid = strtol(building + 10, NULL, 10);
            if (pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH)
                s_remove_tree(path);
        } else if (strlen(name) == 16 && strspn(name, "0123456789abcdef") == 16 &&
                   strcmp(name, keep_key) != 0) {
            vmlet_log_info(self->cfg.log, VMLET_KV({"template", name}),
                           "removing a template made from other inputs");
            s_remove_tree(path);
        }
    }
    if (d)
        closedir(d);
}

// --- building ----------------------------------------------------------------------------

static void s_update_ready(vm_templates_t *self)
{
    int ready = 0;
    for (size_t i = 0; i < self->n; i++)
        ready += self->templates[i]->state == T_READY;
    vmlet_gauge_set(self->ready, ready);
}

static void s_stop_vm(template_t *t)
{
    vmlet_agent_channel_destroy(&t->ch);
    if (t->vm) {
        vmm_kill(t->vm, 5000, NULL);
        vmm_release(&t->vm);
    }
}

static void s_build_failed(vm_templates_t *self, template_t *t, const char *why)
{
    s_stop_vm(t);
    s_remove_tree(t->build_dir);
    t->state = T_FAILED;
    t->retry_after_ms = vmlet_now_ms() + RETRY_AFTER_MS;
    snprintf(t->why, sizeof t->why, "making the template failed: %s", why);
    vmlet_counter_inc(self->builds_failed);
    vmlet_log_warn(self->cfg.log, VMLET_KV({"template", t->key}),
                   "%s; pods of %d vCPU, %d MiB boot cold (trying again in %d s)", t->why,
                   t->vcpus, t->mem_mib, RETRY_AFTER_MS / 1000);
    s_update_ready(self);
}

static void s_build_start(vm_templates_t *self, template_t *t)
{
    vmlet_err_t err = {0};
    snprintf(t->build_dir, sizeof t->build_dir, "%s/%s.building.%d", self->cfg.dir, t->key,
             (int)getpid());
    s_remove_tree(t->build_dir);
    char vm_dir[PATH_MAX + 8];
    snprintf(vm_dir, sizeof vm_dir, "%s/vm", t->build_dir);
    if (vmlet_mkdirs(vm_dir, 0750, &err) < 0)
        return s_build_failed(self, t, err.msg);
    // The template's devices are those of every VM restored from it: the
    // disk slots (their drivers are not loaded until a pod's setup, so
    // the guest never reads these) and a NIC with nothing behind it.
    vmm_disk_t disks[VMM_MAX_DISKS];
    char serials[VMM_MAX_DISKS][16];
    for (int i = 0; i < self->cfg.disk_slots; i++) {
        snprintf(serials[i], sizeof serials[i], "slot%d", i);
        disks[i] = (vmm_disk_t){self->placeholder, true, serials[i]};
    }
    vmm_nic_t nic = {NULL, "52:54:00:00:00:01"};
    char id[32];
    snprintf(id, sizeof id, "template-%.12s", t->key);
    vmm_spec_t spec = {
        .id = id,
        .kernel = self->cfg.kernel,
        .initrd = self->cfg.initramfs,
        .cmdline = self->cfg.cmdline,
        .vcpus = t->vcpus,
        .mem_mib = t->mem_mib,
        .disks = disks,
        .n_disks = (size_t)self->cfg.disk_slots,
        .nic = &nic,
        .state_dir = vm_dir,
        .template_dir = t->build_dir,
    };
    t->state = T_BUILDING;
    t->started_ms = vmlet_now_ms();
    t->why[0] = '\0';
    vmlet_log_info(self->cfg.log, VMLET_KV({"template", t->key}),
                   "making the template for VMs of %d vCPU, %d MiB", t->vcpus, t->mem_mib);
    t->vm = vmm_start(self->cfg.vmm, &spec, &err);
    if (!t->vm)
        return s_build_failed(self, t, err.msg);
}

// Booting: connect to the agent and wait for its Hello.
static void s_tick_booting(vm_templates_t *self, template_t *t, int64_t now)
{
    if (!vmm_alive(t->vm))
        return s_build_failed(self, t, "the template VM exited while booting (see its console)");
    if (now - t->started_ms > self->cfg.build_timeout_ms) {
        char why[128];
        snprintf(why, sizeof why, "no word from its guest agent within %d s",
                 self->cfg.build_timeout_ms / 1000);
        return s_build_failed(self, t, why);
    }
    vmlet_err_t err = {0};
    if (!t->ch) {
        int fd = vmm_agent_connect(t->vm, 10, &err);
        if (fd < 0)
            return; // not listening yet
        t->ch = vmlet_agent_channel_new(fd, 0);
    }
    if (vmlet_agent_channel_read(t->ch, 0, &err) < 0 && err.code != EAGAIN) {
        vmlet_agent_channel_destroy(&t->ch); // connect again at the next tick
        return;
    }
    Vmlet__GuestMessage *msg;
    while ((msg = vmlet_agent_channel_next(t->ch)))
        vmlet__guest_message__free_unpacked(msg, NULL);
    if (!vmlet_agent_channel_hello_seen(t->ch))
        return;
    // Hang up, and give the guest a moment to see it: a VM restored from
    // the template then sees the launcher's connection as new, and says
    // Hello on it.
    vmlet_agent_channel_destroy(&t->ch);
    t->state = T_QUIESCE;
    t->quiesce_until_ms = now + QUIESCE_MS;
}

static void s_save(vm_templates_t *self, template_t *t)
{
    vmlet_err_t err = {0};
    char digest[128], inputs_path[PATH_MAX + 16];
    if (vmm_template_save(t->vm, t->build_dir, SAVE_TIMEOUT_MS, &err) < 0)
        return s_build_failed(self, t, err.msg);
    s_stop_vm(t);
    char vm_dir[PATH_MAX + 8];
    snprintf(vm_dir, sizeof vm_dir, "%s/vm", t->build_dir);
    s_remove_tree(vm_dir);
    if (s_state_digest(t->build_dir, digest, sizeof digest, &err) < 0)
        return s_build_failed(self, t, err.msg);
    char *text = vmlet_xasprintf("%s%s", t->inputs, digest);
    snprintf(inputs_path, sizeof inputs_path, "%s/" INPUTS_FILE, t->build_dir);
    int rc = s_write_file(inputs_path, text, &err);
    free(text);
    if (rc < 0)
        return s_build_failed(self, t, err.msg);
    if (rename(t->build_dir, t->dir) < 0) {
        if (errno != ENOTEMPTY && errno != EEXIST) {
            vmlet_err_errno(&err, errno, "rename %s", t->build_dir);
            return s_build_failed(self, t, err.msg);
        }
        s_remove_tree(t->build_dir); // another launcher made it first: theirs serves
    }
    double took = (double)(vmlet_now_ms() - t->started_ms) / 1000.0;
    vmlet_histogram_observe(self->build_seconds, took);
    vmlet_counter_inc(self->builds_ok);
    t->state = T_READY;
    vmlet_log_info(self->cfg.log, VMLET_KV({"template", t->key}, {"dir", t->dir}),
                   "template ready after %.2f s", took);
    s_update_ready(self);
}

static int s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    vm_templates_t *self = arg;
    int64_t now = vmlet_now_ms();
    for (size_t i = 0; i < self->n; i++) {
        template_t *t = self->templates[i];
        if (t->state == T_BUILDING)
            s_tick_booting(self, t, now);
        else if (t->state == T_QUIESCE && now >= t->quiesce_until_ms)
            s_save(self, t);
    }
    return 0;
}

// --- lookup ------------------------------------------------------------------------------

static template_t *s_find(vm_templates_t *self, int vcpus, int mem_mib)
{
    for (size_t i = 0; i < self->n; i++)
        if (self->templates[i]->vcpus == vcpus && self->templates[i]->mem_mib == mem_mib)
            return self->templates[i];
    return NULL;
}

// The template of this shape: found on disk, or being made now.
static template_t *s_ensure(vm_templates_t *self, int vcpus, int mem_mib)
{
    template_t *t = s_find(self, vcpus, mem_mib);
    if (!t) {
        if (self->n == MAX_TEMPLATES)
            return NULL;
        t = vmlet_xcalloc(1, sizeof *t);
        t->vcpus = vcpus;
        t->mem_mib = mem_mib;
        t->inputs = s_inputs(self, vcpus, mem_mib);
        s_key(t->inputs, t->key);
        snprintf(t->dir, sizeof t->dir, "%s/%s", self->cfg.dir, t->key);
        self->templates[self->n++] = t;
        if (s_template_valid(t->dir, t->inputs)) {
            t->state = T_READY;
            vmlet_log_info(self->cfg.log, VMLET_KV({"template", t->key}, {"dir", t->dir}),
                           "template found from before");
            s_update_ready(self);
            return t;
        }
        s_remove_tree(t->dir);
        s_build_start(self, t);
    } else if (t->state == T_FAILED && vmlet_now_ms() >= t->retry_after_ms) {
        s_build_start(self, t);
    }
    return t;
}

template_lookup_t vm_templates_get(vm_templates_t *self, int vcpus, int mem_mib, size_t n_disks,
                                   const char **dir, char *why, size_t why_cap)
{
    if (n_disks > (size_t)self->cfg.disk_slots) {
        snprintf(why, why_cap, "the pod needs %zu disks; templates have %d", n_disks,
                 self->cfg.disk_slots);
        return TEMPLATE_NONE;
    }
    template_t *t = s_ensure(self, vcpus, mem_mib);
    if (!t) {
        snprintf(why, why_cap, "already %d VM shapes have templates", MAX_TEMPLATES);
        return TEMPLATE_NONE;
    }
    switch (t->state) {
    case T_READY:
        *dir = t->dir;
        return TEMPLATE_READY;
    case T_BUILDING:
    case T_QUIESCE:
        snprintf(why, why_cap, "its template is being made");
        return TEMPLATE_BUILDING;
    case T_FAILED:
        break;
    }
    snprintf(why, why_cap, "%s", t->why);
    return TEMPLATE_NONE;
}

void vm_templates_prepare(vm_templates_t *self, int vcpus, int mem_mib)
{
    template_t *t = s_ensure(self, vcpus, mem_mib);
    if (t)
        s_prune(self, t->key);
}

int vm_templates_verify(vm_templates_t *self, const char *dir, vmlet_err_t *err)
{
    (void)self;
    char digest[128], have[4096];
    if (s_state_digest(dir, digest, sizeof digest, err) < 0)
        return -1;
    s_read_inputs(dir, have, sizeof have);
    if (!strstr(have, digest))
        return vmlet_err_set(err, "%s/state does not match its checksum (%.*s)", dir,
                             (int)strcspn(digest, "\n"), digest);
    return 0;
}

void vm_templates_drop(vm_templates_t *self, const char *dir, const char *why)
{
    for (size_t i = 0; i < self->n; i++) {
        template_t *t = self->templates[i];
        if (t->state != T_READY || strcmp(t->dir, dir) != 0)
            continue;
        vmlet_log_warn(self->cfg.log, VMLET_KV({"template", t->key}),
                       "dropping the template (%s); making it again", why);
        vmlet_counter_inc(self->dropped);
        s_remove_tree(t->dir);
        s_build_start(self, t);
        s_update_ready(self);
    }
}

int vm_templates_disk_slots(const vm_templates_t *self)
{
    return self->cfg.disk_slots;
}

const char *vm_templates_placeholder(const vm_templates_t *self)
{
    return self->placeholder;
}

// --- life -----------------------------------------------------------------------------

vm_templates_t *vm_templates_new(const vm_templates_config_t *cfg, vmlet_err_t *err)
{
    if (cfg->disk_slots < 1 || cfg->disk_slots > VMM_MAX_DISKS) {
        vmlet_err_set(err, "templates: %d disk slots; want 1 to %d", cfg->disk_slots,
                      VMM_MAX_DISKS);
        return NULL;
    }
    if (vmlet_mkdirs(cfg->dir, 0750, err) < 0)
        return NULL;
    vm_templates_t *self = vmlet_xcalloc(1, sizeof *self);
    self->cfg = *cfg;
    self->cfg.dir = vmlet_xstrdup(cfg->dir);
    self->cfg.kernel = vmlet_xstrdup(cfg->kernel);
    self->cfg.initramfs = vmlet_xstrdup(cfg->initramfs ? cfg->initramfs : "");
    self->cfg.cmdline = vmlet_xstrdup(cfg->cmdline ? cfg->cmdline : "");
    snprintf(self->placeholder, sizeof self->placeholder, "%s/placeholder.img", cfg->dir);
    int fd = open(self->placeholder, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0 || ftruncate(fd, PLACEHOLDER_BYTES) < 0) {
        vmlet_err_errno(err, errno, "templates: %s", self->placeholder);
        if (fd >= 0)
            close(fd);
        vm_templates_destroy(&self);
        return NULL;
    }
    close(fd);
    vmlet_metrics_t *m = cfg->metrics;
    self->ready = vmlet_metrics_gauge(m, "vmlet_launcher_templates_ready",
                                      "Templates ready to restore pods from.", NULL);
    self->builds_ok = vmlet_metrics_counter(m, "vmlet_launcher_template_builds_total",
                                            "Templates made, by result.", "result=\"ok\"");
    self->builds_failed = vmlet_metrics_counter(m, "vmlet_launcher_template_builds_total",
                                                "Templates made, by result.", "result=\"failed\"");
    self->dropped = vmlet_metrics_counter(m, "vmlet_launcher_templates_dropped_total",
                                          "Templates dropped after a failed restore.", NULL);
    static const double bounds[] = {1, 2, 3, 5, 10, 20, 40, 80};
    self->build_seconds =
        vmlet_metrics_histogram(m, "vmlet_launcher_template_build_seconds",
                                "Time to make a template: boot to the agent, then save.", NULL,
                                bounds, sizeof bounds / sizeof bounds[0]);
    self->timer = zloop_timer(cfg->loop, TICK_MS, 0, s_on_tick, self);
    return self;
}

void vm_templates_destroy(vm_templates_t **self_p)
{
    vm_templates_t *self = *self_p;
    if (!self)
        return;
    if (self->cfg.loop && self->timer > 0)
        zloop_timer_end(self->cfg.loop, self->timer);
    for (size_t i = 0; i < self->n; i++) {
        template_t *t = self->templates[i];
        if (t->state == T_BUILDING || t->state == T_QUIESCE) {
            s_stop_vm(t);
            s_remove_tree(t->build_dir);
        }
        free(t->inputs);
        free(t);
    }
    free((char *)self->cfg.dir);
    free((char *)self->cfg.kernel);
    free((char *)self->cfg.initramfs);
    free((char *)self->cfg.cmdline);
    free(self);
    *self_p = NULL;
}
