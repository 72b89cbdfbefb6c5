// Event subscriber: handshake, per-publisher loss counting, dispatch (see bus.h).
#include "bus_monitor.h"
#include "vmlet/bus.h"
#include "vmlet/bus_protocol.h"
#include "vmlet/timeutil.h"

#include <inttypes.h>
#include <string.h>

#define TOPIC_SLOTS 129
#define BATCH_MAX 256           // messages per loop wake-up, so timers still run
#define PUBLISHER_FORGET_MS 600000 // a publisher silent this long is forgotten

// The last sequence number seen from one publisher on one topic.
typedef struct {
    uint64_t last_seq;
    int64_t last_seen_ms;
} stream_t;

typedef struct {
    vmlet_metric_t *lost;
    vmlet_metric_t *duplicated;
} topic_metrics_t;

struct _vmlet_bus_subscriber_t {
    zsock_t *sock;
    zsock_t *monitor;
    zloop_t *loop;
    int prune_timer;
    bool ready;
    char hello_topic[64];
    vmlet_dispatch_t *dispatch;
    vmlet_log_t *log;
    vmlet_metrics_t *metrics;
    vmlet_metric_t *ready_gauge;
    vmlet_metric_t *malformed;
    zhashx_t *streams; // "<publisher id>/<topic>" -> stream_t
    uint64_t lost;
    topic_metrics_t topics[TOPIC_SLOTS];
};

vmlet_bus_subscriber_t *vmlet_bus_subscriber_new(const vmlet_bus_options_t *options,
                                                 const vmlet_body_case_t *cases, size_t n_cases,
                                                 vmlet_dispatch_t *dispatch,
                                                 vmlet_metrics_t *metrics, vmlet_log_t *log,
                                                 vmlet_err_t *err)
{
    vmlet_bus_subscriber_t *self = calloc(1, sizeof *self);
    if (!self) {
        vmlet_err_set(err, "bus subscriber: out of memory");
        return NULL;
    }
    self->dispatch = dispatch;
    self->log = log;
    self->metrics = metrics;
    self->streams = zhashx_new();
    self->sock = zsock_new(ZMQ_SUB);
    if (!self->streams || !self->sock) {
        vmlet_bus_subscriber_destroy(&self);
        vmlet_err_set(err, "bus subscriber: cannot create socket");
        return NULL;
    }
    zhashx_set_destructor(self->streams, (zhashx_destructor_fn *)zstr_free);
    zsock_set_rcvhwm(self->sock, options->hwm);
    zsock_set_linger(self->sock, 0);
    for (size_t i = 0; i < n_cases; i++) {
        const char *topic = vmlet_envelope_topic(cases[i]);
        if (!topic) {
            vmlet_err_set(err, "bus subscriber: body case %d has no topic", (int)cases[i]);
            vmlet_bus_subscriber_destroy(&self);
            return NULL;
        }
        zsock_set_subscribe(self->sock, topic);
    }
    // Subscribed last: when it is answered, the others are in place.
    char id[33];
    vmlet_random_hex(id, 16);
    snprintf(self->hello_topic, sizeof self->hello_topic, "%s%s", VMLET_BUS_HELLO_PREFIX, id);
    zsock_set_subscribe(self->sock, self->hello_topic);
    if (zsock_connect(self->sock, "%s", options->subscribe_endpoint) < 0) {
        vmlet_err_set(err, "bus subscriber: bad endpoint '%s' (expected tcp://HOST:PORT)",
                      options->subscribe_endpoint);
        vmlet_bus_subscriber_destroy(&self);
        return NULL;
    }
    self->monitor = vmlet_bus_monitor_open(self->sock);
    if (!self->monitor) {
        vmlet_err_set(err, "bus subscriber: cannot monitor the socket");
        vmlet_bus_subscriber_destroy(&self);
        return NULL;
    }
    self->ready_gauge = vmlet_metrics_gauge(
        metrics, "vmlet_bus_subscriber_ready",
        "1 when the broker has confirmed our subscriptions.", NULL);
    self->malformed = vmlet_metrics_counter(
        metrics, "vmlet_bus_events_malformed_total",
        "Event messages with the wrong number of frames or an unreadable header.", NULL);
    return self;
}

void vmlet_bus_subscriber_destroy(vmlet_bus_subscriber_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmlet_bus_subscriber_t *self = *self_p;
    if (self->loop) {
        zloop_reader_end(self->loop, self->sock);
        zloop_reader_end(self->loop, self->monitor);
        zloop_timer_end(self->loop, self->prune_timer);
    }
    zsock_destroy(&self->monitor);
    zsock_destroy(&self->sock);
    zhashx_destroy(&self->streams);
    free(self);
    *self_p = NULL;
}

static topic_metrics_t *s_topic_metrics(vmlet_bus_subscriber_t *self, vmlet_body_case_t c,
                                        const char *topic)
{
    topic_metrics_t *t = &self->topics[(size_t)c < TOPIC_SLOTS ? c : 0];
    if (!t->lost) {
        char labels[96];
        snprintf(labels, sizeof labels, "type=\"%s\"", topic);
        t->lost = vmlet_metrics_counter(
            self->metrics, "vmlet_bus_events_lost_total",
            "Events known lost on the way to us (gaps in a publisher's sequence).", labels);
        t->duplicated = vmlet_metrics_counter(
            self->metrics, "vmlet_bus_events_duplicated_total",
            "Events received with a sequence number already seen.", labels);
    }
    return t;
}

