// One pod's probes (see prober_internal.h).
#include "prober_internal.h"

#include "vmlet/pb.h"
#include "vmlet/pod_store.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>

#define EXEC_SLACK_MS 5000 // an exec probe's answer may take this long past its timeout
// Tries of a network probe whose result is Unknown (the prober's own error),
// within one period, as the kubelet's runProbeWithRetries.
#define UNKNOWN_TRIES 3
#define VERDICT_RESEND_MS 10000 // a standing verdict is published again this often (s_finish)

static const char *s_handler_name(const Vmlet__Probe *spec)
{
    switch (spec->handler_case) {
    case VMLET__PROBE__HANDLER_HTTP_GET:
        return "http";
    case VMLET__PROBE__HANDLER_TCP_SOCKET:
        return "tcp";
    case VMLET__PROBE__HANDLER_EXEC:
        return "exec";
    case VMLET__PROBE__HANDLER_GRPC:
        return "grpc";
    default:
        return "none";
    }
}

static Vmlet__ProbeKind s_pb_kind(probe_kind_t k)
{
    return k == PROBE_LIVENESS    ? VMLET__PROBE_KIND__PROBE_KIND_LIVENESS
           : k == PROBE_READINESS ? VMLET__PROBE_KIND__PROBE_KIND_READINESS
                                  : VMLET__PROBE_KIND__PROBE_KIND_STARTUP;
}

static Vmlet__ProbeOutcome s_pb_outcome(verdict_t v)
{
    return v == VERDICT_SUCCESS   ? VMLET__PROBE_OUTCOME__PROBE_OUTCOME_SUCCESS
           : v == VERDICT_FAILURE ? VMLET__PROBE_OUTCOME__PROBE_OUTCOME_FAILURE
                                  : VMLET__PROBE_OUTCOME__PROBE_OUTCOME_UNKNOWN;
}

static const Vmlet__Container *s_container(const pod_probes_t *self, size_t i)
{
    return self->spec->containers[i];
}

// --- reporting ---------------------------------------------------------------------------

// verdict: the verdict to report (VERDICT_UNKNOWN: none, this reports an attempt).
static void s_publish(const probe_t *probe, verdict_t attempt, verdict_t verdict, bool restart,
                      bool warning, const char *output)
{
    pod_probes_t *pod = probe->pod;
    prober_t *p = pod->p;
    Vmlet__ProbeResult r = VMLET__PROBE_RESULT__INIT;
    r.pod = pod->spec->pod;
    r.container = s_container(pod, probe->container)->name;
    PB_SET(&r, kind, s_pb_kind(probe->state.kind));
    if (verdict != VERDICT_UNKNOWN)
        PB_SET(&r, outcome, s_pb_outcome(verdict));
    if (attempt != VERDICT_UNKNOWN)
        PB_SET(&r, attempt, s_pb_outcome(attempt));
    r.output = output && *output ? (char *)output : NULL;
    PB_SET(&r, observed_unix_ms, vmlet_unix_ms());
    r.prober_id = p->id;
    PB_SET(&r, consecutive, probe->state.run);
    PB_SET(&r, restart, restart);
    PB_SET(&r, warning, warning);
    r.container_id = (char *)probe->state.container_id;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_PROBE_RESULT;
    env.probe_result = &r;
    vmlet_err_t err = {0};
    if (vmlet_bus_publish(vmlet_service_publisher(p->service), &env, &err) < 0)
        vmlet_log_warn(p->log, VMLET_KV({"pod", pod->uid}), "%s", err.msg);
}

