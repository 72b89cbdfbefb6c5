// The list-then-watch class (kube_watch.h) against the real kube-apiserver
// of the test bed: initial LIST, watch events in order, selectors, a forced
// relist, the apiserver restarted under a watch, and destroy while a
// request is blocked. The 410 paths (an ERROR event with code 410, an HTTP
// 410 answer), bad input, bookmarks and other ERROR events are driven by a
// small scripted HTTP server on 127.0.0.1 inside this test.
#include "testsupport.h"

#include "vmlet/kube_watch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

// --- the owner: a recorder driven by a zloop in this thread ----------------------

// What a watch delivered, as an owner would keep it: the trace of events
// ("[ a b ] +c ~a -b", LIST_BEGIN/LIST_END as brackets) and the resulting
// view name -> data.k (a LIST replaces it, as known-minus-listed would).
typedef struct {
    char trace[16384];
    zhashx_t *view, *listing;
    int untyped; // objects without kind ConfigMap and apiVersion v1
} rec_t;

static zhashx_t *s_strings(void)
{
    zhashx_t *hash = zhashx_new();
    assert_non_null(hash);
    zhashx_set_duplicator(hash, (zhashx_duplicator_fn *)strdup);
    zhashx_set_destructor(hash, (zhashx_destructor_fn *)zstr_free);
    return hash;
}

static void s_rec_init(rec_t *rec)
{
    memset(rec, 0, sizeof *rec);
    rec->view = s_strings();
}

static void s_rec_clear(rec_t *rec)
{
    zhashx_destroy(&rec->view);
    zhashx_destroy(&rec->listing);
}

static const char *s_json_str(const cJSON *obj, const char *a, const char *b)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(obj, a), b);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static void s_trace(rec_t *rec, const char *prefix, const char *name)
{
    size_t len = strlen(rec->trace);
    snprintf(rec->trace + len, sizeof rec->trace - len, "%s%s%s", len ? " " : "", prefix, name);
}

static void s_on_watch(void *arg, vmlet_watch_event_t event, const cJSON *object)
{
    rec_t *rec = arg;
    const char *name = object ? s_json_str(object, "metadata", "name") : "";
    const char *value = object ? s_json_str(object, "data", "k") : NULL;
    assert_non_null(name);
    if (strcmp(name, "kube-root-ca.crt") == 0) // the controller-manager adds it to each namespace
        return;
    value = value ? value : "";
    const cJSON *kind = cJSON_GetObjectItem(object, "kind");
    const cJSON *version = cJSON_GetObjectItem(object, "apiVersion");
    if (object && (!cJSON_IsString(kind) || strcmp(kind->valuestring, "ConfigMap") != 0 ||
                   !cJSON_IsString(version) || strcmp(version->valuestring, "v1") != 0))
        rec->untyped++;
    switch (event) {
    case VMLET_WATCH_LIST_BEGIN:
        zhashx_destroy(&rec->listing);
        rec->listing = s_strings();
        s_trace(rec, "[", "");
        break;
    case VMLET_WATCH_LISTED:
        assert_non_null(rec->listing);
        zhashx_update(rec->listing, name, (void *)value);
        s_trace(rec, "", name);
        break;
    case VMLET_WATCH_LIST_END:
        assert_non_null(rec->listing);
        zhashx_destroy(&rec->view);
        rec->view = rec->listing;
        rec->listing = NULL;
        s_trace(rec, "]", "");
        break;
    case VMLET_WATCH_ADDED:
    case VMLET_WATCH_MODIFIED:
        zhashx_update(rec->view, name, (void *)value);
        s_trace(rec, event == VMLET_WATCH_ADDED ? "+" : "~", name);
        break;
    case VMLET_WATCH_DELETED:
        zhashx_delete(rec->view, name);
        s_trace(rec, "-", name);
        break;
    default:
        fail_msg("unknown event %d", (int)event);
    }
}

// Runs the loop until check(arg) holds or timeout_ms passes; returns check(arg).
typedef struct {
    bool (*check)(void *);
    void *arg;
} until_t;

static int s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    until_t *until = arg;
    return until->check && until->check(until->arg) ? -1 : 0;
}

static int s_on_deadline(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    (void)arg;
    return -1;
}

static bool s_run_until(zloop_t *loop, bool (*check)(void *), void *arg, int timeout_ms)
{
    until_t until = {check, arg};
    if (check && check(arg))
        return true;
    int tick = zloop_timer(loop, 10, 0, s_on_tick, &until);
    int deadline = zloop_timer(loop, (size_t)timeout_ms, 1, s_on_deadline, NULL);
    zloop_start(loop);
    zloop_timer_end(loop, tick);
    zloop_timer_end(loop, deadline);
    return check && check(arg);
}

