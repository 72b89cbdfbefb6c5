// Every program's /metrics as Prometheus reads it: promtool check metrics
// finds no error and no lint warning (names, units, HELP), and every metric
// the Grafana dashboard (deploy/grafana/vmlet.json) names is served by some
// program, so a rename cannot silently blank a panel.
#include "stack.h"

#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_SERVICES 6

static const char *const services[N_SERVICES] = {"k8s-watcher", "image-builder",   "vm-launcher",
                                                 "prober",      "status-reporter", "kubelet-api"};

typedef struct {
    char *dir;
    ts_redis_t redis;
    ts_broker_t broker;
    pid_t pids[N_SERVICES];
    int ports[N_SERVICES];
    ts_stack_t launcher;              // only for its vm-launcher flags
    char *exposition[N_SERVICES + 1]; // each /metrics, the broker's last
} fixture_t;

// As test_services starts them: the watcher and reporter against the bed.
static pid_t s_start(fixture_t *f, int i)
{
    char name[64], log[300], http[64], redis[96], pub[96], sub[96], work[96];
    char kubeconfig[400], node[96], cache[400], listen[64], state_dir[400], client_ca[400];
    snprintf(name, sizeof name, "vmlet-%s", services[i]);
    char *bin = ts_bin_path(name);
    snprintf(log, sizeof log, "%s/%s.log", f->dir, services[i]);
    f->ports[i] = ts_free_port();
    snprintf(http, sizeof http, "--http-listen=127.0.0.1:%d", f->ports[i]);
    snprintf(redis, sizeof redis, "--redis-url=redis://127.0.0.1:%d", f->redis.port);
    snprintf(pub, sizeof pub, "--bus-publish=%s", f->broker.publish);
    snprintf(sub, sizeof sub, "--bus-subscribe=%s", f->broker.subscribe);
    snprintf(work, sizeof work, "--bus-work=%s", f->broker.work);
    char *kc = ts_bed_value("BED_VMLET_KUBECONFIG"), *ca = ts_bed_value("BED_CA");
    snprintf(kubeconfig, sizeof kubeconfig, "--kubeconfig=%s", kc);
    snprintf(node, sizeof node, "--node-name=vmlet-lint-%d", (int)getpid());
    snprintf(cache, sizeof cache, "--cache-dir=%s/images", f->dir);
    snprintf(listen, sizeof listen, "--listen=127.0.0.1:%d", ts_free_port());
    snprintf(state_dir, sizeof state_dir, "--state-dir=%s/kubelet-api", f->dir);
    snprintf(client_ca, sizeof client_ca, "--client-ca=%s", ca);
    free(kc);
    free(ca);
    char *argv[32] = {bin, http, redis, pub, sub, work, "--bus-heartbeat=200ms", NULL};
    int n = 7;
    if (i == 0 || i == 4) {
        argv[n++] = kubeconfig;
        argv[n++] = node;
    } else if (i == 1) {
        argv[n++] = cache;
    } else if (i == 2) {
        for (int k = 0; f->launcher.launcher_flags[k] && n < 31; k++)
            argv[n++] = f->launcher.launcher_flags[k];
    } else if (i == 5) {
        argv[n++] = listen;
        argv[n++] = state_dir;
        argv[n++] = client_ca;
    }
    setenv("VMLET_REDIS_PASSWORD", f->redis.password, 1);
    pid_t pid = ts_spawn(log, argv);
    free(bin);
    return pid;
}

static bool s_ready(void *arg)
{
    fixture_t *f = arg;
    for (int i = 0; i < N_SERVICES; i++) {
        char url[128];
        long status = 0;
        snprintf(url, sizeof url, "http://127.0.0.1:%d/readyz", f->ports[i]);
        if (ts_http_get(url, &status, NULL) < 0 || status != 200)
            return false;
    }
    return true;
}

static char *s_get_metrics(int port)
{
    char url[128], *body = NULL;
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    if (ts_http_get(url, &status, &body) < 0 || status != 200) {
        free(body);
        return NULL;
    }
    return body;
}

// The watcher has registered its Node (so it has made API requests, and
// counted them) once its metric says so.
static bool s_node_registered(void *arg)
{
    fixture_t *f = arg;
    char *m = s_get_metrics(f->ports[0]);
    bool ok = m && strstr(m, "vmlet_kube_requests_total{");
    free(m);
    return ok;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->dir = ts_tempdir("vmlet-metrics-lint");
    f->launcher.dir = f->dir;
    ts_stack_launcher_flags(&f->launcher);
    assert_int_equal(ts_redis_start(&f->redis, "pw-for-lint"), 0);
    static const char *const broker_args[] = {"--heartbeat=200ms", NULL};
    assert_int_equal(ts_broker_start(&f->broker, f->dir, broker_args), 0);
    for (int i = 0; i < N_SERVICES; i++)
        f->pids[i] = s_start(f, i);
    if (!ts_poll(s_ready, f, 20000))
        fail_msg("not every service became ready (logs in %s)", f->dir);
    if (!ts_poll(s_node_registered, f, 20000))
        fail_msg("k8s-watcher counted no API request (log in %s)", f->dir);
    for (int i = 0; i < N_SERVICES; i++)
        assert_non_null(f->exposition[i] = s_get_metrics(f->ports[i]));
    assert_non_null(f->exposition[N_SERVICES] = s_get_metrics(f->broker.http_port));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < N_SERVICES; i++) {
        if (f->pids[i] > 0) {
            ts_kill(f->pids[i], SIGTERM);
            if (ts_wait_exit(f->pids[i], 5000, NULL) < 0) {
                ts_kill(f->pids[i], SIGKILL);
                ts_wait_exit(f->pids[i], 5000, NULL);
            }
        }
    }
    for (int i = 0; i <= N_SERVICES; i++)
        free(f->exposition[i]);
    for (int k = 0; f->launcher.launcher_flags[k]; k++)
        free(f->launcher.launcher_flags[k]);
    ts_broker_stop(&f->broker);
    ts_redis_stop(&f->redis);
    ts_kubectl(NULL, "delete node vmlet-lint-%d --wait=false", (int)getpid());
    ts_remove_dir(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

// promtool's verdict on one exposition: its exit code, its output in *out.
static int s_promtool(const fixture_t *f, const char *text, char **out)
{
    char in[400], res[400], cmd[1000];
    snprintf(in, sizeof in, "%s/metrics.txt", f->dir);
    snprintf(res, sizeof res, "%s/promtool.out", f->dir);
    FILE *fp = fopen(in, "w");
    fputs(text, fp);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "promtool check metrics <%s >%s 2>&1", in, res);
    int rc = system(cmd);
    fp = fopen(res, "r");
    *out = calloc(1, 65536);
    size_t n = fp ? fread(*out, 1, 65535, fp) : 0;
    (*out)[n] = '\0';
    if (fp)
        fclose(fp);
    return rc;
}

