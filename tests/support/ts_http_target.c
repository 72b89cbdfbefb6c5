// A fast loopback HTTP/1.1 server in a thread of the test (see
// ts_http_target.h): one epoll loop, one request per connection.
#include "ts_http_target.h"

#include "ts_epoll_server.h"
#include "vmlet/http_status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQUEST 65536

typedef struct route {
    char *path;
    ts_http_route_t r;
    char *location, *body;
    struct route *next;
} route_t;

typedef enum { CONN_READING, CONN_WAITING, CONN_WRITING, CONN_HOLDING } conn_state_t;

typedef struct conn {
    int fd;
    conn_state_t state;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off;
    int64_t due_us;        // CONN_WAITING: when to answer
    bool hold_after_write; // keep it open once the (partial) answer is out
    struct conn *prev, *next;
} conn_t;

struct _ts_http_target_t {
    ts_epoll_server_t srv;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock; // routes, requests, n_open
    route_t *routes;
    ts_http_request_t *reqs;
    size_t n_reqs, cap_reqs;
    size_t n_open;
    conn_t *conns; // owned by the thread
};

int64_t ts_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static char *s_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        abort();
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

// --- connections ---

static void s_conn_close(ts_http_target_t *self, conn_t *c)
{
    epoll_ctl(self->srv.epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        self->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->in);
    free(c->out);
    free(c);
    pthread_mutex_lock(&self->lock);
    self->n_open--;
    pthread_mutex_unlock(&self->lock);
}

// Writes what it can; closes when all is out (or the peer is gone).
static void s_conn_write(ts_http_target_t *self, conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
            epoll_ctl(self->srv.epfd, EPOLL_CTL_MOD, c->fd, &ev);
            c->state = CONN_WRITING;
            return;
        }
        if (n <= 0)
            break; // the client went away (a probe that read enough)
        c->out_off += (size_t)n;
    }
    if (c->hold_after_write && c->out_off == c->out_len) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(self->srv.epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->state = CONN_HOLDING;
        return;
    }
    s_conn_close(self, c);
}

static void s_build_response(conn_t *c, const route_t *rt)
{
    int status = rt && rt->r.status ? rt->r.status : 200;
    size_t body_len =
        rt && rt->r.body_size ? rt->r.body_size : strlen(rt && rt->body ? rt->body : "ok");
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%s%s%s\r\n",
                     status, vmlet_http_reason(status, "Status"), body_len,
                     rt && rt->location ? "Location: " : "", rt && rt->location ? rt->location : "",
                     rt && rt->location ? "\r\n" : "");
    c->out = malloc((size_t)n + body_len);
    if (!c->out)
        abort();
    memcpy(c->out, head, (size_t)n);
    if (rt && rt->r.body_size)
        memset(c->out + n, 'x', body_len);
    else
        memcpy(c->out + n, rt && rt->body ? rt->body : "ok", body_len);
    c->out_len = (size_t)n + body_len;
    if (rt && rt->r.stall_body) {
        c->out_len = (size_t)n + body_len / 2;
        c->hold_after_write = true;
    }
}

static const route_t *s_route_find(ts_http_target_t *self, const char *path, size_t len)
{
    for (const route_t *r = self->routes; r; r = r->next)
        if (strlen(r->path) == len && memcmp(r->path, path, len) == 0)
            return r;
    return NULL;
}