typedef struct {
    rec_t *rec;
    const char *want;
} trace_want_t;

static bool s_trace_is(void *arg)
{
    trace_want_t *t = arg;
    return strcmp(t->rec->trace, t->want) == 0;
}

// Waits until the trace reads `want`, failing with both texts otherwise.
static void s_expect_trace(zloop_t *loop, rec_t *rec, const char *want, int timeout_ms)
{
    trace_want_t t = {rec, want};
    if (!s_run_until(loop, s_trace_is, &t, timeout_ms))
        fail_msg("trace after %d ms:\n  got:  \"%s\"\n  want: \"%s\"", timeout_ms, rec->trace,
                 want);
}

static void s_expect_view(rec_t *rec, const char *name, const char *value)
{
    const char *got = zhashx_lookup(rec->view, name);
    if (!got || strcmp(got, value) != 0)
        fail_msg("view[%s] = %s, want %s", name, got ? got : "(absent)", value);
}

static double s_metric(vmlet_metrics_t *metrics, const char *series)
{
    char *text = vmlet_metrics_render(metrics);
    assert_non_null(text);
    double value = ts_metric_value(text, series);
    free(text);
    return value;
}

// --- the real apiserver --------------------------------------------------------------

typedef struct {
    vmlet_kube_config_t config;
    vmlet_kube_t *kube;
    char *url, *token, *ca, *dir;
} bed_t;

static bed_t s_bed;

static bool s_have_bed(void)
{
    if (!s_bed.url) {
        s_bed.url = ts_bed_value("BED_APISERVER_URL");
        s_bed.token = ts_bed_value("BED_ADMIN_TOKEN");
        s_bed.ca = ts_bed_value("BED_CA");
        s_bed.dir = ts_bed_value("BED_DIR");
    }
    return s_bed.url && s_bed.token && s_bed.ca && s_bed.dir;
}

// Skips (with the reason printed) when the bed is not up.
static void s_need_bed(void)
{
    if (!s_have_bed()) {
        print_message("skipped: no test bed (run tests/bed/start.sh DIR and set "
                      "VMLET_BED_DIR=DIR; ctest does both)\n");
        skip();
    }
    if (!s_bed.kube) {
        s_bed.config =
            (vmlet_kube_config_t){.server = s_bed.url, .ca_file = s_bed.ca, .token = s_bed.token};
        vmlet_err_t err = {0};
        s_bed.kube = vmlet_kube_new(&s_bed.config, &err);
        if (!s_bed.kube)
            fail_msg("%s", err.msg);
    }
}

static void s_forget_bed(void)
{
    vmlet_kube_destroy(&s_bed.kube);
    free(s_bed.url);
    free(s_bed.token);
    free(s_bed.ca);
    free(s_bed.dir);
    memset(&s_bed, 0, sizeof s_bed);
}

static long s_call(const char *method, const char *path, const char *content_type, const char *body)
{
    long status = 0;
    cJSON *out = NULL;
    vmlet_err_t err = {0};
    if (vmlet_kube_request(s_bed.kube, method, path, content_type, body, &status, &out, &err) < 0)
        fail_msg("%s %s: %s", method, path, err.msg);
    cJSON_Delete(out);
    return status;
}

// A fresh namespace for one test; its name goes to ns (64 bytes).
static void s_namespace(const char *what, char *ns)
{
    snprintf(ns, 64, "vmlet-watch-%s-%d", what, (int)getpid());
    char body[256];
    snprintf(body, sizeof body,
             "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}", ns);
    long status = s_call("POST", "/api/v1/namespaces", "application/json", body);
    if (status != 201)
        fail_msg("create namespace %s: %ld", ns, status);
}

static void s_drop_namespace(const char *ns)
{
    char path[160];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s", ns);
    s_call("DELETE", path, NULL, NULL);
}

// Creates ConfigMap `name` with data.k = value and labels (a JSON object text or NULL).
static void s_create(const char *ns, const char *name, const char *value, const char *labels)
{
    char path[160], body[512];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps", ns);
    snprintf(body, sizeof body,
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
             "\"labels\":%s},\"data\":{\"k\":\"%s\"}}",
             name, labels ? labels : "{}", value);
    long status = s_call("POST", path, "application/json", body);
    if (status != 201)
        fail_msg("create configmap %s/%s: %ld", ns, name, status);
}

