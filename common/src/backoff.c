// Exponential back-off arithmetic (see backoff.h).
#include "vmlet/backoff.h"

int64_t vmlet_backoff_delay_ms(const vmlet_backoff_policy_t *policy, unsigned attempt,
                               double rand01)
{
    double delay = (double)policy->initial_ms;
    for (unsigned i = 0; i < attempt && delay < (double)policy->max_ms; i++)
        delay *= policy->multiplier;
    if (delay > (double)policy->max_ms)
        delay = (double)policy->max_ms;
    if (rand01 < 0)
        rand01 = 0;
    if (rand01 >= 1)
        rand01 = 0.999999;
    delay -= delay * policy->jitter * rand01;
    return (int64_t)delay;
}

void vmlet_backoff_init(vmlet_backoff_t *self, const vmlet_backoff_policy_t *policy)
{
    self->policy = *policy;
    self->attempt = 0;
    self->not_before = 0;
}

int64_t vmlet_backoff_failed(vmlet_backoff_t *self, int64_t now_ms, double rand01)
{
    int64_t delay = vmlet_backoff_delay_ms(&self->policy, self->attempt, rand01);
    if (self->attempt < 64)
        self->attempt++;
    self->not_before = now_ms + delay;
    return delay;
}

void vmlet_backoff_succeeded(vmlet_backoff_t *self)
{
    self->attempt = 0;
    self->not_before = 0;
}

bool vmlet_backoff_may_try(const vmlet_backoff_t *self, int64_t now_ms)
{
    return now_ms >= self->not_before;
}
