// The registry client against a real registry: Debian's docker-registry
// (Distribution 2.8) on 127.0.0.1, once over plain HTTP and once over TLS
// with htpasswd Basic auth, holding a multi-platform image built here with
// shell tools (a gzip and a zstd layer; amd64, arm64 and an attestation)
// and pushed with skopeo.
#include "testsupport.h"

#include "registry.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define USER "puller"
#define PASS "s3cret-pass"

// Builds an OCI layout at $1 whose tag "1" is an index of linux/arm64/v8,
// linux/amd64 (a gzip and a zstd layer) and a BuildKit-style attestation,
// then prints the digests the test expects.
static const char s_make_layout[] =
    "set -eu\n"
    "L=$1; W=$L.work; OCI=application/vnd.oci.image\n"
    "mkdir -p \"$L/blobs/sha256\" \"$W/a/bin\" \"$W/b/etc\"\n"
    "blob() { d=$(sha256sum \"$1\" | cut -d' ' -f1); cp \"$1\" \"$L/blobs/sha256/$d\";"
    " echo \"sha256:$d $(stat -c %s \"$1\")\"; }\n"
    "desc() { printf '{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%s%s}' \"$1\" \"$2\" "
    "\"$3\" \"${4:-}\"; }\n"
    "diff() { echo \"sha256:$(sha256sum \"$1\" | cut -d' ' -f1)\"; }\n"
    "printf 'hello from layer one\\n' > \"$W/a/bin/hello\"\n"
    "printf 'name=demo\\n' > \"$W/b/etc/demo.conf\"\n"
    "tar -C \"$W/a\" --mtime=@0 --owner=0 --group=0 -cf \"$W/l1.tar\" bin\n"
    "tar -C \"$W/b\" --mtime=@0 --owner=0 --group=0 -cf \"$W/l2.tar\" etc\n"
    "gzip -n -c \"$W/l1.tar\" > \"$W/l1.tgz\"; zstd -q -c \"$W/l2.tar\" > \"$W/l2.zst\"\n"
    "set -- $(blob \"$W/l1.tgz\"); L1=$(desc $OCI.layer.v1.tar+gzip $1 $2); l1=$1\n"
    "set -- $(blob \"$W/l2.zst\"); L2=$(desc $OCI.layer.v1.tar+zstd $1 $2); l2=$1\n"
    "config() { printf '{\"architecture\":\"%s\",\"os\":\"%s\",\"config\":{"
    "\"Entrypoint\":[\"/bin/hello\"],\"Cmd\":[\"--%s\"],\"Env\":[\"PATH=/bin\"],"
    "\"WorkingDir\":\"/srv\",\"User\":\"1000:1000\",\"ExposedPorts\":{\"8080/tcp\":{}},"
    "\"StopSignal\":\"SIGINT\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[%s]}}' "
    "\"$1\" \"$2\" \"$1\" \"$3\" > \"$W/c-$1.json\"; blob \"$W/c-$1.json\"; }\n"
    "manifest() { printf '{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":%s,"
    "\"layers\":[%s]}' $OCI.manifest.v1+json \"$2\" \"$3\" > \"$W/m-$1.json\";"
    " blob \"$W/m-$1.json\"; }\n"
    "set -- $(config amd64 linux \"\\\"$(diff \"$W/l1.tar\")\\\",\\\"$(diff \"$W/l2.tar\")\\\"\")\n"
    "set -- $(manifest amd64 \"$(desc $OCI.config.v1+json $1 $2)\" \"$L1,$L2\"); amd=$1\n"
    "AMD=$(desc $OCI.manifest.v1+json $1 $2 ',\"platform\":{\"architecture\":\"amd64\","
    "\"os\":\"linux\"}')\n"
    "set -- $(config arm64 linux \"\\\"$(diff \"$W/l1.tar\")\\\"\")\n"
    "set -- $(manifest arm64 \"$(desc $OCI.config.v1+json $1 $2)\" \"$L1\")\n"
    "ARM=$(desc $OCI.manifest.v1+json $1 $2 ',\"platform\":{\"architecture\":\"arm64\","
    "\"os\":\"linux\",\"variant\":\"v8\"}')\n"
    "printf '{\"_type\":\"https://in-toto.io/Statement/v0.1\"}' > \"$W/att.json\"\n"
    "set -- $(blob \"$W/att.json\"); ATTL=$(desc application/vnd.in-toto+json $1 $2); attl=\"$1 "
    "$2\"\n"
    "set -- $(config unknown unknown '')\n"
    "set -- $(manifest att \"$(desc $OCI.config.v1+json $1 $2)\" \"$ATTL\")\n"
    "ATT=$(desc $OCI.manifest.v1+json $1 $2 \",\\\"platform\\\":{\\\"architecture\\\":"
    "\\\"unknown\\\",\\\"os\\\":\\\"unknown\\\"},\\\"annotations\\\":{\\\"vnd.docker.reference."
    "type\\\":\\\"attestation-manifest\\\",\\\"vnd.docker.reference.digest\\\":\\\"$amd\\\"}\")\n"
    "printf '{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[%s,%s,%s]}' "
    "$OCI.index.v1+json \"$ARM\" \"$ATT\" \"$AMD\" > \"$W/index.json\"\n"
    "set -- $(blob \"$W/index.json\"); idx=$1\n"
    "printf '{\"imageLayoutVersion\":\"1.0.0\"}' > \"$L/oci-layout\"\n"
    "printf '{\"schemaVersion\":2,\"manifests\":[%s]}' \"$(desc $OCI.index.v1+json $1 $2 "
    "',\"annotations\":{\"org.opencontainers.image.ref.name\":\"1\"}')\" > \"$L/index.json\"\n"
    "rm -rf \"$W\"\n"
    "echo \"$idx $amd $l1 $l2 $attl\"\n";

