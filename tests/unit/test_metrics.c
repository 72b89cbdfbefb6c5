// Unit tests for the metrics registry and its Prometheus text exposition.
#include "testsupport.h"
#include "vmlet/metrics.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Splits rendered text into lines, checking it ends with a newline (or is
// empty) as the format requires. Caller frees lines[0] and lines.
static char **s_lines(char *text, size_t *n)
{
    size_t len = strlen(text);
    assert_true(len == 0 || text[len - 1] == '\n');
    char **lines = calloc(len + 1, sizeof *lines);
    assert_non_null(lines);
    *n = 0;
    for (char *line = text; *line;) {
        char *eol = strchr(line, '\n');
        *eol = '\0';
        lines[(*n)++] = line;
        line = eol + 1;
    }
    return lines;
}

// Asserts the registry renders exactly `expected` (NULL-terminated), line by line.
static void s_assert_render(const vmlet_metrics_t *metrics, const char *const *expected)
{
    char *text = vmlet_metrics_render(metrics);
    assert_non_null(text);
    size_t n;
    char **lines = s_lines(text, &n);
    size_t i = 0;
    for (; expected[i]; i++) {
        assert_true(i < n);
        assert_string_equal(lines[i], expected[i]);
    }
    assert_int_equal(n, i);
    free(lines);
    free(text);
}

static void test_empty_registry(void **state)
{
    (void)state;
    vmlet_metrics_t *metrics = vmlet_metrics_new();
    assert_non_null(metrics);
    char *text = vmlet_metrics_render(metrics);
    assert_string_equal(text, "");
    free(text);
    vmlet_metrics_destroy(&metrics);
    assert_null(metrics);
    vmlet_metrics_destroy(&metrics); // safe twice
    vmlet_metrics_destroy(NULL);
}

static void test_counter(void **state)
{
    (void)state;
    vmlet_metrics_t *metrics = vmlet_metrics_new();
    vmlet_metric_t *plain =
        vmlet_metrics_counter(metrics, "vmlet_test_requests_total", "Requests served.", NULL);
    vmlet_metric_t *ok = vmlet_metrics_counter(metrics, "vmlet_test_requests_total",
                                               "Requests served.", "code=\"200\"");
    vmlet_metric_t *empty =
        vmlet_metrics_counter(metrics, "vmlet_test_requests_total", "Requests served.", "");
    assert_non_null(plain);
    assert_non_null(ok);
    assert_ptr_not_equal(plain, ok);
    assert_ptr_equal(plain, empty); // NULL and "" are the same series
    for (int i = 0; i < 3; i++)
        vmlet_counter_inc(plain);
    vmlet_counter_add(ok, 2.5);
    vmlet_counter_add(ok, -1); // ignored: counters never go down
    assert_true(vmlet_metric_value(plain) == 3);
    assert_true(vmlet_metric_value(ok) == 2.5);
    s_assert_render(metrics, (const char *const[]){
                                 "# HELP vmlet_test_requests_total Requests served.",
                                 "# TYPE vmlet_test_requests_total counter",
                                 "vmlet_test_requests_total 3",
                                 "vmlet_test_requests_total{code=\"200\"} 2.5",
                                 NULL,
                             });
    vmlet_metrics_destroy(&metrics);
}

