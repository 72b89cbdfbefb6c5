// Paths resolved inside a directory that is not ours to trust (a
// container's root, a volume): symlinks and ".." there resolve as if that
// directory were "/" (openat2 RESOLVE_IN_ROOT), so an image's symlink
// cannot send a mount or a write elsewhere in the VM.
#ifndef VMLET_AGENT_INROOT_H
#define VMLET_AGENT_INROOT_H

#include "vmlet/err.h"

#include <stddef.h>
#include <sys/types.h>

// Opens the directory at rel under rootfd, making missing ones with mode.
// Returns an O_PATH fd (caller closes) or -1 with err filled.
int inroot_mkdirs(int rootfd, const char *rel, mode_t mode, vmlet_err_t *err);
// Opens the file at rel (made empty if missing; a symlink in its place is
// replaced), for use as a bind-mount target. Returns an O_PATH fd or -1.
int inroot_file(int rootfd, const char *rel, vmlet_err_t *err);
// Writes a file atomically (a temporary name, then rename) with mode.
int inroot_write(int rootfd, const char *rel, const void *data, size_t len, mode_t mode,
                 vmlet_err_t *err);
// "/proc/self/fd/N", the way to name an fd to mount(2).
const char *fd_path(int fd, char *buf, size_t cap);

#endif
