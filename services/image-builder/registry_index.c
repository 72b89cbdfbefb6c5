// Choosing one platform's manifest from an image index (OCI) or manifest
// list (Docker), skipping the attestation manifests BuildKit adds.
#include "registry_internal.h"

#include <stdio.h>
#include <string.h>

#define S_REFERENCE_TYPE "vnd.docker.reference.type" // BuildKit's attestation marker

static const char *s_str(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

// Attestations: annotated as BuildKit does, or on platform unknown/unknown.
static bool s_is_attestation(const cJSON *entry)
{
    const cJSON *annotations = cJSON_GetObjectItemCaseSensitive(entry, "annotations");
    if (s_str(annotations, S_REFERENCE_TYPE))
        return true;
    const cJSON *platform = cJSON_GetObjectItemCaseSensitive(entry, "platform");
    const char *os = s_str(platform, "os"), *arch = s_str(platform, "architecture");
    return os && arch && strcmp(os, "unknown") == 0 && strcmp(arch, "unknown") == 0;
}

// A platform manifest may be named by its type, or the type left out.
static bool s_is_manifest_type(const char *type)
{
    return !type || strcmp(type, "application/vnd.oci.image.manifest.v1+json") == 0 ||
           strcmp(type, "application/vnd.docker.distribution.manifest.v2+json") == 0;
}

// "linux/arm64/v8, windows/amd64" into buf: what the index offers.
static void s_offered(const cJSON *manifests, char *buf, size_t cap)
{
    size_t n = 0;
    const cJSON *entry;
    buf[0] = '\0';
    cJSON_ArrayForEach(entry, manifests)
    {
        if (s_is_attestation(entry) || n >= cap)
            continue;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(entry, "platform");
        const char *os = s_str(p, "os"), *arch = s_str(p, "architecture");
        const char *variant = s_str(p, "variant");
        int w = snprintf(buf + n, cap - n, "%s%s/%s%s%s", n ? ", " : "", os ? os : "?",
                         arch ? arch : "?", variant ? "/" : "", variant ? variant : "");
        n += w > 0 ? (size_t)w : 0;
    }
}

int reg_choose_platform(const cJSON *index, const char *os, const char *arch, vmlet_err_t *err)
{
    const cJSON *manifests = cJSON_GetObjectItemCaseSensitive(index, "manifests");
    if (!cJSON_IsArray(manifests))
        return vmlet_err_set(err, "index without a manifests list");
    int chosen = -1, i = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, manifests)
    {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(entry, "platform");
        const char *e_os = s_str(p, "os"), *e_arch = s_str(p, "architecture");
        bool match = !s_is_attestation(entry) && s_is_manifest_type(s_str(entry, "mediaType")) &&
                     e_os && e_arch && strcmp(e_os, os) == 0 && strcmp(e_arch, arch) == 0;
        if (match && chosen < 0)
            chosen = i;
        if (match && !s_str(p, "variant")) { // the plain one over, say, amd64/v3
            chosen = i;
            break;
        }
        i++;
    }
    if (chosen >= 0)
        return chosen;
    char offered[512];
    s_offered(manifests, offered, sizeof offered);
    return vmlet_err_set(err, "no %s/%s image in the index (it has: %s)", os, arch,
                         offered[0] ? offered : "nothing");
}
