// Event publisher: per-topic sequence numbers, counted drops, and a
// readiness handshake (see bus.h).
//
// The socket is an XPUB connected to the broker's XSUB. The broker
// subscribes to everything, and an XPUB hears subscriptions, so hearing one
// tells us the path to the broker is up. XPUB_NODROP makes a full queue an
// EAGAIN we can count instead of a silent drop.
#include "bus_monitor.h"
#include "vmlet/bus.h"
#include "vmlet/bus_curve.h"
#include "vmlet/timeutil.h"

#include <inttypes.h>
#include <string.h>

#define TOPIC_SLOTS 129       // body cases are small field numbers
#define SYNC_TIMER_MS 250     // how often topics are looked at
#define SYNC_QUIET_TICKS 4    // a topic quiet this many looks gets a seq marker...
#define SYNC_REPEAT_TICKS 20  // ...and again this often, in case one was dropped

typedef struct {
    uint64_t seq;        // last sequence number sent on the topic
    uint64_t synced_seq; // last one a marker covered
    // Counted in timer ticks, not read from a clock: publishing stays cheap.
    uint64_t seq_at_last_tick;
    int quiet_ticks;
    int ticks_since_sync;
    vmlet_metric_t *dropped;
    vmlet_metric_t *published;
} topic_state_t;

struct _vmlet_bus_publisher_t {
    zsock_t *sock;
    zsock_t *monitor;
    zloop_t *loop;
    int sync_timer;
    bool ready;
    uint64_t id;
    char *source;
    vmlet_log_t *log;
    vmlet_metrics_t *metrics;
    vmlet_metric_t *ready_gauge;
    topic_state_t topics[TOPIC_SLOTS];
};

vmlet_bus_publisher_t *vmlet_bus_publisher_new(const vmlet_bus_options_t *options,
                                               vmlet_metrics_t *metrics, vmlet_log_t *log,
                                               vmlet_err_t *err)
{
    vmlet_bus_publisher_t *self = calloc(1, sizeof *self);
    if (!self || !(self->source = strdup(options->source ? options->source : "?"))) {
        free(self);
        vmlet_err_set(err, "bus publisher: out of memory");
        return NULL;
    }
    self->log = log;
    self->metrics = metrics;
    self->id = vmlet_random_u64();
    self->sock = zsock_new(ZMQ_XPUB);
    if (!self->sock) {
        vmlet_bus_publisher_destroy(&self);
        vmlet_err_set(err, "bus publisher: cannot create socket");
        return NULL;
    }
    zsock_set_sndhwm(self->sock, options->hwm);
    zsock_set_xpub_nodrop(self->sock, 1);
    zsock_set_xpub_verbose(self->sock, 1); // hear the broker's subscription after every reconnect
    zsock_set_linger(self->sock, 0);
    if (vmlet_bus_curve_client(self->sock, options, "publisher", err) < 0) {
        vmlet_bus_publisher_destroy(&self);
        return NULL;
    }
    if (zsock_connect(self->sock, "%s", options->publish_endpoint) < 0) {
        vmlet_err_set(err, "bus publisher: bad endpoint '%s' (expected tcp://HOST:PORT)",
                      options->publish_endpoint);
        vmlet_bus_publisher_destroy(&self);
        return NULL;
    }
    self->monitor = vmlet_bus_monitor_open(self->sock);
    if (!self->monitor) {
        vmlet_err_set(err, "bus publisher: cannot monitor the socket");
        vmlet_bus_publisher_destroy(&self);
        return NULL;
    }
    self->ready_gauge = vmlet_metrics_gauge(metrics, "vmlet_bus_publisher_ready",
                                            "1 when the broker has subscribed to our events.",
                                            NULL);
    return self;
}

void vmlet_bus_publisher_destroy(vmlet_bus_publisher_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmlet_bus_publisher_t *self = *self_p;
    if (self->loop) {
        zloop_reader_end(self->loop, self->sock);
        zloop_reader_end(self->loop, self->monitor);
        zloop_timer_end(self->loop, self->sync_timer);
    }
    zsock_destroy(&self->monitor);
    zsock_destroy(&self->sock);
    free(self->source);
    free(self);
    *self_p = NULL;
}

// Drains subscription messages: [1][topic] subscribe, [0][topic] unsubscribe.
static void s_read_subscriptions(vmlet_bus_publisher_t *self)
{
    zframe_t *frame;
    while ((frame = zframe_recv_nowait(self->sock))) {
        if (zframe_size(frame) >= 1 && zframe_data(frame)[0] == 1 && !self->ready) {
            self->ready = true;
            vmlet_gauge_set(self->ready_gauge, 1);
            vmlet_log_info(self->log, VMLET_KV({"role", "publisher"}), "connected to the broker");
        }
        zframe_destroy(&frame);
    }
}

static int s_on_readable(zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    (void)reader;
    s_read_subscriptions(arg);
    return 0;
}

static int s_on_monitor(zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    vmlet_bus_publisher_t *self = arg;
    if (vmlet_bus_monitor_disconnected(reader) && self->ready) {
        self->ready = false;
        vmlet_gauge_set(self->ready_gauge, 0);
        vmlet_log_warn(self->log, VMLET_KV({"role", "publisher"}),
                       "lost the broker; events are dropped (and counted) until it is back");
    }
    return 0;
}

static int s_on_sync_timer(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    vmlet_bus_publisher_sync(arg);
    return 0;
}

