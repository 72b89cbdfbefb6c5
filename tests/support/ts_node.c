// A whole vmlet node behind the bed's API server (see ts_node.h).
#include "ts_node.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

int ts_sh(char **out, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char *full = vmlet_xasprintf("(%s) 2>&1", cmd);
    FILE *p = popen(full, "r");
    free(full);
    size_t cap = 1 << 20, n = 0;
    char *buf = vmlet_xcalloc(1, cap + 1);
    for (size_t got; p && n < cap && (got = fread(buf + n, 1, cap - n, p)) > 0;)
        n += got;
    int status = p ? pclose(p) : -1;
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int s_start_kapi(ts_node_t *n, int port, const char *node, const char *const extra[])
{
    char *ca = ts_bed_value("BED_CA"), *cert = ts_bed_value("BED_NODE_CERT"),
         *key = ts_bed_value("BED_NODE_KEY");
    char listen[64], cert_flag[400], key_flag[400], ca_flag[400], node_flag[120];
    snprintf(listen, sizeof listen, "--listen=127.0.0.1:%d", port);
    snprintf(cert_flag, sizeof cert_flag, "--tls-cert=%s", cert);
    snprintf(key_flag, sizeof key_flag, "--tls-key=%s", key);
    snprintf(ca_flag, sizeof ca_flag, "--client-ca=%s", ca);
    snprintf(node_flag, sizeof node_flag, "--node-name=%s", node);
    free(ca);
    free(cert);
    free(key);
    const char *args[16] = {listen, cert_flag, key_flag, ca_flag, node_flag};
    int k = 5;
    for (int i = 0; extra && extra[i] && k < 15; i++)
        args[k++] = extra[i];
    args[k] = NULL;
    return ts_stack_service(&n->stack, "kubelet-api", &n->kapi, args);
}

int ts_node_start(ts_node_t *n, const char *prefix, const char *const kapi_extra[])
{
    const char *service_kubeconfig = n->service_kubeconfig;
    memset(n, 0, sizeof *n);
    n->service_kubeconfig = service_kubeconfig;
    char kubeconfig[600] = "";
    if (service_kubeconfig) // later flags win over the stack's own
        snprintf(kubeconfig, sizeof kubeconfig, "--kubeconfig=%s", service_kubeconfig);
    char suffix[9], node[96];
    vmlet_random_hex(suffix, 4);
    snprintf(node, sizeof node, "%s-%s", prefix, suffix);
    snprintf(n->ns, sizeof n->ns, "%s-%s", prefix, suffix);
    n->kubectl = ts_bed_value("BED_KUBECTL");
    n->kubeconfig = ts_bed_value("BED_KUBECONFIG");
    ts_registry_options_t opts = {0};
    if (ts_stack_start(&n->stack, node) < 0 || ts_registry_start(&n->registry, &opts) < 0)
        return -1;
    snprintf(n->layout, sizeof n->layout, "%s/layout", n->stack.dir);
    if (ts_registry_push(&n->registry, n->layout, "busybox", "demo/busybox:1", NULL, NULL) < 0)
        return -1;
    snprintf(n->busybox, sizeof n->busybox, "%s/demo/busybox:1", n->registry.host);
    int port = ts_free_port();
    char cache[400], insecure[300], kport[64];
    snprintf(cache, sizeof cache, "--cache-dir=%s/images", n->stack.dir);
    snprintf(insecure, sizeof insecure, "--insecure-registries=%s", n->registry.host);
    snprintf(kport, sizeof kport, "--kubelet-port=%d", port);
    const char *const builder[] = {cache, insecure, NULL};
    snprintf(n->watcher_flags[0], sizeof n->watcher_flags[0], "%s", kport);
    snprintf(n->watcher_flags[1], sizeof n->watcher_flags[1], "%s", kubeconfig);
    const char *const watcher[] = {"--retry-interval=1s", kport, kubeconfig[0] ? kubeconfig : NULL,
                                   NULL};
    const char *const launcher[] = {"--boot-timeout=120s", kubeconfig[0] ? kubeconfig : NULL, NULL};
    const char *const reporter[] = {"--resync-interval=2s", kubeconfig[0] ? kubeconfig : NULL,
                                    NULL};
    if (s_start_kapi(n, port, node, kapi_extra) < 0 ||
        ts_stack_service(&n->stack, "image-builder", &n->stack.builder, builder) < 0 ||
        ts_stack_service(&n->stack, "vm-launcher", &n->stack.launcher, launcher) < 0 ||
        ts_stack_service(&n->stack, "k8s-watcher", &n->stack.watcher, watcher) < 0 ||
        ts_stack_service(&n->stack, "status-reporter", &n->stack.reporter, reporter) < 0)
        return -1;
    return ts_kubectl_namespace(n->ns);
}

int ts_node_add_launcher(ts_node_t *n, ts_service_t *svc, ts_stack_t *own)
{
    memset(own, 0, sizeof *own);
    own->dir = ts_tempdir("vmlet-launcher2");
    ts_stack_launcher_flags(own);
    const char *extra[20];
    size_t k = 0;
    for (; own->launcher_flags[k] && k < 18; k++)
        extra[k] = own->launcher_flags[k];
    extra[k++] = "--boot-timeout=120s";
    extra[k] = NULL;
    return ts_stack_service(&n->stack, "vm-launcher", svc, extra);
}

void ts_node_remove_launcher(ts_service_t *svc, ts_stack_t *own)
{
    ts_stack_service_stop(svc); // stops its VMs and removes its network
    for (int i = 0; own->launcher_flags[i]; i++)
        free(own->launcher_flags[i]);
    if (own->dir) {
        ts_remove_dir(own->dir);
        free(own->dir);
    }
}

int ts_node_restart_watcher(ts_node_t *n)
{
    ts_stack_service_stop(&n->stack.watcher);
    const char *const watcher[] = {"--retry-interval=1s", n->watcher_flags[0],
                                   n->watcher_flags[1][0] ? n->watcher_flags[1] : NULL, NULL};
    return ts_stack_service(&n->stack, "k8s-watcher", &n->stack.watcher, watcher);
}

int ts_node_restart_reporter(ts_node_t *n)
{
    ts_stack_service_stop(&n->stack.reporter);
    const char *const reporter[] = {"--resync-interval=2s",
                                    n->watcher_flags[1][0] ? n->watcher_flags[1] : NULL, NULL};
    return ts_stack_service(&n->stack, "status-reporter", &n->stack.reporter, reporter);
}

void ts_node_stop(ts_node_t *n)
{
    ts_kubectl(NULL, "delete namespace %s --wait=false", n->ns);
    ts_kubectl(NULL, "delete node %s --wait=false", n->stack.node);
    ts_stack_service_stop(&n->kapi);
    ts_stack_stop(&n->stack); // the launcher kills its VMs and removes its network
    ts_registry_stop(&n->registry);
    free(n->kubectl);
    free(n->kubeconfig);
}

typedef struct {
    ts_node_t *n;
    const char *name;
    int containers;
} running_t;

static bool s_running(void *arg)
{
    running_t *r = arg;
    char *out = NULL;
    ts_sh(&out,
          "%s --kubeconfig %s -n %s get pod %s -o "
          "jsonpath='{.status.containerStatuses[*].state.running.startedAt}'",
          r->n->kubectl, r->n->kubeconfig, r->n->ns, r->name);
    int seen = 0;
    for (const char *p = out; p && (p = strchr(p, 'T')); p++)
        seen++; // one RFC 3339 time per running container
    free(out);
    return seen >= r->containers;
}

int ts_node_run_pod(ts_node_t *n, const char *name, int containers, int timeout_ms,
                    const char *manifest)
{
    if (ts_kubectl_apply(manifest) != 0)
        return -1;
    running_t r = {n, name, containers};
    if (ts_poll(s_running, &r, timeout_ms))
        return 0;
    char *out = NULL;
    ts_sh(&out, "%s --kubeconfig %s -n %s get pod %s -o yaml", n->kubectl, n->kubeconfig, n->ns,
          name);
    fprintf(stderr, "pod %s did not run:\n%s\n", name, out);
    free(out);
    return -1;
}
