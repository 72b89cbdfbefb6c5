// The registry client's life cycle, what every request shares (base URLs,
// trust, error text), and the ping.
#include "registry_internal.h"

#include "vmlet/http_status.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define S_MAX_CA_FILE (16L * 1024 * 1024)
#define S_DOCKER_HUB "docker.io"
#define S_DOCKER_HUB_HOST "registry-1.docker.io" // where docker.io's API lives

static const vmlet_backoff_policy_t s_backoff = {
    .initial_ms = 200, .max_ms = 5000, .multiplier = 2.0, .jitter = 0.2};

// --- buffers -------------------------------------------------------------------

bool reg_buf_append(reg_buf_t *buf, const char *data, size_t n)
{
    if (buf->len + n > buf->max) {
        buf->too_big = true;
        return false;
    }
    char *grown = realloc(buf->data, buf->len + n + 1);
    if (!grown)
        return false;
    memcpy(grown + buf->len, data, n);
    buf->data = grown;
    buf->len += n;
    buf->data[buf->len] = '\0';
    return true;
}

void reg_buf_clear(reg_buf_t *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = 0;
    buf->too_big = false;
}

// --- trust ---------------------------------------------------------------------

// Appends the file at path to buf. Returns -1 with err.
static int s_append_file(reg_buf_t *buf, const char *path, vmlet_err_t *err)
{
    cleanup_fclose FILE *f = fopen(path, "r");
    if (!f)
        return vmlet_err_errno(err, errno, "CA file %s", path);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (!reg_buf_append(buf, chunk, n))
            return vmlet_err_set(err, "CA file %s: larger than %ld MiB", path, S_MAX_CA_FILE >> 20);
    if (ferror(f))
        return vmlet_err_errno(err, errno, "CA file %s", path);
    return reg_buf_append(buf, "\n", 1) ? 0 : vmlet_err_set(err, "out of memory");
}

// Setting a CA blob replaces libcurl's default bundle, so the blob holds
// both: the system's bundle (where libcurl would look) and ca_file.
static int s_load_ca(registry_t *self, const char *ca_file, vmlet_err_t *err)
{
    reg_buf_t buf = {.max = S_MAX_CA_FILE};
    CURL *probe = curl_easy_init();
    char *system_ca = NULL;
    if (probe)
        curl_easy_getinfo(probe, CURLINFO_CAINFO, &system_ca);
    struct stat st;
    int rc = 0;
    if (system_ca && stat(system_ca, &st) == 0)
        rc = s_append_file(&buf, system_ca, err);
    if (probe)
        curl_easy_cleanup(probe);
    if (rc == 0)
        rc = s_append_file(&buf, ca_file, err);
    if (rc < 0) {
        reg_buf_clear(&buf);
        return -1;
    }
    self->ca = (struct curl_blob){buf.data, buf.len, CURL_BLOB_NOCOPY};
    return 0;
}

// --- life cycle ------------------------------------------------------------------

registry_t *registry_new(const registry_options_t *options, vmlet_log_t *log,
                         vmlet_metrics_t *metrics, vmlet_err_t *err)
{
    static const registry_options_t defaults = {.retries = 3, .parallel = 4};
    if (!options)
        options = &defaults;
    registry_t *self = vmlet_xcalloc(1, sizeof *self);
    self->insecure = vmlet_xstrdup(options->insecure);
    self->retries = options->retries > 0 ? options->retries : 0;
    self->max_bytes_per_sec = options->max_bytes_per_sec > 0 ? options->max_bytes_per_sec : 0;
    self->parallel = options->parallel > 0 ? options->parallel : 1;
    self->backoff = s_backoff;
    self->log = log;
    self->metrics = metrics;
    if (metrics) {
        self->bytes_total =
            vmlet_metrics_counter(metrics, "vmlet_image_builder_registry_bytes_total",
                                  "Bytes of manifests and blobs received from registries.", NULL);
        self->retries_total = vmlet_metrics_counter(
            metrics, "vmlet_image_builder_registry_retries_total",
            "Registry requests retried after 429, 5xx or a transport error.", NULL);
    }
    self->multi = curl_multi_init();
    self->auth_multi = curl_multi_init();
    if (!self->multi || !self->auth_multi) {
        vmlet_err_set(err, "registry client: cannot create a curl multi handle");
        registry_destroy(&self);
        return NULL;
    }
    if (options->ca_file && s_load_ca(self, options->ca_file, err) < 0) {
        vmlet_err_wrap(err, "registry client");
        registry_destroy(&self);
        return NULL;
    }
    return self;
}

void registry_destroy(registry_t **self_p)
{
    registry_t *self = *self_p;
    if (!self)
        return;
    reg_auth_clear(self);
    if (self->multi)
        curl_multi_cleanup(self->multi);
    if (self->auth_multi)
        curl_multi_cleanup(self->auth_multi);
    free(self->ca.data);
    free(self->insecure);
    free(self);
    *self_p = NULL;
}

