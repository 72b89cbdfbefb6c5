// Exec and port-forward sessions: one agent stream each (ExecStart or
// PortForwardOpen), stdin to the agent under its stream window (what does
// not fit waits, and the connection is not read meanwhile), output to the
// client acknowledged to the agent once written (session_conn.c).
// When the client goes, the stream is closed: the agent kills the exec's
// processes or closes the forwarded connection.
#include "session_conn.h"

#include "vmlet/pb.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>

bool session_agent_send(session_t *s, Vmlet__GuestMessage *msg)
{
    pod_vm_t *pod = session_pod(s);
    if (pod && pod_agent_send(pod, msg))
        return true;
    s->stream_open = false; // nothing more reaches it
    session_end(s, "error", "the pod's guest agent is not reachable", 500, -1, 0);
    return false;
}

void session_stream_close(session_t *s, bool write_side_only)
{
    if (!s->stream_open)
        return;
    if (!write_side_only)
        s->stream_open = false;
    Vmlet__StreamClose c = VMLET__STREAM_CLOSE__INIT;
    PB_SET(&c, stream_id, s->stream_id);
    if (write_side_only)
        PB_SET(&c, write_side_only, true);
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_CLOSE;
    msg.stream_close = &c;
    session_agent_send(s, &msg);
}

// Sends what waits while the agent's window has room.
static void s_pump(session_t *s)
{
    while (s->pending_len > 0 && s->credit > 0 && s->stream_open) {
        size_t n = s->pending_len;
        if (n > s->credit)
            n = (size_t)s->credit;
        if (n > SESSION_DATA_CHUNK)
            n = SESSION_DATA_CHUNK;
        Vmlet__StreamData d = VMLET__STREAM_DATA__INIT;
        PB_SET(&d, stream_id, s->stream_id);
        d.has_data = 1;
        d.data = (ProtobufCBinaryData){n, s->pending + s->pending_off};
        Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
        msg.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_DATA;
        msg.stream_data = &d;
        if (!session_agent_send(s, &msg))
            return;
        s->credit -= n;
        s->pending_off += n;
        s->pending_len -= n;
    }
    if (s->pending_len == 0 || !s->stream_open)
        s->pending_len = s->pending_off = 0;
}

void session_stream_input(session_t *s, const uint8_t *data, size_t len)
{
    if (!s->stream_open || len == 0)
        return; // the process closed its stdin, or the stream is gone: dropped
    if (s->pending_off > 0) {
        memmove(s->pending, s->pending + s->pending_off, s->pending_len);
        s->pending_off = 0;
    }
    s->pending = vmlet_xrealloc(s->pending, s->pending_len + len);
    memcpy(s->pending + s->pending_len, data, len);
    s->pending_len += len;
    s_pump(s);
}

void session_stream_agent_data(session_t *s, const Vmlet__StreamData *d)
{
    if (d->has_window_update && d->window_update) {
        bool waiting = s->pending_len > 0;
        s->credit += d->window_update;
        s_pump(s);
        if (waiting && s->pending_len == 0)
            session_conn_resume(s);
    }
    if (!d->has_data || d->data.len == 0)
        return;
    Vmlet__SessionChannel ch =
        d->has_which && d->which == VMLET__OUTPUT_STREAM__OUTPUT_STREAM_STDERR
            ? VMLET__SESSION_CHANNEL__SESSION_STDERR
            : VMLET__SESSION_CHANNEL__SESSION_STDOUT;
    if ((ch == VMLET__SESSION_CHANNEL__SESSION_STDERR && !s->stderr) ||
        (ch == VMLET__SESSION_CHANNEL__SESSION_STDOUT && !s->stdout)) {
        // Not wanted: consumed at once, so the process never blocks on it.
        Vmlet__StreamData ack = VMLET__STREAM_DATA__INIT;
        PB_SET(&ack, stream_id, s->stream_id);
        PB_SET(&ack, window_update, (uint32_t)d->data.len);
        Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
        msg.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_DATA;
        msg.stream_data = &ack;
        session_agent_send(s, &msg);
        return;
    }
    session_send_data(s, ch, d->data.data, d->data.len, (uint32_t)d->data.len);
}

static void s_start_stream(session_t *s)
{
    s->stream_id = ++s->l->next_stream_id;
    s->stream_open = true;
    s->credit = VMLET_AGENT_STREAM_WINDOW;
}

// --- exec ---------------------------------------------------------------------------------

