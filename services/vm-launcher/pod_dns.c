// The pod's hostname, /etc/hosts and /etc/resolv.conf (see pod_dns.h).
#include "pod_dns.h"

#include "vmlet/xalloc.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAMESERVERS 3       // validation.MaxDNSNameservers (what glibc reads)
#define MAX_SEARCHES 6          // validation.MaxDNSSearchPaths
#define MAX_SEARCH_LINE 256     // validation.MaxDNSSearchListChars
#define CLUSTER_OPTIONS "ndots:5" // the kubelet's defaultDNSOptions

void pod_dns_hostname(const Vmlet__PodSpec *spec, char out[POD_HOSTNAME_MAX + 1])
{
    const char *name = spec->hostname && *spec->hostname ? spec->hostname : spec->pod->name;
    snprintf(out, POD_HOSTNAME_MAX + 1, "%s", name ? name : "");
    // truncatePodHostnameIfNeeded: a cut name does not end in '-' or '.'.
    if (strlen(name ? name : "") > POD_HOSTNAME_MAX)
        for (size_t n = strlen(out); n > 0 && (out[n - 1] == '-' || out[n - 1] == '.'); n--)
            out[n - 1] = '\0';
}

// --- lists of words -------------------------------------------------------------------

typedef struct {
    char **items;
    size_t n;
} list_t;

static void s_push(list_t *l, const char *item, size_t len)
{
    l->items = vmlet_xrealloc(l->items, (l->n + 1) * sizeof *l->items);
    l->items[l->n++] = vmlet_xstrndup(item, len);
}

static void s_clear(list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    *l = (list_t){0};
}

// omitDuplicates: the first of each, in order.
static void s_dedupe(list_t *l)
{
    size_t kept = 0;
    for (size_t i = 0; i < l->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < kept && !seen; j++)
            seen = strcmp(l->items[j], l->items[i]) == 0;
        if (seen)
            free(l->items[i]);
        else
            l->items[kept++] = l->items[i];
    }
    l->n = kept;
}

static void s_truncate(list_t *l, size_t n)
{
    while (l->n > n)
        free(l->items[--l->n]);
}

typedef struct {
    list_t servers, searches, options;
} dns_t;

static void s_dns_clear(dns_t *d)
{
    s_clear(&d->servers);
    s_clear(&d->searches);
    s_clear(&d->options);
}

// parseResolvConf: nameserver lines accumulate (their first word); the
// last search line and the last options line win; comments are skipped.
static void s_parse_host(const char *text, dns_t *d)
{
    for (const char *line = text; line && *line;) {
        size_t len = strcspn(line, "\n");
        char *copy = vmlet_xstrndup(line, len), *save = NULL;
        line += len + (line[len] == '\n');
        char *word = strtok_r(copy, " \t\r", &save);
        if (word && *word != '#') {
            bool server = strcmp(word, "nameserver") == 0;
            list_t *into = strcmp(word, "search") == 0    ? &d->searches
                           : strcmp(word, "options") == 0 ? &d->options
                                                          : NULL;
            if (into)
                s_clear(into);
            for (char *w = strtok_r(NULL, " \t\r", &save); w && (server || into);
                 w = strtok_r(NULL, " \t\r", &save)) {
                s_push(server ? &d->servers : into, w, strlen(w));
                if (server)
                    break;
            }
        }
        free(copy);
    }
}

// mergeDNSOptions: an option of dnsConfig replaces one of the same name.
static void s_merge_option(list_t *options, const char *name, const char *value)
{
    char text[512];
    snprintf(text, sizeof text, "%s%s%s", name, value && *value ? ":" : "",
             value && *value ? value : "");
    size_t name_len = strlen(name);
    for (size_t i = 0; i < options->n; i++) {
        const char *o = options->items[i];
        if (strncmp(o, name, name_len) == 0 && (o[name_len] == ':' || o[name_len] == '\0')) {
            free(options->items[i]);
            options->items[i] = vmlet_xstrdup(text);
            return;
        }
    }
    s_push(options, text, strlen(text));
}

// formDNSSearchFitsLimits: at most 6 domains, then whole domains off the
// end until the line fits 256 characters.
static void s_search_limits(list_t *searches)
{
    s_truncate(searches, MAX_SEARCHES);
    size_t line = 0;
    for (size_t i = 0; i < searches->n; i++)
        line += strlen(searches->items[i]) + (i ? 1 : 0);
    while (searches->n && line > MAX_SEARCH_LINE) {
        line -= strlen(searches->items[searches->n - 1]) + (searches->n > 1 ? 1 : 0);
        s_truncate(searches, searches->n - 1);
    }
}

static void s_cluster_first(const Vmlet__PodSpec *spec, const pod_dns_settings_t *s, dns_t *d)
{
    s_clear(&d->servers);
    char *list = vmlet_xstrdup(s->cluster_dns), *save = NULL;
    for (char *ip = strtok_r(list, ", ", &save); ip; ip = strtok_r(NULL, ", ", &save))
        s_push(&d->servers, ip, strlen(ip));
    free(list);
    const char *domain = s->cluster_domain ? s->cluster_domain : "";
    if (*domain) { // generateSearchesForDNSClusterFirst: the cluster's, then the host's
        list_t searches = {0};
        char text[512];
        snprintf(text, sizeof text, "%s.svc.%s", spec->pod->namespace_, domain);
        s_push(&searches, text, strlen(text));
        snprintf(text, sizeof text, "svc.%s", domain);
        s_push(&searches, text, strlen(text));
        s_push(&searches, domain, strlen(domain));
        for (size_t i = 0; i < d->searches.n; i++)
            s_push(&searches, d->searches.items[i], strlen(d->searches.items[i]));
        s_dedupe(&searches);
        s_clear(&d->searches);
        d->searches = searches;
    }
    s_clear(&d->options);
    s_push(&d->options, CLUSTER_OPTIONS, strlen(CLUSTER_OPTIONS));
}

