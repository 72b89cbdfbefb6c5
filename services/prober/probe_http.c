// httpGet and tcpSocket probes: the request the kubelet's Go client would
// send, redirects as its checker allows them, and the verdict and output
// as pkg/probe/http and pkg/probe/tcp give them (see probe_runner.h).
#include "probe_internal.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

// Go's client follows these (with a Location); other 3xx end the probe.
static bool s_is_redirect(long status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// Headers Go never writes from a request's header map.
static bool s_dropped(const char *name)
{
    return strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0 ||
           strcasecmp(name, "Trailer") == 0;
}

static void s_add_header(probe_slot_t *slot, probe_buf_t *line, const char *name, const char *value)
{
    probe_buf_reset(line);
    probe_canonical_header(line, name);
    // "Name;" is how curl sends a header with an empty value ("Name:" would
    // remove it).
    if (value && *value)
        probe_buf_printf(line, ": %s", value);
    else
        probe_buf_puts(line, ";");
    slot->headers = curl_slist_append(slot->headers, probe_buf_str(line));
}

// Builds the request's header list as Go's client would write it. Returns
// 0, or -1 with the slot finished: a header Go refuses to send fails the
// probe with Go's error.
static int s_build_headers(probe_slot_t *slot)
{
    const probe_header_t *h = slot->headers_copy;
    probe_buf_t *line = &slot->scratch;
    for (size_t i = 0; i < slot->n_headers; i++) {
        if (!probe_header_name_valid(h[i].name)) {
            probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                              "Get \"%s\": net/http: invalid header field name \"%s\"",
                              probe_buf_str(&slot->url), h[i].name);
            return -1;
        }
        if (!probe_header_value_valid(h[i].value)) {
            probe_buf_reset(line);
            probe_canonical_header(line, h[i].name);
            probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                              "Get \"%s\": net/http: invalid header field value for \"%s\"",
                              probe_buf_str(&slot->url), probe_buf_str(line));
            return -1;
        }
    }
    curl_slist_free_all(slot->headers);
    slot->headers = NULL;
    const char *ua = NULL, *accept = NULL, *host = NULL;
    bool has_connection = false;
    for (size_t i = 0; i < slot->n_headers; i++) {
        if (!ua && strcasecmp(h[i].name, "User-Agent") == 0)
            ua = h[i].value;
        else if (!accept && strcasecmp(h[i].name, "Accept") == 0)
            accept = h[i].value;
        else if (!host && strcasecmp(h[i].name, "Host") == 0)
            host = h[i].value;
        else if (strcasecmp(h[i].name, "Connection") == 0)
            has_connection = true;
    }
    // The Host header sets the request's host (an empty one does not).
    if (host && *host && slot->keep_host)
        s_add_header(slot, line, "Host", host);
    // The kubelet sets User-Agent and Accept unless the probe does; an empty
    // value sends none ("Name:" tells curl to drop its own).
    probe_buf_reset(line);
    probe_buf_printf(line, "User-Agent:%s%s", ua && !*ua ? "" : " ",
                     ua ? ua : probe_slot_user_agent(slot));
    slot->headers = curl_slist_append(slot->headers, probe_buf_str(line));
    if (!accept)
        slot->headers = curl_slist_append(slot->headers, "Accept: */*");
    else if (!*accept)
        slot->headers = curl_slist_append(slot->headers, "Accept:");
    for (size_t i = 0; i < slot->n_headers; i++) {
        const char *name = h[i].name;
        if (strcasecmp(name, "Host") == 0 || strcasecmp(name, "User-Agent") == 0 || s_dropped(name))
            continue;
        if (strcasecmp(name, "Accept") == 0 && !*accept)
            continue; // an empty Accept removes them all
        s_add_header(slot, line, name, h[i].value);
    }
    // Keep-alive off, as the kubelet's transport says to the server.
    if (!has_connection)
        slot->headers = curl_slist_append(slot->headers, "Connection: close");
    return 0;
}

// Sends the request for slot->url.
static void s_request(probe_slot_t *slot)
{
    CURL *e = probe_slot_prepare(slot);
    if (!e)
        return;
    curl_easy_setopt(e, CURLOPT_URL, probe_buf_str(&slot->url));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, slot->headers);
    // HTTPS: no verification (the kubelet's InsecureSkipVerify), so no CA
    // store to load either; HTTP/2 if the server offers it, as Go does.
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
    curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    slot->body_max = PROBE_HTTP_BODY_MAX;
    slot->n_requests++;
    probe_slot_submit(slot);
}

