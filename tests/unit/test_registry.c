// The registry client against a fake registry: a real HTTP server on
// 127.0.0.1 in threads of this process, canned answers per path, and every
// request recorded (method, target, Authorization, Accept) for the checks.
#include "testsupport.h"

// The client's internal header (its seams: challenge parsing, platform
// choice); it brings registry.h.
#include "registry_internal.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ROUTES 32
#define MAX_REQUESTS 64
#define MAX_CONNS 256
#define BASIC_USER_PASS "Basic dXNlcjpwYXNz" // user:pass
#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define UNAUTHORIZED_BODY                                                                          \
    "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}"

// ---------------------------------------------------------------------------
// The fake registry

typedef struct {
    char path[256];   // request target; a trailing '*' matches any rest
    const char *auth; // NULL: any; "": none; else the exact Authorization value
    int status;
    char headers[512];   // extra lines, each "Name: value\r\n"
    const char *body;    // borrowed
    size_t body_len;     // 0: strlen(body)
    long content_length; // 0: the body's length; larger: the body is cut short
    int delay_ms;
    int times; // 0: always; else this many answers, then the route steps aside
    int served;
} route_t;

typedef struct {
    char method[8];
    char target[512];
    char auth[256];
    char accept[512];
    char body[512];
} request_t;

typedef struct {
    int fd, port;
    int stop[2];
    pthread_t thread;
    pthread_mutex_t lock;
    route_t routes[MAX_ROUTES];
    int n_routes;
    request_t requests[MAX_REQUESTS];
    int n_requests;
    pthread_t conns[MAX_CONNS];
    int n_conns;
    int active, max_active;
} server_t;

typedef struct {
    server_t *server;
    int fd;
} conn_t;

static route_t *s_route(server_t *s, const char *path, const char *auth, int status,
                        const char *body)
{
    assert_true(s->n_routes < MAX_ROUTES);
    route_t *r = &s->routes[s->n_routes++];
    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    r->auth = auth;
    r->status = status;
    r->body = body;
    return r;
}

static bool s_route_matches(const route_t *r, const request_t *q)
{
    size_t n = strlen(r->path);
    bool prefix = n > 0 && r->path[n - 1] == '*';
    bool path = prefix ? strncmp(q->target, r->path, n - 1) == 0 : strcmp(q->target, r->path) == 0;
    bool auth = !r->auth || strcmp(r->auth, q->auth) == 0;
    return path && auth && (r->times == 0 || r->served < r->times);
}

// Finds the request's route and records the request (under the lock).
static route_t s_dispatch(server_t *s, const request_t *q)
{
    route_t none = {.status = 404,
                    .body = "{\"errors\":[{\"code\":\"NAME_UNKNOWN\",\"message\":\"no route\"}]}"};
    pthread_mutex_lock(&s->lock);
    if (s->n_requests < MAX_REQUESTS)
        s->requests[s->n_requests++] = *q;
    route_t *found = NULL;
    for (int i = 0; i < s->n_routes && !found; i++)
        if (s_route_matches(&s->routes[i], q))
            found = &s->routes[i];
    if (found)
        found->served++;
    route_t out = found ? *found : none;
    if (++s->active > s->max_active)
        s->max_active = s->active;
    pthread_mutex_unlock(&s->lock);
    return out;
}

static void s_header_value(const char *head, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    size_t n = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n"))
        if (strncasecmp(line + 2, name, n) == 0 && line[2 + n] == ':') {
            const char *v = line + 3 + n;
            v += strspn(v, " ");
            snprintf(out, cap, "%.*s", (int)strcspn(v, "\r\n"), v);
            return;
        }
}

static bool s_read_request(int fd, request_t *q)
{
    char buf[16384];
    size_t len = 0;
    char *end = NULL;
    while (!end && len < sizeof buf - 1) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            return false;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end)
        return false;
    memset(q, 0, sizeof *q);
    sscanf(buf, "%7s %511s", q->method, q->target);
    end[2] = '\0';
    s_header_value(buf, "Authorization", q->auth, sizeof q->auth);
    s_header_value(buf, "Accept", q->accept, sizeof q->accept);
    char length[32];
    s_header_value(buf, "Content-Length", length, sizeof length);
    size_t want = (size_t)atol(length), have = len - (size_t)(end + 4 - buf);
    snprintf(q->body, sizeof q->body, "%.*s", (int)have, end + 4);
    while (have < want && have < sizeof q->body - 1) {
        ssize_t n = read(fd, q->body + have, sizeof q->body - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        q->body[have] = '\0';
    }
    return true;
}

static void s_write_all(int fd, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w <= 0)
            return;
        data += w;
        n -= (size_t)w;
    }
}

static void *s_conn_main(void *arg)
{
    conn_t *c = arg;
    request_t q;
    if (s_read_request(c->fd, &q)) {
        route_t r = s_dispatch(c->server, &q);
        size_t body_len = r.body ? (r.body_len ? r.body_len : strlen(r.body)) : 0;
        // A copy: the test may free the route's body as soon as its client
        // has read the answer, before this thread is done with write().
        char *body = body_len ? malloc(body_len) : NULL;
        if (body)
            memcpy(body, r.body, body_len);
        long announced = r.content_length ? r.content_length : (long)body_len;
        if (r.delay_ms)
            usleep((useconds_t)r.delay_ms * 1000);
        char head[1024];
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 %d X\r\nContent-Length: %ld\r\nConnection: close\r\n%s\r\n",
                         r.status, announced, r.headers);
        s_write_all(c->fd, head, (size_t)n);
        if (strcmp(q.method, "HEAD") != 0)
            s_write_all(c->fd, body, body_len);
        free(body);
        pthread_mutex_lock(&c->server->lock);
        c->server->active--;
        pthread_mutex_unlock(&c->server->lock);
    }
    close(c->fd);
    free(c);
    return NULL;
}

