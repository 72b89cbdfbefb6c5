// Kubernetes API requests over libcurl: one reused connection per client,
// bearer token (re-read from its file when that changes) or client
// certificate, and errors that name the server, the cause and the fix.
// Every transfer runs through a multi handle, so another thread can wake a
// blocked request (vmlet_kube_wakeup) and the cancel check can abandon it.
#include "vmlet/kube.h"
#include "vmlet/http_status.h"
#include "vmlet/metrics.h"
#include "vmlet/timeutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define S_TIMEOUT_MS 30000L
#define S_CONNECT_TIMEOUT_MS 5000L
#define S_MAX_RESPONSE (64 * 1024 * 1024)
#define S_MAX_TOKEN 16384
#define S_POLL_MS 1000 // longest wait between cancel checks without a wake-up

struct _vmlet_kube_t {
    CURL *curl;
    CURLM *multi; // drives every transfer of `curl`
    vmlet_kube_cancel_fn *cancel;
    void *cancel_arg;
    vmlet_kube_config_t config; // our own copy
    char *token;                // current bearer token (from config or token_file)
    struct timespec token_mtime;
    ino_t token_ino;
    off_t token_size;
    char curl_error[CURL_ERROR_SIZE];
    vmlet_metrics_t *metrics; // borrowed; NULL: requests are not counted
};

typedef struct {
    char *data;
    size_t len;
    bool too_big;
} s_buffer_t;

static size_t s_on_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    s_buffer_t *buf = arg;
    size_t n = size * nmemb;
    if (buf->len + n > S_MAX_RESPONSE) {
        buf->too_big = true;
        return 0; // makes curl fail with CURLE_WRITE_ERROR
    }
    char *grown = realloc(buf->data, buf->len + n + 1);
    if (!grown)
        return 0;
    memcpy(grown + buf->len, ptr, n);
    buf->data = grown;
    buf->len += n;
    buf->data[buf->len] = '\0';
    return n;
}

// --- the token file ----------------------------------------------------------

// Reloads the token when its file changed since the last read (bound
// service-account tokens are rotated in place).
static int s_refresh_token(vmlet_kube_t *self, vmlet_err_t *err)
{
    const char *path = self->config.token_file;
    if (!path)
        return 0;
    struct stat st;
    if (stat(path, &st) < 0)
        return vmlet_err_errno(err, errno, "token file %s", path);
    if (self->token && st.st_ino == self->token_ino && st.st_size == self->token_size &&
        st.st_mtim.tv_sec == self->token_mtime.tv_sec &&
        st.st_mtim.tv_nsec == self->token_mtime.tv_nsec)
        return 0;
    cleanup_fclose FILE *f = fopen(path, "r");
    if (!f)
        return vmlet_err_errno(err, errno, "token file %s", path);
    char text[S_MAX_TOKEN];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    while (n > 0 && strchr(" \t\r\n", text[n - 1]))
        text[--n] = '\0';
    if (n == 0)
        return vmlet_err_set(err, "token file %s is empty", path);
    char *token = strdup(text);
    if (!token)
        return vmlet_err_set(err, "out of memory");
    free(self->token);
    self->token = token;
    self->token_mtime = st.st_mtim;
    self->token_ino = st.st_ino;
    self->token_size = st.st_size;
    return 0;
}

// --- construction --------------------------------------------------------------

static int s_copy_config(vmlet_kube_config_t *dst, const vmlet_kube_config_t *src)
{
    const char *from[] = {
        src->server,         src->ca_file,          src->ca_data,          src->token,
        src->token_file,     src->client_cert_file, src->client_cert_data, src->client_key_file,
        src->client_key_data};
    char **to[] = {
        &dst->server,         &dst->ca_file,          &dst->ca_data,          &dst->token,
        &dst->token_file,     &dst->client_cert_file, &dst->client_cert_data, &dst->client_key_file,
        &dst->client_key_data};
    for (size_t i = 0; i < sizeof to / sizeof to[0]; i++)
        if (from[i] && !(*to[i] = strdup(from[i])))
            return -1;
    dst->insecure_skip_tls_verify = src->insecure_skip_tls_verify;
    size_t len = strlen(dst->server); // paths are appended as "/api/..."
    while (len > 0 && dst->server[len - 1] == '/')
        dst->server[--len] = '\0';
    return 0;
}

