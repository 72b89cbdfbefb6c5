// Logs sessions: a container's CRI log file (cri_log.c) served with the
// kubelet's semantics: tailLines (counted in entries, as the kubelet
// counts file lines), sinceTime, limitBytes, timestamps (each entry
// prefixed with its RFC3339Nano time), previous (the run before; the
// launcher keeps it), and follow: the file is looked at again every
// FOLLOW_MS until the container's run ends or the client goes. Partial
// entries (P) are joined as the kubelet does: their text without a newline.
// Only the run's current file is read (the kubelet also reads just the one
// its runtime names), not the ones rotated away before it.
#include "session_conn.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FOLLOW_MS 250
#define BUF_MAX (CRI_LOG_MAX_LINE + 4096) // one entry at most, with its head

typedef struct {
    int fd;
    char path[PATH_MAX];
    ino_t ino;
    bool follow, timestamps;
    int64_t since_ns; // 0: none
    int64_t limit;    // < 0: none
    int64_t sent;
    int timer;
    char buf[BUF_MAX]; // the start of an entry whose newline has not come
    size_t len;
    char *chunk; // SessionData being filled
    size_t chunk_len;
} logs_t;

// "2026-11-26T19:00:00.123456789Z" -> ns; -1 if it is not one.
static int64_t s_parse_ns(const char *ts, size_t len)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, ts, len);
    buf[len] = '\0';
    int64_t sec;
    if (vmlet_parse_rfc3339(buf, &sec) < 0)
        return -1;
    int64_t frac = 0;
    const char *dot = strchr(buf, '.');
    int digits = 0;
    for (const char *p = dot ? dot + 1 : ""; *p >= '0' && *p <= '9' && digits < 9; p++, digits++)
        frac = frac * 10 + (*p - '0');
    for (; digits < 9; digits++)
        frac *= 10;
    return sec * 1000000000LL + frac;
}

// Where the last n entries start.
static off_t s_tail_offset(int fd, int64_t n)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size == 0)
        return 0;
    if (n <= 0)
        return st.st_size;
    char buf[8192];
    off_t end = st.st_size - 1; // the file's last newline ends the last entry
    int64_t seen = 0;
    while (end > 0) {
        off_t start = end > (off_t)sizeof buf ? end - (off_t)sizeof buf : 0;
        ssize_t got = pread(fd, buf, (size_t)(end - start), start);
        if (got <= 0)
            return 0;
        for (ssize_t i = got - 1; i >= 0; i--)
            if (buf[i] == '\n' && ++seen == n)
                return start + i + 1;
        end = start;
    }
    return 0;
}

static void s_flush_chunk(session_t *s, logs_t *g)
{
    if (g->chunk_len == 0)
        return;
    session_send_data(s, VMLET__SESSION_CHANNEL__SESSION_STDOUT, (const uint8_t *)g->chunk,
                      g->chunk_len, 0);
    g->chunk_len = 0;
}

// Appends text to the chunk within the limit. Returns false once the
// limit is reached (the session is then over).
static bool s_emit(session_t *s, logs_t *g, const char *text, size_t len)
{
    bool more = true;
    if (g->limit >= 0 && g->sent + (int64_t)len >= g->limit) {
        len = (size_t)(g->limit - g->sent);
        more = false;
    }
    while (len > 0) {
        size_t room = SESSION_DATA_CHUNK - g->chunk_len;
        size_t n = len < room ? len : room;
        memcpy(g->chunk + g->chunk_len, text, n);
        g->chunk_len += n, g->sent += (int64_t)n;
        text += n, len -= n;
        if (g->chunk_len == SESSION_DATA_CHUNK)
            s_flush_chunk(s, g);
    }
    return more;
}

// One entry "<time> <stream> <P|F> <text>"; false once the limit is reached.
static bool s_entry(session_t *s, logs_t *g, const char *line, size_t len)
{
    const char *sp1 = memchr(line, ' ', len);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line)) : NULL;
    if (!sp2 || (size_t)(sp2 - line) + 2 > len)
        return true; // not an entry (a torn file): skipped
    char tag = sp2[1];
    const char *text = sp2 + 2 < line + len ? sp2 + 3 : line + len;
    size_t text_len = (size_t)(line + len - text);
    if (g->since_ns > 0 && s_parse_ns(line, (size_t)(sp1 - line)) < g->since_ns)
        return true;
    if (g->timestamps && (!s_emit(s, g, line, (size_t)(sp1 - line)) || !s_emit(s, g, " ", 1)))
        return false;
    if (!s_emit(s, g, text, text_len))
        return false;
    return tag == 'P' ? true : s_emit(s, g, "\n", 1);
}

