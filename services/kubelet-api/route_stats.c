// GET /stats/summary, /metrics/resource and /pods: what the launchers
// sampled from each VM (vmlet:stats:<uid>, see proto/stats.proto), in the
// kubelet's shapes, so metrics-server and `kubectl top` read vmlet's pods
// as any node's. The node's own figures are its pods' sums: a virtual node
// has no machine of its own to report.
#include "kapi_internal.h"

#include "vmlet/pod_store.h"
#include "vmlet/proto/stats.pb-c.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Vmlet__PodStats **pods;
    size_t n;
} all_stats_t;

// Every stored pod's latest sample (pods without one are left out).
static int s_load(vmlet_store_t *store, all_stats_t *out, vmlet_err_t *err)
{
    char **uids;
    size_t n;
    out->pods = NULL;
    out->n = 0;
    if (vmlet_pod_store_uids(store, &uids, &n, err) < 0)
        return -1;
    out->pods = vmlet_xcalloc(n ? n : 1, sizeof *out->pods);
    // One MGET for every pod's sample: a scrape costs one round trip,
    // however many pods the node runs.
    const char **argv = vmlet_xcalloc(n + 1, sizeof *argv);
    char **keys = vmlet_xcalloc(n ? n : 1, sizeof *keys);
    argv[0] = "MGET";
    for (size_t i = 0; i < n; i++)
        argv[i + 1] = keys[i] = vmlet_xasprintf("vmlet:stats:%s", uids[i]);
    redisReply *r = n ? vmlet_store_commandv(store, NULL, (int)n + 1, argv, NULL) : NULL;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        Vmlet__PodStats *st = e->type == REDIS_REPLY_STRING
                                  ? vmlet__pod_stats__unpack(NULL, e->len, (uint8_t *)e->str)
                                  : NULL;
        if (st)
            out->pods[out->n++] = st;
    }
    freeReplyObject(r);
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
    free(argv);
    vmlet_pod_store_free_uids(uids, n);
    return 0;
}

static void s_free(all_stats_t *all)
{
    for (size_t i = 0; i < all->n; i++)
        vmlet__pod_stats__free_unpacked(all->pods[i], NULL);
    free(all->pods);
}

static void s_time(cJSON *o, const char *name, int64_t unix_ms)
{
    char buf[40];
    cJSON_AddStringToObject(o, name, vmlet_format_rfc3339(unix_ms / 1000, buf, sizeof buf));
}

static void s_cpu(cJSON *parent, const Vmlet__CpuStats *c, int64_t at_ms)
{
    if (!c)
        return;
    cJSON *o = cJSON_AddObjectToObject(parent, "cpu");
    s_time(o, "time", at_ms);
    cJSON_AddNumberToObject(o, "usageNanoCores", (double)c->usage_nano_cores);
    cJSON_AddNumberToObject(o, "usageCoreNanoSeconds", (double)c->usage_core_nanoseconds);
}

static void s_memory(cJSON *parent, const Vmlet__MemoryStats *m, int64_t at_ms)
{
    if (!m)
        return;
    cJSON *o = cJSON_AddObjectToObject(parent, "memory");
    s_time(o, "time", at_ms);
    if (m->has_available_bytes)
        cJSON_AddNumberToObject(o, "availableBytes", (double)m->available_bytes);
    cJSON_AddNumberToObject(o, "usageBytes", (double)m->usage_bytes);
    cJSON_AddNumberToObject(o, "workingSetBytes", (double)m->working_set_bytes);
    cJSON_AddNumberToObject(o, "rssBytes", (double)m->rss_bytes);
    cJSON_AddNumberToObject(o, "pageFaults", (double)m->page_faults);
    cJSON_AddNumberToObject(o, "majorPageFaults", (double)m->major_page_faults);
}