static void *s_accept_main(void *arg)
{
    server_t *s = arg;
    for (;;) {
        struct pollfd fds[2] = {{s->fd, POLLIN, 0}, {s->stop[0], POLLIN, 0}};
        if (poll(fds, 2, -1) < 0 && errno != EINTR)
            break;
        if (fds[1].revents)
            break;
        int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        conn_t *c = malloc(sizeof *c);
        *c = (conn_t){s, fd};
        if (s->n_conns >= MAX_CONNS ||
            pthread_create(&s->conns[s->n_conns], NULL, s_conn_main, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        s->n_conns++;
    }
    return NULL;
}

static void s_server_start(server_t *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    assert_int_equal(bind(s->fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(s->fd, 64), 0);
    getsockname(s->fd, (struct sockaddr *)&addr, &len);
    s->port = ntohs(addr.sin_port);
    assert_int_equal(pipe2(s->stop, O_CLOEXEC), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, s_accept_main, s), 0);
}

static void s_server_stop(server_t *s)
{
    assert_int_equal(write(s->stop[1], "x", 1), 1);
    pthread_join(s->thread, NULL);
    for (int i = 0; i < s->n_conns; i++)
        pthread_join(s->conns[i], NULL);
    close(s->fd);
    close(s->stop[0]);
    close(s->stop[1]);
    pthread_mutex_destroy(&s->lock);
}

// How many recorded requests have a target starting with prefix.
static int s_count(server_t *s, const char *prefix)
{
    int n = 0;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->n_requests; i++)
        n += strncmp(s->requests[i].target, prefix, strlen(prefix)) == 0;
    pthread_mutex_unlock(&s->lock);
    return n;
}

// ---------------------------------------------------------------------------
// Fixture and helpers

typedef struct {
    server_t a, b; // b is "another host": another port
    char domain[32];
    char *dir; // the blob cache
    vmlet_metrics_t *metrics;
    registry_t *reg;
    vmlet_image_ref_t ref;
    bool have_ref;
} fixture_t;

static int s_setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof *fx);
    s_server_start(&fx->a);
    s_server_start(&fx->b);
    snprintf(fx->domain, sizeof fx->domain, "127.0.0.1:%d", fx->a.port);
    fx->dir = ts_tempdir("vmlet-test-registry");
    fx->metrics = vmlet_metrics_new();
    *state = fx;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *fx = *state;
    registry_destroy(&fx->reg);
    s_server_stop(&fx->a);
    s_server_stop(&fx->b);
    ts_remove_dir(fx->dir);
    free(fx->dir);
    vmlet_metrics_destroy(&fx->metrics);
    if (fx->have_ref)
        vmlet_image_ref_clear(&fx->ref);
    free(fx);
    return 0;
}

static registry_t *s_registry(fixture_t *fx, int retries, int parallel)
{
    char insecure[80];
    snprintf(insecure, sizeof insecure, "%s, 127.0.0.1:%d", fx->domain, fx->b.port);
    registry_options_t options = {.insecure = insecure, .retries = retries, .parallel = parallel};
    vmlet_err_t err = {0};
    fx->reg = registry_new(&options, NULL, fx->metrics, &err);
    if (!fx->reg)
        fail_msg("registry_new: %s", err.msg);
    return fx->reg;
}

// fx->ref = 127.0.0.1:<port of a>/<name>.
static const vmlet_image_ref_t *s_ref(fixture_t *fx, const char *name)
{
    char text[300];
    snprintf(text, sizeof text, "%s/%s", fx->domain, name);
    if (fx->have_ref)
        vmlet_image_ref_clear(&fx->ref);
    vmlet_err_t err = {0};
    if (vmlet_image_ref_parse(text, &fx->ref, &err) < 0)
        fail_msg("%s", err.msg);
    fx->have_ref = true;
    return &fx->ref;
}

// "sha256:<hex>" of data, computed here rather than by the code under test.
static void s_sha256(const char *data, size_t n, char out[72])
{
    unsigned char md[32];
    EVP_Digest(data, n, md, NULL, EVP_sha256(), NULL);
    strcpy(out, "sha256:");
    for (int i = 0; i < 32; i++)
        sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

#define CONFIG_JSON "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{}}"

// A manifest of CONFIG_JSON and the given layer contents. Caller frees.
static char *s_manifest(const char *media_type, const char *const *layers, size_t n)
{
    char digest[72], *text = NULL, *list = strdup("");
    for (size_t i = 0; i < n; i++) {
        s_sha256(layers[i], strlen(layers[i]), digest);
        char *grown = NULL;
        assert_true(asprintf(&grown,
                             "%s%s{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
                             "\"digest\":\"%s\",\"size\":%zu}",
                             list, i ? "," : "", digest, strlen(layers[i])) > 0);
        free(list);
        list = grown;
    }
    s_sha256(CONFIG_JSON, strlen(CONFIG_JSON), digest);
    assert_true(asprintf(&text,
                         "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
                         "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\","
                         "\"size\":%zu},\"layers\":[%s]}",
                         media_type, digest, strlen(CONFIG_JSON), list) > 0);
    free(list);
    return text;
}

// A descriptor of content (digest and size), for registry_fetch_blobs.
typedef struct {
    char digest[72];
    registry_descriptor_t d;
} desc_t;

static void s_desc(desc_t *out, const char *content)
{
    s_sha256(content, strlen(content), out->digest);
    out->d = (registry_descriptor_t){.media_type = "application/octet-stream",
                                     .digest = out->digest,
                                     .size = (int64_t)strlen(content)};
}

static char *s_blob_path(fixture_t *fx, const char *digest)
{
    return registry_blob_path(fx->dir, digest);
}

static bool s_file_is(const char *path, const char *content)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n == strlen(content) && memcmp(buf, content, n) == 0;
}

// Files in dir/sha256 (leftover .partial files show up here).
static int s_files_in_cache(fixture_t *fx)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -A '%s/sha256' 2>/dev/null | wc -l", fx->dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1)
        n = -1;
    if (p)
        pclose(p);
    return n;
}

static double s_metric(fixture_t *fx, const char *series)
{
    char *text = vmlet_metrics_render(fx->metrics);
    double v = ts_metric_value(text, series);
    free(text);
    return v;
}

#define assert_contains(haystack, needle)                                                          \
    do {                                                                                           \
        if (!strstr((haystack), (needle)))                                                         \
            fail_msg("'%s' does not contain '%s'", (haystack), (needle));                          \
    } while (0)

// ---------------------------------------------------------------------------
// WWW-Authenticate