static int s_exec_open(session_t *s, const Vmlet__SessionOpen *o, int *status, char *error,
                       size_t cap)
{
    pod_vm_t *pod = session_pod(s);
    ctr_t *c = session_container(s, pod, o->container);
    if (!c) {
        *status = 404;
        snprintf(error, cap, "container not found (\"%s\")", s->container);
        return -1;
    }
    if (c->phase != CTR_RUNNING || !pod->ch) {
        *status = 400;
        snprintf(error, cap, "container not running (\"%s\")", s->container);
        return -1;
    }
    if (o->n_command == 0) {
        *status = 400;
        snprintf(error, cap, "no command given");
        return -1;
    }
    s->stdin = o->stdin, s->tty = o->tty;
    s->stdout = o->has_stdout ? o->stdout : true;
    s->stderr = o->has_stderr ? o->stderr : !o->tty;
    s_start_stream(s);
    Vmlet__ExecStart start = VMLET__EXEC_START__INIT;
    PB_SET(&start, stream_id, s->stream_id);
    start.container = s->container;
    start.argv = o->command;
    start.n_argv = o->n_command;
    PB_SET(&start, tty, o->tty);
    PB_SET(&start, stdin, o->stdin);
    if (o->tty && o->rows && o->cols) {
        PB_SET(&start, rows, o->rows);
        PB_SET(&start, cols, o->cols);
    }
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_EXEC;
    msg.exec = &start;
    if (!pod_agent_send(pod, &msg)) {
        s->stream_open = false;
        *status = 500;
        snprintf(error, cap, "the pod's guest agent is not reachable");
        return -1;
    }
    return 0;
}

static void s_resize(session_t *s, const Vmlet__SessionResize *r)
{
    if (!s->tty || !s->stream_open)
        return;
    Vmlet__TerminalResize t = VMLET__TERMINAL_RESIZE__INIT;
    PB_SET(&t, stream_id, s->stream_id);
    PB_SET(&t, rows, r->rows);
    PB_SET(&t, cols, r->cols);
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_RESIZE;
    msg.resize = &t;
    session_agent_send(s, &msg);
}

static void s_input(session_t *s, const Vmlet__SessionFrame *f)
{
    switch (f->body_case) {
    case VMLET__SESSION_FRAME__BODY_DATA:
        if (f->data->channel == VMLET__SESSION_CHANNEL__SESSION_STDIN && f->data->has_data &&
            (s->stdin || s->kind == &session_forward_kind))
            session_stream_input(s, f->data->data.data, f->data->data.len);
        break;
    case VMLET__SESSION_FRAME__BODY_CLOSE_INPUT:
        if (!s->input_closed)
            session_stream_close(s, true);
        s->input_closed = true;
        break;
    case VMLET__SESSION_FRAME__BODY_RESIZE:
        s_resize(s, f->resize);
        break;
    default:
        break;
    }
}

static void s_release(session_t *s)
{
    session_stream_close(s, false); // the agent kills what still runs
}

const session_kind_t session_exec_kind = {
    VMLET__SESSION_KIND__SESSION_EXEC, "exec", s_exec_open, s_input, NULL, s_release,
};

// --- port-forward ---------------------------------------------------------------------------

static int s_forward_open(session_t *s, const Vmlet__SessionOpen *o, int *status, char *error,
                          size_t cap)
{
    pod_vm_t *pod = session_pod(s);
    if (!o->has_port || o->port == 0 || o->port > 65535) {
        *status = 400;
        snprintf(error, cap, "port %u is not a TCP port", o->port);
        return -1;
    }
    if (!pod->ch || pod->state != PV_RUNNING) {
        *status = 400;
        snprintf(error, cap, "pod %s is not running", session_pod_name(pod));
        return -1;
    }
    s->stdout = true;
    s_start_stream(s);
    Vmlet__PortForwardOpen pf = VMLET__PORT_FORWARD_OPEN__INIT;
    PB_SET(&pf, stream_id, s->stream_id);
    PB_SET(&pf, port, o->port);
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_PORT_FORWARD;
    msg.port_forward = &pf;
    if (!pod_agent_send(pod, &msg)) {
        s->stream_open = false;
        *status = 500;
        snprintf(error, cap, "the pod's guest agent is not reachable");
        return -1;
    }
    return 0;
}

const session_kind_t session_forward_kind = {
    VMLET__SESSION_KIND__SESSION_PORT_FORWARD,
    "port-forward",
    s_forward_open,
    s_input,
    NULL,
    s_release,
};

// --- attach's stdin (session_attach.c opens the stream) --------------------------------------

void session_stream_start(session_t *s)
{
    s_start_stream(s);
}

void session_stream_resize(session_t *s, const Vmlet__SessionResize *r)
{
    s_resize(s, r);
}
