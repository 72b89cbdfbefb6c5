// Rendering: every command builds one cJSON document; `-o json` prints it
// as it is, the default prints tables of the same fields, so the two can
// never disagree.
#include "ctl.h"

#include "vmlet/quantity.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <inttypes.h>
#include <string.h>

static char *s_span(int64_t ms, char *buf, size_t cap)
{
    int64_t s = ms / 1000;
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(buf, cap, "%" PRId64 "s", s);
    else if (s < 120 * 60)
        snprintf(buf, cap, "%" PRId64 "m", s / 60);
    else if (s < 48 * 3600)
        snprintf(buf, cap, "%" PRId64 "h", s / 3600);
    else
        snprintf(buf, cap, "%" PRId64 "d", s / 86400);
    return buf;
}

// 335544320 -> 320Mi, 1610612736 -> 1.5Gi: the largest binary unit, one
// decimal only when it is not whole (people read these, scripts use JSON).
static char *s_bytes(int64_t n, char *buf, size_t cap)
{
    static const char *const units[] = {"Ki", "Mi", "Gi", "Ti", "Pi"};
    int u = -1;
    double v = (double)n;
    while (u < 4 && v >= 1024) {
        v /= 1024;
        u++;
    }
    if (u < 0)
        snprintf(buf, cap, "%" PRId64, n);
    else if (v == (double)(int64_t)v)
        snprintf(buf, cap, "%" PRId64 "%s", (int64_t)v, units[u]);
    else
        snprintf(buf, cap, "%.1f%s", v, units[u]);
    return buf;
}

char *ctl_cell(const cJSON *v, ctl_col_fmt_t fmt, char *buf, size_t cap)
{
    if (cJSON_IsString(v)) {
        snprintf(buf, cap, "%s", v->valuestring[0] ? v->valuestring : "-");
        return buf;
    }
    if (cJSON_IsBool(v)) {
        snprintf(buf, cap, "%s", cJSON_IsTrue(v) ? "yes" : "no");
        return buf;
    }
    if (!cJSON_IsNumber(v)) {
        snprintf(buf, cap, "-");
        return buf;
    }
    int64_t n = (int64_t)v->valuedouble;
    switch (fmt) {
    case COL_BYTES:
        return s_bytes(n, buf, cap);
    case COL_MILLI:
        return vmlet_quantity_format_milli(n, buf, cap);
    case COL_AGE:
        return n > 0 ? s_span(vmlet_unix_ms() - n, buf, cap) : (snprintf(buf, cap, "-"), buf);
    case COL_UNTIL:
        return n > vmlet_unix_ms() ? s_span(n - vmlet_unix_ms() + 999, buf, cap)
                                   : (snprintf(buf, cap, "now"), buf);
    case COL_TEXT:
        break;
    }
    snprintf(buf, cap, "%" PRId64, n);
    return buf;
}

void ctl_table(FILE *out, const cJSON *rows, const ctl_column_t *cols, size_t n_cols,
               const char *what)
{
    int n_rows = cJSON_GetArraySize(rows);
    if (n_rows == 0) {
        fprintf(out, "No %s.\n", what);
        return;
    }
    // Cells first: the widths depend on every row.
    char **cells = vmlet_xcalloc((size_t)n_rows * n_cols, sizeof *cells);
    size_t *width = vmlet_xcalloc(n_cols, sizeof *width);
    for (size_t k = 0; k < n_cols; k++)
        width[k] = strlen(cols[k].header);
    for (int r = 0; r < n_rows; r++) {
        const cJSON *row = cJSON_GetArrayItem(rows, r);
        for (size_t k = 0; k < n_cols; k++) {
            char buf[1024];
            ctl_cell(cJSON_GetObjectItemCaseSensitive(row, cols[k].key), cols[k].fmt, buf,
                     sizeof buf);
            cells[(size_t)r * n_cols + k] = vmlet_xstrdup(buf);
            if (strlen(buf) > width[k])
                width[k] = strlen(buf);
        }
    }
    for (int r = -1; r < n_rows; r++) {
        for (size_t k = 0; k < n_cols; k++) {
            const char *text = r < 0 ? cols[k].header : cells[(size_t)r * n_cols + k];
            if (k + 1 < n_cols)
                fprintf(out, "%-*s   ", (int)width[k], text);
            else
                fprintf(out, "%s\n", text);
        }
    }
    for (size_t i = 0; i < (size_t)n_rows * n_cols; i++)
        free(cells[i]);
    free(cells);
    free(width);
}

void ctl_print_json(FILE *out, const cJSON *doc)
{
    char *text = cJSON_Print(doc);
    fprintf(out, "%s\n", text ? text : "null");
    free(text);
}

void ctl_add_int(cJSON *obj, const char *key, bool has, int64_t value)
{
    if (has)
        cJSON_AddNumberToObject(obj, key, (double)value);
}

void ctl_add_str(cJSON *obj, const char *key, const char *value)
{
    if (value)
        cJSON_AddStringToObject(obj, key, value);
}
