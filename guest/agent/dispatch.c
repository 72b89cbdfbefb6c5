// What each host message makes the agent do, and the agent's own small
// messages (Hello, Pong, AgentError). Policy stays on the host: the agent
// does what it is told and reports what happens.
#include "agent.h"
#include "stats.h"
#include "util.h"

#include "vmlet/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void send_error(agent_t *a, const char *what, const char *container, const char *fmt, ...)
{
    char text[VMLET_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    alog("error (%s%s%s): %s", what, container ? " " : "", container ? container : "", text);
    Vmlet__AgentError e = VMLET__AGENT_ERROR__INIT;
    e.what = (char *)what;
    e.message = text;
    e.container = (char *)container;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_ERROR;
    msg.error = &e;
    // Kept for a resend: a setup or start failure must reach the host.
    link_send(a, &msg, true);
}

void send_hello(agent_t *a)
{
    Vmlet__AgentHello hello = VMLET__AGENT_HELLO__INIT;
    hello.version = AGENT_VERSION;
    hello.has_uptime_ms = 1;
    hello.uptime_ms = uptime_ms();
    hello.has_setup_done = 1;
    hello.setup_done = a->setup_done;
    Vmlet__ContainerRunning *items = vmlet_xcalloc(a->n_containers + 1, sizeof *items);
    Vmlet__ContainerRunning **list = vmlet_xcalloc(a->n_containers + 1, sizeof *list);
    for (size_t i = 0; i < a->n_containers; i++) {
        const container_t *c = &a->containers[i];
        if (c->pid <= 0 || c->exited)
            continue;
        Vmlet__ContainerRunning *r = &items[hello.n_running];
        vmlet__container_running__init(r);
        r->name = c->name;
        r->has_instance = 1;
        r->instance = c->instance;
        r->has_pid = 1;
        r->pid = c->pid;
        r->has_started_unix_ms = 1;
        r->started_unix_ms = c->started_unix_ms;
        list[hello.n_running++] = r;
    }
    hello.running = list;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_HELLO;
    msg.hello = &hello;
    link_send(a, &msg, false);
    if (!a->boot_ms)
        a->boot_ms = uptime_ms();
    alog_debug("hello sent (seq %llu)", (unsigned long long)msg.seq);
    free(list);
    free(items);
}

static void s_pong(agent_t *a, const Vmlet__Ping *ping)
{
    Vmlet__Pong pong = VMLET__PONG__INIT;
    pong.has_nonce = ping->has_nonce;
    pong.nonce = ping->nonce;
    pong.has_unix_ns = 1;
    pong.unix_ns = unix_ns();
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_PONG;
    msg.pong = &pong;
    link_send(a, &msg, false);
}

// Answered at once, unreliable: a sample lost with a connection is
// replaced by the next one the host asks for.
static void s_stats(agent_t *a, const Vmlet__StatsRequest *req)
{
    stats_container_t *cs = vmlet_xcalloc(a->n_containers + 1, sizeof *cs);
    size_t n = 0;
    for (size_t i = 0; i < a->n_containers; i++) {
        const container_t *c = &a->containers[i];
        if (c->pid > 0 && !c->exited)
            cs[n++] = (stats_container_t){c->name, c->instance, c->pid};
    }
    Vmlet__StatsReply r = VMLET__STATS_REPLY__INIT;
    r.has_nonce = req->has_nonce;
    r.nonce = req->nonce;
    stats_sample(&r, cs, n, a->scratch_mounted ? SCRATCH_DIR : NULL);
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_STATS;
    msg.stats = &r;
    link_send(a, &msg, false);
    alog_debug("stats sample: %llu us of CPU, %zu containers",
               (unsigned long long)r.sample_cpu_ns / 1000, n);
    stats_reply_clear(&r);
    free(cs);
}

static void s_setup(agent_t *a, const Vmlet__PodSetup *setup)
{
    if (a->setup_done) {
        // A resend or a host that lost track: the pod is as it was made.
        alog("PodSetup again: already set up");
    } else {
        int64_t t0 = now_ms();
        vmlet_err_t err = {0};
        if (setup_apply(a, setup, &err) < 0) {
            send_error(a, "setup", NULL, "%s", err.msg);
            return;
        }
        a->setup_done = true;
        a->setup_took_ms = now_ms() - t0;
        alog("pod set up in %lld ms", (long long)a->setup_took_ms);
    }
    Vmlet__PodReady ready = VMLET__POD_READY__INIT;
    ready.has_took_ms = 1;
    ready.took_ms = a->setup_took_ms;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_POD_READY;
    msg.pod_ready = &ready;
    link_send(a, &msg, true);
}

static void s_write_files(agent_t *a, const Vmlet__WriteFiles *w)
{
    vmlet_err_t err = {0};
    if (volumes_write_files(a, w, &err) < 0)
        send_error(a, "write_files", NULL, "%s", err.msg);
}

void dispatch_message(agent_t *a, const Vmlet__GuestMessage *msg)
{
    if (a->power_state && msg->body_case != VMLET__GUEST_MESSAGE__BODY_PING) {
        alog_debug("powering off: message %d ignored", msg->body_case);
        return;
    }
    // Messages that need the pod set up first.
    switch (msg->body_case) {
    case VMLET__GUEST_MESSAGE__BODY_START:
    case VMLET__GUEST_MESSAGE__BODY_EXEC:
    case VMLET__GUEST_MESSAGE__BODY_ATTACH:
    case VMLET__GUEST_MESSAGE__BODY_WRITE_FILES:
        if (!a->setup_done) {
            send_error(a, msg->body_case == VMLET__GUEST_MESSAGE__BODY_EXEC ? "exec" : "start",
                       NULL, "the pod is not set up (no PodSetup has succeeded)");
            return;
        }
        break;
    default:
        break;
    }
    switch (msg->body_case) {
    case VMLET__GUEST_MESSAGE__BODY_SETUP:
        s_setup(a, msg->setup);
        break;
    case VMLET__GUEST_MESSAGE__BODY_START:
        container_start(a, msg->start);
        break;
    case VMLET__GUEST_MESSAGE__BODY_SIGNAL:
        container_signal(a, msg->signal);
        break;
    case VMLET__GUEST_MESSAGE__BODY_EXEC:
        exec_start(a, msg->exec);
        break;
    case VMLET__GUEST_MESSAGE__BODY_PORT_FORWARD:
        forward_open(a, msg->port_forward);
        break;
    case VMLET__GUEST_MESSAGE__BODY_STREAM_DATA:
        stream_message_data(a, msg->stream_data);
        break;
    case VMLET__GUEST_MESSAGE__BODY_STREAM_CLOSE:
        stream_message_close(a, msg->stream_close);
        break;
    case VMLET__GUEST_MESSAGE__BODY_RESIZE:
        exec_resize(a, msg->resize); // each ignores a stream that is not its own
        attach_resize(a, msg->resize);
        break;
    case VMLET__GUEST_MESSAGE__BODY_ATTACH:
        attach_open(a, msg->attach);
        break;
    case VMLET__GUEST_MESSAGE__BODY_PING:
        s_pong(a, msg->ping);
        break;
    case VMLET__GUEST_MESSAGE__BODY_POWER_OFF:
        power_off(a, false, "the host asked");
        break;
    case VMLET__GUEST_MESSAGE__BODY_WRITE_FILES:
        s_write_files(a, msg->write_files);
        break;
    case VMLET__GUEST_MESSAGE__BODY_STATS_REQUEST:
        s_stats(a, msg->stats_request);
        break;
    default:
        send_error(a, "protocol", NULL, "message %d is not one the host sends", msg->body_case);
        break;
    }
}