static void test_challenge_parsing(void **state)
{
    (void)state;
    static const struct {
        const char *header;
        int rc;
        const char *scheme, *realm, *service, *scope, *error;
    } cases[] = {
        {"Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
         "scope=\"repository:samalba/my-app:pull,push\"",
         0, "Bearer", "https://auth.docker.io/token", "registry.docker.io",
         "repository:samalba/my-app:pull,push", NULL},
        {"Basic realm=\"Registry Realm\"", 0, "Basic", "Registry Realm", NULL, NULL, NULL},
        // Bearer is preferred when both are offered.
        {"Basic realm=\"b\", Bearer realm=\"http://a/t\",service=\"s\"", 0, "Bearer", "http://a/t",
         "s", NULL, NULL},
        // Scheme and parameter names are case-insensitive; spaces around '='.
        {"bearer REALM = \"http://a/t\" , Service=s", 0, "bearer", "http://a/t", "s", NULL, NULL},
        {"Bearer realm=\"http://a/t\",error=\"insufficient_scope\","
         "scope=\"repository:x:pull repository:y:pull\"",
         0, "Bearer", "http://a/t", NULL, "repository:x:pull repository:y:pull",
         "insufficient_scope"},
        // Escapes in quoted strings; unquoted tokens.
        {"Bearer realm=\"http://a/\\\"q\\\"\",service=plain", 0, "Bearer", "http://a/\"q\"",
         "plain", NULL, NULL},
        // A token68 challenge we do not speak is stepped over.
        {"Negotiate abc==, Basic realm=\"r\"", 0, "Basic", "r", NULL, NULL, NULL},
        {"Digest realm=\"x\", nonce=\"y\"", -1, NULL, NULL, NULL, NULL, NULL},
        {"", -1, NULL, NULL, NULL, NULL, NULL},
        {"Bearer", 0, "Bearer", NULL, NULL, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reg_challenge_t c;
        int rc = reg_parse_challenge(cases[i].header, &c);
        if (rc != cases[i].rc)
            fail_msg("'%s': rc %d, want %d", cases[i].header, rc, cases[i].rc);
        const char *got[] = {c.scheme, c.realm, c.service, c.scope, c.error};
        const char *want[] = {cases[i].scheme, cases[i].realm, cases[i].service, cases[i].scope,
                              cases[i].error};
        for (int k = 0; k < 5; k++)
            if ((got[k] || want[k]) && (!got[k] || !want[k] || strcmp(got[k], want[k]) != 0))
                fail_msg("'%s': field %d is '%s', want '%s'", cases[i].header, k,
                         got[k] ? got[k] : "(null)", want[k] ? want[k] : "(null)");
        reg_challenge_clear(&c);
    }
}

// ---------------------------------------------------------------------------
// Auth

// manifests/1 needs "Bearer tok-1", which /token gives for user:pass.
static char *s_bearer_routes(fixture_t *fx, const char *expires)
{
    char *manifest = s_manifest(OCI_MANIFEST, NULL, 0);
    route_t *r = s_route(&fx->a, "/v2/demo/manifests/1", "Bearer tok-1", 200, manifest);
    snprintf(r->headers, sizeof r->headers, "Content-Type: %s\r\n", OCI_MANIFEST);
    r = s_route(&fx->a, "/v2/demo/manifests/1", NULL, 401, UNAUTHORIZED_BODY);
    snprintf(r->headers, sizeof r->headers,
             "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/token\",service=\"fake\","
             "scope=\"repository:demo:pull\"\r\n",
             fx->a.port);
    static char token[128];
    snprintf(token, sizeof token, "{\"token\":\"tok-1\"%s}", expires);
    s_route(&fx->a, "/token?*", BASIC_USER_PASS, 200, token);
    s_route(&fx->a, "/token?*", NULL, 401, UNAUTHORIZED_BODY);
    return manifest;
}

static void test_bearer_token_flow_and_cache(void **state)
{
    fixture_t *fx = *state;
    char *manifest = s_bearer_routes(fx, ",\"expires_in\":300");
    registry_t *reg = s_registry(fx, 0, 1);
    const registry_cred_t cred = {.username = "user", .password = "pass"};
    registry_manifest_t m;
    vmlet_err_t err = {0};
    if (registry_get_manifest(reg, s_ref(fx, "demo:1"), &cred, &m, &err) < 0)
        fail_msg("%s", err.msg);
    registry_manifest_clear(&m);
    // anonymous -> 401 -> token with Basic -> again with the token
    assert_int_equal(fx->a.n_requests, 3);
    assert_string_equal(fx->a.requests[0].auth, "");
    assert_string_equal(fx->a.requests[1].target,
                        "/token?service=fake&scope=repository%3Ademo%3Apull");
    assert_string_equal(fx->a.requests[1].auth, BASIC_USER_PASS);
    assert_string_equal(fx->a.requests[2].auth, "Bearer tok-1");
    assert_contains(fx->a.requests[2].accept, OCI_INDEX);
    assert_contains(fx->a.requests[2].accept, DOCKER_LIST);
    // The second pull uses the cached token straight away.
    if (registry_get_manifest(reg, &fx->ref, &cred, &m, &err) < 0)
        fail_msg("%s", err.msg);
    registry_manifest_clear(&m);
    assert_int_equal(fx->a.n_requests, 4);
    assert_string_equal(fx->a.requests[3].auth, "Bearer tok-1");
    assert_int_equal(s_count(&fx->a, "/token"), 1);
    // Other credentials do not get that token: they ask for their own.
    const registry_cred_t other = {.username = "mallory", .password = "x"};
    assert_int_equal(registry_get_manifest(reg, &fx->ref, &other, &m, &err), -1);
    assert_string_equal(fx->a.requests[4].auth, "");
    assert_int_equal(s_count(&fx->a, "/token"), 2);
    assert_contains(err.msg, "token from http://127.0.0.1:");
    assert_contains(err.msg, "401 UNAUTHORIZED: authentication required (check the pull "
                             "secret for 127.0.0.1:");
    free(manifest);
}

// Tokens are cached per scope; one without expires_in lives 60 s.
static void test_token_per_scope(void **state)
{
    fixture_t *fx = *state;
    char *manifest = s_bearer_routes(fx, ""); // no expires_in
    s_route(&fx->a, "/v2/", "Bearer tok-1", 200, "{}");
    route_t *r = s_route(&fx->a, "/v2/", NULL, 401, UNAUTHORIZED_BODY);
    snprintf(r->headers, sizeof r->headers,
             "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/token\",service=\"fake\"\r\n",
             fx->a.port);
    registry_t *reg = s_registry(fx, 0, 1);
    const registry_cred_t cred = {.username = "user", .password = "pass"};
    vmlet_err_t err = {0};
    for (int i = 0; i < 2; i++)
        if (registry_ping(reg, s_ref(fx, "demo:1"), &cred, &err) < 0)
            fail_msg("%s", err.msg);
    assert_int_equal(s_count(&fx->a, "/token?service=fake"), 1);
    assert_int_equal(s_count(&fx->a, "/v2/"), 3);
    registry_manifest_t m;
    for (int i = 0; i < 2; i++) {
        if (registry_get_manifest(reg, &fx->ref, &cred, &m, &err) < 0)
            fail_msg("%s", err.msg);
        registry_manifest_clear(&m);
    }
    assert_int_equal(s_count(&fx->a, "/token?service=fake&scope=repository%3Ademo%3Apull"), 1);
    assert_int_equal(s_count(&fx->a, "/v2/demo/manifests/1"), 3);
    free(manifest);
}

// An identity token goes to the realm as OAuth2's refresh_token grant
// (POST); a token server's own error shape still reads well.
static void test_identity_token_and_token_errors(void **state)
{
    fixture_t *fx = *state;
    char *manifest = s_manifest(OCI_MANIFEST, NULL, 0);
    s_route(&fx->a, "/v2/demo/manifests/1", "Bearer tok-2", 200, manifest);
    route_t *r = s_route(&fx->a, "/v2/demo/manifests/1", NULL, 401, UNAUTHORIZED_BODY);
    snprintf(r->headers, sizeof r->headers,
             "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/oauth\",service=\"fake\","
             "scope=\"repository:demo:pull\"\r\n",
             fx->a.port);
    r = s_route(&fx->a, "/oauth", NULL, 200, "{\"access_token\":\"tok-2\",\"expires_in\":60}");
    r->times = 1;
    s_route(&fx->a, "/oauth", NULL, 401, "{\"details\":\"incorrect username or password\"}");
    registry_t *reg = s_registry(fx, 0, 1);
    const registry_cred_t cred = {.username = "<token>", .identity_token = "refresh-me"};
    registry_manifest_t m;
    vmlet_err_t err = {0};
    if (registry_get_manifest(reg, s_ref(fx, "demo:1"), &cred, &m, &err) < 0)
        fail_msg("%s", err.msg);
    registry_manifest_clear(&m);
    assert_string_equal(fx->a.requests[1].method, "POST");
    assert_string_equal(fx->a.requests[1].body,
                        "service=fake&scope=repository%3Ademo%3Apull&grant_type=refresh_token&"
                        "refresh_token=refresh-me&client_id=vmlet");
    assert_string_equal(fx->a.requests[1].auth, "");
    // The next credentials are refused by the token server.
    const registry_cred_t other = {.username = "<token>", .identity_token = "stale"};
    assert_int_equal(registry_get_manifest(reg, &fx->ref, &other, &m, &err), -1);
    char want[300];
    snprintf(want, sizeof want,
             "%s/demo:1: manifest: token from http://127.0.0.1:%d/oauth: 401 Unauthorized: "
             "incorrect username or password (check the pull secret for %s)",
             fx->domain, fx->a.port, fx->domain);
    assert_string_equal(err.msg, want);
    free(manifest);
}

static void test_basic_auth(void **state)
{
    fixture_t *fx = *state;
    char *manifest = s_manifest(OCI_MANIFEST, NULL, 0);
    s_route(&fx->a, "/v2/demo/manifests/1", BASIC_USER_PASS, 200, manifest);
    route_t *r = s_route(&fx->a, "/v2/demo/manifests/1", NULL, 401, UNAUTHORIZED_BODY);
    snprintf(r->headers, sizeof r->headers, "WWW-Authenticate: Basic realm=\"fake\"\r\n");
    registry_t *reg = s_registry(fx, 0, 1);
    registry_manifest_t m;
    vmlet_err_t err = {0};
    const registry_cred_t cred = {.username = "user", .password = "pass"};
    if (registry_get_manifest(reg, s_ref(fx, "demo:1"), &cred, &m, &err) < 0)
        fail_msg("%s", err.msg);
    registry_manifest_clear(&m);
    assert_int_equal(fx->a.n_requests, 2);
    assert_string_equal(fx->a.requests[1].auth, BASIC_USER_PASS);
    // Known to take Basic: sent at once.
    if (registry_get_manifest(reg, &fx->ref, &cred, &m, &err) < 0)
        fail_msg("%s", err.msg);
    registry_manifest_clear(&m);
    assert_int_equal(fx->a.n_requests, 3);
    assert_string_equal(fx->a.requests[2].auth, BASIC_USER_PASS);
    // Wrong password: the registry's words, and what to check.
    const registry_cred_t wrong = {.username = "user", .password = "nope"};
    assert_int_equal(registry_get_manifest(reg, &fx->ref, &wrong, &m, &err), -1);
    char want[200];
    snprintf(want, sizeof want,
             "%s/demo:1: manifest: 401 UNAUTHORIZED: authentication required (check the pull "
             "secret for %s)",
             fx->domain, fx->domain);
    assert_string_equal(err.msg, want);
    // No credentials at all.
    assert_int_equal(registry_get_manifest(reg, &fx->ref, NULL, &m, &err), -1);
    assert_contains(err.msg, "401 UNAUTHORIZED: authentication required (no pull secret for");
    free(manifest);
}

// ---------------------------------------------------------------------------
// Redirects and retries

static void test_redirect_keeps_auth_only_on_the_same_host(void **state)
{
    fixture_t *fx = *state;
    desc_t far, near;
    s_desc(&far, "stored elsewhere");
    s_desc(&near, "stored here");
    char path[200];
    // Everything under /v2/demo/ asks for Basic first.
    snprintf(path, sizeof path, "/v2/demo/blobs/%s", far.digest);
    route_t *r = s_route(&fx->a, path, BASIC_USER_PASS, 307, "");
    snprintf(r->headers, sizeof r->headers, "Location: http://127.0.0.1:%d/storage/far?sig=s3\r\n",
             fx->b.port);
    snprintf(path, sizeof path, "/v2/demo/blobs/%s", near.digest);
    r = s_route(&fx->a, path, BASIC_USER_PASS, 302, "");
    snprintf(r->headers, sizeof r->headers, "Location: /v2/demo/storage/near\r\n");
    s_route(&fx->a, "/v2/demo/storage/near", BASIC_USER_PASS, 200, "stored here");
    r = s_route(&fx->a, "/v2/demo/*", NULL, 401, UNAUTHORIZED_BODY);
    snprintf(r->headers, sizeof r->headers, "WWW-Authenticate: Basic realm=\"fake\"\r\n");
    s_route(&fx->b, "/storage/far?sig=s3", NULL, 200, "stored elsewhere");
    registry_t *reg = s_registry(fx, 0, 1);
    const registry_cred_t cred = {.username = "user", .password = "pass"};
    registry_descriptor_t blobs[] = {far.d, near.d};
    vmlet_err_t err = {0};
    if (registry_fetch_blobs(reg, s_ref(fx, "demo:1"), &cred, blobs, 2, fx->dir, NULL, NULL, &err) <
        0)
        fail_msg("%s", err.msg);
    assert_int_equal(fx->b.n_requests, 1);
    assert_string_equal(fx->b.requests[0].auth, ""); // another host: no credentials
    assert_int_equal(s_count(&fx->a, "/v2/demo/storage/near"), 1);
    for (int i = 0; i < fx->a.n_requests; i++)
        if (strcmp(fx->a.requests[i].target, "/v2/demo/storage/near") == 0)
            assert_string_equal(fx->a.requests[i].auth, BASIC_USER_PASS);
    char *p = s_blob_path(fx, far.digest);
    assert_true(s_file_is(p, "stored elsewhere"));
    free(p);
    p = s_blob_path(fx, near.digest);
    assert_true(s_file_is(p, "stored here"));
    free(p);
}

static void test_redirect_loop_is_cut(void **state)
{
    fixture_t *fx = *state;
    route_t *r = s_route(&fx->a, "/v2/demo/manifests/1", NULL, 302, "");
    snprintf(r->headers, sizeof r->headers, "Location: /v2/demo/manifests/1\r\n");
    registry_t *reg = s_registry(fx, 0, 1);
    registry_manifest_t m;
    vmlet_err_t err = {0};
    assert_int_equal(registry_get_manifest(reg, s_ref(fx, "demo:1"), NULL, &m, &err), -1);
    assert_contains(err.msg, "manifest: more than 5 redirects");
    assert_int_equal(fx->a.n_requests, 6);
}

static void test_503_then_200(void **state)
{
    fixture_t *fx = *state;
    char *manifest = s_manifest(OCI_MANIFEST, NULL, 0);
    route_t *r = s_route(&fx->a, "/v2/demo/manifests/1", NULL, 503, "busy");
    r->times = 1;
    s_route(&fx->a, "/v2/demo/manifests/1", NULL, 200, manifest);
    registry_t *reg = s_registry(fx, 2, 1);
    registry_manifest_t m;
    vmlet_err_t err = {0};
    if (registry_get_manifest(reg, s_ref(fx, "demo:1"), NULL, &m, &err) < 0)
        fail_msg("%s", err.msg);
    registry_manifest_clear(&m);
    assert_int_equal(fx->a.n_requests, 2);
    assert_true(s_metric(fx, "vmlet_image_builder_registry_retries_total") == 1);
    assert_true(s_metric(fx, "vmlet_image_builder_registry_requests_total{code=\"503\"}") == 1);
    assert_true(s_metric(fx, "vmlet_image_builder_registry_requests_total{code=\"200\"}") == 1);
    assert_true(s_metric(fx, "vmlet_image_builder_registry_bytes_total") ==
                (double)strlen(manifest));
    registry_stats_t stats;
    registry_stats(reg, &stats);
    assert_int_equal(stats.requests, 2);
    assert_int_equal(stats.retries, 1);
    assert_int_equal(stats.bytes, (int64_t)strlen(manifest));
    free(manifest);
}

static void test_5xx_retries_run_out(void **state)
{
    fixture_t *fx = *state;
    s_route(&fx->a, "/v2/demo/manifests/1", NULL, 503,
            "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"try later\"}]}");
    registry_t *reg = s_registry(fx, 2, 1);
    registry_manifest_t m;
    vmlet_err_t err = {0};
    assert_int_equal(registry_get_manifest(reg, s_ref(fx, "demo:1"), NULL, &m, &err), -1);
    char want[200];
    snprintf(want, sizeof want, "%s/demo:1: manifest: 503 UNAVAILABLE: try later", fx->domain);
    assert_string_equal(err.msg, want);
    assert_int_equal(fx->a.n_requests, 3);
}

static void test_429_retry_after(void **state)
{
    fixture_t *fx = *state;
    char *manifest = s_manifest(OCI_MANIFEST, NULL, 0);
    route_t *r = s_route(&fx->a, "/v2/demo/manifests/1", NULL, 429,
                         "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\",\"message\":\"slow "
                         "down\"}]}");
    snprintf(r->headers, sizeof r->headers, "Retry-After: 1\r\n");
    r->times = 1;
    s_route(&fx->a, "/v2/demo/manifests/1", NULL, 200, manifest);
    registry_t *reg = s_registry(fx, 1, 1);
    registry_manifest_t m;
    vmlet_err_t err = {0};
    int64_t start = ts_now_ms();
    if (registry_get_manifest(reg, s_ref(fx, "demo:1"), NULL, &m, &err) < 0)
        fail_msg("%s", err.msg);
    int64_t took = ts_now_ms() - start;
    registry_manifest_clear(&m);
    if (took < 950 || took > 4000)
        fail_msg("took %lld ms; Retry-After said 1 s", (long long)took);
    assert_int_equal(fx->a.n_requests, 2);
    free(manifest);
}

static void test_registry_errors_verbatim(void **state)
{
    fixture_t *fx = *state;
    s_route(&fx->a, "/v2/demo/manifests/1", NULL, 404,
            "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\","
            "\"detail\":{\"Tag\":\"1\"}}]}");
    s_route(&fx->a, "/v2/demo/manifests/2", NULL, 502, "<html>bad gateway</html>\n...");
    registry_t *reg = s_registry(fx, 0, 1);
    registry_manifest_t m;
    vmlet_err_t err = {0};
    assert_int_equal(registry_get_manifest(reg, s_ref(fx, "demo:1"), NULL, &m, &err), -1);
    char want[200];
    snprintf(want, sizeof want, "%s/demo:1: manifest: 404 MANIFEST_UNKNOWN: manifest unknown",
             fx->domain);
    assert_string_equal(err.msg, want);
    assert_int_equal(registry_get_manifest(reg, s_ref(fx, "demo:2"), NULL, &m, &err), -1);
    snprintf(want, sizeof want, "%s/demo:2: manifest: 502 Bad Gateway: <html>bad gateway</html>",
             fx->domain);
    assert_string_equal(err.msg, want);
}

static void test_connection_refused(void **state)
{
    fixture_t *fx = *state;
    int port = ts_free_port();
    char text[64], insecure[32];
    snprintf(insecure, sizeof insecure, "127.0.0.1:%d", port);
    snprintf(text, sizeof text, "127.0.0.1:%d/demo:1", port);
    registry_options_t options = {.insecure = insecure, .retries = 1};
    vmlet_err_t err = {0};
    fx->reg = registry_new(&options, NULL, fx->metrics, &err);
    vmlet_image_ref_t ref;
    assert_int_equal(vmlet_image_ref_parse(text, &ref, &err), 0);
    registry_manifest_t m;
    assert_int_equal(registry_get_manifest(fx->reg, &ref, NULL, &m, &err), -1);
    assert_contains(err.msg, "manifest: cannot connect to http://127.0.0.1:");
    assert_contains(err.msg, "(is the registry running there?)");
    assert_true(s_metric(fx, "vmlet_image_builder_registry_retries_total") == 1);
    vmlet_image_ref_clear(&ref);
}

// ---------------------------------------------------------------------------
// Manifests and indexes

// An index (OCI or a Docker list) of arm64, amd64 and an attestation.
static char *s_index(const char *type, const char *entry_type, const char *arm, const char *amd,
                     size_t amd_size, const char *att)
{
    char *text = NULL;
    assert_true(
        asprintf(&text,
                 "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":["
                 "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":10,"
                 "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
                 "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":10,"
                 "\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"},"
                 "\"annotations\":{\"vnd.docker.reference.type\":\"attestation-manifest\"}},"
                 "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,"
                 "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}",
                 type, entry_type, arm, entry_type, att, entry_type, amd, amd_size) > 0);
    return text;
}

static void s_check_index(fixture_t *fx, const char *index_type, const char *manifest_type)
{
    static const char *const layers[] = {"layer one", "layer two"};
    char *amd = s_manifest(manifest_type, layers, 2);
    char amd_digest[72], path[200];
    s_sha256(amd, strlen(amd), amd_digest);
    const char *other = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const char *att = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    char *index = s_index(index_type, manifest_type, other, amd_digest, strlen(amd), att);
    route_t *r = s_route(&fx->a, "/v2/demo/manifests/1", NULL, 200, index);
    snprintf(r->headers, sizeof r->headers, "Content-Type: %s\r\n", index_type);
    snprintf(path, sizeof path, "/v2/demo/manifests/%s", amd_digest);
    r = s_route(&fx->a, path, NULL, 200, amd);
    snprintf(r->headers, sizeof r->headers, "Content-Type: %s\r\nDocker-Content-Digest: %s\r\n",
             manifest_type, amd_digest);
    registry_t *reg = s_registry(fx, 0, 1);
    registry_manifest_t m;
    vmlet_err_t err = {0};
    if (registry_get_manifest(reg, s_ref(fx, "demo:1"), NULL, &m, &err) < 0)
        fail_msg("%s", err.msg);
    assert_string_equal(m.digest, amd_digest);
    assert_string_equal(m.media_type, manifest_type);
    assert_int_equal(m.n_layers, 2);
    char digest[72];
    s_sha256("layer two", 9, digest);
    assert_string_equal(m.layers[1].digest, digest);
    assert_int_equal(m.layers[1].size, 9);
    assert_string_equal(m.config.media_type, "application/vnd.oci.image.config.v1+json");
    assert_int_equal(fx->a.n_requests, 2); // neither arm64 nor the attestation was fetched
    registry_manifest_clear(&m);
    free(amd);
    free(index);
}

static void test_oci_index_picks_linux_amd64(void **state)
{
    s_check_index(*state, OCI_INDEX, OCI_MANIFEST);
}

static void test_docker_manifest_list(void **state)
{
    s_check_index(*state, DOCKER_LIST, DOCKER_MANIFEST);
}

static void test_choose_platform(void **state)
{
    (void)state;
    static const struct {
        const char *manifests;
        int want;
        const char *error;
    } cases[] = {
        // An attestation that claims linux/amd64 is still an attestation.
        {"[{\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"},\"annotations\":"
         "{\"vnd.docker.reference.type\":\"attestation-manifest\"}},"
         "{\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]",
         1, NULL},
        // The plain amd64 over a variant.
        {"[{\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\",\"variant\":\"v3\"}},"
         "{\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]",
         1, NULL},
        {"[{\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\",\"variant\":\"v2\"}}]", 0,
         NULL},
        // A nested index is not a platform manifest.
        {"[{\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
         "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]",
         -1, "no linux/amd64 image in the index (it has: linux/amd64)"},
        {"[{\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
         "{\"platform\":{\"os\":\"windows\",\"architecture\":\"amd64\"}},"
         "{\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"}}]",
         -1, "no linux/amd64 image in the index (it has: linux/arm64/v8, windows/amd64)"},
        {"[]", -1, "no linux/amd64 image in the index (it has: nothing)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, "{\"manifests\":%s}", cases[i].manifests);
        cJSON *json = cJSON_Parse(text);
        vmlet_err_t err = {0};
        int got = reg_choose_platform(json, "linux", "amd64", &err);
        cJSON_Delete(json);
        if (got != cases[i].want)
            fail_msg("case %zu: chose %d, want %d (%s)", i, got, cases[i].want, err.msg);
        if (cases[i].error)
            assert_string_equal(err.msg, cases[i].error);
    }
}