void registry_stats(const registry_t *self, registry_stats_t *out)
{
    *out = self->stats;
}

// --- URLs ------------------------------------------------------------------------

static bool s_is_insecure(const registry_t *self, const char *domain)
{
    size_t len = strlen(domain);
    for (const char *p = self->insecure; p && *p;) {
        p += strspn(p, " ,");
        size_t n = strcspn(p, " ,");
        if (n == len && n > 0 && strncmp(p, domain, n) == 0)
            return true;
        p += n;
    }
    return false;
}

char *reg_base_url(const registry_t *self, const char *domain)
{
    const char *host = strcmp(domain, S_DOCKER_HUB) == 0 ? S_DOCKER_HUB_HOST : domain;
    char *url = NULL;
    if (asprintf(&url, "%s://%s", s_is_insecure(self, domain) ? "http" : "https", host) < 0)
        return NULL;
    return url;
}

// --- error text ------------------------------------------------------------------

const char *reg_cred_hint(const registry_cred_t *cred, char *buf, size_t cap, const char *domain)
{
    bool has = cred && ((cred->username && *cred->username) ||
                        (cred->identity_token && *cred->identity_token));
    if (has)
        snprintf(buf, cap, "(check the pull secret for %s)", domain);
    else
        snprintf(buf, cap,
                 "(no pull secret for %s: add one to the pod's imagePullSecrets or the "
                 "service account)",
                 domain);
    return buf;
}

// A token server's own shapes: {"details": ...} (Docker Hub) or OAuth2's
// {"error": ..., "error_description": ...}.
static bool s_token_error(const cJSON *json, char *text, size_t cap)
{
    static const char *const keys[] = {"details", "error_description", "message", "error"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, keys[i]);
        if (cJSON_IsString(item) && *item->valuestring) {
            snprintf(text, cap, "%s", item->valuestring);
            return true;
        }
    }
    return false;
}

// Appends "CODE: message" of each entry of {"errors":[...]} to text.
static bool s_registry_errors(const cJSON *json, char *text, size_t cap)
{
    const cJSON *errors = cJSON_GetObjectItemCaseSensitive(json, "errors");
    const cJSON *e;
    size_t n = 0;
    text[0] = '\0';
    cJSON_ArrayForEach(e, errors)
    {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
        const cJSON *message = cJSON_GetObjectItemCaseSensitive(e, "message");
        if (!cJSON_IsString(code) || n >= cap)
            continue;
        int w = snprintf(text + n, cap - n, "%s%s: %s", n ? "; " : "", code->valuestring,
                         cJSON_IsString(message) ? message->valuestring : "(no message)");
        n += w > 0 ? (size_t)w : 0;
    }
    return text[0] != '\0';
}

int reg_status_error(long status, const reg_buf_t *body, vmlet_err_t *err)
{
    cJSON *json = body->data ? cJSON_ParseWithLength(body->data, body->len) : NULL;
    char text[600];
    bool structured = s_registry_errors(json, text, sizeof text);
    bool token = !structured && s_token_error(json, text, sizeof text);
    cJSON_Delete(json);
    if (structured)
        return vmlet_err_set(err, "%ld %s", status, text);
    if (token)
        return vmlet_err_set(err, "%ld %s: %s", status, vmlet_http_reason(status, "HTTP error"),
                             text);
    if (!body->data || !body->len)
        return vmlet_err_set(err, "%ld %s (empty body)", status,
                             vmlet_http_reason(status, "HTTP error"));
    int n = (int)strcspn(body->data, "\r\n");
    return vmlet_err_set(err, "%ld %s: %.*s", status, vmlet_http_reason(status, "HTTP error"),
                         n > 200 ? 200 : n, body->data);
}

// --- ping --------------------------------------------------------------------------

static bool s_discard(reg_job_t *job, const char *data, size_t n)
{
    (void)job, (void)data, (void)n;
    return true;
}

int registry_ping(registry_t *self, const vmlet_image_ref_t *ref, const registry_cred_t *cred,
                  vmlet_err_t *err)
{
    static const reg_sink_t sink = {.on_data = s_discard};
    cleanup_free char *base = reg_base_url(self, ref->domain);
    cleanup_free char *url = NULL;
    if (!base || asprintf(&url, "%s/v2/", base) < 0) {
        url = NULL;
        return vmlet_err_set(err, "%s: ping: out of memory", ref->normalized);
    }
    reg_job_t job = {
        .domain = ref->domain, .scope = "", .cred = cred, .challenge = true, .sink = &sink};
    int rc = reg_job_init(&job, url, err);
    if (rc == 0)
        rc = reg_run_one(self, &job, err);
    reg_job_clear(&job);
    return rc < 0 ? vmlet_err_wrap(err, "%s: ping %s", ref->normalized, url) : 0;
}
