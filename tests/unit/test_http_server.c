// Unit tests for the zloop-driven HTTP server: a real server on an
// ephemeral port, its loop in a thread, and clients over real sockets.
#include "testsupport.h"
#include "vmlet/http_server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BIG_LEN (1024 * 1024)
#define HUGE_LEN (16 * 1024 * 1024) // more than the kernel buffers a stalled client
#define N_CLIENTS 50

typedef struct {
    zloop_t *loop;
    vmlet_http_server_t *server;
    vmlet_log_t *log;
    FILE *log_file;
    pthread_t thread;
    bool running;
    int stop[2]; // a byte on stop[1] ends the loop
    int port;
} fixture_t;

// ---------------------------------------------------------------------------
// Handlers

static void s_hello(void *arg, const vmlet_http_request_t *request, vmlet_http_response_t *response)
{
    (void)arg;
    (void)request;
    response->body = strdup("hello\n");
    response->body_len = 6;
}

static void s_echo(void *arg, const vmlet_http_request_t *request, vmlet_http_response_t *response)
{
    (void)arg;
    response->body_len = (size_t)asprintf(&response->body, "%s path=%s query=%s", request->method,
                                          request->path, request->query);
}

static char s_big_byte(size_t i)
{
    return (char)('a' + (i * 7 + i / 1000) % 26);
}

static void s_big(void *arg, const vmlet_http_request_t *request, vmlet_http_response_t *response)
{
    (void)arg;
    (void)request;
    response->body = malloc(BIG_LEN);
    for (size_t i = 0; i < BIG_LEN; i++)
        response->body[i] = s_big_byte(i);
    response->body_len = BIG_LEN;
}

static void s_huge(void *arg, const vmlet_http_request_t *request, vmlet_http_response_t *response)
{
    (void)arg;
    (void)request;
    response->body = malloc(HUGE_LEN);
    memset(response->body, 'h', HUGE_LEN);
    response->body_len = HUGE_LEN;
}

static void s_unavailable(void *arg, const vmlet_http_request_t *request,
                          vmlet_http_response_t *response)
{
    (void)arg;
    (void)request;
    response->status = 503;
    response->content_type = "application/json";
    response->body = strdup("{}");
    response->body_len = 2;
}

// ---------------------------------------------------------------------------
// Fixture: server on 127.0.0.1:0, its zloop in a thread of its own

static int s_stop_loop(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    (void)item;
    (void)arg;
    return -1;
}

static void *s_run_loop(void *arg)
{
    fixture_t *fx = arg;
    zloop_start(fx->loop);
    return NULL;
}

static int setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof *fx);
    vmlet_err_t err = {0};
    fx->log = vmlet_log_new("test", "text", "debug", &err);
    fx->log_file = tmpfile();
    vmlet_log_set_fd(fx->log, fileno(fx->log_file));
    fx->loop = zloop_new();
    fx->server = vmlet_http_server_new("127.0.0.1:0", fx->log, &err);
    if (!fx->server) {
        fprintf(stderr, "server: %s\n", err.msg);
        return -1;
    }
    fx->port = vmlet_http_server_port(fx->server);
    vmlet_http_server_route(fx->server, "/hello", s_hello, NULL);
    vmlet_http_server_route(fx->server, "/echo", s_echo, NULL);
    vmlet_http_server_route(fx->server, "/big", s_big, NULL);
    vmlet_http_server_route(fx->server, "/huge", s_huge, NULL);
    vmlet_http_server_route(fx->server, "/unavailable", s_unavailable, NULL);
    if (vmlet_http_server_attach(fx->server, fx->loop, &err) < 0 || pipe(fx->stop) < 0)
        return -1;
    zmq_pollitem_t item = {NULL, fx->stop[0], ZMQ_POLLIN, 0};
    zloop_poller(fx->loop, &item, s_stop_loop, NULL);
    fx->running = pthread_create(&fx->thread, NULL, s_run_loop, fx) == 0;
    *state = fx;
    return fx->running ? 0 : -1;
}

static void s_stop(fixture_t *fx)
{
    if (!fx->running)
        return;
    assert_int_equal(write(fx->stop[1], "x", 1), 1);
    pthread_join(fx->thread, NULL);
    fx->running = false;
}

