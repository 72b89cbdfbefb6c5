// A container's log in the CRI format the kubelet reads and `kubectl logs`
// shows, one file per run of the container:
//
//   <log-dir>/<namespace>_<pod>_<uid>/<container>/<restart-count>.log
//
// each line "<RFC 3339 time with nanoseconds> <stdout|stderr> <F|P> <text>":
// F ends a line, P is a piece of a line longer than the writer keeps (16
// KiB), continued on the next entry. Files rotate at a size limit: the
// current file becomes .1, .1 becomes .2, and so on up to a count.
#ifndef VMLET_LAUNCHER_CRI_LOG_H
#define VMLET_LAUNCHER_CRI_LOG_H

#include "vmlet/err.h"

#include <stddef.h>
#include <stdint.h>

// The longest line kept whole; past it, a line is written in P pieces.
#define CRI_LOG_MAX_LINE (16 * 1024)

typedef struct {
    int64_t max_bytes; // rotate when the file grows past this (0: never)
    int max_files;     // the current file plus this many - 1 rotated ones
} cri_log_limits_t;

typedef struct cri_log cri_log_t;

typedef enum { CRI_STDOUT = 0, CRI_STDERR = 1 } cri_stream_t;

// Opens (appending to) or creates path, making its directories.
cri_log_t *cri_log_open(const char *path, const cri_log_limits_t *limits, vmlet_err_t *err);

// Writes a chunk of output read at unix_ns. Complete lines are written at
// once; a trailing piece waits for the rest of its line (per stream).
int cri_log_write(cri_log_t *self, cri_stream_t stream, const uint8_t *data, size_t len,
                  int64_t unix_ns, vmlet_err_t *err);

// Writes what waits for the end of its line as a full line (the process
// ended without a final newline), on both streams.
int cri_log_finish(cri_log_t *self, int64_t unix_ns, vmlet_err_t *err);

// Finishes and closes; NULL-safe.
void cri_log_close(cri_log_t **self_p);

const char *cri_log_path(const cri_log_t *self);

// "<log_dir>/<namespace>_<pod>_<uid>/<container>/<restart>.log" into buf.
void cri_log_path_for(char *buf, size_t cap, const char *log_dir, const char *namespace_,
                      const char *pod, const char *uid, const char *container, int restart);

// The text of the last max_lines lines of the log at path (both streams,
// as written; P pieces joined into their line), then only its last
// max_bytes: what the kubelet reports for terminationMessagePolicy
// FallbackToLogsOnError (80 lines, 2048 bytes). out gets at most cap-1
// bytes and a NUL; "" when the file is missing or empty.
int cri_log_tail(const char *path, int max_lines, size_t max_bytes, char *out, size_t cap,
                 vmlet_err_t *err);

// Formats unix_ns as "2026-11-26T19:00:00.123456789Z" into buf (>= 32).
char *cri_log_timestamp(int64_t unix_ns, char *buf, size_t cap);

#endif
