// Work submitter: keeps each item until the broker accepts it, resending
// on a timer, so a broker restart delays work but does not lose it (see bus.h).
#include "vmlet/bus.h"
#include "vmlet/bus_curve.h"
#include "vmlet/bus_protocol.h"
#include "vmlet/timeutil.h"

#include <inttypes.h>
#include <string.h>

#define PENDING_MAX 100000
#define RESEND_MS 1000

typedef struct {
    char queue[VMLET_WORK_QUEUE_MAX];
    char item_id[VMLET_WORK_ID_MAX];
    uint8_t *payload;
    size_t payload_len;
    int64_t sent_ms;
} pending_t;

struct _vmlet_bus_client_t {
    zsock_t *sock;
    zloop_t *loop;
    int resend_timer;
    uint64_t id;
    uint64_t next_item;
    char *source;
    zhashx_t *pending; // item id -> pending_t
    vmlet_log_t *log;
    vmlet_metric_t *submitted;
    vmlet_metric_t *rejected;
    vmlet_metric_t *resent;
};

static void s_pending_free(void **item)
{
    pending_t *p = *item;
    if (p) {
        free(p->payload);
        free(p);
        *item = NULL;
    }
}

vmlet_bus_client_t *vmlet_bus_client_new(const vmlet_bus_options_t *options,
                                         vmlet_metrics_t *metrics, vmlet_log_t *log,
                                         vmlet_err_t *err)
{
    vmlet_bus_client_t *self = calloc(1, sizeof *self);
    if (!self) {
        vmlet_err_set(err, "bus client: out of memory");
        return NULL;
    }
    self->log = log;
    self->id = vmlet_random_u64();
    self->source = strdup(options->source ? options->source : "?");
    self->pending = zhashx_new();
    self->sock = zsock_new(ZMQ_DEALER);
    if (!self->source || !self->pending || !self->sock) {
        vmlet_bus_client_destroy(&self);
        vmlet_err_set(err, "bus client: cannot create socket");
        return NULL;
    }
    zhashx_set_destructor(self->pending, s_pending_free);
    zsock_set_linger(self->sock, 0);
    zsock_set_sndhwm(self->sock, options->hwm);
    if (vmlet_bus_curve_client(self->sock, options, "client", err) < 0) {
        vmlet_bus_client_destroy(&self);
        return NULL;
    }
    if (zsock_connect(self->sock, "%s", options->work_endpoint) < 0) {
        vmlet_err_set(err, "bus client: bad endpoint '%s' (expected tcp://HOST:PORT)",
                      options->work_endpoint);
        vmlet_bus_client_destroy(&self);
        return NULL;
    }
    self->submitted = vmlet_metrics_counter(metrics, "vmlet_bus_work_items_submitted_total",
                                            "Work items accepted by the broker.", NULL);
    self->rejected = vmlet_metrics_counter(metrics, "vmlet_bus_work_items_rejected_total",
                                           "Work items the broker refused (queue full); "
                                           "they are resent later.",
                                           NULL);
    self->resent = vmlet_metrics_counter(metrics, "vmlet_bus_work_items_resent_total",
                                         "Work items sent again for want of an answer.", NULL);
    return self;
}

void vmlet_bus_client_destroy(vmlet_bus_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmlet_bus_client_t *self = *self_p;
    if (self->loop) {
        zloop_reader_end(self->loop, self->sock);
        zloop_timer_end(self->loop, self->resend_timer);
    }
    zsock_destroy(&self->sock);
    zhashx_destroy(&self->pending);
    free(self->source);
    free(self);
    *self_p = NULL;
}

static void s_send_pending(vmlet_bus_client_t *self, pending_t *p)
{
    vmlet_work_msg_t out = {.command = VMLET_WORK_SUBMIT};
    memcpy(out.queue, p->queue, sizeof out.queue);
    memcpy(out.item_id, p->item_id, sizeof out.item_id);
    out.payload = p->payload;
    out.payload_len = p->payload_len;
    zmsg_t *msg = vmlet_work_msg_build(&out);
    p->sent_ms = vmlet_now_ms();
    // A full queue (broker away) is fine: the resend timer tries again.
    if (msg && zmsg_send(&msg, self->sock) < 0)
        zmsg_destroy(&msg);
}

