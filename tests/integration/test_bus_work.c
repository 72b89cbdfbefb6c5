// Work items through the real broker to real worker processes, effects
// recorded in a real Redis: items spread over 3 workers and each effect
// lands once; a worker SIGKILLed mid-stream loses nothing; a worker stopped
// with SIGTERM says goodbye, so nothing waits for it to expire and nothing
// runs twice; Redis restarted
// under load and the broker restarted mid-stream delay work but lose none.
#include "testsupport.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ITEMS 3000

typedef struct {
    char *dir;
    ts_broker_t broker;
    ts_redis_t redis;
    redisContext *redis_ctx;
    pid_t workers[3];
} fixture_t;

static const char *const broker_args[] = {"--heartbeat=200ms", "--liveness=3", NULL};

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->dir = ts_tempdir("vmlet-bus-work");
    assert_int_equal(ts_redis_start(&f->redis, NULL), 0);
    assert_int_equal(ts_broker_start(&f->broker, f->dir, broker_args), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < 3; i++)
        if (f->workers[i] > 0) {
            ts_kill(f->workers[i], SIGKILL);
            ts_wait_exit(f->workers[i], 5000, NULL);
        }
    if (f->redis_ctx)
        redisFree(f->redis_ctx);
    ts_broker_stop(&f->broker);
    ts_redis_stop(&f->redis);
    ts_remove_dir(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

// Starts a bus peer named `name` (also its tag, unless extra sets one)
// and waits for it to be ready. extra: one more flag, or NULL.
static pid_t s_peer(fixture_t *f, const char *name, const char *mode, const char *extra,
                    const char *tag_override)
{
    char out[300], mode_arg[64], work[96], tag[64], redis[96];
    snprintf(out, sizeof out, "%s/%s.out", f->dir, name);
    snprintf(mode_arg, sizeof mode_arg, "--mode=%s", mode);
    snprintf(work, sizeof work, "--work=%s", f->broker.work);
    snprintf(tag, sizeof tag, "--tag=%s", tag_override ? tag_override : name);
    snprintf(redis, sizeof redis, "--redis-url=redis://127.0.0.1:%d", f->redis.port);
    char *bin = ts_bin_path("vmlet-test-bus-peer");
    char *argv[] = {bin, mode_arg, work, tag, redis, "--queue=test", (char *)extra, NULL};
    pid_t pid = ts_spawn(out, argv);
    free(bin);
    char *ready = ts_wait_line(out, "READY", 15000);
    assert_non_null(ready);
    free(ready);
    return pid;
}

static void s_start_workers(fixture_t *f, const char *work_us)
{
    const char *names[] = {"w1", "w2", "w3"};
    for (int i = 0; i < 3; i++)
        f->workers[i] = s_peer(f, names[i], "work", work_us, NULL);
}

static long long s_redis_int(fixture_t *f, const char *fmt, ...)
{
    if (!f->redis_ctx || f->redis_ctx->err) {
        if (f->redis_ctx)
            redisFree(f->redis_ctx);
        f->redis_ctx = redisConnect("127.0.0.1", f->redis.port);
    }
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(f->redis_ctx, fmt, ap);
    va_end(ap);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r && r->type == REDIS_REPLY_STRING)
        v = atoll(r->str);
    else if (r && r->type == REDIS_REPLY_NIL)
        v = 0;
    freeReplyObject(r);
    return v;
}

typedef struct {
    fixture_t *f;
    long long want;
} effects_t;

static bool s_all_effects(void *arg)
{
    effects_t *e = arg;
    return s_redis_int(e->f, "GET effects") >= e->want;
}

// Waits for `want` effects; on timeout fails with what Redis and the broker say.
static void s_wait_effects(fixture_t *f, long long want, int timeout_ms)
{
    effects_t e = {f, want};
    if (ts_poll(s_all_effects, &e, timeout_ms))
        return;
    char url[128], *body = NULL;
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", f->broker.http_port);
    ts_http_get(url, &status, &body);
    fail_msg("%lld of %lld effects after %d ms; broker metrics:\n%s",
             s_redis_int(f, "GET effects"), want, timeout_ms, body ? body : "(none)");
}

// Submits ITEMS items with ids "<tag>-<n>".
static void s_submit(fixture_t *f, const char *name, const char *tag)
{
    s_peer(f, name, "submit", "--count=3000", tag);
}

// Every item's effect exists exactly once, and no extra ones.
static void s_check_effects_once(fixture_t *f, const char *prefix, int n)
{
    assert_int_equal(s_redis_int(f, "GET effects"), n);
    for (int i = 0; i < n; i++)
        if (s_redis_int(f, "EXISTS effect:%s-%d", prefix, i) != 1)
            fail_msg("item %s-%d has no effect", prefix, i);
}

