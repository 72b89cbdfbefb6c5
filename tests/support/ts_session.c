// The session protocol's client for tests (ts_session.h).
#include "ts_session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int s_write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

static int s_send(ts_session_t *s, const Vmlet__SessionFrame *f)
{
    size_t len = vmlet__session_frame__get_packed_size(f);
    unsigned char *buf = malloc(len + 4);
    buf[0] = (unsigned char)(len >> 24), buf[1] = (unsigned char)(len >> 16);
    buf[2] = (unsigned char)(len >> 8), buf[3] = (unsigned char)len;
    vmlet__session_frame__pack(f, buf + 4);
    int rc = s_write_all(s->fd, buf, len + 4);
    free(buf);
    return rc;
}

int ts_session_open(ts_session_t *s, const char *addr, const Vmlet__SessionOpen *open)
{
    memset(s, 0, sizeof *s);
    s->exit_code = s->signal = s->http_status = -1;
    s->out = calloc(1, 1);
    s->err = calloc(1, 1);
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host)
        return -1;
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return -1;
    Vmlet__SessionFrame f = VMLET__SESSION_FRAME__INIT;
    f.body_case = VMLET__SESSION_FRAME__BODY_OPEN;
    f.open = (Vmlet__SessionOpen *)open;
    return s_send(s, &f);
}

int ts_session_send_stdin(ts_session_t *s, const void *data, size_t len)
{
    Vmlet__SessionData d = VMLET__SESSION_DATA__INIT;
    d.has_channel = 1;
    d.channel = VMLET__SESSION_CHANNEL__SESSION_STDIN;
    d.has_data = 1;
    d.data.data = (uint8_t *)data;
    d.data.len = len;
    Vmlet__SessionFrame f = VMLET__SESSION_FRAME__INIT;
    f.body_case = VMLET__SESSION_FRAME__BODY_DATA;
    f.data = &d;
    return s_send(s, &f);
}

int ts_session_close_input(ts_session_t *s)
{
    Vmlet__SessionCloseInput c = VMLET__SESSION_CLOSE_INPUT__INIT;
    Vmlet__SessionFrame f = VMLET__SESSION_FRAME__INIT;
    f.body_case = VMLET__SESSION_FRAME__BODY_CLOSE_INPUT;
    f.close_input = &c;
    return s_send(s, &f);
}

int ts_session_resize(ts_session_t *s, unsigned rows, unsigned cols)
{
    Vmlet__SessionResize r = VMLET__SESSION_RESIZE__INIT;
    r.has_rows = r.has_cols = 1;
    r.rows = rows, r.cols = cols;
    Vmlet__SessionFrame f = VMLET__SESSION_FRAME__INIT;
    f.body_case = VMLET__SESSION_FRAME__BODY_RESIZE;
    f.resize = &r;
    return s_send(s, &f);
}

static void s_append(char **buf, size_t *len, const uint8_t *data, size_t n)
{
    *buf = realloc(*buf, *len + n + 1);
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static void s_take(ts_session_t *s, const Vmlet__SessionFrame *f)
{
    switch (f->body_case) {
    case VMLET__SESSION_FRAME__BODY_ACCEPTED:
        s->accepted = true;
        break;
    case VMLET__SESSION_FRAME__BODY_DATA:
        if (f->data->channel == VMLET__SESSION_CHANNEL__SESSION_STDERR)
            s_append(&s->err, &s->err_len, f->data->data.data, f->data->data.len);
        else
            s_append(&s->out, &s->out_len, f->data->data.data, f->data->data.len);
        break;
    case VMLET__SESSION_FRAME__BODY_END:
        s->ended = true;
        if (f->end->has_exit_code)
            s->exit_code = f->end->exit_code;
        if (f->end->has_signal)
            s->signal = f->end->signal;
        if (f->end->has_http_status)
            s->http_status = f->end->http_status;
        snprintf(s->error, sizeof s->error, "%s", f->end->error ? f->end->error : "");
        break;
    default:
        break;
    }
}

bool ts_session_wait(ts_session_t *s, int timeout_ms, const char *until)
{
    long long deadline = s_now_ms() + timeout_ms;
    for (;;) {
        // Whole frames first.
        while (s->len >= 4) {
            uint32_t n = (uint32_t)s->buf[0] << 24 | (uint32_t)s->buf[1] << 16 |
                         (uint32_t)s->buf[2] << 8 | s->buf[3];
            if (s->len < 4 + (size_t)n)
                break;
            Vmlet__SessionFrame *f = vmlet__session_frame__unpack(NULL, n, s->buf + 4);
            if (f) {
                s_take(s, f);
                vmlet__session_frame__free_unpacked(f, NULL);
            }
            memmove(s->buf, s->buf + 4 + n, s->len - 4 - n);
            s->len -= 4 + n;
        }
        if (s->ended || (until && strstr(s->out, until)))
            return true;
        long long left = deadline - s_now_ms();
        if (left <= 0 || s->fd < 0)
            return false;
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        if (s->cap < s->len + 65536) {
            s->cap = s->len + 65536;
            s->buf = realloc(s->buf, s->cap);
        }
        ssize_t got = recv(s->fd, s->buf + s->len, 65536, 0);
        if (got <= 0) {
            close(s->fd);
            s->fd = -1;
            continue;
        }
        s->len += (size_t)got;
    }
}

void ts_session_close(ts_session_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    free(s->buf);
    free(s->out);
    free(s->err);
    s->buf = NULL, s->out = s->err = NULL;
}
