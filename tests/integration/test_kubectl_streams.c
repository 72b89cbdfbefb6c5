// kubectl logs, exec, attach and port-forward on a VM pod, end to end:
// the real kubectl (1.20, SPDY/3.1) and a python3-websocket client talk to
// the real kube-apiserver, which dials vmlet-kubelet-api with its
// kubelet-client certificate; the kubelet API carries each stream to the
// vm-launcher that holds the pod's VM (QEMU under TCG here). One VM for
// every case: a pod with three containers.
#include "stack.h"
#include "testsupport.h"
#include "ts_node.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 240000 // a first boot under TCG
#define IDLE_S "15"    // the kubelet API's --idle-timeout here

typedef ts_node_t fixture_t;

static fixture_t *g;
static ts_service_t second;   // a second vm-launcher, as on another host
static ts_stack_t second_own; // its flags and directory

// --- helpers --------------------------------------------------------------------------

#define KUBECTL "%s --kubeconfig %s -n %s "
#define KARGS g->kubectl, g->kubeconfig, g->ns

static double s_kapi_sessions(void)
{
    return ts_service_metric(&g->kapi, "vmlet_kubelet_api_sessions");
}

static double s_launcher_sessions(const char *kind)
{
    char series[96];
    snprintf(series, sizeof series, "vmlet_launcher_sessions{kind=\"%s\"}", kind);
    return ts_service_metric(&g->stack.launcher, series);
}

// --- setup -------------------------------------------------------------------------------

