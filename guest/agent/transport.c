// The byte stream to the host: QEMU's virtio-serial port named
// "vmlet.agent", or (Firecracker) a vsock listener on port 1024.
//
// The serial port stays open for the agent's life. The kernel tells
// whether a host is connected to its other end: poll reports POLLHUP
// while none is, and the port raises SIGIO when that changes, so while
// disconnected the port is left out of the poll set (it would report
// POLLHUP at once, forever) and checked on SIGIO or every 250 ms.
#include "agent.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME "vmlet.agent"
#define FIND_TIMEOUT_MS 15000
#define RECHECK_MS 250

static int s_find_port(char *out, size_t cap)
{
    DIR *d = opendir("/sys/class/virtio-ports");
    if (!d)
        return -1;
    struct dirent *e;
    int rc = -1;
    while (rc < 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], name[128];
        snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
        if (read_small_file(path, name, sizeof name) <= 0)
            continue;
        name[strcspn(name, "\n")] = '\0';
        if (strcmp(name, PORT_NAME) == 0) {
            snprintf(out, cap, "/dev/%.*s", (int)cap - 6, e->d_name);
            rc = 0;
        }
    }
    closedir(d);
    return rc;
}

static void s_sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000};
    nanosleep(&ts, NULL);
}

static void s_async(agent_t *a, bool on)
{
    int fl = fcntl(a->t.fd, F_GETFL);
    if (fl >= 0)
        fcntl(a->t.fd, F_SETFL, on ? fl | O_ASYNC : fl & ~O_ASYNC);
}

// The port appears once the console driver has talked with the device
// (after module load), and its /dev node a moment later.
static int s_open_serial(agent_t *a, vmlet_err_t *err)
{
    int64_t deadline = now_ms() + FIND_TIMEOUT_MS;
    for (;;) {
        if (s_find_port(a->t.path, sizeof a->t.path) == 0) {
            a->t.fd = open(a->t.path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
            if (a->t.fd >= 0)
                break;
            if (errno != ENOENT || now_ms() > deadline)
                return vmlet_err_errno(err, errno, "open %s", a->t.path);
        } else if (now_ms() > deadline) {
            return vmlet_err_set(err,
                                 "no virtio-serial port named %s (is the VM started with "
                                 "-device virtserialport,name=%s?)",
                                 PORT_NAME, PORT_NAME);
        }
        s_sleep_ms(10);
    }
    // SIGIO on host connect/disconnect (and on data, so it is asked for
    // only while no host is there), read through signalfd.
    fcntl(a->t.fd, F_SETOWN, getpid());
    s_async(a, true);
    alog("agent channel: %s (%s)", a->t.path, PORT_NAME);
    return 0;
}

static int s_open_vsock(agent_t *a, vmlet_err_t *err)
{
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vmlet_err_errno(err, errno, "vsock socket");
    struct sockaddr_vm addr = {
        .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = a->vsock_port};
    int64_t deadline = now_ms() + FIND_TIMEOUT_MS;
    while (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        // The virtio transport may still be probing its device.
        if (now_ms() > deadline) {
            int e = errno;
            close(fd);
            return vmlet_err_errno(err, e, "vsock bind port %u", a->vsock_port);
        }
        s_sleep_ms(10);
    }
    if (listen(fd, 4) < 0) {
        int e = errno;
        close(fd);
        return vmlet_err_errno(err, e, "vsock listen port %u", a->vsock_port);
    }
    a->t.listen_fd = fd;
    snprintf(a->t.path, sizeof a->t.path, "vsock:%u", a->vsock_port);
    alog("agent channel: listening on vsock port %u", a->vsock_port);
    return 0;
}

int transport_open(agent_t *a, vmlet_err_t *err)
{
    a->t.kind = a->transport_kind;
    a->t.fd = a->t.listen_fd = -1;
    a->t.connected = false;
    return a->t.kind == TRANSPORT_VSOCK ? s_open_vsock(a, err) : s_open_serial(a, err);
}

ssize_t transport_read(agent_t *a, void *buf, size_t len)
{
    if (a->t.fd < 0) {
        errno = ENOTCONN;
        return -1;
    }
    return read(a->t.fd, buf, len);
}

ssize_t transport_write(agent_t *a, const void *buf, size_t len)
{
    if (a->t.fd < 0 || !a->t.connected) {
        errno = EAGAIN;
        return -1;
    }
    if (a->t.kind == TRANSPORT_VSOCK)
        return send(a->t.fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    return write(a->t.fd, buf, len);
}

// Whatever the port still holds from a host that is gone is not for the next.
static void s_discard_serial_input(agent_t *a)
{
    char buf[4096];
    while (read(a->t.fd, buf, sizeof buf) > 0)
        ;
}

void transport_drop(agent_t *a)
{
    if (!a->t.connected)
        return;
    a->t.connected = false;
    if (a->t.kind == TRANSPORT_VSOCK) {
        fd_close(&a->t.fd);
    } else {
        s_async(a, true);
        s_discard_serial_input(a);
    }
    link_on_disconnect(a);
}

static void s_on_channel(agent_t *a, void *obj, int fd, short revents)
{
    (void)obj;
    (void)fd;
    if (revents & POLLIN)
        link_read(a); // EOF inside drops the connection
    if (a->t.connected && (revents & (POLLHUP | POLLERR))) {
        alog_debug("host disconnected");
        transport_drop(a);
        return;
    }
    if (a->t.connected && (revents & POLLOUT))
        link_flush(a);
}

static void s_on_accept(agent_t *a, void *obj, int fd, short revents)
{
    (void)obj;
    (void)revents;
    int conn = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn < 0)
        return;
    // One host at a time: a new connection is the launcher coming back.
    transport_drop(a);
    a->t.fd = conn;
    a->t.connected = true;
    link_on_connect(a);
}

void transport_watch(agent_t *a)
{
    if (a->t.kind == TRANSPORT_VSOCK) {
        loop_watch(a, a->t.listen_fd, POLLIN, s_on_accept, NULL);
    } else if (!a->t.connected && a->t.fd >= 0) {
        struct pollfd p = {a->t.fd, POLLIN | POLLOUT, 0};
        if (poll(&p, 1, 0) == 1 && (p.revents & POLLHUP)) {
            s_discard_serial_input(a);
            loop_deadline(a, now_ms() + RECHECK_MS);
            return;
        }
        a->t.connected = true;
        s_async(a, false);
        link_on_connect(a);
    }
    if (a->t.connected && a->t.fd >= 0)
        loop_watch(a, a->t.fd, (short)(POLLIN | (link_writable_soon(a) ? POLLOUT : 0)),
                   s_on_channel, NULL);
}
