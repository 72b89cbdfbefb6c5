// What happens after each attempt of a job (done, redirect, authenticate,
// retry, fail), and the loop that drives several jobs at once.
#include "registry_internal.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define S_POLL_MAX_MS 1000

static void s_done(reg_job_t *job, int rc)
{
    job->finished = true;
    job->rc = rc;
}

// The URL without its query (presigned blob URLs carry signatures there).
static const char *s_loggable(const char *url, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.*s", (int)strcspn(url, "?"), url);
    return buf;
}

static void s_count_request(registry_t *self, CURLcode rc, long status)
{
    self->stats.requests += status != 0;
    if (!self->metrics)
        return;
    char labels[32];
    if (rc != CURLE_OK && status == 0)
        snprintf(labels, sizeof labels, "code=\"error\"");
    else
        snprintf(labels, sizeof labels, "code=\"%ld\"", status);
    vmlet_counter_inc(vmlet_metrics_counter(self->metrics,
                                            "vmlet_image_builder_registry_requests_total",
                                            "Registry responses, by HTTP status.", labels));
}

// --- transport errors ----------------------------------------------------------

static bool s_retryable(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return true;
    default:
        return false; // TLS trust, bad URLs, out of memory: trying again will not help
    }
}

static void s_transport_error(reg_job_t *job, CURLcode rc)
{
    const char *detail = job->curl_error[0] ? job->curl_error : curl_easy_strerror(rc);
    char where[512];
    s_loggable(job->url, where, sizeof where);
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        vmlet_err_set(&job->err,
                      "TLS: %s: %s (is the registry's CA in the CA file the image builder is "
                      "given?)",
                      where, detail);
        break;
    case CURLE_SSL_CONNECT_ERROR:
        vmlet_err_set(&job->err,
                      "TLS handshake with %s failed: %s (if the registry speaks plain HTTP, "
                      "list it as insecure)",
                      where, detail);
        break;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        vmlet_err_set(&job->err, "cannot connect to %s: %s (is the registry running there?)", where,
                      detail);
        break;
    default:
        vmlet_err_set(&job->err, "%s: %s", where, detail);
    }
}

// --- after an attempt -----------------------------------------------------------

static void s_retry_or_fail(registry_t *self, reg_job_t *job)
{
    if (job->attempt >= self->retries) {
        s_done(job, -1);
        return;
    }
    int64_t delay =
        vmlet_backoff_delay_ms(&self->backoff, (unsigned)job->attempt, vmlet_random01());
    if (job->retry_after_s >= 0) {
        int64_t asked = job->retry_after_s * 1000;
        if (asked > self->backoff.max_ms)
            asked = self->backoff.max_ms;
        if (asked > delay)
            delay = asked;
    }
    job->attempt++;
    job->not_before = vmlet_now_ms() + delay;
    vmlet_counter_inc(self->retries_total);
    self->stats.retries++;
    char url[512], attempt[16], ms[24];
    snprintf(attempt, sizeof attempt, "%d", job->attempt);
    snprintf(ms, sizeof ms, "%lld", (long long)delay);
    vmlet_log_warn(self->log,
                   VMLET_KV({"registry", job->domain},
                            {"url", s_loggable(job->url, url, sizeof url)}, {"attempt", attempt},
                            {"delay_ms", ms}),
                   "registry request failed, retrying: %s", job->err.msg);
    // Start over at the registry: a redirect's target may have expired.
    free(job->url);
    job->url = vmlet_xstrdup(job->origin_url);
    job->redirects = 0;
}

static void s_redirect(registry_t *self, reg_job_t *job)
{
    char *location = NULL;
    curl_easy_getinfo(job->easy, CURLINFO_REDIRECT_URL, &location);
    if (!location) {
        vmlet_err_set(&job->err, "%ld redirect without a Location", job->status);
        s_done(job, -1);
        return;
    }
    if (++job->redirects > REG_MAX_REDIRECTS) {
        vmlet_err_set(&job->err, "more than %d redirects (last to %s)", REG_MAX_REDIRECTS,
                      location);
        s_done(job, -1);
        return;
    }
    char url[512];
    vmlet_log_debug(
        self->log,
        VMLET_KV({"registry", job->domain}, {"to", s_loggable(location, url, sizeof url)}),
        "registry redirect");
    char *next = vmlet_xstrdup(location); // location belongs to the easy handle
    free(job->url);
    job->url = next;
    if (job->status == 303)
        job->post = NULL; // "see other" is fetched with GET
}

static void s_http_error(reg_job_t *job);

static void s_authenticate(registry_t *self, reg_job_t *job)
{
    job->authenticated = true;
    int rc =
        reg_auth_answer(self, job->domain, job->scope, job->cred, job->www_authenticate, &job->err);
    if (rc > 0)
        s_http_error(job); // nothing to answer with: the registry's 401 is the error
    if (rc != 0)
        s_done(job, -1);
}

// Still at the origin the job started at (not redirected elsewhere).
static bool s_at_home(const reg_job_t *job)
{
    cleanup_free char *origin = reg_origin(job->url);
    return origin && strcasecmp(origin, job->origin) == 0;
}

