// A Pod into the normalised PodSpec: the pod, its volumes, and the shared
// helpers (see normalize.h; containers are in normalize_container.c).
#include "normalize_internal.h"

#include "vmlet/timeutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

// --- JSON helpers -------------------------------------------------------------

const cJSON *j_get(const cJSON *obj, const char *key)
{
    return obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

const char *j_str(const cJSON *obj, const char *key)
{
    return cJSON_GetStringValue(j_get(obj, key));
}

char *j_dup(const cJSON *obj, const char *key)
{
    return vmlet_xstrdup(j_str(obj, key));
}

bool j_int(const cJSON *obj, const char *key, int64_t *out)
{
    const cJSON *item = j_get(obj, key);
    if (!cJSON_IsNumber(item))
        return false;
    *out = (int64_t)item->valuedouble;
    return true;
}

bool j_bool(const cJSON *obj, const char *key, bool *out)
{
    const cJSON *item = j_get(obj, key);
    if (!cJSON_IsBool(item))
        return false;
    *out = cJSON_IsTrue(item);
    return true;
}

char **j_strings(const cJSON *array, size_t *n)
{
    *n = 0;
    int size = cJSON_GetArraySize(array);
    if (size <= 0)
        return NULL;
    char **out = vmlet_xcalloc((size_t)size, sizeof *out);
    const cJSON *item;
    cJSON_ArrayForEach(item, array) out[(*n)++] =
        vmlet_xstrdup(cJSON_IsString(item) ? item->valuestring : "");
    return out;
}

void problem_set(Vmlet__ConfigProblem **slot, const char *reason, bool retryable,
                 const char *fmt, ...)
{
    if (*slot)
        return;
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    Vmlet__ConfigProblem *p = PB_NEW(Vmlet__ConfigProblem, VMLET__CONFIG_PROBLEM__INIT);
    p->reason = vmlet_xstrdup(reason);
    p->message = vmlet_xstrdup(message);
    p->has_retryable = 1;
    p->retryable = retryable;
    *slot = p;
}

// --- references ------------------------------------------------------------------

resolve_result_t resolve_object(norm_t *n, bool secret, const char *name, const cJSON **data)
{
    *data = NULL;
    if (!name || !n->resolver)
        return RESOLVE_MISSING;
    vmlet_err_t err = {0};
    resolve_result_t r = secret ? n->resolver->secret(n->resolver->arg, n->ns, name, data, &err)
                                : n->resolver->configmap(n->resolver->arg, n->ns, name, data, &err);
    if (r == RESOLVE_ERROR && !n->transient) {
        n->transient = true;
        vmlet_err_set(n->err, "looking up %s %s/%s: %s", secret ? "secret" : "configmap", n->ns,
                      name, err.msg);
    }
    return r;
}

resolve_result_t resolve_key(norm_t *n, bool secret, const char *name, const char *key,
                             const char **value, char *why, size_t why_cap)
{
    const char *kind = secret ? "secret" : "configmap";
    const cJSON *data = NULL;
    *value = NULL;
    resolve_result_t r = resolve_object(n, secret, name, &data);
    if (r == RESOLVE_MISSING) {
        snprintf(why, why_cap, "%s \"%s\" not found", kind, name ? name : "");
        return r;
    }
    if (r == RESOLVE_ERROR)
        return r;
    *value = j_str(data, key ? key : "");
    if (!*value) {
        snprintf(why, why_cap, "couldn't find key %s in %s %s/%s", key ? key : "", kind, n->ns,
                 name);
        return RESOLVE_MISSING;
    }
    return RESOLVE_FOUND;
}

Vmlet__FieldRef *normalize_field_ref(const cJSON *j)
{
    Vmlet__FieldRef *f = PB_NEW(Vmlet__FieldRef, VMLET__FIELD_REF__INIT);
    f->api_version = vmlet_xstrdup(j_str(j, "apiVersion") ? j_str(j, "apiVersion") : "v1");
    f->field_path = j_dup(j, "fieldPath");
    return f;
}

Vmlet__ResourceFieldRef *normalize_resource_ref(const cJSON *j, const char *container)
{
    Vmlet__ResourceFieldRef *r = PB_NEW(Vmlet__ResourceFieldRef, VMLET__RESOURCE_FIELD_REF__INIT);
    const char *named = j_str(j, "containerName");
    r->container_name = vmlet_xstrdup(named && *named ? named : container);
    r->resource = j_dup(j, "resource");
    r->divisor = vmlet_xstrdup(j_str(j, "divisor") ? j_str(j, "divisor") : "1");
    return r;
}

// --- volumes -----------------------------------------------------------------------

static Vmlet__KeyToPath **s_items(const cJSON *items, size_t *n)
{
    *n = 0;
    Vmlet__KeyToPath **out = vmlet_xcalloc((size_t)cJSON_GetArraySize(items), sizeof *out);
    const cJSON *i;
    cJSON_ArrayForEach(i, items)
    {
        Vmlet__KeyToPath *k = PB_NEW(Vmlet__KeyToPath, VMLET__KEY_TO_PATH__INIT);
        k->key = j_dup(i, "key");
        k->path = j_dup(i, "path");
        int64_t mode;
        if ((k->has_mode = j_int(i, "mode", &mode)))
            k->mode = (int32_t)mode;
        out[(*n)++] = k;
    }
    return out;
}

// A ConfigMap or Secret volume: its object must exist unless optional.
static void *s_object_volume(norm_t *n, Vmlet__PodSpec *spec, const cJSON *j, bool secret,
                             const char *volume)
{
    const char *name = j_str(j, secret ? "secretName" : "name");
    bool optional = false;
    j_bool(j, "optional", &optional);
    const cJSON *data;
    if (resolve_object(n, secret, name, &data) == RESOLVE_MISSING && !optional)
        problem_set(&spec->problem, CONFIG_ERROR, true, "volume \"%s\": %s \"%s\" not found",
                    volume, secret ? "secret" : "configmap", name ? name : "");
    int64_t mode = 0644;
    bool has_mode = j_int(j, "defaultMode", &mode);
    if (secret) {
        Vmlet__SecretVolume *v = PB_NEW(Vmlet__SecretVolume, VMLET__SECRET_VOLUME__INIT);
        v->secret_name = vmlet_xstrdup(name);
        v->items = s_items(j_get(j, "items"), &v->n_items);
        v->has_default_mode = has_mode, v->default_mode = (int32_t)mode;
        v->has_optional = 1, v->optional = optional;
        return v;
    }
    Vmlet__ConfigMapVolume *v = PB_NEW(Vmlet__ConfigMapVolume, VMLET__CONFIG_MAP_VOLUME__INIT);
    v->name = vmlet_xstrdup(name);
    v->items = s_items(j_get(j, "items"), &v->n_items);
    v->has_default_mode = has_mode, v->default_mode = (int32_t)mode;
    v->has_optional = 1, v->optional = optional;
    return v;
}

static Vmlet__DownwardApiVolume *s_downward(const cJSON *j)
{
    Vmlet__DownwardApiVolume *v = PB_NEW(Vmlet__DownwardApiVolume, VMLET__DOWNWARD_API_VOLUME__INIT);
    const cJSON *items = j_get(j, "items"), *i;
    v->items = vmlet_xcalloc((size_t)cJSON_GetArraySize(items), sizeof *v->items);
    cJSON_ArrayForEach(i, items)
    {
        Vmlet__DownwardApiFile *f = PB_NEW(Vmlet__DownwardApiFile, VMLET__DOWNWARD_API_FILE__INIT);
        f->path = j_dup(i, "path");
        if (j_get(i, "fieldRef"))
            f->field = normalize_field_ref(j_get(i, "fieldRef"));
        if (j_get(i, "resourceFieldRef"))
            f->resource_field = normalize_resource_ref(j_get(i, "resourceFieldRef"), "");
        int64_t mode;
        if ((f->has_mode = j_int(i, "mode", &mode)))
            f->mode = (int32_t)mode;
        v->items[v->n_items++] = f;
    }
    int64_t mode;
    if ((v->has_default_mode = j_int(j, "defaultMode", &mode)))
        v->default_mode = (int32_t)mode;
    return v;
}

static Vmlet__ProjectedVolume *s_projected(norm_t *n, Vmlet__PodSpec *spec, const cJSON *j,
                                           const char *volume)
{
    Vmlet__ProjectedVolume *v = PB_NEW(Vmlet__ProjectedVolume, VMLET__PROJECTED_VOLUME__INIT);
    const cJSON *sources = j_get(j, "sources"), *s;
    v->sources = vmlet_xcalloc((size_t)cJSON_GetArraySize(sources), sizeof *v->sources);
    cJSON_ArrayForEach(s, sources)
    {
        Vmlet__VolumeProjection *p = PB_NEW(Vmlet__VolumeProjection, VMLET__VOLUME_PROJECTION__INIT);
        const cJSON *src;
        if ((src = j_get(s, "configMap"))) {
            p->source_case = VMLET__VOLUME_PROJECTION__SOURCE_CONFIG_MAP;
            p->config_map = s_object_volume(n, spec, src, false, volume);
        } else if ((src = j_get(s, "secret"))) {
            p->source_case = VMLET__VOLUME_PROJECTION__SOURCE_SECRET;
            cJSON *as_volume = cJSON_Duplicate(src, true); // "name" here, "secretName" in volumes
            cJSON_AddStringToObject(as_volume, "secretName", j_str(src, "name") ? j_str(src, "name") : "");
            p->secret = s_object_volume(n, spec, as_volume, true, volume);
            cJSON_Delete(as_volume);
        } else if ((src = j_get(s, "downwardAPI"))) {
            p->source_case = VMLET__VOLUME_PROJECTION__SOURCE_DOWNWARD_API;
            p->downward_api = s_downward(src);
        } else if ((src = j_get(s, "serviceAccountToken"))) {
            p->source_case = VMLET__VOLUME_PROJECTION__SOURCE_SERVICE_ACCOUNT_TOKEN;
            p->service_account_token = PB_NEW(Vmlet__ServiceAccountTokenProjection,
                                              VMLET__SERVICE_ACCOUNT_TOKEN_PROJECTION__INIT);
            p->service_account_token->audience = j_dup(src, "audience");
            p->service_account_token->path = j_dup(src, "path");
            int64_t exp;
            if ((p->service_account_token->has_expiration_seconds = j_int(src, "expirationSeconds", &exp)))
                p->service_account_token->expiration_seconds = exp;
        }
        v->sources[v->n_sources++] = p;
    }
    int64_t mode;
    if ((v->has_default_mode = j_int(j, "defaultMode", &mode)))
        v->default_mode = (int32_t)mode;
    return v;
}

// The first key of a volume other than "name": its type.
static const char *s_volume_type(const cJSON *j)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, j) if (strcmp(item->string, "name") != 0) return item->string;
    return "(none)";
}

