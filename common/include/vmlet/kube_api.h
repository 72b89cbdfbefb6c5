// Small conveniences over vmlet_kube_request for the services that talk
// to the API server: JSON in, JSON out, non-2xx answers as errors with
// the server's own message, and query-string escaping.
#ifndef VMLET_KUBE_API_H
#define VMLET_KUBE_API_H

#include "vmlet/kube.h"

#include <stddef.h>

// Content types for PATCH.
#define VMLET_MERGE_PATCH "application/merge-patch+json"
#define VMLET_STRATEGIC_MERGE_PATCH "application/strategic-merge-patch+json"

// Sends body (may be NULL) and returns 0 on a 2xx answer with *out the
// response (may be NULL to drop it; caller frees). A non-2xx answer
// returns 1 with *status set and err = "<METHOD> <path>: <code>
// <Status.reason>: <Status.message>". A transport failure returns -1.
// status may be NULL.
int vmlet_kube_call(vmlet_kube_t *kube, const char *method, const char *path,
                    const char *content_type, const cJSON *body, long *status, cJSON **out,
                    vmlet_err_t *err);

// Percent-escapes text for a query string into buf. Returns buf, or NULL
// if it does not fit.
char *vmlet_kube_escape(const char *text, char *buf, size_t cap);

// A string member of a JSON object by path, e.g. ("metadata", "name");
// NULL if absent or not a string. Borrowed.
const char *vmlet_json_str(const cJSON *obj, const char *first, const char *second);

#endif
