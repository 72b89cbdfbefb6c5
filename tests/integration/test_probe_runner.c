// The probe runner against real servers on loopback: the test's own HTTP
// server (ts_http_target), openssl s_server for HTTPS, a gRPC health server
// on libnghttp2 (ts_grpc_health), and sockets the test holds. Each probe's
// verdict and output are the kubelet's; callbacks come exactly once; a
// destroyed runner calls nothing back and leaves no descriptor behind.
// Ends with a measurement: 2,000 HTTP probes a second (figures printed).
#include "testsupport.h"

#include "probe_runner.h"
#include "ts_grpc_health.h"
#include "ts_http_target.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG_OUTPUT 16384

typedef struct {
    int calls;
    probe_result_t result;
    bool warning;
    char output[BIG_OUTPUT];
    char body[BIG_OUTPUT];
    int64_t latency_us;
    bool called_inside_start; // a callback while probe_runner_start ran
} done_t;

typedef struct {
    zloop_t *loop;
    probe_runner_t *runner;
    ts_http_target_t *http;
    bool in_start;
} fixture_t;

static fixture_t *F; // the running test's fixture (callbacks reach it through here)

static void s_done(void *arg, const probe_outcome_t *o)
{
    done_t *d = arg;
    d->calls++;
    d->result = o->result;
    d->warning = o->warning;
    snprintf(d->output, sizeof d->output, "%s", o->output);
    snprintf(d->body, sizeof d->body, "%s", o->body);
    d->latency_us = o->latency_us;
    if (F && F->in_start)
        d->called_inside_start = true;
}

// --- running the loop until something holds ---

typedef struct {
    bool (*check)(void *arg);
    void *arg;
    int64_t deadline_ms;
} until_t;

static int s_until_tick(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    until_t *u = arg;
    if ((u->check && u->check(u->arg)) || ts_now_ms() >= u->deadline_ms)
        return -1;
    return 0;
}

// Runs the loop until check(arg) holds or timeout_ms passes (check NULL:
// just run for timeout_ms). Returns whether check held.
static bool s_run(bool (*check)(void *), void *arg, int timeout_ms)
{
    until_t u = {check, arg, ts_now_ms() + timeout_ms};
    int id = zloop_timer(F->loop, 2, 0, s_until_tick, &u);
    zloop_start(F->loop);
    zloop_timer_end(F->loop, id);
    return check ? check(arg) : true;
}

static bool s_called(void *arg)
{
    return ((done_t *)arg)->calls > 0;
}

static void s_start(const probe_target_t *t, done_t *d)
{
    vmlet_err_t err = {0};
    F->in_start = true;
    int rc = probe_runner_start(F->runner, t, s_done, d, &err);
    F->in_start = false;
    assert_int_equal(rc, 0);
    assert_int_equal(d->calls, 0); // never from inside start
}

// One probe to its end; checks it was called back exactly once (also a
// little after).
static void s_probe(const probe_target_t *t, done_t *d)
{
    memset(d, 0, sizeof *d);
    s_start(t, d);
    assert_true(s_run(s_called, d, t->timeout_ms + 5000));
    s_run(NULL, NULL, 20);
    assert_int_equal(d->calls, 1);
    assert_false(d->called_inside_start);
}

static probe_target_t s_http(const char *path, int port)
{
    return (probe_target_t){.kind = PROBE_TARGET_HTTP,
                            .host = "127.0.0.1",
                            .port = port,
                            .scheme = "HTTP",
                            .path = path,
                            .timeout_ms = 1000};
}

static int s_closed_port(void)
{
    return ts_free_port(); // free at the call: nothing listens there
}

static int s_setup(void **state)
{
    static fixture_t f;
    memset(&f, 0, sizeof f);
    f.loop = zloop_new();
    vmlet_err_t err = {0};
    f.runner = probe_runner_new(f.loop, NULL, &err);
    if (!f.runner) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    f.http = ts_http_target_start();
    if (!f.http)
        return -1;
    F = &f;
    *state = &f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    probe_runner_destroy(&f->runner);
    ts_http_target_stop(&f->http);
    zloop_destroy(&f->loop);
    F = NULL;
    return 0;
}

// --- HTTP ---

static void test_http_200_and_the_kubelets_request(void **state)
{
    (void)state;
    ts_http_target_route(F->http, "/healthz", &(ts_http_route_t){.body = "fine"});
    ts_http_target_clear(F->http);
    probe_target_t t = s_http("/healthz?verbose=1", ts_http_target_port(F->http));
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_SUCCESS);
    assert_false(d.warning);
    assert_string_equal(d.output, "fine");
    assert_true(d.latency_us > 0 && d.latency_us < 1000000);
    ts_http_request_t *reqs;
    assert_int_equal(ts_http_target_requests(F->http, "/healthz", &reqs), 1);
    assert_string_equal(reqs[0].method, "GET");
    assert_string_equal(reqs[0].path, "/healthz?verbose=1");
    const char *want[][2] = {
        {"User-Agent", "kube-probe/1.20"}, {"Accept", "*/*"}, {"Connection", "close"}};
    for (size_t i = 0; i < 3; i++) {
        char *v = ts_http_request_header(&reqs[0], want[i][0]);
        assert_non_null(v);
        assert_string_equal(v, want[i][1]);
        free(v);
    }
    char host[64], *v = ts_http_request_header(&reqs[0], "Host");
    snprintf(host, sizeof host, "127.0.0.1:%d", ts_http_target_port(F->http));
    assert_string_equal(v, host);
    free(v);
    assert_null(
        ts_http_request_header(&reqs[0], "Accept-Encoding")); // compression off, as the kubelet's
    ts_http_requests_free(reqs, 1);
}

