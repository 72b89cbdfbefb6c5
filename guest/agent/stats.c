// The guest's resource figures (StatsReply): the whole VM from /proc/stat,
// /proc/meminfo, /proc/vmstat and eth0's counters, the pod's writable disk
// by statvfs, and each running container from the processes of its PID
// namespace. One sample reads a handful of small files per process, well
// under a millisecond of the guest's CPU for a pod's few dozen processes.
#include "stats.h"

#include "vmlet/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

// --- parsers ---------------------------------------------------------------------------

// The value after "key" at the start of a line of text (key includes its
// separator, "MemTotal:" or "pgfault "). Returns true when found.
static bool s_field(const char *text, const char *key, uint64_t *value)
{
    size_t klen = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, klen) != 0)
            continue;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p + klen, &end, 10);
        if (end == p + klen || errno)
            return false;
        *value = v;
        return true;
    }
    return false;
}

int stats_parse_proc_stat(const char *text, uint64_t *used_ns, uint32_t *cpus)
{
    *used_ns = 0;
    *cpus = 0;
    bool seen = false;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, "cpu", 3) != 0)
            continue;
        if (p[3] >= '0' && p[3] <= '9') {
            (*cpus)++;
            continue;
        }
        if (p[3] != ' ' || seen)
            continue;
        // user nice system idle iowait irq softirq steal guest guest_nice:
        // guest time is already in user and nice; steal is time the host
        // did not give the guest, so not CPU the pod used.
        unsigned long long f[8] = {0};
        int n = sscanf(p + 3, "%llu %llu %llu %llu %llu %llu %llu %llu", &f[0], &f[1], &f[2], &f[3],
                       &f[4], &f[5], &f[6], &f[7]);
        if (n < 4)
            return -1;
        *used_ns = (uint64_t)(f[0] + f[1] + f[2] + f[5] + f[6]) * STATS_NS_PER_TICK;
        seen = true;
    }
    return seen ? 0 : -1;
}

int stats_parse_meminfo(const char *text, stats_meminfo_t *m)
{
    memset(m, 0, sizeof *m);
    if (!s_field(text, "MemTotal:", &m->total) || !s_field(text, "MemFree:", &m->free))
        return -1;
    // Older kernels lack MemAvailable: then free is what is surely available.
    if (!s_field(text, "MemAvailable:", &m->available))
        m->available = m->free;
    s_field(text, "Inactive(file):", &m->inactive_file);
    s_field(text, "AnonPages:", &m->anon);
    m->total *= 1024, m->free *= 1024, m->available *= 1024; // meminfo says kB
    m->inactive_file *= 1024, m->anon *= 1024;
    return 0;
}

int stats_parse_vmstat(const char *text, uint64_t *pgfault, uint64_t *pgmajfault)
{
    *pgfault = *pgmajfault = 0;
    if (!s_field(text, "pgfault ", pgfault))
        return -1;
    s_field(text, "pgmajfault ", pgmajfault);
    return 0;
}

int stats_parse_pid_stat(const char *text, stats_proc_t *p)
{
    // "pid (comm) state ppid ...": comm is the process's to choose, so the
    // fields start after the last ')'.
    const char *close = strrchr(text, ')');
    if (!close)
        return -1;
    unsigned long long utime, stime;
    long long cutime, cstime;
    // Fields 3..17: state ppid pgrp session tty_nr tpgid flags minflt
    // cminflt majflt cmajflt utime stime cutime cstime.
    int n = sscanf(close + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
                   &utime, &stime, &cutime, &cstime);
    if (n != 4 || cutime < 0 || cstime < 0)
        return -1;
    p->ticks = utime + stime + (uint64_t)cutime + (uint64_t)cstime;
    return 0;
}

int stats_parse_statm(const char *text, uint64_t *resident, uint64_t *shared)
{
    unsigned long long size, res, shr;
    if (sscanf(text, "%llu %llu %llu", &size, &res, &shr) != 3 || shr > res)
        return -1;
    *resident = res;
    *shared = shr;
    return 0;
}

void stats_memory_figures(const stats_meminfo_t *m, uint64_t *usage, uint64_t *working_set,
                          uint64_t *rss)
{
    *usage = m->total > m->free ? m->total - m->free : 0;
    *working_set = *usage > m->inactive_file ? *usage - m->inactive_file : 0;
    *rss = m->anon;
}

