// The conversation with a pod's guest agent (proto/guest.proto) on the
// launcher's loop: connecting (and reconnecting: the agent then repeats
// its Hello and resends what was never acknowledged), reading with a byte
// budget per wake-up so one flooding guest cannot hold up the others,
// and turning what the agent says into container states, log lines and
// exec results. A guest that breaks the protocol is cut off; one that
// keeps doing so has its VM stopped.
#include "launcher_internal.h"
#include "pod_hooks.h"

#include "vmlet/pb.h"
#include "vmlet/timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define READ_BUDGET (256 * 1024)
#define RECONNECT_MS 500
#define PROTOCOL_ERRORS_MAX 5
#define PING_MS 5000

static int s_on_fd(zloop_t *loop, zmq_pollitem_t *item, void *arg);

static void s_poll(pod_vm_t *self, short events)
{
    if (self->ch_polled && self->ch_events == events)
        return;
    zmq_pollitem_t item = {NULL, vmlet_agent_channel_fd(self->ch), events, 0};
    if (self->ch_polled)
        zloop_poller_end(self->l->loop, &item);
    self->ch_polled = zloop_poller(self->l->loop, &item, s_on_fd, self) == 0;
    self->ch_events = events;
}

void pod_agent_close(pod_vm_t *self)
{
    if (!self->ch)
        return;
    if (self->ch_polled) {
        zmq_pollitem_t item = {NULL, vmlet_agent_channel_fd(self->ch), 0, 0};
        zloop_poller_end(self->l->loop, &item);
    }
    self->ch_polled = false;
    self->last_seen_seq = vmlet_agent_channel_last_seen(self->ch);
    vmlet_agent_channel_destroy(&self->ch);
    self->next_connect_ms = vmlet_now_ms() + RECONNECT_MS;
}

void pod_agent_connect(pod_vm_t *self)
{
    if (self->ch || !self->vm)
        return;
    vmlet_err_t err = {0};
    int fd = vmm_agent_connect(self->vm, 100, &err);
    if (fd < 0) {
        self->next_connect_ms = vmlet_now_ms() + (self->state == PV_BOOTING ? 200 : RECONNECT_MS);
        return;
    }
    self->ch = vmlet_agent_channel_new(fd, 0);
    vmlet_agent_channel_set_last_seen(self->ch, self->last_seen_seq);
    s_poll(self, ZMQ_POLLIN);
}

void pod_agent_flush_poll(pod_vm_t *self)
{
    if (!self->ch)
        return;
    vmlet_err_t err = {0};
    long left = vmlet_agent_channel_flush(self->ch, &err);
    if (left < 0) {
        vmlet_log_info(self->l->log, VMLET_KV({"pod", self->desc}), "agent channel: %s", err.msg);
        pod_agent_close(self);
        return;
    }
    s_poll(self, left > 0 ? ZMQ_POLLIN | ZMQ_POLLOUT : ZMQ_POLLIN);
}

bool pod_agent_send(pod_vm_t *self, Vmlet__GuestMessage *msg)
{
    if (!self->ch || !vmlet_agent_channel_hello_seen(self->ch))
        return false;
    vmlet_err_t err = {0};
    if (vmlet_agent_channel_send(self->ch, msg, &err) < 0) {
        vmlet_log_warn(self->l->log, VMLET_KV({"pod", self->desc}), "to the agent: %s", err.msg);
        if (err.code != ENOBUFS && err.code != EMSGSIZE)
            pod_agent_close(self);
        return false;
    }
    pod_agent_flush_poll(self);
    return true;
}

// --- what the agent says ----------------------------------------------------------------

