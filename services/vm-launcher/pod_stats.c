// Sampling a pod's VM for `kubectl top` (pod_stats.h): the StatsRequest
// every --stats-interval, the logs' figures on the host, and the
// vmlet:stats:<uid> key, which expires after a few intervals so a dead
// launcher's samples vanish, and goes with the pod's VM.
#include "pod_stats.h"
#include "launcher_internal.h"

#include "vmlet/pb.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

// A sample stays valid for this many intervals: one lost request does not
// make a pod vanish from `kubectl top`, a dead launcher's pods do.
#define VALID_INTERVALS 3

struct pod_stats {
    int64_t next_ms; // monotonic: when to ask again
    uint64_t nonce;
    Vmlet__StatsReply *prev; // the last sample, for rates
};

void pod_stats_free(pod_vm_t *self)
{
    if (!self->stats)
        return;
    if (self->stats->prev)
        vmlet__stats_reply__free_unpacked(self->stats->prev, NULL);
    free(self->stats);
    self->stats = NULL;
}

void pod_stats_forget(pod_vm_t *self)
{
    pod_stats_free(self);
    freeReplyObject(vmlet_store_command(self->l->store, NULL, "DEL vmlet:stats:%s", self->uid));
}

void pod_stats_tick(pod_vm_t *self)
{
    if (!self->stats)
        self->stats = vmlet_xcalloc(1, sizeof *self->stats);
    pod_stats_t *st = self->stats;
    int64_t now = vmlet_now_ms();
    if (now < st->next_ms)
        return;
    Vmlet__StatsRequest req = VMLET__STATS_REQUEST__INIT;
    PB_SET(&req, nonce, ++st->nonce);
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_STATS_REQUEST;
    msg.stats_request = &req;
    if (pod_agent_send(self, &msg))
        st->next_ms = now + self->l->settings->stats_interval_ms;
}

// A container's CRI logs on the host: their bytes (this run's and the
// previous one's, with rotated files) and the file system they are on.
static void s_logs(const pod_vm_t *self, const char *container, Vmlet__FsStats *fs)
{
    const Vmlet__PodRef *ref = self->spec->pod;
    char dir[PATH_MAX];
    cri_log_path_for(dir, sizeof dir, self->l->settings->log_dir, ref->namespace_, ref->name,
                     self->uid, container, 0);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    uint64_t used = 0, files = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    struct stat st;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, 0) == 0 &&
            S_ISREG(st.st_mode)) {
            used += (uint64_t)st.st_blocks * 512;
            files++;
        }
    if (d)
        closedir(d);
    struct statvfs v;
    if (statvfs(self->l->settings->log_dir, &v) == 0) {
        PB_SET(fs, capacity_bytes, (uint64_t)v.f_blocks * v.f_frsize);
        PB_SET(fs, available_bytes, (uint64_t)v.f_bavail * v.f_frsize);
        PB_SET(fs, inodes, (uint64_t)v.f_files);
        PB_SET(fs, inodes_free, (uint64_t)v.f_ffree);
    }
    PB_SET(fs, used_bytes, used);
    PB_SET(fs, inodes_used, files);
}

void pod_stats_on_reply(pod_vm_t *self, const Vmlet__StatsReply *r)
{
    if (!self->stats || !self->spec || !self->spec->pod)
        return;
    launcher_t *l = self->l;
    const Vmlet__PodRef *ref = self->spec->pod;
    pod_stats_ctr_t *ctrs = vmlet_xcalloc(self->n_ctrs + 1, sizeof *ctrs);
    Vmlet__FsStats *logs = vmlet_xcalloc(self->n_ctrs + 1, sizeof *logs);
    for (size_t i = 0; i < self->n_ctrs; i++) {
        vmlet__fs_stats__init(&logs[i]);
        s_logs(self, self->ctrs[i].name, &logs[i]);
        ctrs[i] = (pod_stats_ctr_t){self->ctrs[i].name, self->ctrs[i].started_unix_ms, &logs[i]};
    }
    pod_stats_pod_t pod = {
        .uid = self->uid,
        .namespace_ = ref->namespace_,
        .name = ref->name,
        .launcher_id = l->id,
        .start_unix_ms = self->created_unix_ms,
        .sampled_unix_ms = vmlet_unix_ms(),
        .memory_limit_bytes = (uint64_t)self->size.memory_bytes,
        .ctrs = ctrs,
        .n_ctrs = self->n_ctrs,
    };
    size_t len;
    uint8_t *bytes = pod_stats_pack(&pod, self->stats->prev, r, &len);
    vmlet_err_t err = {0};
    redisReply *reply =
        vmlet_store_command(l->store, &err, "SET vmlet:stats:%s %b PX %lld", self->uid, bytes, len,
                            (long long)(VALID_INTERVALS * l->settings->stats_interval_ms));
    if (!reply)
        vmlet_log_warn(l->log, VMLET_KV({"pod", self->desc}), "stats: %s", err.msg);
    freeReplyObject(reply);
    vmlet_counter_inc(l->stats_samples);
    vmlet_counter_add(l->stats_guest_cpu, (double)r->sample_cpu_ns / 1e9);
    free(bytes);
    free(ctrs);
    free(logs);
    // Keep this sample for the next rate (a copy: the message is the caller's).
    size_t n = vmlet__stats_reply__get_packed_size(r);
    uint8_t *copy = vmlet_xmalloc(n + 1);
    vmlet__stats_reply__pack(r, copy);
    if (self->stats->prev)
        vmlet__stats_reply__free_unpacked(self->stats->prev, NULL);
    self->stats->prev = vmlet__stats_reply__unpack(NULL, n, copy);
    free(copy);
}
