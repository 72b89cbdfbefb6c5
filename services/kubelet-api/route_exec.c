// POST|GET /exec/{namespace}/{pod}/{container}?command=..&input=1&output=1&error=1&tty=1
// and /attach/...: the process's streams over an upgraded connection
// (SPDY/3.1 or WebSocket), joined to a session with the pod's launcher.
#include "remotecommand.h"
#include "session_client.h"

#include "vmlet/pod_store.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_ARGS 256

// The SPDY protocols we speak, best first.
static const char *const spdy_protocols[] = {"v4.channel.k8s.io", "v3.channel.k8s.io",
                                             "v2.channel.k8s.io", "channel.k8s.io"};

static int s_version_of(const char *name)
{
    return name[0] == 'v' ? name[1] - '0' : 1;
}

// The client's offer, from every X-Stream-Protocol-Version header (one per
// value, or comma-separated). Returns the best we share, "" when the
// client offered none (the first protocol), NULL when we share none.
static const char *s_pick_spdy(const http_request_t *req)
{
    bool offered = false;
    for (size_t k = 0; k < sizeof spdy_protocols / sizeof spdy_protocols[0]; k++)
        for (size_t i = 0; i < req->n_headers; i++) {
            if (strcasecmp(req->headers[i].name, "X-Stream-Protocol-Version") != 0)
                continue;
            offered = true;
            if (http_header_has(req, "X-Stream-Protocol-Version", spdy_protocols[k]))
                return spdy_protocols[k];
        }
    return offered ? NULL : "";
}

// Query flags as the kubelet reads them: "1" or "true".
static bool s_flag(const http_request_t *req, const char *name)
{
    return http_query_bool(req, name);
}

static void s_upgrade_spdy(remotecommand_t *rc)
{
    const char *chosen = s_pick_spdy(&rc->c->req);
    if (!chosen) {
        http_respondf(rc->c->ssl, 403,
                      "unable to upgrade: unable to negotiate protocol: server accepts "
                      "[v4.channel.k8s.io v3.channel.k8s.io v2.channel.k8s.io channel.k8s.io]\n");
        return;
    }
    rc->protocol_name = chosen[0] ? chosen : "channel.k8s.io";
    rc->version = s_version_of(rc->protocol_name);
    char head[400];
    int n =
        snprintf(head, sizeof head,
                 "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                 "Upgrade: SPDY/3.1\r\n%s%s%s\r\n",
                 chosen[0] ? "X-Stream-Protocol-Version: " : "", chosen, chosen[0] ? "\r\n" : "");
    if (http_write(rc->c->ssl, head, (size_t)n))
        remotecommand_spdy(rc);
}

static void s_upgrade_ws(remotecommand_t *rc)
{
    const http_request_t *req = &rc->c->req;
    vmlet_ws_request_t wr = {
        .method = req->method,
        .upgrade = http_header(req, "Upgrade"),
        .connection = http_header(req, "Connection"),
        .key = http_header(req, "Sec-WebSocket-Key"),
        .version = http_header(req, "Sec-WebSocket-Version"),
        .protocols = http_header(req, "Sec-WebSocket-Protocol"),
    };
    vmlet_ws_handshake_t hs = {0};
    vmlet_err_t err = {0};
    int rc_hs = vmlet_ws_handshake(&wr, &hs, &err);
    bool sent = hs.response && http_write(rc->c->ssl, hs.response, strlen(hs.response));
    free(hs.response);
    if (rc_hs < 0 || !sent)
        return;
    rc->protocol_name = hs.proto->name;
    rc->version = hs.proto->version;
    remotecommand_ws(rc, hs.proto);
}

