// The pod's network inside the VM, with the classic ioctls (IPv4 is all
// PodSetup carries): loopback up; the virtio NIC with the host's MAC gets
// its address, prefix, MTU, goes up, and the default route via the
// gateway.
#include "agent.h"
#include "util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NIC_WAIT_MS 3000

static int s_flags_up(int sock, const char *ifname, vmlet_err_t *err)
{
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
        return vmlet_err_errno(err, errno, "%s: SIOCGIFFLAGS", ifname);
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
        return vmlet_err_errno(err, errno, "%s: up", ifname);
    return 0;
}

int net_loopback_up(vmlet_err_t *err)
{
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return vmlet_err_errno(err, errno, "socket");
    int rc = s_flags_up(sock, "lo", err);
    close(sock);
    return rc;
}

// The interface whose address is mac (any case), or NULL; `names` gets
// the list of interfaces seen, for the error message.
static int s_find_by_mac(const char *mac, char *out, size_t cap, char *names, size_t names_cap)
{
    DIR *d = opendir("/sys/class/net");
    if (!d)
        return -1;
    struct dirent *e;
    int rc = -1;
    names[0] = '\0';
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], addr[64];
        snprintf(path, sizeof path, "/sys/class/net/%s/address", e->d_name);
        if (read_small_file(path, addr, sizeof addr) <= 0)
            continue;
        addr[strcspn(addr, "\n")] = '\0';
        size_t used = strlen(names);
        snprintf(names + used, names_cap - used, "%s%s=%s", used ? ", " : "", e->d_name, addr);
        if (rc < 0 && strcasecmp(addr, mac) == 0) {
            snprintf(out, cap, "%.*s", (int)cap - 1, e->d_name);
            rc = 0;
        }
    }
    closedir(d);
    return rc;
}

// The VM's one Ethernet interface, when it has exactly one. A VM restored
// from a template has a NIC whose MAC is the template's (QEMU migrates the
// virtio-net device's MAC with its state): it is still this pod's NIC, and
// gets the pod's own MAC before it carries a frame.
static bool s_only_ethernet(char *out, size_t cap)
{
    DIR *d = opendir("/sys/class/net");
    if (!d)
        return false;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d))) {
        char path[300], type[16];
        snprintf(path, sizeof path, "/sys/class/net/%s/type", e->d_name);
        if (e->d_name[0] == '.' || strcmp(e->d_name, "lo") == 0 ||
            read_small_file(path, type, sizeof type) <= 0 || atoi(type) != ARPHRD_ETHER)
            continue;
        if (found++ == 0)
            snprintf(out, cap, "%.*s", (int)cap - 1, e->d_name);
    }
    closedir(d);
    return found == 1;
}

// Sets the interface's MAC (it is down: the agent has not brought it up).
// virtio-net passes it to the device (VIRTIO_NET_CTRL_MAC_ADDR_SET), so
// the host's side agrees.
static int s_set_mac(int sock, const char *ifname, const char *mac, vmlet_err_t *err)
{
    unsigned b[6];
    if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
        return vmlet_err_set(err, "MAC %s: not xx:xx:xx:xx:xx:xx", mac);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    for (int i = 0; i < 6; i++)
        ifr.ifr_hwaddr.sa_data[i] = (char)b[i];
    if (ioctl(sock, SIOCSIFHWADDR, &ifr) < 0)
        return vmlet_err_errno(err, errno, "%s: setting MAC %s", ifname, mac);
    alog("network: %s takes this pod's MAC %s", ifname, mac);
    return 0;
}

static int s_parse_cidr(const char *cidr, struct in_addr *ip, int *prefix, vmlet_err_t *err)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", cidr);
    char *slash = strchr(buf, '/');
    *prefix = 32;
    if (slash) {
        *slash = '\0';
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (*end || p < 0 || p > 32)
            return vmlet_err_set(err, "ip_cidr %s: bad prefix length", cidr);
        *prefix = (int)p;
    }
    if (inet_pton(AF_INET, buf, ip) != 1)
        return vmlet_err_set(err, "ip_cidr %s: not an IPv4 address", cidr);
    return 0;
}

