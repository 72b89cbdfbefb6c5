// JSON calls to the API server with errors carrying the server's message (see kube_api.h).
#include "vmlet/kube_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vmlet_kube_call(vmlet_kube_t *kube, const char *method, const char *path,
                    const char *content_type, const cJSON *body, long *status, cJSON **out,
                    vmlet_err_t *err)
{
    char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    if (body && !text)
        return vmlet_err_set(err, "%s %s: out of memory", method, path);
    long code = 0;
    cJSON *response = NULL;
    int rc = vmlet_kube_request(kube, method, path, body ? content_type : NULL, text, &code,
                                &response, err);
    free(text);
    if (status)
        *status = code;
    if (rc < 0)
        return vmlet_err_wrap(err, "%s %s", method, path);
    if (code >= 200 && code < 300) {
        if (out)
            *out = response;
        else
            cJSON_Delete(response);
        return 0;
    }
    const char *reason = vmlet_json_str(response, "reason", NULL);
    const char *message = vmlet_json_str(response, "message", NULL);
    vmlet_err_set(err, "%s %s: %ld %s: %s", method, path, code, reason ? reason : "",
                  message ? message : "(no message)");
    cJSON_Delete(response);
    return 1;
}

char *vmlet_kube_escape(const char *text, char *buf, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || strchr("-._~", *p);
        if (n + (plain ? 1 : 3) >= cap)
            return NULL;
        if (plain) {
            buf[n++] = (char)*p;
        } else {
            buf[n++] = '%';
            buf[n++] = hex[*p >> 4];
            buf[n++] = hex[*p & 15];
        }
    }
    buf[n] = '\0';
    return buf;
}

const char *vmlet_json_str(const cJSON *obj, const char *first, const char *second)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, first);
    if (second)
        item = cJSON_GetObjectItemCaseSensitive(item, second);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}