static Vmlet__Volume *s_volume(norm_t *n, Vmlet__PodSpec *spec, const cJSON *j)
{
    Vmlet__Volume *v = PB_NEW(Vmlet__Volume, VMLET__VOLUME__INIT);
    v->name = j_dup(j, "name");
    const char *name = v->name ? v->name : "";
    const cJSON *src;
    if ((src = j_get(j, "emptyDir"))) {
        v->source_case = VMLET__VOLUME__SOURCE_EMPTY_DIR;
        v->empty_dir = PB_NEW(Vmlet__EmptyDirVolume, VMLET__EMPTY_DIR_VOLUME__INIT);
        v->empty_dir->medium = j_dup(src, "medium");
    } else if ((src = j_get(j, "configMap"))) {
        v->source_case = VMLET__VOLUME__SOURCE_CONFIG_MAP;
        v->config_map = s_object_volume(n, spec, src, false, name);
    } else if ((src = j_get(j, "secret"))) {
        v->source_case = VMLET__VOLUME__SOURCE_SECRET;
        v->secret = s_object_volume(n, spec, src, true, name);
    } else if ((src = j_get(j, "downwardAPI"))) {
        v->source_case = VMLET__VOLUME__SOURCE_DOWNWARD_API;
        v->downward_api = s_downward(src);
    } else if ((src = j_get(j, "projected"))) {
        v->source_case = VMLET__VOLUME__SOURCE_PROJECTED;
        v->projected = s_projected(n, spec, src, name);
    } else {
        problem_set(&spec->problem, CONFIG_ERROR, false,
                    "volume \"%s\": %s volumes are not supported by vmlet (a pod runs in a VM of "
                    "its own: emptyDir, configMap, secret, downwardAPI and projected work)",
                    name, s_volume_type(j));
    }
    return v;
}

