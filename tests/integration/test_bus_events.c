// Events through the real broker: after the subscription handshake,
// 100,000 events from 2 publishers at 20,000/s reach 3 subscribers in
// per-publisher order with none lost; and past the high-water mark the
// losses show in the subscriber's /metrics, exactly, never silently.
#include "testsupport.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *dir;
    ts_broker_t broker;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->dir = ts_tempdir("vmlet-bus-events");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ts_broker_stop(&f->broker);
    ts_remove_dir(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

// Starts a bus peer; its stdout goes to DIR/NAME.out.
static pid_t s_peer(fixture_t *f, const char *name, const char *mode, const char *const extra[])
{
    char out[300], mode_arg[64], pub[96], sub[96], tag[64];
    snprintf(out, sizeof out, "%s/%s.out", f->dir, name);
    snprintf(mode_arg, sizeof mode_arg, "--mode=%s", mode);
    snprintf(pub, sizeof pub, "--publish=%s", f->broker.publish);
    snprintf(sub, sizeof sub, "--subscribe=%s", f->broker.subscribe);
    snprintf(tag, sizeof tag, "--tag=%s", name);
    char *bin = ts_bin_path("vmlet-test-bus-peer");
    char *argv[24] = {bin, mode_arg, pub, sub, tag};
    int n = 5;
    for (int i = 0; extra[i] && n < 23; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    pid_t pid = ts_spawn(out, argv);
    free(bin);
    return pid;
}

static char *s_line(fixture_t *f, const char *name, const char *prefix, int timeout_ms)
{
    char out[300];
    snprintf(out, sizeof out, "%s/%s.out", f->dir, name);
    return ts_wait_line(out, prefix, timeout_ms);
}

static void s_expect_ready(fixture_t *f, const char *name)
{
    char *line = s_line(f, name, "READY", 15000);
    if (!line) {
        char *err = s_line(f, name, "ERROR", 0);
        fail_msg("%s never became ready: %s", name, err ? err : "(no error line)");
    }
    free(line);
}

static void test_no_loss_in_order_at_bounded_rate(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(ts_broker_start(&f->broker, f->dir, NULL), 0);
    const char *const sub_args[] = {"--expect=100000", "--idle=20s", NULL};
    const char *subs[] = {"sub1", "sub2", "sub3"};
    pid_t sub_pids[3];
    for (int i = 0; i < 3; i++)
        sub_pids[i] = s_peer(f, subs[i], "subscribe", sub_args);
    for (int i = 0; i < 3; i++)
        s_expect_ready(f, subs[i]);
    // 2 x 50,000 at 10,000/s each: 20,000 events/s through the broker.
    const char *const pub_args[] = {"--count=50000", "--rate=10000", "--idle=2s", NULL};
    pid_t pub_pids[2] = {s_peer(f, "pubA", "publish", pub_args),
                         s_peer(f, "pubB", "publish", pub_args)};
    for (int i = 0; i < 2; i++) {
        char *line = s_line(f, i ? "pubB" : "pubA", "RESULT", 60000);
        assert_non_null(line);
        print_message("%s: %s\n", i ? "pubB" : "pubA", line);
        assert_int_equal(ts_kv(line, "sent"), 50000);
        assert_int_equal(ts_kv(line, "dropped"), 0);
        free(line);
    }
    for (int i = 0; i < 3; i++) {
        char *line = s_line(f, subs[i], "RESULT", 60000);
        assert_non_null(line);
        print_message("%s: %s\n", subs[i], line);
        assert_int_equal(ts_kv(line, "received"), 100000);
        assert_int_equal(ts_kv(line, "order_errors"), 0);
        assert_int_equal(ts_kv(line, "lost"), 0);
        free(line);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(ts_wait_exit(sub_pids[i], 10000, NULL), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ts_wait_exit(pub_pids[i], 10000, NULL), 0);
}

static bool s_metrics_show_everything(void *arg)
{
    long *expect = arg; // [0] http port, [1] events sent
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%ld/metrics", expect[0]);
    char *body = NULL;
    long status = 0;
    if (ts_http_get(url, &status, &body) < 0)
        return false;
    double received =
        ts_metric_value(body, "vmlet_bus_messages_total{type=\"ProbeResult\",result=\"handled\"}");
    double lost = ts_metric_value(body, "vmlet_bus_events_lost_total{type=\"ProbeResult\"}");
    free(body);
    return received >= 0 && lost > 0 && received + lost == (double)expect[1];
}

static void test_drops_past_hwm_are_counted(void **state)
{
    fixture_t *f = *state;
    const char *const broker_args[] = {"--hwm=1000", NULL};
    assert_int_equal(ts_broker_start(&f->broker, f->dir, broker_args), 0);
    int http_port = ts_free_port();
    char http[64];
    snprintf(http, sizeof http, "--http-listen=127.0.0.1:%d", http_port);
    const char *const sub_args[] = {"--hwm=1000", "--idle=30s", http, NULL};
    pid_t sub = s_peer(f, "slow", "subscribe", sub_args);
    s_expect_ready(f, "slow");
    // The subscriber stops reading while a publisher sends flat out: its
    // queues fill and the broker drops what does not fit.
    assert_int_equal(ts_kill(sub, SIGSTOP), 0);
    const char *const pub_args[] = {"--count=200000", "--idle=15s", NULL};
    s_peer(f, "fast", "publish", pub_args);
    char *line = s_line(f, "fast", "RESULT", 60000);
    assert_non_null(line);
    long sent = ts_kv(line, "sent");
    print_message("publisher: %s\n", line);
    free(line);
    assert_int_equal(ts_kill(sub, SIGCONT), 0);
    // Received + lost accounts for every event sent, and some were lost.
    long expect[2] = {http_port, sent};
    if (!ts_poll(s_metrics_show_everything, expect, 20000)) {
        char url[128], *body = NULL;
        long status;
        snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", http_port);
        ts_http_get(url, &status, &body);
        fail_msg("sent %ld, but /metrics says:\n%s", sent, body ? body : "(nothing)");
    }
    ts_kill(sub, SIGTERM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_loss_in_order_at_bounded_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drops_past_hwm_are_counted, setup, teardown),
    };
    return TS_RUN(tests);
}