static void s_fs(cJSON *parent, const char *name, const Vmlet__FsStats *f, int64_t at_ms)
{
    if (!f)
        return;
    cJSON *o = cJSON_AddObjectToObject(parent, name);
    s_time(o, "time", at_ms);
    cJSON_AddNumberToObject(o, "availableBytes", (double)f->available_bytes);
    cJSON_AddNumberToObject(o, "capacityBytes", (double)f->capacity_bytes);
    cJSON_AddNumberToObject(o, "usedBytes", (double)f->used_bytes);
    cJSON_AddNumberToObject(o, "inodesFree", (double)f->inodes_free);
    cJSON_AddNumberToObject(o, "inodes", (double)f->inodes);
    cJSON_AddNumberToObject(o, "inodesUsed", (double)f->inodes_used);
}

static void s_network(cJSON *parent, const Vmlet__NetworkInterfaceStats *n, int64_t at_ms)
{
    if (!n)
        return;
    cJSON *o = cJSON_AddObjectToObject(parent, "network");
    s_time(o, "time", at_ms);
    cJSON *iface = cJSON_CreateObject();
    cJSON_AddStringToObject(iface, "name", n->name ? n->name : "eth0");
    cJSON_AddNumberToObject(iface, "rxBytes", (double)n->rx_bytes);
    cJSON_AddNumberToObject(iface, "rxErrors", (double)n->rx_errors);
    cJSON_AddNumberToObject(iface, "txBytes", (double)n->tx_bytes);
    cJSON_AddNumberToObject(iface, "txErrors", (double)n->tx_errors);
    // The default interface's figures are inlined, as the kubelet does.
    for (cJSON *f = iface->child; f; f = f->next)
        cJSON_AddItemToObject(o, f->string, cJSON_Duplicate(f, true));
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "interfaces"), iface);
}

static cJSON *s_pod(const Vmlet__PodStats *p)
{
    int64_t at = p->sampled_unix_ms;
    cJSON *o = cJSON_CreateObject();
    cJSON *ref = cJSON_AddObjectToObject(o, "podRef");
    cJSON_AddStringToObject(ref, "name", p->name ? p->name : "");
    cJSON_AddStringToObject(ref, "namespace", p->namespace_ ? p->namespace_ : "");
    cJSON_AddStringToObject(ref, "uid", p->uid ? p->uid : "");
    s_time(o, "startTime", p->start_unix_ms);
    cJSON *containers = cJSON_AddArrayToObject(o, "containers");
    for (size_t i = 0; i < p->n_containers; i++) {
        const Vmlet__ContainerStats *c = p->containers[i];
        cJSON *co = cJSON_CreateObject();
        cJSON_AddStringToObject(co, "name", c->name ? c->name : "");
        s_time(co, "startTime", c->start_unix_ms);
        s_cpu(co, c->cpu, at);
        s_memory(co, c->memory, at);
        s_fs(co, "rootfs", c->rootfs, at);
        s_fs(co, "logs", c->logs, at);
        cJSON_AddItemToArray(containers, co);
    }
    s_cpu(o, p->cpu, at);
    s_memory(o, p->memory, at);
    s_network(o, p->network, at);
    cJSON_AddArrayToObject(o, "volume");
    s_fs(o, "ephemeral-storage", p->ephemeral_storage, at);
    return o;
}

// The node's figures: its pods' sums.
static cJSON *s_node(const kapi_settings_t *settings, const all_stats_t *all)
{
    Vmlet__CpuStats cpu = VMLET__CPU_STATS__INIT;
    Vmlet__MemoryStats mem = VMLET__MEMORY_STATS__INIT;
    int64_t at = vmlet_unix_ms();
    for (size_t i = 0; i < all->n; i++) {
        const Vmlet__PodStats *p = all->pods[i];
        if (p->cpu) {
            cpu.usage_core_nanoseconds += p->cpu->usage_core_nanoseconds;
            cpu.usage_nano_cores += p->cpu->usage_nano_cores;
        }
        if (p->memory) {
            mem.usage_bytes += p->memory->usage_bytes;
            mem.working_set_bytes += p->memory->working_set_bytes;
            mem.rss_bytes += p->memory->rss_bytes;
        }
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "nodeName", settings->node_name);
    s_time(o, "startTime", settings->started_unix_ms);
    s_cpu(o, &cpu, at);
    s_memory(o, &mem, at);
    return o;
}

