// Settings from one table (Redis's config.c style): each option names its
// flag, type, bounds, default and help once, and that gives the environment
// variable, the command-line flag and `--help`.
//
//   name "redis-url" -> flag --redis-url=V (or --redis-url V),
//                       env  VMLET_REDIS_URL
//   precedence: default < environment < flag.
//
// Every value, the default included, goes through the same parser, so a
// bad default is caught by the unit tests like a bad flag.
#ifndef VMLET_CONFIG_H
#define VMLET_CONFIG_H

#include "vmlet/err.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    VMLET_CFG_STRING,   // char *, malloc'd; "" allowed
    VMLET_CFG_INT,      // long, within [min, max]
    VMLET_CFG_BOOL,     // bool: true/false/1/0/yes/no/on/off
    VMLET_CFG_DURATION, // int64_t milliseconds: "250ms", "2s", "1m", "1h"; bare number = seconds
    VMLET_CFG_ENUM,     // char *, one of `choices` ("text|json")
} vmlet_cfg_type_t;

typedef struct {
    const char *name; // lower-case, words joined by '-'
    vmlet_cfg_type_t type;
    const char *default_value;
    long min, max; // INT: bounds; DURATION: bounds in ms (max 0 = unbounded)
    const char *choices;
    size_t offset; // where the value goes in the section's target struct
    const char *help;
} vmlet_cfg_option_t;

// A table and the struct it fills. Tables end with an option whose name is NULL.
typedef struct {
    const vmlet_cfg_option_t *options;
    void *target;
} vmlet_cfg_section_t;

// Fills every section's target from defaults, then `envp` (NULL-terminated
// "K=V" list, usually environ), then argv[1..]. Returns 0 when loaded,
// 1 when --help was asked for (usage went to stdout), -1 with err naming
// the setting, its source and what is allowed.
int vmlet_config_load(const vmlet_cfg_section_t *sections, size_t n_sections, int argc,
                      char *const argv[], char *const envp[], const char *program,
                      const char *summary, vmlet_err_t *err);

// Frees the strings a load allocated. Safe on a partly loaded target.
void vmlet_config_free(const vmlet_cfg_section_t *sections, size_t n_sections);

// Parses one duration ("250ms", "2s", "1m", "1h", "3" = seconds) into ms.
int vmlet_config_parse_duration(const char *text, int64_t *ms, vmlet_err_t *err);

// The environment variable for an option name, e.g. "VMLET_REDIS_URL". Caller frees.
char *vmlet_config_env_name(const char *name);

#endif