static void test_promtool_finds_nothing(void **state)
{
    fixture_t *f = *state;
    if (system("command -v promtool >/dev/null") != 0)
        fail_msg("promtool is missing: apt-get install prometheus (it is in ./vmlet's PKGS_RUN)");
    int bad = 0;
    for (int i = 0; i <= N_SERVICES; i++) {
        const char *who = i < N_SERVICES ? services[i] : "bus";
        char *out = NULL;
        int rc = s_promtool(f, f->exposition[i], &out);
        // No exceptions today: any lint line is a finding.
        if (rc != 0 || out[0]) {
            print_message("vmlet-%s: promtool check metrics:\n%s\n", who, out);
            bad++;
        }
        free(out);
    }
    assert_int_equal(bad, 0);
}

// A name the dashboard uses, as a family: histograms are queried through
// their _bucket, _sum and _count series.
static void s_family(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s", name);
    const char *suffixes[] = {"_bucket", "_sum", "_count"};
    size_t len = strlen(out);
    for (int k = 0; k < 3; k++) {
        size_t sl = strlen(suffixes[k]);
        if (len > sl && strcmp(out + len - sl, suffixes[k]) == 0) {
            out[len - sl] = '\0';
            return;
        }
    }
}

// Families whose series are made at their first event, because their
// labels are only known then (a probe's kind, handler and result): an idle
// program does not serve them yet. Each must still be named in its
// service's README, which this test checks instead.
static const struct {
    const char *family, *readme;
} born_on_first_use[] = {
    {"vmlet_prober_probes_total", "/services/prober/README.md"},
};

static bool s_documented_lazy(const char *family)
{
    for (size_t i = 0; i < sizeof born_on_first_use / sizeof born_on_first_use[0]; i++) {
        if (strcmp(family, born_on_first_use[i].family) != 0)
            continue;
        char path[400], text[65536];
        snprintf(path, sizeof path, "%s%s", VMLET_SOURCE_DIR, born_on_first_use[i].readme);
        FILE *fp = fopen(path, "r");
        if (!fp)
            return false;
        size_t n = fread(text, 1, sizeof text - 1, fp);
        fclose(fp);
        text[n] = '\0';
        return strstr(text, family) != NULL;
    }
    return false;
}

static void test_dashboard_names_real_metrics(void **state)
{
    fixture_t *f = *state;
    FILE *fp = fopen(VMLET_SOURCE_DIR "/deploy/grafana/vmlet.json", "r");
    assert_non_null(fp);
    char *text = calloc(1, 1 << 20);
    size_t n = fread(text, 1, (1 << 20) - 1, fp);
    fclose(fp);
    text[n] = '\0';
    cJSON *dash = cJSON_Parse(text);
    free(text);
    if (!dash)
        fail_msg("deploy/grafana/vmlet.json is not JSON");
    int names = 0, missing = 0;
    const cJSON *panel, *target;
    cJSON_ArrayForEach(panel, cJSON_GetObjectItemCaseSensitive(dash, "panels"))
        cJSON_ArrayForEach(target, cJSON_GetObjectItemCaseSensitive(panel, "targets"))
    {
        const cJSON *expr = cJSON_GetObjectItemCaseSensitive(target, "expr");
        assert_true(cJSON_IsString(expr));
        for (const char *p = strstr(expr->valuestring, "vmlet_"); p; p = strstr(p, "vmlet_")) {
            size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
            char name[128], family[128], want[160];
            snprintf(name, sizeof name, "%.*s", (int)len, p);
            p += len;
            s_family(name, family, sizeof family);
            snprintf(want, sizeof want, "# TYPE %s ", family);
            bool found = false;
            for (int i = 0; i <= N_SERVICES && !found; i++)
                found = strstr(f->exposition[i], want) != NULL;
            names++;
            if (!found && !s_documented_lazy(family)) {
                print_message("the dashboard names %s, which no program serves\n", name);
                missing++;
            }
        }
    }
    cJSON_Delete(dash);
    assert_true(names > 10);
    assert_int_equal(missing, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promtool_finds_nothing),
        cmocka_unit_test(test_dashboard_names_real_metrics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
