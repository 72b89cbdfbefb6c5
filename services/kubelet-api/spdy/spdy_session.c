// The SPDY/3.1 server session: the input state machine (frame heads,
// buffered control frames, streamed DATA), flow control and the calls the
// application makes (see vmlet_spdy.h).
#include "spdy_session.h"

#include "vmlet/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_STREAMS 100
#define DEFAULT_MAX_HEADER_BYTES (64 * 1024)
#define DEFAULT_MAX_OUTPUT (1024 * 1024)

static void s_defaults(vmlet_spdy_config_t *c)
{
    if (!c->max_streams)
        c->max_streams = DEFAULT_MAX_STREAMS;
    if (!c->max_header_bytes)
        c->max_header_bytes = DEFAULT_MAX_HEADER_BYTES;
    if (!c->recv_window || c->recv_window > SPDY_MAX_WINDOW)
        c->recv_window = SPDY_DEFAULT_WINDOW;
    if (!c->recv_session_window || c->recv_session_window > SPDY_MAX_WINDOW)
        c->recv_session_window = SPDY_DEFAULT_WINDOW;
    if (!c->max_output)
        c->max_output = DEFAULT_MAX_OUTPUT;
}

vmlet_spdy_t *vmlet_spdy_new(const vmlet_spdy_config_t *cfg, const vmlet_spdy_callbacks_t *cb,
                             vmlet_err_t *err)
{
    vmlet_spdy_t *s = vmlet_xcalloc(1, sizeof *s);
    if (cfg)
        s->cfg = *cfg;
    s_defaults(&s->cfg);
    if (cb)
        s->cb = *cb;
    s->z = spdy_z_new(err);
    if (!s->z) {
        free(s);
        return NULL;
    }
    s->peer_initial_window = SPDY_DEFAULT_WINDOW;
    s->send_session_window = SPDY_DEFAULT_WINDOW;
    s->recv_session_window = s->cfg.recv_session_window;
    // Announce our limits first, so a conforming client never trips them.
    spdy_setting_t set[2] = {{0, SPDY_SETTINGS_MAX_CONCURRENT_STREAMS, s->cfg.max_streams},
                             {0, SPDY_SETTINGS_INITIAL_WINDOW_SIZE, s->cfg.recv_window}};
    spdy_put_settings(&s->out, 0, set, s->cfg.recv_window != SPDY_DEFAULT_WINDOW ? 2 : 1);
    if (s->cfg.recv_session_window > SPDY_DEFAULT_WINDOW)
        spdy_put_window_update(&s->out, 0, s->cfg.recv_session_window - SPDY_DEFAULT_WINDOW);
    return s;
}

void vmlet_spdy_destroy(vmlet_spdy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmlet_spdy_t *s = *self_p;
    spdy_z_destroy(&s->z);
    spdy_buf_free(&s->out);
    spdy_buf_free(&s->body);
    spdy_buf_free(&s->raw);
    free(s->streams);
    free(s);
    *self_p = NULL;
}

// --- input ---

// A DATA frame head: decide whether its payload goes to a stream or is
// skipped, charging the receive windows.
static int s_data_head(vmlet_spdy_t *s, vmlet_err_t *err)
{
    uint32_t id = s->head.stream_id, len = s->head.length;
    if (id == 0)
        return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err, "DATA on stream 0");
    s->recv_session_window -= len;
    if (s->recv_session_window < 0 && !s->cfg.lenient_flow_control)
        return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err,
                         "DATA of %u bytes on stream %u overruns the session window", len, id);
    s->left = len;
    s->state = S_SKIP;
    spdy_stream_t *st = spdy_stream_find(s, id);
    if (!st || st->remote_fin) {
        // SPDY/3 §2.2.2: a stream error, unless we are going away anyway.
        if (!s->goaway_sent)
            spdy_stream_error(s, id, st ? SPDY_STREAM_ALREADY_CLOSED : SPDY_INVALID_STREAM);
    } else {
        st->recv_window -= len;
        if (st->recv_window < 0 && !s->cfg.lenient_flow_control)
            spdy_stream_error(s, id, SPDY_FLOW_CONTROL_ERROR);
        else
            s->state = S_DATA;
    }
    if (s->state == S_SKIP && len) {
        // Nobody will consume these bytes: give the session window back.
        s->recv_session_window += len;
        spdy_put_window_update(&s->out, 0, len);
    }
    return 0;
}

