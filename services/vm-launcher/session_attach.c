// Attach sessions: the container's own stdio. Its output is what the agent
// sends for the CRI log anyway (OutputChunks), passed on from the moment
// of attaching; stdin (spec stdin: true) and a tty's size go through an
// agent stream (ContainerAttach). stdinOnce closes the container's stdin
// when the first attach ends, as the kubelet's runtimes do. The output
// is not flow-controlled per session (the container's log must not wait
// for a client), so a client that falls SESSION_OUT_CAP behind is cut off
// rather than letting the launcher grow.
#include "session_conn.h"

#include "vmlet/pb.h"

#include <stdio.h>
#include <string.h>

static const Vmlet__Container *s_spec(const pod_vm_t *pod, size_t i)
{
    const Vmlet__PodSpec *spec = pod->spec;
    if (!spec)
        return NULL;
    if (i < pod->n_init)
        return i < spec->n_init_containers ? spec->init_containers[i] : NULL;
    i -= pod->n_init;
    return i < spec->n_containers ? spec->containers[i] : NULL;
}

static int s_open(session_t *s, const Vmlet__SessionOpen *o, int *status, char *error, size_t cap)
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
    const Vmlet__Container *spec = s_spec(pod, s->ctr);
    bool spec_stdin = spec && spec->stdin, spec_tty = spec && spec->tty;
    s->instance = c->instance;
    s->tty = spec_tty;
    s->stdin = o->stdin && spec_stdin; // no stdin in the spec: the client's is dropped
    s->stdin_once = spec && spec->stdin_once;
    s->stdout = o->has_stdout ? o->stdout : true;
    s->stderr = o->has_stderr ? o->stderr : true;
    if (!s->stdin && !s->tty)
        return 0; // output only: no agent stream
    session_stream_start(s);
    Vmlet__ContainerAttach a = VMLET__CONTAINER_ATTACH__INIT;
    PB_SET(&a, stream_id, s->stream_id);
    a.container = s->container;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_ATTACH;
    msg.attach = &a;
    if (!pod_agent_send(pod, &msg)) {
        s->stream_open = false;
        *status = 500;
        snprintf(error, cap, "the pod's guest agent is not reachable");
        return -1;
    }
    if (s->tty && o->rows && o->cols) {
        Vmlet__SessionResize r = VMLET__SESSION_RESIZE__INIT;
        PB_SET(&r, rows, o->rows);
        PB_SET(&r, cols, o->cols);
        session_stream_resize(s, &r);
    }
    return 0;
}

void session_attach_output(session_t *s, const Vmlet__OutputChunk *m)
{
    if (!m->has_data || m->data.len == 0 || m->instance != s->instance)
        return;
    bool err = m->stream == VMLET__OUTPUT_STREAM__OUTPUT_STREAM_STDERR;
    if ((err && !s->stderr) || (!err && !s->stdout))
        return;
    if (session_send_data(s,
                          err ? VMLET__SESSION_CHANNEL__SESSION_STDERR
                              : VMLET__SESSION_CHANNEL__SESSION_STDOUT,
                          m->data.data, m->data.len, 0) < 0)
        session_end(s, "error", "the client did not keep up with the container's output", 0, -1, 0);
}

void session_attach_exit(session_t *s, int exit_code, int signal)
{
    s->stream_open = false; // the agent's stream ends with the run's stdin
    session_end(s, "ok", NULL, 0, exit_code, signal);
}

static void s_input(session_t *s, const Vmlet__SessionFrame *f)
{
    switch (f->body_case) {
    case VMLET__SESSION_FRAME__BODY_DATA:
        if (s->stdin && f->data->channel == VMLET__SESSION_CHANNEL__SESSION_STDIN &&
            f->data->has_data)
            session_stream_input(s, f->data->data.data, f->data->data.len);
        break;
    case VMLET__SESSION_FRAME__BODY_CLOSE_INPUT:
        // Only stdinOnce closes the container's stdin; otherwise the next
        // attach finds it open.
        if (s->stdin && s->stdin_once && !s->input_closed)
            session_stream_close(s, true);
        s->input_closed = true;
        break;
    case VMLET__SESSION_FRAME__BODY_RESIZE:
        session_stream_resize(s, f->resize);
        break;
    default:
        break;
    }
}

static void s_release(session_t *s)
{
    if (s->stdin && s->stdin_once && !s->input_closed)
        session_stream_close(s, true);
    session_stream_close(s, false);
}

const session_kind_t session_attach_kind = {
    VMLET__SESSION_KIND__SESSION_ATTACH, "attach", s_open, s_input, NULL, s_release,
};
