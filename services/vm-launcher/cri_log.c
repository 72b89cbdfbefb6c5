// CRI-format container logs with rotation (see cri_log.h).
#include "cri_log.h"

#include "vmlet/fsutil.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

struct cri_log {
    char *path;
    cri_log_limits_t limits;
    int fd;
    int64_t size;
    // The start of a line whose end has not come yet, per stream.
    char pending[2][CRI_LOG_MAX_LINE];
    size_t pending_len[2];
};

static const char *const stream_names[2] = {"stdout", "stderr"};

char *cri_log_timestamp(int64_t unix_ns, char *buf, size_t cap)
{
    return vmlet_format_rfc3339_nano(unix_ns, buf, cap);
}

void cri_log_path_for(char *buf, size_t cap, const char *log_dir, const char *namespace_,
                      const char *pod, const char *uid, const char *container, int restart)
{
    snprintf(buf, cap, "%s/%s_%s_%s/%s/%d.log", log_dir, namespace_, pod, uid, container,
             restart);
}

static int s_open_file(cri_log_t *self, vmlet_err_t *err)
{
    self->fd = open(self->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (self->fd < 0)
        return vmlet_err_errno(err, errno, "opening log %s", self->path);
    struct stat st;
    self->size = fstat(self->fd, &st) == 0 ? (int64_t)st.st_size : 0;
    return 0;
}

cri_log_t *cri_log_open(const char *path, const cri_log_limits_t *limits, vmlet_err_t *err)
{
    char *dir = vmlet_xstrdup(path);
    int rc = vmlet_mkdirs(dirname(dir), 0750, err);
    free(dir);
    if (rc < 0) {
        vmlet_err_wrap(err, "log directory of %s", path);
        return NULL;
    }
    cri_log_t *self = vmlet_xcalloc(1, sizeof *self);
    self->path = vmlet_xstrdup(path);
    self->limits = *limits;
    if (s_open_file(self, err) < 0) {
        free(self->path);
        free(self);
        return NULL;
    }
    return self;
}

const char *cri_log_path(const cri_log_t *self)
{
    return self->path;
}

// path.(n-1) -> path.n, ..., path -> path.1, dropping the oldest.
static int s_rotate(cri_log_t *self, vmlet_err_t *err)
{
    close(self->fd);
    self->fd = -1;
    size_t cap = strlen(self->path) + 16;
    char *from = vmlet_xmalloc(cap), *to = vmlet_xmalloc(cap);
    int keep = self->limits.max_files > 1 ? self->limits.max_files - 1 : 0;
    if (keep == 0) {
        unlink(self->path);
    } else {
        snprintf(to, cap, "%s.%d", self->path, keep);
        unlink(to);
        for (int i = keep - 1; i >= 1; i--) {
            snprintf(from, cap, "%s.%d", self->path, i);
            snprintf(to, cap, "%s.%d", self->path, i + 1);
            rename(from, to); // a missing one is fine
        }
        snprintf(to, cap, "%s.1", self->path);
        rename(self->path, to);
    }
    free(from);
    free(to);
    return s_open_file(self, err);
}

// One entry: "<time> <stream> <tag> <text>\n", written with one write so a
// reader never sees half of it.
static int s_entry(cri_log_t *self, cri_stream_t stream, char tag, const char *text, size_t len,
                   int64_t unix_ns, vmlet_err_t *err)
{
    char ts[40], head[64];
    int head_len = snprintf(head, sizeof head, "%s %s %c ", cri_log_timestamp(unix_ns, ts, sizeof ts),
                            stream_names[stream], tag);
    struct iovec iov[3] = {{head, (size_t)head_len}, {(void *)text, len}, {"\n", 1}};
    size_t total = (size_t)head_len + len + 1;
    ssize_t n = writev(self->fd, iov, 3);
    if (n < 0)
        return vmlet_err_errno(err, errno, "writing log %s", self->path);
    if ((size_t)n != total)
        return vmlet_err_set(err, "writing log %s: short write (disk full?)", self->path);
    self->size += n;
    if (self->limits.max_bytes > 0 && self->size >= self->limits.max_bytes)
        return s_rotate(self, err);
    return 0;
}

int cri_log_write(cri_log_t *self, cri_stream_t stream, const uint8_t *data, size_t len,
                  int64_t unix_ns, vmlet_err_t *err)
{
    char *pending = self->pending[stream];
    size_t *plen = &self->pending_len[stream];
    const char *p = (const char *)data, *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t piece = (size_t)((nl ? nl : end) - p);
        size_t room = CRI_LOG_MAX_LINE - *plen;
        if (piece >= room) { // the line outgrows what we keep: out goes a P entry
            memcpy(pending + *plen, p, room);
            if (s_entry(self, stream, 'P', pending, CRI_LOG_MAX_LINE, unix_ns, err) < 0)
                return -1;
            *plen = 0;
            p += room;
            continue;
        }
        if (!nl) { // the rest waits for its newline
            memcpy(pending + *plen, p, piece);
            *plen += piece;
            break;
        }
        int rc;
        if (*plen == 0) {
            rc = s_entry(self, stream, 'F', p, piece, unix_ns, err);
        } else {
            memcpy(pending + *plen, p, piece);
            rc = s_entry(self, stream, 'F', pending, *plen + piece, unix_ns, err);
            *plen = 0;
        }
        if (rc < 0)
            return -1;
        p = nl + 1;
    }
    return 0;
}

