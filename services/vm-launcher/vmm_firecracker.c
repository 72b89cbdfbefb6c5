// The Firecracker backend: `firecracker --api-sock`, started with a double
// fork so it is nobody's child, then configured over its API socket in
// the order of Firecracker's getting-started guide and started with
// InstanceStart. The guest agent is reached over vsock: the host connects
// to the vsock UDS and asks for the agent's port ("CONNECT 1024\n", answered
// "OK <host port>\n"). It needs working KVM, so it cannot run on the
// machines this project is developed on; tests check its requests against
// the published API contract instead (test_firecracker_api_fake).
// Templates (snapshot and restore) are in vmm_firecracker_snapshot.c.
#include "firecracker_api.h"
#include "vmm_backend.h"

#include "vmlet/timeutil.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Kernel arguments of Firecracker guests (its docs): reboot=k makes a
// reboot (and Ctrl+Alt+Del) end the Firecracker process, pci=off as it has
// no PCI, the i8042 options skip the keyboard probing delay.
#define FC_BASE_CMDLINE                                                                            \
    "console=ttyS0 reboot=k panic=-1 pci=off quiet i8042.noaux i8042.nomux i8042.nopnp "           \
    "i8042.dumbkbd"
#define FC_GUEST_CID 3 // vsock is per-VMM here (a UDS), so every VM may use 3
#define FC_IFACE_ID "eth0"

// Firecracker's --id takes [A-Za-z0-9-]{1,64}.
static void s_fc_id(const char *id, char *out, size_t cap)
{
    size_t i = 0;
    for (; id[i] && i + 1 < cap; i++)
        out[i] = isalnum((unsigned char)id[i]) ? id[i] : '-';
    out[i] = '\0';
}

static int s_check(vmm_t *vmm, vmlet_err_t *err)
{
    if (!vmm->kvm.usable)
        return vmlet_err_set(err,
                             "backend firecracker: no working KVM (%s); Firecracker needs "
                             "hardware virtualisation: use backend qemu, which falls back to TCG",
                             vmm->kvm.reason);
    char out[512];
    char *argv[] = {(char *)vmm->settings.firecracker_binary, "--version", NULL};
    int rc = vmm_run_capture(argv, 5000, out, sizeof out, err);
    if (rc < 0)
        return vmlet_err_wrap(err, "backend firecracker");
    int major, minor, patch;
    if (rc != 0 || fc_parse_version(out, &major, &minor, &patch) < 0)
        return vmlet_err_set(err, "backend firecracker: %s --version said \"%.80s\" (status %d)",
                             argv[0], out, rc);
    if (major < FC_API_MIN_MAJOR || (major == FC_API_MIN_MAJOR && minor < FC_API_MIN_MINOR))
        return vmlet_err_set(err,
                             "backend firecracker: %s is v%d.%d.%d; vmlet needs >= %d.%d (virtio "
                             "devices declared through ACPI, which Debian's cloud kernel needs)",
                             argv[0], major, minor, patch, FC_API_MIN_MAJOR, FC_API_MIN_MINOR);
    vmm->use_kvm = true;
    return 0;
}

