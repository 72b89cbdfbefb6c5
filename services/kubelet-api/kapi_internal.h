// What the kubelet API's threads share (see kapi.h).
#ifndef VMLET_KAPI_INTERNAL_H
#define VMLET_KAPI_INTERNAL_H

#include "http_io.h"
#include "kapi.h"

#include <openssl/ssl.h>
#include <pthread.h>

typedef enum {
    ROUTE_OTHER,
    ROUTE_LOGS,
    ROUTE_EXEC,
    ROUTE_ATTACH,
    ROUTE_PORT_FORWARD,
    ROUTE_HEALTHZ,
    ROUTE_STATS,
    ROUTE_COUNT
} route_t;

// Counters the connection threads bump and the loop's timer publishes as
// metrics (the metrics registry is the loop's alone).
typedef struct {
    pthread_mutex_t lock;
    long connections; // open now
    long requests[ROUTE_COUNT];
    long refused_auth;    // 401s
    long sessions_active; // streams to launchers open now
} kapi_stats_t;

typedef struct {
    const kapi_settings_t *settings;
    char redis_url[512];
    char redis_password[256];
    SSL_CTX *tls;
    vmlet_log_t *log;
    kapi_stats_t stats;
} kapi_shared_t;

// One connection, on its own thread: TLS, the request, authentication,
// the route. Closes fd.
void conn_serve(kapi_shared_t *shared, int fd);

// The request of an authenticated client on an open connection.
typedef struct {
    kapi_shared_t *shared;
    SSL *ssl;
    int fd;
    http_request_t req;
    char who[300];
} conn_t;

void route_container_logs(conn_t *c, char *const parts[], size_t n_parts);
void route_exec(conn_t *c, char *const parts[], size_t n_parts, bool attach);
void route_port_forward(conn_t *c, char *const parts[], size_t n_parts);
// what: "summary" (/stats/summary), "resource" (/metrics/resource) or "pods" (/pods).
void route_stats(conn_t *c, const char *what);

void kapi_count(kapi_shared_t *shared, long *counter, long delta);

#endif
