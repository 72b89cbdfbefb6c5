// The pod network against the real kernel and a real redis-server (needs
// root): namespace, bridge, veth and routes; IPAM shared by two launcher
// processes; the host reaching a pod; anti-spoofing; NAT on and off;
// adoption by a restarted launcher; the bridge without a namespace.
//
// VMs are stood in for by network namespaces this test makes, each joined
// to the bridge by a veth whose bridge end carries the pod's tap name (so
// net_attach adopts it and the filters key on it exactly as on a tap);
// real taps are made too, to show attach/detach create and remove them.
// Traffic goes only to namespaces made here (DESIGN.md §4): the pod CIDR
// is 10.213.<x>.0/24 with x picked per run among unused ones, and the
// "outside" host for NAT sits in a namespace of its own behind a /30 from
// 198.51.100.0/24 (not 192.0.2.0/24: this machine's uplink lives there),
// with an unreachable fallback route added before anything else.
#include "testsupport.h"

#include "ipam.h"
#include "network.h"

#include "vmlet/log.h"
#include "vmlet/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/if_ether.h>
#include <netpacket/packet.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

// --- the run --------------------------------------------------------------------

static struct {
    ts_redis_t redis;
    char url[64];
    int x;           // this run's pod CIDRs are 10.213.<x + seq>.0/24
    char forward[8]; // net.ipv4.ip_forward before the run, restored after
    int seq;
} R;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[1100];
    snprintf(full, sizeof full, "%s %s", cmd,
             getenv("VMLET_TEST_VERBOSE") ? "" : ">/dev/null 2>&1");
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// stdout and stderr of a command (caller frees).
static char *sh_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sh_out(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[1100];
    snprintf(full, sizeof full, "{ %s; } 2>&1", cmd);
    FILE *p = popen(full, "r");
    assert_non_null(p);
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    pclose(p);
    return buf;
}

static void assert_has(const char *text, const char *want)
{
    if (!strstr(text, want))
        fail_msg("expected \"%s\" in:\n%s", want, text);
}

static void assert_lacks(const char *text, const char *unwanted)
{
    if (strstr(text, unwanted))
        fail_msg("did not expect \"%s\" in:\n%s", unwanted, text);
}

static void s_sysctl(const char *path, char *buf, size_t size, const char *set)
{
    FILE *f = fopen(path, set ? "w" : "r");
    assert_non_null(f);
    if (set)
        fputs(set, f);
    else if (!fgets(buf, (int)size, f))
        buf[0] = '\0';
    fclose(f);
    if (!set)
        buf[strcspn(buf, "\n")] = '\0';
}

// Namespaces and links a killed earlier run left behind (names carry its pid).
static void s_clean_dead_runs(void)
{
    char *list = sh_out("ls /run/netns 2>/dev/null; ip -o link show | cut -d: -f2");
    for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
        while (*line == ' ')
            line++;
        int pid = 0;
        char kind = 0;
        if (sscanf(line, "vmlet-t%d-", &pid) == 1)
            kind = 'n';
        else if (sscanf(line, "vtst-%d-", &pid) == 1 || sscanf(line, "vout-%d-", &pid) == 1)
            kind = 'n';
        else if (sscanf(line, "vh%d-", &pid) == 1 || sscanf(line, "vo%d-", &pid) == 1)
            kind = 'l';
        if (!kind || pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        char name[64];
        snprintf(name, sizeof name, "%s", line);
        name[strcspn(name, "@ ")] = '\0';
        if (kind == 'n')
            sh("ip netns del %s", name);
        else
            sh("ip link del %s", name);
    }
    free(list);
}

static int group_setup(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        fprintf(stderr, "test_network needs root (namespaces, bridges, taps)\n");
        return -1;
    }
    s_clean_dead_runs();
    if (ts_redis_start(&R.redis, NULL) < 0)
        return -1;
    snprintf(R.url, sizeof R.url, "redis://127.0.0.1:%d", R.redis.port);
    s_sysctl("/proc/sys/net/ipv4/ip_forward", R.forward, sizeof R.forward, NULL);
    // Ten /24s no route on this machine mentions yet.
    char *routes = sh_out("ip -4 route show table all");
    for (int attempt = 0; attempt < 20; attempt++) {
        int x = 20 + ((getpid() + attempt) % 20) * 10;
        bool used = false;
        for (int i = 0; i < 10 && !used; i++) {
            char pfx[32];
            snprintf(pfx, sizeof pfx, "10.213.%d.", x + i);
            used = strstr(routes, pfx) != NULL;
        }
        if (!used) {
            R.x = x;
            break;
        }
    }
    free(routes);
    if (!R.x) {
        fprintf(stderr, "no free 10.213.x.0/24 range for the test\n");
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    ts_redis_stop(&R.redis);
    ts_remove_dir(R.redis.dir);
    if (R.forward[0])
        s_sysctl("/proc/sys/net/ipv4/ip_forward", NULL, 0, R.forward);
    return 0;
}

// --- one test's network -------------------------------------------------------------

typedef struct {
    int seq;
    char netns[32], host_veth[16], bridge[16], cidr[24], link[24], owner[32];
    char nat_table[48];
    net_settings_t s;
    vmlet_log_t *log;
    vmlet_store_t *store;
    net_t *net;
    char standins[8][32];
    int n_standins;
    char outside_ns[32], outside_link[16], outside_net[24];
} fx_t;

static vmlet_store_t *s_store(fx_t *f)
{
    vmlet_err_t err = {0};
    vmlet_store_t *st = vmlet_store_new(R.url, NULL, f->log, NULL, &err);
    if (!st)
        fail_msg("store: %s", err.msg);
    return st;
}

static net_t *s_net(fx_t *f, const net_settings_t *s)
{
    vmlet_err_t err = {0};
    net_t *n = net_new(s, f->store, f->log, &err);
    if (!n)
        fail_msg("net_new: %s", err.msg);
    return n;
}

