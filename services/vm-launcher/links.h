// The links, addresses and routes the pod network needs, over rtnetlink
// with libnl-route-3, and persistent tap devices over /dev/net/tun. Each
// function works in the namespace its socket was opened in (taps: the
// calling thread's). "Ensure" functions create what is missing and keep
// what exists, so running VMs are not disturbed by a launcher restart.
#ifndef VMLET_LINKS_H
#define VMLET_LINKS_H

#include "vmlet/err.h"

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>

struct nl_sock;

// A NETLINK_ROUTE socket in the calling thread's namespace, or NULL with err.
struct nl_sock *links_open(vmlet_err_t *err);
void links_close(struct nl_sock **sk_p);

typedef struct {
    int ifindex;
    int master; // ifindex of the bridge it is a port of, 0 for none
    unsigned mtu;
    bool up;
    char kind[16];   // "bridge", "veth", "tun", ... ("" for none)
    char alias[256]; // IFLA_IFALIAS, "" when unset
    uint8_t mac[6];
} links_info_t;

// 1 with *info when the link exists, 0 when it does not, -1 on error.
int links_get(struct nl_sock *sk, const char *name, links_info_t *info, vmlet_err_t *err);

// A bridge with this MTU and MAC, up. A fixed MAC keeps the bridge from
// taking a port's MAC (and changing it under the pods' ARP caches) as
// ports come and go. A link of that name that is not a bridge is an error.
int links_bridge_ensure(struct nl_sock *sk, const char *name, unsigned mtu, const uint8_t mac[6],
                        bool *created, vmlet_err_t *err);

// A veth pair: `name` here, `peer` in the namespace peer_ns_fd. An
// existing `name` is kept (the caller checks its peer).
int links_veth_ensure(struct nl_sock *sk, const char *name, const char *peer, int peer_ns_fd,
                      unsigned mtu, bool *created, vmlet_err_t *err);

// Changes to an existing link; fields left at their "keep" value are not sent.
typedef struct {
    unsigned mtu;      // 0: keep
    int master;        // ifindex of a bridge; 0: keep
    const char *alias; // NULL: keep
    bool up;           // false: keep
} links_change_t;
int links_set(struct nl_sock *sk, const char *name, const links_change_t *change, vmlet_err_t *err);

// Deletes the link (a veth takes its peer along). Missing is fine.
int links_delete(struct nl_sock *sk, const char *name, vmlet_err_t *err);

// addr/prefix on the link (host byte order). Present already is fine.
int links_addr_ensure(struct nl_sock *sk, int ifindex, uint32_t addr, int prefix, vmlet_err_t *err);

// A route in the main table. gateway 0: none; ifindex 0: none;
// unreachable: an `unreachable` route (no nexthop). It replaces a route
// with the same destination and metric, so a stale one is repaired.
typedef struct {
    uint32_t dst;
    int prefix;
    uint32_t gateway;
    int ifindex;
    uint32_t metric;
    bool unreachable;
} links_route_t;
int links_route_ensure(struct nl_sock *sk, const links_route_t *route, vmlet_err_t *err);
// Deletes that route; missing is fine.
int links_route_delete(struct nl_sock *sk, const links_route_t *route, vmlet_err_t *err);

// Calls fn for every link in the socket's namespace.
typedef void (*links_each_fn)(const char *name, const links_info_t *info, void *arg);
int links_foreach(struct nl_sock *sk, links_each_fn fn, void *arg, vmlet_err_t *err);

// A persistent tap (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, as QEMU opens it),
// owned by root, in the calling thread's namespace. A VMM started later in
// that namespace opens it by name.
int links_tap_create(const char *name, vmlet_err_t *err);

// "02:76:0a:d5:00:02" for mac.
void links_mac_format(const uint8_t mac[6], char buf[18]);

#endif
