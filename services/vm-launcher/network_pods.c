// The pod network's per-pod half: attach, detach, and listing what this
// launcher has on it.
#include "network_internal.h"

#include "netns.h"

#include "vmlet/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

// Parses a tap alias "vmlet pod=<uid> owner=<owner>". false if not ours.
static bool s_parse_alias(const char *alias, char *uid, size_t uid_size, char *owner,
                          size_t owner_size)
{
    static const char pfx[] = "vmlet pod=";
    if (strncmp(alias, pfx, sizeof pfx - 1))
        return false;
    const char *u = alias + sizeof pfx - 1;
    const char *sp = strstr(u, " owner=");
    if (!sp || (size_t)(sp - u) >= uid_size || strlen(sp + 7) >= owner_size)
        return false;
    memcpy(uid, u, (size_t)(sp - u));
    uid[sp - u] = '\0';
    snprintf(owner, owner_size, "%s", sp + 7);
    return true;
}

static void s_fill_lease(const net_t *self, uint32_t ip, const char *tap, net_lease_t *out)
{
    memset(out, 0, sizeof *out);
    ipam_addr_format(ip, out->ip);
    out->prefix_len = self->cidr.prefix;
    ipam_addr_format(self->cidr.gateway, out->gateway);
    uint8_t mac[6];
    net_mac_for(ip, mac);
    links_mac_format(mac, out->mac);
    snprintf(out->tap, sizeof out->tap, "%s", tap);
    out->mtu = self->mtu;
    snprintf(out->netns_path, sizeof out->netns_path, "%s", self->netns_path);
}

// The tap exists afterwards; *created says whether this call made it.
static int s_ensure_tap(net_t *self, const char *uid, const char *tap, bool *created,
                        vmlet_err_t *err)
{
    *created = false;
    links_info_t info;
    int found = links_get(self->sk_ns, tap, &info, err);
    if (found < 0)
        return -1;
    if (found) {
        char other[160], owner[160];
        if (s_parse_alias(info.alias, other, sizeof other, owner, sizeof owner) &&
            strcmp(other, uid)) {
            vmlet_err_set(err, "tap %s belongs to pod %s, not %s (hash collision)", tap, other,
                          uid);
            err->code = EEXIST;
            return -1;
        }
        return 0;
    }
    if (self->ns_fd >= 0 && netns_enter(self->ns_fd, self->netns, err) < 0)
        return -1;
    int rc = links_tap_create(tap, err);
    if (self->ns_fd >= 0)
        netns_return(self->home_fd);
    *created = rc == 0;
    return rc;
}

int net_attach(net_t *self, const char *pod_uid, net_lease_t *out, vmlet_err_t *err)
{
    if (net_require_setup(self, err) < 0)
        return -1;
    uint32_t ip = 0;
    bool fresh = false;
    if (ipam_acquire(self->ipam, pod_uid, &ip, &fresh, err) < 0)
        return -1;
    char tap[IFNAMSIZ];
    net_tap_name(pod_uid, tap);
    s_fill_lease(self, ip, tap, out);
    bool created;
    if (s_ensure_tap(self, pod_uid, tap, &created, err) < 0)
        return vmlet_err_wrap(err, "attaching pod %s", pod_uid);
    // Filters before the tap joins the bridge: a port is never open unfiltered.
    netfilter_where_t pods = net_where_pods(self);
    char alias[300];
    snprintf(alias, sizeof alias, "vmlet pod=%s owner=%s", pod_uid, self->owner);
    int br = -1;
    if (netfilter_port_allow(&pods, self->filter_table, tap, out->mac, out->ip, err) == 0 &&
        (br = net_ifindex(self->sk_ns, self->bridge, err)) > 0) {
        links_change_t change = {.mtu = self->mtu, .master = br, .alias = alias, .up = true};
        if (links_set(self->sk_ns, tap, &change, err) == 0) {
            // Re-attaching (adoption, reconciling) is routine: debug only.
            vmlet_log_write(self->log, fresh || created ? VMLET_LOG_INFO : VMLET_LOG_DEBUG,
                            VMLET_KV({"pod", pod_uid}, {"ip", out->ip}, {"tap", tap},
                                     {"mac", out->mac}, {"new_ip", fresh ? "yes" : "no"},
                                     {"new_tap", created ? "yes" : "no"}),
                            "pod attached");
            return 0;
        }
    }
    if (created) {
        vmlet_err_t e = {0};
        links_delete(self->sk_ns, tap, &e);
    }
    return vmlet_err_wrap(err, "attaching pod %s", pod_uid);
}