static void s_patch(const char *ns, const char *name, const char *patch)
{
    char path[160];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps/%s", ns, name);
    long status = s_call("PATCH", path, "application/merge-patch+json", patch);
    if (status != 200)
        fail_msg("patch configmap %s/%s: %ld", ns, name, status);
}

static void s_delete(const char *ns, const char *name)
{
    char path[160];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps/%s", ns, name);
    long status = s_call("DELETE", path, NULL, NULL);
    if (status != 200)
        fail_msg("delete configmap %s/%s: %ld", ns, name, status);
}

// A watch of one collection attached to a fresh loop, with its own metrics.
typedef struct {
    zloop_t *loop;
    vmlet_log_t *log;
    vmlet_metrics_t *metrics;
    vmlet_kube_watch_t *watch;
    rec_t rec;
} fixture_t;

static void s_start(fixture_t *f, const vmlet_kube_config_t *config, const char *collection,
                    const char *field_selector, const char *label_selector)
{
    vmlet_err_t err = {0};
    s_rec_init(&f->rec);
    f->loop = zloop_new();
    f->log = vmlet_log_new("test-kube-watch", "text", "debug", &err);
    f->metrics = vmlet_metrics_new();
    assert_non_null(f->loop);
    assert_non_null(f->log);
    f->watch = vmlet_kube_watch_new(config, collection, field_selector, label_selector, s_on_watch,
                                    &f->rec, f->log, f->metrics, &err);
    if (!f->watch || vmlet_kube_watch_attach(f->watch, f->loop, &err) < 0)
        fail_msg("%s", err.msg);
}

static void s_stop(fixture_t *f)
{
    vmlet_kube_watch_destroy(&f->watch);
    vmlet_kube_watch_destroy(&f->watch); // safe twice
    vmlet_metrics_destroy(&f->metrics);
    vmlet_log_destroy(&f->log);
    zloop_destroy(&f->loop);
    s_rec_clear(&f->rec);
}

static void s_start_ns(fixture_t *f, const char *ns, const char *field_selector,
                       const char *label_selector)
{
    char collection[160];
    snprintf(collection, sizeof collection, "/api/v1/namespaces/%s/configmaps", ns);
    s_start(f, &s_bed.config, collection, field_selector, label_selector);
}

static bool s_not_synced(void *arg)
{
    return !vmlet_kube_watch_synced(arg);
}

#define LISTS "vmlet_kube_watch_lists_total{resource=\"configmaps\"}"
#define RECONNECTS "vmlet_kube_watch_reconnects_total{resource=\"configmaps\"}"
#define SYNCED "vmlet_kube_watch_synced{resource=\"configmaps\"}"

// Existing objects arrive as one LIST; changes after it as watch events,
// in order; relist() delivers a fresh LIST; destroy is prompt.
static void test_list_then_watch(void **state)
{
    (void)state;
    s_need_bed();
    char ns[64];
    s_namespace("list", ns);
    s_create(ns, "a", "1", NULL);
    s_create(ns, "b", "1", NULL);
    s_create(ns, "c", "1", NULL);
    fixture_t f;
    s_start_ns(&f, ns, NULL, NULL);
    s_expect_trace(f.loop, &f.rec, "[ a b c ]", 10000);
    assert_true(vmlet_kube_watch_synced(f.watch));
    assert_int_equal(s_metric(f.metrics, SYNCED), 1);

    s_create(ns, "d", "1", NULL);
    s_patch(ns, "a", "{\"data\":{\"k\":\"2\"}}");
    s_delete(ns, "b");
    s_expect_trace(f.loop, &f.rec, "[ a b c ] +d ~a -b", 10000);
    s_expect_view(&f.rec, "a", "2");
    assert_int_equal(zhashx_size(f.rec.view), 3);

    vmlet_kube_watch_relist(f.watch);
    s_expect_trace(f.loop, &f.rec, "[ a b c ] +d ~a -b [ a c d ]", 10000);
    assert_int_equal(s_metric(f.metrics, LISTS), 2);
    assert_true(s_metric(f.metrics, "vmlet_kube_watch_events_total{resource=\"configmaps\","
                                    "type=\"LISTED\"}") >= 6);
    assert_int_equal(s_metric(f.metrics, "vmlet_kube_watch_events_total{resource="
                                         "\"configmaps\",type=\"DELETED\"}"),
                     1);
    s_patch(ns, "c", "{\"data\":{\"k\":\"3\"}}"); // the watch resumed after the relist
    s_expect_trace(f.loop, &f.rec, "[ a b c ] +d ~a -b [ a c d ] ~c", 10000);
    assert_int_equal(f.rec.untyped, 0); // LISTED items got the list's kind and apiVersion

    // Destroy while the watch waits on an idle stream.
    int64_t t0 = ts_now_ms();
    vmlet_kube_watch_destroy(&f.watch);
    int64_t took = ts_now_ms() - t0;
    print_message("destroy during an idle watch took %lld ms\n", (long long)took);
    assert_true(took < 200);
    s_stop(&f);
    s_drop_namespace(ns);
}

