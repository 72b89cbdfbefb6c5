// A gRPC health server on libnghttp2 in a thread of the test (see
// ts_grpc_health.h): one epoll loop, nghttp2 server sessions fed with
// mem_recv and drained with mem_send.
#include "ts_grpc_health.h"

#include "ts_epoll_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHECK_PATH "/grpc.health.v1.Health/Check"

typedef struct gstream {
    int32_t id;
    char path[128];
    char user_agent[128];
    uint8_t *data;
    size_t len, cap;
    uint8_t resp[16]; // a framed HealthCheckResponse
    size_t resp_len, resp_off;
    bool waiting; // answer at due_us
    int64_t due_us;
    struct gstream *next;
} gstream_t;

typedef struct gconn {
    int fd;
    nghttp2_session *session;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    gstream_t *streams;
    struct gconn *prev, *next;
    struct _ts_grpc_health_t *server;
} gconn_t;

typedef struct service {
    char *name;
    ts_grpc_status_t status;
    size_t calls;
    struct service *next;
} service_t;

struct _ts_grpc_health_t {
    ts_epoll_server_t srv;
    pthread_t thread;
    pthread_mutex_t lock; // services, delay, calls, last_ua
    service_t *services;
    int delay_ms;
    size_t calls;
    char *last_ua;
    gconn_t *conns; // the thread's
};

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static service_t *s_service(ts_grpc_health_t *self, const char *name, bool create)
{
    for (service_t *s = self->services; s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return s;
    if (!create)
        return NULL;
    service_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->name = strdup(name);
    s->status = TS_GRPC_SERVICE_UNKNOWN;
    s->next = self->services;
    self->services = s;
    return s;
}

static gstream_t *s_stream(gconn_t *c, int32_t id)
{
    for (gstream_t *s = c->streams; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

// --- nghttp2 callbacks ---

static int s_on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    (void)session;
    gconn_t *c = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    gstream_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->id = frame->hd.stream_id;
    s->next = c->streams;
    c->streams = s;
    return 0;
}

static int s_on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                       size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                       void *user)
{
    (void)session;
    (void)flags;
    gstream_t *s = s_stream(user, frame->hd.stream_id);
    if (!s)
        return 0;
    char *dst = NULL;
    if (namelen == 5 && memcmp(name, ":path", 5) == 0)
        dst = s->path;
    else if (namelen == 10 && memcmp(name, "user-agent", 10) == 0)
        dst = s->user_agent;
    if (dst) {
        size_t n = valuelen < 127 ? valuelen : 127;
        memcpy(dst, value, n);
        dst[n] = '\0';
    }
    return 0;
}

static int s_on_data(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                     const uint8_t *data, size_t len, void *user)
{
    (void)session;
    (void)flags;
    gstream_t *s = s_stream(user, stream_id);
    if (!s || s->len + len > 65536)
        return 0;
    if (s->len + len > s->cap) {
        s->cap = s->len + len + 64;
        s->data = realloc(s->data, s->cap);
        if (!s->data)
            abort();
    }
    memcpy(s->data + s->len, data, len);
    s->len += len;
    return 0;
}

static ssize_t s_read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                           uint32_t *flags, nghttp2_data_source *source, void *user)
{
    (void)user;
    gstream_t *s = source->ptr;
    size_t n = s->resp_len - s->resp_off;
    if (n > length)
        n = length;
    memcpy(buf, s->resp + s->resp_off, n);
    s->resp_off += n;
    if (s->resp_off == s->resp_len) {
        // The status goes in trailers after the message.
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv trailers[] = {
            {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, NGHTTP2_NV_FLAG_NONE}};
        nghttp2_submit_trailer(session, stream_id, trailers, 1);
    }
    return (ssize_t)n;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }

// Trailers-only: the status in the response's only HEADERS frame.
static void s_answer_status(gconn_t *c, gstream_t *s, const char *code, const char *message)
{
    nghttp2_nv nva[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
                        NV("grpc-status", code), NV("grpc-message", message)};
    nghttp2_submit_response(c->session, s->id, nva, 4, NULL);
}

// Reads HealthCheckRequest.service out of the framed request.
static void s_request_service(const gstream_t *s, char *out, size_t cap)
{
    out[0] = '\0';
    if (s->len < 5)
        return;
    const uint8_t *m = s->data + 5, *end = s->data + s->len;
    while (m < end) {
        uint8_t key = *m++;
        if (key != (1 << 3 | 2) || m >= end)
            return; // the only field a request has; anything else is not ours
        size_t len = 0;
        int shift = 0;
        while (m < end && (*m & 0x80)) {
            len |= (size_t)(*m++ & 0x7f) << shift;
            shift += 7;
        }
        if (m >= end)
            return;
        len |= (size_t)*m++ << shift;
        if (len > (size_t)(end - m) || len >= cap)
            return;
        memcpy(out, m, len);
        out[len] = '\0';
        m += len;
    }
}