static int setup(void **state)
{
    (void)state;
    g = calloc(1, sizeof *g);
    // A short idle limit, so the idle case does not wait the default 4 h.
    const char *const kapi[] = {"--idle-timeout=" IDLE_S "s", NULL};
    assert_int_equal(ts_node_start(g, "streams", kapi), 0);
    // app: a page for port-forward and a ticker for logs; reader: echoes
    // its stdin (attach); crashy: fails every 3 s (logs --previous).
    char manifest[4096];
    snprintf(manifest, sizeof manifest,
             "apiVersion: v1\nkind: Pod\nmetadata: {name: shell, namespace: %s}\n"
             "spec:\n  nodeName: %s\n  terminationGracePeriodSeconds: 1\n"
             "  containers:\n"
             "  - name: app\n    image: %s\n    command:\n    - /bin/sh\n    - -c\n    - |\n"
             "      mkdir -p /www/cgi-bin && echo body-ok > /www/index.html\n"
             "      printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho cgi-ok\\n' "
             ">/www/cgi-bin/hello && chmod +x /www/cgi-bin/hello && httpd -p 8080 -h /www\n"
             "      echo hello-from-app\n"
             "      i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done\n"
             "  - name: reader\n    image: %s\n    stdin: true\n"
             "    command: [/bin/sh, -c, 'while read l; do echo \"got: $l\"; done; sleep 100000']\n"
             "  - name: crashy\n    image: %s\n"
             "    command: [/bin/sh, -c, 'echo run-$(cat /proc/sys/kernel/random/uuid); sleep 3; "
             "exit 1']\n",
             g->ns, g->stack.node, g->busybox, g->busybox, g->busybox);
    assert_int_equal(ts_node_run_pod(g, "shell", 2, WAIT_MS, manifest), 0);
    // A second launcher, with room while the first has a VM: it takes the
    // next pod (the broker gives work to the worker with most room).
    assert_int_equal(ts_node_add_launcher(g, &second, &second_own), 0);
    snprintf(manifest, sizeof manifest,
             "apiVersion: v1\nkind: Pod\nmetadata: {name: other, namespace: %s}\n"
             "spec:\n  nodeName: %s\n  terminationGracePeriodSeconds: 1\n"
             "  containers:\n  - name: app\n    image: %s\n"
             "    command: [/bin/sh, -c, 'echo other-started; exec sleep 100000']\n",
             g->ns, g->stack.node, g->busybox);
    assert_int_equal(ts_node_run_pod(g, "other", 1, WAIT_MS, manifest), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_node_remove_launcher(&second, &second_own);
    ts_node_stop(g);
    free(g);
    return 0;
}

// --- logs ------------------------------------------------------------------------------

static bool s_has_ticks(void *arg)
{
    int *want = arg;
    char *out = NULL;
    ts_sh(&out, KUBECTL "logs shell -c app", KARGS);
    int n = 0;
    for (const char *p = out; (p = strstr(p, "tick ")); p++)
        n++;
    free(out);
    return n >= *want;
}

static void test_logs(void **state)
{
    (void)state;
    int five = 5;
    assert_true(ts_poll(s_has_ticks, &five, 60000));
    char *out = NULL;
    assert_int_equal(ts_sh(&out, KUBECTL "logs shell -c app", KARGS), 0);
    assert_non_null(strstr(out, "hello-from-app\ntick 1\ntick 2\n"));
    free(out);
    // --tail: exactly the last line.
    assert_int_equal(ts_sh(&out, KUBECTL "logs shell -c app --tail=1", KARGS), 0);
    assert_true(strncmp(out, "tick ", 5) == 0 && strchr(out, '\n') == out + strlen(out) - 1);
    free(out);
    // --since: only the last seconds (fewer lines than all), --timestamps: RFC 3339.
    assert_int_equal(ts_sh(&out, KUBECTL "logs shell -c app --since=3s --timestamps", KARGS), 0);
    assert_null(strstr(out, "hello-from-app"));
    assert_non_null(strstr(out, "Z tick "));
    free(out);
    // --limit-bytes: the log's first bytes.
    assert_int_equal(ts_sh(&out, KUBECTL "logs shell -c app --limit-bytes=9", KARGS), 0);
    assert_string_equal(out, "hello-fro");
    free(out);
    // -f sees a line printed after it started.
    assert_int_equal(ts_sh(&out, KUBECTL "logs shell -c app --tail=1", KARGS), 0);
    int last = atoi(out + 5);
    free(out);
    assert_int_equal(ts_sh(&out, "timeout 8 " KUBECTL "logs -f shell -c app --tail=1; true", KARGS),
                     0);
    char later[32];
    snprintf(later, sizeof later, "tick %d\n", last + 3);
    if (!strstr(out, later))
        fail_msg("logs -f after tick %d:\n%s", last, out);
    free(out);
    // --previous: the crashed run's line, not the current run's.
    for (int i = 0; i < 120; i++) {
        ts_sh(&out,
              KUBECTL "get pod shell -o "
                      "jsonpath='{.status.containerStatuses[?(@.name==\"crashy\")].restartCount}'",
              KARGS);
        int restarts = atoi(out);
        free(out);
        if (restarts >= 1)
            break;
        sleep(1);
    }
    assert_int_equal(ts_sh(&out, KUBECTL "logs shell -c crashy --previous", KARGS), 0);
    assert_true(strncmp(out, "run-", 4) == 0);
    free(out);
}

// --- exec -------------------------------------------------------------------------------

static void test_exec(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(ts_sh(&out, KUBECTL "exec shell -c app -- cat /etc/hostname", KARGS), 0);
    assert_string_equal(out, "shell\n");
    free(out);
    // 1 MiB through stdin.
    assert_int_equal(ts_sh(&out,
                           "head -c 1048576 /dev/urandom | " KUBECTL
                           "exec -i shell -c app -- sh -c 'wc -c'",
                           KARGS),
                     0);
    assert_int_equal(atoi(out), 1048576);
    free(out);
    // The exit status comes back.
    assert_int_equal(ts_sh(NULL, KUBECTL "exec shell -c app -- sh -c 'exit 7'", KARGS), 7);
    // An unknown container: kubectl says so.
    assert_int_not_equal(ts_sh(&out, KUBECTL "exec shell -c nosuch -- true", KARGS), 0);
    assert_non_null(strstr(out, "nosuch"));
    free(out);
}

// tmux gives kubectl a real terminal: the shell sees its size, a resize,
// and Ctrl-C.
static void test_exec_tty_under_tmux(void **state)
{
    (void)state;
    if (ts_sh(NULL, "command -v tmux") != 0) {
        print_message("SKIP: tmux is not installed\n");
        skip();
    }
    char session[32], *out = NULL;
    snprintf(session, sizeof session, "vmlet-%d", (int)getpid());
    assert_int_equal(ts_sh(NULL,
                           "tmux new-session -d -s %s -x 80 -y 24 '" KUBECTL
                           "exec -it shell -c app -- sh'",
                           session, KARGS),
                     0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "tmux capture-pane -p -t %s", session);
    bool seen = false;
    for (int i = 0; i < 60 && !seen; i++) { // the prompt, then `stty size`
        sleep(1);
        ts_sh(NULL, "tmux send-keys -t %s 'stty size' Enter", session);
        ts_sh(&out, "%s", cmd);
        seen = strstr(out, "24 80") != NULL;
        free(out);
    }
    assert_true(seen);
    ts_sh(NULL, "tmux resize-window -t %s -x 100 -y 30", session);
    seen = false;
    for (int i = 0; i < 20 && !seen; i++) {
        sleep(1);
        ts_sh(NULL, "tmux send-keys -t %s 'clear; stty size' Enter", session);
        ts_sh(&out, "%s", cmd);
        seen = strstr(out, "30 100") != NULL;
        free(out);
    }
    assert_true(seen);
    // Ctrl-C interrupts a long sleep: the shell answers again at once.
    ts_sh(NULL, "tmux send-keys -t %s 'clear; sleep 100' Enter", session);
    sleep(2);
    ts_sh(NULL, "tmux send-keys -t %s C-c", session);
    ts_sh(NULL, "tmux send-keys -t %s 'echo after-$((6*7))' Enter", session);
    seen = false;
    for (int i = 0; i < 20 && !seen; i++) {
        sleep(1);
        ts_sh(&out, "%s", cmd);
        seen = strstr(out, "after-42") != NULL;
        free(out);
    }
    ts_sh(NULL, "tmux kill-session -t %s", session);
    assert_true(seen);
}

// A WebSocket client through the API server: stdout on channel 1, the
// status on channel 3.
static void test_exec_over_websocket(void **state)
{
    (void)state;
    char *url = ts_bed_value("BED_APISERVER_URL"), *token = ts_bed_value("BED_ADMIN_TOKEN"),
         *ca = ts_bed_value("BED_CA");
    char *script = vmlet_xasprintf(
        "import ssl, sys, json, websocket\n"
        "ws = websocket.create_connection(\n"
        "    '%s/api/v1/namespaces/%s/pods/shell/exec?container=app&command=sh&command=-c'\n"
        "    '&command=echo%%20ws-ok%%3B%%20exit%%203&stdout=1&stderr=1'.replace('https', 'wss'),\n"
        "    header=['Authorization: Bearer %s'], subprotocols=['v4.channel.k8s.io'],\n"
        "    sslopt={'ca_certs': '%s'})\n"
        "out, status = b'', None\n"
        "while True:\n"
        "    try:\n"
        "        m = ws.recv()\n"
        "    except websocket.WebSocketConnectionClosedException:\n"
        "        break\n"
        "    if not m: break\n"
        "    m = m if isinstance(m, bytes) else m.encode()\n"
        "    if m[0] == 1: out += m[1:]\n"
        "    if m[0] == 3: status = json.loads(m[1:])\n"
        "print(ws.subprotocol, out.decode().strip(), status['reason'],\n"
        "      status['details']['causes'][0]['message'])\n",
        url, g->ns, token, ca);
    free(url);
    free(token);
    free(ca);
    char path[300];
    snprintf(path, sizeof path, "%s/ws_exec.py", g->stack.dir);
    FILE *f = fopen(path, "w");
    fputs(script, f);
    fclose(f);
    free(script);
    char *out = NULL;
    int rc = ts_sh(&out, "/usr/bin/python3 %s", path); // Debian's, with python3-websocket
    if (rc != 0 || !strstr(out, "v4.channel.k8s.io ws-ok NonZeroExitCode 3"))
        fail_msg("websocket exec (rc %d): %s", rc, out);
    free(out);
}

// --- port-forward and attach --------------------------------------------------------------

static void test_port_forward(void **state)
{
    (void)state;
    char log[300];
    snprintf(log, sizeof log, "%s/port-forward.out", g->stack.dir);
    char *argv[] = {g->kubectl,     "--kubeconfig", g->kubeconfig, "-n", g->ns,
                    "port-forward", "pod/shell",    ":8080",       NULL};
    pid_t pid = ts_spawn(log, argv);
    char *line = ts_wait_line(log, "Forwarding from 127.0.0.1:", 30000);
    assert_non_null(line);
    int port = atoi(line + strlen("Forwarding from 127.0.0.1:"));
    free(line);
    char *out = NULL;
    // 50 connections at once, each its own session into the pod.
    int rc = ts_sh(&out,
                   "seq 50 | xargs -P 50 -I{} curl -s --max-time 60 http://127.0.0.1:%d/ | "
                   "grep -c body-ok",
                   port);
    // A response without a length ends only when the pod closes the
    // connection: the end has to reach curl through kubectl.
    char *cgi = NULL;
    int cgi_rc = ts_sh(&cgi, "curl -s --max-time 30 http://127.0.0.1:%d/cgi-bin/hello", port);
    ts_kill(pid, SIGTERM);
    ts_wait_exit(pid, 5000, NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(atoi(out), 50);
    free(out);
    if (cgi_rc != 0 || strcmp(cgi, "cgi-ok\n") != 0)
        fail_msg("CGI through port-forward (rc %d): %s", cgi_rc, cgi);
    free(cgi);
}

static void test_attach(void **state)
{
    (void)state;
    char *out = NULL;
    ts_sh(&out,
          "(printf 'hello-attach\\n'; sleep 5) | timeout 20 " KUBECTL
          "attach -i shell -c reader; true",
          KARGS);
    if (!strstr(out, "got: hello-attach"))
        fail_msg("attach: %s", out);
    free(out);
}

// kubectl killed in the middle of an exec: nothing stays behind, on the
// front or in the launcher.
static void test_killed_client_leaves_nothing(void **state)
{
    (void)state;
    char log[300];
    snprintf(log, sizeof log, "%s/killed.out", g->stack.dir);
    char *argv[] = {g->kubectl,
                    "--kubeconfig",
                    g->kubeconfig,
                    "-n",
                    g->ns,
                    "exec",
                    "shell",
                    "-c",
                    "app",
                    "--",
                    "sh",
                    "-c",
                    "echo started; sleep 1000",
                    NULL};
    pid_t pid = ts_spawn(log, argv);
    free(ts_wait_line(log, "started", 30000));
    for (int i = 0; i < 50 && s_launcher_sessions("exec") < 1; i++)
        usleep(100 * 1000);
    assert_true(s_launcher_sessions("exec") >= 1);
    ts_kill(pid, SIGKILL);
    ts_wait_exit(pid, 5000, NULL);
    bool clean = false;
    for (int i = 0; i < 100 && !clean; i++) {
        usleep(200 * 1000);
        clean = s_kapi_sessions() == 0 && s_launcher_sessions("exec") == 0;
    }
    if (!clean)
        fail_msg("after the kill: %.0f front sessions, %.0f launcher exec sessions",
                 s_kapi_sessions(), s_launcher_sessions("exec"));
    // And the process itself is gone from the guest.
    char *out = NULL;
    ts_sh(&out, KUBECTL "exec shell -c app -- sh -c 'ps | grep -c \"[s]leep 1000\"'", KARGS);
    assert_int_equal(atoi(out), 0);
    free(out);
}

// A stream with no traffic either way is closed after the idle limit.
static void test_idle_stream_is_closed(void **state)
{
    (void)state;
    // kubectl's stdin: a FIFO this test holds open and never writes, so
    // nothing moves either way.
    char fifo[300], log[300];
    snprintf(fifo, sizeof fifo, "%s/idle.fifo", g->stack.dir);
    snprintf(log, sizeof log, "%s/idle.out", g->stack.dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    int hold = open(fifo, O_RDWR);
    assert_true(hold >= 0);
    char *cmd = vmlet_xasprintf("exec " KUBECTL "exec -i shell -c app -- cat <%s", KARGS, fifo);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    int64_t start = ts_now_ms();
    pid_t pid = ts_spawn(log, argv);
    int status = -1;
    int waited = ts_wait_exit(pid, 60000, &status);
    int64_t took = ts_now_ms() - start;
    if (waited < 0) {
        ts_kill(pid, SIGKILL);
        ts_wait_exit(pid, 5000, NULL);
    }
    close(hold);
    free(cmd);
    print_message("an idle exec ended after %lld ms (limit %s s)\n", (long long)took, IDLE_S);
    assert_int_equal(waited, 0);
    assert_true(took >= atoi(IDLE_S) * 1000 - 1000);
}

// The first launcher timed its pod's start by phase and counts its VM as
// running.
static void test_launcher_start_metrics(void **state)
{
    (void)state;
    const char *phases[] = {"image", "boot", "container", "total"};
    for (int i = 0; i < 4; i++) {
        char series[120];
        snprintf(series, sizeof series, "vmlet_launcher_pod_start_seconds_count{phase=\"%s\"}",
                 phases[i]);
        assert_true(ts_service_metric(&g->stack.launcher, series) >= 1);
    }
    double running = 0;
    for (int i = 0; i < 100 && running < 1; i++) { // counted at each capacity announcement
        running =
            ts_service_metric(&g->stack.launcher, "vmlet_launcher_vms_by_state{state=\"running\"}");
        if (running < 1)
            usleep(100 * 1000);
    }
    assert_true(running >= 1);
}

// Two launchers (two hosts): each request reaches the one that holds the
// pod's VM.
static void test_each_pod_through_its_own_launcher(void **state)
{
    (void)state;
    char *out = NULL;
    // The VM records name different launchers.
    const char *id = second_own.launcher_flags[0] + strlen("--launcher-id=");
    int rc = ts_sh(&out,
                   "uid=$(" KUBECTL "get pod other -o jsonpath='{.metadata.uid}'); "
                   "redis-cli -p %d -a %s --no-auth-warning GET vmlet:vm:$uid | grep -ac '%s'",
                   KARGS, g->stack.redis.port, g->stack.redis.password, id);
    if (rc != 0 || atoi(out) < 1)
        fail_msg("pod other is not on the second launcher %s: %s", id, out);
    free(out);
    assert_int_equal(ts_sh(&out, KUBECTL "exec other -- cat /etc/hostname", KARGS), 0);
    assert_string_equal(out, "other\n");
    free(out);
    assert_int_equal(ts_sh(&out, KUBECTL "logs other", KARGS), 0);
    assert_string_equal(out, "other-started\n");
    free(out);
    assert_int_equal(ts_sh(&out, KUBECTL "exec shell -c app -- cat /etc/hostname", KARGS), 0);
    assert_string_equal(out, "shell\n");
    free(out);
    // The second launcher served the exec into its pod.
    assert_int_equal(ts_sh(&out,
                           "curl -s http://127.0.0.1:%d/metrics | "
                           "grep -c '^vmlet_launcher_sessions_total{kind=\"exec\"'",
                           second.http_port),
                     0);
    assert_true(atoi(out) >= 1);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logs),
        cmocka_unit_test(test_exec),
        cmocka_unit_test(test_exec_tty_under_tmux),
        cmocka_unit_test(test_exec_over_websocket),
        cmocka_unit_test(test_port_forward),
        cmocka_unit_test(test_attach),
        cmocka_unit_test(test_killed_client_leaves_nothing),
        cmocka_unit_test(test_idle_stream_is_closed),
        cmocka_unit_test(test_each_pod_through_its_own_launcher),
        cmocka_unit_test(test_launcher_start_metrics),
    };
    if (getenv("VMLET_TEST_FILTER"))
        cmocka_set_test_filter(getenv("VMLET_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