static void s_set_blob(CURL *curl, CURLoption option, const char *pem)
{
    struct curl_blob blob = {(void *)pem, strlen(pem), CURL_BLOB_COPY};
    curl_easy_setopt(curl, option, &blob);
}

// The options every request shares: TLS material, timeouts, no proxy.
static int s_setup_curl(vmlet_kube_t *self, vmlet_err_t *err)
{
    const vmlet_kube_config_t *c = &self->config;
    CURL *curl = self->curl;
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, S_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, self->curl_error);
    // Notices a peer that vanished during a long watch.
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPINTVL, 10L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "vmlet/0.1");
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, c->insecure_skip_tls_verify ? 0L : 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, c->insecure_skip_tls_verify ? 0L : 2L);
    // Only the configured CA, as kubectl: curl's built-in bundle and path
    // would otherwise be trusted too.
    if (c->ca_data || c->ca_file) {
        curl_easy_setopt(curl, CURLOPT_CAPATH, NULL);
        curl_easy_setopt(curl, CURLOPT_CAINFO, c->ca_data ? NULL : c->ca_file);
    }
    if (c->ca_data)
        s_set_blob(curl, CURLOPT_CAINFO_BLOB, c->ca_data);
    if (c->client_cert_data)
        s_set_blob(curl, CURLOPT_SSLCERT_BLOB, c->client_cert_data);
    else if (c->client_cert_file)
        curl_easy_setopt(curl, CURLOPT_SSLCERT, c->client_cert_file);
    if (c->client_key_data)
        s_set_blob(curl, CURLOPT_SSLKEY_BLOB, c->client_key_data);
    else if (c->client_key_file)
        curl_easy_setopt(curl, CURLOPT_SSLKEY, c->client_key_file);
    if (c->token_file)
        return s_refresh_token(self, err);
    if (c->token && !(self->token = strdup(c->token)))
        return vmlet_err_set(err, "out of memory");
    return 0;
}

vmlet_kube_t *vmlet_kube_new(const vmlet_kube_config_t *config, vmlet_err_t *err)
{
    if (!config->server || !*config->server) {
        vmlet_err_set(err, "Kubernetes client: no API server URL configured");
        return NULL;
    }
    vmlet_kube_t *self = calloc(1, sizeof *self);
    if (!self || !(self->curl = curl_easy_init()) || !(self->multi = curl_multi_init()) ||
        s_copy_config(&self->config, config) < 0) {
        vmlet_err_set(err, "out of memory");
        vmlet_kube_destroy(&self);
        return NULL;
    }
    if (s_setup_curl(self, err) < 0) {
        vmlet_err_wrap(err, "Kubernetes client for %s", config->server);
        vmlet_kube_destroy(&self);
        return NULL;
    }
    return self;
}

void vmlet_kube_destroy(vmlet_kube_t **self_p)
{
    vmlet_kube_t *self = *self_p;
    if (!self)
        return;
    if (self->multi)
        curl_multi_cleanup(self->multi);
    if (self->curl)
        curl_easy_cleanup(self->curl);
    vmlet_kube_config_clear(&self->config);
    free(self->token);
    free(self);
    *self_p = NULL;
}

// --- errors ----------------------------------------------------------------------

static const char *s_ca_source(const vmlet_kube_config_t *c)
{
    if (c->ca_data)
        return "certificate-authority-data";
    return c->ca_file ? c->ca_file : "the system trust store";
}

// Turns a transport failure into "TLS: ... (fix)" text in err.
static int s_transport_error(vmlet_kube_t *self, CURLcode rc, vmlet_err_t *err)
{
    const vmlet_kube_config_t *c = &self->config;
    const char *detail = self->curl_error[0] ? self->curl_error : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
        if (strstr(detail, "subject name") || strstr(detail, "does not match"))
            return vmlet_err_set(err,
                                 "TLS: server certificate is not valid for this host name: "
                                 "%s (connect by a name or IP in its SANs)",
                                 detail);
        return vmlet_err_set(err,
                             "TLS: server certificate not signed by the CA in %s: %s "
                             "(check certificate-authority in the kubeconfig)",
                             s_ca_source(c), detail);
    case CURLE_SSL_CACERT_BADFILE:
        return vmlet_err_set(err,
                             "TLS: cannot use the CA in %s: %s (check "
                             "certificate-authority in the kubeconfig)",
                             s_ca_source(c), detail);
    case CURLE_SSL_CERTPROBLEM:
        return vmlet_err_set(err,
                             "TLS: cannot use the client certificate or key: %s (check "
                             "client-certificate and client-key in the kubeconfig)",
                             detail);
    case CURLE_SSL_CONNECT_ERROR:
        return vmlet_err_set(err,
                             "TLS handshake failed: %s (is the server speaking HTTPS, and "
                             "does it accept this client certificate?)",
                             detail);
    case CURLE_COULDNT_CONNECT:
        return vmlet_err_set(err, "cannot connect: %s (is the API server running at %s?)", detail,
                             c->server);
    case CURLE_OPERATION_TIMEDOUT:
        return vmlet_err_set(err,
                             "timed out: %s (is the API server at %s overloaded or "
                             "unreachable?)",
                             detail, c->server);
    default:
        return vmlet_err_set(err, "%s", detail);
    }
}

