// The common body of every service process (see service.h).
#include "vmlet/service.h"
#include "vmlet/http_server.h"
#include "vmlet/signals.h"
#include "vmlet/timeutil.h"

#include <curl/curl.h>

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define OPT(field) offsetof(vmlet_service_settings_t, field)

const vmlet_cfg_option_t vmlet_service_common_options[] = {
    {"instance", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(instance),
     "name of this instance (default: <hostname>-<pid>, or <hostname>-<random> as a "
     "container's PID 1)"},
    {"log-format", VMLET_CFG_ENUM, "text", 0, 0, "text|json", OPT(log_format),
     "log line format"},
    {"log-level", VMLET_CFG_ENUM, "info", 0, 0, "debug|info|warn|error", OPT(log_level),
     "lowest level logged"},
    {"http-listen", VMLET_CFG_STRING, "127.0.0.1:9100", 0, 0, NULL, OPT(http_listen),
     "HOST:PORT for /healthz, /readyz and /metrics (each service has its own default port; "
     "port 0: one the kernel picks, see --http-address-file)"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

// Read by every service, the broker too, and printed right after
// --http-listen. Kept apart from vmlet_service_settings_t for the reason
// CURVE's settings are (below): the public struct stays as it is.
typedef struct {
    char *http_address_file;
} http_settings_t;

#define HTTP_OPT(field) offsetof(http_settings_t, field)
static const vmlet_cfg_option_t http_options[] = {
    {"http-address-file", VMLET_CFG_STRING, "", 0, 0, NULL, HTTP_OPT(http_address_file),
     "file to write the bound HOST:PORT of --http-listen to, once listening (\"\": none); with "
     "port 0, a health check can run wget http://$(cat FILE)/healthz"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

// Settings of services that talk to Redis and the broker (all but the broker).
const vmlet_cfg_option_t vmlet_service_peer_options[] = {
    {"redis-url", VMLET_CFG_STRING, "redis://127.0.0.1:6379", 0, 0, NULL, OPT(redis_url),
     "Redis to keep state in: redis://[[user]:password@]host[:port][/db]"},
    {"redis-password", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(redis_password),
     "Redis password (overrides one in --redis-url)"},
    {"bus-publish", VMLET_CFG_STRING, "tcp://127.0.0.1:7101", 0, 0, NULL, OPT(bus_publish),
     "the broker's event input (XSUB)"},
    {"bus-subscribe", VMLET_CFG_STRING, "tcp://127.0.0.1:7102", 0, 0, NULL, OPT(bus_subscribe),
     "the broker's event output (XPUB)"},
    {"bus-work", VMLET_CFG_STRING, "tcp://127.0.0.1:7103", 0, 0, NULL, OPT(bus_work),
     "the broker's work queues (ROUTER)"},
    {"bus-hwm", VMLET_CFG_INT, "10000", 100, 10000000, NULL, OPT(bus_hwm),
     "messages queued per bus peer before events are dropped (and counted)"},
    {"bus-heartbeat", VMLET_CFG_DURATION, "1s", 50, 60000, NULL, OPT(bus_heartbeat_ms),
     "work-queue heartbeat interval; 3 missed mean the peer is gone"},
    {"presence-interval", VMLET_CFG_DURATION, "2s", 100, 60000, NULL, OPT(presence_interval_ms),
     "how often the instance's presence key in Redis is renewed"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

// CURVE on the bus (docs/bus.md). Kept apart from vmlet_service_settings_t
// so the public settings struct, and every service built on it, stay as
// they are; vmlet_service_bus_options callers get plain TCP.
typedef struct {
    char *bus_curve_cert;
    char *bus_curve_server_key;
} curve_settings_t;

#define CURVE_OPT(field) offsetof(curve_settings_t, field)
static const vmlet_cfg_option_t curve_options[] = {
    {"bus-curve-cert", VMLET_CFG_STRING, "", 0, 0, NULL, CURVE_OPT(bus_curve_cert),
     "this instance's bus certificate, the _secret file of vmlet-bus --make-cert (\"\": no "
     "CURVE)"},
    {"bus-curve-server-key", VMLET_CFG_STRING, "", 0, 0, NULL, CURVE_OPT(bus_curve_server_key),
     "the broker's public key: 40 Z85 characters, or its public certificate file"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

#define N_COMMON (sizeof vmlet_service_common_options / sizeof vmlet_service_common_options[0] - 1)
#define MAX_SECTIONS 5

struct _vmlet_service_t {
    const vmlet_service_def_t *def;
    vmlet_cfg_option_t common_options[N_COMMON + 1]; // with this service's defaults
    vmlet_service_settings_t settings;
    http_settings_t http_settings;
    curve_settings_t curve;
    char source[256];
    vmlet_log_t *log;
    vmlet_signals_t *signals;
    zloop_t *loop;
    vmlet_metrics_t *metrics;
    vmlet_http_server_t *http;
    vmlet_store_t *store;
    vmlet_bus_publisher_t *publisher;
    vmlet_bus_client_t *client;
    vmlet_dispatch_t *dispatch;
    vmlet_bus_subscriber_t *subscriber;
    vmlet_bus_worker_t *worker;
    int presence_timer;
    int64_t started_unix_ms;
};

// The common table with this service's own defaults filled in.
static void s_prepare_common_options(vmlet_service_t *self)
{
    memcpy(self->common_options, vmlet_service_common_options, sizeof self->common_options);
    for (vmlet_cfg_option_t *o = self->common_options; o->name; o++)
        if (strcmp(o->name, "http-listen") == 0 && self->def->default_http_listen)
            o->default_value = self->def->default_http_listen;
}

// The settings tables this service reads, in --help order.
static size_t s_sections(vmlet_service_t *self, vmlet_cfg_section_t *out)
{
    size_t n = 0;
    out[n++] = (vmlet_cfg_section_t){self->common_options, &self->settings};
    out[n++] = (vmlet_cfg_section_t){http_options, &self->http_settings};
    if (!self->def->standalone) {
        out[n++] = (vmlet_cfg_section_t){vmlet_service_peer_options, &self->settings};
        out[n++] = (vmlet_cfg_section_t){curve_options, &self->curve};
    }
    if (self->def->options)
        out[n++] = (vmlet_cfg_section_t){self->def->options, self->def->settings};
    return n;
}

static int s_load_settings(vmlet_service_t *self, int argc, char *argv[])
{
    s_prepare_common_options(self);
    vmlet_cfg_section_t sections[MAX_SECTIONS];
    size_t n = s_sections(self, sections);
    char summary[512];
    snprintf(summary, sizeof summary, "vmlet %s %s: %s", self->def->name, VMLET_VERSION,
             self->def->summary);
    vmlet_err_t err = {0};
    int rc = vmlet_config_load(sections, n, argc, argv, environ, argv[0], summary, &err);
    if (rc < 0)
        fprintf(stderr, "vmlet-%s: %s\n", self->def->name, err.msg);
    return rc;
}

static void s_free_settings(vmlet_service_t *self)
{
    vmlet_cfg_section_t sections[MAX_SECTIONS];
    vmlet_config_free(sections, s_sections(self, sections));
}

void vmlet_service_bus_options(const vmlet_service_settings_t *settings, const char *service,
                               char *source_buf, size_t cap, vmlet_bus_options_t *out)
{
    snprintf(source_buf, cap, "%s/%s", service, settings->instance);
    *out = (vmlet_bus_options_t){
        .publish_endpoint = settings->bus_publish,
        .subscribe_endpoint = settings->bus_subscribe,
        .work_endpoint = settings->bus_work,
        .hwm = (int)settings->bus_hwm,
        .heartbeat_ms = settings->bus_heartbeat_ms,
        .source = source_buf,
    };
}

// The bus options of this process: the common ones and CURVE.
static void s_bus_options(vmlet_service_t *self, vmlet_bus_options_t *out)
{
    vmlet_service_bus_options(&self->settings, self->def->name, self->source, sizeof self->source,
                              out);
    out->curve_cert = self->curve.bus_curve_cert;
    out->curve_server_key = self->curve.bus_curve_server_key;
}

// 32 random bits: getrandom(2), else /dev/urandom (a seccomp profile may
// refuse the call), else the clock's nanoseconds, a likely-unique name
// being better than a certain clash.
static uint32_t s_random32(void)
{
    uint32_t r;
    if (getrandom(&r, sizeof r, 0) == (ssize_t)sizeof r)
        return r;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, &r, sizeof r) : -1;
    if (fd >= 0)
        close(fd);
    if (n == (ssize_t)sizeof r)
        return r;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec;
}

// <hostname>-<pid> names a process uniquely on a host, except as a
// container's PID 1: replicas with host networking share the host's name
// and are all PID 1, and would share presence keys and probe leases.
static void s_default_instance(vmlet_service_t *self)
{
    if (self->settings.instance[0])
        return;
    char host[200] = "host";
    gethostname(host, sizeof host - 1);
    char *instance = NULL;
    int n = getpid() == 1 ? asprintf(&instance, "%s-%08x", host, (unsigned)s_random32())
                          : asprintf(&instance, "%s-%d", host, (int)getpid());
    if (n > 0) {
        free(self->settings.instance);
        self->settings.instance = instance;
    }
}

// --- HTTP endpoints -----------------------------------------------------------

static void s_on_healthz(void *arg, const vmlet_http_request_t *req, vmlet_http_response_t *resp)
{
    (void)arg;
    (void)req;
    resp->body = strdup("ok\n");
    resp->body_len = resp->body ? 3 : 0;
}

// Appends "name: state\n" and returns whether the part is ready.
static bool s_part(char **report, const char *name, bool present, bool ready)
{
    if (!present)
        return true;
    char *grown = NULL;
    if (asprintf(&grown, "%s%s: %s\n", *report ? *report : "", name,
                 ready ? "ready" : "not ready") > 0) {
        free(*report);
        *report = grown;
    }
    return ready;
}

static void s_on_readyz(void *arg, const vmlet_http_request_t *req, vmlet_http_response_t *resp)
{
    (void)req;
    vmlet_service_t *self = arg;
    char *report = NULL;
    bool ready = true;
    ready &= s_part(&report, "redis", self->store, self->store && vmlet_store_connected(self->store));
    ready &= s_part(&report, "bus publisher", self->publisher,
                    self->publisher && vmlet_bus_publisher_ready(self->publisher));
    ready &= s_part(&report, "bus subscriber", self->subscriber,
                    self->subscriber && vmlet_bus_subscriber_ready(self->subscriber));
    ready &= s_part(&report, "bus worker", self->worker,
                    self->worker && vmlet_bus_worker_connected(self->worker));
    resp->status = ready ? 200 : 503;
    resp->body = report ? report : strdup("ready\n");
    resp->body_len = resp->body ? strlen(resp->body) : 0;
}

static void s_on_metrics(void *arg, const vmlet_http_request_t *req, vmlet_http_response_t *resp)
{
    (void)req;
    vmlet_service_t *self = arg;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->body = vmlet_metrics_render(self->metrics);
    resp->body_len = resp->body ? strlen(resp->body) : 0;
    if (!resp->body)
        resp->status = 500;
}

// Writes "HOST:PORT\n" to path through a temporary file beside it and a
// rename, so a reader (a health check) sees the old file or the whole new
// one, never a part. No fsync: the file is rewritten at every start.
static int s_write_address_file(const char *path, const char *address, vmlet_err_t *err)
{
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
        return vmlet_err_set(err, "--http-address-file '%s': out of memory", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int saved = errno;
        free(tmp);
        return vmlet_err_errno(err, saved,
                               "--http-address-file '%s': create a file in its directory", path);
    }
    // mkstemp makes it 0600; the address is no secret, and a health check
    // may run as another user.
    size_t len = strlen(address);
    bool ok =
        fchmod(fd, 0644) == 0 && write(fd, address, len) == (ssize_t)len && write(fd, "\n", 1) == 1;
    int saved = errno;
    ok = close(fd) == 0 && ok;
    if (ok && rename(tmp, path) < 0) {
        saved = errno;
        ok = false;
    }
    if (!ok)
        unlink(tmp);
    free(tmp);
    return ok ? 0 : vmlet_err_errno(err, saved, "--http-address-file '%s': write", path);
}

static int s_start_http(vmlet_service_t *self, vmlet_err_t *err)
{
    self->http = vmlet_http_server_new(self->settings.http_listen, self->log, err);
    if (!self->http)
        return -1;
    vmlet_http_server_route(self->http, "/healthz", s_on_healthz, self);
    vmlet_http_server_route(self->http, "/readyz", s_on_readyz, self);
    vmlet_http_server_route(self->http, "/metrics", s_on_metrics, self);
    if (vmlet_http_server_attach(self->http, self->loop, err) < 0)
        return -1;
    const char *file = self->http_settings.http_address_file;
    if (!file || !file[0])
        return 0;
    return s_write_address_file(file, vmlet_http_server_address(self->http), err);
}

// --- construction -------------------------------------------------------------

static int s_build(vmlet_service_t *self, vmlet_err_t *err)
{
    self->log = vmlet_log_new(self->def->name, self->settings.log_format,
                              self->settings.log_level, err);
    if (!self->log)
        return -1;
    // Before any thread exists (ZeroMQ starts its own), so all inherit the mask.
    if (!(self->signals = vmlet_signals_new(self->log, err)))
        return -1;
    zsys_set_linger(0);
    zsys_set_logstream(NULL); // our log, not CZMQ's
    // libcurl's global state, once, before any thread uses it (watches and
    // pulls run on threads of their own).
    curl_global_init(CURL_GLOBAL_DEFAULT);
    self->loop = zloop_new();
    self->metrics = vmlet_metrics_new();
    if (!self->loop || !self->metrics)
        return vmlet_err_set(err, "out of memory");
    if (vmlet_signals_attach(self->signals, self->loop, err) < 0 || s_start_http(self, err) < 0)
        return -1;
    if (self->def->uses_redis &&
        !(self->store = vmlet_store_new(self->settings.redis_url, self->settings.redis_password,
                                        self->log, self->metrics, err)))
        return -1;
    vmlet_bus_options_t bus;
    s_bus_options(self, &bus);
    if (self->def->publishes &&
        (!(self->publisher = vmlet_bus_publisher_new(&bus, self->metrics, self->log, err)) ||
         vmlet_bus_publisher_attach(self->publisher, self->loop, err) < 0))
        return -1;
    if (self->def->submits_work &&
        (!(self->client = vmlet_bus_client_new(&bus, self->metrics, self->log, err)) ||
         vmlet_bus_client_attach(self->client, self->loop, err) < 0))
        return -1;
    return 0;
}

vmlet_service_t *vmlet_service_new(const vmlet_service_def_t *def, int argc, char *argv[],
                                   int *exit_code)
{
    vmlet_service_t *self = calloc(1, sizeof *self);
    if (!self) {
        *exit_code = 1;
        return NULL;
    }
    self->def = def;
    int rc = s_load_settings(self, argc, argv);
    if (rc != 0) {
        *exit_code = rc > 0 ? 0 : 2;
        vmlet_service_destroy(&self);
        return NULL;
    }
    s_default_instance(self);
    self->started_unix_ms = vmlet_unix_ms();
    vmlet_err_t err = {0};
    if (s_build(self, &err) < 0) {
        fprintf(stderr, "vmlet-%s: %s\n", def->name, err.msg);
        *exit_code = 1;
        vmlet_service_destroy(&self);
        return NULL;
    }
    return self;
}

void vmlet_service_destroy(vmlet_service_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmlet_service_t *self = *self_p;
    // Reverse order of construction; the roles end their loop hooks first.
    vmlet_bus_worker_destroy(&self->worker);
    vmlet_bus_subscriber_destroy(&self->subscriber);
    vmlet_dispatch_destroy(&self->dispatch);
    vmlet_bus_client_destroy(&self->client);
    vmlet_bus_publisher_destroy(&self->publisher);
    vmlet_store_destroy(&self->store);
    vmlet_http_server_destroy(&self->http);
    vmlet_signals_destroy(&self->signals);
    if (self->loop && self->presence_timer > 0)
        zloop_timer_end(self->loop, self->presence_timer);
    zloop_destroy(&self->loop);
    vmlet_metrics_destroy(&self->metrics);
    vmlet_log_destroy(&self->log);
    s_free_settings(self);
    free(self);
    *self_p = NULL;
}

// --- running ------------------------------------------------------------------

// Renews the presence key; doubles as the Redis health check that makes a
// lost connection come back without waiting for domain work.
static int s_on_presence(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    vmlet_service_t *self = arg;
    char key[400], value[600];
    snprintf(key, sizeof key, "vmlet:instances:%s:%s", self->def->name, self->settings.instance);
    snprintf(value, sizeof value,
             "{\"service\":\"%s\",\"instance\":\"%s\",\"version\":\"%s\",\"http\":\"%s\","
             "\"started_unix_ms\":%lld}",
             self->def->name, self->settings.instance, VMLET_VERSION,
             vmlet_http_server_address(self->http), (long long)self->started_unix_ms);
    vmlet_err_t err = {0};
    redisReply *r = vmlet_store_command(self->store, &err, "SET %s %s PX %lld", key, value,
                                        (long long)(3 * self->settings.presence_interval_ms));
    freeReplyObject(r);
    return 0;
}

static int s_start_bus_roles(vmlet_service_t *self, void *ctx, vmlet_err_t *err)
{
    static const vmlet_route_t no_routes[] = {VMLET_ROUTES_END};
    const vmlet_service_def_t *def = self->def;
    if (!def->n_subscribe && !def->work_queue)
        return 0;
    self->dispatch = vmlet_dispatch_new(def->routes ? def->routes : no_routes, ctx,
                                        self->metrics, self->log);
    if (!self->dispatch)
        return vmlet_err_set(err, "out of memory");
    vmlet_bus_options_t bus;
    s_bus_options(self, &bus);
    if (def->n_subscribe &&
        (!(self->subscriber = vmlet_bus_subscriber_new(&bus, def->subscribe, def->n_subscribe,
                                                       self->dispatch, self->metrics, self->log,
                                                       err)) ||
         vmlet_bus_subscriber_attach(self->subscriber, self->loop, err) < 0))
        return -1;
    if (def->work_queue &&
        (!(self->worker = vmlet_bus_worker_new(&bus, def->work_queue, def->work_capacity,
                                               self->dispatch, self->metrics, self->log, err)) ||
         vmlet_bus_worker_attach(self->worker, self->loop, err) < 0))
        return -1;
    return 0;
}

int vmlet_service_run(vmlet_service_t *self, void *ctx)
{
    vmlet_err_t err = {0};
    if (s_start_bus_roles(self, ctx, &err) < 0) {
        vmlet_log_error(self->log, NULL, "%s", err.msg);
        return 1;
    }
    if (self->store) {
        self->presence_timer = zloop_timer(self->loop, (size_t)self->settings.presence_interval_ms,
                                           0, s_on_presence, self);
        s_on_presence(self->loop, 0, self);
    }
    vmlet_log_info(self->log,
                   VMLET_KV({"instance", self->settings.instance},
                            {"http", vmlet_http_server_address(self->http)},
                            {"version", VMLET_VERSION}),
                   "started");
    // zloop also ends when a stop/continue (docker pause, SIGSTOP) makes
    // poll return EINTR; only our signal handler means "stop".
    while (zloop_start(self->loop) == 0 && !vmlet_signals_received(self->signals) &&
           zmq_errno() == EINTR)
        continue;
    if (!vmlet_signals_received(self->signals)) {
        vmlet_log_error(self->log, NULL, "event loop ended without a signal");
        return 1;
    }
    vmlet_log_info(self->log, NULL, "stopped");
    return 0;
}

int vmlet_service_main(const vmlet_service_def_t *def, int argc, char *argv[])
{
    int code;
    vmlet_service_t *self = vmlet_service_new(def, argc, argv, &code);
    if (!self)
        return code;
    void *ctx = NULL;
    vmlet_err_t err = {0};
    if (def->start && !(ctx = def->start(self, &err))) {
        vmlet_log_error(self->log, NULL, "%s", err.msg);
        code = 1;
    } else {
        code = vmlet_service_run(self, ctx);
    }
    if (def->stop)
        def->stop(&ctx);
    vmlet_service_destroy(&self);
    return code;
}

vmlet_log_t *vmlet_service_log(vmlet_service_t *self)
{
    return self->log;
}

zloop_t *vmlet_service_loop(vmlet_service_t *self)
{
    return self->loop;
}

vmlet_metrics_t *vmlet_service_metrics(vmlet_service_t *self)
{
    return self->metrics;
}

vmlet_store_t *vmlet_service_store(vmlet_service_t *self)
{
    return self->store;
}

vmlet_bus_publisher_t *vmlet_service_publisher(vmlet_service_t *self)
{
    return self->publisher;
}

vmlet_bus_client_t *vmlet_service_client(vmlet_service_t *self)
{
    return self->client;
}

vmlet_bus_worker_t *vmlet_service_worker(vmlet_service_t *self)
{
    return self->worker;
}

const vmlet_service_settings_t *vmlet_service_settings(const vmlet_service_t *self)
{
    return &self->settings;
}

const vmlet_service_def_t *vmlet_service_def(const vmlet_service_t *self)
{
    return self->def;
}
