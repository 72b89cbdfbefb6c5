// Listening TCP sockets from the "HOST:PORT" form settings use, shared by
// every server vmlet runs.
#ifndef VMLET_NET_H
#define VMLET_NET_H

#include "vmlet/err.h"

// Binds and listens on spec: "HOST:PORT", "[V6]:PORT", ":PORT" (all IPv4
// addresses) or port 0 for an ephemeral one. HOST is numeric, or
// "localhost" for 127.0.0.1: no name is ever sent to a resolver. Returns a
// non-blocking, close-on-exec socket, or -1 with err (a port in use says so).
int vmlet_tcp_listen(const char *spec, vmlet_err_t *err);

// The port a socket is bound to, or -1.
int vmlet_tcp_bound_port(int fd);

#endif
