// A pod's name in its VM as the kubelet gives it: the hostname, the
// kubelet-managed /etc/hosts, and /etc/resolv.conf from dnsPolicy and
// dnsConfig (pkg/kubelet/network/dns and kubelet_pods.go, written the way
// containerd writes the sandbox's resolv.conf). Pure: no I/O; table-tested.
#ifndef VMLET_LAUNCHER_POD_DNS_H
#define VMLET_LAUNCHER_POD_DNS_H

#include "vmlet/proto/envelope.pb-c.h"

#include <stddef.h>

#define POD_HOSTNAME_MAX 63 // a hostname label (the kubelet truncates to it)

typedef struct {
    const char *cluster_dns;    // --cluster-dns: comma-separated addresses, may be empty
    const char *cluster_domain; // --cluster-domain
    // The host's resolv.conf (--resolv-conf) as text; NULL when the
    // setting is empty, which gives Default pods nameserver 127.0.0.1 and
    // search "." as on a kubelet with --resolv-conf="".
    const char *host_resolv;
} pod_dns_settings_t;

// spec.hostname, or the pod's name, cut to 63 characters without a
// trailing '-' or '.'.
void pod_dns_hostname(const Vmlet__PodSpec *spec, char out[POD_HOSTNAME_MAX + 1]);

// The pod's /etc/resolv.conf by its dnsPolicy (ClusterFirst falls back to
// Default without cluster DNS, as the kubelet does), with dnsConfig merged
// in and the resolver's limits (3 nameservers, 6 search domains, 256
// characters of them) applied. Caller frees.
char *pod_dns_resolv_conf(const Vmlet__PodSpec *spec, const pod_dns_settings_t *s);

// The kubelet's managed /etc/hosts: localhost lines, the pod's IP with its
// hostname (and hostname.subdomain.<ns>.svc.<domain> first when subdomain
// is set), then the hostAliases. Caller frees.
char *pod_dns_hosts(const Vmlet__PodSpec *spec, const char *pod_ip, const char *hostname,
                    const char *cluster_domain);

#endif
