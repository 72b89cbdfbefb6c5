// What every vmlet service process is made of, so a service's main.c is
// only wiring: settings (the common ones plus the service's own table),
// logging, signals, one zloop, metrics, the HTTP endpoint (/healthz,
// /readyz, /metrics), the Redis store, and whichever bus roles the service
// plays. A service describes itself in a const vmlet_service_def_t.
//
// /healthz answers 200 while the loop runs (liveness). /readyz answers 200
// only when Redis and every bus role are connected, else 503 naming what
// is not (readiness). Each instance also keeps a presence key in Redis,
// vmlet:instances:<service>:<instance>, with a short TTL, so operators can
// see who is alive with `redis-cli --scan --pattern 'vmlet:instances:*'`.
#ifndef VMLET_SERVICE_H
#define VMLET_SERVICE_H

#include "vmlet/bus.h"
#include "vmlet/config.h"
#include "vmlet/dispatch.h"
#include "vmlet/log.h"
#include "vmlet/metrics.h"
#include "vmlet/store.h"

#include <czmq.h>

// The settings every service shares (see vmlet_service_common_options).
typedef struct {
    char *instance;
    char *log_format;
    char *log_level;
    char *http_listen;
    char *redis_url;
    char *redis_password;
    char *bus_publish;
    char *bus_subscribe;
    char *bus_work;
    long bus_hwm;
    int64_t bus_heartbeat_ms;
    int64_t presence_interval_ms;
} vmlet_service_settings_t;

typedef struct _vmlet_service_t vmlet_service_t;

typedef struct {
    const char *name;    // "k8s-watcher": logs, metrics, presence key
    const char *summary; // one line for --help
    const char *default_http_listen; // this service's default for --http-listen
    bool standalone; // no Redis, no bus peers (the broker itself)
    // The service's own settings table and the struct it fills (may be NULL).
    const vmlet_cfg_option_t *options;
    void *settings;
    bool uses_redis;
    bool publishes;     // has an event publisher
    bool submits_work;  // has a work client
    // Events to subscribe to (NULL/0: no subscriber) and work to take
    // (work_queue NULL: not a worker). Both are routed through `routes`.
    const vmlet_body_case_t *subscribe;
    size_t n_subscribe;
    const char *work_queue;
    int work_capacity;
    const vmlet_route_t *routes;
    // The service's domain object: made once the service is built (it may
    // keep the service's loop, store, publisher...), and passed to the
    // handlers. NULL start: no domain object. start returns NULL with err
    // to abort; stop (may be NULL) destroys what start made.
    void *(*start)(vmlet_service_t *service, vmlet_err_t *err);
    void (*stop)(void **ctx_p);
} vmlet_service_def_t;

// Loads settings from argv and the environment and builds everything but
// the bus roles. Returns NULL when the process should exit at once, with
// *exit_code 0 after --help and 2 after a bad setting (already reported).
// def is borrowed and must outlive the service.
vmlet_service_t *vmlet_service_new(const vmlet_service_def_t *def, int argc, char *argv[],
                                   int *exit_code);
void vmlet_service_destroy(vmlet_service_t **self_p);

// Creates the bus roles with `ctx` as the handlers' context, then runs the
// loop until SIGTERM or SIGINT. Returns the process exit code.
int vmlet_service_run(vmlet_service_t *self, void *ctx);

// A service's whole main(): new, start, run, stop, destroy. Returns the
// process exit code.
int vmlet_service_main(const vmlet_service_def_t *def, int argc, char *argv[]);

vmlet_log_t *vmlet_service_log(vmlet_service_t *self);
zloop_t *vmlet_service_loop(vmlet_service_t *self);
vmlet_metrics_t *vmlet_service_metrics(vmlet_service_t *self);
vmlet_store_t *vmlet_service_store(vmlet_service_t *self);           // NULL unless uses_redis
vmlet_bus_publisher_t *vmlet_service_publisher(vmlet_service_t *self); // NULL unless publishes
vmlet_bus_client_t *vmlet_service_client(vmlet_service_t *self);     // NULL unless submits_work
vmlet_bus_worker_t *vmlet_service_worker(vmlet_service_t *self);     // valid once running
const vmlet_service_settings_t *vmlet_service_settings(const vmlet_service_t *self);
const vmlet_service_def_t *vmlet_service_def(const vmlet_service_t *self);

// The settings tables every service reads (for docs and tests): the first
// always, the second unless the service is standalone.
extern const vmlet_cfg_option_t vmlet_service_common_options[];
extern const vmlet_cfg_option_t vmlet_service_peer_options[];

// Bus options from the common settings; `source` is written into buf.
void vmlet_service_bus_options(const vmlet_service_settings_t *settings, const char *service,
                               char *source_buf, size_t cap, vmlet_bus_options_t *out);

#endif
