// Measuring the host's TSC rate (host_tsc.h).
#include "host_tsc.h"

#include <stdint.h>
#include <time.h>

#if defined(__x86_64__)
#include <x86intrin.h>

static int64_t s_raw_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

long host_tsc_khz(int sample_ms)
{
    int64_t t0 = s_raw_ns();
    uint64_t c0 = __rdtsc();
    struct timespec nap = {sample_ms / 1000, (long)(sample_ms % 1000) * 1000000};
    while (nanosleep(&nap, &nap) != 0) {
    }
    uint64_t c1 = __rdtsc();
    int64_t t1 = s_raw_ns();
    if (t1 <= t0 || c1 <= c0)
        return 0;
    // cycles per ns * 1e6 = kHz
    return (long)((double)(c1 - c0) * 1e6 / (double)(t1 - t0) + 0.5);
}
#else
long host_tsc_khz(int sample_ms)
{
    (void)sample_ms;
    return 0;
}
#endif