static void test_http_status_codes(void **state)
{
    (void)state;
    static const struct {
        int status;
        probe_result_t result;
        bool warning;
        const char *output;
    } cases[] = {
        {200, PROBE_RESULT_SUCCESS, false, "body-200"},
        {204, PROBE_RESULT_SUCCESS, false, ""},
        {299, PROBE_RESULT_SUCCESS, false, "body-299"},
        {300, PROBE_RESULT_SUCCESS, true, "Probe terminated redirects, Response body: body-300"},
        {304, PROBE_RESULT_SUCCESS, true, "Probe terminated redirects, Response body: "},
        {399, PROBE_RESULT_SUCCESS, true, "Probe terminated redirects, Response body: body-399"},
        {400, PROBE_RESULT_FAILURE, false, "HTTP probe failed with statuscode: 400"},
        {404, PROBE_RESULT_FAILURE, false, "HTTP probe failed with statuscode: 404"},
        {500, PROBE_RESULT_FAILURE, false, "HTTP probe failed with statuscode: 500"},
        {503, PROBE_RESULT_FAILURE, false, "HTTP probe failed with statuscode: 503"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[32], body[32];
        snprintf(path, sizeof path, "/code%d", cases[i].status);
        snprintf(body, sizeof body, "body-%d", cases[i].status);
        bool no_body = cases[i].status == 204 || cases[i].status == 304;
        ts_http_target_route(
            F->http, path,
            &(ts_http_route_t){.status = cases[i].status, .body = no_body ? "" : body});
        probe_target_t t = s_http(path, ts_http_target_port(F->http));
        done_t d;
        s_probe(&t, &d);
        print_message("%d -> %s%s \"%s\"\n", cases[i].status, probe_result_name(d.result),
                      d.warning ? " (warning)" : "", d.output);
        assert_int_equal(d.result, cases[i].result);
        assert_int_equal(d.warning, cases[i].warning);
        assert_string_equal(d.output, cases[i].output);
    }
}

static void test_http_failure_keeps_the_body_out(void **state)
{
    (void)state;
    // The kubelet never puts a failing body in its output (it goes into
    // events anyone may read: kubernetes issue 99425).
    ts_http_target_route(F->http, "/broken",
                         &(ts_http_route_t){.status = 500, .body = "stack trace: secret=hunter2"});
    probe_target_t t = s_http("/broken", ts_http_target_port(F->http));
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    assert_string_equal(d.output, "HTTP probe failed with statuscode: 500");
    assert_null(strstr(d.output, "hunter2"));
    // The body is there for a debug log line, as the kubelet's V(4) one.
    assert_string_equal(d.body, "stack trace: secret=hunter2");
}

static void test_http_body_read_up_to_10k(void **state)
{
    (void)state;
    ts_http_target_route(F->http, "/big", &(ts_http_route_t){.body_size = 50000});
    probe_target_t t = s_http("/big", ts_http_target_port(F->http));
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_SUCCESS);
    assert_int_equal(strlen(d.output), 10240);
    assert_int_equal(strlen(d.body), 10240);
}

static void test_http_redirect_same_host(void **state)
{
    (void)state;
    int port = ts_http_target_port(F->http);
    char abs[128];
    snprintf(abs, sizeof abs, "http://127.0.0.1:%d/hop2", port);
    ts_http_target_route(F->http, "/hop1", &(ts_http_route_t){.status = 302, .location = abs});
    ts_http_target_route(F->http, "/hop2",
                         &(ts_http_route_t){.status = 301, .location = "/landed"});
    ts_http_target_route(F->http, "/landed", &(ts_http_route_t){.body = "here"});
    ts_http_target_clear(F->http);
    probe_target_t t = s_http("/hop1", port);
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_SUCCESS);
    assert_false(d.warning);
    assert_string_equal(d.output, "here");
    assert_int_equal(ts_http_target_count(F->http, "/hop1"), 1);
    assert_int_equal(ts_http_target_count(F->http, "/hop2"), 1);
    assert_int_equal(ts_http_target_count(F->http, "/landed"), 1);
    // 308 too; and to the same host on another port, followed: Go compares
    // host names only (nothing listens there, so the probe fails, naming it).
    int closed = s_closed_port();
    snprintf(abs, sizeof abs, "http://127.0.0.1:%d/gone", closed);
    ts_http_target_route(F->http, "/p308", &(ts_http_route_t){.status = 308, .location = abs});
    t = s_http("/p308", port);
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    char want[256];
    snprintf(want, sizeof want, "Get \"%s\": dial tcp 127.0.0.1:%d: connect: connection refused",
             abs, closed);
    assert_string_equal(d.output, want);
}

static void test_http_redirect_other_host(void **state)
{
    (void)state;
    // 127.0.0.2 is loopback too, but another host name: the kubelet stops
    // and reports the 302 as a success with a warning. Nothing goes there.
    ts_http_target_route(
        F->http, "/away",
        &(ts_http_route_t){.status = 302, .location = "http://127.0.0.2:1/x", .body = "moved"});
    probe_target_t t = s_http("/away", ts_http_target_port(F->http));
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_SUCCESS);
    assert_true(d.warning);
    assert_string_equal(d.output, "Probe terminated redirects, Response body: moved");
}