static void s_on_hello(pod_vm_t *self, const Vmlet__AgentHello *hello)
{
    launcher_t *l = self->l;
    if (self->state == PV_BOOTING) {
        double took = (double)(vmlet_now_ms() - self->boot_started_ms) / 1000.0;
        vmlet_histogram_observe(l->boot_seconds, took);
        self->hello_ms = vmlet_now_ms();
        if (!self->steps.agent_hello)
            self->steps.agent_hello = vmlet_unix_ms();
        vmlet_log_info(l->log, VMLET_KV({"pod", self->desc}), "guest agent up after %.2f s", took);
        self->boot_failures = 0;
    }
    if (hello->setup_done) {
        // A reconnect (or an adopted VM): the pod is set up; the agent says
        // what runs, and resends whatever we missed after this Hello.
        self->setup_done = self->setup_sent = true;
        for (size_t i = 0; i < hello->n_running; i++) {
            const Vmlet__ContainerRunning *r = hello->running[i];
            size_t at;
            ctr_t *c = pod_vm_ctr(self, r->name, &at);
            if (c && c->phase != CTR_RUNNING && r->instance >= c->instance) {
                ctr_started(c, r->instance, r->started_unix_ms);
                c->restart_at_unix_ms = INT64_MAX;
            }
        }
        if (self->state == PV_BOOTING || self->state == PV_SETUP)
            pod_vm_set_state(self, PV_RUNNING, NULL, NULL);
        else
            pod_record_changed(self);
        return;
    }
    if (self->state == PV_BOOTING || (self->state == PV_SETUP && !self->setup_done)) {
        self->setup_sent = false;
        pod_vm_set_state(self, PV_SETUP, NULL, NULL);
        pod_setup_send(self);
    }
}

static void s_on_started(pod_vm_t *self, const Vmlet__ContainerStarted *m)
{
    size_t i;
    ctr_t *c = pod_vm_ctr(self, m->name, &i);
    if (!c || m->instance < c->instance || (m->instance == c->instance && c->phase == CTR_RUNNING))
        return; // old news (a resend after a reconnect)
    ctr_started(c, m->instance, m->started_unix_ms);
    if (!self->steps.running) {
        self->steps.running = vmlet_unix_ms();
        self->steps.vmm_cpu_ms = self->vm ? vmm_cpu_ms(self->vm) : -1;
    }
    c->restart_at_unix_ms = INT64_MAX;
    pod_hooks_post_start(self, i); // Waiting until its postStart hook is done, if it has one
    pod_record_changed(self);
}

static cri_log_t *s_log(pod_vm_t *self, size_t i, unsigned instance)
{
    if (self->logs[i])
        return self->logs[i];
    launcher_t *l = self->l;
    const Vmlet__PodRef *ref = self->spec->pod;
    char path[PATH_MAX];
    cri_log_path_for(path, sizeof path, l->settings->log_dir, ref->namespace_, ref->name,
                     self->uid, self->ctrs[i].name, (int)instance);
    vmlet_err_t err = {0};
    self->logs[i] = cri_log_open(path, &l->log_limits, &err);
    if (!self->logs[i])
        vmlet_log_warn(l->log, VMLET_KV({"pod", self->desc}), "%s", err.msg);
    // Keep this run's log and the previous one (kubectl logs --previous).
    if (instance >= 2) {
        char old[PATH_MAX];
        cri_log_path_for(old, sizeof old, l->settings->log_dir, ref->namespace_, ref->name,
                         self->uid, self->ctrs[i].name, (int)instance - 2);
        unlink(old);
    }
    return self->logs[i];
}

static void s_on_output(pod_vm_t *self, const Vmlet__OutputChunk *m)
{
    size_t i;
    ctr_t *c = pod_vm_ctr(self, m->container, &i);
    if (!c || !m->has_data)
        return;
    cri_log_t *log = s_log(self, i, m->instance);
    if (!log)
        return;
    vmlet_counter_add(self->l->output_bytes, (double)m->data.len);
    vmlet_err_t err = {0};
    cri_stream_t stream = m->stream == VMLET__OUTPUT_STREAM__OUTPUT_STREAM_STDERR ? CRI_STDERR
                                                                                  : CRI_STDOUT;
    if (cri_log_write(log, stream, m->data.data, m->data.len,
                      m->has_unix_ns ? m->unix_ns : vmlet_unix_ns(), &err) < 0)
        vmlet_log_warn(self->l->log, VMLET_KV({"pod", self->desc}), "%s", err.msg);
    session_on_output(self, m); // attached clients see what the log gets
}

// The kubelet's FallbackToLogsOnError: the last 80 lines of the run's
// log, at most its last 2048 bytes.
#define FALLBACK_LOG_LINES 80
#define FALLBACK_LOG_BYTES 2048
static void s_fallback_to_logs(pod_vm_t *self, size_t i, unsigned instance, char *out, size_t cap)
{
    const Vmlet__Container *spec = pod_vm_spec_container(self, i);
    if (!spec || !spec->termination_message_policy ||
        strcmp(spec->termination_message_policy, "FallbackToLogsOnError") != 0)
        return;
    const Vmlet__PodRef *ref = self->spec->pod;
    char path[PATH_MAX];
    cri_log_path_for(path, sizeof path, self->l->settings->log_dir, ref->namespace_, ref->name,
                     self->uid, self->ctrs[i].name, (int)instance);
    vmlet_err_t err = {0};
    if (cri_log_tail(path, FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES, out, cap, &err) < 0)
        snprintf(out, cap, "Error on reading termination message from logs: %s", err.msg);
}

