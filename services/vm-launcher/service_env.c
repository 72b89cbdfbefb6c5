// The kubelet's Service environment variables (see service_env.h).
#include "service_env.h"

#include "vmlet/kube_api.h"
#include "vmlet/xalloc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MASTER_NAMESPACE "default" // the kubelet's --master-service-namespace
#define MASTER_SERVICE "kubernetes"

static void s_set(service_env_t *env, const char *name, const char *value)
{
    for (size_t i = 0; i < env->n; i++)
        if (strcmp(env->names[i], name) == 0) {
            free(env->values[i]);
            env->values[i] = vmlet_xstrdup(value);
            return;
        }
    env->names = vmlet_xrealloc(env->names, (env->n + 1) * sizeof *env->names);
    env->values = vmlet_xrealloc(env->values, (env->n + 1) * sizeof *env->values);
    env->names[env->n] = vmlet_xstrdup(name);
    env->values[env->n++] = vmlet_xstrdup(value);
}

// makeEnvVariableName: upper case, '-' as '_'.
static void s_var_name(const char *name, char *out, size_t cap)
{
    size_t i = 0;
    for (; name[i] && i + 1 < cap; i++)
        out[i] = name[i] == '-' ? '_' : (char)toupper((unsigned char)name[i]);
    out[i] = '\0';
}

static void s_lower(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = '\0';
}

static const char *s_str(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static int s_port(const cJSON *port)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(port, "port");
    return cJSON_IsNumber(n) ? n->valueint : 0;
}

static bool s_ip_set(const cJSON *service)
{
    const char *ip = s_str(cJSON_GetObjectItemCaseSensitive(service, "spec"), "clusterIP");
    return ip && *ip && strcmp(ip, "None") != 0;
}

// The Docker-link variables of one port (the first also as <NAME>_PORT).
static void s_link_vars(service_env_t *env, const char *prefix, const char *ip, const cJSON *port,
                        bool first)
{
    const char *protocol = s_str(port, "protocol");
    if (!protocol || !*protocol)
        protocol = "TCP";
    char lower[16], upper[16];
    s_lower(protocol, lower, sizeof lower);
    s_var_name(protocol, upper, sizeof upper);
    int number = s_port(port);
    // net.JoinHostPort: an IPv6 address in brackets.
    char url[160], name[400], text[32];
    bool v6 = strchr(ip, ':') != NULL;
    snprintf(url, sizeof url, "%s://%s%s%s:%d", lower, v6 ? "[" : "", ip, v6 ? "]" : "", number);
    if (first) {
        snprintf(name, sizeof name, "%s_PORT", prefix);
        s_set(env, name, url);
    }
    snprintf(name, sizeof name, "%s_PORT_%d_%s", prefix, number, upper);
    s_set(env, name, url);
    size_t base = strlen(name);
    snprintf(name + base, sizeof name - base, "_PROTO");
    s_set(env, name, lower);
    snprintf(name + base, sizeof name - base, "_PORT");
    snprintf(text, sizeof text, "%d", number);
    s_set(env, name, text);
    snprintf(name + base, sizeof name - base, "_ADDR");
    s_set(env, name, ip);
}

void service_env_add_service(service_env_t *env, const cJSON *service)
{
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(service, "spec");
    const cJSON *ports = cJSON_GetObjectItemCaseSensitive(spec, "ports");
    const char *name = s_str(cJSON_GetObjectItemCaseSensitive(service, "metadata"), "name");
    if (!name || !s_ip_set(service) || cJSON_GetArraySize(ports) < 1)
        return;
    const char *ip = s_str(spec, "clusterIP");
    char prefix[300], var[400], text[32];
    s_var_name(name, prefix, sizeof prefix);
    snprintf(var, sizeof var, "%s_SERVICE_HOST", prefix);
    s_set(env, var, ip);
    // The first port under the backwards-compatible name, then each named one.
    snprintf(var, sizeof var, "%s_SERVICE_PORT", prefix);
    const cJSON *port = cJSON_GetArrayItem(ports, 0);
    snprintf(text, sizeof text, "%d", s_port(port));
    s_set(env, var, text);
    cJSON_ArrayForEach(port, ports)
    {
        const char *port_name = s_str(port, "name");
        if (!port_name || !*port_name)
            continue;
        char suffix[200], named[600];
        s_var_name(port_name, suffix, sizeof suffix);
        snprintf(named, sizeof named, "%s_%s", var, suffix);
        snprintf(text, sizeof text, "%d", s_port(port));
        s_set(env, named, text);
    }
    bool first = true;
    cJSON_ArrayForEach(port, ports)
    {
        s_link_vars(env, prefix, ip, port, first);
        first = false;
    }
}

