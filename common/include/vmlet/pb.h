// Helpers for building protobuf-c messages. proto2 `optional` scalars are
// packed only when their has_ flag is set, so set both with PB_SET, never
// the value alone.
#ifndef VMLET_PB_H
#define VMLET_PB_H

#include "vmlet/xalloc.h"

// A message on the heap, initialised (freed by its free_unpacked).
#define PB_NEW(type, init) ((type *)vmlet_xdup(&(type)init, sizeof(type)))

// Sets an optional scalar and its presence flag.
#define PB_SET(msg, field, value) ((msg)->has_##field = 1, (msg)->field = (value))

#endif
