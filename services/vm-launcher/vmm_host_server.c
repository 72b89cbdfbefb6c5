// vmlet-vmm-host's socket (vmm_host_server.h).
#include "vmm_host_server.h"

#include "vmm_host_wire.h"
#include "vmm_spawn.h"

#include "vmlet/proto/vmm_host.pb-c.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

// How long a client has to send its request once connected.
#define REQUEST_TIMEOUT_MS 5000
// A start may not ask for more than this (the launcher's default is 10 s).
#define START_TIMEOUT_MAX_MS 120000

struct _vmm_host_server_t {
    char *socket_path;
    char **allow; // NULL-terminated
    int listen_fd;
    zloop_t *loop;
    int reap_timer;
    vmlet_log_t *log; // borrowed
    vmlet_metrics_t *metrics;
    vmlet_metric_t *spawn_seconds;
    vmlet_metric_t *reaped;
};

static char **s_split_allow(const char *list)
{
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    char **out = vmlet_xcalloc(n + 1, sizeof *out);
    size_t i = 0;
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0)
            out[i++] = vmlet_xstrndup(p, len);
        p += len + (end ? 1 : 0);
    }
    return out;
}

static bool s_allowed(const vmm_host_server_t *self, const char *command)
{
    for (char **a = self->allow; *a; a++)
        if (strcmp(*a, command) == 0)
            return true;
    return false;
}

static vmlet_metric_t *s_spawns(vmm_host_server_t *self, const char *result)
{
    char labels[64];
    snprintf(labels, sizeof labels, "result=\"%s\"", result);
    return vmlet_metrics_counter(self->metrics, "vmlet_vmm_host_spawns_total",
                                 "VMM start requests by result.", labels);
}

static void s_count(vmm_host_server_t *self, const char *result)
{
    vmlet_counter_inc(s_spawns(self, result));
}

// Only a peer running as us (or root) may start programs here; the
// socket's mode says the same, this holds even if it was loosened.
static int s_check_peer(int sock, vmlet_err_t *err)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return vmlet_err_errno(err, errno, "SO_PEERCRED");
    if (cred.uid != 0 && cred.uid != getuid())
        return vmlet_err_set(err, "uid %u may not start VMMs here", (unsigned)cred.uid);
    return 0;
}

// Does what one request asks; the answer's error (NULL: done) in err.
static int s_serve(vmm_host_server_t *self, const Vmlet__VmmSpawnRequest *req, const int *fds,
                   size_t n_fds, pid_t *pid, vmlet_err_t *err)
{
    if (req->n_argv == 0)
        return 0; // a ping
    size_t want = 1 + (req->has_netns ? 1 : 0);
    if (n_fds != want)
        return vmlet_err_set(err, "%zu descriptors sent, %zu expected (output%s)", n_fds, want,
                             req->has_netns ? ", network namespace" : "");
    if (!s_allowed(self, req->argv[0]))
        return vmlet_err_set(err, "\"%s\" is not a command this vmm-host runs (its --allow)",
                             req->argv[0]);
    int timeout = req->has_timeout_ms && req->timeout_ms > 0 ? req->timeout_ms : 10000;
    if (timeout > START_TIMEOUT_MAX_MS)
        timeout = START_TIMEOUT_MAX_MS;
    char **argv = vmlet_xcalloc(req->n_argv + 1, sizeof *argv);
    memcpy(argv, req->argv, req->n_argv * sizeof *argv);
    int64_t t0 = vmlet_now_ms();
    int rc = vmm_spawn_fds(argv, req->has_netns ? fds[1] : -1, fds[0],
                           req->detach ? VMM_SPAWN_DETACH : VMM_SPAWN_WAIT, timeout, pid, err);
    free(argv);
    vmlet_histogram_observe(self->spawn_seconds, (double)(vmlet_now_ms() - t0) / 1000.0);
    return rc;
}

