// Registry auth: WWW-Authenticate challenges, Bearer tokens from the realm
// (Docker's token spec, and its OAuth2 form for identity tokens) cached per
// registry, scope and credentials, and Basic where the registry asks.
#include "registry_internal.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define S_DEFAULT_EXPIRES_S 60 // the token spec's default for a missing expires_in
#define S_MARGIN_S 10          // a token is renewed this long before it expires
#define S_FP_LEN 65

struct reg_token {
    reg_token_t *next;
    char *domain;
    char *scope;        // NULL for a Basic entry (any scope)
    char fp[S_FP_LEN];  // whose credentials: a hash, never the secret itself
    char *token;        // NULL for Basic
    int64_t expires_ms; // monotonic
};

// --- WWW-Authenticate ------------------------------------------------------------

// Reads a token68/token at p (up to a separator); returns its length.
static size_t s_token(const char *p)
{
    return strcspn(p, " \t,=\"");
}

// Reads a quoted-string or token at *p into a new string; advances *p.
static char *s_value(const char **p)
{
    const char *s = *p;
    if (*s != '"') {
        size_t n = strcspn(s, " \t,");
        *p = s + n;
        return vmlet_xstrndup(s, n);
    }
    char *out = vmlet_xmalloc(strlen(s) + 1), *o = out;
    for (s++; *s && *s != '"'; s++) {
        if (*s == '\\' && s[1])
            s++;
        *o++ = *s;
    }
    *o = '\0';
    *p = *s == '"' ? s + 1 : s;
    return out;
}

static void s_set_param(reg_challenge_t *c, const char *name, size_t n, char *value)
{
    static const char *const names[] = {"realm", "service", "scope", "error"};
    char **fields[] = {&c->realm, &c->service, &c->scope, &c->error};
    for (size_t i = 0; i < 4; i++)
        if (strlen(names[i]) == n && strncasecmp(name, names[i], n) == 0 && !*fields[i]) {
            *fields[i] = value;
            return;
        }
    free(value);
}

// The challenge a scheme name starts: one of ours, or NULL (ignored).
static reg_challenge_t *s_scheme(const char *name, size_t n, reg_challenge_t *bearer,
                                 reg_challenge_t *basic)
{
    reg_challenge_t *c = NULL;
    if (n == 6 && strncasecmp(name, "Bearer", 6) == 0)
        c = bearer;
    else if (n == 5 && strncasecmp(name, "Basic", 5) == 0)
        c = basic;
    if (c && c->scheme)
        return NULL; // a second challenge of the same scheme: keep the first
    if (c)
        c->scheme = vmlet_xstrndup(name, n);
    return c;
}

static void s_parse(const char *p, reg_challenge_t *bearer, reg_challenge_t *basic)
{
    reg_challenge_t *current = NULL;
    for (;;) {
        p += strspn(p, " \t,");
        if (!*p)
            return;
        size_t n = s_token(p);
        if (n == 0) { // stray '=' or a quoted string out of place
            if (*p == '"')
                free(s_value(&p));
            else
                p++;
            continue;
        }
        const char *name = p, *q = p + n;
        q += strspn(q, " \t");
        if (*q == '=' && q[1] != '=') { // name=value, not token68 padding
            q++;
            q += strspn(q, " \t");
            char *value = s_value(&q);
            if (current)
                s_set_param(current, name, n, value);
            else
                free(value);
            p = q;
        } else {
            current = s_scheme(name, n, bearer, basic);
            p = name + n;
        }
    }
}

int reg_parse_challenge(const char *header, reg_challenge_t *out)
{
    reg_challenge_t bearer = {0}, basic = {0};
    memset(out, 0, sizeof *out);
    if (!header)
        return -1;
    s_parse(header, &bearer, &basic);
    if (bearer.scheme) {
        *out = bearer;
        reg_challenge_clear(&basic);
        return 0;
    }
    reg_challenge_clear(&bearer);
    *out = basic;
    return basic.scheme ? 0 : -1;
}

void reg_challenge_clear(reg_challenge_t *c)
{
    free(c->scheme);
    free(c->realm);
    free(c->service);
    free(c->scope);
    free(c->error);
    memset(c, 0, sizeof *c);
}

// --- the cache -----------------------------------------------------------------------

// Tells credentials apart without keeping them: sha256 of all three.
static void s_fingerprint(const registry_cred_t *cred, char out[S_FP_LEN])
{
    const char *parts[3] = {cred ? cred->username : NULL, cred ? cred->password : NULL,
                            cred ? cred->identity_token : NULL};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        abort(); // out of memory
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; i < 3; i++)
        EVP_DigestUpdate(ctx, parts[i] ? parts[i] : "", parts[i] ? strlen(parts[i]) + 1 : 1);
    char digest[REG_DIGEST_MAX];
    reg_digest_final(ctx, digest);
    EVP_MD_CTX_free(ctx);
    memcpy(out, digest + strlen("sha256:"), S_FP_LEN - 1);
    out[S_FP_LEN - 1] = '\0';
}

