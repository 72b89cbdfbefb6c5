// The rate of this host's time-stamp counter, which a guest under QEMU's
// TCG sees as its own TSC (TCG's rdtsc reads the host's). The guest kernel
// must be told the rate (tsc_early_khz): it cannot calibrate without a
// PIT, and a wrong figure makes its clock run fast or slow by the ratio.
#ifndef VMLET_LAUNCHER_HOST_TSC_H
#define VMLET_LAUNCHER_HOST_TSC_H

// kHz, measured against CLOCK_MONOTONIC_RAW over sample_ms; 0 where
// there is no TSC to read (not x86-64) or the measurement failed.
long host_tsc_khz(int sample_ms);

#endif
