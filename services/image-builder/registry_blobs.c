// Blobs into the content-addressed cache: several transfers at once, each
// streamed to a temporary file beside its place, checked against its digest
// and size, synced and renamed into place.
#include "registry_internal.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_PROGRESS_MS 100 // at most this often, and once at the end

typedef struct s_fetch s_fetch_t;

typedef struct {
    reg_job_t job;
    const registry_descriptor_t *desc;
    s_fetch_t *fetch;
    char *path; // dir/<alg>/<hex>
    char *temp; // path.partial.<random>, once opened
    int fd;
    EVP_MD_CTX *ctx;
    int64_t received;
    bool wanted; // not cached yet
} s_blob_t;

struct s_fetch {
    const registry_descriptor_t *descs;
    s_blob_t *blobs;
    size_t n;
    int64_t base; // bytes of blobs already in place
    int64_t total;
    int64_t last_ms, last_done;
    registry_progress_fn *progress;
    void *arg;
};

// --- the sink ----------------------------------------------------------------------

static bool s_open(s_blob_t *b)
{
    char random[17];
    vmlet_random_hex(random, 8);
    if (asprintf(&b->temp, "%s.partial.%s", b->path, random) < 0) {
        b->temp = NULL;
        vmlet_err_set(&b->job.err, "out of memory");
        return false;
    }
    b->fd = open(b->temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (b->fd < 0) {
        vmlet_err_errno(&b->job.err, errno, "create %s", b->temp);
        return false;
    }
    if (!b->ctx)
        b->ctx = EVP_MD_CTX_new();
    if (!b->ctx || !EVP_DigestInit_ex(b->ctx, reg_digest_md(b->desc->digest), NULL)) {
        vmlet_err_set(&b->job.err, "cannot start a digest");
        return false;
    }
    return true;
}

static bool s_write_all(int fd, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return false;
        data += w;
        n -= (size_t)w;
    }
    return true;
}

static bool s_on_data(reg_job_t *job, const char *data, size_t n)
{
    s_blob_t *b = job->sink_arg;
    if (b->received + (int64_t)n > b->desc->size) {
        vmlet_err_set(&job->err,
                      "size mismatch (more than the %lld bytes the manifest "
                      "says)",
                      (long long)b->desc->size);
        return false;
    }
    if (b->fd < 0 && !s_open(b))
        return false;
    if (!s_write_all(b->fd, data, n)) {
        vmlet_err_errno(&job->err, errno, "write %s", b->temp);
        return false;
    }
    EVP_DigestUpdate(b->ctx, data, n);
    b->received += (int64_t)n;
    return true;
}

static void s_on_restart(reg_job_t *job)
{
    s_blob_t *b = job->sink_arg;
    b->received = 0;
    if (b->fd < 0)
        return;
    if (ftruncate(b->fd, 0) < 0 || lseek(b->fd, 0, SEEK_SET) < 0) {
        close(b->fd); // the next write reopens a fresh file
        b->fd = -1;
        unlink(b->temp);
        free(b->temp);
        b->temp = NULL;
    }
    if (b->ctx)
        EVP_DigestInit_ex(b->ctx, reg_digest_md(b->desc->digest), NULL);
}