// --- the pod -----------------------------------------------------------------------

static void s_metadata(Vmlet__PodSpec *spec, const cJSON *meta)
{
    spec->pod = PB_NEW(Vmlet__PodRef, VMLET__POD_REF__INIT);
    spec->pod->uid = j_dup(meta, "uid");
    spec->pod->namespace_ = j_dup(meta, "namespace");
    spec->pod->name = j_dup(meta, "name");
    spec->resource_version = j_dup(meta, "resourceVersion");
    const cJSON *labels = j_get(meta, "labels"), *annotations = j_get(meta, "annotations"), *kv;
    spec->labels = vmlet_xcalloc((size_t)cJSON_GetArraySize(labels), sizeof *spec->labels);
    cJSON_ArrayForEach(kv, labels)
    {
        Vmlet__PodSpec__LabelsEntry *e =
            PB_NEW(Vmlet__PodSpec__LabelsEntry, VMLET__POD_SPEC__LABELS_ENTRY__INIT);
        e->key = vmlet_xstrdup(kv->string);
        e->value = vmlet_xstrdup(cJSON_IsString(kv) ? kv->valuestring : "");
        spec->labels[spec->n_labels++] = e;
    }
    spec->annotations =
        vmlet_xcalloc((size_t)cJSON_GetArraySize(annotations), sizeof *spec->annotations);
    cJSON_ArrayForEach(kv, annotations)
    {
        Vmlet__PodSpec__AnnotationsEntry *e =
            PB_NEW(Vmlet__PodSpec__AnnotationsEntry, VMLET__POD_SPEC__ANNOTATIONS_ENTRY__INIT);
        e->key = vmlet_xstrdup(kv->string);
        e->value = vmlet_xstrdup(cJSON_IsString(kv) ? kv->valuestring : "");
        spec->annotations[spec->n_annotations++] = e;
    }
    int64_t t;
    if (vmlet_parse_rfc3339(j_str(meta, "creationTimestamp"), &t) == 0)
        spec->has_creation_unix_ms = 1, spec->creation_unix_ms = t * 1000;
    if (vmlet_parse_rfc3339(j_str(meta, "deletionTimestamp"), &t) == 0)
        spec->has_deletion_unix_ms = 1, spec->deletion_unix_ms = t * 1000;
    spec->has_deletion_grace_period_seconds =
        j_int(meta, "deletionGracePeriodSeconds", &spec->deletion_grace_period_seconds);
}

