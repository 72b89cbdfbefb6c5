// A vmlet of a test's own against the shared test bed's API server: its
// own Redis and broker, and whichever services the test starts, with a
// node name of its own so tests sharing the bed do not see each other's
// pods. Also kubectl as the bed's admin.
#ifndef VMLET_TEST_STACK_H
#define VMLET_TEST_STACK_H

#include "testsupport.h"

#include "vmlet/bus.h"

#include <cjson/cJSON.h>

typedef struct {
    pid_t pid;
    int http_port;
    char log[300];
} ts_service_t;

typedef struct {
    char *dir;
    char node[64];
    ts_redis_t redis;
    ts_broker_t broker;
    ts_service_t watcher, reporter, launcher, builder;
    // What the stack's vm-launcher is given (see stack.c), NULL-terminated.
    char *launcher_flags[16];
    char netns[32];    // its network namespace (reach pods with `ip netns exec`)
    char pod_cidr[32];
    // The test's own voice on the bus, to speak as a service not yet written.
    vmlet_bus_publisher_t *publisher;
    vmlet_metrics_t *metrics;
    uint64_t vm_generation;
} ts_stack_t;

// One container in a VM report: state is "waiting:<Reason>", "running"
// or "exited:<code>"; last_exit >= 0 adds a lastState terminated.
typedef struct {
    const char *name;
    const char *state;
    int restarts;
    int last_exit;
} ts_container_report_t;

// Publishes a VmEvent for the pod as vm-launcher will (whole state, next
// generation). Returns 0 or -1.
int ts_stack_report_vm(ts_stack_t *stack, const char *uid, Vmlet__VmState state,
                       const char *pod_ip, const ts_container_report_t *containers, size_t n);
// Publishes a ProbeResult (kind "readiness", "liveness" or "startup").
int ts_stack_report_probe(ts_stack_t *stack, const char *uid, const char *container,
                          const char *kind, bool ok, const char *output);
// Publishes an attempt that succeeded with a warning (no verdict).
int ts_stack_report_probe_warning(ts_stack_t *stack, const char *uid, const char *container,
                                  const char *kind, const char *output);
// Publishes an ImageFailed for an image, on behalf of a pod (uid may be NULL).
int ts_stack_report_image_failed(ts_stack_t *stack, const char *image, const char *uid,
                                 const char *reason, const char *message);

// Fills stack->launcher_flags (and netns, pod_cidr) for a vm-launcher of
// stack->dir's own (ts_stack_start does this; for tests that start the
// launcher by hand). ts_stack_stop frees them.
void ts_stack_launcher_flags(ts_stack_t *stack);

// Starts Redis and the broker; node is the Node name the services use.
int ts_stack_start(ts_stack_t *stack, const char *node);
// Starts vmlet-<name> ("k8s-watcher", "status-reporter", "vm-launcher",
// "image-builder") against the stack and the bed (kubeconfig, node name), with
// extra flags (NULL-terminated, may be NULL), and waits until /readyz
// answers 200. Returns 0 or -1.
int ts_stack_service(ts_stack_t *stack, const char *name, ts_service_t *svc,
                     const char *const extra[]);
// The same, run as user id uid (0: as the test runs).
int ts_stack_service_as(ts_stack_t *stack, const char *name, ts_service_t *svc,
                        const char *const extra[], int uid);
void ts_stack_service_stop(ts_service_t *svc);
void ts_stack_stop(ts_stack_t *stack);

// Value of a metric series from the service's /metrics, or -1.
double ts_service_metric(const ts_service_t *svc, const char *series);

// Runs kubectl (the bed's admin kubeconfig) with the printf-formatted
// arguments (shell words). Returns its exit code; *out (may be NULL) gets
// stdout and stderr (caller frees).
int ts_kubectl(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// kubectl ... -o json, parsed; NULL if it failed. Caller frees.
cJSON *ts_kubectl_json(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// kubectl apply -f - of the given manifest text. Returns its exit code.
int ts_kubectl_apply(const char *manifest);

// Makes a namespace and waits until pods can be created in it (its
// default service account has its token). Returns 0 or -1.
int ts_kubectl_namespace(const char *name);

#endif
