// What the registry*.c files share: the client's state, HTTP jobs driven to
// completion (redirects, auth, retries), the token cache and digests.
// Not part of the builder's API; the unit tests use it as a seam.
#ifndef VMLET_IMAGE_REGISTRY_INTERNAL_H
#define VMLET_IMAGE_REGISTRY_INTERNAL_H

#include "registry.h"
#include "vmlet/backoff.h"

#include <curl/curl.h>
#include <openssl/evp.h>

#define REG_MAX_REDIRECTS 5
#define REG_MAX_MANIFEST (4L * 1024 * 1024) // as containerd: larger is not a manifest
#define REG_MAX_ERROR_BODY (16 * 1024)      // kept of a non-2xx body, for its message
#define REG_MAX_TOKEN_RESPONSE (1024 * 1024)
#define REG_DIGEST_MAX (7 + 1 + 128 + 1) // "sha512:" + 128 hex + NUL

typedef struct reg_token reg_token_t;

struct _registry_t {
    char *insecure; // our copy of options.insecure, or NULL
    int retries;
    int64_t max_bytes_per_sec;
    int parallel;
    struct curl_blob ca; // system CAs + ca_file; ca.data NULL: the system's only
    vmlet_backoff_policy_t backoff;
    vmlet_log_t *log;
    vmlet_metrics_t *metrics;
    vmlet_metric_t *bytes_total;
    vmlet_metric_t *retries_total;
    registry_stats_t stats;
    CURLM *multi;      // registry requests and blob transfers
    CURLM *auth_multi; // token requests made while `multi` is mid-run
    int depth;         // reg_run calls in progress (1 while a token is fetched for a 401)
    reg_token_t *tokens;
};

// --- buffers -----------------------------------------------------------------

typedef struct {
    char *data; // NUL-terminated
    size_t len;
    size_t max; // appending beyond it fails (too_big)
    bool too_big;
} reg_buf_t;

// Appends n bytes; false when max would be passed or memory ran out.
bool reg_buf_append(reg_buf_t *buf, const char *data, size_t n);
void reg_buf_clear(reg_buf_t *buf);

// --- HTTP jobs ---------------------------------------------------------------

typedef struct reg_job reg_job_t;

// Where a job's successful (2xx) body goes. on_data returns false to abort
// the transfer for good (it fills job->err first); on_restart (may be
// NULL) is called before every attempt after the first, to forget what the
// last one wrote; on_done (may be NULL) checks a complete body and returns
// false (with job->err) to fail the job.
typedef struct {
    bool (*on_data)(reg_job_t *job, const char *data, size_t n);
    void (*on_restart)(reg_job_t *job);
    bool (*on_done)(reg_job_t *job);
} reg_sink_t;

struct reg_job {
    // The request, set by the caller (borrowed).
    const char *domain; // registry as the reference names it: auth cache and messages
    const char *scope;  // "repository:<path>:pull", or "" (GET /v2/)
    const registry_cred_t *cred;
    const char *accept; // Accept header value, or NULL
    const char *auth;   // fixed Authorization value (token requests); NULL: the cache's
    const char *post;   // form body: a POST instead of a GET; NULL: GET
    bool challenge;     // answer a 401's WWW-Authenticate by authenticating once
    const reg_sink_t *sink;
    void *sink_arg;
    // What the last response said, for the caller (owned; reset per attempt).
    long status;
    char *content_type;
    char *content_digest; // Docker-Content-Digest
    // Engine state (registry_http.c).
    registry_t *registry;
    char *url;        // current URL (owned): set with reg_job_init
    char *origin_url; // the first URL: retries start over there
    char *origin;     // scheme://host:port of the first URL
    CURL *easy;
    struct curl_slist *headers;
    char *www_authenticate;
    long retry_after_s; // -1: none
    reg_buf_t err_body; // a non-2xx response's body
    int attempt;        // retries made
    int redirects;
    bool authenticated; // a challenge was answered
    bool sink_failed;
    bool active;   // in the multi handle
    bool finished; // done, rc says how
    int rc;
    int64_t not_before; // monotonic ms: no new attempt before
    char curl_error[CURL_ERROR_SIZE];
    vmlet_err_t err; // the failure, without the image/step prefix
};