// A liveness or startup verdict of failure: the launcher restarts the run.
static void s_ask_restart(const probe_t *probe, const char *output)
{
    pod_probes_t *pod = probe->pod;
    prober_t *p = pod->p;
    const char *name = s_container(pod, probe->container)->name;
    char message[1200];
    snprintf(message, sizeof message, "Container %s failed %s probe, will be restarted: %s", name,
             probe_kind_name(probe->state.kind), output ? output : "");
    Vmlet__RestartRequest req = VMLET__RESTART_REQUEST__INIT;
    req.pod = pod->spec->pod;
    req.container = (char *)name;
    req.reason = "Unhealthy";
    req.message = message;
    if (probe->spec->has_termination_grace_period_seconds) // the probe's own, else the pod's
        PB_SET(&req, grace_period_seconds, probe->spec->termination_grace_period_seconds);
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_RESTART_REQUEST;
    env.restart_request = &req;
    // One request per run of the container, however often it is asked.
    char item[600];
    snprintf(item, sizeof item, "restart/%s/%s/%s", pod->uid, name, probe->state.container_id);
    vmlet_err_t err = {0};
    if (vmlet_bus_submit(vmlet_service_client(p->service), VMLET_QUEUE_VM_LAUNCHER, &env, item,
                         &err) < 0)
        vmlet_log_warn(p->log, VMLET_KV({"pod", pod->uid}, {"container", name}), "%s", err.msg);
    vmlet_log_info(p->log, VMLET_KV({"pod", pod->uid}, {"container", name}), "%s", message);
}

// One attempt ended. warning: a success that still deserves an event.
static void s_finish(probe_t *probe, verdict_t attempt, bool warning, const char *output)
{
    prober_t *p = probe->pod->p;
    probe->in_flight = false;
    probe->tries = 0;
    probe->exec_id[0] = '\0';
    vmlet_histogram_observe(p->latency, (double)(vmlet_now_ms() - probe->started_ms) / 1000.0);
    char labels[128];
    snprintf(labels, sizeof labels, "kind=\"%s\",handler=\"%s\",result=\"%s\"",
             probe_kind_name(probe->state.kind), s_handler_name(probe->spec),
             attempt == VERDICT_SUCCESS   ? "success"
             : attempt == VERDICT_FAILURE ? "failure"
                                          : "unknown");
    vmlet_counter_inc(vmlet_metrics_counter(vmlet_service_metrics(p->service),
                                            "vmlet_prober_probes_total",
                                            "Probe attempts by kind, handler and result.", labels));
    probe_effect_t effect = probe_state_attempt(&probe->state, attempt);
    warning = warning && attempt == VERDICT_SUCCESS;
    // The standing verdict goes out again now and then, not only when it
    // changes: a status-reporter that was away (being replaced) when it
    // changed would otherwise never hear of it, and the pod would stay
    // unready for good. The reporter takes a repeat as a no-op.
    int64_t now = vmlet_now_ms();
    bool resend = probe->state.verdict != VERDICT_UNKNOWN &&
                  now - probe->verdict_sent_ms >= VERDICT_RESEND_MS;
    bool send_verdict = effect.verdict_changed || resend;
    if (attempt == VERDICT_FAILURE || send_verdict || warning)
        s_publish(probe, attempt, send_verdict ? probe->state.verdict : VERDICT_UNKNOWN,
                  effect.restart, warning, output);
    if (send_verdict)
        probe->verdict_sent_ms = now;
    if (effect.restart)
        s_ask_restart(probe, output);
}

// --- running an attempt -----------------------------------------------------------------

// What a network probe's callback gets: enough to find the probe again,
// if its pod is still ours, and to know the answer is for this attempt.
// The prober keeps the tickets out, so none outlives it.
typedef struct {
    prober_t *p;
    char uid[64];
    size_t index;
    uint64_t attempt;
    void *handle; // in p->tickets
} ticket_t;

static void s_start(probe_t *probe);

