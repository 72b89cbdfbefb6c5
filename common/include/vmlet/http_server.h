// A small HTTP/1.1 server for /healthz, /metrics and similar endpoints,
// driven by the service's zloop: non-blocking, one request per connection
// (Connection: close), requests up to 8 KiB, idle clients dropped after a
// few seconds. Not a general web server: the kubelet API has its own.
#ifndef VMLET_HTTP_SERVER_H
#define VMLET_HTTP_SERVER_H

#include "vmlet/err.h"
#include "vmlet/log.h"

#include <czmq.h>

typedef struct _vmlet_http_server_t vmlet_http_server_t;

typedef struct {
    const char *method; // "GET", ...
    const char *path;   // without the query string
    const char *query;  // after '?', or ""
    const char *authorization; // the Authorization header's value, or ""
} vmlet_http_request_t;

typedef struct {
    int status;               // defaults to 200
    const char *content_type; // defaults to "text/plain; charset=utf-8"
    char *body;               // malloc'd by the handler; the server frees it
    size_t body_len;
} vmlet_http_response_t;

typedef void(vmlet_http_handler_fn)(void *arg, const vmlet_http_request_t *request,
                                    vmlet_http_response_t *response);

// Listens on `listen`: "HOST:PORT", ":PORT" (all addresses) or port 0 for
// an ephemeral port. Returns NULL with err on a bad address or bind failure.
vmlet_http_server_t *vmlet_http_server_new(const char *listen, vmlet_log_t *log,
                                           vmlet_err_t *err);
void vmlet_http_server_destroy(vmlet_http_server_t **self_p);

// Routes GET (and HEAD) for an exact path. Unknown paths get 404, other
// methods 405. `arg` is borrowed.
int vmlet_http_server_route(vmlet_http_server_t *self, const char *path,
                            vmlet_http_handler_fn *handler, void *arg);

// Starts serving from `loop` (borrowed; must outlive the server or the
// server must be destroyed first).
int vmlet_http_server_attach(vmlet_http_server_t *self, zloop_t *loop, vmlet_err_t *err);

// The bound port (useful after listening on port 0).
int vmlet_http_server_port(const vmlet_http_server_t *self);

// The bound address, "HOST:PORT" ("[V6]:PORT" for IPv6), with the port the
// kernel chose when listening on port 0: what to tell others to connect
// to. Borrowed; valid while the server lives.
const char *vmlet_http_server_address(const vmlet_http_server_t *self);

#endif
