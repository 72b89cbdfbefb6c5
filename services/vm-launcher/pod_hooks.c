// Lifecycle hooks with the kubelet's ordering (pod_hooks.h). exec runs in
// the container through the guest agent (pod_exec_run); httpGet is a GET
// from this host, on a thread of its own so the launcher's loop never
// waits for a slow server, whose end is signalled through a pipe the loop
// polls. A hook's answer is matched to the container run it was for: one
// that arrives after that run ended changes nothing.
#include "pod_hooks.h"

#include "launcher_internal.h"

#include "vmlet/pb.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

// The kubelet gives the container at least this long between its stop
// signal and SIGKILL, whatever preStop took.
#define MIN_STOP_GRACE_MS 2000
// A postStart hook has no timeout of its own on a kubelet; this bounds an
// exec that never ends (a hung hook would keep the container Waiting).
#define POST_START_TIMEOUT_MS (10 * 60 * 1000)

typedef enum { HOOK_POST_START, HOOK_PRE_STOP } hook_kind_t;

typedef struct {
    launcher_t *l;
    char uid[128];
    char container[64];
    unsigned instance;
    hook_kind_t kind;
    char what[600]; // the handler in the kubelet's words, for messages
    // httpGet: set up before the thread starts, its result after it ends
    char url[1200];
    struct curl_slist *headers;
    long timeout_ms;
    pthread_t thread;
    int done_pipe[2];
    long status;
    char error[CURL_ERROR_SIZE];
} hook_t;

static void s_hook_free(hook_t *h)
{
    if (!h)
        return;
    curl_slist_free_all(h->headers);
    for (int k = 0; k < 2; k++)
        if (h->done_pipe[k] >= 0)
            close(h->done_pipe[k]);
    free(h);
}

static hook_t *s_hook_new(pod_vm_t *pod, size_t i, hook_kind_t kind)
{
    hook_t *h = vmlet_xcalloc(1, sizeof *h);
    h->l = pod->l;
    h->done_pipe[0] = h->done_pipe[1] = -1;
    snprintf(h->uid, sizeof h->uid, "%s", pod->uid);
    snprintf(h->container, sizeof h->container, "%s", pod->ctrs[i].name);
    h->instance = pod->ctrs[i].instance;
    h->kind = kind;
    return h;
}

static const char *s_event_reason(hook_kind_t kind)
{
    return kind == HOOK_POST_START ? "FailedPostStartHook" : "FailedPreStopHook";
}

// The hook's end, whatever ran it. ok false: message says why.
static void s_finish(hook_t *h, bool ok, const char *message)
{
    launcher_t *l = h->l;
    pod_vm_t *pod = zhashx_lookup(l->pods, h->uid);
    size_t i;
    ctr_t *c = pod ? pod_vm_ctr(pod, h->container, &i) : NULL;
    if (!c || c->instance != h->instance || c->phase != CTR_RUNNING)
        return; // the run it was for is over
    if (!ok) {
        vmlet_log_warn(l->log,
                       VMLET_KV({"pod", pod->desc}, {"container", c->name},
                                {"hook", h->kind == HOOK_POST_START ? "postStart" : "preStop"}),
                       "%s", message);
        pod_record_event(pod, c->name, s_event_reason(h->kind), message);
    }
    if (h->kind == HOOK_POST_START) {
        if (!c->post_start_running)
            return;
        c->post_start_running = false;
        pod_record_changed(pod); // Running now, or about to be killed
        if (!ok)
            pod_vm_restart_container(pod, c->name, "FailedPostStartHook", message, -1);
        return;
    }
    if (!c->pre_stop_running)
        return;
    c->pre_stop_running = false;
    // The stop signal now, with what is left of the grace period (at
    // least MIN_STOP_GRACE_MS, as the kubelet gives).
    int64_t floor = vmlet_unix_ms() + MIN_STOP_GRACE_MS;
    if (c->kill_at_unix_ms && c->kill_at_unix_ms < floor)
        c->kill_at_unix_ms = floor;
    if (pod->stop_requested && pod->stop_deadline_unix_ms < floor)
        pod->stop_deadline_unix_ms = floor;
    pod_vm_signal_stop(pod, i);
}

// --- exec ------------------------------------------------------------------------------

