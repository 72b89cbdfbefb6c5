// What network.c and network_pods.c share: the object and a few helpers.
// Not for other modules: use network.h.
#ifndef VMLET_NETWORK_INTERNAL_H
#define VMLET_NETWORK_INTERNAL_H

#include "ipam.h"
#include "links.h"
#include "network.h"

struct _net_t {
    char *netns; // NULL: the launcher's own namespace
    char *bridge;
    char *host_veth; // NULL without a namespace
    char *owner;
    unsigned mtu;
    bool nat;
    ipam_cidr_t cidr, link;
    char cidr_text[IPAM_CIDR_STRLEN];
    vmlet_log_t *log;
    ipam_t *ipam;
    int home_fd; // the namespace of the thread that made the object
    int ns_fd;   // vmlet's namespace; -1 without one or before it exists
    struct nl_sock *sk_home;
    struct nl_sock *sk_ns; // == sk_home without a namespace; NULL before it exists
    char netns_path[96];
    char filter_table[64];
    char nat_table[64];
};

// Opens the namespace and a netlink socket inside it, creating the
// namespace only when asked. 1: ready, 0: it does not exist, -1: error.
int net_open_ns(net_t *self, bool create, vmlet_err_t *err);
// net_open_ns without creating; a missing namespace is an error ("net_setup first").
int net_require_setup(net_t *self, vmlet_err_t *err);
// Where the bridge, taps and anti-spoof table live.
netfilter_where_t net_where_pods(const net_t *self);
// The ifindex of a link that must exist, or -1 with err.
int net_ifindex(struct nl_sock *sk, const char *name, vmlet_err_t *err);

#endif