static void test_http_redirect_loop(void **state)
{
    (void)state;
    ts_http_target_route(F->http, "/loop", &(ts_http_route_t){.status = 307, .location = "/loop"});
    ts_http_target_clear(F->http);
    probe_target_t t = s_http("/loop", ts_http_target_port(F->http));
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    assert_string_equal(d.output, "Get \"/loop\": stopped after 10 redirects");
    assert_int_equal(ts_http_target_count(F->http, "/loop"), 10); // Go's client makes 10 requests
}

static void test_http_headers(void **state)
{
    (void)state;
    ts_http_target_clear(F->http);
    const probe_header_t headers[] = {
        {"X-Custom", "one"}, {"x-lower", "two"},      {"X-Multi", "a"},
        {"X-Multi", "b"},    {"Host", "pod.example"}, {"User-Agent", "my-agent/2"},
        {"X-Empty", ""},     {"Content-Length", "5"},
    };
    probe_target_t t = s_http("/hdr", ts_http_target_port(F->http));
    t.headers = headers;
    t.n_headers = sizeof headers / sizeof headers[0];
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_SUCCESS);
    ts_http_request_t *reqs;
    assert_int_equal(ts_http_target_requests(F->http, "/hdr", &reqs), 1);
    print_message("headers received:\n%s", reqs[0].headers);
    const char *want[][2] = {{"X-Custom", "one"},     {"X-Lower", "two"},
                             {"Host", "pod.example"}, {"User-Agent", "my-agent/2"},
                             {"Accept", "*/*"},       {"X-Empty", ""}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char *v = ts_http_request_header(&reqs[0], want[i][0]);
        assert_non_null(v);
        assert_string_equal(v, want[i][1]);
        free(v);
    }
    // Names are written as Go canonicalises them.
    assert_non_null(strstr(reqs[0].headers, "X-Lower: two"));
    char *a = ts_http_request_header_n(&reqs[0], "X-Multi", 0);
    char *b = ts_http_request_header_n(&reqs[0], "X-Multi", 1);
    assert_string_equal(a, "a");
    assert_string_equal(b, "b");
    free(a);
    free(b);
    assert_null(ts_http_request_header_n(&reqs[0], "User-Agent", 1)); // only the probe's
    assert_null(ts_http_request_header(&reqs[0], "Content-Length"));  // Go never sends it on a GET
    ts_http_requests_free(reqs, 1);

    // An empty Accept removes the header; an empty User-Agent sends none.
    ts_http_target_clear(F->http);
    const probe_header_t empty[] = {{"Accept", ""}, {"user-agent", ""}};
    t.headers = empty;
    t.n_headers = 2;
    s_probe(&t, &d);
    assert_int_equal(ts_http_target_requests(F->http, "/hdr", &reqs), 1);
    assert_null(ts_http_request_header(&reqs[0], "Accept"));
    assert_null(ts_http_request_header(&reqs[0], "User-Agent"));
    ts_http_requests_free(reqs, 1);

    // A header Go refuses to send fails the probe with Go's words.
    const probe_header_t bad_name[] = {{"Bad Name", "x"}};
    t.headers = bad_name;
    t.n_headers = 1;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    char want_out[256];
    snprintf(want_out, sizeof want_out,
             "Get \"http://127.0.0.1:%d/hdr\": net/http: invalid header field name \"Bad Name\"",
             ts_http_target_port(F->http));
    assert_string_equal(d.output, want_out);
    const probe_header_t bad_value[] = {{"x-inject", "a\r\nX-Evil: 1"}};
    t.headers = bad_value;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    assert_non_null(strstr(d.output, "net/http: invalid header field value for \"X-Inject\""));
}

static void test_http_host_header_through_redirects(void **state)
{
    (void)state;
    // Go keeps a Host override through a relative Location only.
    int port = ts_http_target_port(F->http);
    char abs[128];
    snprintf(abs, sizeof abs, "http://127.0.0.1:%d/h3", port);
    ts_http_target_route(F->http, "/h1", &(ts_http_route_t){.status = 302, .location = "/h2"});
    ts_http_target_route(F->http, "/h2", &(ts_http_route_t){.status = 302, .location = abs});
    ts_http_target_clear(F->http);
    const probe_header_t headers[] = {{"Host", "pod.example"}};
    probe_target_t t = s_http("/h1", port);
    t.headers = headers;
    t.n_headers = 1;
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_SUCCESS);
    const char *paths[] = {"/h1", "/h2", "/h3"};
    const char *hosts[] = {"pod.example", "pod.example", NULL};
    char own[64];
    snprintf(own, sizeof own, "127.0.0.1:%d", port);
    hosts[2] = own;
    for (size_t i = 0; i < 3; i++) {
        ts_http_request_t *reqs;
        assert_int_equal(ts_http_target_requests(F->http, paths[i], &reqs), 1);
        char *v = ts_http_request_header(&reqs[0], "Host");
        assert_string_equal(v, hosts[i]);
        free(v);
        ts_http_requests_free(reqs, 1);
    }
}

static void test_http_never_answers(void **state)
{
    (void)state;
    ts_http_target_route(F->http, "/silent", &(ts_http_route_t){.never_answer = true});
    probe_target_t t = s_http("/silent", ts_http_target_port(F->http));
    t.timeout_ms = 500;
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    char want[256];
    snprintf(want, sizeof want,
             "Get \"http://127.0.0.1:%d/silent\": context deadline exceeded (Client.Timeout "
             "exceeded while awaiting headers)",
             ts_http_target_port(F->http));
    assert_string_equal(d.output, want);
    print_message("timed out after %lld us (timeout 500 ms)\n", (long long)d.latency_us);
    assert_true(d.latency_us >= 500000);
    assert_true(d.latency_us < 750000); // the timeout, not longer (a loaded machine's slack)
}