// Lines the server logged so far.
static int s_log_lines(fixture_t *fx)
{
    fflush(fx->log_file);
    rewind(fx->log_file);
    int lines = 0, c;
    while ((c = fgetc(fx->log_file)) != EOF)
        lines += c == '\n';
    return lines;
}

static int teardown(void **state)
{
    fixture_t *fx = *state;
    s_stop(fx);
    vmlet_http_server_destroy(&fx->server);
    vmlet_http_server_destroy(&fx->server); // safe twice
    zloop_destroy(&fx->loop);
    close(fx->stop[0]);
    close(fx->stop[1]);
    vmlet_log_destroy(&fx->log);
    fclose(fx->log_file);
    free(fx);
    return 0;
}

// ---------------------------------------------------------------------------
// Raw clients

static int s_connect(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    return fd;
}

static void s_send(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        data += n;
        len -= (size_t)n;
    }
}

// Reads until the server closes (or 8 s pass). Returns a malloc'd,
// NUL-terminated buffer; *len excludes the NUL; *reset says the close was a reset.
static char *s_read_all(int fd, size_t *len, bool *reset)
{
    size_t cap = 4096;
    char *buf = malloc(cap + 1);
    *len = 0;
    if (reset)
        *reset = false;
    int64_t deadline = ts_now_ms() + 8000;
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int64_t left = deadline - ts_now_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            fail_msg("no close from the server within 8 s");
        if (*len == cap)
            buf = realloc(buf, (cap *= 2) + 1);
        ssize_t n = recv(fd, buf + *len, cap - *len, 0);
        if (n <= 0) {
            if (n < 0 && reset)
                *reset = errno == ECONNRESET;
            else if (n < 0)
                fail_msg("recv: %s", strerror(errno));
            break;
        }
        *len += (size_t)n;
    }
    buf[*len] = '\0';
    return buf;
}

// Sends `request` on a new connection; returns the whole response.
static char *s_exchange(int port, const char *request, size_t request_len, size_t *len)
{
    int fd = s_connect(port, 0);
    s_send(fd, request, request_len);
    char *response = s_read_all(fd, len, NULL);
    close(fd);
    return response;
}

static char *s_get(int port, const char *request, size_t *len)
{
    return s_exchange(port, request, strlen(request), len);
}

static int s_status(const char *response)
{
    if (strncmp(response, "HTTP/1.1 ", 9) != 0)
        return -1;
    return atoi(response + 9);
}

// Value of header `name` in the response head, copied to value; false if absent.
static bool s_header(const char *response, const char *name, char *value, size_t size)
{
    const char *end = strstr(response, "\r\n\r\n");
    size_t n = strlen(name);
    for (const char *line = strstr(response, "\r\n"); line && line < end;
         line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, name, n) == 0 && line[2 + n] == ':') {
            const char *v = line + 2 + n + 1 + strspn(line + 2 + n + 1, " ");
            snprintf(value, size, "%.*s", (int)strcspn(v, "\r"), v);
            return true;
        }
    }
    return false;
}

static const char *s_body(const char *response)
{
    const char *end = strstr(response, "\r\n\r\n");
    assert_non_null(end);
    return end + 4;
}

static char *s_url(const fixture_t *fx, const char *path)
{
    char *url = NULL;
    assert_true(asprintf(&url, "http://127.0.0.1:%d%s", fx->port, path) > 0);
    return url;
}

// ---------------------------------------------------------------------------
// Tests

static void test_get_route(void **state)
{
    fixture_t *fx = *state;
    char *url = s_url(fx, "/hello");
    long status = 0;
    char *body = NULL;
    assert_int_equal(ts_http_get(url, &status, &body), 0);
    assert_int_equal(status, 200);
    assert_string_equal(body, "hello\n");
    free(body);
    free(url);

    size_t len;
    char *response = s_get(fx->port, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &len);
    char value[128];
    assert_int_equal(s_status(response), 200);
    assert_true(s_header(response, "Content-Type", value, sizeof value));
    assert_string_equal(value, "text/plain; charset=utf-8");
    assert_true(s_header(response, "Content-Length", value, sizeof value));
    assert_string_equal(value, "6");
    assert_true(s_header(response, "Connection", value, sizeof value));
    assert_string_equal(value, "close");
    assert_string_equal(s_body(response), "hello\n");
    free(response);

    // HTTP/1.0, bare LF line ends, and the query split off the path.
    response = s_get(fx->port, "GET /echo?a=1&b=%20 HTTP/1.0\n\n", &len);
    assert_int_equal(s_status(response), 200);
    assert_string_equal(s_body(response), "GET path=/echo query=a=1&b=%20");
    free(response);

    response = s_get(fx->port, "GET /unavailable HTTP/1.1\r\n\r\n", &len);
    assert_int_equal(s_status(response), 503);
    assert_true(s_header(response, "Content-Type", value, sizeof value));
    assert_string_equal(value, "application/json");
    assert_string_equal(s_body(response), "{}");
    free(response);
    assert_int_equal(s_log_lines(fx), 1); // "listening"; nothing per request
}

