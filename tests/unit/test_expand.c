// $(VAR) expansion: the cases of Kubernetes' own expansion tests.
#include "testsupport.h"

#include "expand.h"

#include <string.h>

static const char *s_lookup(void *ctx, const char *name, size_t len)
{
    (void)ctx;
    static const char *const vars[][2] = {
        {"VAR_A", "A"}, {"VAR_B", "B"}, {"VAR_C", "C"}, {"VAR_REF", "$(VAR_A)"}, {"VAR_EMPTY", ""},
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (strlen(vars[i][0]) == len && memcmp(vars[i][0], name, len) == 0)
            return vars[i][1];
    return NULL;
}

static void test_expansion_rules(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"$(VAR_A)", "A"},
        {"___$(VAR_B)___", "___B___"},
        {"$(VAR_A)-$(VAR_A)", "A-A"},
        {"$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"},
        {"$(VAR_REF)", "$(VAR_A)"},          // values are not expanded again
        {"$(VAR_EMPTY)", ""},
        {"$(UNSET)", "$(UNSET)"},            // undefined: left as written
        {"$$(VAR_A)", "$(VAR_A)"},           // escaped
        {"$$$(VAR_A)", "$A"},
        {"$$$$(VAR_A)", "$$(VAR_A)"},
        {"f000-$$VAR_A", "f000-$VAR_A"},
        {"foo\\$(VAR_C)bar", "foo\\Cbar"},
        {"$(VAR_A", "$(VAR_A"},              // unclosed
        {"$VAR_A", "$VAR_A"},                // not a reference
        {"$", "$"},
        {"a$", "a$"},
        {"$()", "$()"},
        {"", ""},
        {"no vars here", "no vars here"},
        {"$(VAR_A)$", "A$"},
        {"$($(VAR_A))", "$($(VAR_A))"},      // the name is "$(VAR_A": undefined
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = expand_vars(cases[i][0], s_lookup, NULL);
        if (strcmp(got, cases[i][1]) != 0)
            fail_msg("expand(\"%s\") = \"%s\", want \"%s\"", cases[i][0], got, cases[i][1]);
        free(got);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expansion_rules),
    };
    return TS_RUN(tests);
}
