// vmlet-test-bus-peer: one bus role in its own process, for the bus
// integration tests and benchmarks. It uses the library exactly as the
// services do and prints one "READY" line once connected and one "RESULT
// key=value ..." line at the end, so a test can start several, kill one,
// and read what each saw.
//
//   publish    send --count ProbeResult events at --rate per second, each
//              tagged with --tag and a running number
//   subscribe  receive ProbeResults until --expect arrived or --idle passed,
//              checking each tag's numbers arrive in order; serves /metrics
//   work       take items from --queue; each item's effect is recorded once
//              in Redis (SET NX), every delivery counted
//   submit     submit --count items to --queue and wait until all accepted
//
// --curve-cert and --curve-server-key make every role a CURVE client, as
// the services' --bus-curve-* settings do; --ready-timeout bounds the wait
// for the broker, so a refused peer says "ERROR" soon.
#include "vmlet/bus.h"
#include "vmlet/config.h"
#include "vmlet/http_server.h"
#include "vmlet/signals.h"
#include "vmlet/store.h"
#include "vmlet/timeutil.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

typedef struct {
    char *mode;
    char *publish;
    char *subscribe;
    char *work;
    char *tag;
    char *queue;
    char *redis_url;
    char *http_listen;
    long count;
    long rate;
    long expect;
    long hwm;
    long capacity;
    long work_us;
    int64_t idle_ms;
    int64_t ready_timeout_ms;
    char *curve_cert;
    char *curve_server_key;
} peer_settings_t;

