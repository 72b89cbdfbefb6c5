// Backend selection, the dispatching wrappers, and what every backend
// shares: the VM handle, process checks through /proc and pidfds, the
// state file, and unix socket connects with deadlines.
#include "vmm_backend.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const vmm_ops_t *const s_backends[] = {&vmm_qemu_ops, &vmm_firecracker_ops};

// --- selection ----------------------------------------------------------

vmm_t *vmm_new(const vmm_settings_t *settings, vmlet_err_t *err)
{
    const char *name = settings->backend ? settings->backend : "qemu";
    const vmm_ops_t *ops = NULL;
    for (size_t i = 0; i < sizeof s_backends / sizeof s_backends[0]; i++)
        if (strcmp(s_backends[i]->name, name) == 0)
            ops = s_backends[i];
    if (!ops) {
        vmlet_err_set(err, "VMM backend \"%s\" is unknown; choose qemu or firecracker", name);
        return NULL;
    }
    const char *accel = settings->accel ? settings->accel : "auto";
    if (strcmp(accel, "auto") != 0 && strcmp(accel, "kvm") != 0 && strcmp(accel, "tcg") != 0) {
        vmlet_err_set(err, "VMM accel \"%s\" is unknown; choose auto, kvm or tcg", accel);
        return NULL;
    }
    vmm_t *self = vmlet_xcalloc(1, sizeof *self);
    self->ops = ops;
    self->settings = *settings;
    self->settings.backend = ops->name;
    self->settings.qemu_binary =
        vmlet_xstrdup(settings->qemu_binary ? settings->qemu_binary : "qemu-system-x86_64");
    self->settings.firecracker_binary =
        vmlet_xstrdup(settings->firecracker_binary ? settings->firecracker_binary : "firecracker");
    self->settings.accel = vmlet_xstrdup(accel);
    self->settings.qemu_cpu = vmlet_xstrdup(settings->qemu_cpu);
    self->settings.vmm_host = vmlet_xstrdup(settings->vmm_host);
    self->settings.kvm = NULL;
    if (self->settings.tcg_tb_size_mib <= 0)
        self->settings.tcg_tb_size_mib = 32;
    if (self->settings.start_timeout_ms <= 0)
        self->settings.start_timeout_ms = 10000;
    if (self->settings.control_timeout_ms <= 0)
        self->settings.control_timeout_ms = 3000;
    if (self->settings.agent_vsock_port == 0)
        self->settings.agent_vsock_port = 1024;
    // The probe is only worth its ~2 s where its verdict matters.
    if (settings->kvm)
        self->kvm = *settings->kvm;
    else if (ops == &vmm_firecracker_ops || strcmp(accel, "auto") == 0)
        kvm_probe_run(NULL, 0, &self->kvm);
    else
        snprintf(self->kvm.reason, sizeof self->kvm.reason, "not probed (accel %s)", accel);
    if (ops->check(self, err) < 0) {
        vmm_destroy(&self);
        return NULL;
    }
    return self;
}

void vmm_destroy(vmm_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmm_t *self = *self_p;
    free((char *)self->settings.qemu_binary);
    free((char *)self->settings.firecracker_binary);
    free((char *)self->settings.accel);
    free((char *)self->settings.qemu_cpu);
    free((char *)self->settings.vmm_host);
    free(self);
    *self_p = NULL;
}

const vmm_ops_t *vmm_ops(const vmm_t *self)
{
    return self->ops;
}

const kvm_probe_t *vmm_kvm(const vmm_t *self)
{
    return &self->kvm;
}

const char *vmm_describe(const vmm_t *self, char *buf, size_t cap)
{
    if (self->ops == &vmm_qemu_ops && !self->use_kvm)
        snprintf(buf, cap, "qemu (tcg, tb-size %d MiB, guest TSC %ld kHz; KVM: %s)",
                 self->settings.tcg_tb_size_mib, self->tsc_khz, self->kvm.reason);
    else
        snprintf(buf, cap, "%s (kvm: %s)", self->ops->name, self->kvm.reason);
    return buf;
}

