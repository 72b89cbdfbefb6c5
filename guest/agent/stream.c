// Flow-controlled byte streams for exec sessions and port-forwards (see
// stream.h), and attach streams: the host writing a container's own stdin.
// (Attach lives here, not in a file of its own, because it is mostly this
// file's stream machinery pointed at a container's stdin fd.)
#include "stream.h"

#include "util.h"

#include "vmlet/xalloc.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
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
    if (!exec_on_data(a, d) && !forward_on_data(a, d) && !attach_on_data(a, d))
        alog_debug("data for stream %u, which is closed", d->stream_id);
}

void stream_message_close(agent_t *a, const Vmlet__StreamClose *c)
{
    if (!exec_on_close(a, c) && !forward_on_close(a, c) && !attach_on_close(a, c))
        alog_debug("close of stream %u, which is closed", c->stream_id);
}

// --- attach: the host writing a container's own stdin -------------------------------------

struct attach_stream {
    attach_t *next;
    stream_t s;
    char *container;
    bool dead;
};

static attach_t *s_attach_find(agent_t *a, uint32_t id)
{
    for (attach_t *t = a->attaches; t; t = t->next)
        if (!t->dead && t->s.id == id)
            return t;
    return NULL;
}

// The fd the container reads its stdin from now: its terminal with tty,
// else the pipe (gone once closed for stdinOnce, or between runs).
static int s_attach_fd(agent_t *a, const attach_t *t)
{
    const container_t *c = container_find(a, t->container);
    if (!c || c->pid <= 0 || c->exited)
        return -1;
    return c->tty ? c->out_fd[0] : c->stdin_fd;
}

// Bytes with nowhere to go still count as consumed, so the host's window
// never stalls on a container that stopped reading for good.
static void s_attach_discard(agent_t *a, attach_t *t)
{
    if (t->s.in_len == 0)
        return;
    t->s.consumed += (uint32_t)t->s.in_len;
    t->s.in_len = 0;
    s_window_update(a, &t->s);
}

static void s_attach_drain(agent_t *a, attach_t *t)
{
    int fd = s_attach_fd(a, t);
    if (fd < 0 || stream_drain(a, &t->s, fd) < 0)
        s_attach_discard(a, t); // no reader left (EPIPE): what the host sends is dropped
}

void attach_open(agent_t *a, const Vmlet__ContainerAttach *req)
{
    uint32_t id = req->stream_id;
    if (!req->has_stream_id || s_attach_find(a, id)) {
        send_error(a, "attach", req->container, "attach stream %u: no id, or one in use", id);
        return;
    }
    container_t *c = container_find(a, req->container);
    char error[200];
    if (!c || (!c->tty && !c->stdin_open)) {
        snprintf(error, sizeof error, "container %s has no stdin to attach to",
                 req->container ? req->container : "");
        stream_send_close(a, id, false, error);
        return;
    }
    // The container's own pipe was made blocking; the agent must never wait on it.
    if (c->stdin_fd >= 0)
        fd_nonblock(c->stdin_fd);
    attach_t *t = vmlet_xcalloc(1, sizeof *t);
    stream_init(&t->s, id);
    t->container = vmlet_xstrdup(c->name);
    t->next = a->attaches;
    a->attaches = t;
}

static void s_attach_on_io(agent_t *a, void *obj, int fd, short revents)
{
    (void)fd;
    attach_t *t = obj;
    if (!t->dead && (revents & (POLLOUT | POLLERR | POLLHUP)))
        s_attach_drain(a, t);
}

void attaches_watch(agent_t *a)
{
    for (attach_t **p = &a->attaches; *p;) {
        attach_t *t = *p;
        if (t->dead) {
            *p = t->next;
            stream_free(&t->s);
            free(t->container);
            free(t);
            continue;
        }
        p = &t->next;
        if (t->s.in_len == 0)
            continue;
        int fd = s_attach_fd(a, t);
        if (fd < 0)
            s_attach_discard(a, t);
        else
            loop_watch(a, fd, POLLOUT, s_attach_on_io, t);
    }
}

bool attach_on_data(agent_t *a, const Vmlet__StreamData *d)
{
    attach_t *t = s_attach_find(a, d->stream_id);
    if (!t)
        return false;
    if (stream_take(a, &t->s, d) < 0) {
        stream_send_close(a, t->s.id, false, "the host overran the stream window");
        t->dead = true;
    } else {
        s_attach_drain(a, t);
    }
    return true;
}

bool attach_on_close(agent_t *a, const Vmlet__StreamClose *c)
{
    attach_t *t = s_attach_find(a, c->stream_id);
    if (!t)
        return false;
    if (!c->write_side_only) {
        t->dead = true; // the session ended; stdin stays open for the next one
        return true;
    }
    // stdinOnce: what was sent goes first, then the container sees EOF.
    s_attach_drain(a, t);
    container_t *ct = container_find(a, t->container);
    if (ct && !ct->tty) {
        if (t->s.in_len > 0)
            alog("attach %u: %zu bytes of stdin dropped at close", t->s.id, t->s.in_len);
        fd_close(&ct->stdin_fd);
    }
    return true;
}

void attach_resize(agent_t *a, const Vmlet__TerminalResize *r)
{
    attach_t *t = s_attach_find(a, r->stream_id);
    container_t *c = t ? container_find(a, t->container) : NULL;
    if (!c || !c->tty || c->out_fd[0] < 0)
        return;
    struct winsize ws = {.ws_row = (unsigned short)r->rows, .ws_col = (unsigned short)r->cols};
    ioctl(c->out_fd[0], TIOCSWINSZ, &ws);
}
