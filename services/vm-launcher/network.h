// The pod network: one tap per VM on a bridge, pod IPs from a CIDR
// allocated in Redis (ipam.h), anti-spoof filters and optional NAT
// (netfilter.h).
//
// Layout with a namespace (the default, and what tests on these machines
// must use, DESIGN.md §4):
//
//   launcher's namespace                 vmlet's namespace (/run/netns/<netns>)
//   ───────────────────────              ─────────────────────────────────────
//   <host_veth> link.1/30  <──veth──>    uplink link.2/30
//   route <cidr> via link.2 metric 213                  default via link.1
//   route unreachable <cidr> metric 4213 <bridge> <gateway>/<len>, fixed MAC
//   NAT: masquerade <cidr> leaving by     ├─ vt<hash> (tap of pod A) ── VM A
//        any interface but <host_veth>    └─ vt<hash> (tap of pod B) ── VM B
//                                        anti-spoof filters on every vt* port
//
// The host and the services reach a pod at its IP through the veth; pods
// reach the outside through the veth and the launcher's namespace (with
// masquerade when NAT is on). The unreachable route, with a worse metric
// than the route via the veth, makes sure a packet for the pod CIDR never
// leaves the machine by the default route, even while the veth is down or
// gone. Without a namespace (netns ""), the bridge carries the gateway
// address in the launcher's own namespace and there is no veth.
//
// Pods reach the host's own addresses like any router's clients do (as
// pods on a kubelet node reach the node): bind host services to loopback
// or filter them if pods must not. A host firewall whose forward policy
// drops traffic must let the pod CIDR through for NAT to work.
//
// Names: a pod's tap is "vt" + 12 hex digits of a hash of its uid
// (net_tap_name); the VM's MAC is 02:76 followed by its IPv4 address
// (locally administered, unique in the CIDR, the same whenever the pod
// gets its address back); the bridge's MAC is 02:76 + the gateway address.
// Each tap's alias ("vmlet pod=<uid> owner=<owner>", see `ip link`) lets a
// restarted launcher find the taps it made.
//
// Namespaces and threads: a net_t is used from one thread (the launcher's
// loop). Its rtnetlink sockets are opened once inside each namespace and
// keep working from anywhere; for what must happen inside vmlet's
// namespace (creating a tap through /dev/net/tun, sysctls, libnftables
// runs) the thread steps in with setns() and straight back (netns.h),
// so no other code ever runs in the wrong namespace.
//
// Suggested launcher flags (and defaults):
//   --net-netns      vmlet             namespace of the bridge; "" for none
//   --net-bridge     vmlet0            bridge name
//   --pod-cidr       10.213.0.0/24     pod addresses (/16 to /30)
//   --pod-gateway    ""                the pods' gateway; "" = first usable
//   --net-mtu        1500              MTU of bridge, taps, veth and the VMs
//   --net-host-veth  vmlet-host        the veth end in the launcher's namespace
//   --net-link-cidr  169.254.213.0/30  addresses of the veth pair (.1 host, .2 namespace)
//   --net-nat        true              masquerade pods' traffic to the outside
//   (owner: --launcher-id)
#ifndef VMLET_NETWORK_H
#define VMLET_NETWORK_H

#include "netfilter.h"
#include "vmlet/err.h"
#include "vmlet/log.h"
#include "vmlet/store.h"

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_DEFAULT_NETNS "vmlet"
#define NET_DEFAULT_BRIDGE "vmlet0"
#define NET_DEFAULT_POD_CIDR "10.213.0.0/24"
#define NET_DEFAULT_MTU 1500
#define NET_DEFAULT_HOST_VETH "vmlet-host"
#define NET_DEFAULT_LINK_CIDR "169.254.213.0/30"
// The veth end inside vmlet's namespace.
#define NET_UPLINK "uplink"
// Metric of the route to the pods, and of the unreachable fallback (worse).
#define NET_ROUTE_METRIC 213
#define NET_FALLBACK_METRIC 4213

typedef struct {
    const char *netns; // "" or NULL: the launcher's own namespace
    const char *bridge;
    const char *pod_cidr;
    const char *gateway;   // "" or NULL: first usable address
    unsigned mtu;          // 0: NET_DEFAULT_MTU
    const char *host_veth; // used with a namespace only
    const char *link_cidr; // used with a namespace only
    bool nat;
    const char *owner; // the launcher's id: whose leases and taps these are
} net_settings_t;

