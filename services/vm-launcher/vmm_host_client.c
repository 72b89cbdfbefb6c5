// Asking vmlet-vmm-host to start a VMM (vmm_host_client.h).
#include "vmm_host_client.h"

#include "vmm_backend.h"
#include "vmm_host_wire.h"

#include "vmlet/proto/vmm_host.pb-c.h"
#include "vmlet/timeutil.h"

#include <stdlib.h>
#include <unistd.h>

// Time the vmm-host gets beyond the start's own timeout (a busy host
// finishes another start first).
#define VMM_HOST_SLACK_MS 5000

static int s_exchange(const char *socket_path, const Vmlet__VmmSpawnRequest *req, const int *fds,
                      size_t n_fds, int timeout_ms, pid_t *pid_out, vmlet_err_t *err)
{
    int64_t deadline = vmlet_now_ms() + timeout_ms + VMM_HOST_SLACK_MS;
    cleanup_close int sock = vmm_unix_connect(socket_path, 1000, err);
    if (sock < 0)
        return vmlet_err_wrap(err, "vmm-host");
    size_t len = vmlet__vmm_spawn_request__get_packed_size(req);
    if (len > VMM_HOST_FRAME_MAX)
        return vmlet_err_set(err, "vmm-host: a command line of %zu bytes", len);
    cleanup_free uint8_t *body = malloc(len ? len : 1);
    if (!body)
        return vmlet_err_set(err, "out of memory");
    vmlet__vmm_spawn_request__pack(req, body);
    if (vmm_host_send(sock, body, len, fds, n_fds, err) < 0)
        return vmlet_err_wrap(err, "vmm-host %s", socket_path);
    cleanup_free uint8_t *answer = NULL;
    size_t answer_len = 0, n_got = 0;
    int got_fds[VMM_HOST_FDS_MAX];
    if (vmm_host_recv(sock, deadline, &answer, &answer_len, got_fds, &n_got, err) < 0)
        return vmlet_err_wrap(err, "vmm-host %s", socket_path);
    for (size_t i = 0; i < n_got; i++)
        close(got_fds[i]); // none expected
    Vmlet__VmmSpawnReply *reply = vmlet__vmm_spawn_reply__unpack(NULL, answer_len, answer);
    if (!reply)
        return vmlet_err_set(err, "vmm-host %s: an answer that is not a VmmSpawnReply",
                             socket_path);
    int rc = 0;
    if (reply->error && *reply->error)
        rc = vmlet_err_set(err, "%s (vmm-host)", reply->error);
    else if (pid_out)
        *pid_out = reply->has_pid ? reply->pid : -1;
    vmlet__vmm_spawn_reply__free_unpacked(reply, NULL);
    return rc;
}

int vmm_host_spawn(const char *socket_path, char *const argv[], int ns_fd, int out_fd,
                   vmm_spawn_mode_t mode, int timeout_ms, pid_t *pid_out, vmlet_err_t *err)
{
    Vmlet__VmmSpawnRequest req = VMLET__VMM_SPAWN_REQUEST__INIT;
    size_t n = 0;
    while (argv[n])
        n++;
    req.n_argv = n;
    req.argv = (char **)argv;
    req.has_detach = true;
    req.detach = mode == VMM_SPAWN_DETACH;
    req.has_timeout_ms = true;
    req.timeout_ms = timeout_ms;
    req.has_has_netns = true;
    req.has_netns = ns_fd >= 0;
    int fds[VMM_HOST_FDS_MAX] = {out_fd, ns_fd};
    return s_exchange(socket_path, &req, fds, ns_fd >= 0 ? 2 : 1, timeout_ms, pid_out, err);
}

int vmm_host_ping(const char *socket_path, int timeout_ms, vmlet_err_t *err)
{
    Vmlet__VmmSpawnRequest req = VMLET__VMM_SPAWN_REQUEST__INIT;
    return s_exchange(socket_path, &req, NULL, 0, timeout_ms, NULL, err);
}
