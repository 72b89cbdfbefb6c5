// A small non-blocking HTTP/1.1 server on the service's zloop (see http_server.h).
//
// Each connection is a little state machine: READING the request head,
// WRITING the response, then LINGERING (write side shut, reading and
// discarding until the client closes) so that unread request bytes do not
// turn our close into a reset that destroys the response in flight.
#include "vmlet/http_server.h"
#include "vmlet/http_status.h"
#include "vmlet/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>

#define HEAD_MAX 8192        // request head limit, in bytes
#define IDLE_TIMEOUT_MS 5000 // to receive a whole head, or between write progress
#define LINGER_MS 1000       // after the response, for the client to close
#define SWEEP_MS 250         // how often deadlines are checked
#define MAX_CONNS 512        // beyond this, new clients wait in the backlog
#define ACCEPT_BATCH 64      // accepts per wakeup, so clients already in get served too
#define ACCEPT_RETRY_MS 1000 // pause after running out of fds
#define CONTENT_TYPE_MAX 200 // longer handler content types fall back to the default
#define DEFAULT_TYPE "text/plain; charset=utf-8"

typedef enum { CONN_READING, CONN_WRITING, CONN_LINGERING } conn_state_t;

typedef struct _conn_t conn_t;
struct _conn_t {
    vmlet_http_server_t *server;
    conn_t *prev, *next;
    int fd;
    short events; // what the loop polls this fd for
    conn_state_t state;
    int64_t deadline; // zclock_mono() ms
    size_t in_len;
    char in[HEAD_MAX + 1];
    char head[CONTENT_TYPE_MAX + 200];
    size_t head_len;
    char *body;
    size_t body_len;
    size_t sent; // of head + body
};

typedef struct {
    char *path;
    vmlet_http_handler_fn *handler;
    void *arg;
} route_t;

struct _vmlet_http_server_t {
    vmlet_log_t *log;
    int fd; // listening socket
    int port;
    // What was bound, port 0 resolved: "HOST:PORT" or "[V6]:PORT".
    char address[INET6_ADDRSTRLEN + 8];
    zloop_t *loop;         // NULL until attached
    int timer_fd;          // deadline sweeps; -1 until attached
    bool accepting;        // the listening socket is in the loop
    int64_t accept_resume; // when to accept again after running out of fds
    route_t *routes;
    size_t n_routes;
    conn_t *conns;
    size_t n_conns;
};

// Pollers rather than zloop timers throughout: a timer handler runs before
// the loop's copies of pollers whose args it might free, and a timer ended
// before the loop first runs lingers on a list zloop_destroy asserts empty.
static int s_poll(zloop_t *loop, int fd, short events, zloop_fn *handler, void *arg)
{
    zmq_pollitem_t item = {NULL, fd, events, 0};
    if (zloop_poller(loop, &item, handler, arg) < 0)
        return -1;
    // We handle errors on the fd ourselves; zloop would drop the poller silently.
    zloop_poller_set_tolerant(loop, &item);
    return 0;
}

static void s_unpoll(zloop_t *loop, int fd)
{
    zmq_pollitem_t item = {NULL, fd, 0, 0};
    zloop_poller_end(loop, &item);
}

// The socket's own address as "HOST:PORT" (IPv6 in brackets), so a
// listen spec with port 0 is reported with the port the kernel chose.
static int s_bound_address(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    char host[INET6_ADDRSTRLEN];
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
        return -1;
    if (addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&addr;
        if (!inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host))
            return -1;
        snprintf(buf, cap, "[%s]:%d", host, ntohs(in6->sin6_port));
    } else {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)&addr;
        if (!inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host))
            return -1;
        snprintf(buf, cap, "%s:%d", host, ntohs(in4->sin_port));
    }
    return 0;
}

