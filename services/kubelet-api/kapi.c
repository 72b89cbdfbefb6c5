// vmlet-kubelet-api: settings, the listener thread, metrics (see kapi.h).
#include "kapi_internal.h"
#include "tls_ctx.h"

#include "vmlet/net.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OPT(field) offsetof(kapi_settings_t, field)
const vmlet_cfg_option_t kapi_options[] = {
    {"listen", VMLET_CFG_STRING, ":10250", 0, 0, NULL, OPT(listen),
     "the kubelet port (HOST:PORT); the Node object advertises the port (k8s-watcher "
     "--kubelet-port)"},
    {"tls-cert", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(tls_cert),
     "serving certificate (PEM); empty: a self-signed one made on first start in --state-dir"},
    {"tls-key", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(tls_key), "its private key (PEM)"},
    {"client-ca", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(client_ca),
     "CA (PEM) that signs the API server's kubelet-client certificate"},
    {"client-auth", VMLET_CFG_BOOL, "true", 0, 0, NULL, OPT(client_auth),
     "require a client certificate signed by --client-ca; false lets anyone in"},
    {"state-dir", VMLET_CFG_STRING, "/var/lib/vmlet/kubelet-api", 0, 0, NULL, OPT(state_dir),
     "where a generated certificate is kept"},
    {"node-name", VMLET_CFG_STRING, "vmlet", 0, 0, NULL, OPT(node_name),
     "the Node's name (as k8s-watcher's), reported in /stats/summary"},
    {"max-connections", VMLET_CFG_INT, "1000", 1, 100000, NULL, OPT(max_connections),
     "connections served at once; more are refused with 503"},
    {"idle-timeout", VMLET_CFG_DURATION, "4h", 1000, 0, NULL, OPT(idle_timeout_ms),
     "an exec, attach or port-forward with no traffic for this long is closed (the kubelet's "
     "streaming-connection-idle-timeout)"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct {
    vmlet_service_t *service;
    kapi_shared_t *shared;
    int listen_fd;
    int stop_pipe[2];
    pthread_t listener;
    bool listener_started;
    int metrics_timer;
    long published[ROUTE_COUNT], published_refused;
    vmlet_metric_t *connections, *sessions, *refused, *requests[ROUTE_COUNT];
} kapi_t;

typedef struct {
    kapi_shared_t *shared;
    int fd;
} conn_arg_t;

static void *s_conn_thread(void *arg)
{
    conn_arg_t a = *(conn_arg_t *)arg;
    free(arg);
    conn_serve(a.shared, a.fd);
    kapi_count(a.shared, &a.shared->stats.connections, -1);
    return NULL;
}

static void s_accept_one(kapi_t *self)
{
    kapi_shared_t *sh = self->shared;
    int fd = accept4(self->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    pthread_mutex_lock(&sh->stats.lock);
    bool full = sh->stats.connections >= sh->settings->max_connections;
    if (!full)
        sh->stats.connections++;
    pthread_mutex_unlock(&sh->stats.lock);
    if (full) { // before TLS: the cheapest refusal there is
        vmlet_log_warn(sh->log, NULL, "refused a connection: %ld open already",
                       sh->settings->max_connections);
        close(fd);
        return;
    }
    conn_arg_t *arg = vmlet_xcalloc(1, sizeof *arg);
    *arg = (conn_arg_t){sh, fd};
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&thread, &attr, s_conn_thread, arg) != 0) {
        free(arg);
        close(fd);
        kapi_count(sh, &sh->stats.connections, -1);
    }
    pthread_attr_destroy(&attr);
}

static void *s_listener(void *arg)
{
    kapi_t *self = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = self->listen_fd, .events = POLLIN},
                              {.fd = self->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            return NULL;
        if (p[1].revents)
            return NULL;
        if (p[0].revents)
            s_accept_one(self);
    }
}

static int s_publish_metrics(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    kapi_t *self = arg;
    kapi_stats_t *st = &self->shared->stats;
    pthread_mutex_lock(&st->lock);
    vmlet_gauge_set(self->connections, (double)st->connections);
    vmlet_gauge_set(self->sessions, (double)st->sessions_active);
    for (int r = 0; r < ROUTE_COUNT; r++) {
        vmlet_counter_add(self->requests[r], (double)(st->requests[r] - self->published[r]));
        self->published[r] = st->requests[r];
    }
    vmlet_counter_add(self->refused, (double)(st->refused_auth - self->published_refused));
    self->published_refused = st->refused_auth;
    pthread_mutex_unlock(&st->lock);
    return 0;
}