static char *s_write(const dns_t *d)
{
    size_t cap = 64;
    const list_t *all[] = {&d->searches, &d->servers, &d->options};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < all[k]->n; i++)
            cap += strlen(all[k]->items[i]) + 12;
    char *out = vmlet_xmalloc(cap), *p = out;
    *p = '\0';
    // containerd's order: search, nameserver(s), options.
    for (size_t i = 0; i < d->searches.n; i++)
        p += sprintf(p, "%s%s%s", i ? " " : "search ", d->searches.items[i],
                     i + 1 == d->searches.n ? "\n" : "");
    for (size_t i = 0; i < d->servers.n; i++)
        p += sprintf(p, "nameserver %s\n", d->servers.items[i]);
    for (size_t i = 0; i < d->options.n; i++)
        p += sprintf(p, "%s%s%s", i ? " " : "options ", d->options.items[i],
                     i + 1 == d->options.n ? "\n" : "");
    return out;
}

char *pod_dns_resolv_conf(const Vmlet__PodSpec *spec, const pod_dns_settings_t *s)
{
    const char *policy = spec->dns_policy && *spec->dns_policy ? spec->dns_policy : "ClusterFirst";
    dns_t d = {0};
    bool none = strcmp(policy, "None") == 0;
    bool cluster = strcmp(policy, "ClusterFirst") == 0 ||
                   strcmp(policy, "ClusterFirstWithHostNet") == 0;
    if (!none) {
        if (s->host_resolv)
            s_parse_host(s->host_resolv, &d);
        if (cluster && s->cluster_dns && *s->cluster_dns) {
            s_cluster_first(spec, s, &d);
        } else if (!s->host_resolv) {
            // Default (or ClusterFirst without cluster DNS, which the
            // kubelet turns into Default) with no resolv.conf to copy.
            s_push(&d.servers, "127.0.0.1", 9);
            s_push(&d.searches, ".", 1);
        }
    }
    const Vmlet__DnsConfig *cfg = spec->dns_config;
    if (cfg) { // appendDNSConfig
        for (size_t i = 0; i < cfg->n_nameservers; i++)
            s_push(&d.servers, cfg->nameservers[i], strlen(cfg->nameservers[i]));
        s_dedupe(&d.servers);
        for (size_t i = 0; i < cfg->n_searches; i++)
            s_push(&d.searches, cfg->searches[i], strlen(cfg->searches[i]));
        s_dedupe(&d.searches);
        for (size_t i = 0; i < cfg->n_options; i++)
            if (cfg->options[i]->name && *cfg->options[i]->name)
                s_merge_option(&d.options, cfg->options[i]->name, cfg->options[i]->value);
    }
    s_truncate(&d.servers, MAX_NAMESERVERS);
    s_search_limits(&d.searches);
    char *out = s_write(&d);
    s_dns_clear(&d);
    return out;
}

// --- /etc/hosts ------------------------------------------------------------------------

char *pod_dns_hosts(const Vmlet__PodSpec *spec, const char *pod_ip, const char *hostname,
                    const char *cluster_domain)
{
    const char *sub = spec->subdomain && *spec->subdomain ? spec->subdomain : NULL;
    size_t cap = 512 + strlen(pod_ip) + 2 * strlen(hostname);
    if (sub)
        cap += strlen(sub) + strlen(spec->pod->namespace_) + strlen(cluster_domain) + 16;
    for (size_t i = 0; i < spec->n_host_aliases; i++) {
        cap += strlen(spec->host_aliases[i]->ip ? spec->host_aliases[i]->ip : "") + 2;
        for (size_t h = 0; h < spec->host_aliases[i]->n_hostnames; h++)
            cap += strlen(spec->host_aliases[i]->hostnames[h]) + 1;
    }
    char *out = vmlet_xmalloc(cap), *p = out;
    p += sprintf(p, "# Kubernetes-managed hosts file.\n"
                    "127.0.0.1\tlocalhost\n"
                    "::1\tlocalhost ip6-localhost ip6-loopback\n"
                    "fe00::0\tip6-localnet\n"
                    "fe00::0\tip6-mcastprefix\n"
                    "fe00::1\tip6-allnodes\n"
                    "fe00::2\tip6-allrouters\n");
    if (sub)
        p += sprintf(p, "%s\t%s.%s.%s.svc.%s\t%s\n", pod_ip, hostname, sub, spec->pod->namespace_,
                     cluster_domain, hostname);
    else
        p += sprintf(p, "%s\t%s\n", pod_ip, hostname);
    if (spec->n_host_aliases)
        p += sprintf(p, "\n# Entries added by HostAliases.\n");
    for (size_t i = 0; i < spec->n_host_aliases; i++) {
        const Vmlet__HostAlias *a = spec->host_aliases[i];
        p += sprintf(p, "%s\t", a->ip ? a->ip : "");
        for (size_t h = 0; h < a->n_hostnames; h++)
            p += sprintf(p, "%s%s", h ? "\t" : "", a->hostnames[h]);
        p += sprintf(p, "\n");
    }
    return out;
}