static void test_head_sends_headers_only(void **state)
{
    fixture_t *fx = *state;
    size_t len;
    char *response = s_get(fx->port, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n", &len);
    assert_int_equal(s_status(response), 200);
    char value[32];
    assert_true(s_header(response, "Content-Length", value, sizeof value));
    assert_string_equal(value, "6"); // what GET would send
    assert_string_equal(s_body(response), "");
    free(response);
}

static void test_unknown_path_is_404(void **state)
{
    fixture_t *fx = *state;
    const char *paths[] = {"/nope", "/hello/", "/hellox", "/", "/hello%20"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char *url = s_url(fx, paths[i]);
        long status = 0;
        assert_int_equal(ts_http_get(url, &status, NULL), 0);
        assert_int_equal(status, 404);
        free(url);
    }
}

static void test_other_methods_are_405(void **state)
{
    fixture_t *fx = *state;
    const char *requests[] = {
        "POST /hello HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", "DELETE /hello HTTP/1.1\r\n\r\n",
        "get /hello HTTP/1.1\r\n\r\n", // methods are case-sensitive
    };
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        char *response = s_get(fx->port, requests[i], &len);
        assert_int_equal(s_status(response), 405);
        char value[64];
        assert_true(s_header(response, "Allow", value, sizeof value));
        assert_string_equal(value, "GET, HEAD");
        free(response);
    }
}

// A request whose head is `total` bytes long, padded with one header.
static char *s_padded_request(size_t total)
{
    const char *start = "GET /hello HTTP/1.1\r\nX-Pad: ";
    char *request = malloc(total + 1);
    size_t n = strlen(start);
    memcpy(request, start, n);
    memset(request + n, 'p', total - n - 4);
    memcpy(request + total - 4, "\r\n\r\n", 5);
    return request;
}

static void test_bad_requests_are_400(void **state)
{
    fixture_t *fx = *state;
    const char *bad[] = {
        "garbage\r\n\r\n",
        "GET\r\n\r\n",
        "GET /hello\r\n\r\n",
        "GET hello HTTP/1.1\r\n\r\n",
        "GET /hello HTTP/2.0\r\n\r\n",
        "GET /hello FTP/1.1\r\n\r\n",
        "GET  /hello HTTP/1.1\r\n\r\n",
        "G(T /hello HTTP/1.1\r\n\r\n",
        "GET /he\x01llo HTTP/1.1\r\n\r\n",
        "\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len;
        char *response = s_get(fx->port, bad[i], &len);
        if (s_status(response) != 400)
            fail_msg("request %zu: expected 400, got: %s", i, response);
        free(response);
    }
    size_t len;
    const char nul[] = "GET /hello HTTP/1.1\r\nX: a\0b\r\n\r\n";
    char *response = s_exchange(fx->port, nul, sizeof nul - 1, &len);
    assert_int_equal(s_status(response), 400); // a NUL in the head
    free(response);

    // 8 KiB is the limit: exactly that is served, one byte more is not.
    char *request = s_padded_request(8192);
    response = s_get(fx->port, request, &len);
    assert_int_equal(s_status(response), 200);
    free(response);
    free(request);
    request = s_padded_request(8193);
    response = s_get(fx->port, request, &len);
    assert_int_equal(s_status(response), 400);
    free(response);
    free(request);
    request = s_padded_request(64 * 1024); // far more, all sent before reading
    response = s_get(fx->port, request, &len);
    assert_int_equal(s_status(response), 400);
    free(response);
    free(request);
}

