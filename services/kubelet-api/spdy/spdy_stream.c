// The session's table of open streams: a small array, as kubectl opens a
// handful per connection and max_streams bounds it.
#include "spdy_session.h"

#include "vmlet/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

spdy_stream_t *spdy_stream_find(const vmlet_spdy_t *s, uint32_t id)
{
    for (size_t i = 0; i < s->n_streams; i++)
        if (s->streams[i].id == id)
            return &s->streams[i];
    return NULL;
}

spdy_stream_t *spdy_stream_add(vmlet_spdy_t *s, uint32_t id)
{
    if (s->n_streams == s->cap_streams) {
        s->cap_streams = s->cap_streams ? s->cap_streams * 2 : 8;
        s->streams = vmlet_xrealloc(s->streams, s->cap_streams * sizeof *s->streams);
    }
    spdy_stream_t *st = &s->streams[s->n_streams++];
    *st = (spdy_stream_t){
        .id = id,
        .send_window = s->peer_initial_window,
        .recv_window = s->cfg.recv_window,
    };
    return st;
}

void spdy_stream_remove(vmlet_spdy_t *s, uint32_t id)
{
    spdy_stream_t *st = spdy_stream_find(s, id);
    if (st)
        *st = s->streams[--s->n_streams]; // order does not matter
}

void spdy_stream_settle(vmlet_spdy_t *s, uint32_t id)
{
    spdy_stream_t *st = spdy_stream_find(s, id);
    if (st && st->local_fin && st->remote_fin)
        spdy_stream_remove(s, id);
}

void spdy_stream_error(vmlet_spdy_t *s, uint32_t id, uint32_t status)
{
    spdy_put_rst(&s->out, id, status);
    if (spdy_stream_find(s, id)) {
        spdy_stream_remove(s, id);
        if (s->cb.on_reset)
            s->cb.on_reset(s->cb.ctx, id, status);
    }
}

int spdy_fail(vmlet_spdy_t *s, uint32_t status, vmlet_err_t *err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!s->goaway_sent) {
        spdy_put_goaway(&s->out, s->last_peer_id, status);
        s->goaway_sent = true;
    }
    s->failed = true;
    return vmlet_err_set(err, "spdy: %s", msg);
}
