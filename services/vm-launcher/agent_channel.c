// The host end of the guest agent's protocol (see agent_channel.h).
#include "agent_channel.h"

#include "vmlet/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// One read(2) takes at most this much, so the buffer grows in steps.
#define READ_CHUNK (64u << 10)
// Past a big frame the read buffer shrinks back, so one large message does
// not pin megabytes per VM for the VM's life.
#define INBUF_KEEP (256u << 10)

typedef struct inbox_node {
    Vmlet__GuestMessage *msg;
    struct inbox_node *next;
} inbox_node_t;

struct _vmlet_agent_channel_t {
    int fd;
    bool synced;     // the connection's first Hello has been found
    bool hello_seen; // a Hello was handled on this connection
    uint64_t next_seq;
    uint64_t last_seen; // highest agent seq handled
    uint64_t acked;     // highest agent seq a sent host message acknowledged
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_head, out_len, out_cap, out_max;
    inbox_node_t *head, *tail;
    size_t inbox_count;
    vmlet_agent_channel_stats_t stats;
};

static uint32_t s_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int s_proto_error(vmlet_err_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int s_proto_error(vmlet_err_t *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    char msg[VMLET_ERR_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vmlet_err_set(err, "agent protocol error: %s", msg);
    err->code = EPROTO;
    return -1;
}

vmlet_agent_channel_t *vmlet_agent_channel_new(int fd, size_t outbox_max)
{
    if (fd < 0)
        return NULL;
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    vmlet_agent_channel_t *self = vmlet_xcalloc(1, sizeof *self);
    self->fd = fd;
    self->next_seq = 1;
    self->out_max = outbox_max ? outbox_max : VMLET_AGENT_OUTBOX_DEFAULT;
    return self;
}

void vmlet_agent_channel_destroy(vmlet_agent_channel_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmlet_agent_channel_t *self = *self_p;
    Vmlet__GuestMessage *msg;
    while ((msg = vmlet_agent_channel_next(self)))
        vmlet__guest_message__free_unpacked(msg, NULL);
    if (self->fd >= 0)
        close(self->fd);
    free(self->in);
    free(self->out);
    free(self);
    *self_p = NULL;
}

int vmlet_agent_channel_fd(const vmlet_agent_channel_t *self)
{
    return self->fd;
}

uint64_t vmlet_agent_channel_last_seen(const vmlet_agent_channel_t *self)
{
    return self->last_seen;
}

void vmlet_agent_channel_set_last_seen(vmlet_agent_channel_t *self, uint64_t seq)
{
    self->last_seen = seq;
    self->acked = seq; // what an earlier channel saw, it acknowledged or will be resent
}

bool vmlet_agent_channel_hello_seen(const vmlet_agent_channel_t *self)
{
    return self->hello_seen;
}

static void s_inbox_push(vmlet_agent_channel_t *self, Vmlet__GuestMessage *msg)
{
    inbox_node_t *node = vmlet_xmalloc(sizeof *node);
    node->msg = msg;
    node->next = NULL;
    if (self->tail)
        self->tail->next = node;
    else
        self->head = node;
    self->tail = node;
    self->inbox_count++;
}

Vmlet__GuestMessage *vmlet_agent_channel_next(vmlet_agent_channel_t *self)
{
    inbox_node_t *node = self->head;
    if (!node)
        return NULL;
    self->head = node->next;
    if (!self->head)
        self->tail = NULL;
    self->inbox_count--;
    Vmlet__GuestMessage *msg = node->msg;
    free(node);
    return msg;
}

// Takes one decoded agent message: drops resends, notes a Hello, queues
// the rest. Ack-only messages carry nothing for the launcher.
// A Hello is never a resend and does not move the mark: after a reconnect
// the agent sends Hello and then resends, with their older numbers, what
// was not acknowledged.
static void s_accept(vmlet_agent_channel_t *self, Vmlet__GuestMessage *msg)
{
    if (msg->body_case == VMLET__GUEST_MESSAGE__BODY_HELLO) {
        self->hello_seen = true;
        // A restarted launcher starts from 1; the agent would take those
        // for resends of what it has already run.
        if (msg->has_ack && msg->ack >= self->next_seq)
            self->next_seq = msg->ack + 1;
        s_inbox_push(self, msg);
        return;
    }
    if (msg->seq <= self->last_seen) {
        self->stats.resends_dropped++;
        vmlet__guest_message__free_unpacked(msg, NULL);
        return;
    }
    self->last_seen = msg->seq;
    if (msg->body_case == VMLET__GUEST_MESSAGE__BODY__NOT_SET) {
        vmlet__guest_message__free_unpacked(msg, NULL);
        return;
    }
    s_inbox_push(self, msg);
}

// Skips to the first Hello frame in the buffer. Offsets whose candidate
// frame is still incomplete are kept, since it may become a Hello.
static int s_hunt(vmlet_agent_channel_t *self, vmlet_err_t *err)
{
    size_t keep = SIZE_MAX, found = SIZE_MAX;
    for (size_t i = 0; i + 4 <= self->in_len && found == SIZE_MAX; i++) {
        uint32_t len = s_be32(self->in + i);
        if (len < 2 || len > VMLET_AGENT_HELLO_MAX)
            continue;
        if (i + 4 + len > self->in_len) {
            if (keep == SIZE_MAX)
                keep = i;
            continue;
        }
        Vmlet__GuestMessage *msg = vmlet__guest_message__unpack(NULL, len, self->in + i + 4);
        if (msg && msg->has_seq && msg->body_case == VMLET__GUEST_MESSAGE__BODY_HELLO)
            found = i;
        if (msg)
            vmlet__guest_message__free_unpacked(msg, NULL);
    }
    size_t drop;
    if (found != SIZE_MAX)
        drop = found;
    else if (keep != SIZE_MAX)
        drop = keep;
    else
        drop = self->in_len > 3 ? self->in_len - 3 : 0;
    memmove(self->in, self->in + drop, self->in_len - drop);
    self->in_len -= drop;
    self->stats.bytes_skipped += drop;
    if (found != SIZE_MAX)
        self->synced = true;
    else if (self->stats.bytes_skipped > VMLET_AGENT_SYNC_MAX)
        return s_proto_error(err, "no AgentHello in the first %llu bytes of the connection",
                             (unsigned long long)self->stats.bytes_skipped);
    return 0;
}

// Decodes every whole frame in the buffer.
static int s_parse(vmlet_agent_channel_t *self, vmlet_err_t *err)
{
    if (!self->synced && s_hunt(self, err) < 0)
        return -1;
    if (!self->synced)
        return 0;
    size_t off = 0;
    int rc = 0;
    while (self->in_len - off >= 4) {
        uint32_t len = s_be32(self->in + off);
        if (len > VMLET_AGENT_FRAME_MAX) {
            rc = s_proto_error(err, "frame of %u bytes is over the %u-byte limit", len,
                               VMLET_AGENT_FRAME_MAX);
            break;
        }
        if (len == 0) {
            rc = s_proto_error(err, "empty frame (an agent message always carries a seq)");
            break;
        }
        if (self->in_len - off - 4 < len)
            break;
        Vmlet__GuestMessage *msg = vmlet__guest_message__unpack(NULL, len, self->in + off + 4);
        if (!msg) {
            rc = s_proto_error(err, "frame of %u bytes does not unpack as a GuestMessage", len);
            break;
        }
        if (!msg->has_seq || msg->seq == 0) {
            vmlet__guest_message__free_unpacked(msg, NULL);
            rc = s_proto_error(err, "agent message without a seq");
            break;
        }
        off += 4 + (size_t)len;
        self->stats.frames_in++;
        s_accept(self, msg);
    }
    memmove(self->in, self->in + off, self->in_len - off);
    self->in_len -= off;
    return rc;
}

static void s_inbuf_reserve(vmlet_agent_channel_t *self, size_t room)
{
    size_t need = self->in_len + room;
    if (self->in_cap >= need) {
        // Give back what one big frame made us take.
        if (self->in_cap > INBUF_KEEP && need <= INBUF_KEEP / 2) {
            self->in = vmlet_xrealloc(self->in, INBUF_KEEP / 2);
            self->in_cap = INBUF_KEEP / 2;
        }
        return;
    }
    size_t cap = self->in_cap ? self->in_cap : READ_CHUNK;
    while (cap < need)
        cap *= 2;
    self->in = vmlet_xrealloc(self->in, cap);
    self->in_cap = cap;
}

int vmlet_agent_channel_read(vmlet_agent_channel_t *self, size_t budget, vmlet_err_t *err)
{
    if (budget == 0)
        budget = VMLET_AGENT_READ_BUDGET_DEFAULT;
    while (budget > 0) {
        size_t want = budget < READ_CHUNK ? budget : READ_CHUNK;
        s_inbuf_reserve(self, want);
        ssize_t n = read(self->fd, self->in + self->in_len, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0)
            return vmlet_err_errno(err, errno, "agent channel: read");
        if (n == 0) {
            vmlet_err_set(err, "agent channel: the guest end closed the connection");
            if (err)
                err->code = ECONNRESET;
            return -1;
        }
        self->in_len += (size_t)n;
        self->stats.bytes_in += (uint64_t)n;
        budget -= (size_t)n;
        if (s_parse(self, err) < 0)
            return -1;
    }
    return (int)(self->inbox_count > INT32_MAX ? INT32_MAX : self->inbox_count);
}

size_t vmlet_agent_channel_pending(const vmlet_agent_channel_t *self)
{
    return self->out_len - self->out_head;
}

long vmlet_agent_channel_flush(vmlet_agent_channel_t *self, vmlet_err_t *err)
{
    while (self->out_head < self->out_len) {
        size_t left = self->out_len - self->out_head;
        ssize_t n = send(self->fd, self->out + self->out_head, left, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == ENOTSOCK)
            n = write(self->fd, self->out + self->out_head, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0)
            return vmlet_err_errno(err, errno, "agent channel: write");
        self->out_head += (size_t)n;
        self->stats.bytes_out += (uint64_t)n;
    }
    if (self->out_head == self->out_len)
        self->out_head = self->out_len = 0;
    return (long)(self->out_len - self->out_head);
}

// Packs msg as a frame at the end of the outbox, within the bound.
static int s_enqueue(vmlet_agent_channel_t *self, const Vmlet__GuestMessage *msg, vmlet_err_t *err)
{
    size_t size = vmlet__guest_message__get_packed_size(msg);
    if (size > VMLET_AGENT_FRAME_MAX) {
        vmlet_err_set(err, "agent channel: message of %zu bytes is over the %u-byte frame limit",
                      size, VMLET_AGENT_FRAME_MAX);
        if (err)
            err->code = EMSGSIZE;
        return -1;
    }
    size_t frame = 4 + size;
    if (vmlet_agent_channel_pending(self) + frame > self->out_max) {
        vmlet_err_set(err, "agent channel: outbox full (%zu of %zu bytes waiting)",
                      vmlet_agent_channel_pending(self), self->out_max);
        if (err)
            err->code = ENOBUFS;
        return -1;
    }
    if (self->out_head > 0 && self->out_len + frame > self->out_cap) {
        memmove(self->out, self->out + self->out_head, self->out_len - self->out_head);
        self->out_len -= self->out_head;
        self->out_head = 0;
    }
    if (self->out_len + frame > self->out_cap) {
        size_t cap = self->out_cap ? self->out_cap : 4096;
        while (cap < self->out_len + frame)
            cap *= 2;
        self->out = vmlet_xrealloc(self->out, cap);
        self->out_cap = cap;
    }
    uint8_t *p = self->out + self->out_len;
    p[0] = (uint8_t)(size >> 24);
    p[1] = (uint8_t)(size >> 16);
    p[2] = (uint8_t)(size >> 8);
    p[3] = (uint8_t)size;
    vmlet__guest_message__pack(msg, p + 4);
    self->out_len += frame;
    self->stats.frames_out++;
    if (msg->has_ack && msg->ack > self->acked)
        self->acked = msg->ack;
    return 0;
}

int vmlet_agent_channel_send(vmlet_agent_channel_t *self, Vmlet__GuestMessage *msg,
                             vmlet_err_t *err)
{
    if (!self->hello_seen) {
        vmlet_err_set(err, "agent channel: nothing may be sent before the agent's Hello "
                           "(its seq numbering is not known yet)");
        if (err)
            err->code = EAGAIN;
        return -1;
    }
    msg->has_seq = 1;
    msg->seq = self->next_seq;
    msg->has_ack = 1;
    msg->ack = self->last_seen;
    if (s_enqueue(self, msg, err) < 0)
        return -1;
    self->next_seq++;
    return vmlet_agent_channel_flush(self, err) < 0 ? -1 : 0;
}

bool vmlet_agent_channel_ack_pending(const vmlet_agent_channel_t *self)
{
    return self->last_seen > self->acked;
}

int vmlet_agent_channel_send_ack(vmlet_agent_channel_t *self, vmlet_err_t *err)
{
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.has_ack = 1;
    msg.ack = self->last_seen;
    if (s_enqueue(self, &msg, err) < 0)
        return -1;
    return vmlet_agent_channel_flush(self, err) < 0 ? -1 : 0;
}

void vmlet_agent_channel_stats(const vmlet_agent_channel_t *self,
                               vmlet_agent_channel_stats_t *stats)
{
    *stats = self->stats;
}
