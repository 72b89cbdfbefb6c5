// Kubernetes client configuration: a kubeconfig file (parsed with libyaml)
// or the in-cluster service account (see kube.h).
#include "vmlet/kube.h"
#include "vmlet/base64.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#define S_MAX_FILE (16 * 1024 * 1024)
#define S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

// One kubeconfig being read: its YAML tree and the directory that relative
// paths in it are resolved against.
typedef struct {
    yaml_document_t doc;
    yaml_node_t *root;
    char dir[PATH_MAX];
} s_kubeconfig_t;

// Reads a whole (small) file into a NUL-terminated buffer. Caller frees.
static char *s_read_file(const char *path, size_t *len, vmlet_err_t *err)
{
    cleanup_fclose FILE *f = fopen(path, "rb");
    if (!f) {
        vmlet_err_errno(err, errno, "%s", path);
        return NULL;
    }
    char *buf = malloc(S_MAX_FILE + 1);
    if (!buf) {
        vmlet_err_set(err, "out of memory");
        return NULL;
    }
    size_t n = fread(buf, 1, S_MAX_FILE + 1, f);
    if (ferror(f) || n > S_MAX_FILE) {
        free(buf);
        vmlet_err_set(err, "%s: %s", path, n > S_MAX_FILE ? "larger than 16 MiB" : "read error");
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

// --- YAML tree helpers -----------------------------------------------------

// The text of a scalar node, or NULL for anything else, empty or null.
static const char *s_scalar(yaml_node_t *node)
{
    if (!node || node->type != YAML_SCALAR_NODE || node->data.scalar.length == 0)
        return NULL;
    const char *text = (const char *)node->data.scalar.value;
    if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (strcmp(text, "null") == 0 || strcmp(text, "~") == 0 || strcmp(text, "Null") == 0))
        return NULL;
    return text;
}

static yaml_node_t *s_get(s_kubeconfig_t *kc, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = s_scalar(yaml_document_get_node(&kc->doc, p->key));
        if (k && strcmp(k, key) == 0)
            return yaml_document_get_node(&kc->doc, p->value);
    }
    return NULL;
}

static const char *s_get_str(s_kubeconfig_t *kc, yaml_node_t *map, const char *key)
{
    return s_scalar(s_get(kc, map, key));
}

// Finds {name: NAME, <inner>: {...}} in the list root[list]; returns the
// inner map (an empty entry yields the entry itself, which has no fields
// we read) or NULL. `names` gets the names present, for error messages.
static yaml_node_t *s_find_named(s_kubeconfig_t *kc, const char *list, const char *inner,
                                 const char *name, char *names, size_t cap)
{
    yaml_node_t *seq = s_get(kc, kc->root, list);
    size_t used = 0;
    names[0] = '\0';
    if (!seq || seq->type != YAML_SEQUENCE_NODE)
        return NULL;
    for (yaml_node_item_t *i = seq->data.sequence.items.start; i < seq->data.sequence.items.top;
         i++) {
        yaml_node_t *entry = yaml_document_get_node(&kc->doc, *i);
        const char *n = s_get_str(kc, entry, "name");
        if (!n)
            continue;
        if (strcmp(n, name) == 0) {
            yaml_node_t *body = s_get(kc, entry, inner);
            return body ? body : entry;
        }
        int w = snprintf(names + used, cap - used, "%s%s", used ? ", " : "", n);
        if (w > 0 && (size_t)w < cap - used)
            used += (size_t)w;
    }
    return NULL;
}

// --- fields ----------------------------------------------------------------

static int s_dup(const char *text, char **slot, vmlet_err_t *err)
{
    free(*slot);
    *slot = text ? strdup(text) : NULL;
    if (text && !*slot)
        return vmlet_err_set(err, "out of memory");
    return 0;
}

// `<field>-data`: base64 that must decode to PEM text.
static int s_take_data(const char *b64, const char *field, char **slot, vmlet_err_t *err)
{
    char *pem = vmlet_base64_decode(b64);
    if (!pem)
        return vmlet_err_set(err,
                             "%s-data is not valid base64 (encode the PEM file with "
                             "`base64 -w0 FILE`)",
                             field);
    if (!strstr(pem, "-----BEGIN ")) {
        free(pem);
        return vmlet_err_set(err,
                             "%s-data does not decode to PEM text (expected "
                             "\"-----BEGIN ...\")",
                             field);
    }
    free(*slot);
    *slot = pem;
    return 0;
}

// A file path field: relative paths are resolved against the kubeconfig's
// directory; the file must be readable now, so mistakes show at start-up.
static int s_take_path(s_kubeconfig_t *kc, const char *path, const char *field, char **slot,
                       vmlet_err_t *err)
{
    char *full = NULL;
    if (path[0] == '/')
        full = strdup(path);
    else if (asprintf(&full, "%s/%s", kc->dir, path) < 0)
        full = NULL;
    if (!full)
        return vmlet_err_set(err, "out of memory");
    if (access(full, R_OK) < 0) {
        vmlet_err_errno(err, errno, "%s %s", field, full);
        free(full);
        return -1;
    }
    free(*slot);
    *slot = full;
    return 0;
}

