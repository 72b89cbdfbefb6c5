// Pulling from registries that want credentials, end to end:
//
//   Basic: a TLS registry with htpasswd. A pod names a
//   kubernetes.io/dockerconfigjson pull secret; k8s-watcher resolves it
//   into the ImageRequest, image-builder pulls with it (trusting the
//   registry's CA), and a pod with wrong credentials shows ErrImagePull
//   with the registry's own answer in its status.
//
//   Bearer: a registry that wants tokens from a token server this test
//   runs (JWTs signed with a key whose certificate the registry trusts),
//   as Docker Hub and most registries do.
#include "stack.h"
#include "ts_registry.h"

#include "vmlet/http_server.h"
#include "vmlet/timeutil.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define USER "puller"
#define PASS "s3cret-pw"

typedef struct {
    ts_stack_t stack;
    ts_registry_t registry;
    ts_service_t builder;
    char ns[64];
    char layout[300];
    char cache[300];
} fixture_t;

static int s_start(fixture_t *f, const ts_registry_options_t *registry_options)
{
    char node[64], suffix[9];
    vmlet_random_hex(suffix, 4);
    snprintf(node, sizeof node, "vmlet-auth-%s", suffix);
    snprintf(f->ns, sizeof f->ns, "auth-%s", suffix);
    if (ts_stack_start(&f->stack, node) < 0 || ts_registry_start(&f->registry, registry_options) < 0)
        return -1;
    snprintf(f->layout, sizeof f->layout, "%s/layout", f->stack.dir);
    snprintf(f->cache, sizeof f->cache, "%s/cache", f->stack.dir);
    return 0;
}

static int s_builder(fixture_t *f)
{
    char cache[400], ca[400];
    snprintf(cache, sizeof cache, "--cache-dir=%s", f->cache);
    snprintf(ca, sizeof ca, "--ca-file=%s", f->registry.ca);
    const char *args[] = {cache, f->registry.tls ? ca : "--retries=1", NULL};
    char insecure[200];
    if (!f->registry.tls) {
        snprintf(insecure, sizeof insecure, "--insecure-registries=%s", f->registry.host);
        args[1] = insecure;
    }
    return ts_stack_service(&f->stack, "image-builder", &f->builder, args);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ts_kubectl(NULL, "delete namespace %s --wait=false", f->ns);
    ts_kubectl(NULL, "delete node %s --wait=false", f->stack.node);
    ts_stack_service_stop(&f->builder);
    ts_registry_stop(&f->registry);
    ts_stack_stop(&f->stack);
    free(f);
    return 0;
}

// --- Basic, through the watcher ------------------------------------------------------

static int setup_basic(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    ts_registry_options_t o = {.tls = true, .htpasswd_user = USER, .htpasswd_pass = PASS};
    assert_int_equal(s_start(f, &o), 0);
    assert_int_equal(ts_registry_push(&f->registry, f->layout, "small", "private/app:1", USER, PASS),
                     0);
    assert_int_equal(ts_registry_push(&f->registry, f->layout, "small", "private/app:2", USER, PASS),
                     0);
    static const char *const drained[] = {"--accept-pods=false", NULL}; // no VMs here
    assert_int_equal(ts_stack_service(&f->stack, "vm-launcher", &f->stack.launcher, drained), 0);
    static const char *const fast[] = {"--retry-interval=1s", NULL};
    assert_int_equal(ts_stack_service(&f->stack, "k8s-watcher", &f->stack.watcher, fast), 0);
    assert_int_equal(ts_stack_service(&f->stack, "status-reporter", &f->stack.reporter, NULL), 0);
    assert_int_equal(s_builder(f), 0);
    assert_int_equal(ts_kubectl_namespace(f->ns), 0);
    *state = f;
    return 0;
}