// What to check after a 401 or 403, given how this client authenticates.
static const char *s_auth_hint(const vmlet_kube_t *self, long status)
{
    const vmlet_kube_config_t *c = &self->config;
    if (status == 403)
        return " (authenticated, but RBAC does not allow this request: grant the user a role "
               "that does)";
    if (c->token_file)
        return " (check the token in the tokenFile: wrong or expired?)";
    if (c->token)
        return " (check the token: the API server does not know it)";
    if (c->client_cert_file || c->client_cert_data)
        return " (check the client certificate: is it signed by the API server's client CA "
               "and still valid?)";
    return " (no credentials configured: set a token or a client certificate)";
}

// err = "<status> <reason>: <Status.message or body> (hint)".
static int s_status_error(const vmlet_kube_t *self, long status, const char *body, vmlet_err_t *err)
{
    cJSON *json = body ? cJSON_Parse(body) : NULL;
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(json, "message");
    char text[512];
    if (cJSON_IsString(message))
        snprintf(text, sizeof text, "%s", message->valuestring);
    else
        snprintf(text, sizeof text, "%.200s", body && *body ? body : "(empty body)");
    text[strcspn(text, "\r\n")] = '\0';
    cJSON_Delete(json);
    return vmlet_err_set(err, "%ld %s: %s%s", status, vmlet_http_reason(status, "HTTP error"), text,
                         status == 401 || status == 403 ? s_auth_hint(self, status) : "");
}

// --- requests --------------------------------------------------------------------

static struct curl_slist *s_headers(const vmlet_kube_t *self, const char *content_type)
{
    struct curl_slist *list = curl_slist_append(NULL, "Accept: application/json");
    char line[S_MAX_TOKEN + 64];
    if (list && content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", content_type);
        list = curl_slist_append(list, line);
    }
    if (list && self->token) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", self->token);
        list = curl_slist_append(list, line);
        explicit_bzero(line, sizeof line);
    }
    return list;
}

static bool s_cancelled(vmlet_kube_t *self)
{
    return self->cancel && self->cancel(self->cancel_arg);
}

// Drives the prepared transfer through the multi handle until it is done
// or the cancel check says to abandon it (*cancelled). A wake-up from
// another thread ends the wait in curl_multi_poll early.
static CURLcode s_drive(vmlet_kube_t *self, bool *cancelled)
{
    *cancelled = false;
    if (curl_multi_add_handle(self->multi, self->curl) != CURLM_OK)
        return CURLE_FAILED_INIT;
    CURLcode rc = CURLE_OK;
    int running = 1;
    while (running) {
        if (curl_multi_perform(self->multi, &running) != CURLM_OK) {
            rc = CURLE_FAILED_INIT;
            break;
        }
        if (running && (*cancelled = s_cancelled(self)))
            break;
        if (running && curl_multi_poll(self->multi, NULL, 0, S_POLL_MS, NULL) != CURLM_OK) {
            rc = CURLE_FAILED_INIT;
            break;
        }
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(self->multi, &left)))
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == self->curl)
            rc = msg->data.result;
    curl_multi_remove_handle(self->multi, self->curl);
    return rc;
}

