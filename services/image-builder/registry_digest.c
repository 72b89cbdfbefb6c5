// Content digests ("sha256:<hex>", "sha512:<hex>"): checking their form and
// computing them with OpenSSL's EVP.
#include "registry_internal.h"

#include <string.h>

static bool s_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[n] == '\0';
}

const EVP_MD *reg_digest_md(const char *digest)
{
    if (!digest)
        return NULL;
    if (strncmp(digest, "sha256:", 7) == 0 && s_lower_hex(digest + 7, 64))
        return EVP_sha256();
    if (strncmp(digest, "sha512:", 7) == 0 && s_lower_hex(digest + 7, 128))
        return EVP_sha512();
    return NULL;
}

void reg_digest_final(EVP_MD_CTX *ctx, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    const EVP_MD *type = EVP_MD_CTX_get0_md(ctx);
    const char *name = EVP_MD_get_type(type) == NID_sha512 ? "sha512:" : "sha256:";
    EVP_DigestFinal_ex(ctx, md, &n);
    size_t len = strlen(name);
    memcpy(out, name, len);
    for (unsigned int i = 0; i < n; i++) {
        out[len++] = hex[md[i] >> 4];
        out[len++] = hex[md[i] & 15];
    }
    out[len] = '\0';
}

void reg_digest_of(const EVP_MD *md, const void *data, size_t len, char *out)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        abort(); // out of memory
    EVP_DigestInit_ex(ctx, md, NULL);
    EVP_DigestUpdate(ctx, data, len);
    reg_digest_final(ctx, out);
    EVP_MD_CTX_free(ctx);
}

char *registry_blob_path(const char *dir, const char *digest)
{
    if (!dir || !reg_digest_md(digest))
        return NULL; // a digest that is not one could walk out of dir
    const char *colon = strchr(digest, ':');
    char *path = NULL;
    if (asprintf(&path, "%s/%.*s/%s", dir, (int)(colon - digest), digest, colon + 1) < 0)
        return NULL;
    return path;
}