// Label and field selectors reach the server, escaped; an object that
// starts matching a label selector arrives as ADDED.
static void test_selectors(void **state)
{
    (void)state;
    s_need_bed();
    char ns[64];
    s_namespace("select", ns);
    fixture_t by_label, by_field;
    s_start_ns(&by_label, ns, NULL, "app=web,tier in (front, edge)");
    s_start_ns(&by_field, ns, "metadata.name=sel-b", NULL);
    s_expect_trace(by_label.loop, &by_label.rec, "[ ]", 10000);
    s_expect_trace(by_field.loop, &by_field.rec, "[ ]", 10000);
    s_create(ns, "sel-a", "1", "{\"app\":\"web\",\"tier\":\"front\"}");
    s_create(ns, "sel-b", "1", "{\"app\":\"db\"}");
    s_create(ns, "sel-c", "1", "{\"app\":\"web\",\"tier\":\"back\"}");
    s_patch(ns, "sel-b", "{\"metadata\":{\"labels\":{\"app\":\"web\",\"tier\":\"edge\"}}}");
    s_delete(ns, "sel-a");
    s_expect_trace(by_label.loop, &by_label.rec, "[ ] +sel-a +sel-b -sel-a", 10000);
    s_expect_trace(by_field.loop, &by_field.rec, "[ ] +sel-b ~sel-b", 10000);
    s_stop(&by_label);
    s_stop(&by_field);
    s_drop_namespace(ns);
}

// --- a relay on a stable port in front of the apiserver ------------------------------

// start.sh may bring a restarted apiserver back on another port (it skips
// one that still has sockets in TIME_WAIT), so the watch under test talks
// to this relay, which looks up the apiserver's port in bed.env for each
// connection: what a load balancer in front of the apiservers would do.
#define MAX_RELAYS 64

typedef struct {
    int listen_fd, port, wake[2];
    pthread_t thread, relays[MAX_RELAYS];
    int n_relays;
} proxy_t;

typedef struct {
    int fd[2], wake;
} relay_t;

static int s_send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static void *s_relay(void *arg)
{
    relay_t r = *(relay_t *)arg;
    free(arg);
    char buf[16384];
    for (;;) {
        struct pollfd p[3] = {{.fd = r.fd[0], .events = POLLIN},
                              {.fd = r.fd[1], .events = POLLIN},
                              {.fd = r.wake, .events = POLLIN}};
        if (poll(p, 3, -1) < 0 || p[2].revents)
            break;
        int from = p[0].revents ? 0 : 1;
        ssize_t n = recv(r.fd[from], buf, sizeof buf, 0);
        if (n <= 0 || s_send_all(r.fd[1 - from], buf, (size_t)n) < 0)
            break;
    }
    close(r.fd[0]);
    close(r.fd[1]);
    return NULL;
}