void route_exec(conn_t *c, char *const parts[], size_t n_parts, bool attach)
{
    kapi_shared_t *sh = c->shared;
    // {ns}/{pod}/{container} or {ns}/{pod}/{uid}/{container}, as the kubelet routes.
    if (n_parts != 3 && n_parts != 4) {
        http_respondf(c->ssl, 400, "expected /%s/{namespace}/{pod}/{container}\n",
                      attach ? "attach" : "exec");
        return;
    }
    const char *ns = parts[0], *pod = parts[1], *container = parts[n_parts - 1];
    remotecommand_t rc = {.c = c, .session = -1};
    rc.stdin_ = s_flag(&c->req, "input") || s_flag(&c->req, "stdin");
    rc.stdout_ = s_flag(&c->req, "output") || s_flag(&c->req, "stdout");
    rc.stderr_ = s_flag(&c->req, "error") || s_flag(&c->req, "stderr");
    rc.tty = s_flag(&c->req, "tty");
    if (rc.tty)
        rc.stderr_ = false; // a terminal has one output, as the kubelet decides
    if (!rc.stdin_ && !rc.stdout_ && !rc.stderr_) {
        http_respondf(c->ssl, 400, "you must specify at least 1 of stdin, stdout, stderr\n");
        return;
    }
    char *argv[MAX_ARGS];
    size_t argc = 0;
    char arg[4096];
    while (!attach && argc < MAX_ARGS && http_query(&c->req, "command", (int)argc, arg, sizeof arg))
        argv[argc++] = vmlet_xstrdup(arg);
    if (!attach && argc == 0) {
        http_respondf(c->ssl, 400, "you must specify at least one command for the container\n");
        return;
    }
    bool spdy = http_header_has(&c->req, "Upgrade", "SPDY/3.1");
    bool ws = http_header_has(&c->req, "Upgrade", "websocket");
    vmlet_err_t err = {0};
    vmlet_store_t *store = NULL;
    char uid[128];
    int found = -1, status = 0;
    if (!spdy && !ws) {
        http_respondf(c->ssl, 400, "Upgrade request required\n");
        goto out;
    }
    store = vmlet_store_new(sh->redis_url, sh->redis_password, NULL, NULL, &err);
    found = store ? vmlet_pod_store_uid_of(store, ns, pod, uid, sizeof uid, &err) : -1;
    if (found <= 0) {
        if (found == 0)
            http_respondf(c->ssl, 404, "pod does not exist\n");
        else
            http_respondf(c->ssl, 503, "cannot read pods: %s\n", err.msg);
        goto out;
    }
    Vmlet__SessionOpen open = VMLET__SESSION_OPEN__INIT;
    open.has_kind = 1;
    open.kind = attach ? VMLET__SESSION_KIND__SESSION_ATTACH : VMLET__SESSION_KIND__SESSION_EXEC;
    open.pod_uid = uid;
    open.container = (char *)container;
    open.command = argv, open.n_command = argc;
    open.has_stdin = 1, open.stdin = rc.stdin_;
    open.has_stdout = 1, open.stdout = rc.stdout_;
    open.has_stderr = 1, open.stderr = rc.stderr_;
    open.has_tty = 1, open.tty = rc.tty;
    rc.session = session_connect(store, &open, &status, &err);
    if (rc.session == SESSION_NO_VM) {
        http_respondf(c->ssl, 400,
                      "container \"%s\" in pod \"%s\" is waiting to start: "
                      "ContainerCreating\n",
                      container, pod);
        goto out;
    }
    if (rc.session < 0) {
        http_respondf(c->ssl, status, "%s\n", err.msg);
        goto out;
    }
    kapi_count(sh, &sh->stats.sessions_active, 1);
    if (spdy)
        s_upgrade_spdy(&rc);
    else
        s_upgrade_ws(&rc);
    close(rc.session); // the launcher ends the process if it still runs
    session_outbox_free(&rc.outbox);
    kapi_count(sh, &sh->stats.sessions_active, -1);
out:
    vmlet_store_destroy(&store);
    for (size_t i = 0; i < argc; i++)
        free(argv[i]);
}