static void s_reply(vmm_host_server_t *self, int sock, pid_t pid, const char *error)
{
    Vmlet__VmmSpawnReply reply = VMLET__VMM_SPAWN_REPLY__INIT;
    if (pid > 0) {
        reply.has_pid = true;
        reply.pid = pid;
    }
    reply.error = (char *)error;
    uint8_t buf[2048];
    size_t len = vmlet__vmm_spawn_reply__get_packed_size(&reply);
    if (len > sizeof buf) {
        reply.error = "(the error was too long to send)";
        len = vmlet__vmm_spawn_reply__get_packed_size(&reply);
    }
    vmlet__vmm_spawn_reply__pack(&reply, buf);
    vmlet_err_t err = {0};
    if (vmm_host_send(sock, buf, len, NULL, 0, &err) < 0)
        vmlet_log_warn(self->log, NULL, "answering a VMM start: %s", err.msg);
}

static void s_handle(vmm_host_server_t *self, int sock)
{
    vmlet_err_t err = {0};
    uint8_t *body = NULL;
    size_t len = 0, n_fds = 0;
    int fds[VMM_HOST_FDS_MAX];
    pid_t pid = -1;
    if (s_check_peer(sock, &err) < 0) {
        s_count(self, "refused");
        vmlet_log_warn(self->log, NULL, "refused a client: %s", err.msg);
        s_reply(self, sock, -1, err.msg);
        return;
    }
    if (vmm_host_recv(sock, vmlet_now_ms() + REQUEST_TIMEOUT_MS, &body, &len, fds, &n_fds, &err) <
        0) {
        s_count(self, "bad_request");
        vmlet_log_warn(self->log, NULL, "reading a request: %s", err.msg);
        return;
    }
    Vmlet__VmmSpawnRequest *req = vmlet__vmm_spawn_request__unpack(NULL, len, body);
    free(body);
    if (!req) {
        s_count(self, "bad_request");
        s_reply(self, sock, -1, "not a VmmSpawnRequest");
    } else {
        bool ping = req->n_argv == 0;
        int rc = s_serve(self, req, fds, n_fds, &pid, &err);
        if (!ping) {
            s_count(self, rc == 0 ? "started" : "failed");
            if (rc == 0)
                vmlet_log_info(self->log, VMLET_KV({"command", req->argv[0]}),
                               "started a VMM%s", req->detach ? "" : " (it daemonizes)");
            else
                vmlet_log_warn(self->log, VMLET_KV({"command", req->argv[0]}), "%s", err.msg);
        }
        s_reply(self, sock, rc == 0 ? pid : -1, rc == 0 ? NULL : err.msg);
        vmlet__vmm_spawn_request__free_unpacked(req, NULL);
    }
    for (size_t i = 0; i < n_fds; i++)
        close(fds[i]);
}

static int s_on_connection(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    (void)item;
    vmm_host_server_t *self = arg;
    int sock = accept4(self->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (sock < 0) {
        if (errno != EAGAIN && errno != EINTR)
            vmlet_log_warn(self->log, NULL, "accept on %s: %s", self->socket_path,
                           strerror(errno));
        return 0;
    }
    s_handle(self, sock);
    close(sock);
    return 0;
}

// Daemonized VMMs are re-parented to us (PID 1 of the container): collect
// them when they exit. Between requests only, so a start's own wait for
// its direct child never loses that child to this loop.
static int s_on_reap(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    vmm_host_server_t *self = arg;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        vmlet_counter_inc(self->reaped);
        char who[32], how[64];
        snprintf(who, sizeof who, "%d", (int)pid);
        if (WIFEXITED(status))
            snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(status));
        else
            snprintf(how, sizeof how, "signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        vmlet_log_info(self->log, VMLET_KV({"pid", who}, {"how", how}), "a VMM exited");
    }
    return 0;
}