// What a template made with this VMM depends on. The TSC rate in MHz, not
// kHz: the measurement varies by a few kHz (a few ppm) from one start to
// the next, which must not make every launcher restart build anew.
const char *vmm_template_inputs(const vmm_t *self, char *buf, size_t cap)
{
    if (self->ops == &vmm_qemu_ops && !self->use_kvm)
        snprintf(buf, cap, "qemu %s tcg tb-size=%d tsc=%ldMHz cpu=%s", self->settings.qemu_binary,
                 self->settings.tcg_tb_size_mib, (self->tsc_khz + 500) / 1000,
                 self->settings.qemu_cpu ? self->settings.qemu_cpu : "");
    else if (self->ops == &vmm_qemu_ops)
        snprintf(buf, cap, "qemu %s kvm cpu=%s", self->settings.qemu_binary,
                 self->settings.qemu_cpu ? self->settings.qemu_cpu : "");
    else
        snprintf(buf, cap, "%s %s", self->ops->name, self->settings.firecracker_binary);
    return buf;
}

// --- the wrappers -------------------------------------------------------

vmm_vm_t *vmm_start(vmm_t *vmm, const vmm_spec_t *spec, vmlet_err_t *err)
{
    return vmm->ops->start(vmm, spec, err);
}

vmm_vm_t *vmm_adopt(vmm_t *vmm, const char *state_dir, vmlet_err_t *err)
{
    return vmm->ops->adopt(vmm, state_dir, err);
}

int vmm_agent_connect(vmm_vm_t *vm, int timeout_ms, vmlet_err_t *err)
{
    return vm->vmm->ops->agent_connect(vm, timeout_ms, err);
}

int vmm_shutdown(vmm_vm_t *vm, vmlet_err_t *err)
{
    return vm->vmm->ops->shutdown(vm, err);
}

int vmm_kill(vmm_vm_t *vm, int timeout_ms, vmlet_err_t *err)
{
    return vm->vmm->ops->kill(vm, timeout_ms, err);
}

bool vmm_alive(vmm_vm_t *vm)
{
    return vm->vmm->ops->alive(vm);
}

int64_t vmm_rss_bytes(vmm_vm_t *vm)
{
    return vm->vmm->ops->rss_bytes(vm);
}

void vmm_release(vmm_vm_t **vm_p)
{
    if (vm_p && *vm_p)
        (*vm_p)->vmm->ops->release(vm_p);
}

int vmm_template_save(vmm_vm_t *vm, const char *template_dir, int timeout_ms, vmlet_err_t *err)
{
    return vm->vmm->ops->template_save(vm, template_dir, timeout_ms, err);
}

vmm_vm_t *vmm_restore(vmm_t *vmm, const vmm_spec_t *spec, const char *template_dir,
                      vmlet_err_t *err)
{
    return vmm->ops->restore(vmm, spec, template_dir, err);
}

pid_t vmm_vm_pid(const vmm_vm_t *vm)
{
    return vm->pid;
}

const char *vmm_vm_id(const vmm_vm_t *vm)
{
    return vm->id;
}

const char *vmm_vm_state_dir(const vmm_vm_t *vm)
{
    return vm->state_dir;
}

int vmm_vm_exit_fd(const vmm_vm_t *vm)
{
    return vm->pidfd;
}

// --- the handle ---------------------------------------------------------

int vmm_path(char *buf, size_t cap, const char *state_dir, const char *name, vmlet_err_t *err)
{
    int n = snprintf(buf, cap, "%s/%s", state_dir, name);
    if (n < 0 || (size_t)n >= cap)
        return vmlet_err_set(err,
                             "state dir %s: too long for %s (a unix socket path has at most %zu "
                             "bytes); use a shorter state directory",
                             state_dir, name, cap - 1);
    return 0;
}

static bool s_valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > VMM_ID_MAX)
        return false;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
            return false;
    return true;
}