static void test_http_body_stalls(void **state)
{
    (void)state;
    // The status came, the body did not: the kubelet's probe *error*, whose
    // result it throws away.
    ts_http_target_route(F->http, "/stall",
                         &(ts_http_route_t){.body_size = 2000, .stall_body = true});
    probe_target_t t = s_http("/stall", ts_http_target_port(F->http));
    t.timeout_ms = 300;
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_UNKNOWN);
    assert_string_equal(d.output, "context deadline exceeded (Client.Timeout or context "
                                  "cancellation while reading body)");
}

static void test_http_refused_and_hang_up(void **state)
{
    (void)state;
    int port = s_closed_port();
    probe_target_t t = s_http("/healthz", port);
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    char want[256];
    snprintf(want, sizeof want,
             "Get \"http://127.0.0.1:%d/healthz\": dial tcp 127.0.0.1:%d: connect: connection "
             "refused",
             port, port);
    assert_string_equal(d.output, want);
    assert_true(d.latency_us < 200000);

    ts_http_target_route(F->http, "/hangup", &(ts_http_route_t){.hang_up = true});
    t = s_http("/hangup", ts_http_target_port(F->http));
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    snprintf(want, sizeof want, "Get \"http://127.0.0.1:%d/hangup\": EOF",
             ts_http_target_port(F->http));
    assert_string_equal(d.output, want);
}

static void test_http_unknown_scheme_and_bad_targets(void **state)
{
    (void)state;
    probe_target_t t = s_http("/x", ts_http_target_port(F->http));
    t.scheme = "FTP";
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    assert_non_null(strstr(d.output, "unsupported protocol scheme \"ftp\""));
    // What the prober cannot express is unknown, called back from the loop.
    t = s_http("/x", 0);
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_UNKNOWN);
    assert_string_equal(d.output, "invalid port number: 0");
    t = s_http("/x", ts_http_target_port(F->http));
    t.timeout_ms = 0;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_UNKNOWN);
    // A call that is no probe at all is refused at once.
    vmlet_err_t err = {0};
    assert_int_equal(probe_runner_start(F->runner, NULL, s_done, &d, &err), -1);
    t.host = NULL;
    assert_int_equal(probe_runner_start(F->runner, &t, s_done, &d, &err), -1);
    assert_int_equal(probe_runner_in_flight(F->runner), 0);
}

static void test_http_by_name(void **state)
{
    (void)state;
    // A name goes through libcurl's resolver ("localhost" never leaves the
    // machine: libcurl answers it itself).
    ts_http_target_clear(F->http);
    probe_target_t t = s_http("/named", ts_http_target_port(F->http));
    t.host = "localhost";
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_SUCCESS);
    ts_http_request_t *reqs;
    assert_int_equal(ts_http_target_requests(F->http, "/named", &reqs), 1);
    char want[64], *host = ts_http_request_header(&reqs[0], "Host");
    snprintf(want, sizeof want, "localhost:%d", ts_http_target_port(F->http));
    assert_string_equal(host, want);
    free(host);
    ts_http_requests_free(reqs, 1);
}

// --- HTTPS ---

static void test_https_self_signed(void **state)
{
    (void)state;
    char *dir = ts_tempdir("probe-tls");
    char cmd[2048], cert[512], key[512], log[512];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(log, sizeof log, "%s/s_server.log", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=pod.invalid -days 1 "
             "-keyout %s -out %s >/dev/null 2>&1",
             key, cert);
    assert_int_equal(system(cmd), 0);
    int port = ts_free_port();
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    char *argv[] = {"openssl", "s_server", "-accept", port_s,   "-cert", cert,
                    "-key",    key,        "-www",    "-quiet", NULL};
    pid_t pid = ts_spawn(log, argv);
    assert_true(pid > 0);
    // Ready when it accepts a connection: a TCP probe says so.
    probe_target_t tcp = {
        .kind = PROBE_TARGET_TCP, .host = "127.0.0.1", .port = port, .timeout_ms = 1000};
    done_t d;
    int64_t until = ts_now_ms() + 10000;
    do {
        s_probe(&tcp, &d);
    } while (d.result != PROBE_RESULT_SUCCESS && ts_now_ms() < until && (s_run(NULL, NULL, 50), 1));
    assert_int_equal(d.result, PROBE_RESULT_SUCCESS);

    probe_target_t t = s_http("/", port);
    t.scheme = "HTTPS";
    s_probe(&t, &d);
    print_message("https: %s, %zu bytes of output\n", probe_result_name(d.result),
                  strlen(d.output));
    assert_int_equal(d.result, PROBE_RESULT_SUCCESS); // a self-signed certificate, not verified
    assert_non_null(strstr(d.output, "s_server"));
    ts_kill(pid, SIGTERM);
    int status;
    ts_wait_exit(pid, 5000, &status);

    // HTTPS to a plain HTTP server fails (and does not hang).
    t = s_http("/", ts_http_target_port(F->http));
    t.scheme = "https";
    s_probe(&t, &d);
    print_message("https to http: %s\n", d.output);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    assert_true(strncmp(d.output, "Get \"https://127.0.0.1:", 23) == 0);
    ts_remove_dir(dir);
    free(dir);
}

// --- TCP ---

