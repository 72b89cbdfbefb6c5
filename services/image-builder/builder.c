// image-builder: requests in, answers out, pulls on threads (see builder.h).
#include "builder_internal.h"

#include "vmlet/fsutil.h"
#include "vmlet/pb.h"
#include "vmlet/quantity.h"
#include "vmlet/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OPT(field) offsetof(builder_settings_t, field)
const vmlet_cfg_option_t builder_options[] = {
    {"cache-dir", VMLET_CFG_STRING, "/var/lib/vmlet/images", 0, 0, NULL, OPT(cache_dir),
     "where blobs and root filesystems are kept (blobs/, rootfs/)"},
    {"insecure-registries", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(insecure_registries),
     "registries spoken to over plain HTTP: host:port,host2"},
    {"ca-file", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(ca_file),
     "extra CA certificates to trust for registries (PEM)"},
    {"parallel-blobs", VMLET_CFG_INT, "4", 1, 64, NULL, OPT(parallel_blobs),
     "layers of one image fetched at once"},
    {"retries", VMLET_CFG_INT, "4", 0, 20, NULL, OPT(retries),
     "attempts after the first on 429, 5xx and broken transfers"},
    {"max-download-rate", VMLET_CFG_STRING, "0", 0, 0, NULL, OPT(max_download_rate),
     "bytes per second per transfer (a quantity: 20Mi); 0: unlimited"},
    {"disk-budget", VMLET_CFG_STRING, "20Gi", 0, 0, NULL, OPT(disk_budget),
     "the cache is kept under this; images pods use are never removed"},
    {"max-image-size", VMLET_CFG_STRING, "8Gi", 0, 0, NULL, OPT(max_image_size),
     "an image's files together may not be larger (decompression bombs)"},
    {"max-file-size", VMLET_CFG_STRING, "4Gi", 0, 0, NULL, OPT(max_file_size),
     "one file of an image may not be larger"},
    {"max-entries", VMLET_CFG_INT, "2000000", 1, 100000000, NULL, OPT(max_entries),
     "files, directories and links an image may have"},
    {"progress-interval", VMLET_CFG_DURATION, "1s", 50, 60000, NULL, OPT(progress_interval_ms),
     "ImagePullProgress is sent at most this often per pull"},
    {"gc-interval", VMLET_CFG_DURATION, "5m", 1000, 86400000, NULL, OPT(gc_interval_ms),
     "how often the cache is checked against its budget"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct {
    vmlet_service_t *service;
    const builder_settings_t *settings;
    vmlet_log_t *log;
    zloop_t *loop;
    vmlet_store_t *store;
    char blob_dir[PATH_MAX], rootfs_dir[PATH_MAX];
    pull_config_t pull_config;
    int pipe[2];
    zmq_pollitem_t pipe_item;
    int gc_timer;
    int64_t budget;
    zhashx_t *pulls; // normalised reference -> pull_t (under way)
    int64_t last_progress_ms;
    vmlet_metric_t *ready_warm, *ready_pulled, *failed, *pull_seconds, *gc_freed;
    vmlet_metric_t *requests, *bytes, *retries;
} builder_t;

// --- answers ------------------------------------------------------------------------

static void s_publish(builder_t *self, vmlet_envelope_t *env)
{
    vmlet_err_t err = {0};
    if (vmlet_bus_publish(vmlet_service_publisher(self->service), env, &err) < 0)
        vmlet_log_warn(self->log, NULL, "%s", err.msg);
}

static void s_failed(builder_t *self, const char *image, const Vmlet__PodRef *pod,
                     const char *reason, bool retryable, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void s_failed(builder_t *self, const char *image, const Vmlet__PodRef *pod,
                     const char *reason, bool retryable, const char *fmt, ...)
{
    char message[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    Vmlet__ImageFailed f = VMLET__IMAGE_FAILED__INIT;
    f.image = (char *)image;
    f.reason = (char *)reason;
    f.message = message;
    PB_SET(&f, retryable, retryable);
    f.requested_by = (Vmlet__PodRef *)pod;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_IMAGE_FAILED;
    env.image_failed = &f;
    s_publish(self, &env);
    vmlet_counter_inc(self->failed);
    vmlet_log_info(self->log, VMLET_KV({"image", image}, {"reason", reason}), "%s", message);
}

static void s_ready(builder_t *self, const char *image, const char *reference,
                    const index_entry_t *entry)
{
    Vmlet__ImageReady r = VMLET__IMAGE_READY__INIT;
    r.image = (char *)image;
    r.reference = (char *)reference;
    r.digest = (char *)entry->digest;
    r.rootfs_path = (char *)entry->rootfs;
    r.config = entry->config;
    PB_SET(&r, size_bytes, entry->size);
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_IMAGE_READY;
    env.image_ready = &r;
    s_publish(self, &env);
}

// --- requests -----------------------------------------------------------------------

// Answers at once from the index, the pull policy or the back-off; returns
// false when a pull is needed.
static bool s_answer_now(builder_t *self, const Vmlet__ImageRequest *req,
                         const vmlet_image_ref_t *ref)
{
    const char *policy = req->pull_policy ? req->pull_policy : "IfNotPresent";
    index_entry_t entry;
    vmlet_err_t err = {0};
    int found = strcmp(policy, "Always") == 0 && !ref->digest
                    ? 0 // a tag may have moved: ask the registry
                    : index_lookup(self->store, ref->normalized, &entry, &err);
    if (found == 1) {
        s_ready(self, req->image, ref->normalized, &entry);
        vmlet_counter_inc(self->ready_warm);
        index_entry_clear(&entry);
        return true;
    }
    if (strcmp(policy, "Never") == 0) {
        s_failed(self, req->image, req->requested_by, "ErrImageNeverPull", false,
                 "Container image \"%s\" is not present with pull policy of Never", req->image);
        return true;
    }
    backoff_state_t backoff;
    if (index_backoff_get(self->store, ref->normalized, &backoff, &err) == 1) {
        s_failed(self, req->image, req->requested_by, "ImagePullBackOff", true,
                 "Back-off pulling image \"%s\": %s", req->image, backoff.error);
        return true;
    }
    return false;
}

// The request's credentials for the image's registry, if any.
static const Vmlet__RegistryCredential *s_credential(const Vmlet__ImageRequest *req,
                                                     const vmlet_image_ref_t *ref)
{
    for (size_t i = 0; i < req->n_credentials; i++)
        if (req->credentials[i]->registry && strcmp(req->credentials[i]->registry, ref->domain) == 0)
            return req->credentials[i];
    return NULL;
}

static pull_t *s_new_pull(builder_t *self, const Vmlet__ImageRequest *req,
                          const vmlet_image_ref_t *ref)
{
    pull_t *pull = vmlet_xcalloc(1, sizeof *pull);
    pull->config = &self->pull_config;
    pull->image = vmlet_xstrdup(req->image);
    vmlet_image_ref_parse(req->image, &pull->ref, NULL); // parsed once already: cannot fail
    const Vmlet__RegistryCredential *cred = s_credential(req, ref);
    if (cred) {
        pull->username = vmlet_xstrdup(cred->username);
        pull->password = vmlet_xstrdup(cred->password);
        pull->identity_token = vmlet_xstrdup(cred->identity_token);
    }
    if (req->requested_by) {
        pull->requested_by = PB_NEW(Vmlet__PodRef, VMLET__POD_REF__INIT);
        pull->requested_by->uid = vmlet_xstrdup(req->requested_by->uid);
        pull->requested_by->namespace_ = vmlet_xstrdup(req->requested_by->namespace_);
        pull->requested_by->name = vmlet_xstrdup(req->requested_by->name);
    }
    pull->items = zlistx_new();
    zlistx_set_destructor(pull->items, (zlistx_destructor_fn *)zstr_free);
    zlistx_set_duplicator(pull->items, (zlistx_duplicator_fn *)strdup);
    return pull;
}

int builder_on_request(void *arg, const vmlet_envelope_t *env)
{
    builder_t *self = arg;
    const Vmlet__ImageRequest *req = env->image_request;
    const char *item = env->header ? env->header->message_id : NULL;
    vmlet_image_ref_t ref;
    vmlet_err_t err = {0};
    if (!req->image || vmlet_image_ref_parse(req->image, &ref, &err) < 0) {
        s_failed(self, req->image ? req->image : "", req->requested_by, "InvalidImageName", false,
                 "Failed to apply default image tag \"%s\": %s", req->image ? req->image : "",
                 err.msg);
        return 0;
    }
    if (s_answer_now(self, req, &ref)) {
        vmlet_image_ref_clear(&ref);
        return 0;
    }
    pull_t *pull = zhashx_lookup(self->pulls, ref.normalized);
    if (!pull) { // one pull per image, however many ask
        pull = s_new_pull(self, req, &ref);
        if (pull_start(pull, &err) < 0) {
            s_failed(self, req->image, req->requested_by, "ErrImagePull", true, "%s", err.msg);
            pull_destroy(&pull);
            vmlet_image_ref_clear(&ref);
            return 0;
        }
        zhashx_insert(self->pulls, ref.normalized, pull);
        vmlet_log_info(self->log, VMLET_KV({"image", ref.normalized}), "pulling");
    }
    if (item)
        zlistx_add_end(pull->items, (void *)item);
    vmlet_image_ref_clear(&ref);
    return item ? VMLET_WORK_PENDING : 0;
}

// --- pulls ending ----------------------------------------------------------------------

static Vmlet__ImageConfig *s_image_config(const registry_image_config_t *c)
{
    Vmlet__ImageConfig *out = PB_NEW(Vmlet__ImageConfig, VMLET__IMAGE_CONFIG__INIT);
    out->entrypoint = c->entrypoint, out->n_entrypoint = c->n_entrypoint;
    out->cmd = c->cmd, out->n_cmd = c->n_cmd;
    out->env = c->env, out->n_env = c->n_env;
    out->working_dir = c->working_dir;
    out->user = c->user;
    out->exposed_ports = c->exposed_ports, out->n_exposed_ports = c->n_exposed_ports;
    out->stop_signal = c->stop_signal;
    return out; // borrows c's strings: free the shell only
}

static void s_pull_succeeded(builder_t *self, pull_t *pull)
{
    Vmlet__ImageConfig *config = s_image_config(&pull->image_config);
    vmlet_err_t err = {0};
    if (index_record(self->store, pull, config, &err) < 0)
        vmlet_log_warn(self->log, VMLET_KV({"image", pull->ref.normalized}), "%s", err.msg);
    index_backoff_clear(self->store, pull->ref.normalized, &err);
    index_entry_t entry = {0};
    snprintf(entry.digest, sizeof entry.digest, "%s", pull->digest);
    snprintf(entry.rootfs, sizeof entry.rootfs, "%s", pull->rootfs);
    entry.size = pull->size;
    entry.config = config;
    s_ready(self, pull->image, pull->ref.normalized, &entry);
    free(config);
    vmlet_counter_inc(self->ready_pulled);
    vmlet_log_info(self->log, VMLET_KV({"image", pull->ref.normalized}, {"digest", pull->digest}),
                   "ready: %s", pull->rootfs);
}

static void s_pull_ended(builder_t *self, pull_t *pull)
{
    vmlet_counter_add(self->requests, (double)pull->stats.requests);
    vmlet_counter_add(self->bytes, (double)pull->stats.bytes);
    vmlet_counter_add(self->retries, (double)pull->stats.retries);
    vmlet_histogram_observe(self->pull_seconds, (double)(pull->ended_ms - pull->started_ms) / 1000);
    if (pull->rc == 0) {
        s_pull_succeeded(self, pull);
    } else {
        vmlet_err_t err = {0};
        index_backoff_failed(self->store, pull->ref.normalized, pull->err.msg, &err);
        s_failed(self, pull->image, pull->requested_by, "ErrImagePull", true, "%s",
                 pull->err.msg);
    }
    // Answered either way: a failure is recorded, and pods ask again.
    vmlet_bus_worker_t *worker = vmlet_service_worker(self->service);
    for (const char *item = zlistx_first(pull->items); item; item = zlistx_next(pull->items))
        vmlet_bus_worker_done(worker, item, true);
    zhashx_delete(self->pulls, pull->ref.normalized);
    pull_destroy(&pull);
}

static void s_progress(builder_t *self, const pull_report_t *r)
{
    int64_t now = vmlet_now_ms();
    if (now - self->last_progress_ms < self->settings->progress_interval_ms && r->done < r->total)
        return;
    self->last_progress_ms = now;
    Vmlet__ImagePullProgress p = VMLET__IMAGE_PULL_PROGRESS__INIT;
    p.image = r->pull->image;
    p.reference = r->pull->ref.normalized;
    p.requested_by = r->pull->requested_by;
    PB_SET(&p, bytes_done, r->done);
    PB_SET(&p, bytes_total, r->total);
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_IMAGE_PULL_PROGRESS;
    env.image_pull_progress = &p;
    s_publish(self, &env);
}

static int s_on_pipe(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    (void)item;
    builder_t *self = arg;
    pull_report_t r;
    while (read(self->pipe[0], &r, sizeof r) == (ssize_t)sizeof r) {
        if (r.kind == PULL_PROGRESS)
            s_progress(self, &r);
        else
            s_pull_ended(self, r.pull);
    }
    return 0;
}

// --- the cache ------------------------------------------------------------------------

static int s_on_gc(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    builder_t *self = arg;
    if (zhashx_size(self->pulls) > 0)
        return 0; // a pull's blobs are not in the index yet: next time
    vmlet_err_t err = {0};
    int64_t freed = gc_run(self->store, self->settings->cache_dir, self->budget, self->log, &err);
    if (freed < 0)
        vmlet_log_warn(self->log, NULL, "cache clean-up: %s", err.msg);
    vmlet_counter_add(self->gc_freed, freed > 0 ? (double)freed : 0);
    return 0;
}

// `vmletctl gc` (builder_gc_request.c), looked for every second, between pulls.
static int s_on_gc_request(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    builder_t *self = arg;
    if (zhashx_size(self->pulls) == 0)
        gc_request_serve(self->store, self->settings->cache_dir,
                         vmlet_service_settings(self->service)->instance, self->log, self->gc_freed);
    return 0;
}

static int s_mkdirs(builder_t *self, vmlet_err_t *err)
{
    const char *cache = self->settings->cache_dir;
    snprintf(self->blob_dir, sizeof self->blob_dir, "%s/blobs", cache);
    snprintf(self->rootfs_dir, sizeof self->rootfs_dir, "%s/rootfs", cache);
    const char *dirs[] = {cache, self->blob_dir, self->rootfs_dir};
    for (int i = 0; i < 3; i++)
        if (vmlet_mkdirs(dirs[i], 0755, err) < 0)
            return vmlet_err_wrap(err, "image cache (set --cache-dir to a writable place)");
    return 0;
}

static int s_sizes(builder_t *self, vmlet_err_t *err)
{
    const builder_settings_t *s = self->settings;
    int64_t rate, total, file;
    if (vmlet_quantity_value(s->max_download_rate, &rate, err) < 0)
        return vmlet_err_wrap(err, "setting --max-download-rate");
    if (vmlet_quantity_value(s->disk_budget, &self->budget, err) < 0)
        return vmlet_err_wrap(err, "setting --disk-budget");
    if (vmlet_quantity_value(s->max_image_size, &total, err) < 0)
        return vmlet_err_wrap(err, "setting --max-image-size");
    if (vmlet_quantity_value(s->max_file_size, &file, err) < 0)
        return vmlet_err_wrap(err, "setting --max-file-size");
    self->pull_config = (pull_config_t){
        .registry = {.ca_file = s->ca_file[0] ? s->ca_file : NULL,
                     .insecure = s->insecure_registries,
                     .retries = (int)s->retries,
                     .max_bytes_per_sec = rate,
                     .parallel = (int)s->parallel_blobs},
        .limits = {(uint64_t)total, (uint64_t)file, (uint64_t)s->max_entries},
        .blob_dir = self->blob_dir,
        .rootfs_dir = self->rootfs_dir,
    };
    return 0;
}

static void s_metrics(builder_t *self)
{
    vmlet_metrics_t *m = vmlet_service_metrics(self->service);
    self->ready_warm = vmlet_metrics_counter(m, "vmlet_image_builder_ready_total",
                                             "Images answered ready, by how.", "from=\"cache\"");
    self->ready_pulled = vmlet_metrics_counter(m, "vmlet_image_builder_ready_total",
                                               "Images answered ready, by how.", "from=\"pull\"");
    self->failed = vmlet_metrics_counter(m, "vmlet_image_builder_failed_total",
                                         "ImageFailed answers.", NULL);
    self->gc_freed = vmlet_metrics_counter(m, "vmlet_image_builder_gc_freed_bytes_total",
                                           "Bytes the cache clean-up removed.", NULL);
    self->requests = vmlet_metrics_counter(m, "vmlet_image_builder_registry_requests_total",
                                           "Registry responses received.", NULL);
    self->bytes = vmlet_metrics_counter(m, "vmlet_image_builder_registry_bytes_total",
                                        "Bytes received from registries.", NULL);
    self->retries = vmlet_metrics_counter(m, "vmlet_image_builder_registry_retries_total",
                                          "Registry requests tried again.", NULL);
    static const double pull_bounds[] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
    self->pull_seconds = vmlet_metrics_histogram(
        m, "vmlet_image_builder_pull_seconds", "Time to pull and build an image.", NULL,
        pull_bounds, sizeof pull_bounds / sizeof pull_bounds[0]);
}

void *builder_start(vmlet_service_t *service, vmlet_err_t *err)
{
    builder_t *self = vmlet_xcalloc(1, sizeof *self);
    self->service = service;
    self->settings = vmlet_service_def(service)->settings;
    self->log = vmlet_service_log(service);
    self->loop = vmlet_service_loop(service);
    self->store = vmlet_service_store(service);
    self->pulls = zhashx_new();
    self->pipe[0] = self->pipe[1] = -1;
    s_metrics(self);
    if (s_mkdirs(self, err) < 0 || s_sizes(self, err) < 0 ||
        pipe2(self->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        if (!err->msg[0])
            vmlet_err_errno(err, errno, "pipe");
        builder_stop((void **)&self);
        return NULL;
    }
    self->pull_config.pipe_fd = self->pipe[1];
    self->pipe_item = (zmq_pollitem_t){NULL, self->pipe[0], ZMQ_POLLIN, 0};
    zloop_poller(self->loop, &self->pipe_item, s_on_pipe, self);
    self->gc_timer = zloop_timer(self->loop, (size_t)self->settings->gc_interval_ms, 0, s_on_gc, self);
    zloop_timer(self->loop, 1000, 0, s_on_gc_request, self); // the loop ends before stop
    vmlet_log_info(self->log, VMLET_KV({"cache", self->settings->cache_dir}), "image cache ready");
    return self;
}

void builder_stop(void **self_p)
{
    builder_t *self = *self_p;
    if (!self)
        return;
    if (self->gc_timer > 0)
        zloop_timer_end(self->loop, self->gc_timer);
    if (self->pipe[0] >= 0)
        zloop_poller_end(self->loop, &self->pipe_item);
    // Pulls still under way are let go: the process is ending, and its
    // work items go to another builder (their blobs so far stay cached).
    for (pull_t *p = zhashx_first(self->pulls); p; p = zhashx_next(self->pulls))
        pull_abandon(p);
    zhashx_destroy(&self->pulls);
    free(self);
    *self_p = NULL;
}
