// A container's process, decided at its start (see container_run.h).
#include "container_run.h"

#include "expand.h"
#include "security_context.h"

#include "vmlet/env_name.h"
#include "vmlet/pb.h"
#include "vmlet/quantity.h"
#include "vmlet/xalloc.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// containerd's default when neither the image nor the pod sets PATH.
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// --- an ordered environment where a later name replaces an earlier one ------------

typedef struct {
    char **names, **values;
    size_t n, cap;
} env_t;

static ssize_t s_env_find(const env_t *e, const char *name, size_t len)
{
    for (size_t i = 0; i < e->n; i++)
        if (strlen(e->names[i]) == len && memcmp(e->names[i], name, len) == 0)
            return (ssize_t)i;
    return -1;
}

// Takes ownership of value.
static void s_env_set(env_t *e, const char *name, char *value)
{
    ssize_t at = s_env_find(e, name, strlen(name));
    if (at >= 0) {
        free(e->values[at]);
        e->values[at] = value;
        return;
    }
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 16;
        e->names = vmlet_xrealloc(e->names, e->cap * sizeof *e->names);
        e->values = vmlet_xrealloc(e->values, e->cap * sizeof *e->values);
    }
    e->names[e->n] = vmlet_xstrdup(name);
    e->values[e->n++] = value;
}

static void s_env_free(env_t *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->names[i]);
        if (e->values[i]) // may hold a secret: leave nothing behind in freed memory
            explicit_bzero(e->values[i], strlen(e->values[i]));
        free(e->values[i]);
    }
    free(e->names);
    free(e->values);
}

static const char *s_env_lookup(void *ctx, const char *name, size_t len)
{
    env_t *e = ctx;
    ssize_t at = s_env_find(e, name, len);
    return at >= 0 ? e->values[at] : NULL;
}

// --- downward API --------------------------------------------------------------------

// "metadata.labels['app']" -> the key "app" (malloc'd), or NULL.
static char *s_subscript(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0 || strncmp(path + n, "['", 2) != 0)
        return NULL;
    const char *key = path + n + 2;
    size_t len = strlen(key);
    if (len < 2 || strcmp(key + len - 2, "']") != 0)
        return NULL;
    return vmlet_xstrndup(key, len - 2);
}

// A pod's labels or annotations as plain key and value arrays (the two
// generated entry types differ only in name).
typedef struct {
    const char **keys, **values;
    size_t n;
} kv_t;

#define KV_OF(entries, count)                                                               \
    ({                                                                                      \
        kv_t kv_ = {vmlet_xcalloc((count) + 1, sizeof(char *)),                             \
                    vmlet_xcalloc((count) + 1, sizeof(char *)), (count)};                   \
        for (size_t i_ = 0; i_ < (count); i_++)                                             \
            kv_.keys[i_] = (entries)[i_]->key, kv_.values[i_] = (entries)[i_]->value;        \
        kv_;                                                                                \
    })

static void s_kv_free(kv_t *kv)
{
    free(kv->keys);
    free(kv->values);
}

static const char *s_kv_get(const kv_t *kv, const char *key)
{
    for (size_t i = 0; i < kv->n; i++)
        if (strcmp(kv->keys[i], key) == 0)
            return kv->values[i];
    return NULL;
}

