// The Redis store against a real redis-server: AUTH, database selection,
// clear errors, and a restart under load that the client rides out with
// back-off instead of crashing or hammering; pods found by name, and a pod
// made again under its name keeps the name when the old one is deleted.
#include "testsupport.h"

#include "vmlet/pb.h"
#include "vmlet/pod_store.h"
#include "vmlet/store.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    ts_redis_t redis;
    vmlet_metrics_t *metrics;
    vmlet_log_t *log;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_int_equal(ts_redis_start(&f->redis, "s3cret"), 0);
    f->metrics = vmlet_metrics_new();
    f->log = vmlet_log_new("test", "text", "warn", NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ts_redis_stop(&f->redis);
    vmlet_metrics_destroy(&f->metrics);
    vmlet_log_destroy(&f->log);
    free(f);
    return 0;
}

static vmlet_store_t *s_store(fixture_t *f, const char *url_fmt, const char *password)
{
    char url[256];
    snprintf(url, sizeof url, url_fmt, f->redis.port);
    vmlet_err_t err = {0};
    vmlet_store_t *store = vmlet_store_new(url, password, f->log, f->metrics, &err);
    if (!store)
        fail_msg("%s", err.msg);
    return store;
}

static void test_auth_and_database(void **state)
{
    fixture_t *f = *state;
    vmlet_store_t *store = s_store(f, "redis://:s3cret@127.0.0.1:%d/3", NULL);
    vmlet_err_t err = {0};
    redisReply *r = vmlet_store_command(store, &err, "SET %s %s", "k", "in-db-3");
    assert_non_null(r);
    freeReplyObject(r);
    vmlet_store_destroy(&store);
    // The same key is not in database 0; the password may come separately.
    store = s_store(f, "redis://127.0.0.1:%d", "s3cret");
    r = vmlet_store_command(store, &err, "GET k");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    vmlet_store_destroy(&store);
    vmlet_store_destroy(&store);
}

static void test_clear_errors(void **state)
{
    fixture_t *f = *state;
    vmlet_err_t err = {0};
    vmlet_store_t *store = s_store(f, "redis://:wrong@127.0.0.1:%d", NULL);
    assert_null(vmlet_store_command(store, &err, "PING"));
    assert_non_null(strstr(err.msg, "AUTH failed"));
    assert_non_null(strstr(err.msg, "check the redis password"));
    assert_null(strstr(err.msg, "wrong")); // never the password itself
    vmlet_store_destroy(&store);

    store = s_store(f, "redis://:s3cret@127.0.0.1:%d", NULL);
    assert_null(vmlet_store_command(store, &err, "NOSUCHCOMMAND x"));
    assert_non_null(strstr(err.msg, "NOSUCHCOMMAND"));
    // An error reply leaves the connection usable.
    redisReply *r = vmlet_store_command(store, &err, "PING");
    assert_non_null(r);
    freeReplyObject(r);
    vmlet_store_destroy(&store);

    static const char *const bad[] = {"http://x", "redis://", "redis://h:99999", "redis://user@h",
                                      "redis://h/abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(vmlet_store_new(bad[i], NULL, f->log, f->metrics, &err));
        assert_non_null(strstr(err.msg, "redis url"));
    }
}

static void s_put_pod(vmlet_store_t *store, const char *uid, const char *name)
{
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = (char *)uid, ref.namespace_ = "web", ref.name = (char *)name;
    Vmlet__PodSpec spec = VMLET__POD_SPEC__INIT;
    spec.pod = &ref;
    char hash[VMLET_POD_HASH_LEN];
    vmlet_pod_spec_hash(&spec, hash);
    vmlet_err_t err = {0};
    if (vmlet_pod_store_put(store, &spec, hash, &err) < 0)
        fail_msg("%s", err.msg);
}

static void test_pods_by_name(void **state)
{
    fixture_t *f = *state;
    vmlet_store_t *store = s_store(f, "redis://127.0.0.1:%d", "s3cret");
    char uid[64];
    s_put_pod(store, "uid-1", "front");
    assert_int_equal(vmlet_pod_store_uid_of(store, "web", "front", uid, sizeof uid, NULL), 1);
    assert_string_equal(uid, "uid-1");
    assert_int_equal(vmlet_pod_store_uid_of(store, "web", "back", uid, sizeof uid, NULL), 0);
    // Deleted and made again under its name: the old pod's deletion, which
    // may come after, leaves the new one findable.
    s_put_pod(store, "uid-2", "front");
    assert_int_equal(vmlet_pod_store_delete(store, "uid-1", NULL), 0);
    assert_int_equal(vmlet_pod_store_uid_of(store, "web", "front", uid, sizeof uid, NULL), 1);
    assert_string_equal(uid, "uid-2");
    assert_int_equal(vmlet_pod_store_delete(store, "uid-2", NULL), 0);
    assert_int_equal(vmlet_pod_store_uid_of(store, "web", "front", uid, sizeof uid, NULL), 0);
    // A pod stored before the name index existed is found all the same,
    // and indexed from then on.
    s_put_pod(store, "uid-3", "old");
    redisReply *r = vmlet_store_command(store, NULL, "DEL vmlet:pod-name:web/old");
    freeReplyObject(r);
    assert_int_equal(vmlet_pod_store_uid_of(store, "web", "old", uid, sizeof uid, NULL), 1);
    assert_string_equal(uid, "uid-3");
    r = vmlet_store_command(store, NULL, "EXISTS vmlet:pod-name:web/old");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    vmlet_store_destroy(&store);
}

static void test_restart_under_load(void **state)
{
    fixture_t *f = *state;
    vmlet_store_t *store = s_store(f, "redis://:s3cret@127.0.0.1:%d", NULL);
    long ok = 0, failed = 0;
    bool restarted = false;
    int64_t end = ts_now_ms() + 4000;
    double errors_before_restart = 0;
    while (ts_now_ms() < end || !restarted) {
        vmlet_err_t err = {0};
        redisReply *r = vmlet_store_command(store, &err, "INCR counter");
        if (r)
            ok++;
        else
            failed++;
        freeReplyObject(r);
        if (!restarted && ok == 2000) {
            errors_before_restart = vmlet_metric_value(
                vmlet_metrics_counter(f->metrics, "vmlet_redis_errors_total", "", NULL));
            assert_int_equal(ts_redis_restart(&f->redis), 0);
            restarted = true;
        }
    }
    double errors =
        vmlet_metric_value(vmlet_metrics_counter(f->metrics, "vmlet_redis_errors_total", "", NULL));
    print_message("%ld INCRs succeeded, %ld failed while Redis restarted; %.0f errors counted\n",
                  ok, failed, errors - errors_before_restart);
    assert_true(ok > 2000 + 100); // it carried on after the restart
    assert_true(vmlet_store_connected(store));
    // Failures were returned, not hidden, and the back-off kept connection
    // attempts few although thousands of commands were asked for.
    assert_true(errors - errors_before_restart >= 1);
    assert_true(errors - errors_before_restart < 40);
    // Every acknowledged INCR is in Redis (AOF), at most one more in doubt.
    vmlet_err_t err = {0};
    redisReply *r = vmlet_store_command(store, &err, "GET counter");
    assert_non_null(r);
    long stored = atol(r->str);
    freeReplyObject(r);
    assert_true(stored >= ok && stored <= ok + 1);
    vmlet_store_destroy(&store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_auth_and_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clear_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pods_by_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_under_load, setup, teardown),
    };
    return TS_RUN(tests);
}
