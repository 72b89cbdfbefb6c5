// exec and attach over WebSocket (channel.k8s.io v1-v5 and their base64
// forms): channel 0 stdin, 1 stdout, 2 stderr, 3 the end's status, 4
// resize, 255 (v5) a stream's end.
#include "remotecommand.h"
#include "session_client.h"
#include "ws_channel.h"
#include "ws_conn.h"

#include "vmlet/timeutil.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLOSE_WAIT_MS 2000 // for the client's close frame after ours

typedef struct {
    remotecommand_t *rc;
    vmlet_ws_conn_t *ws;
} rc_ws_t;

static int s_on_data(void *arg, uint8_t ch, const uint8_t *bytes, size_t len)
{
    rc_ws_t *x = arg;
    if (ch == VMLET_WS_STDIN && x->rc->stdin_)
        remotecommand_stdin(x->rc, bytes, len);
    return 0; // nothing else is read from a client
}

static void s_on_resize(void *arg, uint16_t width, uint16_t height)
{
    rc_ws_t *x = arg;
    char json[64];
    int n = snprintf(json, sizeof json, "{\"Width\":%u,\"Height\":%u}", width, height);
    remotecommand_resize_bytes(x->rc, (const uint8_t *)json, (size_t)n);
}

static void s_on_stream_closed(void *arg, uint8_t ch)
{
    rc_ws_t *x = arg;
    if (ch == VMLET_WS_STDIN)
        remotecommand_close_input(x->rc);
}

static void s_on_closed(void *arg, int code, const char *reason)
{
    (void)code;
    (void)reason;
    ((rc_ws_t *)arg)->rc->client_gone = true;
}

static bool s_flush(rc_ws_t *x)
{
    size_t len;
    const uint8_t *p;
    while ((p = vmlet_ws_conn_pending(x->ws, &len)) && len) {
        if (!http_write(x->rc->c->ssl, p, len))
            return false;
        vmlet_ws_conn_written(x->ws, len);
    }
    return true;
}

static bool s_out(void *arg, int channel, const uint8_t *d, size_t n)
{
    rc_ws_t *x = arg;
    if (vmlet_ws_conn_send(x->ws, (uint8_t)channel, d, n, NULL) < 0)
        return false;
    return s_flush(x);
}

static bool s_read_client(rc_ws_t *x)
{
    uint8_t buf[16384];
    int n = SSL_read(x->rc->c->ssl, buf, sizeof buf);
    if (n <= 0)
        return false;
    vmlet_ws_conn_feed(x->ws, buf, (size_t)n); // never paused: stdin is written at once
    return s_flush(x);
}

void remotecommand_ws(remotecommand_t *rc, const vmlet_ws_proto_t *proto)
{
    rc_ws_t x = {.rc = rc};
    vmlet_ws_callbacks_t cb = {s_on_data, s_on_resize, s_on_stream_closed, s_on_closed};
    x.ws = vmlet_ws_conn_new(proto, 0, &cb, &x);
    // Kubernetes writes an empty message on the first output channel: the
    // session is up.
    vmlet_ws_conn_send(x.ws, rc->stdout_ ? VMLET_WS_STDOUT : VMLET_WS_ERROR, "", 0, NULL);
    rc->last_traffic_ms = vmlet_now_ms();
    bool ok = s_flush(&x);
    while (ok && !rc->ended && !rc->client_gone) {
        bool read_client = remotecommand_may_read_client(rc);
        struct pollfd p[2] = {{.fd = read_client ? rc->c->fd : -1, .events = POLLIN},
                              {.fd = rc->session, .events = remotecommand_session_events(rc)}};
        int left = remotecommand_idle_left(rc);
        int r = read_client && SSL_pending(rc->c->ssl) > 0 ? 1 : left == 0 ? 0 : poll(p, 2, left);
        if (r == 0 && remotecommand_idle_left(rc) == 0) {
            // As the kubelet: closed without a status (the launcher ends
            // the process).
            vmlet_log_info(rc->c->shared->log, VMLET_KV({"path", rc->c->req.path}),
                           "closing an idle stream");
            ok = false;
            break;
        }
        if (read_client &&
            (SSL_pending(rc->c->ssl) > 0 || (p[0].revents & (POLLIN | POLLHUP | POLLERR))))
            ok = s_read_client(&x) && vmlet_ws_conn_state(x.ws) == VMLET_WS_OPEN;
        if (ok && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
            remotecommand_pump_session(rc, s_out, &x);
        if (ok && session_outbox_flush(rc->session, &rc->outbox) < 0)
            rc->ended = true;
    }
    if (ok && !rc->client_gone) {
        size_t len = 0;
        char *status = remotecommand_status(rc, &len);
        if (status)
            vmlet_ws_conn_send(x.ws, VMLET_WS_ERROR, status, len, NULL);
        free(status);
        vmlet_ws_conn_send_close(x.ws, 1000, "", NULL);
        s_flush(&x);
        // Wait a little for the client's close, so it reads all of ours.
        struct pollfd p = {.fd = rc->c->fd, .events = POLLIN};
        for (int64_t end = vmlet_now_ms() + CLOSE_WAIT_MS;
             vmlet_ws_conn_state(x.ws) != VMLET_WS_CLOSED && vmlet_now_ms() < end &&
             poll(&p, 1, CLOSE_WAIT_MS) > 0 && s_read_client(&x);)
            ;
    }
    vmlet_ws_conn_destroy(&x.ws);
}
