// Settings from one table: defaults, environment, flags and --help (see config.h).
#include "vmlet/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

char *vmlet_config_env_name(const char *name)
{
    size_t n = strlen(name);
    char *env = malloc(n + 7);
    if (!env)
        return NULL;
    memcpy(env, "VMLET_", 6);
    for (size_t i = 0; i < n; i++)
        env[6 + i] = name[i] == '-' ? '_' : (char)toupper((unsigned char)name[i]);
    env[6 + n] = '\0';
    return env;
}

int vmlet_config_parse_duration(const char *text, int64_t *ms, vmlet_err_t *err)
{
    errno = 0;
    char *end;
    double value = strtod(text, &end);
    if (end == text || errno || value < 0)
        return vmlet_err_set(err, "'%s' is not a duration (e.g. 250ms, 2s, 1m)", text);
    double scale;
    if (*end == '\0' || strcmp(end, "s") == 0)
        scale = 1000;
    else if (strcmp(end, "ms") == 0)
        scale = 1;
    else if (strcmp(end, "m") == 0)
        scale = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        scale = 3600 * 1000;
    else
        return vmlet_err_set(err, "'%s' has unknown unit '%s' (use ms, s, m or h)", text, end);
    if (value * scale > 9e15)
        return vmlet_err_set(err, "'%s' is too long a duration", text);
    *ms = (int64_t)(value * scale + 0.5);
    return 0;
}

static int s_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static bool s_enum_allows(const char *choices, const char *text)
{
    size_t n = strlen(text);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, text, n) == 0)
            return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

static int s_replace_string(char **slot, const char *text, vmlet_err_t *err)
{
    char *copy = strdup(text);
    if (!copy)
        return vmlet_err_set(err, "out of memory");
    free(*slot);
    *slot = copy;
    return 0;
}

// Parses text into the option's slot. err names what is allowed; the caller
// adds which setting and source.
static int s_assign(const vmlet_cfg_option_t *opt, void *target, const char *text,
                    vmlet_err_t *err)
{
    void *slot = (char *)target + opt->offset;
    switch (opt->type) {
    case VMLET_CFG_STRING:
        return s_replace_string((char **)slot, text, err);
    case VMLET_CFG_ENUM:
        if (!s_enum_allows(opt->choices, text))
            return vmlet_err_set(err, "'%s' is not one of %s", text, opt->choices);
        return s_replace_string((char **)slot, text, err);
    case VMLET_CFG_BOOL:
        if (s_parse_bool(text, (bool *)slot) < 0)
            return vmlet_err_set(err, "'%s' is not a boolean (true or false)", text);
        return 0;
    case VMLET_CFG_INT: {
        errno = 0;
        char *end;
        long value = strtol(text, &end, 10);
        if (end == text || *end || errno)
            return vmlet_err_set(err, "'%s' is not an integer", text);
        if (value < opt->min || value > opt->max)
            return vmlet_err_set(err, "%ld is out of range [%ld, %ld]", value, opt->min, opt->max);
        *(long *)slot = value;
        return 0;
    }
    case VMLET_CFG_DURATION: {
        int64_t ms;
        if (vmlet_config_parse_duration(text, &ms, err) < 0)
            return -1;
        if (ms < opt->min || (opt->max > 0 && ms > opt->max))
            return vmlet_err_set(err, "%s is out of range [%ldms, %ldms]", text, opt->min,
                                 opt->max);
        *(int64_t *)slot = ms;
        return 0;
    }
    }
    return vmlet_err_set(err, "unknown option type %d", (int)opt->type);
}

static const vmlet_cfg_option_t *s_find(const vmlet_cfg_section_t *sections, size_t n,
                                        const char *name, size_t name_len, void **target)
{
    for (size_t s = 0; s < n; s++)
        for (const vmlet_cfg_option_t *o = sections[s].options; o->name; o++)
            if (strlen(o->name) == name_len && strncmp(o->name, name, name_len) == 0) {
                *target = sections[s].target;
                return o;
            }
    return NULL;
}

static const char *const type_names[] = {"string", "int", "bool", "duration", "enum"};