// A pull secret for the registry and a pod using it.
static void s_pod_with_secret(fixture_t *f, const char *name, const char *pass, const char *tag)
{
    char auth_plain[200], auth[400], json[800], secret[1200], cmd[1400];
    snprintf(auth_plain, sizeof auth_plain, "%s:%s", USER, pass);
    snprintf(cmd, sizeof cmd, "printf '%%s' '%s' | base64 -w0", auth_plain);
    FILE *p = popen(cmd, "r");
    assert_non_null(fgets(auth, sizeof auth, p));
    pclose(p);
    snprintf(json, sizeof json, "{\"auths\":{\"https://%s\":{\"auth\":\"%s\"}}}", f->registry.host,
             auth);
    snprintf(cmd, sizeof cmd, "printf '%%s' '%s' | base64 -w0", json);
    p = popen(cmd, "r");
    assert_non_null(fgets(secret, sizeof secret, p));
    pclose(p);
    char *manifest = NULL;
    assert_true(asprintf(&manifest,
                         "apiVersion: v1\nkind: Secret\nmetadata: {name: %s-creds, namespace: %s}\n"
                         "type: kubernetes.io/dockerconfigjson\ndata: {.dockerconfigjson: %s}\n---\n"
                         "apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s}\nspec:\n"
                         "  nodeName: %s\n  imagePullSecrets: [{name: %s-creds}]\n"
                         "  tolerations: [{key: virtual-kubelet.io/provider, operator: Exists}]\n"
                         "  containers: [{name: app, image: '%s/private/app:%s'}]\n",
                         name, f->ns, secret, name, f->ns, f->stack.node, name,
                         f->registry.host, tag) > 0);
    assert_int_equal(ts_kubectl_apply(manifest), 0);
    free(manifest);
}

typedef struct {
    fixture_t *f;
    const char *pod, *want;
} wait_t;

static bool s_waiting_reason_has(void *arg)
{
    wait_t *w = arg;
    char *out = NULL;
    ts_kubectl(&out, "get pod -n %s %s -o jsonpath='{.status.containerStatuses[0].state.waiting}'",
               w->f->ns, w->pod);
    bool ok = out && strstr(out, w->want);
    free(out);
    return ok;
}

static bool s_image_indexed(void *arg)
{
    fixture_t *f = arg;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d -a %s --no-auth-warning HGET vmlet:image:%s/private/app:1 digest "
                              "| grep -q sha256",
             f->stack.redis.port, f->stack.redis.password, f->registry.host);
    return system(cmd) == 0;
}

static void test_basic_auth_with_a_pull_secret(void **state)
{
    fixture_t *f = *state;
    s_pod_with_secret(f, "good", PASS, "1");
    if (!ts_poll(s_image_indexed, f, 60000)) {
        char cmd[800];
        snprintf(cmd, sizeof cmd, "tail -n 20 %s %s >&2", f->builder.log, f->stack.watcher.log);
        if (system(cmd) != 0)
            fprintf(stderr, "(no logs)\n");
        fail_msg("the image was never pulled with the pull secret");
    }
    // With a wrong password: the registry's own words in the pod's status.
    // Another tag of the same image, so the pull cannot be answered from
    // what "good" pulled (a present image needs no credentials with
    // IfNotPresent, on a kubelet too) and the manifest must be fetched.
    s_pod_with_secret(f, "bad", "wrong-pw", "2");
    wait_t w = {f, "bad", "UNAUTHORIZED"};
    if (!ts_poll(s_waiting_reason_has, &w, 60000)) {
        char *out = NULL;
        ts_kubectl(&out, "get pod -n %s bad -o jsonpath='{.status}'", f->ns);
        fail_msg("pod bad: %s", out);
    }
    wait_t reason = {f, "bad", "ErrImagePull"};
    wait_t backoff = {f, "bad", "ImagePullBackOff"};
    assert_true(s_waiting_reason_has(&reason) || s_waiting_reason_has(&backoff));
}

// --- Bearer, with a token server of our own --------------------------------------------

typedef struct {
    EVP_PKEY *key;
    char *x5c; // base64 DER of the certificate
    vmlet_http_server_t *http;
    zloop_t *loop;
    pthread_t thread;
    int port;
    volatile int stop;
} token_server_t;

static char *s_b64url(const unsigned char *data, size_t len)
{
    char *out = calloc(1, 4 * len / 3 + 8);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    char *w = out;
    for (char *r = out; *r; r++)
        if (*r != '=')
            *w++ = *r == '+' ? '-' : *r == '/' ? '_' : *r;
    *w = '\0';
    return out;
}