vmm_vm_t *vmm_vm_alloc(vmm_t *vmm, const char *id, const char *state_dir, vmlet_err_t *err)
{
    if (!id || !s_valid_id(id)) {
        vmlet_err_set(err, "VM id \"%s\": want 1 to %d of [A-Za-z0-9._-]", id ? id : "",
                      VMM_ID_MAX);
        return NULL;
    }
    vmm_vm_t *vm = vmlet_xcalloc(1, sizeof *vm);
    vm->vmm = vmm;
    vm->pid = -1;
    vm->pidfd = -1;
    snprintf(vm->id, sizeof vm->id, "%s", id);
    if (!state_dir || strlen(state_dir) >= sizeof vm->state_dir ||
        vmm_path(vm->control, sizeof vm->control, state_dir, VMM_FILE_CONTROL, err) < 0 ||
        vmm_path(vm->agent, sizeof vm->agent, state_dir, VMM_FILE_AGENT, err) < 0) {
        if (state_dir && strlen(state_dir) >= sizeof vm->state_dir)
            vmlet_err_set(err, "state dir %s: too long", state_dir);
        free(vm);
        return NULL;
    }
    snprintf(vm->state_dir, sizeof vm->state_dir, "%s", state_dir);
    return vm;
}

void vmm_vm_free(vmm_vm_t **vm_p)
{
    if (!vm_p || !*vm_p)
        return;
    if ((*vm_p)->pidfd >= 0)
        close((*vm_p)->pidfd);
    free(*vm_p);
    *vm_p = NULL;
}

// Field 22 (start time) and the state letter of /proc/<pid>/stat.
// Field `to` of a stat line, from where field `from` starts.
static char *s_skip_fields(char *p, int from, int to)
{
    for (int f = from; f < to && p; f++) {
        p = strchr(p, ' ');
        p = p ? p + 1 : NULL;
    }
    return p;
}

// /proc/<pid>/stat into buf; returns where field `field` (1-based, as
// proc(5) numbers them, from 3 on) starts, or NULL. The command name may
// hold spaces and parentheses: fields start after the last ')'.
static char *s_proc_stat_field(pid_t pid, int field, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return NULL;
    return s_skip_fields(p + 2, 3, field);
}

static int s_proc_stat(pid_t pid, unsigned long long *start_time, char *state)
{
    char buf[1024];
    char *p = s_proc_stat_field(pid, 3, buf, sizeof buf);
    if (!p)
        return -1;
    *state = *p;
    p = s_skip_fields(p, 3, 22);
    if (!p)
        return -1;
    *start_time = strtoull(p, NULL, 10);
    return 0;
}

int vmm_vm_attach_pid(vmm_vm_t *vm, pid_t pid, vmlet_err_t *err)
{
    char state;
    unsigned long long start_time;
    if (pid <= 0 || s_proc_stat(pid, &start_time, &state) < 0 || state == 'Z' || state == 'X')
        return vmlet_err_set(err, "VM %s: process %d is not running", vm->id, (int)pid);
    vm->pid = pid;
    vm->start_time = start_time;
    if (vm->pidfd >= 0)
        close(vm->pidfd);
    vm->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    // Between stat and pidfd_open the pid could have been reused: look again.
    unsigned long long again;
    if (s_proc_stat(pid, &again, &state) < 0 || again != start_time)
        return vmlet_err_set(err, "VM %s: process %d exited while being attached", vm->id,
                             (int)pid);
    return 0;
}

bool vmm_cmdline_has(pid_t pid, const char *arg)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t cap = 64 * 1024, n = 0;
    char *buf = vmlet_xmalloc(cap + 1);
    ssize_t got;
    while (n < cap && (got = read(fd, buf + n, cap - n)) > 0)
        n += (size_t)got;
    close(fd);
    buf[n] = '\0';
    bool found = false;
    for (size_t i = 0; i < n && !found; i += strlen(buf + i) + 1)
        found = strcmp(buf + i, arg) == 0;
    free(buf);
    return found;
}

// --- the common operations ------------------------------------------------

