// Named network namespaces (/run/netns/<name>, made the way iproute2's
// `ip netns add` makes them, so `ip netns exec` and QEMU started inside
// see the same one) and moving the calling thread in and out of one.
//
// Namespaces belong to threads, not processes: netns_enter() moves only the
// calling thread, so the launcher's single thread can step into vmlet's
// namespace, open a socket or a tap there, and step back, while ZeroMQ's
// background threads stay where they are. Sockets keep the namespace they
// were opened in after the thread leaves.
#ifndef VMLET_NETNS_H
#define VMLET_NETNS_H

#include "vmlet/err.h"

#include <stdbool.h>
#include <stddef.h>

#define NETNS_RUN_DIR "/run/netns"

// A namespace is named by a plain name (/run/netns/<name>, made and removed
// here) or by an absolute path to one that exists and is someone else's,
// such as /proc/<pid>/ns/net: opened, never created or removed.
bool netns_is_path(const char *name);

// A descriptor of the calling thread's current network namespace (O_CLOEXEC;
// the caller closes it), or -1 with err.
int netns_open_current(vmlet_err_t *err);

// Opens the named namespace. Returns the fd, or -1 with err (code ENOENT
// when there is no such namespace).
int netns_open(const char *name, vmlet_err_t *err);

// Opens the named namespace, creating it when missing (*created says which;
// a path is only opened).
// home_fd is the calling thread's namespace: creation steps the thread into
// the new namespace and back to home_fd. Returns the fd or -1 with err.
int netns_ensure(const char *name, int home_fd, bool *created, vmlet_err_t *err);

// Unmounts and removes /run/netns/<name>. The namespace itself lives on
// while a process (a VMM) or an open fd holds it. Missing is fine; a path
// is left alone.
int netns_delete(const char *name, vmlet_err_t *err);

// Moves the calling thread into ns_fd. -1 with err when setns fails.
int netns_enter(int ns_fd, const char *what, vmlet_err_t *err);

// Moves the calling thread back to home_fd. A thread that cannot get back
// would do the rest of its work in the wrong namespace, so a failure
// aborts the process (it cannot happen for a namespace we left ourselves).
void netns_return(int home_fd);

// Writes value to /proc/sys/<key> (key like "net/ipv4/ip_forward") as seen
// from the calling thread's namespace.
int netns_sysctl_set(const char *key, const char *value, vmlet_err_t *err);

// Reads /proc/sys/<key> into buf (trailing newline removed).
int netns_sysctl_get(const char *key, char *buf, size_t size, vmlet_err_t *err);

#endif
