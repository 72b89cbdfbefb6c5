// mkdir -p: makes every missing parent, accepts what exists, and refuses a
// file in the way with the path in the message.
#include "testsupport.h"

#include "vmlet/fsutil.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static bool s_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_makes_parents_and_accepts_existing(void **state)
{
    (void)state;
    char *dir = ts_tempdir("vmlet-fsutil");
    char deep[512];
    snprintf(deep, sizeof deep, "%s/a/b//c/", dir);
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_mkdirs(deep, 0755, &err), 0);
    assert_true(s_is_dir(deep));
    assert_int_equal(vmlet_mkdirs(deep, 0755, &err), 0);
    ts_remove_dir(dir);
    free(dir);
}

static void test_file_in_the_way_is_an_error(void **state)
{
    (void)state;
    char *dir = ts_tempdir("vmlet-fsutil");
    char file[512], below[600];
    snprintf(file, sizeof file, "%s/plain", dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(below, sizeof below, "%s/x", file);
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_mkdirs(file, 0755, &err), -1);
    assert_non_null(strstr(err.msg, file));
    assert_int_equal(vmlet_mkdirs(below, 0755, &err), -1);
    assert_non_null(strstr(err.msg, "Not a directory"));
    assert_int_equal(vmlet_mkdirs("", 0755, &err), -1);
    ts_remove_dir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_makes_parents_and_accepts_existing),
        cmocka_unit_test(test_file_in_the_way_is_an_error),
    };
    return TS_RUN(tests);
}