static int s_tcp_listen(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

// A connection to the apiserver bed.env names now, or -1.
static int s_connect_apiserver(void)
{
    char *url = ts_bed_value("BED_APISERVER_URL"); // https://127.0.0.1:PORT
    const char *colon = url ? strrchr(url, ':') : NULL;
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_port = htons((uint16_t)(colon ? atoi(colon + 1) : 0));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    free(url);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void *s_proxy_thread(void *arg)
{
    proxy_t *proxy = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = proxy->listen_fd, .events = POLLIN},
                              {.fd = proxy->wake[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 || p[1].revents)
            break;
        int fd = accept(proxy->listen_fd, NULL, NULL);
        int up = fd >= 0 ? s_connect_apiserver() : -1;
        relay_t *r = up >= 0 && proxy->n_relays < MAX_RELAYS ? malloc(sizeof *r) : NULL;
        if (!r) { // the apiserver is down: the client sees the connection closed
            if (fd >= 0)
                close(fd);
            if (up >= 0)
                close(up);
            continue;
        }
        *r = (relay_t){{fd, up}, proxy->wake[0]};
        if (pthread_create(&proxy->relays[proxy->n_relays], NULL, s_relay, r) == 0)
            proxy->n_relays++;
    }
    return NULL;
}

static void s_proxy_start(proxy_t *proxy)
{
    memset(proxy, 0, sizeof *proxy);
    proxy->listen_fd = s_tcp_listen(&proxy->port);
    assert_int_equal(pipe(proxy->wake), 0);
    assert_int_equal(pthread_create(&proxy->thread, NULL, s_proxy_thread, proxy), 0);
}

static void s_proxy_stop(proxy_t *proxy)
{
    assert_int_equal(write(proxy->wake[1], "x", 1), 1);
    pthread_join(proxy->thread, NULL);
    for (int i = 0; i < proxy->n_relays; i++)
        pthread_join(proxy->relays[i], NULL);
    close(proxy->listen_fd);
    close(proxy->wake[0]);
    close(proxy->wake[1]);
}

// Runs a bed script, driving the loop meanwhile so the watch keeps going.
typedef struct {
    pid_t pid;
    int status;
    bool done;
} child_t;

static bool s_child_done(void *arg)
{
    child_t *c = arg;
    if (!c->done && waitpid(c->pid, &c->status, WNOHANG) == c->pid)
        c->done = true;
    return c->done;
}

static void s_bed_script(zloop_t *loop, const char *script, const char *only)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/bed/%s", VMLET_SOURCE_DIR, script);
    char *argv[] = {path, s_bed.dir, only ? "--only" : NULL, (char *)only, NULL};
    child_t child = {.pid = ts_spawn(NULL, argv)};
    assert_true(child.pid > 0);
    bool done = loop ? s_run_until(loop, s_child_done, &child, 240000)
                     : ts_wait_exit(child.pid, 240000, &child.status) == 0;
    if (!done || !WIFEXITED(child.status) || WEXITSTATUS(child.status) != 0)
        fail_msg("%s %s%s%s failed", path, s_bed.dir, only ? " --only " : "", only ? only : "");
}

// The bed is whole again whatever the test did (start.sh is idempotent).
static int s_heal_bed(void **state)
{
    (void)state;
    if (s_have_bed())
        s_bed_script(NULL, "start.sh", NULL);
    return 0;
}

static bool s_restart_converged(void *arg)
{
    rec_t *rec = arg;
    const char *mod = zhashx_lookup(rec->view, "mod");
    return zhashx_size(rec->view) == 3 && zhashx_lookup(rec->view, "new") && mod &&
           strcmp(mod, "2") == 0;
}

// The apiserver goes away under a watch and comes back: the watch reports
// the failure, retries with back-off, and ends up with exactly what the
// server holds, including changes made before it reconnected.
static void test_apiserver_restart(void **state)
{
    (void)state;
    s_need_bed();
    char ns[64];
    s_namespace("restart", ns);
    s_create(ns, "keep", "1", NULL);
    s_create(ns, "mod", "1", NULL);
    s_create(ns, "del", "1", NULL);
    proxy_t proxy;
    s_proxy_start(&proxy);
    char server[64], collection[160];
    snprintf(server, sizeof server, "https://127.0.0.1:%d", proxy.port);
    snprintf(collection, sizeof collection, "/api/v1/namespaces/%s/configmaps", ns);
    vmlet_kube_config_t config = s_bed.config;
    config.server = server;
    fixture_t f;
    s_start(&f, &config, collection, NULL, NULL);
    s_expect_trace(f.loop, &f.rec, "[ del keep mod ]", 10000);

    int64_t t0 = ts_now_ms();
    s_bed_script(f.loop, "stop.sh", "apiserver");
    assert_true(s_run_until(f.loop, s_not_synced, f.watch, 30000));
    print_message("apiserver stopped; watch saw it after %lld ms\n", (long long)(ts_now_ms() - t0));
    s_bed_script(f.loop, "start.sh", NULL);
    print_message("bed whole again after %lld ms\n", (long long)(ts_now_ms() - t0));
    s_forget_bed(); // the apiserver may listen on another port now
    s_need_bed();
    s_create(ns, "new", "1", NULL);
    s_patch(ns, "mod", "{\"data\":{\"k\":\"2\"}}");
    s_delete(ns, "del");

    // Resumed or relisted, the view must converge on the server's state.
    t0 = ts_now_ms();
    s_run_until(f.loop, s_restart_converged, &f.rec, 60000);
    print_message("caught up %lld ms after the bed was back; trace: %s\n",
                  (long long)(ts_now_ms() - t0), f.rec.trace);
    s_expect_view(&f.rec, "keep", "1");
    s_expect_view(&f.rec, "mod", "2");
    s_expect_view(&f.rec, "new", "1");
    assert_int_equal(zhashx_size(f.rec.view), 3);
    assert_true(s_metric(f.metrics, RECONNECTS) >= 1);
    s_stop(&f);
    s_proxy_stop(&proxy);
    s_drop_namespace(ns);
}

