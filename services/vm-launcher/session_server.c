// The session endpoint's server: the listening socket on the launcher's
// zloop, the presence and shared token in Redis, SessionOpen checks, the
// kinds' table, metrics, and the hooks through which the pods' agent
// messages reach their sessions. Framing and back-pressure of one
// connection are in session_conn.c.
#include "session.h"

#include "session_conn.h"

#include "vmlet/net.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TOKEN_KEY "vmlet:session-token"
#define SWEEP_MS 200

static const session_kind_t *const kinds[] = {&session_exec_kind, &session_attach_kind,
                                              &session_forward_kind, &session_logs_kind};
#define N_KINDS (sizeof kinds / sizeof kinds[0])

struct session_server {
    launcher_t *l;
    int listen_fd;
    char advertise[160];
    char token[80];
    zlistx_t *sessions; // session_t
    int sweep_timer;
    vmlet_metric_t *gauge[N_KINDS];
};

static size_t s_kind_index(const session_kind_t *k)
{
    for (size_t i = 0; i < N_KINDS; i++)
        if (kinds[i] == k)
            return i;
    return 0;
}

static void s_count(session_server_t *self, const char *kind, const char *result)
{
    char labels[96];
    snprintf(labels, sizeof labels, "kind=\"%s\",result=\"%s\"", kind, result);
    vmlet_counter_inc(vmlet_metrics_counter(vmlet_service_metrics(self->l->service),
                                            "vmlet_launcher_sessions_total",
                                            "Sessions ended, by kind and how.", labels));
}

static void s_gauges(session_server_t *self)
{
    double n[N_KINDS] = {0};
    for (session_t *s = zlistx_first(self->sessions); s; s = zlistx_next(self->sessions))
        if (s->kind)
            n[s_kind_index(s->kind)]++;
    for (size_t i = 0; i < N_KINDS; i++)
        vmlet_gauge_set(self->gauge[i], n[i]);
}

// --- token and presence ------------------------------------------------------------------

static void s_token(session_server_t *self)
{
    char fresh[65];
    vmlet_random_hex(fresh, 32);
    vmlet_err_t err = {0};
    // NX: every launcher (and the front) ends up with the first one made.
    redisReply *r = vmlet_store_command(self->l->store, &err, "SET %s %s NX", TOKEN_KEY, fresh);
    freeReplyObject(r);
    r = vmlet_store_command(self->l->store, &err, "GET %s", TOKEN_KEY);
    if (r && r->type == REDIS_REPLY_STRING && r->len < sizeof self->token)
        snprintf(self->token, sizeof self->token, "%s", r->str);
    else
        vmlet_log_warn(self->l->log, NULL, "session token from Redis: %s",
                       err.msg[0] ? err.msg : "not there");
    freeReplyObject(r);
}

static int s_on_accept(zloop_t *loop, zmq_pollitem_t *item, void *arg);

static void s_listen(session_server_t *self)
{
    const launcher_settings_t *st = self->l->settings;
    vmlet_err_t err = {0};
    int fd = vmlet_tcp_listen(st->session_listen, &err);
    if (fd < 0) {
        vmlet_log_error(self->l->log, NULL, "sessions (kubectl logs/exec): %s; trying again",
                        err.msg);
        return;
    }
    zmq_pollitem_t item = {NULL, fd, ZMQ_POLLIN, 0};
    if (zloop_poller(self->l->loop, &item, s_on_accept, self) < 0) {
        close(fd);
        return;
    }
    zloop_poller_set_tolerant(self->l->loop, &item);
    self->listen_fd = fd;
    if (st->session_advertise[0]) {
        snprintf(self->advertise, sizeof self->advertise, "%s", st->session_advertise);
    } else {
        // The listen address with the port it got; "0.0.0.0" says nothing to
        // others, so the host's address stands in.
        char host[128];
        const char *colon = strrchr(st->session_listen, ':');
        size_t hl = colon ? (size_t)(colon - st->session_listen) : 0;
        snprintf(host, sizeof host, "%.*s", (int)hl, st->session_listen);
        if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "[::]") == 0)
            snprintf(host, sizeof host, "%s", self->l->host_ip[0] ? self->l->host_ip : "127.0.0.1");
        snprintf(self->advertise, sizeof self->advertise, "%s:%d", host, vmlet_tcp_bound_port(fd));
    }
    vmlet_log_info(self->l->log,
                   VMLET_KV({"listen", st->session_listen}, {"advertise", self->advertise}),
                   "sessions (kubectl logs/exec/attach/port-forward) served");
}

void session_server_announce(session_server_t *self)
{
    if (self->listen_fd < 0)
        s_listen(self);
    s_token(self);
    if (self->listen_fd < 0)
        return;
    vmlet_err_t err = {0};
    redisReply *r = vmlet_store_command(self->l->store, &err, "SET vmlet:session:%s %s PX %lld",
                                        self->l->id, self->advertise,
                                        (long long)(3 * self->l->settings->announce_interval_ms));
    if (!r)
        vmlet_log_warn(self->l->log, NULL, "session presence: %s", err.msg);
    freeReplyObject(r);
}

