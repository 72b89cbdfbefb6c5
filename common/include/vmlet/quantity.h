// Kubernetes resource quantities ("500m", "1.5", "128Mi", "1G", "1e3"),
// parsed exactly as resource.Quantity does, and formatted back the way
// the kubelet reports node capacity.
#ifndef VMLET_QUANTITY_H
#define VMLET_QUANTITY_H

#include "vmlet/err.h"

#include <stdint.h>

// Thousandths of the quantity, rounded up (CPU: "250m" -> 250, "2" -> 2000,
// "0.1" -> 100, "1e-3" -> 1). Returns -1 with err for text that is not a
// quantity or does not fit in int64.
int vmlet_quantity_milli(const char *text, int64_t *out, vmlet_err_t *err);

// The quantity as an integer, rounded up like Quantity.Value() (memory:
// "128Mi" -> 134217728, "1G" -> 1000000000, "100m" -> 1).
int vmlet_quantity_value(const char *text, int64_t *out, vmlet_err_t *err);

// Formats into buf: millicores as "2" or "1500m"; bytes as "<n>Ki" when a
// whole number of KiB (as the kubelet reports memory), else "<n>".
// Returns buf.
char *vmlet_quantity_format_milli(int64_t millis, char *buf, size_t cap);
char *vmlet_quantity_format_bytes(int64_t bytes, char *buf, size_t cap);

#endif