// Percent-decodes a query value (up to '&') into out.
static void s_unescape(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; *in && *in != '&' && n + 1 < cap; in++) {
        unsigned int c;
        if (*in == '%' && sscanf(in + 1, "%2x", &c) == 1) {
            out[n++] = (char)c;
            in += 2;
        } else {
            out[n++] = *in == '+' ? ' ' : *in;
        }
    }
    out[n] = '\0';
}

// A signed JWT granting pull and push on the scope's repository
// ("repository:<name>:pull,push").
static char *s_jwt(token_server_t *t, const char *escaped_scope)
{
    char scope[400] = "", repo[300] = "";
    if (escaped_scope)
        s_unescape(escaped_scope, scope, sizeof scope);
    if (!strncmp(scope, "repository:", 11))
        snprintf(repo, sizeof repo, "%.*s", (int)strcspn(scope + 11, ":"), scope + 11);
    char header[4096], claims[1024];
    snprintf(header, sizeof header, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"x5c\":[\"%s\"]}", t->x5c);
    long now = (long)(vmlet_unix_ms() / 1000);
    snprintf(claims, sizeof claims,
             "{\"iss\":\"vmlet-test-issuer\",\"sub\":\"%s\",\"aud\":\"vmlet-test\",\"exp\":%ld,"
             "\"nbf\":%ld,\"iat\":%ld,\"jti\":\"%ld\",\"access\":[{\"type\":\"repository\","
             "\"name\":\"%s\",\"actions\":[\"pull\",\"push\"]}]}",
             USER, now + 300, now - 10, now, now, repo);
    char *h = s_b64url((unsigned char *)header, strlen(header));
    char *c = s_b64url((unsigned char *)claims, strlen(claims));
    char *signing = NULL;
    assert_true(asprintf(&signing, "%s.%s", h, c) > 0);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sig[1024];
    size_t sig_len = sizeof sig;
    EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, t->key);
    EVP_DigestSign(md, sig, &sig_len, (unsigned char *)signing, strlen(signing));
    EVP_MD_CTX_free(md);
    char *s = s_b64url(sig, sig_len), *jwt = NULL;
    assert_true(asprintf(&jwt, "%s.%s", signing, s) > 0);
    free(h), free(c), free(s), free(signing);
    return jwt;
}

static void s_on_token(void *arg, const vmlet_http_request_t *req, vmlet_http_response_t *resp)
{
    token_server_t *t = arg;
    char want[200], plain[100];
    snprintf(plain, sizeof plain, "%s:%s", USER, PASS);
    char *b = s_b64url((unsigned char *)plain, strlen(plain)); // close enough: no + or / here
    snprintf(want, sizeof want, "Basic %s", b);
    free(b);
    resp->content_type = "application/json";
    if (strncmp(req->authorization, want, strlen(want) - 1) != 0) { // padding aside
        resp->status = 401;
        resp->body = strdup("{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"bad credentials\"}]}");
    } else {
        const char *scope = strstr(req->query, "scope=");
        char *jwt = s_jwt(t, scope ? scope + 6 : NULL);
        assert_true(asprintf(&resp->body, "{\"token\":\"%s\",\"expires_in\":300}", jwt) > 0);
        free(jwt);
    }
    resp->body_len = strlen(resp->body);
}

static int s_stop_check(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    return ((token_server_t *)arg)->stop ? -1 : 0;
}

static void *s_token_thread(void *arg)
{
    token_server_t *t = arg;
    zloop_timer(t->loop, 50, 0, s_stop_check, t);
    zloop_start(t->loop);
    return NULL;
}