static void s_summary(conn_t *c, const all_stats_t *all)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "node", s_node(c->shared->settings, all));
    cJSON *pods = cJSON_AddArrayToObject(root, "pods");
    for (size_t i = 0; i < all->n; i++)
        cJSON_AddItemToArray(pods, s_pod(all->pods[i]));
    char *text = cJSON_Print(root);
    http_respond(c->ssl, 200, "application/json", text ? text : "{}");
    free(text);
    cJSON_Delete(root);
}

// Prometheus text as the kubelet's /metrics/resource writes it (1.20 names).
static void s_resource_metrics(conn_t *c, const all_stats_t *all)
{
    size_t cap = 4096 + all->n * 2048, len = 0;
    char *out = vmlet_xmalloc(cap);
#define PUT(...) (len += (size_t)snprintf(out + len, cap - len, __VA_ARGS__))
    double node_cpu = 0, node_ws = 0;
    PUT("# HELP container_cpu_usage_seconds_total [ALPHA] Cumulative cpu time consumed by the "
        "container in core-seconds\n# TYPE container_cpu_usage_seconds_total counter\n");
    for (size_t i = 0; i < all->n; i++)
        for (size_t k = 0; k < all->pods[i]->n_containers && len < cap - 512; k++) {
            const Vmlet__ContainerStats *ct = all->pods[i]->containers[k];
            if (ct->cpu)
                PUT("container_cpu_usage_seconds_total{container=\"%s\",namespace=\"%s\","
                    "pod=\"%s\"} %.9f %lld\n",
                    ct->name, all->pods[i]->namespace_, all->pods[i]->name,
                    (double)ct->cpu->usage_core_nanoseconds / 1e9,
                    (long long)all->pods[i]->sampled_unix_ms);
        }
    PUT("# HELP container_memory_working_set_bytes [ALPHA] Current working set of the container "
        "in bytes\n# TYPE container_memory_working_set_bytes gauge\n");
    for (size_t i = 0; i < all->n; i++)
        for (size_t k = 0; k < all->pods[i]->n_containers && len < cap - 512; k++) {
            const Vmlet__ContainerStats *ct = all->pods[i]->containers[k];
            if (ct->memory)
                PUT("container_memory_working_set_bytes{container=\"%s\",namespace=\"%s\","
                    "pod=\"%s\"} %llu %lld\n",
                    ct->name, all->pods[i]->namespace_, all->pods[i]->name,
                    (unsigned long long)ct->memory->working_set_bytes,
                    (long long)all->pods[i]->sampled_unix_ms);
        }
    PUT("# HELP pod_cpu_usage_seconds_total [ALPHA] Cumulative cpu time consumed by the pod in "
        "core-seconds\n# TYPE pod_cpu_usage_seconds_total counter\n");
    for (size_t i = 0; i < all->n && len < cap - 512; i++)
        if (all->pods[i]->cpu) {
            double s = (double)all->pods[i]->cpu->usage_core_nanoseconds / 1e9;
            node_cpu += s;
            PUT("pod_cpu_usage_seconds_total{namespace=\"%s\",pod=\"%s\"} %.9f %lld\n",
                all->pods[i]->namespace_, all->pods[i]->name, s,
                (long long)all->pods[i]->sampled_unix_ms);
        }
    PUT("# HELP pod_memory_working_set_bytes [ALPHA] Current working set of the pod in bytes\n"
        "# TYPE pod_memory_working_set_bytes gauge\n");
    for (size_t i = 0; i < all->n && len < cap - 512; i++)
        if (all->pods[i]->memory) {
            node_ws += (double)all->pods[i]->memory->working_set_bytes;
            PUT("pod_memory_working_set_bytes{namespace=\"%s\",pod=\"%s\"} %llu %lld\n",
                all->pods[i]->namespace_, all->pods[i]->name,
                (unsigned long long)all->pods[i]->memory->working_set_bytes,
                (long long)all->pods[i]->sampled_unix_ms);
        }
    long long now = (long long)vmlet_unix_ms();
    PUT("# HELP node_cpu_usage_seconds_total [ALPHA] Cumulative cpu time consumed by the node in "
        "core-seconds\n# TYPE node_cpu_usage_seconds_total counter\n"
        "node_cpu_usage_seconds_total %.9f %lld\n",
        node_cpu, now);
    PUT("# HELP node_memory_working_set_bytes [ALPHA] Current working set of the node in bytes\n"
        "# TYPE node_memory_working_set_bytes gauge\nnode_memory_working_set_bytes %.0f %lld\n",
        node_ws, now);
    PUT("# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 "
        "otherwise\n# TYPE scrape_error gauge\nscrape_error 0\n");
#undef PUT
    http_respond(c->ssl, 200, "text/plain; version=0.0.4", out);
    free(out);
}

