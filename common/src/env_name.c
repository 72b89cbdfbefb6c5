// Environment variable names (see env_name.h).
#include "vmlet/env_name.h"

#include <ctype.h>
#include <string.h>

bool vmlet_env_name_ok(const char *name)
{
    if (!*name || isdigit((unsigned char)*name))
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_-.", *p))
            return false;
    return true;
}