// The whole map as the kubelet formats it: `key="value"` lines, sorted.
static char *s_kv_text(const kv_t *kv)
{
    size_t *order = vmlet_xcalloc(kv->n + 1, sizeof *order), cap = 1;
    for (size_t i = 0; i < kv->n; i++) {
        order[i] = i;
        cap += strlen(kv->keys[i]) + 2 * strlen(kv->values[i]) + 5;
    }
    for (size_t i = 1; i < kv->n; i++) // insertion sort: maps here are small
        for (size_t j = i; j > 0 && strcmp(kv->keys[order[j - 1]], kv->keys[order[j]]) > 0; j--) {
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    char *out = vmlet_xmalloc(cap), *p = out;
    *p = '\0';
    for (size_t i = 0; i < kv->n; i++) {
        p += sprintf(p, "%s%s=\"", i ? "\n" : "", kv->keys[order[i]]);
        for (const char *v = kv->values[order[i]]; *v; v++) { // Go's %q for the common cases
            if (*v == '"' || *v == '\\')
                *p++ = '\\';
            *p++ = *v;
        }
        *p++ = '"';
        *p = '\0';
    }
    free(order);
    return out;
}

static char *s_map_field(const kv_t *kv, const char *path, const char *prefix, bool *matched)
{
    *matched = true;
    if (strcmp(path, prefix) == 0)
        return s_kv_text(kv);
    char *key = s_subscript(path, prefix);
    if (!key) {
        *matched = false;
        return NULL;
    }
    const char *v = s_kv_get(kv, key);
    free(key);
    return vmlet_xstrdup(v ? v : "");
}

char *container_run_field(const run_inputs_t *in, const char *path)
{
    const Vmlet__PodSpec *pod = in->pod;
    if (strcmp(path, "metadata.name") == 0)
        return vmlet_xstrdup(pod->pod->name);
    if (strcmp(path, "metadata.namespace") == 0)
        return vmlet_xstrdup(pod->pod->namespace_);
    if (strcmp(path, "metadata.uid") == 0)
        return vmlet_xstrdup(pod->pod->uid);
    if (strcmp(path, "spec.nodeName") == 0)
        return vmlet_xstrdup(pod->node_name ? pod->node_name : "");
    if (strcmp(path, "spec.serviceAccountName") == 0)
        return vmlet_xstrdup(pod->service_account_name ? pod->service_account_name : "");
    if (strcmp(path, "status.podIP") == 0 || strcmp(path, "status.podIPs") == 0)
        return vmlet_xstrdup(in->pod_ip ? in->pod_ip : "");
    if (strcmp(path, "status.hostIP") == 0 || strcmp(path, "status.hostIPs") == 0)
        return vmlet_xstrdup(in->host_ip ? in->host_ip : "");
    bool matched;
    kv_t labels = KV_OF(pod->labels, pod->n_labels);
    char *v = s_map_field(&labels, path, "metadata.labels", &matched);
    s_kv_free(&labels);
    if (matched)
        return v;
    kv_t annotations = KV_OF(pod->annotations, pod->n_annotations);
    v = s_map_field(&annotations, path, "metadata.annotations", &matched);
    s_kv_free(&annotations);
    return matched ? v : NULL;
}

// --- resourceFieldRef ---------------------------------------------------------------

static const Vmlet__Container *s_container_named(const Vmlet__PodSpec *pod, const char *name)
{
    for (size_t i = 0; i < pod->n_containers; i++)
        if (strcmp(pod->containers[i]->name, name) == 0)
            return pod->containers[i];
    for (size_t i = 0; i < pod->n_init_containers; i++)
        if (strcmp(pod->init_containers[i]->name, name) == 0)
            return pod->init_containers[i];
    return NULL;
}

static int64_t s_ceil_div(int64_t a, int64_t b)
{
    return a / b + (a % b != 0 && (a > 0) == (b > 0));
}

// The value as the kubelet gives it: unset limits are what the VM has.
char *container_run_resource(const run_inputs_t *in, const Vmlet__ResourceFieldRef *ref,
                             run_problem_t *problem)
{
    const char *name = ref->container_name && *ref->container_name ? ref->container_name
                                                                    : in->container->name;
    const Vmlet__Container *c = s_container_named(in->pod, name);
    const char *res = ref->resource ? ref->resource : "";
    if (!c) {
        snprintf(problem->message, sizeof problem->message,
                 "resourceFieldRef: no container named \"%s\"", name);
        return NULL;
    }
    const Vmlet__Resources *r = c->resources;
    bool cpu = strstr(res, ".cpu") != NULL;
    int64_t v;
    if (strcmp(res, "limits.cpu") == 0)
        v = r && r->has_cpu_limit_millis ? r->cpu_limit_millis : in->vm_cpu_millis;
    else if (strcmp(res, "requests.cpu") == 0)
        v = r && r->has_cpu_request_millis ? r->cpu_request_millis : 0;
    else if (strcmp(res, "limits.memory") == 0)
        v = r && r->has_memory_limit_bytes ? r->memory_limit_bytes : in->vm_memory_bytes;
    else if (strcmp(res, "requests.memory") == 0)
        v = r && r->has_memory_request_bytes ? r->memory_request_bytes : 0;
    else if (strcmp(res, "limits.ephemeral-storage") == 0)
        v = r && r->has_ephemeral_storage_limit_bytes ? r->ephemeral_storage_limit_bytes : 0;
    else if (strcmp(res, "requests.ephemeral-storage") == 0)
        v = r && r->has_ephemeral_storage_request_bytes ? r->ephemeral_storage_request_bytes : 0;
    else {
        snprintf(problem->message, sizeof problem->message,
                 "resourceFieldRef: unsupported resource \"%s\"", res);
        return NULL;
    }
    const char *divisor_text = ref->divisor && *ref->divisor ? ref->divisor : "1";
    int64_t divisor;
    vmlet_err_t err = {0};
    int rc = cpu ? vmlet_quantity_milli(divisor_text, &divisor, &err)
                 : vmlet_quantity_value(divisor_text, &divisor, &err);
    if (rc < 0 || divisor <= 0) {
        snprintf(problem->message, sizeof problem->message,
                 "resourceFieldRef %s: bad divisor \"%s\"", res, divisor_text);
        return NULL;
    }
    char out[32];
    snprintf(out, sizeof out, "%lld", (long long)s_ceil_div(v, divisor));
    return vmlet_xstrdup(out);
}

// --- Secrets ---------------------------------------------------------------------

typedef struct {
    const run_inputs_t *in;
    // Secrets read during this build, so each is fetched once.
    char **names;
    cJSON **data;
    int *found;
    size_t n;
} secrets_t;

// 0 found (*data borrowed), 1 missing, -1 error.
static int s_secret(secrets_t *s, const char *name, const cJSON **data, vmlet_err_t *err)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0) {
            *data = s->data[i];
            return s->found[i];
        }
    cJSON *fetched = NULL;
    int rc = s->in->fetch_secret(s->in->fetch_ctx, s->in->pod->pod->namespace_, name, &fetched,
                                 err);
    if (rc < 0)
        return vmlet_err_wrap(err, "secret \"%s\"", name);
    s->names = vmlet_xrealloc(s->names, (s->n + 1) * sizeof *s->names);
    s->data = vmlet_xrealloc(s->data, (s->n + 1) * sizeof *s->data);
    s->found = vmlet_xrealloc(s->found, (s->n + 1) * sizeof *s->found);
    s->names[s->n] = vmlet_xstrdup(name);
    s->data[s->n] = fetched;
    s->found[s->n++] = rc;
    *data = fetched;
    return rc;
}