// --- a scripted API server on 127.0.0.1 -------------------------------------------

// One answer: status 0 leaves the request unanswered; `stream` sends the
// body without a length (a watch); `hold` keeps the connection open after.
typedef struct {
    int status;
    const char *body;
    bool stream, hold;
} reply_t;

#define MAX_REQUESTS 32

typedef struct {
    int listen_fd, port, wake[2];
    pthread_t thread;
    pthread_mutex_t mutex;
    const reply_t *lists, *watches; // answers in turn; past the end: unanswered
    size_t n_lists, n_watches, next_list, next_watch;
    char requests[MAX_REQUESTS][1024];
    int n_requests;
    int held[MAX_REQUESTS];
    int n_held;
} fake_t;

static const char *s_reason(int status)
{
    return status == 200 ? "OK" : status == 410 ? "Gone" : "Internal Server Error";
}

// Reads the request head; returns its target ("/api/...?...") in out.
static bool s_read_request(int fd, char *out, size_t cap)
{
    char buf[8192] = "";
    size_t len = 0;
    while (len < sizeof buf - 1 && !strstr(buf, "\r\n\r\n")) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 2000) <= 0)
            return false;
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0)
            return false;
        len += (size_t)n;
        buf[len] = '\0';
    }
    return sscanf(buf, "GET %1000s HTTP/1.1", out) == 1 && cap > 1000;
}

static void s_answer(fake_t *fake, int fd)
{
    char target[1024];
    if (!s_read_request(fd, target, sizeof target)) {
        close(fd);
        return;
    }
    pthread_mutex_lock(&fake->mutex);
    bool watch = strstr(target, "watch=1") != NULL;
    const reply_t *reply = NULL;
    if (watch && fake->next_watch < fake->n_watches)
        reply = &fake->watches[fake->next_watch++];
    else if (!watch && fake->next_list < fake->n_lists)
        reply = &fake->lists[fake->next_list++];
    if (fake->n_requests < MAX_REQUESTS)
        snprintf(fake->requests[fake->n_requests++], sizeof fake->requests[0], "%s", target);
    pthread_mutex_unlock(&fake->mutex);
    char head[256];
    if (reply && reply->status) {
        if (reply->stream)
            snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Connection: close\r\n\r\n",
                     reply->status, s_reason(reply->status));
        else
            snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     reply->status, s_reason(reply->status), strlen(reply->body));
        s_send_all(fd, head, strlen(head));
        s_send_all(fd, reply->body, strlen(reply->body));
    }
    if ((!reply || !reply->status || reply->hold) && fake->n_held < MAX_REQUESTS)
        fake->held[fake->n_held++] = fd;
    else
        close(fd);
}

static void *s_fake_thread(void *arg)
{
    fake_t *fake = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = fake->listen_fd, .events = POLLIN},
                              {.fd = fake->wake[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 || p[1].revents)
            break;
        int fd = accept(fake->listen_fd, NULL, NULL);
        if (fd >= 0)
            s_answer(fake, fd);
    }
    return NULL;
}

static void s_fake_start(fake_t *fake, const reply_t *lists, size_t n_lists, const reply_t *watches,
                         size_t n_watches)
{
    memset(fake, 0, sizeof *fake);
    fake->lists = lists;
    fake->n_lists = n_lists;
    fake->watches = watches;
    fake->n_watches = n_watches;
    pthread_mutex_init(&fake->mutex, NULL);
    fake->listen_fd = s_tcp_listen(&fake->port);
    assert_int_equal(pipe(fake->wake), 0);
    assert_int_equal(pthread_create(&fake->thread, NULL, s_fake_thread, fake), 0);
}

static void s_fake_stop(fake_t *fake)
{
    assert_int_equal(write(fake->wake[1], "x", 1), 1);
    pthread_join(fake->thread, NULL);
    for (int i = 0; i < fake->n_held; i++)
        close(fake->held[i]);
    close(fake->listen_fd);
    close(fake->wake[0]);
    close(fake->wake[1]);
    pthread_mutex_destroy(&fake->mutex);
}

typedef struct {
    fake_t *fake;
    int n;
} requests_t;

static bool s_has_requests(void *arg)
{
    requests_t *r = arg;
    pthread_mutex_lock(&r->fake->mutex);
    bool enough = r->fake->n_requests >= r->n;
    pthread_mutex_unlock(&r->fake->mutex);
    return enough;
}

