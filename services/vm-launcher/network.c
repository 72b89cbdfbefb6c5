// The pod network: settings, setup and teardown (the per-pod half is in
// network_pods.c).
#include "network_internal.h"

#include "netns.h"

#include "vmlet/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void net_settings_defaults(net_settings_t *s)
{
    memset(s, 0, sizeof *s);
    s->netns = NET_DEFAULT_NETNS;
    s->bridge = NET_DEFAULT_BRIDGE;
    s->pod_cidr = NET_DEFAULT_POD_CIDR;
    s->gateway = "";
    s->mtu = NET_DEFAULT_MTU;
    s->host_veth = NET_DEFAULT_HOST_VETH;
    s->link_cidr = NET_DEFAULT_LINK_CIDR;
    s->nat = true;
}

// --- naming -------------------------------------------------------------------

void net_tap_name(const char *pod_uid, char buf[IFNAMSIZ])
{
    uint64_t h = UINT64_C(0xcbf29ce484222325); // FNV-1a
    for (const unsigned char *p = (const unsigned char *)pod_uid; *p; p++) {
        h ^= *p;
        h *= UINT64_C(0x100000001b3);
    }
    snprintf(buf, IFNAMSIZ, "%s%012" PRIx64, NET_TAP_PREFIX, (uint64_t)(h & 0xffffffffffffull));
}

void net_mac_for(uint32_t addr, uint8_t mac[6])
{
    mac[0] = 0x02; // locally administered, unicast
    mac[1] = 0x76; // 'v'
    mac[2] = (uint8_t)(addr >> 24);
    mac[3] = (uint8_t)(addr >> 16);
    mac[4] = (uint8_t)(addr >> 8);
    mac[5] = (uint8_t)addr;
}