static void s_print_usage(const vmlet_cfg_section_t *sections, size_t n, const char *program,
                          const char *summary)
{
    printf("usage: %s [--setting=value ...]\n%s\n\n", program, summary);
    printf("Every setting is also read from its environment variable; a flag wins over\n"
           "the environment, which wins over the default.\n\n");
    for (size_t s = 0; s < n; s++)
        for (const vmlet_cfg_option_t *o = sections[s].options; o->name; o++) {
            cleanup_free char *env = vmlet_config_env_name(o->name);
            printf("  --%s (%s%s%s)\n      env %s, default \"%s\"\n      %s\n", o->name,
                   type_names[o->type], o->type == VMLET_CFG_ENUM ? ": " : "",
                   o->type == VMLET_CFG_ENUM ? o->choices : "", env ? env : "?",
                   o->default_value ? o->default_value : "", o->help);
        }
    printf("  --help\n      print this and exit\n");
}

static int s_load_defaults(const vmlet_cfg_section_t *sections, size_t n, vmlet_err_t *err)
{
    for (size_t s = 0; s < n; s++)
        for (const vmlet_cfg_option_t *o = sections[s].options; o->name; o++)
            if (s_assign(o, sections[s].target, o->default_value ? o->default_value : "", err) <
                0)
                return vmlet_err_wrap(err, "default of --%s", o->name);
    return 0;
}

static int s_load_env(const vmlet_cfg_section_t *sections, size_t n, char *const envp[],
                      vmlet_err_t *err)
{
    for (size_t s = 0; envp && s < n; s++)
        for (const vmlet_cfg_option_t *o = sections[s].options; o->name; o++) {
            cleanup_free char *env = vmlet_config_env_name(o->name);
            if (!env)
                return vmlet_err_set(err, "out of memory");
            size_t len = strlen(env);
            for (char *const *e = envp; *e; e++)
                if (strncmp(*e, env, len) == 0 && (*e)[len] == '=' &&
                    s_assign(o, sections[s].target, *e + len + 1, err) < 0)
                    return vmlet_err_wrap(err, "environment %s (setting --%s)", env, o->name);
        }
    return 0;
}

static int s_load_flags(const vmlet_cfg_section_t *sections, size_t n, int argc,
                        char *const argv[], vmlet_err_t *err)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0)
            return vmlet_err_set(err, "unexpected argument '%s'; settings are --name=value "
                                      "(see --help)",
                                 arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        void *target;
        const vmlet_cfg_option_t *o = s_find(sections, n, name, name_len, &target);
        if (!o)
            return vmlet_err_set(err, "unknown setting --%.*s (see --help)", (int)name_len,
                                 name);
        const char *value;
        if (eq)
            value = eq + 1;
        else if (o->type == VMLET_CFG_BOOL)
            value = "true"; // a bare boolean flag turns it on
        else if (i + 1 < argc)
            value = argv[++i];
        else
            return vmlet_err_set(err, "setting --%s needs a value", o->name);
        if (s_assign(o, target, value, err) < 0)
            return vmlet_err_wrap(err, "setting --%s", o->name);
    }
    return 0;
}

int vmlet_config_load(const vmlet_cfg_section_t *sections, size_t n_sections, int argc,
                      char *const argv[], char *const envp[], const char *program,
                      const char *summary, vmlet_err_t *err)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            s_print_usage(sections, n_sections, program, summary);
            return 1;
        }
    if (s_load_defaults(sections, n_sections, err) < 0 ||
        s_load_env(sections, n_sections, envp, err) < 0 ||
        s_load_flags(sections, n_sections, argc, argv, err) < 0)
        return -1;
    return 0;
}

void vmlet_config_free(const vmlet_cfg_section_t *sections, size_t n_sections)
{
    for (size_t s = 0; s < n_sections; s++)
        for (const vmlet_cfg_option_t *o = sections[s].options; o && o->name; o++)
            if (o->type == VMLET_CFG_STRING || o->type == VMLET_CFG_ENUM) {
                char **slot = (char **)((char *)sections[s].target + o->offset);
                free(*slot);
                *slot = NULL;
            }
}