vmm_host_server_t *vmm_host_server_new(const vmm_host_settings_t *settings,
                                       vmlet_metrics_t *metrics, vmlet_log_t *log,
                                       vmlet_err_t *err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (!settings->socket_path || !*settings->socket_path ||
        strlen(settings->socket_path) >= sizeof addr.sun_path) {
        vmlet_err_set(err, "--socket \"%s\": empty or too long for a unix socket path",
                      settings->socket_path ? settings->socket_path : "");
        return NULL;
    }
    vmm_host_server_t *self = vmlet_xcalloc(1, sizeof *self);
    self->socket_path = vmlet_xstrdup(settings->socket_path);
    self->allow = s_split_allow(settings->allow ? settings->allow : "");
    self->log = log;
    self->metrics = metrics;
    self->reap_timer = -1;
    self->spawn_seconds = vmlet_metrics_histogram(
        metrics, "vmlet_vmm_host_spawn_seconds",
        "Time to start a VMM: fork to its daemonized parent's exit, or to its exec.", NULL,
        vmlet_metrics_latency_bounds, vmlet_metrics_latency_bounds_n);
    self->reaped = vmlet_metrics_counter(metrics, "vmlet_vmm_host_reaped_total",
                                         "VMM processes that exited and were reaped.", NULL);
    // Every result's series exists from the start, at zero.
    static const char *const results[] = {"started", "failed", "refused", "bad_request"};
    for (size_t i = 0; i < sizeof results / sizeof *results; i++)
        vmlet_counter_add(s_spawns(self, results[i]), 0);
    strcpy(addr.sun_path, settings->socket_path);
    self->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (self->listen_fd < 0) {
        vmlet_err_errno(err, errno, "socket");
        goto fail;
    }
    // A socket file left by a previous run: nobody listens on it any more.
    struct stat st;
    if (lstat(settings->socket_path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(settings->socket_path);
    mode_t old = umask(0177); // the socket file: 0600
    int rc = bind(self->listen_fd, (struct sockaddr *)&addr, sizeof addr);
    umask(old);
    if (rc < 0 || listen(self->listen_fd, 64) < 0) {
        vmlet_err_errno(err, errno, "listening on %s", settings->socket_path);
        goto fail;
    }
    // Daemonized and double-forked VMMs are re-parented to us even when we
    // are not PID 1 (a bare host), so they stay ours to reap.
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
        vmlet_err_errno(err, errno, "becoming the VMMs' subreaper");
        goto fail;
    }
    vmlet_log_info(log, VMLET_KV({"socket", self->socket_path}, {"allow", settings->allow}),
                   "starting VMMs on request");
    return self;
fail:
    vmm_host_server_destroy(&self);
    return NULL;
}

int vmm_host_server_attach(vmm_host_server_t *self, zloop_t *loop, vmlet_err_t *err)
{
    zmq_pollitem_t item = {.fd = self->listen_fd, .events = ZMQ_POLLIN};
    if (zloop_poller(loop, &item, s_on_connection, self) < 0)
        return vmlet_err_set(err, "adding %s to the loop", self->socket_path);
    self->loop = loop;
    self->reap_timer = zloop_timer(loop, 1000, 0, s_on_reap, self);
    if (self->reap_timer < 0)
        return vmlet_err_set(err, "adding the reaper timer");
    return 0;
}

void vmm_host_server_destroy(vmm_host_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmm_host_server_t *self = *self_p;
    if (self->loop) {
        zmq_pollitem_t item = {.fd = self->listen_fd};
        zloop_poller_end(self->loop, &item);
        if (self->reap_timer >= 0)
            zloop_timer_end(self->loop, self->reap_timer);
    }
    if (self->listen_fd >= 0) {
        close(self->listen_fd);
        unlink(self->socket_path);
    }
    for (char **a = self->allow; a && *a; a++)
        free(*a);
    free(self->allow);
    free(self->socket_path);
    free(self);
    *self_p = NULL;
}