static void test_manifest_digest_mismatch(void **state)
{
    fixture_t *fx = *state;
    char *manifest = s_manifest(OCI_MANIFEST, NULL, 0), digest[72], ref[200], want[300];
    s_sha256(manifest, strlen(manifest), digest);
    const char *wrong = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
    snprintf(ref, sizeof ref, "/v2/demo/manifests/%s", wrong);
    s_route(&fx->a, ref, NULL, 200, manifest); // asked by digest, another one served
    route_t *r = s_route(&fx->a, "/v2/demo/manifests/1", NULL, 200, manifest);
    snprintf(r->headers, sizeof r->headers, "Docker-Content-Digest: %s\r\n", wrong);
    registry_t *reg = s_registry(fx, 0, 1);
    registry_manifest_t m;
    vmlet_err_t err = {0};
    snprintf(ref, sizeof ref, "demo@%s", wrong);
    assert_int_equal(registry_get_manifest(reg, s_ref(fx, ref), NULL, &m, &err), -1);
    snprintf(want, sizeof want, "%s/demo@%s: manifest: digest mismatch (got %s)", fx->domain, wrong,
             digest);
    assert_string_equal(err.msg, want);
    // By tag, the registry's Docker-Content-Digest must hold too.
    assert_int_equal(registry_get_manifest(reg, s_ref(fx, "demo:1"), NULL, &m, &err), -1);
    assert_contains(err.msg, "manifest: digest mismatch: the registry says sha256:3333");
    free(manifest);
}

