// One container of a pod into the normalised Container (see normalize.h).
#include "normalize_internal.h"

#include "vmlet/env_name.h"
#include "vmlet/image_ref.h"
#include "vmlet/quantity.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static void s_ports(Vmlet__Container *out, const cJSON *ports)
{
    out->n_ports = (size_t)cJSON_GetArraySize(ports);
    out->ports = vmlet_xcalloc(out->n_ports, sizeof *out->ports);
    size_t i = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, ports)
    {
        Vmlet__ContainerPort *port = PB_NEW(Vmlet__ContainerPort, VMLET__CONTAINER_PORT__INIT);
        port->name = j_dup(p, "name");
        int64_t number = 0;
        port->has_container_port = j_int(p, "containerPort", &number);
        port->container_port = (int32_t)number;
        port->protocol = vmlet_xstrdup(j_str(p, "protocol") ? j_str(p, "protocol") : "TCP");
        out->ports[i++] = port;
    }
}

// --- environment --------------------------------------------------------------

static Vmlet__KeyRef *s_key_ref(norm_t *n, const char *name, const char *key, bool optional)
{
    Vmlet__KeyRef *ref = PB_NEW(Vmlet__KeyRef, VMLET__KEY_REF__INIT);
    ref->namespace_ = vmlet_xstrdup(n->ns);
    ref->name = vmlet_xstrdup(name);
    ref->key = vmlet_xstrdup(key);
    ref->has_optional = optional;
    ref->optional = optional;
    return ref;
}

// valueFrom of one variable; false to leave the variable out (an optional
// ConfigMap key that is missing).
static bool s_env_from_source(norm_t *n, Vmlet__Container *out, Vmlet__EnvVar *var,
                              const cJSON *from)
{
    const cJSON *ref;
    bool optional = false;
    char why[400];
    if ((ref = j_get(from, "configMapKeyRef")) || (ref = j_get(from, "secretKeyRef"))) {
        bool secret = ref == j_get(from, "secretKeyRef");
        j_bool(ref, "optional", &optional);
        const char *value = NULL;
        resolve_result_t r = resolve_key(n, secret, j_str(ref, "name"), j_str(ref, "key"), &value,
                                         why, sizeof why);
        if (r == RESOLVE_MISSING && !optional)
            problem_set(&out->problem, CONFIG_ERROR, true, "%s", why);
        if (r == RESOLVE_MISSING && optional && !secret)
            return false;
        if (secret) { // the value stays in Kubernetes; vm-launcher fetches it
            var->source_case = VMLET__ENV_VAR__SOURCE_SECRET_KEY;
            var->secret_key = s_key_ref(n, j_str(ref, "name"), j_str(ref, "key"), optional);
        } else {
            var->source_case = VMLET__ENV_VAR__SOURCE_VALUE;
            var->value = vmlet_xstrdup(value ? value : "");
        }
    } else if ((ref = j_get(from, "fieldRef"))) {
        var->source_case = VMLET__ENV_VAR__SOURCE_FIELD;
        var->field = normalize_field_ref(ref);
    } else if ((ref = j_get(from, "resourceFieldRef"))) {
        var->source_case = VMLET__ENV_VAR__SOURCE_RESOURCE_FIELD;
        var->resource_field = normalize_resource_ref(ref, out->name);
    }
    return true;
}

static void s_env(norm_t *n, Vmlet__Container *out, const cJSON *env)
{
    out->env = vmlet_xcalloc((size_t)cJSON_GetArraySize(env), sizeof *out->env);
    const cJSON *e;
    cJSON_ArrayForEach(e, env)
    {
        Vmlet__EnvVar *var = PB_NEW(Vmlet__EnvVar, VMLET__ENV_VAR__INIT);
        var->name = j_dup(e, "name");
        const cJSON *from = j_get(e, "valueFrom");
        bool keep = true;
        if (from) {
            keep = s_env_from_source(n, out, var, from);
        } else {
            var->source_case = VMLET__ENV_VAR__SOURCE_VALUE;
            var->value = vmlet_xstrdup(j_str(e, "value") ? j_str(e, "value") : "");
        }
        if (keep)
            out->env[out->n_env++] = var;
        else
            vmlet__env_var__free_unpacked(var, NULL);
    }
}


