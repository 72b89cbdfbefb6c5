// Control frame handlers of the server session: what SPDY/3.1 says a
// server does on each frame, with the spec's stream and session errors.
#include "spdy_session.h"

#include <string.h>

// Inflates the header block at off in the body. Failing is a session
// error: the connection-wide zlib state is lost with it.
static int s_inflate(vmlet_spdy_t *s, size_t off, vmlet_err_t *err)
{
    vmlet_err_t zerr = {0};
    if (spdy_z_inflate(s->z, s->body.p + off, s->body.len - off, s->cfg.max_header_bytes, &s->raw,
                       &zerr) < 0)
        return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err, "%s", zerr.msg);
    return 0;
}

// Bounds the duplicate check (quadratic) as well as memory; kubectl sends
// three or four headers.
#define MAX_PAIRS 256

static int s_syn_stream(vmlet_spdy_t *s, vmlet_err_t *err)
{
    if (s->body.len < 10)
        return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err, "SYN_STREAM of %zu bytes",
                         s->body.len);
    uint32_t id = spdy_get32(s->body.p) & SPDY_MAX_STREAM_ID;
    if (s_inflate(s, 10, err) < 0) // first, so zlib stays in step
        return -1;
    if (id == 0 || id % 2 == 0)
        return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err,
                         "SYN_STREAM %u: a client opens odd, non-zero ids", id);
    if (spdy_stream_find(s, id)) {
        spdy_stream_error(s, id, SPDY_STREAM_IN_USE);
        return 0;
    }
    if (id <= s->last_peer_id)
        return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err,
                         "SYN_STREAM %u after stream %u: ids must increase", id, s->last_peer_id);
    if (s->goaway_sent)
        return 0; // SPDY/3 §2.6.6: after our GOAWAY, new streams are ignored
    s->last_peer_id = id;
    if (s->n_streams >= s->cfg.max_streams) {
        spdy_put_rst(&s->out, id, SPDY_REFUSED_STREAM);
        return 0;
    }
    spdy_hdrs_t h;
    vmlet_err_t herr = {0};
    if (spdy_nv_parse(s->raw.p, s->raw.len, MAX_PAIRS, &h, &herr) < 0) {
        spdy_put_rst(&s->out, id, SPDY_PROTOCOL_ERROR);
        return 0;
    }
    uint8_t flags = s->head.flags;
    spdy_stream_t *st = spdy_stream_add(s, id);
    st->remote_fin = flags & SPDY_FLAG_FIN;
    // Unidirectional: we may not send on it, so our side starts closed.
    st->local_fin = flags & SPDY_FLAG_UNIDIRECTIONAL;
    if (s->cb.on_stream)
        s->cb.on_stream(s->cb.ctx, id, h.v, h.n, flags & SPDY_FLAG_FIN);
    spdy_hdrs_free(&h);
    spdy_stream_settle(s, id);
    return 0;
}

// SYN_REPLY and HEADERS: both carry a stream id and a header block.
static int s_stream_headers(vmlet_spdy_t *s, vmlet_err_t *err)
{
    if (s->body.len < 4)
        return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err, "header frame of %zu bytes",
                         s->body.len);
    uint32_t id = spdy_get32(s->body.p) & SPDY_MAX_STREAM_ID;
    if (s_inflate(s, 4, err) < 0)
        return -1;
    spdy_stream_t *st = spdy_stream_find(s, id);
    // We open no streams, so a SYN_REPLY never names one of ours.
    if (s->head.type == SPDY_SYN_REPLY || !st || st->remote_fin) {
        spdy_stream_error(s, id, st ? SPDY_STREAM_ALREADY_CLOSED : SPDY_INVALID_STREAM);
        return 0;
    }
    spdy_hdrs_t h;
    vmlet_err_t herr = {0};
    if (spdy_nv_parse(s->raw.p, s->raw.len, MAX_PAIRS, &h, &herr) < 0) {
        spdy_stream_error(s, id, SPDY_PROTOCOL_ERROR);
        return 0;
    }
    spdy_hdrs_free(&h); // kubectl sends none; their only effect here is FIN
    if (s->head.flags & SPDY_FLAG_FIN) {
        st->remote_fin = true;
        if (s->cb.on_data)
            s->cb.on_data(s->cb.ctx, id, NULL, 0, true);
        spdy_stream_settle(s, id);
    }
    return 0;
}