int vmlet_bus_submit(vmlet_bus_client_t *self, const char *queue, vmlet_envelope_t *env,
                     const char *item_id, vmlet_err_t *err)
{
    if (zhashx_size(self->pending) >= PENDING_MAX)
        return vmlet_err_set(err, "bus submit to %s: %d items await the broker already", queue,
                             PENDING_MAX);
    char fresh_id[64];
    if (!item_id) {
        snprintf(fresh_id, sizeof fresh_id, "%016" PRIx64 "-%" PRIu64, self->id,
                 ++self->next_item);
        item_id = fresh_id;
    }
    if (!queue[0] || strlen(queue) >= VMLET_WORK_QUEUE_MAX || !item_id[0] ||
        strlen(item_id) >= VMLET_WORK_ID_MAX)
        return vmlet_err_set(err, "bus submit: queue '%s' or item id '%s' too long or empty",
                             queue, item_id);
    // The item id travels as the envelope's message id: that is what the
    // worker acknowledges.
    Vmlet__Header header = VMLET__HEADER__INIT;
    Vmlet__Header *saved = env->header;
    if (saved)
        header = *saved;
    header.message_id = (char *)item_id;
    header.source = self->source;
    header.has_sent_unix_ns = 1;
    header.sent_unix_ns = vmlet_unix_ns();
    env->header = &header;
    pending_t *p = calloc(1, sizeof *p);
    if (p)
        p->payload = vmlet_envelope_pack(env, &p->payload_len);
    env->header = saved;
    if (!p || !p->payload) {
        s_pending_free((void **)&p);
        return vmlet_err_set(err, "bus submit: out of memory");
    }
    snprintf(p->queue, sizeof p->queue, "%s", queue);
    snprintf(p->item_id, sizeof p->item_id, "%s", item_id);
    zhashx_update(self->pending, item_id, p);
    s_send_pending(self, p);
    return 0;
}

static void s_on_reply(vmlet_bus_client_t *self, zmsg_t *msg)
{
    vmlet_work_msg_t in;
    vmlet_err_t err = {0};
    if (vmlet_work_msg_parse(msg, &in, &err) < 0) {
        vmlet_log_warn(self->log, NULL, "bad message from broker: %s", err.msg);
        return;
    }
    if (in.command == VMLET_WORK_ACCEPTED && zhashx_lookup(self->pending, in.item_id)) {
        zhashx_delete(self->pending, in.item_id);
        vmlet_counter_inc(self->submitted);
    } else if (in.command == VMLET_WORK_REJECTED) {
        vmlet_counter_inc(self->rejected);
        vmlet_log_warn(self->log, VMLET_KV({"item", in.item_id}),
                       "broker refused a work item (%s); will resend", in.reason);
    }
}

static void s_receive(vmlet_bus_client_t *self)
{
    zmsg_t *msg;
    while ((zsock_events(self->sock) & ZMQ_POLLIN) && (msg = zmsg_recv(self->sock))) {
        s_on_reply(self, msg);
        zmsg_destroy(&msg);
    }
}

static void s_resend_due(vmlet_bus_client_t *self)
{
    int64_t now = vmlet_now_ms();
    for (pending_t *p = zhashx_first(self->pending); p; p = zhashx_next(self->pending))
        if (now - p->sent_ms >= RESEND_MS) {
            vmlet_counter_inc(self->resent);
            s_send_pending(self, p);
        }
}

static int s_on_readable(zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    (void)reader;
    s_receive(arg);
    return 0;
}

static int s_on_resend(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    s_resend_due(arg);
    return 0;
}

int vmlet_bus_client_attach(vmlet_bus_client_t *self, zloop_t *loop, vmlet_err_t *err)
{
    if (zloop_reader(loop, self->sock, s_on_readable, self) < 0)
        return vmlet_err_set(err, "bus client: cannot watch socket");
    self->resend_timer = zloop_timer(loop, RESEND_MS / 4, 0, s_on_resend, self);
    self->loop = loop;
    return 0;
}

size_t vmlet_bus_client_pending(const vmlet_bus_client_t *self)
{
    return zhashx_size(self->pending);
}

int vmlet_bus_client_flush(vmlet_bus_client_t *self, int timeout_ms, vmlet_err_t *err)
{
    int64_t deadline = vmlet_now_ms() + timeout_ms;
    while (zhashx_size(self->pending) > 0) {
        int64_t left = deadline - vmlet_now_ms();
        if (left <= 0)
            return vmlet_err_set(err, "bus client: %zu items not accepted within %d ms "
                                      "(is vmlet-bus running at the work endpoint?)",
                                 zhashx_size(self->pending), timeout_ms);
        zmq_pollitem_t item = {zsock_resolve(self->sock), 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, left < 100 ? (long)left : 100);
        s_receive(self);
        s_resend_due(self);
    }
    return 0;
}