static void s_sockaddr(struct sockaddr *sa, struct in_addr addr)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr = addr};
    memcpy(sa, &sin, sizeof sin);
}

static int s_configure(int sock, const char *ifname, const Vmlet__PodSetup *s, vmlet_err_t *err)
{
    struct in_addr ip, mask, gw;
    int prefix;
    if (s_parse_cidr(s->ip_cidr, &ip, &prefix, err) < 0)
        return -1;
    mask.s_addr = prefix ? htonl(~0u << (32 - prefix)) : 0;
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    s_sockaddr(&ifr.ifr_addr, ip);
    if (ioctl(sock, SIOCSIFADDR, &ifr) < 0)
        return vmlet_err_errno(err, errno, "%s: address %s", ifname, s->ip_cidr);
    s_sockaddr(&ifr.ifr_netmask, mask);
    if (ioctl(sock, SIOCSIFNETMASK, &ifr) < 0)
        return vmlet_err_errno(err, errno, "%s: prefix /%d", ifname, prefix);
    if (s->has_mtu && s->mtu > 0) {
        ifr.ifr_mtu = s->mtu;
        if (ioctl(sock, SIOCSIFMTU, &ifr) < 0)
            return vmlet_err_errno(err, errno, "%s: MTU %d", ifname, s->mtu);
    }
    if (s_flags_up(sock, ifname, err) < 0)
        return -1;
    if (!s->gateway || !*s->gateway)
        return 0;
    if (inet_pton(AF_INET, s->gateway, &gw) != 1)
        return vmlet_err_set(err, "gateway %s: not an IPv4 address", s->gateway);
    struct rtentry rt = {0};
    struct in_addr any = {0};
    s_sockaddr(&rt.rt_dst, any);
    s_sockaddr(&rt.rt_genmask, any);
    s_sockaddr(&rt.rt_gateway, gw);
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    rt.rt_dev = (char *)ifname;
    if (ioctl(sock, SIOCADDRT, &rt) < 0 && errno != EEXIST)
        return vmlet_err_errno(err, errno, "default route via %s on %s", s->gateway, ifname);
    return 0;
}

int net_setup(const Vmlet__PodSetup *s, vmlet_err_t *err)
{
    if (!s->ip_cidr || !*s->ip_cidr)
        return 0; // no network for this pod (tests; host-only pods)
    if (!s->mac || !*s->mac)
        return vmlet_err_set(err, "network: ip_cidr %s without the NIC's MAC", s->ip_cidr);
    char ifname[IFNAMSIZ], names[512];
    int64_t deadline = now_ms() + NIC_WAIT_MS;
    bool adopted = false;
    // virtio_net may still be probing the device.
    while (s_find_by_mac(s->mac, ifname, sizeof ifname, names, sizeof names) < 0) {
        if (s_only_ethernet(ifname, sizeof ifname)) {
            adopted = true; // a VM restored from a template: its NIC has the template's MAC
            break;
        }
        if (now_ms() > deadline)
            return vmlet_err_set(err, "network: no interface with MAC %s (interfaces: %s)", s->mac,
                                 names[0] ? names : "none");
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return vmlet_err_errno(err, errno, "socket");
    int rc = adopted ? s_set_mac(sock, ifname, s->mac, err) : 0;
    if (rc == 0)
        rc = s_configure(sock, ifname, s, err);
    close(sock);
    if (rc < 0)
        return vmlet_err_wrap(err, "network");
    alog("network: %s %s mtu %d via %s", ifname, s->ip_cidr, s->has_mtu ? s->mtu : 0,
         s->gateway && *s->gateway ? s->gateway : "-");
    return 0;
}