static void s_secrets_free(secrets_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->names[i]);
        cJSON *item;
        cJSON_ArrayForEach(item, s->data[i]) if (cJSON_IsString(item))
            explicit_bzero(item->valuestring, strlen(item->valuestring));
        cJSON_Delete(s->data[i]);
    }
    free(s->names);
    free(s->data);
    free(s->found);
}

// --- the environment ---------------------------------------------------------------


static int s_problem(run_problem_t *p, const char *reason, bool retryable, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int s_problem(run_problem_t *p, const char *reason, bool retryable, const char *fmt, ...)
{
    snprintf(p->reason, sizeof p->reason, "%s", reason);
    p->retryable = retryable;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->message, sizeof p->message, fmt, ap);
    va_end(ap);
    return -1;
}

static int s_env_from(secrets_t *secrets, const Vmlet__EnvFromSource *from, env_t *env,
                      run_problem_t *problem, vmlet_err_t *err)
{
    const char *prefix = from->prefix ? from->prefix : "";
    if (from->source_case == VMLET__ENV_FROM_SOURCE__SOURCE_CONFIG_MAP) {
        for (size_t i = 0; i < from->n_values; i++)
            s_env_set(env, from->values[i]->name, vmlet_xstrdup(from->values[i]->value));
        return 0;
    }
    if (from->source_case != VMLET__ENV_FROM_SOURCE__SOURCE_SECRET)
        return 0;
    const cJSON *data = NULL;
    int rc = s_secret(secrets, from->secret->name, &data, err);
    if (rc < 0)
        return -1;
    if (rc == 1)
        return from->secret->optional ? 0
                                      : s_problem(problem, "CreateContainerConfigError", true,
                                                  "secret \"%s\" not found", from->secret->name);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, data)
    {
        char *name = vmlet_xmalloc(strlen(prefix) + strlen(kv->string) + 1);
        strcat(strcpy(name, prefix), kv->string);
        if (vmlet_env_name_ok(name) && cJSON_IsString(kv)) // others skipped, as the kubelet does
            s_env_set(env, name, vmlet_xstrdup(kv->valuestring));
        free(name);
    }
    return 0;
}

