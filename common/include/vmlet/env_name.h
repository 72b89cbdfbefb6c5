// What the kubelet accepts as an environment variable's name (envFrom
// keys that are not are skipped, with an event on a kubelet).
#ifndef VMLET_ENV_NAME_H
#define VMLET_ENV_NAME_H

#include <stdbool.h>

// Letters, digits, '_', '-' and '.', not starting with a digit, not empty.
bool vmlet_env_name_ok(const char *name);

#endif