// The rest of a DATA frame (and `extra` bytes already read) will not be
// delivered: skip it and give the session window back, as nobody will
// report it consumed.
static void s_drop_rest(vmlet_spdy_t *s, size_t extra)
{
    size_t n = s->left + extra;
    if (n) {
        s->recv_session_window += (int64_t)n;
        spdy_put_window_update(&s->out, 0, (uint32_t)n);
    }
    s->state = s->left ? S_SKIP : S_HEAD;
}

// Hands n payload bytes (the last ones if s->left is 0) to the stream.
static void s_data_deliver(vmlet_spdy_t *s, const uint8_t *p, size_t n)
{
    uint32_t id = s->head.stream_id;
    spdy_stream_t *st = spdy_stream_find(s, id);
    if (!st) { // reset by the application between two feeds
        s_drop_rest(s, n);
        return;
    }
    bool fin = s->left == 0 && (s->head.flags & SPDY_FLAG_FIN);
    if (fin)
        st->remote_fin = true;
    if ((n || fin) && s->cb.on_data)
        s->cb.on_data(s->cb.ctx, id, p, n, fin);
    if (!spdy_stream_find(s, id)) { // the callback reset it
        s_drop_rest(s, 0);
        return;
    }
    if (fin)
        spdy_stream_settle(s, id);
    if (s->left == 0)
        s->state = S_HEAD;
}

static int s_head(vmlet_spdy_t *s, vmlet_err_t *err)
{
    spdy_head_parse(s->head_bytes, &s->head);
    s->head_got = 0;
    if (!s->head.control) {
        if (s_data_head(s, err) < 0)
            return -1;
        if (s->left == 0) {
            if (s->state == S_DATA)
                s_data_deliver(s, NULL, 0);
            s->state = S_HEAD;
        }
        return 0;
    }
    bool known = s->head.type >= SPDY_SYN_STREAM && s->head.type <= SPDY_WINDOW_UPDATE;
    if (!known && s->head.version == SPDY_VERSION) {
        s->left = s->head.length; // SPDY/3 §2.2.1: ignore unknown types
        s->state = s->left ? S_SKIP : S_HEAD;
        return 0;
    }
    // Control frames are buffered whole; only a header block makes one big.
    if (s->head.length > s->cfg.max_header_bytes + 10)
        return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err,
                         "control frame type %u of %u bytes exceeds the %zu-byte limit",
                         s->head.type, s->head.length, s->cfg.max_header_bytes + 10);
    s->body.off = s->body.len = 0;
    if (s->head.length > 0) {
        s->state = S_BODY;
        return 0;
    }
    return spdy_control(s, err);
}

ssize_t vmlet_spdy_feed(vmlet_spdy_t *s, const uint8_t *in, size_t len, vmlet_err_t *err)
{
    if (s->failed)
        return vmlet_err_set(err, "spdy: the session has failed; close the connection");
    size_t pos = 0;
    while (pos < len && spdy_buf_pending(&s->out) < s->cfg.max_output) {
        size_t avail = len - pos, n;
        switch (s->state) {
        case S_HEAD:
            n = SPDY_HEAD_LEN - s->head_got < avail ? SPDY_HEAD_LEN - s->head_got : avail;
            memcpy(s->head_bytes + s->head_got, in + pos, n);
            s->head_got += n;
            pos += n;
            if (s->head_got == SPDY_HEAD_LEN && s_head(s, err) < 0)
                return -1;
            break;
        case S_BODY:
            n = s->head.length - s->body.len < avail ? s->head.length - s->body.len : avail;
            spdy_buf_add(&s->body, in + pos, n);
            pos += n;
            if (s->body.len == s->head.length) {
                s->state = S_HEAD;
                if (spdy_control(s, err) < 0)
                    return -1;
            }
            break;
        case S_DATA:
        case S_SKIP:
            n = s->left < avail ? s->left : avail;
            s->left -= n;
            pos += n;
            if (s->state == S_DATA)
                s_data_deliver(s, in + pos - n, n);
            else if (s->left == 0)
                s->state = S_HEAD;
            break;
        }
    }
    return (ssize_t)pos;
}

// --- output ---

const uint8_t *vmlet_spdy_pending(const vmlet_spdy_t *s, size_t *len)
{
    *len = spdy_buf_pending(&s->out);
    return s->out.p ? s->out.p + s->out.off : NULL;
}

void vmlet_spdy_written(vmlet_spdy_t *s, size_t n)
{
    size_t pending = spdy_buf_pending(&s->out);
    spdy_buf_drop(&s->out, n < pending ? n : pending);
}

bool vmlet_spdy_done(const vmlet_spdy_t *s)
{
    return (s->failed || s->goaway_sent || s->goaway_received) && s->n_streams == 0;
}