static void s_token_free(reg_token_t *t)
{
    free(t->domain);
    free(t->scope);
    if (t->token)
        explicit_bzero(t->token, strlen(t->token));
    free(t->token);
    free(t);
}

// Drops expired entries; returns the entry for (domain, scope, fp) or NULL.
// scope NULL finds the Basic entry.
static reg_token_t *s_find(registry_t *self, const char *domain, const char *scope, const char *fp)
{
    int64_t now = vmlet_now_ms();
    for (reg_token_t **p = &self->tokens; *p;) {
        reg_token_t *t = *p;
        if (t->expires_ms <= now) {
            *p = t->next;
            s_token_free(t);
            continue;
        }
        bool same_scope = scope ? t->scope && strcmp(t->scope, scope) == 0 : !t->scope;
        if (same_scope && strcmp(t->domain, domain) == 0 && strcmp(t->fp, fp) == 0)
            return t;
        p = &t->next;
    }
    return NULL;
}

static void s_store(registry_t *self, const char *domain, const char *scope, const char *fp,
                    char *token, int64_t expires_ms)
{
    reg_token_t *t = s_find(self, domain, scope, fp);
    if (!t) {
        t = vmlet_xcalloc(1, sizeof *t);
        t->domain = vmlet_xstrdup(domain);
        t->scope = vmlet_xstrdup(scope);
        memcpy(t->fp, fp, sizeof t->fp);
        t->next = self->tokens;
        self->tokens = t;
    } else if (t->token) {
        explicit_bzero(t->token, strlen(t->token));
        free(t->token);
    }
    t->token = token;
    t->expires_ms = expires_ms;
}

void reg_auth_clear(registry_t *self)
{
    while (self->tokens) {
        reg_token_t *t = self->tokens;
        self->tokens = t->next;
        s_token_free(t);
    }
}

// "Basic base64(user:password)", or NULL without a username. Caller frees.
static char *s_basic(const registry_cred_t *cred)
{
    if (!cred || !cred->username || !*cred->username)
        return NULL;
    cleanup_free char *plain = NULL;
    int n = asprintf(&plain, "%s:%s", cred->username, cred->password ? cred->password : "");
    if (n < 0) {
        plain = NULL;
        return NULL;
    }
    char *out = vmlet_xmalloc(6 + 4 * ((size_t)n + 2) / 3 + 1);
    memcpy(out, "Basic ", 6);
    EVP_EncodeBlock((unsigned char *)out + 6, (const unsigned char *)plain, n);
    explicit_bzero(plain, (size_t)n);
    return out;
}

char *reg_auth_header(registry_t *self, const char *domain, const char *scope,
                      const registry_cred_t *cred)
{
    char fp[S_FP_LEN];
    s_fingerprint(cred, fp);
    reg_token_t *t = s_find(self, domain, scope, fp);
    if (t) {
        char *out = NULL;
        return asprintf(&out, "Bearer %s", t->token) < 0 ? NULL : out;
    }
    return s_find(self, domain, NULL, fp) ? s_basic(cred) : NULL;
}

// --- getting a token -------------------------------------------------------------

static bool s_buffer_sink(reg_job_t *job, const char *data, size_t n)
{
    reg_buf_t *buf = job->sink_arg;
    if (reg_buf_append(buf, data, n))
        return true;
    vmlet_err_set(&job->err, "response larger than %zu bytes", buf->max);
    return false;
}

static void s_buffer_restart(reg_job_t *job)
{
    reg_buf_clear(job->sink_arg);
}

static const reg_sink_t s_buffer = {.on_data = s_buffer_sink, .on_restart = s_buffer_restart};

// Appends "&name=<escaped value>" to *query.
static void s_param(char **query, const char *name, const char *value)
{
    char *escaped = curl_easy_escape(NULL, value, 0);
    char *grown = NULL;
    if (escaped && asprintf(&grown, "%s%s%s=%s", *query ? *query : "", *query ? "&" : "", name,
                            escaped) >= 0) {
        free(*query);
        *query = grown;
    }
    curl_free(escaped);
}

// service and each scope (space-separated in a challenge) as parameters.
static char *s_token_query(const reg_challenge_t *c, const char *scope)
{
    char *query = NULL;
    if (c->service)
        s_param(&query, "service", c->service);
    const char *scopes = c->scope ? c->scope : scope;
    for (const char *p = scopes; p && *p;) {
        size_t n = strcspn(p, " ");
        if (n > 0) {
            char *one = vmlet_xstrndup(p, n);
            s_param(&query, "scope", one);
            free(one);
        }
        p += n + strspn(p + n, " ");
    }
    return query;
}