static void s_setup(net_t *n)
{
    vmlet_err_t err = {0};
    if (net_setup(n, &err) < 0)
        fail_msg("net_setup: %s", err.msg);
}

static int fx_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    f->seq = R.seq++;
    int pid = getpid();
    snprintf(f->netns, sizeof f->netns, "vmlet-t%d-%d", pid, f->seq);
    snprintf(f->host_veth, sizeof f->host_veth, "vh%d-%d", pid, f->seq);
    snprintf(f->bridge, sizeof f->bridge, "br0");
    snprintf(f->cidr, sizeof f->cidr, "10.213.%d.0/24", R.x + f->seq);
    snprintf(f->link, sizeof f->link, "169.254.%d.0/30", R.x + f->seq);
    snprintf(f->owner, sizeof f->owner, "launcher-a");
    netfilter_table_name("vmlet_nat_", f->host_veth, f->nat_table, sizeof f->nat_table);
    net_settings_defaults(&f->s);
    f->s.netns = f->netns;
    f->s.bridge = f->bridge;
    f->s.pod_cidr = f->cidr;
    f->s.host_veth = f->host_veth;
    f->s.link_cidr = f->link;
    f->s.owner = f->owner;
    f->s.nat = false;
    vmlet_err_t err = {0};
    f->log = vmlet_log_new("test-network", "text", getenv("VMLET_TEST_VERBOSE") ? "debug" : "warn",
                           &err);
    f->store = s_store(f);
    *state = f;
    return 0;
}

// Removes everything, whatever state the test left (it may have failed
// half-way): first through the API, then by name with `ip`.
static int fx_teardown(void **state)
{
    fx_t *f = *state;
    vmlet_err_t err = {0};
    net_destroy(&f->net);
    net_t *n = net_new(&f->s, f->store, f->log, &err);
    if (n && net_teardown(n, &err) < 0)
        fprintf(stderr, "teardown: %s\n", err.msg);
    net_destroy(&n);
    for (int i = 0; i < f->n_standins; i++)
        sh("ip netns del %s", f->standins[i]);
    sh("ip netns del %s", f->netns);
    sh("ip link del %s", f->host_veth);
    sh("ip route del unreachable %s metric %d", f->cidr, NET_FALLBACK_METRIC);
    sh("nft delete table ip %s", f->nat_table);
    if (f->s.netns && !*f->s.netns) {
        sh("ip link del %s", f->bridge);
        sh("nft delete table bridge vmlet_%s", f->bridge);
    }
    if (f->outside_ns[0]) {
        sh("ip netns del %s", f->outside_ns);
        sh("ip link del %s", f->outside_link);
        sh("ip route del unreachable %s metric %d", f->outside_net, NET_FALLBACK_METRIC);
    }
    redisReply *r = vmlet_store_command(f->store, &err, "FLUSHALL");
    if (r)
        freeReplyObject(r);
    vmlet_store_destroy(&f->store);
    vmlet_log_destroy(&f->log);
    free(f);
    return 0;
}

static void s_attach(net_t *n, const char *uid, net_lease_t *lease)
{
    vmlet_err_t err = {0};
    if (net_attach(n, uid, lease, &err) < 0)
        fail_msg("net_attach %s: %s", uid, err.msg);
}

static void s_detach(net_t *n, const char *uid)
{
    vmlet_err_t err = {0};
    if (net_detach(n, uid, &err) < 0)
        fail_msg("net_detach %s: %s", uid, err.msg);
}

// A stand-in VM: a namespace whose eth0 is the peer of a veth named as the
// pod's tap on the bridge, configured as the guest agent would from the lease.
typedef struct {
    char ns[32];
    char uid[64];
    net_lease_t lease;
} standin_t;

static void s_standin(fx_t *f, net_t *n, const char *uid, standin_t *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->uid, sizeof s->uid, "%s", uid);
    snprintf(s->ns, sizeof s->ns, "vtst-%d-%d-%d", getpid(), f->seq, f->n_standins);
    snprintf(f->standins[f->n_standins++], sizeof f->standins[0], "%s", s->ns);
    char tap[IFNAMSIZ];
    net_tap_name(uid, tap);
    assert_int_equal(sh("ip netns add %s", s->ns), 0);
    assert_int_equal(
        sh("ip -n %s link add %s type veth peer name eth0 netns %s", f->netns, tap, s->ns), 0);
    s_attach(n, uid, &s->lease);
    assert_string_equal(s->lease.tap, tap);
    assert_int_equal(sh("ip -n %s link set lo up", s->ns), 0);
    assert_int_equal(
        sh("ip -n %s link set eth0 address %s mtu %u up", s->ns, s->lease.mac, s->lease.mtu), 0);
    assert_int_equal(
        sh("ip -n %s addr add %s/%d dev eth0", s->ns, s->lease.ip, s->lease.prefix_len), 0);
    assert_int_equal(sh("ip -n %s route add default via %s", s->ns, s->lease.gateway), 0);
}

// --- sockets in namespaces ------------------------------------------------------------

// A socket opened inside /run/netns/<ns> (it stays there; the thread returns).
static int s_socket_in(const char *ns, int type, int proto, const char *ifname, int *ifindex)
{
    char path[128];
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(home >= 0 && fd >= 0);
    assert_int_equal(setns(fd, CLONE_NEWNET), 0);
    int s =
        socket(type == SOCK_RAW ? AF_PACKET : AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, proto);
    if (ifname && ifindex)
        *ifindex = (int)if_nametoindex(ifname);
    int back = setns(home, CLONE_NEWNET);
    close(fd);
    close(home);
    assert_int_equal(back, 0);
    assert_true(s >= 0);
    return s;
}

static struct sockaddr_in s_sin(const char *ip, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    return a;
}

