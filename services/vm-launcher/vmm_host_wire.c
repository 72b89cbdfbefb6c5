// Framing for the vmm-host socket (vmm_host_wire.h).
#include "vmm_host_wire.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int vmm_host_send(int sock, const uint8_t *body, size_t len, const int *fds, size_t n_fds,
                  vmlet_err_t *err)
{
    if (len > VMM_HOST_FRAME_MAX || n_fds > VMM_HOST_FDS_MAX)
        return vmlet_err_set(err, "vmm-host frame too large (%zu bytes, %zu descriptors)", len,
                             n_fds);
    uint8_t header[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                         (uint8_t)len};
    struct iovec iov[2] = {{header, sizeof header}, {(void *)body, len}};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * VMM_HOST_FDS_MAX)];
    } control;
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    if (n_fds > 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
    }
    size_t total = sizeof header + len, sent = 0;
    while (sent < total) {
        ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vmlet_err_errno(err, errno, "sending to vmm-host");
        sent += (size_t)n;
        // The descriptors went with the first bytes; the rest is plain data.
        msg.msg_control = NULL;
        msg.msg_controllen = 0;
        while (msg.msg_iovlen > 0 && (size_t)n >= msg.msg_iov[0].iov_len) {
            n -= (ssize_t)msg.msg_iov[0].iov_len;
            msg.msg_iov++;
            msg.msg_iovlen--;
        }
        if (msg.msg_iovlen > 0) {
            msg.msg_iov[0].iov_base = (uint8_t *)msg.msg_iov[0].iov_base + n;
            msg.msg_iov[0].iov_len -= (size_t)n;
        }
    }
    return 0;
}

// Keeps the descriptors a message carried, up to the cap; closes the rest.
static void s_take_fds(struct msghdr *msg, int *fds, size_t *n_fds)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof fd, sizeof fd);
            if (*n_fds < VMM_HOST_FDS_MAX)
                fds[(*n_fds)++] = fd;
            else
                close(fd);
        }
    }
}

// Reads exactly cap bytes into buf, taking descriptors on the way.
static int s_read_full(int sock, int64_t deadline_ms, uint8_t *buf, size_t cap, int *fds,
                       size_t *n_fds, vmlet_err_t *err)
{
    size_t got = 0;
    while (got < cap) {
        int64_t left = deadline_ms - vmlet_now_ms();
        if (left <= 0)
            return vmlet_err_errno(err, ETIMEDOUT, "waiting for vmm-host");
        struct pollfd p = {.fd = sock, .events = POLLIN};
        int rc = poll(&p, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return vmlet_err_errno(err, errno, "poll");
        if (rc == 0)
            continue;
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * (VMM_HOST_FDS_MAX + 2))];
        } control;
        struct iovec iov = {buf + got, cap - got};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control.buf,
                             .msg_controllen = sizeof control.buf};
        ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return vmlet_err_errno(err, errno, "reading from vmm-host");
        s_take_fds(&msg, fds, n_fds);
        if (n == 0)
            return vmlet_err_set(err, "vmm-host closed the connection mid-frame");
        got += (size_t)n;
    }
    return 0;
}

int vmm_host_recv(int sock, int64_t deadline_ms, uint8_t **body, size_t *len,
                  int fds[VMM_HOST_FDS_MAX], size_t *n_fds, vmlet_err_t *err)
{
    *body = NULL;
    *len = 0;
    *n_fds = 0;
    uint8_t header[4];
    if (s_read_full(sock, deadline_ms, header, sizeof header, fds, n_fds, err) < 0)
        goto fail;
    size_t n = (size_t)header[0] << 24 | (size_t)header[1] << 16 | (size_t)header[2] << 8 |
               header[3];
    if (n > VMM_HOST_FRAME_MAX) {
        vmlet_err_set(err, "vmm-host frame of %zu bytes (at most %d)", n, VMM_HOST_FRAME_MAX);
        goto fail;
    }
    *body = vmlet_xmalloc(n ? n : 1);
    if (s_read_full(sock, deadline_ms, *body, n, fds, n_fds, err) < 0)
        goto fail;
    *len = n;
    return 0;
fail:
    free(*body);
    *body = NULL;
    for (size_t i = 0; i < *n_fds; i++)
        close(fds[i]);
    *n_fds = 0;
    return -1;
}
