// The six service binaries, as an operator runs them: they start, connect
// to the broker and Redis, serve /healthz, /readyz and /metrics, come back
// when the broker or Redis restarts, and exit 0 within 2 s of SIGTERM.
#include "stack.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_SERVICES 6

static const char *const services[N_SERVICES] = {"k8s-watcher", "image-builder", "vm-launcher",
                                                  "prober", "status-reporter", "kubelet-api"};

typedef struct {
    char *dir;
    ts_redis_t redis;
    ts_broker_t broker;
    pid_t pids[N_SERVICES];
    int ports[N_SERVICES];
    ts_stack_t launcher; // only for its vm-launcher flags (network, directories)
} fixture_t;

static pid_t s_start_service(fixture_t *f, int i)
{
    char *bin;
    char name[64], log[300], http[64], redis[96], pub[96], sub[96], work[96];
    snprintf(name, sizeof name, "vmlet-%s", services[i]);
    bin = ts_bin_path(name);
    snprintf(log, sizeof log, "%s/%s.log", f->dir, services[i]);
    f->ports[i] = ts_free_port();
    snprintf(http, sizeof http, "--http-listen=127.0.0.1:%d", f->ports[i]);
    snprintf(redis, sizeof redis, "--redis-url=redis://127.0.0.1:%d", f->redis.port);
    snprintf(pub, sizeof pub, "--bus-publish=%s", f->broker.publish);
    snprintf(sub, sizeof sub, "--bus-subscribe=%s", f->broker.subscribe);
    snprintf(work, sizeof work, "--bus-work=%s", f->broker.work);
    // The watcher and the reporter talk to the bed's API server.
    char *kubeconfig_file = ts_bed_value("BED_VMLET_KUBECONFIG");
    char kubeconfig[400], node[96];
    snprintf(kubeconfig, sizeof kubeconfig, "--kubeconfig=%s", kubeconfig_file);
    snprintf(node, sizeof node, "--node-name=vmlet-services-%d", (int)getpid());
    free(kubeconfig_file);
    bool kube = strcmp(services[i], "k8s-watcher") == 0 || strcmp(services[i], "status-reporter") == 0;
    // The image cache lives in the test's directory, not under /var/lib.
    char cache[400];
    snprintf(cache, sizeof cache, "--cache-dir=%s/images", f->dir);
    bool images = strcmp(services[i], "image-builder") == 0;
    char *argv[32] = {bin, http, redis, pub, sub, work, "--bus-heartbeat=200ms",
                      "--presence-interval=500ms", NULL};
    int n = 8;
    if (kube) {
        argv[n++] = kubeconfig;
        argv[n++] = node;
    } else if (images) {
        argv[n++] = cache;
    } else if (strcmp(services[i], "vm-launcher") == 0) {
        for (int k = 0; f->launcher.launcher_flags[k] && n < 31; k++)
            argv[n++] = f->launcher.launcher_flags[k];
    }
    // The kubelet port on a free port, a self-signed certificate made in the
    // test's directory, client certificates checked against the bed's CA.
    char listen[64], state_dir[400], client_ca[400];
    if (strcmp(services[i], "kubelet-api") == 0) {
        char *ca = ts_bed_value("BED_CA");
        snprintf(listen, sizeof listen, "--listen=127.0.0.1:%d", ts_free_port());
        snprintf(state_dir, sizeof state_dir, "--state-dir=%s/kubelet-api", f->dir);
        snprintf(client_ca, sizeof client_ca, "--client-ca=%s", ca);
        free(ca);
        argv[n++] = listen;
        argv[n++] = state_dir;
        argv[n++] = client_ca;
    }
    // The password comes from the environment, as in a container.
    setenv("VMLET_REDIS_PASSWORD", f->redis.password, 1);
    pid_t pid = ts_spawn(log, argv);
    free(bin);
    return pid;
}