static int s_listen_in(const char *ns, int port)
{
    int s = s_socket_in(ns, SOCK_STREAM, 0, NULL, NULL);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = s_sin("0.0.0.0", port);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s, 8), 0);
    return s;
}

// A UDP socket in ns (NULL: here) bound to ip:port.
static int s_udp(const char *ns, const char *ip, int port)
{
    int s = ns ? s_socket_in(ns, SOCK_DGRAM, 0, NULL, NULL)
               : socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = s_sin(ip, port);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0)
        fail_msg("bind %s:%d: %s", ip, port, strerror(errno));
    return s;
}

static void s_sendto(int s, const char *ip, int port, const char *msg)
{
    struct sockaddr_in a = s_sin(ip, port);
    if (sendto(s, msg, strlen(msg), 0, (struct sockaddr *)&a, sizeof a) < 0)
        fail_msg("sendto %s:%d: %s", ip, port, strerror(errno));
}

// Waits up to timeout_ms for a datagram; returns its length (text in buf,
// sender in *from) or -1.
static int s_recv(int s, char *buf, size_t size, struct sockaddr_in *from, int timeout_ms)
{
    struct pollfd p = {.fd = s, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1)
        return -1;
    socklen_t len = sizeof *from;
    ssize_t n = recvfrom(s, buf, size - 1, 0, (struct sockaddr *)from, &len);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return (int)n;
}

// Connects from this (the root) namespace; 0 when connected within timeout_ms.
static int s_connect(const char *ip, int port, int timeout_ms)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = s_sin(ip, port);
    int rc = connect(s, (struct sockaddr *)&a, sizeof a);
    if (rc < 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = s, .events = POLLOUT};
        int soerr = 0;
        socklen_t len = sizeof soerr;
        rc = poll(&p, 1, timeout_ms) == 1 &&
                     getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0
                 ? 0
                 : -1;
    }
    close(s);
    return rc;
}

// The connection waiting on a listener, accepted and closed: 1 if there
// was one (its peer address in *peer, may be NULL), 0 if not.
static int s_accepted(int listener, char peer[INET_ADDRSTRLEN])
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int c = accept(listener, (struct sockaddr *)&a, &len);
    if (c < 0)
        return 0;
    if (peer)
        inet_ntop(AF_INET, &a.sin_addr, peer, INET_ADDRSTRLEN);
    close(c);
    return 1;
}

// Waiting for a filter's drop counter to move: proof that a frame reached
// the filter and was dropped, without guessing how long that takes.
typedef struct {
    net_t *net;
    uint64_t before;
    uint64_t (*pick)(const netfilter_drops_t *d);
} drops_wait_t;

static uint64_t s_in_ip(const netfilter_drops_t *d)
{
    return d->in_ip;
}
static uint64_t s_in_arp(const netfilter_drops_t *d)
{
    return d->in_arp;
}
static uint64_t s_in_any(const netfilter_drops_t *d)
{
    return d->in_ip + d->in_arp;
}
static uint64_t s_out_ip(const netfilter_drops_t *d)
{
    return d->out_ip;
}

static uint64_t s_drops(net_t *n, uint64_t (*pick)(const netfilter_drops_t *d))
{
    netfilter_drops_t d;
    vmlet_err_t err = {0};
    if (net_filter_drops(n, &d, &err) < 0)
        fail_msg("net_filter_drops: %s", err.msg);
    return pick(&d);
}

static bool s_drops_grew(void *arg)
{
    drops_wait_t *w = arg;
    return s_drops(w->net, w->pick) > w->before;
}

static drops_wait_t s_drops_mark(net_t *n, uint64_t (*pick)(const netfilter_drops_t *d))
{
    return (drops_wait_t){.net = n, .before = s_drops(n, pick), .pick = pick};
}

// --- tests --------------------------------------------------------------------------------

static void test_setup_is_idempotent_and_teardown_removes_everything(void **state)
{
    fx_t *f = *state;
    f->s.nat = true;
    f->net = s_net(f, &f->s);
    s_setup(f->net);
    char *routes1 = sh_out("ip route show %s", f->cidr);
    char *ruleset1 = sh_out("ip netns exec %s nft list ruleset", f->netns);
    char *bridge1 = sh_out("ip -n %s -o link show %s", f->netns, f->bridge);
    s_setup(f->net);
    net_t *again = s_net(f, &f->s); // a restarted launcher, same settings
    s_setup(again);
    net_destroy(&again);

    // Root namespace: the route via the veth and the worse unreachable fallback, once each.
    char *routes = sh_out("ip route show %s", f->cidr);
    assert_string_equal(routes, routes1);
    char via[96];
    snprintf(via, sizeof via, "%s via 169.254.%d.2 dev %s", f->cidr, R.x + f->seq, f->host_veth);
    assert_has(routes, via);
    assert_has(routes, "metric 213");
    char unreach[64];
    snprintf(unreach, sizeof unreach, "unreachable %s", f->cidr);
    assert_has(routes, unreach);
    assert_has(routes, "metric 4213");
    assert_null(strstr(strstr(routes, via) + 1, via));
    // Nothing recreated, nothing doubled.
    char *bridge = sh_out("ip -n %s -o link show %s", f->netns, f->bridge);
    assert_string_equal(strtok(bridge, ":"), strtok(bridge1, ":")); // same ifindex
    char *ruleset = sh_out("ip netns exec %s nft list ruleset", f->netns);
    assert_string_equal(ruleset, ruleset1);
    assert_has(ruleset, "table bridge vmlet_br0");
    char *addrs = sh_out("ip -n %s -4 addr show %s", f->netns, f->bridge);
    char gw[48];
    snprintf(gw, sizeof gw, "inet 10.213.%d.1/24", R.x + f->seq);
    assert_has(addrs, gw);
    char *nat = sh_out("nft list table ip %s", f->nat_table);
    assert_has(nat, "masquerade");
    assert_has(nat, f->cidr);
    assert_int_equal(strcmp(net_netns_path(f->net), "") != 0, 1);

    // The veth down: the kernel drops the route through it and the fallback
    // answers, so a pod address cannot follow the default route out.
    char probe[32];
    snprintf(probe, sizeof probe, "10.213.%d.77", R.x + f->seq);
    assert_int_equal(sh("ip link set %s down", f->host_veth), 0);
    char *get = sh_out("ip route get %s", probe);
    assert_has(get, "No route to host");
    assert_lacks(get, "eth0");
    s_setup(f->net); // repairs
    char *get2 = sh_out("ip route get %s", probe);
    assert_has(get2, f->host_veth);

    vmlet_err_t err = {0};
    if (net_teardown(f->net, &err) < 0)
        fail_msg("teardown: %s", err.msg);
    if (net_teardown(f->net, &err) < 0) // twice is fine
        fail_msg("second teardown: %s", err.msg);
    char *after = sh_out("ip route show %s; ip netns list; ip link show %s; nft list tables",
                         f->cidr, f->host_veth);
    assert_lacks(after, f->cidr);
    assert_lacks(after, f->netns);
    assert_has(after, "does not exist");
    assert_lacks(after, f->nat_table);
    free(routes1);
    free(ruleset1);
    free(bridge1);
    free(routes);
    free(bridge);
    free(ruleset);
    free(addrs);
    free(nat);
    free(get);
    free(get2);
    free(after);
}