typedef struct {
    pid_t pid;
    int port;
    char host[64]; // 127.0.0.1:PORT
    char dir[300];
    char log[340];
} server_t;

typedef struct {
    char *dir;
    char layout[300];
    char index[80], amd64[80], layer1[80], layer2[80], att_layer[80];
    long att_size;
    server_t plain, tls;
    char ca[340];
    bool ready;
} world_t;

static world_t s_world;

// ---------------------------------------------------------------------------
// The registries

static int s_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int s_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "failed (%d): %s\n", rc, cmd);
    return rc == 0 ? 0 : -1;
}

static bool s_port_open(void *arg)
{
    const server_t *s = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool open = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
    close(fd);
    return open;
}

// A CA of the test's own and a certificate for 127.0.0.1 signed by it;
// certs/ca.crt for skopeo's --dest-cert-dir.
static int s_make_tls(const char *dir)
{
    return s_sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                "-nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=vmlet-test-ca 2>/dev/null && "
                "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                "-keyout tls.key -out tls.csr -subj /CN=127.0.0.1 2>/dev/null && "
                "printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext && "
                "openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                "-out tls.crt -days 2 -extfile san.ext 2>/dev/null && "
                "mkdir -p certs && cp ca.crt certs/ && "
                "htpasswd -Bbn '" USER "' '" PASS "' > htpasswd 2>/dev/null",
                dir);
}

static int s_write_config(const server_t *s, bool tls)
{
    char path[400];
    snprintf(path, sizeof path, "%s/config.yml", s->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "version: 0.1\n"
            "log: {level: info, formatter: text}\n"
            "storage:\n  filesystem: {rootdirectory: %s/storage}\n"
            "http:\n  addr: %s\n  secret: vmlet-test\n",
            s->dir, s->host);
    if (tls)
        fprintf(f,
                "  tls: {certificate: %s/tls.crt, key: %s/tls.key}\n"
                "auth:\n  htpasswd: {realm: vmlet-test, path: %s/htpasswd}\n",
                s->dir, s->dir, s->dir);
    return fclose(f) == 0 ? 0 : -1;
}

