// Work-queue worker: readiness with capacity, heartbeats, at-least-once
// acknowledgement, reconnection after a silent broker (see bus.h).
#include "vmlet/bus.h"
#include "vmlet/bus_curve.h"
#include "vmlet/bus_protocol.h"
#include "vmlet/timeutil.h"

#include <string.h>

#define BROKER_LIVENESS 3 // heartbeats missed before the broker counts as gone
#define FLUSH_ON_CLOSE_MS 1000 // longest a stopping worker waits for a silent broker

struct _vmlet_bus_worker_t {
    zsock_t *sock;
    zloop_t *loop;
    int heartbeat_timer;
    char *endpoint;
    // Kept for reopening the socket; re-read then, so a renewed
    // certificate is picked up at the next reconnect.
    char *curve_cert;
    char *curve_server_key;
    char queue[VMLET_WORK_QUEUE_MAX];
    int capacity;
    int64_t heartbeat_ms;
    int64_t last_heard_ms;
    bool connected;
    zhashx_t *in_flight; // item id -> "" (items we hold)
    vmlet_dispatch_t *dispatch;
    vmlet_log_t *log;
    vmlet_metric_t *items_done;
    vmlet_metric_t *items_failed;
    vmlet_metric_t *reconnects;
    vmlet_metric_t *connected_gauge;
};

static int s_on_readable(zloop_t *loop, zsock_t *reader, void *arg);

static int s_open_socket(vmlet_bus_worker_t *self, vmlet_err_t *err)
{
    self->sock = zsock_new(ZMQ_DEALER);
    if (!self->sock)
        return vmlet_err_set(err, "bus worker: cannot create socket");
    zsock_set_linger(self->sock, 0);
    zsock_set_sndhwm(self->sock, 0); // acknowledgements must never be dropped
    vmlet_bus_options_t curve = {.curve_cert = self->curve_cert,
                                 .curve_server_key = self->curve_server_key};
    if (vmlet_bus_curve_client(self->sock, &curve, "worker", err) < 0) {
        zsock_destroy(&self->sock);
        return -1;
    }
    if (zsock_connect(self->sock, "%s", self->endpoint) < 0) {
        zsock_destroy(&self->sock);
        return vmlet_err_set(err, "bus worker: cannot connect to '%s' (expected tcp://HOST:PORT)",
                             self->endpoint);
    }
    if (self->loop && zloop_reader(self->loop, self->sock, s_on_readable, self) < 0)
        return vmlet_err_set(err, "bus worker: cannot watch socket");
    return 0;
}

static void s_send(vmlet_bus_worker_t *self, vmlet_work_command_t command, const char *item_id,
                   long number, const char *reason)
{
    vmlet_work_msg_t out = {.command = command, .number = number};
    out.held = (long)zhashx_size(self->in_flight);
    snprintf(out.queue, sizeof out.queue, "%s", self->queue);
    snprintf(out.item_id, sizeof out.item_id, "%s", item_id ? item_id : "");
    snprintf(out.reason, sizeof out.reason, "%s", reason ? reason : "");
    zmsg_t *msg = vmlet_work_msg_build(&out);
    if (msg && zmsg_send(&msg, self->sock) < 0)
        zmsg_destroy(&msg);
}

// READY doubles as our heartbeat and re-registers us after a broker
// restart; it says what we hold so a new broker does not overfill us.
static void s_send_ready(vmlet_bus_worker_t *self)
{
    s_send(self, VMLET_WORK_READY, NULL, self->capacity, NULL);
}

vmlet_bus_worker_t *vmlet_bus_worker_new(const vmlet_bus_options_t *options, const char *queue,
                                         int capacity, vmlet_dispatch_t *dispatch,
                                         vmlet_metrics_t *metrics, vmlet_log_t *log,
                                         vmlet_err_t *err)
{
    if (!queue[0] || strlen(queue) >= VMLET_WORK_QUEUE_MAX || capacity < 1) {
        vmlet_err_set(err, "bus worker: queue '%s' or capacity %d not allowed", queue, capacity);
        return NULL;
    }
    vmlet_bus_worker_t *self = calloc(1, sizeof *self);
    if (!self) {
        vmlet_err_set(err, "bus worker: out of memory");
        return NULL;
    }
    snprintf(self->queue, sizeof self->queue, "%s", queue);
    self->capacity = capacity;
    self->heartbeat_ms = options->heartbeat_ms > 0 ? options->heartbeat_ms : 1000;
    self->dispatch = dispatch;
    self->log = log;
    self->endpoint = strdup(options->work_endpoint);
    self->curve_cert = strdup(options->curve_cert ? options->curve_cert : "");
    self->curve_server_key = strdup(options->curve_server_key ? options->curve_server_key : "");
    self->in_flight = zhashx_new();
    if (!self->endpoint || !self->curve_cert || !self->curve_server_key || !self->in_flight) {
        vmlet_err_set(err, "bus worker: out of memory");
        vmlet_bus_worker_destroy(&self);
        return NULL;
    }
    if (s_open_socket(self, err) < 0) {
        vmlet_bus_worker_destroy(&self);
        return NULL;
    }
    char labels[96];
    snprintf(labels, sizeof labels, "queue=\"%s\"", queue);
    self->items_done = vmlet_metrics_counter(metrics, "vmlet_bus_work_items_done_total",
                                             "Work items completed.", labels);
    self->items_failed = vmlet_metrics_counter(metrics, "vmlet_bus_work_items_returned_total",
                                               "Work items handed back for another attempt.",
                                               labels);
    self->reconnects = vmlet_metrics_counter(metrics, "vmlet_bus_worker_reconnects_total",
                                             "Times the broker went silent and we reconnected.",
                                             labels);
    self->connected_gauge = vmlet_metrics_gauge(
        metrics, "vmlet_bus_worker_connected", "1 while the broker answers heartbeats.", labels);
    self->last_heard_ms = vmlet_now_ms();
    s_send_ready(self);
    return self;
}

