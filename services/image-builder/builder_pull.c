// One image pull on a thread of its own: manifest, blobs, config, root
// filesystem (see builder_internal.h). It touches neither Redis nor the
// bus; it reports progress and its end over a pipe to the loop.
#include "builder_internal.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// A plain pipe, not a ZeroMQ socket: a thread still pulling when the
// service ends must not hold up the ZeroMQ context's shutdown.
static void s_report(pull_t *pull, pull_report_kind_t kind, int64_t done, int64_t total)
{
    pull_report_t r = {kind, pull, done, total};
    ssize_t ignored = write(pull->config->pipe_fd, &r, sizeof r);
    (void)ignored; // a full pipe only loses a progress report; DONE is retried below
}

static void s_on_progress(void *arg, int64_t done, int64_t total)
{
    s_report(arg, PULL_PROGRESS, done, total);
}

// The config blob from the cache, parsed.
static int s_read_config(pull_t *pull, const registry_manifest_t *m, vmlet_err_t *err)
{
    cleanup_free char *path = registry_blob_path(pull->config->blob_dir, m->config.digest);
    cleanup_fclose FILE *f = fopen(path, "r");
    if (!f)
        return vmlet_err_errno(err, errno, "image config %s", path);
    if (m->config.size < 0 || m->config.size > (16 << 20))
        return vmlet_err_set(err, "image config of %lld bytes is not believable",
                             (long long)m->config.size);
    cleanup_free char *json = vmlet_xmalloc((size_t)m->config.size + 1);
    size_t n = fread(json, 1, (size_t)m->config.size, f);
    json[n] = '\0';
    return registry_parse_config(json, n, &pull->image_config, err);
}

// Config first, then layers; blobs already cached are not fetched again.
static int s_fetch(pull_t *pull, registry_t *registry, const registry_cred_t *cred,
                   const registry_manifest_t *m)
{
    size_t n = m->n_layers + 1;
    registry_descriptor_t *all = vmlet_xcalloc(n, sizeof *all);
    all[0] = m->config;
    memcpy(all + 1, m->layers, m->n_layers * sizeof *all);
    int rc = registry_fetch_blobs(registry, &pull->ref, cred, all, n, pull->config->blob_dir,
                                  s_on_progress, pull, &pull->err);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(all[i].digest) + 1;
    pull->blobs = vmlet_xcalloc(len + 1, 1);
    for (size_t i = 0; i < n; i++)
        strcat(strcat(pull->blobs, i ? " " : ""), all[i].digest);
    free(all);
    return rc;
}

static int s_build(pull_t *pull, const registry_manifest_t *m)
{
    const char *hex = strchr(m->digest, ':') ? strchr(m->digest, ':') + 1 : m->digest;
    snprintf(pull->rootfs, sizeof pull->rootfs, "%s/%s.ext4", pull->config->rootfs_dir, hex);
    struct stat st;
    if (stat(pull->rootfs, &st) == 0) { // another tag of the same image
        pull->size = st.st_size;
        return 0;
    }
    rootfs_layer_t *layers = vmlet_xcalloc(m->n_layers ? m->n_layers : 1, sizeof *layers);
    char **paths = vmlet_xcalloc(m->n_layers ? m->n_layers : 1, sizeof *paths);
    for (size_t i = 0; i < m->n_layers; i++) {
        paths[i] = registry_blob_path(pull->config->blob_dir, m->layers[i].digest);
        layers[i] = (rootfs_layer_t){paths[i], m->layers[i].digest};
    }
    rootfs_stats_t stats = {0};
    int rc = rootfs_build(layers, m->n_layers, pull->rootfs, &pull->config->limits, &stats,
                          &pull->err);
    pull->size = (int64_t)stats.image_bytes;
    for (size_t i = 0; i < m->n_layers; i++)
        free(paths[i]);
    free(paths);
    free(layers);
    return rc;
}

static int s_pull(pull_t *pull)
{
    registry_cred_t cred = {pull->username, pull->password, pull->identity_token};
    registry_t *registry = registry_new(&pull->config->registry, NULL, NULL, &pull->err);
    if (!registry)
        return -1;
    registry_manifest_t m = {0};
    int rc = registry_get_manifest(registry, &pull->ref, &cred, &m, &pull->err);
    if (rc == 0) {
        snprintf(pull->digest, sizeof pull->digest, "%s", m.digest);
        rc = s_fetch(pull, registry, &cred, &m);
    }
    if (rc == 0)
        rc = s_read_config(pull, &m, &pull->err);
    if (rc == 0)
        rc = s_build(pull, &m);
    registry_manifest_clear(&m);
    registry_stats(registry, &pull->stats); // counted on the loop: metrics are not thread-safe
    registry_destroy(&registry);
    return rc;
}

static void *s_thread(void *arg)
{
    pull_t *pull = arg;
    pull->started_ms = vmlet_now_ms();
    pull->rc = s_pull(pull);
    pull->ended_ms = vmlet_now_ms();
    if (pull->rc < 0 && !pull->err.msg[0])
        vmlet_err_set(&pull->err, "pull failed");
    pull_report_t done = {PULL_DONE, pull, 0, 0};
    // The write end is non-blocking (progress may be dropped); the end may not.
    while (write(pull->config->pipe_fd, &done, sizeof done) < 0 &&
           (errno == EINTR || errno == EAGAIN))
        usleep(1000);
    return NULL;
}

int pull_start(pull_t *pull, vmlet_err_t *err)
{
    // The thread must not take the service's signals (its signalfd does).
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&pull->thread, NULL, s_thread, pull);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return vmlet_err_errno(err, rc, "starting a pull thread");
    return 0;
}

void pull_abandon(pull_t *pull)
{
    pthread_detach(pull->thread);
}

void pull_destroy(pull_t **pull_p)
{
    pull_t *pull = *pull_p;
    if (!pull)
        return;
    pthread_join(pull->thread, NULL);
    free(pull->image);
    vmlet_image_ref_clear(&pull->ref);
    if (pull->password)
        explicit_bzero(pull->password, strlen(pull->password));
    if (pull->identity_token)
        explicit_bzero(pull->identity_token, strlen(pull->identity_token));
    free(pull->username);
    free(pull->password);
    free(pull->identity_token);
    if (pull->requested_by)
        vmlet__pod_ref__free_unpacked(pull->requested_by, NULL);
    zlistx_destroy(&pull->items);
    registry_image_config_clear(&pull->image_config);
    free(pull->blobs);
    free(pull);
    *pull_p = NULL;
}