// envFrom a ConfigMap: its keys are resolved now, kept in their place
// among the envFrom sources (the order decides which value wins).
static void s_env_from_configmap(norm_t *n, Vmlet__Container *out, const cJSON *ref,
                                 const char *prefix, bool optional)
{
    const cJSON *data = NULL;
    resolve_result_t r = resolve_object(n, false, j_str(ref, "name"), &data);
    if (r == RESOLVE_MISSING && !optional)
        problem_set(&out->problem, CONFIG_ERROR, true, "configmap \"%s\" not found",
                    j_str(ref, "name"));
    if (r != RESOLVE_FOUND)
        return;
    Vmlet__EnvFromSource *from = PB_NEW(Vmlet__EnvFromSource, VMLET__ENV_FROM_SOURCE__INIT);
    from->prefix = vmlet_xstrdup(prefix);
    from->source_case = VMLET__ENV_FROM_SOURCE__SOURCE_CONFIG_MAP;
    from->config_map = s_key_ref(n, j_str(ref, "name"), NULL, optional);
    from->values = vmlet_xcalloc((size_t)cJSON_GetArraySize(data) + 1, sizeof *from->values);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, data)
    {
        char *name = vmlet_xmalloc(strlen(prefix) + strlen(kv->string) + 1);
        strcat(strcpy(name, prefix), kv->string);
        if (!vmlet_env_name_ok(name) || !cJSON_IsString(kv)) {
            free(name); // skipped, as the kubelet does
            continue;
        }
        Vmlet__EnvVar *var = PB_NEW(Vmlet__EnvVar, VMLET__ENV_VAR__INIT);
        var->name = name;
        var->source_case = VMLET__ENV_VAR__SOURCE_VALUE;
        var->value = vmlet_xstrdup(kv->valuestring);
        from->values[from->n_values++] = var;
    }
    out->env_from[out->n_env_from++] = from;
}

static void s_env_from(norm_t *n, Vmlet__Container *out, const cJSON *list)
{
    out->env_from = vmlet_xcalloc((size_t)cJSON_GetArraySize(list), sizeof *out->env_from);
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        const char *prefix = j_str(item, "prefix") ? j_str(item, "prefix") : "";
        const cJSON *ref;
        bool optional = false;
        if ((ref = j_get(item, "configMapRef"))) {
            j_bool(ref, "optional", &optional);
            s_env_from_configmap(n, out, ref, prefix, optional);
        } else if ((ref = j_get(item, "secretRef"))) {
            j_bool(ref, "optional", &optional);
            const cJSON *data;
            if (resolve_object(n, true, j_str(ref, "name"), &data) == RESOLVE_MISSING && !optional)
                problem_set(&out->problem, CONFIG_ERROR, true, "secret \"%s\" not found",
                            j_str(ref, "name"));
            Vmlet__EnvFromSource *from = PB_NEW(Vmlet__EnvFromSource, VMLET__ENV_FROM_SOURCE__INIT);
            from->prefix = vmlet_xstrdup(prefix);
            from->source_case = VMLET__ENV_FROM_SOURCE__SOURCE_SECRET;
            from->secret = s_key_ref(n, j_str(ref, "name"), NULL, optional);
            out->env_from[out->n_env_from++] = from;
        }
    }
}

// --- resources, probes, hooks ------------------------------------------------------

static void s_quantity(Vmlet__Container *out, const cJSON *map, const char *name, bool milli,
                       protobuf_c_boolean *has, int64_t *slot)
{
    const char *text = j_str(map, name);
    if (!text)
        return;
    vmlet_err_t err = {0};
    int rc = milli ? vmlet_quantity_milli(text, slot, &err) : vmlet_quantity_value(text, slot, &err);
    if (rc < 0)
        problem_set(&out->problem, CONFIG_ERROR, false, "resources: %s", err.msg);
    else
        *has = 1;
}

static void s_resources(Vmlet__Container *out, const cJSON *res)
{
    Vmlet__Resources *r = out->resources = PB_NEW(Vmlet__Resources, VMLET__RESOURCES__INIT);
    const cJSON *req = j_get(res, "requests"), *lim = j_get(res, "limits");
    s_quantity(out, req, "cpu", true, &r->has_cpu_request_millis, &r->cpu_request_millis);
    s_quantity(out, lim, "cpu", true, &r->has_cpu_limit_millis, &r->cpu_limit_millis);
    s_quantity(out, req, "memory", false, &r->has_memory_request_bytes, &r->memory_request_bytes);
    s_quantity(out, lim, "memory", false, &r->has_memory_limit_bytes, &r->memory_limit_bytes);
    s_quantity(out, req, "ephemeral-storage", false, &r->has_ephemeral_storage_request_bytes,
               &r->ephemeral_storage_request_bytes);
    s_quantity(out, lim, "ephemeral-storage", false, &r->has_ephemeral_storage_limit_bytes,
               &r->ephemeral_storage_limit_bytes);
}

