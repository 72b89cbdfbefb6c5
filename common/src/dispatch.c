// Table-driven envelope routing with counted, logged-once drops (see dispatch.h).
#include "vmlet/dispatch.h"

#include <stdio.h>
#include <string.h>

// Per (body case, result): the counter, found once and kept because the
// registry lookup is too slow for every message, and whether it was logged.
// Cases beyond the table share the last slot.
#define CASE_SLOTS 129

struct _vmlet_dispatch_t {
    const vmlet_route_t *routes;
    void *ctx;
    vmlet_metrics_t *metrics;
    vmlet_log_t *log;
    unsigned long counts[VMLET_DISPATCH_RESULTS];
    vmlet_metric_t *counters[CASE_SLOTS][VMLET_DISPATCH_RESULTS];
    unsigned char logged[CASE_SLOTS][VMLET_DISPATCH_RESULTS];
};

static const char *const result_names[VMLET_DISPATCH_RESULTS] = {
    "handled", "failed", "malformed", "unknown", "unrouted"};

const char *vmlet_dispatch_result_name(vmlet_dispatch_result_t result)
{
    return result < VMLET_DISPATCH_RESULTS ? result_names[result] : "?";
}

vmlet_dispatch_t *vmlet_dispatch_new(const vmlet_route_t *routes, void *ctx,
                                     vmlet_metrics_t *metrics, vmlet_log_t *log)
{
    vmlet_dispatch_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->routes = routes;
    self->ctx = ctx;
    self->metrics = metrics;
    self->log = log;
    return self;
}

void vmlet_dispatch_destroy(vmlet_dispatch_t **self_p)
{
    if (self_p && *self_p) {
        free(*self_p);
        *self_p = NULL;
    }
}

static const vmlet_route_t *s_route(const vmlet_dispatch_t *self, vmlet_body_case_t body_case)
{
    for (const vmlet_route_t *r = self->routes; r && r->handler; r++)
        if (r->body_case == body_case)
            return r;
    return NULL;
}

bool vmlet_dispatch_routes(const vmlet_dispatch_t *self, vmlet_body_case_t body_case)
{
    return s_route(self, body_case) != NULL;
}

// Counts the outcome; logs the first drop or failure of each kind.
static vmlet_dispatch_result_t s_record(vmlet_dispatch_t *self, vmlet_body_case_t body_case,
                                        vmlet_dispatch_result_t result, const char *detail)
{
    self->counts[result]++;
    const char *topic = vmlet_envelope_topic(body_case);
    size_t slot = (size_t)body_case < CASE_SLOTS ? (size_t)body_case : CASE_SLOTS - 1;
    vmlet_metric_t **counter = &self->counters[slot][result];
    if (!*counter && self->metrics) {
        char labels[160];
        snprintf(labels, sizeof labels, "type=\"%s\",result=\"%s\"",
                 topic ? topic : "unknown", result_names[result]);
        *counter = vmlet_metrics_counter(self->metrics, "vmlet_bus_messages_total",
                                         "Bus messages received, by type and outcome.", labels);
    }
    vmlet_counter_inc(*counter);
    if (result == VMLET_DISPATCH_HANDLED)
        return result;
    if (!self->logged[slot][result]) {
        self->logged[slot][result] = 1;
        vmlet_log_warn(self->log,
                       VMLET_KV({"type", topic ? topic : "unknown"},
                                {"result", result_names[result]}),
                       "dropped a bus message: %s (further ones of this kind are only counted)",
                       detail);
    }
    return result;
}

vmlet_dispatch_result_t vmlet_dispatch_envelope(vmlet_dispatch_t *self,
                                                const vmlet_envelope_t *env, int *handler_rc)
{
    int ignored;
    if (!handler_rc)
        handler_rc = &ignored;
    *handler_rc = 0;
    if (env->body_case == VMLET__ENVELOPE__BODY__NOT_SET ||
        !vmlet_envelope_topic(env->body_case))
        return s_record(self, VMLET__ENVELOPE__BODY__NOT_SET, VMLET_DISPATCH_UNKNOWN,
                        "no body this build knows (a newer sender?)");
    const vmlet_route_t *route = s_route(self, env->body_case);
    if (!route)
        return s_record(self, env->body_case, VMLET_DISPATCH_UNROUTED,
                        "this service has no handler for it");
    *handler_rc = route->handler(self->ctx, env);
    if (*handler_rc < 0)
        return s_record(self, env->body_case, VMLET_DISPATCH_FAILED, "its handler failed");
    return s_record(self, env->body_case, VMLET_DISPATCH_HANDLED, "");
}

vmlet_dispatch_result_t vmlet_dispatch_bytes(vmlet_dispatch_t *self, const uint8_t *data,
                                             size_t len, int *handler_rc)
{
    if (handler_rc)
        *handler_rc = 0;
    vmlet_err_t err = {0};
    vmlet_envelope_t *env = vmlet_envelope_unpack(data, len, &err);
    if (!env)
        return s_record(self, VMLET__ENVELOPE__BODY__NOT_SET, VMLET_DISPATCH_MALFORMED, err.msg);
    vmlet_dispatch_result_t result = vmlet_dispatch_envelope(self, env, handler_rc);
    vmlet_envelope_free(&env);
    return result;
}

unsigned long vmlet_dispatch_count(const vmlet_dispatch_t *self, vmlet_dispatch_result_t result)
{
    return result < VMLET_DISPATCH_RESULTS ? self->counts[result] : 0;
}
