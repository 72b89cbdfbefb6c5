// A real OCI registry (Debian's docker-registry) of a test's own, on a
// free port: plain HTTP, or TLS with htpasswd Basic auth, or Bearer tokens
// from a token server the test runs. Images are pushed with skopeo from
// layouts tests/support/make-image.sh makes.
#ifndef VMLET_TEST_REGISTRY_H
#define VMLET_TEST_REGISTRY_H

#include "testsupport.h"

typedef struct {
    bool tls;                  // serve HTTPS with a certificate from a CA of its own
    const char *htpasswd_user; // require Basic auth (needs tls)
    const char *htpasswd_pass;
    const char *token_realm;   // require Bearer tokens from this realm...
    const char *token_cert;    // ...signed by the key of this certificate (PEM)
} ts_registry_options_t;

typedef struct {
    pid_t pid;
    int port;
    char host[64]; // "127.0.0.1:PORT"
    char dir[256];
    char log[300];
    char ca[300]; // the CA certificate when tls
    bool tls;
} ts_registry_t;

int ts_registry_start(ts_registry_t *registry, const ts_registry_options_t *options);
void ts_registry_stop(ts_registry_t *registry);

// Builds (once per layout) and pushes make-image.sh's KIND as repo:tag.
// Returns 0 or -1. user/pass may be NULL.
int ts_registry_push(const ts_registry_t *registry, const char *layout, const char *kind,
                     const char *repo_tag, const char *user, const char *pass);

// How many times the registry served GET of the blob (from its log).
long ts_registry_blob_gets(const ts_registry_t *registry, const char *digest);

// How many requests the registry has answered (from its log).
long ts_registry_requests(const ts_registry_t *registry);

// The path of a blob in the registry's storage (to corrupt it in tests).
char *ts_registry_blob_file(const ts_registry_t *registry, const char *digest);

#endif