vmlet_http_server_t *vmlet_http_server_new(const char *listen, vmlet_log_t *log, vmlet_err_t *err)
{
    vmlet_http_server_t *self = calloc(1, sizeof *self);
    if (!self) {
        vmlet_err_set(err, "http server: out of memory");
        return NULL;
    }
    self->log = log;
    self->timer_fd = -1;
    self->fd = vmlet_tcp_listen(listen, err);
    if (self->fd < 0) {
        free(self);
        return NULL;
    }
    self->port = vmlet_tcp_bound_port(self->fd);
    if (s_bound_address(self->fd, self->address, sizeof self->address) < 0) {
        vmlet_err_errno(err, errno, "listen '%s': getsockname", listen);
        close(self->fd);
        free(self);
        return NULL;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", self->port);
    vmlet_log_info(log, VMLET_KV({"listen", listen}, {"address", self->address}, {"port", port}),
                   "http server listening");
    return self;
}

const char *vmlet_http_server_address(const vmlet_http_server_t *self)
{
    return self ? self->address : "";
}

int vmlet_http_server_port(const vmlet_http_server_t *self)
{
    return self ? self->port : -1;
}

int vmlet_http_server_route(vmlet_http_server_t *self, const char *path,
                            vmlet_http_handler_fn *handler, void *arg)
{
    if (!self || !path || path[0] != '/' || !handler)
        return -1;
    for (size_t i = 0; i < self->n_routes; i++)
        if (strcmp(self->routes[i].path, path) == 0) {
            self->routes[i].handler = handler; // the later registration wins
            self->routes[i].arg = arg;
            return 0;
        }
    route_t *routes = realloc(self->routes, (self->n_routes + 1) * sizeof *routes);
    if (!routes)
        return -1;
    self->routes = routes;
    char *copy = strdup(path);
    if (!copy)
        return -1;
    routes[self->n_routes++] = (route_t){copy, handler, arg};
    return 0;
}

static const route_t *s_find_route(const vmlet_http_server_t *self, const char *path)
{
    for (size_t i = 0; i < self->n_routes; i++)
        if (strcmp(self->routes[i].path, path) == 0)
            return &self->routes[i];
    return NULL;
}

// ---------------------------------------------------------------------------
// Connections

static void s_conn_close(conn_t *conn)
{
    vmlet_http_server_t *server = conn->server;
    if (server->loop)
        s_unpoll(server->loop, conn->fd);
    close(conn->fd);
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        server->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    server->n_conns--;
    free(conn->body);
    free(conn);
}

static int s_conn_ready(zloop_t *loop, zmq_pollitem_t *item, void *arg);
static void s_accept_resume(vmlet_http_server_t *self);

// Polls the connection for `events`; the loop cannot change a poller's
// events in place, so it is replaced. Returns -1 (conn closed) on failure.
static int s_conn_watch(conn_t *conn, short events)
{
    if (conn->events == events)
        return 0;
    zloop_t *loop = conn->server->loop;
    s_unpoll(loop, conn->fd);
    conn->events = events;
    if (s_poll(loop, conn->fd, events, s_conn_ready, conn) < 0) {
        s_conn_close(conn);
        return -1;
    }
    return 0;
}

static void s_conn_write(conn_t *conn);

// Takes the response over (body included) and starts sending it. `head_only`
// keeps Content-Length but sends no body (HEAD).
static void s_conn_respond(conn_t *conn, vmlet_http_response_t *response, bool head_only)
{
    int status = response->status;
    if (status < 100 || status > 599)
        status = 500;
    const char *type = response->content_type;
    // A CR or LF from a handler would let it inject headers.
    if (!type || !*type || strlen(type) > CONTENT_TYPE_MAX || strpbrk(type, "\r\n"))
        type = DEFAULT_TYPE;
    size_t body_len = response->body ? response->body_len : 0;
    int n = snprintf(conn->head, sizeof conn->head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%s\r\n",
                     status, vmlet_http_reason(status, "Status"), type, body_len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "");
    conn->head_len = n > 0 && (size_t)n < sizeof conn->head ? (size_t)n : 0;
    if (head_only) {
        free(response->body);
        body_len = 0;
    } else {
        conn->body = response->body;
    }
    response->body = NULL;
    conn->body_len = body_len;
    conn->sent = 0;
    conn->state = CONN_WRITING;
    conn->deadline = zclock_mono() + IDLE_TIMEOUT_MS;
    s_conn_write(conn);
}

static void s_conn_error(conn_t *conn, int status, const char *text)
{
    vmlet_http_response_t response = {.status = status};
    response.body = strdup(text); // without it the client still gets the status
    response.body_len = response.body ? strlen(text) : 0;
    s_conn_respond(conn, &response, false);
}

static bool s_is_token_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

// Splits the request line in conn->in (NUL-terminating its parts). Returns
// false when it is not "METHOD /target HTTP/1.x".
// The value of a header (name in lower case) among the header lines that
// start at `lines`, cut out in place; "" if absent.
static const char *s_header(char *lines, const char *name)
{
    size_t n = strlen(name);
    for (char *line = lines; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r')
            line[--len] = '\0';
        if (len > n && line[n] == ':' && strncasecmp(line, name, n) == 0) {
            char *value = line + n + 1;
            while (*value == ' ' || *value == '\t')
                value++;
            return value;
        }
        line = next;
    }
    return "";
}

static bool s_parse_request(conn_t *conn, vmlet_http_request_t *request)
{
    if (memchr(conn->in, '\0', conn->in_len))
        return false;
    conn->in[conn->in_len] = '\0';
    char *method = conn->in;
    char *eol = strchr(method, '\n');
    *eol = '\0';
    if (eol > method && eol[-1] == '\r')
        eol[-1] = '\0';
    char *target = strchr(method, ' ');
    char *version = target ? strchr(target + 1, ' ') : NULL;
    if (!version)
        return false;
    *target++ = '\0';
    *version++ = '\0';
    bool ok = *method && strlen(method) <= 16 && target[0] == '/' &&
              strncmp(version, "HTTP/1.", 7) == 0 && (version[7] == '0' || version[7] == '1') &&
              version[8] == '\0';
    for (const char *p = method; ok && *p; p++)
        ok = s_is_token_char(*p);
    for (const unsigned char *p = (const unsigned char *)target; ok && *p; p++)
        ok = *p > 0x20 && *p != 0x7f;
    if (!ok)
        return false;
    char *query = strchr(target, '?');
    if (query)
        *query++ = '\0';
    *request = (vmlet_http_request_t){method, target, query ? query : "",
                                      s_header(eol + 1, "authorization")};
    return true;
}

static void s_conn_dispatch(conn_t *conn)
{
    vmlet_http_request_t request;
    if (!s_parse_request(conn, &request)) {
        s_conn_error(conn, 400, "bad request\n");
        return;
    }
    const route_t *route = s_find_route(conn->server, request.path);
    bool head = strcmp(request.method, "HEAD") == 0;
    if (!route)
        s_conn_error(conn, 404, "not found\n");
    else if (!head && strcmp(request.method, "GET") != 0)
        s_conn_error(conn, 405, "method not allowed\n");
    else {
        vmlet_http_response_t response = {.status = 200};
        route->handler(route->arg, &request, &response);
        s_conn_respond(conn, &response, head);
    }
}

static bool s_head_complete(const conn_t *conn)
{
    return memmem(conn->in, conn->in_len, "\r\n\r\n", 4) ||
           memmem(conn->in, conn->in_len, "\n\n", 2);
}

static void s_conn_read(conn_t *conn)
{
    for (;;) {
        ssize_t n = recv(conn->fd, conn->in + conn->in_len, HEAD_MAX - conn->in_len, 0);
        if (n > 0) {
            conn->in_len += (size_t)n;
            if (s_head_complete(conn))
                s_conn_dispatch(conn);
            else if (conn->in_len == HEAD_MAX)
                s_conn_error(conn, 400, "request head too large (limit 8 KiB)\n");
            else
                continue;
            return;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        s_conn_close(conn); // the client went away before asking anything
        return;
    }
}

// Response sent: shut our side and wait (briefly) for the client to close.
static void s_conn_linger(conn_t *conn)
{
    shutdown(conn->fd, SHUT_WR);
    free(conn->body);
    conn->body = NULL;
    conn->state = CONN_LINGERING;
    conn->deadline = zclock_mono() + LINGER_MS;
    s_conn_watch(conn, ZMQ_POLLIN);
}

static void s_conn_write(conn_t *conn)
{
    size_t total = conn->head_len + conn->body_len;
    while (conn->sent < total) {
        struct iovec iov[2];
        int n_iov = 0;
        if (conn->sent < conn->head_len)
            iov[n_iov++] = (struct iovec){conn->head + conn->sent, conn->head_len - conn->sent};
        size_t body_off = conn->sent > conn->head_len ? conn->sent - conn->head_len : 0;
        if (conn->body_len > body_off)
            iov[n_iov++] = (struct iovec){conn->body + body_off, conn->body_len - body_off};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n_iov};
        // MSG_NOSIGNAL: a client that hung up must not kill the service with SIGPIPE.
        ssize_t n = sendmsg(conn->fd, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            s_conn_watch(conn, ZMQ_POLLOUT); // a slow reader: wait for room
            return;
        }
        if (n < 0) {
            s_conn_close(conn);
            return;
        }
        conn->sent += (size_t)n;
        conn->deadline = zclock_mono() + IDLE_TIMEOUT_MS;
    }
    s_conn_linger(conn);
}

// Reads and drops whatever the client still sends, until it closes.
static void s_conn_drain(conn_t *conn)
{
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(conn->fd, conn->in, HEAD_MAX, 0);
        if (n > 0 || (n < 0 && errno == EINTR))
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break;
    }
    s_conn_close(conn); // closed, failed, or still talking after 128 KiB
}

