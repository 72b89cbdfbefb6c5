// Links, addresses and routes over libnl-route-3; taps over /dev/net/tun.
#include "links.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int s_nlerr(vmlet_err_t *err, int rc, const char *fmt, const char *name)
{
    char what[160];
    snprintf(what, sizeof what, fmt, name);
    return vmlet_err_set(err, "%s: %s", what, nl_geterror(rc));
}

struct nl_sock *links_open(vmlet_err_t *err)
{
    struct nl_sock *sk = nl_socket_alloc();
    if (!sk) {
        vmlet_err_set(err, "netlink: cannot allocate a socket");
        return NULL;
    }
    int rc = nl_connect(sk, NETLINK_ROUTE);
    if (rc < 0) {
        s_nlerr(err, rc, "netlink: %s", "connecting a NETLINK_ROUTE socket");
        nl_socket_free(sk);
        return NULL;
    }
    return sk;
}

void links_close(struct nl_sock **sk_p)
{
    if (!sk_p || !*sk_p)
        return;
    nl_socket_free(*sk_p);
    *sk_p = NULL;
}

void links_mac_format(const uint8_t mac[6], char buf[18])
{
    snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
             mac[5]);
}

static void s_info(struct rtnl_link *l, links_info_t *info)
{
    memset(info, 0, sizeof *info);
    info->ifindex = rtnl_link_get_ifindex(l);
    info->master = rtnl_link_get_master(l);
    info->mtu = rtnl_link_get_mtu(l);
    info->up = (rtnl_link_get_flags(l) & IFF_UP) != 0;
    const char *kind = rtnl_link_get_type(l);
    snprintf(info->kind, sizeof info->kind, "%s", kind ? kind : "");
    const char *alias = rtnl_link_get_ifalias(l);
    snprintf(info->alias, sizeof info->alias, "%s", alias ? alias : "");
    struct nl_addr *a = rtnl_link_get_addr(l);
    if (a && nl_addr_get_len(a) == 6)
        memcpy(info->mac, nl_addr_get_binary_addr(a), 6);
}

int links_get(struct nl_sock *sk, const char *name, links_info_t *info, vmlet_err_t *err)
{
    struct rtnl_link *l = NULL;
    int rc = rtnl_link_get_kernel(sk, 0, name, &l);
    if (rc == -NLE_NODEV || rc == -NLE_OBJ_NOTFOUND)
        return 0;
    if (rc < 0)
        return s_nlerr(err, rc, "link %s", name);
    s_info(l, info);
    rtnl_link_put(l);
    return 1;
}

int links_bridge_ensure(struct nl_sock *sk, const char *name, unsigned mtu, const uint8_t mac[6],
                        bool *created, vmlet_err_t *err)
{
    *created = false;
    links_info_t info;
    int found = links_get(sk, name, &info, err);
    if (found < 0)
        return -1;
    if (!found) {
        struct rtnl_link *br = rtnl_link_bridge_alloc();
        struct nl_addr *a = nl_addr_build(AF_LLC, mac, 6);
        rtnl_link_set_name(br, name);
        rtnl_link_set_mtu(br, mtu);
        rtnl_link_set_addr(br, a);
        int rc = rtnl_link_add(sk, br, NLM_F_CREATE | NLM_F_EXCL);
        nl_addr_put(a);
        rtnl_link_put(br);
        if (rc < 0 && rc != -NLE_EXIST)
            return s_nlerr(err, rc, "bridge %s: create", name);
        *created = rc == 0;
        if (links_get(sk, name, &info, err) <= 0)
            return vmlet_err_set(err, "bridge %s: gone right after creation", name);
    }
    if (strcmp(info.kind, "bridge"))
        return vmlet_err_set(err,
                             "link %s exists and is a %s, not a bridge (choose another "
                             "--net-bridge or remove it)",
                             name, info.kind[0] ? info.kind : "device");
    // Only what differs is changed: an unchanged MAC or MTU is not resent.
    struct rtnl_link *orig = NULL, *chg = rtnl_link_alloc();
    int rc = rtnl_link_get_kernel(sk, 0, name, &orig);
    if (rc >= 0) {
        if (memcmp(info.mac, mac, 6)) {
            struct nl_addr *a = nl_addr_build(AF_LLC, mac, 6);
            rtnl_link_set_addr(chg, a);
            nl_addr_put(a);
        }
        if (info.mtu != mtu)
            rtnl_link_set_mtu(chg, mtu);
        rtnl_link_set_flags(chg, IFF_UP);
        rc = rtnl_link_change(sk, orig, chg, 0);
    }
    rtnl_link_put(chg);
    if (orig)
        rtnl_link_put(orig);
    if (rc < 0)
        return s_nlerr(err, rc, "bridge %s: setting MAC, MTU and up", name);
    return 0;
}