// The configuration requests, in order, before InstanceStart.
static int s_configure(fc_api_t *api, const vmm_spec_t *spec, const vmm_vm_t *vm, vmlet_err_t *err)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddNumberToObject(body, "vcpu_count", spec->vcpus);
    cJSON_AddNumberToObject(body, "mem_size_mib", spec->mem_mib);
    cJSON_AddBoolToObject(body, "smt", false);
    int rc = fc_api_put(api, "/machine-config", body, err);
    cJSON_Delete(body);
    if (rc < 0)
        return -1;

    char *args = vmm_kernel_cmdline(FC_BASE_CMDLINE, 0, spec->cmdline);
    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "kernel_image_path", spec->kernel);
    if (spec->initrd && *spec->initrd)
        cJSON_AddStringToObject(body, "initrd_path", spec->initrd);
    cJSON_AddStringToObject(body, "boot_args", args);
    free(args);
    rc = fc_api_put(api, "/boot-source", body, err);
    cJSON_Delete(body);
    if (rc < 0)
        return -1;

    // Drives appear in the guest in the order they are added (vda, vdb...):
    // Firecracker has no drive serials, so the order is the contract.
    for (size_t i = 0; i < spec->n_disks; i++) {
        char drive_id[32], path[64];
        snprintf(drive_id, sizeof drive_id, FC_DRIVE_ID_FMT, i);
        snprintf(path, sizeof path, "/drives/%s", drive_id);
        body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "drive_id", drive_id);
        cJSON_AddStringToObject(body, "path_on_host", spec->disks[i].path);
        cJSON_AddBoolToObject(body, "is_root_device", false); // the root is the initramfs
        cJSON_AddBoolToObject(body, "is_read_only", spec->disks[i].read_only);
        rc = fc_api_put(api, path, body, err);
        cJSON_Delete(body);
        if (rc < 0)
            return -1;
    }

    if (spec->nic) {
        body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "iface_id", FC_IFACE_ID);
        cJSON_AddStringToObject(body, "host_dev_name", spec->nic->tap);
        cJSON_AddStringToObject(body, "guest_mac", spec->nic->mac);
        rc = fc_api_put(api, "/network-interfaces/" FC_IFACE_ID, body, err);
        cJSON_Delete(body);
        if (rc < 0)
            return -1;
    }

    body = cJSON_CreateObject();
    cJSON_AddNumberToObject(body, "guest_cid", FC_GUEST_CID);
    cJSON_AddStringToObject(body, "uds_path", vm->agent);
    rc = fc_api_put(api, "/vsock", body, err);
    cJSON_Delete(body);
    if (rc < 0)
        return -1;

    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "action_type", "InstanceStart");
    rc = fc_api_put(api, "/actions", body, err);
    cJSON_Delete(body);
    return rc;
}

// Waits for the API socket, then asks for the instance info.
static int s_api_ready(vmm_vm_t *vm, int timeout_ms, cJSON **info, vmlet_err_t *err)
{
    int fd = vmm_unix_connect(vm->control, timeout_ms, err);
    if (fd < 0)
        return -1;
    close(fd);
    fc_api_t *api = fc_api_new(vm->control, vm->vmm->settings.control_timeout_ms);
    if (!api)
        return vmlet_err_set(err, "curl_easy_init failed");
    int rc = fc_api_call(api, "GET", "/", NULL, info, NULL, err);
    fc_api_destroy(&api);
    return rc;
}

// Writes <state_dir>/vmm.pid: how an operator (and the tests) find the
// process without the state file.
static int s_write_pidfile(const vmm_vm_t *vm, vmlet_err_t *err)
{
    char pidfile[VMM_SUN_PATH_MAX + 16];
    snprintf(pidfile, sizeof pidfile, "%s/%s", vm->state_dir, VMM_FILE_PID);
    FILE *f = fopen(pidfile, "we");
    if (f && fprintf(f, "%d\n", (int)vm->pid) > 0 && fclose(f) == 0)
        return 0;
    int e = errno;
    if (f)
        fclose(f);
    return vmlet_err_errno(err, e, "writing %s", pidfile);
}

vmm_vm_t *fc_vm_launch(vmm_t *vmm, const vmm_spec_t *spec, const char *agent_uds, int64_t deadline,
                       vmlet_err_t *err)
{
    vmm_vm_t *vm = vmm_vm_alloc(vmm, spec->id, spec->state_dir, err);
    if (!vm)
        return NULL;
    if (agent_uds)
        snprintf(vm->agent, sizeof vm->agent, "%s", agent_uds); // the caller checked its length
    vmlet_err_t ignored;
    vmm_vm_t *old = vmm_adopt_common(vmm, vm->state_dir, &ignored);
    if (old) {
        vmlet_err_set(err, "already runs (pid %d); adopt it instead", old->pid);
        vmm_vm_free(&old);
        vmm_vm_free(&vm);
        return NULL;
    }
    char console[VMM_SUN_PATH_MAX + 16];
    snprintf(console, sizeof console, "%s/%s", vm->state_dir, VMM_FILE_CONSOLE);
    // Firecracker refuses to start on an existing API socket path, and to
    // bind a vsock UDS that exists.
    unlink(vm->control);
    unlink(vm->agent);
    char fc_id[VMM_ID_MAX + 1];
    s_fc_id(vm->id, fc_id, sizeof fc_id);
    char *argv[] = {
        (char *)vmm->settings.firecracker_binary, "--api-sock", vm->control, "--id", fc_id, NULL};
    pid_t pid = -1;
    int left = (int)(deadline - vmlet_now_ms());
    // Its stdout is the guest's serial console (and Firecracker's own log).
    int rc = vmm_spawn(vmm, argv, spec->netns, console, VMM_SPAWN_DETACH, left > 100 ? left : 100,
                       &pid, err);
    if (rc == 0)
        rc = vmm_vm_attach_pid(vm, pid, err);
    if (rc == 0)
        rc = s_write_pidfile(vm, err);
    if (rc == 0) // from here on, adopt (and so a later kill) finds it
        rc = vmm_state_write(vm, err);
    if (rc == 0) {
        left = (int)(deadline - vmlet_now_ms());
        rc = s_api_ready(vm, left > 100 ? left : 100, NULL, err);
    }
    if (rc < 0) {
        fc_vm_abort(&vm);
        return NULL;
    }
    return vm;
}

