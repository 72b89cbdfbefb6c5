// What the application sends on a session: replies, data within the
// peer's windows, window updates for what it consumed, resets, GOAWAY.
#include "spdy_session.h"

// A stream we may still send on, or NULL with err set.
static spdy_stream_t *s_sendable(vmlet_spdy_t *s, uint32_t id, const char *what, vmlet_err_t *err)
{
    spdy_stream_t *st = spdy_stream_find(s, id);
    if (!st || st->local_fin) {
        vmlet_err_set(err, "spdy %s on stream %u: %s", what, id,
                      st ? "our side is finished" : "no such open stream");
        return NULL;
    }
    return st;
}

int vmlet_spdy_reply(vmlet_spdy_t *s, uint32_t id, const vmlet_spdy_header_t *h, size_t n, bool fin,
                     vmlet_err_t *err)
{
    spdy_stream_t *st = s_sendable(s, id, "reply", err);
    if (!st)
        return -1;
    if (st->replied)
        return vmlet_err_set(err, "spdy reply on stream %u: already answered", id);
    spdy_buf_t block = {0};
    if (spdy_z_encode(s->z, h, n, &block, err) < 0) {
        spdy_buf_free(&block);
        return vmlet_err_wrap(err, "spdy reply on stream %u", id);
    }
    spdy_put_syn_reply(&s->out, id, fin ? SPDY_FLAG_FIN : 0, block.p, block.len);
    spdy_buf_free(&block);
    st->replied = true;
    st->local_fin = fin;
    spdy_stream_settle(s, id);
    return 0;
}

static size_t s_window(const vmlet_spdy_t *s, const spdy_stream_t *st)
{
    size_t out = spdy_buf_pending(&s->out);
    size_t room = out < s->cfg.max_output ? s->cfg.max_output - out : 0;
    if (s->cfg.lenient_flow_control)
        return room;
    int64_t w = st->send_window < s->send_session_window ? st->send_window : s->send_session_window;
    if (w <= 0)
        return 0;
    return (uint64_t)w < room ? (size_t)w : room;
}

size_t vmlet_spdy_send_window(const vmlet_spdy_t *s, uint32_t id)
{
    const spdy_stream_t *st = spdy_stream_find(s, id);
    if (!st || st->local_fin || !st->replied)
        return 0;
    return s_window(s, st);
}

ssize_t vmlet_spdy_send(vmlet_spdy_t *s, uint32_t id, const uint8_t *data, size_t len, bool fin,
                        vmlet_err_t *err)
{
    spdy_stream_t *st = s_sendable(s, id, "send", err);
    if (!st)
        return -1;
    if (!st->replied) // the client drops data that comes before SYN_REPLY
        return vmlet_err_set(err, "spdy send on stream %u: reply first", id);
    size_t take = s_window(s, st);
    if (take > len)
        take = len;
    bool last = fin && take == len;
    size_t done = 0;
    do { // at least one frame, so an empty FIN goes out
        size_t n = take - done < MAX_DATA_FRAME ? take - done : MAX_DATA_FRAME;
        bool fin_here = last && done + n == take;
        if (n == 0 && !fin_here)
            break;
        spdy_put_data(&s->out, id, fin_here ? SPDY_FLAG_FIN : 0, data + done, n);
        done += n;
    } while (done < take);
    st->send_window -= (int64_t)take;
    s->send_session_window -= (int64_t)take;
    if (last) {
        st->local_fin = true;
        spdy_stream_settle(s, id);
    }
    return (ssize_t)take;
}

int vmlet_spdy_consumed(vmlet_spdy_t *s, uint32_t id, size_t n, vmlet_err_t *err)
{
    if (n == 0)
        return 0;
    if (s->recv_session_window + (int64_t)n > (int64_t)s->cfg.recv_session_window)
        return vmlet_err_set(err, "spdy consumed %zu on stream %u: more than was received", n, id);
    spdy_stream_t *st = spdy_stream_find(s, id);
    if (st && st->recv_window + (int64_t)n > (int64_t)s->cfg.recv_window)
        return vmlet_err_set(err, "spdy consumed %zu on stream %u: more than was received", n, id);
    s->recv_session_window += (int64_t)n;
    spdy_put_window_update(&s->out, 0, (uint32_t)n);
    // A stream the client has finished needs no more window.
    if (st && !st->remote_fin) {
        st->recv_window += (int64_t)n;
        spdy_put_window_update(&s->out, id, (uint32_t)n);
    }
    return 0;
}

void vmlet_spdy_reset(vmlet_spdy_t *s, uint32_t id, uint32_t status)
{
    spdy_put_rst(&s->out, id, status);
    spdy_stream_remove(s, id);
}

void vmlet_spdy_goaway(vmlet_spdy_t *s, uint32_t status)
{
    if (s->goaway_sent)
        return;
    spdy_put_goaway(&s->out, s->last_peer_id, status);
    s->goaway_sent = true;
}
