// Kubernetes API client basics shared by k8s-watcher and status-reporter:
// configuration from a kubeconfig file or the in-cluster service account,
// bearer-token or client-certificate authentication, CA verification on
// unless the kubeconfig itself says insecure-skip-tls-verify, and JSON
// requests through libcurl + cJSON.
#ifndef VMLET_KUBE_H
#define VMLET_KUBE_H

#include "vmlet/err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

// Where to reach the API server and how to prove who we are. Strings are
// malloc'd (NULL when absent); *_data fields hold PEM text, not base64.
typedef struct {
    char *server; // "https://127.0.0.1:6443"
    char *ca_file;
    char *ca_data;
    char *token;
    char *token_file; // re-read when it changes (bound tokens rotate)
    char *client_cert_file;
    char *client_cert_data;
    char *client_key_file;
    char *client_key_data;
    bool insecure_skip_tls_verify;
} vmlet_kube_config_t;

// Loads the named context (NULL: current-context) of a kubeconfig file.
// Relative file paths in it are resolved against the file's directory.
int vmlet_kube_config_from_file(const char *path, const char *context, vmlet_kube_config_t *out,
                                vmlet_err_t *err);

// Loads the in-cluster config: KUBERNETES_SERVICE_HOST/PORT and the
// service account's token and ca.crt under `sa_dir` (NULL: the standard
// /var/run/secrets/kubernetes.io/serviceaccount).
int vmlet_kube_config_in_cluster(const char *sa_dir, vmlet_kube_config_t *out, vmlet_err_t *err);

// `kubeconfig` if set and non-empty, else in-cluster; the error says both
// were tried and how to fix it.
int vmlet_kube_config_load(const char *kubeconfig, vmlet_kube_config_t *out, vmlet_err_t *err);

void vmlet_kube_config_clear(vmlet_kube_config_t *config);

typedef struct _vmlet_kube_t vmlet_kube_t;

// Copies what it needs from config. Returns NULL with err on bad config.
vmlet_kube_t *vmlet_kube_new(const vmlet_kube_config_t *config, vmlet_err_t *err);
void vmlet_kube_destroy(vmlet_kube_t **self_p);

// One request. `path` starts with "/" ("/api/v1/namespaces"); `body` may be
// NULL. On a completed exchange returns 0 with *status set and *response
// the parsed JSON body (NULL if empty or not JSON; caller frees). Returns
// -1 with err for transport failures (connection refused, TLS
// verification, timeout), naming the server and the cause.
int vmlet_kube_request(vmlet_kube_t *self, const char *method, const char *path,
                       const char *content_type, const char *body, long *status,
                       cJSON **response, vmlet_err_t *err);

// GET that succeeds only on 2xx; otherwise err reads like
// "GET /api/v1/namespaces: 401 Unauthorized: <Status.message>". Caller frees *out.
int vmlet_kube_get(vmlet_kube_t *self, const char *path, cJSON **out, vmlet_err_t *err);

typedef struct _vmlet_metrics_t vmlet_metrics_t;

// Counts every later request of this client (not streams) in
// vmlet_kube_requests_total{verb,code} of `metrics` (borrowed; it must
// outlive the client). Only for a client used on the thread that renders
// the metrics: the registry is not thread-safe.
void vmlet_kube_set_metrics(vmlet_kube_t *self, vmlet_metrics_t *metrics);

// --- streaming and cancellation ----------------------------------------------
//
// A client is used by one thread at a time; only vmlet_kube_wakeup may be
// called from another thread, to interrupt a request or sleep in progress.

// Called for each line of a streamed response (without its newline; the
// text is NUL-terminated and may be modified). Non-zero ends the request.
typedef int(vmlet_kube_line_fn)(void *arg, char *line, size_t len);

// Asked on the requesting thread while a request or vmlet_kube_sleep waits:
// after each wake-up, data arrival, and at least once a second. True
// abandons the request, which fails with err->code == ECANCELED.
typedef bool(vmlet_kube_cancel_fn)(void *arg);

#define VMLET_KUBE_STOPPED 1 // the line function ended the stream

// GET of newline-delimited JSON (a watch): calls fn for each line as it
// arrives. timeout_ms bounds the whole request (0: no bound). Returns 0
// when the server ended a 2xx response, VMLET_KUBE_STOPPED when fn ended
// it, or -1 with err: transport failures and a stream cut inside a line
// (*status 0 or 2xx), cancellation (err->code ECANCELED), or a non-2xx
// answer (*status set, err with the Status message as for vmlet_kube_get;
// fn is not called).
int vmlet_kube_stream(vmlet_kube_t *self, const char *path, long timeout_ms,
                      vmlet_kube_line_fn *fn, void *arg, long *status, vmlet_err_t *err);

// Installs the cancel check for every later request of this client (NULL:
// none, the default).
void vmlet_kube_set_cancel(vmlet_kube_t *self, vmlet_kube_cancel_fn *fn, void *arg);

// Thread-safe: wakes the request or sleep in progress (or the next one) so
// that it asks the cancel check at once.
void vmlet_kube_wakeup(vmlet_kube_t *self);

// Waits ms milliseconds unless the cancel check says stop first (then
// returns true), for back-off between requests that a wake-up can cut short.
bool vmlet_kube_sleep(vmlet_kube_t *self, long ms);

#endif
