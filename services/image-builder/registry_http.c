// HTTP jobs driven through a curl multi handle to success or failure:
// redirects followed by hand, a 401 answered once, retries with back-off.
#include "registry_internal.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define S_CONNECT_TIMEOUT_MS 10000L
#define S_LOW_SPEED_TIME_S 60L // a transfer that moves nothing for this long fails
#define S_BUFFER_SIZE 131072L  // fewer, larger writes of big blobs

// --- jobs --------------------------------------------------------------------------

// "scheme://host:port" of url (port explicit), or NULL.
char *reg_origin(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
        asprintf(&out, "%s://%s:%s", scheme, host, port) < 0)
        out = NULL;
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return out;
}

int reg_job_init(reg_job_t *job, const char *url, vmlet_err_t *err)
{
    job->retry_after_s = -1;
    job->err_body.max = REG_MAX_ERROR_BODY;
    job->url = vmlet_xstrdup(url);
    job->origin_url = vmlet_xstrdup(url);
    job->origin = reg_origin(url);
    if (!job->origin)
        return vmlet_err_set(err, "bad URL %s", url);
    return 0;
}

static void s_reset_response(reg_job_t *job)
{
    free(job->content_type);
    free(job->content_digest);
    free(job->www_authenticate);
    job->content_type = job->content_digest = job->www_authenticate = NULL;
    job->retry_after_s = -1;
    reg_buf_clear(&job->err_body);
}

void reg_job_clear(reg_job_t *job)
{
    s_reset_response(job);
    if (job->easy)
        curl_easy_cleanup(job->easy);
    curl_slist_free_all(job->headers);
    free(job->url);
    free(job->origin_url);
    free(job->origin);
    job->easy = NULL;
    job->headers = NULL;
    job->url = job->origin_url = job->origin = NULL;
}

// --- callbacks ---------------------------------------------------------------------

static char *s_join(char *old, const char *value)
{
    if (!old)
        return vmlet_xstrdup(value);
    char *joined = NULL;
    if (asprintf(&joined, "%s, %s", old, value) < 0)
        joined = NULL;
    free(old);
    return joined;
}

static void s_on_header_field(reg_job_t *job, const char *name, const char *value)
{
    if (strcasecmp(name, "content-type") == 0) {
        free(job->content_type);
        job->content_type = vmlet_xstrdup(value);
    } else if (strcasecmp(name, "docker-content-digest") == 0) {
        free(job->content_digest);
        job->content_digest = vmlet_xstrdup(value);
    } else if (strcasecmp(name, "www-authenticate") == 0) {
        job->www_authenticate = s_join(job->www_authenticate, value);
    } else if (strcasecmp(name, "retry-after") == 0) {
        char *end;
        long seconds = strtol(value, &end, 10);
        if (end != value && *end == '\0')
            job->retry_after_s = seconds < 0 ? 0 : seconds;
        else {
            time_t when = curl_getdate(value, NULL); // the HTTP-date form
            if (when > 0)
                job->retry_after_s = when > time(NULL) ? (long)(when - time(NULL)) : 0;
        }
    }
}

static size_t s_on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    reg_job_t *job = arg;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        s_reset_response(job); // a new response (after a 100, say) starts over
        return n;
    }
    char line[4096];
    size_t len = n < sizeof line - 1 ? n : sizeof line - 1;
    memcpy(line, data, len);
    line[len] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    char *colon = strchr(line, ':');
    if (!colon)
        return n;
    *colon = '\0';
    char *value = colon + 1 + strspn(colon + 1, " \t");
    size_t vlen = strlen(value);
    while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
        value[--vlen] = '\0';
    s_on_header_field(job, line, value);
    return n;
}

static size_t s_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    reg_job_t *job = arg;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) {
        reg_buf_append(&job->err_body, data, n); // what does not fit is dropped
        return n;
    }
    vmlet_counter_add(job->registry->bytes_total, (double)n);
    job->registry->stats.bytes += (int64_t)n;
    if (!job->sink->on_data(job, data, n)) {
        job->sink_failed = true;
        return 0; // curl ends the transfer with CURLE_WRITE_ERROR
    }
    return n;
}

// --- setting up an attempt ------------------------------------------------------

static struct curl_slist *s_add(struct curl_slist *list, const char *name, const char *value)
{
    char *line = NULL;
    if (asprintf(&line, "%s: %s", name, value) < 0)
        return list;
    struct curl_slist *grown = curl_slist_append(list, line);
    explicit_bzero(line, strlen(line)); // may hold a token
    free(line);
    return grown ? grown : list;
}

// Authorization goes only to the origin the job started at: a redirect to
// blob storage elsewhere must not carry the registry's credentials.
static struct curl_slist *s_headers(registry_t *self, reg_job_t *job)
{
    struct curl_slist *list = NULL;
    if (job->accept)
        list = s_add(list, "Accept", job->accept);
    if (job->post)
        list = s_add(list, "Content-Type", "application/x-www-form-urlencoded");
    cleanup_free char *origin = reg_origin(job->url);
    if (!origin || strcasecmp(origin, job->origin) != 0)
        return list;
    char *auth = job->auth ? vmlet_xstrdup(job->auth)
                           : reg_auth_header(self, job->domain, job->scope, job->cred);
    if (auth) {
        list = s_add(list, "Authorization", auth);
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    return list;
}

static void s_set_options(registry_t *self, reg_job_t *job)
{
    CURL *c = job->easy;
    job->registry = self;
    curl_easy_setopt(c, CURLOPT_PRIVATE, job);
    curl_easy_setopt(c, CURLOPT_URL, job->url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, S_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, S_LOW_SPEED_TIME_S);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, job->curl_error);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, S_BUFFER_SIZE);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "vmlet/" VMLET_VERSION);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (self->ca.data)
        curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &self->ca);
    if (self->max_bytes_per_sec > 0)
        curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)self->max_bytes_per_sec);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, job);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, job);
    if (job->post)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, job->post);
    else
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_slist_free_all(job->headers);
    job->headers = s_headers(self, job);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, job->headers);
}

int reg_job_start(registry_t *self, CURLM *multi, reg_job_t *job)
{
    bool again = job->easy != NULL;
    if (!job->easy && !(job->easy = curl_easy_init()))
        return vmlet_err_set(&job->err, "cannot create a curl handle");
    if (again && job->sink->on_restart)
        job->sink->on_restart(job);
    s_reset_response(job);
    job->curl_error[0] = '\0';
    job->status = 0;
    s_set_options(self, job);
    if (curl_multi_add_handle(multi, job->easy) != CURLM_OK)
        return vmlet_err_set(&job->err, "cannot start a transfer");
    job->active = true;
    return 0;
}
