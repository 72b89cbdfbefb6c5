// An image config blob (OCI image config / Docker image JSON) to what a
// container runs: entrypoint, cmd, env, working directory, user, ports,
// stop signal.
#include "registry_internal.h"

#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>

// A list of strings (or null/absent: empty). Returns -1 with err.
static int s_strings(const cJSON *config, const char *name, char ***out, size_t *n,
                     vmlet_err_t *err)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(config, name);
    *out = NULL;
    *n = 0;
    if (!list || cJSON_IsNull(list))
        return 0;
    if (!cJSON_IsArray(list))
        return vmlet_err_set(err, "config.%s is not a list", name);
    *out = vmlet_xcalloc((size_t)cJSON_GetArraySize(list) + 1, sizeof **out);
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        if (!cJSON_IsString(item))
            return vmlet_err_set(err, "config.%s[%zu] is not a string", name, *n);
        (*out)[(*n)++] = vmlet_xstrdup(item->valuestring);
    }
    return 0;
}

// A string, NULL when absent or empty. Returns -1 with err.
static int s_string(const cJSON *config, const char *name, char **out, vmlet_err_t *err)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(config, name);
    *out = NULL;
    if (!item || cJSON_IsNull(item))
        return 0;
    if (!cJSON_IsString(item))
        return vmlet_err_set(err, "config.%s is not a string", name);
    *out = *item->valuestring ? vmlet_xstrdup(item->valuestring) : NULL;
    return 0;
}

// ExposedPorts is an object keyed "port/proto"; a bare port means tcp.
static int s_ports(const cJSON *config, registry_image_config_t *out, vmlet_err_t *err)
{
    const cJSON *ports = cJSON_GetObjectItemCaseSensitive(config, "ExposedPorts");
    if (!ports || cJSON_IsNull(ports))
        return 0;
    if (!cJSON_IsObject(ports))
        return vmlet_err_set(err, "config.ExposedPorts is not an object");
    out->exposed_ports = vmlet_xcalloc((size_t)cJSON_GetArraySize(ports) + 1, sizeof(char *));
    const cJSON *port;
    cJSON_ArrayForEach(port, ports)
    {
        char *key = port->string, *end;
        long number = strtol(key, &end, 10);
        if (end == key || number < 1 || number > 65535 || (*end && *end != '/'))
            return vmlet_err_set(err, "config.ExposedPorts: bad port '%.40s'", key);
        char *text = NULL;
        if (asprintf(&text, "%s%s", key, *end ? "" : "/tcp") < 0)
            return vmlet_err_set(err, "out of memory");
        out->exposed_ports[out->n_exposed_ports++] = text;
    }
    return 0;
}

static int s_fields(const cJSON *config, registry_image_config_t *out, vmlet_err_t *err)
{
    if (config && !cJSON_IsNull(config) && !cJSON_IsObject(config))
        return vmlet_err_set(err, "config is not an object");
    if (s_strings(config, "Entrypoint", &out->entrypoint, &out->n_entrypoint, err) < 0 ||
        s_strings(config, "Cmd", &out->cmd, &out->n_cmd, err) < 0 ||
        s_strings(config, "Env", &out->env, &out->n_env, err) < 0 ||
        s_string(config, "WorkingDir", &out->working_dir, err) < 0 ||
        s_string(config, "User", &out->user, err) < 0 ||
        s_string(config, "StopSignal", &out->stop_signal, err) < 0 || s_ports(config, out, err) < 0)
        return -1;
    for (size_t i = 0; i < out->n_env; i++)
        if (!strchr(out->env[i], '=') || out->env[i][0] == '=')
            return vmlet_err_set(err, "config.Env[%zu] is not NAME=VALUE: '%.60s'", i, out->env[i]);
    return 0;
}

int registry_parse_config(const char *json, size_t len, registry_image_config_t *out,
                          vmlet_err_t *err)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json, len);
    int rc = 0;
    if (!cJSON_IsObject(root))
        rc = vmlet_err_set(err, "image config: not a JSON object");
    else if (s_fields(cJSON_GetObjectItemCaseSensitive(root, "config"), out, err) < 0)
        rc = vmlet_err_wrap(err, "image config");
    cJSON_Delete(root);
    if (rc < 0)
        registry_image_config_clear(out);
    return rc;
}

static void s_free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

void registry_image_config_clear(registry_image_config_t *config)
{
    s_free_list(config->entrypoint, config->n_entrypoint);
    s_free_list(config->cmd, config->n_cmd);
    s_free_list(config->env, config->n_env);
    s_free_list(config->exposed_ports, config->n_exposed_ports);
    free(config->working_dir);
    free(config->user);
    free(config->stop_signal);
    memset(config, 0, sizeof *config);
}
