// The bus broker's sockets and their actions (see broker.h).
#include "broker.h"
#include "broker_auth.h"
#include "work_queue.h"

#include "vmlet/bus_protocol.h"
#include "vmlet/timeutil.h"

#include <string.h>

#define EVENT_BATCH 1024 // messages forwarded per wake-up, so timers still run
#define ROUTING_ID_MAX 256

struct _broker_t {
    zsock_t *xsub;
    zsock_t *xpub;
    zsock_t *router;
    zloop_t *loop;
    int heartbeat_timer;
    int64_t heartbeat_ms;
    int liveness;
    work_queue_t *work;
    broker_auth_t *auth; // NULL without CURVE
    vmlet_log_t *log;
    vmlet_metrics_t *metrics;
    vmlet_metric_t *events_forwarded;
    vmlet_metric_t *subscriptions;
    vmlet_metric_t *handshakes;
    vmlet_metric_t *bad_messages;
    vmlet_metric_t *items_submitted;
    vmlet_metric_t *items_dispatched;
    vmlet_metric_t *items_done;
    vmlet_metric_t *items_requeued;
    vmlet_metric_t *workers_expired;
    vmlet_metric_t *workers_stopped;
};

// `name` labels the socket's CURVE refusals.
static zsock_t *s_bind(broker_t *self, int type, const char *name, const char *endpoint, int hwm,
                       vmlet_err_t *err)
{
    zsock_t *sock = zsock_new(type);
    if (!sock) {
        vmlet_err_set(err, "cannot create socket for %s", endpoint);
        return NULL;
    }
    zsock_set_sndhwm(sock, hwm);
    zsock_set_rcvhwm(sock, hwm);
    zsock_set_linger(sock, 0);
    if (self->auth && broker_auth_secure(self->auth, sock, name, err) < 0) {
        zsock_destroy(&sock);
        return NULL;
    }
    if (zsock_bind(sock, "%s", endpoint) < 0) {
        vmlet_err_set(err, "cannot bind %s: %s (is another broker running there?)", endpoint,
                      zmq_strerror(zmq_errno()));
        zsock_destroy(&sock);
    }
    return sock;
}

static void s_register_metrics(broker_t *self, vmlet_metrics_t *m)
{
    self->metrics = m;
    self->events_forwarded = vmlet_metrics_counter(m, "vmlet_bus_broker_events_forwarded_total",
                                                   "Event messages passed to subscribers.", NULL);
    self->subscriptions = vmlet_metrics_gauge(m, "vmlet_bus_broker_subscriptions",
                                              "Distinct topics subscribed to.", NULL);
    self->handshakes = vmlet_metrics_counter(m, "vmlet_bus_broker_handshakes_total",
                                             "Subscriber handshakes answered.", NULL);
    self->bad_messages = vmlet_metrics_counter(
        m, "vmlet_bus_broker_bad_messages_total", "Work-protocol messages we could not parse.",
        NULL);
    self->items_submitted = vmlet_metrics_counter(
        m, "vmlet_bus_broker_items_submitted_total", "New work items queued.", NULL);
    self->items_dispatched = vmlet_metrics_counter(
        m, "vmlet_bus_broker_items_dispatched_total", "Work items sent to workers.", NULL);
    self->items_done = vmlet_metrics_counter(m, "vmlet_bus_broker_items_done_total",
                                             "Work items acknowledged by workers.", NULL);
    self->items_requeued = vmlet_metrics_counter(
        m, "vmlet_bus_broker_items_requeued_total",
        "Work items put back: handed back, or their worker died.", NULL);
    self->workers_stopped = vmlet_metrics_counter(
        m, "vmlet_bus_broker_workers_stopped_total", "Workers that said they were stopping.", NULL);
    self->workers_expired = vmlet_metrics_counter(
        m, "vmlet_bus_broker_workers_expired_total", "Workers dropped for missed heartbeats.",
        NULL);
}

