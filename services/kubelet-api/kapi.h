// vmlet-kubelet-api: the HTTPS front on the node's kubelet port. The
// kube-apiserver reaches it for `kubectl logs`, `exec`, `attach` and
// `port-forward`; each request is authenticated by its client certificate
// and carried, as a session (proto/session.proto), to the vm-launcher that
// holds the pod's VM.
//
// Threads: the service's loop (health, metrics, presence) and one listener
// thread that accepts connections and gives each its own thread, so a
// long `logs -f` or an interactive exec never holds another request.
#ifndef VMLET_KAPI_H
#define VMLET_KAPI_H

#include "vmlet/service.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char *listen;   // "HOST:PORT" of the kubelet port
    char *tls_cert; // PEM; "" = a self-signed one made on first start in state_dir
    char *tls_key;
    char *client_ca;         // PEM CA that signs the API server's kubelet-client certificate
    bool client_auth;        // false: anyone may connect (logged loudly)
    char *state_dir;         // where a generated certificate is kept
    char *node_name;         // for /stats/summary
    int64_t started_unix_ms; // set at start: the node's startTime there
    long max_connections;
    int64_t idle_timeout_ms; // a stream with no traffic either way for this long is closed
} kapi_settings_t;

extern const vmlet_cfg_option_t kapi_options[];

void *kapi_start(vmlet_service_t *service, vmlet_err_t *err);
void kapi_stop(void **self_p);

#endif
