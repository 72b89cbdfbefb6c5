// SIGTERM and SIGINT as events in the service's loop (signalfd), so a
// signal only wakes the loop and shutdown runs as ordinary code. Create it
// first in main(), before any thread (ZeroMQ's I/O threads included)
// exists, so every thread inherits the blocked mask. SIGPIPE is ignored:
// a peer that goes away is an error return, not a death.
#ifndef VMLET_SIGNALS_H
#define VMLET_SIGNALS_H

#include "vmlet/err.h"
#include "vmlet/log.h"

#include <czmq.h>

typedef struct _vmlet_signals_t vmlet_signals_t;

vmlet_signals_t *vmlet_signals_new(vmlet_log_t *log, vmlet_err_t *err);
void vmlet_signals_destroy(vmlet_signals_t **self_p);

// On SIGTERM/SIGINT the loop ends (its reader returns -1).
int vmlet_signals_attach(vmlet_signals_t *self, zloop_t *loop, vmlet_err_t *err);

// The signal that ended the loop, or 0.
int vmlet_signals_received(const vmlet_signals_t *self);

#endif