broker_t *broker_new(const broker_options_t *options, vmlet_metrics_t *metrics, vmlet_log_t *log,
                     vmlet_err_t *err)
{
    broker_t *self = calloc(1, sizeof *self);
    if (!self) {
        vmlet_err_set(err, "broker: out of memory");
        return NULL;
    }
    self->log = log;
    self->heartbeat_ms = options->heartbeat_ms;
    self->liveness = options->liveness;
    self->work = work_queue_new(options->max_queue);
    bool curve = options->curve_cert && options->curve_cert[0];
    if (!curve && options->curve_authorized && options->curve_authorized[0]) {
        vmlet_err_set(err, "--curve-authorized needs --curve-cert (the broker's own certificate)");
        broker_destroy(&self);
        return NULL;
    }
    if (curve && !(self->auth = broker_auth_new(options->curve_cert, options->curve_authorized,
                                                metrics, log, err))) {
        broker_destroy(&self);
        return NULL;
    }
    if (!self->work ||
        !(self->xsub = s_bind(self, ZMQ_XSUB, "publish", options->publish_bind, options->hwm,
                              err)) ||
        !(self->xpub = s_bind(self, ZMQ_XPUB, "subscribe", options->subscribe_bind,
                              options->hwm, err)) ||
        !(self->router = s_bind(self, ZMQ_ROUTER, "work", options->work_bind, 0, err))) {
        broker_destroy(&self);
        return NULL;
    }
    // Publishers send everything; filtering happens at the XPUB. A
    // publisher therefore knows the broker is there once it hears this.
    zsock_send(self->xsub, "b", "\x01", (size_t)1);
    // Sending to a worker that is gone must fail, not vanish.
    zsock_set_router_mandatory(self->router, 1);
    s_register_metrics(self, metrics);
    return self;
}

void broker_destroy(broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_t *self = *self_p;
    if (self->loop) {
        zloop_reader_end(self->loop, self->xsub);
        zloop_reader_end(self->loop, self->xpub);
        zloop_reader_end(self->loop, self->router);
        zloop_timer_end(self->loop, self->heartbeat_timer);
    }
    zsock_destroy(&self->xsub);
    zsock_destroy(&self->xpub);
    zsock_destroy(&self->router);
    // After the sockets: zauth must outlive every handshake it answers.
    broker_auth_destroy(&self->auth);
    work_queue_destroy(&self->work);
    free(self);
    *self_p = NULL;
}

// --- events -------------------------------------------------------------------

// Forwards whole multipart messages from publishers to subscribers. The
// XPUB drops for a subscriber whose queue is full; subscribers see the gap
// in the sequence numbers and count it.
static int s_on_xsub(zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    (void)reader;
    broker_t *self = arg;
    void *in = zsock_resolve(self->xsub), *out = zsock_resolve(self->xpub);
    zmq_msg_t part;
    zmq_msg_init(&part);
    for (int n = 0; n < EVENT_BATCH; n++) {
        int more;
        do {
            if (zmq_msg_recv(&part, in, n == 0 ? 0 : ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&part);
                return 0;
            }
            more = zmq_msg_more(&part);
            zmq_msg_send(&part, out, more ? ZMQ_SNDMORE : 0);
        } while (more);
        vmlet_counter_inc(self->events_forwarded);
    }
    zmq_msg_close(&part);
    return 0;
}

// Subscription messages: [1|0][topic]. A subscription to "_hello.<id>" is
// answered on that topic: the subscriber then knows all of its earlier
// subscriptions (same pipe, in order) are in place.
static int s_on_xpub(zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    (void)reader;
    broker_t *self = arg;
    zframe_t *frame;
    while ((zsock_events(self->xpub) & ZMQ_POLLIN) && (frame = zframe_recv(self->xpub))) {
        size_t n = zframe_size(frame);
        const char *data = (const char *)zframe_data(frame);
        size_t prefix = strlen(VMLET_BUS_HELLO_PREFIX);
        bool subscribe = n >= 1 && data[0] == 1;
        if (n > 1 + prefix && subscribe && memcmp(data + 1, VMLET_BUS_HELLO_PREFIX, prefix) == 0) {
            zsock_send(self->xpub, "bb", data + 1, n - 1, "", (size_t)0);
            vmlet_counter_inc(self->handshakes);
        } else if (n >= 1) {
            vmlet_gauge_add(self->subscriptions, subscribe ? 1 : -1);
        }
        zframe_destroy(&frame);
    }
    return 0;
}

// --- work -------------------------------------------------------------------