static void s_pod_security(Vmlet__PodSpec *spec, const cJSON *j)
{
    if (!j)
        return;
    Vmlet__PodSecurityContext *s = spec->security_context =
        PB_NEW(Vmlet__PodSecurityContext, VMLET__POD_SECURITY_CONTEXT__INIT);
    s->has_run_as_user = j_int(j, "runAsUser", &s->run_as_user);
    s->has_run_as_group = j_int(j, "runAsGroup", &s->run_as_group);
    s->has_fs_group = j_int(j, "fsGroup", &s->fs_group);
    const cJSON *groups = j_get(j, "supplementalGroups"), *g;
    s->supplemental_groups = vmlet_xcalloc((size_t)cJSON_GetArraySize(groups) + 1, sizeof(int64_t));
    cJSON_ArrayForEach(g, groups) if (cJSON_IsNumber(g) && g->valuedouble >= 0)
        s->supplemental_groups[s->n_supplemental_groups++] = (int64_t)g->valuedouble;
    bool b;
    if ((s->has_run_as_non_root = j_bool(j, "runAsNonRoot", &b)))
        s->run_as_non_root = b;
}

// dnsConfig and hostAliases as the pod gives them; the launcher merges them
// as the kubelet does.
static void s_dns_config(Vmlet__PodSpec *spec, const cJSON *j)
{
    if (!j)
        return;
    Vmlet__DnsConfig *d = spec->dns_config = PB_NEW(Vmlet__DnsConfig, VMLET__DNS_CONFIG__INIT);
    d->nameservers = j_strings(j_get(j, "nameservers"), &d->n_nameservers);
    d->searches = j_strings(j_get(j, "searches"), &d->n_searches);
    const cJSON *options = j_get(j, "options"), *o;
    d->options = vmlet_xcalloc((size_t)cJSON_GetArraySize(options) + 1, sizeof *d->options);
    cJSON_ArrayForEach(o, options)
    {
        Vmlet__DnsOption *opt = PB_NEW(Vmlet__DnsOption, VMLET__DNS_OPTION__INIT);
        opt->name = vmlet_xstrdup(j_str(o, "name") ? j_str(o, "name") : "");
        opt->value = j_dup(o, "value"); // absent stays absent: "ndots" vs "ndots:"
        d->options[d->n_options++] = opt;
    }
}

static void s_host_aliases(Vmlet__PodSpec *spec, const cJSON *list)
{
    const cJSON *a;
    spec->host_aliases = vmlet_xcalloc((size_t)cJSON_GetArraySize(list) + 1, sizeof(void *));
    cJSON_ArrayForEach(a, list)
    {
        Vmlet__HostAlias *h = PB_NEW(Vmlet__HostAlias, VMLET__HOST_ALIAS__INIT);
        h->ip = vmlet_xstrdup(j_str(a, "ip") ? j_str(a, "ip") : "");
        h->hostnames = j_strings(j_get(a, "hostnames"), &h->n_hostnames);
        spec->host_aliases[spec->n_host_aliases++] = h;
    }
}

static void s_containers(norm_t *n, const cJSON *list, Vmlet__Container ***out, size_t *count)
{
    *out = vmlet_xcalloc((size_t)cJSON_GetArraySize(list), sizeof **out);
    *count = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, list)(*out)[(*count)++] = normalize_container(n, c);
}