static void test_gauge_values(void **state)
{
    (void)state;
    vmlet_metrics_t *metrics = vmlet_metrics_new();
    const char *names[] = {"g_int", "g_neg", "g_tenth", "g_third", "g_big",
                           "g_nan", "g_inf", "g_ninf",  "g_zero"};
    double values[] = {42, -1.25, 0.1, 1.0 / 3, 1e20, NAN, INFINITY, -INFINITY, -0.0};
    const char *texts[] = {"42",   "-1.25", "0.1", "0.3333333333333333", "1e+20", "NaN",
                           "+Inf", "-Inf",  "0"};
    for (size_t i = 0; i < 9; i++)
        vmlet_gauge_set(vmlet_metrics_gauge(metrics, names[i], "A gauge.", NULL), values[i]);
    vmlet_metric_t *in_flight = vmlet_metrics_gauge(metrics, "g_labels", "", "pool=\"a\"");
    vmlet_gauge_set(in_flight, 5);
    vmlet_gauge_add(in_flight, -7);
    assert_true(vmlet_metric_value(in_flight) == -2);

    char *text = vmlet_metrics_render(metrics);
    assert_non_null(text);
    for (size_t i = 0; i < 9; i++) {
        char line[128];
        snprintf(line, sizeof line, "\n%s %s\n", names[i], texts[i]);
        if (!strstr(text, line))
            fail_msg("missing '%s' in:\n%s", line + 1, text);
        assert_true(isnan(values[i]) || ts_metric_value(text, names[i]) == values[i]);
    }
    assert_non_null(
        strstr(text, "# HELP g_labels \n# TYPE g_labels gauge\ng_labels{pool=\"a\"} -2\n"));
    free(text);
    vmlet_metrics_destroy(&metrics);
}

static void test_families_grouped_in_registration_order(void **state)
{
    (void)state;
    vmlet_metrics_t *metrics = vmlet_metrics_new();
    vmlet_counter_inc(vmlet_metrics_counter(metrics, "a_total", "A.", "x=\"1\""));
    vmlet_gauge_set(vmlet_metrics_gauge(metrics, "b", "B.", NULL), 7);
    vmlet_counter_inc(vmlet_metrics_counter(metrics, "a_total", "A again.", "x=\"2\""));
    vmlet_counter_inc(vmlet_metrics_counter(metrics, "a_total", "A.", "x=\"1\""));
    s_assert_render(metrics, (const char *const[]){
                                 "# HELP a_total A.", // the first help wins
                                 "# TYPE a_total counter",
                                 "a_total{x=\"1\"} 2",
                                 "a_total{x=\"2\"} 1",
                                 "# HELP b B.",
                                 "# TYPE b gauge",
                                 "b 7",
                                 NULL,
                             });
    vmlet_metrics_destroy(&metrics);
}

static void test_help_escaping(void **state)
{
    (void)state;
    vmlet_metrics_t *metrics = vmlet_metrics_new();
    vmlet_metrics_gauge(metrics, "escaped", "two\nlines with a \\ and \"quotes\"", NULL);
    vmlet_metrics_gauge(metrics, "no_help", NULL, NULL);
    s_assert_render(metrics, (const char *const[]){
                                 "# HELP escaped two\\nlines with a \\\\ and \"quotes\"",
                                 "# TYPE escaped gauge",
                                 "escaped 0",
                                 "# HELP no_help ",
                                 "# TYPE no_help gauge",
                                 "no_help 0",
                                 NULL,
                             });
    vmlet_metrics_destroy(&metrics);
}

static void test_histogram(void **state)
{
    (void)state;
    vmlet_metrics_t *metrics = vmlet_metrics_new();
    const double bounds[] = {0.125, 1, 8};
    vmlet_metric_t *plain =
        vmlet_metrics_histogram(metrics, "h_seconds", "Latency.", NULL, bounds, 3);
    vmlet_metric_t *get =
        vmlet_metrics_histogram(metrics, "h_seconds", "Latency.", "op=\"get\"", bounds, 3);
    assert_ptr_equal(plain, vmlet_metrics_histogram(metrics, "h_seconds", "", NULL, bounds, 3));
    // Powers of two, so the sum is exact; 0.125 sits on a bound (le is inclusive).
    const double seen[] = {0.0625, 0.125, 0.5, 4, 64, NAN};
    for (size_t i = 0; i < 6; i++)
        vmlet_histogram_observe(plain, seen[i]);
    vmlet_histogram_observe(get, 2);
    assert_true(vmlet_metric_value(plain) == 5);
    s_assert_render(metrics, (const char *const[]){
                                 "# HELP h_seconds Latency.",
                                 "# TYPE h_seconds histogram",
                                 "h_seconds_bucket{le=\"0.125\"} 2",
                                 "h_seconds_bucket{le=\"1\"} 3",
                                 "h_seconds_bucket{le=\"8\"} 4",
                                 "h_seconds_bucket{le=\"+Inf\"} 5",
                                 "h_seconds_sum 68.6875",
                                 "h_seconds_count 5",
                                 "h_seconds_bucket{op=\"get\",le=\"0.125\"} 0",
                                 "h_seconds_bucket{op=\"get\",le=\"1\"} 0",
                                 "h_seconds_bucket{op=\"get\",le=\"8\"} 1",
                                 "h_seconds_bucket{op=\"get\",le=\"+Inf\"} 1",
                                 "h_seconds_sum{op=\"get\"} 2",
                                 "h_seconds_count{op=\"get\"} 1",
                                 NULL,
                             });
    vmlet_metrics_destroy(&metrics);
}