static void test_tcp_open_and_closed(void **state)
{
    (void)state;
    probe_target_t t = {.kind = PROBE_TARGET_TCP,
                        .host = "127.0.0.1",
                        .port = ts_http_target_port(F->http),
                        .timeout_ms = 1000};
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_SUCCESS);
    assert_string_equal(d.output, "");
    t.port = s_closed_port();
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    char want[128];
    snprintf(want, sizeof want, "dial tcp 127.0.0.1:%d: connect: connection refused", t.port);
    assert_string_equal(d.output, want);
}

static void test_ipv6(void **state)
{
    (void)state;
    int lfd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    socklen_t len = sizeof sa;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 16) < 0) {
        print_message("skipped: no IPv6 loopback here (%s)\n", strerror(errno));
        if (lfd >= 0)
            close(lfd);
        skip();
    }
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    int port = ntohs(sa.sin6_port);
    probe_target_t t = {.kind = PROBE_TARGET_TCP, .host = "::1", .port = port, .timeout_ms = 1000};
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_SUCCESS);
    close(lfd);
    // Go's bracketed forms, in the URL and in the dial address.
    t = s_http("/healthz", port);
    t.host = "::1";
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    char want[256];
    snprintf(want, sizeof want,
             "Get \"http://[::1]:%d/healthz\": dial tcp [::1]:%d: connect: connection refused",
             port, port);
    assert_string_equal(d.output, want);
}

// A listening socket whose accept queue is full: the kernel drops further
// SYNs, so a connect neither succeeds nor fails until the client gives up.
static int s_full_listener(int *port, int *clients, size_t *n_clients)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 0), 0);
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    *port = ntohs(sa.sin_port);
    *n_clients = 0;
    for (int i = 0; i < 16; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(c, (struct sockaddr *)&sa, sizeof sa);
        clients[(*n_clients)++] = c;
        struct pollfd p = {.fd = c, .events = POLLOUT};
        if (poll(&p, 1, 200) == 0)
            return lfd; // this one hangs: the queue is full
    }
    fail_msg("could not fill the accept queue of a listener");
    return -1;
}

static void test_tcp_timeout(void **state)
{
    (void)state;
    int port, clients[16];
    size_t n_clients;
    int lfd = s_full_listener(&port, clients, &n_clients);
    probe_target_t t = {
        .kind = PROBE_TARGET_TCP, .host = "127.0.0.1", .port = port, .timeout_ms = 400};
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    char want[128];
    snprintf(want, sizeof want, "dial tcp 127.0.0.1:%d: i/o timeout", port);
    assert_string_equal(d.output, want);
    assert_true(d.latency_us >= 400000 && d.latency_us < 650000);
    // HTTP to the same: a dial timeout in Go's words.
    probe_target_t h = s_http("/", port);
    h.timeout_ms = 300;
    s_probe(&h, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    snprintf(want, sizeof want,
             "Get \"http://127.0.0.1:%d/\": dial tcp 127.0.0.1:%d: i/o timeout (Client.Timeout "
             "exceeded while awaiting headers)",
             port, port);
    assert_string_equal(d.output, want);
    for (size_t i = 0; i < n_clients; i++)
        close(clients[i]);
    close(lfd);
}

// --- gRPC ---

static void test_grpc(void **state)
{
    (void)state;
    ts_grpc_health_t *g = ts_grpc_health_start();
    assert_non_null(g);
    int port = ts_grpc_health_port(g);
    ts_grpc_health_set(g, "ready", TS_GRPC_SERVING);
    ts_grpc_health_set(g, "sick", TS_GRPC_NOT_SERVING);
    ts_grpc_health_set(g, "odd", TS_GRPC_UNKNOWN);
    static const struct {
        const char *service;
        probe_result_t result;
        const char *output;
    } cases[] = {
        {"", PROBE_RESULT_SUCCESS, "service healthy"},
        {"ready", PROBE_RESULT_SUCCESS, "service healthy"},
        {"sick", PROBE_RESULT_FAILURE, "service unhealthy (responded with \"NOT_SERVING\")"},
        {"odd", PROBE_RESULT_FAILURE, "service unhealthy (responded with \"UNKNOWN\")"},
        {"nobody", PROBE_RESULT_FAILURE,
         "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        probe_target_t t = {.kind = PROBE_TARGET_GRPC,
                            .host = "127.0.0.1",
                            .port = port,
                            .grpc_service = cases[i].service,
                            .timeout_ms = 1000};
        done_t d;
        s_probe(&t, &d);
        print_message("grpc \"%s\": %s \"%s\"\n", cases[i].service, probe_result_name(d.result),
                      d.output);
        assert_int_equal(d.result, cases[i].result);
        assert_string_equal(d.output, cases[i].output);
        assert_int_equal(ts_grpc_health_calls(g, cases[i].service), 1);
    }
    char *ua = ts_grpc_health_last_user_agent(g);
    assert_string_equal(ua, "kube-probe/1.20");
    free(ua);

    // A server too slow for the timeout.
    ts_grpc_health_set_delay(g, 2000);
    probe_target_t t = {
        .kind = PROBE_TARGET_GRPC, .host = "127.0.0.1", .port = port, .timeout_ms = 500};
    done_t d;
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    assert_string_equal(d.output, "timeout: health rpc did not complete within 500ms");
    assert_true(d.latency_us >= 500000 && d.latency_us < 750000);
    t.timeout_ms = 1000;
    s_probe(&t, &d);
    assert_string_equal(d.output, "timeout: health rpc did not complete within 1s");
    ts_grpc_health_set_delay(g, 0);
    ts_grpc_health_stop(&g);

    // Nothing listening.
    t.port = s_closed_port();
    s_probe(&t, &d);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    char want[256];
    snprintf(want, sizeof want,
             "error: failed to connect service at \"127.0.0.1:%d\": dial tcp 127.0.0.1:%d: "
             "connect: connection refused",
             t.port, t.port);
    assert_string_equal(d.output, want);

    // Not a gRPC server at all (HTTP/1.1): a failure, in gRPC's words.
    t.port = ts_http_target_port(F->http);
    s_probe(&t, &d);
    print_message("grpc to http/1.1: %s\n", d.output);
    assert_int_equal(d.result, PROBE_RESULT_FAILURE);
    assert_true(strncmp(d.output, "error: health rpc probe failed: rpc error: code = ", 50) == 0);
}

// --- many at once, callbacks, cancel, destroy ---

typedef struct {
    done_t *d;
    size_t n;
} many_t;

static bool s_all_called(void *arg)
{
    many_t *m = arg;
    for (size_t i = 0; i < m->n; i++)
        if (m->d[i].calls == 0)
            return false;
    return true;
}

static void test_thousand_concurrent(void **state)
{
    (void)state;
    enum { N = 1000 };
    ts_http_target_route(F->http, "/slow", &(ts_http_route_t){.delay_ms = 200});
    ts_http_target_route(F->http, "/fail", &(ts_http_route_t){.status = 500});
    ts_http_target_clear(F->http);
    done_t *d = calloc(N, sizeof *d);
    int port = ts_http_target_port(F->http);
    int64_t t0 = ts_now_ms();
    for (size_t i = 0; i < N; i++) {
        const char *path = i % 3 == 0 ? "/slow" : i % 3 == 1 ? "/fail" : "/ok";
        probe_target_t t = s_http(path, port);
        t.timeout_ms = 10000;
        if (i % 10 == 9) { // some TCP and gRPC-refused ones in the mix
            t = (probe_target_t){
                .kind = PROBE_TARGET_TCP, .host = "127.0.0.1", .port = port, .timeout_ms = 10000};
        }
        s_start(&t, &d[i]);
    }
    assert_int_equal(probe_runner_in_flight(F->runner), N);
    many_t m = {d, N};
    assert_true(s_run(s_all_called, &m, 30000));
    int64_t took = ts_now_ms() - t0;
    s_run(NULL, NULL, 50);
    size_t ok = 0, failed = 0;
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(d[i].calls, 1);
        if (i % 10 == 9 || i % 3 != 1) {
            assert_int_equal(d[i].result, PROBE_RESULT_SUCCESS);
            ok++;
        } else {
            assert_int_equal(d[i].result, PROBE_RESULT_FAILURE);
            failed++;
        }
    }
    assert_int_equal(probe_runner_in_flight(F->runner), 0);
    print_message(
        "%d concurrent probes: %zu succeeded, %zu failed, all called back once in %lld ms\n", N, ok,
        failed, (long long)took);
    free(d);
}

