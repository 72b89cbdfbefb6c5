// Blocking QMP client with deadlines (see qmp.h). QEMU sends one JSON
// object per line ("\r\n"); we read whole lines into a bounded buffer.
#include "qmp.h"

#include "vmlet/timeutil.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define QMP_BUF_MAX (256 * 1024) // query replies here are small; a bigger line is refused
#define QMP_EVENTS_MAX 16

struct _qmp_t {
    int fd;
    char *buf;
    size_t len;
    unsigned long next_id;
    char path[108];
    char events[QMP_EVENTS_MAX][40];
    int n_events;
};

static int s_left(int64_t deadline)
{
    int64_t left = deadline - vmlet_now_ms();
    return left > 0 ? (int)left : 0;
}

static void s_note_event(qmp_t *self, const char *name)
{
    for (int i = 0; i < self->n_events; i++)
        if (strcmp(self->events[i], name) == 0)
            return;
    if (self->n_events < QMP_EVENTS_MAX)
        snprintf(self->events[self->n_events++], sizeof self->events[0], "%s", name);
}

// Next JSON message from the socket, or NULL with err set (EOF: code EPIPE).
static cJSON *s_read_message(qmp_t *self, int64_t deadline, vmlet_err_t *err)
{
    for (;;) {
        char *nl = memchr(self->buf, '\n', self->len);
        if (nl) {
            size_t line_len = (size_t)(nl - self->buf);
            *nl = '\0';
            cJSON *msg = line_len > 0 ? cJSON_ParseWithLength(self->buf, line_len) : NULL;
            bool blank = strspn(self->buf, " \r\t") == line_len;
            memmove(self->buf, nl + 1, self->len - line_len - 1);
            self->len -= line_len + 1;
            if (blank)
                continue;
            if (!msg || !cJSON_IsObject(msg)) {
                cJSON_Delete(msg);
                vmlet_err_set(err, "QMP %s: a line that is not a JSON object", self->path);
                return NULL;
            }
            return msg;
        }
        if (self->len >= QMP_BUF_MAX - 1) {
            vmlet_err_set(err, "QMP %s: a message over %d bytes", self->path, QMP_BUF_MAX);
            return NULL;
        }
        int left = s_left(deadline);
        if (left == 0) {
            vmlet_err_set(err, "QMP %s: no reply in time", self->path);
            if (err)
                err->code = ETIMEDOUT;
            return NULL;
        }
        struct pollfd p = {.fd = self->fd, .events = POLLIN};
        int rc = poll(&p, 1, left);
        if (rc < 0 && errno != EINTR) {
            vmlet_err_errno(err, errno, "QMP %s: poll", self->path);
            return NULL;
        }
        if (rc <= 0)
            continue;
        ssize_t got = read(self->fd, self->buf + self->len, QMP_BUF_MAX - 1 - self->len);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got < 0) {
            vmlet_err_errno(err, errno, "QMP %s: read", self->path);
            return NULL;
        }
        if (got == 0) {
            vmlet_err_set(err, "QMP %s: QEMU closed the connection", self->path);
            if (err)
                err->code = EPIPE;
            return NULL;
        }
        self->len += (size_t)got;
    }
}

static int s_write_all(qmp_t *self, const char *text, size_t len, int64_t deadline,
                       vmlet_err_t *err)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(self->fd, text + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return vmlet_err_errno(err, errno, "QMP %s: send", self->path);
        struct pollfd p = {.fd = self->fd, .events = POLLOUT};
        int left = s_left(deadline);
        if (left == 0 || poll(&p, 1, left) == 0)
            return vmlet_err_set(err, "QMP %s: send timed out", self->path);
    }
    return 0;
}