void probe_http_begin(probe_slot_t *slot)
{
    probe_buf_reset(&slot->url);
    probe_format_url(&slot->url, slot->scheme, slot->host, slot->port, slot->path);
    if (strcmp(slot->scheme, "http") != 0 && strcmp(slot->scheme, "https") != 0) {
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                          "Get \"%s\": unsupported protocol scheme \"%s\"",
                          probe_buf_str(&slot->url), slot->scheme);
        return;
    }
    slot->n_requests = 0;
    slot->keep_host = true;
    if (s_build_headers(slot) < 0)
        return;
    s_request(slot);
}

// Whether a Location is an absolute URL (Go's URL.IsAbs: it has a scheme).
static bool s_has_scheme(const char *loc)
{
    if (!isalpha((unsigned char)loc[0]))
        return false;
    for (const char *c = loc + 1; *c; c++) {
        if (*c == ':')
            return true;
        if (!isalnum((unsigned char)*c) && *c != '+' && *c != '-' && *c != '.')
            return false;
    }
    return false;
}

// The host name of a URL, without brackets; "" if it has none.
static void s_url_host(const char *url, probe_buf_t *out)
{
    probe_buf_reset(out);
    CURLU *u = curl_url();
    char *host = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host) {
        size_t n = strlen(host);
        if (n >= 2 && host[0] == '[' && host[n - 1] == ']')
            probe_buf_add(out, host + 1, n - 2);
        else
            probe_buf_add(out, host, n);
    }
    curl_free(host);
    curl_url_cleanup(u);
}

static void s_verdict(probe_slot_t *slot, long status)
{
    const char *body = probe_buf_str(&slot->body);
    if (status >= 200 && status < 300)
        probe_slot_finish(slot, PROBE_RESULT_SUCCESS, false, "%s", body);
    else if (status >= 300 && status < 400)
        probe_slot_finish(slot, PROBE_RESULT_SUCCESS, true,
                          "Probe terminated redirects, Response body: %s", body);
    else // never the body: the kubelet keeps it out of events (kubernetes issue 99425)
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                          "HTTP probe failed with statuscode: %ld", status);
}

// A 3xx with a Location: follow it, or end the probe as the kubelet's
// redirect checker would.
static void s_redirect(probe_slot_t *slot, long status)
{
    char *next = NULL;
    curl_easy_getinfo(slot->easy, CURLINFO_REDIRECT_URL, &next);
    const char *loc = probe_buf_str(&slot->location);
    if (!next) {
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                          "Get \"%s\": failed to parse Location header \"%s\"",
                          probe_buf_str(&slot->url), loc);
        return;
    }
    probe_buf_t *host = &slot->scratch;
    s_url_host(next, host);
    if (strcasecmp(probe_buf_str(host), slot->host) != 0) {
        s_verdict(slot, status); // another host: the kubelet stops here, with a warning
        return;
    }
    if (slot->n_requests >= 10) {
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                          "Get \"%s\": stopped after 10 redirects", loc);
        return;
    }
    // Go keeps a Host override only through a relative Location.
    bool absolute = s_has_scheme(loc);
    probe_buf_reset(&slot->url);
    probe_buf_puts(&slot->url, next); // before the handle is reset
    if (strncmp(next, "http://", 7) != 0 && strncmp(next, "https://", 8) != 0) {
        probe_buf_t *scheme = &slot->scratch;
        probe_buf_reset(scheme);
        probe_buf_add(scheme, next, strcspn(next, ":"));
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                          "Get \"%s\": unsupported protocol scheme \"%s\"",
                          probe_buf_str(&slot->url), probe_buf_str(scheme));
        return;
    }
    if (absolute && slot->keep_host) {
        slot->keep_host = false;
        if (s_build_headers(slot) < 0)
            return;
    }
    s_request(slot);
}

