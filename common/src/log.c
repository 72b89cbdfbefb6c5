// Structured one-line logging (see log.h).
#include "vmlet/log.h"

#include <stdbool.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define LINE_MAX_BYTES 4096

struct _vmlet_log_t {
    char *service;
    bool json;
    vmlet_log_level_t min_level;
    int fd;
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

vmlet_log_t *vmlet_log_new(const char *service, const char *format, const char *level,
                           vmlet_err_t *err)
{
    bool json;
    if (strcmp(format, "text") == 0)
        json = false;
    else if (strcmp(format, "json") == 0)
        json = true;
    else {
        vmlet_err_set(err, "log format '%s': must be text or json", format);
        return NULL;
    }
    int min_level = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(level, level_names[i]) == 0)
            min_level = i;
    if (min_level < 0) {
        vmlet_err_set(err, "log level '%s': must be debug, info, warn or error", level);
        return NULL;
    }
    vmlet_log_t *self = calloc(1, sizeof *self);
    if (!self || !(self->service = strdup(service))) {
        free(self);
        vmlet_err_set(err, "log: out of memory");
        return NULL;
    }
    self->json = json;
    self->min_level = (vmlet_log_level_t)min_level;
    self->fd = STDERR_FILENO;
    return self;
}

void vmlet_log_destroy(vmlet_log_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->service);
    free(*self_p);
    *self_p = NULL;
}

void vmlet_log_set_fd(vmlet_log_t *self, int fd)
{
    if (self)
        self->fd = fd;
}

// A bounded appender: writes never overflow; the line is cut if it must be.
typedef struct {
    char *buf;
    size_t len, cap;
} line_t;

static void s_put(line_t *line, const char *s, size_t n)
{
    if (line->len + n > line->cap)
        n = line->cap - line->len;
    memcpy(line->buf + line->len, s, n);
    line->len += n;
}

static void s_puts(line_t *line, const char *s)
{
    s_put(line, s, strlen(s));
}

// JSON string body, escaped (no quotes added).
static void s_put_json_escaped(line_t *line, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            s_put(line, esc, 2);
        } else if (*p == '\n') {
            s_puts(line, "\\n");
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            s_puts(line, esc);
        } else {
            s_put(line, (const char *)p, 1);
        }
    }
}

// Text values are bare when they hold no space, quote or '='; else quoted.
static void s_put_text_value(line_t *line, const char *s)
{
    if (*s && !strpbrk(s, " \t\n\"=")) {
        s_puts(line, s);
        return;
    }
    s_puts(line, "\"");
    s_put_json_escaped(line, s);
    s_puts(line, "\"");
}

static void s_put_field(line_t *line, bool json, const char *key, const char *value)
{
    if (json) {
        s_puts(line, ",\"");
        s_put_json_escaped(line, key);
        s_puts(line, "\":\"");
        s_put_json_escaped(line, value ? value : "");
        s_puts(line, "\"");
    } else {
        s_puts(line, " ");
        s_puts(line, key);
        s_puts(line, "=");
        s_put_text_value(line, value ? value : "");
    }
}

void vmlet_log_write(vmlet_log_t *self, vmlet_log_level_t level, const vmlet_kv_t *fields,
                     const char *fmt, ...)
{
    if (!self || level < self->min_level)
        return;
    char msg[LINE_MAX_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", (long)(tv.tv_usec / 1000));

    char buf[LINE_MAX_BYTES + 512];
    line_t line = {buf, 0, sizeof buf - 1};
    if (self->json) {
        s_puts(&line, "{\"ts\":\"");
        s_puts(&line, ts);
        s_puts(&line, "\"");
        s_put_field(&line, true, "level", level_names[level]);
        s_put_field(&line, true, "service", self->service);
    } else {
        s_puts(&line, ts);
        s_puts(&line, " ");
        s_puts(&line, level_names[level]);
        s_puts(&line, " ");
        s_puts(&line, self->service);
    }
    for (const vmlet_kv_t *kv = fields; kv && kv->key; kv++)
        s_put_field(&line, self->json, kv->key, kv->value);
    s_put_field(&line, self->json, "msg", msg);
    if (self->json)
        s_puts(&line, "}");
    line.cap = sizeof buf; // room kept for the newline even when cut
    s_puts(&line, "\n");
    ssize_t ignored = write(self->fd, buf, line.len);
    (void)ignored;
}
