// The RFC 6455 opening handshake with the channel.k8s.io subprotocols
// (see ws_handshake.h).
#include "ws_handshake.h"

#include "vmlet/http_status.h"
#include "vmlet/xalloc.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Best first: the first entry the client offered wins, whatever the
// client's own order, so an old client listing v1 first still gets v4 when
// it also offers it. Kubernetes' WebSocket server never listed v2/v3 (those
// names come from SPDY); a client asking for them gets the framing they
// share with v1 and the version's error-channel rule.
static const vmlet_ws_proto_t s_protos[] = {
    {"v5.channel.k8s.io", 5, false},       {"v4.channel.k8s.io", 4, false},
    {"v4.base64.channel.k8s.io", 4, true}, {"v3.channel.k8s.io", 3, false},
    {"v2.channel.k8s.io", 2, false},       {"channel.k8s.io", 1, false},
    {"base64.channel.k8s.io", 1, true},
};
#define N_PROTOS (sizeof s_protos / sizeof s_protos[0])

// No Sec-WebSocket-Protocol at all: Kubernetes maps "" to binary v1.
static const vmlet_ws_proto_t s_proto_none = {"", 1, false};

const vmlet_ws_proto_t *vmlet_ws_proto_find(const char *name)
{
    for (size_t i = 0; i < N_PROTOS; i++)
        if (strcmp(s_protos[i].name, name) == 0)
            return &s_protos[i];
    return NULL;
}

int vmlet_ws_accept_key(const char *key, char out[29])
{
    cleanup_free char *joined = vmlet_xasprintf("%s%s", key, WS_GUID);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(joined, strlen(joined), digest, &n, EVP_sha1(), NULL) || n != 20)
        return -1;
    // 20 bytes encode to 28 characters and a NUL.
    EVP_EncodeBlock((unsigned char *)out, digest, (int)n);
    return 0;
}

// Calls fn on each comma-separated token of list with surrounding blanks
// trimmed; stops when fn returns true and returns that.
static bool s_each_token(const char *list, bool (*fn)(const char *tok, size_t n, void *arg),
                         void *arg)
{
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b > a && fn(a, (size_t)(b - a), arg))
            return true;
        p = *end ? end + 1 : end;
    }
    return false;
}

static bool s_is_upgrade(const char *tok, size_t n, void *arg)
{
    (void)arg;
    return n == 7 && strncasecmp(tok, "upgrade", 7) == 0;
}

typedef struct {
    size_t best; // index into s_protos; N_PROTOS while none matched
} s_pick_t;

static bool s_offer(const char *tok, size_t n, void *arg)
{
    s_pick_t *pick = arg;
    for (size_t i = 0; i < pick->best; i++)
        if (strlen(s_protos[i].name) == n && memcmp(s_protos[i].name, tok, n) == 0)
            pick->best = i;
    return false;
}

// A key is base64 of 16 bytes: 22 digits and "==" (RFC 6455 4.2.1 item 5).
static bool s_key_ok(const char *key)
{
    if (strlen(key) != 24 || strcmp(key + 22, "==") != 0)
        return false;
    for (int i = 0; i < 22; i++) {
        char c = key[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return false;
    }
    return true;
}

static int s_refuse(vmlet_ws_handshake_t *out, int status, vmlet_err_t *err, const char *fmt,
                    const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    out->status = status;
    out->proto = NULL;
    out->response = vmlet_xasprintf("HTTP/1.1 %d %s\r\n"
                                    "Content-Type: text/plain; charset=utf-8\r\n"
                                    "Content-Length: %zu\r\n"
                                    "%s"
                                    "Connection: close\r\n\r\n%s\n",
                                    status, vmlet_http_reason(status, "Error"), strlen(msg) + 1,
                                    status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "", msg);
    return vmlet_err_set(err, "websocket handshake: %d %s", status, msg);
}

int vmlet_ws_handshake(const vmlet_ws_request_t *req, vmlet_ws_handshake_t *out, vmlet_err_t *err)
{
    if (!req->method || strcmp(req->method, "GET") != 0)
        return s_refuse(out, 405, err, "method %s: a WebSocket upgrade must be a GET",
                        req->method ? req->method : "(none)");
    if (!req->upgrade || strcasecmp(req->upgrade, "websocket") != 0)
        return s_refuse(out, 400, err, "Upgrade is \"%s\": want \"websocket\"", req->upgrade);
    if (!req->connection || !s_each_token(req->connection, s_is_upgrade, NULL))
        return s_refuse(out, 400, err, "Connection \"%s\" lacks the \"Upgrade\" token",
                        req->connection);
    if (!req->version || strcmp(req->version, "13") != 0)
        return s_refuse(out, 426, err, "Sec-WebSocket-Version \"%s\" not supported: use 13",
                        req->version);
    if (!req->key || !s_key_ok(req->key))
        return s_refuse(out, 400, err,
                        "Sec-WebSocket-Key \"%s\" is not base64 of 16 bytes (RFC 6455 4.1)",
                        req->key);
    const vmlet_ws_proto_t *proto = &s_proto_none;
    if (req->protocols) {
        s_pick_t pick = {N_PROTOS};
        s_each_token(req->protocols, s_offer, &pick);
        // Kubernetes answers an offer it cannot serve with 403, like
        // golang.org/x/net/websocket's handshake hook.
        if (pick.best == N_PROTOS)
            return s_refuse(out, 403, err,
                            "no supported subprotocol in \"%s\": offer v4.channel.k8s.io, "
                            "channel.k8s.io or their base64 variants",
                            req->protocols);
        proto = &s_protos[pick.best];
    }
    char accept[29];
    if (vmlet_ws_accept_key(req->key, accept) < 0)
        return s_refuse(out, 500, err, "SHA-1 of the key failed%s", NULL);
    out->status = 101;
    out->proto = proto;
    if (proto->name[0])
        out->response = vmlet_xasprintf("HTTP/1.1 101 Switching Protocols\r\n"
                                        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                        "Sec-WebSocket-Accept: %s\r\n"
                                        "Sec-WebSocket-Protocol: %s\r\n\r\n",
                                        accept, proto->name);
    else
        out->response = vmlet_xasprintf("HTTP/1.1 101 Switching Protocols\r\n"
                                        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                        "Sec-WebSocket-Accept: %s\r\n\r\n",
                                        accept);
    return 0;
}
