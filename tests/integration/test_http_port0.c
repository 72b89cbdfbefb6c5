// Replicas of one service on one host (docker-compose --scale with host
// networking): each binds --http-listen=127.0.0.1:0, writes the port the
// kernel chose to its --http-address-file, and announces that address, not
// port 0, in its presence key. As a container's PID 1 (a PID namespace of
// its own), each replica still gets an instance name of its own.
#include "testsupport.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define N_REPLICAS 2

typedef struct {
    pid_t pid; // in the test's PID namespace
    char address_file[300];
    char log[300];
} replica_t;

typedef struct {
    char *dir;
    ts_redis_t redis;
    ts_broker_t broker;
    replica_t replicas[N_REPLICAS];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->dir = ts_tempdir("vmlet-http-port0");
    assert_int_equal(ts_redis_start(&f->redis, "pw-for-port0"), 0);
    assert_int_equal(ts_broker_start(&f->broker, f->dir, NULL), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < N_REPLICAS; i++) {
        pid_t pid = f->replicas[i].pid;
        if (pid <= 0)
            continue;
        ts_kill(pid, SIGTERM);
        if (ts_wait_exit(pid, 5000, NULL) < 0) {
            ts_kill(pid, SIGKILL);
            ts_wait_exit(pid, 5000, NULL);
        }
    }
    ts_broker_stop(&f->broker);
    ts_redis_stop(&f->redis);
    ts_remove_dir(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

// Starts replica i of vmlet-prober on port 0 with the default instance
// name; as_pid1 runs it as PID 1 of a new PID namespace, as in a container.
static void s_start_replica(fixture_t *f, int i, bool as_pid1)
{
    replica_t *r = &f->replicas[i];
    snprintf(r->address_file, sizeof r->address_file, "%s/http-%d", f->dir, i);
    snprintf(r->log, sizeof r->log, "%s/prober-%d.log", f->dir, i);
    char *bin = ts_bin_path("vmlet-prober");
    char file[320], redis[96], pub[96], sub[96], work[96];
    snprintf(file, sizeof file, "--http-address-file=%s", r->address_file);
    snprintf(redis, sizeof redis, "--redis-url=redis://127.0.0.1:%d", f->redis.port);
    snprintf(pub, sizeof pub, "--bus-publish=%s", f->broker.publish);
    snprintf(sub, sizeof sub, "--bus-subscribe=%s", f->broker.subscribe);
    snprintf(work, sizeof work, "--bus-work=%s", f->broker.work);
    char *argv[] = {bin,  "--http-listen=127.0.0.1:0", file, redis, pub, sub,
                    work, "--presence-interval=200ms", NULL};
    setenv("VMLET_REDIS_PASSWORD", f->redis.password, 1);
    r->pid = as_pid1 ? ts_spawn_pid1(r->log, argv) : ts_spawn(r->log, argv);
    free(bin);
    assert_true(r->pid > 0);
}

static bool s_file_exists(void *arg)
{
    return access(arg, F_OK) == 0;
}

// The address the replica wrote ("127.0.0.1:PORT"), checked for its form.
// Caller frees.
static char *s_address(const replica_t *r)
{
    if (!ts_poll(s_file_exists, (void *)r->address_file, 10000)) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "tail -n 20 '%s' >&2", r->log);
        if (system(cmd) != 0) { /* diagnostics only */ }
        fail_msg("%s not written in 10 s (log above)", r->address_file);
    }
    FILE *fp = fopen(r->address_file, "r");
    assert_non_null(fp);
    char line[128] = "", extra[8];
    assert_non_null(fgets(line, sizeof line, fp));
    assert_null(fgets(extra, sizeof extra, fp)); // one line, nothing after it
    fclose(fp);
    int port = 0, end = 0;
    if (sscanf(line, "127.0.0.1:%d\n%n", &port, &end) != 1 || line[end] || port <= 0 ||
        port > 65535)
        fail_msg("%s holds '%s', not 127.0.0.1:PORT and a newline", r->address_file, line);
    line[strcspn(line, "\n")] = '\0';
    return strdup(line);
}

// Its "http server listening" line names the port bound, not port 0 (the
// line comes before the address file is written).
static void s_expect_logged(const replica_t *r, const char *address)
{
    char want[160];
    snprintf(want, sizeof want, "address=%s ", address);
    FILE *fp = fopen(r->log, "r");
    assert_non_null(fp);
    char buf[512];
    bool found = false;
    while (!found && fgets(buf, sizeof buf, fp))
        found = strstr(buf, "http server listening") && strstr(buf, want);
    fclose(fp);
    if (!found)
        fail_msg("%s has no 'http server listening' line with %s", r->log, want);
}

static void s_expect_healthz(const char *address)
{
    char url[160];
    snprintf(url, sizeof url, "http://%s/healthz", address);
    long status = 0;
    assert_int_equal(ts_http_get(url, &status, NULL), 0);
    assert_int_equal(status, 200);
}

typedef struct {
    fixture_t *f;
    cJSON *presence[N_REPLICAS + 1]; // one more, to see a surplus key
    size_t n;
} presence_t;