static int s_server_start(server_t *s, const char *parent, const char *name, bool tls)
{
    snprintf(s->dir, sizeof s->dir, "%s/%s", parent, name);
    snprintf(s->log, sizeof s->log, "%s/registry.log", s->dir);
    s->port = ts_free_port();
    snprintf(s->host, sizeof s->host, "127.0.0.1:%d", s->port);
    if (mkdir(s->dir, 0755) < 0 || (tls && s_make_tls(s->dir) < 0) || s_write_config(s, tls) < 0)
        return -1;
    char config[400];
    snprintf(config, sizeof config, "%s/config.yml", s->dir);
    char *argv[] = {"docker-registry", "serve", config, NULL};
    s->pid = ts_spawn(s->log, argv);
    return s->pid > 0 && ts_poll(s_port_open, s, 20000) ? 0 : -1;
}

static void s_server_stop(server_t *s)
{
    if (s->pid <= 0)
        return;
    ts_kill(s->pid, SIGTERM);
    if (ts_wait_exit(s->pid, 5000, NULL) < 0) {
        ts_kill(s->pid, SIGKILL);
        ts_wait_exit(s->pid, 5000, NULL);
    }
    s->pid = 0;
}

// skopeo copy --all of the layout's tag 1 to demo:1 on the registry.
static int s_push(const world_t *w, const server_t *s, bool tls)
{
    char tls_args[600];
    if (tls)
        snprintf(tls_args, sizeof tls_args, "--dest-cert-dir %s/certs --dest-creds '%s:%s'", s->dir,
                 USER, PASS);
    else
        snprintf(tls_args, sizeof tls_args, "--dest-tls-verify=false");
    return s_sh("skopeo --policy %s/policy.json copy --quiet --all %s oci:%s:1 "
                "docker://%s/demo:1 >> %s/skopeo.log 2>&1",
                w->dir, tls_args, w->layout, s->host, w->dir);
}

// How many GETs of the blob the registry logged.
static int s_blob_gets(const server_t *s, const char *digest)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd, "grep -c '\"GET /v2/demo/blobs/%s HTTP' %s", digest, s->log);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1)
        n = -1;
    if (p)
        pclose(p);
    return n;
}

// Runs the layout script and reads the digests it prints.
static int s_make_image(world_t *w)
{
    char script[400], cmd[900];
    snprintf(script, sizeof script, "%s/make-layout.sh", w->dir);
    snprintf(w->layout, sizeof w->layout, "%s/layout", w->dir);
    FILE *f = fopen(script, "w");
    if (!f || fputs(s_make_layout, f) < 0 || fclose(f) != 0)
        return -1;
    snprintf(cmd, sizeof cmd, "sh %s %s", script, w->layout);
    FILE *p = popen(cmd, "r");
    int n = p ? fscanf(p, "%79s %79s %79s %79s %79s %ld", w->index, w->amd64, w->layer1, w->layer2,
                       w->att_layer, &w->att_size)
              : 0;
    int rc = p ? pclose(p) : -1;
    return n == 6 && rc == 0 ? 0 : -1;
}

static const char *s_missing_tool(void)
{
    static const char *const tools[] = {"docker-registry", "skopeo",    "zstd", "htpasswd",
                                        "openssl",         "sha256sum", "gzip"};
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        char cmd[200];
        snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", tools[i]);
        if (system(cmd) != 0)
            return tools[i];
    }
    return NULL;
}

static int s_group_setup(void **state)
{
    (void)state;
    world_t *w = &s_world;
    const char *missing = s_missing_tool();
    if (missing) {
        fprintf(stderr, "SKIP: %s is not installed (apt-get install it to run these tests)\n",
                missing);
        return 0;
    }
    int64_t start = ts_now_ms();
    w->dir = ts_tempdir("vmlet-test-registry-real");
    if (!w->dir || s_make_image(w) < 0 ||
        s_sh("echo '{\"default\":[{\"type\":\"insecureAcceptAnything\"}]}' > %s/policy.json",
             w->dir) < 0)
        return -1;
    if (s_server_start(&w->plain, w->dir, "plain", false) < 0 ||
        s_server_start(&w->tls, w->dir, "tls", true) < 0)
        return -1;
    snprintf(w->ca, sizeof w->ca, "%.300s/ca.crt", w->tls.dir);
    if (s_push(w, &w->plain, false) < 0 || s_push(w, &w->tls, true) < 0)
        return -1;
    fprintf(stderr, "registries up and image pushed in %lld ms\n",
            (long long)(ts_now_ms() - start));
    w->ready = true;
    return 0;
}