static void s_hex(const zframe_t *routing, char *out, size_t cap)
{
    static const char digits[] = "0123456789abcdef";
    size_t n = zframe_size((zframe_t *)routing);
    const unsigned char *d = zframe_data((zframe_t *)routing);
    size_t pos = 0;
    for (size_t i = 0; i < n && pos + 2 < cap; i++) {
        out[pos++] = digits[d[i] >> 4];
        out[pos++] = digits[d[i] & 15];
    }
    out[pos] = '\0';
}

static zframe_t *s_unhex(const char *hex)
{
    size_t n = strlen(hex) / 2;
    unsigned char bytes[ROUTING_ID_MAX];
    for (size_t i = 0; i < n && i < sizeof bytes; i++) {
        unsigned int b;
        sscanf(hex + 2 * i, "%2x", &b);
        bytes[i] = (unsigned char)b;
    }
    return zframe_new(bytes, n < sizeof bytes ? n : sizeof bytes);
}

// Sends msg to the peer; false if the peer is gone.
static bool s_send_to(broker_t *self, const char *peer, const vmlet_work_msg_t *out)
{
    zmsg_t *msg = vmlet_work_msg_build(out);
    zframe_t *routing = s_unhex(peer);
    if (!msg || !routing) {
        zmsg_destroy(&msg);
        zframe_destroy(&routing);
        return false;
    }
    zmsg_prepend(msg, &routing);
    if (zmsg_send(&msg, self->router) == 0)
        return true;
    zmsg_destroy(&msg);
    return false;
}

static void s_dispatch_work(broker_t *self)
{
    const char *worker;
    work_item_view_t item;
    while (work_queue_next(self->work, &worker, &item)) {
        vmlet_work_msg_t out = {.command = VMLET_WORK_WORK, .number = item.attempt};
        snprintf(out.item_id, sizeof out.item_id, "%s", item.item_id);
        out.payload = item.payload;
        out.payload_len = item.payload_len;
        if (s_send_to(self, worker, &out)) {
            vmlet_counter_inc(self->items_dispatched);
            continue;
        }
        char gone[ROUTING_ID_MAX * 2 + 1];
        snprintf(gone, sizeof gone, "%s", worker);
        size_t requeued = work_queue_forget_worker(self->work, gone);
        vmlet_counter_add(self->items_requeued, (double)requeued);
        vmlet_log_warn(self->log, VMLET_KV({"worker", gone}),
                       "worker disconnected; %zu items requeued", requeued);
    }
}

static void s_reply(broker_t *self, const char *peer, vmlet_work_command_t command,
                    const char *item_id, const char *reason)
{
    vmlet_work_msg_t out = {.command = command};
    snprintf(out.item_id, sizeof out.item_id, "%s", item_id);
    snprintf(out.reason, sizeof out.reason, "%s", reason ? reason : "");
    s_send_to(self, peer, &out);
}

static void s_on_submit(broker_t *self, const char *peer, const vmlet_work_msg_t *in)
{
    work_submit_result_t r =
        work_queue_submit(self->work, in->queue, in->item_id, in->payload, in->payload_len);
    if (r == WORK_SUBMIT_ACCEPTED)
        vmlet_counter_inc(self->items_submitted);
    if (r == WORK_SUBMIT_ACCEPTED || r == WORK_SUBMIT_DUPLICATE)
        s_reply(self, peer, VMLET_WORK_ACCEPTED, in->item_id, NULL);
    else
        s_reply(self, peer, VMLET_WORK_REJECTED, in->item_id,
                r == WORK_SUBMIT_FULL ? "queue full" : "broker out of memory");
}

