// tests/bench/bus: event throughput and latency through the broker (the
// library's publisher -> vmlet-bus -> the library's subscriber), against a
// direct ZeroMQ PUB/SUB pair carrying the same messages, measured in the
// same run because this machine is shared and noisy.
//
//   saturation: N events sent as fast as the path takes them (high-water
//               marks raised so nothing is dropped); events/s at the receiver
//   latency:    events paced at a fixed rate; p50 and p99 from send to receipt
//
// Targets (issue 2): broker throughput >= 0.5x direct; p99 < 1 ms at 10,000/s.
#include "testsupport.h"

#include "vmlet/bus.h"
#include "vmlet/timeutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BIG_HWM 2000000

typedef struct {
    long count;
    long rate; // per second; 0 = flat out
    // direct pair
    char endpoint[64];
    // broker path
    vmlet_bus_options_t bus;
    // results, written by the receiver
    long received;
    int64_t first_ms, last_ms;
    double *latency_us;
    volatile int receiver_ready;
} run_t;

static void s_fill_message(Vmlet__ProbeResult *r, vmlet_envelope_t *env, long n)
{
    *r = (Vmlet__ProbeResult)VMLET__PROBE_RESULT__INIT;
    r->prober_id = "bench";
    r->container = "app";
    r->output = "HTTP probe succeeded with statuscode: 200";
    r->has_consecutive = 1;
    r->consecutive = (int32_t)n;
    r->has_observed_unix_ms = 1;
    r->observed_unix_ms = vmlet_unix_ns() / 1000; // microseconds here
    *env = (vmlet_envelope_t)VMLET__ENVELOPE__INIT;
    env->body_case = VMLET__ENVELOPE__BODY_PROBE_RESULT;
    env->probe_result = r;
}

static void s_pace(run_t *run, long sent, int64_t start_ms)
{
    if (!run->rate)
        return;
    while (sent >= (vmlet_now_ms() - start_ms + 1) * run->rate / 1000)
        usleep(50);
}

static void s_record(run_t *run, const vmlet_envelope_t *env)
{
    int64_t now = vmlet_now_ms();
    if (run->received == 0)
        run->first_ms = now;
    run->last_ms = now;
    if (env && env->probe_result)
        run->latency_us[run->received] =
            (double)(vmlet_unix_ns() / 1000 - env->probe_result->observed_unix_ms);
    run->received++;
}

// --- direct pair ----------------------------------------------------------------

// The baseline does what a careful hand-written pair would: zero-copy
// receive, unpack, count. No sequence checks, no dispatch, no broker.
static void *s_direct_receiver(void *arg)
{
    run_t *run = arg;
    zsock_t *sub = zsock_new(ZMQ_SUB);
    zsock_set_rcvhwm(sub, BIG_HWM);
    zsock_set_subscribe(sub, "ProbeResult");
    zsock_set_subscribe(sub, "_ping"); // the sender pings until we hear it
    zsock_connect(sub, "%s", run->endpoint);
    void *raw = zsock_resolve(sub);
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    while (run->received < run->count) {
        zmq_pollitem_t item = {raw, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 10) <= 0) {
            if (run->received && vmlet_now_ms() - run->last_ms > 5000)
                break;
            continue;
        }
        while (zmq_msg_recv(&topic, raw, ZMQ_DONTWAIT) >= 0) {
            zmq_msg_recv(&body, raw, 0);
            if (zmq_msg_size(&topic) == 5) {
                run->receiver_ready = 1;
                continue;
            }
            vmlet_envelope_t *env =
                vmlet_envelope_unpack(zmq_msg_data(&body), zmq_msg_size(&body), NULL);
            s_record(run, env);
            vmlet_envelope_free(&env);
        }
    }
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    zsock_destroy(&sub);
    return NULL;
}

static void s_direct(run_t *run)
{
    snprintf(run->endpoint, sizeof run->endpoint, "tcp://127.0.0.1:%d", ts_free_port());
    zsock_t *pub = zsock_new(ZMQ_PUB);
    zsock_set_sndhwm(pub, BIG_HWM);
    zsock_bind(pub, "%s", run->endpoint);
    pthread_t receiver;
    pthread_create(&receiver, NULL, s_direct_receiver, run);
    while (!run->receiver_ready) {
        zsock_send(pub, "ss", "_ping", "");
        usleep(10000);
    }
    int64_t start = vmlet_now_ms();
    for (long n = 1; n <= run->count; n++) {
        s_pace(run, n - 1, start);
        Vmlet__ProbeResult r;
        vmlet_envelope_t env;
        s_fill_message(&r, &env, n);
        zmq_msg_t body;
        zmq_msg_init_size(&body, vmlet__envelope__get_packed_size(&env));
        vmlet__envelope__pack(&env, zmq_msg_data(&body));
        zmq_send(zsock_resolve(pub), "ProbeResult", 11, ZMQ_SNDMORE);
        zmq_msg_send(&body, zsock_resolve(pub), 0);
    }
    pthread_join(receiver, NULL);
    zsock_destroy(&pub);
}

// --- through the broker ---------------------------------------------------------

static int s_on_event(void *ctx, const vmlet_envelope_t *env)
{
    s_record(ctx, env);
    return 0;
}

static const vmlet_route_t routes[] = {{VMLET__ENVELOPE__BODY_PROBE_RESULT, s_on_event},
                                       VMLET_ROUTES_END};