static void s_presence_clear(presence_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        cJSON_Delete(p->presence[i]);
    p->n = 0;
}

// Reads every prober presence key; true once there are N_REPLICAS.
static bool s_presence_read(void *arg)
{
    presence_t *p = arg;
    s_presence_clear(p);
    redisContext *c = redisConnect("127.0.0.1", p->f->redis.port);
    if (!c || c->err) {
        redisFree(c);
        return false;
    }
    freeReplyObject(redisCommand(c, "AUTH %s", p->f->redis.password));
    redisReply *keys = redisCommand(c, "KEYS vmlet:instances:prober:*");
    for (size_t i = 0;
         keys && keys->type == REDIS_REPLY_ARRAY && i < keys->elements && p->n < N_REPLICAS + 1;
         i++) {
        redisReply *v = redisCommand(c, "GET %s", keys->element[i]->str);
        cJSON *json = v && v->type == REDIS_REPLY_STRING ? cJSON_Parse(v->str) : NULL;
        if (json)
            p->presence[p->n++] = json;
        freeReplyObject(v);
    }
    freeReplyObject(keys);
    redisFree(c);
    return p->n == N_REPLICAS;
}

static const char *s_field(const cJSON *json, const char *name)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, name));
    return s ? s : "";
}

// The presence entry announcing `address`, or NULL.
static const cJSON *s_presence_of(const presence_t *p, const char *address)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(s_field(p->presence[i], "http"), address) == 0)
            return p->presence[i];
    return NULL;
}

// Starts the replicas; checks their files, /healthz and presence keys.
// Leaves the presence entries in p (the caller clears them) and the
// addresses in addresses[].
static void s_check_replicas(fixture_t *f, bool as_pid1, presence_t *p, char *addresses[N_REPLICAS])
{
    for (int i = 0; i < N_REPLICAS; i++)
        s_start_replica(f, i, as_pid1);
    for (int i = 0; i < N_REPLICAS; i++) {
        addresses[i] = s_address(&f->replicas[i]);
        s_expect_logged(&f->replicas[i], addresses[i]);
        s_expect_healthz(addresses[i]);
    }
    if (strcmp(addresses[0], addresses[1]) == 0)
        fail_msg("both replicas wrote %s", addresses[0]);
    p->f = f;
    bool all = ts_poll(s_presence_read, p, 10000);
    for (int i = 0; all && i < N_REPLICAS; i++)
        all = s_presence_of(p, addresses[i]) != NULL;
    if (all)
        return;
    for (size_t k = 0; k < p->n; k++)
        print_message("presence: instance %s http %s\n", s_field(p->presence[k], "instance"),
                      s_field(p->presence[k], "http"));
    fail_msg("want %d prober presence keys announcing %s and %s", N_REPLICAS, addresses[0],
             addresses[1]);
}

static void test_two_replicas_on_port_0(void **state)
{
    fixture_t *f = *state;
    presence_t p = {0};
    char *addresses[N_REPLICAS];
    s_check_replicas(f, false, &p, addresses);
    // Not PID 1: the default name is still <hostname>-<pid>.
    char host[200] = "host";
    gethostname(host, sizeof host - 1);
    for (int i = 0; i < N_REPLICAS; i++) {
        char want[260];
        snprintf(want, sizeof want, "%s-%d", host, (int)f->replicas[i].pid);
        assert_string_equal(s_field(s_presence_of(&p, addresses[i]), "instance"), want);
        free(addresses[i]);
    }
    s_presence_clear(&p);
}

// <hostname>-<8 hex digits>
static bool s_random_name(const char *instance, const char *host)
{
    size_t n = strlen(host);
    return strncmp(instance, host, n) == 0 && instance[n] == '-' && strlen(instance + n + 1) == 8 &&
           strspn(instance + n + 1, "0123456789abcdef") == 8;
}

static void test_two_replicas_as_pid_1(void **state)
{
    fixture_t *f = *state;
    pid_t probe = ts_fork_pid1();
    if (probe == 0)
        _exit(0);
    if (probe < 0) {
        print_message("skipped: cannot make a PID namespace here (%s; it needs root or "
                      "CAP_SYS_ADMIN)\n",
                      strerror(errno));
        skip();
    }
    ts_wait_exit(probe, 5000, NULL);
    presence_t p = {0};
    char *addresses[N_REPLICAS];
    s_check_replicas(f, true, &p, addresses);
    char host[200] = "host";
    gethostname(host, sizeof host - 1);
    const char *names[N_REPLICAS];
    for (int i = 0; i < N_REPLICAS; i++) {
        names[i] = s_field(s_presence_of(&p, addresses[i]), "instance");
        if (!s_random_name(names[i], host))
            fail_msg("replica %d as PID 1 is named '%s', not %s-<8 hex digits>", i, names[i], host);
        free(addresses[i]);
    }
    // Two keys were found, so the names differ; said again for the reader.
    assert_string_not_equal(names[0], names[1]);
    s_presence_clear(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_replicas_on_port_0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_replicas_as_pid_1, setup, teardown),
    };
    return TS_RUN(tests);
}