// Sets the URL (copied). Returns -1 with err on a URL curl cannot parse.
int reg_job_init(reg_job_t *job, const char *url, vmlet_err_t *err);
void reg_job_clear(reg_job_t *job);
// Starts the job's next attempt in multi (registry_http.c, for the driver).
int reg_job_start(registry_t *self, CURLM *multi, reg_job_t *job);
// "scheme://host:port" of url, the port explicit (caller frees); NULL if bad.
char *reg_origin(const char *url);

// Runs the jobs, at most `parallel` at once, each to success or failure:
// redirects followed by hand (Authorization only to the first origin), a
// 401 answered once through registry_auth, 429/5xx/transport errors retried
// with back-off. Stops at the first failure. Returns 0 when all succeeded,
// else -1 with err = the failed job's error (also in job->err).
// progress (may be NULL) is called from the loop now and then.
int reg_run(registry_t *self, reg_job_t **jobs, size_t n, int parallel, void (*progress)(void *arg),
            void *progress_arg, vmlet_err_t *err);
int reg_run_one(registry_t *self, reg_job_t *job, vmlet_err_t *err);

// The base URL of a registry ("https://registry-1.docker.io" for
// docker.io, "http://h:p" for an insecure one). Caller frees.
char *reg_base_url(const registry_t *self, const char *domain);

// "(check the pull secret for X)" or "(no pull secret for X: ...)".
const char *reg_cred_hint(const registry_cred_t *cred, char *buf, size_t cap, const char *domain);

// err = "<status> <CODE>: <message>[; ...]" from a registry's JSON error
// body, or "<status> <reason>: <body start>" when it is not one. Returns -1.
int reg_status_error(long status, const reg_buf_t *body, vmlet_err_t *err);

// --- auth (registry_auth.c) --------------------------------------------------

// One challenge of a WWW-Authenticate header (RFC 7235), the one we answer:
// Bearer when offered, else Basic.
typedef struct {
    char *scheme;  // "Bearer" or "Basic" (as sent); NULL when neither
    char *realm;   // may be NULL
    char *service; // may be NULL
    char *scope;   // may be NULL
    char *error;   // Bearer error="insufficient_scope", may be NULL
} reg_challenge_t;

// Parses a WWW-Authenticate value (several challenges allowed, quoted
// strings with escapes). Returns 0, or -1 when nothing usable is in it.
int reg_parse_challenge(const char *header, reg_challenge_t *out);
void reg_challenge_clear(reg_challenge_t *challenge);

// The Authorization value for a request to domain with scope, from the
// cache (a token not yet expired, or Basic the registry asked for). Caller
// frees; NULL when nothing is known.
char *reg_auth_header(registry_t *self, const char *domain, const char *scope,
                      const registry_cred_t *cred);

// Answers a 401: fetches and caches a token from the Bearer realm, or
// remembers that the registry takes Basic. Returns 0 when a new attempt
// can carry an answer, 1 when there is none to give (Basic asked, no
// credentials: the 401 stands), -1 with err when getting a token failed.
int reg_auth_answer(registry_t *self, const char *domain, const char *scope,
                    const registry_cred_t *cred, const char *www_authenticate, vmlet_err_t *err);

// Forgets every cached token.
void reg_auth_clear(registry_t *self);

// --- indexes (registry_index.c) ----------------------------------------------

// The position of os/arch's manifest in an index's (or manifest list's)
// "manifests": attestations skipped, an entry without a variant preferred.
// Returns -1 with err naming what the index offers when none fits.
int reg_choose_platform(const cJSON *index, const char *os, const char *arch, vmlet_err_t *err);

// --- digests (registry_digest.c) ---------------------------------------------

// The algorithm of a well-formed digest ("sha256:" + 64 lowercase hex, or
// "sha512:" + 128), else NULL.
const EVP_MD *reg_digest_md(const char *digest);
// "sha256:<hex>" of data, with md's algorithm, into out (REG_DIGEST_MAX).
void reg_digest_of(const EVP_MD *md, const void *data, size_t len, char *out);
// "<alg>:<hex>" from a finished context.
void reg_digest_final(EVP_MD_CTX *ctx, char *out);

#endif
