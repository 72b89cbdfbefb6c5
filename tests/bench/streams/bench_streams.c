// tests/bench/streams: how fast bytes go through the kubelet API path
// (kubectl -> kube-apiserver -> vmlet-kubelet-api -> vm-launcher -> guest
// agent, a VM under QEMU TCG here), against socat moving the same bytes
// over loopback in the same run (this machine is shared and noisy):
//
//   exec:          100 MiB into `kubectl exec -i ... cat` and back out
//   port-forward:  100 MiB from a CGI in the pod through `kubectl port-forward`
//   socat:         100 MiB from one socat to another over 127.0.0.1
//   direct:        the CGI's 100 MiB fetched straight from the pod's IP (inside
//                  the node's network namespace): what the guest itself gives
//   latency:       `kubectl exec ... true` against `kubectl get pod` (the same
//                  kubectl start-up and API round trip, no stream)
#include "testsupport.h"
#include "ts_node.h"

#include "vmlet/timeutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB 1048576L
#define SIZE (100 * MIB)
#define ROUNDS 10

#define KUBECTL "%s --kubeconfig %s -n %s "
#define KARGS n->kubectl, n->kubeconfig, n->ns

// Runs a shell pipeline that must print SIZE (bytes counted at its end);
// returns its MB/s, or -1.
static double s_throughput(const char *what, const char *cmd)
{
    char *out = NULL;
    int64_t start = ts_now_ms();
    int rc = ts_sh(&out, "%s", cmd);
    double secs = (double)(ts_now_ms() - start) / 1000.0;
    long got = atol(out ? out : "0");
    if (rc != 0 || got != SIZE) {
        fprintf(stderr, "bench: %s moved %ld of %ld bytes (rc %d): %.300s\n", what, got, SIZE, rc,
                out ? out : "");
        free(out);
        return -1;
    }
    free(out);
    return (double)SIZE / 1e6 / secs;
}

static int s_compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The median of ROUNDS runs of cmd, in ms.
static double s_median_ms(const char *cmd)
{
    double ms[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        int64_t start = ts_now_ms();
        if (ts_sh(NULL, "%s", cmd) != 0)
            return -1;
        ms[i] = (double)(ts_now_ms() - start);
    }
    qsort(ms, ROUNDS, sizeof ms[0], s_compare);
    return (ms[ROUNDS / 2 - 1] + ms[ROUNDS / 2]) / 2;
}

static double s_socat(void)
{
    int port = ts_free_port();
    char listen[64], out[300];
    snprintf(listen, sizeof listen, "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr", port);
    char *dir = ts_tempdir("vmlet-bench-socat");
    snprintf(out, sizeof out, "%s/received", dir);
    char sink[400];
    snprintf(sink, sizeof sink, "OPEN:%s,creat,trunc", out);
    char *argv[] = {"/usr/bin/socat", "-u", listen, sink, NULL};
    pid_t pid = ts_spawn(NULL, argv);
    usleep(300 * 1000); // its listen
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "head -c %ld /dev/zero | socat -u - TCP:127.0.0.1:%d && sleep 0.1 && stat -c %%s %s",
             SIZE, port, out);
    double mbs = s_throughput("socat", cmd);
    ts_kill(pid, SIGTERM);
    ts_wait_exit(pid, 5000, NULL);
    ts_remove_dir(dir);
    free(dir);
    return mbs;
}

