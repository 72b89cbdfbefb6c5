// The front's end of a session (see session_client.h).
#include "session_client.h"

#include "vmlet/proto/vm.pb-c.h"
#include "vmlet/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int s_read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int s_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int session_send(int fd, const Vmlet__SessionFrame *frame)
{
    size_t len = vmlet__session_frame__get_packed_size(frame);
    uint8_t *buf = vmlet_xmalloc(len + 4);
    uint32_t be = htonl((uint32_t)len);
    memcpy(buf, &be, 4);
    vmlet__session_frame__pack(frame, buf + 4);
    int rc = s_write_all(fd, buf, len + 4);
    free(buf);
    return rc;
}

void session_outbox_frame(session_outbox_t *o, const Vmlet__SessionFrame *frame)
{
    size_t len = vmlet__session_frame__get_packed_size(frame);
    if (o->len + len + 4 > o->cap) {
        o->cap = (o->len + len + 4) * 2;
        o->buf = vmlet_xrealloc(o->buf, o->cap);
    }
    uint32_t be = htonl((uint32_t)len);
    memcpy(o->buf + o->len, &be, 4);
    vmlet__session_frame__pack(frame, o->buf + o->len + 4);
    o->len += len + 4;
}

void session_outbox_data(session_outbox_t *o, Vmlet__SessionChannel channel, const void *data,
                         size_t len)
{
    Vmlet__SessionData d = VMLET__SESSION_DATA__INIT;
    d.has_channel = 1, d.channel = channel;
    d.has_data = 1, d.data = (ProtobufCBinaryData){len, (uint8_t *)data};
    Vmlet__SessionFrame f = VMLET__SESSION_FRAME__INIT;
    f.body_case = VMLET__SESSION_FRAME__BODY_DATA;
    f.data = &d;
    session_outbox_frame(o, &f);
}

int session_outbox_flush(int fd, session_outbox_t *o)
{
    size_t off = 0;
    while (off < o->len) {
        ssize_t n = send(fd, o->buf + off, o->len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    memmove(o->buf, o->buf + off, o->len - off);
    o->len -= off;
    return 0;
}

void session_outbox_free(session_outbox_t *o)
{
    free(o->buf);
    *o = (session_outbox_t){0};
}

Vmlet__SessionFrame *session_recv(int fd)
{
    uint32_t be;
    if (s_read_all(fd, &be, 4) < 0)
        return NULL;
    uint32_t len = ntohl(be);
    if (len > SESSION_FRAME_MAX)
        return NULL;
    uint8_t *buf = vmlet_xmalloc(len ? len : 1);
    Vmlet__SessionFrame *f =
        s_read_all(fd, buf, len) == 0 ? vmlet__session_frame__unpack(NULL, len, buf) : NULL;
    free(buf);
    return f;
}

// A string key's value into out; false if absent.
static bool s_get(vmlet_store_t *store, char *out, size_t cap, vmlet_err_t *err, const char *fmt,
                  const char *arg)
{
    redisReply *r = vmlet_store_command(store, err, fmt, arg);
    bool found = r && r->type == REDIS_REPLY_STRING && r->len < cap;
    if (found)
        memcpy(out, r->str, r->len + 1);
    freeReplyObject(r);
    return found;
}

// The launcher that holds the pod's VM, from its VmRecord.
static bool s_launcher_of(vmlet_store_t *store, const char *uid, char *id, size_t cap,
                          vmlet_err_t *err)
{
    redisReply *r = vmlet_store_command(store, err, "GET vmlet:vm:%s", uid);
    Vmlet__VmRecord *rec = r && r->type == REDIS_REPLY_STRING
                               ? vmlet__vm_record__unpack(NULL, r->len, (uint8_t *)r->str)
                               : NULL;
    freeReplyObject(r);
    bool found = rec && rec->launcher_id && strlen(rec->launcher_id) < cap;
    if (found)
        snprintf(id, cap, "%s", rec->launcher_id);
    if (rec)
        vmlet__vm_record__free_unpacked(rec, NULL);
    return found;
}

static int s_dial(const char *address, vmlet_err_t *err)
{
    char host[256];
    const char *colon = strrchr(address, ':');
    if (!colon || (size_t)(colon - address) >= sizeof host)
        return vmlet_err_set(err, "bad session address '%s'", address);
    memcpy(host, address, (size_t)(colon - address));
    host[colon - address] = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return vmlet_err_set(err, "bad session address '%s' (want IPv4:PORT)", address);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        vmlet_err_set(err, "cannot reach the launcher's sessions at %s: %s", address,
                      strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); // keystrokes go at once
    return fd;
}

int session_connect(vmlet_store_t *store, Vmlet__SessionOpen *open, int *http_status,
                    vmlet_err_t *err)
{
    char launcher[256], address[300], token[128];
    *http_status = 404;
    if (!s_launcher_of(store, open->pod_uid, launcher, sizeof launcher, err)) {
        vmlet_err_set(err, "pod has no VM yet");
        return SESSION_NO_VM;
    }
    *http_status = 503;
    if (!s_get(store, address, sizeof address, err, "GET vmlet:session:%s", launcher))
        return vmlet_err_set(err, "launcher %s serves no sessions (is it running?)", launcher);
    if (!s_get(store, token, sizeof token, err, "GET %s", "vmlet:session-token"))
        return vmlet_err_set(err, "no session token in Redis (vmlet:session-token)");
    int fd = s_dial(address, err);
    if (fd < 0)
        return -1;
    open->token = token;
    Vmlet__SessionFrame f = VMLET__SESSION_FRAME__INIT;
    f.body_case = VMLET__SESSION_FRAME__BODY_OPEN;
    f.open = open;
    int rc = session_send(fd, &f);
    open->token = NULL;
    Vmlet__SessionFrame *answer = rc == 0 ? session_recv(fd) : NULL;
    if (answer && answer->body_case == VMLET__SESSION_FRAME__BODY_ACCEPTED) {
        vmlet__session_frame__free_unpacked(answer, NULL);
        return fd;
    }
    if (answer && answer->body_case == VMLET__SESSION_FRAME__BODY_END) {
        *http_status = answer->end->has_http_status ? answer->end->http_status : 500;
        vmlet_err_set(err, "%s", answer->end->error ? answer->end->error : "refused");
    } else {
        vmlet_err_set(err, "launcher %s at %s did not answer the session", launcher, address);
    }
    if (answer)
        vmlet__session_frame__free_unpacked(answer, NULL);
    close(fd);
    return -1;
}
