// The services' side of the bus (DESIGN.md §2; wire format in
// bus_protocol.h, docs/bus.md). Four classes, one per role:
//
//   publisher   sends events; each carries a per-topic sequence number so
//               subscribers can count what they lost, never silently
//   subscriber  receives the topics it asked for after a handshake that
//               proves its subscriptions are in place, and routes them
//               through a dispatcher
//   worker      takes work items from one queue, at most `capacity` at a
//               time, and acknowledges each once done (at-least-once)
//   client      submits work items and resends until the broker accepts
//
// Each attaches to the service's zloop and reconnects by itself when the
// broker restarts. None is thread-safe; all live on the loop's thread.
#ifndef VMLET_BUS_H
#define VMLET_BUS_H

#include "vmlet/dispatch.h"
#include "vmlet/envelope.h"
#include "vmlet/err.h"
#include "vmlet/log.h"
#include "vmlet/metrics.h"

#include <czmq.h>
#include <stdbool.h>

typedef struct {
    const char *publish_endpoint;   // the broker's XSUB, e.g. tcp://127.0.0.1:7101
    const char *subscribe_endpoint; // the broker's XPUB
    const char *work_endpoint;      // the broker's ROUTER
    int hwm;                        // messages queued per peer before drops
    int64_t heartbeat_ms;           // work-queue heartbeat interval
    const char *source;             // "<service>/<instance>", stamped on what we send
    // CURVE (bus_curve.h): this process's certificate (zcert's secret
    // file) and the broker's public key (Z85 text or its certificate file).
    // NULL or "": plain TCP, as before.
    const char *curve_cert;
    const char *curve_server_key;
} vmlet_bus_options_t;

// Work queues by name: one per kind of worker.
#define VMLET_QUEUE_IMAGE_BUILDER "image-builder" // ImageRequest
#define VMLET_QUEUE_VM_LAUNCHER "vm-launcher"     // LaunchRequest, StopRequest, RestartRequest

// --- publisher --------------------------------------------------------------

typedef struct _vmlet_bus_publisher_t vmlet_bus_publisher_t;

vmlet_bus_publisher_t *vmlet_bus_publisher_new(const vmlet_bus_options_t *options,
                                               vmlet_metrics_t *metrics, vmlet_log_t *log,
                                               vmlet_err_t *err);
void vmlet_bus_publisher_destroy(vmlet_bus_publisher_t **self_p);
int vmlet_bus_publisher_attach(vmlet_bus_publisher_t *self, zloop_t *loop, vmlet_err_t *err);

// True once the broker has subscribed to us (events sent now reach it).
bool vmlet_bus_publisher_ready(const vmlet_bus_publisher_t *self);
// For code without a loop (tools, tests): waits for readiness.
int vmlet_bus_publisher_wait_ready(vmlet_bus_publisher_t *self, int timeout_ms,
                                   vmlet_err_t *err);

// Stamps env's header (source, publisher id, seq, time; an event is named
// by publisher id and seq, so message_id is left as the caller set it) and
// sends it on the topic of its body. Never blocks: past the high-water mark
// the event is dropped, counted in vmlet_bus_events_dropped_total, and -1
// returned with err. env is borrowed; its header pointer is left as it was.
int vmlet_bus_publish(vmlet_bus_publisher_t *self, vmlet_envelope_t *env, vmlet_err_t *err);

// One tick of the sequence-marker clock: a topic quiet for 4 ticks gets a
// marker, and another every 20 ticks. An attached publisher's timer ticks
// every 250 ms; code without a loop calls this at that pace itself.
void vmlet_bus_publisher_sync(vmlet_bus_publisher_t *self);

// --- subscriber -------------------------------------------------------------

typedef struct _vmlet_bus_subscriber_t vmlet_bus_subscriber_t;

