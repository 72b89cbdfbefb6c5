// Settings: default < environment < flag, every type, and bad values
// rejected with a message naming the setting.
#include "testsupport.h"

#include "vmlet/config.h"

#include <stdbool.h>
#include <string.h>

typedef struct {
    char *name;
    long count;
    bool verbose;
    int64_t period_ms;
    char *format;
} settings_t;

#define OPT(f) offsetof(settings_t, f)
static const vmlet_cfg_option_t options[] = {
    {"node-name", VMLET_CFG_STRING, "vmlet", 0, 0, NULL, OPT(name), "node name"},
    {"count", VMLET_CFG_INT, "3", 1, 10, NULL, OPT(count), "how many"},
    {"verbose", VMLET_CFG_BOOL, "false", 0, 0, NULL, OPT(verbose), "talk more"},
    {"period", VMLET_CFG_DURATION, "2s", 100, 60000, NULL, OPT(period_ms), "how often"},
    {"format", VMLET_CFG_ENUM, "text", 0, 0, "text|json", OPT(format), "log format"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct {
    settings_t s;
    vmlet_cfg_section_t section;
    vmlet_err_t err;
} fixture_t;

static int s_load(fixture_t *f, char *const argv[], char *const envp[])
{
    int argc = 0;
    while (argv[argc])
        argc++;
    f->section = (vmlet_cfg_section_t){options, &f->s};
    return vmlet_config_load(&f->section, 1, argc, argv, envp, "test", "a test", &f->err);
}

static int setup(void **state)
{
    *state = calloc(1, sizeof(fixture_t));
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    vmlet_config_free(&f->section, 1);
    free(f);
    return 0;
}

static void test_defaults(void **state)
{
    fixture_t *f = *state;
    char *argv[] = {"prog", NULL};
    char *envp[] = {NULL};
    assert_int_equal(s_load(f, argv, envp), 0);
    assert_string_equal(f->s.name, "vmlet");
    assert_int_equal(f->s.count, 3);
    assert_false(f->s.verbose);
    assert_int_equal(f->s.period_ms, 2000);
    assert_string_equal(f->s.format, "text");
}

static void test_env_overrides_default_and_flag_overrides_env(void **state)
{
    fixture_t *f = *state;
    char *argv[] = {"prog", "--count=7", "--period", "250ms", NULL};
    char *envp[] = {"VMLET_COUNT=5", "VMLET_NODE_NAME=from-env", "VMLET_VERBOSE=yes",
                    "VMLET_FORMAT=json", "UNRELATED=1", NULL};
    assert_int_equal(s_load(f, argv, envp), 0);
    assert_int_equal(f->s.count, 7);             // flag beats env
    assert_string_equal(f->s.name, "from-env");  // env beats default
    assert_true(f->s.verbose);
    assert_int_equal(f->s.period_ms, 250);
    assert_string_equal(f->s.format, "json");
}

static void test_bare_bool_flag_turns_on(void **state)
{
    fixture_t *f = *state;
    char *argv[] = {"prog", "--verbose", NULL};
    char *envp[] = {"VMLET_VERBOSE=false", NULL};
    assert_int_equal(s_load(f, argv, envp), 0);
    assert_true(f->s.verbose);
}

static void test_bad_values_name_the_setting(void **state)
{
    static const struct {
        char *arg;
        char *env;
        const char *want; // substrings of the message
        const char *want2;
    } cases[] = {
        {"--count=11", NULL, "--count", "out of range [1, 10]"},
        {"--count=abc", NULL, "--count", "not an integer"},
        {NULL, "VMLET_COUNT=0", "environment VMLET_COUNT", "out of range"},
        {"--verbose=maybe", NULL, "--verbose", "not a boolean"},
        {"--period=5 fortnights", NULL, "--period", "unknown unit"},
        {"--period=10ms", NULL, "--period", "out of range"},
        {"--format=xml", NULL, "--format", "not one of text|json"},
        {"--colour=blue", NULL, "unknown setting --colour", "--help"},
        {"stray", NULL, "unexpected argument 'stray'", "--name=value"},
        {"--count", NULL, "--count needs a value", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture_t *f = *state;
        vmlet_config_free(&f->section, 1);
        memset(f, 0, sizeof *f);
        char *argv[] = {"prog", cases[i].arg, NULL};
        char *envp[] = {cases[i].env, NULL};
        assert_int_equal(s_load(f, argv, envp), -1);
        if (!strstr(f->err.msg, cases[i].want) || !strstr(f->err.msg, cases[i].want2))
            fail_msg("case %zu: message '%s' lacks '%s' / '%s'", i, f->err.msg, cases[i].want,
                     cases[i].want2);
    }
}

static void test_help_returns_one(void **state)
{
    fixture_t *f = *state;
    char *argv[] = {"prog", "--count=99", "--help", NULL};
    char *envp[] = {NULL};
    assert_int_equal(s_load(f, argv, envp), 1);
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t ms;
    } good[] = {{"250ms", 250}, {"2s", 2000}, {"3", 3000}, {"1.5s", 1500}, {"1m", 60000},
                {"2h", 7200000}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t ms = -1;
        assert_int_equal(vmlet_config_parse_duration(good[i].text, &ms, NULL), 0);
        assert_int_equal(ms, good[i].ms);
    }
    int64_t ms;
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_config_parse_duration("-1s", &ms, &err), -1);
    assert_int_equal(vmlet_config_parse_duration("soon", &ms, &err), -1);
    assert_non_null(strstr(err.msg, "not a duration"));
}

static void test_env_name(void **state)
{
    (void)state;
    char *env = vmlet_config_env_name("redis-url");
    assert_string_equal(env, "VMLET_REDIS_URL");
    free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_overrides_default_and_flag_overrides_env, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bare_bool_flag_turns_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_values_name_the_setting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_returns_one, setup, teardown),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_env_name),
    };
    return TS_RUN(tests);
}
