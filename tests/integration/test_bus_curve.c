// The bus with CURVE, through the real broker and real bus peers: an
// authorised publisher reaches an authorised subscriber; a peer whose
// certificate is not in --curve-authorized, or that has none, can neither
// publish, nor subscribe, nor take work, while the authorised ones are
// served all along; the broker counts each refusal; a certificate added to
// the directory is honoured without a restart.
#include "testsupport.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define REFUSED "vmlet_bus_broker_auth_refused_total"

typedef struct {
    char *dir;
    ts_broker_t broker;
    ts_redis_t redis;
    pid_t peers[8];
    int n_peers;
} fixture_t;

// Makes <dir>/<name> and <name>_secret with the broker's own mode.
static void s_make_cert(fixture_t *f, const char *name)
{
    char *bin = ts_bin_path("vmlet-bus");
    char cmd[800];
    snprintf(cmd, sizeof cmd, "'%s' --make-cert '%s/%s' >/dev/null", bin, f->dir, name);
    free(bin);
    assert_int_equal(system(cmd), 0);
}

static void s_authorise(fixture_t *f, const char *name)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cp '%s/%s' '%s/authorized/'", f->dir, name, f->dir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->dir = ts_tempdir("vmlet-bus-curve");
    char authorized[400], cert[400], authorized_arg[420], cert_arg[420];
    snprintf(authorized, sizeof authorized, "%s/authorized", f->dir);
    assert_int_equal(mkdir(authorized, 0755), 0);
    s_make_cert(f, "broker");
    s_make_cert(f, "good");
    s_make_cert(f, "rogue");
    s_authorise(f, "good");
    snprintf(cert, sizeof cert, "%s/broker_secret", f->dir);
    snprintf(cert_arg, sizeof cert_arg, "--curve-cert=%s", cert);
    snprintf(authorized_arg, sizeof authorized_arg, "--curve-authorized=%s", authorized);
    const char *const extra[] = {cert_arg, authorized_arg, "--heartbeat=200ms", NULL};
    assert_int_equal(ts_redis_start(&f->redis, NULL), 0);
    assert_int_equal(ts_broker_start(&f->broker, f->dir, extra), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < f->n_peers; i++) {
        ts_kill(f->peers[i], SIGKILL);
        ts_wait_exit(f->peers[i], 5000, NULL);
    }
    ts_broker_stop(&f->broker);
    ts_redis_stop(&f->redis);
    ts_remove_dir(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

// Starts a peer named `name` (its tag and output file) as `cert` ("good",
// "rogue", or NULL for no CURVE at all), with up to 4 more flags.
static pid_t s_peer(fixture_t *f, const char *name, const char *mode, const char *cert,
                    const char *const extra[])
{
    char out[300], mode_arg[64], pub[96], sub[96], work[96], tag[64], redis[96];
    char cert_arg[420], key_arg[420];
    snprintf(out, sizeof out, "%s/%s.out", f->dir, name);
    snprintf(mode_arg, sizeof mode_arg, "--mode=%s", mode);
    snprintf(pub, sizeof pub, "--publish=%s", f->broker.publish);
    snprintf(sub, sizeof sub, "--subscribe=%s", f->broker.subscribe);
    snprintf(work, sizeof work, "--work=%s", f->broker.work);
    snprintf(tag, sizeof tag, "--tag=%s", name);
    snprintf(redis, sizeof redis, "--redis-url=redis://127.0.0.1:%d", f->redis.port);
    char *bin = ts_bin_path("vmlet-test-bus-peer");
    char *argv[24] = {bin, mode_arg, pub, sub, work, tag, redis, "--queue=test"};
    int n = 8;
    if (cert) {
        snprintf(cert_arg, sizeof cert_arg, "--curve-cert=%s/%s_secret", f->dir, cert);
        snprintf(key_arg, sizeof key_arg, "--curve-server-key=%s/broker", f->dir);
        argv[n++] = cert_arg;
        argv[n++] = key_arg;
    }
    for (int i = 0; extra && extra[i] && n < 23; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    pid_t pid = ts_spawn(out, argv);
    free(bin);
    assert_true(pid > 0);
    if (f->n_peers < 8)
        f->peers[f->n_peers++] = pid;
    return pid;
}

static char *s_line(fixture_t *f, const char *name, const char *prefix, int timeout_ms)
{
    char out[300];
    snprintf(out, sizeof out, "%s/%s.out", f->dir, name);
    return ts_wait_line(out, prefix, timeout_ms);
}

// Waits for the peer's verdict, READY or ERROR (its log lines come
// between), and checks it is `want`.
static void s_expect_first(fixture_t *f, const char *name, const char *want)
{
    const char *other = strcmp(want, "READY") == 0 ? "ERROR" : "READY";
    int64_t deadline = ts_now_ms() + 20000;
    char *line = NULL;
    while (!line && ts_now_ms() < deadline) {
        if ((line = s_line(f, name, other, 50)))
            fail_msg("peer %s said '%s', expected %s", name, line, want);
        line = s_line(f, name, want, 50);
    }
    if (!line)
        fail_msg("peer %s said neither READY nor ERROR in 20 s", name);
    free(line);
}

static double s_refused(fixture_t *f, const char *socket, const char *reason)
{
    char url[128], series[160], *body = NULL;
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", f->broker.http_port);
    snprintf(series, sizeof series, REFUSED "{socket=\"%s\",reason=\"%s\"}", socket, reason);
    if (ts_http_get(url, &status, &body) < 0 || status != 200) {
        free(body);
        return -1;
    }
    double v = ts_metric_value(body, series);
    free(body);
    return v;
}

static const char *const quick[] = {"--ready-timeout=3s", NULL};

static void test_authorised_publisher_reaches_authorised_subscriber(void **state)
{
    fixture_t *f = *state;
    const char *const sub_args[] = {"--expect=200", "--idle=10s", NULL};
    s_peer(f, "sub", "subscribe", "good", sub_args);
    s_expect_first(f, "sub", "READY");
    const char *const pub_args[] = {"--count=200", NULL};
    s_peer(f, "pub", "publish", "good", pub_args);
    char *result = s_line(f, "sub", "RESULT", 30000);
    assert_non_null(result);
    assert_int_equal(ts_kv(result, "received"), 200);
    assert_int_equal(ts_kv(result, "order_errors"), 0);
    free(result);
    assert_true(s_refused(f, "publish", "denied") == 0);
    assert_true(s_refused(f, "subscribe", "denied") == 0);
}

// The rogue and certificate-less publishers never hear the broker, and
// the subscriber receives the authorised publisher's events and no others.
static void test_unauthorised_publishers_do_not_arrive(void **state)
{
    fixture_t *f = *state;
    const char *const sub_args[] = {"--expect=400", "--idle=4s", NULL};
    s_peer(f, "sub", "subscribe", "good", sub_args);
    s_expect_first(f, "sub", "READY");
    const char *const rogue_args[] = {"--count=100", "--ready-timeout=3s", NULL};
    s_peer(f, "rogue", "publish", "rogue", rogue_args);
    s_peer(f, "nocert", "publish", NULL, rogue_args);
    s_expect_first(f, "rogue", "ERROR");
    s_expect_first(f, "nocert", "ERROR");
    const char *const pub_args[] = {"--count=100", NULL};
    s_peer(f, "pub", "publish", "good", pub_args);
    char *result = s_line(f, "sub", "RESULT", 30000);
    assert_non_null(result);
    assert_int_equal(ts_kv(result, "received"), 100);
    free(result);
    assert_true(s_refused(f, "publish", "denied") >= 1);
    assert_true(s_refused(f, "publish", "no-curve") >= 1);
}

static void test_unauthorised_subscribers_get_nothing(void **state)
{
    fixture_t *f = *state;
    // Events flow all along, so a subscriber let in would get some.
    const char *const pub_args[] = {"--count=100000", "--rate=2000", NULL};
    s_peer(f, "pub", "publish", "good", pub_args);
    s_expect_first(f, "pub", "READY");
    s_peer(f, "rogue", "subscribe", "rogue", quick);
    s_peer(f, "nocert", "subscribe", NULL, quick);
    s_expect_first(f, "rogue", "ERROR");
    s_expect_first(f, "nocert", "ERROR");
    // The broker still serves an authorised subscriber.
    const char *const sub_args[] = {"--expect=100", "--idle=10s", NULL};
    s_peer(f, "sub", "subscribe", "good", sub_args);
    char *result = s_line(f, "sub", "RESULT", 30000);
    assert_non_null(result);
    assert_true(ts_kv(result, "received") >= 100); // it stops looking a little after
    free(result);
    assert_true(s_refused(f, "subscribe", "denied") >= 1);
    assert_true(s_refused(f, "subscribe", "no-curve") >= 1);
}

static long long s_redis_int(fixture_t *f, const char *command)
{
    redisContext *c = redisConnect("127.0.0.1", f->redis.port);
    redisReply *r = c && !c->err ? redisCommand(c, command) : NULL;
    long long v = -1;
    if (r && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r && r->type == REDIS_REPLY_STRING)
        v = atoll(r->str);
    else if (r && r->type == REDIS_REPLY_NIL)
        v = 0;
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
    return v;
}

static bool s_all_done(void *arg)
{
    return s_redis_int(arg, "GET effects") >= 300;
}

// Workers without the right certificate are started first, so a broker
// that let them in would hand them items.
static void test_unauthorised_workers_get_no_work(void **state)
{
    fixture_t *f = *state;
    s_peer(f, "rogue", "work", "rogue", NULL);
    s_peer(f, "nocert", "work", NULL, NULL);
    s_expect_first(f, "rogue", "READY"); // a worker does not wait for the broker
    s_expect_first(f, "nocert", "READY");
    s_peer(f, "good", "work", "good", NULL);
    s_expect_first(f, "good", "READY");
    const char *const submit_args[] = {"--count=300", NULL};
    s_peer(f, "client", "submit", "good", submit_args);
    char *result = s_line(f, "client", "RESULT", 60000);
    assert_non_null(result);
    assert_int_equal(ts_kv(result, "pending"), 0);
    free(result);
    assert_true(ts_poll(s_all_done, f, 30000));
    assert_int_equal(s_redis_int(f, "HGET deliveries rogue"), 0);
    assert_int_equal(s_redis_int(f, "HGET deliveries nocert"), 0);
    assert_int_equal(s_redis_int(f, "GET effects"), 300);
    assert_true(s_redis_int(f, "HGET deliveries good") >= 300);
    assert_true(s_refused(f, "work", "denied") >= 1);
    assert_true(s_refused(f, "work", "no-curve") >= 1);
}

// zauth re-reads the directory: a certificate copied in is let in next time.
static void test_certificate_added_later_is_let_in(void **state)
{
    fixture_t *f = *state;
    s_peer(f, "before", "publish", "rogue", quick);
    s_expect_first(f, "before", "ERROR");
    s_authorise(f, "rogue");
    const char *const args[] = {"--count=1", NULL};
    s_peer(f, "after", "publish", "rogue", args);
    s_expect_first(f, "after", "READY");
}

// CURVE half-configured is a mistake the broker names at start.
static void test_broker_refuses_half_a_setting(void **state)
{
    fixture_t *f = *state;
    char *bin = ts_bin_path("vmlet-bus");
    char log[400], cert[420];
    snprintf(log, sizeof log, "%s/half.log", f->dir);
    snprintf(cert, sizeof cert, "--curve-cert=%s/broker_secret", f->dir);
    char *argv[] = {bin,
                    "--publish-bind=tcp://127.0.0.1:0",
                    "--subscribe-bind=tcp://127.0.0.1:0",
                    "--work-bind=tcp://127.0.0.1:0",
                    "--http-listen=127.0.0.1:0",
                    cert,
                    NULL};
    pid_t pid = ts_spawn(log, argv);
    free(bin);
    int status = 0;
    assert_int_equal(ts_wait_exit(pid, 10000, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    char cmd[500];
    snprintf(cmd, sizeof cmd, "grep -q -e 'curve-authorized.*is not a directory' '%s'", log);
    if (system(cmd) != 0)
        fail_msg("no message naming --curve-authorized in %s", log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_authorised_publisher_reaches_authorised_subscriber,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_unauthorised_publishers_do_not_arrive, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unauthorised_subscribers_get_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unauthorised_workers_get_no_work, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certificate_added_later_is_let_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_refuses_half_a_setting, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