// Makes a rename into path's directory durable.
static int s_sync_dir(const char *path)
{
    cleanup_free char *copy = vmlet_xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

// Checked, synced and renamed into place, or refused.
static bool s_on_done(reg_job_t *job)
{
    s_blob_t *b = job->sink_arg;
    if (b->received != b->desc->size) {
        vmlet_err_set(&job->err, "size mismatch (got %lld bytes, the manifest says %lld)",
                      (long long)b->received, (long long)b->desc->size);
        return false;
    }
    if (b->fd < 0 && !s_open(b)) // an empty blob wrote nothing
        return false;
    char got[REG_DIGEST_MAX];
    reg_digest_final(b->ctx, got);
    if (strcmp(got, b->desc->digest) != 0) {
        vmlet_err_set(&job->err, "digest mismatch (got %s)", got);
        return false;
    }
    if (fsync(b->fd) < 0) {
        vmlet_err_errno(&job->err, errno, "fsync %s", b->temp);
        return false;
    }
    close(b->fd);
    b->fd = -1;
    if (rename(b->temp, b->path) < 0) {
        vmlet_err_errno(&job->err, errno, "rename %s to %s", b->temp, b->path);
        return false;
    }
    free(b->temp);
    b->temp = NULL;
    if (s_sync_dir(b->path) < 0) {
        vmlet_err_errno(&job->err, errno, "fsync the directory of %s", b->path);
        return false;
    }
    b->fetch->base += b->received;
    b->received = 0;
    return true;
}

static const reg_sink_t s_sink = {
    .on_data = s_on_data, .on_restart = s_on_restart, .on_done = s_on_done};

// --- progress --------------------------------------------------------------------

static void s_report(s_fetch_t *f, bool final)
{
    if (!f->progress)
        return;
    int64_t done = f->base, now = vmlet_now_ms();
    for (size_t i = 0; i < f->n; i++)
        done += f->blobs[i].received;
    if (done == f->last_done && !final)
        return;
    if (!final && now - f->last_ms < S_PROGRESS_MS && done != f->total)
        return;
    f->last_ms = now;
    f->last_done = done;
    f->progress(f->arg, done, f->total);
}

static void s_tick(void *arg)
{
    s_report(arg, false);
}

// --- preparing -------------------------------------------------------------------

static int s_mkdir(const char *path, vmlet_err_t *err)
{
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return vmlet_err_errno(err, errno, "create %s", path);
    return 0;
}

// dir and dir/<alg>, for the blob at path.
static int s_make_dirs(const char *dir, const char *path, vmlet_err_t *err)
{
    cleanup_free char *parent = vmlet_xstrdup(path);
    return s_mkdir(dir, err) < 0 || s_mkdir(dirname(parent), err) < 0 ? -1 : 0;
}

static bool s_cached(const s_blob_t *b)
{
    struct stat st;
    return stat(b->path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == b->desc->size;
}

static bool s_seen(const registry_descriptor_t *blobs, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (strcmp(blobs[j].digest, blobs[i].digest) == 0)
            return true;
    return false;
}

static int s_prepare_one(s_fetch_t *f, size_t i, const char *dir, const reg_job_t *proto,
                         const char *base, vmlet_err_t *err)
{
    s_blob_t *b = &f->blobs[i];
    const registry_descriptor_t *d = b->desc;
    if (!reg_digest_md(d->digest) || d->size < 0)
        return vmlet_err_set(err, "blob %.80s: bad digest or size",
                             d->digest ? d->digest : "(none)");
    if (s_seen(f->descs, i))
        return 0; // listed twice: one transfer
    f->total += d->size;
    b->path = registry_blob_path(dir, d->digest);
    if (s_cached(b)) {
        f->base += d->size;
        return 0;
    }
    if (s_make_dirs(dir, b->path, err) < 0)
        return -1;
    cleanup_free char *url = NULL;
    if (asprintf(&url, "%s/blobs/%s", base, d->digest) < 0) {
        url = NULL;
        return vmlet_err_set(err, "out of memory");
    }
    b->job = *proto;
    b->job.sink_arg = b;
    b->wanted = true;
    return reg_job_init(&b->job, url, err);
}

static void s_blob_clear(s_blob_t *b)
{
    if (b->fd >= 0)
        close(b->fd);
    if (b->temp)
        unlink(b->temp); // what failed or was cut short leaves nothing behind
    free(b->temp);
    free(b->path);
    EVP_MD_CTX_free(b->ctx);
    reg_job_clear(&b->job);
}

// --- fetching --------------------------------------------------------------------

static int s_run(registry_t *self, const vmlet_image_ref_t *ref, s_fetch_t *f, vmlet_err_t *err)
{
    reg_job_t **jobs = vmlet_xcalloc(f->n ? f->n : 1, sizeof *jobs);
    size_t k = 0;
    for (size_t i = 0; i < f->n; i++)
        if (f->blobs[i].wanted)
            jobs[k++] = &f->blobs[i].job;
    int rc = reg_run(self, jobs, k, self->parallel, s_tick, f, err);
    free(jobs);
    for (size_t i = 0; rc < 0 && i < f->n; i++)
        if (f->blobs[i].job.finished && f->blobs[i].job.rc < 0)
            return vmlet_err_wrap(err, "%s: blob %s", ref->normalized, f->blobs[i].desc->digest);
    if (rc < 0)
        return vmlet_err_wrap(err, "%s: blobs", ref->normalized);
    s_report(f, true);
    return 0;
}

int registry_fetch_blobs(registry_t *self, const vmlet_image_ref_t *ref,
                         const registry_cred_t *cred, const registry_descriptor_t *blobs, size_t n,
                         const char *dir, registry_progress_fn *progress, void *arg,
                         vmlet_err_t *err)
{
    cleanup_free char *base = reg_base_url(self, ref->domain);
    cleanup_free char *repo = NULL, *scope = NULL;
    if (!base || asprintf(&repo, "%s/v2/%s", base, ref->path) < 0 ||
        asprintf(&scope, "repository:%s:pull", ref->path) < 0)
        return vmlet_err_set(err, "%s: blobs: out of memory", ref->normalized);
    s_fetch_t f = {.descs = blobs, .n = n, .progress = progress, .arg = arg, .last_done = -1};
    f.blobs = vmlet_xcalloc(n ? n : 1, sizeof *f.blobs);
    for (size_t i = 0; i < n; i++)
        f.blobs[i] = (s_blob_t){.desc = &blobs[i], .fetch = &f, .fd = -1};
    const reg_job_t proto = {
        .domain = ref->domain, .scope = scope, .cred = cred, .challenge = true, .sink = &s_sink};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (s_prepare_one(&f, i, dir, &proto, repo, err) < 0)
            rc = vmlet_err_wrap(err, "%s", ref->normalized);
    if (rc == 0)
        rc = s_run(self, ref, &f, err);
    for (size_t i = 0; i < n; i++)
        s_blob_clear(&f.blobs[i]);
    free(f.blobs);
    return rc;
}