// Request i contains each of the NULL-terminated fragments and not `absent`.
static void s_expect_request(fake_t *fake, int i, const char *absent, const char *const *want)
{
    const char *target = fake->requests[i];
    for (; *want; want++)
        if (!strstr(target, *want))
            fail_msg("request %d \"%s\" lacks \"%s\"", i, target, *want);
    if (absent && strstr(target, absent))
        fail_msg("request %d \"%s\" has \"%s\"", i, target, absent);
}

#define CM(name, rv) "{\"metadata\":{\"name\":\"" name "\",\"resourceVersion\":\"" rv "\"}}"
#define EVENT(type, name, rv) "{\"type\":\"" type "\",\"object\":" CM(name, rv) "}\n"
#define STATUS_410                                                                                 \
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","           \
    "\"message\":\"too old resource version: 100 (200)\",\"reason\":\"Expired\",\"code\":410}"

static const reply_t s_two_lists[] = {
    {200,
     "{\"kind\":\"ConfigMapList\",\"metadata\":{\"resourceVersion\":\"100\"},\"items\":[" CM(
         "a", "90") "," CM("b", "95") "]}",
     false, false},
    {200,
     "{\"kind\":\"ConfigMapList\",\"metadata\":{\"resourceVersion\":\"300\"},\"items\":[" CM(
         "b", "95") "," CM("c", "250") "]}",
     false, false},
};
static const reply_t s_idle_watch = {200, "", true, true};

// Runs a watch against the fake until it made n_requests, then checks the
// trace, which must not grow after (no LISTED beyond the expected relists).
static void s_scenario(const reply_t *watches, size_t n_watches, int n_requests, const char *want,
                       fake_t *fake, vmlet_metrics_t **metrics)
{
    s_fake_start(fake, s_two_lists, 2, watches, n_watches);
    char server[64];
    snprintf(server, sizeof server, "http://127.0.0.1:%d", fake->port);
    vmlet_kube_config_t config = {.server = server};
    fixture_t f;
    s_start(&f, &config, "/api/v1/namespaces/x/configmaps", NULL, NULL);
    requests_t r = {fake, n_requests};
    assert_true(s_run_until(f.loop, s_has_requests, &r, 10000));
    s_expect_trace(f.loop, &f.rec, want, 10000);
    s_run_until(f.loop, NULL, NULL, 300); // a moment for anything unexpected to arrive
    assert_string_equal(f.rec.trace, want);
    assert_int_equal(fake->n_requests, n_requests);
    *metrics = f.metrics;
    f.metrics = NULL;
    s_stop(&f);
    s_fake_stop(fake);
}

// WATCH answered with an ERROR event carrying Status 410: a fresh LIST,
// then a WATCH from that list's resourceVersion.
static void test_gone_error_event(void **state)
{
    (void)state;
    const reply_t watches[] = {
        {200, EVENT("ADDED", "x", "101") "{\"type\":\"ERROR\",\"object\":" STATUS_410 "}\n", true,
         true},
        s_idle_watch};
    fake_t fake;
    vmlet_metrics_t *metrics;
    s_scenario(watches, 2, 4, "[ a b ] +x [ b c ]", &fake, &metrics);
    s_expect_request(&fake, 0, "resourceVersion", (const char *[]){"limit=500", NULL});
    s_expect_request(&fake, 1, NULL,
                     (const char *[]){"watch=1", "allowWatchBookmarks=true",
                                      "timeoutSeconds=", "resourceVersion=100", NULL});
    s_expect_request(&fake, 2, "resourceVersion", (const char *[]){"limit=500", NULL});
    s_expect_request(&fake, 3, NULL, (const char *[]){"watch=1", "resourceVersion=300", NULL});
    assert_int_equal(s_metric(metrics, LISTS), 2);
    vmlet_metrics_destroy(&metrics);
}

// WATCH answered with HTTP 410 Gone: the same.
static void test_gone_http(void **state)
{
    (void)state;
    const reply_t watches[] = {{410, STATUS_410, false, false}, s_idle_watch};
    fake_t fake;
    vmlet_metrics_t *metrics;
    s_scenario(watches, 2, 4, "[ a b ] [ b c ]", &fake, &metrics);
    s_expect_request(&fake, 1, NULL, (const char *[]){"resourceVersion=100", NULL});
    s_expect_request(&fake, 3, NULL, (const char *[]){"resourceVersion=300", NULL});
    vmlet_metrics_destroy(&metrics);
}

