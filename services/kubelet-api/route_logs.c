// GET /containerLogs/{namespace}/{pod}/{container}: the container's log as
// the kubelet serves it (PodLogOptions in the query), read by the launcher
// that holds the pod's VM and streamed here as a session.
#include "kapi_internal.h"
#include "session_client.h"

#include "vmlet/pod_store.h"
#include "vmlet/timeutil.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// A non-negative integer parameter into *out (absent: untouched).
// Returns false (after answering 400) when present but not a number.
static bool s_int_param(conn_t *c, const char *name, int64_t min, int64_t *out, bool *present)
{
    char v[32];
    *present = http_query(&c->req, name, 0, v, sizeof v);
    if (!*present)
        return true;
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (!v[0] || *end || n < min) {
        http_respondf(c->ssl, 400, "invalid %s: %s\n", name, v);
        return false;
    }
    *out = n;
    return true;
}

// The query as the kubelet validates PodLogOptions; false after a 400.
static bool s_options(conn_t *c, Vmlet__SessionOpen *open)
{
    open->has_follow = 1, open->follow = http_query_bool(&c->req, "follow");
    open->has_timestamps = 1, open->timestamps = http_query_bool(&c->req, "timestamps");
    open->has_previous = 1, open->previous = http_query_bool(&c->req, "previous");
    bool present;
    int64_t n = 0, since_s = 0;
    if (!s_int_param(c, "tailLines", 0, &n, &present))
        return false;
    if (present)
        open->has_tail_lines = 1, open->tail_lines = n;
    if (!s_int_param(c, "limitBytes", 1, &n, &present))
        return false;
    if (present)
        open->has_limit_bytes = 1, open->limit_bytes = n;
    bool have_seconds;
    if (!s_int_param(c, "sinceSeconds", 1, &since_s, &have_seconds))
        return false;
    char since_time[64];
    bool have_time = http_query(&c->req, "sinceTime", 0, since_time, sizeof since_time);
    if (have_seconds && have_time) {
        http_respondf(c->ssl, 400,
                      "at most one of `sinceTime` or `sinceSeconds` may be specified\n");
        return false;
    }
    if (have_seconds) {
        open->has_since_unix_ns = 1;
        open->since_unix_ns = vmlet_unix_ns() - since_s * 1000000000LL;
    } else if (have_time) {
        int64_t unix_s = 0;
        if (vmlet_parse_rfc3339(since_time, &unix_s) < 0) {
            http_respondf(c->ssl, 400, "invalid sinceTime: %s\n", since_time);
            return false;
        }
        open->has_since_unix_ns = 1;
        open->since_unix_ns = unix_s * 1000000000LL;
    }
    return true;
}

// Streams the session's log text to the client until the session ends or
// the client goes away (a `logs -f` interrupted with Ctrl-C).
static void s_stream(conn_t *c, int session)
{
    if (!http_chunked_start(c->ssl, 200, "text/plain"))
        return;
    for (;;) {
        struct pollfd p[2] = {{.fd = session, .events = POLLIN}, {.fd = c->fd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0)
            return;
        if (p[1].revents) // a GET sends nothing more: readable means gone
            return;
        Vmlet__SessionFrame *f = session_recv(session);
        if (!f)
            return; // the launcher went away: cut the stream, as a dead kubelet would
        bool more = true;
        if (f->body_case == VMLET__SESSION_FRAME__BODY_DATA && f->data->has_data)
            more = http_chunk(c->ssl, f->data->data.data, f->data->data.len);
        else if (f->body_case == VMLET__SESSION_FRAME__BODY_END) {
            http_chunked_end(c->ssl);
            more = false;
        }
        vmlet__session_frame__free_unpacked(f, NULL);
        if (!more)
            return;
    }
}

void route_container_logs(conn_t *c, char *const parts[], size_t n_parts)
{
    kapi_shared_t *sh = c->shared;
    if (n_parts != 3) {
        http_respondf(c->ssl, 400, "expected /containerLogs/{namespace}/{pod}/{container}\n");
        return;
    }
    Vmlet__SessionOpen open = VMLET__SESSION_OPEN__INIT;
    if (!s_options(c, &open))
        return;
    vmlet_err_t err = {0};
    vmlet_store_t *store = vmlet_store_new(sh->redis_url, sh->redis_password, NULL, NULL, &err);
    char uid[128];
    int found =
        store ? vmlet_pod_store_uid_of(store, parts[0], parts[1], uid, sizeof uid, &err) : -1;
    if (found <= 0) {
        if (found == 0)
            http_respondf(c->ssl, 404, "pod \"%s\" does not exist\n", parts[1]);
        else
            http_respondf(c->ssl, 503, "cannot read pods: %s\n", err.msg);
        vmlet_store_destroy(&store);
        return;
    }
    open.has_kind = 1, open.kind = VMLET__SESSION_KIND__SESSION_LOGS;
    open.pod_uid = uid;
    open.container = parts[2];
    int status = 0;
    int session = session_connect(store, &open, &status, &err);
    vmlet_store_destroy(&store);
    if (session == SESSION_NO_VM) { // the kubelet's words for a container not started yet
        http_respondf(c->ssl, 400,
                      "container \"%s\" in pod \"%s\" is waiting to start: "
                      "ContainerCreating\n",
                      parts[2], parts[1]);
        return;
    }
    if (session < 0) {
        http_respondf(c->ssl, status, "%s\n", err.msg);
        return;
    }
    kapi_count(sh, &sh->stats.sessions_active, 1);
    s_stream(c, session);
    close(session);
    kapi_count(sh, &sh->stats.sessions_active, -1);
}
