// Routes envelopes to handlers through a const table keyed on the body's
// oneof case. Malformed bytes, unknown body types and types without a
// route are counted (vmlet_bus_messages_total{type,result}), logged once
// per type and result, and dropped: they never reach a handler or crash
// the service.
#ifndef VMLET_DISPATCH_H
#define VMLET_DISPATCH_H

#include "vmlet/envelope.h"
#include "vmlet/log.h"
#include "vmlet/metrics.h"

#include <stdbool.h>

// A handler gets the whole envelope, borrowed for the call; it copies what
// it keeps. Returns >= 0 when handled (the value is passed back to the
// caller: a bus worker reads VMLET_WORK_PENDING from it), < 0 on failure
// (counted as "failed").
typedef int(vmlet_handler_fn)(void *ctx, const vmlet_envelope_t *env);

typedef struct {
    vmlet_body_case_t body_case;
    vmlet_handler_fn *handler;
} vmlet_route_t;

// Routes end with {VMLET__ENVELOPE__BODY__NOT_SET, NULL}.
#define VMLET_ROUTES_END {VMLET__ENVELOPE__BODY__NOT_SET, NULL}

typedef enum {
    VMLET_DISPATCH_HANDLED = 0,
    VMLET_DISPATCH_FAILED,    // the handler returned < 0
    VMLET_DISPATCH_MALFORMED, // not an Envelope
    VMLET_DISPATCH_UNKNOWN,   // a body this build does not know, or none
    VMLET_DISPATCH_UNROUTED,  // a known body with no route here
    VMLET_DISPATCH_RESULTS
} vmlet_dispatch_result_t;

typedef struct _vmlet_dispatch_t vmlet_dispatch_t;

// routes, ctx, metrics and log are borrowed and must outlive the dispatcher.
vmlet_dispatch_t *vmlet_dispatch_new(const vmlet_route_t *routes, void *ctx,
                                     vmlet_metrics_t *metrics, vmlet_log_t *log);
void vmlet_dispatch_destroy(vmlet_dispatch_t **self_p);

// Unpacks and routes one message. *handler_rc (may be NULL) gets the
// handler's return value when one ran, else 0.
vmlet_dispatch_result_t vmlet_dispatch_bytes(vmlet_dispatch_t *self, const uint8_t *data,
                                             size_t len, int *handler_rc);
// Routes an already unpacked envelope.
vmlet_dispatch_result_t vmlet_dispatch_envelope(vmlet_dispatch_t *self,
                                                const vmlet_envelope_t *env, int *handler_rc);

// Whether the table has a route for the case (a worker takes only what it can do).
bool vmlet_dispatch_routes(const vmlet_dispatch_t *self, vmlet_body_case_t body_case);

// How many messages ended with `result` so far.
unsigned long vmlet_dispatch_count(const vmlet_dispatch_t *self, vmlet_dispatch_result_t result);

const char *vmlet_dispatch_result_name(vmlet_dispatch_result_t result);

#endif