// One "launcher" process: n attaches as owner, results as "uid ip" lines on out.
static void s_launcher_child(fx_t *f, const char *owner, int go_fd, int out_fd, int n)
{
    net_settings_t s = f->s;
    s.owner = owner;
    vmlet_err_t err = {0};
    vmlet_store_t *st = vmlet_store_new(R.url, NULL, NULL, NULL, &err);
    net_t *net = st ? net_new(&s, st, NULL, &err) : NULL;
    char c;
    if (!net || read(go_fd, &c, 1) != 1)
        _exit(2);
    for (int i = 0; i < n; i++) {
        char uid[64], line[128];
        snprintf(uid, sizeof uid, "pod-%s-%d", owner, i);
        net_lease_t l;
        if (net_attach(net, uid, &l, &err) < 0) {
            int k = snprintf(line, sizeof line, "ERR %s\n", err.msg);
            if (write(out_fd, line, (size_t)k) < 0)
                _exit(3);
            _exit(1);
        }
        int k = snprintf(line, sizeof line, "%s %s\n", uid, l.ip);
        if (write(out_fd, line, (size_t)k) != k)
            _exit(3);
    }
    net_destroy(&net);
    vmlet_store_destroy(&st);
    _exit(0);
}

static void test_ipam_two_launchers_never_share_an_address(void **state)
{
    fx_t *f = *state;
    f->net = s_net(f, &f->s);
    s_setup(f->net);
    const char *owners[2] = {"launcher-a", "launcher-b"};
    int go[2], out[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(out), 0);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            close(go[1]);
            close(out[0]);
            s_launcher_child(f, owners[k], go[0], out[1], 25);
        }
    }
    close(go[0]);
    close(out[1]);
    assert_int_equal(write(go[1], "gg", 2), 2); // both start together
    close(go[1]);
    char buf[8192];
    size_t n = 0;
    ssize_t r;
    while ((r = read(out[0], buf + n, sizeof buf - n - 1)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(out[0]);
    for (int k = 0; k < 2; k++) {
        int st;
        assert_int_equal(ts_wait_exit(kids[k], 60000, &st), 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail_msg("launcher %d failed:\n%s", k, buf);
    }
    char uids[50][64], ips[50][INET_ADDRSTRLEN];
    int count = 0;
    for (char *line = strtok(buf, "\n"); line && count < 50; line = strtok(NULL, "\n"), count++)
        assert_int_equal(sscanf(line, "%63s %15s", uids[count], ips[count]), 2);
    assert_int_equal(count, 50);
    ipam_cidr_t cidr;
    vmlet_err_t err = {0};
    assert_int_equal(ipam_cidr_parse(f->cidr, &cidr, &err), 0);
    for (int i = 0; i < 50; i++) {
        uint32_t a;
        assert_int_equal(ipam_addr_parse(ips[i], &a, &err), 0);
        assert_true(ipam_assignable(&cidr, a)); // never network, gateway or broadcast
        for (int j = 0; j < i; j++)
            if (!strcmp(ips[i], ips[j]))
                fail_msg("%s handed out to %s and %s", ips[i], uids[i], uids[j]);
    }
    redisReply *h = vmlet_store_command(f->store, &err, "HLEN vmlet:ipam:%s", f->cidr);
    assert_non_null(h);
    assert_int_equal(h->integer, 50);
    freeReplyObject(h);
    char *taps = sh_out("ip -n %s -o link show master %s | grep -c ' vt'", f->netns, f->bridge);
    assert_int_equal(atoi(taps), 50);
    free(taps);

    // The same pod gets the same address again, from its own launcher and
    // from another one (which takes the lease over).
    const char *pick = "pod-launcher-a-7", *want = NULL;
    for (int i = 0; i < 50; i++)
        if (!strcmp(uids[i], pick))
            want = ips[i];
    assert_non_null(want);
    net_lease_t l;
    s_attach(f->net, pick, &l); // f->net is launcher-a
    assert_string_equal(l.ip, want);
    net_settings_t sb = f->s;
    sb.owner = "launcher-b";
    net_t *b = s_net(f, &sb);
    s_attach(b, pick, &l);
    assert_string_equal(l.ip, want);
    // Its old launcher may no longer free it...
    s_detach(f->net, pick);
    h = vmlet_store_command(f->store, &err, "HGET vmlet:ipam:%s %s", f->cidr, want);
    assert_int_equal(h->type, REDIS_REPLY_STRING);
    assert_string_equal(h->str, pick);
    freeReplyObject(h);
    assert_int_equal(sh("ip -n %s link show %s", f->netns, l.tap), 0);
    // ...its new one does: address free, tap gone.
    s_detach(b, pick);
    h = vmlet_store_command(f->store, &err, "HEXISTS vmlet:ipam:%s %s", f->cidr, want);
    assert_int_equal(h->integer, 0);
    freeReplyObject(h);
    assert_int_not_equal(sh("ip -n %s link show %s", f->netns, l.tap), 0);
    s_detach(b, pick); // idempotent

    // Each launcher lists exactly its own pods.
    char **list;
    size_t nl;
    assert_int_equal(net_list(f->net, &list, &nl, &err), 0);
    int a_count = 0;
    for (size_t i = 0; i < nl; i++) {
        assert_non_null(strstr(list[i], "pod-launcher-a-"));
        a_count++;
    }
    net_list_free(list, nl);
    assert_int_equal(a_count, 24); // its pod 7 moved to b, which detached it
    assert_int_equal(net_list(b, &list, &nl, &err), 0);
    assert_int_equal(nl, 25);
    for (size_t i = 0; i < nl; i++)
        s_detach(b, list[i]);
    net_list_free(list, nl);
    net_destroy(&b);
}

static void test_ipam_exhaustion_and_reserved_addresses(void **state)
{
    fx_t *f = *state;
    char small[24];
    snprintf(small, sizeof small, "10.213.%d.8/29", R.x + f->seq);
    snprintf(f->cidr, sizeof f->cidr, "%s", small);
    f->s.pod_cidr = f->cidr;
    f->net = s_net(f, &f->s);
    s_setup(f->net);
    // network .8, gateway .9, broadcast .15: pods get exactly .10 to .14.
    bool got[16] = {false};
    for (int i = 0; i < 5; i++) {
        char uid[32];
        snprintf(uid, sizeof uid, "small-%d", i);
        net_lease_t l;
        s_attach(f->net, uid, &l);
        int last = atoi(strrchr(l.ip, '.') + 1);
        assert_true(last >= 10 && last <= 14);
        assert_false(got[last]);
        got[last] = true;
        assert_int_equal(l.prefix_len, 29);
    }
    net_lease_t l;
    vmlet_err_t err = {0};
    assert_int_equal(net_attach(f->net, "small-5", &l, &err), -1);
    assert_int_equal(err.code, ENOSPC);
    assert_has(err.msg, "no free address");
    assert_has(err.msg, small);
    char tap[IFNAMSIZ];
    net_tap_name("small-5", tap);
    assert_int_not_equal(sh("ip -n %s link show %s", f->netns, tap), 0); // no tap for it
    // One freed: the waiting pod gets exactly that one.
    net_lease_t l2;
    s_attach(f->net, "small-2", &l2); // learn its address
    s_detach(f->net, "small-2");
    s_attach(f->net, "small-5", &l);
    assert_string_equal(l.ip, l2.ip);
}

static void test_attach_makes_a_real_tap_and_the_host_reaches_a_pod(void **state)
{
    fx_t *f = *state;
    f->net = s_net(f, &f->s);
    s_setup(f->net);

    // A real tap, as QEMU will open it.
    net_lease_t t;
    s_attach(f->net, "tap-pod", &t);
    char *d = sh_out("ip -n %s -d link show %s", f->netns, t.tap);
    assert_has(d, "tun type tap pi off vnet_hdr on persist on user root");
    char master[32];
    snprintf(master, sizeof master, "master %s", f->bridge);
    assert_has(d, master);
    assert_has(d, "alias vmlet pod=tap-pod owner=launcher-a");
    assert_has(d, "mtu 1500");
    char path[96];
    snprintf(path, sizeof path, "/run/netns/%s", f->netns);
    assert_string_equal(t.netns_path, path);
    free(d);
    s_detach(f->net, "tap-pod");
    assert_int_not_equal(sh("ip -n %s link show %s", f->netns, t.tap), 0);

    // A stand-in pod answers the host at its address.
    standin_t a;
    s_standin(f, f->net, "pod-a", &a);
    int lis = s_listen_in(a.ns, 8080);
    assert_int_equal(s_connect(a.lease.ip, 8080, 5000), 0);
    char peer[INET_ADDRSTRLEN] = "";
    assert_int_equal(s_accepted(lis, peer), 1);
    char host_addr[32];
    snprintf(host_addr, sizeof host_addr, "169.254.%d.1", R.x + f->seq);
    assert_string_equal(peer, host_addr); // the host's end of the veth
    close(lis);
}

static void test_a_vm_can_neither_send_nor_receive_as_another(void **state)
{
    fx_t *f = *state;
    f->net = s_net(f, &f->s);
    s_setup(f->net);
    standin_t a, b;
    s_standin(f, f->net, "pod-a", &a);
    s_standin(f, f->net, "pod-b", &b);
    char host_addr[32];
    snprintf(host_addr, sizeof host_addr, "169.254.%d.1", R.x + f->seq);
    int la = s_listen_in(a.ns, 8080), lb = s_listen_in(b.ns, 8080);
    int host = s_udp(NULL, host_addr, 9999);
    char buf[256];
    struct sockaddr_in from;

    // Both work to begin with; A's ARP for the gateway is settled by a
    // packet from its own address.
    assert_int_equal(s_connect(b.lease.ip, 8080, 5000), 0);
    assert_int_equal(s_accepted(lb, NULL), 1);
    int a_own = s_udp(a.ns, a.lease.ip, 0);
    s_sendto(a_own, host_addr, 9999, "warm-up");
    assert_true(s_recv(host, buf, sizeof buf, &from, 5000) > 0);
    assert_string_equal(buf, "warm-up");

    // A takes B's address as well.
    assert_int_equal(sh("ip -n %s addr add %s/32 dev eth0", a.ns, b.lease.ip), 0);

    // Sending as B: dropped at A's port. The packet from A's own address
    // sent after it arrives; the forged one, which would have come first, never does.
    drops_wait_t in_ip = s_drops_mark(f->net, s_in_ip);
    int a_as_b = s_udp(a.ns, b.lease.ip, 0);
    s_sendto(a_as_b, host_addr, 9999, "forged");
    assert_true(ts_poll(s_drops_grew, &in_ip, 5000));
    s_sendto(a_own, host_addr, 9999, "honest");
    assert_true(s_recv(host, buf, sizeof buf, &from, 5000) > 0);
    assert_string_equal(buf, "honest");
    char src[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &from.sin_addr, src, sizeof src);
    assert_string_equal(src, a.lease.ip);

    // Claiming B's address over ARP (a gratuitous reply, as a VM answering
    // for B would send): dropped, and the namespace's neighbour entry for
    // B still names B's MAC.
    int ifindex = 0;
    int raw = s_socket_in(a.ns, SOCK_RAW, htons(ETH_P_ARP), "eth0", &ifindex);
    assert_true(ifindex > 0);
    struct {
        struct ether_header eth;
        struct ether_arp arp;
    } __attribute__((packed)) frame;
    memset(&frame, 0, sizeof frame);
    uint8_t amac[6];
    sscanf(a.lease.mac, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &amac[0], &amac[1], &amac[2], &amac[3],
           &amac[4], &amac[5]);
    memset(frame.eth.ether_dhost, 0xff, 6);
    memcpy(frame.eth.ether_shost, amac, 6);
    frame.eth.ether_type = htons(ETHERTYPE_ARP);
    frame.arp.arp_hrd = htons(ARPHRD_ETHER);
    frame.arp.arp_pro = htons(ETHERTYPE_IP);
    frame.arp.arp_hln = 6;
    frame.arp.arp_pln = 4;
    frame.arp.arp_op = htons(ARPOP_REPLY);
    memcpy(frame.arp.arp_sha, amac, 6);
    inet_pton(AF_INET, b.lease.ip, frame.arp.arp_spa);
    memset(frame.arp.arp_tha, 0xff, 6);
    inet_pton(AF_INET, b.lease.ip, frame.arp.arp_tpa);
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_ifindex = ifindex, .sll_halen = 6};
    memset(ll.sll_addr, 0xff, 6);
    drops_wait_t in_arp = s_drops_mark(f->net, s_in_arp);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sendto(raw, &frame, sizeof frame, 0, (struct sockaddr *)&ll, sizeof ll),
                         (ssize_t)sizeof frame);
    assert_true(ts_poll(s_drops_grew, &in_arp, 5000));
    close(raw);
    char *neigh = sh_out("ip -n %s neigh show %s", f->netns, b.lease.ip);
    assert_lacks(neigh, a.lease.mac);
    free(neigh);

    // Receiving as B: with the namespace's neighbour cache empty, the
    // host's ARP request for B's address reaches B only (A, which would
    // answer it, never sees it), so the connection goes to B.
    assert_int_equal(sh("ip -n %s neigh flush dev %s", f->netns, f->bridge), 0);
    assert_int_equal(s_connect(b.lease.ip, 8080, 5000), 0);
    assert_int_equal(s_accepted(lb, NULL), 1);
    assert_int_equal(s_accepted(la, NULL), 0);
    neigh = sh_out("ip -n %s neigh show %s", f->netns, b.lease.ip);
    assert_has(neigh, b.lease.mac);
    free(neigh);

    // Even a frame for B's address sent to A's MAC (as if the cache had
    // been poisoned) is dropped at A's port: A's socket, which would take
    // it (A holds B's address), gets nothing.
    int a_any = s_udp(a.ns, "0.0.0.0", 7000);
    assert_int_equal(sh("ip -n %s neigh replace %s lladdr %s dev %s nud permanent", f->netns,
                        b.lease.ip, a.lease.mac, f->bridge),
                     0);
    drops_wait_t out_ip = s_drops_mark(f->net, s_out_ip);
    s_sendto(host, b.lease.ip, 7000, "for-b");
    assert_true(ts_poll(s_drops_grew, &out_ip, 5000));
    assert_int_equal(s_recv(a_any, buf, sizeof buf, &from, 0), -1);
    assert_int_equal(sh("ip -n %s neigh del %s dev %s", f->netns, b.lease.ip, f->bridge), 0);
    close(a_any);

    // A wearing B's MAC: its frames (the ARP for the gateway its kernel
    // sends first, as changing the MAC flushed its neighbours) are dropped
    // before the bridge learns that MAC on A's port, so B's traffic still
    // finds B.
    assert_int_equal(sh("ip -n %s link set eth0 address %s", a.ns, b.lease.mac), 0);
    drops_wait_t in_any = s_drops_mark(f->net, s_in_any);
    s_sendto(a_own, host_addr, 9999, "wrong-mac");
    assert_true(ts_poll(s_drops_grew, &in_any, 5000));
    char *fdb = sh_out("bridge -n %s fdb show br %s", f->netns, f->bridge);
    char learned[64];
    snprintf(learned, sizeof learned, "%s dev %s", b.lease.mac, a.lease.tap);
    assert_lacks(fdb, learned);
    free(fdb);
    assert_int_equal(s_connect(b.lease.ip, 8080, 5000), 0);
    assert_int_equal(s_accepted(lb, NULL), 1);
    assert_int_equal(s_accepted(la, NULL), 0);

    // B keeps working both ways; nothing forged ever reached the host.
    int b_own = s_udp(b.ns, b.lease.ip, 0);
    s_sendto(b_own, host_addr, 9999, "from-b");
    assert_true(s_recv(host, buf, sizeof buf, &from, 5000) > 0);
    assert_string_equal(buf, "from-b");
    inet_ntop(AF_INET, &from.sin_addr, src, sizeof src);
    assert_string_equal(src, b.lease.ip);
    assert_int_equal(s_recv(host, buf, sizeof buf, &from, 0), -1);
    close(a_own);
    close(a_as_b);
    close(b_own);
    close(host);
    close(la);
    close(lb);
}

