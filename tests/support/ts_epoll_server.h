// What the test's own loopback servers (ts_http_target, ts_grpc_health)
// share: a non-blocking listening socket on 127.0.0.1 at a kernel-chosen
// port, an epoll set watching it (its events carry data.ptr NULL), and an
// eventfd that wakes the server's thread (its events carry wake_tag).
// Test code only.
#ifndef VMLET_TS_EPOLL_SERVER_H
#define VMLET_TS_EPOLL_SERVER_H

typedef struct {
    int listen_fd, epfd, wake_fd, port;
} ts_epoll_server_t;

// Returns 0, or -1 after saying why on stderr (`who` names the server).
int ts_epoll_server_open(ts_epoll_server_t *s, int backlog, void *wake_tag, const char *who);
// Wakes the thread waiting on s->epfd (to stop it).
void ts_epoll_server_wake(ts_epoll_server_t *s, const char *who);
void ts_epoll_server_close(ts_epoll_server_t *s);

#endif
