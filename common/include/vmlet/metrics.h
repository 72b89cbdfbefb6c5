// Prometheus metrics: a registry of counters, gauges and histograms, and
// their text exposition (format 0.0.4) for /metrics.
//
// Names follow Prometheus conventions: vmlet_<service>_<what>_total for
// counters, _seconds for durations. Series are identified by name plus a
// preformatted label string such as `type="PodDesired",queue="launch"`
// (NULL or "" for none); asking twice for the same series returns the same
// handle. Handles belong to the registry and live as long as it does.
//
// Not thread-safe: a service updates and renders from its one event loop.
#ifndef VMLET_METRICS_H
#define VMLET_METRICS_H

#include <stddef.h>

typedef struct _vmlet_metrics_t vmlet_metrics_t;
typedef struct _vmlet_metric_t vmlet_metric_t;

vmlet_metrics_t *vmlet_metrics_new(void);
void vmlet_metrics_destroy(vmlet_metrics_t **self_p);

// Each returns NULL only when out of memory, or when `name` was registered
// before with another type (a programmer error, also logged to stderr).
vmlet_metric_t *vmlet_metrics_counter(vmlet_metrics_t *self, const char *name, const char *help,
                                      const char *labels);
vmlet_metric_t *vmlet_metrics_gauge(vmlet_metrics_t *self, const char *name, const char *help,
                                    const char *labels);
// `bounds` are the upper bounds of the buckets in increasing order (+Inf is
// added); they are copied.
vmlet_metric_t *vmlet_metrics_histogram(vmlet_metrics_t *self, const char *name,
                                        const char *help, const char *labels,
                                        const double *bounds, size_t n_bounds);

// NULL-safe so a failed registration does not crash the caller.
void vmlet_counter_add(vmlet_metric_t *counter, double delta); // delta >= 0
void vmlet_counter_inc(vmlet_metric_t *counter);
void vmlet_gauge_set(vmlet_metric_t *gauge, double value);
void vmlet_gauge_add(vmlet_metric_t *gauge, double delta);
void vmlet_histogram_observe(vmlet_metric_t *histogram, double value);
double vmlet_metric_value(const vmlet_metric_t *metric); // counter/gauge value; histogram count

// Default latency buckets in seconds, 0.5 ms to 10 s.
extern const double vmlet_metrics_latency_bounds[];
extern const size_t vmlet_metrics_latency_bounds_n;

// The exposition text of every series, families in registration order.
// Caller frees; NULL when out of memory.
char *vmlet_metrics_render(const vmlet_metrics_t *self);

#endif