// How long the token lives (ms), from expires_in and issued_at.
static int64_t s_lifetime_ms(const cJSON *json)
{
    const cJSON *expires = cJSON_GetObjectItemCaseSensitive(json, "expires_in");
    const cJSON *issued = cJSON_GetObjectItemCaseSensitive(json, "issued_at");
    int64_t life = cJSON_IsNumber(expires) && expires->valuedouble > 0
                       ? (int64_t)expires->valuedouble
                       : S_DEFAULT_EXPIRES_S;
    int64_t at;
    if (cJSON_IsString(issued) && vmlet_parse_rfc3339(issued->valuestring, &at) == 0) {
        int64_t age = vmlet_unix_ms() / 1000 - at;
        if (age > 0 && age < life) // a skewed clock (age out of range) is not believed
            life -= age;
    }
    int64_t margin = S_MARGIN_S < life / 2 ? S_MARGIN_S : life / 2;
    return (life - margin) * 1000;
}

static int s_parse_token(registry_t *self, const char *domain, const char *scope,
                         const registry_cred_t *cred, const reg_buf_t *body, vmlet_err_t *err)
{
    cJSON *json = body->data ? cJSON_ParseWithLength(body->data, body->len) : NULL;
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(json, "token");
    if (!cJSON_IsString(token) || !*token->valuestring)
        token = cJSON_GetObjectItemCaseSensitive(json, "access_token");
    if (!cJSON_IsString(token) || !*token->valuestring) {
        cJSON_Delete(json);
        return vmlet_err_set(err, "the response holds no token");
    }
    char fp[S_FP_LEN];
    s_fingerprint(cred, fp);
    s_store(self, domain, scope, fp, vmlet_xstrdup(token->valuestring),
            vmlet_now_ms() + s_lifetime_ms(json));
    explicit_bzero(token->valuestring, strlen(token->valuestring));
    cJSON_Delete(json);
    return 0;
}

// GET realm?service&scope with Basic credentials, or, for an identity
// token, the OAuth2 POST (grant_type=refresh_token) as docker does.
static int s_fetch_token(registry_t *self, const char *domain, const char *scope,
                         const registry_cred_t *cred, const reg_challenge_t *c, vmlet_err_t *err)
{
    bool oauth = cred && cred->identity_token && *cred->identity_token;
    cleanup_free char *query = s_token_query(c, scope);
    cleanup_free char *url = NULL;
    cleanup_free char *basic = oauth ? NULL : s_basic(cred);
    if (oauth) {
        s_param(&query, "grant_type", "refresh_token");
        s_param(&query, "refresh_token", cred->identity_token);
        s_param(&query, "client_id", "vmlet");
    }
    const char *sep = strchr(c->realm, '?') ? "&" : "?";
    if (asprintf(&url, "%s%s%s", c->realm, oauth || !query ? "" : sep,
                 oauth || !query ? "" : query) < 0) {
        url = NULL;
        return vmlet_err_set(err, "out of memory");
    }
    reg_buf_t body = {.max = REG_MAX_TOKEN_RESPONSE};
    reg_job_t job = {.domain = domain,
                     .scope = "",
                     .cred = cred,
                     .auth = basic,
                     .post = oauth ? (query ? query : "") : NULL,
                     .sink = &s_buffer,
                     .sink_arg = &body};
    int rc = reg_job_init(&job, url, err);
    if (rc == 0)
        rc = reg_run_one(self, &job, err);
    if (rc == 0)
        rc = s_parse_token(self, domain, scope, cred, &body, err);
    reg_job_clear(&job);
    if (oauth && query)
        explicit_bzero(query, strlen(query));
    if (basic)
        explicit_bzero(basic, strlen(basic));
    if (body.data)
        explicit_bzero(body.data, body.len);
    reg_buf_clear(&body);
    return rc;
}

static bool s_is_http_url(const char *url)
{
    return strncasecmp(url, "https://", 8) == 0 || strncasecmp(url, "http://", 7) == 0;
}

int reg_auth_answer(registry_t *self, const char *domain, const char *scope,
                    const registry_cred_t *cred, const char *www_authenticate, vmlet_err_t *err)
{
    reg_challenge_t c;
    if (reg_parse_challenge(www_authenticate, &c) < 0)
        return vmlet_err_set(err, "401 with a challenge this client cannot answer: %.200s",
                             www_authenticate);
    int rc;
    char fp[S_FP_LEN];
    if (strcasecmp(c.scheme, "Basic") == 0) {
        s_fingerprint(cred, fp);
        rc = cred && cred->username && *cred->username ? 0 : 1;
        if (rc == 0)
            s_store(self, domain, NULL, fp, NULL, INT64_MAX);
    } else if (!c.realm || !s_is_http_url(c.realm)) {
        rc = vmlet_err_set(err, "401 with a Bearer challenge without a usable realm: %.200s",
                           www_authenticate);
    } else {
        vmlet_log_debug(self->log, VMLET_KV({"registry", domain}, {"realm", c.realm}),
                        "getting a registry token");
        rc = s_fetch_token(self, domain, scope, cred, &c, err);
        if (rc < 0)
            vmlet_err_wrap(err, "token from %s", c.realm);
    }
    reg_challenge_clear(&c);
    return rc;
}
