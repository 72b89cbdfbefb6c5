// A real registry for tests (see registry.h).
#include "ts_registry.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int s_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int s_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return rc == 0 ? 0 : -1;
}

// A CA and a certificate for 127.0.0.1 signed by it.
static int s_make_tls(ts_registry_t *r)
{
    snprintf(r->ca, sizeof r->ca, "%s/ca.crt", r->dir);
    return s_sh("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt "
                "-days 2 -subj /CN=test-ca >/dev/null 2>&1 && "
                "openssl req -newkey rsa:2048 -nodes -keyout tls.key -out tls.csr -subj "
                "/CN=127.0.0.1 >/dev/null 2>&1 && printf 'subjectAltName=IP:127.0.0.1\\n' >ext && "
                "openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out "
                "tls.crt -days 2 -extfile ext >/dev/null 2>&1 && mkdir -p certs && cp ca.crt certs/",
                r->dir);
}

static int s_config(ts_registry_t *r, const ts_registry_options_t *o)
{
    char path[320];
    snprintf(path, sizeof path, "%s/config.yml", r->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "version: 0.1\nlog: {level: info, formatter: text}\nstorage:\n"
               "  filesystem: {rootdirectory: %s/storage}\n  delete: {enabled: true}\n"
               "http:\n  addr: 127.0.0.1:%d\n  secret: test\n",
            r->dir, r->port);
    if (o && o->tls)
        fprintf(f, "  tls: {certificate: %s/tls.crt, key: %s/tls.key}\n", r->dir, r->dir);
    if (o && o->htpasswd_user)
        fprintf(f, "auth:\n  htpasswd: {realm: vmlet-test, path: %s/htpasswd}\n", r->dir);
    else if (o && o->token_realm)
        fprintf(f, "auth:\n  token: {realm: '%s', service: vmlet-test, issuer: vmlet-test-issuer, "
                   "rootcertbundle: %s}\n",
                o->token_realm, o->token_cert);
    fclose(f);
    return 0;
}

static bool s_answers(void *arg)
{
    ts_registry_t *r = arg;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "curl -s -o /dev/null --noproxy '*' %s%s%s://%s/v2/", r->tls ? "--cacert " : "",
             r->tls ? r->ca : "", r->tls ? " https" : "http", r->host);
    return system(cmd) == 0;
}

int ts_registry_start(ts_registry_t *r, const ts_registry_options_t *o)
{
    memset(r, 0, sizeof *r);
    char *dir = ts_tempdir("vmlet-registry");
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    free(dir);
    r->port = ts_free_port();
    r->tls = o && o->tls;
    snprintf(r->host, sizeof r->host, "127.0.0.1:%d", r->port);
    snprintf(r->log, sizeof r->log, "%s/registry.log", r->dir);
    if ((r->tls && s_make_tls(r) < 0) ||
        (o && o->htpasswd_user &&
         s_sh("htpasswd -Bbn '%s' '%s' >%s/htpasswd 2>/dev/null", o->htpasswd_user,
              o->htpasswd_pass, r->dir) < 0) ||
        s_config(r, o) < 0)
        return -1;
    char config[320];
    snprintf(config, sizeof config, "%s/config.yml", r->dir);
    char *argv[] = {"docker-registry", "serve", config, NULL};
    r->pid = ts_spawn(r->log, argv);
    return r->pid > 0 && ts_poll(s_answers, r, 15000) ? 0 : -1;
}

void ts_registry_stop(ts_registry_t *r)
{
    if (r->pid > 0) {
        ts_kill(r->pid, SIGTERM);
        if (ts_wait_exit(r->pid, 5000, NULL) < 0) {
            ts_kill(r->pid, SIGKILL);
            ts_wait_exit(r->pid, 5000, NULL);
        }
        r->pid = 0;
    }
    if (r->dir[0])
        ts_remove_dir(r->dir);
}

int ts_registry_push(const ts_registry_t *r, const char *layout, const char *kind,
                     const char *repo_tag, const char *user, const char *pass)
{
    char index[400];
    snprintf(index, sizeof index, "%s/index.json", layout);
    struct stat st;
    bool have = stat(index, &st) == 0 &&
                s_sh("grep -q '\"org.opencontainers.image.ref.name\":\"%s\"' %s", kind, index) == 0;
    if (!have && s_sh("%s/tests/support/make-image.sh %s %s", VMLET_SOURCE_DIR, layout, kind) < 0)
        return -1;
    if (s_sh("printf '{\"default\":[{\"type\":\"insecureAcceptAnything\"}]}' >%s/policy.json",
             r->dir) < 0)
        return -1;
    char creds[300] = "";
    if (user)
        snprintf(creds, sizeof creds, "--dest-creds '%s:%s'", user, pass);
    char tls[400];
    if (r->tls)
        snprintf(tls, sizeof tls, "--dest-cert-dir %s/certs", r->dir); // *.crt: CAs
    else
        snprintf(tls, sizeof tls, "--dest-tls-verify=false");
    return s_sh("skopeo --policy %s/policy.json copy -q %s %s oci:%s:%s docker://%s/%s "
                ">%s/push.log 2>&1",
                r->dir, tls, creds, layout, kind, r->host, repo_tag, r->dir);
}

long ts_registry_blob_gets(const ts_registry_t *r, const char *digest)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd,
             "grep -c '\"GET /v2/[^ ]*/blobs/%s HTTP/1.1\" 20[06]' %s 2>/dev/null", digest,
             r->log);
    FILE *p = popen(cmd, "r");
    long n = -1;
    if (p && fscanf(p, "%ld", &n) != 1)
        n = -1;
    if (p)
        pclose(p);
    return n;
}

long ts_registry_requests(const ts_registry_t *r)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "grep -c '\" HTTP/1.1\" [0-9]' %s 2>/dev/null", r->log);
    FILE *p = popen(cmd, "r");
    long n = -1;
    if (p && fscanf(p, "%ld", &n) != 1)
        n = -1;
    if (p)
        pclose(p);
    return n;
}

char *ts_registry_blob_file(const ts_registry_t *r, const char *digest)
{
    const char *hex = strchr(digest, ':') ? strchr(digest, ':') + 1 : digest;
    char *path = NULL;
    if (asprintf(&path, "%s/storage/docker/registry/v2/blobs/sha256/%.2s/%s/data", r->dir, hex,
                 hex) < 0)
        return NULL;
    return path;
}
