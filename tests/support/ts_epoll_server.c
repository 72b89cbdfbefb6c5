// The loopback servers' socket, epoll set and wake-up (see ts_epoll_server.h).
#include "ts_epoll_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

int ts_epoll_server_open(ts_epoll_server_t *s, int backlog, void *wake_tag, const char *who)
{
    *s = (ts_epoll_server_t){.listen_fd = -1, .epfd = -1, .wake_fd = -1};
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(s->listen_fd, backlog) < 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&sa, &len) < 0) {
        fprintf(stderr, "%s: listen: %s\n", who, strerror(errno));
        ts_epoll_server_close(s);
        return -1;
    }
    s->port = ntohs(sa.sin_port);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event listen_ev = {.events = EPOLLIN, .data.ptr = NULL};
    struct epoll_event wake_ev = {.events = EPOLLIN, .data.ptr = wake_tag};
    if (s->epfd < 0 || s->wake_fd < 0 ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &listen_ev) < 0 ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wake_fd, &wake_ev) < 0) {
        fprintf(stderr, "%s: epoll: %s\n", who, strerror(errno));
        ts_epoll_server_close(s);
        return -1;
    }
    return 0;
}

void ts_epoll_server_wake(ts_epoll_server_t *s, const char *who)
{
    uint64_t one = 1;
    if (write(s->wake_fd, &one, sizeof one) != sizeof one)
        fprintf(stderr, "%s: wake: %s\n", who, strerror(errno));
}

void ts_epoll_server_close(ts_epoll_server_t *s)
{
    int *fds[] = {&s->listen_fd, &s->epfd, &s->wake_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
}
