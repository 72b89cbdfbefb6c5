// Exec requests from the bus (exec probes, tools) and from the launcher
// itself (lifecycle hooks, pod_exec_run): the launcher
// that owns the pod's VM runs the command through the guest agent
// (ExecStart, stdin as StreamData, output back as StreamData until
// ExecExited) and publishes an ExecResult. Output beyond the request's cap
// is read and dropped (so the command never blocks on a full pipe) and the
// result says it was truncated.
#include "launcher_internal.h"

#include "vmlet/pb.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>

#define DEFAULT_TIMEOUT_MS 60000
#define DEFAULT_MAX_OUTPUT (64 * 1024)
#define DEADLINE_SLACK_MS 5000 // the guest enforces the timeout; this is in case it cannot

struct exec_session {
    char request_id[128];
    char container[64];
    char pod_ns[256], pod_name[256];
    uint32_t stream_id;
    int64_t deadline_ms;
    uint8_t *stdin_data;
    size_t stdin_len;
    uint8_t *out[2];
    size_t out_len[2];
    size_t max;
    bool truncated;
    pod_exec_done_fn on_done; // the launcher's own: called instead of publishing
    void *arg;
};

static void s_free(exec_session_t **s_p)
{
    exec_session_t *s = *s_p;
    if (!s)
        return;
    free(s->stdin_data);
    free(s->out[0]);
    free(s->out[1]);
    free(s);
    *s_p = NULL;
}

static void s_result(launcher_t *l, const pod_vm_t *pod, const exec_session_t *s,
                     const char *request_id, const char *container, int exit_code,
                     bool timed_out, const char *error)
{
    if (s && s->on_done) {
        // stdout, then stderr, as one text (hook failures quote it).
        size_t n = s->out_len[0] + s->out_len[1];
        char *output = vmlet_xmalloc(n + 1);
        if (s->out_len[0])
            memcpy(output, s->out[0], s->out_len[0]);
        if (s->out_len[1])
            memcpy(output + s->out_len[0], s->out[1], s->out_len[1]);
        output[n] = '\0';
        s->on_done((pod_vm_t *)pod, container, exit_code, timed_out, error, output, s->arg);
        free(output);
        return;
    }
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = (char *)pod->uid;
    if (pod->spec) {
        ref.namespace_ = pod->spec->pod->namespace_;
        ref.name = pod->spec->pod->name;
    }
    Vmlet__ExecResult r = VMLET__EXEC_RESULT__INIT;
    r.request_id = (char *)request_id;
    r.pod = &ref;
    r.container = (char *)container;
    r.launcher_id = l->id;
    if (error) {
        r.error = (char *)error;
    } else {
        PB_SET(&r, exit_code, exit_code);
    }
    if (s) {
        r.has_stdout = 1;
        r.stdout = (ProtobufCBinaryData){s->out_len[0], s->out[0]};
        r.has_stderr = 1;
        r.stderr = (ProtobufCBinaryData){s->out_len[1], s->out[1]};
        PB_SET(&r, truncated, s->truncated);
    }
    PB_SET(&r, timed_out, timed_out);
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_EXEC_RESULT;
    env.exec_result = &r;
    launcher_publish(l, &env);
}

static exec_session_t *s_find(pod_vm_t *self, uint32_t stream_id)
{
    for (exec_session_t *s = zlistx_first(self->execs); s; s = zlistx_next(self->execs))
        if (s->stream_id == stream_id)
            return s;
    return NULL;
}

static void s_remove(pod_vm_t *self, exec_session_t *s)
{
    void *handle = zlistx_find(self->execs, s);
    if (handle)
        zlistx_delete(self->execs, handle);
    s_free(&s);
}

int pod_exec_request(launcher_t *l, const Vmlet__ExecRequest *req)
{
    if (!req->pod || !req->pod->uid || !req->request_id)
        return 0;
    pod_vm_t *pod = zhashx_lookup(l->pods, req->pod->uid);
    if (!pod)
        return 0; // not ours: the launcher that has it answers
    const char *container = req->container;
    if ((!container || !*container) && pod->n_ctrs > pod->n_init)
        container = pod->ctrs[pod->n_init].name; // kubectl's default: the first container
    ctr_t *c = pod_vm_ctr(pod, container, NULL);
    const char *error = NULL;
    char why[300];
    if (!c) {
        snprintf(why, sizeof why, "container %s is not valid for pod %s",
                 container ? container : "", pod->spec ? pod->spec->pod->name : pod->uid);
        error = why;
    } else if (c->phase != CTR_RUNNING || !pod->ch) {
        snprintf(why, sizeof why, "container %s is not running", container);
        error = why;
    } else if (req->n_command == 0) {
        error = "no command given";
    }
    if (error) {
        s_result(l, pod, NULL, req->request_id, container, 0, false, error);
        return 0;
    }
    exec_session_t *s = vmlet_xcalloc(1, sizeof *s);
    snprintf(s->request_id, sizeof s->request_id, "%s", req->request_id);
    snprintf(s->container, sizeof s->container, "%s", container);
    s->stream_id = ++l->next_stream_id;
    int timeout = req->timeout_ms > 0 ? req->timeout_ms : DEFAULT_TIMEOUT_MS;
    s->deadline_ms = vmlet_now_ms() + timeout + DEADLINE_SLACK_MS;
    s->max = req->max_output_bytes > 0 ? (size_t)req->max_output_bytes : DEFAULT_MAX_OUTPUT;
    if (req->has_stdin && req->stdin.len) {
        s->stdin_data = vmlet_xmalloc(req->stdin.len);
        memcpy(s->stdin_data, req->stdin.data, req->stdin.len);
        s->stdin_len = req->stdin.len;
    }
    Vmlet__ExecStart start = VMLET__EXEC_START__INIT;
    PB_SET(&start, stream_id, s->stream_id);
    start.container = s->container;
    start.argv = req->command;
    start.n_argv = req->n_command;
    PB_SET(&start, stdin, true); // always: closed at once when there is nothing to send
    PB_SET(&start, timeout_ms, timeout);
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_EXEC;
    msg.exec = &start;
    if (!pod_agent_send(pod, &msg)) {
        s_result(l, pod, NULL, req->request_id, container, 0, false,
                 "the pod's guest agent is not reachable");
        s_free(&s);
        return 0;
    }
    zlistx_add_end(pod->execs, s);
    return 0;
}