static void s_metrics(kapi_t *self)
{
    vmlet_metrics_t *m = vmlet_service_metrics(self->service);
    static const char *const names[ROUTE_COUNT] = {"other",       "logs",    "exec", "attach",
                                                   "portforward", "healthz", "stats"};
    for (int r = 0; r < ROUTE_COUNT; r++) {
        char labels[64];
        snprintf(labels, sizeof labels, "route=\"%s\"", names[r]);
        self->requests[r] = vmlet_metrics_counter(m, "vmlet_kubelet_api_requests_total",
                                                  "Authenticated requests by route.", labels);
    }
    self->connections = vmlet_metrics_gauge(m, "vmlet_kubelet_api_connections",
                                            "Client connections open now.", NULL);
    self->sessions = vmlet_metrics_gauge(m, "vmlet_kubelet_api_sessions",
                                         "Sessions to launchers open now (logs, exec...).", NULL);
    self->refused = vmlet_metrics_counter(m, "vmlet_kubelet_api_unauthenticated_total",
                                          "Requests refused with 401.", NULL);
}

void *kapi_start(vmlet_service_t *service, vmlet_err_t *err)
{
    const vmlet_service_def_t *def = vmlet_service_def(service);
    kapi_settings_t *settings = def->settings;
    settings->started_unix_ms = vmlet_unix_ms();
    const vmlet_service_settings_t *common = vmlet_service_settings(service);
    vmlet_log_t *log = vmlet_service_log(service);
    if (!settings->client_auth)
        vmlet_log_warn(log, NULL,
                       "client authentication is OFF (--client-auth=false): anyone who "
                       "reaches the kubelet port may read logs and exec into pods");
    kapi_t *self = vmlet_xcalloc(1, sizeof *self);
    self->service = service;
    self->listen_fd = self->stop_pipe[0] = self->stop_pipe[1] = -1;
    kapi_shared_t *sh = self->shared = vmlet_xcalloc(1, sizeof *sh);
    pthread_mutex_init(&sh->stats.lock, NULL);
    sh->settings = settings;
    sh->log = log;
    snprintf(sh->redis_url, sizeof sh->redis_url, "%s", common->redis_url);
    snprintf(sh->redis_password, sizeof sh->redis_password, "%s", common->redis_password);
    sh->tls = tls_ctx_new(settings->tls_cert, settings->tls_key, settings->state_dir,
                          settings->client_ca, settings->client_auth, err);
    if (!sh->tls || (self->listen_fd = vmlet_tcp_listen(settings->listen, err)) < 0 ||
        pipe2(self->stop_pipe, O_CLOEXEC) < 0) {
        void *p = self;
        kapi_stop(&p);
        return NULL;
    }
    if (pthread_create(&self->listener, NULL, s_listener, self) != 0) {
        vmlet_err_set(err, "cannot start the listener thread");
        void *p = self;
        kapi_stop(&p);
        return NULL;
    }
    self->listener_started = true;
    s_metrics(self);
    self->metrics_timer =
        zloop_timer(vmlet_service_loop(service), 1000, 0, s_publish_metrics, self);
    vmlet_log_info(log, VMLET_KV({"listen", settings->listen}), "kubelet API listening on port %d",
                   vmlet_tcp_bound_port(self->listen_fd));
    return self;
}

void kapi_stop(void **self_p)
{
    kapi_t *self = *self_p;
    if (!self)
        return;
    if (self->listener_started) {
        if (write(self->stop_pipe[1], "x", 1) != 1)
            vmlet_log_warn(self->shared->log, NULL, "cannot wake the listener");
        pthread_join(self->listener, NULL);
    }
    if (self->metrics_timer)
        zloop_timer_end(vmlet_service_loop(self->service), self->metrics_timer);
    for (int i = 0; i < 2; i++)
        if (self->stop_pipe[i] >= 0)
            close(self->stop_pipe[i]);
    if (self->listen_fd >= 0)
        close(self->listen_fd);
    kapi_shared_t *sh = self->shared;
    pthread_mutex_lock(&sh->stats.lock);
    long open = sh->stats.connections;
    pthread_mutex_unlock(&sh->stats.lock);
    // Connection threads still running hold the shared state: the process
    // is ending, so it stays for them rather than freed under them.
    if (open == 0) {
        SSL_CTX_free(sh->tls);
        pthread_mutex_destroy(&sh->stats.lock);
        free(sh);
    }
    free(self);
    *self_p = NULL;
}
