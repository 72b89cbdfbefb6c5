// One session's TCP connection: frames in (read only while the guest can
// take what they carry) and out (a buffer the kinds keep small), and the
// marks that say which guest bytes have reached the socket, so the agent's
// stream window is acknowledged for those only (session.h).
#include "session_conn.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define OPEN_WAIT_MS 30000   // a connection that never says SessionOpen
#define READ_MAX (64u << 10) // bytes read per wake-up
#define MARKS_MAX 256        // past this, marks merge (acks come a little later)

static int s_on_fd(zloop_t *loop, zmq_pollitem_t *item, void *arg);

static void s_poll(session_t *s)
{
    if (s->fd < 0)
        return;
    short events = 0;
    if (s->state == SS_CLOSING || s->pending_len == 0)
        events |= ZMQ_POLLIN; // closing: only to notice the client going away
    if (s->out_len > 0)
        events |= ZMQ_POLLOUT;
    if (s->polled && s->events == events)
        return;
    zmq_pollitem_t item = {NULL, s->fd, events, 0};
    if (s->polled)
        zloop_poller_end(s->l->loop, &item);
    s->polled = false;
    if (events && zloop_poller(s->l->loop, &item, s_on_fd, s) == 0) {
        zloop_poller_set_tolerant(s->l->loop, &item);
        s->polled = true;
    }
    s->events = events;
}

session_t *session_conn_new(session_server_t *srv, int fd, const char *peer)
{
    session_t *s = vmlet_xcalloc(1, sizeof *s);
    s->srv = srv;
    s->l = session_server_launcher(srv);
    s->fd = fd;
    s->state = SS_OPEN;
    s->close_deadline_ms = vmlet_now_ms() + OPEN_WAIT_MS;
    snprintf(s->peer, sizeof s->peer, "%s", peer);
    s_poll(s);
    if (!s->polled) {
        close(fd);
        free(s);
        return NULL;
    }
    return s;
}

static void s_release(session_t *s)
{
    if (s->released)
        return;
    s->released = true;
    if (s->kind && s->opened && s->kind->release)
        s->kind->release(s);
    free(s->pending);
    s->pending = NULL;
    s->pending_len = s->pending_off = 0;
}

void session_conn_destroy(session_t **s_p)
{
    session_t *s = *s_p;
    if (!s)
        return;
    s_release(s);
    if (s->polled) {
        zmq_pollitem_t item = {NULL, s->fd, 0, 0};
        zloop_poller_end(s->l->loop, &item);
    }
    if (s->fd >= 0)
        close(s->fd);
    session_server_forget(s->srv, s);
    free(s->in);
    free(s->out);
    free(s->marks);
    free(s);
    *s_p = NULL;
}

// --- output ---------------------------------------------------------------------------

static void s_mark(session_t *s, uint32_t bytes)
{
    if (s->n_marks >= MARKS_MAX) { // merged into the last: acknowledged when it is written
        session_mark_t *last = &s->marks[s->marks_head + s->n_marks - 1];
        last->end = s->out_queued;
        last->bytes += bytes;
        return;
    }
    if (s->marks_head + s->n_marks == s->marks_cap) {
        if (s->marks_head > 0) {
            memmove(s->marks, s->marks + s->marks_head, s->n_marks * sizeof *s->marks);
            s->marks_head = 0;
        } else {
            s->marks_cap = s->marks_cap ? 2 * s->marks_cap : 16;
            s->marks = vmlet_xrealloc(s->marks, s->marks_cap * sizeof *s->marks);
        }
    }
    s->marks[s->marks_head + s->n_marks++] = (session_mark_t){s->out_queued, bytes};
}

// Guest bytes that reached the socket: the agent may send that much more.
static void s_acks(session_t *s)
{
    uint64_t done = 0;
    while (s->n_marks > 0 && s->marks[s->marks_head].end <= s->out_written) {
        done += s->marks[s->marks_head].bytes;
        s->marks_head++;
        s->n_marks--;
    }
    if (s->n_marks == 0)
        s->marks_head = 0;
    if (done == 0 || !s->stream_open)
        return;
    Vmlet__StreamData ack = VMLET__STREAM_DATA__INIT;
    ack.has_stream_id = 1;
    ack.stream_id = s->stream_id;
    ack.has_window_update = 1;
    ack.window_update = (uint32_t)done;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_DATA;
    msg.stream_data = &ack;
    session_agent_send(s, &msg);
}