void fc_vm_abort(vmm_vm_t **vm_p)
{
    if (!vm_p || !*vm_p)
        return;
    if ((*vm_p)->pid > 0)
        vmm_common_kill(*vm_p, 2000, NULL);
    vmm_vm_free(vm_p);
}

// What start checks beyond vmm_spec_check, because Firecracker needs it.
static int s_start_check(const vmm_spec_t *spec, vmlet_err_t *err)
{
    if (!spec->state_dir || spec->state_dir[0] != '/')
        return vmlet_err_set(err, "VM %s: state dir \"%s\" must be an absolute path", spec->id,
                             spec->state_dir ? spec->state_dir : "");
    // A template VM's NIC would be useless: the snapshot bakes in the tap
    // name, and the API this backend pins (v1.8) has no way to point a
    // restored NIC at the pod's own tap (network_overrides came later), so
    // restore refuses a NIC; say so before the boot, not after it.
    if (spec->nic && spec->template_dir)
        return vmlet_err_set(err,
                             "VM %s: a Firecracker template cannot have a network interface: "
                             "snapshot/load reopens the template's tap and the Firecracker API "
                             "vmlet pins (v%d.%d) cannot rename it (no network_overrides); build "
                             "the template without a NIC, or cold-boot pods with network",
                             spec->id, FC_API_MIN_MAJOR, FC_API_MIN_MINOR);
    // Firecracker has no NIC without a host device: host_dev_name is
    // required and is opened (TUNSETIFF) at PUT /network-interfaces.
    if (spec->nic && (!spec->nic->tap || !*spec->nic->tap))
        return vmlet_err_set(err,
                             "VM %s: a Firecracker network interface needs a host tap "
                             "(host_dev_name is required and opened at configuration); give the "
                             "NIC a tap or leave the VM without one",
                             spec->id);
    return vmm_spec_check(spec, err);
}

static vmm_vm_t *s_start(vmm_t *vmm, const vmm_spec_t *spec, vmlet_err_t *err)
{
    if (s_start_check(spec, err) < 0)
        return NULL;
    int64_t deadline = vmlet_now_ms() + vmm->settings.start_timeout_ms;
    // A template VM's vsock UDS is next to the template's directory: its
    // path is baked into the snapshot (vmm_firecracker_snapshot.c).
    char uds[VMM_SUN_PATH_MAX] = "";
    if (spec->template_dir && fc_template_begin(spec, uds, sizeof uds, err) < 0) {
        vmlet_err_wrap(err, "VM %s: firecracker template", spec->id);
        return NULL;
    }
    vmm_vm_t *vm = fc_vm_launch(vmm, spec, uds[0] ? uds : NULL, deadline, err);
    if (!vm) {
        vmlet_err_wrap(err, "VM %s: firecracker", spec->id);
        return NULL;
    }
    fc_api_t *api = fc_api_new(vm->control, vmm->settings.control_timeout_ms);
    int rc = api ? s_configure(api, spec, vm, err) : vmlet_err_set(err, "curl_easy_init failed");
    fc_api_destroy(&api);
    if (rc < 0) {
        vmlet_err_wrap(err, "VM %s: firecracker", spec->id);
        fc_vm_abort(&vm);
        return NULL;
    }
    return vm;
}

// A template VM's vsock UDS is not <state_dir>/agent.sock (see s_start):
// adopt takes the path the state file recorded.
static void s_recorded_agent(vmm_vm_t *vm)
{
    cJSON *state = vmm_state_read(vm->state_dir, NULL);
    const char *agent = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(state, "agent"));
    if (agent && agent[0] == '/' && strlen(agent) < sizeof vm->agent)
        snprintf(vm->agent, sizeof vm->agent, "%s", agent);
    cJSON_Delete(state);
}