static void s_answer(gconn_t *c, gstream_t *s)
{
    ts_grpc_health_t *self = c->server;
    if (strcmp(s->path, CHECK_PATH) != 0) {
        s_answer_status(c, s, "12", "unknown method");
        return;
    }
    char name[256];
    s_request_service(s, name, sizeof name);
    pthread_mutex_lock(&self->lock);
    service_t *svc = s_service(self, name, false);
    ts_grpc_status_t status = svc ? svc->status : TS_GRPC_SERVICE_UNKNOWN;
    pthread_mutex_unlock(&self->lock);
    if (status == TS_GRPC_SERVICE_UNKNOWN) {
        s_answer_status(c, s, "5", "unknown service");
        return;
    }
    // HealthCheckResponse{status}: field 1, varint (a zero is not written).
    uint8_t msg[2] = {1 << 3 | 0, (uint8_t)status};
    size_t msg_len = status ? 2 : 0;
    s->resp[0] = 0;
    s->resp[1] = s->resp[2] = s->resp[3] = 0;
    s->resp[4] = (uint8_t)msg_len;
    memcpy(s->resp + 5, msg, msg_len);
    s->resp_len = 5 + msg_len;
    s->resp_off = 0;
    nghttp2_nv nva[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = s_read_body};
    nghttp2_submit_response(c->session, s->id, nva, 2, &prd);
}

static int s_on_frame(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    (void)session;
    gconn_t *c = user;
    ts_grpc_health_t *self = c->server;
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
        (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS))
        return 0;
    gstream_t *s = s_stream(c, frame->hd.stream_id);
    if (!s)
        return 0;
    char name[256];
    s_request_service(s, name, sizeof name);
    pthread_mutex_lock(&self->lock);
    self->calls++;
    s_service(self, name, true)->calls++;
    free(self->last_ua);
    self->last_ua = strdup(s->user_agent);
    int delay = self->delay_ms;
    pthread_mutex_unlock(&self->lock);
    if (delay > 0) {
        s->waiting = true;
        s->due_us = s_now_us() + (int64_t)delay * 1000;
    } else {
        s_answer(c, s);
    }
    return 0;
}

static int s_on_close(nghttp2_session *session, int32_t stream_id, uint32_t error, void *user)
{
    (void)session;
    (void)error;
    gconn_t *c = user;
    for (gstream_t **pp = &c->streams; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == stream_id) {
            gstream_t *s = *pp;
            *pp = s->next;
            free(s->data);
            free(s);
            break;
        }
    }
    return 0;
}

// --- connections ---

static void s_conn_close(ts_grpc_health_t *self, gconn_t *c)
{
    epoll_ctl(self->srv.epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    nghttp2_session_del(c->session); // calls s_on_close for the streams left
    while (c->streams) {
        gstream_t *s = c->streams;
        c->streams = s->next;
        free(s->data);
        free(s);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        self->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->out);
    free(c);
}

// Sends what nghttp2 has; returns -1 when the connection is done with.
static int s_flush(ts_grpc_health_t *self, gconn_t *c)
{
    const uint8_t *data;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(c->session, &data)) > 0) {
        if (c->out_len + (size_t)n > c->out_cap) {
            c->out_cap = (c->out_len + (size_t)n) * 2;
            c->out = realloc(c->out, c->out_cap);
            if (!c->out)
                abort();
        }
        memcpy(c->out + c->out_len, data, (size_t)n);
        c->out_len += (size_t)n;
    }
    if (n < 0)
        return -1;
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            break;
        if (w <= 0)
            return -1;
        c->out_off += (size_t)w;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    struct epoll_event ev = {.events = EPOLLIN | (c->out_len ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(self->srv.epfd, EPOLL_CTL_MOD, c->fd, &ev);
    if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session) &&
        !c->out_len)
        return -1;
    return 0;
}

static void s_conn_ready(ts_grpc_health_t *self, gconn_t *c)
{
    uint8_t buf[16384];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0 || nghttp2_session_mem_recv(c->session, buf, (size_t)n) < 0) {
            s_conn_close(self, c);
            return;
        }
    }
    if (s_flush(self, c) < 0)
        s_conn_close(self, c);
}