// Runs one request, handing the body to on_write(write_arg). Returns 0
// once the exchange completed, or -1 with err (without the "METHOD URL"
// prefix; err->code is ECANCELED when the cancel check abandoned it).
static int s_run(vmlet_kube_t *self, const char *method, const char *url, const char *content_type,
                 const char *body, long timeout_ms, curl_write_callback on_write, void *write_arg,
                 vmlet_err_t *err)
{
    if (s_refresh_token(self, err) < 0)
        return -1;
    struct curl_slist *headers = s_headers(self, content_type);
    if (!headers)
        return vmlet_err_set(err, "out of memory");
    CURL *curl = self->curl;
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L); // resets any body from the last request
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") ? method : NULL);
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(curl, CURLOPT_COPYPOSTFIELDS, body);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, write_arg);
    self->curl_error[0] = '\0';
    bool cancelled;
    CURLcode rc = s_drive(self, &cancelled);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    if (cancelled) {
        vmlet_err_set(err, "cancelled");
        if (err)
            err->code = ECANCELED;
        return -1;
    }
    return rc == CURLE_OK ? 0 : s_transport_error(self, rc, err);
}

// One exchange; *raw is the body text (caller frees). Returns -1 with err
// (without the "METHOD URL" prefix) on a transport failure.
static int s_exchange(vmlet_kube_t *self, const char *method, const char *url,
                      const char *content_type, const char *body, long *status, char **raw,
                      vmlet_err_t *err)
{
    s_buffer_t buf = {0};
    if (s_run(self, method, url, content_type, body, S_TIMEOUT_MS, s_on_write, &buf, err) < 0) {
        free(buf.data);
        if (buf.too_big)
            return vmlet_err_set(err, "response larger than %d MiB", S_MAX_RESPONSE >> 20);
        return -1;
    }
    curl_easy_getinfo(self->curl, CURLINFO_RESPONSE_CODE, status);
    *raw = buf.data;
    return 0;
}

// Counts one request by verb and HTTP code ("none" when no answer came),
// so an operator sees 403s (missing RBAC), 409s and 5xx per verb.
static void s_count(vmlet_kube_t *self, const char *method, long status)
{
    if (!self->metrics)
        return;
    char labels[96], code[24];
    if (status > 0)
        snprintf(code, sizeof code, "%ld", status);
    else
        snprintf(code, sizeof code, "none");
    snprintf(labels, sizeof labels, "verb=\"%s\",code=\"%s\"", method, code);
    vmlet_counter_inc(vmlet_metrics_counter(self->metrics, "vmlet_kube_requests_total",
                                            "Kubernetes API requests, by HTTP verb and answer "
                                            "code (watches are counted as vmlet_kube_watch_*).",
                                            labels));
}

static int s_perform(vmlet_kube_t *self, const char *method, const char *path,
                     const char *content_type, const char *body, long *status, char **raw,
                     vmlet_err_t *err)
{
    *raw = NULL;
    if (!path || path[0] != '/')
        return vmlet_err_set(err, "%s %s: path must start with \"/\"", method,
                             path ? path : "(null)");
    cleanup_free char *url = NULL;
    if (asprintf(&url, "%s%s", self->config.server, path) < 0) {
        url = NULL;
        return vmlet_err_set(err, "out of memory");
    }
    int rc = s_exchange(self, method, url, content_type, body, status, raw, err);
    s_count(self, method, rc < 0 ? 0 : *status);
    if (rc < 0)
        return vmlet_err_wrap(err, "%s %s", method, url);
    return 0;
}

int vmlet_kube_request(vmlet_kube_t *self, const char *method, const char *path,
                       const char *content_type, const char *body, long *status, cJSON **response,
                       vmlet_err_t *err)
{
    cleanup_free char *raw = NULL;
    *response = NULL;
    if (s_perform(self, method, path, content_type, body, status, &raw, err) < 0)
        return -1;
    if (raw && *raw)
        *response = cJSON_Parse(raw);
    return 0;
}

int vmlet_kube_get(vmlet_kube_t *self, const char *path, cJSON **out, vmlet_err_t *err)
{
    cleanup_free char *raw = NULL;
    long status = 0;
    *out = NULL;
    if (s_perform(self, "GET", path, NULL, NULL, &status, &raw, err) < 0)
        return -1;
    if (status < 200 || status > 299) {
        s_status_error(self, status, raw, err);
        return vmlet_err_wrap(err, "GET %s%s", self->config.server, path);
    }
    *out = raw && *raw ? cJSON_Parse(raw) : NULL;
    if (!*out)
        return vmlet_err_set(err, "GET %s%s: %ld %s but the body is not JSON", self->config.server,
                             path, status, vmlet_http_reason(status, "HTTP error"));
    return 0;
}

// --- streams and cancellation ----------------------------------------------------

