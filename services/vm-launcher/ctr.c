// A container's state and the kubelet's restart rules (see ctr.h).
#include "ctr.h"

#include "vmlet/pb.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>

void ctr_init(ctr_t *c, const char *name, bool init)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->init = init;
    ctr_wait(c, "ContainerCreating", NULL);
}

void ctr_wait(ctr_t *c, const char *reason, const char *message)
{
    if (c->phase == CTR_TERMINATED && c->has_exit) { // the run that ended is now the last state
        c->last = c->exit;
        c->has_last = true;
    }
    c->phase = CTR_WAITING;
    snprintf(c->reason, sizeof c->reason, "%s", reason ? reason : "");
    snprintf(c->message, sizeof c->message, "%s", message ? message : "");
}

void ctr_started(ctr_t *c, unsigned instance, int64_t started_unix_ms)
{
    if (c->phase == CTR_TERMINATED && c->has_exit) {
        c->last = c->exit;
        c->has_last = true;
    }
    c->phase = CTR_RUNNING;
    c->instance = instance;
    c->started_unix_ms = started_unix_ms;
    c->ever_started = true;
    c->reason[0] = c->message[0] = '\0';
}

void ctr_exited(ctr_t *c, const ctr_exit_t *exit)
{
    c->kill_at_unix_ms = 0;
    c->post_start_running = c->pre_stop_running = false; // a late answer is for an old run
    c->phase = CTR_TERMINATED;
    c->exit = *exit;
    c->has_exit = true;
}

bool ctr_should_restart(const char *policy, bool init, int exit_code)
{
    bool never = policy && strcmp(policy, "Never") == 0;
    bool on_failure = policy && strcmp(policy, "OnFailure") == 0;
    if (init)
        return exit_code != 0 && !never;
    if (never)
        return false;
    if (on_failure)
        return exit_code != 0;
    return true; // Always, the default
}

int64_t ctr_schedule_restart(ctr_t *c, const ctr_backoff_settings_t *s, const char *pod_desc)
{
    int64_t finished = c->exit.finished_unix_ms;
    // No back-off yet, or none for so long (twice the maximum, as the
    // kubelet's entries expire) that it starts over: restart at once.
    if (c->backoff_ms == 0 || finished - c->backoff_updated_unix_ms > 2 * s->max_ms) {
        c->backoff_ms = s->initial_ms;
        c->backoff_updated_unix_ms = finished;
        c->restart_at_unix_ms = finished;
        return finished;
    }
    int64_t delay = c->backoff_ms;
    c->restart_at_unix_ms = finished + delay;
    c->backoff_ms = delay * 2 > s->max_ms ? s->max_ms : delay * 2;
    c->backoff_updated_unix_ms = c->restart_at_unix_ms;
    char message[256];
    snprintf(message, sizeof message, "back-off %llds restarting failed container=%s pod=%s",
             (long long)(delay / 1000), c->name, pod_desc);
    ctr_wait(c, "CrashLoopBackOff", message);
    return c->restart_at_unix_ms;
}

static Vmlet__ContainerStateTerminated *s_terminated(const ctr_exit_t *e)
{
    Vmlet__ContainerStateTerminated *t =
        PB_NEW(Vmlet__ContainerStateTerminated, VMLET__CONTAINER_STATE_TERMINATED__INIT);
    PB_SET(t, exit_code, e->exit_code);
    if (e->signal)
        PB_SET(t, signal, e->signal);
    t->reason = vmlet_xstrdup(e->reason[0] ? e->reason : (e->exit_code ? "Error" : "Completed"));
    if (e->message[0])
        t->message = vmlet_xstrdup(e->message);
    PB_SET(t, started_unix_ms, e->started_unix_ms);
    PB_SET(t, finished_unix_ms, e->finished_unix_ms);
    return t;
}

static Vmlet__ContainerState *s_state(const ctr_t *c)
{
    Vmlet__ContainerState *s = PB_NEW(Vmlet__ContainerState, VMLET__CONTAINER_STATE__INIT);
    switch (c->phase) {
    case CTR_WAITING:
        s->state_case = VMLET__CONTAINER_STATE__STATE_WAITING;
        s->waiting = PB_NEW(Vmlet__ContainerStateWaiting, VMLET__CONTAINER_STATE_WAITING__INIT);
        s->waiting->reason = vmlet_xstrdup(c->reason);
        if (c->message[0])
            s->waiting->message = vmlet_xstrdup(c->message);
        break;
    case CTR_RUNNING:
        if (c->post_start_running) {
            s->state_case = VMLET__CONTAINER_STATE__STATE_WAITING;
            s->waiting =
                PB_NEW(Vmlet__ContainerStateWaiting, VMLET__CONTAINER_STATE_WAITING__INIT);
            s->waiting->reason = vmlet_xstrdup("ContainerCreating");
            break;
        }
        s->state_case = VMLET__CONTAINER_STATE__STATE_RUNNING;
        s->running = PB_NEW(Vmlet__ContainerStateRunning, VMLET__CONTAINER_STATE_RUNNING__INIT);
        PB_SET(s->running, started_unix_ms, c->started_unix_ms);
        break;
    case CTR_TERMINATED:
        s->state_case = VMLET__CONTAINER_STATE__STATE_TERMINATED;
        s->terminated = s_terminated(&c->exit);
        break;
    }
    return s;
}