// The defaults above (owner stays NULL: the caller sets it).
void net_settings_defaults(net_settings_t *settings);

// What the VMM and the guest need for one pod.
typedef struct {
    char ip[INET_ADDRSTRLEN];
    int prefix_len;
    char gateway[INET_ADDRSTRLEN];
    char mac[18];       // the VM's NIC (virtio-net mac=), not the tap's
    char tap[IFNAMSIZ]; // open it by name (QEMU: -netdev tap,ifname=...,script=no,downscript=no)
    unsigned mtu;
    char netns_path[96]; // start the VMM inside this namespace; "" for none
} net_lease_t;

typedef struct _net_t net_t;

// Checks the settings (names, CIDRs, owner); store, log are borrowed and
// must outlive the object. Touches nothing yet but opens a netlink socket
// (and the namespace when it exists). NULL with err on bad settings.
net_t *net_new(const net_settings_t *settings, vmlet_store_t *store, vmlet_log_t *log,
               vmlet_err_t *err);
void net_destroy(net_t **self_p);

// Makes the network: creates what is missing and keeps what exists (a
// restarted launcher adopts bridge, taps and filter elements, and running
// VMs notice nothing). The unreachable fallback comes first. Turns NAT
// on or off as configured; with NAT on, also turns on IPv4 forwarding in
// the launcher's namespace. Call before attach/detach/list.
int net_setup(net_t *self, vmlet_err_t *err);

// Removes everything net_setup made: detaches every pod net_list reports
// (freeing their addresses), then filters, NAT, veth, routes, bridge and
// the namespace's name (the namespace itself goes when the last VMM in it
// exits). IPv4 forwarding is left as it is.
int net_teardown(net_t *self, vmlet_err_t *err);

// Connects a pod: its address (the one it holds, or a new one), its tap
// (created if missing, kept if it exists: a VM may be using it), the
// filter elements that let only that VM's MAC and IP through the tap, and
// the tap as a bridge port. Idempotent and cheap when all is in place
// (~0.3 ms): a launcher that adopts running VMs after a restart calls it
// for each, which also repairs a missing filter element or port. A link
// already named like the tap is adopted (tests stand in for VMs with veths
// named so). -1 with err (code ENOSPC: the CIDR is full; EEXIST: the pod
// holds an address from another CIDR, or another pod's tap has its name);
// the lease stays recorded then, and net_detach frees it.
int net_attach(net_t *self, const char *pod_uid, net_lease_t *out, vmlet_err_t *err);

// Disconnects a pod: its tap and filter elements go, its address is freed.
// Idempotent. Leaves alone what another owner has taken over (a tap whose
// alias or a lease whose owner is another launcher's).
int net_detach(net_t *self, const char *pod_uid, vmlet_err_t *err);

// The pods this owner has on this network: taps whose alias names this
// owner, and addresses leased to it. For a launcher to detach those it no
// longer runs. *uids: malloc'd array of malloc'd strings (net_list_free).
int net_list(net_t *self, char ***uids, size_t *n, vmlet_err_t *err);
void net_list_free(char **uids, size_t n);

// Frames the filters have dropped since the table was made (a metric; the
// tests poll it to see a forged frame hit the filter).
int net_filter_drops(net_t *self, netfilter_drops_t *drops, vmlet_err_t *err);

// "/run/netns/<name>", or "" without a namespace.
const char *net_netns_path(const net_t *self);

// --- pure naming (no I/O) -----------------------------------------------------

// "vt" + 12 hex digits of a 64-bit FNV-1a hash of the uid (14 characters).
void net_tap_name(const char *pod_uid, char buf[IFNAMSIZ]);
// 02:76:a:b:c:d for the IPv4 address a.b.c.d (host byte order in).
void net_mac_for(uint32_t addr, uint8_t mac[6]);
// Whether s can name a network interface here: 1-15 characters of
// [A-Za-z0-9._-], not "." or ".." (names end up in nftables rules).
bool net_valid_ifname(const char *s);

#endif