static vmm_vm_t *s_adopt(vmm_t *vmm, const char *state_dir, vmlet_err_t *err)
{
    vmm_vm_t *vm = vmm_adopt_common(vmm, state_dir, err);
    if (!vm)
        return NULL;
    char fc_id[VMM_ID_MAX + 1];
    s_fc_id(vm->id, fc_id, sizeof fc_id);
    if (!vmm_cmdline_has(vm->pid, "--api-sock") || !vmm_cmdline_has(vm->pid, fc_id)) {
        vmlet_err_set(err, "VM %s: process %d is not its Firecracker (no --id %s)", vm->id, vm->pid,
                      fc_id);
        vmm_vm_free(&vm);
        return NULL;
    }
    s_recorded_agent(vm);
    cJSON *info = NULL;
    if (s_api_ready(vm, vmm->settings.control_timeout_ms, &info, err) < 0) {
        vmlet_err_wrap(err, "VM %s: adopting pid %d", vm->id, vm->pid);
        vmm_vm_free(&vm);
        return NULL;
    }
    cJSON_Delete(info);
    return vm;
}

// Reads one "\n"-ended line byte by byte, so nothing after it (the agent's
// first bytes) is consumed.
static int s_read_line(int fd, char *buf, size_t cap, int64_t deadline)
{
    size_t n = 0;
    while (n + 1 < cap) {
        int left = (int)(deadline - vmlet_now_ms());
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0)
            return -ETIMEDOUT;
        ssize_t got = read(fd, buf + n, 1);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0)
            return got == 0 ? -EPIPE : -errno;
        if (buf[n] == '\n') {
            buf[n] = '\0';
            return 0;
        }
        n++;
    }
    return -E2BIG;
}

int vmm_vsock_connect(const char *uds, unsigned port, int timeout_ms, vmlet_err_t *err)
{
    int64_t deadline = vmlet_now_ms() + timeout_ms;
    int fd = vmm_unix_connect(uds, timeout_ms, err);
    if (fd < 0)
        return -1;
    char line[64];
    int n = snprintf(line, sizeof line, "CONNECT %u\n", port);
    if (write(fd, line, (size_t)n) != n) {
        int e = errno;
        close(fd);
        return vmlet_err_errno(err, e, "vsock %s: sending CONNECT", uds);
    }
    int rc = s_read_line(fd, line, sizeof line, deadline);
    unsigned long host_port;
    char extra;
    if (rc == 0 && sscanf(line, "OK %lu%c", &host_port, &extra) == 1) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        return fd;
    }
    close(fd);
    if (rc == -EPIPE)
        return vmlet_err_set(err,
                             "vsock %s: CONNECT %u: closed (nothing listens on port %u in "
                             "the guest yet)",
                             uds, port, port);
    if (rc == -ETIMEDOUT)
        return vmlet_err_set(err, "vsock %s: CONNECT %u: no answer within %d ms", uds, port,
                             timeout_ms);
    if (rc < 0)
        return vmlet_err_errno(err, -rc, "vsock %s: CONNECT %u", uds, port);
    return vmlet_err_set(err, "vsock %s: CONNECT %u: answered \"%.40s\", want \"OK <port>\"", uds,
                         port, line);
}

static int s_agent_connect(vmm_vm_t *vm, int timeout_ms, vmlet_err_t *err)
{
    int fd = vmm_vsock_connect(vm->agent, vm->vmm->settings.agent_vsock_port, timeout_ms, err);
    return fd < 0 ? vmlet_err_wrap(err, "VM %s: agent channel", vm->id) : fd;
}

static int s_shutdown(vmm_vm_t *vm, vmlet_err_t *err)
{
    fc_api_t *api = fc_api_new(vm->control, vm->vmm->settings.control_timeout_ms);
    if (!api)
        return vmlet_err_set(err, "curl_easy_init failed");
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "action_type", "SendCtrlAltDel");
    int rc = fc_api_put(api, "/actions", body, err);
    cJSON_Delete(body);
    fc_api_destroy(&api);
    return rc < 0 ? vmlet_err_wrap(err, "VM %s: shutdown", vm->id) : 0;
}

const vmm_ops_t vmm_firecracker_ops = {
    .name = "firecracker",
    .check = s_check,
    .start = s_start,
    .adopt = s_adopt,
    .agent_connect = s_agent_connect,
    .shutdown = s_shutdown,
    .kill = vmm_common_kill,
    .alive = vmm_common_alive,
    .rss_bytes = vmm_common_rss_bytes,
    .release = vmm_common_release,
    .template_save = fc_template_save,
    .restore = fc_restore,
};