// A port by number or by the name of one of the container's ports.
static Vmlet__PortRef *s_port(Vmlet__Container *out, const cJSON *port, const char *what)
{
    Vmlet__PortRef *ref = PB_NEW(Vmlet__PortRef, VMLET__PORT_REF__INIT);
    if (cJSON_IsNumber(port)) {
        ref->port_case = VMLET__PORT_REF__PORT_NUMBER;
        ref->number = (int32_t)port->valuedouble;
        return ref;
    }
    const char *name = cJSON_GetStringValue(port);
    ref->port_case = VMLET__PORT_REF__PORT_NAME;
    ref->name = vmlet_xstrdup(name ? name : "");
    for (size_t i = 0; name && i < out->n_ports; i++)
        if (out->ports[i]->name && strcmp(out->ports[i]->name, name) == 0)
            return ref;
    problem_set(&out->problem, CONFIG_ERROR, false,
                "%s: port \"%s\" is not the name of a port of container \"%s\"", what,
                name ? name : "", out->name);
    return ref;
}

static Vmlet__HttpGetAction *s_http_get(Vmlet__Container *out, const cJSON *j, const char *what)
{
    Vmlet__HttpGetAction *a = PB_NEW(Vmlet__HttpGetAction, VMLET__HTTP_GET_ACTION__INIT);
    a->host = j_dup(j, "host");
    a->path = vmlet_xstrdup(j_str(j, "path") ? j_str(j, "path") : "/");
    a->scheme = vmlet_xstrdup(j_str(j, "scheme") ? j_str(j, "scheme") : "HTTP");
    a->port = s_port(out, j_get(j, "port"), what);
    const cJSON *headers = j_get(j, "httpHeaders"), *h;
    a->headers = vmlet_xcalloc((size_t)cJSON_GetArraySize(headers), sizeof *a->headers);
    cJSON_ArrayForEach(h, headers)
    {
        Vmlet__HttpHeader *header = PB_NEW(Vmlet__HttpHeader, VMLET__HTTP_HEADER__INIT);
        header->name = j_dup(h, "name");
        header->value = j_dup(h, "value");
        a->headers[a->n_headers++] = header;
    }
    return a;
}

static Vmlet__TcpSocketAction *s_tcp(Vmlet__Container *out, const cJSON *j, const char *what)
{
    Vmlet__TcpSocketAction *a = PB_NEW(Vmlet__TcpSocketAction, VMLET__TCP_SOCKET_ACTION__INIT);
    a->host = j_dup(j, "host");
    a->port = s_port(out, j_get(j, "port"), what);
    return a;
}

static Vmlet__ExecAction *s_exec(const cJSON *j)
{
    Vmlet__ExecAction *a = PB_NEW(Vmlet__ExecAction, VMLET__EXEC_ACTION__INIT);
    a->command = j_strings(j_get(j, "command"), &a->n_command);
    return a;
}

static void s_probe_field(const cJSON *j, const char *key, int64_t fallback,
                          protobuf_c_boolean *has, int32_t *slot)
{
    int64_t v = fallback;
    j_int(j, key, &v);
    *has = 1;
    *slot = (int32_t)v;
}

static Vmlet__Probe *s_probe(Vmlet__Container *out, const cJSON *j, const char *what)
{
    if (!j)
        return NULL;
    Vmlet__Probe *p = PB_NEW(Vmlet__Probe, VMLET__PROBE__INIT);
    const cJSON *h;
    if ((h = j_get(j, "httpGet"))) {
        p->handler_case = VMLET__PROBE__HANDLER_HTTP_GET;
        p->http_get = s_http_get(out, h, what);
    } else if ((h = j_get(j, "tcpSocket"))) {
        p->handler_case = VMLET__PROBE__HANDLER_TCP_SOCKET;
        p->tcp_socket = s_tcp(out, h, what);
    } else if ((h = j_get(j, "exec"))) {
        p->handler_case = VMLET__PROBE__HANDLER_EXEC;
        p->exec = s_exec(h);
    } else if ((h = j_get(j, "grpc"))) {
        p->handler_case = VMLET__PROBE__HANDLER_GRPC;
        p->grpc = PB_NEW(Vmlet__GrpcAction, VMLET__GRPC_ACTION__INIT);
        int64_t port = 0;
        p->grpc->has_port = j_int(h, "port", &port);
        p->grpc->port = (int32_t)port;
        p->grpc->service = j_dup(h, "service");
    } else {
        problem_set(&out->problem, CONFIG_ERROR, false, "%s: no handler (httpGet, tcpSocket, "
                                                        "exec or grpc)", what);
    }
    // The API server's defaults, in case an object reaches us without them.
    s_probe_field(j, "initialDelaySeconds", 0, &p->has_initial_delay_seconds,
                  &p->initial_delay_seconds);
    s_probe_field(j, "periodSeconds", 10, &p->has_period_seconds, &p->period_seconds);
    s_probe_field(j, "timeoutSeconds", 1, &p->has_timeout_seconds, &p->timeout_seconds);
    s_probe_field(j, "successThreshold", 1, &p->has_success_threshold, &p->success_threshold);
    s_probe_field(j, "failureThreshold", 3, &p->has_failure_threshold, &p->failure_threshold);
    int64_t grace;
    if (j_int(j, "terminationGracePeriodSeconds", &grace)) {
        p->has_termination_grace_period_seconds = 1;
        p->termination_grace_period_seconds = grace;
    }
    return p;
}