bool vmm_common_alive(vmm_vm_t *vm)
{
    if (vm->pid <= 0)
        return false;
    if (vm->pidfd >= 0) {
        struct pollfd p = {.fd = vm->pidfd, .events = POLLIN};
        return poll(&p, 1, 0) == 0;
    }
    char state;
    unsigned long long start_time;
    return s_proc_stat(vm->pid, &start_time, &state) == 0 && start_time == vm->start_time &&
           state != 'Z' && state != 'X';
}

int vmm_wait_exit(vmm_vm_t *vm, int timeout_ms)
{
    int64_t deadline = vmlet_now_ms() + timeout_ms;
    for (;;) {
        if (!vm->vmm->ops->alive(vm))
            return 0;
        int64_t left = deadline - vmlet_now_ms();
        if (left <= 0)
            return -1;
        if (vm->pidfd >= 0) {
            struct pollfd p = {.fd = vm->pidfd, .events = POLLIN};
            poll(&p, 1, (int)left);
        } else {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

int vmm_common_kill(vmm_vm_t *vm, int timeout_ms, vmlet_err_t *err)
{
    if (!vmm_common_alive(vm))
        return 0;
    // Through the pidfd the signal cannot reach a process that reused the pid.
    int rc = vm->pidfd >= 0 ? (int)syscall(SYS_pidfd_send_signal, vm->pidfd, SIGKILL, NULL, 0)
                            : kill(vm->pid, SIGKILL);
    if (rc < 0 && errno != ESRCH)
        return vmlet_err_errno(err, errno, "VM %s: kill %d", vm->id, (int)vm->pid);
    if (vmm_wait_exit(vm, timeout_ms) < 0)
        return vmlet_err_set(err, "VM %s: process %d still there %d ms after SIGKILL", vm->id,
                             (int)vm->pid, timeout_ms);
    return 0;
}

int64_t vmm_common_rss_bytes(vmm_vm_t *vm)
{
    if (!vmm_common_alive(vm))
        return -1;
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)vm->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *line = strstr(buf, "\nVmRSS:");
    if (!line)
        return -1;
    return strtoll(line + 7, NULL, 10) * 1024;
}

int64_t vmm_cpu_ms(const vmm_vm_t *vm)
{
    char buf[1024], *end;
    char *p = s_proc_stat_field(vm->pid, 14, buf, sizeof buf); // utime, then stime
    if (!p)
        return -1;
    unsigned long long utime = strtoull(p, &end, 10);
    unsigned long long stime = strtoull(end, NULL, 10);
    long hz = sysconf(_SC_CLK_TCK);
    return hz > 0 ? (int64_t)((utime + stime) * 1000 / (unsigned long long)hz) : -1;
}

void vmm_common_release(vmm_vm_t **vm_p)
{
    vmm_vm_free(vm_p);
}

int vmm_remove_files(vmm_vm_t *vm, vmlet_err_t *err)
{
    if (vm->vmm->ops->alive(vm))
        return vmlet_err_set(err, "VM %s: still running; stop it before removing its files",
                             vm->id);
    const char *names[] = {VMM_FILE_CONTROL, VMM_FILE_AGENT, VMM_FILE_PID, VMM_FILE_STATE};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[VMM_SUN_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/%s", vm->state_dir, names[i]);
        if (unlink(path) < 0 && errno != ENOENT)
            return vmlet_err_errno(err, errno, "removing %s", path);
    }
    return 0;
}

// --- the state file -------------------------------------------------------

int vmm_state_write(const vmm_vm_t *vm, vmlet_err_t *err)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddNumberToObject(obj, "version", 1);
    cJSON_AddStringToObject(obj, "backend", vm->vmm->ops->name);
    cJSON_AddStringToObject(obj, "id", vm->id);
    cJSON_AddNumberToObject(obj, "pid", vm->pid);
    // As a string: start times in clock ticks can exceed a double's exact range in theory.
    char start[32];
    snprintf(start, sizeof start, "%llu", vm->start_time);
    cJSON_AddStringToObject(obj, "start_time", start);
    cJSON_AddStringToObject(obj, "control", vm->control);
    cJSON_AddStringToObject(obj, "agent", vm->agent);
    char *text = cJSON_Print(obj);
    cJSON_Delete(obj);
    char path[VMM_SUN_PATH_MAX + 64], tmp[VMM_SUN_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", vm->state_dir, VMM_FILE_STATE);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", vm->state_dir, VMM_FILE_STATE);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        free(text);
        return vmlet_err_errno(err, errno, "writing %s", tmp);
    }
    size_t len = strlen(text);
    bool ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    int e = errno;
    close(fd);
    free(text);
    if (!ok || rename(tmp, path) < 0) {
        e = ok ? errno : e;
        unlink(tmp);
        return vmlet_err_errno(err, e, "writing %s", path);
    }
    return 0;
}

