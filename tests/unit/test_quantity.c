// Resource quantities: every suffix, exact rounding away from zero as
// MilliValue and Value do, overflow and garbage refused with a message, and
// the kubelet's formatting.
#include "testsupport.h"

#include "vmlet/quantity.h"

#include <stdio.h>
#include <string.h>

typedef int (*parse_fn)(const char *, int64_t *, vmlet_err_t *);

typedef struct {
    const char *text;
    int64_t want;
} good_t;

static void s_expect_values(const char *fn_name, parse_fn fn, const good_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int64_t got = -42;
        vmlet_err_t err = {0};
        if (fn(cases[i].text, &got, &err) != 0)
            fail_msg("%s('%s'): %s", fn_name, cases[i].text, err.msg);
        if (got != cases[i].want)
            fail_msg("%s('%s') = %lld, want %lld", fn_name, cases[i].text, (long long)got,
                     (long long)cases[i].want);
    }
}

static void test_milli(void **state)
{
    (void)state;
    static const good_t cases[] = {
        {"500m", 500},
        {"250m", 250},
        {"1", 1000},
        {"2", 2000},
        {"1.5", 1500},
        {"0.1", 100},
        {"2k", 2000000},
        {"1e3", 1000000},
        {"1E3", 1000000},
        {"1e+3", 1000000},
        {"1E-3", 1},
        {"1e-3", 1},
        {"128Mi", 134217728000LL},
        {"1Gi", 1073741824000LL},
        {"1G", 1000000000000LL},
        {"100m", 100},
        {"0", 0},
        {"-0", 0},
        {"0Ei", 0},
        {"0.000m", 0},
        {"+1", 1000},
        {"-1", -1000},
        {"-1.5", -1500},
        {"00010", 10000},
        {"1.", 1000},
        {".5", 500},
        {"1.G", 1000000000000LL},
        {"0.5Mi", 524288000},
        {"100.035k", 100035000},
        // Finer than a thousandth rounds away from zero.
        {"1.234567891", 1235},
        {"-1.234567891", -1235},
        {"1e-4", 1},
        {"1n", 1},
        {"-1n", -1},
        {"1001u", 2},
        {"0.000000000000000000000000000001", 1},
        {"1e-2000000000", 1},
        {"1000u", 1},
        {"9223372036854775807m", INT64_MAX},
        {"-9223372036854775807m", -INT64_MAX},
        {"9223372036854775.807", INT64_MAX},
    };
    s_expect_values("milli", vmlet_quantity_milli, cases, sizeof cases / sizeof cases[0]);
}

static void test_value(void **state)
{
    (void)state;
    static const good_t cases[] = {
        {"128Mi", 134217728},
        {"1Gi", 1073741824},
        {"1Ki", 1024},
        {"1G", 1000000000},
        {"1M", 1000000},
        {"1T", 1000000000000LL},
        {"1P", 1000000000000000LL},
        {"1E", 1000000000000000000LL},
        {"1e18", 1000000000000000000LL},
        {"2Ti", 2199023255552LL},
        {"3Pi", 3377699720527872LL},
        {"7Ei", 8070450532247928832LL},
        {"100m", 1},
        {"-100m", -1},
        {"1", 1},
        {"1.5", 2},
        {"-1.5", -2},
        {"0", 0},
        {"0.5Ki", 512},
        {"1.1Ki", 1127}, // 1126.4 rounds up
        {"2.5e-1", 1},
        {"9223372036854775807", INT64_MAX},
        {"-9223372036854775807", -INT64_MAX},
        {"1e-2147483647", 1},
    };
    s_expect_values("value", vmlet_quantity_value, cases, sizeof cases / sizeof cases[0]);
}