// Key, certificate (for the registry's rootcertbundle) and the server.
static void s_token_server(token_server_t *t, const char *dir, char *cert_path, size_t cap)
{
    char cmd[1200];
    snprintf(cert_path, cap, "%s/token.crt", dir);
    snprintf(cmd, sizeof cmd, "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout "
                              "token.key -out token.crt -days 2 -subj /CN=vmlet-token "
                              ">/dev/null 2>&1 && openssl x509 -in token.crt -outform der | base64 -w0 >token.x5c",
             dir);
    assert_int_equal(system(cmd), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/token.key", dir);
    FILE *fp = fopen(path, "r");
    t->key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    snprintf(path, sizeof path, "%s/token.x5c", dir);
    fp = fopen(path, "r");
    t->x5c = calloc(1, 8192);
    assert_non_null(fgets(t->x5c, 8192, fp));
    fclose(fp);
    t->loop = zloop_new();
    t->http = vmlet_http_server_new("127.0.0.1:0", NULL, NULL);
    vmlet_http_server_route(t->http, "/token", s_on_token, t);
    vmlet_http_server_attach(t->http, t->loop, NULL);
    t->port = vmlet_http_server_port(t->http);
    pthread_create(&t->thread, NULL, s_token_thread, t);
}

static void s_token_server_stop(token_server_t *t)
{
    t->stop = 1;
    pthread_join(t->thread, NULL);
    vmlet_http_server_destroy(&t->http);
    zloop_destroy(&t->loop);
    EVP_PKEY_free(t->key);
    free(t->x5c);
}

static void test_bearer_tokens_from_a_token_server(void **state)
{
    (void)state;
    fixture_t *f = calloc(1, sizeof *f);
    *state = f;
    char *dir = ts_tempdir("vmlet-token"), cert[400], realm[100];
    token_server_t t = {0};
    s_token_server(&t, dir, cert, sizeof cert);
    snprintf(realm, sizeof realm, "http://127.0.0.1:%d/token", t.port);
    ts_registry_options_t o = {.token_realm = realm, .token_cert = cert};
    assert_int_equal(s_start(f, &o), 0);
    assert_int_equal(ts_registry_push(&f->registry, f->layout, "small", "tokened/app:1", USER, PASS),
                     0);
    assert_int_equal(s_builder(f), 0);
    // As k8s-watcher would ask, with the pull secret's credentials.
    vmlet_metrics_t *metrics = vmlet_metrics_new();
    vmlet_bus_options_t bus = {.subscribe_endpoint = f->stack.broker.subscribe,
                               .work_endpoint = f->stack.broker.work, .hwm = 1000, .source = "t"};
    vmlet_bus_client_t *client = vmlet_bus_client_new(&bus, metrics, NULL, NULL);
    const char *passwords[] = {PASS, "wrong"};
    for (int i = 0; i < 2; i++) {
        char image[200];
        snprintf(image, sizeof image, "%s/tokened/app:1", f->registry.host);
        Vmlet__RegistryCredential cred = VMLET__REGISTRY_CREDENTIAL__INIT, *creds[] = {&cred};
        cred.registry = f->registry.host, cred.username = USER, cred.password = (char *)passwords[i];
        Vmlet__ImageRequest req = VMLET__IMAGE_REQUEST__INIT;
        req.image = image, req.pull_policy = "Always", req.n_credentials = 1, req.credentials = creds;
        vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
        env.body_case = VMLET__ENVELOPE__BODY_IMAGE_REQUEST;
        env.image_request = &req;
        char item[32];
        snprintf(item, sizeof item, "try-%d", i);
        assert_int_equal(vmlet_bus_submit(client, VMLET_QUEUE_IMAGE_BUILDER, &env, item, NULL), 0);
        assert_int_equal(vmlet_bus_client_flush(client, 5000, NULL), 0);
        char want[200];
        snprintf(want, sizeof want, i == 0 ? "msg=\"ready:" : "UNAUTHORIZED");
        char cmd[600];
        snprintf(cmd, sizeof cmd, "grep -q '%s' %s", want, f->builder.log);
        for (int k = 0; k < 200 && system(cmd) != 0; k++)
            usleep(50000);
        if (system(cmd) != 0) {
            snprintf(cmd, sizeof cmd, "tail -n 15 %s >&2", f->builder.log);
            if (system(cmd) != 0)
                fprintf(stderr, "(no log)\n");
            fail_msg("attempt %d: the builder never said '%s'", i, want);
        }
    }
    vmlet_bus_client_destroy(&client);
    vmlet_metrics_destroy(&metrics);
    s_token_server_stop(&t);
    ts_remove_dir(dir);
    free(dir);
}

static int setup_nothing(void **state)
{
    *state = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic_auth_with_a_pull_secret, setup_basic, teardown),
        cmocka_unit_test_setup_teardown(test_bearer_tokens_from_a_token_server, setup_nothing,
                                        teardown),
    };
    return TS_RUN(tests);
}
