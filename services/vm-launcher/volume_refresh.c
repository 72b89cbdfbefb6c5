// Live files volumes (see volume_refresh.h).
#include "volume_refresh.h"

#include "kube_objects.h"
#include "volumes.h"

#include "vmlet/pod_store.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_RENEW_PERCENT 80
#define TOKEN_RENEW_MAX_MS (24LL * 3600 * 1000)
#define TOKEN_EXPIRATION_DEFAULT 3600

static const char *const s_kinds[] = {"configMap", "secret", "downwardAPI", "projected"};
#define N_KINDS (sizeof s_kinds / sizeof s_kinds[0])

// What the guest has of one files volume.
typedef struct {
    char *name;
    uint8_t digest[VOLUME_DIGEST_LEN];
    bool known;       // digest is what the guest has
    char *last_error; // logged once until it changes
} vr_volume_t;

// A service account token a projected volume holds, until it is due.
typedef struct {
    char *key; // volume, audience, expiration, service account
    char *token;
    int64_t fetched_ms, expiration_s;
} vr_token_t;

typedef struct {
    char uid[64];
    Vmlet__PodSpec *spec; // the latest from Redis (new metadata), or NULL: the pod's own
    char spec_hash[64];
    const void *channel; // the agent connection the guest's content was sent on
    int64_t next_ms;
    vr_volume_t *vols;
    size_t n_vols;
    vr_token_t *tokens;
    size_t n_tokens;
} vr_pod_t;

struct volume_refresh {
    launcher_t *l;
    zhashx_t *pods; // uid -> vr_pod_t
    uint8_t key[32];
    vmlet_metric_t *updates[N_KINDS];
};

// --- pure pieces ----------------------------------------------------------------------

static int s_by_path(const void *a, const void *b)
{
    const Vmlet__GuestFile *fa = *(Vmlet__GuestFile *const *)a, *fb = *(Vmlet__GuestFile *const *)b;
    return strcmp(fa->path ? fa->path : "", fb->path ? fb->path : "");
}

void volume_digest(const uint8_t key[32], const Vmlet__FilesSource *files,
                   uint8_t out[VOLUME_DIGEST_LEN])
{
    Vmlet__GuestFile **sorted = vmlet_xcalloc(files->n_files + 1, sizeof *sorted);
    if (files->n_files) // an empty volume has no array (memcpy from NULL is undefined)
        memcpy(sorted, files->files, files->n_files * sizeof *sorted);
    qsort(sorted, files->n_files, sizeof *sorted, s_by_path);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, key, 32);
    for (size_t i = 0; i < files->n_files; i++) {
        const Vmlet__GuestFile *f = sorted[i];
        const char *path = f->path ? f->path : "";
        uint64_t head[2] = {f->has_mode ? f->mode : 0, f->has_content ? f->content.len : 0};
        EVP_DigestUpdate(ctx, path, strlen(path) + 1);
        EVP_DigestUpdate(ctx, head, sizeof head);
        if (head[1])
            EVP_DigestUpdate(ctx, f->content.data, f->content.len);
    }
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
    free(sorted);
}

bool volume_token_due(int64_t fetched_ms, int64_t expiration_s, int64_t now_ms)
{
    int64_t life_ms = (expiration_s > 0 ? expiration_s : TOKEN_EXPIRATION_DEFAULT) * 1000;
    int64_t renew_ms = life_ms / 100 * TOKEN_RENEW_PERCENT;
    if (renew_ms > TOKEN_RENEW_MAX_MS)
        renew_ms = TOKEN_RENEW_MAX_MS;
    return now_ms - fetched_ms >= renew_ms;
}

// --- per-pod state --------------------------------------------------------------------

static void s_wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void s_pod_free(void **item)
{
    vr_pod_t *p = *item;
    if (!p)
        return;
    if (p->spec)
        vmlet__pod_spec__free_unpacked(p->spec, NULL);
    for (size_t i = 0; i < p->n_vols; i++) {
        free(p->vols[i].name);
        free(p->vols[i].last_error);
    }
    free(p->vols);
    for (size_t i = 0; i < p->n_tokens; i++) {
        free(p->tokens[i].key);
        s_wipe_free(p->tokens[i].token);
    }
    free(p->tokens);
    free(p);
    *item = NULL;
}

