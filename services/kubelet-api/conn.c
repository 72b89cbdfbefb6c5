// One kubelet API connection (see kapi_internal.h): TLS handshake, the
// request head, the client certificate, then the route.
#include "kapi_internal.h"
#include "tls_ctx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define HEAD_TIMEOUT_MS 10000 // a client that sends no request in this long is dropped

void kapi_count(kapi_shared_t *shared, long *counter, long delta)
{
    pthread_mutex_lock(&shared->stats.lock);
    *counter += delta;
    pthread_mutex_unlock(&shared->stats.lock);
}

// The path cut at '/' into parts (in place); returns how many.
static size_t s_split(char *path, char *parts[], size_t cap)
{
    size_t n = 0;
    for (char *save = NULL, *p = strtok_r(path, "/", &save); p && n < cap;
         p = strtok_r(NULL, "/", &save))
        parts[n++] = p;
    return n;
}

static void s_route(conn_t *c)
{
    kapi_shared_t *sh = c->shared;
    char path[HTTP_HEAD_MAX];
    snprintf(path, sizeof path, "%s", c->req.path);
    char *parts[8];
    size_t n = s_split(path, parts, 8);
    if (n == 1 && strcmp(parts[0], "healthz") == 0) {
        kapi_count(sh, &sh->stats.requests[ROUTE_HEALTHZ], 1);
        http_respond(c->ssl, 200, "text/plain; charset=utf-8", "ok");
        return;
    }
    if (n >= 1 && strcmp(parts[0], "containerLogs") == 0) {
        kapi_count(sh, &sh->stats.requests[ROUTE_LOGS], 1);
        if (strcmp(c->req.method, "GET") != 0) {
            http_respondf(c->ssl, 405, "Method Not Allowed");
            return;
        }
        route_container_logs(c, parts + 1, n - 1);
        return;
    }
    bool exec = n >= 1 && strcmp(parts[0], "exec") == 0;
    if (exec || (n >= 1 && strcmp(parts[0], "attach") == 0)) {
        kapi_count(sh, &sh->stats.requests[exec ? ROUTE_EXEC : ROUTE_ATTACH], 1);
        if (strcmp(c->req.method, "GET") != 0 && strcmp(c->req.method, "POST") != 0) {
            http_respondf(c->ssl, 405, "Method Not Allowed");
            return;
        }
        route_exec(c, parts + 1, n - 1, !exec);
        return;
    }
    if (strcmp(c->req.path, "/stats/summary") == 0 || strcmp(c->req.path, "/stats/summary/") == 0 ||
        strcmp(c->req.path, "/metrics/resource") == 0) {
        kapi_count(sh, &sh->stats.requests[ROUTE_STATS], 1);
        route_stats(c, parts[0][0] == 's' ? "summary" : "resource");
        return;
    }
    if (n == 1 && strcmp(parts[0], "pods") == 0) {
        kapi_count(sh, &sh->stats.requests[ROUTE_STATS], 1);
        route_stats(c, "pods");
        return;
    }
    if (n >= 1 && strcmp(parts[0], "portForward") == 0) {
        kapi_count(sh, &sh->stats.requests[ROUTE_PORT_FORWARD], 1);
        route_port_forward(c, parts + 1, n - 1);
        return;
    }
    kapi_count(sh, &sh->stats.requests[ROUTE_OTHER], 1);
    http_respondf(c->ssl, 404, "404 page not found\n");
}

void conn_serve(kapi_shared_t *shared, int fd)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->shared = shared;
    c->fd = fd;
    // The handshake and head have a deadline; streams set their own later.
    struct timeval tv = {.tv_sec = HEAD_TIMEOUT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    c->ssl = SSL_new(shared->tls);
    int status = 0;
    if (!c->ssl || !SSL_set_fd(c->ssl, fd) || SSL_accept(c->ssl) != 1) {
        vmlet_log_debug(shared->log, NULL, "TLS handshake failed");
        goto out;
    }
    if (http_read_request(c->ssl, fd, HEAD_TIMEOUT_MS, &c->req, &status) < 0) {
        if (status)
            http_respondf(c->ssl, status, "%s\n", "bad request");
        goto out;
    }
    if (shared->settings->client_auth && !tls_client_identity(c->ssl, c->who, sizeof c->who)) {
        // As the kubelet's authentication filter answers.
        kapi_count(shared, &shared->stats.refused_auth, 1);
        vmlet_log_info(shared->log, VMLET_KV({"path", c->req.path}, {"why", c->who}),
                       "refused an unauthenticated request");
        http_respond(c->ssl, 401, "text/plain; charset=utf-8", "Unauthorized\n");
        goto out;
    }
    if (!shared->settings->client_auth)
        snprintf(c->who, sizeof c->who, "anonymous");
    tv.tv_sec = 0; // the routes poll with their own timeouts
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    s_route(c);
out:
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    close(fd);
    free(c);
}
