// Clocks and randomness (see timeutil.h).
#include "vmlet/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
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

char *vmlet_format_rfc3339(int64_t unix_s, char *buf, size_t cap)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// "<date>T<time>.<fraction>Z" with `digits` digits of a fraction of `per_second`.
static char *s_format_fraction(int64_t units, int64_t per_second, int digits, char *buf,
                               size_t cap)
{
    time_t t = (time_t)(units / per_second);
    struct tm tm;
    gmtime_r(&t, &tm);
    char head[24];
    strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%0*lldZ", head, digits, (long long)(units % per_second));
    return buf;
}

char *vmlet_format_rfc3339_micro(int64_t unix_us, char *buf, size_t cap)
{
    return s_format_fraction(unix_us, 1000000, 6, buf, cap);
}

char *vmlet_format_rfc3339_nano(int64_t unix_ns, char *buf, size_t cap)
{
    return s_format_fraction(unix_ns, 1000000000, 9, buf, cap);
}

int vmlet_parse_rfc3339(const char *text, int64_t *unix_s)
{
    struct tm tm = {0};
    const char *rest = text ? strptime(text, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!rest)
        return -1;
    if (*rest == '.')
        for (rest++; *rest >= '0' && *rest <= '9'; rest++)
            continue;
    long offset = 0;
    if (*rest == 'Z' || *rest == 'z') {
        rest++;
    } else if (*rest == '+' || *rest == '-') {
        int hh, mm;
        if (sscanf(rest + 1, "%2d:%2d", &hh, &mm) != 2)
            return -1;
        offset = (hh * 3600L + mm * 60L) * (*rest == '-' ? -1 : 1);
        rest += 6;
    } else {
        return -1;
    }
    if (*rest)
        return -1;
    *unix_s = (int64_t)timegm(&tm) - offset;
    return 0;
}
