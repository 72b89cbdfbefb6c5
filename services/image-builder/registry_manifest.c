// Manifests: fetched with every manifest type in Accept, checked against
// their digests, an index narrowed to its linux/amd64 entry (attestations
// skipped), and the platform manifest parsed into descriptors.
#include "registry_internal.h"

#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define S_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define S_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define S_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define S_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define S_DOCKER_SCHEMA1 "application/vnd.docker.distribution.manifest.v1"
#define S_ACCEPT S_OCI_MANIFEST ", " S_OCI_INDEX ", " S_DOCKER_MANIFEST ", " S_DOCKER_LIST
#define S_OS "linux"
#define S_ARCH "amd64"

// A fetched manifest or index.
typedef struct {
    reg_buf_t body;
    char digest[REG_DIGEST_MAX];
    const char *media_type; // one of the S_* types
    bool is_index;
    cJSON *json;
} s_doc_t;

static void s_doc_clear(s_doc_t *doc)
{
    reg_buf_clear(&doc->body);
    cJSON_Delete(doc->json);
    memset(doc, 0, sizeof *doc);
}

static bool s_buffer_sink(reg_job_t *job, const char *data, size_t n)
{
    reg_buf_t *buf = job->sink_arg;
    if (reg_buf_append(buf, data, n))
        return true;
    vmlet_err_set(&job->err, "larger than %zu bytes: not a manifest", buf->max);
    return false;
}

static void s_buffer_restart(reg_job_t *job)
{
    reg_buf_clear(job->sink_arg);
}

static const reg_sink_t s_buffer = {.on_data = s_buffer_sink, .on_restart = s_buffer_restart};

// --- checking what came ----------------------------------------------------------

// The body against the digest asked for (want), or else against the
// registry's Docker-Content-Digest; doc->digest is the body's own.
static int s_check_digest(s_doc_t *doc, const char *want, const char *header, int64_t size,
                          vmlet_err_t *err)
{
    const EVP_MD *md = want ? reg_digest_md(want) : EVP_sha256();
    reg_digest_of(md, doc->body.data, doc->body.len, doc->digest);
    if (want && strcmp(want, doc->digest) != 0)
        return vmlet_err_set(err, "digest mismatch (got %s)", doc->digest);
    const EVP_MD *header_md = !want && header ? reg_digest_md(header) : NULL;
    if (header_md) {
        char got[REG_DIGEST_MAX];
        reg_digest_of(header_md, doc->body.data, doc->body.len, got);
        if (strcmp(got, header) != 0)
            return vmlet_err_set(err, "digest mismatch: the registry says %s, the content is %s",
                                 header, got);
    }
    if (size >= 0 && (int64_t)doc->body.len != size)
        return vmlet_err_set(err, "size mismatch (the index says %lld bytes, got %zu)",
                             (long long)size, doc->body.len);
    return 0;
}

static const char *s_known_type(const char *type, size_t n)
{
    static const char *const known[] = {S_OCI_MANIFEST, S_OCI_INDEX, S_DOCKER_MANIFEST,
                                        S_DOCKER_LIST};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i]) == n && strncasecmp(type, known[i], n) == 0)
            return known[i];
    return NULL;
}

// The type from the body's mediaType, else Content-Type, else its shape.
static int s_classify(s_doc_t *doc, const char *content_type, vmlet_err_t *err)
{
    const cJSON *field = cJSON_GetObjectItemCaseSensitive(doc->json, "mediaType");
    const char *type = cJSON_IsString(field) ? field->valuestring : content_type;
    size_t n = type ? strcspn(type, "; \t") : 0;
    doc->media_type = type ? s_known_type(type, n) : NULL;
    if (!doc->media_type && !cJSON_IsString(field)) {
        if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(doc->json, "manifests")))
            doc->media_type = S_OCI_INDEX;
        else if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(doc->json, "layers")))
            doc->media_type = S_OCI_MANIFEST;
    }
    if (!doc->media_type) {
        if (type && strncmp(type, S_DOCKER_SCHEMA1, strlen(S_DOCKER_SCHEMA1)) == 0)
            return vmlet_err_set(err, "Docker schema 1 manifests are not supported (push the "
                                      "image again with a current client)");
        return vmlet_err_set(err,
                             "unsupported media type %.*s (want an OCI or Docker "
                             "schema 2 manifest or index)",
                             (int)n, type ? type : "(none)");
    }
    doc->is_index =
        strcmp(doc->media_type, S_OCI_INDEX) == 0 || strcmp(doc->media_type, S_DOCKER_LIST) == 0;
    return 0;
}

// --- fetching ------------------------------------------------------------------------

static int s_fetch(registry_t *self, const vmlet_image_ref_t *ref, const registry_cred_t *cred,
                   const char *reference, const char *want, int64_t size, s_doc_t *doc,
                   vmlet_err_t *err)
{
    cleanup_free char *base = reg_base_url(self, ref->domain);
    cleanup_free char *url = NULL, *scope = NULL;
    if (!base || asprintf(&url, "%s/v2/%s/manifests/%s", base, ref->path, reference) < 0 ||
        asprintf(&scope, "repository:%s:pull", ref->path) < 0)
        return vmlet_err_set(err, "out of memory");
    doc->body.max = REG_MAX_MANIFEST;
    reg_job_t job = {.domain = ref->domain,
                     .scope = scope,
                     .cred = cred,
                     .accept = S_ACCEPT,
                     .challenge = true,
                     .sink = &s_buffer,
                     .sink_arg = &doc->body};
    int rc = reg_job_init(&job, url, err);
    if (rc == 0)
        rc = reg_run_one(self, &job, err);
    if (rc == 0)
        rc = s_check_digest(doc, want, job.content_digest, size, err);
    if (rc == 0 && !(doc->json = cJSON_ParseWithLength(doc->body.data, doc->body.len)))
        rc = vmlet_err_set(err, "not JSON");
    if (rc == 0)
        rc = s_classify(doc, job.content_type, err);
    reg_job_clear(&job);
    return rc;
}