// Every bucket line of a histogram with the default bounds is cumulative and
// the +Inf bucket equals the count.
static void test_latency_bounds(void **state)
{
    (void)state;
    size_t n = vmlet_metrics_latency_bounds_n;
    assert_in_range(n, 10, 20);
    assert_true(vmlet_metrics_latency_bounds[0] == 0.0005);
    assert_true(vmlet_metrics_latency_bounds[n - 1] == 10);
    for (size_t i = 1; i < n; i++)
        assert_true(vmlet_metrics_latency_bounds[i] > vmlet_metrics_latency_bounds[i - 1]);

    vmlet_metrics_t *metrics = vmlet_metrics_new();
    vmlet_metric_t *h = vmlet_metrics_histogram(metrics, "lat_seconds", "L.", NULL,
                                                vmlet_metrics_latency_bounds, n);
    for (int i = 0; i < 1000; i++)
        vmlet_histogram_observe(h, i * 0.013);
    char *text = vmlet_metrics_render(metrics);
    assert_true(ts_metric_value(text, "lat_seconds_bucket{le=\"0.0005\"}") == 1); // just 0
    assert_true(ts_metric_value(text, "lat_seconds_bucket{le=\"1\"}") == 77);     // 0..76
    size_t n_lines;
    char **lines = s_lines(text, &n_lines); // cuts text into lines
    assert_int_equal(n_lines, 2 + (n + 1) + 2);
    double previous = 0;
    for (size_t i = 2; i < 2 + n + 1; i++) {
        assert_memory_equal(lines[i], "lat_seconds_bucket{le=\"", 23);
        double cumulative = strtod(strrchr(lines[i], ' ') + 1, NULL);
        assert_true(cumulative >= previous);
        previous = cumulative;
    }
    assert_string_equal(lines[2 + n], "lat_seconds_bucket{le=\"+Inf\"} 1000");
    assert_string_equal(lines[2 + n + 2], "lat_seconds_count 1000");
    free(lines);
    free(text);
    vmlet_metrics_destroy(&metrics);
}

// Runs fn with stderr sent to a file; returns how many lines it printed.
static int s_stderr_lines(void (*fn)(vmlet_metrics_t *), vmlet_metrics_t *metrics)
{
    FILE *capture = tmpfile();
    assert_non_null(capture);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(capture), STDERR_FILENO);
    fn(metrics);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(capture);
    int lines = 0, c;
    while ((c = fgetc(capture)) != EOF)
        lines += c == '\n';
    fclose(capture);
    return lines;
}

static void s_clash(vmlet_metrics_t *metrics)
{
    assert_null(vmlet_metrics_gauge(metrics, "clash_total", "", NULL));
    assert_null(vmlet_metrics_histogram(metrics, "clash_total", "", NULL, NULL, 0));
}

static void s_bad_registrations(vmlet_metrics_t *metrics)
{
    const double unordered[] = {1, 0.5};
    const double nan_bound[] = {NAN};
    assert_null(vmlet_metrics_counter(metrics, "9starts_with_digit", "", NULL));
    assert_null(vmlet_metrics_counter(metrics, "has-dash", "", NULL));
    assert_null(vmlet_metrics_counter(metrics, "", "", NULL));
    assert_null(vmlet_metrics_histogram(metrics, "h1", "", NULL, unordered, 2));
    assert_null(vmlet_metrics_histogram(metrics, "h2", "", NULL, nan_bound, 1));
    assert_null(vmlet_metrics_histogram(metrics, "h3", "", NULL, NULL, 2));
}