int links_veth_ensure(struct nl_sock *sk, const char *name, const char *peer, int peer_ns_fd,
                      unsigned mtu, bool *created, vmlet_err_t *err)
{
    *created = false;
    links_info_t info;
    int found = links_get(sk, name, &info, err);
    if (found < 0)
        return -1;
    if (found) {
        if (strcmp(info.kind, "veth"))
            return vmlet_err_set(err,
                                 "link %s exists and is a %s, not a veth (choose another "
                                 "--net-host-veth or remove it)",
                                 name, info.kind[0] ? info.kind : "device");
        return 0;
    }
    struct rtnl_link *veth = rtnl_link_veth_alloc();
    if (!veth)
        return vmlet_err_set(err, "veth %s: cannot allocate", name);
    rtnl_link_set_name(veth, name);
    rtnl_link_set_mtu(veth, mtu);
    struct rtnl_link *p = rtnl_link_veth_get_peer(veth);
    rtnl_link_set_name(p, peer);
    rtnl_link_set_mtu(p, mtu);
    rtnl_link_set_ns_fd(p, peer_ns_fd);
    rtnl_link_put(p);
    int rc = rtnl_link_add(sk, veth, NLM_F_CREATE | NLM_F_EXCL);
    rtnl_link_veth_release(veth);
    if (rc < 0 && rc != -NLE_EXIST)
        return s_nlerr(err, rc, "veth %s: create", name);
    *created = rc == 0;
    return 0;
}

int links_set(struct nl_sock *sk, const char *name, const links_change_t *change, vmlet_err_t *err)
{
    struct rtnl_link *orig = NULL;
    int rc = rtnl_link_get_kernel(sk, 0, name, &orig);
    if (rc < 0)
        return s_nlerr(err, rc, "link %s", name);
    struct rtnl_link *chg = rtnl_link_alloc();
    if (change->mtu)
        rtnl_link_set_mtu(chg, change->mtu);
    if (change->master)
        rtnl_link_set_master(chg, change->master);
    if (change->alias)
        rtnl_link_set_ifalias(chg, change->alias);
    if (change->up)
        rtnl_link_set_flags(chg, IFF_UP);
    rc = rtnl_link_change(sk, orig, chg, 0);
    rtnl_link_put(chg);
    rtnl_link_put(orig);
    if (rc < 0)
        return s_nlerr(err, rc, "link %s: change", name);
    return 0;
}

int links_delete(struct nl_sock *sk, const char *name, vmlet_err_t *err)
{
    struct rtnl_link *l = rtnl_link_alloc();
    rtnl_link_set_name(l, name);
    int rc = rtnl_link_delete(sk, l);
    rtnl_link_put(l);
    if (rc < 0 && rc != -NLE_NODEV && rc != -NLE_OBJ_NOTFOUND)
        return s_nlerr(err, rc, "link %s: delete", name);
    return 0;
}

static struct nl_addr *s_inet(uint32_t addr, int prefix)
{
    uint32_t be = htonl(addr);
    struct nl_addr *a = nl_addr_build(AF_INET, &be, 4);
    if (a)
        nl_addr_set_prefixlen(a, prefix);
    return a;
}

int links_addr_ensure(struct nl_sock *sk, int ifindex, uint32_t addr, int prefix, vmlet_err_t *err)
{
    struct rtnl_addr *ra = rtnl_addr_alloc();
    struct nl_addr *local = s_inet(addr, prefix);
    rtnl_addr_set_ifindex(ra, ifindex);
    rtnl_addr_set_family(ra, AF_INET);
    rtnl_addr_set_local(ra, local);
    rtnl_addr_set_prefixlen(ra, prefix);
    int rc = rtnl_addr_add(sk, ra, 0);
    nl_addr_put(local);
    rtnl_addr_put(ra);
    if (rc < 0 && rc != -NLE_EXIST) {
        char a[INET_ADDRSTRLEN];
        uint32_t be = htonl(addr);
        inet_ntop(AF_INET, &be, a, sizeof a);
        return vmlet_err_set(err, "address %s/%d on ifindex %d: %s", a, prefix, ifindex,
                             nl_geterror(rc));
    }
    return 0;
}

