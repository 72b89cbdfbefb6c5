// A probe's settings and state machine (see probe_state.h).
#include "probe_state.h"

#include <stdio.h>
#include <string.h>

const char *probe_kind_name(probe_kind_t kind)
{
    switch (kind) {
    case PROBE_LIVENESS: return "liveness";
    case PROBE_READINESS: return "readiness";
    case PROBE_STARTUP: return "startup";
    }
    return "";
}

int probe_timing_of(const Vmlet__Probe *p, probe_kind_t kind, probe_timing_t *out,
                    vmlet_err_t *err)
{
    *out = (probe_timing_t){
        .initial_delay_s = p->has_initial_delay_seconds ? p->initial_delay_seconds : 0,
        .period_s = p->has_period_seconds && p->period_seconds ? p->period_seconds : 10,
        .timeout_s = p->has_timeout_seconds && p->timeout_seconds ? p->timeout_seconds : 1,
        .success_threshold =
            p->has_success_threshold && p->success_threshold ? p->success_threshold : 1,
        .failure_threshold =
            p->has_failure_threshold && p->failure_threshold ? p->failure_threshold : 3,
    };
    const char *name = probe_kind_name(kind);
    if (out->initial_delay_s < 0)
        return vmlet_err_set(err, "%sProbe.initialDelaySeconds: must be greater than or equal to 0",
                             name);
    if (out->period_s < 1)
        return vmlet_err_set(err, "%sProbe.periodSeconds: must be greater than or equal to 1", name);
    if (out->timeout_s < 1)
        return vmlet_err_set(err, "%sProbe.timeoutSeconds: must be greater than or equal to 1",
                             name);
    if (out->success_threshold < 1 || out->failure_threshold < 1)
        return vmlet_err_set(err, "%sProbe: thresholds must be greater than or equal to 1", name);
    if (kind != PROBE_READINESS && out->success_threshold != 1)
        return vmlet_err_set(err, "%sProbe.successThreshold: must be 1", name);
    return 0;
}

void probe_state_init(probe_state_t *s, probe_kind_t kind, const probe_timing_t *timing)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->timing = *timing;
    // The kubelet's initial values: not ready until shown ready; alive
    // until shown dead; startup not known.
    s->verdict = kind == PROBE_READINESS  ? VERDICT_FAILURE
                 : kind == PROBE_LIVENESS ? VERDICT_SUCCESS
                                          : VERDICT_UNKNOWN;
}

bool probe_state_due(probe_state_t *s, const probe_container_t *c, int64_t now)
{
    const char *id = c->container_id ? c->container_id : "";
    if (strcmp(s->container_id, id) != 0) { // a new run: start over
        probe_state_t fresh;
        probe_state_init(&fresh, s->kind, &s->timing);
        snprintf(fresh.container_id, sizeof fresh.container_id, "%s", id);
        *s = fresh;
    }
    if (!c->running || s->on_hold)
        return false;
    if (s->kind == PROBE_STARTUP && (c->started || s->verdict == VERDICT_SUCCESS))
        return false; // done for this run
    if (s->kind != PROBE_STARTUP && !c->started)
        return false; // the startup probe goes first
    return now - c->started_unix_ms >= (int64_t)s->timing.initial_delay_s * 1000;
}

probe_effect_t probe_state_attempt(probe_state_t *s, verdict_t attempt)
{
    probe_effect_t effect = {false, false};
    if (attempt == VERDICT_UNKNOWN)
        return effect; // the prober could not tell: nothing changes
    if (attempt == s->last_attempt)
        s->run++;
    else
        s->last_attempt = attempt, s->run = 1;
    if ((attempt == VERDICT_FAILURE && s->run < s->timing.failure_threshold) ||
        (attempt == VERDICT_SUCCESS && s->run < s->timing.success_threshold))
        return effect;
    effect.verdict_changed = s->verdict != attempt;
    s->verdict = attempt;
    if (attempt == VERDICT_FAILURE && s->kind != PROBE_READINESS) {
        // The kubelet kills the container and waits for its next run.
        effect.restart = true;
        s->on_hold = true;
        s->run = 0;
    }
    return effect;
}