int net_detach(net_t *self, const char *pod_uid, vmlet_err_t *err)
{
    if (!ipam_valid_name(pod_uid))
        return vmlet_err_set(err, "detaching: pod uid \"%s\" is not valid", pod_uid);
    if (net_require_setup(self, err) < 0)
        return -1;
    uint32_t ip = 0;
    bool ours = false;
    int leased = ipam_lookup(self->ipam, pod_uid, &ip, &ours, err);
    if (leased < 0)
        return vmlet_err_wrap(err, "detaching pod %s", pod_uid);
    char tap[IFNAMSIZ];
    net_tap_name(pod_uid, tap);
    links_info_t info;
    int found = links_get(self->sk_ns, tap, &info, err);
    if (found < 0)
        return vmlet_err_wrap(err, "detaching pod %s", pod_uid);
    if (found) {
        char uid[160], owner[160];
        bool named = s_parse_alias(info.alias, uid, sizeof uid, owner, sizeof owner);
        // Ours: named for this pod and owner, or unnamed (an attach that
        // stopped before naming it) while the lease is not someone else's.
        bool mine =
            named ? !strcmp(uid, pod_uid) && !strcmp(owner, self->owner) : (!leased || ours);
        if (!mine) {
            vmlet_log_warn(self->log,
                           VMLET_KV({"pod", pod_uid}, {"tap", tap}, {"alias", info.alias}),
                           "tap left alone: it belongs to another pod or launcher");
        } else if (links_delete(self->sk_ns, tap, err) < 0) {
            return vmlet_err_wrap(err, "detaching pod %s", pod_uid);
        }
    }
    if (leased && !ours) {
        vmlet_log_warn(self->log, VMLET_KV({"pod", pod_uid}),
                       "address left alone: another launcher holds the lease");
        return 0;
    }
    if (leased) {
        net_lease_t l;
        s_fill_lease(self, ip, tap, &l);
        netfilter_where_t pods = net_where_pods(self);
        if (netfilter_port_revoke(&pods, self->filter_table, tap, l.mac, l.ip, err) < 0)
            return vmlet_err_wrap(err, "detaching pod %s", pod_uid);
    }
    int rc = ipam_release(self->ipam, pod_uid, err);
    if (rc < 0)
        return vmlet_err_wrap(err, "detaching pod %s", pod_uid);
    if (found || rc == 1) {
        char a[INET_ADDRSTRLEN] = "";
        if (leased)
            ipam_addr_format(ip, a);
        vmlet_log_info(self->log, VMLET_KV({"pod", pod_uid}, {"ip", a}, {"tap", tap}),
                       "pod detached");
    }
    return 0;
}

// --- listing ------------------------------------------------------------------------

typedef struct {
    const net_t *net;
    char **uids;
    size_t n, cap;
} s_list_t;

static void s_list_add(s_list_t *l, const char *uid)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->uids[i], uid))
            return;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->uids = vmlet_xrealloc(l->uids, l->cap * sizeof *l->uids);
    }
    l->uids[l->n++] = vmlet_xstrdup(uid);
}

static void s_list_link(const char *name, const links_info_t *info, void *arg)
{
    s_list_t *l = arg;
    char uid[160], owner[160];
    if (!strncmp(name, NET_TAP_PREFIX, strlen(NET_TAP_PREFIX)) &&
        s_parse_alias(info->alias, uid, sizeof uid, owner, sizeof owner) &&
        !strcmp(owner, l->net->owner) && ipam_valid_name(uid))
        s_list_add(l, uid);
}

int net_list(net_t *self, char ***uids, size_t *n, vmlet_err_t *err)
{
    *uids = NULL;
    *n = 0;
    s_list_t l = {.net = self};
    int ready = net_open_ns(self, false, err);
    if (ready < 0 || (ready && links_foreach(self->sk_ns, s_list_link, &l, err) < 0)) {
        net_list_free(l.uids, l.n);
        return vmlet_err_wrap(err, "listing pods on the network");
    }
    char **owned;
    size_t n_owned;
    if (ipam_list_owned(self->ipam, &owned, &n_owned, err) < 0) {
        net_list_free(l.uids, l.n);
        return -1;
    }
    for (size_t i = 0; i < n_owned; i++)
        s_list_add(&l, owned[i]);
    net_list_free(owned, n_owned);
    *uids = l.uids;
    *n = l.n;
    return 0;
}

void net_list_free(char **uids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(uids[i]);
    free(uids);
}