static struct rtnl_route *s_route(const links_route_t *r)
{
    struct rtnl_route *route = rtnl_route_alloc();
    struct nl_addr *dst = s_inet(r->dst, r->prefix);
    rtnl_route_set_family(route, AF_INET);
    rtnl_route_set_table(route, RT_TABLE_MAIN);
    rtnl_route_set_dst(route, dst);
    rtnl_route_set_priority(route, r->metric);
    rtnl_route_set_protocol(route, RTPROT_STATIC);
    rtnl_route_set_scope(route, RT_SCOPE_UNIVERSE);
    rtnl_route_set_type(route, r->unreachable ? RTN_UNREACHABLE : RTN_UNICAST);
    nl_addr_put(dst);
    if (!r->unreachable) {
        struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
        if (r->ifindex)
            rtnl_route_nh_set_ifindex(nh, r->ifindex);
        if (r->gateway) {
            struct nl_addr *gw = s_inet(r->gateway, 32);
            rtnl_route_nh_set_gateway(nh, gw);
            nl_addr_put(gw);
        }
        rtnl_route_add_nexthop(route, nh); // the route owns it now
    }
    return route;
}

static void s_route_text(const links_route_t *r, char *buf, size_t size)
{
    char d[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN];
    uint32_t be = htonl(r->dst);
    inet_ntop(AF_INET, &be, d, sizeof d);
    be = htonl(r->gateway);
    inet_ntop(AF_INET, &be, g, sizeof g);
    if (r->unreachable)
        snprintf(buf, size, "route unreachable %s/%d metric %u", d, r->prefix, r->metric);
    else
        snprintf(buf, size, "route %s/%d via %s ifindex %d metric %u", d, r->prefix, g, r->ifindex,
                 r->metric);
}

int links_route_ensure(struct nl_sock *sk, const links_route_t *r, vmlet_err_t *err)
{
    struct rtnl_route *route = s_route(r);
    int rc = rtnl_route_add(sk, route, NLM_F_REPLACE);
    rtnl_route_put(route);
    if (rc < 0) {
        char t[128];
        s_route_text(r, t, sizeof t);
        return vmlet_err_set(err, "%s: %s", t, nl_geterror(rc));
    }
    return 0;
}

int links_route_delete(struct nl_sock *sk, const links_route_t *r, vmlet_err_t *err)
{
    struct rtnl_route *route = s_route(r);
    int rc = rtnl_route_delete(sk, route, 0);
    rtnl_route_put(route);
    if (rc < 0 && rc != -NLE_OBJ_NOTFOUND && rc != -NLE_NODEV) {
        char t[128];
        s_route_text(r, t, sizeof t);
        return vmlet_err_set(err, "deleting %s: %s", t, nl_geterror(rc));
    }
    return 0;
}

int links_foreach(struct nl_sock *sk, links_each_fn fn, void *arg, vmlet_err_t *err)
{
    struct nl_cache *cache = NULL;
    int rc = rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache);
    if (rc < 0)
        return s_nlerr(err, rc, "listing links%s", "");
    for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
        struct rtnl_link *l = (struct rtnl_link *)o;
        links_info_t info;
        s_info(l, &info);
        fn(rtnl_link_get_name(l), &info, arg);
    }
    nl_cache_free(cache);
    return 0;
}

int links_tap_create(const char *name, vmlet_err_t *err)
{
    if (strlen(name) >= IFNAMSIZ)
        return vmlet_err_set(err, "tap %s: name longer than %d characters", name, IFNAMSIZ - 1);
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return vmlet_err_errno(err, errno, "tap %s: opening /dev/net/tun", name);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    memcpy(ifr.ifr_name, name, strlen(name));
    const char *step = "TUNSETIFF";
    int rc = ioctl(fd, TUNSETIFF, &ifr);
    if (rc == 0) {
        step = "TUNSETOWNER";
        rc = ioctl(fd, TUNSETOWNER, 0UL);
    }
    if (rc == 0) {
        step = "TUNSETPERSIST";
        rc = ioctl(fd, TUNSETPERSIST, 1UL);
    }
    int e = errno;
    close(fd); // a persistent tap outlives the descriptor; a failed one goes with it
    if (rc < 0)
        return vmlet_err_errno(err, e, "tap %s: %s", name, step);
    return 0;
}