static int s_conn_ready(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    (void)item;
    conn_t *conn = arg;
    vmlet_http_server_t *server = conn->server; // conn may be freed below
    if (conn->state == CONN_READING)
        s_conn_read(conn);
    else if (conn->state == CONN_WRITING)
        s_conn_write(conn);
    else
        s_conn_drain(conn);
    if (!server->accepting)
        s_accept_resume(server); // a slot may have freed up
    return 0;                    // never -1: that would stop the service's loop
}

// ---------------------------------------------------------------------------
// Accepting

static int s_listen_ready(zloop_t *loop, zmq_pollitem_t *item, void *arg);

static void s_accept_pause(vmlet_http_server_t *self, int64_t resume_at)
{
    if (self->accepting)
        s_unpoll(self->loop, self->fd);
    self->accepting = false;
    self->accept_resume = resume_at;
}

static void s_accept_resume(vmlet_http_server_t *self)
{
    if (self->accepting || self->n_conns >= MAX_CONNS || zclock_mono() < self->accept_resume)
        return;
    if (s_poll(self->loop, self->fd, ZMQ_POLLIN, s_listen_ready, self) == 0)
        self->accepting = true;
    else
        self->accept_resume = zclock_mono() + ACCEPT_RETRY_MS; // the sweep tries again
}