void vmlet_bus_worker_destroy(vmlet_bus_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmlet_bus_worker_t *self = *self_p;
    if (self->sock) {
        // A stopping worker says so: the broker hands what it holds to
        // another worker now rather than after our heartbeats go missing.
        // Linger lets that and our last acknowledgements reach the broker;
        // an acknowledgement lost here means the item is done twice, and
        // a later submission of the same id is taken for the first.
        s_send(self, VMLET_WORK_BYE, NULL, 0, NULL);
        zsock_set_linger(self->sock, FLUSH_ON_CLOSE_MS);
    }
    if (self->loop) {
        if (self->sock)
            zloop_reader_end(self->loop, self->sock);
        zloop_timer_end(self->loop, self->heartbeat_timer);
    }
    zsock_destroy(&self->sock);
    zhashx_destroy(&self->in_flight);
    free(self->endpoint);
    free(self->curve_cert);
    free(self->curve_server_key);
    free(self);
    *self_p = NULL;
}

static void s_set_connected(vmlet_bus_worker_t *self, bool connected)
{
    if (connected == self->connected)
        return;
    self->connected = connected;
    vmlet_gauge_set(self->connected_gauge, connected);
    if (connected)
        vmlet_log_info(self->log, VMLET_KV({"queue", self->queue}), "worker connected to broker");
    else
        vmlet_log_warn(self->log, VMLET_KV({"queue", self->queue}),
                       "broker silent for %d heartbeats; reconnecting", BROKER_LIVENESS);
}

void vmlet_bus_worker_done(vmlet_bus_worker_t *self, const char *item_id, bool ok)
{
    if (!zhashx_lookup(self->in_flight, item_id))
        return; // already acknowledged, or from before a reconnect
    zhashx_delete(self->in_flight, item_id);
    if (ok) {
        s_send(self, VMLET_WORK_DONE, item_id, 0, NULL);
        vmlet_counter_inc(self->items_done);
    } else {
        s_send(self, VMLET_WORK_NACK, item_id, 0, "handler failed");
        vmlet_counter_inc(self->items_failed);
    }
}

static void s_on_work(vmlet_bus_worker_t *self, const vmlet_work_msg_t *in)
{
    if (zhashx_lookup(self->in_flight, in->item_id))
        return; // redelivered while we still hold it
    if ((int)zhashx_size(self->in_flight) >= self->capacity) {
        // The broker lost count (it restarted); it will offer it again.
        s_send(self, VMLET_WORK_NACK, in->item_id, 0, "worker at capacity");
        return;
    }
    zhashx_insert(self->in_flight, in->item_id, "");
    int rc = 0;
    vmlet_dispatch_result_t result =
        vmlet_dispatch_bytes(self->dispatch, in->payload, in->payload_len, &rc);
    if (result == VMLET_DISPATCH_HANDLED && rc == VMLET_WORK_PENDING)
        return;
    // Malformed, unknown and unrouted items are done: retrying cannot help.
    vmlet_bus_worker_done(self, in->item_id, result != VMLET_DISPATCH_FAILED);
}

static int s_on_readable(zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    vmlet_bus_worker_t *self = arg;
    zmsg_t *msg;
    while ((zsock_events(reader) & ZMQ_POLLIN) && (msg = zmsg_recv(reader))) {
        vmlet_work_msg_t in;
        vmlet_err_t err = {0};
        self->last_heard_ms = vmlet_now_ms();
        s_set_connected(self, true);
        if (vmlet_work_msg_parse(msg, &in, &err) < 0)
            vmlet_log_warn(self->log, NULL, "bad message from broker: %s", err.msg);
        else if (in.command == VMLET_WORK_WORK)
            s_on_work(self, &in);
        zmsg_destroy(&msg);
    }
    return 0;
}

static int s_on_heartbeat(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    vmlet_bus_worker_t *self = arg;
    if (vmlet_now_ms() - self->last_heard_ms > BROKER_LIVENESS * self->heartbeat_ms) {
        // A new socket drops whatever the old one had queued for a dead peer.
        s_set_connected(self, false);
        vmlet_counter_inc(self->reconnects);
        zloop_reader_end(self->loop, self->sock);
        zsock_destroy(&self->sock);
        vmlet_err_t err = {0};
        if (s_open_socket(self, &err) < 0)
            vmlet_log_error(self->log, NULL, "cannot reopen the work socket: %s", err.msg);
        self->last_heard_ms = vmlet_now_ms();
    }
    if (self->sock)
        s_send_ready(self);
    return 0;
}

int vmlet_bus_worker_attach(vmlet_bus_worker_t *self, zloop_t *loop, vmlet_err_t *err)
{
    self->loop = loop;
    if (zloop_reader(loop, self->sock, s_on_readable, self) < 0)
        return vmlet_err_set(err, "bus worker: cannot watch socket");
    self->heartbeat_timer = zloop_timer(loop, (size_t)self->heartbeat_ms, 0, s_on_heartbeat, self);
    return 0;
}

bool vmlet_bus_worker_connected(const vmlet_bus_worker_t *self)
{
    return self->connected;
}

int vmlet_bus_worker_in_flight(const vmlet_bus_worker_t *self)
{
    return (int)zhashx_size(self->in_flight);
}