static void s_on_done(void *arg, const probe_outcome_t *outcome)
{
    ticket_t *t = arg;
    prober_t *p = t->p;
    pod_probes_t *pod = zhashx_lookup(t->p->pods, t->uid);
    probe_t *probe = pod && t->index < pod->n_probes ? &pod->probes[t->index] : NULL;
    bool current = probe && probe->in_flight && probe->attempt == t->attempt;
    zlistx_delete(p->tickets, t->handle); // frees t
    if (!current)                         // a pod let go, or an attempt given up, meanwhile
        return;
    if (outcome->result == PROBE_RESULT_FAILURE && outcome->body && *outcome->body)
        vmlet_log_debug(p->log,
                        VMLET_KV({"pod", pod->uid}, {"kind", probe_kind_name(probe->state.kind)}),
                        "probe failed; response body: %.1024s", outcome->body);
    if (outcome->result == PROBE_RESULT_UNKNOWN && ++probe->tries < UNKNOWN_TRIES) {
        vmlet_log_debug(p->log, VMLET_KV({"pod", pod->uid}), "probe error, trying again: %s",
                        outcome->output);
        probe->in_flight = false;
        return s_start(probe);
    }
    s_finish(probe,
             outcome->result == PROBE_RESULT_SUCCESS   ? VERDICT_SUCCESS
             : outcome->result == PROBE_RESULT_FAILURE ? VERDICT_FAILURE
                                                       : VERDICT_UNKNOWN,
             outcome->warning, outcome->output);
}

// The container port a probe names (by number, or by the name of one of
// the container's ports). -1 when there is none.
static int s_port(const Vmlet__Container *c, const Vmlet__PortRef *ref)
{
    if (!ref)
        return -1;
    if (ref->port_case == VMLET__PORT_REF__PORT_NUMBER)
        return ref->number;
    for (size_t i = 0; ref->port_case == VMLET__PORT_REF__PORT_NAME && i < c->n_ports; i++)
        if (c->ports[i]->name && strcmp(c->ports[i]->name, ref->name) == 0)
            return c->ports[i]->container_port;
    return -1;
}

static void s_start_exec(probe_t *probe)
{
    pod_probes_t *pod = probe->pod;
    prober_t *p = pod->p;
    snprintf(probe->exec_id, sizeof probe->exec_id, "%s/%llu", p->id,
             (unsigned long long)++p->next_exec);
    Vmlet__ExecRequest req = VMLET__EXEC_REQUEST__INIT;
    req.request_id = probe->exec_id;
    req.pod = pod->spec->pod;
    req.container = s_container(pod, probe->container)->name;
    req.command = probe->spec->exec->command;
    req.n_command = probe->spec->exec->n_command;
    PB_SET(&req, timeout_ms, probe->state.timing.timeout_s * 1000);
    PB_SET(&req, max_output_bytes, 10 * 1024); // the kubelet keeps 10 KiB of a probe's output
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_EXEC_REQUEST;
    env.exec_request = &req;
    zhashx_update(p->execs, probe->exec_id, probe);
    vmlet_err_t err = {0};
    if (vmlet_bus_publish(vmlet_service_publisher(p->service), &env, &err) < 0) {
        zhashx_delete(p->execs, probe->exec_id);
        s_finish(probe, VERDICT_UNKNOWN, false, err.msg);
    }
}