int cri_log_finish(cri_log_t *self, int64_t unix_ns, vmlet_err_t *err)
{
    for (int s = 0; s < 2; s++) {
        if (self->pending_len[s] == 0)
            continue;
        size_t n = self->pending_len[s];
        self->pending_len[s] = 0;
        if (s_entry(self, (cri_stream_t)s, 'F', self->pending[s], n, unix_ns, err) < 0)
            return -1;
    }
    return 0;
}

void cri_log_close(cri_log_t **self_p)
{
    cri_log_t *self = *self_p;
    if (!self)
        return;
    if (self->fd >= 0) {
        cri_log_finish(self, vmlet_unix_ns(), NULL);
        close(self->fd);
    }
    free(self->path);
    free(self);
    *self_p = NULL;
}

// --- reading back ---------------------------------------------------------------------

// Enough of the file's end for max_lines lines of ordinary length; a log
// of longer lines gives fewer, which only matters past max_bytes anyway.
#define TAIL_READ_MAX (1024 * 1024)

int cri_log_tail(const char *path, int max_lines, size_t max_bytes, char *out, size_t cap,
                 vmlet_err_t *err)
{
    out[0] = '\0';
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : vmlet_err_errno(err, errno, "opening %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return vmlet_err_errno(err, errno, "stat %s", path);
    off_t from = st.st_size > TAIL_READ_MAX ? st.st_size - TAIL_READ_MAX : 0;
    size_t len = (size_t)(st.st_size - from);
    char *raw = vmlet_xmalloc(len + 1);
    ssize_t got = pread(fd, raw, len, from);
    if (got < 0) {
        free(raw);
        return vmlet_err_errno(err, errno, "reading %s", path);
    }
    raw[got] = '\0';
    // The text of each entry, pieces joined: "<time> <stream> <F|P> <text>".
    char *text = vmlet_xmalloc((size_t)got + 1);
    size_t n = 0;
    char *line = raw;
    if (from > 0) { // started mid-entry: skip to the next whole one
        char *nl = strchr(raw, '\n');
        line = nl ? nl + 1 : raw + got;
    }
    while (*line) {
        char *end = strchr(line, '\n');
        if (!end)
            break; // a partly written entry
        *end = '\0';
        char *tag = strchr(line, ' ');
        tag = tag ? strchr(tag + 1, ' ') : NULL;
        if (tag && (tag[1] == 'F' || tag[1] == 'P') && tag[2] == ' ') {
            size_t l = strlen(tag + 3);
            memcpy(text + n, tag + 3, l);
            n += l;
            if (tag[1] == 'F')
                text[n++] = '\n';
        }
        line = end + 1;
    }
    free(raw);
    text[n] = '\0';
    // The last max_lines lines (the text ends with a newline when the last
    // entry was whole), then the last max_bytes of them.
    size_t start = n;
    int lines = 0;
    while (start > 0) {
        if (text[start - 1] == '\n' && start != n && ++lines == max_lines)
            break;
        start--;
    }
    if (n - start > max_bytes)
        start = n - max_bytes;
    snprintf(out, cap, "%s", text + start);
    free(text);
    return 0;
}
