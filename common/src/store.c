// Redis connection with reconnect, back-off and AUTH (see store.h).
#include "vmlet/store.h"
#include "vmlet/backoff.h"
#include "vmlet/timeutil.h"

#include <errno.h>
#include <string.h>

#define CONNECT_TIMEOUT_MS 1000
#define COMMAND_TIMEOUT_MS 5000

static const vmlet_backoff_policy_t reconnect_policy = {
    .initial_ms = 100, .max_ms = 5000, .multiplier = 2, .jitter = 0.3};

struct _vmlet_store_t {
    char host[256];
    int port;
    int db;
    char user[128];
    char *password;
    char described[300];
    redisContext *ctx;
    vmlet_backoff_t backoff;
    vmlet_log_t *log;
    vmlet_metric_t *connected_gauge;
    vmlet_metric_t *reconnects;
    vmlet_metric_t *errors;
};

// Parses redis://[[user]:password@]host[:port][/db]; the password is
// returned separately (caller frees).
static int s_parse_url(vmlet_store_t *self, const char *url, char **password, vmlet_err_t *err)
{
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0)
        return vmlet_err_set(err, "redis url '%s': must start with redis://", url);
    p += 8;
    const char *at = strrchr(p, '@');
    *password = NULL;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return vmlet_err_set(err, "redis url: credentials must be [user]:password@");
        snprintf(self->user, sizeof self->user, "%.*s", (int)(colon - p), p);
        *password = strndup(colon + 1, (size_t)(at - colon - 1));
        p = at + 1;
    }
    size_t host_len = strcspn(p, ":/");
    if (host_len == 0 || host_len >= sizeof self->host)
        return vmlet_err_set(err, "redis url: missing or overlong host");
    memcpy(self->host, p, host_len);
    self->host[host_len] = '\0';
    p += host_len;
    self->port = 6379;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535)
            return vmlet_err_set(err, "redis url: bad port");
        self->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long db = strtol(p + 1, &end, 10);
        if (*end || db < 0 || db > 1000)
            return vmlet_err_set(err, "redis url: bad database number '%s'", p + 1);
        self->db = (int)db;
    }
    return 0;
}

vmlet_store_t *vmlet_store_new(const char *url, const char *password, vmlet_log_t *log,
                               vmlet_metrics_t *metrics, vmlet_err_t *err)
{
    vmlet_store_t *self = calloc(1, sizeof *self);
    if (!self) {
        vmlet_err_set(err, "store: out of memory");
        return NULL;
    }
    char *url_password = NULL;
    if (s_parse_url(self, url, &url_password, err) < 0) {
        free(url_password);
        free(self);
        return NULL;
    }
    if (password && password[0]) {
        free(url_password);
        url_password = strdup(password);
    }
    self->password = url_password;
    snprintf(self->described, sizeof self->described, "%s:%d/%d", self->host, self->port,
             self->db);
    self->log = log;
    vmlet_backoff_init(&self->backoff, &reconnect_policy);
    self->connected_gauge = vmlet_metrics_gauge(metrics, "vmlet_redis_connected",
                                                "1 while connected to Redis.", NULL);
    self->reconnects = vmlet_metrics_counter(metrics, "vmlet_redis_connects_total",
                                             "Successful connections to Redis.", NULL);
    self->errors = vmlet_metrics_counter(metrics, "vmlet_redis_errors_total",
                                         "Failed Redis connections and commands.", NULL);
    return self;
}

static void s_disconnect(vmlet_store_t *self)
{
    if (self->ctx) {
        redisFree(self->ctx);
        self->ctx = NULL;
        vmlet_gauge_set(self->connected_gauge, 0);
    }
}

void vmlet_store_destroy(vmlet_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmlet_store_t *self = *self_p;
    s_disconnect(self);
    if (self->password) {
        explicit_bzero(self->password, strlen(self->password));
        free(self->password);
    }
    free(self);
    *self_p = NULL;
}