static void s_start(probe_t *probe)
{
    pod_probes_t *pod = probe->pod;
    prober_t *p = pod->p;
    const Vmlet__Probe *spec = probe->spec;
    const Vmlet__Container *c = s_container(pod, probe->container);
    probe->in_flight = true;
    probe->attempt++;
    probe->started_ms = vmlet_now_ms();
    if (spec->handler_case == VMLET__PROBE__HANDLER_EXEC) {
        s_start_exec(probe);
        return;
    }
    probe_target_t target = {.timeout_ms = probe->state.timing.timeout_s * 1000};
    probe_header_t headers[32];
    const char *host = NULL;
    if (spec->handler_case == VMLET__PROBE__HANDLER_HTTP_GET) {
        const Vmlet__HttpGetAction *h = spec->http_get;
        target.kind = PROBE_TARGET_HTTP;
        host = h->host;
        target.port = s_port(c, h->port);
        target.scheme = h->scheme && *h->scheme ? h->scheme : "HTTP";
        target.path = h->path && *h->path ? h->path : "/";
        for (size_t i = 0; i < h->n_headers && i < 32; i++)
            headers[i] = (probe_header_t){h->headers[i]->name, h->headers[i]->value};
        target.headers = headers;
        target.n_headers = h->n_headers < 32 ? h->n_headers : 32;
    } else if (spec->handler_case == VMLET__PROBE__HANDLER_TCP_SOCKET) {
        target.kind = PROBE_TARGET_TCP;
        host = spec->tcp_socket->host;
        target.port = s_port(c, spec->tcp_socket->port);
    } else if (spec->handler_case == VMLET__PROBE__HANDLER_GRPC) {
        target.kind = PROBE_TARGET_GRPC;
        target.port = spec->grpc->port;
        target.grpc_service = spec->grpc->service ? spec->grpc->service : "";
    } else {
        return s_finish(probe, VERDICT_UNKNOWN, false, "no probe handler");
    }
    target.host = host && *host ? host : pod->pod_ip; // the kubelet's default: the pod's IP
    if (!target.host[0])
        return s_finish(probe, VERDICT_UNKNOWN, false, "the pod has no IP yet");
    if (target.port <= 0 || target.port > 65535)
        return s_finish(probe, VERDICT_UNKNOWN, false,
                        "the probe's port is not one of the container's");
    ticket_t *t = vmlet_xcalloc(1, sizeof *t);
    t->p = p;
    snprintf(t->uid, sizeof t->uid, "%s", pod->uid);
    t->index = (size_t)(probe - pod->probes);
    t->attempt = probe->attempt;
    t->handle = zlistx_add_end(p->tickets, t);
    vmlet_err_t err = {0};
    if (probe_runner_start(p->runner, &target, s_on_done, t, &err) < 0) {
        zlistx_delete(p->tickets, t->handle);
        s_finish(probe, VERDICT_UNKNOWN, false, err.msg);
    }
}

// Whether the container's startup probe has succeeded (true without one).
static bool s_started(const pod_probes_t *self, size_t container)
{
    for (size_t i = 0; i < self->n_probes; i++) {
        const probe_t *q = &self->probes[i];
        if (q->container == container && q->state.kind == PROBE_STARTUP)
            return q->state.verdict == VERDICT_SUCCESS &&
                   strcmp(q->state.container_id, self->views[container].container_id) == 0;
    }
    return true;
}

void pod_probes_run(probe_t *probe)
{
    pod_probes_t *pod = probe->pod;
    prober_t *p = pod->p;
    int64_t now = vmlet_now_ms(), due = probe->when.due_ms;
    int64_t period = (int64_t)probe->state.timing.period_s * 1000;
    // Fixed rate, as the kubelet's ticker; after a stall, no burst to catch up.
    schedule_move(&p->schedule, &probe->when, due + period > now ? due + period : now + period);
    if (probe->in_flight) { // the last attempt is still out: this tick is skipped
        vmlet_counter_inc(p->skipped);
        return;
    }
    const container_view_t *v = &pod->views[probe->container];
    probe_container_t c = {.running = v->running,
                           .started_unix_ms = v->started_unix_ms,
                           .container_id = v->container_id,
                           .started = s_started(pod, probe->container)};
    bool new_run = strcmp(probe->state.container_id, v->container_id) != 0;
    bool due_now = probe_state_due(&probe->state, &c, vmlet_unix_ms());
    // A new run is not ready (nor started) until its probes say so.
    if (new_run && v->running && probe->state.kind != PROBE_LIVENESS)
        s_publish(probe, VERDICT_UNKNOWN, VERDICT_FAILURE, false, false, NULL);
    if (!due_now)
        return;
    vmlet_histogram_observe(p->lateness, (double)(now - due) / 1000.0);
    s_start(probe);
}