static Vmlet__LifecycleHandler *s_hook(Vmlet__Container *out, const cJSON *j, const char *what)
{
    if (!j)
        return NULL;
    Vmlet__LifecycleHandler *h = PB_NEW(Vmlet__LifecycleHandler, VMLET__LIFECYCLE_HANDLER__INIT);
    const cJSON *a;
    if ((a = j_get(j, "exec"))) {
        h->handler_case = VMLET__LIFECYCLE_HANDLER__HANDLER_EXEC;
        h->exec = s_exec(a);
    } else if ((a = j_get(j, "httpGet"))) {
        h->handler_case = VMLET__LIFECYCLE_HANDLER__HANDLER_HTTP_GET;
        h->http_get = s_http_get(out, a, what);
    } else if ((a = j_get(j, "tcpSocket"))) {
        h->handler_case = VMLET__LIFECYCLE_HANDLER__HANDLER_TCP_SOCKET;
        h->tcp_socket = s_tcp(out, a, what);
    }
    return h;
}

static void s_lifecycle(Vmlet__Container *out, const cJSON *j)
{
    if (!j)
        return;
    out->lifecycle = PB_NEW(Vmlet__Lifecycle, VMLET__LIFECYCLE__INIT);
    out->lifecycle->post_start = s_hook(out, j_get(j, "postStart"), "lifecycle.postStart");
    out->lifecycle->pre_stop = s_hook(out, j_get(j, "preStop"), "lifecycle.preStop");
}

// --- security, mounts, image, size -------------------------------------------------

static void s_security(Vmlet__Container *out, const cJSON *j)
{
    if (!j)
        return;
    Vmlet__SecurityContext *s = out->security_context =
        PB_NEW(Vmlet__SecurityContext, VMLET__SECURITY_CONTEXT__INIT);
    s->has_run_as_user = j_int(j, "runAsUser", &s->run_as_user);
    s->has_run_as_group = j_int(j, "runAsGroup", &s->run_as_group);
    bool b;
    if ((s->has_run_as_non_root = j_bool(j, "runAsNonRoot", &b)))
        s->run_as_non_root = b;
    if ((s->has_read_only_root_filesystem = j_bool(j, "readOnlyRootFilesystem", &b)))
        s->read_only_root_filesystem = b;
    if ((s->has_privileged = j_bool(j, "privileged", &b)))
        s->privileged = b;
    if ((s->has_allow_privilege_escalation = j_bool(j, "allowPrivilegeEscalation", &b)))
        s->allow_privilege_escalation = b;
    const cJSON *caps = j_get(j, "capabilities");
    if (caps) {
        s->capabilities = PB_NEW(Vmlet__Capabilities, VMLET__CAPABILITIES__INIT);
        s->capabilities->add = j_strings(j_get(caps, "add"), &s->capabilities->n_add);
        s->capabilities->drop = j_strings(j_get(caps, "drop"), &s->capabilities->n_drop);
    }
}

static void s_mounts(Vmlet__Container *out, const cJSON *list)
{
    out->volume_mounts = vmlet_xcalloc((size_t)cJSON_GetArraySize(list), sizeof *out->volume_mounts);
    const cJSON *m;
    cJSON_ArrayForEach(m, list)
    {
        Vmlet__VolumeMount *mount = PB_NEW(Vmlet__VolumeMount, VMLET__VOLUME_MOUNT__INIT);
        mount->name = j_dup(m, "name");
        mount->mount_path = j_dup(m, "mountPath");
        bool ro = false;
        mount->has_read_only = j_bool(m, "readOnly", &ro);
        mount->read_only = ro;
        mount->sub_path = j_dup(m, "subPath");
        out->volume_mounts[out->n_volume_mounts++] = mount;
    }
}