static vr_pod_t *s_pod(volume_refresh_t *self, const pod_vm_t *pod)
{
    vr_pod_t *p = zhashx_lookup(self->pods, pod->uid);
    if (!p) {
        p = vmlet_xcalloc(1, sizeof *p);
        snprintf(p->uid, sizeof p->uid, "%s", pod->uid);
        // The first refresh somewhere in the second half of an interval:
        // pods a restarted launcher adopts all at once do not all ask the
        // API server in the same tick, every interval after.
        int64_t interval = self->l->settings->volume_refresh_interval_ms;
        uint32_t r = 0;
        vmlet_random_bytes(&r, sizeof r);
        p->next_ms = vmlet_now_ms() + interval / 2 + (int64_t)(r % (uint32_t)(interval / 2 + 1));
        zhashx_insert(self->pods, pod->uid, p);
    }
    return p;
}

static vr_volume_t *s_vol(vr_pod_t *p, const char *name)
{
    for (size_t i = 0; i < p->n_vols; i++)
        if (strcmp(p->vols[i].name, name) == 0)
            return &p->vols[i];
    p->vols = vmlet_xrealloc(p->vols, (p->n_vols + 1) * sizeof *p->vols);
    p->vols[p->n_vols] = (vr_volume_t){.name = vmlet_xstrdup(name)};
    return &p->vols[p->n_vols++];
}

// A pod whose guest takes WriteFiles now.
static bool s_live(const pod_vm_t *pod)
{
    return pod->state == PV_RUNNING && pod->setup_done && !pod->stop_requested && pod->spec &&
           pod->ch;
}

static bool s_has_files(const Vmlet__PodSpec *spec, bool metadata_only)
{
    for (size_t i = 0; i < spec->n_volumes; i++)
        if (volumes_kind(spec->volumes[i]) &&
            (!metadata_only || volumes_from_metadata(spec->volumes[i])))
            return true;
    return false;
}

// --- fetching, for volumes_build_one ------------------------------------------------------

typedef struct {
    volume_refresh_t *self;
    vr_pod_t *p;
    const pod_vm_t *pod;
    const char *volume;
} fetch_ctx_t;

static int s_fetch(void *ctx, const char *kind, const char *ns, const char *name,
                   object_data_t *out, vmlet_err_t *err)
{
    launcher_t *l = ((fetch_ctx_t *)ctx)->self->l;
    if (!l->kube)
        return vmlet_err_set(err, "vm-launcher has no API server to ask (set --kubeconfig)");
    return kube_objects_get(l->kube, kind, ns, name, out, err);
}

static void s_token_key(char *out, size_t cap, const char *volume, const char *sa,
                        const char *audience, int64_t expiration)
{
    snprintf(out, cap, "%s\n%s\n%s\n%lld", volume, sa, audience ? audience : "",
             (long long)expiration);
}

static vr_token_t *s_token_slot(vr_pod_t *p, const char *key)
{
    for (size_t i = 0; i < p->n_tokens; i++)
        if (strcmp(p->tokens[i].key, key) == 0)
            return &p->tokens[i];
    p->tokens = vmlet_xrealloc(p->tokens, (p->n_tokens + 1) * sizeof *p->tokens);
    p->tokens[p->n_tokens] = (vr_token_t){.key = vmlet_xstrdup(key)};
    return &p->tokens[p->n_tokens++];
}