// Clients that send nothing, half a request, or never read their response
// are dropped after the idle timeout; others are served meanwhile.
static void test_idle_clients_dropped(void **state)
{
    fixture_t *fx = *state;
    int64_t start = ts_now_ms();
    int silent = s_connect(fx->port, 0);
    int partial = s_connect(fx->port, 0);
    s_send(partial, "GET /hel", 8);
    int stalled = s_connect(fx->port, 4096);
    s_send(stalled, "GET /huge HTTP/1.1\r\n\r\n", 22);
    struct pollfd first = {stalled, POLLIN, 0};
    assert_int_equal(poll(&first, 1, 3000), 1);
    int64_t stalled_at = ts_now_ms(); // the server's last write progress, near enough

    char *url = s_url(fx, "/hello");
    long status = 0;
    assert_int_equal(ts_http_get(url, &status, NULL), 0);
    assert_int_equal(status, 200);
    assert_true(ts_now_ms() - start < 4000); // well before any idle client is dropped
    free(url);

    size_t len;
    char *rest = s_read_all(silent, &len, NULL);
    int64_t elapsed = ts_now_ms() - start;
    assert_int_equal(len, 0);
    assert_in_range(elapsed, 4500, 7000);
    free(rest);
    rest = s_read_all(partial, &len, NULL);
    assert_int_equal(len, 0);
    free(rest);

    // The stalled reader gets what fit in the buffers, then the close. Its
    // drop cannot be seen without reading, and reading is progress, so wait
    // past the timeout plus a sweep before the first read.
    while (ts_now_ms() < stalled_at + 5000 + 250 + 500)
        usleep(10 * 1000);
    bool reset;
    rest = s_read_all(stalled, &len, &reset);
    assert_true(len < HUGE_LEN);
    free(rest);
    close(silent);
    close(partial);
    close(stalled);
}

static void s_assert_big(const char *response, size_t len)
{
    assert_int_equal(s_status(response), 200);
    char value[32];
    assert_true(s_header(response, "Content-Length", value, sizeof value));
    assert_string_equal(value, "1048576");
    const char *body = s_body(response);
    assert_int_equal(len - (size_t)(body - response), BIG_LEN);
    for (size_t i = 0; i < BIG_LEN; i++)
        if (body[i] != s_big_byte(i))
            fail_msg("byte %zu differs", i);
}

static void test_large_body_intact(void **state)
{
    fixture_t *fx = *state;
    // A small receive buffer and a late first read make the server's writes
    // partial, so the rest goes out as the socket drains.
    int fd = s_connect(fx->port, 4096);
    s_send(fd, "GET /big HTTP/1.1\r\n\r\n", 21);
    struct pollfd pfd = {fd, POLLIN, 0};
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    usleep(200 * 1000); // let the server hit a full socket
    size_t len;
    char *response = s_read_all(fd, &len, NULL);
    s_assert_big(response, len);
    free(response);
    close(fd);

    char *url = s_url(fx, "/big");
    long status = 0;
    char *body = NULL;
    assert_int_equal(ts_http_get(url, &status, &body), 0);
    assert_int_equal(status, 200);
    assert_int_equal(strlen(body), BIG_LEN);
    for (size_t i = 0; i < BIG_LEN; i++)
        if (body[i] != s_big_byte(i))
            fail_msg("byte %zu differs", i);
    free(body);
    free(url);
}

typedef struct {
    const fixture_t *fx;
    int index;
    long status;
    char *body;
} client_t;

static void *s_client(void *arg)
{
    client_t *client = arg;
    char path[32];
    snprintf(path, sizeof path, "/echo?n=%d", client->index);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", client->fx->port, path);
    if (ts_http_get(url, &client->status, &client->body) < 0)
        client->status = -1;
    return NULL;
}