static void test_bad_quantities_name_the_text(void **state)
{
    (void)state;
    static const struct {
        parse_fn fn;
        const char *text;
        const char *want;
    } cases[] = {
        {vmlet_quantity_milli, "9999999999Ei", "too large"},
        {vmlet_quantity_value, "9999999999Ei", "too large"},
        {vmlet_quantity_value, "8Ei", "too large"}, // 2^63
        {vmlet_quantity_value, "9223372036854775808", "too large"},
        {vmlet_quantity_value, "-9223372036854775808", "too large"},
        {vmlet_quantity_milli, "9223372036854775808m", "too large"},
        {vmlet_quantity_milli, "9223372036854776", "its value in thousandths"},
        {vmlet_quantity_milli, "1E", "too large"},
        {vmlet_quantity_value, "1e19", "too large"},
        {vmlet_quantity_value, "1e2147483647", "too large"},
        {vmlet_quantity_value, "100000000000000000000000000000e-10", "too large"},
        {vmlet_quantity_milli, "1x", "unexpected 'x' at offset 1"},
        {vmlet_quantity_milli, "", "empty"},
        {vmlet_quantity_milli, "m", "no number"},
        {vmlet_quantity_milli, ".", "no number"},
        {vmlet_quantity_milli, "-", "no number"},
        {vmlet_quantity_milli, "Ki", "no number"},
        {vmlet_quantity_milli, "--1", "no number"},
        {vmlet_quantity_milli, " 1", "no number"},
        {vmlet_quantity_milli, "1 ", "unexpected ' '"},
        {vmlet_quantity_milli, "1.2.3", "unexpected '.' at offset 3"},
        {vmlet_quantity_milli, "1+1.0M", "unexpected '.'"},
        {vmlet_quantity_milli, "1Mi2", "unknown suffix 'Mi2'"},
        {vmlet_quantity_milli, "1i", "unknown suffix 'i'"},
        {vmlet_quantity_milli, "0.1mi", "unknown suffix 'mi'"},
        {vmlet_quantity_milli, "1K", "unknown suffix 'K'"},
        {vmlet_quantity_value, "1e", "unknown suffix 'e'"},
        {vmlet_quantity_value, "1ee3", "unknown suffix"},
        {vmlet_quantity_value, "-3.01e-", "exponent has no digits"},
        {vmlet_quantity_value, "1e99999999999", "exponent out of range"},
        {vmlet_quantity_value, "1e-2147483648", "exponent out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t got = 42;
        vmlet_err_t err = {0};
        if (cases[i].fn(cases[i].text, &got, &err) != -1)
            fail_msg("'%s' parsed as %lld, want error '%s'", cases[i].text, (long long)got,
                     cases[i].want);
        assert_int_equal(got, 42); // untouched on failure
        char prefix[128];
        snprintf(prefix, sizeof prefix, "quantity '%s': ", cases[i].text);
        if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || !strstr(err.msg, cases[i].want))
            fail_msg("'%s': message '%s' lacks '%s'", cases[i].text, err.msg, cases[i].want);
    }
    int64_t got;
    assert_int_equal(vmlet_quantity_value("1x", &got, NULL), -1);
    assert_int_equal(vmlet_quantity_value(NULL, &got, NULL), -1);
}

static void test_format(void **state)
{
    (void)state;
    static const struct {
        int64_t n;
        const char *milli, *bytes;
    } cases[] = {
        {2000, "2", "2000"},
        {1500, "1500m", "1500"},
        {0, "0", "0"},
        {1, "1m", "1"},
        {1000, "1", "1000"},
        {1024, "1024m", "1Ki"},
        {1025, "1025m", "1025"},
        {-1500, "-1500m", "-1500"},
        {-2048, "-2048m", "-2Ki"},
        {24576000LL * 1024, "25165824", "24576000Ki"},
        {134217728, "134217728m", "131072Ki"},
        {INT64_MAX, "9223372036854775807m", "9223372036854775807"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        assert_ptr_equal(vmlet_quantity_format_milli(cases[i].n, buf, sizeof buf), buf);
        assert_string_equal(buf, cases[i].milli);
        assert_ptr_equal(vmlet_quantity_format_bytes(cases[i].n, buf, sizeof buf), buf);
        assert_string_equal(buf, cases[i].bytes);
        // What we write, we read back.
        int64_t back;
        assert_int_equal(vmlet_quantity_milli(cases[i].milli, &back, NULL), 0);
        assert_int_equal(back, cases[i].n);
        assert_int_equal(vmlet_quantity_value(cases[i].bytes, &back, NULL), 0);
        assert_int_equal(back, cases[i].n);
    }
    char small[4];
    assert_string_equal(vmlet_quantity_format_milli(1500, small, sizeof small), "150");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_milli),
        cmocka_unit_test(test_value),
        cmocka_unit_test(test_bad_quantities_name_the_text),
        cmocka_unit_test(test_format),
    };
    return TS_RUN(tests);
}