// Sends the setup commands (AUTH, SELECT) on a fresh connection.
static int s_setup(vmlet_store_t *self, vmlet_err_t *err)
{
    redisReply *r = NULL;
    if (self->password && self->user[0])
        r = redisCommand(self->ctx, "AUTH %s %s", self->user, self->password);
    else if (self->password)
        r = redisCommand(self->ctx, "AUTH %s", self->password);
    if (self->password && (!r || r->type == REDIS_REPLY_ERROR)) {
        vmlet_err_set(err, "redis %s: AUTH failed: %s (check the redis password)",
                      self->described, r ? r->str : self->ctx->errstr);
        freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    if (self->db == 0)
        return 0;
    r = redisCommand(self->ctx, "SELECT %d", self->db);
    int rc = (!r || r->type == REDIS_REPLY_ERROR) ? -1 : 0;
    if (rc < 0)
        vmlet_err_set(err, "redis %s: SELECT failed: %s", self->described,
                      r ? r->str : self->ctx->errstr);
    freeReplyObject(r);
    return rc;
}

static int s_fail_connect(vmlet_store_t *self, vmlet_err_t *err)
{
    s_disconnect(self);
    vmlet_counter_inc(self->errors);
    int64_t delay = vmlet_backoff_failed(&self->backoff, vmlet_now_ms(), vmlet_random01());
    if (self->backoff.attempt == 1 || self->backoff.attempt % 10 == 0)
        vmlet_log_warn(self->log, VMLET_KV({"redis", self->described}),
                       "cannot connect (attempt %u, next in %lld ms): %s", self->backoff.attempt,
                       (long long)delay, err ? err->msg : "");
    return -1;
}

int vmlet_store_ensure(vmlet_store_t *self, vmlet_err_t *err)
{
    if (self->ctx)
        return 0;
    if (!vmlet_backoff_may_try(&self->backoff, vmlet_now_ms()))
        return vmlet_err_set(err, "redis %s: not connected (retrying after back-off)",
                             self->described);
    struct timeval tv = {CONNECT_TIMEOUT_MS / 1000, (CONNECT_TIMEOUT_MS % 1000) * 1000};
    self->ctx = redisConnectWithTimeout(self->host, self->port, tv);
    if (!self->ctx || self->ctx->err) {
        vmlet_err_set(err, "redis %s: connect: %s", self->described,
                      self->ctx ? self->ctx->errstr : "out of memory");
        return s_fail_connect(self, err);
    }
    struct timeval cmd_tv = {COMMAND_TIMEOUT_MS / 1000, 0};
    redisSetTimeout(self->ctx, cmd_tv);
    if (s_setup(self, err) < 0)
        return s_fail_connect(self, err);
    bool was_retrying = self->backoff.attempt > 0;
    vmlet_backoff_succeeded(&self->backoff);
    vmlet_gauge_set(self->connected_gauge, 1);
    vmlet_counter_inc(self->reconnects);
    vmlet_log_info(self->log, VMLET_KV({"redis", self->described}), "%s",
                   was_retrying ? "reconnected" : "connected");
    return 0;
}

// Turns a reply (or its absence) into the result of a command.
static redisReply *s_result(vmlet_store_t *self, redisReply *r, const char *command,
                            vmlet_err_t *err)
{
    if (!r) {
        vmlet_err_set(err, "redis %s: %s: %s", self->described, command,
                      self->ctx->errstr[0] ? self->ctx->errstr : "connection lost");
        vmlet_counter_inc(self->errors);
        s_disconnect(self);
        vmlet_backoff_failed(&self->backoff, vmlet_now_ms(), vmlet_random01());
        vmlet_log_warn(self->log, VMLET_KV({"redis", self->described}), "%s", err ? err->msg : "");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        vmlet_err_set(err, "redis %s: %s: %s", self->described, command, r->str);
        vmlet_counter_inc(self->errors);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

redisReply *vmlet_store_command(vmlet_store_t *self, vmlet_err_t *err, const char *fmt, ...)
{
    if (vmlet_store_ensure(self, err) < 0)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(self->ctx, fmt, ap);
    va_end(ap);
    char command[32];
    snprintf(command, sizeof command, "%.*s", (int)strcspn(fmt, " "), fmt);
    return s_result(self, r, command, err);
}

redisReply *vmlet_store_commandv(vmlet_store_t *self, vmlet_err_t *err, int argc,
                                 const char **argv, const size_t *argvlen)
{
    if (vmlet_store_ensure(self, err) < 0)
        return NULL;
    redisReply *r = redisCommandArgv(self->ctx, argc, argv, argvlen);
    char command[32];
    snprintf(command, sizeof command, "%.*s", argc > 0 ? (int)(argvlen ? argvlen[0] : strlen(argv[0])) : 0,
             argc > 0 ? argv[0] : "");
    return s_result(self, r, command, err);
}

bool vmlet_store_connected(const vmlet_store_t *self)
{
    return self->ctx != NULL;
}

const char *vmlet_store_describe(const vmlet_store_t *self)
{
    return self->described;
}

const char *vmlet_store_reply_field(const redisReply *r, const char *name, size_t *len)
{
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        if (r->element[i]->str && strcmp(r->element[i]->str, name) == 0) {
            if (len)
                *len = r->element[i + 1]->len;
            return r->element[i + 1]->str;
        }
    return NULL;
}