// Reads `<field>` / `<field>-data` of map into file_slot / data_slot;
// the -data form wins when both are given, as in kubectl.
static int s_take_pem(s_kubeconfig_t *kc, yaml_node_t *map, const char *field, char **file_slot,
                      char **data_slot, vmlet_err_t *err)
{
    char data_key[64];
    snprintf(data_key, sizeof data_key, "%s-data", field);
    const char *data = s_get_str(kc, map, data_key);
    if (data)
        return s_take_data(data, field, data_slot, err);
    const char *path = s_get_str(kc, map, field);
    return path ? s_take_path(kc, path, field, file_slot, err) : 0;
}

static int s_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "on"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "off"};
    for (size_t i = 0; i < 5; i++) {
        if (strcmp(text, yes[i]) == 0 || strcmp(text, no[i]) == 0) {
            *out = strcmp(text, yes[i]) == 0;
            return 0;
        }
    }
    return -1;
}

static int s_load_cluster(s_kubeconfig_t *kc, yaml_node_t *cluster, vmlet_kube_config_t *out,
                          vmlet_err_t *err)
{
    const char *server = s_get_str(kc, cluster, "server");
    if (!server)
        return vmlet_err_set(err, "no server (set clusters[].cluster.server, e.g. "
                                  "https://127.0.0.1:6443)");
    if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)
        return vmlet_err_set(err, "server '%s' is not an http(s) URL", server);
    size_t len = strlen(server);
    while (len > 0 && server[len - 1] == '/') // paths are appended as "/api/..."
        len--;
    out->server = strndup(server, len);
    if (!out->server)
        return vmlet_err_set(err, "out of memory");
    const char *insecure = s_get_str(kc, cluster, "insecure-skip-tls-verify");
    if (insecure && s_parse_bool(insecure, &out->insecure_skip_tls_verify) < 0)
        return vmlet_err_set(err, "insecure-skip-tls-verify is '%s', not true or false", insecure);
    if (s_take_pem(kc, cluster, "certificate-authority", &out->ca_file, &out->ca_data, err) < 0)
        return -1;
    if (out->insecure_skip_tls_verify && (out->ca_file || out->ca_data))
        return vmlet_err_set(err, "both insecure-skip-tls-verify and a certificate-authority "
                                  "are set (remove one; kubectl refuses this too)");
    return 0;
}

static int s_load_user(s_kubeconfig_t *kc, yaml_node_t *user, vmlet_kube_config_t *out,
                       vmlet_err_t *err)
{
    if (s_dup(s_get_str(kc, user, "token"), &out->token, err) < 0)
        return -1;
    const char *token_file = s_get_str(kc, user, "tokenFile");
    if (token_file && s_take_path(kc, token_file, "tokenFile", &out->token_file, err) < 0)
        return -1;
    if (s_take_pem(kc, user, "client-certificate", &out->client_cert_file, &out->client_cert_data,
                   err) < 0 ||
        s_take_pem(kc, user, "client-key", &out->client_key_file, &out->client_key_data, err) < 0)
        return -1;
    bool has_cert = out->client_cert_file || out->client_cert_data;
    bool has_key = out->client_key_file || out->client_key_data;
    if (has_cert != has_key)
        return vmlet_err_set(err, "%s is set but %s is not (a client certificate needs both)",
                             has_cert ? "client-certificate" : "client-key",
                             has_cert ? "client-key" : "client-certificate");
    if (!out->token && !out->token_file && !has_cert &&
        (s_get(kc, user, "exec") || s_get(kc, user, "auth-provider") ||
         s_get(kc, user, "username")))
        return vmlet_err_set(err, "uses exec, auth-provider or basic credentials, which vmlet "
                                  "does not support (use a token, tokenFile or client "
                                  "certificate)");
    return 0;
}

// Resolves context -> cluster + user and loads both.
static int s_load_context(s_kubeconfig_t *kc, const char *context, vmlet_kube_config_t *out,
                          vmlet_err_t *err)
{
    char names[512];
    if (!context)
        context = s_get_str(kc, kc->root, "current-context");
    if (!context) {
        s_find_named(kc, "contexts", "context", "", names, sizeof names);
        return vmlet_err_set(err,
                             "no current-context set and no context named (contexts in "
                             "the file: %s; pick one with `kubectl config use-context`)",
                             names[0] ? names : "none");
    }
    yaml_node_t *ctx = s_find_named(kc, "contexts", "context", context, names, sizeof names);
    if (!ctx)
        return vmlet_err_set(err, "context \"%s\" not found (contexts in the file: %s)", context,
                             names[0] ? names : "none");
    const char *cluster_name = s_get_str(kc, ctx, "cluster");
    if (!cluster_name)
        return vmlet_err_set(err, "context \"%s\" names no cluster", context);
    yaml_node_t *cluster =
        s_find_named(kc, "clusters", "cluster", cluster_name, names, sizeof names);
    if (!cluster)
        return vmlet_err_set(err,
                             "context \"%s\" uses cluster \"%s\", which is not in the "
                             "file (clusters: %s)",
                             context, cluster_name, names[0] ? names : "none");
    if (s_load_cluster(kc, cluster, out, err) < 0)
        return vmlet_err_wrap(err, "cluster \"%s\"", cluster_name);
    const char *user_name = s_get_str(kc, ctx, "user");
    if (!user_name) // no credentials: anonymous, as kubectl allows
        return 0;
    yaml_node_t *user = s_find_named(kc, "users", "user", user_name, names, sizeof names);
    if (!user)
        return vmlet_err_set(err,
                             "context \"%s\" uses user \"%s\", which is not in the "
                             "file (users: %s)",
                             context, user_name, names[0] ? names : "none");
    if (s_load_user(kc, user, out, err) < 0)
        return vmlet_err_wrap(err, "user \"%s\"", user_name);
    return 0;
}

