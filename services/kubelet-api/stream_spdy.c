// exec and attach over SPDY/3.1 (kubectl 1.20): the client opens one
// stream per channel, named by its "streamtype" header (error, stdin,
// stdout, stderr, resize); output goes out as DATA on those streams, and
// the end as a status on the error stream.
#include "remotecommand.h"
#include "session_client.h"
#include "vmlet_spdy.h"
#include "ws_channel.h"

#include "vmlet/timeutil.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAMS_TIMEOUT_MS 30000 // the kubelet's streamCreationTimeout

typedef struct {
    remotecommand_t *rc;
    vmlet_spdy_t *spdy;
    uint32_t error, stdin_, stdout_, stderr_, resize;
    int expected, opened;
} rc_spdy_t;

static const char *s_header(const vmlet_spdy_header_t *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

static void s_on_stream(void *ctx, uint32_t id, const vmlet_spdy_header_t *h, size_t n, bool fin)
{
    (void)fin;
    rc_spdy_t *x = ctx;
    const char *type = s_header(h, n, "streamtype");
    uint32_t *slot = !type                         ? NULL
                     : strcmp(type, "error") == 0  ? &x->error
                     : strcmp(type, "stdin") == 0  ? &x->stdin_
                     : strcmp(type, "stdout") == 0 ? &x->stdout_
                     : strcmp(type, "stderr") == 0 ? &x->stderr_
                     : strcmp(type, "resize") == 0 ? &x->resize
                                                   : NULL;
    if (!slot || *slot) { // unknown or twice: refused, as the kubelet's handler does
        vmlet_spdy_reset(x->spdy, id, 3 /* REFUSED_STREAM */);
        return;
    }
    *slot = id;
    x->opened++;
    vmlet_spdy_reply(x->spdy, id, NULL, 0, false, NULL);
}

static void s_on_data(void *ctx, uint32_t id, const uint8_t *data, size_t len, bool fin)
{
    rc_spdy_t *x = ctx;
    if (id && id == x->stdin_) {
        remotecommand_stdin(x->rc, data, len);
        if (fin)
            remotecommand_close_input(x->rc);
    } else if (id && id == x->resize) {
        remotecommand_resize_bytes(x->rc, data, len);
    }
    if (len)
        vmlet_spdy_consumed(x->spdy, id, len, NULL);
}

static void s_on_reset(void *ctx, uint32_t id, uint32_t status)
{
    (void)status;
    rc_spdy_t *x = ctx;
    if (id == x->stdin_)
        remotecommand_close_input(x->rc);
    else
        x->rc->client_gone = true;
}

static void s_on_goaway(void *ctx, uint32_t last_id, uint32_t status)
{
    (void)last_id;
    (void)status;
    ((rc_spdy_t *)ctx)->rc->client_gone = true;
}

// Writes what the session has queued; false when the client is gone.
static bool s_flush(rc_spdy_t *x)
{
    size_t len;
    const uint8_t *p;
    while ((p = vmlet_spdy_pending(x->spdy, &len)) && len) {
        if (!http_write(x->rc->c->ssl, p, len))
            return false;
        vmlet_spdy_written(x->spdy, len);
    }
    return true;
}

static bool s_out(void *arg, int channel, const uint8_t *d, size_t n)
{
    rc_spdy_t *x = arg;
    uint32_t id = channel == VMLET_WS_STDERR && x->stderr_ ? x->stderr_ : x->stdout_;
    while (id && n > 0) {
        ssize_t took = vmlet_spdy_send(x->spdy, id, d, n, false, NULL);
        if (took < 0)
            return false;
        d += took;
        n -= (size_t)took;
        if (!s_flush(x))
            return false;
    }
    return true;
}

// Reads from the client and feeds the session; false when it is gone.
static bool s_read_client(rc_spdy_t *x)
{
    uint8_t buf[16384];
    int n = SSL_read(x->rc->c->ssl, buf, sizeof buf);
    if (n <= 0)
        return false;
    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t took = vmlet_spdy_feed(x->spdy, buf + off, (size_t)n - off, NULL);
        if (took < 0 || !s_flush(x))
            return false;
        off += (size_t)took;
    }
    return s_flush(x);
}

static void s_finish(rc_spdy_t *x)
{
    size_t len = 0;
    char *status = remotecommand_status(x->rc, &len);
    if (x->error)
        vmlet_spdy_send(x->spdy, x->error, (const uint8_t *)(status ? status : ""),
                        status ? len : 0, true, NULL);
    free(status);
    uint32_t outs[] = {x->stdout_, x->stderr_};
    for (int i = 0; i < 2; i++)
        if (outs[i])
            vmlet_spdy_send(x->spdy, outs[i], NULL, 0, true, NULL);
    vmlet_spdy_goaway(x->spdy, 0);
    s_flush(x);
}

void remotecommand_spdy(remotecommand_t *rc)
{
    rc_spdy_t x = {.rc = rc};
    x.expected =
        1 + rc->stdin_ + rc->stdout_ + (rc->stderr_ && !rc->tty) + (rc->tty && rc->version >= 3);
    vmlet_spdy_config_t cfg = {.lenient_flow_control = true}; // kubectl 1.20 sends no WINDOW_UPDATE
    vmlet_spdy_callbacks_t cb = {s_on_stream, s_on_data, s_on_reset, s_on_goaway, &x};
    vmlet_err_t err = {0};
    if (!(x.spdy = vmlet_spdy_new(&cfg, &cb, &err)))
        return;
    int64_t streams_deadline = vmlet_now_ms() + STREAMS_TIMEOUT_MS;
    rc->last_traffic_ms = vmlet_now_ms();
    bool ok = s_flush(&x);
    while (ok && !rc->ended && !rc->client_gone) {
        bool ready = x.opened >= x.expected;
        if (!ready && vmlet_now_ms() > streams_deadline) {
            snprintf(rc->error, sizeof rc->error, "timed out waiting for client to create streams");
            break;
        }
        // The client is read only while the launcher takes what it sends.
        bool read_client = remotecommand_may_read_client(rc);
        struct pollfd p[2] = {
            {.fd = read_client ? rc->c->fd : -1, .events = POLLIN},
            {.fd = ready ? rc->session : -1, .events = remotecommand_session_events(rc)}};
        int left = remotecommand_idle_left(rc);
        int r = read_client && SSL_pending(rc->c->ssl) > 0 ? 1
                : left == 0                                ? 0
                                                           : poll(p, 2, ready ? left : 1000);
        if (r == 0 && ready && remotecommand_idle_left(rc) == 0) {
            // As the kubelet: the connection just closes, with no status
            // (the process did not end; the launcher ends it now).
            vmlet_log_info(rc->c->shared->log, VMLET_KV({"path", rc->c->req.path}),
                           "closing an idle stream");
            ok = false;
            break;
        }
        if (read_client &&
            (SSL_pending(rc->c->ssl) > 0 || (p[0].revents & (POLLIN | POLLHUP | POLLERR))))
            ok = s_read_client(&x);
        if (ok && ready && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
            remotecommand_pump_session(rc, s_out, &x);
        if (ok && ready && session_outbox_flush(rc->session, &rc->outbox) < 0)
            rc->ended = true;
    }
    if (ok && !rc->client_gone)
        s_finish(&x);
    vmlet_spdy_destroy(&x.spdy);
}