// An index entry whose manifest comes back with another size or digest.
static void test_index_entry_mismatch(void **state)
{
    fixture_t *fx = *state;
    char *amd = s_manifest(OCI_MANIFEST, NULL, 0), digest[72], path[200];
    s_sha256(amd, strlen(amd), digest);
    const char *arm = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    char *index = s_index(OCI_INDEX, OCI_MANIFEST, arm, digest, strlen(amd) + 1, arm);
    s_route(&fx->a, "/v2/demo/manifests/1", NULL, 200, index);
    snprintf(path, sizeof path, "/v2/demo/manifests/%s", digest);
    s_route(&fx->a, path, NULL, 200, amd);
    registry_t *reg = s_registry(fx, 0, 1);
    registry_manifest_t m;
    vmlet_err_t err = {0};
    assert_int_equal(registry_get_manifest(reg, s_ref(fx, "demo:1"), NULL, &m, &err), -1);
    assert_contains(err.msg, "(linux/amd64): size mismatch (the index says");
    free(amd);
    free(index);
}

static void test_schema1_refused(void **state)
{
    fixture_t *fx = *state;
    route_t *r = s_route(&fx->a, "/v2/demo/manifests/1", NULL, 200,
                         "{\"schemaVersion\":1,\"name\":\"demo\",\"fsLayers\":[]}");
    snprintf(r->headers, sizeof r->headers,
             "Content-Type: application/vnd.docker.distribution.manifest.v1+prettyjws\r\n");
    registry_t *reg = s_registry(fx, 0, 1);
    registry_manifest_t m;
    vmlet_err_t err = {0};
    assert_int_equal(registry_get_manifest(reg, s_ref(fx, "demo:1"), NULL, &m, &err), -1);
    assert_contains(err.msg, "manifest: Docker schema 1 manifests are not supported");
}

