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

#endif
