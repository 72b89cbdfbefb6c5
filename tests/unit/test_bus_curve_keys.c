// Reading CURVE keys and certificates for the bus (bus_curve.h): keys as
// Z85 text or certificate files, secret certificates, and the errors an
// operator sees for each mistake.
#include "vmlet/bus_curve.h"

#include <cmocka.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char dir[64];
    char path[128]; // <dir>/cert, with <dir>/cert_secret
    zcert_t *cert;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/vmlet-curve-unit-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/cert", f->dir);
    f->cert = zcert_new();
    assert_int_equal(zcert_save(f->cert, f->path), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char secret[160];
    snprintf(secret, sizeof secret, "%s_secret", f->path);
    unlink(f->path);
    unlink(secret);
    rmdir(f->dir);
    zcert_destroy(&f->cert);
    free(f);
    return 0;
}

static void test_key_as_z85_text(void **state)
{
    fixture_t *f = *state;
    char key[VMLET_CURVE_KEY_TEXT];
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_bus_curve_parse_key(zcert_public_txt(f->cert), key, &err), 0);
    assert_string_equal(key, zcert_public_txt(f->cert));
}

static void test_key_from_public_certificate_file(void **state)
{
    fixture_t *f = *state;
    char key[VMLET_CURVE_KEY_TEXT];
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_bus_curve_parse_key(f->path, key, &err), 0);
    assert_string_equal(key, zcert_public_txt(f->cert));
}

static void test_bad_keys_are_named(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "short",
        "l)xUd&f11ptsEHJ{j}Dhm{*f=0rU:9IYQv?mjwc^x", // 41 characters
        "l)xUd&f11ptsEHJ{j}Dhm{*f=0rU:9IYQv?mjwc~",  // '~' is not Z85
        "/nonexistent/broker",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char key[VMLET_CURVE_KEY_TEXT];
        vmlet_err_t err = {0};
        assert_int_equal(vmlet_bus_curve_parse_key(bad[i], key, &err), -1);
        assert_non_null(strstr(err.msg, "key"));
    }
}

static void test_secret_certificate_loads_by_either_name(void **state)
{
    fixture_t *f = *state;
    char secret[160];
    snprintf(secret, sizeof secret, "%s_secret", f->path);
    const char *names[] = {f->path, secret};
    for (int i = 0; i < 2; i++) {
        vmlet_err_t err = {0};
        zcert_t *cert = vmlet_bus_curve_load_secret(names[i], &err);
        assert_non_null(cert);
        assert_string_equal(zcert_secret_txt(cert), zcert_secret_txt(f->cert));
        zcert_destroy(&cert);
    }
}

static void test_public_only_certificate_is_refused(void **state)
{
    fixture_t *f = *state;
    char secret[160];
    snprintf(secret, sizeof secret, "%s_secret", f->path);
    unlink(secret);
    vmlet_err_t err = {0};
    assert_null(vmlet_bus_curve_load_secret(f->path, &err));
    assert_non_null(strstr(err.msg, "no secret key"));
}

static void test_client_needs_the_server_key(void **state)
{
    fixture_t *f = *state;
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    vmlet_bus_options_t options = {.curve_cert = f->path};
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_bus_curve_client(sock, &options, "worker", &err), -1);
    assert_non_null(strstr(err.msg, "--bus-curve-server-key"));
    options.curve_server_key = f->path;
    assert_int_equal(vmlet_bus_curve_client(sock, &options, "worker", &err), 0);
    assert_int_equal(zsock_mechanism(sock), ZMQ_CURVE);
    zsock_destroy(&sock);
}

static void test_off_without_a_certificate(void **state)
{
    (void)state;
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    vmlet_bus_options_t options = {.curve_cert = ""};
    vmlet_err_t err = {0};
    assert_false(vmlet_bus_curve_enabled(&options));
    assert_int_equal(vmlet_bus_curve_client(sock, &options, "worker", &err), 0);
    assert_int_equal(zsock_mechanism(sock), ZMQ_NULL);
    zsock_destroy(&sock);
}

int main(void)
{
    zsys_set_logstream(NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_key_as_z85_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_from_public_certificate_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_keys_are_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_certificate_loads_by_either_name, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_public_only_certificate_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_needs_the_server_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_off_without_a_certificate, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