// A request's header is complete in c->in: record it and answer as its
// route says.
static void s_conn_request(ts_http_target_t *self, conn_t *c, size_t head_len)
{
    int64_t now = ts_mono_us();
    const char *in = c->in, *line_end = strstr(in, "\r\n");
    const char *sp1 = memchr(in, ' ', (size_t)(line_end - in));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1)) : NULL;
    if (!sp1 || !sp2) {
        s_conn_close(self, c);
        return;
    }
    ts_http_request_t req = {
        .method = s_strndup(in, (size_t)(sp1 - in)),
        .path = s_strndup(sp1 + 1, (size_t)(sp2 - sp1 - 1)),
        .headers = s_strndup(line_end + 2, head_len - (size_t)(line_end + 2 - in)),
        .arrival_us = now,
    };
    size_t path_len = strcspn(req.path, "?");
    pthread_mutex_lock(&self->lock);
    if (self->n_reqs == self->cap_reqs) {
        self->cap_reqs = self->cap_reqs ? self->cap_reqs * 2 : 1024;
        self->reqs = realloc(self->reqs, self->cap_reqs * sizeof *self->reqs);
        if (!self->reqs)
            abort();
    }
    self->reqs[self->n_reqs++] = req;
    const route_t *rt = s_route_find(self, req.path, path_len);
    route_t copy = rt ? *rt : (route_t){0};
    if (rt) { // the route may change once the lock is let go
        copy.location = rt->location ? strdup(rt->location) : NULL;
        copy.body = rt->body ? strdup(rt->body) : NULL;
    }
    pthread_mutex_unlock(&self->lock);
    if (copy.r.never_answer) {
        c->state = CONN_HOLDING;
    } else if (copy.r.hang_up) {
        s_conn_close(self, c);
    } else {
        s_build_response(c, rt ? &copy : NULL);
        if (copy.r.delay_ms > 0) {
            c->state = CONN_WAITING;
            c->due_us = now + (int64_t)copy.r.delay_ms * 1000;
        } else {
            s_conn_write(self, c);
        }
    }
    free(copy.location);
    free(copy.body);
}

static void s_conn_read(ts_http_target_t *self, conn_t *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 2048) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 4096;
            c->in = realloc(c->in, c->in_cap);
            if (!c->in)
                abort();
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) { // the client closed (or broke): nothing more to do for it
            s_conn_close(self, c);
            return;
        }
        if (c->state != CONN_READING)
            continue; // a held connection: drain and wait for the close
        c->in_len += (size_t)n;
        c->in[c->in_len] = '\0';
        char *end = strstr(c->in, "\r\n\r\n");
        if (end) {
            s_conn_request(self, c, (size_t)(end + 4 - c->in));
            return; // c may be gone
        }
        if (c->in_len > MAX_REQUEST) {
            s_conn_close(self, c);
            return;
        }
    }
}

static void s_accept(ts_http_target_t *self)
{
    for (;;) {
        int fd = accept4(self->srv.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; // EAGAIN, or out of descriptors: try again on the next wake
        conn_t *c = calloc(1, sizeof *c);
        if (!c)
            abort();
        c->fd = fd;
        c->next = self->conns;
        if (self->conns)
            self->conns->prev = c;
        self->conns = c;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(self->srv.epfd, EPOLL_CTL_ADD, fd, &ev);
        pthread_mutex_lock(&self->lock);
        self->n_open++;
        pthread_mutex_unlock(&self->lock);
    }
}

// Answers the delayed responses now due; returns ms until the next one (-1: none).
static int s_due(ts_http_target_t *self)
{
    int64_t now = ts_mono_us(), next = -1;
    conn_t *c = self->conns;
    while (c) {
        conn_t *following = c->next;
        if (c->state == CONN_WAITING) {
            if (c->due_us <= now)
                s_conn_write(self, c);
            else if (next < 0 || c->due_us < next)
                next = c->due_us;
        }
        c = following;
    }
    return next < 0 ? -1 : (int)((next - now + 999) / 1000);
}

static void *s_run(void *arg)
{
    ts_http_target_t *self = arg;
    struct epoll_event evs[256];
    for (;;) {
        int timeout = s_due(self);
        int n = epoll_wait(self->srv.epfd, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == (void *)-1)
                continue; // its connection was closed earlier in this batch
            if (evs[i].data.ptr == NULL) {
                s_accept(self);
            } else if (evs[i].data.ptr == (void *)self) {
                return NULL; // stop
            } else {
                conn_t *c = evs[i].data.ptr;
                if (c->state == CONN_WRITING)
                    s_conn_write(self, c);
                else
                    s_conn_read(self, c);
                // The connection may be freed now; a later event of this
                // batch must not touch it (one event per fd per wait anyway).
                for (int j = i + 1; j < n; j++)
                    if (evs[j].data.ptr == c)
                        evs[j].data.ptr = (void *)-1;
            }
        }
    }
}

ts_http_target_t *ts_http_target_start(void)
{
    ts_http_target_t *self = calloc(1, sizeof *self);
    if (!self)
        abort();
    pthread_mutex_init(&self->lock, NULL);
    if (ts_epoll_server_open(&self->srv, 4096, self, "ts_http_target") < 0) {
        free(self);
        return NULL;
    }
    if (pthread_create(&self->thread, NULL, s_run, self) != 0) {
        fprintf(stderr, "ts_http_target: pthread_create failed\n");
        ts_epoll_server_close(&self->srv);
        free(self);
        return NULL;
    }
    self->running = true;
    return self;
}