int pod_exec_run(pod_vm_t *pod, const char *container, char *const *argv, size_t argc,
                 int timeout_ms, pod_exec_done_fn done, void *arg)
{
    if (!pod->ch || argc == 0)
        return -1;
    exec_session_t *s = vmlet_xcalloc(1, sizeof *s);
    snprintf(s->container, sizeof s->container, "%s", container);
    s->stream_id = ++pod->l->next_stream_id;
    s->deadline_ms = vmlet_now_ms() + timeout_ms + DEADLINE_SLACK_MS;
    s->max = DEFAULT_MAX_OUTPUT;
    s->on_done = done;
    s->arg = arg;
    Vmlet__ExecStart start = VMLET__EXEC_START__INIT;
    PB_SET(&start, stream_id, s->stream_id);
    start.container = s->container;
    start.argv = (char **)argv;
    start.n_argv = argc;
    PB_SET(&start, stdin, true);
    PB_SET(&start, timeout_ms, timeout_ms);
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_EXEC;
    msg.exec = &start;
    if (!pod_agent_send(pod, &msg)) {
        s_free(&s);
        return -1;
    }
    zlistx_add_end(pod->execs, s);
    return 0;
}

void pod_exec_on_started(pod_vm_t *self, const Vmlet__ExecStarted *m)
{
    exec_session_t *s = s_find(self, m->stream_id);
    if (!s)
        return;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    if (s->stdin_len) {
        Vmlet__StreamData data = VMLET__STREAM_DATA__INIT;
        PB_SET(&data, stream_id, s->stream_id);
        data.has_data = 1;
        data.data = (ProtobufCBinaryData){s->stdin_len, s->stdin_data};
        msg.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_DATA;
        msg.stream_data = &data;
        pod_agent_send(self, &msg);
    }
    Vmlet__StreamClose close = VMLET__STREAM_CLOSE__INIT;
    PB_SET(&close, stream_id, s->stream_id);
    PB_SET(&close, write_side_only, true); // stdin ends here
    msg = (Vmlet__GuestMessage)VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_CLOSE;
    msg.stream_close = &close;
    pod_agent_send(self, &msg);
}

void pod_exec_on_data(pod_vm_t *self, const Vmlet__StreamData *m)
{
    exec_session_t *s = s_find(self, m->stream_id);
    if (!s || !m->has_data || m->data.len == 0)
        return;
    int which = m->which == VMLET__OUTPUT_STREAM__OUTPUT_STREAM_STDERR ? 1 : 0;
    size_t room = s->max > s->out_len[which] ? s->max - s->out_len[which] : 0;
    size_t take = m->data.len < room ? m->data.len : room;
    if (take < m->data.len)
        s->truncated = true;
    if (take) {
        s->out[which] = vmlet_xrealloc(s->out[which], s->out_len[which] + take);
        memcpy(s->out[which] + s->out_len[which], m->data.data, take);
        s->out_len[which] += take;
    }
    // Consumed (kept or dropped): the guest may send that much more.
    Vmlet__StreamData ack = VMLET__STREAM_DATA__INIT;
    PB_SET(&ack, stream_id, s->stream_id);
    PB_SET(&ack, window_update, (uint32_t)m->data.len);
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_DATA;
    msg.stream_data = &ack;
    pod_agent_send(self, &msg);
}

void pod_exec_on_close(pod_vm_t *self, const Vmlet__StreamClose *m)
{
    (void)self;
    (void)m; // the exit follows and ends the session
}

void pod_exec_on_exited(pod_vm_t *self, const Vmlet__ExecExited *m)
{
    exec_session_t *s = s_find(self, m->stream_id);
    if (!s)
        return;
    s_result(self->l, self, s, s->request_id, s->container, m->exit_code, m->timed_out,
             m->message && *m->message ? m->message : NULL);
    s_remove(self, s);
}

void pod_exec_tick(pod_vm_t *self, bool abort_all, const char *why)
{
    int64_t now = vmlet_now_ms();
    exec_session_t *s = zlistx_first(self->execs);
    while (s) {
        exec_session_t *next = zlistx_next(self->execs);
        if (abort_all && s->on_done) {
            // The pod's VM or the launcher is going: the hook's answer is
            // moot (pod NULL says so), its caller only lets go.
            s->on_done(NULL, s->container, 0, false, why, "", s->arg);
        } else if (abort_all || now >= s->deadline_ms) {
            s_result(self->l, self, s, s->request_id, s->container, 0, !abort_all,
                     abort_all ? why : "timed out");
        }
        if (abort_all || now >= s->deadline_ms) {
            s_remove(self, s);
            // zlistx's cursor moved with the delete: start from the front again.
            next = zlistx_first(self->execs);
        }
        s = next;
    }
}
