// Pod IP addresses from one IPv4 CIDR, allocated in Redis so that any
// number of launchers sharing one Redis never hand out an address twice.
// Every change runs as one Lua script, which Redis executes atomically.
//
// Redis keys (<cidr> in canonical form, e.g. "10.213.0.0/24"; addresses
// as dotted quads):
//   vmlet:ipam:<cidr>         hash   ip -> pod uid            addresses in use
//   vmlet:ipam-next:<cidr>    string offset to try next       round robin, so a
//                                    freed address is the last to come back
//                                    (stale ARP entries and conntrack age out)
//   vmlet:ipam-pod:<uid>      hash   ip, cidr, owner          the pod's lease
//   vmlet:ipam-owner:<owner>  set    pod uids                 leases an owner holds
// The owner is the launcher's id. A pod asked for again gets its address
// back, and the lease moves to the asking owner (a launcher that took over
// a dead one's pods). The scripts name keys they derive from values, so
// they need a single Redis, not Redis Cluster.
//
// The network address, the broadcast address and the gateway are never
// handed out.
#ifndef VMLET_IPAM_H
#define VMLET_IPAM_H

#include "vmlet/err.h"
#include "vmlet/store.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// "255.255.255.255/32" and its terminator.
#define IPAM_CIDR_STRLEN 19

// The prefix lengths a pod CIDR may have: /30 leaves one pod beside the
// gateway; /16 bounds the allocation scan at 65534 addresses.
#define IPAM_PREFIX_MIN 16
#define IPAM_PREFIX_MAX 30

// Addresses are host byte order throughout.
typedef struct {
    uint32_t network;
    int prefix;
    uint32_t gateway;
} ipam_cidr_t;

// --- pure address arithmetic (no I/O) ---------------------------------------

// Parses "a.b.c.d/len". Host bits must be zero (a typo such as
// "10.213.0.1/24" is refused, naming the network meant) and len must lie in
// [IPAM_PREFIX_MIN, IPAM_PREFIX_MAX]. The gateway is set to the first
// usable address.
int ipam_cidr_parse(const char *text, ipam_cidr_t *out, vmlet_err_t *err);

// Sets the gateway: "" or NULL keeps the first usable address; otherwise a
// usable address inside the CIDR (not the network or broadcast address).
int ipam_cidr_set_gateway(ipam_cidr_t *cidr, const char *gateway, vmlet_err_t *err);

// Parses a dotted quad. Returns 0, or -1 with err.
int ipam_addr_parse(const char *text, uint32_t *out, vmlet_err_t *err);

uint32_t ipam_netmask(const ipam_cidr_t *cidr);
uint32_t ipam_broadcast(const ipam_cidr_t *cidr);
uint32_t ipam_first(const ipam_cidr_t *cidr); // first usable: network + 1
uint32_t ipam_last(const ipam_cidr_t *cidr);  // last usable: broadcast - 1
bool ipam_contains(const ipam_cidr_t *cidr, uint32_t addr);
// Whether a pod may get addr: inside, and not network, broadcast or gateway.
bool ipam_assignable(const ipam_cidr_t *cidr, uint32_t addr);
// How many pods the CIDR holds (usable addresses less the gateway).
uint32_t ipam_capacity(const ipam_cidr_t *cidr);

// "a.b.c.d" into buf (INET_ADDRSTRLEN bytes).
void ipam_addr_format(uint32_t addr, char buf[INET_ADDRSTRLEN]);
// "a.b.c.d/len" into buf (IPAM_CIDR_STRLEN bytes).
void ipam_cidr_format(const ipam_cidr_t *cidr, char buf[IPAM_CIDR_STRLEN]);

// Whether s may be a pod uid or an owner here: 1-128 characters of
// [A-Za-z0-9._-] (Kubernetes uids are UUIDs). They become parts of Redis
// keys and interface aliases, so nothing else is accepted.
bool ipam_valid_name(const char *s);

// --- the allocator over Redis -------------------------------------------------

typedef struct _ipam_t ipam_t;

// store is borrowed and must outlive the allocator. owner: see
// ipam_valid_name. Returns NULL with err on a bad owner.
ipam_t *ipam_new(vmlet_store_t *store, const ipam_cidr_t *cidr, const char *owner,
                 vmlet_err_t *err);
void ipam_destroy(ipam_t **self_p);

// The pod's address: the one it holds already in this CIDR, or a free one
// (*fresh, may be NULL, says which). Returns 0 with *addr; -1 with err,
// err->code ENOSPC when the CIDR is full, EEXIST when the pod holds an
// address from another CIDR (set by another configuration; ipam_release
// frees it).
int ipam_acquire(ipam_t *self, const char *uid, uint32_t *addr, bool *fresh, vmlet_err_t *err);

// The pod's lease without allocating: 1 with *addr (and *ours: whether this
// owner holds it; may be NULL) when it holds one in this CIDR, 0 when it
// holds none here, -1 on error.
int ipam_lookup(ipam_t *self, const char *uid, uint32_t *addr, bool *ours, vmlet_err_t *err);

// Frees the pod's address, whatever CIDR it came from, unless another
// owner holds it now (then it is left alone). Returns 1 freed, 0 nothing
// to free, 2 held by another owner, -1 on error.
int ipam_release(ipam_t *self, const char *uid, vmlet_err_t *err);

// The uids whose leases this owner holds. *uids is a malloc'd array of
// malloc'd strings (the caller frees each and the array); *n its length.
int ipam_list_owned(ipam_t *self, char ***uids, size_t *n, vmlet_err_t *err);

#endif
