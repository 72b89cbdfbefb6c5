// Prometheus registry and text exposition, format 0.0.4 (see metrics.h).
#include "vmlet/metrics.h"

#include <czmq.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { TYPE_COUNTER, TYPE_GAUGE, TYPE_HISTOGRAM } metric_type_t;
static const char *const type_names[] = {"counter", "gauge", "histogram"};

typedef struct _family_t family_t;

struct _vmlet_metric_t {
    family_t *family;
    char *labels;   // preformatted, "" for none
    double value;   // counter, gauge
    double *bounds; // histogram: upper bounds, +Inf implied
    size_t n_bounds;
    uint64_t *buckets; // histogram: per bucket (not cumulative), n_bounds + 1
    double sum;
    uint64_t count;
};

struct _family_t {
    char *name;
    char *help;
    metric_type_t type;
    vmlet_metric_t **series; // registration order, so output is stable
    size_t n_series, cap_series;
    zhashx_t *by_labels; // labels -> series (borrowed)
};

struct _vmlet_metrics_t {
    family_t **families; // registration order
    size_t n_families, cap_families;
    zhashx_t *by_name; // name -> family (borrowed)
};

const double vmlet_metrics_latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                               0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t vmlet_metrics_latency_bounds_n =
    sizeof vmlet_metrics_latency_bounds / sizeof vmlet_metrics_latency_bounds[0];

// `array` with room for n + 1 elements (reallocated when full), or NULL
// when out of memory (the old array is then untouched).
static void *s_reserve(void *array, size_t n, size_t *cap, size_t elem_size)
{
    if (n < *cap)
        return array;
    size_t grown = *cap ? *cap * 2 : 8;
    void *bigger = realloc(array, grown * elem_size);
    if (bigger)
        *cap = grown;
    return bigger;
}

static void s_metric_destroy(vmlet_metric_t **self_p)
{
    if (!*self_p)
        return;
    free((*self_p)->labels);
    free((*self_p)->bounds);
    free((*self_p)->buckets);
    free(*self_p);
    *self_p = NULL;
}

static void s_family_destroy(family_t **self_p)
{
    family_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->n_series; i++)
        s_metric_destroy(&self->series[i]);
    free(self->series);
    zhashx_destroy(&self->by_labels);
    free(self->name);
    free(self->help);
    free(self);
    *self_p = NULL;
}

vmlet_metrics_t *vmlet_metrics_new(void)
{
    vmlet_metrics_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->by_name = zhashx_new();
    if (!self->by_name) {
        free(self);
        return NULL;
    }
    return self;
}

void vmlet_metrics_destroy(vmlet_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmlet_metrics_t *self = *self_p;
    for (size_t i = 0; i < self->n_families; i++)
        s_family_destroy(&self->families[i]);
    free(self->families);
    zhashx_destroy(&self->by_name);
    free(self);
    *self_p = NULL;
}