static void s_exec_done(pod_vm_t *pod, const char *container, int exit_code, bool timed_out,
                        const char *error, const char *output, void *arg)
{
    (void)container;
    hook_t *h = arg;
    if (!pod) { // the VM or the launcher stopped first
        s_hook_free(h);
        return;
    }
    bool ok = !error && !timed_out && exit_code == 0;
    char *message;
    if (error)
        message = vmlet_xasprintf("%s failed - error: %s", h->what, error);
    else if (timed_out)
        message = vmlet_xasprintf("%s failed - error: timed out", h->what);
    else
        message = vmlet_xasprintf("%s failed - error: command exited with %d, message: \"%.*s\"",
                                  h->what, exit_code, 600, output ? output : "");
    s_finish(h, ok, message);
    free(message);
    s_hook_free(h);
}

static int s_start_exec(pod_vm_t *pod, hook_t *h, const Vmlet__ExecAction *exec, int timeout_ms)
{
    int n = snprintf(h->what, sizeof h->what, "Exec lifecycle hook (");
    for (size_t k = 0; k < exec->n_command && n < (int)sizeof h->what; k++)
        n += snprintf(h->what + n, sizeof h->what - (size_t)n, "%s%s", k ? " " : "",
                      exec->command[k]);
    if (n < (int)sizeof h->what)
        snprintf(h->what + n, sizeof h->what - (size_t)n, ") for Container \"%s\" in Pod \"%s\"",
                 h->container, pod->desc);
    if (exec->n_command == 0) {
        s_exec_done(pod, h->container, 0, false, "no command given", NULL, h);
        return 0;
    }
    if (pod_exec_run(pod, h->container, exec->command, exec->n_command, timeout_ms, s_exec_done,
                     h) < 0) {
        s_exec_done(pod, h->container, 0, false, "the pod's guest agent is not reachable", NULL,
                    h);
    }
    return 0;
}

// --- httpGet ---------------------------------------------------------------------------

static size_t s_discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

static void *s_http_thread(void *arg)
{
    hook_t *h = arg;
    CURL *curl = curl_easy_init();
    if (!curl) {
        snprintf(h->error, sizeof h->error, "out of memory");
    } else {
        curl_easy_setopt(curl, CURLOPT_URL, h->url);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h->headers);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, h->timeout_ms);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, h->error);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_discard);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "kube-lifecycle/" VMLET_VERSION);
        // As the kubelet: HTTPS hooks do not verify the pod's certificate.
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
        CURLcode rc = curl_easy_perform(curl);
        if (rc == CURLE_OK)
            curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &h->status);
        else if (!h->error[0])
            snprintf(h->error, sizeof h->error, "%s", curl_easy_strerror(rc));
        curl_easy_cleanup(curl);
    }
    char one = 1;
    ssize_t w = write(h->done_pipe[1], &one, 1);
    (void)w; // the loop polls the pipe; a full pipe cannot happen with one byte
    return NULL;
}

static int s_http_ended(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    hook_t *h = arg;
    zloop_poller_end(loop, item);
    pthread_join(h->thread, NULL);
    bool ok = !h->error[0] && h->status >= 200 && h->status < 400;
    char *message =
        h->error[0]
            ? vmlet_xasprintf("%s failed - error: Get \"%s\": %s", h->what, h->url, h->error)
            : vmlet_xasprintf("%s failed - error: HTTP %ld from %s", h->what, h->status, h->url);
    s_finish(h, ok, message);
    free(message);
    s_hook_free(h);
    return 0;
}

// The port: a number, or the name of one of the container's ports.
static int s_port(const Vmlet__Container *spec, const Vmlet__PortRef *ref)
{
    if (!ref)
        return -1;
    if (ref->port_case == VMLET__PORT_REF__PORT_NUMBER)
        return ref->number;
    if (ref->port_case != VMLET__PORT_REF__PORT_NAME)
        return -1;
    for (size_t k = 0; spec && k < spec->n_ports; k++)
        if (spec->ports[k]->name && strcmp(spec->ports[k]->name, ref->name) == 0)
            return spec->ports[k]->container_port;
    return -1;
}

