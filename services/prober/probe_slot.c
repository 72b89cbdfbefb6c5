// A probe's slot: its copy of the target, and what every transfer of
// every kind shares (the options, the response callbacks, Go's words for
// where it connected to). See probe_internal.h.
#include "probe_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// Copies the target's strings into the slot's own storage. The size is
// reserved first so the pointers into it stay put.
void probe_slot_copy_target(probe_slot_t *slot, const probe_target_t *t)
{
    const char *host = t->host, *path = t->path ? t->path : "";
    const char *service = t->grpc_service ? t->grpc_service : "";
    const char *scheme = t->scheme && *t->scheme ? t->scheme : "http";
    size_t n_headers = t->headers ? t->n_headers : 0;
    size_t need = strlen(scheme) + strlen(host) + strlen(path) + strlen(service) + 4 +
                  n_headers * sizeof(probe_header_t) + sizeof(probe_header_t);
    for (size_t i = 0; i < n_headers; i++)
        need += strlen(t->headers[i].name ? t->headers[i].name : "") +
                strlen(t->headers[i].value ? t->headers[i].value : "") + 2;
    probe_buf_t *st = &slot->strings;
    probe_buf_reset(st);
    char *p = probe_buf_grow(st, need); // reserved once, so the pointers stay put
    // The header array first: it needs the alignment malloc gave.
    probe_header_t *h = (probe_header_t *)(void *)p;
    p += n_headers * sizeof(probe_header_t) + sizeof(probe_header_t);
#define COPY(dst, src)                                                                             \
    do {                                                                                           \
        size_t n_ = strlen(src) + 1;                                                               \
        memcpy(p, (src), n_);                                                                      \
        (dst) = p;                                                                                 \
        p += n_;                                                                                   \
    } while (0)
    COPY(slot->scheme, scheme);
    for (char *c = slot->scheme; *c; c++) // the kubelet lower-cases it
        *c = (char)tolower((unsigned char)*c);
    COPY(slot->host, host);
    COPY(slot->path, path);
    COPY(slot->grpc_service, service);
    for (size_t i = 0; i < n_headers; i++) {
        char *name, *value;
        COPY(name, t->headers[i].name ? t->headers[i].name : "");
        COPY(value, t->headers[i].value ? t->headers[i].value : "");
        h[i] = (probe_header_t){name, value};
    }
#undef COPY
    slot->headers_copy = h;
    slot->n_headers = n_headers;
    slot->port = t->port;
    slot->timeout_ms = t->timeout_ms;
}

static size_t s_on_header(char *data, size_t size, size_t n, void *userp)
{
    probe_slot_t *slot = userp;
    size_t len = size * n;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        // A status line starts a response (1xx ones come and go; trailers
        // arrive after the body, without one).
        const char *sp = memchr(data, ' ', len);
        long code = sp ? strtol(sp + 1, NULL, 10) : 0;
        slot->status = code;
        slot->got_status = code >= 200;
        probe_buf_reset(&slot->location);
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return len;
    size_t name_len = (size_t)(colon - data);
    const char *v = colon + 1, *end = data + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (name_len == 8 && strncasecmp(data, "location", 8) == 0) {
        probe_buf_reset(&slot->location);
        probe_buf_add(&slot->location, v, (size_t)(end - v));
    } else if (name_len == 11 && strncasecmp(data, "grpc-status", 11) == 0) {
        char tmp[16] = {0};
        memcpy(tmp, v, (size_t)(end - v) < sizeof tmp - 1 ? (size_t)(end - v) : sizeof tmp - 1);
        slot->grpc_status = (int)strtol(tmp, NULL, 10);
    } else if (name_len == 12 && strncasecmp(data, "grpc-message", 12) == 0) {
        probe_buf_reset(&slot->grpc_message);
        probe_buf_add(&slot->grpc_message, v, (size_t)(end - v));
        probe_percent_decode(&slot->grpc_message);
    }
    return len;
}

static size_t s_on_body(char *data, size_t size, size_t n, void *userp)
{
    probe_slot_t *slot = userp;
    size_t len = size * n, room = slot->body_max - slot->body.len;
    if (len > room) {
        // Enough read: as the kubelet, keep what fits and close the
        // connection (returning short makes curl stop the transfer).
        probe_buf_add(&slot->body, data, room);
        slot->body_truncated = true;
        return room;
    }
    probe_buf_add(&slot->body, data, len);
    return len;
}

CURL *probe_slot_prepare(probe_slot_t *slot)
{
    int64_t left_ms = (slot->deadline_us - probe_now_us() + 999) / 1000;
    if (left_ms <= 0)
        left_ms = 1;
    if (!slot->easy) {
        slot->easy = curl_easy_init();
        if (!slot->easy) {
            probe_slot_finish(slot, PROBE_RESULT_UNKNOWN, false, "prober: curl_easy_init failed");
            return NULL;
        }
    } else {
        curl_easy_reset(slot->easy);
    }
    CURL *e = slot->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, slot);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, slot->errbuf);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)left_ms);
    // The kubelet's transport: keep-alive off (a connection per probe),
    // no proxy from the environment, no compression asked for.
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, 0L); // names resolved per probe, as Go does
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, slot);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, slot);
    slot->errbuf[0] = '\0';
    slot->got_status = false;
    slot->saw_read = false;
    slot->status = 0;
    slot->grpc_status = -1;
    slot->body_truncated = false;
    probe_buf_reset(&slot->location);
    probe_buf_reset(&slot->grpc_message);
    probe_buf_reset(&slot->body);
    return e;
}

bool probe_slot_connected(const probe_slot_t *slot)
{
    curl_off_t t = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_CONNECT_TIME_T, &t);
    return t > 0 || slot->saw_read;
}

void probe_slot_connect_error(const probe_slot_t *slot, probe_buf_t *out)
{
    long os_errno = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_OS_ERRNO, &os_errno);
    probe_buf_puts(out, "connect: ");
    if (os_errno)
        probe_errno_words(out, (int)os_errno);
    else
        probe_buf_puts(out, slot->errbuf[0] ? slot->errbuf : "failed");
}

void probe_slot_peer(const probe_slot_t *slot, probe_buf_t *out)
{
    char *ip = NULL;
    long port = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_PRIMARY_IP, &ip);
    curl_easy_getinfo(slot->easy, CURLINFO_PRIMARY_PORT, &port);
    if (ip && *ip && port > 0) {
        probe_join_host_port(out, ip, (int)port);
        return;
    }
    // Not as far as an address: the current URL's host and port (a
    // redirect may have changed both).
    CURLU *u = curl_url();
    char *host = NULL, *port_s = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, probe_buf_str(&slot->url), 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port_s, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        size_t n = strlen(host);
        if (n >= 2 && host[0] == '[') { // JoinHostPort adds the brackets back
            host[n - 1] = '\0';
            probe_join_host_port(out, host + 1, atoi(port_s));
        } else {
            probe_join_host_port(out, host, atoi(port_s));
        }
    } else {
        probe_join_host_port(out, slot->host, slot->port);
    }
    curl_free(host);
    curl_free(port_s);
    curl_url_cleanup(u);
}