// The cached token while it is good, else a new one (a TokenRequest).
static int s_token(void *ctx, const char *ns, const char *sa, const char *audience,
                   int64_t expiration, char **token, vmlet_err_t *err)
{
    fetch_ctx_t *c = ctx;
    launcher_t *l = c->self->l;
    char key[600];
    s_token_key(key, sizeof key, c->volume, sa, audience, expiration);
    vr_token_t *t = s_token_slot(c->p, key);
    int64_t now = vmlet_now_ms();
    if (t->token && !volume_token_due(t->fetched_ms, t->expiration_s, now)) {
        *token = vmlet_xstrdup(t->token);
        return 0;
    }
    if (!l->kube)
        return vmlet_err_set(err, "vm-launcher has no API server to ask (set --kubeconfig)");
    char *fresh = NULL;
    if (kube_objects_token(l->kube, ns, sa, audience, expiration, c->pod->spec->pod->name,
                           c->pod->uid, &fresh, err) < 0)
        return -1;
    s_wipe_free(t->token);
    t->token = vmlet_xstrdup(fresh);
    t->fetched_ms = now;
    t->expiration_s = expiration;
    *token = fresh;
    return 0;
}

// --- refreshing -----------------------------------------------------------------------

static void s_inputs(const launcher_t *l, const pod_vm_t *pod, const Vmlet__PodSpec *spec,
                     char *hostname, size_t cap, run_inputs_t *run)
{
    snprintf(hostname, cap, "%.63s",
             spec->hostname && *spec->hostname ? spec->hostname : spec->pod->name);
    *run = (run_inputs_t){
        .pod = spec,
        .container = spec->n_containers ? spec->containers[0] : NULL,
        .image = pod->n_ctrs > pod->n_init ? pod->images[pod->n_init].config : NULL,
        .pod_ip = pod->lease.ip,
        .host_ip = l->host_ip,
        .hostname = hostname,
        .vm_cpu_millis = pod->size.cpu_millis_limit,
        .vm_memory_bytes = pod->size.memory_bytes_limit,
    };
}

// Logs why a volume could not be read again, once until the reason changes
// (the kubelet keeps the last content; so does the guest).
static void s_failed(volume_refresh_t *self, const pod_vm_t *pod, vr_volume_t *v, const char *why)
{
    if (v->last_error && strcmp(v->last_error, why) == 0)
        return;
    free(v->last_error);
    v->last_error = vmlet_xstrdup(why);
    vmlet_log_warn(self->l->log, VMLET_KV({"pod", pod->desc}, {"volume", v->name}),
                   "keeping the last content: %s", why);
}

// Sends the volume's new content when it differs from what the guest has.
static void s_send_if_changed(volume_refresh_t *self, pod_vm_t *pod, vr_volume_t *v,
                              const char *kind, Vmlet__GuestVolume *gv)
{
    uint8_t digest[VOLUME_DIGEST_LEN];
    volume_digest(self->key, gv->files, digest);
    if (v->known && memcmp(digest, v->digest, sizeof digest) == 0)
        return;
    Vmlet__WriteFiles w = VMLET__WRITE_FILES__INIT;
    w.volume = v->name;
    w.files = gv->files->files;
    w.n_files = gv->files->n_files;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_WRITE_FILES;
    msg.write_files = &w;
    if (!pod_agent_send(pod, &msg))
        return; // the next refresh tries again
    memcpy(v->digest, digest, sizeof digest);
    v->known = true;
    for (size_t k = 0; k < N_KINDS; k++)
        if (strcmp(kind, s_kinds[k]) == 0)
            vmlet_counter_inc(self->updates[k]);
    vmlet_log_info(self->l->log, VMLET_KV({"pod", pod->desc}, {"volume", v->name}, {"kind", kind}),
                   "new content sent to the guest (%zu files)", w.n_files);
}