static void s_on_work_message(broker_t *self, const char *peer, const vmlet_work_msg_t *in)
{
    int64_t now = vmlet_now_ms();
    switch (in->command) {
    case VMLET_WORK_SUBMIT:
        s_on_submit(self, peer, in);
        break;
    case VMLET_WORK_READY:
        if (!work_queue_worker_ready(self->work, peer, in->queue, (int)in->number,
                                     (int)in->held, now))
            vmlet_log_info(self->log, VMLET_KV({"worker", peer}, {"queue", in->queue}),
                           "worker ready with capacity %ld", in->number);
        s_reply(self, peer, VMLET_WORK_HEARTBEAT, "", NULL);
        break;
    case VMLET_WORK_DONE:
        work_queue_worker_seen(self->work, peer, now);
        if (work_queue_done(self->work, peer, in->item_id))
            vmlet_counter_inc(self->items_done);
        break;
    case VMLET_WORK_NACK:
        work_queue_worker_seen(self->work, peer, now);
        if (work_queue_nack(self->work, peer, in->item_id,
                            strcmp(in->reason, "worker at capacity") == 0))
            vmlet_counter_inc(self->items_requeued);
        break;
    case VMLET_WORK_BYE: {
        size_t requeued = work_queue_forget_worker(self->work, peer);
        vmlet_counter_inc(self->workers_stopped);
        vmlet_counter_add(self->items_requeued, (double)requeued);
        vmlet_log_info(self->log, VMLET_KV({"worker", peer}, {"queue", in->queue}),
                       "worker stopped; %zu items requeued", requeued);
        break;
    }
    default:
        vmlet_counter_inc(self->bad_messages);
    }
}

static int s_on_router(zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    (void)reader;
    broker_t *self = arg;
    zmsg_t *msg;
    while ((zsock_events(self->router) & ZMQ_POLLIN) && (msg = zmsg_recv(self->router))) {
        zframe_t *routing = zmsg_pop(msg);
        char peer[ROUTING_ID_MAX * 2 + 1];
        vmlet_work_msg_t in;
        vmlet_err_t err = {0};
        if (routing && zframe_size(routing) <= ROUTING_ID_MAX) {
            s_hex(routing, peer, sizeof peer);
            if (vmlet_work_msg_parse(msg, &in, &err) == 0)
                s_on_work_message(self, peer, &in);
            else
                vmlet_counter_inc(self->bad_messages);
        }
        zframe_destroy(&routing);
        zmsg_destroy(&msg);
    }
    s_dispatch_work(self);
    return 0;
}

static void s_update_queue_gauges(broker_t *self)
{
    const char *names[64];
    size_t n = work_queue_names(self->work, names, 64);
    for (size_t i = 0; i < n && i < 64; i++) {
        work_queue_stats_t st;
        if (!work_queue_stats(self->work, names[i], &st))
            continue;
        char labels[128];
        snprintf(labels, sizeof labels, "queue=\"%s\"", names[i]);
        vmlet_gauge_set(vmlet_metrics_gauge(self->metrics, "vmlet_bus_broker_queue_waiting",
                                            "Work items waiting for a worker.", labels),
                        (double)st.waiting);
        vmlet_gauge_set(vmlet_metrics_gauge(self->metrics, "vmlet_bus_broker_queue_in_flight",
                                            "Work items sent and not yet done.", labels),
                        (double)st.in_flight);
        vmlet_gauge_set(vmlet_metrics_gauge(self->metrics, "vmlet_bus_broker_queue_workers",
                                            "Workers serving the queue.", labels),
                        (double)st.workers);
    }
}

static int s_on_heartbeat(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    broker_t *self = arg;
    size_t dead = 0;
    size_t requeued = work_queue_expire(self->work, vmlet_now_ms(),
                                        self->heartbeat_ms * self->liveness, &dead);
    if (dead) {
        vmlet_counter_add(self->workers_expired, (double)dead);
        vmlet_counter_add(self->items_requeued, (double)requeued);
        vmlet_log_warn(self->log, NULL, "%zu workers missed %d heartbeats; %zu items requeued",
                       dead, self->liveness, requeued);
    }
    s_dispatch_work(self);
    s_update_queue_gauges(self);
    return 0;
}

int broker_attach(broker_t *self, zloop_t *loop, vmlet_err_t *err)
{
    self->loop = loop;
    if (zloop_reader(loop, self->xsub, s_on_xsub, self) < 0 ||
        zloop_reader(loop, self->xpub, s_on_xpub, self) < 0 ||
        zloop_reader(loop, self->router, s_on_router, self) < 0)
        return vmlet_err_set(err, "broker: cannot watch sockets");
    if (self->auth && broker_auth_attach(self->auth, loop, err) < 0)
        return -1;
    self->heartbeat_timer =
        zloop_timer(loop, (size_t)self->heartbeat_ms, 0, s_on_heartbeat, self);
    return 0;
}