// One env entry's value (malloc'd), or NULL with *skip (an optional
// reference that is missing) or with a problem / err.
static char *s_env_value(secrets_t *secrets, const run_inputs_t *in, env_t *env,
                         const Vmlet__EnvVar *var, bool *skip, run_problem_t *problem,
                         vmlet_err_t *err)
{
    *skip = false;
    switch (var->source_case) {
    case VMLET__ENV_VAR__SOURCE_VALUE:
        return expand_vars(var->value ? var->value : "", s_env_lookup, env);
    case VMLET__ENV_VAR__SOURCE_FIELD: {
        char *v = container_run_field(in, var->field->field_path);
        if (!v)
            s_problem(problem, "CreateContainerConfigError", false,
                      "env %s: unsupported fieldRef \"%s\"", var->name, var->field->field_path);
        return v;
    }
    case VMLET__ENV_VAR__SOURCE_RESOURCE_FIELD: {
        char *v = container_run_resource(in, var->resource_field, problem);
        if (!v) {
            char why[sizeof problem->message];
            snprintf(why, sizeof why, "%s", problem->message);
            s_problem(problem, "CreateContainerConfigError", false, "env %s: %s", var->name, why);
        }
        return v;
    }
    case VMLET__ENV_VAR__SOURCE_SECRET_KEY: {
        const Vmlet__KeyRef *ref = var->secret_key;
        const cJSON *data = NULL;
        int rc = s_secret(secrets, ref->name, &data, err);
        if (rc < 0)
            return NULL;
        const char *value = rc == 0 ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, ref->key)) : NULL;
        if (value)
            return vmlet_xstrdup(value);
        if (ref->optional) {
            *skip = true;
            return NULL;
        }
        if (rc == 1)
            s_problem(problem, "CreateContainerConfigError", true, "secret \"%s\" not found",
                      ref->name);
        else
            s_problem(problem, "CreateContainerConfigError", true,
                      "couldn't find key %s in Secret %s/%s", ref->key,
                      in->pod->pod->namespace_, ref->name);
        return NULL;
    }
    case VMLET__ENV_VAR__SOURCE_CONFIG_MAP_KEY: // resolved by k8s-watcher; none should be left
        *skip = true;
        return NULL;
    default:
        return vmlet_xstrdup("");
    }
}

// The Services' variables, asked now as the kubelet does at each start
// (getServiceEnvVarMap): without them the container does not start.
static int s_service_env(const run_inputs_t *in, env_t *env, run_problem_t *problem)
{
    if (!in->service_env)
        return 0;
    const Vmlet__PodSpec *pod = in->pod;
    bool links = !pod->has_enable_service_links || pod->enable_service_links;
    service_env_t vars = {0};
    vmlet_err_t why = {0};
    if (in->service_env(in->fetch_ctx, pod->pod->namespace_, links, &vars, &why) < 0)
        return s_problem(problem, "CreateContainerConfigError", true,
                         "failed to list services when setting up env vars: %s", why.msg);
    for (size_t i = 0; i < vars.n; i++)
        s_env_set(env, vars.names[i], vmlet_xstrdup(vars.values[i]));
    service_env_clear(&vars);
    return 0;
}