static void s_on_exited(pod_vm_t *self, const Vmlet__ContainerExited *m)
{
    size_t i;
    ctr_t *c = pod_vm_ctr(self, m->name, &i);
    if (!c || m->instance < c->instance || (m->instance == c->instance && c->phase == CTR_TERMINATED &&
                                            c->has_exit && c->exit.finished_unix_ms == m->finished_unix_ms))
        return;
    if (self->logs[i]) {
        cri_log_finish(self->logs[i], vmlet_unix_ns(), NULL);
        cri_log_close(&self->logs[i]);
    }
    ctr_exit_t e = {.exit_code = m->exit_code, .signal = m->signal,
                    .started_unix_ms = m->started_unix_ms, .finished_unix_ms = m->finished_unix_ms};
    if (!e.started_unix_ms)
        e.started_unix_ms = c->phase == CTR_RUNNING ? c->started_unix_ms : e.finished_unix_ms;
    snprintf(e.reason, sizeof e.reason, "%s", m->reason ? m->reason : "");
    // The termination message, or a failed start's reason, or (policy
    // FallbackToLogsOnError, a failure without a message) the log's tail.
    if (m->has_termination_message && m->termination_message.len)
        snprintf(e.message, sizeof e.message, "%.*s", (int)m->termination_message.len,
                 (const char *)m->termination_message.data);
    else if (m->message)
        snprintf(e.message, sizeof e.message, "%s", m->message);
    else if (m->exit_code != 0)
        s_fallback_to_logs(self, i, m->instance, e.message, sizeof e.message);
    c->instance = m->instance;
    ctr_exited(c, &e);
    session_on_container_exit(self, i, e.exit_code, e.signal); // attach and follow end
    bool restart = !self->stop_requested && !c->done && // done: the pod was killed (deadline)
                   ctr_should_restart(self->spec->restart_policy, c->init, e.exit_code);
    if (restart)
        ctr_schedule_restart(c, &self->l->backoff, self->desc);
    else
        c->done = true;
    vmlet_log_info(self->l->log,
                   VMLET_KV({"pod", self->desc}, {"container", c->name}),
                   "exited %d (%s)%s", e.exit_code, e.reason[0] ? e.reason : "-",
                   restart ? "; it will run again" : "");
    pod_record_changed(self);
    pod_vm_start_due(self); // the next init container, or one due at once
}

static void s_on_error(pod_vm_t *self, const Vmlet__AgentError *m)
{
    vmlet_log_warn(self->l->log,
                   VMLET_KV({"pod", self->desc}, {"what", m->what ? m->what : ""},
                            {"container", m->container ? m->container : ""}),
                   "guest agent: %s", m->message ? m->message : "");
    if (m->what && strcmp(m->what, "setup") == 0 && self->state == PV_SETUP) {
        // The guest could not set the pod up: containers wait with why; try
        // again after a while (a fresh VM, as the kubelet retries a sandbox).
        char message[512];
        snprintf(message, sizeof message, "setting up the pod in its VM failed: %s",
                 m->message ? m->message : "");
        for (size_t i = 0; i < self->n_ctrs; i++)
            ctr_wait(&self->ctrs[i], "CreateContainerError", message);
        self->setup_sent = false;
        self->next_setup_ms = vmlet_now_ms() + 10000;
        pod_record_changed(self);
    }
}

