// vmlet-prober: settings, leases, bus handlers and the tick (see
// prober.h and prober_internal.h).
#include "ownership.h"
#include "prober_internal.h"

#include "vmlet/pod_store.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>

#define TICK_MS 5 // how often due probes are looked for: the bound on their lateness

#define OPT(field) offsetof(prober_settings_t, field)
const vmlet_cfg_option_t prober_options[] = {
    {"prober-id", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(prober_id),
     "this prober's name on its leases (default: the instance name)"},
    {"lease-period", VMLET_CFG_DURATION, "10s", 300, 3600000, NULL, OPT(lease_ms),
     "how long a pod stays this prober's without renewal; a dead prober's pods are taken "
     "over within two periods"},
    {"max-in-flight", VMLET_CFG_INT, "10000", 1, 1000000, NULL, OPT(max_in_flight),
     "probes running at once at most (beyond it a due probe waits for its next period)"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

// --- leases --------------------------------------------------------------------------

static void s_drop(prober_t *self, const char *uid, const char *why)
{
    pod_probes_t *pod = zhashx_lookup(self->pods, uid);
    if (!pod)
        return;
    vmlet_log_info(self->log, VMLET_KV({"pod", uid}), "no longer probed here: %s", why);
    zhashx_delete(self->pods, uid);
}

static void s_renew(prober_t *self)
{
    size_t n = zhashx_size(self->pods);
    if (n == 0)
        return;
    zlistx_t *keys = zhashx_keys(self->pods);
    const char **uids = vmlet_xcalloc(n, sizeof *uids);
    int *ours = vmlet_xcalloc(n, sizeof *ours);
    size_t i = 0;
    for (const char *uid = zlistx_first(keys); uid && i < n; uid = zlistx_next(keys))
        uids[i++] = uid;
    vmlet_err_t err = {0};
    if (ownership_renew_many(self->store, uids, n, self->id, self->settings->lease_ms, ours, &err) <
        0)
        vmlet_log_warn(self->log, NULL, "renewing probe leases: %s", err.msg);
    else
        for (i = 0; i < n; i++)
            if (!ours[i])
                s_drop(self, uids[i], "another prober holds its lease");
    free(ours);
    free(uids);
    zlistx_destroy(&keys);
}

// Takes pods nobody holds: up to this prober's share of them, so that
// instances started together split the pods; beyond it, pods that were
// still free at the previous scan too (their prober died and nobody else
// took them: the count of instances alive still includes the dead one's
// presence for a while), so no pod waits longer than a lease and two
// scans. A pod whose prober died is taken at once, whatever the share.
// Redis is asked about all the pods not ours in a few round trips, so a
// scan of thousands of pods does not hold the loop (and the probes).
static void s_acquire(prober_t *self)
{
    char **all;
    size_t n_all;
    vmlet_err_t err = {0};
    if (vmlet_pod_store_uids(self->store, &all, &n_all, &err) < 0) {
        vmlet_log_warn(self->log, NULL, "listing the pods: %s", err.msg);
        return;
    }
    size_t probers = (size_t)ownership_probers_alive(self->store);
    size_t share = (n_all + probers - 1) / probers + 1;
    // The pods not ours, from a random place, so probers that scan at
    // once spread out.
    const char **uids = vmlet_xcalloc(n_all ? n_all : 1, sizeof *uids);
    size_t n = 0, first = n_all ? (size_t)(vmlet_random01() * (double)n_all) : 0;
    for (size_t k = 0; k < n_all; k++) {
        const char *uid = all[(first + k) % n_all];
        if (!zhashx_lookup(self->pods, uid))
            uids[n++] = uid;
    }
    ownership_state_t *states = vmlet_xcalloc(n ? n : 1, sizeof *states);
    if (n && ownership_states(self->store, uids, n, states, &err) < 0) {
        vmlet_log_warn(self->log, NULL, "reading probe leases: %s", err.msg);
        n = 0; // try again at the next scan
    }
    zhashx_t *free_now = zhashx_new();
    for (size_t k = 0; k < n; k++) {
        const char *uid = uids[k];
        bool orphan = states[k] == OWNERSHIP_ORPHANED;
        if (states[k] == OWNERSHIP_LEASED)
            continue;
        if (!orphan && zhashx_size(self->pods) >= share) {
            zhashx_insert(free_now, uid, "");
            if (!zhashx_lookup(self->free_before, uid))
                continue; // others under their share may take it first
        }
        if (ownership_take(self->store, uid, self->id, self->settings->lease_ms, &err) != 1)
            continue;
        // An orphan has waited a lease already: its first probe comes soon.
        pod_probes_t *pod = pod_probes_new(self, uid, orphan ? self->settings->lease_ms / 4 : -1);
        if (!pod) {
            ownership_release(self->store, uid, self->id);
            continue;
        }
        zhashx_insert(self->pods, uid, pod);
    }
    zhashx_destroy(&self->free_before);
    self->free_before = free_now;
    free(states);
    free(uids);
    vmlet_pod_store_free_uids(all, n_all);
    vmlet_gauge_set(self->owned, (double)zhashx_size(self->pods));
}

static int s_on_lease(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    prober_t *self = arg;
    s_renew(self);
    s_acquire(self);
    return 0;
}

// --- the tick ------------------------------------------------------------------------

static int s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    prober_t *self = arg;
    int64_t now = vmlet_now_ms();
    schedule_entry_t *e;
    while ((e = schedule_peek(&self->schedule)) && e->due_ms <= now) {
        if (probe_runner_in_flight(self->runner) >= (size_t)self->settings->max_in_flight) {
            // Full: everything due waits a period, not the loop.
            vmlet_counter_inc(self->skipped);
            probe_t *probe = (probe_t *)e;
            schedule_move(&self->schedule, e, e->due_ms + probe->state.timing.period_s * 1000);
            continue;
        }
        pod_probes_run((probe_t *)e); // reschedules it
    }
    pod_probes_expire_execs(self);
    return 0;
}

// --- bus handlers --------------------------------------------------------------------

int prober_on_vm_event(void *arg, const vmlet_envelope_t *env)
{
    prober_t *self = arg;
    const Vmlet__VmEvent *vm = env->vm_event;
    pod_probes_t *pod = vm->pod && vm->pod->uid ? zhashx_lookup(self->pods, vm->pod->uid) : NULL;
    if (pod)
        pod_probes_on_vm(pod, vm);
    return 0;
}

int prober_on_pod_desired(void *arg, const vmlet_envelope_t *env)
{
    prober_t *self = arg;
    const Vmlet__PodDesired *d = env->pod_desired;
    pod_probes_t *pod = d->pod && d->pod->uid ? zhashx_lookup(self->pods, d->pod->uid) : NULL;
    if (pod)
        pod_probes_reload(pod, d->spec_hash);
    return 0;
}

int prober_on_pod_deleted(void *arg, const vmlet_envelope_t *env)
{
    prober_t *self = arg;
    const Vmlet__PodDeleted *d = env->pod_deleted;
    if (d->pod && d->pod->uid && zhashx_lookup(self->pods, d->pod->uid)) {
        ownership_forget(self->store, d->pod->uid, self->id);
        s_drop(self, d->pod->uid, "deleted");
        vmlet_gauge_set(self->owned, (double)zhashx_size(self->pods));
    }
    return 0;
}

int prober_on_exec_result(void *arg, const vmlet_envelope_t *env)
{
    prober_t *self = arg;
    const Vmlet__ExecResult *r = env->exec_result;
    probe_t *probe = r->request_id ? zhashx_lookup(self->execs, r->request_id) : NULL;
    if (!probe)
        return 0; // another prober's, or a tool's
    zhashx_delete(self->execs, r->request_id);
    pod_probes_on_exec(probe, r);
    return 0;
}

// --- start and stop -------------------------------------------------------------------

static void s_pod_free(void **item)
{
    pod_probes_destroy((pod_probes_t **)item);
}

static void s_ticket_free(void **item)
{
    free(*item);
    *item = NULL;
}

void *prober_start(vmlet_service_t *service, vmlet_err_t *err)
{
    prober_t *self = vmlet_xcalloc(1, sizeof *self);
    self->service = service;
    self->settings = vmlet_service_def(service)->settings;
    self->log = vmlet_service_log(service);
    self->store = vmlet_service_store(service);
    self->loop = vmlet_service_loop(service);
    const char *id = self->settings->prober_id[0] ? self->settings->prober_id
                                                  : vmlet_service_settings(service)->instance;
    snprintf(self->id, sizeof self->id, "%s", id);
    schedule_init(&self->schedule);
    self->pods = zhashx_new();
    zhashx_set_destructor(self->pods, s_pod_free);
    self->execs = zhashx_new();
    self->free_before = zhashx_new();
    self->tickets = zlistx_new();
    zlistx_set_destructor(self->tickets, s_ticket_free);
    self->runner = probe_runner_new(self->loop, self->log, err);
    if (!self->runner) {
        void *p = self;
        prober_stop(&p);
        return NULL;
    }
    vmlet_metrics_t *m = vmlet_service_metrics(service);
    self->owned = vmlet_metrics_gauge(m, "vmlet_prober_pods_owned",
                                      "Pods whose probes this instance runs.", NULL);
    static const double latency[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,   0.25,   0.5,   1,    2.5,   5};
    self->latency =
        vmlet_metrics_histogram(m, "vmlet_prober_probe_seconds", "How long probe attempts take.",
                                NULL, latency, sizeof latency / sizeof latency[0]);
    static const double late[] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1};
    self->lateness = vmlet_metrics_histogram(m, "vmlet_prober_start_lateness_seconds",
                                             "How late probes start against their schedule.", NULL,
                                             late, sizeof late / sizeof late[0]);
    self->skipped = vmlet_metrics_counter(m, "vmlet_prober_ticks_skipped_total",
                                          "Due probes not run: the last attempt was still out, "
                                          "or too many were.",
                                          NULL);
    self->tick_timer = zloop_timer(self->loop, TICK_MS, 0, s_on_tick, self);
    // Renew well before leases run out; take free pods as often, so a dead
    // prober's pods are probed again within a lease and a half.
    size_t lease_tick =
        (size_t)(self->settings->lease_ms / 4 > 0 ? self->settings->lease_ms / 4 : 1);
    self->lease_timer = zloop_timer(self->loop, lease_tick, 0, s_on_lease, self);
    vmlet_log_info(self->log, VMLET_KV({"prober", self->id}), "probing with %lld ms leases",
                   (long long)self->settings->lease_ms);
    s_acquire(self);
    return self;
}

void prober_stop(void **self_p)
{
    prober_t *self = *self_p;
    if (!self)
        return;
    if (self->tick_timer > 0)
        zloop_timer_end(self->loop, self->tick_timer);
    if (self->lease_timer > 0)
        zloop_timer_end(self->loop, self->lease_timer);
    // Let the others take our pods now rather than when the leases run out.
    zlistx_t *uids = zhashx_keys(self->pods);
    for (const char *uid = zlistx_first(uids); uid; uid = zlistx_next(uids))
        ownership_release(self->store, uid, self->id);
    zlistx_destroy(&uids);
    probe_runner_destroy(&self->runner);
    zhashx_destroy(&self->pods);
    zhashx_destroy(&self->execs);
    zhashx_destroy(&self->free_before);
    zlistx_destroy(&self->tickets);
    schedule_clear(&self->schedule);
    free(self);
    *self_p = NULL;
}
