// POST /portForward/{namespace}/{pod}: kubectl's port-forward over SPDY/3.1
// (portforward.k8s.io). For each local connection the client opens a pair
// of streams with the same "requestid": "error" and "data", naming the
// "port"; each pair becomes a session (one TCP connection into the pod,
// through the launcher and the guest agent). Many at once, on this one
// connection's thread.
#include "kapi_internal.h"
#include "session_client.h"
#include "vmlet_spdy.h"

#include "vmlet/pod_store.h"
#include "vmlet/timeutil.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PAIRS 128 // connections forwarded at once on one client connection

typedef struct {
    char request_id[64];
    int port;
    uint32_t error, data;
    int session;             // -1 until both streams are there
    session_outbox_t outbox; // bytes for the pod, written as the launcher takes them
    bool input_closed, done;
} pair_t;

typedef struct {
    conn_t *c;
    vmlet_spdy_t *spdy;
    vmlet_store_t *store;
    char uid[128], pod[256];
    pair_t pairs[MAX_PAIRS];
    size_t n_pairs;
    bool client_gone;
    int64_t last_traffic_ms; // monotonic: when bytes last moved either way
} forward_t;

static const char *s_header(const vmlet_spdy_header_t *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

static pair_t *s_pair(forward_t *f, const char *request_id)
{
    for (size_t i = 0; i < f->n_pairs; i++)
        if (strcmp(f->pairs[i].request_id, request_id) == 0)
            return &f->pairs[i];
    if (f->n_pairs == MAX_PAIRS)
        return NULL;
    pair_t *p = &f->pairs[f->n_pairs++];
    *p = (pair_t){.session = -1};
    snprintf(p->request_id, sizeof p->request_id, "%s", request_id);
    return p;
}

static pair_t *s_by_stream(forward_t *f, uint32_t id)
{
    for (size_t i = 0; i < f->n_pairs; i++)
        if (f->pairs[i].data == id || f->pairs[i].error == id)
            return &f->pairs[i];
    return NULL;
}

// The kubelet's words on the error stream, then the pair is over.
static void s_fail(forward_t *f, pair_t *p, const char *why)
{
    char msg[768];
    int n = snprintf(msg, sizeof msg, "error forwarding port %d to pod %s, uid %s: %s", p->port,
                     f->pod, f->uid, why);
    if (p->error)
        vmlet_spdy_send(f->spdy, p->error, (const uint8_t *)msg, (size_t)n, true, NULL);
    if (p->data)
        vmlet_spdy_send(f->spdy, p->data, NULL, 0, true, NULL);
    p->done = true;
}

static void s_open_session(forward_t *f, pair_t *p)
{
    Vmlet__SessionOpen open = VMLET__SESSION_OPEN__INIT;
    open.has_kind = 1, open.kind = VMLET__SESSION_KIND__SESSION_PORT_FORWARD;
    open.pod_uid = f->uid;
    open.has_port = 1, open.port = (uint32_t)p->port;
    int status = 0;
    vmlet_err_t err = {0};
    p->session = session_connect(f->store, &open, &status, &err);
    if (p->session < 0) {
        p->session = -1;
        s_fail(f, p, err.msg);
    } else {
        kapi_count(f->c->shared, &f->c->shared->stats.sessions_active, 1);
    }
}

static void s_on_stream(void *ctx, uint32_t id, const vmlet_spdy_header_t *h, size_t n, bool fin)
{
    (void)fin;
    forward_t *f = ctx;
    const char *type = s_header(h, n, "streamtype"), *port = s_header(h, n, "port");
    const char *request = s_header(h, n, "requestid");
    pair_t *p = type && port ? s_pair(f, request ? request : port) : NULL;
    bool data = type && strcmp(type, "data") == 0, error = type && strcmp(type, "error") == 0;
    if (!p || (!data && !error) || (data ? p->data : p->error)) {
        vmlet_spdy_reset(f->spdy, id, 3 /* REFUSED_STREAM */);
        return;
    }
    *(data ? &p->data : &p->error) = id;
    p->port = atoi(port);
    vmlet_spdy_reply(f->spdy, id, NULL, 0, false, NULL);
    if (p->port < 1 || p->port > 65535) {
        s_fail(f, p, "invalid port");
        return;
    }
    if (p->data && p->error && p->session < 0 && !p->done)
        s_open_session(f, p);
}

static void s_close_input(pair_t *p)
{
    if (p->input_closed || p->session < 0)
        return;
    p->input_closed = true;
    Vmlet__SessionCloseInput ci = VMLET__SESSION_CLOSE_INPUT__INIT;
    Vmlet__SessionFrame fr = VMLET__SESSION_FRAME__INIT;
    fr.body_case = VMLET__SESSION_FRAME__BODY_CLOSE_INPUT;
    fr.close_input = &ci;
    session_outbox_frame(&p->outbox, &fr);
}

static void s_on_data(void *ctx, uint32_t id, const uint8_t *data, size_t len, bool fin)
{
    forward_t *f = ctx;
    pair_t *p = s_by_stream(f, id);
    if (len)
        f->last_traffic_ms = vmlet_now_ms();
    if (p && id == p->data && p->session >= 0 && len)
        session_outbox_data(&p->outbox, VMLET__SESSION_CHANNEL__SESSION_STDIN, data, len);
    if (p && id == p->data && fin)
        s_close_input(p);
    if (len)
        vmlet_spdy_consumed(f->spdy, id, len, NULL);
}

static void s_on_reset(void *ctx, uint32_t id, uint32_t status)
{
    (void)status;
    pair_t *p = s_by_stream(ctx, id);
    if (p)
        p->done = true;
}

static void s_on_goaway(void *ctx, uint32_t last_id, uint32_t status)
{
    (void)last_id;
    (void)status;
    ((forward_t *)ctx)->client_gone = true;
}

static bool s_flush(forward_t *f)
{
    size_t len;
    const uint8_t *p;
    while ((p = vmlet_spdy_pending(f->spdy, &len)) && len) {
        if (!http_write(f->c->ssl, p, len))
            return false;
        vmlet_spdy_written(f->spdy, len);
    }
    return true;
}

// One frame from a pair's session: bytes from the pod, or its end.
static void s_pump(forward_t *f, pair_t *p)
{
    Vmlet__SessionFrame *fr = session_recv(p->session);
    if (!fr || fr->body_case == VMLET__SESSION_FRAME__BODY_END) {
        if (fr && fr->end->error) {
            s_fail(f, p, fr->end->error);
        } else {
            // The pod closed: both streams end, as the kubelet closes them;
            // kubectl reads the error stream to its end before it closes
            // the local connection (a response without a length needs that).
            vmlet_spdy_send(f->spdy, p->data, NULL, 0, true, NULL);
            vmlet_spdy_send(f->spdy, p->error, NULL, 0, true, NULL);
        }
        p->done = true;
    } else if (fr->body_case == VMLET__SESSION_FRAME__BODY_DATA && fr->data->has_data) {
        f->last_traffic_ms = vmlet_now_ms();
        const uint8_t *d = fr->data->data.data;
        size_t n = fr->data->data.len;
        while (n > 0 && !p->done) {
            ssize_t took = vmlet_spdy_send(f->spdy, p->data, d, n, false, NULL);
            if (took < 0 || !s_flush(f)) {
                p->done = true;
                break;
            }
            d += took, n -= (size_t)took;
        }
    }
    if (fr)
        vmlet__session_frame__free_unpacked(fr, NULL);
}

// Closes finished pairs' sessions and drops them from the table.
static void s_reap(forward_t *f)
{
    for (size_t i = 0; i < f->n_pairs;) {
        pair_t *p = &f->pairs[i];
        if (!p->done) {
            i++;
            continue;
        }
        if (p->session >= 0) {
            close(p->session);
            kapi_count(f->c->shared, &f->c->shared->stats.sessions_active, -1);
        }
        session_outbox_free(&p->outbox);
        f->pairs[i] = f->pairs[--f->n_pairs];
    }
}

static void s_serve(forward_t *f)
{
    int64_t idle_ms = f->c->shared->settings->idle_timeout_ms;
    f->last_traffic_ms = vmlet_now_ms();
    bool ok = s_flush(f);
    while (ok && !f->client_gone) {
        // The client is read only while every pair's launcher keeps up.
        bool read_client = true;
        for (size_t i = 0; i < f->n_pairs; i++)
            read_client = read_client && f->pairs[i].outbox.len < SESSION_OUTBOX_MAX;
        struct pollfd p[MAX_PAIRS + 1] = {{.fd = read_client ? f->c->fd : -1, .events = POLLIN}};
        for (size_t i = 0; i < f->n_pairs; i++)
            p[i + 1] =
                (struct pollfd){.fd = f->pairs[i].session,
                                .events = (short)(POLLIN | (f->pairs[i].outbox.len ? POLLOUT : 0))};
        int64_t left = idle_ms - (vmlet_now_ms() - f->last_traffic_ms);
        if (left <= 0)
            break; // idle past the limit, as the kubelet's streaming idle timeout
        int r = read_client && SSL_pending(f->c->ssl) > 0
                    ? 1
                    : poll(p, f->n_pairs + 1, left < 3600000 ? (int)left : 3600000);
        if (r == 0)
            continue; // the loop's head decides whether that was the limit
        if (read_client &&
            (SSL_pending(f->c->ssl) > 0 || (p[0].revents & (POLLIN | POLLHUP | POLLERR)))) {
            uint8_t buf[16384];
            int n = SSL_read(f->c->ssl, buf, sizeof buf);
            for (size_t off = 0; ok && n > 0 && off < (size_t)n;) {
                ssize_t took = vmlet_spdy_feed(f->spdy, buf + off, (size_t)n - off, NULL);
                ok = took >= 0 && s_flush(f);
                off += took > 0 ? (size_t)took : 0;
            }
            ok = ok && n > 0;
        }
        size_t n_polled = f->n_pairs < MAX_PAIRS ? f->n_pairs : MAX_PAIRS;
        for (size_t i = 0; ok && i < n_polled && i < f->n_pairs; i++)
            if (p[i + 1].fd >= 0 && (p[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) &&
                f->pairs[i].session == p[i + 1].fd)
                s_pump(f, &f->pairs[i]);
        for (size_t i = 0; ok && i < f->n_pairs; i++)
            if (f->pairs[i].session >= 0 &&
                session_outbox_flush(f->pairs[i].session, &f->pairs[i].outbox) < 0)
                f->pairs[i].done = true;
        ok = ok && s_flush(f);
        s_reap(f);
    }
    for (size_t i = 0; i < f->n_pairs; i++)
        f->pairs[i].done = true;
    s_reap(f);
}

void route_port_forward(conn_t *c, char *const parts[], size_t n_parts)
{
    kapi_shared_t *sh = c->shared;
    if (n_parts != 2 && n_parts != 3) {
        http_respondf(c->ssl, 400, "expected /portForward/{namespace}/{pod}\n");
        return;
    }
    if (!http_header_has(&c->req, "Upgrade", "SPDY/3.1")) {
        http_respondf(c->ssl, 400, "Upgrade request required\n");
        return;
    }
    bool offered = http_header(&c->req, "X-Stream-Protocol-Version") != NULL;
    if (offered && !http_header_has(&c->req, "X-Stream-Protocol-Version", "portforward.k8s.io")) {
        http_respondf(c->ssl, 403,
                      "unable to upgrade: unable to negotiate protocol: server "
                      "accepts [portforward.k8s.io]\n");
        return;
    }
    static const char upgraded[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                                   "Upgrade: SPDY/3.1\r\n"
                                   "X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n";
    forward_t *f = calloc(1, sizeof *f);
    if (!f)
        return;
    f->c = c;
    snprintf(f->pod, sizeof f->pod, "%s", parts[1]);
    vmlet_err_t err = {0};
    f->store = vmlet_store_new(sh->redis_url, sh->redis_password, NULL, NULL, &err);
    int found =
        f->store ? vmlet_pod_store_uid_of(f->store, parts[0], parts[1], f->uid, sizeof f->uid, &err)
                 : -1;
    if (found <= 0) {
        if (found == 0)
            http_respondf(c->ssl, 404, "pod does not exist\n");
        else
            http_respondf(c->ssl, 503, "cannot read pods: %s\n", err.msg);
    } else if (http_write(c->ssl, upgraded, sizeof upgraded - 1)) {
        vmlet_spdy_config_t cfg = {.lenient_flow_control = true, .max_streams = 2 * MAX_PAIRS};
        vmlet_spdy_callbacks_t cb = {s_on_stream, s_on_data, s_on_reset, s_on_goaway, f};
        if ((f->spdy = vmlet_spdy_new(&cfg, &cb, &err)))
            s_serve(f);
        vmlet_spdy_destroy(&f->spdy);
    }
    vmlet_store_destroy(&f->store);
    free(f);
}
