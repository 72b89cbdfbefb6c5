// Live files volumes' pure pieces (services/vm-launcher/volume_refresh.c):
// the content digest that decides whether a guest gets a WriteFiles (same
// files in another order: same; a byte, a mode or a name changed: not;
// another key: not), and when a projected token is renewed.
#include "testsupport.h"

#include "volume_refresh.h"

#include <string.h>

static void s_file(Vmlet__GuestFile *f, const char *path, const char *content, uint32_t mode)
{
    *f = (Vmlet__GuestFile)VMLET__GUEST_FILE__INIT;
    f->path = (char *)path;
    f->has_content = 1;
    f->content.data = (uint8_t *)content;
    f->content.len = strlen(content);
    f->has_mode = 1, f->mode = mode;
}

static void s_digest(const uint8_t key[32], Vmlet__GuestFile **files, size_t n,
                     uint8_t out[VOLUME_DIGEST_LEN])
{
    Vmlet__FilesSource src = VMLET__FILES_SOURCE__INIT;
    src.files = files, src.n_files = n;
    volume_digest(key, &src, out);
}

static void test_digest(void **state)
{
    (void)state;
    uint8_t key[32] = {1}, other_key[32] = {2};
    Vmlet__GuestFile a, b, a_mode, a_byte, renamed, split1, split2;
    s_file(&a, "app.conf", "port=80\n", 0644);
    s_file(&b, "keys/one", "1", 0600);
    s_file(&a_mode, "app.conf", "port=80\n", 0600);
    s_file(&a_byte, "app.conf", "port=81\n", 0644);
    s_file(&renamed, "app.cong", "port=80\n", 0644);
    // The same bytes cut differently between name and content differ too.
    s_file(&split1, "ab", "c", 0644);
    s_file(&split2, "a", "bc", 0644);
    uint8_t base[VOLUME_DIGEST_LEN], d[VOLUME_DIGEST_LEN];
    Vmlet__GuestFile *ab[] = {&a, &b}, *ba[] = {&b, &a};
    s_digest(key, ab, 2, base);
    s_digest(key, ba, 2, d);
    assert_memory_equal(base, d, sizeof d); // order does not matter
    struct {
        Vmlet__GuestFile *first;
        const uint8_t *key;
        size_t n;
    } changed[] = {
        {&a_mode, key, 2}, {&a_byte, key, 2}, {&renamed, key, 2}, {&a, key, 1}, {&a, other_key, 2}};
    for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++) {
        Vmlet__GuestFile *files[] = {changed[i].first, &b};
        s_digest(changed[i].key, files, changed[i].n, d);
        assert_memory_not_equal(base, d, sizeof d);
    }
    Vmlet__GuestFile *one[] = {&split1}, *two[] = {&split2};
    s_digest(key, one, 1, base);
    s_digest(key, two, 1, d);
    assert_memory_not_equal(base, d, sizeof d);
    s_digest(key, NULL, 0, base); // an empty volume has a digest of its own
    s_digest(key, one, 1, d);
    assert_memory_not_equal(base, d, sizeof d);
}

static void test_token_due(void **state)
{
    (void)state;
    const int64_t t0 = 1000000;
    assert_false(volume_token_due(t0, 3600, t0));
    assert_false(volume_token_due(t0, 3600, t0 + 2879 * 1000)); // 80 % of an hour is 2880 s
    assert_true(volume_token_due(t0, 3600, t0 + 2880 * 1000));
    assert_false(volume_token_due(t0, 0, t0 + 60 * 1000)); // unset: an hour
    assert_true(volume_token_due(t0, 0, t0 + 2880 * 1000));
    // A year-long token is still renewed after a day.
    assert_false(volume_token_due(t0, 365LL * 86400, t0 + 86399LL * 1000));
    assert_true(volume_token_due(t0, 365LL * 86400, t0 + 86400LL * 1000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest),
        cmocka_unit_test(test_token_due),
    };
    return TS_RUN(tests);
}
