// The bus broker: an XSUB/XPUB pair that forwards events and answers
// subscription handshakes, and a ROUTER that runs the load-balancing work
// queues (work_queue.h) with worker heartbeats. Wire format: bus_protocol.h.
#ifndef VMLET_BUS_BROKER_H
#define VMLET_BUS_BROKER_H

#include "vmlet/err.h"
#include "vmlet/log.h"
#include "vmlet/metrics.h"

#include <czmq.h>
#include <stdint.h>

typedef struct {
    const char *publish_bind;   // XSUB: publishers connect here
    const char *subscribe_bind; // XPUB: subscribers connect here
    const char *work_bind;      // ROUTER: workers and clients connect here
    int hwm;
    int64_t heartbeat_ms;
    int liveness; // heartbeats a worker may miss before its items are requeued
    size_t max_queue;
    // CURVE (broker_auth.h): the broker's certificate and the directory of
    // authorised clients' public certificates. "" or NULL: plain TCP.
    const char *curve_cert;
    const char *curve_authorized;
} broker_options_t;

typedef struct _broker_t broker_t;

// Binds the three sockets. metrics and log are borrowed.
broker_t *broker_new(const broker_options_t *options, vmlet_metrics_t *metrics, vmlet_log_t *log,
                     vmlet_err_t *err);
void broker_destroy(broker_t **self_p);
int broker_attach(broker_t *self, zloop_t *loop, vmlet_err_t *err);

#endif
