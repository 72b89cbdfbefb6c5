// The pod network's nftables rules, run through libnftables in a chosen
// namespace.
//
// Anti-spoofing, table `bridge <filter table>` where the bridge lives. The
// rules act on bridge ports named NET_TAP_PREFIX* (every VM's tap), so
// other bridges and ports on the same host are left alone:
//   prerouting (from a port, before the bridge learns the source MAC, so a
//   forged MAC never enters its forwarding table):
//     IPv4 passes only as (port, ether saddr, ip saddr) in @ip_ok;
//     ARP passes only as (port, ether saddr, arp sender MAC, arp sender IP)
//     in @arp_in (sender IP 0.0.0.0 too: RFC 5227 probes); everything else
//     (IPv6, VLAN tags, other ethertypes) is dropped: pods are IPv4 only.
//   postrouting (to a port, bridged from another port or sent by the host):
//     IPv4 passes only as (port, ether daddr, ip daddr) in @ip_ok, so a
//     frame for another pod's address never reaches this port even when
//     flooded or misdirected; ARP only as (port, arp target IP) in
//     @arp_out, so a VM never even sees requests for other pods' addresses.
// Each drop has a named counter (drop_in_ip, drop_in_arp, drop_in_other,
// drop_out_ip, drop_out_other). Setting up again replaces the rules in one
// transaction and keeps the sets' elements, so running VMs stay allowed.
//
// NAT, table `ip <nat table>` in the launcher's own namespace:
//   postrouting: ip saddr <cidr> ip daddr != <cidr> oifname != <toward
//   pods> masquerade.
#ifndef VMLET_NETFILTER_H
#define VMLET_NETFILTER_H

#include "vmlet/err.h"

#include <stdint.h>

// Ports the filter applies to start with this (see net_tap_name).
#define NET_TAP_PREFIX "vt"

// Where to run: ns_fd -1 runs in the calling thread's own namespace; else
// the thread steps into ns_fd (named ns_name in messages) and back to
// home_fd.
typedef struct {
    int ns_fd;
    int home_fd;
    const char *ns_name;
} netfilter_where_t;

int netfilter_filter_setup(const netfilter_where_t *w, const char *table, vmlet_err_t *err);
// Deletes the table (missing is fine).
int netfilter_filter_remove(const netfilter_where_t *w, const char *table, vmlet_err_t *err);

// Lets `port` carry a VM whose interface has mac ("02:76:...") and ip
// (dotted quad). Adding again is harmless.
int netfilter_port_allow(const netfilter_where_t *w, const char *table, const char *port,
                         const char *mac, const char *ip, vmlet_err_t *err);
// Takes that back. Missing elements are fine.
int netfilter_port_revoke(const netfilter_where_t *w, const char *table, const char *port,
                          const char *mac, const char *ip, vmlet_err_t *err);

// Masquerades cidr ("10.213.0.0/24") leaving by any interface but
// `toward_pods` (the host veth, or the bridge without a namespace).
int netfilter_nat_setup(const netfilter_where_t *w, const char *table, const char *cidr,
                        const char *toward_pods, vmlet_err_t *err);
int netfilter_nat_remove(const netfilter_where_t *w, const char *table, vmlet_err_t *err);

typedef struct {
    uint64_t in_ip, in_arp, in_other; // frames a VM sent that were dropped
    uint64_t out_ip, out_other;       // frames kept from a VM (out_other counts ARP
                                      // requests for other pods: normal)
} netfilter_drops_t;
int netfilter_filter_drops(const netfilter_where_t *w, const char *table, netfilter_drops_t *drops,
                           vmlet_err_t *err);

// Turns any string into an nftables identifier ("vmlet_" + [A-Za-z0-9_]).
void netfilter_table_name(const char *prefix, const char *name, char *buf, size_t size);

#endif