static const char *const broker_args[] = {"--heartbeat=200ms", NULL};

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->dir = ts_tempdir("vmlet-services");
    f->launcher.dir = f->dir;
    ts_stack_launcher_flags(&f->launcher);
    assert_int_equal(ts_redis_start(&f->redis, "pw-for-services"), 0);
    assert_int_equal(ts_broker_start(&f->broker, f->dir, broker_args), 0);
    for (int i = 0; i < N_SERVICES; i++)
        f->pids[i] = s_start_service(f, i);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    // SIGTERM first: the launcher then removes its pod network.
    for (int i = 0; i < N_SERVICES; i++)
        if (f->pids[i] > 0) {
            ts_kill(f->pids[i], SIGTERM);
            if (ts_wait_exit(f->pids[i], 5000, NULL) < 0) {
                ts_kill(f->pids[i], SIGKILL);
                ts_wait_exit(f->pids[i], 5000, NULL);
            }
        }
    for (int k = 0; f->launcher.launcher_flags[k]; k++)
        free(f->launcher.launcher_flags[k]);
    ts_broker_stop(&f->broker);
    ts_redis_stop(&f->redis);
    char *kubectl = ts_bed_value("BED_KUBECTL"), *kubeconfig = ts_bed_value("BED_KUBECONFIG");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --kubeconfig %s delete node vmlet-services-%d --wait=false "
                              ">/dev/null 2>&1", kubectl, kubeconfig, (int)getpid());
    if (system(cmd) != 0) { /* the node may not have been made */ }
    free(kubectl);
    free(kubeconfig);
    ts_remove_dir(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

typedef struct {
    fixture_t *f;
    const char *path;
    long want;
} probe_t;

static bool s_all_answer(void *arg)
{
    probe_t *p = arg;
    for (int i = 0; i < N_SERVICES; i++) {
        char url[128];
        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", p->f->ports[i], p->path);
        long status = 0;
        if (ts_http_get(url, &status, NULL) < 0 || status != p->want)
            return false;
    }
    return true;
}

// Fails with each service's /readyz report if they are not all ready in time.
static void s_expect_all_ready(fixture_t *f, int timeout_ms, const char *when)
{
    probe_t ready = {f, "/readyz", 200};
    if (ts_poll(s_all_answer, &ready, timeout_ms))
        return;
    for (int i = 0; i < N_SERVICES; i++) {
        char url[128], *body = NULL;
        long status = 0;
        snprintf(url, sizeof url, "http://127.0.0.1:%d/readyz", f->ports[i]);
        ts_http_get(url, &status, &body);
        print_message("%s: %ld %s\n", services[i], status, body ? body : "(no answer)");
        free(body);
    }
    fail_msg("not all services ready %s", when);
}

static double s_metric(fixture_t *f, int i, const char *series)
{
    char url[128], *body = NULL;
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", f->ports[i]);
    if (ts_http_get(url, &status, &body) < 0)
        return -1;
    double v = ts_metric_value(body, series);
    free(body);
    return v;
}

static bool s_all_reconnected(void *arg)
{
    fixture_t *f = arg;
    for (int i = 0; i < N_SERVICES; i++)
        if (s_metric(f, i, "vmlet_redis_connects_total") < 2)
            return false;
    return true;
}

static void test_start_serve_and_register(void **state)
{
    fixture_t *f = *state;
    probe_t alive = {f, "/healthz", 200};
    assert_true(ts_poll(s_all_answer, &alive, 10000));
    s_expect_all_ready(f, 10000, "after start");
    assert_true(s_metric(f, 0, "vmlet_redis_connected") == 1);
    assert_true(s_metric(f, 2, "vmlet_bus_worker_connected{queue=\"vm-launcher\"}") == 1);
    assert_true(s_metric(f, 4, "vmlet_bus_subscriber_ready") == 1);
    // Each instance announces itself in Redis.
    redisContext *c = redisConnect("127.0.0.1", f->redis.port);
    redisReply *r = redisCommand(c, "AUTH %s", f->redis.password);
    freeReplyObject(r);
    for (int i = 0; i < N_SERVICES; i++) {
        r = redisCommand(c, "KEYS vmlet:instances:%s:*", services[i]);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        if (r->elements != 1)
            fail_msg("%s has %zu presence keys", services[i], r->elements);
        freeReplyObject(r);
    }
    redisFree(c);
}

// How many services subscribe to events (their /readyz reports it; the
// image-builder only publishes).
static int s_subscribers(fixture_t *f)
{
    int n = 0;
    for (int i = 0; i < N_SERVICES; i++) {
        char url[128], *body = NULL;
        long status = 0;
        snprintf(url, sizeof url, "http://127.0.0.1:%d/readyz", f->ports[i]);
        if (ts_http_get(url, &status, &body) == 0 && body && strstr(body, "bus subscriber"))
            n++;
        free(body);
    }
    return n;
}

// The broker's metrics show a handshake from every subscriber and one
// worker on each work queue.
static bool s_broker_knows_everyone(void *arg)
{
    fixture_t *f = arg;
    char url[128], *body = NULL;
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", f->broker.http_port);
    if (ts_http_get(url, &status, &body) < 0)
        return false;
    bool ok = ts_metric_value(body, "vmlet_bus_broker_handshakes_total") >= s_subscribers(f) &&
              ts_metric_value(body, "vmlet_bus_broker_queue_workers{queue=\"vm-launcher\"}") == 1 &&
              ts_metric_value(body, "vmlet_bus_broker_queue_workers{queue=\"image-builder\"}") == 1;
    free(body);
    return ok;
}

// Says which count was wrong, and what each service last logged, on
// stderr (unbuffered, so it survives the failure in CI's log).
static void s_report_broker_view(fixture_t *f)
{
    char url[128], *body = NULL;
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", f->broker.http_port);
    ts_http_get(url, &status, &body);
    fprintf(stderr, "broker: handshakes %.0f (subscribers %d), vm-launcher workers %.0f, "
                    "image-builder workers %.0f\n",
            body ? ts_metric_value(body, "vmlet_bus_broker_handshakes_total") : -1,
            s_subscribers(f),
            body ? ts_metric_value(body, "vmlet_bus_broker_queue_workers{queue=\"vm-launcher\"}")
                 : -1,
            body ? ts_metric_value(body,
                                   "vmlet_bus_broker_queue_workers{queue=\"image-builder\"}")
                 : -1);
    free(body);
    for (int i = 0; i < N_SERVICES; i++) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "echo '--- %s.log:' >&2; tail -n 15 '%s/%s.log' >&2", services[i],
                 f->dir, services[i]);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log for %s)\n", services[i]);
    }
    fprintf(stderr, "--- broker:\n");
    snprintf(url, sizeof url, "tail -n 20 '%s/broker.log' >&2", f->dir);
    if (system(url) != 0)
        fprintf(stderr, "(no broker log)\n");
    fail_msg("the restarted broker did not hear from every service again");
}

