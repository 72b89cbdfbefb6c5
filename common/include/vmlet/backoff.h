// Exponential back-off with jitter, as plain arithmetic so tests can check
// it with a table: delay(n) = min(max, initial * multiplier^n), then reduced
// by up to `jitter` of itself (rand01 in [0, 1)), so many clients that lost
// the same server do not come back in lockstep.
#ifndef VMLET_BACKOFF_H
#define VMLET_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int64_t initial_ms;
    int64_t max_ms;
    double multiplier; // >= 1
    double jitter;     // in [0, 1]
} vmlet_backoff_policy_t;

// Delay before retry number `attempt` (0 = the first retry).
int64_t vmlet_backoff_delay_ms(const vmlet_backoff_policy_t *policy, unsigned attempt,
                               double rand01);

// The running state of one retried thing (a connection, say).
typedef struct {
    vmlet_backoff_policy_t policy;
    unsigned attempt;   // failures since the last success
    int64_t not_before; // monotonic ms before which no retry should start
} vmlet_backoff_t;

void vmlet_backoff_init(vmlet_backoff_t *self, const vmlet_backoff_policy_t *policy);
// Records a failure at now_ms and returns the delay chosen.
int64_t vmlet_backoff_failed(vmlet_backoff_t *self, int64_t now_ms, double rand01);
void vmlet_backoff_succeeded(vmlet_backoff_t *self);
bool vmlet_backoff_may_try(const vmlet_backoff_t *self, int64_t now_ms);

#endif