static void test_spread_over_three_workers_each_effect_once(void **state)
{
    fixture_t *f = *state;
    s_start_workers(f, "--work-us=500");
    s_submit(f, "submit", "batch");
    s_wait_effects(f, ITEMS, 60000);
    s_check_effects_once(f, "batch", ITEMS);
    long long total = 0;
    const char *names[] = {"w1", "w2", "w3"};
    for (int i = 0; i < 3; i++) {
        long long n = s_redis_int(f, "HGET deliveries %s", names[i]);
        print_message("%s took %lld items\n", names[i], n);
        assert_true(n > ITEMS / 6); // each does a real share
        total += n;
    }
    assert_int_equal(total, ITEMS); // no worker died: one delivery each
}

static void test_worker_killed_mid_stream_loses_nothing(void **state)
{
    fixture_t *f = *state;
    s_start_workers(f, "--work-us=2000");
    s_submit(f, "submit", "batch");
    s_wait_effects(f, ITEMS / 3, 60000);
    assert_int_equal(ts_kill(f->workers[0], SIGKILL), 0);
    ts_wait_exit(f->workers[0], 5000, NULL);
    f->workers[0] = 0;
    s_wait_effects(f, ITEMS, 90000);
    s_check_effects_once(f, "batch", ITEMS);
    // The broker put the dead worker's items back: they ran again elsewhere.
    char url[128], *body = NULL;
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", f->broker.http_port);
    assert_int_equal(ts_http_get(url, &status, &body), 0);
    double requeued = ts_metric_value(body, "vmlet_bus_broker_items_requeued_total");
    double expired = ts_metric_value(body, "vmlet_bus_broker_workers_expired_total");
    print_message("broker requeued %.0f items of %.0f dead workers\n", requeued, expired);
    assert_true(expired == 1);
    assert_true(requeued >= 1);
    free(body);
}

static void test_worker_stopped_says_goodbye(void **state)
{
    fixture_t *f = *state;
    s_start_workers(f, "--work-us=2000");
    s_submit(f, "submit", "batch");
    s_wait_effects(f, ITEMS / 3, 60000);
    assert_int_equal(ts_kill(f->workers[0], SIGTERM), 0);
    int status = -1;
    assert_int_equal(ts_wait_exit(f->workers[0], 5000, &status), 0);
    assert_int_equal(status, 0);
    f->workers[0] = 0;
    s_wait_effects(f, ITEMS, 90000);
    s_check_effects_once(f, "batch", ITEMS);
    // Its last acknowledgements arrived (no item ran twice) and the broker
    // forgot it at once instead of waiting for its heartbeats to stop.
    long long total = s_redis_int(f, "HGET deliveries w1") + s_redis_int(f, "HGET deliveries w2") +
                      s_redis_int(f, "HGET deliveries w3");
    assert_int_equal(total, ITEMS);
    char url[128], *body = NULL;
    long http_status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", f->broker.http_port);
    assert_int_equal(ts_http_get(url, &http_status, &body), 0);
    assert_true(ts_metric_value(body, "vmlet_bus_broker_workers_stopped_total") == 1);
    assert_true(ts_metric_value(body, "vmlet_bus_broker_workers_expired_total") == 0);
    free(body);
}

static void test_redis_and_broker_restart_under_load(void **state)
{
    fixture_t *f = *state;
    s_start_workers(f, "--work-us=1000");
    s_submit(f, "submit", "batch");
    s_wait_effects(f, 500, 60000);
    // Redis goes away and comes back with its data (AOF): workers fail the
    // items they get meanwhile, hand them back, and carry on.
    redisFree(f->redis_ctx);
    f->redis_ctx = NULL;
    assert_int_equal(ts_redis_restart(&f->redis), 0);
    s_wait_effects(f, 1500, 60000);
    // The broker restarts: queued items it held are gone, so the submitter
    // (as every vmlet service does from Redis) submits again; ids make the
    // repeats harmless.
    assert_int_equal(ts_broker_restart(&f->broker, broker_args), 0);
    s_submit(f, "resubmit", "batch");
    s_wait_effects(f, ITEMS, 90000);
    s_check_effects_once(f, "batch", ITEMS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_spread_over_three_workers_each_effect_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_worker_killed_mid_stream_loses_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_worker_stopped_says_goodbye, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_and_broker_restart_under_load, setup,
                                        teardown),
    };
    return TS_RUN(tests);
}