static void s_image(Vmlet__Container *out)
{
    vmlet_image_ref_t ref;
    vmlet_err_t err = {0};
    if (!out->image || vmlet_image_ref_parse(out->image, &ref, &err) < 0) {
        problem_set(&out->problem, "InvalidImageName", false,
                    "Failed to apply default image tag \"%s\": couldn't parse image reference "
                    "\"%s\": %s",
                    out->image ? out->image : "", out->image ? out->image : "", err.msg);
        return;
    }
    out->image_normalized = vmlet_xstrdup(ref.normalized);
    vmlet_image_ref_clear(&ref);
}

// Linux refuses an exec with a string over 128 KiB or too much in all.
static void s_check_sizes(Vmlet__Container *out)
{
    size_t total = 0, longest = 0;
    const char *longest_what = "";
    size_t n_vars = out->n_env;
    for (size_t i = 0; i < out->n_env_from; i++)
        n_vars += out->env_from[i]->n_values;
    for (size_t i = 0, from = 0, k = 0; i < n_vars; i++) {
        const Vmlet__EnvVar *v;
        if (i < out->n_env) {
            v = out->env[i];
        } else { // the resolved ConfigMap keys of envFrom, in order
            while (k >= out->env_from[from]->n_values)
                from++, k = 0;
            v = out->env_from[from]->values[k++];
        }
        size_t len = strlen(v->name ? v->name : "") + 1 +
                     (v->source_case == VMLET__ENV_VAR__SOURCE_VALUE ? strlen(v->value) : 0) + 1;
        total += len;
        if (len > longest)
            longest = len, longest_what = v->name ? v->name : "";
    }
    for (size_t i = 0; i < out->n_command + out->n_args; i++) {
        const char *s = i < out->n_command ? out->command[i] : out->args[i - out->n_command];
        size_t len = strlen(s) + 1;
        total += len;
        if (len > longest)
            longest = len, longest_what = "an argument";
    }
    if (longest > NORMALIZE_MAX_STRING)
        problem_set(&out->problem, CONFIG_ERROR, false,
                    "environment variable or argument %s is %zu bytes; a process may be given "
                    "at most %d bytes in one string",
                    longest_what, longest, NORMALIZE_MAX_STRING);
    else if (total > NORMALIZE_MAX_ENV)
        problem_set(&out->problem, CONFIG_ERROR, false,
                    "environment and arguments are %zu bytes in all; a process may be given at "
                    "most %d",
                    total, NORMALIZE_MAX_ENV);
}

Vmlet__Container *normalize_container(norm_t *n, const cJSON *c)
{
    Vmlet__Container *out = PB_NEW(Vmlet__Container, VMLET__CONTAINER__INIT);
    out->name = j_dup(c, "name");
    out->image = j_dup(c, "image");
    s_image(out);
    out->command = j_strings(j_get(c, "command"), &out->n_command);
    out->args = j_strings(j_get(c, "args"), &out->n_args);
    out->working_dir = j_dup(c, "workingDir");
    s_ports(out, j_get(c, "ports"));
    s_env(n, out, j_get(c, "env"));
    s_env_from(n, out, j_get(c, "envFrom"));
    s_check_sizes(out);
    s_resources(out, j_get(c, "resources"));
    s_mounts(out, j_get(c, "volumeMounts"));
    out->liveness_probe = s_probe(out, j_get(c, "livenessProbe"), "livenessProbe");
    out->readiness_probe = s_probe(out, j_get(c, "readinessProbe"), "readinessProbe");
    out->startup_probe = s_probe(out, j_get(c, "startupProbe"), "startupProbe");
    s_lifecycle(out, j_get(c, "lifecycle"));
    const char *path = j_str(c, "terminationMessagePath");
    out->termination_message_path = vmlet_xstrdup(path ? path : "/dev/termination-log");
    const char *policy = j_str(c, "terminationMessagePolicy");
    out->termination_message_policy = vmlet_xstrdup(policy ? policy : "File");
    out->image_pull_policy = j_dup(c, "imagePullPolicy");
    s_security(out, j_get(c, "securityContext"));
    bool b;
    if ((out->has_stdin = j_bool(c, "stdin", &b)))
        out->stdin = b;
    if ((out->has_stdin_once = j_bool(c, "stdinOnce", &b)))
        out->stdin_once = b;
    if ((out->has_tty = j_bool(c, "tty", &b)))
        out->tty = b;
    return out;
}