// --- descriptors ------------------------------------------------------------------

static int s_descriptor(const cJSON *json, registry_descriptor_t *out, vmlet_err_t *err)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(json, "mediaType");
    const cJSON *digest = cJSON_GetObjectItemCaseSensitive(json, "digest");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(json, "size");
    if (!cJSON_IsString(digest) || !reg_digest_md(digest->valuestring))
        return vmlet_err_set(err, "bad digest %.80s",
                             cJSON_IsString(digest) ? digest->valuestring : "(missing)");
    if (!cJSON_IsNumber(size) || size->valuedouble < 0 || size->valuedouble > 9.0e15 ||
        size->valuedouble != (double)(int64_t)size->valuedouble)
        return vmlet_err_set(err, "bad size for %s", digest->valuestring);
    out->media_type = vmlet_xstrdup(cJSON_IsString(type) ? type->valuestring : "");
    out->digest = vmlet_xstrdup(digest->valuestring);
    out->size = (int64_t)size->valuedouble;
    return 0;
}

static void s_descriptor_clear(registry_descriptor_t *d)
{
    free(d->media_type);
    free(d->digest);
    memset(d, 0, sizeof *d);
}

static int s_parse_manifest(const s_doc_t *doc, registry_manifest_t *out, vmlet_err_t *err)
{
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(doc->json, "schemaVersion");
    if (!cJSON_IsNumber(version) || version->valueint != 2)
        return vmlet_err_set(err, "schemaVersion is not 2");
    if (s_descriptor(cJSON_GetObjectItemCaseSensitive(doc->json, "config"), &out->config, err) < 0)
        return vmlet_err_wrap(err, "config");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(doc->json, "layers");
    if (layers && !cJSON_IsArray(layers))
        return vmlet_err_set(err, "layers is not a list");
    size_t n = (size_t)cJSON_GetArraySize(layers);
    out->layers = vmlet_xcalloc(n ? n : 1, sizeof *out->layers);
    const cJSON *layer;
    cJSON_ArrayForEach(layer, layers)
    {
        if (s_descriptor(layer, &out->layers[out->n_layers], err) < 0)
            return vmlet_err_wrap(err, "layer %zu", out->n_layers + 1);
        out->n_layers++;
    }
    out->digest = vmlet_xstrdup(doc->digest);
    out->media_type = vmlet_xstrdup(doc->media_type);
    return 0;
}

void registry_manifest_clear(registry_manifest_t *manifest)
{
    s_descriptor_clear(&manifest->config);
    for (size_t i = 0; i < manifest->n_layers; i++)
        s_descriptor_clear(&manifest->layers[i]);
    free(manifest->layers);
    free(manifest->digest);
    free(manifest->media_type);
    memset(manifest, 0, sizeof *manifest);
}

// --- the entry point ----------------------------------------------------------------

// The index's linux/amd64 manifest, fetched by digest and checked.
static int s_resolve_index(registry_t *self, const vmlet_image_ref_t *ref,
                           const registry_cred_t *cred, s_doc_t *doc, vmlet_err_t *err)
{
    int i = reg_choose_platform(doc->json, S_OS, S_ARCH, err);
    if (i < 0)
        return vmlet_err_wrap(err, "%s: manifest", ref->normalized);
    const cJSON *entry =
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc->json, "manifests"), i);
    registry_descriptor_t d = {0};
    if (s_descriptor(entry, &d, err) < 0)
        return vmlet_err_wrap(err, "%s: manifest: index entry %d", ref->normalized, i + 1);
    s_doc_t platform = {0};
    int rc = s_fetch(self, ref, cred, d.digest, d.digest, d.size, &platform, err);
    if (rc == 0 && platform.is_index)
        rc = vmlet_err_set(err, "an index where a platform manifest belongs (nested indexes "
                                "are not supported)");
    if (rc < 0)
        vmlet_err_wrap(err, "%s: manifest %s (%s/%s)", ref->normalized, d.digest, S_OS, S_ARCH);
    s_descriptor_clear(&d);
    s_doc_clear(doc);
    *doc = platform;
    return rc;
}

int registry_get_manifest(registry_t *self, const vmlet_image_ref_t *ref,
                          const registry_cred_t *cred, registry_manifest_t *out, vmlet_err_t *err)
{
    memset(out, 0, sizeof *out);
    // A digest pins the content; the tag beside it is only a name.
    const char *reference = ref->digest ? ref->digest : ref->tag;
    if (!reference)
        return vmlet_err_set(err, "%s: manifest: no tag or digest", ref->normalized);
    s_doc_t doc = {0};
    int rc = s_fetch(self, ref, cred, reference, ref->digest, -1, &doc, err);
    if (rc < 0)
        vmlet_err_wrap(err, "%s: manifest", ref->normalized);
    if (rc == 0 && doc.is_index)
        rc = s_resolve_index(self, ref, cred, &doc, err);
    if (rc == 0 && s_parse_manifest(&doc, out, err) < 0)
        rc = vmlet_err_wrap(err, "%s: manifest %s", ref->normalized, doc.digest);
    if (rc < 0)
        registry_manifest_clear(out);
    s_doc_clear(&doc);
    return rc;
}