// A streamed response being cut into lines.
typedef struct {
    vmlet_kube_t *kube;
    vmlet_kube_line_fn *fn;
    void *arg;
    s_buffer_t buf; // the unfinished line; or, for a non-2xx answer, the whole body
    size_t scanned; // bytes of buf known to hold no newline
    long status;    // HTTP status, once the headers are in
    int stopped;    // the line function's non-zero answer
} s_stream_t;

// Hands each complete line in the buffer to the line function and keeps
// the unfinished rest. Returns -1 when the line function asked to stop.
static int s_emit_lines(s_stream_t *st)
{
    char *start = st->buf.data;
    char *end = st->buf.data + st->buf.len;
    char *nl;
    while ((nl = memchr(start + st->scanned, '\n', (size_t)(end - start) - st->scanned))) {
        *nl = '\0';
        size_t len = (size_t)(nl - start);
        if (len > 0 && start[len - 1] == '\r')
            start[--len] = '\0';
        int rc = len > 0 ? st->fn(st->arg, start, len) : 0;
        start = nl + 1;
        st->scanned = 0;
        if (rc != 0) {
            st->stopped = rc;
            return -1;
        }
    }
    st->buf.len = (size_t)(end - start);
    memmove(st->buf.data, start, st->buf.len);
    st->buf.data[st->buf.len] = '\0';
    st->scanned = st->buf.len;
    return 0;
}

static size_t s_on_stream(char *ptr, size_t size, size_t nmemb, void *arg)
{
    s_stream_t *st = arg;
    size_t n = size * nmemb;
    if (s_on_write(ptr, size, nmemb, &st->buf) != n)
        return 0;
    if (!st->status)
        curl_easy_getinfo(st->kube->curl, CURLINFO_RESPONSE_CODE, &st->status);
    if (st->status < 200 || st->status > 299)
        return n; // an error answer: kept whole for the message
    return s_emit_lines(st) < 0 ? 0 : n;
}

int vmlet_kube_stream(vmlet_kube_t *self, const char *path, long timeout_ms, vmlet_kube_line_fn *fn,
                      void *arg, long *status, vmlet_err_t *err)
{
    *status = 0;
    cleanup_free char *url = NULL;
    if (!path || path[0] != '/')
        return vmlet_err_set(err, "GET %s: path must start with \"/\"", path ? path : "(null)");
    if (asprintf(&url, "%s%s", self->config.server, path) < 0) {
        url = NULL;
        return vmlet_err_set(err, "out of memory");
    }
    s_stream_t st = {.kube = self, .fn = fn, .arg = arg};
    int rc = s_run(self, "GET", url, NULL, NULL, timeout_ms, s_on_stream, &st, err);
    *status = st.status;
    if (st.stopped) {
        rc = VMLET_KUBE_STOPPED;
    } else if (rc < 0 && st.buf.too_big) {
        rc = vmlet_err_set(err, "GET %s: a line longer than %d MiB", url, S_MAX_RESPONSE >> 20);
    } else if (rc < 0) {
        vmlet_err_wrap(err, "GET %s", url);
    } else if (st.status < 200 || st.status > 299) {
        s_status_error(self, st.status, st.buf.data, err);
        rc = vmlet_err_wrap(err, "GET %s", url);
    } else if (st.buf.len > 0) { // every line ends with a newline: the stream was cut
        rc = vmlet_err_set(err, "GET %s: the stream ended inside a line", url);
    }
    free(st.buf.data);
    return rc;
}

void vmlet_kube_set_metrics(vmlet_kube_t *self, vmlet_metrics_t *metrics)
{
    self->metrics = metrics;
}

void vmlet_kube_set_cancel(vmlet_kube_t *self, vmlet_kube_cancel_fn *fn, void *arg)
{
    self->cancel = fn;
    self->cancel_arg = arg;
}

void vmlet_kube_wakeup(vmlet_kube_t *self)
{
    curl_multi_wakeup(self->multi);
}

bool vmlet_kube_sleep(vmlet_kube_t *self, long ms)
{
    int64_t deadline = vmlet_now_ms() + ms;
    while (!s_cancelled(self)) {
        int64_t left = deadline - vmlet_now_ms();
        if (left <= 0)
            return false;
        curl_multi_poll(self->multi, NULL, 0, left < S_POLL_MS ? (int)left : S_POLL_MS, NULL);
    }
    return true;
}
