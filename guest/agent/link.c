// Framing and reliability on the agent's side (guest.proto): frames are a
// 4-byte big-endian length and a GuestMessage. Every message is numbered;
// reliable ones (container output and exits, setup results) stay in the
// unacked list until a host message acknowledges them, and after every
// reconnect the agent sends Hello and then all of them again, in order.
// The host's messages are numbered too: one at or below the highest seen
// is a resend and is not run again.
//
// A frame is shared by the unacked list and the write queue (the bytes for
// the current connection), and freed when it is in neither.
#include "agent.h"
#include "util.h"

#include "vmlet/xalloc.h"

#include <errno.h>
#include <string.h>

struct frame {
    frame_t *next_unacked, *next_write;
    bool in_unacked, in_write;
    uint64_t seq;
    size_t len;
    uint8_t data[];
};

void link_init(link_t *l)
{
    memset(l, 0, sizeof *l);
    l->next_seq = 1;
}

static void s_maybe_free(frame_t *f)
{
    if (!f->in_unacked && !f->in_write)
        free(f);
}

static frame_t *s_frame(const void *bytes, size_t len)
{
    frame_t *f = vmlet_xmalloc(sizeof *f + len);
    memset(f, 0, sizeof *f);
    f->len = len;
    memcpy(f->data, bytes, len);
    return f;
}

static void s_write_append(link_t *l, frame_t *f)
{
    f->in_write = true;
    f->next_write = NULL;
    if (l->wq_tail)
        l->wq_tail->next_write = f;
    else
        l->wq_head = f;
    l->wq_tail = f;
    l->wq_bytes += f->len;
}

void link_send_raw(agent_t *a, const void *bytes, size_t len)
{
    if (a->t.connected)
        s_write_append(&a->link, s_frame(bytes, len));
}

void link_send(agent_t *a, Vmlet__GuestMessage *msg, bool reliable)
{
    link_t *l = &a->link;
    msg->has_seq = 1;
    msg->seq = l->next_seq++;
    msg->has_ack = 1;
    msg->ack = l->host_seen;
    size_t n = vmlet__guest_message__get_packed_size(msg);
    if (n > AGENT_FRAME_MAX) {
        // Only a bug could make one: every payload is chunked far below.
        alog("dropped a message of %zu bytes (over the frame limit)", n);
        return;
    }
    frame_t *f = vmlet_xmalloc(sizeof *f + 4 + n);
    memset(f, 0, sizeof *f);
    f->seq = msg->seq;
    f->len = 4 + n;
    f->data[0] = (uint8_t)(n >> 24);
    f->data[1] = (uint8_t)(n >> 16);
    f->data[2] = (uint8_t)(n >> 8);
    f->data[3] = (uint8_t)n;
    vmlet__guest_message__pack(msg, f->data + 4);
    if (reliable) {
        f->in_unacked = true;
        if (l->unacked_tail)
            l->unacked_tail->next_unacked = f;
        else
            l->unacked_head = f;
        l->unacked_tail = f;
        l->unacked_bytes += f->len;
    }
    if (a->t.connected)
        s_write_append(l, f);
    s_maybe_free(f);
}

bool link_backpressure(const agent_t *a)
{
    // The write queue counts too: a slow host must not grow it without end.
    return a->link.unacked_bytes >= AGENT_UNACKED_MAX ||
           a->link.wq_bytes >= 2 * (size_t)AGENT_UNACKED_MAX;
}

bool link_writable_soon(const agent_t *a)
{
    return a->link.wq_head != NULL;
}

static void s_on_ack(link_t *l, uint64_t ack)
{
    while (l->unacked_head && l->unacked_head->seq <= ack) {
        frame_t *f = l->unacked_head;
        l->unacked_head = f->next_unacked;
        if (!l->unacked_head)
            l->unacked_tail = NULL;
        l->unacked_bytes -= f->len;
        f->in_unacked = false;
        s_maybe_free(f);
    }
}

static void s_clear_write_queue(link_t *l)
{
    frame_t *f = l->wq_head;
    while (f) {
        frame_t *next = f->next_write;
        f->in_write = false;
        s_maybe_free(f);
        f = next;
    }
    l->wq_head = l->wq_tail = NULL;
    l->wq_off = l->wq_bytes = 0;
}

void link_on_connect(agent_t *a)
{
    link_t *l = &a->link;
    l->connections++;
    l->rlen = 0;
    l->host_answered = false;
    s_clear_write_queue(l);
    alog_debug("host connected (connection %u); %zu bytes to resend", l->connections,
               l->unacked_bytes);
    send_hello(a);
    for (frame_t *f = l->unacked_head; f; f = f->next_unacked)
        s_write_append(l, f);
    l->next_hello_ms = now_ms() + AGENT_HELLO_EVERY_MS;
    loop_deadline(a, l->next_hello_ms);
    misbehave_tick(a); // the test build breaks the protocol right after its Hello
    link_flush(a);
}