// --- sessions --------------------------------------------------------------------------

void session_server_forget(session_server_t *self, session_t *s)
{
    if (s->kind)
        s_count(self, s->kind->name, s->result ? s->result : "disconnected");
    void *handle = zlistx_find(self->sessions, s);
    if (handle)
        zlistx_detach(self->sessions, handle);
    s_gauges(self);
}

launcher_t *session_server_launcher(session_server_t *self)
{
    return self->l;
}

static int s_on_accept(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    session_server_t *self = arg;
    for (int i = 0; i < 16; i++) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        int fd = accept4(item->fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                vmlet_log_warn(self->l->log, NULL, "sessions: accept: %s", strerror(errno));
            return 0;
        }
        char peer[64] = "?";
        if (sa.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, peer, sizeof peer);
        session_t *s = session_conn_new(self, fd, peer);
        if (s)
            zlistx_add_end(self->sessions, s);
    }
    return 0;
}

static bool s_token_ok(const char *want, const char *got)
{
    size_t n = strlen(want);
    if (!got || strlen(got) != n || n == 0)
        return false;
    unsigned char diff = 0; // constant time: the token is a secret
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(want[i] ^ got[i]);
    return diff == 0;
}

void session_server_open(session_server_t *self, session_t *s, const Vmlet__SessionOpen *o)
{
    launcher_t *l = self->l;
    const session_kind_t *kind = NULL;
    for (size_t i = 0; i < N_KINDS; i++)
        if (o->has_kind && kinds[i]->kind == o->kind)
            kind = kinds[i];
    if (!s_token_ok(self->token, o->token)) {
        s_token(self); // the token may have been made again (Redis lost it)
        if (!s_token_ok(self->token, o->token)) {
            // Never the token itself in the log.
            vmlet_log_warn(l->log, VMLET_KV({"peer", s->peer}),
                           "session refused: wrong token (the front must use %s in Redis)",
                           TOKEN_KEY);
            s->kind = kind ? kind : kinds[0];
            s_gauges(self);
            session_end(s, "unauthorized", "unauthorized: wrong session token", 401, -1, 0);
            return;
        }
    }
    if (!kind) {
        s->kind = kinds[0];
        session_end(s, "error", "unknown session kind", 400, -1, 0);
        return;
    }
    s->kind = kind;
    s_gauges(self);
    snprintf(s->pod_uid, sizeof s->pod_uid, "%s", o->pod_uid ? o->pod_uid : "");
    int status = 500;
    char error[600] = "";
    if (!session_pod(s)) {
        session_end(s, "error", "pod does not exist", 404, -1, 0);
        return;
    }
    if (kind->open(s, o, &status, error, sizeof error) < 0) {
        vmlet_log_info(l->log, VMLET_KV({"kind", kind->name}, {"pod", s->pod_uid}),
                       "session refused: %s", error);
        session_end(s, "error", error, status, -1, 0);
        return;
    }
    s->opened = true;
    vmlet_log_info(l->log,
                   VMLET_KV({"kind", kind->name}, {"pod", session_pod(s)->desc},
                            {"container", s->container}, {"peer", s->peer}),
                   "session opened");
    Vmlet__SessionAccepted acc = VMLET__SESSION_ACCEPTED__INIT;
    acc.launcher_id = l->id;
    Vmlet__SessionFrame f = VMLET__SESSION_FRAME__INIT;
    f.body_case = VMLET__SESSION_FRAME__BODY_ACCEPTED;
    f.accepted = &acc;
    session_conn_queue(s, &f, 0);
    if (kind->writable)
        kind->writable(s); // logs start sending
}

static int s_on_sweep(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    session_server_t *self = arg;
    int64_t now = vmlet_now_ms();
    session_t *s = zlistx_first(self->sessions);
    while (s) {
        session_t *next = zlistx_next(self->sessions);
        if (session_conn_done(s, now)) {
            session_conn_destroy(&s);
            next = zlistx_first(self->sessions);
        }
        s = next;
    }
    return 0;
}

session_server_t *session_server_new(launcher_t *l)
{
    session_server_t *self = vmlet_xcalloc(1, sizeof *self);
    self->l = l;
    self->listen_fd = -1;
    self->sessions = zlistx_new();
    vmlet_metrics_t *m = vmlet_service_metrics(l->service);
    for (size_t i = 0; i < N_KINDS; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "kind=\"%s\"", kinds[i]->name);
        self->gauge[i] = vmlet_metrics_gauge(m, "vmlet_launcher_sessions",
                                             "Sessions open now, by kind.", labels);
    }
    s_listen(self);
    s_token(self);
    self->sweep_timer = zloop_timer(l->loop, SWEEP_MS, 0, s_on_sweep, self);
    return self;
}

void session_server_destroy(session_server_t **self_p)
{
    session_server_t *self = *self_p;
    if (!self)
        return;
    session_t *s;
    while ((s = zlistx_first(self->sessions))) {
        if (!s->result)
            s->result = "stopped";
        session_conn_destroy(&s);
    }
    zlistx_destroy(&self->sessions);
    if (self->listen_fd >= 0) {
        zmq_pollitem_t item = {NULL, self->listen_fd, 0, 0};
        zloop_poller_end(self->l->loop, &item);
        close(self->listen_fd);
    }
    if (self->sweep_timer > 0)
        zloop_timer_end(self->l->loop, self->sweep_timer);
    free(self);
    *self_p = NULL;
}