// --- the pod's map -------------------------------------------------------------------

typedef struct {
    const char *name;
    const cJSON *service;
} named_t;

static int s_by_name(const void *a, const void *b)
{
    return strcmp(((const named_t *)a)->name, ((const named_t *)b)->name);
}

// Puts (or, with replace, replaces) a Service in the map by its name.
static void s_put(named_t *map, size_t *n, const cJSON *service, bool replace)
{
    const char *name = s_str(cJSON_GetObjectItemCaseSensitive(service, "metadata"), "name");
    if (!name || !s_ip_set(service))
        return;
    for (size_t i = 0; i < *n; i++)
        if (strcmp(map[i].name, name) == 0) {
            if (replace)
                map[i].service = service;
            return;
        }
    map[(*n)++] = (named_t){name, service};
}

void service_env_build(service_env_t *env, const cJSON *master_items, const cJSON *ns_items,
                       bool links)
{
    size_t cap = (size_t)cJSON_GetArraySize(master_items) + (size_t)cJSON_GetArraySize(ns_items);
    named_t *map = vmlet_xcalloc(cap + 1, sizeof *map);
    size_t n = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, master_items)
    {
        const char *name = s_str(cJSON_GetObjectItemCaseSensitive(s, "metadata"), "name");
        if (name && strcmp(name, MASTER_SERVICE) == 0)
            s_put(map, &n, s, false);
    }
    if (links)
        cJSON_ArrayForEach(s, ns_items) s_put(map, &n, s, true);
    qsort(map, n, sizeof *map, s_by_name);
    for (size_t i = 0; i < n; i++)
        service_env_add_service(env, map[i].service);
    free(map);
}

static int s_list(vmlet_kube_t *kube, const char *path, cJSON **out, vmlet_err_t *err)
{
    int rc = vmlet_kube_call(kube, "GET", path, NULL, NULL, NULL, out, err);
    return rc == 0 ? 0 : -1;
}

int service_env_fetch(vmlet_kube_t *kube, const char *namespace_, bool links, service_env_t *env,
                      vmlet_err_t *err)
{
    char path[400];
    cJSON *master = NULL, *local = NULL;
    bool in_default = strcmp(namespace_, MASTER_NAMESPACE) == 0;
    if (links) {
        snprintf(path, sizeof path, "/api/v1/namespaces/%s/services", namespace_);
        if (s_list(kube, path, &local, err) < 0)
            return -1;
    }
    // The master Service alone: a list (the verb the ClusterRole grants)
    // narrowed to its name; the namespace's list has it already in default.
    if (!(links && in_default)) {
        snprintf(path, sizeof path,
                 "/api/v1/namespaces/" MASTER_NAMESPACE "/services?fieldSelector=metadata.name%%3D"
                 MASTER_SERVICE);
        if (s_list(kube, path, &master, err) < 0) {
            cJSON_Delete(local);
            return -1;
        }
    }
    service_env_build(env,
                      cJSON_GetObjectItemCaseSensitive(links && in_default ? local : master,
                                                       "items"),
                      cJSON_GetObjectItemCaseSensitive(local, "items"), links);
    cJSON_Delete(master);
    cJSON_Delete(local);
    return 0;
}

void service_env_clear(service_env_t *env)
{
    for (size_t i = 0; i < env->n; i++) {
        free(env->names[i]);
        free(env->values[i]);
    }
    free(env->names);
    free(env->values);
    *env = (service_env_t){0};
}
