// Image references parsed and normalised by Docker's rules (see image_ref.h).
#include "vmlet/image_ref.h"

#include <stdbool.h>
#include <string.h>

#define DEFAULT_DOMAIN "docker.io"
#define LEGACY_DOMAIN "index.docker.io" // the old "Docker Index" name of Docker Hub
#define OFFICIAL_PREFIX "library/"
#define DEFAULT_TAG "latest"
#define PATH_MAX_LEN 255 // distribution/reference RepositoryNameTotalLengthMax
#define TAG_MAX_LEN 128

// The pieces of a reference, pointing into the text being parsed.
typedef struct {
    const char *domain;
    size_t domain_len;
    bool official; // Docker Hub name with one component: gets "library/"
    const char *path;
    size_t path_len;
    const char *tag; // NULL when there is no ':'
    size_t tag_len;
    const char *digest; // NULL when there is no '@'
} pieces_t;

static bool s_is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool s_is_alnum(char c)
{
    return s_is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool s_is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool s_has_upper(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            return true;
    return false;
}

// Docker refuses a bare 64-hex image ID where a name is expected.
static bool s_is_identifier(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == 64;
}

// Docker's splitDockerDomain: the part before the first '/' is a registry
// only if it is "localhost", holds a '.' or ':', or has an uppercase letter
// (namespaces cannot); otherwise the name is on Docker Hub.
static void s_split_domain(const char *text, pieces_t *p, const char **rest)
{
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : 0;
    p->domain = DEFAULT_DOMAIN;
    p->domain_len = strlen(DEFAULT_DOMAIN);
    *rest = text;
    if (slash) {
        bool legacy = n == strlen(LEGACY_DOMAIN) && strncmp(text, LEGACY_DOMAIN, n) == 0;
        bool localhost = n == strlen("localhost") && strncmp(text, "localhost", n) == 0;
        bool hostlike = memchr(text, '.', n) || memchr(text, ':', n) || s_has_upper(text, n);
        if (legacy)
            *rest = slash + 1;
        else if (localhost || hostlike) {
            p->domain = text;
            p->domain_len = n;
            *rest = slash + 1;
        }
    }
    // Only on Docker Hub: "docker.io/ubuntu" is docker.io/library/ubuntu.
    p->official = p->domain_len == strlen(DEFAULT_DOMAIN) &&
                  strncmp(p->domain, DEFAULT_DOMAIN, p->domain_len) == 0 && !strchr(*rest, '/');
}

// name [':' tag] ['@' digest]: a digest holds ':', a tag holds neither.
static void s_split_rest(const char *rest, pieces_t *p)
{
    const char *at = strchr(rest, '@');
    size_t n = at ? (size_t)(at - rest) : strlen(rest);
    const char *colon = memchr(rest, ':', n);
    p->path = rest;
    p->path_len = colon ? (size_t)(colon - rest) : n;
    if (colon) {
        p->tag = colon + 1;
        p->tag_len = n - p->path_len - 1;
    }
    p->digest = at ? at + 1 : NULL;
}

// Separators between alphanumeric runs: '.', '_', '__' or any run of '-'.
static bool s_valid_separator(const char *s, size_t n)
{
    if (n == 1 && (s[0] == '.' || s[0] == '_'))
        return true;
    if (n == 2 && s[0] == '_' && s[1] == '_')
        return true;
    for (size_t i = 0; i < n; i++)
        if (s[i] != '-')
            return false;
    return n > 0;
}

static bool s_valid_component(const char *s, size_t n)
{
    size_t i = 0;
    for (;;) {
        size_t start = i;
        while (i < n && s_is_lower_alnum(s[i]))
            i++;
        if (i == start)
            return false;
        if (i == n)
            return true;
        size_t sep = i;
        while (i < n && (s[i] == '.' || s[i] == '_' || s[i] == '-'))
            i++;
        if (!s_valid_separator(s + sep, i - sep))
            return false;
    }
}

static int s_check_path(const char *text, const pieces_t *p, vmlet_err_t *err)
{
    if (p->path_len == 0)
        return vmlet_err_set(err, "image '%s': repository name is missing", text);
    if (s_has_upper(p->path, p->path_len))
        return vmlet_err_set(err, "image '%s': repository name must be lowercase", text);
    for (size_t i = 0; i <= p->path_len;) {
        const char *c = p->path + i;
        const char *slash = memchr(c, '/', p->path_len - i);
        size_t n = slash ? (size_t)(slash - c) : p->path_len - i;
        if (n == 0)
            return vmlet_err_set(err, "image '%s': repository name '%.*s' has an empty component",
                                 text, (int)p->path_len, p->path);
        if (!s_valid_component(c, n))
            return vmlet_err_set(err,
                                 "image '%s': repository name component '%.*s' is invalid (use "
                                 "lowercase letters and digits separated by '.', '_', '__' or '-')",
                                 text, (int)n, c);
        i += n + 1;
    }
    size_t total = p->path_len + (p->official ? strlen(OFFICIAL_PREFIX) : 0);
    if (total > PATH_MAX_LEN)
        return vmlet_err_set(err,
                             "image '%s': repository name must not be more than %d characters "
                             "(it has %zu)",
                             text, PATH_MAX_LEN, total);
    return 0;
}

// host [':' port], host being dot-separated labels or a bracketed IPv6 address.
static bool s_valid_domain(const char *d, size_t n)
{
    size_t i = 0;
    if (n > 0 && d[0] == '[') {
        const char *close = memchr(d, ']', n);
        if (!close || close == d + 1)
            return false;
        for (const char *c = d + 1; c < close; c++)
            if (!s_is_hex(*c) && *c != ':')
                return false;
        i = (size_t)(close - d) + 1;
    } else {
        for (;;) {
            size_t start = i;
            while (i < n && (s_is_alnum(d[i]) || d[i] == '-'))
                i++;
            if (i == start || d[start] == '-' || d[i - 1] == '-')
                return false;
            if (i < n && d[i] == '.') {
                i++;
                continue;
            }
            break;
        }
    }
    if (i == n)
        return true;
    if (d[i] != ':' || i + 1 == n)
        return false;
    for (i++; i < n; i++)
        if (d[i] < '0' || d[i] > '9')
            return false;
    return true;
}

static int s_check_tag(const char *text, const pieces_t *p, vmlet_err_t *err)
{
    if (!p->tag)
        return 0;
    if (p->tag_len == 0)
        return vmlet_err_set(err, "image '%s': tag after ':' is empty", text);
    if (p->tag_len > TAG_MAX_LEN)
        return vmlet_err_set(err,
                             "image '%s': tag must not be more than %d characters (it has %zu)",
                             text, TAG_MAX_LEN, p->tag_len);
    for (size_t i = 0; i < p->tag_len; i++) {
        char c = p->tag[i];
        if (!(s_is_alnum(c) || c == '_' || (i > 0 && (c == '.' || c == '-'))))
            return vmlet_err_set(err,
                                 "image '%s': tag '%.*s' is invalid (use letters, digits, '_', "
                                 "'.' and '-', not starting with '.' or '-')",
                                 text, (int)p->tag_len, p->tag);
    }
    return 0;
}

// Grammar of distribution/reference, then go-digest's rules: a registered
// algorithm and exactly its length of lowercase hex.
static int s_check_digest(const char *text, const char *digest, vmlet_err_t *err)
{
    static const struct {
        const char *name;
        size_t hex_len;
    } algorithms[] = {{"sha256", 64}, {"sha384", 96}, {"sha512", 128}};
    if (!digest)
        return 0;
    const char *colon = strchr(digest, ':');
    if (!colon || colon == digest || !colon[1])
        return vmlet_err_set(err, "image '%s': digest '%s' is not <algorithm>:<hex>", text, digest);
    size_t alg_len = (size_t)(colon - digest);
    const char *hex = colon + 1;
    for (size_t i = 0; i < sizeof algorithms / sizeof algorithms[0]; i++) {
        if (alg_len != strlen(algorithms[i].name) || strncmp(digest, algorithms[i].name, alg_len))
            continue;
        size_t n = strlen(hex);
        for (size_t j = 0; j < n; j++)
            if (!((hex[j] >= '0' && hex[j] <= '9') || (hex[j] >= 'a' && hex[j] <= 'f')))
                return vmlet_err_set(err,
                                     "image '%s': digest '%s' must be lowercase hex after '%s:'",
                                     text, digest, algorithms[i].name);
        if (n != algorithms[i].hex_len)
            return vmlet_err_set(err, "image '%s': %s digest must have %zu hex characters, not %zu",
                                 text, algorithms[i].name, algorithms[i].hex_len, n);
        return 0;
    }
    return vmlet_err_set(err,
                         "image '%s': digest algorithm '%.*s' is not supported (use sha256, "
                         "sha384 or sha512)",
                         text, (int)alg_len, digest);
}

static int s_check(const char *text, pieces_t *p, vmlet_err_t *err)
{
    if (!*text)
        return vmlet_err_set(err,
                             "image '': reference is empty (e.g. alpine or ghcr.io/org/app:v1)");
    for (const char *c = text; *c; c++)
        if (*c == ' ' || (*c >= '\t' && *c <= '\r'))
            return vmlet_err_set(err, "image '%s': contains whitespace", text);
    if (s_is_identifier(text))
        return vmlet_err_set(err,
                             "image '%s': a 64-character hex image ID is not a repository name "
                             "(use name@sha256:<hex>)",
                             text);
    const char *rest;
    s_split_domain(text, p, &rest);
    s_split_rest(rest, p);
    if (s_check_path(text, p, err) < 0)
        return -1;
    if (!s_valid_domain(p->domain, p->domain_len))
        return vmlet_err_set(err, "image '%s': registry '%.*s' is not a valid host[:port]", text,
                             (int)p->domain_len, p->domain);
    if (s_check_tag(text, p, err) < 0)
        return -1;
    return s_check_digest(text, p->digest, err);
}

static int s_fill(const pieces_t *p, vmlet_image_ref_t *out)
{
    out->domain = strndup(p->domain, p->domain_len);
    if (asprintf(&out->path, "%s%.*s", p->official ? OFFICIAL_PREFIX : "", (int)p->path_len,
                 p->path) < 0)
        out->path = NULL;
    if (p->tag)
        out->tag = strndup(p->tag, p->tag_len);
    else if (!p->digest)
        out->tag = strdup(DEFAULT_TAG);
    if (p->digest)
        out->digest = strdup(p->digest);
    if (!out->domain || !out->path || (!out->tag && !p->digest) || (p->digest && !out->digest))
        return -1;
    if (asprintf(&out->normalized, "%s/%s%s%s%s%s", out->domain, out->path, out->tag ? ":" : "",
                 out->tag ? out->tag : "", out->digest ? "@" : "",
                 out->digest ? out->digest : "") < 0) {
        out->normalized = NULL;
        return -1;
    }
    return 0;
}

int vmlet_image_ref_parse(const char *text, vmlet_image_ref_t *out, vmlet_err_t *err)
{
    memset(out, 0, sizeof *out);
    if (!text)
        text = "";
    pieces_t p = {0};
    if (s_check(text, &p, err) < 0)
        return -1;
    if (s_fill(&p, out) < 0) {
        vmlet_image_ref_clear(out);
        return vmlet_err_set(err, "image '%s': out of memory", text);
    }
    return 0;
}

void vmlet_image_ref_clear(vmlet_image_ref_t *ref)
{
    if (!ref)
        return;
    free(ref->domain);
    free(ref->path);
    free(ref->tag);
    free(ref->digest);
    free(ref->normalized);
    ref->domain = ref->path = ref->tag = ref->digest = ref->normalized = NULL;
}