int ts_http_target_port(const ts_http_target_t *self)
{
    return self->srv.port;
}

static void s_route_free(route_t *r)
{
    free(r->path);
    free(r->location);
    free(r->body);
    free(r);
}

void ts_http_target_stop(ts_http_target_t **self_p)
{
    ts_http_target_t *self = *self_p;
    if (!self)
        return;
    ts_epoll_server_wake(&self->srv, "ts_http_target");
    pthread_join(self->thread, NULL);
    while (self->conns)
        s_conn_close(self, self->conns);
    ts_epoll_server_close(&self->srv);
    while (self->routes) {
        route_t *r = self->routes;
        self->routes = r->next;
        s_route_free(r);
    }
    ts_http_requests_free(self->reqs, self->n_reqs);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

void ts_http_target_route(ts_http_target_t *self, const char *path, const ts_http_route_t *route)
{
    pthread_mutex_lock(&self->lock);
    for (route_t **pp = &self->routes; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->path, path) == 0) {
            route_t *old = *pp;
            *pp = old->next;
            s_route_free(old);
            break;
        }
    }
    if (route) {
        route_t *r = calloc(1, sizeof *r);
        if (!r)
            abort();
        r->path = strdup(path);
        r->r = *route;
        r->location = route->location ? strdup(route->location) : NULL;
        r->body = route->body ? strdup(route->body) : NULL;
        r->r.location = r->r.body = NULL; // the copies above are the ones used
        r->next = self->routes;
        self->routes = r;
    }
    pthread_mutex_unlock(&self->lock);
}

static bool s_path_is(const char *req_path, const char *path)
{
    size_t n = strcspn(req_path, "?");
    return !path || (strlen(path) == n && memcmp(req_path, path, n) == 0);
}

size_t ts_http_target_count(ts_http_target_t *self, const char *path)
{
    size_t n = 0;
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->n_reqs; i++)
        n += s_path_is(self->reqs[i].path, path);
    pthread_mutex_unlock(&self->lock);
    return n;
}

size_t ts_http_target_requests(ts_http_target_t *self, const char *path, ts_http_request_t **out)
{
    pthread_mutex_lock(&self->lock);
    ts_http_request_t *copy = calloc(self->n_reqs + 1, sizeof *copy);
    if (!copy)
        abort();
    size_t n = 0;
    for (size_t i = 0; i < self->n_reqs; i++) {
        const ts_http_request_t *r = &self->reqs[i];
        if (!s_path_is(r->path, path))
            continue;
        copy[n++] = (ts_http_request_t){strdup(r->method), strdup(r->path), strdup(r->headers),
                                        r->arrival_us};
    }
    pthread_mutex_unlock(&self->lock);
    *out = copy;
    return n;
}

void ts_http_requests_free(ts_http_request_t *reqs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(reqs[i].method);
        free(reqs[i].path);
        free(reqs[i].headers);
    }
    free(reqs);
}

void ts_http_target_clear(ts_http_target_t *self)
{
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->n_reqs; i++) {
        free(self->reqs[i].method);
        free(self->reqs[i].path);
        free(self->reqs[i].headers);
    }
    self->n_reqs = 0;
    pthread_mutex_unlock(&self->lock);
}

size_t ts_http_target_open_connections(ts_http_target_t *self)
{
    pthread_mutex_lock(&self->lock);
    size_t n = self->n_open;
    pthread_mutex_unlock(&self->lock);
    return n;
}

char *ts_http_request_header_n(const ts_http_request_t *req, const char *name, int n)
{
    size_t name_len = strlen(name);
    for (const char *line = req->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        if (!end)
            end = line + strlen(line);
        if ((size_t)(end - line) > name_len && line[name_len] == ':' &&
            strncasecmp(line, name, name_len) == 0 && n-- == 0) {
            const char *v = line + name_len + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            return s_strndup(v, (size_t)(end - v));
        }
        line = *end ? end + 2 : end;
    }
    return NULL;
}

char *ts_http_request_header(const ts_http_request_t *req, const char *name)
{
    return ts_http_request_header_n(req, name, 0);
}
