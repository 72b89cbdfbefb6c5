// Event subscriber: handshake, per-publisher loss counting, dispatch (see bus.h).
#include "bus_monitor.h"
#include "vmlet/bus.h"
#include "vmlet/bus_curve.h"
#include "vmlet/bus_protocol.h"
#include "vmlet/timeutil.h"

#include <inttypes.h>
#include <string.h>

#define TOPIC_SLOTS 129
#define ARENA_BYTES 65536      // scratch for unpacking one event
#define BATCH_MAX 256           // messages per loop wake-up, so timers still run
#define PRUNE_MS 60000      // how often forgotten publishers are looked for
#define FORGET_AFTER_PRUNES 10 // a publisher silent this many periods is forgotten

// The last sequence number seen from one publisher on one topic.
typedef struct {
    uint64_t last_seq;
    uint64_t last_seen_prune; // the prune period it was last heard in
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
    vmlet_arena_t arena;
    zhashx_t *streams; // "<publisher id>/<topic>" -> stream_t
    // The stream of the previous event: bursts come from one publisher, so
    // this saves formatting a key and a hash lookup per event.
    stream_t *last_stream;
    uint64_t last_publisher;
    vmlet_body_case_t last_case;
    uint64_t lost;
    uint64_t prunes; // a clock of prune periods: cheaper than reading time per event
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
    if (!self->streams || !self->sock || vmlet_arena_init(&self->arena, ARENA_BYTES) < 0) {
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
    if (vmlet_bus_curve_client(self->sock, options, "subscriber", err) < 0) {
        vmlet_bus_subscriber_destroy(&self);
        return NULL;
    }
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
    vmlet_arena_clear(&self->arena);
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
    stream_t *s = NULL;
    if (self->last_stream && self->last_publisher == h->publisher_id && self->last_case == c)
        s = self->last_stream;
    char key[128];
    if (!s) {
        snprintf(key, sizeof key, "%016" PRIx64 "/%s", h->publisher_id, topic);
        s = zhashx_lookup(self->streams, key);
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return true;
        s->last_seq = h->seq - (h->seq_sync ? 0 : 1); // what came before we joined is not ours
        zhashx_insert(self->streams, key, s);
    }
    self->last_stream = s;
    self->last_publisher = h->publisher_id;
    self->last_case = c;
    s->last_seen_prune = self->prunes;
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

static bool s_part_equals(zmq_msg_t *part, const char *text)
{
    size_t n = strlen(text);
    return zmq_msg_size(part) == n && memcmp(zmq_msg_data(part), text, n) == 0;
}

// Handles one event, [topic][envelope]. `extra` says more parts followed.
static void s_handle(vmlet_bus_subscriber_t *self, zmq_msg_t *topic, zmq_msg_t *body, bool extra)
{
    if (s_part_equals(topic, self->hello_topic)) {
        s_on_hello(self);
        return;
    }
    if (!body || extra) {
        vmlet_counter_inc(self->malformed);
        return;
    }
    const uint8_t *data = zmq_msg_data(body);
    size_t len = zmq_msg_size(body);
    vmlet_envelope_t *env = vmlet_envelope_unpack_in(&self->arena, data, len, NULL);
    if (!env) {
        vmlet_dispatch_bytes(self->dispatch, data, len, NULL); // counts it as malformed
        return;
    }
    // The topic names the type even for a body-less sequence marker.
    vmlet_body_case_t c = env->body_case;
    if (c == VMLET__ENVELOPE__BODY__NOT_SET) {
        char name[64];
        size_t n = zmq_msg_size(topic) < sizeof name - 1 ? zmq_msg_size(topic) : sizeof name - 1;
        memcpy(name, zmq_msg_data(topic), n);
        name[n] = '\0';
        c = vmlet_envelope_case_for_topic(name);
    }
    const char *topic_name = vmlet_envelope_topic(c);
    if (!topic_name && env->body_case == VMLET__ENVELOPE__BODY__NOT_SET)
        vmlet_dispatch_envelope(self->dispatch, env, NULL); // a newer sender's type: unknown
    else if (!topic_name || !s_part_equals(topic, topic_name))
        vmlet_counter_inc(self->malformed); // the body is not what the topic says
    else if (s_check_sequence(self, env->header, c, topic_name))
        vmlet_dispatch_envelope(self->dispatch, env, NULL);
    vmlet_envelope_release(&self->arena, &env);
}

// Receives one whole message without blocking; false when none is waiting.
static bool s_receive_one(vmlet_bus_subscriber_t *self)
{
    void *sock = zsock_resolve(self->sock);
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    if (zmq_msg_recv(&topic, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&topic);
        return false;
    }
    bool has_body = zmq_msg_more(&topic);
    zmq_msg_init(&body);
    if (has_body)
        zmq_msg_recv(&body, sock, 0);
    bool extra = has_body && zmq_msg_more(&body);
    s_handle(self, &topic, has_body ? &body : NULL, extra);
    // Drain any further parts of a malformed message.
    while (extra) {
        zmq_msg_recv(&body, sock, 0);
        extra = zmq_msg_more(&body);
    }
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    return true;
}

int vmlet_bus_subscriber_receive(vmlet_bus_subscriber_t *self, int max, int timeout_ms)
{
    zmq_pollitem_t item = {zsock_resolve(self->sock), 0, ZMQ_POLLIN, 0};
    if (timeout_ms > 0 && zmq_poll(&item, 1, timeout_ms) <= 0)
        return 0;
    int handled = 0;
    while (handled < max && s_receive_one(self))
        handled++;
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
    self->prunes++;
    zlistx_t *keys = zhashx_keys(self->streams);
    for (char *key = zlistx_first(keys); key; key = zlistx_next(keys)) {
        stream_t *s = zhashx_lookup(self->streams, key);
        if (s && self->prunes - s->last_seen_prune > FORGET_AFTER_PRUNES) {
            if (s == self->last_stream)
                self->last_stream = NULL;
            zhashx_delete(self->streams, key);
        }
    }
    zlistx_destroy(&keys);
    return 0;
}

int vmlet_bus_subscriber_attach(vmlet_bus_subscriber_t *self, zloop_t *loop, vmlet_err_t *err)
{
    if (zloop_reader(loop, self->sock, s_on_readable, self) < 0 ||
        zloop_reader(loop, self->monitor, s_on_monitor, self) < 0)
        return vmlet_err_set(err, "bus subscriber: cannot watch socket");
    self->prune_timer = zloop_timer(loop, PRUNE_MS, 0, s_on_prune, self);
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
