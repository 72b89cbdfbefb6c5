// nftables rules for anti-spoofing and NAT, through libnftables.
#include "netfilter.h"

#include "netns.h"

#include <nftables/libnftables.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Runs cmds (one transaction) where w says. *out (may be NULL) receives a
// malloc'd copy of the output.
static int s_run(const netfilter_where_t *w, const char *cmds, char **out, vmlet_err_t *err)
{
    // libnftables opens its netlink socket in nft_ctx_new; the thread stays
    // inside for the whole run so that does not depend on when it opens.
    if (w->ns_fd >= 0 && netns_enter(w->ns_fd, w->ns_name, err) < 0)
        return -1;
    int rc = -1;
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx) {
        vmlet_err_set(err, "nftables: cannot create a context");
    } else if (nft_ctx_buffer_output(ctx) || nft_ctx_buffer_error(ctx)) {
        vmlet_err_set(err, "nftables: cannot buffer output");
    } else if (nft_run_cmd_from_buffer(ctx, cmds) != 0) {
        const char *e = nft_ctx_get_error_buffer(ctx);
        char msg[600];
        snprintf(msg, sizeof msg, "%s", e && *e ? e : "failed");
        // One line is enough for a log; the full text goes on to the first newline.
        char *nl = strchr(msg, '\n');
        if (nl)
            *nl = '\0';
        vmlet_err_set(err, "nftables: %s", msg);
    } else {
        if (out) {
            const char *o = nft_ctx_get_output_buffer(ctx);
            *out = strdup(o ? o : "");
        }
        rc = 0;
    }
    if (ctx)
        nft_ctx_free(ctx);
    if (w->ns_fd >= 0)
        netns_return(w->home_fd);
    return rc;
}