// --- sampling --------------------------------------------------------------------------

static ssize_t s_read_at(int dirfd, const char *path, char *buf, size_t cap)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n;
    size_t len = 0;
    while (len + 1 < cap &&
           ((n = read(fd, buf + len, cap - 1 - len)) > 0 || (n < 0 && errno == EINTR)))
        len += n > 0 ? (size_t)n : 0;
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

static bool s_read_u64(const char *path, uint64_t *v)
{
    char buf[32];
    if (s_read_at(AT_FDCWD, path, buf, sizeof buf) <= 0)
        return false;
    *v = strtoull(buf, NULL, 10);
    return true;
}

static void s_whole_guest(Vmlet__StatsReply *r)
{
    char buf[16384]; // /proc/vmstat is about 5 KiB; /proc/stat's cpu lines come first
    if (s_read_at(AT_FDCWD, "/proc/stat", buf, sizeof buf) > 0 &&
        stats_parse_proc_stat(buf, &r->cpu_ns, &r->cpus) == 0)
        r->has_cpu_ns = r->has_cpus = 1;
    stats_meminfo_t m;
    if (s_read_at(AT_FDCWD, "/proc/meminfo", buf, sizeof buf) > 0 &&
        stats_parse_meminfo(buf, &m) == 0) {
        r->has_memory_total_bytes = r->has_memory_available_bytes = 1;
        r->has_memory_usage_bytes = r->has_memory_working_set_bytes = r->has_memory_rss_bytes = 1;
        r->memory_total_bytes = m.total;
        r->memory_available_bytes = m.available;
        stats_memory_figures(&m, &r->memory_usage_bytes, &r->memory_working_set_bytes,
                             &r->memory_rss_bytes);
    }
    if (s_read_at(AT_FDCWD, "/proc/vmstat", buf, sizeof buf) > 0 &&
        stats_parse_vmstat(buf, &r->page_faults, &r->major_page_faults) == 0)
        r->has_page_faults = r->has_major_page_faults = 1;
}

static void s_network(Vmlet__StatsReply *r)
{
    static const char dir[] = "/sys/class/net/eth0/statistics/";
    char path[96];
    uint64_t v[4];
    static const char *const names[4] = {"rx_bytes", "rx_errors", "tx_bytes", "tx_errors"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s%s", dir, names[i]);
        if (!s_read_u64(path, &v[i]))
            return; // no eth0 (a pod without network, or before PodSetup)
    }
    Vmlet__GuestNetStats *n = vmlet_xcalloc(1, sizeof *n);
    vmlet__guest_net_stats__init(n);
    n->name = vmlet_xstrdup("eth0");
    n->has_rx_bytes = n->has_rx_errors = n->has_tx_bytes = n->has_tx_errors = 1;
    n->rx_bytes = v[0], n->rx_errors = v[1], n->tx_bytes = v[2], n->tx_errors = v[3];
    r->network = n;
}

static void s_scratch(Vmlet__StatsReply *r, const char *dir)
{
    struct statvfs s;
    if (!dir || statvfs(dir, &s) < 0)
        return;
    Vmlet__GuestFsStats *f = vmlet_xcalloc(1, sizeof *f);
    vmlet__guest_fs_stats__init(f);
    f->has_capacity_bytes = f->has_available_bytes = f->has_used_bytes = 1;
    f->has_inodes = f->has_inodes_free = f->has_inodes_used = 1;
    f->capacity_bytes = (uint64_t)s.f_blocks * s.f_frsize;
    f->available_bytes = (uint64_t)s.f_bavail * s.f_frsize;
    f->used_bytes = (uint64_t)(s.f_blocks - s.f_bfree) * s.f_frsize;
    f->inodes = s.f_files;
    f->inodes_free = s.f_ffree;
    f->inodes_used = s.f_files > s.f_ffree ? s.f_files - s.f_ffree : 0;
    r->scratch = f;
}