void pod_probes_on_exec(probe_t *probe, const Vmlet__ExecResult *r)
{
    if (!probe->in_flight)
        return;
    if (r->error) // it could not run (the container is not running...): no verdict
        return s_finish(probe, VERDICT_UNKNOWN, false, r->error);
    if (r->timed_out) {
        char out[256];
        snprintf(out, sizeof out, "command timed out after %ds", probe->state.timing.timeout_s);
        return s_finish(probe, VERDICT_FAILURE, false, out);
    }
    if (r->has_exit_code && r->exit_code == 0)
        return s_finish(probe, VERDICT_SUCCESS, false, NULL);
    char out[2048];
    int n = snprintf(out, sizeof out, "%.*s%.*s", (int)(r->has_stdout ? r->stdout.len : 0),
                     r->has_stdout ? (const char *)r->stdout.data : "",
                     (int)(r->has_stderr ? r->stderr.len : 0),
                     r->has_stderr ? (const char *)r->stderr.data : "");
    while (n > 0 && n < (int)sizeof out && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    if (n == 0)
        snprintf(out, sizeof out, "command exited with status %d", r->exit_code);
    s_finish(probe, VERDICT_FAILURE, false, out);
}

void pod_probes_expire_execs(prober_t *p)
{
    int64_t now = vmlet_now_ms();
    zlistx_t *late = zlistx_new();
    for (probe_t *q = zhashx_first(p->execs); q; q = zhashx_next(p->execs))
        if (now - q->started_ms > (int64_t)q->state.timing.timeout_s * 1000 + EXEC_SLACK_MS)
            zlistx_add_end(late, q);
    for (probe_t *q = zlistx_first(late); q; q = zlistx_next(late)) {
        zhashx_delete(p->execs, q->exec_id);
        s_finish(q, VERDICT_UNKNOWN, false, "no answer from the pod's launcher");
    }
    zlistx_destroy(&late);
}

// --- the pod -----------------------------------------------------------------------------

static void s_view(pod_probes_t *self, Vmlet__ContainerStatus **list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const Vmlet__ContainerStatus *st = list[i];
        for (size_t c = 0; st->name && c < self->spec->n_containers; c++) {
            if (strcmp(self->spec->containers[c]->name, st->name) != 0)
                continue;
            container_view_t *v = &self->views[c];
            v->running =
                st->state && st->state->state_case == VMLET__CONTAINER_STATE__STATE_RUNNING;
            v->started_unix_ms = v->running ? st->state->running->started_unix_ms : 0;
            snprintf(v->container_id, sizeof v->container_id, "%s",
                     st->container_id ? st->container_id : "");
        }
    }
}

void pod_probes_on_vm(pod_probes_t *self, const Vmlet__VmEvent *vm)
{
    if (vm->generation && vm->generation < self->vm_generation)
        return; // older than what we know
    self->vm_generation = vm->generation;
    if (vm->pod_ip)
        snprintf(self->pod_ip, sizeof self->pod_ip, "%s", vm->pod_ip);
    s_view(self, vm->containers, vm->n_containers);
}

// The VM as its launcher last recorded it.
static void s_load_vm(pod_probes_t *self)
{
    redisReply *r = vmlet_store_command(self->p->store, NULL, "GET vmlet:vm:%s", self->uid);
    Vmlet__VmRecord *rec = r && r->type == REDIS_REPLY_STRING
                               ? vmlet__vm_record__unpack(NULL, r->len, (const uint8_t *)r->str)
                               : NULL;
    freeReplyObject(r);
    if (!rec)
        return;
    if (rec->pod_ip)
        snprintf(self->pod_ip, sizeof self->pod_ip, "%s", rec->pod_ip);
    for (size_t i = 0; i < rec->n_containers; i++)
        if (rec->containers[i]->status)
            s_view(self, &rec->containers[i]->status, 1);
    self->vm_generation = rec->generation;
    vmlet__vm_record__free_unpacked(rec, NULL);
}