// Go's words for a transfer that did not end with a response.
static void s_error(probe_slot_t *slot, CURLcode code)
{
    const char *url = probe_buf_str(&slot->url);
    const char *why = slot->errbuf[0] ? slot->errbuf : curl_easy_strerror(code);
    probe_buf_t *peer = &slot->scratch, *words = &slot->scratch2;
    probe_buf_reset(peer);
    probe_slot_peer(slot, peer);
    probe_buf_reset(words);
    if (slot->got_status) {
        // The status arrived; the body did not: the kubelet's probe error,
        // whose result it throws away.
        if (code == CURLE_OPERATION_TIMEDOUT)
            probe_buf_puts(words, "context deadline exceeded (Client.Timeout or context "
                                  "cancellation while reading body)");
        else if (code == CURLE_PARTIAL_FILE)
            probe_buf_puts(words, "unexpected EOF");
        else
            probe_buf_puts(words, why);
        probe_slot_finish(slot, PROBE_RESULT_UNKNOWN, false, "%s", probe_buf_str(words));
        return;
    }
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        if (!probe_slot_connected(slot))
            probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                              "Get \"%s\": dial tcp %s: i/o timeout (Client.Timeout exceeded while "
                              "awaiting headers)",
                              url, probe_buf_str(peer));
        else
            probe_slot_finish(
                slot, PROBE_RESULT_FAILURE, false,
                "Get \"%s\": context deadline exceeded (Client.Timeout exceeded while "
                "awaiting headers)",
                url);
        return;
    case CURLE_COULDNT_CONNECT:
        probe_slot_connect_error(slot, words);
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false, "Get \"%s\": dial tcp %s: %s", url,
                          probe_buf_str(peer), probe_buf_str(words));
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
        s_url_host(url, words);
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                          "Get \"%s\": dial tcp: lookup %s: no such host", url,
                          probe_buf_str(words));
        return;
    case CURLE_GOT_NOTHING: // closed before a response: what Go's reader sees
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false, "Get \"%s\": EOF", url);
        return;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR: {
        long os_errno = 0, local_port = 0;
        char *local_ip = NULL;
        curl_easy_getinfo(slot->easy, CURLINFO_OS_ERRNO, &os_errno);
        curl_easy_getinfo(slot->easy, CURLINFO_LOCAL_IP, &local_ip);
        curl_easy_getinfo(slot->easy, CURLINFO_LOCAL_PORT, &local_port);
        if (os_errno && local_ip && *local_ip) {
            const char *op = code == CURLE_RECV_ERROR ? "read" : "write";
            probe_join_host_port(words, local_ip, (int)local_port);
            probe_buf_printf(words, "->%s: %s: ", probe_buf_str(peer), op);
            probe_errno_words(words, (int)os_errno);
            probe_slot_finish(slot, PROBE_RESULT_FAILURE, false, "Get \"%s\": %s tcp %s", url, op,
                              probe_buf_str(words));
            return;
        }
        break;
    }
    default:
        break;
    }
    probe_slot_finish(slot, PROBE_RESULT_FAILURE, false, "Get \"%s\": %s", url, why);
}

void probe_http_done(probe_slot_t *slot, CURLcode code)
{
    if (code != CURLE_OK && !(code == CURLE_WRITE_ERROR && slot->body_truncated)) {
        s_error(slot, code);
        return;
    }
    long status = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
    if (s_is_redirect(status) && slot->location.len) {
        s_redirect(slot, status);
        return;
    }
    s_verdict(slot, status);
}

// --- tcpSocket ---

void probe_tcp_begin(probe_slot_t *slot)
{
    CURL *e = probe_slot_prepare(slot);
    if (!e)
        return;
    probe_buf_reset(&slot->url);
    probe_format_url(&slot->url, "http", slot->host, slot->port, "/");
    curl_easy_setopt(e, CURLOPT_URL, probe_buf_str(&slot->url));
    curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L); // done once connected
    probe_slot_submit(slot);
}

void probe_tcp_done(probe_slot_t *slot, CURLcode code)
{
    probe_buf_t *peer = &slot->scratch, *words = &slot->scratch2;
    probe_buf_reset(peer);
    probe_slot_peer(slot, peer);
    probe_buf_reset(words);
    switch (code) {
    case CURLE_OK:
        probe_slot_finish(slot, PROBE_RESULT_SUCCESS, false, "%s", "");
        return;
    case CURLE_OPERATION_TIMEDOUT:
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false, "dial tcp %s: i/o timeout",
                          probe_buf_str(peer));
        return;
    case CURLE_COULDNT_CONNECT:
        probe_slot_connect_error(slot, words);
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false, "dial tcp %s: %s", probe_buf_str(peer),
                          probe_buf_str(words));
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false, "dial tcp: lookup %s: no such host",
                          slot->host);
        return;
    default:
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false, "dial tcp %s: %s", probe_buf_str(peer),
                          slot->errbuf[0] ? slot->errbuf : curl_easy_strerror(code));
        return;
    }
}