// A line that is not JSON, or an event of unknown shape: log and relist.
static void test_bad_input(void **state)
{
    (void)state;
    const reply_t watches[] = {{200, "{\"type\":\"ADDED\",\"object\":{\"metadata\":", true, false},
                               {200, "not json at all\n", true, true},
                               {200, "{\"type\":\"SURPRISE\",\"object\":{}}\n", true, true}};
    fake_t fake;
    vmlet_metrics_t *metrics;
    // The first stream ends cut mid-line: a broken stream, resumed from the
    // same point; the second is garbage: relist; so is the third, whose
    // LIST then goes unanswered.
    s_scenario(watches, 3, 6, "[ a b ] [ b c ]", &fake, &metrics);
    s_expect_request(&fake, 2, NULL, (const char *[]){"watch=1", "resourceVersion=100", NULL});
    s_expect_request(&fake, 3, "resourceVersion", (const char *[]){"limit=500", NULL});
    s_expect_request(&fake, 4, NULL, (const char *[]){"watch=1", "resourceVersion=300", NULL});
    s_expect_request(&fake, 5, "watch=1", (const char *[]){"limit=500", NULL});
    assert_int_equal(s_metric(metrics, SYNCED), 0);
    vmlet_metrics_destroy(&metrics);
}

// A bookmark moves the resume point and is not delivered; a stream that
// ends is resumed from there; an ERROR event other than 410 is retried
// from the same point, without a relist.
static void test_bookmark_and_resume(void **state)
{
    (void)state;
    const reply_t watches[] = {
        {200, EVENT("ADDED", "x", "101") EVENT("BOOKMARK", "", "150"), true, false},
        {200,
         "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":500,"
         "\"message\":\"etcd hiccup\"}}\n",
         true, true},
        {200, EVENT("MODIFIED", "x", "160") EVENT("DELETED", "a", "170"), true, true}};
    fake_t fake;
    vmlet_metrics_t *metrics;
    s_scenario(watches, 3, 4, "[ a b ] +x ~x -a", &fake, &metrics);
    s_expect_request(&fake, 2, NULL, (const char *[]){"watch=1", "resourceVersion=150", NULL});
    s_expect_request(&fake, 3, NULL, (const char *[]){"watch=1", "resourceVersion=150", NULL});
    assert_int_equal(s_metric(metrics, LISTS), 1);
    assert_int_equal(s_metric(metrics, RECONNECTS), 2);
    vmlet_metrics_destroy(&metrics);
}

// Destroy returns promptly while a LIST waits for an answer that never comes.
static void test_destroy_while_blocked(void **state)
{
    (void)state;
    fake_t fake;
    s_fake_start(&fake, NULL, 0, NULL, 0);
    char server[64];
    snprintf(server, sizeof server, "http://127.0.0.1:%d", fake.port);
    vmlet_kube_config_t config = {.server = server};
    fixture_t f;
    s_start(&f, &config, "/api/v1/pods", "spec.nodeName=vmlet", NULL);
    requests_t r = {&fake, 1};
    assert_true(s_run_until(f.loop, s_has_requests, &r, 10000));
    s_expect_request(
        &fake, 0, NULL,
        (const char *[]){"/api/v1/pods?limit=500", "fieldSelector=spec.nodeName%3Dvmlet", NULL});
    s_run_until(f.loop, NULL, NULL, 100);
    assert_string_equal(f.rec.trace, "");
    int64_t t0 = ts_now_ms();
    vmlet_kube_watch_destroy(&f.watch);
    int64_t took = ts_now_ms() - t0;
    print_message("destroy during an unanswered LIST took %lld ms\n", (long long)took);
    assert_true(took < 200);
    s_stop(&f);
    s_fake_stop(&fake);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    vmlet_kube_config_t config = {.server = "http://127.0.0.1:1"};
    vmlet_err_t err = {0};
    assert_null(vmlet_kube_watch_new(&config, "api/v1/pods", NULL, NULL, s_on_watch, NULL, NULL,
                                     NULL, &err));
    assert_string_equal(err.msg, "watch: collection 'api/v1/pods' is not a path like /api/v1/pods");
    vmlet_kube_config_t none = {0};
    assert_null(vmlet_kube_watch_new(&none, "/api/v1/pods", NULL, NULL, s_on_watch, NULL, NULL,
                                     NULL, &err));
    assert_non_null(strstr(err.msg, "no API server URL configured"));
}

static int s_teardown(void **state)
{
    (void)state;
    s_forget_bed();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_gone_error_event),
        cmocka_unit_test(test_gone_http),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_bookmark_and_resume),
        cmocka_unit_test(test_destroy_while_blocked),
        cmocka_unit_test(test_list_then_watch),
        cmocka_unit_test(test_selectors),
        cmocka_unit_test_teardown(test_apiserver_restart, s_heal_bed),
    };
    if (getenv("VMLET_TEST_FILTER"))
        cmocka_set_test_filter(getenv("VMLET_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, s_teardown);
}