static void s_unschedule(pod_probes_t *self)
{
    for (size_t i = 0; i < self->n_probes; i++) {
        schedule_remove(&self->p->schedule, &self->probes[i].when);
        if (self->probes[i].exec_id[0])
            zhashx_delete(self->p->execs, self->probes[i].exec_id);
    }
    free(self->probes);
    self->probes = NULL;
    self->n_probes = 0;
}

// A random start within the period (or within max_jitter_ms when that is
// shorter), as the kubelet's workers wait, so a thousand pods with one
// period do not fire together.
static int64_t s_first_due(const probe_timing_t *t, int64_t max_jitter_ms)
{
    int64_t span = (int64_t)t->period_s * 1000;
    if (max_jitter_ms >= 0 && max_jitter_ms < span)
        span = max_jitter_ms;
    return vmlet_now_ms() + (int64_t)(vmlet_random01() * (double)span);
}

static void s_build(pod_probes_t *self, int64_t max_jitter_ms)
{
    s_unschedule(self);
    size_t n = self->spec->n_containers;
    self->probes = vmlet_xcalloc(3 * n + 1, sizeof *self->probes);
    free(self->views);
    self->views = vmlet_xcalloc(n + 1, sizeof *self->views);
    for (size_t c = 0; c < n; c++) {
        const Vmlet__Container *k = self->spec->containers[c];
        const Vmlet__Probe *specs[3] = {k->liveness_probe, k->readiness_probe, k->startup_probe};
        const probe_kind_t kinds[3] = {PROBE_LIVENESS, PROBE_READINESS, PROBE_STARTUP};
        for (int i = 0; i < 3; i++) {
            if (!specs[i])
                continue;
            probe_timing_t timing;
            vmlet_err_t err = {0};
            if (probe_timing_of(specs[i], kinds[i], &timing, &err) < 0) {
                vmlet_log_warn(self->p->log, VMLET_KV({"pod", self->uid}, {"container", k->name}),
                               "probe not run: %s", err.msg);
                continue;
            }
            probe_t *probe = &self->probes[self->n_probes++];
            probe->pod = self;
            probe->container = c;
            probe->spec = specs[i];
            probe_state_init(&probe->state, kinds[i], &timing);
            probe->when.index = SIZE_MAX;
            probe->when.due_ms = s_first_due(&timing, max_jitter_ms);
            schedule_add(&self->p->schedule, &probe->when);
        }
    }
}

pod_probes_t *pod_probes_new(prober_t *p, const char *uid, int64_t max_jitter_ms)
{
    Vmlet__PodSpec *spec = vmlet_pod_store_get(p->store, uid, NULL);
    if (!spec)
        return NULL;
    pod_probes_t *self = vmlet_xcalloc(1, sizeof *self);
    self->p = p;
    snprintf(self->uid, sizeof self->uid, "%s", uid);
    self->spec = spec;
    char hash[VMLET_POD_HASH_LEN];
    vmlet_pod_spec_hash(spec, hash);
    snprintf(self->spec_hash, sizeof self->spec_hash, "%s", hash);
    s_build(self, max_jitter_ms);
    s_load_vm(self);
    return self;
}

void pod_probes_reload(pod_probes_t *self, const char *spec_hash)
{
    if (spec_hash && strcmp(spec_hash, self->spec_hash) == 0)
        return;
    Vmlet__PodSpec *spec = vmlet_pod_store_get(self->p->store, self->uid, NULL);
    if (!spec)
        return;
    vmlet__pod_spec__free_unpacked(self->spec, NULL);
    self->spec = spec;
    char hash[VMLET_POD_HASH_LEN];
    vmlet_pod_spec_hash(spec, hash);
    snprintf(self->spec_hash, sizeof self->spec_hash, "%s", hash);
    s_build(self, -1);
    s_load_vm(self);
}

void pod_probes_destroy(pod_probes_t **self_p)
{
    pod_probes_t *self = *self_p;
    if (!self)
        return;
    s_unschedule(self);
    free(self->views);
    vmlet__pod_spec__free_unpacked(self->spec, NULL);
    free(self);
    *self_p = NULL;
}