static bool s_is_redirect(long status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

static void s_http_error(reg_job_t *job)
{
    reg_status_error(job->status, &job->err_body, &job->err);
    if (job->status != 401 && job->status != 403)
        return;
    char hint[256];
    reg_cred_hint(job->cred, hint, sizeof hint, job->domain);
    size_t len = strlen(job->err.msg);
    snprintf(job->err.msg + len, sizeof job->err.msg - len, " %s", hint);
}

// Decides what a finished attempt leads to: done, failed, or another
// attempt (now, or after a back-off).
static void s_attempt_done(registry_t *self, reg_job_t *job, CURLcode rc)
{
    curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &job->status);
    s_count_request(self, rc, job->status);
    long status = job->status;
    if (job->sink_failed) {
        s_done(job, -1); // the sink said why
    } else if (rc != CURLE_OK) {
        s_transport_error(job, rc);
        if (s_retryable(rc))
            s_retry_or_fail(self, job);
        else
            s_done(job, -1);
    } else if (status >= 200 && status <= 299) {
        bool ok = !job->sink->on_done || job->sink->on_done(job);
        s_done(job, ok ? 0 : -1);
    } else if (s_is_redirect(status)) {
        s_redirect(self, job);
    } else if (status == 401 && job->challenge && !job->authenticated && job->www_authenticate &&
               s_at_home(job)) {
        s_authenticate(self, job);
    } else {
        s_http_error(job);
        if (status == 429 || status >= 500)
            s_retry_or_fail(self, job);
        else
            s_done(job, -1);
    }
}

// --- the loop ----------------------------------------------------------------------

// Starts what may start; returns how long until a waiting job may (ms).
static int64_t s_start_ready(registry_t *self, CURLM *multi, reg_job_t **jobs, size_t n,
                             int parallel, bool *failed)
{
    int64_t now = vmlet_now_ms(), wait = S_POLL_MAX_MS;
    int active = 0;
    for (size_t i = 0; i < n; i++)
        active += jobs[i]->active;
    for (size_t i = 0; i < n && !*failed; i++) {
        reg_job_t *job = jobs[i];
        if (job->finished || job->active)
            continue;
        if (now < job->not_before) {
            wait = job->not_before - now < wait ? job->not_before - now : wait;
            continue;
        }
        if (active >= parallel)
            continue;
        if (reg_job_start(self, multi, job) < 0) {
            s_done(job, -1);
            *failed = true;
        } else {
            active++;
        }
    }
    return wait;
}

// Collects finished transfers. Returns true when one of them changed state.
static bool s_collect(registry_t *self, CURLM *multi, bool *failed)
{
    CURLMsg *msg;
    int left;
    bool changed = false;
    while ((msg = curl_multi_info_read(multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        reg_job_t *job = (reg_job_t *)priv;
        curl_multi_remove_handle(multi, easy);
        job->active = false;
        s_attempt_done(self, job, result);
        *failed = *failed || (job->finished && job->rc < 0);
        changed = true;
    }
    return changed;
}

static bool s_all_finished(reg_job_t **jobs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!jobs[i]->finished)
            return false;
    return true;
}

static void s_stop_all(CURLM *multi, reg_job_t **jobs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (jobs[i]->active) {
            curl_multi_remove_handle(multi, jobs[i]->easy);
            jobs[i]->active = false;
        }
}

static int s_drive(registry_t *self, CURLM *multi, reg_job_t **jobs, size_t n, int parallel,
                   void (*progress)(void *arg), void *progress_arg)
{
    bool failed = false;
    while (!failed && !s_all_finished(jobs, n)) {
        int64_t wait = s_start_ready(self, multi, jobs, n, parallel, &failed);
        int running = 0;
        if (!failed && curl_multi_perform(multi, &running) != CURLM_OK)
            break;
        bool changed = s_collect(self, multi, &failed);
        if (progress)
            progress(progress_arg);
        if (!failed && !changed)
            curl_multi_poll(multi, NULL, 0, (int)(wait > 0 ? wait : 0), NULL);
    }
    s_stop_all(multi, jobs, n);
    return failed || !s_all_finished(jobs, n) ? -1 : 0;
}

int reg_run(registry_t *self, reg_job_t **jobs, size_t n, int parallel, void (*progress)(void *arg),
            void *progress_arg, vmlet_err_t *err)
{
    if (self->depth > 1)
        return vmlet_err_set(err, "registry client: requests nested too deep");
    CURLM *multi = self->depth == 0 ? self->multi : self->auth_multi;
    self->depth++;
    int rc = s_drive(self, multi, jobs, n, parallel > 0 ? parallel : 1, progress, progress_arg);
    self->depth--;
    if (rc == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (jobs[i]->finished && jobs[i]->rc < 0) {
            if (err)
                *err = jobs[i]->err;
            return -1;
        }
    return vmlet_err_set(err, "registry client: curl multi handle failed");
}

int reg_run_one(registry_t *self, reg_job_t *job, vmlet_err_t *err)
{
    return reg_run(self, &job, 1, 1, NULL, NULL, err);
}