static void s_spec(norm_t *n, Vmlet__PodSpec *spec, const cJSON *j)
{
    const cJSON *vols = j_get(j, "volumes"), *v;
    spec->volumes = vmlet_xcalloc((size_t)cJSON_GetArraySize(vols), sizeof *spec->volumes);
    cJSON_ArrayForEach(v, vols) spec->volumes[spec->n_volumes++] = s_volume(n, spec, v);
    s_containers(n, j_get(j, "initContainers"), &spec->init_containers, &spec->n_init_containers);
    s_containers(n, j_get(j, "containers"), &spec->containers, &spec->n_containers);
    const char *restart = j_str(j, "restartPolicy");
    spec->restart_policy = vmlet_xstrdup(restart ? restart : "Always");
    spec->has_termination_grace_period_seconds = 1;
    spec->termination_grace_period_seconds = 30;
    j_int(j, "terminationGracePeriodSeconds", &spec->termination_grace_period_seconds);
    spec->has_active_deadline_seconds =
        j_int(j, "activeDeadlineSeconds", &spec->active_deadline_seconds);
    spec->hostname = j_dup(j, "hostname");
    spec->subdomain = j_dup(j, "subdomain");
    const char *dns = j_str(j, "dnsPolicy");
    spec->dns_policy = vmlet_xstrdup(dns ? dns : "ClusterFirst");
    s_dns_config(spec, j_get(j, "dnsConfig"));
    s_host_aliases(spec, j_get(j, "hostAliases"));
    bool links = true; // the API server's default
    j_bool(j, "enableServiceLinks", &links);
    PB_SET(spec, enable_service_links, links);
    spec->service_account_name = j_dup(j, "serviceAccountName");
    spec->node_name = j_dup(j, "nodeName");
    s_pod_security(spec, j_get(j, "securityContext"));
    const cJSON *secrets = j_get(j, "imagePullSecrets"), *s;
    spec->image_pull_secrets = vmlet_xcalloc((size_t)cJSON_GetArraySize(secrets), sizeof(void *));
    cJSON_ArrayForEach(s, secrets)
    {
        Vmlet__KeyRef *ref = PB_NEW(Vmlet__KeyRef, VMLET__KEY_REF__INIT);
        ref->namespace_ = vmlet_xstrdup(n->ns);
        ref->name = j_dup(s, "name");
        spec->image_pull_secrets[spec->n_image_pull_secrets++] = ref;
    }
}

Vmlet__PodSpec *pod_normalize(const cJSON *pod, const pod_resolver_t *resolver, bool *transient,
                              vmlet_err_t *err)
{
    *transient = false;
    const cJSON *meta = j_get(pod, "metadata");
    if (!j_str(meta, "uid") || !j_str(meta, "name") || !j_str(meta, "namespace")) {
        vmlet_err_set(err, "not a pod: metadata.uid, name or namespace missing");
        return NULL;
    }
    Vmlet__PodSpec *spec = PB_NEW(Vmlet__PodSpec, VMLET__POD_SPEC__INIT);
    s_metadata(spec, meta);
    norm_t n = {resolver, spec->pod->namespace_, false, err};
    s_spec(&n, spec, j_get(pod, "spec"));
    if (n.transient) {
        *transient = true;
        pod_spec_free(&spec);
        return NULL;
    }
    return spec;
}

void pod_spec_free(Vmlet__PodSpec **spec_p)
{
    if (spec_p && *spec_p) {
        vmlet__pod_spec__free_unpacked(*spec_p, NULL);
        *spec_p = NULL;
    }
}

// The i-th container, init containers first.
static const Vmlet__Container *s_container_at(const Vmlet__PodSpec *spec, size_t i)
{
    return i < spec->n_init_containers ? spec->init_containers[i]
                                       : spec->containers[i - spec->n_init_containers];
}

bool pod_spec_retryable(const Vmlet__PodSpec *spec)
{
    if (spec->problem && spec->problem->retryable)
        return true;
    for (size_t i = 0; i < spec->n_init_containers + spec->n_containers; i++) {
        const Vmlet__Container *c = s_container_at(spec, i);
        if (c->problem && c->problem->retryable)
            return true;
    }
    return false;
}

const Vmlet__ConfigProblem *pod_spec_problem(const Vmlet__PodSpec *spec)
{
    if (spec->problem)
        return spec->problem;
    for (size_t i = 0; i < spec->n_init_containers + spec->n_containers; i++)
        if (s_container_at(spec, i)->problem)
            return s_container_at(spec, i)->problem;
    return NULL;
}
