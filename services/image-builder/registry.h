// An OCI distribution client (libcurl): ping, Bearer and Basic auth,
// manifests and indexes, blobs checked against their digests.
//
//   - Auth: an anonymous try first; a 401 with WWW-Authenticate: Bearer
//     realm,service,scope gets a token from the realm (with the
//     credentials, if any, as Basic) and caches it until it expires (per
//     registry and scope); Basic is sent as asked. A registry's own error
//     text ("UNAUTHORIZED: authentication required") ends up in err.
//   - Transport: HTTPS with CA verification (the system's CAs plus
//     ca_file); registries listed in `insecure` ("host:port,host2") are
//     spoken to over plain HTTP. Redirects are followed by hand, and the
//     Authorization header is dropped when one leads to another host (blob
//     storage). 429 and 5xx are retried with back-off; Retry-After is
//     honoured up to the back-off's cap.
//   - Manifests: Accept lists the OCI and Docker schema 2 manifest and
//     index types. An index picks linux/amd64, skipping attestation entries
//     (platform unknown/unknown, or annotation vnd.docker.reference.type).
//     Every manifest and blob is checked against its digest (sha256 or
//     sha512) and size; a mismatch fails.
//
// Error messages name the image and the step:
//   "127.0.0.1:5000/demo:1: manifest: 404 MANIFEST_UNKNOWN: manifest unknown"
#ifndef VMLET_IMAGE_REGISTRY_H
#define VMLET_IMAGE_REGISTRY_H

#include "vmlet/err.h"
#include "vmlet/image_ref.h"
#include "vmlet/log.h"
#include "vmlet/metrics.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *ca_file;       // extra CA bundle to trust; NULL: the system's only
    const char *insecure;      // registries spoken to over HTTP: "host:port,host"; may be NULL
    int retries;               // attempts after the first, for 429/5xx/transport errors
    int64_t max_bytes_per_sec; // per transfer; 0: unlimited
    int parallel;              // blobs fetched at once
} registry_options_t;

// Credentials for one registry (from a dockerconfigjson pull secret).
typedef struct {
    const char *username;
    const char *password;
    const char *identity_token; // used instead of username/password when set
} registry_cred_t;

typedef struct {
    char *media_type;
    char *digest; // "sha256:<hex>"
    int64_t size;
} registry_descriptor_t;

// A platform manifest (never an index).
typedef struct {
    char *digest;     // of the manifest itself, as the registry served it
    char *media_type; // OCI or Docker schema 2 manifest
    registry_descriptor_t config;
    registry_descriptor_t *layers;
    size_t n_layers;
} registry_manifest_t;

// What the image config says a container runs (all may be empty).
typedef struct {
    char **entrypoint;
    size_t n_entrypoint;
    char **cmd;
    size_t n_cmd;
    char **env; // "K=V"
    size_t n_env;
    char *working_dir;
    char *user;
    char **exposed_ports; // "80/tcp"
    size_t n_exposed_ports;
    char *stop_signal;
} registry_image_config_t;

// Progress of blob fetches: bytes received so far in all of them.
typedef void(registry_progress_fn)(void *arg, int64_t done, int64_t total);

typedef struct _registry_t registry_t;

// One client per thread: calls on a registry_t must not overlap, and the
// metrics it was given are updated from the calling thread. options'
// strings are copied (NULL options: defaults); log and metrics are
// borrowed (either may be NULL) and must outlive the client. The client
// keeps tokens (never credentials) and open connections between calls.
// Call curl_global_init once before the first client.
registry_t *registry_new(const registry_options_t *options, vmlet_log_t *log,
                         vmlet_metrics_t *metrics, vmlet_err_t *err);
void registry_destroy(registry_t **self_p);

// GET /v2/ on the reference's registry: reachable, and what auth it asks.
int registry_ping(registry_t *self, const vmlet_image_ref_t *ref, const registry_cred_t *cred,
                  vmlet_err_t *err);

// Resolves ref (tag or digest) to its linux/amd64 manifest.
int registry_get_manifest(registry_t *self, const vmlet_image_ref_t *ref,
                          const registry_cred_t *cred, registry_manifest_t *out, vmlet_err_t *err);
void registry_manifest_clear(registry_manifest_t *manifest);

// Fetches blobs into dir/<algorithm>/<hex> (the content-addressed cache):
// several at once (options.parallel), each written to a temporary file,
// checked against its digest and size, then renamed into place. A blob
// already in dir is not fetched again. progress (may be NULL) is called as
// bytes arrive. Returns 0 when all are in place.
int registry_fetch_blobs(registry_t *self, const vmlet_image_ref_t *ref,
                         const registry_cred_t *cred, const registry_descriptor_t *blobs,
                         size_t n, const char *dir, registry_progress_fn *progress, void *arg,
                         vmlet_err_t *err);

// The path of a blob in the cache dir (caller frees); NULL when digest is
// not a well-formed sha256/sha512 digest (it could name a path outside dir).
char *registry_blob_path(const char *dir, const char *digest);

// What a client has done since registry_new, for a caller whose metrics
// live on another thread (the same figures as the client's own metrics).
typedef struct {
    int64_t requests; // responses received, any status
    int64_t bytes;    // of manifests, tokens and blobs (2xx bodies)
    int64_t retries;
} registry_stats_t;
void registry_stats(const registry_t *self, registry_stats_t *out);

// Parses an image config blob (JSON text).
int registry_parse_config(const char *json, size_t len, registry_image_config_t *out,
                          vmlet_err_t *err);
void registry_image_config_clear(registry_image_config_t *config);

#endif