static void test_broker_and_redis_restarts(void **state)
{
    fixture_t *f = *state;
    s_expect_all_ready(f, 10000, "after start");
    assert_int_equal(ts_broker_restart(&f->broker, broker_args), 0);
    s_expect_all_ready(f, 10000, "after the broker restarted");
    assert_int_equal(ts_redis_restart(&f->redis), 0);
    // Each notices (its presence renewal fails) and connects again.
    if (!ts_poll(s_all_reconnected, f, 10000))
        for (int i = 0; i < N_SERVICES; i++)
            print_message("%s connected to Redis %.0f times\n", services[i],
                          s_metric(f, i, "vmlet_redis_connects_total"));
    assert_true(s_all_reconnected(f));
    s_expect_all_ready(f, 10000, "after Redis restarted");
    // The new broker knows every subscriber and worker again. Readiness
    // alone does not prove it: a service may not have noticed the restart
    // yet, so wait for the broker's own count.
    if (!ts_poll(s_broker_knows_everyone, f, 10000))
        s_report_broker_view(f);
}

static void test_sigterm_exits_zero_within_two_seconds(void **state)
{
    fixture_t *f = *state;
    s_expect_all_ready(f, 10000, "after start");
    for (int i = 0; i < N_SERVICES; i++) {
        int64_t start = ts_now_ms();
        assert_int_equal(ts_kill(f->pids[i], SIGTERM), 0);
        int status = -1;
        if (ts_wait_exit(f->pids[i], 2000, &status) < 0)
            fail_msg("%s still running 2 s after SIGTERM", services[i]);
        print_message("%s exited %d after %lld ms\n", services[i], WEXITSTATUS(status),
                      (long long)(ts_now_ms() - start));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        f->pids[i] = 0;
    }
    assert_int_equal(ts_kill(f->broker.pid, SIGTERM), 0);
    int status = -1;
    assert_int_equal(ts_wait_exit(f->broker.pid, 2000, &status), 0);
    assert_int_equal(WEXITSTATUS(status), 0);
    f->broker.pid = 0;
}

// Runs a binary to completion; returns its exit code, output in *out.
static int s_run(const char *name, const char *arg, char **out)
{
    char *dir = ts_tempdir("vmlet-run");
    char log[300];
    snprintf(log, sizeof log, "%s/out", dir);
    char *bin = ts_bin_path(name);
    char *argv[] = {bin, (char *)arg, NULL};
    pid_t pid = ts_spawn(log, argv);
    int status = -1;
    assert_int_equal(ts_wait_exit(pid, 5000, &status), 0);
    FILE *fp = fopen(log, "r");
    *out = calloc(1, 65536);
    size_t n = fread(*out, 1, 65535, fp);
    (*out)[n] = '\0';
    fclose(fp);
    free(bin);
    ts_remove_dir(dir);
    free(dir);
    return WEXITSTATUS(status);
}

static void test_help_and_bad_settings(void **state)
{
    (void)state;
    const char *bins[] = {"vmlet-bus", "vmlet-k8s-watcher", "vmlet-image-builder",
                          "vmlet-vm-launcher", "vmlet-prober", "vmlet-status-reporter",
                          "vmlet-kubelet-api"};
    for (size_t i = 0; i < sizeof bins / sizeof bins[0]; i++) {
        char *out = NULL;
        assert_int_equal(s_run(bins[i], "--help", &out), 0);
        assert_non_null(strstr(out, "--log-format"));
        assert_non_null(strstr(out, "env VMLET_HTTP_LISTEN"));
        free(out);
        assert_int_equal(s_run(bins[i], "--log-level=chatty", &out), 2);
        if (!strstr(out, "setting --log-level") || !strstr(out, "debug|info|warn|error"))
            fail_msg("%s: unhelpful error: %s", bins[i], out);
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_serve_and_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_and_redis_restarts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_exits_zero_within_two_seconds, setup,
                                        teardown),
        cmocka_unit_test(test_help_and_bad_settings),
    };
    return TS_RUN(tests);
}
