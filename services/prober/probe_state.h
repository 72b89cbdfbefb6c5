// One probe of one container, as the kubelet's prober worker runs it
// (pkg/kubelet/prober/worker.go): its settings with Kubernetes' defaults,
// and the state machine that turns attempts into a verdict.
//
//   - No probe means success; a readiness probe's verdict is failure until
//     its first success, a liveness probe's success, a startup probe's
//     unknown.
//   - Liveness and readiness wait until the startup probe (if any)
//     succeeded; a startup probe stops once it has.
//   - Nothing is probed until initialDelaySeconds after the container
//     started, nor while it is not running.
//   - failureThreshold failures in a row make the verdict failure,
//     successThreshold successes in a row make it success; an unknown
//     attempt changes nothing.
//   - A liveness or startup verdict of failure restarts the container; the
//     probe then holds still until a new run of the container starts.
#ifndef VMLET_PROBER_PROBE_STATE_H
#define VMLET_PROBER_PROBE_STATE_H

#include "vmlet/err.h"
#include "vmlet/proto/envelope.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum { PROBE_LIVENESS, PROBE_READINESS, PROBE_STARTUP } probe_kind_t;

typedef enum { VERDICT_UNKNOWN, VERDICT_SUCCESS, VERDICT_FAILURE } verdict_t;

typedef struct {
    int initial_delay_s;
    int period_s;
    int timeout_s;
    int success_threshold;
    int failure_threshold;
} probe_timing_t;

// The timing with Kubernetes' defaults (period 10, timeout 1, thresholds
// 1 and 3) and its validation: negative values, a period or timeout below
// 1, and a successThreshold other than 1 for liveness and startup probes
// are refused with the API server's words.
int probe_timing_of(const Vmlet__Probe *probe, probe_kind_t kind, probe_timing_t *out,
                    vmlet_err_t *err);

typedef struct {
    probe_kind_t kind;
    probe_timing_t timing;
    verdict_t verdict;
    verdict_t last_attempt;
    int run;       // attempts in a row with last_attempt's result
    bool on_hold;  // a restart was asked for; wait for the next run of the container
    char container_id[256]; // the run being probed
} probe_state_t;

void probe_state_init(probe_state_t *s, probe_kind_t kind, const probe_timing_t *timing);

// What the container is doing now.
typedef struct {
    bool running;
    int64_t started_unix_ms;
    const char *container_id; // changes with every run
    bool started;             // its startup probe succeeded (or it has none)
} probe_container_t;

// Whether to probe now (after the container's run is checked: a new run
// resets the state, as the kubelet's worker does).
bool probe_state_due(probe_state_t *s, const probe_container_t *c, int64_t now_unix_ms);

typedef struct {
    bool verdict_changed;
    bool restart; // ask for the container to be restarted
} probe_effect_t;

// One attempt's result, folded in.
probe_effect_t probe_state_attempt(probe_state_t *s, verdict_t attempt);

const char *probe_kind_name(probe_kind_t kind);

#endif
