// Flow-controlled byte streams for exec sessions and port-forwards (see stream.h).
#include "stream.h"

#include "util.h"

#include "vmlet/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Consumed bytes are reported in batches of this much (or when the buffer
// empties), not one message per write.
#define UPDATE_EVERY (32u << 10)

void stream_init(stream_t *s, uint32_t id)
{
    memset(s, 0, sizeof *s);
    s->id = id;
    s->credit = AGENT_STREAM_WINDOW;
}

void stream_free(stream_t *s)
{
    free(s->in);
    s->in = NULL;
    s->in_len = s->in_cap = 0;
}

int stream_take(agent_t *a, stream_t *s, const Vmlet__StreamData *d)
{
    if (d->has_window_update)
        s->credit += d->window_update;
    if (!d->has_data || d->data.len == 0)
        return 0;
    if (s->in_len + d->data.len > AGENT_STREAM_WINDOW) {
        send_error(a, "protocol", NULL,
                   "stream %u: the host sent %zu bytes past its window of %u unconsumed bytes",
                   s->id, s->in_len + d->data.len - AGENT_STREAM_WINDOW, AGENT_STREAM_WINDOW);
        return -1;
    }
    if (s->in_cap < s->in_len + d->data.len) {
        s->in_cap = s->in_len + d->data.len;
        s->in = vmlet_xrealloc(s->in, s->in_cap);
    }
    memcpy(s->in + s->in_len, d->data.data, d->data.len);
    s->in_len += d->data.len;
    return 0;
}

static void s_window_update(agent_t *a, stream_t *s)
{
    Vmlet__StreamData d = VMLET__STREAM_DATA__INIT;
    d.has_stream_id = 1;
    d.stream_id = s->id;
    d.has_window_update = 1;
    d.window_update = s->consumed;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_DATA;
    msg.stream_data = &d;
    link_send(a, &msg, false);
    s->consumed = 0;
}

int stream_drain(agent_t *a, stream_t *s, int fd)
{
    int rc = 0;
    while (s->in_len > 0) {
        ssize_t n = write(fd, s->in, s->in_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
            break;
        }
        memmove(s->in, s->in + n, s->in_len - (size_t)n);
        s->in_len -= (size_t)n;
        s->consumed += (uint32_t)n;
    }
    int saved = errno;
    if (s->consumed >= UPDATE_EVERY || (s->consumed > 0 && s->in_len == 0))
        s_window_update(a, s);
    errno = saved;
    return rc;
}

size_t stream_room(const stream_t *s)
{
    return s->credit < AGENT_CHUNK_MAX ? (size_t)s->credit : AGENT_CHUNK_MAX;
}

void stream_send(agent_t *a, stream_t *s, int which, const void *data, size_t len)
{
    Vmlet__StreamData d = VMLET__STREAM_DATA__INIT;
    d.has_stream_id = 1;
    d.stream_id = s->id;
    if (which) {
        d.has_which = 1;
        d.which = (Vmlet__OutputStream)which;
    }
    d.has_data = 1;
    d.data.data = (uint8_t *)data;
    d.data.len = len;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_DATA;
    msg.stream_data = &d;
    link_send(a, &msg, false);
    s->credit -= len < s->credit ? len : s->credit;
}

void stream_send_close(agent_t *a, uint32_t id, bool write_side_only, const char *error)
{
    Vmlet__StreamClose c = VMLET__STREAM_CLOSE__INIT;
    c.has_stream_id = 1;
    c.stream_id = id;
    if (write_side_only) {
        c.has_write_side_only = 1;
        c.write_side_only = true;
    }
    c.error = (char *)error;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_CLOSE;
    msg.stream_close = &c;
    link_send(a, &msg, false);
}

void stream_message_data(agent_t *a, const Vmlet__StreamData *d)
{
    if (!exec_on_data(a, d) && !forward_on_data(a, d))
        alog_debug("data for stream %u, which is closed", d->stream_id);
}

void stream_message_close(agent_t *a, const Vmlet__StreamClose *c)
{
    if (!exec_on_close(a, c) && !forward_on_close(a, c))
        alog_debug("close of stream %u, which is closed", c->stream_id);
}
