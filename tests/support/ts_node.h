// A whole vmlet node for tests and benchmarks that go through kubectl: the
// stack (Redis, broker, image-builder, vm-launcher, k8s-watcher,
// status-reporter), the kubelet API on a free port with the bed's node
// certificate (the bed's API server dials it with its kubelet-client
// certificate), a registry holding busybox, and a namespace of its own.
// Test code only.
#ifndef VMLET_TS_NODE_H
#define VMLET_TS_NODE_H

#include "stack.h"
#include "ts_registry.h"

typedef struct {
    ts_stack_t stack;
    ts_registry_t registry;
    ts_service_t kapi;
    char ns[64];
    char busybox[200]; // the image reference to use in pods
    char layout[300];
    char *kubectl, *kubeconfig; // the bed's, for commands of the test's own
    // Set before ts_node_start: the kubeconfig the services use instead of
    // the bed's vmlet one (an identity with other rights).
    const char *service_kubeconfig;
    // What k8s-watcher was started with ([1], the kubeconfig, also
    // status-reporter), for restarts.
    char watcher_flags[2][600];
} ts_node_t;

// Starts it all (n zeroed but for service_kubeconfig); node and namespace
// are named prefix-<random>. kapi_extra:
// more flags for the kubelet API (NULL-terminated, may be NULL). 0 or -1.
int ts_node_start(ts_node_t *n, const char *prefix, const char *const kapi_extra[]);
// Another vm-launcher on the node, as on a second host: its own network
// namespace, pod CIDR, directories (own->dir, made here) and session port
// (own's flags, from ts_stack_launcher_flags, override the stack's).
int ts_node_add_launcher(ts_node_t *n, ts_service_t *svc, ts_stack_t *own);
// Stops it and frees own's flags and directory.
void ts_node_remove_launcher(ts_service_t *svc, ts_stack_t *own);

// Stops k8s-watcher and starts it again with the same flags (it adopts
// the Node it made). 0 or -1.
int ts_node_restart_watcher(ts_node_t *n);
// The same for status-reporter (its watches end, and start again).
int ts_node_restart_reporter(ts_node_t *n);

// Deletes the namespace and the Node, stops everything (VMs included).
void ts_node_stop(ts_node_t *n);

// Applies a manifest (printf-style; "%s" for the namespace is up to the
// caller) and waits up to timeout_ms until the pod's containers all run.
// Returns 0, or -1 after printing the pod.
int ts_node_run_pod(ts_node_t *n, const char *name, int containers, int timeout_ms,
                    const char *manifest);

// A shell command's output (stdout and stderr, malloc'd into *out unless
// out is NULL) and exit code.
int ts_sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