static void s_accept(ts_grpc_health_t *self)
{
    for (;;) {
        int fd = accept4(self->srv.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        gconn_t *c = calloc(1, sizeof *c);
        if (!c)
            abort();
        c->fd = fd;
        c->server = self;
        nghttp2_session_callbacks *cb;
        nghttp2_session_callbacks_new(&cb);
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, s_on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, s_on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, s_on_data);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, s_on_frame);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, s_on_close);
        nghttp2_session_server_new(&c->session, cb, c);
        nghttp2_session_callbacks_del(cb);
        nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
        nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, 1);
        c->next = self->conns;
        if (self->conns)
            self->conns->prev = c;
        self->conns = c;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(self->srv.epfd, EPOLL_CTL_ADD, fd, &ev);
        if (s_flush(self, c) < 0)
            s_conn_close(self, c);
    }
}

// Answers the delayed calls now due; returns ms until the next (-1: none).
static int s_due(ts_grpc_health_t *self)
{
    int64_t now = s_now_us(), next = -1;
    gconn_t *c = self->conns;
    while (c) {
        gconn_t *following = c->next;
        bool answered = false;
        for (gstream_t *s = c->streams; s; s = s->next) {
            if (!s->waiting)
                continue;
            if (s->due_us <= now) {
                s->waiting = false;
                s_answer(c, s);
                answered = true;
            } else if (next < 0 || s->due_us < next) {
                next = s->due_us;
            }
        }
        if (answered && s_flush(self, c) < 0)
            s_conn_close(self, c);
        c = following;
    }
    return next < 0 ? -1 : (int)((next - now + 999) / 1000);
}

static void *s_run(void *arg)
{
    ts_grpc_health_t *self = arg;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(self->srv.epfd, evs, 64, s_due(self));
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == (void *)-1)
                continue;
            if (p == NULL) {
                s_accept(self);
            } else if (p == (void *)self) {
                return NULL;
            } else {
                s_conn_ready(self, p);
                for (int j = i + 1; j < n; j++) // it may be freed: no later event of it
                    if (evs[j].data.ptr == p)
                        evs[j].data.ptr = (void *)-1;
            }
        }
    }
}

ts_grpc_health_t *ts_grpc_health_start(void)
{
    ts_grpc_health_t *self = calloc(1, sizeof *self);
    if (!self)
        abort();
    pthread_mutex_init(&self->lock, NULL);
    s_service(self, "", true)->status = TS_GRPC_SERVING; // as grpc-go's health server starts
    if (ts_epoll_server_open(&self->srv, 1024, self, "ts_grpc_health") < 0) {
        free(self);
        return NULL;
    }
    if (pthread_create(&self->thread, NULL, s_run, self) != 0) {
        fprintf(stderr, "ts_grpc_health: pthread_create failed\n");
        ts_epoll_server_close(&self->srv);
        return NULL; // the service list leaks with it: a test that cannot start fails anyway
    }
    return self;
}

int ts_grpc_health_port(const ts_grpc_health_t *self)
{
    return self->srv.port;
}

void ts_grpc_health_stop(ts_grpc_health_t **self_p)
{
    ts_grpc_health_t *self = *self_p;
    if (!self)
        return;
    ts_epoll_server_wake(&self->srv, "ts_grpc_health");
    pthread_join(self->thread, NULL);
    while (self->conns)
        s_conn_close(self, self->conns);
    ts_epoll_server_close(&self->srv);
    while (self->services) {
        service_t *s = self->services;
        self->services = s->next;
        free(s->name);
        free(s);
    }
    free(self->last_ua);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

void ts_grpc_health_set(ts_grpc_health_t *self, const char *service, ts_grpc_status_t status)
{
    pthread_mutex_lock(&self->lock);
    s_service(self, service, true)->status = status;
    pthread_mutex_unlock(&self->lock);
}

void ts_grpc_health_set_delay(ts_grpc_health_t *self, int delay_ms)
{
    pthread_mutex_lock(&self->lock);
    self->delay_ms = delay_ms;
    pthread_mutex_unlock(&self->lock);
}

size_t ts_grpc_health_calls(ts_grpc_health_t *self, const char *service)
{
    pthread_mutex_lock(&self->lock);
    service_t *s = service ? s_service(self, service, false) : NULL;
    size_t n = service ? (s ? s->calls : 0) : self->calls;
    pthread_mutex_unlock(&self->lock);
    return n;
}

char *ts_grpc_health_last_user_agent(ts_grpc_health_t *self)
{
    pthread_mutex_lock(&self->lock);
    char *ua = self->last_ua ? strdup(self->last_ua) : NULL;
    pthread_mutex_unlock(&self->lock);
    return ua;
}
