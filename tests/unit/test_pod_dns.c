// A pod's hostname, managed /etc/hosts and resolv.conf as the kubelet
// makes them (pkg/kubelet/network/dns, kubelet_pods.go), written in
// containerd's order: a table of policies, configs and host files.
#include "testsupport.h"

#include "pod_dns.h"

#include "vmlet/pb.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    Vmlet__PodRef ref;
    Vmlet__PodSpec spec;
    Vmlet__DnsConfig cfg;
    char *servers[4], *searches[8];
    char server_words[512], search_words[1024]; // what servers[] and searches[] point into
    Vmlet__DnsOption opts[3];
    Vmlet__DnsOption *opt_ptrs[3];
    Vmlet__HostAlias aliases[2];
    Vmlet__HostAlias *alias_ptrs[2];
} pod_t;

static void s_pod(pod_t *p, const char *policy)
{
    memset(p, 0, sizeof *p);
    p->ref = (Vmlet__PodRef)VMLET__POD_REF__INIT;
    p->ref.uid = "uid-1", p->ref.namespace_ = "shop", p->ref.name = "web-0";
    p->spec = (Vmlet__PodSpec)VMLET__POD_SPEC__INIT;
    p->spec.pod = &p->ref;
    p->spec.dns_policy = (char *)policy;
    p->cfg = (Vmlet__DnsConfig)VMLET__DNS_CONFIG__INIT;
    for (int i = 0; i < 3; i++) {
        p->opts[i] = (Vmlet__DnsOption)VMLET__DNS_OPTION__INIT;
        p->opt_ptrs[i] = &p->opts[i];
    }
}

static void s_config(pod_t *p, const char *servers, const char *searches)
{
    p->spec.dns_config = &p->cfg;
    p->cfg.nameservers = p->servers, p->cfg.searches = p->searches;
    p->cfg.options = p->opt_ptrs;
    char *save = NULL;
    snprintf(p->server_words, sizeof p->server_words, "%s", servers);
    for (char *w = strtok_r(p->server_words, " ", &save); w; w = strtok_r(NULL, " ", &save))
        p->servers[p->cfg.n_nameservers++] = w;
    snprintf(p->search_words, sizeof p->search_words, "%s", searches);
    for (char *w = strtok_r(p->search_words, " ", &save); w; w = strtok_r(NULL, " ", &save))
        p->searches[p->cfg.n_searches++] = w;
}

static void s_option(pod_t *p, const char *name, const char *value)
{
    p->opts[p->cfg.n_options].name = (char *)name;
    p->opts[p->cfg.n_options++].value = (char *)value;
}

static void s_expect(const pod_t *p, const pod_dns_settings_t *s, const char *want)
{
    char *got = pod_dns_resolv_conf(&p->spec, s);
    if (strcmp(got, want) != 0)
        fail_msg("policy %s: got\n%s\nwant\n%s", p->spec.dns_policy, got, want);
    free(got);
}

#define HOST_FILE                                                                          \
    "# the host's\nnameserver 192.0.2.1 192.0.2.9\nnameserver 192.0.2.2\n"                   \
    "search old.example\nsearch corp.example lab.example\noptions rotate\n"                 \
    "options timeout:2 attempts:3\ndomain ignored.example\n"

static void test_policies(void **state)
{
    (void)state;
    pod_dns_settings_t cluster = {"10.0.0.10", "cluster.local", HOST_FILE};
    pod_dns_settings_t no_dns = {"", "cluster.local", HOST_FILE};
    pod_dns_settings_t no_file = {"", "cluster.local", NULL};
    pod_t p;
    // ClusterFirst: the cluster's server, its domains then the host's, ndots:5.
    s_pod(&p, "ClusterFirst");
    s_expect(&p, &cluster,
             "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example "
             "lab.example\nnameserver 10.0.0.10\noptions ndots:5\n");
    // Without cluster DNS it is Default: the host's file, its last search
    // and options lines, each nameserver line's first address.
    s_expect(&p, &no_dns,
             "search corp.example lab.example\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n"
             "options timeout:2 attempts:3\n");
    s_pod(&p, "Default");
    s_expect(&p, &cluster,
             "search corp.example lab.example\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n"
             "options timeout:2 attempts:3\n");
    // --resolv-conf="": the local resolver and no search.
    s_expect(&p, &no_file, "search .\nnameserver 127.0.0.1\n");
    // None: only what dnsConfig says; an option without a value has no colon.
    s_pod(&p, "None");
    s_config(&p, "192.0.2.53", "a.example b.example");
    s_option(&p, "ndots", "2");
    s_option(&p, "edns0", NULL);
    s_option(&p, "single-request", "");
    s_expect(&p, &cluster,
             "search a.example b.example\nnameserver 192.0.2.53\n"
             "options ndots:2 edns0 single-request\n");
}

