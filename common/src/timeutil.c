// Clocks and randomness (see timeutil.h).
#include "vmlet/timeutil.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int64_t vmlet_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t vmlet_unix_ms(void)
{
    return vmlet_unix_ns() / 1000000;
}

int64_t vmlet_unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void vmlet_random_bytes(void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom((char *)buf + got, n - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    // Not for secrets: only ids and jitter come from here.
    uint64_t mix = (uint64_t)vmlet_unix_ns() ^ ((uint64_t)getpid() << 32);
    for (; got < n; got++) {
        mix = mix * 6364136223846793005ULL + 1442695040888963407ULL;
        ((unsigned char *)buf)[got] = (unsigned char)(mix >> 56);
    }
}

uint64_t vmlet_random_u64(void)
{
    uint64_t v;
    vmlet_random_bytes(&v, sizeof v);
    return v;
}

double vmlet_random01(void)
{
    return (double)(vmlet_random_u64() >> 11) / (double)(1ULL << 53);
}

void vmlet_random_hex(char *out, size_t n_bytes)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char raw[64];
    size_t pos = 0;
    while (n_bytes > 0) {
        size_t chunk = n_bytes < sizeof raw ? n_bytes : sizeof raw;
        vmlet_random_bytes(raw, chunk);
        for (size_t i = 0; i < chunk; i++) {
            out[pos++] = digits[raw[i] >> 4];
            out[pos++] = digits[raw[i] & 15];
        }
        n_bytes -= chunk;
    }
    out[pos] = '\0';
}
