// Kubernetes' $(VAR) expansion, as the kubelet applies it to env values,
// command and args: "$(NAME)" becomes NAME's value when NAME is defined and
// stays as written when not; "$$" is an escaped "$"; any other "$" is kept.
#ifndef VMLET_LAUNCHER_EXPAND_H
#define VMLET_LAUNCHER_EXPAND_H

#include <stddef.h>

// Looks a name up; returns its value (borrowed) or NULL if undefined.
typedef const char *(*expand_lookup_fn)(void *ctx, const char *name, size_t name_len);

// Returns the expanded copy of text (caller frees).
char *expand_vars(const char *text, expand_lookup_fn lookup, void *ctx);

#endif