static void test_dns_config_merges(void **state)
{
    (void)state;
    pod_dns_settings_t cluster = {"10.0.0.10", "cluster.local", HOST_FILE};
    pod_t p;
    s_pod(&p, "ClusterFirst");
    // Duplicates go, an option of the same name is replaced, new ones follow.
    s_config(&p, "10.0.0.10 192.0.2.53", "svc.cluster.local extra.example");
    s_option(&p, "ndots", "1");
    s_option(&p, "edns0", NULL);
    s_expect(&p, &cluster,
             "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example "
             "lab.example extra.example\nnameserver 10.0.0.10\nnameserver 192.0.2.53\n"
             "options ndots:1 edns0\n");
}

static void test_limits(void **state)
{
    (void)state;
    pod_dns_settings_t none = {"", "cluster.local", NULL};
    pod_t p;
    s_pod(&p, "None");
    // Three nameservers at most, six domains at most.
    s_config(&p, "192.0.2.1 192.0.2.2 192.0.2.3 192.0.2.4", "a b c d e f g");
    s_expect(&p, &none,
             "search a b c d e f\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n"
             "nameserver 192.0.2.3\n");
    // 256 characters of search line at most: whole domains off the end.
    char d100[3][101];
    for (int i = 0; i < 3; i++) {
        memset(d100[i], 'a' + i, 100);
        d100[i][100] = '\0';
    }
    char searches[400];
    snprintf(searches, sizeof searches, "%s %s %s", d100[0], d100[1], d100[2]);
    s_pod(&p, "None");
    s_config(&p, "192.0.2.1", searches);
    char want[400];
    snprintf(want, sizeof want, "search %s %s\nnameserver 192.0.2.1\n", d100[0], d100[1]);
    s_expect(&p, &none, want);
}

static void test_hostname(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p, "ClusterFirst");
    char name[POD_HOSTNAME_MAX + 1];
    pod_dns_hostname(&p.spec, name);
    assert_string_equal(name, "web-0");
    p.spec.hostname = "db";
    pod_dns_hostname(&p.spec, name);
    assert_string_equal(name, "db");
    // Cut to 63, and what would end the cut name in '-' or '.' goes.
    char long_name[80];
    memset(long_name, 'x', 62);
    strcpy(long_name + 62, "-.-yyyy");
    p.spec.hostname = long_name;
    pod_dns_hostname(&p.spec, name);
    assert_int_equal(strlen(name), 62);
    assert_int_equal(name[61], 'x');
}

static void test_hosts(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p, "ClusterFirst");
    static const char *const head = "# Kubernetes-managed hosts file.\n"
                                    "127.0.0.1\tlocalhost\n"
                                    "::1\tlocalhost ip6-localhost ip6-loopback\n"
                                    "fe00::0\tip6-localnet\n"
                                    "fe00::0\tip6-mcastprefix\n"
                                    "fe00::1\tip6-allnodes\n"
                                    "fe00::2\tip6-allrouters\n";
    char *got = pod_dns_hosts(&p.spec, "10.88.0.7", "web-0", "cluster.local");
    char want[1024];
    snprintf(want, sizeof want, "%s10.88.0.7\tweb-0\n", head);
    assert_string_equal(got, want);
    free(got);
    // subdomain: the FQDN first; hostAliases after, one line per IP.
    p.spec.subdomain = "backend";
    static char *names0[] = {"foo.local", "bar.local"}, *names1[] = {"gw"};
    p.aliases[0] = (Vmlet__HostAlias)VMLET__HOST_ALIAS__INIT;
    p.aliases[0].ip = "192.0.2.10", p.aliases[0].hostnames = names0;
    p.aliases[0].n_hostnames = 2;
    p.aliases[1] = (Vmlet__HostAlias)VMLET__HOST_ALIAS__INIT;
    p.aliases[1].ip = "192.0.2.1", p.aliases[1].hostnames = names1, p.aliases[1].n_hostnames = 1;
    p.alias_ptrs[0] = &p.aliases[0], p.alias_ptrs[1] = &p.aliases[1];
    p.spec.host_aliases = p.alias_ptrs, p.spec.n_host_aliases = 2;
    got = pod_dns_hosts(&p.spec, "10.88.0.7", "db", "cluster.local");
    snprintf(want, sizeof want,
             "%s10.88.0.7\tdb.backend.shop.svc.cluster.local\tdb\n\n"
             "# Entries added by HostAliases.\n192.0.2.10\tfoo.local\tbar.local\n"
             "192.0.2.1\tgw\n",
             head);
    assert_string_equal(got, want);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policies),
        cmocka_unit_test(test_dns_config_merges),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_hostname),
        cmocka_unit_test(test_hosts),
    };
    return TS_RUN(tests);
}