// An "outside" host: its own namespace behind a veth from the root
// namespace, on a /30 of 198.51.100.0/24 guarded by an unreachable route.
static void s_outside(fx_t *f, char root_side[INET_ADDRSTRLEN], char far_side[INET_ADDRSTRLEN])
{
    int base = 4 * ((getpid() + f->seq) % 64);
    snprintf(f->outside_net, sizeof f->outside_net, "198.51.100.%d/30", base);
    snprintf(root_side, INET_ADDRSTRLEN, "198.51.100.%d", base + 1);
    snprintf(far_side, INET_ADDRSTRLEN, "198.51.100.%d", base + 2);
    snprintf(f->outside_ns, sizeof f->outside_ns, "vout-%d-%d", getpid(), f->seq);
    snprintf(f->outside_link, sizeof f->outside_link, "vo%d-%d", getpid(), f->seq);
    assert_int_equal(
        sh("ip route add unreachable %s metric %d", f->outside_net, NET_FALLBACK_METRIC), 0);
    assert_int_equal(sh("ip netns add %s", f->outside_ns), 0);
    assert_int_equal(
        sh("ip link add %s type veth peer name eth0 netns %s", f->outside_link, f->outside_ns), 0);
    assert_int_equal(sh("ip addr add %s/30 dev %s && ip link set %s up", root_side, f->outside_link,
                        f->outside_link),
                     0);
    assert_int_equal(sh("ip -n %s addr add %s/30 dev eth0 && ip -n %s link set eth0 up && "
                        "ip -n %s link set lo up",
                        f->outside_ns, far_side, f->outside_ns, f->outside_ns),
                     0);
}