// --- hooks from the pods -----------------------------------------------------------------

static session_t *s_by_stream(session_server_t *self, const char *uid, uint32_t id)
{
    for (session_t *s = zlistx_first(self->sessions); s; s = zlistx_next(self->sessions))
        if (s->stream_id == id && s->stream_open && strcmp(s->pod_uid, uid) == 0)
            return s;
    return NULL;
}

bool session_on_agent(pod_vm_t *pod, const Vmlet__GuestMessage *msg)
{
    session_server_t *self = pod->l->sessions;
    if (!self)
        return false;
    session_t *s = NULL;
    switch (msg->body_case) {
    case VMLET__GUEST_MESSAGE__BODY_STREAM_DATA:
        s = s_by_stream(self, pod->uid, msg->stream_data->stream_id);
        if (s)
            session_stream_agent_data(s, msg->stream_data);
        break;
    case VMLET__GUEST_MESSAGE__BODY_STREAM_CLOSE: {
        s = s_by_stream(self, pod->uid, msg->stream_close->stream_id);
        if (!s)
            break;
        s->stream_open = false;
        const char *error = msg->stream_close->error;
        if (s->kind == &session_forward_kind)
            session_end(s, error && *error ? "error" : "ok", error && *error ? error : NULL,
                        error && *error ? 500 : 0, -1, 0);
        else if (error && *error) // attach: no stdin to write; the output goes on
            vmlet_log_info(pod->l->log, VMLET_KV({"pod", pod->desc}), "session: %s", error);
        break;
    }
    case VMLET__GUEST_MESSAGE__BODY_EXEC_STARTED:
        s = s_by_stream(self, pod->uid, msg->exec_started->stream_id);
        break;
    case VMLET__GUEST_MESSAGE__BODY_EXEC_EXITED: {
        const Vmlet__ExecExited *x = msg->exec_exited;
        s = s_by_stream(self, pod->uid, x->stream_id);
        if (!s)
            break;
        s->stream_open = false; // the agent freed it
        session_end(s, "ok", x->message && *x->message ? x->message : NULL, 0, x->exit_code,
                    x->has_signal ? x->signal : 0);
        break;
    }
    default:
        break;
    }
    return s != NULL;
}

// Each session of the pod that matches gets fn; the list may change under it.
static void s_each(pod_vm_t *pod, bool (*match)(session_t *s, void *arg), void *arg,
                   void (*fn)(session_t *s, void *arg))
{
    session_server_t *self = pod->l->sessions;
    if (!self || zlistx_size(self->sessions) == 0)
        return;
    zlistx_t *todo = zlistx_new();
    for (session_t *s = zlistx_first(self->sessions); s; s = zlistx_next(self->sessions))
        if (s->state == SS_OPEN && strcmp(s->pod_uid, pod->uid) == 0 && match(s, arg))
            zlistx_add_end(todo, s);
    for (session_t *s = zlistx_first(todo); s; s = zlistx_next(todo))
        if (zlistx_find(self->sessions, s) && s->state == SS_OPEN)
            fn(s, arg);
    zlistx_destroy(&todo);
}

typedef struct {
    size_t i;
    int exit_code, signal;
} exit_arg_t;

static bool s_match_ctr(session_t *s, void *arg)
{
    return s->opened && s->ctr == ((exit_arg_t *)arg)->i &&
           (s->kind == &session_attach_kind || s->kind == &session_logs_kind);
}

static void s_exit(session_t *s, void *arg)
{
    exit_arg_t *x = arg;
    if (s->kind == &session_attach_kind)
        session_attach_exit(s, x->exit_code, x->signal);
    else
        session_logs_exit(s);
}

void session_on_container_exit(pod_vm_t *pod, size_t i, int exit_code, int signal)
{
    exit_arg_t x = {i, exit_code, signal};
    s_each(pod, s_match_ctr, &x, s_exit);
}

static bool s_match_attached(session_t *s, void *arg)
{
    const Vmlet__OutputChunk *m = arg;
    return s->opened && s->kind == &session_attach_kind && strcmp(s->container, m->container) == 0;
}

static void s_output(session_t *s, void *arg)
{
    session_attach_output(s, arg);
}

void session_on_output(pod_vm_t *pod, const Vmlet__OutputChunk *m)
{
    if (m->container)
        s_each(pod, s_match_attached, (void *)m, s_output);
}

static bool s_match_all(session_t *s, void *arg)
{
    (void)s;
    (void)arg;
    return true;
}

static void s_gone(session_t *s, void *arg)
{
    s->stream_open = false; // the agent's end is gone with the VM
    session_end(s, "error", arg, 500, -1, 0);
}

void session_on_pod_gone(pod_vm_t *pod, const char *why)
{
    s_each(pod, s_match_all, (void *)why, s_gone);
}