// ---------------------------------------------------------------------------
// Blobs

static route_t *s_blob_route(fixture_t *fx, const char *digest, const char *body)
{
    char path[256];
    snprintf(path, sizeof path, "/v2/demo/blobs/%.200s", digest);
    return s_route(&fx->a, path, NULL, 200, body);
}

static void test_blob_digest_mismatch(void **state)
{
    fixture_t *fx = *state;
    desc_t d;
    s_desc(&d, "the real content");
    char got[72], want[300];
    s_sha256("the fake content", 16, got);
    s_blob_route(fx, d.digest, "the fake content"); // same size
    registry_t *reg = s_registry(fx, 0, 1);
    vmlet_err_t err = {0};
    assert_int_equal(
        registry_fetch_blobs(reg, s_ref(fx, "demo:1"), NULL, &d.d, 1, fx->dir, NULL, NULL, &err),
        -1);
    snprintf(want, sizeof want, "%s/demo:1: blob %s: digest mismatch (got %s)", fx->domain,
             d.digest, got);
    assert_string_equal(err.msg, want);
    assert_int_equal(s_files_in_cache(fx), 0); // the temporary file is gone
}

static void test_blob_size_mismatch(void **state)
{
    fixture_t *fx = *state;
    desc_t longer, shorter;
    s_desc(&longer, "twelve bytes");
    s_desc(&shorter, "eleven byte");
    s_blob_route(fx, longer.digest, "eleven byte");
    s_blob_route(fx, shorter.digest, "twelve bytes");
    registry_t *reg = s_registry(fx, 0, 1);
    vmlet_err_t err = {0};
    assert_int_equal(registry_fetch_blobs(reg, s_ref(fx, "demo:1"), NULL, &longer.d, 1, fx->dir,
                                          NULL, NULL, &err),
                     -1);
    assert_contains(err.msg, "size mismatch (got 11 bytes, the manifest says 12)");
    assert_int_equal(
        registry_fetch_blobs(reg, &fx->ref, NULL, &shorter.d, 1, fx->dir, NULL, NULL, &err), -1);
    assert_contains(err.msg, "size mismatch (more than the 11 bytes the manifest says)");
    assert_int_equal(s_files_in_cache(fx), 0);
}