static void test_concurrent_clients(void **state)
{
    fixture_t *fx = *state;
    // All connected and asking before any answer is read.
    int fds[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        fds[i] = s_connect(fx->port, 0);
        char request[64];
        int n = snprintf(request, sizeof request, "GET /echo?n=%d HTTP/1.1\r\n\r\n", i);
        s_send(fds[i], request, (size_t)n);
    }
    for (int i = 0; i < N_CLIENTS; i++) {
        size_t len;
        char *response = s_read_all(fds[i], &len, NULL);
        char expected[64];
        snprintf(expected, sizeof expected, "GET path=/echo query=n=%d", i);
        assert_int_equal(s_status(response), 200);
        assert_string_equal(s_body(response), expected);
        free(response);
        close(fds[i]);
    }

    // And from as many threads at once.
    client_t clients[N_CLIENTS];
    pthread_t threads[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        clients[i] = (client_t){fx, i, 0, NULL};
        assert_int_equal(pthread_create(&threads[i], NULL, s_client, &clients[i]), 0);
    }
    for (int i = 0; i < N_CLIENTS; i++) {
        pthread_join(threads[i], NULL);
        char expected[64];
        snprintf(expected, sizeof expected, "GET path=/echo query=n=%d", i);
        assert_int_equal(clients[i].status, 200);
        assert_string_equal(clients[i].body, expected);
        free(clients[i].body);
    }
    assert_int_equal(s_log_lines(fx), 1);
}

static void test_destroy_closes_connections(void **state)
{
    fixture_t *fx = *state;
    int idle = s_connect(fx->port, 0);
    s_send(idle, "GET /hel", 8);
    size_t len;
    char *response = s_get(fx->port, "GET /hello HTTP/1.1\r\n\r\n", &len); // idle is in by now
    free(response);
    s_stop(fx);
    vmlet_http_server_destroy(&fx->server);
    assert_null(fx->server);
    bool reset;
    char *rest = s_read_all(idle, &len, &reset);
    assert_int_equal(len, 0);
    free(rest);
    close(idle);
}

static bool s_fails(const char *listen, const char *expected)
{
    vmlet_err_t err = {0};
    vmlet_http_server_t *server = vmlet_http_server_new(listen, NULL, &err);
    if (server) {
        vmlet_http_server_destroy(&server);
        return false;
    }
    if (!strstr(err.msg, expected))
        fail_msg("listen '%s': error '%s' lacks '%s'", listen, err.msg, expected);
    return true;
}

static void test_new_and_errors(void **state)
{
    (void)state;
    assert_true(s_fails("9090", "expected HOST:PORT or :PORT"));
    assert_true(s_fails(":", "port must be a number"));
    assert_true(s_fails(":65536", "port must be a number"));
    assert_true(s_fails(":-1", "port must be a number"));
    assert_true(s_fails("127.0.0.1:80x", "port must be a number"));
    assert_true(s_fails("256.1.1.1:0", "listen '256.1.1.1:0'"));

    vmlet_err_t err = {0};
    vmlet_http_server_t *server = vmlet_http_server_new(":0", NULL, &err);
    assert_non_null(server);
    int port = vmlet_http_server_port(server);
    assert_in_range(port, 1, 65535);
    char taken[32];
    snprintf(taken, sizeof taken, "127.0.0.1:%d", port);
    assert_true(s_fails(taken, "port in use"));

    assert_int_equal(vmlet_http_server_route(server, "relative", s_hello, NULL), -1);
    assert_int_equal(vmlet_http_server_route(server, "/x", NULL, NULL), -1);
    assert_int_equal(vmlet_http_server_route(server, "/x", s_hello, NULL), 0);
    assert_int_equal(vmlet_http_server_route(server, "/x", s_echo, NULL), 0); // replaces
    zloop_t *loop = zloop_new();
    assert_int_equal(vmlet_http_server_attach(server, loop, &err), 0);
    assert_int_equal(vmlet_http_server_attach(server, loop, &err), -1);
    assert_non_null(strstr(err.msg, "already attached"));
    // Destroyed before the loop ever ran: nothing may be left behind in it.
    vmlet_http_server_destroy(&server);
    vmlet_http_server_destroy(&server);
    vmlet_http_server_destroy(NULL);
    zloop_destroy(&loop);

    server = vmlet_http_server_new("[::1]:0", NULL, &err);
    if (server)
        assert_true(vmlet_http_server_port(server) > 0);
    else
        print_message("skipping [::1]:0 (no IPv6 here?): %s\n", err.msg);
    vmlet_http_server_destroy(&server);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT); // before any client thread
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_route, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_sends_headers_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_path_is_404, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_methods_are_405, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests_are_400, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_clients_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_body_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_closes_connections, setup, teardown),
        cmocka_unit_test(test_new_and_errors),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