// A container's processes are those in its PID namespace, matched by the
// inode of /proc/<pid>/ns/pid. That holds where a parent tree does not:
// exec sessions (kubectl exec) are children of the agent yet join the
// namespace, and a double-forked daemon is reparented to the namespace's
// PID 1 (or to the agent, were that gone), while its namespace stays. It
// costs one stat per process, and the figures of the rest are read only
// for matches. CPU time includes cutime/cstime, so work of processes
// already reaped inside the container still counts; an exec session's
// parent is the agent, so its time leaves the sum when it ends (the host
// treats a drop as no usage).
static void s_containers(Vmlet__StatsReply *r, const stats_container_t *cs, size_t n)
{
    if (!n)
        return;
    ino_t *ns = vmlet_xcalloc(n, sizeof *ns);
    Vmlet__GuestContainerStats **out = vmlet_xcalloc(n, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        char path[64];
        struct stat st;
        snprintf(path, sizeof path, "/proc/%d/ns/pid", cs[i].pid);
        ns[i] = cs[i].pid > 0 && stat(path, &st) == 0 ? st.st_ino : 0;
        out[i] = vmlet_xcalloc(1, sizeof *out[i]);
        vmlet__guest_container_stats__init(out[i]);
        out[i]->name = vmlet_xstrdup(cs[i].name);
        out[i]->has_instance = out[i]->has_cpu_ns = out[i]->has_processes = 1;
        out[i]->has_rss_bytes = out[i]->has_working_set_bytes = 1;
        out[i]->instance = cs[i].instance;
    }
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    DIR *proc = opendir("/proc");
    struct dirent *e;
    while (proc && (e = readdir(proc))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        // One fstatat per process, the directory opened only for a match:
        // most of a guest's processes are kernel threads of no container.
        char nspath[sizeof e->d_name + 8];
        struct stat st;
        snprintf(nspath, sizeof nspath, "%s/ns/pid", e->d_name);
        if (fstatat(dirfd(proc), nspath, &st, 0) < 0)
            continue; // gone meanwhile
        size_t k;
        for (k = 0; k < n && !(ns[k] && ns[k] == st.st_ino); k++)
            ;
        if (k == n)
            continue;
        int pfd = openat(dirfd(proc), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pfd < 0)
            continue;
        char buf[1024];
        stats_proc_t pt;
        uint64_t res, shr;
        if (s_read_at(pfd, "stat", buf, sizeof buf) > 0 && stats_parse_pid_stat(buf, &pt) == 0) {
            out[k]->cpu_ns += pt.ticks * STATS_NS_PER_TICK;
            out[k]->processes++;
            if (s_read_at(pfd, "statm", buf, sizeof buf) > 0 &&
                stats_parse_statm(buf, &res, &shr) == 0) {
                // Shared pages are counted in each process that maps them:
                // an estimate above the truth when a container's processes
                // share a lot (the kubelet's cgroup figure has no such
                // double count, but a PID namespace is what is known here).
                out[k]->working_set_bytes += res * page;
                out[k]->rss_bytes += (res - shr) * page;
            }
        }
        close(pfd);
    }
    if (proc)
        closedir(proc);
    r->containers = out;
    r->n_containers = n;
    free(ns);
}

void stats_sample(Vmlet__StatsReply *r, const stats_container_t *containers, size_t n,
                  const char *scratch_dir)
{
    struct timespec c0, c1, up;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    clock_gettime(CLOCK_BOOTTIME, &up);
    r->has_uptime_ns = 1;
    r->uptime_ns = (int64_t)up.tv_sec * 1000000000 + up.tv_nsec;
    s_whole_guest(r);
    s_network(r);
    s_scratch(r, scratch_dir);
    s_containers(r, containers, n);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    r->has_sample_cpu_ns = 1;
    r->sample_cpu_ns =
        (uint64_t)((c1.tv_sec - c0.tv_sec) * 1000000000LL + (c1.tv_nsec - c0.tv_nsec));
}

void stats_reply_clear(Vmlet__StatsReply *r)
{
    if (r->network)
        free(r->network->name);
    free(r->network);
    free(r->scratch);
    for (size_t i = 0; i < r->n_containers; i++) {
        free(r->containers[i]->name);
        free(r->containers[i]);
    }
    free(r->containers);
    r->network = NULL, r->scratch = NULL, r->containers = NULL, r->n_containers = 0;
}