// Reads the pod's files volumes again (only those made from its metadata
// with metadata_only) and sends those that changed.
static void s_refresh(volume_refresh_t *self, pod_vm_t *pod, vr_pod_t *p, bool metadata_only)
{
    if (p->channel != pod->ch) { // a new connection: what went on the old one may be lost
        for (size_t i = 0; i < p->n_vols; i++)
            p->vols[i].known = false;
        p->channel = pod->ch;
    }
    const Vmlet__PodSpec *spec = p->spec ? p->spec : pod->spec;
    char hostname[64];
    run_inputs_t run;
    s_inputs(self->l, pod, spec, hostname, sizeof hostname, &run);
    fetch_ctx_t ctx = {self, p, pod, NULL};
    volume_inputs_t in = {.run = &run, .fetch = s_fetch, .token = s_token, .ctx = &ctx};
    for (size_t i = 0; i < spec->n_volumes && s_live(pod); i++) {
        const Vmlet__Volume *vol = spec->volumes[i];
        const char *kind = volumes_kind(vol);
        if (!kind || (metadata_only && !volumes_from_metadata(vol)))
            continue;
        vr_volume_t *v = s_vol(p, vol->name);
        ctx.volume = vol->name;
        Vmlet__GuestVolume *gv = NULL;
        run_problem_t problem = {0};
        vmlet_err_t err = {0};
        if (volumes_build_one(&in, vol, &gv, &problem, &err) < 0) {
            s_failed(self, pod, v, problem.reason[0] ? problem.message : err.msg);
            continue;
        }
        free(v->last_error);
        v->last_error = NULL;
        s_send_if_changed(self, pod, v, kind, gv);
        volumes_free_one(gv);
    }
}

// The pod's spec as Redis has it now, when its hash changed (new labels or
// annotations): kept for the volumes made from its metadata.
static void s_reload_spec(volume_refresh_t *self, const pod_vm_t *pod, vr_pod_t *p,
                          const char *hint)
{
    char hash[64] = "";
    vmlet_err_t err = {0};
    if (hint && *hint)
        snprintf(hash, sizeof hash, "%s", hint);
    else if (vmlet_pod_store_hash(self->l->store, pod->uid, hash, &err) < 0)
        return;
    if (strcmp(hash, p->spec_hash) == 0)
        return;
    Vmlet__PodSpec *spec = vmlet_pod_store_get(self->l->store, pod->uid, &err);
    if (!spec)
        return; // gone: pod_vm_desired stops the pod
    if (p->spec)
        vmlet__pod_spec__free_unpacked(p->spec, NULL);
    p->spec = spec;
    snprintf(p->spec_hash, sizeof p->spec_hash, "%s", hash);
}

void volume_refresh_tick(volume_refresh_t *self)
{
    launcher_t *l = self->l;
    // Pods that stop (or are gone) are forgotten; one being set up keeps
    // the baseline its PodSetup left.
    zlistx_t *gone = zlistx_new();
    for (vr_pod_t *p = zhashx_first(self->pods); p; p = zhashx_next(self->pods)) {
        pod_vm_t *pod = zhashx_lookup(l->pods, p->uid);
        if (!pod || pod->stop_requested || pod->state == PV_STOPPED || pod->state == PV_FAILED)
            zlistx_add_end(gone, p->uid);
    }
    for (const char *uid = zlistx_first(gone); uid; uid = zlistx_next(gone))
        zhashx_delete(self->pods, uid);
    zlistx_destroy(&gone);
    int64_t now = vmlet_now_ms();
    zlistx_t *due = zlistx_new();
    for (pod_vm_t *pod = zhashx_first(l->pods); pod; pod = zhashx_next(l->pods))
        if (s_live(pod) && s_has_files(pod->spec, false))
            zlistx_add_end(due, pod);
    for (pod_vm_t *pod = zlistx_first(due); pod; pod = zlistx_next(due)) {
        vr_pod_t *p = s_pod(self, pod);
        if (now < p->next_ms)
            continue;
        p->next_ms = now + l->settings->volume_refresh_interval_ms;
        s_reload_spec(self, pod, p, NULL);
        s_refresh(self, pod, p, false);
    }
    zlistx_destroy(&due);
}

void volume_refresh_pod_desired(volume_refresh_t *self, pod_vm_t *pod, const char *spec_hash)
{
    if (!s_live(pod) || !s_has_files(pod->spec, true))
        return;
    vr_pod_t *p = s_pod(self, pod);
    char before[sizeof p->spec_hash];
    snprintf(before, sizeof before, "%s", p->spec_hash);
    s_reload_spec(self, pod, p, spec_hash);
    if (strcmp(before, p->spec_hash) != 0)
        s_refresh(self, pod, p, true);
}