void link_on_disconnect(agent_t *a)
{
    link_t *l = &a->link;
    s_clear_write_queue(l);
    l->rlen = 0;
    l->host_answered = false;
    // Exec sessions and port-forwards belong to the host that opened them:
    // their bytes are not kept, and a host that comes back knows nothing
    // of them. Left alone, an exec would wait forever for window updates.
    execs_kill_all(a);
    forwards_close_all(a);
}

void link_flush(agent_t *a)
{
    link_t *l = &a->link;
    while (l->wq_head && a->t.connected) {
        frame_t *f = l->wq_head;
        ssize_t n = transport_write(a, f->data + l->wq_off, f->len - l->wq_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            alog("write to the host: %s", strerror(errno));
            transport_drop(a);
            return;
        }
        l->wq_off += (size_t)n;
        if (l->wq_off < f->len)
            continue;
        l->wq_head = f->next_write;
        if (!l->wq_head)
            l->wq_tail = NULL;
        l->wq_bytes -= f->len;
        l->wq_off = 0;
        f->in_write = false;
        s_maybe_free(f);
    }
}

void link_tick(agent_t *a, int64_t now)
{
    link_t *l = &a->link;
    if (!a->t.connected || l->host_answered)
        return;
    if (now >= l->next_hello_ms) {
        send_hello(a);
        l->next_hello_ms = now + AGENT_HELLO_EVERY_MS;
    }
    loop_deadline(a, l->next_hello_ms);
}

// One decoded host message: acks, dedupe, then what it asks.
static void s_handle(agent_t *a, const Vmlet__GuestMessage *msg)
{
    link_t *l = &a->link;
    l->host_answered = true;
    if (msg->has_ack)
        s_on_ack(l, msg->ack);
    if (msg->has_seq) {
        if (msg->seq <= l->host_seen) {
            alog_debug("host message %llu already handled", (unsigned long long)msg->seq);
            return;
        }
        l->host_seen = msg->seq;
    }
    if (msg->body_case != VMLET__GUEST_MESSAGE__BODY__NOT_SET)
        dispatch_message(a, msg);
}

static uint32_t s_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// Whole frames in the buffer. A bad length loses the framing: the buffer
// is dropped and the connection restarted, so both ends start clean with
// a Hello. A frame that does not unpack is skipped (its length was sound).
static void s_parse(agent_t *a)
{
    link_t *l = &a->link;
    size_t off = 0;
    while (l->rlen - off >= 4) {
        uint32_t len = s_be32(l->rbuf + off);
        if (len > AGENT_FRAME_MAX || len == 0) {
            send_error(a, "protocol", NULL,
                       "frame length %u is impossible (0 or over %u); restarting the connection",
                       len, AGENT_FRAME_MAX);
            l->rlen = 0;
            link_flush(a);
            transport_drop(a);
            return;
        }
        if (l->rlen - off - 4 < len)
            break;
        Vmlet__GuestMessage *msg = vmlet__guest_message__unpack(NULL, len, l->rbuf + off + 4);
        off += 4 + (size_t)len;
        if (!msg) {
            send_error(a, "protocol", NULL, "a frame of %u bytes does not unpack as a GuestMessage",
                       len);
            continue;
        }
        s_handle(a, msg);
        vmlet__guest_message__free_unpacked(msg, NULL);
        if (!a->t.connected)
            return; // a handler dropped the connection (or powered off)
    }
    memmove(l->rbuf, l->rbuf + off, l->rlen - off);
    l->rlen -= off;
}

void link_read(agent_t *a)
{
    link_t *l = &a->link;
    size_t budget = AGENT_READ_BUDGET;
    while (budget > 0 && a->t.connected) {
        size_t want = 64u << 10;
        // Room for the frame in progress (up to AGENT_FRAME_MAX + 4).
        if (l->rlen >= 4) {
            size_t need = 4 + (size_t)s_be32(l->rbuf);
            if (need <= AGENT_FRAME_MAX + 4 && need > l->rlen && need - l->rlen > want)
                want = need - l->rlen;
        }
        if (want > budget)
            want = budget;
        if (l->rcap - l->rlen < want) {
            l->rcap = l->rlen + want;
            l->rbuf = vmlet_xrealloc(l->rbuf, l->rcap);
        }
        ssize_t n = transport_read(a, l->rbuf + l->rlen, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            alog_debug("host end closed (%s)", n < 0 ? strerror(errno) : "EOF");
            transport_drop(a);
            return;
        }
        l->rlen += (size_t)n;
        budget -= (size_t)n;
        s_parse(a);
    }
    // A large frame's buffer is given back once handled.
    if (l->rlen == 0 && l->rcap > (1u << 20)) {
        free(l->rbuf);
        l->rbuf = NULL;
        l->rcap = 0;
    }
    link_flush(a);
}
