// Firecracker API client over its unix socket (see firecracker_api.h).
#include "firecracker_api.h"

#include "vmlet/xalloc.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FC_ANSWER_MAX (1024 * 1024) // answers here are tiny; more is refused

struct _fc_api_t {
    CURL *curl; // one handle: libcurl keeps the connection to Firecracker open
    char *socket_path;
    int timeout_ms;
};

typedef struct {
    char *data;
    size_t len;
    bool overflow;
} s_buf_t;

static size_t s_on_data(char *ptr, size_t size, size_t nmemb, void *user)
{
    s_buf_t *buf = user;
    size_t n = size * nmemb;
    if (buf->len + n > FC_ANSWER_MAX) {
        buf->overflow = true;
        return 0; // makes curl fail the transfer
    }
    buf->data = vmlet_xrealloc(buf->data, buf->len + n + 1);
    memcpy(buf->data + buf->len, ptr, n);
    buf->len += n;
    buf->data[buf->len] = '\0';
    return n;
}

fc_api_t *fc_api_new(const char *socket_path, int timeout_ms)
{
    fc_api_t *self = vmlet_xcalloc(1, sizeof *self);
    self->curl = curl_easy_init();
    if (!self->curl) {
        free(self);
        return NULL;
    }
    self->socket_path = vmlet_xstrdup(socket_path);
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 3000;
    return self;
}

void fc_api_destroy(fc_api_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    curl_easy_cleanup((*self_p)->curl);
    free((*self_p)->socket_path);
    free(*self_p);
    *self_p = NULL;
}

int fc_api_call(fc_api_t *self, const char *method, const char *path, const cJSON *body,
                cJSON **out, long *status, vmlet_err_t *err)
{
    if (out)
        *out = NULL;
    if (status)
        *status = 0;
    char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    if (body && !text)
        return vmlet_err_set(err, "%s %s: out of memory", method, path);
    char url[512];
    // The host part is ignored on a unix socket; Firecracker's docs use localhost.
    snprintf(url, sizeof url, "http://localhost%s", path);
    CURL *c = self->curl;
    curl_easy_reset(c);
    s_buf_t answer = {0};
    struct curl_slist *headers = NULL;
    headers = curl_slist_append(headers, "Accept: application/json");
    if (text) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        headers = curl_slist_append(headers, "Expect:"); // no 100-continue round trip
    }
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, self->socket_path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)self->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
    if (text) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
    }
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(headers);
    free(text);
    if (status)
        *status = code;
    if (rc != CURLE_OK) {
        vmlet_err_set(err, "%s %s on %s: %s", method, path, self->socket_path,
                      answer.overflow ? "answer too large" : curl_easy_strerror(rc));
        free(answer.data);
        return -1;
    }
    cJSON *json = answer.len ? cJSON_ParseWithLength(answer.data, answer.len) : NULL;
    if (code >= 200 && code < 300) {
        if (answer.len && !json) {
            free(answer.data);
            return vmlet_err_set(err, "%s %s: %ld with a body that is not JSON", method, path,
                                 code);
        }
        free(answer.data);
        if (out)
            *out = json;
        else
            cJSON_Delete(json);
        return 0;
    }
    const char *fault =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "fault_message"));
    vmlet_err_set(err, "%s %s: %ld: %s", method, path, code,
                  fault ? fault : (answer.len ? answer.data : "(no fault_message)"));
    cJSON_Delete(json);
    free(answer.data);
    return -1;
}

int fc_api_put(fc_api_t *self, const char *path, const cJSON *body, vmlet_err_t *err)
{
    return fc_api_call(self, "PUT", path, body, NULL, NULL, err);
}

int fc_api_patch(fc_api_t *self, const char *path, const cJSON *body, vmlet_err_t *err)
{
    return fc_api_call(self, "PATCH", path, body, NULL, NULL, err);
}

void fc_api_set_timeout(fc_api_t *self, int timeout_ms)
{
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
}

int fc_parse_version(const char *text, int *major, int *minor, int *patch)
{
    const char *p = strstr(text, "Firecracker v");
    if (!p)
        return -1;
    int n = 0;
    if (sscanf(p, "Firecracker v%d.%d.%d%n", major, minor, patch, &n) != 3 || n == 0)
        return -1;
    return 0;
}