typedef struct {
    int chain_left;
    int calls;
} chain_t;

static void s_chain_done(void *arg, const probe_outcome_t *o)
{
    chain_t *c = arg;
    c->calls++;
    assert_int_equal(o->result, PROBE_RESULT_SUCCESS);
    if (--c->chain_left > 0) { // the next probe from inside the callback
        probe_target_t t = s_http("/ok", ts_http_target_port(F->http));
        vmlet_err_t err = {0};
        assert_int_equal(probe_runner_start(F->runner, &t, s_chain_done, c, &err), 0);
    }
}

static bool s_chain_over(void *arg)
{
    return ((chain_t *)arg)->chain_left == 0;
}

static void test_callbacks_start_and_cancel(void **state)
{
    (void)state;
    chain_t c = {.chain_left = 5};
    probe_target_t t = s_http("/ok", ts_http_target_port(F->http));
    vmlet_err_t err = {0};
    assert_int_equal(probe_runner_start(F->runner, &t, s_chain_done, &c, &err), 0);
    assert_true(s_run(s_chain_over, &c, 5000));
    assert_int_equal(c.calls, 5);

    // Cancelled probes are never called back; the others are.
    ts_http_target_route(F->http, "/slow", &(ts_http_route_t){.delay_ms = 100});
    done_t a[3], b[3];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    t = s_http("/slow", ts_http_target_port(F->http));
    probe_target_t bad = s_http("/x", 0); // finishes without a transfer: cancelled from the queue
    for (int i = 0; i < 3; i++) {
        s_start(i == 2 ? &bad : &t, &a[0]);
        s_start(&t, &b[i]);
    }
    assert_int_equal(probe_runner_cancel(F->runner, &a[0]), 3);
    assert_int_equal(probe_runner_in_flight(F->runner), 3);
    many_t m = {b, 3};
    assert_true(s_run(s_all_called, &m, 5000));
    s_run(NULL, NULL, 200);
    assert_int_equal(a[0].calls, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(b[i].calls, 1);
}

static void test_too_many_in_flight(void **state)
{
    (void)state;
    ts_http_target_route(F->http, "/silent", &(ts_http_route_t){.never_answer = true});
    probe_runner_set_max_in_flight(F->runner, 2);
    done_t d[3];
    memset(d, 0, sizeof d);
    probe_target_t t = s_http("/silent", ts_http_target_port(F->http));
    t.timeout_ms = 300;
    for (int i = 0; i < 3; i++)
        s_start(&t, &d[i]);
    assert_true(s_run(s_called, &d[2], 200));
    assert_int_equal(d[2].result, PROBE_RESULT_UNKNOWN);
    assert_string_equal(d[2].output, "prober: too many probes in flight (2)");
    assert_int_equal(d[0].calls, 0);
    many_t m = {d, 3};
    assert_true(s_run(s_all_called, &m, 2000));
    assert_int_equal(d[0].result, PROBE_RESULT_FAILURE);
    probe_runner_set_max_in_flight(F->runner, 16384);
}

static size_t s_open_fds(void)
{
    size_t n = 0;
    DIR *dir = opendir("/proc/self/fd");
    while (dir && readdir(dir))
        n++;
    if (dir)
        closedir(dir);
    return n;
}

static bool s_server_has(void *arg)
{
    return ts_http_target_open_connections(F->http) >= *(size_t *)arg;
}

static bool s_server_has_none(void *arg)
{
    (void)arg;
    return ts_http_target_open_connections(F->http) == 0;
}

static void test_destroy_with_probes_in_flight(void **state)
{
    (void)state;
    // Let the server's connections of earlier tests go first.
    s_run(s_server_has_none, NULL, 3000);
    size_t fds_before = s_open_fds();
    vmlet_err_t err = {0};
    probe_runner_t *r = probe_runner_new(F->loop, NULL, &err);
    assert_non_null(r);
    ts_http_target_route(F->http, "/silent", &(ts_http_route_t){.never_answer = true});
    enum { N = 200 };
    done_t *d = calloc(N, sizeof *d);
    for (size_t i = 0; i < N; i++) {
        probe_target_t t = s_http("/silent", ts_http_target_port(F->http));
        t.timeout_ms = 30000;
        if (i % 4 == 3)
            t.port = 0; // some finished, waiting for their callback
        assert_int_equal(probe_runner_start(r, &t, s_done, &d[i], &err), 0);
    }
    size_t want = N - N / 4;
    assert_true(s_run(s_server_has, &want, 10000)); // the probes are out, held by the server
    size_t called = 0;
    for (size_t i = 0; i < N; i++)
        called += (size_t)d[i].calls;
    // The finished ones may have been delivered meanwhile; the held ones not.
    assert_true(called <= N / 4);
    for (size_t i = 0; i < N; i++)
        d[i].calls = 0;
    probe_runner_destroy(&r);
    assert_null(r);
    probe_runner_destroy(&r); // safe twice
    s_run(NULL, NULL, 100);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(d[i].calls, 0);
    assert_true(s_run(s_server_has_none, NULL, 5000)); // every connection was closed
    assert_int_equal(s_open_fds(), fds_before);
    free(d);
}

static void test_no_descriptor_left_behind(void **state)
{
    (void)state;
    // Slots keep their easy handles between probes, never their sockets
    // (TCP probes included, which only connect).
    s_run(s_server_has_none, NULL, 3000);
    size_t fds_before = s_open_fds();
    int port = ts_http_target_port(F->http);
    for (int round = 0; round < 3; round++) {
        done_t d[30];
        memset(d, 0, sizeof d);
        for (int i = 0; i < 30; i++) {
            probe_target_t t = s_http("/ok", port);
            if (i % 3 == 1)
                t = (probe_target_t){.kind = PROBE_TARGET_TCP,
                                     .host = "127.0.0.1",
                                     .port = port,
                                     .timeout_ms = 1000};
            if (i % 3 == 2)
                t = (probe_target_t){.kind = PROBE_TARGET_GRPC,
                                     .host = "127.0.0.1",
                                     .port = s_closed_port(),
                                     .timeout_ms = 1000};
            s_start(&t, &d[i]);
        }
        many_t m = {d, 30};
        assert_true(s_run(s_all_called, &m, 5000));
    }
    s_run(NULL, NULL, 50);
    assert_int_equal(s_open_fds(), fds_before);
}

// --- the measurement: 2,000 HTTP probes a second ---

typedef struct {
    size_t n, started, called;
    int64_t t0_us, period_us;
    int64_t *late_us, *latency_us;
    probe_result_t *results;
    int port;
    char (*paths)[48];
} bench_t;

static bench_t *B;

static void s_bench_done(void *arg, const probe_outcome_t *o)
{
    size_t i = (size_t)(uintptr_t)arg;
    B->latency_us[i] = o->latency_us;
    B->results[i] = o->result;
    B->called++;
}

static int s_bench_tick(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    bench_t *b = arg;
    int64_t now = ts_mono_us();
    while (b->started < b->n && b->t0_us + (int64_t)b->started * b->period_us <= now) {
        size_t i = b->started++;
        probe_target_t t = s_http(b->paths[i], b->port);
        int64_t at = ts_mono_us();
        b->late_us[i] = at - (b->t0_us + (int64_t)i * b->period_us);
        vmlet_err_t err = {0};
        probe_runner_start(F->runner, &t, s_bench_done, (void *)(uintptr_t)i, &err);
    }
    return b->started == b->n && b->called == b->n ? -1 : 0;
}

static int s_cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t s_pct(const int64_t *sorted, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[i];
}

static double s_cpu_s(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void test_rate_2000_per_second(void **state)
{
    (void)state;
    const char *env = getenv("PROBE_BENCH_SECONDS");
    int seconds = env ? atoi(env) : 10;
#if defined(__SANITIZE_ADDRESS__)
    if (!env)
        seconds = 2; // the sanitizers are slow: correctness only
#endif
    const int rate = 2000;
    bench_t b = {.n = (size_t)(seconds * rate),
                 .period_us = 1000000 / rate,
                 .port = ts_http_target_port(F->http)};
    b.late_us = calloc(b.n, sizeof *b.late_us);
    b.latency_us = calloc(b.n, sizeof *b.latency_us);
    b.results = calloc(b.n, sizeof *b.results);
    b.paths = calloc(b.n, sizeof *b.paths);
    for (size_t i = 0; i < b.n; i++)
        snprintf(b.paths[i], sizeof b.paths[i], "/bench?seq=%zu", i);
    B = &b;
    ts_http_target_clear(F->http);
    double thread0 = s_cpu_s(RUSAGE_THREAD), proc0 = s_cpu_s(RUSAGE_SELF);
    b.t0_us = ts_mono_us() + 10000;
    int id = zloop_timer(F->loop, 1, 0, s_bench_tick, &b);
    until_t u = {NULL, NULL, ts_now_ms() + seconds * 1000 + 30000};
    int guard = zloop_timer(F->loop, 100, 0, s_until_tick, &u);
    zloop_start(F->loop);
    zloop_timer_end(F->loop, id);
    zloop_timer_end(F->loop, guard);
    double wall = (double)(ts_mono_us() - b.t0_us) / 1e6;
    double thread_cpu = s_cpu_s(RUSAGE_THREAD) - thread0, proc_cpu = s_cpu_s(RUSAGE_SELF) - proc0;
    assert_int_equal(b.called, b.n);
    size_t ok = 0;
    for (size_t i = 0; i < b.n; i++)
        ok += b.results[i] == PROBE_RESULT_SUCCESS;
    assert_int_equal(ok, b.n);
    // When each probe reached the server, against its schedule.
    ts_http_request_t *reqs;
    size_t n_reqs = ts_http_target_requests(F->http, "/bench", &reqs);
    assert_int_equal(n_reqs, b.n);
    int64_t *arrive = calloc(b.n, sizeof *arrive);
    for (size_t i = 0; i < n_reqs; i++) {
        size_t seq = strtoul(strchr(reqs[i].path, '=') + 1, NULL, 10);
        arrive[i] = reqs[i].arrival_us - (b.t0_us + (int64_t)seq * b.period_us);
    }
    ts_http_requests_free(reqs, n_reqs);
    qsort(b.late_us, b.n, sizeof *b.late_us, s_cmp64);
    qsort(b.latency_us, b.n, sizeof *b.latency_us, s_cmp64);
    qsort(arrive, b.n, sizeof *arrive, s_cmp64);
    printf("RESULT probes=%zu seconds=%.1f rate=%.0f/s\n", b.n, wall, (double)b.n / wall);
    printf("RESULT cpu_loop_thread_s=%.3f cpu_per_1000_probes_s=%.4f cpu_process_s=%.3f "
           "(server thread included)\n",
           thread_cpu, thread_cpu * 1000 / (double)b.n, proc_cpu);
    printf("RESULT latency_us p50=%lld p90=%lld p99=%lld p999=%lld max=%lld\n",
           (long long)s_pct(b.latency_us, b.n, 0.5), (long long)s_pct(b.latency_us, b.n, 0.9),
           (long long)s_pct(b.latency_us, b.n, 0.99), (long long)s_pct(b.latency_us, b.n, 0.999),
           (long long)b.latency_us[b.n - 1]);
    printf("RESULT start_lateness_us p50=%lld p99=%lld max=%lld\n",
           (long long)s_pct(b.late_us, b.n, 0.5), (long long)s_pct(b.late_us, b.n, 0.99),
           (long long)b.late_us[b.n - 1]);
    printf("RESULT arrival_lateness_us p50=%lld p99=%lld max=%lld\n",
           (long long)s_pct(arrive, b.n, 0.5), (long long)s_pct(arrive, b.n, 0.99),
           (long long)arrive[b.n - 1]);
    fflush(stdout);
    free(arrive);
    free(b.late_us);
    free(b.latency_us);
    free(b.results);
    free(b.paths);
    B = NULL;
}

int main(void)
{
    // 1,000 probes at once hold 2,000 descriptors in this process (both ends).
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_200_and_the_kubelets_request),
        cmocka_unit_test(test_http_status_codes),
        cmocka_unit_test(test_http_failure_keeps_the_body_out),
        cmocka_unit_test(test_http_body_read_up_to_10k),
        cmocka_unit_test(test_http_redirect_same_host),
        cmocka_unit_test(test_http_redirect_other_host),
        cmocka_unit_test(test_http_redirect_loop),
        cmocka_unit_test(test_http_headers),
        cmocka_unit_test(test_http_host_header_through_redirects),
        cmocka_unit_test(test_http_never_answers),
        cmocka_unit_test(test_http_body_stalls),
        cmocka_unit_test(test_http_refused_and_hang_up),
        cmocka_unit_test(test_http_unknown_scheme_and_bad_targets),
        cmocka_unit_test(test_http_by_name),
        cmocka_unit_test(test_https_self_signed),
        cmocka_unit_test(test_tcp_open_and_closed),
        cmocka_unit_test(test_tcp_timeout),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_grpc),
        cmocka_unit_test(test_thousand_concurrent),
        cmocka_unit_test(test_callbacks_start_and_cancel),
        cmocka_unit_test(test_too_many_in_flight),
        cmocka_unit_test(test_destroy_with_probes_in_flight),
        cmocka_unit_test(test_no_descriptor_left_behind),
        cmocka_unit_test(test_rate_2000_per_second),
    };
    if (getenv("VMLET_TEST_FILTER"))
        cmocka_set_test_filter(getenv("VMLET_TEST_FILTER"));
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