#define OPT(f) offsetof(peer_settings_t, f)
static const vmlet_cfg_option_t options[] = {
    {"mode", VMLET_CFG_ENUM, "subscribe", 0, 0, "publish|subscribe|work|submit", OPT(mode), "role"},
    {"publish", VMLET_CFG_STRING, "tcp://127.0.0.1:7101", 0, 0, NULL, OPT(publish), "XSUB"},
    {"subscribe", VMLET_CFG_STRING, "tcp://127.0.0.1:7102", 0, 0, NULL, OPT(subscribe), "XPUB"},
    {"work", VMLET_CFG_STRING, "tcp://127.0.0.1:7103", 0, 0, NULL, OPT(work), "ROUTER"},
    {"tag", VMLET_CFG_STRING, "p", 0, 0, NULL, OPT(tag), "publisher tag"},
    {"queue", VMLET_CFG_STRING, "test", 0, 0, NULL, OPT(queue), "work queue"},
    {"redis-url", VMLET_CFG_STRING, "redis://127.0.0.1:6379", 0, 0, NULL, OPT(redis_url), "redis"},
    {"http-listen", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(http_listen), "metrics endpoint"},
    {"count", VMLET_CFG_INT, "1000", 0, 100000000, NULL, OPT(count), "messages or items"},
    {"rate", VMLET_CFG_INT, "0", 0, 10000000, NULL, OPT(rate), "per second; 0 = flat out"},
    {"expect", VMLET_CFG_INT, "0", 0, 100000000, NULL, OPT(expect), "events to wait for"},
    {"hwm", VMLET_CFG_INT, "10000", 1, 10000000, NULL, OPT(hwm), "high-water mark"},
    {"capacity", VMLET_CFG_INT, "4", 1, 1000, NULL, OPT(capacity), "worker capacity"},
    {"work-us", VMLET_CFG_INT, "0", 0, 10000000, NULL, OPT(work_us), "time per item"},
    {"idle", VMLET_CFG_DURATION, "10s", 10, 3600000, NULL, OPT(idle_ms), "give up after"},
    {"ready-timeout", VMLET_CFG_DURATION, "10s", 10, 3600000, NULL, OPT(ready_timeout_ms),
     "wait this long for the broker"},
    {"curve-cert", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(curve_cert), "our certificate"},
    {"curve-server-key", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(curve_server_key),
     "the broker's public key or certificate"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct {
    peer_settings_t *s;
    vmlet_log_t *log;
    vmlet_metrics_t *metrics;
    vmlet_store_t *store;
    zhashx_t *last_by_tag; // tag -> last number seen (malloc'd long)
    long received;
    long order_errors;
    int64_t last_event_ms;
    long deliveries;
    long store_errors;
    double latency_sum_us;
    double *latencies_us; // for the benchmark's percentiles
    size_t n_latencies;
} peer_t;

static void s_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

// --- publish ------------------------------------------------------------------

static int s_publish(peer_t *p, vmlet_bus_options_t *bus)
{
    vmlet_err_t err = {0};
    vmlet_bus_publisher_t *pub = vmlet_bus_publisher_new(bus, p->metrics, p->log, &err);
    if (!pub || vmlet_bus_publisher_wait_ready(pub, (int)p->s->ready_timeout_ms, &err) < 0) {
        s_line("ERROR %s", err.msg);
        return 1;
    }
    s_line("READY");
    Vmlet__ProbeResult result = VMLET__PROBE_RESULT__INIT;
    result.prober_id = p->s->tag;
    result.has_consecutive = 1;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_PROBE_RESULT;
    env.probe_result = &result;
    long sent = 0, dropped = 0;
    int64_t start = vmlet_now_ms();
    while (sent + dropped < p->s->count) {
        long allowed = p->s->rate ? (long)((vmlet_now_ms() - start + 1) * p->s->rate / 1000)
                                  : p->s->count;
        if (sent + dropped >= allowed) {
            usleep(200);
            continue;
        }
        result.consecutive = (int32_t)(sent + 1);
        result.has_observed_unix_ms = 1;
        result.observed_unix_ms = vmlet_unix_ns() / 1000; // microseconds, for latency
        if (vmlet_bus_publish(pub, &env, &err) == 0)
            sent++;
        else
            dropped++;
    }
    int64_t elapsed = vmlet_now_ms() - start;
    s_line("RESULT sent=%ld dropped=%ld elapsed_ms=%lld", sent, dropped, (long long)elapsed);
    // Stay for --idle sending sequence markers, so subscribers also see
    // losses at the tail.
    for (int64_t until = vmlet_now_ms() + p->s->idle_ms; vmlet_now_ms() < until;) {
        usleep(250 * 1000);
        vmlet_bus_publisher_sync(pub);
    }
    vmlet_bus_publisher_destroy(&pub);
    return 0;
}

// --- subscribe ----------------------------------------------------------------

static int s_on_probe_result(void *ctx, const vmlet_envelope_t *env)
{
    peer_t *p = ctx;
    const Vmlet__ProbeResult *r = env->probe_result;
    const char *tag = r->prober_id ? r->prober_id : "?";
    long *last = zhashx_lookup(p->last_by_tag, tag);
    if (!last) {
        last = calloc(1, sizeof *last);
        zhashx_insert(p->last_by_tag, tag, last);
    }
    if (r->consecutive <= *last)
        p->order_errors++;
    *last = r->consecutive;
    p->received++;
    p->last_event_ms = vmlet_now_ms();
    if (r->has_observed_unix_ms && p->latencies_us && p->n_latencies < (size_t)p->s->expect) {
        double us = (double)(vmlet_unix_ns() / 1000 - r->observed_unix_ms);
        p->latencies_us[p->n_latencies++] = us;
    }
    return 0;
}

static const vmlet_route_t subscriber_routes[] = {
    {VMLET__ENVELOPE__BODY_PROBE_RESULT, s_on_probe_result},
    VMLET_ROUTES_END,
};

static int s_compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double s_percentile(peer_t *p, double q)
{
    if (!p->n_latencies)
        return 0;
    size_t i = (size_t)(q * (double)(p->n_latencies - 1));
    return p->latencies_us[i];
}

static void s_on_metrics(void *arg, const vmlet_http_request_t *req, vmlet_http_response_t *resp)
{
    (void)req;
    resp->body = vmlet_metrics_render(arg);
    resp->body_len = resp->body ? strlen(resp->body) : 0;
}

// Ends the loop once the expected events arrived or none came for --idle.
static int s_on_check_done(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    peer_t *p = arg;
    bool done = p->s->expect > 0 && p->received >= p->s->expect;
    return done || vmlet_now_ms() - p->last_event_ms >= p->s->idle_ms ? -1 : 0;
}

static int s_on_linger_over(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    (void)arg;
    return -1;
}

static int s_subscribe(peer_t *p, vmlet_bus_options_t *bus)
{
    vmlet_err_t err = {0};
    vmlet_dispatch_t *dispatch = vmlet_dispatch_new(subscriber_routes, p, p->metrics, p->log);
    vmlet_body_case_t cases[] = {VMLET__ENVELOPE__BODY_PROBE_RESULT};
    vmlet_bus_subscriber_t *sub =
        vmlet_bus_subscriber_new(bus, cases, 1, dispatch, p->metrics, p->log, &err);
    zloop_t *loop = zloop_new();
    vmlet_http_server_t *http = NULL;
    if (sub && p->s->http_listen[0]) {
        http = vmlet_http_server_new(p->s->http_listen, p->log, &err);
        if (!http || vmlet_http_server_attach(http, loop, &err) < 0) {
            s_line("ERROR %s", err.msg);
            return 1;
        }
        vmlet_http_server_route(http, "/metrics", s_on_metrics, p->metrics);
    }
    int64_t deadline = vmlet_now_ms() + p->s->ready_timeout_ms;
    while (sub && !vmlet_bus_subscriber_ready(sub) && vmlet_now_ms() < deadline)
        vmlet_bus_subscriber_receive(sub, 100, 50);
    if (!sub || !vmlet_bus_subscriber_ready(sub) ||
        vmlet_bus_subscriber_attach(sub, loop, &err) < 0) {
        s_line("ERROR no subscription handshake: %s", err.msg);
        return 1;
    }
    s_line("READY");
    p->latencies_us = calloc((size_t)p->s->expect + 1, sizeof(double));
    p->last_event_ms = vmlet_now_ms();
    int timer = zloop_timer(loop, 10, 0, s_on_check_done, p);
    zloop_start(loop);
    zloop_timer_end(loop, timer);
    qsort(p->latencies_us, p->n_latencies, sizeof(double), s_compare_doubles);
    s_line("RESULT received=%ld order_errors=%ld lost=%" PRIu64 " p50_us=%.0f p99_us=%.0f",
           p->received, p->order_errors, vmlet_bus_subscriber_lost(sub), s_percentile(p, 0.5),
           s_percentile(p, 0.99));
    // Keep serving /metrics a little so the test can read the final counts,
    // and keep counting late arrivals (sequence markers) meanwhile.
    if (http) {
        zloop_timer(loop, 3000, 1, s_on_linger_over, NULL);
        zloop_start(loop);
    }
    vmlet_bus_subscriber_destroy(&sub);
    vmlet_http_server_destroy(&http);
    zloop_destroy(&loop);
    vmlet_dispatch_destroy(&dispatch);
    free(p->latencies_us);
    return 0;
}

// --- work ---------------------------------------------------------------------

// Records the item's effect once and counts it, in one atomic script (a
// connection lost between two commands must not split them), and counts
// every delivery; fails (the item is handed back) while Redis is away.
static const char effect_script[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX') then redis.call('INCR', 'effects') end "
    "redis.call('HINCRBY', 'deliveries', ARGV[1], 1) return 1";

static int s_on_work_item(void *ctx, const vmlet_envelope_t *env)
{
    peer_t *p = ctx;
    const char *item = env->header ? env->header->message_id : NULL;
    if (!item)
        return 0;
    p->deliveries++;
    vmlet_err_t err = {0};
    redisReply *r = vmlet_store_command(p->store, &err, "EVAL %s 1 effect:%s %s", effect_script,
                                        item, p->s->tag);
    if (!r) {
        p->store_errors++;
        return -1;
    }
    freeReplyObject(r);
    if (p->s->work_us)
        usleep((useconds_t)p->s->work_us);
    return 0;
}

static const vmlet_route_t worker_routes[] = {
    {VMLET__ENVELOPE__BODY_LAUNCH_REQUEST, s_on_work_item},
    VMLET_ROUTES_END,
};

static int s_work(peer_t *p, vmlet_bus_options_t *bus)
{
    vmlet_err_t err = {0};
    vmlet_signals_t *signals = vmlet_signals_new(p->log, &err);
    p->store = vmlet_store_new(p->s->redis_url, NULL, p->log, p->metrics, &err);
    vmlet_dispatch_t *dispatch = vmlet_dispatch_new(worker_routes, p, p->metrics, p->log);
    zloop_t *loop = zloop_new();
    vmlet_bus_worker_t *worker = vmlet_bus_worker_new(bus, p->s->queue, (int)p->s->capacity,
                                                      dispatch, p->metrics, p->log, &err);
    if (!signals || !p->store || !worker || vmlet_bus_worker_attach(worker, loop, &err) < 0 ||
        vmlet_signals_attach(signals, loop, &err) < 0) {
        s_line("ERROR %s", err.msg);
        return 1;
    }
    s_line("READY");
    zloop_start(loop); // until SIGTERM
    s_line("RESULT deliveries=%ld store_errors=%ld", p->deliveries, p->store_errors);
    // Whatever watches the loop goes before the loop does.
    vmlet_bus_worker_destroy(&worker);
    vmlet_signals_destroy(&signals);
    zloop_destroy(&loop);
    vmlet_dispatch_destroy(&dispatch);
    vmlet_store_destroy(&p->store);
    return 0;
}

// --- submit -------------------------------------------------------------------

static int s_submit(peer_t *p, vmlet_bus_options_t *bus)
{
    vmlet_err_t err = {0};
    vmlet_bus_client_t *client = vmlet_bus_client_new(bus, p->metrics, p->log, &err);
    if (!client) {
        s_line("ERROR %s", err.msg);
        return 1;
    }
    s_line("READY");
    Vmlet__LaunchRequest launch = VMLET__LAUNCH_REQUEST__INIT;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_LAUNCH_REQUEST;
    env.launch_request = &launch;
    for (long i = 0; i < p->s->count; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%ld", p->s->tag, i);
        while (vmlet_bus_submit(client, p->s->queue, &env, id, &err) < 0)
            vmlet_bus_client_flush(client, 100, NULL);
        if (i % 1000 == 999)
            vmlet_bus_client_flush(client, 0, NULL); // read acceptances as we go
    }
    int rc = vmlet_bus_client_flush(client, 60000, &err);
    s_line("RESULT submitted=%ld pending=%zu %s", p->s->count, vmlet_bus_client_pending(client),
           rc < 0 ? err.msg : "");
    vmlet_bus_client_destroy(&client);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char *argv[])
{
    peer_settings_t s = {0};
    vmlet_cfg_section_t section = {options, &s};
    vmlet_err_t err = {0};
    int rc = vmlet_config_load(&section, 1, argc, argv, environ, argv[0], "bus test peer", &err);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "%s\n", err.msg);
        return rc < 0 ? 2 : 0;
    }
    zsys_handler_set(NULL);
    zsys_set_linger(0);
    peer_t p = {.s = &s, .metrics = vmlet_metrics_new(), .last_by_tag = zhashx_new()};
    zhashx_set_destructor(p.last_by_tag, (zhashx_destructor_fn *)zstr_free);
    p.log = vmlet_log_new(s.tag, "text", "info", &err);
    vmlet_log_set_fd(p.log, STDERR_FILENO);
    vmlet_bus_options_t bus = {.publish_endpoint = s.publish,
                               .subscribe_endpoint = s.subscribe,
                               .work_endpoint = s.work,
                               .hwm = (int)s.hwm,
                               .heartbeat_ms = 200,
                               .source = s.tag,
                               .curve_cert = s.curve_cert,
                               .curve_server_key = s.curve_server_key};
    if (strcmp(s.mode, "publish") == 0)
        rc = s_publish(&p, &bus);
    else if (strcmp(s.mode, "subscribe") == 0)
        rc = s_subscribe(&p, &bus);
    else if (strcmp(s.mode, "work") == 0)
        rc = s_work(&p, &bus);
    else
        rc = s_submit(&p, &bus);
    zhashx_destroy(&p.last_by_tag);
    vmlet_log_destroy(&p.log);
    vmlet_metrics_destroy(&p.metrics);
    vmlet_config_free(&section, 1);
    return rc;
}