static int s_start_http(pod_vm_t *pod, size_t i, hook_t *h, const Vmlet__HttpGetAction *get,
                        int timeout_ms)
{
    const Vmlet__Container *spec = pod_vm_spec_container(pod, i);
    const char *host = get->host && *get->host ? get->host : pod->lease.ip;
    int port = s_port(spec, get->port);
    const char *path = get->path && *get->path ? get->path : "/";
    bool https = get->scheme && strcasecmp(get->scheme, "HTTPS") == 0;
    bool v6 = strchr(host, ':') != NULL;
    snprintf(h->url, sizeof h->url, "%s://%s%s%s:%d%s%s", https ? "https" : "http", v6 ? "[" : "",
             host, v6 ? "]" : "", port, path[0] == '/' ? "" : "/", path);
    snprintf(h->what, sizeof h->what, "HTTP lifecycle hook (%s) for Container \"%s\" in Pod \"%s\"",
             path, h->container, pod->desc);
    if (port <= 0 || port > 65535 || !*host) {
        char *message = vmlet_xasprintf("%s failed - error: no %s to send it to", h->what,
                                        port <= 0 || port > 65535 ? "valid port" : "pod IP");
        s_finish(h, false, message);
        free(message);
        s_hook_free(h);
        return 0;
    }
    for (size_t k = 0; k < get->n_headers; k++) {
        char line[1024];
        snprintf(line, sizeof line, "%s: %s", get->headers[k]->name ? get->headers[k]->name : "",
                 get->headers[k]->value ? get->headers[k]->value : "");
        h->headers = curl_slist_append(h->headers, line);
    }
    h->timeout_ms = timeout_ms;
    if (pipe2(h->done_pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
        pthread_create(&h->thread, NULL, s_http_thread, h) != 0) {
        char *message =
            vmlet_xasprintf("%s failed - error: cannot start it: %s", h->what, strerror(errno));
        s_finish(h, false, message);
        free(message);
        s_hook_free(h);
        return 0;
    }
    zmq_pollitem_t item = {.fd = h->done_pipe[0], .events = ZMQ_POLLIN};
    zloop_poller(pod->l->loop, &item, s_http_ended, h);
    return 0;
}

// --- what the pod does ---------------------------------------------------------------

static const Vmlet__LifecycleHandler *s_handler(const pod_vm_t *pod, size_t i, hook_kind_t kind)
{
    const Vmlet__Container *spec = pod_vm_spec_container(pod, i);
    if (!spec || !spec->lifecycle)
        return NULL;
    const Vmlet__LifecycleHandler *h =
        kind == HOOK_POST_START ? spec->lifecycle->post_start : spec->lifecycle->pre_stop;
    if (!h || h->handler_case == VMLET__LIFECYCLE_HANDLER__HANDLER__NOT_SET)
        return NULL;
    return h;
}

static void s_run(pod_vm_t *pod, size_t i, hook_t *h, const Vmlet__LifecycleHandler *handler,
                  int timeout_ms)
{
    switch (handler->handler_case) {
    case VMLET__LIFECYCLE_HANDLER__HANDLER_EXEC:
        s_start_exec(pod, h, handler->exec, timeout_ms);
        return;
    case VMLET__LIFECYCLE_HANDLER__HANDLER_HTTP_GET:
        s_start_http(pod, i, h, handler->http_get, timeout_ms);
        return;
    default: {
        // tcpSocket is deprecated for hooks and the kubelet does not run it.
        char *message = vmlet_xasprintf(
            "Lifecycle hook for Container \"%s\" in Pod \"%s\" failed - error: tcpSocket "
            "hooks are not supported",
            h->container, pod->desc);
        s_finish(h, false, message);
        free(message);
        s_hook_free(h);
    }
    }
}

bool pod_hooks_post_start(pod_vm_t *pod, size_t i)
{
    const Vmlet__LifecycleHandler *handler = s_handler(pod, i, HOOK_POST_START);
    if (!handler)
        return false;
    pod->ctrs[i].post_start_running = true;
    s_run(pod, i, s_hook_new(pod, i, HOOK_POST_START), handler, POST_START_TIMEOUT_MS);
    return true;
}

bool pod_hooks_pre_stop(pod_vm_t *pod, size_t i, int64_t deadline_unix_ms)
{
    ctr_t *c = &pod->ctrs[i];
    if (c->pre_stop_running)
        return true; // already on its way to the stop signal
    const Vmlet__LifecycleHandler *handler = s_handler(pod, i, HOOK_PRE_STOP);
    if (!handler)
        return false;
    int64_t left = deadline_unix_ms - vmlet_unix_ms();
    if (left <= 0)
        return false; // no grace left: straight to the signal
    c->pre_stop_running = true;
    // A hook that fails at once has sent the signal already (s_finish).
    s_run(pod, i, s_hook_new(pod, i, HOOK_PRE_STOP), handler, (int)left);
    return true;
}