// Subscribes to the topics of `cases` (copied). dispatch, metrics and log
// are borrowed.
vmlet_bus_subscriber_t *vmlet_bus_subscriber_new(const vmlet_bus_options_t *options,
                                                 const vmlet_body_case_t *cases, size_t n_cases,
                                                 vmlet_dispatch_t *dispatch,
                                                 vmlet_metrics_t *metrics, vmlet_log_t *log,
                                                 vmlet_err_t *err);
void vmlet_bus_subscriber_destroy(vmlet_bus_subscriber_t **self_p);
int vmlet_bus_subscriber_attach(vmlet_bus_subscriber_t *self, zloop_t *loop, vmlet_err_t *err);

// True once the broker confirmed the subscriptions (see bus_protocol.h).
bool vmlet_bus_subscriber_ready(const vmlet_bus_subscriber_t *self);
// Receives and dispatches what is waiting, up to `max` messages, waiting
// at most timeout_ms for the first. Returns how many were handled. For
// code without a loop; attached subscribers are driven by the loop.
int vmlet_bus_subscriber_receive(vmlet_bus_subscriber_t *self, int max, int timeout_ms);
// Events known lost (sequence gaps) since start.
uint64_t vmlet_bus_subscriber_lost(const vmlet_bus_subscriber_t *self);

// --- worker -----------------------------------------------------------------

// A worker's handler (a dispatch route) returns 0 when the item is done,
// VMLET_WORK_PENDING when it will call vmlet_bus_worker_done later, and
// < 0 to hand the item back for another attempt.
#define VMLET_WORK_PENDING 1

typedef struct _vmlet_bus_worker_t vmlet_bus_worker_t;

// Takes items from `queue`, at most `capacity` at once, routing them
// through dispatch (borrowed). The item id is env->header->message_id.
vmlet_bus_worker_t *vmlet_bus_worker_new(const vmlet_bus_options_t *options, const char *queue,
                                         int capacity, vmlet_dispatch_t *dispatch,
                                         vmlet_metrics_t *metrics, vmlet_log_t *log,
                                         vmlet_err_t *err);
void vmlet_bus_worker_destroy(vmlet_bus_worker_t **self_p);
int vmlet_bus_worker_attach(vmlet_bus_worker_t *self, zloop_t *loop, vmlet_err_t *err);

// Completes an item a handler left pending (ok = false hands it back).
void vmlet_bus_worker_done(vmlet_bus_worker_t *self, const char *item_id, bool ok);
// True while the broker answers our heartbeats.
bool vmlet_bus_worker_connected(const vmlet_bus_worker_t *self);
int vmlet_bus_worker_in_flight(const vmlet_bus_worker_t *self);

// --- client -----------------------------------------------------------------

typedef struct _vmlet_bus_client_t vmlet_bus_client_t;

vmlet_bus_client_t *vmlet_bus_client_new(const vmlet_bus_options_t *options,
                                         vmlet_metrics_t *metrics, vmlet_log_t *log,
                                         vmlet_err_t *err);
void vmlet_bus_client_destroy(vmlet_bus_client_t **self_p);
int vmlet_bus_client_attach(vmlet_bus_client_t *self, zloop_t *loop, vmlet_err_t *err);

// Queues env for `queue`. item_id names the work: the broker keeps one
// copy per id while it is queued or in flight, so a deterministic id
// ("launch/<uid>/<hash>") makes resubmission harmless. NULL: a fresh id.
// The item is resent until the broker accepts it. Returns -1 with err when
// too many items await acceptance.
int vmlet_bus_submit(vmlet_bus_client_t *self, const char *queue, vmlet_envelope_t *env,
                     const char *item_id, vmlet_err_t *err);
// Items submitted and not yet accepted by the broker.
size_t vmlet_bus_client_pending(const vmlet_bus_client_t *self);
// For code without a loop: drives the client until nothing is pending.
int vmlet_bus_client_flush(vmlet_bus_client_t *self, int timeout_ms, vmlet_err_t *err);

#endif