cJSON *vmm_state_read(const char *state_dir, vmlet_err_t *err)
{
    char path[VMM_SUN_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", state_dir, VMM_FILE_STATE);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vmlet_err_errno(err, errno, "reading %s", path);
        return NULL;
    }
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    cJSON *obj = n > 0 ? cJSON_ParseWithLength(buf, (size_t)n) : NULL;
    if (!cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        vmlet_err_set(err, "%s: not a VM state file", path);
        return NULL;
    }
    return obj;
}

vmm_vm_t *vmm_adopt_common(vmm_t *vmm, const char *state_dir, vmlet_err_t *err)
{
    cJSON *state = vmm_state_read(state_dir, err);
    if (!state)
        return NULL;
    const char *backend = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(state, "backend"));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(state, "id"));
    const char *start = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(state, "start_time"));
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(state, "pid");
    vmm_vm_t *vm = NULL;
    if (!backend || !id || !start || !cJSON_IsNumber(pid)) {
        vmlet_err_set(err, "%s/%s: missing fields", state_dir, VMM_FILE_STATE);
    } else if (strcmp(backend, vmm->ops->name) != 0) {
        vmlet_err_set(err, "%s: the VM runs under %s, this launcher uses %s", state_dir, backend,
                      vmm->ops->name);
    } else if ((vm = vmm_vm_alloc(vmm, id, state_dir, err))) {
        unsigned long long want = strtoull(start, NULL, 10);
        if (vmm_vm_attach_pid(vm, (pid_t)pid->valuedouble, err) < 0) {
            vmm_vm_free(&vm);
        } else if (vm->start_time != want) {
            vmlet_err_set(err,
                          "VM %s: pid %d now belongs to another process (started at %llu, "
                          "the VM at %llu)",
                          id, vm->pid, vm->start_time, want);
            vmm_vm_free(&vm);
        }
    }
    cJSON_Delete(state);
    return vm;
}

// --- sockets and pid files --------------------------------------------------

int vmm_unix_connect(const char *path, int timeout_ms, vmlet_err_t *err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path)
        return vmlet_err_set(err, "%s: too long for a unix socket path", path);
    strcpy(addr.sun_path, path);
    int64_t deadline = vmlet_now_ms() + timeout_ms;
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return vmlet_err_errno(err, errno, "socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0)
            return fd;
        int e = errno;
        close(fd);
        // Not there yet (the VMM is still creating it) is worth a retry.
        bool retry = e == ENOENT || e == ECONNREFUSED || e == EAGAIN;
        if (!retry || vmlet_now_ms() >= deadline)
            return vmlet_err_errno(err, e, "connect %s", path);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int vmm_read_pidfile(const char *path, pid_t *pid, vmlet_err_t *err)
{
    char buf[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vmlet_err_errno(err, errno, "reading %s", path);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return vmlet_err_set(err, "%s: empty", path);
    buf[n] = '\0';
    long value = strtol(buf, NULL, 10);
    if (value <= 0)
        return vmlet_err_set(err, "%s: no pid in \"%s\"", path, buf);
    *pid = (pid_t)value;
    return 0;
}

void vmm_argv_free(char ***argv_p)
{
    if (!argv_p || !*argv_p)
        return;
    for (char **p = *argv_p; *p; p++)
        free(*p);
    free(*argv_p);
    *argv_p = NULL;
}