static int s_group_teardown(void **state)
{
    (void)state;
    world_t *w = &s_world;
    s_server_stop(&w->plain);
    s_server_stop(&w->tls);
    if (w->dir)
        ts_remove_dir(w->dir);
    free(w->dir);
    return 0;
}

// ---------------------------------------------------------------------------
// Per test: a client and a blob cache

typedef struct {
    registry_t *reg;
    vmlet_metrics_t *metrics;
    vmlet_image_ref_t ref;
    bool have_ref;
    char *cache;
} fixture_t;

static int s_setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof *fx);
    fx->metrics = vmlet_metrics_new();
    fx->cache = ts_tempdir("vmlet-test-blobs");
    *state = fx;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *fx = *state;
    if (!fx)
        return 0;
    registry_destroy(&fx->reg);
    vmlet_metrics_destroy(&fx->metrics);
    if (fx->have_ref)
        vmlet_image_ref_clear(&fx->ref);
    ts_remove_dir(fx->cache);
    free(fx->cache);
    free(fx);
    return 0;
}

static registry_t *s_client(fixture_t *fx, const char *insecure, const char *ca_file)
{
    if (!s_world.ready)
        skip(); // the group setup said why
    registry_options_t options = {
        .insecure = insecure, .ca_file = ca_file, .retries = 2, .parallel = 4};
    vmlet_err_t err = {0};
    fx->reg = registry_new(&options, NULL, fx->metrics, &err);
    if (!fx->reg)
        fail_msg("registry_new: %s", err.msg);
    return fx->reg;
}

static const vmlet_image_ref_t *s_ref(fixture_t *fx, const server_t *s, const char *name)
{
    char text[300];
    snprintf(text, sizeof text, "%s/%s", s->host, name);
    if (fx->have_ref)
        vmlet_image_ref_clear(&fx->ref);
    vmlet_err_t err = {0};
    if (vmlet_image_ref_parse(text, &fx->ref, &err) < 0)
        fail_msg("%s", err.msg);
    fx->have_ref = true;
    return &fx->ref;
}

// sha256 of the file at path, computed here.
static void s_file_digest(const char *path, char out[80])
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        EVP_DigestUpdate(ctx, buf, n);
    fclose(f);
    unsigned char md[32];
    EVP_DigestFinal_ex(ctx, md, NULL);
    EVP_MD_CTX_free(ctx);
    strcpy(out, "sha256:");
    for (int i = 0; i < 32; i++)
        sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

static char *s_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *data = calloc(1, 1 << 16);
    *len = fread(data, 1, (1 << 16) - 1, f);
    fclose(f);
    return data;
}

static void s_progress(void *arg, int64_t done, int64_t total)
{
    int64_t *last = arg;
    assert_true(done <= total);
    last[0] = done;
    last[1] = total;
}

