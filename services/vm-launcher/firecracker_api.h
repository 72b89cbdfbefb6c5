// A client for Firecracker's REST API on its unix socket (libcurl with
// CURLOPT_UNIX_SOCKET_PATH), with a deadline per request. Errors carry
// Firecracker's own `fault_message`:
//   "PUT /machine-config: 400: The number of vCPUs must be greater than 0 ..."
//
// API version targeted: Firecracker 1.8 (the first to declare virtio
// devices through ACPI, which Debian's cloud kernel needs, DESIGN.md §3).
// Only endpoints and fields unchanged from v1.8 on are used; the contract
// the tests check requests against is tests/contracts/firecracker-api.yaml.
#ifndef VMLET_LAUNCHER_FIRECRACKER_API_H
#define VMLET_LAUNCHER_FIRECRACKER_API_H

#include "vmlet/err.h"

#include <cjson/cJSON.h>

#define FC_API_MIN_MAJOR 1
#define FC_API_MIN_MINOR 8

typedef struct _fc_api_t fc_api_t;

fc_api_t *fc_api_new(const char *socket_path, int timeout_ms);
void fc_api_destroy(fc_api_t **self_p);

// One request: body (borrowed, may be NULL) as JSON. Returns 0 on a 2xx
// answer and hands a JSON answer body to *out when out is not NULL (NULL
// if the body was empty; caller deletes). Anything else fills err with
// method, path, status and fault_message, and sets *status if given.
int fc_api_call(fc_api_t *self, const char *method, const char *path, const cJSON *body,
                cJSON **out, long *status, vmlet_err_t *err);

// PUT with the body, expecting 204 No Content (or another 2xx).
int fc_api_put(fc_api_t *self, const char *path, const cJSON *body, vmlet_err_t *err);

// Parses `firecracker --version` output ("Firecracker v1.8.0 ..."). Returns
// 0 and the version, or -1 if the text does not look like it.
int fc_parse_version(const char *text, int *major, int *minor, int *patch);

#endif
