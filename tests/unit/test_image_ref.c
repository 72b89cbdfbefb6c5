// Image references: Docker's normalisation of familiar names, registries with
// ports, tags and digests, and bad references refused with a message.
#include "testsupport.h"

#include "vmlet/image_ref.h"

#include <stdio.h>
#include <string.h>

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HEX128 HEX64 HEX64

// Checks one string field; `want` NULL means the field must be NULL.
static void s_expect_field(const char *text, const char *name, const char *got, const char *want)
{
    if (!want && !got)
        return;
    if (!want || !got || strcmp(want, got) != 0)
        fail_msg("'%s': %s is '%s', want '%s'", text, name, got ? got : "(null)",
                 want ? want : "(null)");
}

static void test_valid_references(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *domain, *path, *tag, *digest, *normalized;
    } cases[] = {
        {"alpine", "docker.io", "library/alpine", "latest", NULL,
         "docker.io/library/alpine:latest"},
        {"alpine:3.19", "docker.io", "library/alpine", "3.19", NULL,
         "docker.io/library/alpine:3.19"},
        {"user/app", "docker.io", "user/app", "latest", NULL, "docker.io/user/app:latest"},
        {"docker.io/alpine", "docker.io", "library/alpine", "latest", NULL,
         "docker.io/library/alpine:latest"},
        {"docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge", NULL,
         "docker.io/library/alpine:edge"},
        {"index.docker.io/x", "docker.io", "library/x", "latest", NULL,
         "docker.io/library/x:latest"},
        {"index.docker.io/user/x:1", "docker.io", "user/x", "1", NULL, "docker.io/user/x:1"},
        {"localhost/app", "localhost", "app", "latest", NULL, "localhost/app:latest"},
        {"localhost:5000/app:1", "localhost:5000", "app", "1", NULL, "localhost:5000/app:1"},
        {"127.0.0.1:5000/demo:1", "127.0.0.1:5000", "demo", "1", NULL, "127.0.0.1:5000/demo:1"},
        {"[::1]:5000/app", "[::1]:5000", "app", "latest", NULL, "[::1]:5000/app:latest"},
        {"ghcr.io/org/app:v1.2", "ghcr.io", "org/app", "v1.2", NULL, "ghcr.io/org/app:v1.2"},
        {"ghcr.io/org/team/app", "ghcr.io", "org/team/app", "latest", NULL,
         "ghcr.io/org/team/app:latest"},
        // No "library/" away from Docker Hub.
        {"example.com/app", "example.com", "app", "latest", NULL, "example.com/app:latest"},
        {"registry.example.com/a__b/c-d--e.f_g:V1_x-y.z", "registry.example.com", "a__b/c-d--e.f_g",
         "V1_x-y.z", NULL, "registry.example.com/a__b/c-d--e.f_g:V1_x-y.z"},
        // An uppercase first element cannot be a namespace, so Docker takes it as a host.
        {"Foo/bar", "Foo", "bar", "latest", NULL, "Foo/bar:latest"},
        // Without a '/', "localhost:5000" is Docker Hub's "localhost" at tag 5000.
        {"localhost:5000", "docker.io", "library/localhost", "5000", NULL,
         "docker.io/library/localhost:5000"},
        {"alpine@sha256:" HEX64, "docker.io", "library/alpine", NULL, "sha256:" HEX64,
         "docker.io/library/alpine@sha256:" HEX64},
        {"alpine:3.19@sha256:" HEX64, "docker.io", "library/alpine", "3.19", "sha256:" HEX64,
         "docker.io/library/alpine:3.19@sha256:" HEX64},
        {"ghcr.io/org/app@sha512:" HEX128, "ghcr.io", "org/app", NULL, "sha512:" HEX128,
         "ghcr.io/org/app@sha512:" HEX128},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vmlet_image_ref_t ref;
        vmlet_err_t err = {0};
        if (vmlet_image_ref_parse(cases[i].text, &ref, &err) != 0)
            fail_msg("'%s': %s", cases[i].text, err.msg);
        s_expect_field(cases[i].text, "domain", ref.domain, cases[i].domain);
        s_expect_field(cases[i].text, "path", ref.path, cases[i].path);
        s_expect_field(cases[i].text, "tag", ref.tag, cases[i].tag);
        s_expect_field(cases[i].text, "digest", ref.digest, cases[i].digest);
        s_expect_field(cases[i].text, "normalized", ref.normalized, cases[i].normalized);
        vmlet_image_ref_clear(&ref);
    }
}

static void s_expect_error(const char *text, const char *want)
{
    vmlet_image_ref_t ref;
    vmlet_err_t err = {0};
    if (vmlet_image_ref_parse(text, &ref, &err) != -1)
        fail_msg("'%s' parsed as '%s', want error '%s'", text, ref.normalized, want);
    char prefix[600];
    snprintf(prefix, sizeof prefix, "image '%s': ", text);
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || !strstr(err.msg, want))
        fail_msg("'%s': message '%s' lacks '%s'", text, err.msg, want);
    assert_null(ref.domain);
    assert_null(ref.path);
    assert_null(ref.tag);
    assert_null(ref.digest);
    assert_null(ref.normalized);
}