static int s_parse_yaml(s_kubeconfig_t *kc, const char *text, size_t len, vmlet_err_t *err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return vmlet_err_set(err, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int ok = yaml_parser_load(&parser, &kc->doc);
    if (!ok) {
        vmlet_err_set(err, "not valid YAML: line %zu column %zu: %s%s%s",
                      parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                      parser.problem ? parser.problem : "parse error", parser.context ? " " : "",
                      parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return -1;
    }
    yaml_parser_delete(&parser);
    kc->root = yaml_document_get_root_node(&kc->doc);
    if (!kc->root || kc->root->type != YAML_MAPPING_NODE) {
        yaml_document_delete(&kc->doc);
        return vmlet_err_set(err, "%s",
                             kc->root ? "not a kubeconfig (top level is not a map)" : "empty file");
    }
    return 0;
}

int vmlet_kube_config_from_file(const char *path, const char *context, vmlet_kube_config_t *out,
                                vmlet_err_t *err)
{
    memset(out, 0, sizeof *out);
    size_t len;
    cleanup_free char *text = s_read_file(path, &len, err);
    if (!text)
        return vmlet_err_wrap(err, "kubeconfig");
    s_kubeconfig_t kc = {0};
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    const char *dir = dirname(copy);
    if (!realpath(dir, kc.dir))
        snprintf(kc.dir, sizeof kc.dir, "%s", dir);
    if (s_parse_yaml(&kc, text, len, err) < 0)
        return vmlet_err_wrap(err, "kubeconfig %s", path);
    int rc = s_load_context(&kc, context, out, err);
    yaml_document_delete(&kc.doc);
    if (rc < 0) {
        vmlet_kube_config_clear(out);
        return vmlet_err_wrap(err, "kubeconfig %s", path);
    }
    return 0;
}

int vmlet_kube_config_in_cluster(const char *sa_dir, vmlet_kube_config_t *out, vmlet_err_t *err)
{
    memset(out, 0, sizeof *out);
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host || !port || !*port)
        return vmlet_err_set(err, "in-cluster config: KUBERNETES_SERVICE_HOST and "
                                  "KUBERNETES_SERVICE_PORT are not set (not running in a Pod?)");
    if (!sa_dir)
        sa_dir = S_SA_DIR;
    bool ipv6 = strchr(host, ':') != NULL;
    if (asprintf(&out->server, "https://%s%s%s:%s", ipv6 ? "[" : "", host, ipv6 ? "]" : "", port) <
            0 ||
        asprintf(&out->token_file, "%s/token", sa_dir) < 0 ||
        asprintf(&out->ca_file, "%s/ca.crt", sa_dir) < 0) {
        vmlet_kube_config_clear(out); // asprintf leaves the slot undefined on failure
        return vmlet_err_set(err, "out of memory");
    }
    const char *files[] = {out->token_file, out->ca_file};
    for (size_t i = 0; i < 2; i++)
        if (access(files[i], R_OK) < 0) {
            vmlet_err_set(err,
                          "in-cluster config: %s: %s (is the service account token "
                          "mounted? check automountServiceAccountToken)",
                          files[i], strerror(errno));
            vmlet_kube_config_clear(out);
            return -1;
        }
    return 0;
}

int vmlet_kube_config_load(const char *kubeconfig, vmlet_kube_config_t *out, vmlet_err_t *err)
{
    if (kubeconfig && *kubeconfig)
        return vmlet_kube_config_from_file(kubeconfig, NULL, out, err);
    vmlet_err_t cluster_err = {0};
    if (vmlet_kube_config_in_cluster(NULL, out, &cluster_err) == 0)
        return 0;
    return vmlet_err_set(err,
                         "no kubeconfig given, and %s; set a kubeconfig file or run in a "
                         "Pod with a service account",
                         cluster_err.msg);
}

void vmlet_kube_config_clear(vmlet_kube_config_t *config)
{
    if (!config)
        return;
    char **slots[] = {&config->server,           &config->ca_file,
                      &config->ca_data,          &config->token,
                      &config->token_file,       &config->client_cert_file,
                      &config->client_cert_data, &config->client_key_file,
                      &config->client_key_data};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
        free(*slots[i]);
    memset(config, 0, sizeof *config);
}