// The kubelet's variables: the Services' first (envFrom and env override
// them, and $(VAR) sees them), then envFrom in turn, then env, expanding
// each value against those before it.
static int s_kube_env(const run_inputs_t *in, secrets_t *secrets, env_t *env,
                      run_problem_t *problem, vmlet_err_t *err)
{
    const Vmlet__Container *c = in->container;
    if (s_service_env(in, env, problem) < 0)
        return -1;
    for (size_t i = 0; i < c->n_env_from; i++)
        if (s_env_from(secrets, c->env_from[i], env, problem, err) < 0)
            return -1;
    for (size_t i = 0; i < c->n_env; i++) {
        bool skip;
        char *value = s_env_value(secrets, in, env, c->env[i], &skip, problem, err);
        if (skip)
            continue;
        if (!value)
            return -1;
        s_env_set(env, c->env[i]->name, value);
    }
    return 0;
}

// --- argv, user, the whole thing --------------------------------------------------------

static char **s_expand_all(char **items, size_t n, env_t *env)
{
    char **out = vmlet_xcalloc(n + 1, sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = expand_vars(items[i], s_env_lookup, env);
    return out;
}

static void s_append(char ***list, size_t *n, char **items, size_t count, bool take)
{
    *list = vmlet_xrealloc(*list, (*n + count + 1) * sizeof **list);
    for (size_t i = 0; i < count; i++)
        (*list)[(*n)++] = take ? items[i] : vmlet_xstrdup(items[i]);
}

// Kubernetes command replaces the image's entrypoint (and drops its cmd);
// args replace cmd.
static void s_argv(const run_inputs_t *in, env_t *env, Vmlet__StartContainer *out)
{
    const Vmlet__Container *c = in->container;
    const Vmlet__ImageConfig *img = in->image;
    if (c->n_command) {
        char **cmd = s_expand_all(c->command, c->n_command, env);
        s_append(&out->argv, &out->n_argv, cmd, c->n_command, true);
        free(cmd);
    } else if (img) {
        s_append(&out->argv, &out->n_argv, img->entrypoint, img->n_entrypoint, false);
    }
    if (c->n_args) {
        char **args = s_expand_all(c->args, c->n_args, env);
        s_append(&out->argv, &out->n_argv, args, c->n_args, true);
        free(args);
    } else if (!c->n_command && img) {
        s_append(&out->argv, &out->n_argv, img->cmd, img->n_cmd, false);
    }
}

static bool s_numeric(const char *s, int64_t *out)
{
    if (!*s)
        return false;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || v < 0 || v > 0xffffffffLL)
        return false;
    *out = v;
    return true;
}

// runAsUser/runAsGroup (the container's over the pod's) over the image's
// USER ("uid", "name", "uid:gid", "name:group"). Numbers go as uid/gid;
// when a name is involved, or the group must come from /etc/passwd, the
// guest resolves `user` in the container's own files.
static void s_user(const run_inputs_t *in, Vmlet__StartContainer *out)
{
    const Vmlet__SecurityContext *sc = in->container->security_context;
    const Vmlet__PodSecurityContext *psc = in->pod->security_context;
    char user[256] = "", group[256] = "";
    const char *image_user = in->image && in->image->user ? in->image->user : "";
    const char *colon = strchr(image_user, ':');
    snprintf(user, sizeof user, "%.*s", colon ? (int)(colon - image_user) : (int)strlen(image_user),
             image_user);
    if (colon)
        snprintf(group, sizeof group, "%s", colon + 1);
    if (sc && sc->has_run_as_user)
        snprintf(user, sizeof user, "%lld", (long long)sc->run_as_user);
    else if (psc && psc->has_run_as_user)
        snprintf(user, sizeof user, "%lld", (long long)psc->run_as_user);
    if (sc && sc->has_run_as_group)
        snprintf(group, sizeof group, "%lld", (long long)sc->run_as_group);
    else if (psc && psc->has_run_as_group)
        snprintf(group, sizeof group, "%lld", (long long)psc->run_as_group);
    if (!*user)
        snprintf(user, sizeof user, "0");
    int64_t uid, gid;
    if (s_numeric(user, &uid) && s_numeric(group, &gid)) {
        PB_SET(out, uid, uid);
        PB_SET(out, gid, gid);
    } else {
        char both[520];
        snprintf(both, sizeof both, "%s%s%s", user, *group ? ":" : "", group);
        out->user = vmlet_xstrdup(both);
    }
    if (psc) { // fsGroup joins the supplementary groups, as on a kubelet
        size_t n = psc->n_supplemental_groups + (psc->has_fs_group ? 1 : 0);
        out->supplemental_groups = vmlet_xcalloc(n + 1, sizeof(int64_t));
        for (size_t i = 0; i < psc->n_supplemental_groups; i++)
            out->supplemental_groups[out->n_supplemental_groups++] = psc->supplemental_groups[i];
        if (psc->has_fs_group)
            out->supplemental_groups[out->n_supplemental_groups++] = psc->fs_group;
    }
}