static bool s_reopen(logs_t *g)
{
    int fd = open(g->path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    if (g->fd >= 0)
        close(g->fd);
    g->fd = fd;
    g->ino = st.st_ino;
    g->len = 0;
    return true;
}

// Whether the file we read is still the run's current one.
static bool s_rotated(const logs_t *g)
{
    struct stat st;
    return stat(g->path, &st) == 0 && st.st_ino != g->ino;
}

// Whether the run being followed is over (its log is then complete).
static bool s_run_over(session_t *s)
{
    pod_vm_t *pod = session_pod(s);
    if (!pod || s->ctr >= pod->n_ctrs)
        return true;
    const ctr_t *c = &pod->ctrs[s->ctr];
    return c->phase != CTR_RUNNING || c->instance != s->instance;
}

// Reads and sends while the client keeps up; at the end of the file,
// ends the session or (follow) waits for the timer.
static void s_pump(session_t *s)
{
    logs_t *g = s->kind_state;
    while (s->state == SS_OPEN && session_out_len(s) < SESSION_OUT_CAP / 2) {
        if (g->fd < 0 && !s_reopen(g)) {
            if (!g->follow || s_run_over(s))
                session_end(s, "ok", NULL, 0, -1, 0); // nothing was ever written
            return;
        }
        ssize_t n = read(g->fd, g->buf + g->len, sizeof g->buf - g->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0) {
            g->len += (size_t)n;
            size_t off = 0;
            char *nl;
            while ((nl = memchr(g->buf + off, '\n', g->len - off))) {
                if (!s_entry(s, g, g->buf + off, (size_t)(nl - (g->buf + off)))) {
                    s_flush_chunk(s, g);
                    session_end(s, "ok", NULL, 0, -1, 0); // limitBytes reached
                    return;
                }
                off = (size_t)(nl + 1 - g->buf);
            }
            if (off == 0 && g->len == sizeof g->buf)
                off = g->len; // no entry is this long: not a CRI log, skipped
            memmove(g->buf, g->buf + off, g->len - off);
            g->len -= off;
            continue;
        }
        s_flush_chunk(s, g);
        // End of the file. A rotation gives the rest in a new file; a run
        // that is over has written everything (its log was closed first).
        if (g->follow && s_rotated(g) && s_reopen(g))
            continue;
        if (!g->follow || s_run_over(s))
            session_end(s, "ok", NULL, 0, -1, 0);
        return;
    }
}

static int s_on_timer(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    s_pump(arg);
    return 0;
}

void session_logs_exit(session_t *s)
{
    s_pump(s);
}

static int s_open(session_t *s, const Vmlet__SessionOpen *o, int *status, char *error, size_t cap)
{
    pod_vm_t *pod = session_pod(s);
    const char *pod_name = session_pod_name(pod);
    ctr_t *c = session_container(s, pod, o->container);
    *status = 400;
    if (!pod->spec || !pod->spec->pod) {
        *status = 404;
        snprintf(error, cap, "pod \"%s\" does not exist", pod_name);
        return -1;
    }
    if (!c) {
        *status = 404;
        snprintf(error, cap, "container \"%s\" not found in pod \"%s\"", s->container, pod_name);
        return -1;
    }
    if (!c->ever_started && c->phase == CTR_WAITING) {
        snprintf(error, cap, "container \"%s\" in pod \"%s\" is waiting to start: %s", s->container,
                 pod_name, c->reason[0] ? c->reason : "ContainerCreating");
        return -1;
    }
    unsigned run = c->instance;
    if (o->previous) {
        if (!c->has_last || c->instance == 0) {
            snprintf(error, cap, "previous terminated container \"%s\" in pod \"%s\" not found",
                     s->container, pod_name);
            return -1;
        }
        run = c->instance - 1;
    }
    logs_t *g = vmlet_xcalloc(1, sizeof *g);
    g->fd = -1;
    g->chunk = vmlet_xmalloc(SESSION_DATA_CHUNK);
    const Vmlet__PodRef *ref = pod->spec->pod;
    cri_log_path_for(g->path, sizeof g->path, s->l->settings->log_dir, ref->namespace_, ref->name,
                     pod->uid, s->container, (int)run);
    if (o->previous && access(g->path, R_OK) != 0) {
        free(g->chunk);
        free(g);
        snprintf(error, cap, "previous terminated container \"%s\" in pod \"%s\" not found",
                 s->container, pod_name);
        return -1;
    }
    s->instance = run;
    g->follow = o->follow && !o->previous && c->phase == CTR_RUNNING;
    g->timestamps = o->timestamps;
    g->since_ns = o->has_since_unix_ns ? o->since_unix_ns : 0;
    g->limit = o->has_limit_bytes && o->limit_bytes >= 0 ? o->limit_bytes : -1;
    if (s_reopen(g) && o->has_tail_lines && o->tail_lines >= 0)
        lseek(g->fd, s_tail_offset(g->fd, o->tail_lines), SEEK_SET);
    if (g->limit == 0)
        g->follow = false;
    if (g->follow)
        g->timer = zloop_timer(s->l->loop, FOLLOW_MS, 0, s_on_timer, s);
    s->kind_state = g;
    return 0;
}

static void s_writable(session_t *s)
{
    if (s->kind_state)
        s_pump(s);
}

static void s_release(session_t *s)
{
    logs_t *g = s->kind_state;
    if (!g)
        return;
    if (g->timer > 0)
        zloop_timer_end(s->l->loop, g->timer);
    if (g->fd >= 0)
        close(g->fd);
    free(g->chunk);
    free(g);
    s->kind_state = NULL;
}

const session_kind_t session_logs_kind = {
    VMLET__SESSION_KIND__SESSION_LOGS, "logs", s_open, NULL, s_writable, s_release,
};
