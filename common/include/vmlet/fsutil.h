// Small file-system helpers the services share.
#ifndef VMLET_FSUTIL_H
#define VMLET_FSUTIL_H

#include "vmlet/err.h"

#include <sys/types.h>

// Makes path and any missing parents (mkdir -p). An existing directory is
// fine; an existing non-directory is an error.
int vmlet_mkdirs(const char *path, mode_t mode, vmlet_err_t *err);

#endif