Vmlet__ContainerStatus *ctr_status(const ctr_t *c, const char *image, const char *image_id,
                                   const char *vm_id)
{
    Vmlet__ContainerStatus *st = PB_NEW(Vmlet__ContainerStatus, VMLET__CONTAINER_STATUS__INIT);
    st->name = vmlet_xstrdup(c->name);
    st->state = s_state(c);
    if (c->has_last) {
        st->last_state = PB_NEW(Vmlet__ContainerState, VMLET__CONTAINER_STATE__INIT);
        st->last_state->state_case = VMLET__CONTAINER_STATE__STATE_TERMINATED;
        st->last_state->terminated = s_terminated(&c->last);
    }
    PB_SET(st, restart_count, (int32_t)c->instance);
    PB_SET(st, started, c->phase == CTR_RUNNING && !c->post_start_running);
    if (image)
        st->image = vmlet_xstrdup(image);
    if (image_id)
        st->image_id = vmlet_xstrdup(image_id);
    if (c->ever_started && vm_id) {
        char id[256];
        snprintf(id, sizeof id, "vmlet://%s/%s/%u", vm_id, c->name, c->instance);
        st->container_id = vmlet_xstrdup(id);
    }
    return st;
}

Vmlet__ContainerRecord *ctr_to_record(const ctr_t *c, const char *image, const char *image_id,
                                      const char *vm_id)
{
    Vmlet__ContainerRecord *r = PB_NEW(Vmlet__ContainerRecord, VMLET__CONTAINER_RECORD__INIT);
    r->status = ctr_status(c, image, image_id, vm_id);
    PB_SET(r, init, c->init);
    PB_SET(r, ever_started, c->ever_started);
    PB_SET(r, backoff_ms, c->backoff_ms);
    PB_SET(r, backoff_updated_unix_ms, c->backoff_updated_unix_ms);
    PB_SET(r, restart_at_unix_ms, c->restart_at_unix_ms);
    PB_SET(r, done, c->done);
    return r;
}

static void s_exit_from(ctr_exit_t *e, const Vmlet__ContainerStateTerminated *t)
{
    memset(e, 0, sizeof *e);
    e->exit_code = t->exit_code;
    e->signal = t->signal;
    snprintf(e->reason, sizeof e->reason, "%s", t->reason ? t->reason : "");
    snprintf(e->message, sizeof e->message, "%s", t->message ? t->message : "");
    e->started_unix_ms = t->started_unix_ms;
    e->finished_unix_ms = t->finished_unix_ms;
}

void ctr_from_record(ctr_t *c, const Vmlet__ContainerRecord *r)
{
    const Vmlet__ContainerStatus *st = r->status;
    ctr_init(c, st && st->name ? st->name : "", r->init);
    c->ever_started = r->ever_started;
    c->backoff_ms = r->backoff_ms;
    c->backoff_updated_unix_ms = r->backoff_updated_unix_ms;
    c->restart_at_unix_ms = r->restart_at_unix_ms;
    c->done = r->done;
    if (!st)
        return;
    c->instance = (unsigned)st->restart_count;
    if (st->last_state && st->last_state->terminated) {
        s_exit_from(&c->last, st->last_state->terminated);
        c->has_last = true;
    }
    const Vmlet__ContainerState *s = st->state;
    if (s && s->state_case == VMLET__CONTAINER_STATE__STATE_RUNNING) {
        c->phase = CTR_RUNNING;
        c->started_unix_ms = s->running->started_unix_ms;
    } else if (s && s->state_case == VMLET__CONTAINER_STATE__STATE_TERMINATED) {
        c->phase = CTR_TERMINATED;
        s_exit_from(&c->exit, s->terminated);
        c->has_exit = true;
    } else if (s && s->state_case == VMLET__CONTAINER_STATE__STATE_WAITING) {
        snprintf(c->reason, sizeof c->reason, "%s", s->waiting->reason ? s->waiting->reason : "");
        snprintf(c->message, sizeof c->message, "%s",
                 s->waiting->message ? s->waiting->message : "");
    }
}
