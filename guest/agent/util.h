// Small helpers the agent's files share: clocks, logging to the console,
// files and directories, and the checks on names and paths from the host.
#ifndef VMLET_AGENT_UTIL_H
#define VMLET_AGENT_UTIL_H

#include "vmlet/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int64_t now_ms(void);    // monotonic
int64_t uptime_ms(void); // since boot (CLOCK_BOOTTIME)
int64_t unix_ms(void);
int64_t unix_ns(void);

// One line to the console (fd 2): "vmlet-agent: [  1.234] message".
void alog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Only with vmlet.debug=1 on the kernel command line.
void alog_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void alog_set_debug(bool on);

// mkdir -p; an existing directory is fine.
int mkdir_p(const char *path, mode_t mode, vmlet_err_t *err);
// Writes the whole file (created or truncated) with mode.
int write_file(const char *path, const void *data, size_t len, mode_t mode, vmlet_err_t *err);
// Writes s to an existing file (a sysfs, procfs or cgroupfs knob) in one
// write. Returns 0 or -1 with errno.
int write_knob(const char *path, const char *s);
// Reads at most cap-1 bytes and NUL-terminates; returns the length or -1.
ssize_t read_small_file(const char *path, char *buf, size_t cap);
// Removes path and everything under it, staying on its file system.
int rm_rf(const char *path);

// A name the host gave (container, volume): a DNS label's characters, so
// it is safe as one path component.
bool name_ok(const char *name);
// A relative path without ".." components (sub_path, a file in a volume).
bool relpath_ok(const char *path);

void fd_nonblock(int fd);
void fd_close(int *fd); // closes if >= 0 and sets -1

// Writes all of buf to a blocking fd (EINTR retried).
int write_all(int fd, const void *buf, size_t len);

#endif