// The client is gone: the kind lets go now (an exec is killed), the
// sweep frees the rest.
static void s_broken(session_t *s)
{
    if (!s->result)
        s->result = "disconnected";
    s_release(s);
    s->broken = true;
    s->state = SS_CLOSING;
    s->out_len = 0;
    if (s->polled) {
        zmq_pollitem_t item = {NULL, s->fd, 0, 0};
        zloop_poller_end(s->l->loop, &item);
        s->polled = false;
    }
}

static void s_flush(session_t *s)
{
    while (s->out_len > 0 && !s->broken) {
        ssize_t n = write(s->fd, s->out, s->out_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            s_broken(s);
            return;
        }
        memmove(s->out, s->out + n, s->out_len - (size_t)n);
        s->out_len -= (size_t)n;
        s->out_written += (uint64_t)n;
    }
    if (s->broken)
        return;
    s_acks(s);
    s_poll(s);
}

void session_conn_queue(session_t *s, const Vmlet__SessionFrame *f, uint32_t guest_bytes)
{
    size_t len = vmlet__session_frame__get_packed_size(f);
    if (s->out_cap < s->out_len + 4 + len) {
        s->out_cap = s->out_len + 4 + len;
        s->out = vmlet_xrealloc(s->out, s->out_cap);
    }
    uint8_t *p = s->out + s->out_len;
    p[0] = (uint8_t)(len >> 24), p[1] = (uint8_t)(len >> 16), p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    vmlet__session_frame__pack(f, p + 4);
    s->out_len += 4 + len;
    s->out_queued += 4 + len;
    if (guest_bytes)
        s_mark(s, guest_bytes);
    s_flush(s);
}

size_t session_out_len(const session_t *s)
{
    return s->out_len;
}

int session_send_data(session_t *s, Vmlet__SessionChannel ch, const uint8_t *data, size_t len,
                      uint32_t guest_bytes)
{
    if (s->state != SS_OPEN)
        return -1;
    // Guest stream bytes are bounded by the agent's window; the rest by the cap.
    if (!guest_bytes && s->out_len + len > SESSION_OUT_CAP)
        return -1;
    Vmlet__SessionData d = VMLET__SESSION_DATA__INIT;
    d.has_channel = 1;
    d.channel = ch;
    d.has_data = 1;
    d.data = (ProtobufCBinaryData){len, (uint8_t *)data};
    Vmlet__SessionFrame f = VMLET__SESSION_FRAME__INIT;
    f.body_case = VMLET__SESSION_FRAME__BODY_DATA;
    f.data = &d;
    session_conn_queue(s, &f, guest_bytes);
    return 0;
}

void session_end(session_t *s, const char *result, const char *error, int status, int exit_code,
                 int signal)
{
    if (s->state != SS_OPEN)
        return;
    if (!s->result)
        s->result = result;
    s->state = SS_CLOSING; // first: what the release sends cannot end it twice
    s_release(s);
    Vmlet__SessionEnd end = VMLET__SESSION_END__INIT;
    if (exit_code >= 0) {
        end.has_exit_code = 1;
        end.exit_code = exit_code;
    }
    if (signal > 0) {
        end.has_signal = 1;
        end.signal = signal;
    }
    end.error = (char *)error;
    if (status > 0) {
        end.has_http_status = 1;
        end.http_status = status;
    }
    Vmlet__SessionFrame f = VMLET__SESSION_FRAME__INIT;
    f.body_case = VMLET__SESSION_FRAME__BODY_END;
    f.end = &end;
    s->state = SS_CLOSING;
    s->close_deadline_ms = vmlet_now_ms() + SESSION_CLOSE_MS;
    session_conn_queue(s, &f, 0);
}

// --- input ----------------------------------------------------------------------------