qmp_t *qmp_connect(const char *path, int timeout_ms, vmlet_err_t *err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) {
        vmlet_err_set(err, "QMP %s: path too long for a unix socket", path);
        return NULL;
    }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        vmlet_err_errno(err, errno, "QMP %s: socket", path);
        return NULL;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        vmlet_err_errno(err, errno, "QMP %s: connect", path);
        close(fd);
        return NULL;
    }
    qmp_t *self = calloc(1, sizeof *self);
    char *buf = malloc(QMP_BUF_MAX);
    if (!self || !buf) {
        free(self);
        free(buf);
        close(fd);
        vmlet_err_set(err, "QMP %s: out of memory", path);
        return NULL;
    }
    self->fd = fd;
    self->buf = buf;
    snprintf(self->path, sizeof self->path, "%s", path);
    int64_t deadline = vmlet_now_ms() + timeout_ms;
    // QEMU serves one QMP client at a time: a second one waits here for the
    // greeting until the first goes away, and the deadline ends the wait.
    cJSON *greeting = s_read_message(self, deadline, err);
    bool is_qmp = greeting && cJSON_GetObjectItemCaseSensitive(greeting, "QMP");
    cJSON_Delete(greeting);
    if (!is_qmp) {
        if (greeting)
            vmlet_err_set(err, "QMP %s: the greeting has no \"QMP\" member", path);
        else
            vmlet_err_wrap(err, "waiting for the QMP greeting");
        qmp_destroy(&self);
        return NULL;
    }
    if (qmp_execute(self, "qmp_capabilities", NULL, NULL, s_left(deadline), err) < 0) {
        qmp_destroy(&self);
        return NULL;
    }
    return self;
}

void qmp_destroy(qmp_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    qmp_t *self = *self_p;
    close(self->fd);
    free(self->buf);
    free(self);
    *self_p = NULL;
}

bool qmp_saw_event(const qmp_t *self, const char *name)
{
    for (int i = 0; i < self->n_events; i++)
        if (strcmp(self->events[i], name) == 0)
            return true;
    return false;
}

// Handles one message while waiting for reply `id`: 1 = it was the reply
// (result in *ret or err), 0 = something else (an event), -1 = error.
static int s_take_reply(qmp_t *self, cJSON *msg, const char *command, const char *id, cJSON **ret,
                        vmlet_err_t *err)
{
    const cJSON *event = cJSON_GetObjectItemCaseSensitive(msg, "event");
    if (cJSON_IsString(event)) {
        s_note_event(self, event->valuestring);
        return 0;
    }
    const cJSON *msg_id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(msg, "error");
    // A reply to someone else's id cannot happen on our own connection;
    // an error without id is QEMU refusing our JSON itself.
    if (cJSON_IsString(msg_id) && strcmp(msg_id->valuestring, id) != 0)
        return 0;
    if (error) {
        const char *cls = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(error, "class"));
        const char *desc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(error, "desc"));
        vmlet_err_set(err, "QMP %s: %s: %s: %s", self->path, command, cls ? cls : "Error",
                      desc ? desc : "(no description)");
        return -1;
    }
    cJSON *value = cJSON_DetachItemFromObjectCaseSensitive(msg, "return");
    if (!value)
        return 0;
    if (ret)
        *ret = value;
    else
        cJSON_Delete(value);
    return 1;
}

int qmp_execute(qmp_t *self, const char *command, const cJSON *args, cJSON **ret, int timeout_ms,
                vmlet_err_t *err)
{
    if (ret)
        *ret = NULL;
    vmlet_err_t scratch; // so `quit` can tell EOF apart even when err is NULL
    if (!err)
        err = &scratch;
    int64_t deadline = vmlet_now_ms() + timeout_ms;
    char id[32];
    snprintf(id, sizeof id, "vmlet-%lu", ++self->next_id);
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "execute", command);
    if (args)
        cJSON_AddItemToObject(req, "arguments", cJSON_Duplicate(args, true));
    cJSON_AddStringToObject(req, "id", id);
    char *text = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (!text)
        return vmlet_err_set(err, "QMP %s: %s: out of memory", self->path, command);
    size_t len = strlen(text);
    char *line = realloc(text, len + 2);
    if (!line) {
        free(text);
        return vmlet_err_set(err, "QMP %s: %s: out of memory", self->path, command);
    }
    memcpy(line + len, "\n", 2);
    int rc = s_write_all(self, line, len + 1, deadline, err);
    free(line);
    if (rc < 0)
        return vmlet_err_wrap(err, "%s", command);
    for (;;) {
        cJSON *msg = s_read_message(self, deadline, err);
        if (!msg) {
            // `quit` may close the socket before its reply is flushed.
            if (strcmp(command, "quit") == 0 && err->code == EPIPE)
                return 0;
            return vmlet_err_wrap(err, "%s", command);
        }
        rc = s_take_reply(self, msg, command, id, ret, err);
        cJSON_Delete(msg);
        if (rc != 0)
            return rc > 0 ? 0 : -1;
    }
}