int vmlet_bus_publisher_attach(vmlet_bus_publisher_t *self, zloop_t *loop, vmlet_err_t *err)
{
    if (zloop_reader(loop, self->sock, s_on_readable, self) < 0 ||
        zloop_reader(loop, self->monitor, s_on_monitor, self) < 0)
        return vmlet_err_set(err, "bus publisher: cannot watch socket");
    self->sync_timer = zloop_timer(loop, SYNC_TIMER_MS, 0, s_on_sync_timer, self);
    if (self->sync_timer < 0)
        return vmlet_err_set(err, "bus publisher: cannot start timer");
    self->loop = loop;
    return 0;
}

bool vmlet_bus_publisher_ready(const vmlet_bus_publisher_t *self)
{
    return self->ready;
}

int vmlet_bus_publisher_wait_ready(vmlet_bus_publisher_t *self, int timeout_ms, vmlet_err_t *err)
{
    int64_t deadline = vmlet_now_ms() + timeout_ms;
    while (!self->ready) {
        int64_t left = deadline - vmlet_now_ms();
        if (left <= 0)
            return vmlet_err_set(err, "bus publisher: the broker did not subscribe within %d ms "
                                      "(is vmlet-bus running at the publish endpoint?)",
                                 timeout_ms);
        zmq_pollitem_t item = {zsock_resolve(self->sock), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)left) > 0)
            s_read_subscriptions(self);
    }
    return 0;
}

static topic_state_t *s_topic(vmlet_bus_publisher_t *self, vmlet_body_case_t body_case)
{
    topic_state_t *t = &self->topics[(size_t)body_case < TOPIC_SLOTS ? body_case : 0];
    if (!t->published) {
        char labels[96];
        snprintf(labels, sizeof labels, "type=\"%s\"", vmlet_envelope_topic(body_case));
        t->published = vmlet_metrics_counter(self->metrics, "vmlet_bus_events_published_total",
                                             "Events sent to the broker, by type.", labels);
        t->dropped = vmlet_metrics_counter(
            self->metrics, "vmlet_bus_events_dropped_total",
            "Events dropped before the broker because our queue to it was full.", labels);
    }
    return t;
}

// Packs straight into a ZeroMQ message and sends [topic][envelope]; 0 if
// queued, -1 if the queue is full.
static int s_send(vmlet_bus_publisher_t *self, const char *topic, vmlet_envelope_t *env)
{
    zmq_msg_t body;
    if (zmq_msg_init_size(&body, vmlet__envelope__get_packed_size(env)) < 0)
        return -1;
    vmlet__envelope__pack(env, zmq_msg_data(&body));
    void *raw = zsock_resolve(self->sock);
    int rc = zmq_send(raw, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0)
        rc = zmq_msg_send(&body, raw, ZMQ_DONTWAIT);
    if (rc < 0)
        zmq_msg_close(&body);
    return rc < 0 ? -1 : 0;
}

// Sends env with a header stamped for `seq` on its topic.
static int s_stamp_and_send(vmlet_bus_publisher_t *self, vmlet_envelope_t *env,
                            vmlet_body_case_t body_case, uint64_t seq, bool sync)
{
    const char *topic = vmlet_envelope_topic(body_case);
    Vmlet__Header header = VMLET__HEADER__INIT;
    Vmlet__Header *saved = env->header;
    if (saved)
        header = *saved; // keep the caller's trace id and whatever else they set
    header.source = self->source;
    header.has_publisher_id = 1;
    header.publisher_id = self->id;
    header.has_seq = 1;
    header.seq = seq;
    header.has_sent_unix_ns = 1;
    header.sent_unix_ns = vmlet_unix_ns();
    header.has_seq_sync = sync;
    header.seq_sync = sync;
    env->header = &header;
    int rc = s_send(self, topic, env);
    env->header = saved;
    return rc;
}

int vmlet_bus_publish(vmlet_bus_publisher_t *self, vmlet_envelope_t *env, vmlet_err_t *err)
{
    const char *topic = vmlet_envelope_topic(env->body_case);
    if (!topic)
        return vmlet_err_set(err, "bus publish: envelope has no body");
    topic_state_t *t = s_topic(self, env->body_case);
    if (s_stamp_and_send(self, env, env->body_case, t->seq + 1, false) < 0) {
        vmlet_counter_inc(t->dropped);
        return vmlet_err_set(err, "bus publish %s: queue to the broker is full (%s); dropped",
                             topic, zmq_strerror(zmq_errno()));
    }
    t->seq++;
    vmlet_counter_inc(t->published);
    return 0;
}

void vmlet_bus_publisher_sync(vmlet_bus_publisher_t *self)
{
    for (size_t c = 1; c < TOPIC_SLOTS; c++) {
        topic_state_t *t = &self->topics[c];
        if (t->seq == 0)
            continue;
        t->quiet_ticks = t->seq == t->seq_at_last_tick ? t->quiet_ticks + 1 : 0;
        t->seq_at_last_tick = t->seq;
        t->ticks_since_sync++;
        bool due = t->seq != t->synced_seq || t->ticks_since_sync >= SYNC_REPEAT_TICKS;
        if (t->quiet_ticks < SYNC_QUIET_TICKS || !due)
            continue;
        // The marker has no body; its topic says which type it covers.
        vmlet_envelope_t marker = VMLET__ENVELOPE__INIT;
        if (s_stamp_and_send(self, &marker, (vmlet_body_case_t)c, t->seq, true) == 0) {
            t->synced_seq = t->seq;
            t->ticks_since_sync = 0;
        }
    }
}
