// Port-forward: a TCP connection to 127.0.0.1:<port> inside the VM (the
// pod's network namespace), pumped both ways as StreamData under the flow
// window. A refused connection, and the end of one, are a StreamClose
// (with the error, if any).
#include "agent.h"
#include "stream.h"
#include "util.h"

#include "vmlet/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct port_forward {
    fwd_t *next;
    stream_t s;
    int fd;
    unsigned port;
    bool connecting, dead, shut_wr;
};

static fwd_t *s_find(agent_t *a, uint32_t id)
{
    for (fwd_t *f = a->fwds; f; f = f->next)
        if (!f->dead && f->s.id == id)
            return f;
    return NULL;
}

// Ends the forward, telling the host unless it asked for the end itself.
static void s_end(agent_t *a, fwd_t *f, bool tell, const char *error)
{
    if (tell)
        stream_send_close(a, f->s.id, false, error);
    fd_close(&f->fd);
    f->dead = true;
}

void forward_open(agent_t *a, const Vmlet__PortForwardOpen *req)
{
    uint32_t id = req->stream_id;
    if (!req->has_stream_id || s_find(a, id)) {
        send_error(a, "port_forward", NULL, "stream %u: no id, or one in use", id);
        return;
    }
    char error[160];
    if (!req->has_port || req->port == 0 || req->port > 65535) {
        snprintf(error, sizeof error, "port %u is not a TCP port", req->port);
        stream_send_close(a, id, false, error);
        return;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)req->port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 ||
        (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)) {
        snprintf(error, sizeof error, "connect 127.0.0.1:%u: %s", req->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        stream_send_close(a, id, false, error);
        return;
    }
    fwd_t *f = vmlet_xcalloc(1, sizeof *f);
    stream_init(&f->s, id);
    f->fd = fd;
    f->port = req->port;
    f->connecting = true;
    f->next = a->fwds;
    a->fwds = f;
}

static void s_drain(agent_t *a, fwd_t *f)
{
    if (f->connecting || f->fd < 0)
        return;
    if (stream_drain(a, &f->s, f->fd) < 0) {
        char error[160];
        snprintf(error, sizeof error, "write to 127.0.0.1:%u: %s", f->port, strerror(errno));
        s_end(a, f, true, error);
        return;
    }
    if (f->s.host_eof && f->s.in_len == 0 && !f->shut_wr) {
        shutdown(f->fd, SHUT_WR);
        f->shut_wr = true;
    }
}

static void s_on_io(agent_t *a, void *obj, int fd, short revents)
{
    fwd_t *f = obj;
    if (f->dead || fd != f->fd)
        return;
    if (f->connecting) {
        int so = 0;
        socklen_t len = sizeof so;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len);
        if (so) {
            char error[160];
            snprintf(error, sizeof error, "connect 127.0.0.1:%u: %s", f->port, strerror(so));
            s_end(a, f, true, error);
            return;
        }
        f->connecting = false;
    }
    if (revents & POLLOUT)
        s_drain(a, f);
    if (f->dead || !(revents & (POLLIN | POLLHUP | POLLERR)))
        return;
    size_t room = stream_room(&f->s);
    if (room == 0)
        return;
    uint8_t buf[AGENT_CHUNK_MAX];
    ssize_t n = read(fd, buf, room);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) {
        char error[160];
        snprintf(error, sizeof error, "read from 127.0.0.1:%u: %s", f->port, strerror(errno));
        s_end(a, f, true, error);
    } else if (n == 0) {
        s_end(a, f, true, NULL); // the server is done
    } else {
        stream_send(a, &f->s, 0, buf, (size_t)n);
    }
}

void forwards_watch(agent_t *a)
{
    for (fwd_t **p = &a->fwds; *p;) {
        fwd_t *f = *p;
        if (f->dead) {
            *p = f->next;
            stream_free(&f->s);
            free(f);
            continue;
        }
        p = &f->next;
        short events = 0;
        if (f->connecting || f->s.in_len > 0)
            events |= POLLOUT;
        if (!f->connecting && stream_room(&f->s) > 0)
            events |= POLLIN;
        if (events)
            loop_watch(a, f->fd, events, s_on_io, f);
    }
}

bool forward_on_data(agent_t *a, const Vmlet__StreamData *d)
{
    fwd_t *f = s_find(a, d->stream_id);
    if (!f)
        return false;
    if (stream_take(a, &f->s, d) < 0)
        s_end(a, f, true, "the host overran the stream window");
    else
        s_drain(a, f);
    return true;
}

bool forward_on_close(agent_t *a, const Vmlet__StreamClose *c)
{
    fwd_t *f = s_find(a, c->stream_id);
    if (!f)
        return false;
    if (c->write_side_only) {
        f->s.host_eof = true;
        s_drain(a, f);
    } else {
        s_end(a, f, false, NULL);
    }
    return true;
}

void forwards_close_all(agent_t *a)
{
    for (fwd_t *f = a->fwds; f; f = f->next)
        if (!f->dead)
            s_end(a, f, false, NULL);
}