// Tokens the setup's projected volumes carry: kept as fetched now, so the
// first refresh does not ask for new ones.
static void s_seed_tokens(vr_pod_t *p, const pod_vm_t *pod, const Vmlet__Volume *vol,
                          const Vmlet__GuestVolume *gv)
{
    if (vol->source_case != VMLET__VOLUME__SOURCE_PROJECTED)
        return;
    const char *sa = pod->spec->service_account_name && *pod->spec->service_account_name
                         ? pod->spec->service_account_name
                         : "default";
    for (size_t s = 0; s < vol->projected->n_sources; s++) {
        const Vmlet__ServiceAccountTokenProjection *t =
            vol->projected->sources[s]->source_case ==
                    VMLET__VOLUME_PROJECTION__SOURCE_SERVICE_ACCOUNT_TOKEN
                ? vol->projected->sources[s]->service_account_token
                : NULL;
        int64_t exp =
            t && t->has_expiration_seconds ? t->expiration_seconds : TOKEN_EXPIRATION_DEFAULT;
        for (size_t f = 0; t && f < gv->files->n_files; f++) {
            const Vmlet__GuestFile *file = gv->files->files[f];
            if (!t->path || strcmp(file->path, t->path) != 0)
                continue;
            char key[600];
            s_token_key(key, sizeof key, vol->name, sa, t->audience, exp);
            vr_token_t *slot = s_token_slot(p, key);
            s_wipe_free(slot->token);
            slot->token = vmlet_xmalloc(file->content.len + 1);
            memcpy(slot->token, file->content.data, file->content.len);
            slot->token[file->content.len] = '\0';
            slot->fetched_ms = vmlet_now_ms();
            slot->expiration_s = exp;
        }
    }
}

void volume_refresh_setup_sent(volume_refresh_t *self, pod_vm_t *pod,
                               Vmlet__GuestVolume *const *volumes, size_t n)
{
    zhashx_delete(self->pods, pod->uid); // a setup sent again starts over
    vr_pod_t *p = s_pod(self, pod);
    p->channel = pod->ch;
    // No spec hash yet: pod->spec may be older than pod->spec_hash (a
    // running pod's spec is not reloaded), so the first refresh reads it.
    for (size_t i = 0; i < pod->spec->n_volumes; i++) {
        const Vmlet__Volume *vol = pod->spec->volumes[i];
        for (size_t g = 0; g < n && volumes_kind(vol); g++) {
            const Vmlet__GuestVolume *gv = volumes[g];
            if (strcmp(gv->name, vol->name) != 0 ||
                gv->source_case != VMLET__GUEST_VOLUME__SOURCE_FILES)
                continue;
            vr_volume_t *v = s_vol(p, vol->name);
            volume_digest(self->key, gv->files, v->digest);
            v->known = true;
            s_seed_tokens(p, pod, vol, gv);
        }
    }
}

// --- life ------------------------------------------------------------------------------

volume_refresh_t *volume_refresh_new(launcher_t *l)
{
    volume_refresh_t *self = vmlet_xcalloc(1, sizeof *self);
    self->l = l;
    self->pods = zhashx_new();
    zhashx_set_destructor(self->pods, s_pod_free);
    vmlet_random_bytes(self->key, sizeof self->key);
    vmlet_metrics_t *m = vmlet_service_metrics(l->service);
    for (size_t k = 0; k < N_KINDS; k++) {
        char labels[64];
        snprintf(labels, sizeof labels, "kind=\"%s\"", s_kinds[k]);
        self->updates[k] = vmlet_metrics_counter(
            m, "vmlet_launcher_volume_updates_total",
            "Files volumes whose new content went to a running pod's guest, by kind.", labels);
    }
    return self;
}

void volume_refresh_destroy(volume_refresh_t **self_p)
{
    volume_refresh_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy(&self->pods);
    explicit_bzero(self->key, sizeof self->key);
    free(self);
    *self_p = NULL;
}