static void test_nat_masquerades_only_when_on(void **state)
{
    fx_t *f = *state;
    char root_side[INET_ADDRSTRLEN], far_side[INET_ADDRSTRLEN];
    s_outside(f, root_side, far_side);
    f->s.nat = true;
    f->net = s_net(f, &f->s);
    s_setup(f->net);
    char fwd[8];
    s_sysctl("/proc/sys/net/ipv4/ip_forward", fwd, sizeof fwd, NULL);
    assert_string_equal(fwd, "1"); // NAT turned forwarding on
    standin_t a;
    s_standin(f, f->net, "pod-a", &a);
    int far = s_udp(f->outside_ns, far_side, 7777);

    // NAT on: the outside host sees the root side's address, and its reply
    // finds the pod.
    int pod = s_udp(a.ns, a.lease.ip, 40001);
    s_sendto(pod, far_side, 7777, "hello");
    char buf[64], src[INET_ADDRSTRLEN];
    struct sockaddr_in from;
    assert_true(s_recv(far, buf, sizeof buf, &from, 5000) > 0);
    inet_ntop(AF_INET, &from.sin_addr, src, sizeof src);
    assert_string_equal(src, root_side);
    assert_int_equal(sendto(far, "back", 4, 0, (struct sockaddr *)&from, sizeof from), 4);
    struct sockaddr_in from2;
    assert_true(s_recv(pod, buf, sizeof buf, &from2, 5000) > 0);
    assert_string_equal(buf, "back");
    close(pod);

    // NAT off (the launcher restarted with it off): the table goes, and the
    // outside sees the pod's own address (forwarding stays on).
    net_destroy(&f->net);
    f->s.nat = false;
    f->net = s_net(f, &f->s);
    s_setup(f->net);
    assert_int_not_equal(sh("nft list table ip %s", f->nat_table), 0);
    pod = s_udp(a.ns, a.lease.ip, 40002); // a new flow: no conntrack entry from before
    s_sendto(pod, far_side, 7777, "plain");
    assert_true(s_recv(far, buf, sizeof buf, &from, 5000) > 0);
    assert_string_equal(buf, "plain");
    inet_ntop(AF_INET, &from.sin_addr, src, sizeof src);
    assert_string_equal(src, a.lease.ip);
    close(pod);
    close(far);
}

