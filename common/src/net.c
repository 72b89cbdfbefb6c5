// Listening TCP sockets from "HOST:PORT" settings (see net.h).
#include "vmlet/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// "HOST:PORT", "[V6]:PORT" or ":PORT" into host (NULL for all addresses) and port.
static int s_split_listen(const char *spec, char *host, size_t host_size, char *port,
                          size_t port_size, vmlet_err_t *err)
{
    const char *colon = spec ? strrchr(spec, ':') : NULL;
    if (!colon)
        return vmlet_err_set(err, "listen '%s': expected HOST:PORT or :PORT (e.g. :9090)",
                             spec ? spec : "");
    const char *start = spec, *end = colon;
    if (end - start >= 2 && *start == '[' && end[-1] == ']') {
        start++;
        end--;
    }
    size_t digits = strspn(colon + 1, "0123456789");
    if (digits == 0 || digits > 5 || colon[1 + digits] || atoi(colon + 1) > 65535)
        return vmlet_err_set(err, "listen '%s': port must be a number from 0 to 65535", spec);
    if ((size_t)(end - start) >= host_size)
        return vmlet_err_set(err, "listen '%s': host is too long", spec);
    snprintf(host, host_size, "%.*s", (int)(end - start), start);
    if (!*host)
        snprintf(host, host_size, "0.0.0.0");
    else if (strcmp(host, "localhost") == 0) // never ask a resolver
        snprintf(host, host_size, "127.0.0.1");
    snprintf(port, port_size, "%s", colon + 1);
    return 0;
}

int vmlet_tcp_bound_port(int fd)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
        return -1;
    if (addr.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
    return ntohs(((struct sockaddr_in *)&addr)->sin_port);
}

int vmlet_tcp_listen(const char *spec, vmlet_err_t *err)
{
    char host[256], port[8];
    if (s_split_listen(spec, host, sizeof host, port, sizeof port, err) < 0)
        return -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_NUMERICHOST};
    struct addrinfo *addrs;
    int rc = getaddrinfo(host, port, &hints, &addrs);
    if (rc != 0)
        return vmlet_err_set(err, "listen '%s': %s (use a numeric address)", spec,
                             gai_strerror(rc));
    int fd = -1, saved = 0;
    for (struct addrinfo *a = addrs; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        int one = 1;
        if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
                        bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0)) {
            saved = errno;
            close(fd);
            fd = -1;
        } else if (fd < 0) {
            saved = errno;
        }
    }
    freeaddrinfo(addrs);
    if (fd < 0 && saved == EADDRINUSE)
        return vmlet_err_set(err,
                             "listen '%s': port in use: stop the other process or "
                             "choose another port",
                             spec);
    if (fd < 0)
        return vmlet_err_errno(err, saved, "listen '%s'", spec);
    return fd;
}