// Checks the publisher's sequence on this topic. Returns false for a
// duplicate or reordered event (not dispatched twice).
static bool s_check_sequence(vmlet_bus_subscriber_t *self, const Vmlet__Header *h,
                             vmlet_body_case_t c, const char *topic)
{
    if (!h || !h->has_publisher_id || !h->has_seq)
        return true; // a tool that does not number its events
    char key[128];
    snprintf(key, sizeof key, "%016" PRIx64 "/%s", h->publisher_id, topic);
    stream_t *s = zhashx_lookup(self->streams, key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return true;
        s->last_seq = h->seq - (h->seq_sync ? 0 : 1); // what came before we joined is not ours
        zhashx_insert(self->streams, key, s);
    }
    s->last_seen_ms = vmlet_now_ms();
    topic_metrics_t *t = s_topic_metrics(self, c, topic);
    if (h->seq <= s->last_seq) {
        if (!h->seq_sync)
            vmlet_counter_inc(t->duplicated);
        return false;
    }
    uint64_t gap = h->seq - s->last_seq - (h->seq_sync ? 0 : 1);
    if (gap > 0) {
        self->lost += gap;
        vmlet_counter_add(t->lost, (double)gap);
        vmlet_log_warn(self->log, VMLET_KV({"type", topic}, {"source", h->source}),
                       "lost %" PRIu64 " events (sequence %" PRIu64 " after %" PRIu64 ")", gap,
                       h->seq, s->last_seq);
    }
    s->last_seq = h->seq;
    return !h->seq_sync;
}

// After a reconnect the socket subscribes again by itself, and the broker
// answers the hello again: that is when we are back.
static int s_on_monitor(zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    vmlet_bus_subscriber_t *self = arg;
    if (vmlet_bus_monitor_disconnected(reader) && self->ready) {
        self->ready = false;
        vmlet_gauge_set(self->ready_gauge, 0);
        vmlet_log_warn(self->log, VMLET_KV({"role", "subscriber"}),
                       "lost the broker; waiting for it to confirm our subscriptions again");
    }
    return 0;
}

static void s_on_hello(vmlet_bus_subscriber_t *self)
{
    if (!self->ready)
        vmlet_log_info(self->log, VMLET_KV({"role", "subscriber"}),
                       "subscriptions confirmed by the broker");
    self->ready = true;
    vmlet_gauge_set(self->ready_gauge, 1);
}

static void s_handle(vmlet_bus_subscriber_t *self, zmsg_t *msg)
{
    zframe_t *topic_frame = zmsg_first(msg);
    zframe_t *body = zmsg_next(msg);
    char *topic = topic_frame ? zframe_strdup(topic_frame) : NULL;
    if (topic && strcmp(topic, self->hello_topic) == 0) {
        s_on_hello(self);
    } else if (!topic || !body || zmsg_next(msg)) {
        vmlet_counter_inc(self->malformed);
    } else {
        vmlet_err_t err = {0};
        vmlet_envelope_t *env =
            vmlet_envelope_unpack(zframe_data(body), zframe_size(body), &err);
        vmlet_body_case_t c = vmlet_envelope_case_for_topic(topic);
        if (!env || c == VMLET__ENVELOPE__BODY__NOT_SET)
            vmlet_dispatch_bytes(self->dispatch, zframe_data(body), zframe_size(body), NULL);
        else if (s_check_sequence(self, env->header, c, topic))
            vmlet_dispatch_envelope(self->dispatch, env, NULL);
        vmlet_envelope_free(&env);
    }
    free(topic);
}

int vmlet_bus_subscriber_receive(vmlet_bus_subscriber_t *self, int max, int timeout_ms)
{
    int handled = 0;
    zmq_pollitem_t item = {zsock_resolve(self->sock), 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, timeout_ms) <= 0)
        return 0;
    while (handled < max) {
        zmsg_t *msg = NULL;
        if (zsock_events(self->sock) & ZMQ_POLLIN)
            msg = zmsg_recv(self->sock);
        if (!msg)
            break;
        s_handle(self, msg);
        zmsg_destroy(&msg);
        handled++;
    }
    return handled;
}

static int s_on_readable(zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    (void)reader;
    vmlet_bus_subscriber_receive(arg, BATCH_MAX, 0);
    return 0;
}

// Forgets publishers long gone (they restart with new ids).
static int s_on_prune(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    vmlet_bus_subscriber_t *self = arg;
    int64_t now = vmlet_now_ms();
    zlistx_t *keys = zhashx_keys(self->streams);
    for (char *key = zlistx_first(keys); key; key = zlistx_next(keys)) {
        stream_t *s = zhashx_lookup(self->streams, key);
        if (s && now - s->last_seen_ms > PUBLISHER_FORGET_MS)
            zhashx_delete(self->streams, key);
    }
    zlistx_destroy(&keys);
    return 0;
}

int vmlet_bus_subscriber_attach(vmlet_bus_subscriber_t *self, zloop_t *loop, vmlet_err_t *err)
{
    if (zloop_reader(loop, self->sock, s_on_readable, self) < 0 ||
        zloop_reader(loop, self->monitor, s_on_monitor, self) < 0)
        return vmlet_err_set(err, "bus subscriber: cannot watch socket");
    self->prune_timer = zloop_timer(loop, 60000, 0, s_on_prune, self);
    self->loop = loop;
    return 0;
}

bool vmlet_bus_subscriber_ready(const vmlet_bus_subscriber_t *self)
{
    return self->ready;
}

uint64_t vmlet_bus_subscriber_lost(const vmlet_bus_subscriber_t *self)
{
    return self->lost;
}
