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

#endif