void netfilter_table_name(const char *prefix, const char *name, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s%s", prefix, name);
    for (int i = 0; i < n && (size_t)i < size - 1; i++) {
        char c = buf[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            buf[i] = '_';
    }
}

static const char *const s_counters[] = {"drop_in_ip", "drop_in_arp", "drop_in_other",
                                         "drop_out_ip", "drop_out_other"};

int netfilter_filter_setup(const netfilter_where_t *w, const char *table, vmlet_err_t *err)
{
    char cmds[4096];
    size_t n = 0;
#define ADD(...) n += (size_t)snprintf(cmds + n, sizeof cmds - n, __VA_ARGS__)
    ADD("add table bridge %s\n", table);
    ADD("add set bridge %s ip_ok { type ifname . ether_addr . ipv4_addr; }\n", table);
    ADD("add set bridge %s arp_in { type ifname . ether_addr . ether_addr . ipv4_addr; }\n", table);
    ADD("add set bridge %s arp_out { type ifname . ipv4_addr; }\n", table);
    for (size_t i = 0; i < sizeof s_counters / sizeof *s_counters; i++)
        ADD("add counter bridge %s %s\n", table, s_counters[i]);
    ADD("add chain bridge %s prerouting { type filter hook prerouting priority -300; "
        "policy accept; }\n",
        table);
    ADD("add chain bridge %s postrouting { type filter hook postrouting priority 300; "
        "policy accept; }\n",
        table);
    ADD("flush chain bridge %s prerouting\n", table);
    ADD("flush chain bridge %s postrouting\n", table);
    const char *arp = "ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4";
    ADD("add rule bridge %s prerouting iifname != \"%s*\" accept\n", table, NET_TAP_PREFIX);
    ADD("add rule bridge %s prerouting ether type ip iifname . ether saddr . ip saddr @ip_ok "
        "accept\n",
        table);
    ADD("add rule bridge %s prerouting %s iifname . ether saddr . arp saddr ether . "
        "arp saddr ip @arp_in accept\n",
        table, arp);
    ADD("add rule bridge %s prerouting ether type ip counter name drop_in_ip drop\n", table);
    ADD("add rule bridge %s prerouting ether type arp counter name drop_in_arp drop\n", table);
    ADD("add rule bridge %s prerouting counter name drop_in_other drop\n", table);
    ADD("add rule bridge %s postrouting oifname != \"%s*\" accept\n", table, NET_TAP_PREFIX);
    ADD("add rule bridge %s postrouting ether type ip oifname . ether daddr . ip daddr @ip_ok "
        "accept\n",
        table);
    ADD("add rule bridge %s postrouting %s oifname . arp daddr ip @arp_out accept\n", table, arp);
    ADD("add rule bridge %s postrouting ether type ip counter name drop_out_ip drop\n", table);
    ADD("add rule bridge %s postrouting counter name drop_out_other drop\n", table);
#undef ADD
    if (n >= sizeof cmds)
        return vmlet_err_set(err, "nftables: filter rules too long for table %s", table);
    if (s_run(w, cmds, NULL, err) < 0)
        return vmlet_err_wrap(err, "anti-spoof table bridge %s", table);
    return 0;
}

int netfilter_filter_remove(const netfilter_where_t *w, const char *table, vmlet_err_t *err)
{
    // "add" first makes the delete succeed when the table is already gone.
    char cmds[256];
    snprintf(cmds, sizeof cmds, "add table bridge %s\ndelete table bridge %s\n", table, table);
    if (s_run(w, cmds, NULL, err) < 0)
        return vmlet_err_wrap(err, "removing table bridge %s", table);
    return 0;
}

static int s_elements(char *cmds, size_t size, const char *verb, const char *table,
                      const char *port, const char *mac, const char *ip)
{
    return snprintf(cmds, size,
                    "%s element bridge %s ip_ok { \"%s\" . %s . %s }\n"
                    "%s element bridge %s arp_in { \"%s\" . %s . %s . %s, "
                    "\"%s\" . %s . %s . 0.0.0.0 }\n"
                    "%s element bridge %s arp_out { \"%s\" . %s }\n",
                    verb, table, port, mac, ip, verb, table, port, mac, mac, ip, port, mac, mac,
                    verb, table, port, ip);
}

int netfilter_port_allow(const netfilter_where_t *w, const char *table, const char *port,
                         const char *mac, const char *ip, vmlet_err_t *err)
{
    char cmds[1024];
    s_elements(cmds, sizeof cmds, "add", table, port, mac, ip);
    if (s_run(w, cmds, NULL, err) < 0)
        return vmlet_err_wrap(err, "allowing %s (%s %s) in table bridge %s", port, mac, ip, table);
    return 0;
}

int netfilter_port_revoke(const netfilter_where_t *w, const char *table, const char *port,
                          const char *mac, const char *ip, vmlet_err_t *err)
{
    // add-then-delete in one transaction: idempotent without "destroy"
    // (nftables 1.0.8+).
    char cmds[2048];
    int n = s_elements(cmds, sizeof cmds, "add", table, port, mac, ip);
    s_elements(cmds + n, sizeof cmds - (size_t)n, "delete", table, port, mac, ip);
    if (s_run(w, cmds, NULL, err) < 0)
        return vmlet_err_wrap(err, "revoking %s (%s %s) in table bridge %s", port, mac, ip, table);
    return 0;
}

int netfilter_nat_setup(const netfilter_where_t *w, const char *table, const char *cidr,
                        const char *toward_pods, vmlet_err_t *err)
{
    char cmds[1024];
    snprintf(cmds, sizeof cmds,
             "add table ip %s\n"
             "add chain ip %s postrouting { type nat hook postrouting priority srcnat; "
             "policy accept; }\n"
             "flush chain ip %s postrouting\n"
             "add rule ip %s postrouting ip saddr %s ip daddr != %s oifname != \"%s\" "
             "masquerade\n",
             table, table, table, table, cidr, cidr, toward_pods);
    if (s_run(w, cmds, NULL, err) < 0)
        return vmlet_err_wrap(err, "NAT table ip %s", table);
    return 0;
}

int netfilter_nat_remove(const netfilter_where_t *w, const char *table, vmlet_err_t *err)
{
    char cmds[256];
    snprintf(cmds, sizeof cmds, "add table ip %s\ndelete table ip %s\n", table, table);
    if (s_run(w, cmds, NULL, err) < 0)
        return vmlet_err_wrap(err, "removing table ip %s", table);
    return 0;
}

// The packets figure of counter `name` in nft's listing, or 0.
static uint64_t s_counter(const char *listing, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "counter %s {", name);
    const char *p = strstr(listing, key);
    if (!p || !(p = strstr(p, "packets ")))
        return 0;
    return strtoull(p + strlen("packets "), NULL, 10);
}

int netfilter_filter_drops(const netfilter_where_t *w, const char *table, netfilter_drops_t *drops,
                           vmlet_err_t *err)
{
    char cmds[128];
    snprintf(cmds, sizeof cmds, "list counters table bridge %s\n", table);
    char *out = NULL;
    if (s_run(w, cmds, &out, err) < 0)
        return vmlet_err_wrap(err, "reading the counters of table bridge %s", table);
    drops->in_ip = s_counter(out, "drop_in_ip");
    drops->in_arp = s_counter(out, "drop_in_arp");
    drops->in_other = s_counter(out, "drop_in_other");
    drops->out_ip = s_counter(out, "drop_out_ip");
    drops->out_other = s_counter(out, "drop_out_other");
    free(out);
    return 0;
}