static void test_blob_truncated(void **state)
{
    fixture_t *fx = *state;
    desc_t d;
    s_desc(&d, "a blob of some forty bytes, more or less");
    route_t *r = s_blob_route(fx, d.digest, "a blob of some");
    r->content_length = (long)d.d.size; // the connection closes half way
    registry_t *reg = s_registry(fx, 1, 1);
    vmlet_err_t err = {0};
    assert_int_equal(
        registry_fetch_blobs(reg, s_ref(fx, "demo:1"), NULL, &d.d, 1, fx->dir, NULL, NULL, &err),
        -1);
    char want[200];
    snprintf(want, sizeof want, "blob %s: http://127.0.0.1:", d.digest);
    assert_contains(err.msg, want);
    assert_contains(err.msg, "transfer closed with");
    assert_int_equal(fx->a.n_requests, 2); // retried once
    assert_int_equal(s_files_in_cache(fx), 0);
}

typedef struct {
    int calls;
    int64_t done, total;
} progress_t;

static void s_progress(void *arg, int64_t done, int64_t total)
{
    progress_t *p = arg;
    p->calls++;
    p->done = done;
    p->total = total;
}

static void test_cached_blob_not_fetched(void **state)
{
    fixture_t *fx = *state;
    desc_t cached, fresh;
    s_desc(&cached, "already here");
    s_desc(&fresh, "not yet");
    char *path = s_blob_path(fx, cached.digest), dir[300];
    snprintf(dir, sizeof dir, "%s/sha256", fx->dir);
    mkdir(dir, 0755);
    FILE *f = fopen(path, "w");
    fputs("already here", f);
    fclose(f);
    s_blob_route(fx, fresh.digest, "not yet");
    registry_t *reg = s_registry(fx, 0, 2);
    registry_descriptor_t blobs[] = {cached.d, fresh.d, fresh.d}; // listed twice: one fetch
    progress_t p = {0};
    vmlet_err_t err = {0};
    if (registry_fetch_blobs(reg, s_ref(fx, "demo:1"), NULL, blobs, 3, fx->dir, s_progress, &p,
                             &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(fx->a.n_requests, 1);
    assert_string_equal(fx->a.requests[0].target + strlen("/v2/demo/blobs/"), fresh.digest);
    assert_true(p.calls >= 1);
    assert_int_equal(p.total, 12 + 7);
    assert_int_equal(p.done, 12 + 7);
    free(path);
    // All there now: nothing to fetch.
    if (registry_fetch_blobs(reg, &fx->ref, NULL, blobs, 2, fx->dir, NULL, NULL, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(fx->a.n_requests, 1);
}

static void test_parallel_fetch(void **state)
{
    fixture_t *fx = *state;
    static const char *const contents[] = {"first blob", "second blob", "third blob"};
    desc_t d[3];
    registry_descriptor_t blobs[3];
    for (int i = 0; i < 3; i++) {
        s_desc(&d[i], contents[i]);
        blobs[i] = d[i].d;
        s_blob_route(fx, d[i].digest, contents[i])->delay_ms = 400;
    }
    registry_t *reg = s_registry(fx, 0, 3);
    progress_t p = {0};
    vmlet_err_t err = {0};
    int64_t start = ts_now_ms();
    if (registry_fetch_blobs(reg, s_ref(fx, "demo:1"), NULL, blobs, 3, fx->dir, s_progress, &p,
                             &err) < 0)
        fail_msg("%s", err.msg);
    int64_t took = ts_now_ms() - start;
    assert_int_equal(fx->a.max_active, 3);
    if (took >= 1000)
        fail_msg("3 blobs of 400 ms each took %lld ms: not in parallel", (long long)took);
    for (int i = 0; i < 3; i++) {
        char *path = s_blob_path(fx, d[i].digest);
        assert_true(s_file_is(path, contents[i]));
        free(path);
    }
    assert_int_equal(s_files_in_cache(fx), 3);
    assert_int_equal(p.done, p.total);
    assert_int_equal(p.total, 10 + 11 + 10);
}

static void test_blob_path(void **state)
{
    (void)state;
    const char *hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char digest[80], want[120];
    snprintf(digest, sizeof digest, "sha256:%s", hex);
    snprintf(want, sizeof want, "/cache/sha256/%s", hex);
    char *path = registry_blob_path("/cache", digest);
    assert_string_equal(path, want);
    free(path);
    assert_null(registry_blob_path("/cache", "sha256:../../etc/passwd"));
    assert_null(registry_blob_path("/cache", "md5:0123"));
    assert_null(registry_blob_path("/cache", "sha256:0123456789ABCDEF"));
}

// ---------------------------------------------------------------------------
// Image config

static void test_config_parsing(void **state)
{
    (void)state;
    const char *json =
        "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
        "\"Entrypoint\":[\"/bin/httpd\",\"-f\"],\"Cmd\":[\"-p\",\"80\"],"
        "\"Env\":[\"PATH=/usr/bin:/bin\",\"EMPTY=\"],\"WorkingDir\":\"/srv\","
        "\"User\":\"www:www\",\"ExposedPorts\":{\"80/tcp\":{},\"53/udp\":{},\"8080\":{}},"
        "\"StopSignal\":\"SIGQUIT\",\"Labels\":{\"a\":\"b\"}},"
        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
    registry_image_config_t c;
    vmlet_err_t err = {0};
    if (registry_parse_config(json, strlen(json), &c, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(c.n_entrypoint, 2);
    assert_string_equal(c.entrypoint[0], "/bin/httpd");
    assert_string_equal(c.entrypoint[1], "-f");
    assert_int_equal(c.n_cmd, 2);
    assert_string_equal(c.cmd[1], "80");
    assert_int_equal(c.n_env, 2);
    assert_string_equal(c.env[1], "EMPTY=");
    assert_string_equal(c.working_dir, "/srv");
    assert_string_equal(c.user, "www:www");
    assert_int_equal(c.n_exposed_ports, 3);
    assert_string_equal(c.exposed_ports[0], "80/tcp");
    assert_string_equal(c.exposed_ports[1], "53/udp");
    assert_string_equal(c.exposed_ports[2], "8080/tcp");
    assert_string_equal(c.stop_signal, "SIGQUIT");
    registry_image_config_clear(&c);
    // No config at all (a scratch image): all empty.
    const char *bare = "{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    assert_int_equal(registry_parse_config(bare, strlen(bare), &c, &err), 0);
    assert_int_equal(c.n_entrypoint + c.n_cmd + c.n_env + c.n_exposed_ports, 0);
    assert_null(c.working_dir);
    assert_null(c.user);
    assert_null(c.stop_signal);
    registry_image_config_clear(&c);
    const char *nulls = "{\"config\":{\"Entrypoint\":null,\"Cmd\":null,\"WorkingDir\":\"\"}}";
    assert_int_equal(registry_parse_config(nulls, strlen(nulls), &c, &err), 0);
    assert_null(c.entrypoint);
    assert_null(c.working_dir);
    registry_image_config_clear(&c);
}

static void test_config_refused(void **state)
{
    (void)state;
    static const struct {
        const char *json, *error;
    } cases[] = {
        {"[1]", "image config: not a JSON object"},
        {"{\"config\":{\"Env\":\"PATH=/bin\"}}", "image config: config.Env is not a list"},
        {"{\"config\":{\"Cmd\":[\"a\",1]}}", "image config: config.Cmd[1] is not a string"},
        {"{\"config\":{\"Env\":[\"NOEQUALS\"]}}",
         "image config: config.Env[0] is not NAME=VALUE: 'NOEQUALS'"},
        {"{\"config\":{\"ExposedPorts\":{\"http\":{}}}}",
         "image config: config.ExposedPorts: bad port 'http'"},
        {"{\"config\":{\"User\":7}}", "image config: config.User is not a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        registry_image_config_t c;
        vmlet_err_t err = {0};
        assert_int_equal(registry_parse_config(cases[i].json, strlen(cases[i].json), &c, &err), -1);
        assert_string_equal(err.msg, cases[i].error);
        assert_null(c.env);
        assert_null(c.cmd);
    }
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT); // before any thread
#define T(name) cmocka_unit_test_setup_teardown(name, s_setup, s_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_challenge_parsing),
        T(test_bearer_token_flow_and_cache),
        T(test_token_per_scope),
        T(test_identity_token_and_token_errors),
        T(test_basic_auth),
        T(test_redirect_keeps_auth_only_on_the_same_host),
        T(test_redirect_loop_is_cut),
        T(test_503_then_200),
        T(test_5xx_retries_run_out),
        T(test_429_retry_after),
        T(test_registry_errors_verbatim),
        T(test_connection_refused),
        T(test_oci_index_picks_linux_amd64),
        T(test_docker_manifest_list),
        cmocka_unit_test(test_choose_platform),
        T(test_manifest_digest_mismatch),
        T(test_index_entry_mismatch),
        T(test_schema1_refused),
        T(test_blob_digest_mismatch),
        T(test_blob_size_mismatch),
        T(test_blob_truncated),
        T(test_cached_blob_not_fetched),
        T(test_parallel_fetch),
        cmocka_unit_test(test_blob_path),
        cmocka_unit_test(test_config_parsing),
        cmocka_unit_test(test_config_refused),
    };
#undef T
    int rc = TS_RUN(tests);
    curl_global_cleanup();
    return rc;
}