int main(void)
{
    ts_node_t *n = calloc(1, sizeof *n);
    fprintf(stderr, "bench: starting a node (control plane from the bed, all services)\n");
    if (ts_node_start(n, "bench-streams", NULL) < 0) {
        fprintf(stderr, "bench: the node did not start\n");
        return 1;
    }
    char manifest[2048];
    snprintf(manifest, sizeof manifest,
             "apiVersion: v1\nkind: Pod\nmetadata: {name: pipe, namespace: %s}\n"
             "spec:\n  nodeName: %s\n  terminationGracePeriodSeconds: 1\n"
             "  containers:\n  - name: app\n    image: %s\n    command:\n    - /bin/sh\n"
             "    - -c\n    - |\n"
             "      mkdir -p /www/cgi-bin\n"
             "      printf '#!/bin/sh\\necho Content-Type: application/octet-stream\\necho\\n"
             "head -c %ld /dev/zero\\n' > /www/cgi-bin/big\n"
             "      chmod +x /www/cgi-bin/big\n"
             "      exec httpd -f -p 8080 -h /www\n",
             n->ns, n->stack.node, n->busybox, SIZE);
    fprintf(stderr, "bench: booting the pod's VM\n");
    int rc = 1;
    if (ts_node_run_pod(n, "pipe", 1, 240000, manifest) < 0)
        goto out;
    fprintf(stderr, "bench: socat over loopback, 100 MiB\n");
    double socat = s_socat();
    fprintf(stderr, "bench: kubectl exec -i cat, 100 MiB in and out\n");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "head -c %ld /dev/zero | " KUBECTL "exec -i pipe -- cat | wc -c",
             SIZE, KARGS);
    double exec = s_throughput("exec", cmd);
    fprintf(stderr, "bench: kubectl port-forward, 100 MiB from the pod\n");
    char log[300];
    snprintf(log, sizeof log, "%s/port-forward.out", n->stack.dir);
    char *argv[] = {n->kubectl,     "--kubeconfig", n->kubeconfig, "-n", n->ns,
                    "port-forward", "pod/pipe",     ":8080",       NULL};
    pid_t pf = ts_spawn(log, argv);
    char *line = ts_wait_line(log, "Forwarding from 127.0.0.1:", 30000);
    double forward = -1;
    if (line) {
        snprintf(cmd, sizeof cmd, "curl -s http://127.0.0.1:%d/cgi-bin/big | wc -c",
                 atoi(line + strlen("Forwarding from 127.0.0.1:")));
        forward = s_throughput("port-forward", cmd);
        free(line);
    }
    ts_kill(pf, SIGTERM);
    ts_wait_exit(pf, 5000, NULL);
    char *ip = NULL;
    ts_sh(&ip, KUBECTL "get pod pipe -o jsonpath='{.status.podIP}'", KARGS);
    snprintf(cmd, sizeof cmd, "ip netns exec %s curl -s http://%s:8080/cgi-bin/big | wc -c",
             n->stack.netns, ip ? ip : "");
    free(ip);
    double direct = s_throughput("direct", cmd);
    fprintf(stderr, "bench: latency, %d rounds each\n", ROUNDS);
    snprintf(cmd, sizeof cmd, KUBECTL "exec pipe -- true", KARGS);
    double exec_ms = s_median_ms(cmd);
    snprintf(cmd, sizeof cmd, KUBECTL "get pod pipe -o name >/dev/null", KARGS);
    double get_ms = s_median_ms(cmd);
    printf("stream benchmark: 100 MiB through the kubelet API path (QEMU TCG guest) vs socat\n");
    printf("%-36s %10s %10s %8s\n", "", "MB/s", "socat", "ratio");
    printf("%-36s %10.1f %10.1f %8.3f\n", "kubectl exec -i cat (in and out)", exec, socat,
           exec > 0 && socat > 0 ? exec / socat : 0);
    printf("%-36s %10.1f %10.1f %8.3f\n", "kubectl port-forward (from the pod)", forward, socat,
           forward > 0 && socat > 0 ? forward / socat : 0);
    printf("%-36s %10.1f %10s %8.3f   (port-forward / direct)\n",
           "the same, straight from the pod IP", direct, "", direct > 0 ? forward / direct : 0);
    printf("%-36s %10s %10s %8s\n", "", "median ms", "get pod", "ratio");
    printf("%-36s %10.0f %10.0f %8.2f\n", "kubectl exec ... true", exec_ms, get_ms,
           get_ms > 0 ? exec_ms / get_ms : 0);
    rc = exec > 0 && forward > 0 && exec_ms > 0 ? 0 : 1;
out:
    ts_node_stop(n);
    free(n);
    return rc;
}