static int s_conn_new(vmlet_http_server_t *self, int fd)
{
    conn_t *conn = calloc(1, sizeof *conn);
    if (!conn)
        return -1;
    conn->server = self;
    conn->fd = fd;
    conn->events = ZMQ_POLLIN;
    conn->state = CONN_READING;
    conn->deadline = zclock_mono() + IDLE_TIMEOUT_MS;
    if (s_poll(self->loop, fd, ZMQ_POLLIN, s_conn_ready, conn) < 0) {
        free(conn);
        return -1;
    }
    conn->next = self->conns;
    if (self->conns)
        self->conns->prev = conn;
    self->conns = conn;
    self->n_conns++;
    return 0;
}

static int s_listen_ready(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    (void)item;
    vmlet_http_server_t *self = arg;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (self->n_conns >= MAX_CONNS) {
            s_accept_pause(self, 0); // resumed when a connection closes
            return 0;
        }
        int fd = accept4(self->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (fd < 0 &&
            (errno == EINTR || errno == ECONNABORTED || errno == EPROTO || errno == EPERM))
            continue; // that client is gone or refused; others may be waiting
        if (fd < 0) {
            int saved = errno;
            // Out of fds or memory: the socket stays readable, so without a
            // pause the loop would spin. One line per pause.
            char port[16];
            snprintf(port, sizeof port, "%d", self->port);
            vmlet_log_error(self->log, VMLET_KV({"port", port}, {"error", strerror(saved)}),
                            "http accept failed; pausing 1s");
            s_accept_pause(self, zclock_mono() + ACCEPT_RETRY_MS);
            return 0;
        }
        if (s_conn_new(self, fd) < 0)
            close(fd);
    }
    return 0;
}

// Closes connections past their deadline and retries a paused accept.
static int s_sweep(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    (void)item;
    vmlet_http_server_t *self = arg;
    uint64_t expirations;
    ssize_t ignored = read(self->timer_fd, &expirations, sizeof expirations);
    (void)ignored;
    int64_t now = zclock_mono();
    for (conn_t *conn = self->conns, *next; conn; conn = next) {
        next = conn->next;
        if (now >= conn->deadline)
            s_conn_close(conn);
    }
    s_accept_resume(self);
    return 0;
}

int vmlet_http_server_attach(vmlet_http_server_t *self, zloop_t *loop, vmlet_err_t *err)
{
    if (!self || !loop)
        return vmlet_err_set(err, "http server attach: no server or loop");
    if (self->loop)
        return vmlet_err_set(err, "http server on port %d: already attached", self->port);
    self->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec every = {{0, SWEEP_MS * 1000000L}, {0, SWEEP_MS * 1000000L}};
    if (self->timer_fd < 0 || timerfd_settime(self->timer_fd, 0, &every, NULL) < 0) {
        int saved = errno;
        if (self->timer_fd >= 0)
            close(self->timer_fd);
        self->timer_fd = -1;
        return vmlet_err_errno(err, saved, "http server on port %d: timerfd", self->port);
    }
    if (s_poll(loop, self->timer_fd, ZMQ_POLLIN, s_sweep, self) < 0 ||
        s_poll(loop, self->fd, ZMQ_POLLIN, s_listen_ready, self) < 0) {
        s_unpoll(loop, self->timer_fd);
        close(self->timer_fd);
        self->timer_fd = -1;
        return vmlet_err_set(err, "http server on port %d: cannot register with the loop",
                             self->port);
    }
    self->loop = loop;
    self->accepting = true;
    return 0;
}

void vmlet_http_server_destroy(vmlet_http_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmlet_http_server_t *self = *self_p;
    while (self->conns)
        s_conn_close(self->conns);
    if (self->loop) {
        if (self->accepting)
            s_unpoll(self->loop, self->fd);
        s_unpoll(self->loop, self->timer_fd);
    }
    if (self->timer_fd >= 0)
        close(self->timer_fd);
    close(self->fd);
    for (size_t i = 0; i < self->n_routes; i++)
        free(self->routes[i].path);
    free(self->routes);
    free(self);
    *self_p = NULL;
}