// The pods bound to the node as a v1 PodList, from the specs k8s-watcher
// keeps: the fields the kubelet's /pods consumers read (identity, labels,
// containers and their images). Status lives in the API server.
static void s_pods(conn_t *c, vmlet_store_t *store)
{
    char **uids;
    size_t n;
    vmlet_err_t err = {0};
    if (vmlet_pod_store_uids(store, &uids, &n, &err) < 0) {
        http_respondf(c->ssl, 500, "Internal Error: %s\n", err.msg);
        return;
    }
    cJSON *list = cJSON_CreateObject();
    cJSON_AddStringToObject(list, "kind", "PodList");
    cJSON_AddStringToObject(list, "apiVersion", "v1");
    cJSON_AddObjectToObject(list, "metadata");
    cJSON *items = cJSON_AddArrayToObject(list, "items");
    for (size_t i = 0; i < n; i++) {
        Vmlet__PodSpec *spec = vmlet_pod_store_get(store, uids[i], NULL);
        if (!spec || !spec->pod) {
            if (spec)
                vmlet__pod_spec__free_unpacked(spec, NULL);
            continue;
        }
        cJSON *pod = cJSON_CreateObject();
        cJSON *meta = cJSON_AddObjectToObject(pod, "metadata");
        cJSON_AddStringToObject(meta, "name", spec->pod->name ? spec->pod->name : "");
        cJSON_AddStringToObject(meta, "namespace",
                                spec->pod->namespace_ ? spec->pod->namespace_ : "");
        cJSON_AddStringToObject(meta, "uid", spec->pod->uid ? spec->pod->uid : "");
        cJSON *labels = cJSON_AddObjectToObject(meta, "labels");
        for (size_t k = 0; k < spec->n_labels; k++)
            cJSON_AddStringToObject(labels, spec->labels[k]->key, spec->labels[k]->value);
        cJSON *ps = cJSON_AddObjectToObject(pod, "spec");
        cJSON_AddStringToObject(ps, "nodeName",
                                spec->node_name ? spec->node_name : c->shared->settings->node_name);
        cJSON *containers = cJSON_AddArrayToObject(ps, "containers");
        for (size_t k = 0; k < spec->n_containers; k++) {
            cJSON *ct = cJSON_CreateObject();
            cJSON_AddStringToObject(ct, "name", spec->containers[k]->name);
            cJSON_AddStringToObject(ct, "image",
                                    spec->containers[k]->image ? spec->containers[k]->image : "");
            cJSON_AddItemToArray(containers, ct);
        }
        cJSON_AddItemToArray(items, pod);
        vmlet__pod_spec__free_unpacked(spec, NULL);
    }
    vmlet_pod_store_free_uids(uids, n);
    char *text = cJSON_PrintUnformatted(list);
    http_respond(c->ssl, 200, "application/json", text ? text : "{}");
    free(text);
    cJSON_Delete(list);
}

void route_stats(conn_t *c, const char *what)
{
    kapi_shared_t *sh = c->shared;
    vmlet_err_t err = {0};
    vmlet_store_t *store = vmlet_store_new(sh->redis_url, sh->redis_password, NULL, NULL, &err);
    all_stats_t all = {0};
    if (store && strcmp(what, "pods") == 0) {
        s_pods(c, store);
        vmlet_store_destroy(&store);
        return;
    }
    if (!store || s_load(store, &all, &err) < 0) {
        http_respondf(c->ssl, 500, "Internal Error: failed to get stats: %s\n", err.msg);
    } else if (strcmp(what, "summary") == 0) {
        s_summary(c, &all);
    } else {
        s_resource_metrics(c, &all);
    }
    s_free(&all);
    vmlet_store_destroy(&store);
}