// The amd64 manifest, its blobs in the cache and checked, its config read.
static void s_pull(fixture_t *fx, const registry_cred_t *cred)
{
    world_t *w = &s_world;
    registry_manifest_t m;
    vmlet_err_t err = {0};
    if (registry_get_manifest(fx->reg, &fx->ref, cred, &m, &err) < 0)
        fail_msg("%s", err.msg);
    assert_string_equal(m.digest, w->amd64);
    assert_string_equal(m.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_int_equal(m.n_layers, 2);
    assert_string_equal(m.layers[0].digest, w->layer1);
    assert_string_equal(m.layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_string_equal(m.layers[1].digest, w->layer2);
    assert_string_equal(m.layers[1].media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
    registry_descriptor_t blobs[] = {m.config, m.layers[0], m.layers[1]};
    int64_t progress[2] = {0, 0};
    if (registry_fetch_blobs(fx->reg, &fx->ref, cred, blobs, 3, fx->cache, s_progress, progress,
                             &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(progress[0], m.config.size + m.layers[0].size + m.layers[1].size);
    assert_int_equal(progress[1], progress[0]);
    for (int i = 0; i < 3; i++) {
        char *path = registry_blob_path(fx->cache, blobs[i].digest), got[80];
        s_file_digest(path, got);
        assert_string_equal(got, blobs[i].digest);
        free(path);
    }
    char *path = registry_blob_path(fx->cache, m.config.digest);
    size_t len;
    char *json = s_read(path, &len);
    registry_image_config_t c;
    if (registry_parse_config(json, len, &c, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(c.n_entrypoint, 1);
    assert_string_equal(c.entrypoint[0], "/bin/hello");
    assert_string_equal(c.cmd[0], "--amd64");
    assert_string_equal(c.env[0], "PATH=/bin");
    assert_string_equal(c.working_dir, "/srv");
    assert_string_equal(c.user, "1000:1000");
    assert_string_equal(c.exposed_ports[0], "8080/tcp");
    assert_string_equal(c.stop_signal, "SIGINT");
    registry_image_config_clear(&c);
    free(json);
    free(path);
    registry_manifest_clear(&m);
}

// ---------------------------------------------------------------------------
// Tests

static void test_plain_pull_picks_amd64(void **state)
{
    fixture_t *fx = *state;
    world_t *w = &s_world;
    s_client(fx, w->plain.host, NULL);
    s_ref(fx, &w->plain, "demo:1");
    int64_t start = ts_now_ms();
    s_pull(fx, NULL);
    fprintf(stderr, "pull over HTTP: %lld ms\n", (long long)(ts_now_ms() - start));
    assert_int_equal(s_blob_gets(&w->plain, w->layer1), 1);
    assert_int_equal(s_blob_gets(&w->plain, w->layer2), 1);
    // Already in the cache: not fetched again.
    s_pull(fx, NULL);
    assert_int_equal(s_blob_gets(&w->plain, w->layer1), 1);
    assert_int_equal(s_blob_gets(&w->plain, w->att_layer), 0);
}

static void test_plain_pull_by_index_digest(void **state)
{
    fixture_t *fx = *state;
    world_t *w = &s_world;
    s_client(fx, w->plain.host, NULL);
    char name[120];
    snprintf(name, sizeof name, "demo@%.79s", w->index);
    s_ref(fx, &w->plain, name);
    registry_manifest_t m;
    vmlet_err_t err = {0};
    if (registry_get_manifest(fx->reg, &fx->ref, NULL, &m, &err) < 0)
        fail_msg("%s", err.msg);
    assert_string_equal(m.digest, w->amd64);
    registry_manifest_clear(&m);
}

static void test_plain_unknown_tag(void **state)
{
    fixture_t *fx = *state;
    world_t *w = &s_world;
    s_client(fx, w->plain.host, NULL);
    registry_manifest_t m;
    vmlet_err_t err = {0};
    assert_int_equal(
        registry_get_manifest(fx->reg, s_ref(fx, &w->plain, "demo:nope"), NULL, &m, &err), -1);
    char want[200];
    snprintf(want, sizeof want, "%.63s/demo:nope: manifest: 404 MANIFEST_UNKNOWN: manifest unknown",
             w->plain.host);
    assert_string_equal(err.msg, want);
}

// The registry serves what its storage holds, corrupt or not.
static void test_plain_corrupt_blob_refused(void **state)
{
    fixture_t *fx = *state;
    world_t *w = &s_world;
    s_client(fx, w->plain.host, NULL);
    const char *hex = w->att_layer + strlen("sha256:");
    assert_int_equal(s_sh("f=%s/storage/docker/registry/v2/blobs/sha256/%.2s/%s/data && "
                          "tr 'a-z' 'b-za' < $f > $f.new && mv $f.new $f",
                          w->plain.dir, hex, hex),
                     0);
    registry_descriptor_t d = {
        .media_type = "application/vnd.in-toto+json", .digest = w->att_layer, .size = w->att_size};
    vmlet_err_t err = {0};
    assert_int_equal(registry_fetch_blobs(fx->reg, s_ref(fx, &w->plain, "demo:1"), NULL, &d, 1,
                                          fx->cache, NULL, NULL, &err),
                     -1);
    char want[200];
    snprintf(want, sizeof want, "blob %.79s: digest mismatch (got sha256:", w->att_layer);
    if (!strstr(err.msg, want))
        fail_msg("%s", err.msg);
    char *path = registry_blob_path(fx->cache, w->att_layer);
    assert_int_equal(access(path, F_OK), -1);
    free(path);
}

static void test_tls_basic_auth_pull(void **state)
{
    fixture_t *fx = *state;
    world_t *w = &s_world;
    s_client(fx, NULL, w->ca);
    const registry_cred_t cred = {.username = USER, .password = PASS};
    vmlet_err_t err = {0};
    if (registry_ping(fx->reg, s_ref(fx, &w->tls, "demo:1"), &cred, &err) < 0)
        fail_msg("%s", err.msg);
    int64_t start = ts_now_ms();
    s_pull(fx, &cred);
    fprintf(stderr, "pull over TLS with Basic auth: %lld ms\n", (long long)(ts_now_ms() - start));
}

static void test_tls_wrong_credentials(void **state)
{
    fixture_t *fx = *state;
    world_t *w = &s_world;
    s_client(fx, NULL, w->ca);
    const registry_cred_t wrong = {.username = USER, .password = "not-it"};
    registry_manifest_t m;
    vmlet_err_t err = {0};
    assert_int_equal(registry_get_manifest(fx->reg, s_ref(fx, &w->tls, "demo:1"), &wrong, &m, &err),
                     -1);
    char want[300];
    snprintf(want, sizeof want,
             "%.63s/demo:1: manifest: 401 UNAUTHORIZED: authentication required (check the pull "
             "secret for %.63s)",
             w->tls.host, w->tls.host);
    assert_string_equal(err.msg, want);
    assert_int_equal(registry_get_manifest(fx->reg, &fx->ref, NULL, &m, &err), -1);
    if (!strstr(err.msg, "401 UNAUTHORIZED: authentication required (no pull secret for"))
        fail_msg("%s", err.msg);
}

static void test_tls_untrusted_without_ca(void **state)
{
    fixture_t *fx = *state;
    world_t *w = &s_world;
    s_client(fx, NULL, NULL);
    const registry_cred_t cred = {.username = USER, .password = PASS};
    registry_manifest_t m;
    vmlet_err_t err = {0};
    assert_int_equal(registry_get_manifest(fx->reg, s_ref(fx, &w->tls, "demo:1"), &cred, &m, &err),
                     -1);
    if (!strstr(err.msg, "manifest: TLS: https://127.0.0.1:"))
        fail_msg("%s", err.msg);
}

static void test_missing_ca_file(void **state)
{
    fixture_t *fx = *state;
    registry_options_t options = {.ca_file = "/nonexistent/ca.crt"};
    vmlet_err_t err = {0};
    fx->reg = registry_new(&options, NULL, NULL, &err);
    assert_null(fx->reg);
    assert_string_equal(err.msg,
                        "registry client: CA file /nonexistent/ca.crt: No such file or directory");
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
#define T(name) cmocka_unit_test_setup_teardown(name, s_setup, s_teardown)
    const struct CMUnitTest tests[] = {
        T(test_plain_pull_picks_amd64),
        T(test_plain_pull_by_index_digest),
        T(test_plain_unknown_tag),
        T(test_tls_basic_auth_pull),
        T(test_tls_wrong_credentials),
        T(test_tls_untrusted_without_ca),
        T(test_missing_ca_file),
        T(test_plain_corrupt_blob_refused), // last: it spoils a blob in the storage
    };
#undef T
    if (getenv("VMLET_TEST_FILTER"))
        cmocka_set_test_filter(getenv("VMLET_TEST_FILTER"));
    int rc = cmocka_run_group_tests(tests, s_group_setup, s_group_teardown);
    curl_global_cleanup();
    return rc;
}