static int s_settings(vmlet_spdy_t *s, vmlet_err_t *err)
{
    long n = spdy_parse_settings(s->body.p, s->body.len);
    if (n < 0)
        return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err, "SETTINGS of %zu bytes", s->body.len);
    for (long i = 0; i < n; i++) {
        spdy_setting_t e;
        spdy_settings_entry(s->body.p, (size_t)i, &e);
        if (e.id != SPDY_SETTINGS_INITIAL_WINDOW_SIZE)
            continue; // the others advise; nothing here acts on them
        if (e.value > SPDY_MAX_WINDOW)
            return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err,
                             "SETTINGS_INITIAL_WINDOW_SIZE %u exceeds 2^31-1", e.value);
        // Open streams shift by the difference (SPDY/3 §2.6.8).
        int64_t delta = (int64_t)e.value - s->peer_initial_window;
        for (size_t k = 0; k < s->n_streams; k++)
            s->streams[k].send_window += delta;
        s->peer_initial_window = e.value;
    }
    return 0;
}

static int s_window_update(vmlet_spdy_t *s, vmlet_err_t *err)
{
    uint32_t id, delta;
    if (spdy_parse_window_update(s->body.p, s->body.len, &id, &delta) < 0)
        return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err, "WINDOW_UPDATE of %zu bytes",
                         s->body.len);
    if (id == 0) { // SPDY/3.1: the session window
        if (delta == 0 || s->send_session_window + delta > SPDY_MAX_WINDOW)
            return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err,
                             "session WINDOW_UPDATE %u overflows or is zero", delta);
        s->send_session_window += delta;
        return 0;
    }
    spdy_stream_t *st = spdy_stream_find(s, id);
    if (!st)
        return 0; // a stream we closed while the update was in flight
    if (delta == 0) {
        spdy_stream_error(s, id, SPDY_PROTOCOL_ERROR);
        return 0;
    }
    if (st->send_window + delta > SPDY_MAX_WINDOW) {
        spdy_stream_error(s, id, SPDY_FLOW_CONTROL_ERROR);
        return 0;
    }
    st->send_window += delta;
    return 0;
}

static int s_fixed(vmlet_spdy_t *s, vmlet_err_t *err)
{
    uint32_t a, b;
    switch (s->head.type) {
    case SPDY_RST_STREAM:
        if (spdy_parse_rst(s->body.p, s->body.len, &a, &b) < 0)
            return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err, "RST_STREAM of %zu bytes",
                             s->body.len);
        if (spdy_stream_find(s, a)) { // never answer a RST with a RST
            spdy_stream_remove(s, a);
            if (s->cb.on_reset)
                s->cb.on_reset(s->cb.ctx, a, b);
        }
        return 0;
    case SPDY_PING:
        if (spdy_parse_ping(s->body.p, s->body.len, &a) < 0)
            return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err, "PING of %zu bytes", s->body.len);
        if (a % 2 == 1) // the client's; even ids would be answers to ours
            spdy_put_ping(&s->out, a);
        return 0;
    case SPDY_GOAWAY:
        if (spdy_parse_goaway(s->body.p, s->body.len, &a, &b) < 0)
            return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err, "GOAWAY of %zu bytes",
                             s->body.len);
        s->goaway_received = true;
        if (s->cb.on_goaway)
            s->cb.on_goaway(s->cb.ctx, a, b);
        return 0;
    }
    return 0;
}

int spdy_control(vmlet_spdy_t *s, vmlet_err_t *err)
{
    if (s->head.version != SPDY_VERSION) {
        // The spec's answer to a stream in another version; the session
        // goes too, since its header block cannot be inflated in step.
        if (s->head.type == SPDY_SYN_STREAM && s->body.len >= 4)
            spdy_put_rst(&s->out, spdy_get32(s->body.p) & SPDY_MAX_STREAM_ID,
                         SPDY_UNSUPPORTED_VERSION);
        return spdy_fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, err,
                         "control frame of version %u; this server speaks SPDY/3.1",
                         s->head.version);
    }
    switch (s->head.type) {
    case SPDY_SYN_STREAM:
        return s_syn_stream(s, err);
    case SPDY_SYN_REPLY:
    case SPDY_HEADERS:
        return s_stream_headers(s, err);
    case SPDY_SETTINGS:
        return s_settings(s, err);
    case SPDY_WINDOW_UPDATE:
        return s_window_update(s, err);
    default:
        return s_fixed(s, err); // unknown types fall through and are ignored
    }
}