static void *s_broker_receiver(void *arg)
{
    run_t *run = arg;
    vmlet_metrics_t *metrics = vmlet_metrics_new();
    vmlet_dispatch_t *dispatch = vmlet_dispatch_new(routes, run, metrics, NULL);
    vmlet_body_case_t topics[] = {VMLET__ENVELOPE__BODY_PROBE_RESULT};
    vmlet_bus_subscriber_t *sub =
        vmlet_bus_subscriber_new(&run->bus, topics, 1, dispatch, metrics, NULL, NULL);
    while (!vmlet_bus_subscriber_ready(sub))
        vmlet_bus_subscriber_receive(sub, 100, 10);
    run->receiver_ready = 1;
    while (run->received < run->count) {
        if (vmlet_bus_subscriber_receive(sub, 1000, 10) == 0 && run->received &&
            vmlet_now_ms() - run->last_ms > 5000)
            break;
    }
    vmlet_bus_subscriber_destroy(&sub);
    vmlet_dispatch_destroy(&dispatch);
    vmlet_metrics_destroy(&metrics);
    return NULL;
}

static void s_broker(run_t *run)
{
    vmlet_metrics_t *metrics = vmlet_metrics_new();
    vmlet_bus_publisher_t *pub = vmlet_bus_publisher_new(&run->bus, metrics, NULL, NULL);
    vmlet_bus_publisher_wait_ready(pub, 10000, NULL);
    pthread_t receiver;
    pthread_create(&receiver, NULL, s_broker_receiver, run);
    while (!run->receiver_ready)
        usleep(1000);
    int64_t start = vmlet_now_ms();
    for (long n = 1; n <= run->count; n++) {
        s_pace(run, n - 1, start);
        Vmlet__ProbeResult r;
        vmlet_envelope_t env;
        s_fill_message(&r, &env, n);
        while (vmlet_bus_publish(pub, &env, NULL) < 0)
            usleep(20); // queue full: wait, do not drop (we measure capacity)
    }
    pthread_join(receiver, NULL);
    vmlet_bus_publisher_destroy(&pub);
    vmlet_metrics_destroy(&metrics);
}

// --- report -----------------------------------------------------------------------

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double per_s, p50_us, p99_us;
    long received;
} figures_t;

static figures_t s_measure(void (*path)(run_t *), run_t *proto, long count, long rate)
{
    run_t run = *proto;
    run.count = count;
    run.rate = rate;
    run.latency_us = calloc((size_t)count + 1, sizeof(double));
    path(&run);
    figures_t f = {0, 0, 0, run.received};
    int64_t span = run.last_ms - run.first_ms;
    f.per_s = span > 0 ? (double)run.received * 1000.0 / (double)span : 0;
    qsort(run.latency_us, (size_t)run.received, sizeof(double), s_cmp);
    if (run.received) {
        f.p50_us = run.latency_us[(size_t)(0.50 * (double)(run.received - 1))];
        f.p99_us = run.latency_us[(size_t)(0.99 * (double)(run.received - 1))];
    }
    free(run.latency_us);
    return f;
}

int main(int argc, char *argv[])
{
    long count = argc > 1 ? atol(argv[1]) : 300000;
    long paced = argc > 2 ? atol(argv[2]) : count / 10;
    long rate = 10000;
    zsys_set_linger(0);
    char *dir = ts_tempdir("vmlet-bench-bus");
    ts_broker_t broker;
    char hwm[32];
    snprintf(hwm, sizeof hwm, "--hwm=%d", BIG_HWM);
    const char *const broker_args[] = {hwm, NULL};
    if (ts_broker_start(&broker, dir, broker_args) < 0) {
        fprintf(stderr, "bench: cannot start vmlet-bus (see %s/broker.log)\n", dir);
        return 1;
    }
    run_t proto = {.bus = {.publish_endpoint = broker.publish,
                           .subscribe_endpoint = broker.subscribe,
                           .work_endpoint = broker.work,
                           .hwm = BIG_HWM,
                           .heartbeat_ms = 1000,
                           .source = "bench"}};
    printf("bus benchmark: %ld events at saturation, %ld at %ld/s; ProbeResult envelopes\n",
           count, paced, rate);
    figures_t direct_sat = s_measure(s_direct, &proto, count, 0);
    figures_t broker_sat = s_measure(s_broker, &proto, count, 0);
    figures_t direct_lat = s_measure(s_direct, &proto, paced, rate);
    figures_t broker_lat = s_measure(s_broker, &proto, paced, rate);
    printf("%-28s %14s %14s\n", "", "direct PUB/SUB", "via broker");
    printf("%-28s %14.0f %14.0f   ratio %.2f (target >= 0.50)\n", "saturation events/s",
           direct_sat.per_s, broker_sat.per_s, broker_sat.per_s / direct_sat.per_s);
    printf("%-28s %14ld %14ld\n", "  events received", direct_sat.received,
           broker_sat.received);
    printf("%-28s %14.0f %14.0f\n", "latency p50 us @10k/s", direct_lat.p50_us, broker_lat.p50_us);
    printf("%-28s %14.0f %14.0f   (target < 1000)\n", "latency p99 us @10k/s", direct_lat.p99_us,
           broker_lat.p99_us);
    ts_broker_stop(&broker);
    ts_remove_dir(dir);
    free(dir);
    return 0;
}