// The process's environment: the image's, then the kubelet's over it,
// HOSTNAME as CRI runtimes set it, and a PATH if nothing gave one.
static void s_environment(const run_inputs_t *in, env_t *kube, Vmlet__StartContainer *out)
{
    env_t all = {0};
    const Vmlet__ImageConfig *img = in->image;
    for (size_t i = 0; img && i < img->n_env; i++) {
        const char *eq = strchr(img->env[i], '=');
        if (!eq)
            continue;
        char *name = vmlet_xstrndup(img->env[i], (size_t)(eq - img->env[i]));
        s_env_set(&all, name, vmlet_xstrdup(eq + 1));
        free(name);
    }
    if (s_env_find(&all, "PATH", 4) < 0 && s_env_find(kube, "PATH", 4) < 0)
        s_env_set(&all, "PATH", vmlet_xstrdup(DEFAULT_PATH));
    s_env_set(&all, "HOSTNAME", vmlet_xstrdup(in->hostname ? in->hostname : ""));
    for (size_t i = 0; i < kube->n; i++)
        s_env_set(&all, kube->names[i], vmlet_xstrdup(kube->values[i]));
    out->env = vmlet_xcalloc(all.n + 1, sizeof *out->env);
    for (size_t i = 0; i < all.n; i++) {
        size_t len = strlen(all.names[i]) + strlen(all.values[i]) + 2;
        out->env[i] = vmlet_xmalloc(len);
        snprintf(out->env[i], len, "%s=%s", all.names[i], all.values[i]);
    }
    out->n_env = all.n;
    s_env_free(&all);
}

Vmlet__StartContainer *container_run_build(const run_inputs_t *in, run_problem_t *problem,
                                           vmlet_err_t *err)
{
    memset(problem, 0, sizeof *problem);
    // First, as the kubelet's generateContainerConfig: no Secret is read
    // for a container that may not run.
    char why[sizeof problem->message];
    if (!security_non_root_ok(in->pod, in->container, in->image ? in->image->user : NULL, why,
                              sizeof why)) {
        s_problem(problem, "CreateContainerConfigError", false, "%s", why);
        return NULL;
    }
    env_t kube = {0};
    secrets_t secrets = {.in = in};
    int rc = s_kube_env(in, &secrets, &kube, problem, err);
    s_secrets_free(&secrets);
    if (rc < 0) {
        s_env_free(&kube);
        return NULL;
    }
    Vmlet__StartContainer *out = PB_NEW(Vmlet__StartContainer, VMLET__START_CONTAINER__INIT);
    out->name = vmlet_xstrdup(in->container->name);
    PB_SET(out, instance, in->instance);
    PB_SET(out, fresh_root, in->fresh_root);
    s_argv(in, &kube, out);
    s_environment(in, &kube, out);
    s_env_free(&kube);
    if (out->n_argv == 0) {
        vmlet__start_container__free_unpacked(out, NULL);
        s_problem(problem, "CreateContainerError", false,
                  "no command specified: the image has no entrypoint or cmd, and the container "
                  "no command or args");
        return NULL;
    }
    const char *wd = in->container->working_dir;
    if (!wd || !*wd)
        wd = in->image && in->image->working_dir ? in->image->working_dir : "";
    out->working_dir = vmlet_xstrdup(*wd ? wd : "/");
    s_user(in, out);
    security_fill(in->pod, in->container, out);
    return out;
}