static void s_handle(pod_vm_t *self, const Vmlet__GuestMessage *msg)
{
    if (session_on_agent(self, msg))
        return; // a stream of a kubectl session, not a bus exec
    switch (msg->body_case) {
    case VMLET__GUEST_MESSAGE__BODY_HELLO:
        s_on_hello(self, msg->hello);
        break;
    case VMLET__GUEST_MESSAGE__BODY_POD_READY:
        self->setup_done = true;
        if (!self->steps.setup_done)
            self->steps.setup_done = vmlet_unix_ms();
        vmlet_log_info(self->l->log, VMLET_KV({"pod", self->desc}), "pod set up in its VM");
        pod_vm_set_state(self, PV_RUNNING, NULL, NULL);
        pod_vm_start_due(self);
        break;
    case VMLET__GUEST_MESSAGE__BODY_STARTED:
        s_on_started(self, msg->started);
        break;
    case VMLET__GUEST_MESSAGE__BODY_EXITED:
        s_on_exited(self, msg->exited);
        break;
    case VMLET__GUEST_MESSAGE__BODY_OUTPUT:
        s_on_output(self, msg->output);
        break;
    case VMLET__GUEST_MESSAGE__BODY_OUTPUT_DROPPED:
        vmlet_log_warn(self->l->log,
                       VMLET_KV({"pod", self->desc}, {"container", msg->output_dropped->container}),
                       "the guest dropped %llu bytes of output",
                       (unsigned long long)msg->output_dropped->bytes);
        break;
    case VMLET__GUEST_MESSAGE__BODY_EXEC_STARTED:
        pod_exec_on_started(self, msg->exec_started);
        break;
    case VMLET__GUEST_MESSAGE__BODY_EXEC_EXITED:
        pod_exec_on_exited(self, msg->exec_exited);
        break;
    case VMLET__GUEST_MESSAGE__BODY_STREAM_DATA:
        pod_exec_on_data(self, msg->stream_data);
        break;
    case VMLET__GUEST_MESSAGE__BODY_STREAM_CLOSE:
        pod_exec_on_close(self, msg->stream_close);
        break;
    case VMLET__GUEST_MESSAGE__BODY_ERROR:
        s_on_error(self, msg->error);
        break;
    case VMLET__GUEST_MESSAGE__BODY_STATS:
        pod_stats_on_reply(self, msg->stats);
        break;
    default:
        break; // Pong and the like: being heard is enough
    }
}

static void s_protocol_error(pod_vm_t *self, const char *why)
{
    launcher_t *l = self->l;
    vmlet_counter_inc(l->protocol_errors);
    self->protocol_errors++;
    vmlet_log_warn(l->log, VMLET_KV({"pod", self->desc}),
                   "cut off the guest agent (%d times now): %s", self->protocol_errors, why);
    pod_agent_close(self);
    if (self->protocol_errors >= PROTOCOL_ERRORS_MAX && !self->stop_requested) {
        char message[512];
        snprintf(message, sizeof message, "the guest agent broke the protocol %d times; last: %.400s",
                 self->protocol_errors, why);
        pod_vm_fail(self, "AgentProtocolError", message);
    }
}

static int s_on_fd(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    pod_vm_t *self = arg;
    if (!self->ch)
        return 0;
    if (item->revents & ZMQ_POLLOUT)
        pod_agent_flush_poll(self);
    if (!self->ch || !(item->revents & (ZMQ_POLLIN | ZMQ_POLLERR)))
        return 0;
    vmlet_err_t err = {0};
    int rc = vmlet_agent_channel_read(self->ch, READ_BUDGET, &err);
    Vmlet__GuestMessage *msg;
    bool any = false;
    while (self->ch && (msg = vmlet_agent_channel_next(self->ch))) {
        s_handle(self, msg);
        vmlet__guest_message__free_unpacked(msg, NULL);
        any = true;
    }
    if (rc < 0) {
        if (err.code == EPROTO)
            s_protocol_error(self, err.msg);
        else
            pod_agent_close(self); // the VM's end went away: reconnect on the tick
        return 0;
    }
    if (!self->ch)
        return 0;
    if (any) {
        // Remember what was taken before saying so: a resend after a
        // launcher restart must not be taken twice.
        pod_record_save_seq(self);
        if (vmlet_agent_channel_ack_pending(self->ch) &&
            vmlet_agent_channel_send_ack(self->ch, &err) < 0) {
            pod_agent_close(self);
            return 0;
        }
        pod_agent_flush_poll(self);
    }
    return 0;
}

void pod_agent_tick(pod_vm_t *self)
{
    if (!self->ch || !vmlet_agent_channel_hello_seen(self->ch))
        return;
    int64_t now = vmlet_now_ms();
    if (now < self->next_ping_ms)
        return;
    // A heartbeat: it also carries our ack, so the agent can let go of
    // output it keeps for a resend.
    self->next_ping_ms = now + PING_MS;
    Vmlet__Ping ping = VMLET__PING__INIT;
    PB_SET(&ping, nonce, (uint64_t)now);
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_PING;
    msg.ping = &ping;
    pod_agent_send(self, &msg);
}