// Prometheus metric names: [a-zA-Z_:][a-zA-Z0-9_:]*
static bool s_valid_name(const char *name)
{
    if (!name || !*name || (*name >= '0' && *name <= '9'))
        return false;
    for (const char *p = name; *p; p++)
        if (!(*p == '_' || *p == ':' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9')))
            return false;
    return true;
}

static family_t *s_family_new(const char *name, const char *help, metric_type_t type)
{
    family_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->type = type;
    self->name = strdup(name);
    self->help = strdup(help ? help : "");
    self->by_labels = zhashx_new();
    if (!self->name || !self->help || !self->by_labels)
        s_family_destroy(&self);
    return self;
}

// The family called `name`, created on first use. NULL (and one line on
// stderr) when the name is taken by another type or is not a valid name.
static family_t *s_family(vmlet_metrics_t *self, const char *name, const char *help,
                          metric_type_t type)
{
    family_t *family = zhashx_lookup(self->by_name, name);
    if (family) {
        if (family->type == type)
            return family;
        fprintf(stderr, "vmlet_metrics: '%s' is registered as a %s, not a %s: use another name\n",
                name, type_names[family->type], type_names[type]);
        return NULL;
    }
    if (!s_valid_name(name)) {
        fprintf(stderr, "vmlet_metrics: '%s' is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)\n",
                name ? name : "(null)");
        return NULL;
    }
    family_t **families =
        s_reserve(self->families, self->n_families, &self->cap_families, sizeof *families);
    if (!families)
        return NULL;
    self->families = families;
    family = s_family_new(name, help, type);
    if (!family)
        return NULL;
    if (zhashx_insert(self->by_name, family->name, family) != 0) {
        s_family_destroy(&family);
        return NULL;
    }
    self->families[self->n_families++] = family;
    return family;
}

static vmlet_metric_t *s_metric_new(family_t *family, const char *labels, const double *bounds,
                                    size_t n_bounds)
{
    vmlet_metric_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->family = family;
    self->labels = strdup(labels);
    if (!self->labels)
        s_metric_destroy(&self);
    else if (family->type == TYPE_HISTOGRAM) {
        self->n_bounds = n_bounds;
        self->bounds = malloc((n_bounds ? n_bounds : 1) * sizeof *self->bounds);
        self->buckets = calloc(n_bounds + 1, sizeof *self->buckets);
        if (!self->bounds || !self->buckets)
            s_metric_destroy(&self);
        else if (n_bounds)
            memcpy(self->bounds, bounds, n_bounds * sizeof *bounds);
    }
    return self;
}

static vmlet_metric_t *s_register(vmlet_metrics_t *self, metric_type_t type, const char *name,
                                  const char *help, const char *labels, const double *bounds,
                                  size_t n_bounds)
{
    if (!self)
        return NULL;
    family_t *family = s_family(self, name, help, type);
    if (!family)
        return NULL;
    labels = labels ? labels : "";
    vmlet_metric_t *metric = zhashx_lookup(family->by_labels, labels);
    if (metric)
        return metric;
    vmlet_metric_t **series =
        s_reserve(family->series, family->n_series, &family->cap_series, sizeof *series);
    if (!series)
        return NULL;
    family->series = series;
    metric = s_metric_new(family, labels, bounds, n_bounds);
    if (!metric)
        return NULL;
    if (zhashx_insert(family->by_labels, metric->labels, metric) != 0) {
        s_metric_destroy(&metric);
        return NULL;
    }
    family->series[family->n_series++] = metric;
    return metric;
}

vmlet_metric_t *vmlet_metrics_counter(vmlet_metrics_t *self, const char *name, const char *help,
                                      const char *labels)
{
    return s_register(self, TYPE_COUNTER, name, help, labels, NULL, 0);
}

vmlet_metric_t *vmlet_metrics_gauge(vmlet_metrics_t *self, const char *name, const char *help,
                                    const char *labels)
{
    return s_register(self, TYPE_GAUGE, name, help, labels, NULL, 0);
}

vmlet_metric_t *vmlet_metrics_histogram(vmlet_metrics_t *self, const char *name, const char *help,
                                        const char *labels, const double *bounds, size_t n_bounds)
{
    // Unordered or non-finite bounds would render buckets that are not
    // cumulative, which Prometheus rejects; better to fail at registration.
    bool ordered = bounds || n_bounds == 0;
    for (size_t i = 0; ordered && i < n_bounds; i++)
        ordered = isfinite(bounds[i]) && (i == 0 || bounds[i] > bounds[i - 1]);
    if (!ordered) {
        fprintf(stderr, "vmlet_metrics: '%s': bucket bounds must be finite and increasing\n",
                name ? name : "(null)");
        return NULL;
    }
    return s_register(self, TYPE_HISTOGRAM, name, help, labels, bounds, n_bounds);
}

void vmlet_counter_add(vmlet_metric_t *counter, double delta)
{
    // A counter only goes up; a negative delta would make rate() see a reset.
    if (counter && counter->family->type == TYPE_COUNTER && delta >= 0)
        counter->value += delta;
}

void vmlet_counter_inc(vmlet_metric_t *counter)
{
    vmlet_counter_add(counter, 1);
}

void vmlet_gauge_set(vmlet_metric_t *gauge, double value)
{
    if (gauge && gauge->family->type == TYPE_GAUGE)
        gauge->value = value;
}

void vmlet_gauge_add(vmlet_metric_t *gauge, double delta)
{
    if (gauge && gauge->family->type == TYPE_GAUGE)
        gauge->value += delta;
}

void vmlet_histogram_observe(vmlet_metric_t *histogram, double value)
{
    // NaN belongs to no bucket and would poison the sum for good.
    if (!histogram || histogram->family->type != TYPE_HISTOGRAM || isnan(value))
        return;
    size_t i = 0;
    while (i < histogram->n_bounds && value > histogram->bounds[i])
        i++;
    histogram->buckets[i]++;
    histogram->sum += value;
    histogram->count++;
}

double vmlet_metric_value(const vmlet_metric_t *metric)
{
    if (!metric)
        return 0;
    return metric->family->type == TYPE_HISTOGRAM ? (double)metric->count : metric->value;
}

// Shortest text that reads back as the same double: "42", "0.1", "+Inf".
static void s_format_value(char *buf, size_t size, double value)
{
    if (isnan(value))
        snprintf(buf, size, "NaN");
    else if (isinf(value))
        snprintf(buf, size, value > 0 ? "+Inf" : "-Inf");
    else if (value == 0)
        snprintf(buf, size, "0"); // also -0, which would print as "-0"
    else if (value > -1e15 && value < 1e15 && value == (double)(long long)value)
        snprintf(buf, size, "%lld", (long long)value);
    else
        for (int precision = 15; precision <= 17; precision++) {
            snprintf(buf, size, "%.*g", precision, value);
            if (strtod(buf, NULL) == value)
                break;
        }
}

// HELP text escapes only backslash and newline (exposition format 0.0.4).
static void s_put_help(FILE *out, const char *help)
{
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", out);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
}

// One sample line: name+suffix, labels (plus an extra `le` label) and value.
static void s_put_sample(FILE *out, const char *name, const char *suffix, const char *labels,
                         const char *le, const char *value)
{
    fputs(name, out);
    fputs(suffix, out);
    if (*labels || le) {
        fputc('{', out);
        fputs(labels, out);
        if (le)
            fprintf(out, "%sle=\"%s\"", *labels ? "," : "", le);
        fputc('}', out);
    }
    fputc(' ', out);
    fputs(value, out);
    fputc('\n', out);
}

static void s_put_histogram(FILE *out, const char *name, const vmlet_metric_t *h)
{
    char le[32], value[32];
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cumulative += h->buckets[i];
        if (i < h->n_bounds)
            s_format_value(le, sizeof le, h->bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        snprintf(value, sizeof value, "%llu", (unsigned long long)cumulative);
        s_put_sample(out, name, "_bucket", h->labels, le, value);
    }
    s_format_value(value, sizeof value, h->sum);
    s_put_sample(out, name, "_sum", h->labels, NULL, value);
    snprintf(value, sizeof value, "%llu", (unsigned long long)h->count);
    s_put_sample(out, name, "_count", h->labels, NULL, value);
}

static void s_put_family(FILE *out, const family_t *family)
{
    if (family->n_series == 0)
        return; // only after a failed allocation; nothing worth announcing
    fprintf(out, "# HELP %s ", family->name);
    s_put_help(out, family->help);
    fprintf(out, "\n# TYPE %s %s\n", family->name, type_names[family->type]);
    for (size_t i = 0; i < family->n_series; i++) {
        const vmlet_metric_t *metric = family->series[i];
        if (family->type == TYPE_HISTOGRAM) {
            s_put_histogram(out, family->name, metric);
        } else {
            char value[32];
            s_format_value(value, sizeof value, metric->value);
            s_put_sample(out, family->name, "", metric->labels, NULL, value);
        }
    }
}

char *vmlet_metrics_render(const vmlet_metrics_t *self)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return NULL;
    for (size_t i = 0; self && i < self->n_families; i++)
        s_put_family(out, self->families[i]);
    bool failed = ferror(out) != 0;
    if (fclose(out) != 0 || failed) {
        free(text);
        return NULL;
    }
    return text;
}