static void s_handle(session_t *s, const Vmlet__SessionFrame *f)
{
    if (!s->kind) {
        if (f->body_case != VMLET__SESSION_FRAME__BODY_OPEN) {
            s->kind = &session_exec_kind; // for the count only
            session_end(s, "error", "the first frame must be a SessionOpen", 400, -1, 0);
            return;
        }
        session_server_open(s->srv, s, f->open);
        return;
    }
    if (f->body_case == VMLET__SESSION_FRAME__BODY_END) {
        // The front ends it: nothing more is sent, the exec (if any) goes.
        if (!s->result)
            s->result = "closed";
        s_broken(s);
        return;
    }
    if (s->opened && s->kind->input && f->body_case != VMLET__SESSION_FRAME__BODY_OPEN)
        s->kind->input(s, f);
}

// Whole frames, while the guest can take what they carry (a frame whose
// stdin is left waiting for the window stops the reading).
static void s_parse(session_t *s)
{
    size_t off = 0;
    while (s->state == SS_OPEN && s->pending_len == 0 && s->in_len - off >= 4) {
        const uint8_t *p = s->in + off;
        uint32_t len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (len > SESSION_FRAME_MAX) {
            session_end(s, "error", "a frame over 1 MiB", 400, -1, 0);
            break;
        }
        if (s->in_len - off < 4 + (size_t)len)
            break;
        Vmlet__SessionFrame *f = vmlet__session_frame__unpack(NULL, len, p + 4);
        off += 4 + len;
        if (!f) {
            session_end(s, "error", "a frame that is not a SessionFrame", 400, -1, 0);
            break;
        }
        s_handle(s, f);
        vmlet__session_frame__free_unpacked(f, NULL);
    }
    if (off > 0) {
        memmove(s->in, s->in + off, s->in_len - off);
        s->in_len -= off;
    }
}

static void s_read(session_t *s)
{
    if (s->in_cap < s->in_len + READ_MAX) {
        s->in_cap = s->in_len + READ_MAX;
        s->in = vmlet_xrealloc(s->in, s->in_cap);
    }
    ssize_t n = read(s->fd, s->in + s->in_len, READ_MAX);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        s_broken(s);
        return;
    }
    if (s->state == SS_CLOSING)
        return; // nothing the client says matters any more
    s->in_len += (size_t)n;
    s_parse(s);
}

// stdin waiting for the window went out: frames already read are handled.
void session_conn_resume(session_t *s)
{
    if (s->pending_len == 0 && s->state == SS_OPEN)
        s_parse(s);
    s_poll(s);
}

static int s_on_fd(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    session_t *s = arg;
    if (item->revents & ZMQ_POLLOUT)
        s_flush(s);
    if (!s->broken && (item->revents & (ZMQ_POLLIN | ZMQ_POLLERR)))
        s_read(s);
    if (s->broken || (s->state == SS_CLOSING && s->out_len == 0)) {
        session_conn_destroy(&s);
        return 0;
    }
    if (s->state == SS_OPEN && s->opened && s->kind->writable && s->out_len < SESSION_OUT_CAP / 2)
        s->kind->writable(s);
    return 0;
}

bool session_conn_done(const session_t *s, int64_t now_ms)
{
    if (s->broken ||
        (s->state == SS_CLOSING && (s->out_len == 0 || now_ms >= s->close_deadline_ms)))
        return true;
    return !s->kind && now_ms >= s->close_deadline_ms; // never said SessionOpen
}

// --- shared helpers ------------------------------------------------------------------------

pod_vm_t *session_pod(session_t *s)
{
    return s->pod_uid[0] ? zhashx_lookup(s->l->pods, s->pod_uid) : NULL;
}

const char *session_pod_name(const pod_vm_t *pod)
{
    return pod->spec && pod->spec->pod && pod->spec->pod->name ? pod->spec->pod->name : pod->uid;
}

ctr_t *session_container(session_t *s, pod_vm_t *pod, const char *name)
{
    size_t i = 0;
    ctr_t *c = NULL;
    if (!name || !*name) {
        if (pod->n_ctrs > pod->n_init) { // kubectl's default: the first container
            i = pod->n_init;
            c = &pod->ctrs[i];
        }
    } else {
        c = pod_vm_ctr(pod, name, &i);
    }
    snprintf(s->container, sizeof s->container, "%s", c ? c->name : name ? name : "");
    s->ctr = i;
    return c;
}