static void test_type_clash_and_bad_names(void **state)
{
    (void)state;
    vmlet_metrics_t *metrics = vmlet_metrics_new();
    vmlet_metric_t *counter = vmlet_metrics_counter(metrics, "clash_total", "C.", NULL);
    assert_non_null(counter);
    assert_int_equal(s_stderr_lines(s_clash, metrics), 2); // one line per clash
    // Same name, same type, other labels: still fine.
    assert_non_null(vmlet_metrics_counter(metrics, "clash_total", "C.", "a=\"b\""));
    assert_int_equal(s_stderr_lines(s_bad_registrations, metrics), 6);
    // A histogram with no bounds has only the +Inf bucket.
    vmlet_histogram_observe(vmlet_metrics_histogram(metrics, "only_inf", "", NULL, NULL, 0), 3);
    s_assert_render(metrics, (const char *const[]){
                                 "# HELP clash_total C.",
                                 "# TYPE clash_total counter",
                                 "clash_total 0",
                                 "clash_total{a=\"b\"} 0",
                                 "# HELP only_inf ",
                                 "# TYPE only_inf histogram",
                                 "only_inf_bucket{le=\"+Inf\"} 1",
                                 "only_inf_sum 3",
                                 "only_inf_count 1",
                                 NULL,
                             });
    vmlet_metrics_destroy(&metrics);
}

// Updates through NULL or a handle of the wrong type do nothing.
static void test_null_and_wrong_type_updates(void **state)
{
    (void)state;
    vmlet_counter_inc(NULL);
    vmlet_counter_add(NULL, 1);
    vmlet_gauge_set(NULL, 1);
    vmlet_gauge_add(NULL, 1);
    vmlet_histogram_observe(NULL, 1);
    assert_true(vmlet_metric_value(NULL) == 0);
    assert_null(vmlet_metrics_counter(NULL, "x", "", NULL));

    vmlet_metrics_t *metrics = vmlet_metrics_new();
    vmlet_metric_t *counter = vmlet_metrics_counter(metrics, "c_total", "", NULL);
    vmlet_metric_t *gauge = vmlet_metrics_gauge(metrics, "g", "", NULL);
    vmlet_histogram_observe(counter, 5);
    vmlet_histogram_observe(gauge, 5);
    vmlet_gauge_set(counter, 5);
    vmlet_counter_inc(gauge);
    assert_true(vmlet_metric_value(counter) == 0);
    assert_true(vmlet_metric_value(gauge) == 0);
    vmlet_metrics_destroy(&metrics);
}

// Many series: lookups stay correct as the tables grow.
static void test_many_series(void **state)
{
    (void)state;
    vmlet_metrics_t *metrics = vmlet_metrics_new();
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 500; i++) {
            char labels[32];
            snprintf(labels, sizeof labels, "n=\"%d\"", i);
            vmlet_counter_add(vmlet_metrics_counter(metrics, "many_total", "", labels), i);
        }
    char *text = vmlet_metrics_render(metrics);
    assert_true(ts_metric_value(text, "many_total{n=\"0\"}") == 0);
    assert_true(ts_metric_value(text, "many_total{n=\"499\"}") == 998);
    assert_int_equal(strstr(text, "many_total{n=\"1\"}") < strstr(text, "many_total{n=\"2\"}"), 1);
    free(text);
    vmlet_metrics_destroy(&metrics);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_registry),
        cmocka_unit_test(test_counter),
        cmocka_unit_test(test_gauge_values),
        cmocka_unit_test(test_families_grouped_in_registration_order),
        cmocka_unit_test(test_help_escaping),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_latency_bounds),
        cmocka_unit_test(test_type_clash_and_bad_names),
        cmocka_unit_test(test_null_and_wrong_type_updates),
        cmocka_unit_test(test_many_series),
    };
    return TS_RUN(tests);
}