static void test_invalid_references(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"", "reference is empty"},
        {"Alpine", "repository name must be lowercase"},
        {"user/App:1", "repository name must be lowercase"},
        {"ghcr.io/Org/app", "repository name must be lowercase"},
        {":tag", "repository name is missing"},
        {"@sha256:" HEX64, "repository name is missing"},
        {"a//b", "repository name 'a//b' has an empty component"},
        {"/alpine", "has an empty component"},
        {"user/", "has an empty component"},
        {"-alpine", "component '-alpine' is invalid"},
        {"a..b", "component 'a..b' is invalid"},
        {"a___b", "component 'a___b' is invalid"},
        {"a.-b", "component 'a.-b' is invalid"},
        {"alpine-", "component 'alpine-' is invalid"},
        {"alpine:", "tag after ':' is empty"},
        {"alpine:v1!", "tag 'v1!' is invalid"},
        {"alpine:.v1", "tag '.v1' is invalid"},
        {"alpine:-v1", "tag '-v1' is invalid"},
        {"alpine:a:b", "tag 'a:b' is invalid"},
        {"alpine@sha256:abc", "sha256 digest must have 64 hex characters, not 3"},
        {"alpine@sha256:" HEX64 "00", "sha256 digest must have 64 hex characters, not 66"},
        {"alpine@sha512:" HEX64, "sha512 digest must have 128 hex characters, not 64"},
        {"alpine@md5:0123456789abcdef0123456789abcdef", "digest algorithm 'md5' is not supported"},
        {"alpine@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
         "must be lowercase hex"},
        {"alpine@sha256", "digest 'sha256' is not <algorithm>:<hex>"},
        {"alpine@", "digest '' is not <algorithm>:<hex>"},
        {"alpine@:" HEX64, "is not <algorithm>:<hex>"},
        {" alpine", "contains whitespace"},
        {"alpine ", "contains whitespace"},
        {"al\tpine", "contains whitespace"},
        {"alpine:3\n", "contains whitespace"},
        {HEX64, "64-character hex image ID is not a repository name"},
        {"a_b.com/x", "registry 'a_b.com' is not a valid host[:port]"},
        {"host:/x", "registry 'host:' is not a valid host[:port]"},
        {"-bad.com/x", "registry '-bad.com' is not a valid host[:port]"},
        {"::1/x", "registry '::1' is not a valid host[:port]"},
        {"[]:5000/x", "registry '[]:5000' is not a valid host[:port]"},
        {"host:50a0/x", "registry 'host:50a0' is not a valid host[:port]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        s_expect_error(cases[i].text, cases[i].want);
}

// Limits: a tag of 128 characters and a repository path of 255 (counting the
// "library/" Docker Hub adds) pass; one more fails.
static void test_length_limits(void **state)
{
    (void)state;
    char text[400];
    vmlet_image_ref_t ref;
    vmlet_err_t err = {0};

    snprintf(text, sizeof text, "alpine:%0128d", 7);
    assert_int_equal(vmlet_image_ref_parse(text, &ref, &err), 0);
    assert_int_equal(strlen(ref.tag), 128);
    vmlet_image_ref_clear(&ref);
    snprintf(text, sizeof text, "alpine:%0129d", 7);
    s_expect_error(text, "tag must not be more than 128 characters (it has 129)");

    memset(text, 'a', 247);
    text[247] = '\0';
    assert_int_equal(vmlet_image_ref_parse(text, &ref, &err), 0);
    assert_int_equal(strlen(ref.path), 255); // "library/" + 247
    vmlet_image_ref_clear(&ref);
    strcat(text, "a");
    s_expect_error(text, "repository name must not be more than 255 characters (it has 256)");

    // Away from Docker Hub, the registry does not count.
    snprintf(text, sizeof text, "ghcr.io/");
    memset(text + 8, 'b', 255);
    text[8 + 255] = '\0';
    assert_int_equal(vmlet_image_ref_parse(text, &ref, &err), 0);
    vmlet_image_ref_clear(&ref);
    strcat(text, "b");
    s_expect_error(text, "must not be more than 255 characters");
}

static void test_clear_is_safe_twice_and_err_may_be_null(void **state)
{
    (void)state;
    vmlet_image_ref_t ref;
    assert_int_equal(vmlet_image_ref_parse("alpine", &ref, NULL), 0);
    vmlet_image_ref_clear(&ref);
    vmlet_image_ref_clear(&ref);
    assert_null(ref.normalized);
    assert_int_equal(vmlet_image_ref_parse("Alpine", &ref, NULL), -1);
    vmlet_image_ref_clear(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_references),
        cmocka_unit_test(test_invalid_references),
        cmocka_unit_test(test_length_limits),
        cmocka_unit_test(test_clear_is_safe_twice_and_err_may_be_null),
    };
    return TS_RUN(tests);
}
