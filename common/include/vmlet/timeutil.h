// Clocks and randomness in one place, so the rest of the code says which
// clock it means.
#ifndef VMLET_TIMEUTIL_H
#define VMLET_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

int64_t vmlet_now_ms(void);  // monotonic: for deadlines and intervals
int64_t vmlet_unix_ms(void); // wall clock: for timestamps others read
int64_t vmlet_unix_ns(void);

// Fills buf from the kernel's CSPRNG (getrandom); never fails in practice,
// and falls back to a time-seeded mix if it does.
void vmlet_random_bytes(void *buf, size_t n);
double vmlet_random01(void); // uniform in [0, 1)
uint64_t vmlet_random_u64(void);

// Writes 2*n_bytes random hex digits and a NUL into out (2*n_bytes+1 long).
void vmlet_random_hex(char *out, size_t n_bytes);

// Kubernetes timestamps. metav1.Time is RFC 3339 in UTC to the second
// ("2026-11-26T18:00:00Z"); metav1.MicroTime has microseconds
// ("2026-11-26T18:00:00.123456Z"). buf needs 32 bytes. Returns buf.
char *vmlet_format_rfc3339(int64_t unix_s, char *buf, size_t cap);
char *vmlet_format_rfc3339_micro(int64_t unix_us, char *buf, size_t cap);
// With nanoseconds, as CRI log lines carry ("2026-11-26T18:00:00.123456789Z").
char *vmlet_format_rfc3339_nano(int64_t unix_ns, char *buf, size_t cap);

// Parses RFC 3339 ("Z" or a numeric offset; fractions ignored) into Unix
// seconds. Returns -1 if text is not such a time.
int vmlet_parse_rfc3339(const char *text, int64_t *unix_s);

#endif