static void test_restarted_launcher_adopts_bridge_taps_and_leases(void **state)
{
    fx_t *f = *state;
    f->net = s_net(f, &f->s);
    s_setup(f->net);
    standin_t a;
    s_standin(f, f->net, "pod-a", &a);
    net_lease_t t;
    s_attach(f->net, "tap-pod", &t);
    char *before = sh_out("ip -n %s -o link show | cut -d: -f1-2 | sort", f->netns);
    net_destroy(&f->net); // the launcher goes away; nothing is torn down

    f->net = s_net(f, &f->s);
    s_setup(f->net);
    char *after = sh_out("ip -n %s -o link show | cut -d: -f1-2 | sort", f->netns);
    assert_string_equal(after, before); // same links, same ifindexes: nothing recreated
    char *set = sh_out("ip netns exec %s nft list set bridge vmlet_br0 ip_ok", f->netns);
    assert_has(set, a.lease.tap); // filter elements kept
    assert_has(set, t.tap);
    int lis = s_listen_in(a.ns, 8080);
    assert_int_equal(s_connect(a.lease.ip, 8080, 5000), 0); // the pod never noticed
    assert_int_equal(s_accepted(lis, NULL), 1);
    close(lis);

    char **uids;
    size_t n;
    vmlet_err_t err = {0};
    assert_int_equal(net_list(f->net, &uids, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_true((!strcmp(uids[0], "pod-a") && !strcmp(uids[1], "tap-pod")) ||
                (!strcmp(uids[1], "pod-a") && !strcmp(uids[0], "tap-pod")));
    net_list_free(uids, n);
    net_lease_t again;
    s_attach(f->net, "pod-a", &again);
    assert_string_equal(again.ip, a.lease.ip);
    assert_string_equal(again.mac, a.lease.mac);
    s_detach(f->net, "tap-pod");
    assert_int_not_equal(sh("ip -n %s link show %s", f->netns, t.tap), 0);
    assert_int_equal(net_list(f->net, &uids, &n, &err), 0);
    assert_int_equal(n, 1);
    net_list_free(uids, n);
    free(before);
    free(after);
    free(set);
}

static void test_bridge_without_namespace(void **state)
{
    fx_t *f = *state;
    snprintf(f->bridge, sizeof f->bridge, "vmtb%d", getpid());
    f->s.netns = "";
    f->s.bridge = f->bridge;
    f->s.nat = true;
    netfilter_table_name("vmlet_nat_", f->bridge, f->nat_table, sizeof f->nat_table);
    f->net = s_net(f, &f->s);
    // The stand-in's veth lives in the root namespace here.
    snprintf(f->netns, sizeof f->netns, "vmlet-t%d-%d-none", getpid(), f->seq);
    s_setup(f->net);
    s_setup(f->net);
    assert_string_equal(net_netns_path(f->net), "");
    char *routes = sh_out("ip route show %s", f->cidr);
    char dev[64];
    snprintf(dev, sizeof dev, "dev %s", f->bridge);
    assert_has(routes, dev);
    assert_has(routes, "unreachable");
    free(routes);

    standin_t a;
    memset(&a, 0, sizeof a);
    snprintf(a.ns, sizeof a.ns, "vtst-%d-%d-0", getpid(), f->seq);
    snprintf(f->standins[f->n_standins++], sizeof f->standins[0], "%s", a.ns);
    char tap[IFNAMSIZ];
    net_tap_name("pod-a", tap);
    assert_int_equal(sh("ip netns add %s", a.ns), 0);
    assert_int_equal(sh("ip link add %s type veth peer name eth0 netns %s", tap, a.ns), 0);
    s_attach(f->net, "pod-a", &a.lease);
    assert_string_equal(a.lease.netns_path, "");
    assert_int_equal(sh("ip -n %s link set eth0 address %s up && ip -n %s addr add %s/%d dev eth0 "
                        "&& ip -n %s route add default via %s",
                        a.ns, a.lease.mac, a.ns, a.lease.ip, a.lease.prefix_len, a.ns,
                        a.lease.gateway),
                     0);
    int lis = s_listen_in(a.ns, 8080);
    assert_int_equal(s_connect(a.lease.ip, 8080, 5000), 0);
    assert_int_equal(s_accepted(lis, NULL), 1);
    close(lis);

    vmlet_err_t err = {0};
    if (net_teardown(f->net, &err) < 0)
        fail_msg("teardown: %s", err.msg);
    char *after = sh_out("ip route show %s; ip link show %s; ip link show %s; nft list tables",
                         f->cidr, f->bridge, tap);
    assert_lacks(after, f->cidr);
    assert_lacks(after, "vmlet_vmtb");
    assert_lacks(after, f->nat_table);
    free(after);
}

static void test_bad_settings_are_refused_with_reasons(void **state)
{
    fx_t *f = *state;
    static const struct {
        const char *field, *value, *says;
    } cases[] = {
        {"cidr", "10.213.0.1/24", "did you mean 10.213.0.0/24"},
        {"cidr", "10.213.0.0/8", "/16 to /30"},
        {"gateway", "10.214.0.1", "outside"},
        {"bridge", "vtbridge", "must not start with \"vt\""},
        {"bridge", "a-name-far-too-long", "1-15 characters"},
        {"veth", "bad name", "1-15 characters"},
        {"link", "10.213.0.0/30", "overlaps"},
        {"owner", "", "owner"},
        {"netns", "a/b", "plain name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        net_settings_t s;
        net_settings_defaults(&s);
        s.owner = "launcher-a";
        s.pod_cidr = "10.213.0.0/24";
        const char *field = cases[i].field;
        if (!strcmp(field, "cidr"))
            s.pod_cidr = cases[i].value;
        else if (!strcmp(field, "gateway"))
            s.gateway = cases[i].value;
        else if (!strcmp(field, "bridge"))
            s.bridge = cases[i].value;
        else if (!strcmp(field, "veth"))
            s.host_veth = cases[i].value;
        else if (!strcmp(field, "link"))
            s.link_cidr = cases[i].value;
        else if (!strcmp(field, "owner"))
            s.owner = cases[i].value;
        else if (!strcmp(field, "netns"))
            s.netns = cases[i].value;
        vmlet_err_t err = {0};
        net_t *n = net_new(&s, f->store, f->log, &err);
        if (n)
            fail_msg("%s=%s accepted", field, cases[i].value);
        if (!strstr(err.msg, cases[i].says))
            fail_msg("%s=%s: \"%s\" does not say \"%s\"", field, cases[i].value, err.msg,
                     cases[i].says);
    }
    // A pod uid that could not be a Kubernetes uid never reaches Redis or a name.
    f->net = s_net(f, &f->s);
    s_setup(f->net);
    net_lease_t l;
    vmlet_err_t err = {0};
    assert_int_equal(net_attach(f->net, "pod a\"; flush ruleset", &l, &err), -1);
    assert_has(err.msg, "pod uid");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_setup_is_idempotent_and_teardown_removes_everything,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ipam_two_launchers_never_share_an_address, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_ipam_exhaustion_and_reserved_addresses, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_attach_makes_a_real_tap_and_the_host_reaches_a_pod,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_a_vm_can_neither_send_nor_receive_as_another, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_nat_masquerades_only_when_on, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_restarted_launcher_adopts_bridge_taps_and_leases,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bridge_without_namespace, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_settings_are_refused_with_reasons, fx_setup,
                                        fx_teardown),
    };
    if (getenv("VMLET_TEST_FILTER"))
        cmocka_set_test_filter(getenv("VMLET_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