bool net_valid_ifname(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= IFNAMSIZ || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

// --- construction -------------------------------------------------------------

netfilter_where_t net_where_pods(const net_t *self)
{
    return (netfilter_where_t){self->ns_fd, self->home_fd, self->netns ? self->netns : "host"};
}

static netfilter_where_t s_where_home(const net_t *self)
{
    return (netfilter_where_t){-1, self->home_fd, "host"};
}

static int s_check_settings(const net_settings_t *s, vmlet_err_t *err)
{
    bool ns = s->netns && *s->netns;
    bool path = ns && netns_is_path(s->netns);
    if (path && strlen(s->netns) >= sizeof ((net_t *)0)->netns_path)
        return vmlet_err_set(err, "network namespace path \"%s\" is too long", s->netns);
    if (ns && !path &&
        (strlen(s->netns) > 64 || strchr(s->netns, '/') || !strcmp(s->netns, ".") ||
         !strcmp(s->netns, "..")))
        return vmlet_err_set(err,
                             "network namespace \"%s\": use a plain name of at most 64 "
                             "characters, an absolute path to an existing one, or \"\" for "
                             "none",
                             s->netns);
    if (!net_valid_ifname(s->bridge))
        return vmlet_err_set(err, "bridge name \"%s\": use 1-15 characters of [A-Za-z0-9._-]",
                             s->bridge ? s->bridge : "");
    if (!strncmp(s->bridge, NET_TAP_PREFIX, strlen(NET_TAP_PREFIX)))
        return vmlet_err_set(err,
                             "bridge name \"%s\" must not start with \"%s\" (the taps' "
                             "prefix)",
                             s->bridge, NET_TAP_PREFIX);
    if (ns && !net_valid_ifname(s->host_veth))
        return vmlet_err_set(err,
                             "host veth name \"%s\": use 1-15 characters of "
                             "[A-Za-z0-9._-]",
                             s->host_veth ? s->host_veth : "");
    if (s->mtu && (s->mtu < 576 || s->mtu > 65535))
        return vmlet_err_set(err, "MTU %u: use 576 to 65535", s->mtu);
    if (!ipam_valid_name(s->owner))
        return vmlet_err_set(err,
                             "owner (launcher id) \"%s\": use 1-128 characters of "
                             "[A-Za-z0-9._-]",
                             s->owner ? s->owner : "");
    return 0;
}

int net_open_ns(net_t *self, bool create, vmlet_err_t *err)
{
    if (self->sk_ns)
        return 1;
    if (!self->netns) {
        self->sk_ns = self->sk_home;
        return 1;
    }
    if (create) {
        bool created;
        self->ns_fd = netns_ensure(self->netns, self->home_fd, &created, err);
        if (self->ns_fd < 0)
            return -1;
        if (created)
            vmlet_log_info(self->log, VMLET_KV({"netns", self->netns}),
                           "created network namespace");
    } else {
        vmlet_err_t e = {0};
        self->ns_fd = netns_open(self->netns, &e);
        if (self->ns_fd < 0) {
            if (e.code == ENOENT)
                return 0;
            *err = e;
            return -1;
        }
    }
    if (netns_enter(self->ns_fd, self->netns, err) < 0)
        return -1;
    self->sk_ns = links_open(err);
    netns_return(self->home_fd);
    return self->sk_ns ? 1 : -1;
}

net_t *net_new(const net_settings_t *s, vmlet_store_t *store, vmlet_log_t *log, vmlet_err_t *err)
{
    if (s_check_settings(s, err) < 0)
        return NULL;
    net_t *self = vmlet_xcalloc(1, sizeof *self);
    self->home_fd = self->ns_fd = -1;
    bool ns = s->netns && *s->netns;
    self->netns = ns ? vmlet_xstrdup(s->netns) : NULL;
    self->bridge = vmlet_xstrdup(s->bridge);
    self->host_veth = ns ? vmlet_xstrdup(s->host_veth) : NULL;
    self->owner = vmlet_xstrdup(s->owner);
    self->mtu = s->mtu ? s->mtu : NET_DEFAULT_MTU;
    self->nat = s->nat;
    self->log = log;
    if (ns && netns_is_path(s->netns))
        snprintf(self->netns_path, sizeof self->netns_path, "%s", s->netns);
    else if (ns)
        snprintf(self->netns_path, sizeof self->netns_path, "%s/%s", NETNS_RUN_DIR, s->netns);
    netfilter_table_name("vmlet_", self->bridge, self->filter_table, sizeof self->filter_table);
    netfilter_table_name("vmlet_nat_", ns ? self->host_veth : self->bridge, self->nat_table,
                         sizeof self->nat_table);

    if (ipam_cidr_parse(s->pod_cidr, &self->cidr, err) < 0 ||
        ipam_cidr_set_gateway(&self->cidr, s->gateway, err) < 0) {
        vmlet_err_wrap(err, "pod CIDR");
        goto fail;
    }
    ipam_cidr_format(&self->cidr, self->cidr_text);
    if (ns) {
        if (ipam_cidr_parse(s->link_cidr, &self->link, err) < 0) {
            vmlet_err_wrap(err, "veth link CIDR");
            goto fail;
        }
        if (ipam_contains(&self->cidr, self->link.network) ||
            ipam_contains(&self->link, self->cidr.network)) {
            vmlet_err_set(err, "the veth link CIDR %s overlaps the pod CIDR %s", s->link_cidr,
                          self->cidr_text);
            goto fail;
        }
    }
    self->ipam = ipam_new(store, &self->cidr, s->owner, err);
    if (!self->ipam)
        goto fail;
    self->home_fd = netns_open_current(err);
    if (self->home_fd < 0)
        goto fail;
    self->sk_home = links_open(err);
    if (!self->sk_home || net_open_ns(self, false, err) < 0)
        goto fail;
    return self;
fail:
    net_destroy(&self);
    return NULL;
}

void net_destroy(net_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    net_t *self = *self_p;
    if (self->sk_ns != self->sk_home)
        links_close(&self->sk_ns);
    links_close(&self->sk_home);
    if (self->ns_fd >= 0)
        close(self->ns_fd);
    if (self->home_fd >= 0)
        close(self->home_fd);
    ipam_destroy(&self->ipam);
    free(self->netns);
    free(self->bridge);
    free(self->host_veth);
    free(self->owner);
    free(self);
    *self_p = NULL;
}

const char *net_netns_path(const net_t *self)
{
    return self->netns_path;
}

int net_require_setup(net_t *self, vmlet_err_t *err)
{
    int rc = net_open_ns(self, false, err);
    if (rc == 0)
        return vmlet_err_set(err, "pod network: namespace %s does not exist (net_setup first)",
                             self->netns);
    return rc < 0 ? -1 : 0;
}

// --- setup ----------------------------------------------------------------------

static links_route_t s_fallback_route(const net_t *self)
{
    return (links_route_t){.dst = self->cidr.network,
                           .prefix = self->cidr.prefix,
                           .metric = NET_FALLBACK_METRIC,
                           .unreachable = true};
}

static links_route_t s_pod_route(const net_t *self, int host_veth_index)
{
    return (links_route_t){.dst = self->cidr.network,
                           .prefix = self->cidr.prefix,
                           .gateway = ipam_first(&self->link) + 1,
                           .ifindex = host_veth_index,
                           .metric = NET_ROUTE_METRIC};
}

// Runs a sysctl write inside vmlet's namespace (or here without one).
static int s_sysctl_pods(net_t *self, const char *key, const char *value, vmlet_err_t *err)
{
    if (self->ns_fd >= 0 && netns_enter(self->ns_fd, self->netns, err) < 0)
        return -1;
    int rc = netns_sysctl_set(key, value, err);
    if (self->ns_fd >= 0)
        netns_return(self->home_fd);
    return rc;
}

int net_ifindex(struct nl_sock *sk, const char *name, vmlet_err_t *err)
{
    links_info_t info;
    int found = links_get(sk, name, &info, err);
    if (found < 0)
        return -1;
    if (!found)
        return vmlet_err_set(err, "link %s is missing", name);
    return info.ifindex;
}

// The veth pair and its addresses and routes.
static int s_setup_veth(net_t *self, vmlet_err_t *err)
{
    links_info_t info;
    int up_found = links_get(self->sk_ns, NET_UPLINK, &info, err);
    if (up_found < 0)
        return -1;
    if (!up_found) {
        // A host end without its peer here belongs to an older namespace
        // of the same name: replace the pair.
        if (links_delete(self->sk_home, self->host_veth, err) < 0)
            return -1;
    }
    bool created;
    if (links_veth_ensure(self->sk_home, self->host_veth, NET_UPLINK, self->ns_fd, self->mtu,
                          &created, err) < 0)
        return -1;
    if (created)
        vmlet_log_info(self->log, VMLET_KV({"veth", self->host_veth}, {"peer", NET_UPLINK}),
                       "created veth pair");
    uint32_t host_addr = ipam_first(&self->link), ns_addr = host_addr + 1;
    int host_index = net_ifindex(self->sk_home, self->host_veth, err);
    int up_index = host_index < 0 ? -1 : net_ifindex(self->sk_ns, NET_UPLINK, err);
    if (up_index < 0)
        return -1;
    links_change_t change = {.mtu = self->mtu, .up = true};
    if (links_addr_ensure(self->sk_home, host_index, host_addr, self->link.prefix, err) < 0 ||
        links_set(self->sk_home, self->host_veth, &change, err) < 0 ||
        links_addr_ensure(self->sk_ns, up_index, ns_addr, self->link.prefix, err) < 0 ||
        links_set(self->sk_ns, NET_UPLINK, &change, err) < 0)
        return -1;
    links_route_t dflt = {.gateway = host_addr, .ifindex = up_index, .metric = NET_ROUTE_METRIC};
    links_route_t pods = s_pod_route(self, host_index);
    if (links_route_ensure(self->sk_ns, &dflt, err) < 0 ||
        links_route_ensure(self->sk_home, &pods, err) < 0)
        return -1;
    return 0;
}

static int s_setup_bridge(net_t *self, vmlet_err_t *err)
{
    uint8_t mac[6];
    net_mac_for(self->cidr.gateway, mac);
    bool created;
    if (links_bridge_ensure(self->sk_ns, self->bridge, self->mtu, mac, &created, err) < 0)
        return -1;
    if (created)
        vmlet_log_info(self->log, VMLET_KV({"bridge", self->bridge}), "created bridge");
    int index = net_ifindex(self->sk_ns, self->bridge, err);
    if (index < 0 ||
        links_addr_ensure(self->sk_ns, index, self->cidr.gateway, self->cidr.prefix, err) < 0)
        return -1;
    return 0;
}

static int s_setup_nat(net_t *self, vmlet_err_t *err)
{
    netfilter_where_t home = s_where_home(self);
    if (!self->nat)
        return netfilter_nat_remove(&home, self->nat_table, err);
    const char *toward = self->netns ? self->host_veth : self->bridge;
    if (netfilter_nat_setup(&home, self->nat_table, self->cidr_text, toward, err) < 0)
        return -1;
    char v[16];
    if (netns_sysctl_get("net/ipv4/ip_forward", v, sizeof v, err) < 0)
        return -1;
    if (strcmp(v, "1")) {
        if (netns_sysctl_set("net/ipv4/ip_forward", "1", err) < 0)
            return vmlet_err_wrap(err, "NAT needs IPv4 forwarding");
        vmlet_log_info(self->log, NULL, "turned on IPv4 forwarding for NAT");
    }
    return 0;
}

int net_setup(net_t *self, vmlet_err_t *err)
{
    // The fallback first: from here on nothing for the pod CIDR can take
    // the default route off the machine.
    links_route_t fallback = s_fallback_route(self);
    if (links_route_ensure(self->sk_home, &fallback, err) < 0)
        return vmlet_err_wrap(err, "pod network %s", self->cidr_text);
    if (net_open_ns(self, true, err) < 0)
        return vmlet_err_wrap(err, "pod network %s", self->cidr_text);
    links_change_t up = {.up = true};
    if (self->netns &&
        (links_set(self->sk_ns, "lo", &up, err) < 0 ||
         s_sysctl_pods(self, "net/ipv4/ip_forward", "1", err) < 0 || s_setup_veth(self, err) < 0))
        return vmlet_err_wrap(err, "pod network %s: namespace %s", self->cidr_text, self->netns);
    netfilter_where_t pods = net_where_pods(self);
    if (s_setup_bridge(self, err) < 0 ||
        netfilter_filter_setup(&pods, self->filter_table, err) < 0 || s_setup_nat(self, err) < 0)
        return vmlet_err_wrap(err, "pod network %s", self->cidr_text);
    char gw[INET_ADDRSTRLEN];
    ipam_addr_format(self->cidr.gateway, gw);
    vmlet_log_info(self->log,
                   VMLET_KV({"cidr", self->cidr_text}, {"gateway", gw}, {"bridge", self->bridge},
                            {"netns", self->netns ? self->netns : ""},
                            {"nat", self->nat ? "on" : "off"}),
                   "pod network ready");
    return 0;
}

// --- teardown -----------------------------------------------------------------------

int net_teardown(net_t *self, vmlet_err_t *err)
{
    // Keeps going after a failure so as much as possible is removed; the
    // first error is the one reported.
    vmlet_err_t first = {0}, e = {0};
    int rc = 0;
#define STEP(call)                                                                                 \
    do {                                                                                           \
        vmlet_err_clear(&e);                                                                       \
        if ((call) < 0 && rc++ == 0)                                                               \
            first = e;                                                                             \
    } while (0)
    char **uids = NULL;
    size_t n = 0;
    STEP(net_list(self, &uids, &n, &e));
    int ready = net_open_ns(self, false, &e);
    for (size_t i = 0; ready > 0 && i < n; i++)
        STEP(net_detach(self, uids[i], &e));
    for (size_t i = 0; ready <= 0 && i < n; i++)
        STEP(ipam_release(self->ipam, uids[i], &e));
    net_list_free(uids, n);
    netfilter_where_t home = s_where_home(self);
    STEP(netfilter_nat_remove(&home, self->nat_table, &e));
    if (self->netns && netns_is_path(self->netns) && self->sk_ns) {
        // Someone else's namespace outlives us: take our tables and bridge
        // out of it (the veth's end there goes with the end here).
        netfilter_where_t pods = net_where_pods(self);
        STEP(netfilter_filter_remove(&pods, self->filter_table, &e));
        STEP(links_delete(self->sk_ns, self->bridge, &e));
    }
    if (self->netns) {
        // A namespace of our own takes its tables and bridge with it; the
        // veth end here is removed now, not when the kernel gets round to it.
        links_info_t info;
        int found = links_get(self->sk_home, self->host_veth, &info, &e);
        if (found > 0) {
            links_route_t pods = s_pod_route(self, info.ifindex);
            STEP(links_route_delete(self->sk_home, &pods, &e));
        }
        STEP(links_delete(self->sk_home, self->host_veth, &e));
        if (self->sk_ns)
            links_close(&self->sk_ns);
        if (self->ns_fd >= 0) {
            close(self->ns_fd);
            self->ns_fd = -1;
        }
        STEP(netns_delete(self->netns, &e));
    } else {
        netfilter_where_t pods = net_where_pods(self);
        STEP(netfilter_filter_remove(&pods, self->filter_table, &e));
        STEP(links_delete(self->sk_home, self->bridge, &e));
    }
    links_route_t fallback = s_fallback_route(self);
    STEP(links_route_delete(self->sk_home, &fallback, &e));
#undef STEP
    if (rc) {
        *err = first;
        return vmlet_err_wrap(err, "tearing down pod network %s", self->cidr_text);
    }
    vmlet_log_info(self->log, VMLET_KV({"cidr", self->cidr_text}), "pod network removed");
    return 0;
}

int net_filter_drops(net_t *self, netfilter_drops_t *drops, vmlet_err_t *err)
{
    if (net_require_setup(self, err) < 0)
        return -1;
    netfilter_where_t pods = net_where_pods(self);
    return netfilter_filter_drops(&pods, self->filter_table, drops, err);
}
