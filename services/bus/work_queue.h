// The broker's work-queue bookkeeping, without I/O: named queues of items,
// workers with capacity, items in flight, and what happens when a worker
// finishes, hands an item back, or dies. The broker feeds it events and
// sends what it decides; the unit tests drive it directly.
//
// Rules:
//   - one copy of an item id at a time: submitting an id that is queued or
//     in flight is accepted and ignored (submissions are idempotent);
//   - a worker gets at most its capacity, counting the items in flight here
//     and those it reports holding beyond them (after a broker restart),
//     so a new broker does not overfill it;
//   - among workers with room, the one with the most room goes first, ties
//     to the one served longest ago (work spreads evenly);
//   - items of a worker not heard from within the liveness period go back
//     to the front of their queue (at-least-once).
#ifndef VMLET_BUS_WORK_QUEUE_H
#define VMLET_BUS_WORK_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _work_queue_t work_queue_t;

typedef struct {
    const char *queue;
    const char *item_id;
    const uint8_t *payload;
    size_t payload_len;
    int attempt; // 1 for the first delivery
} work_item_view_t;

typedef enum {
    WORK_SUBMIT_ACCEPTED,  // queued
    WORK_SUBMIT_DUPLICATE, // already queued or in flight: nothing to do
    WORK_SUBMIT_FULL,      // the queue is at its limit
    WORK_SUBMIT_NOMEM,
} work_submit_result_t;

work_queue_t *work_queue_new(size_t max_items_per_queue);
void work_queue_destroy(work_queue_t **self_p);

// payload is copied.
work_submit_result_t work_queue_submit(work_queue_t *self, const char *queue, const char *item_id,
                                       const uint8_t *payload, size_t len);

// A worker's READY/heartbeat. worker_id is an opaque printable key.
// Returns false if the worker was unknown (new or returning).
bool work_queue_worker_ready(work_queue_t *self, const char *worker_id, const char *queue,
                             int capacity, int held, int64_t now_ms);
// Any other sign of life from a known worker.
void work_queue_worker_seen(work_queue_t *self, const char *worker_id, int64_t now_ms);

// Picks the next (worker, item) to send, marks the item in flight, and
// fills *out (valid until the item is done or requeued). Returns false
// when nothing can be sent now.
bool work_queue_next(work_queue_t *self, const char **worker_id,
                     work_item_view_t *out);

// The worker finished item_id. Returns false for an item not in flight
// with that worker (late or duplicate acknowledgement: ignored).
bool work_queue_done(work_queue_t *self, const char *worker_id, const char *item_id);
// The worker handed item_id back; it goes to the front of its queue.
// `full` says the worker had no room (its slots count as taken until its
// next READY).
bool work_queue_nack(work_queue_t *self, const char *worker_id, const char *item_id, bool full);

// Drops workers silent for longer than liveness_ms; their items go back to
// the front of their queues. Returns how many items were requeued and
// sets *dead to how many workers were dropped.
size_t work_queue_expire(work_queue_t *self, int64_t now_ms, int64_t liveness_ms, size_t *dead);

// Removes a worker at once (it said goodbye or its peer vanished).
size_t work_queue_forget_worker(work_queue_t *self, const char *worker_id);

typedef struct {
    size_t waiting;   // queued, not yet sent
    size_t in_flight; // sent, not yet done
    size_t workers;
    size_t capacity; // sum of the workers' capacity
} work_queue_stats_t;

// Per-queue figures; returns false for a queue never seen.
bool work_queue_stats(const work_queue_t *self, const char *queue, work_queue_stats_t *out);
// The names of all queues seen so far, for metrics. Writes up to cap names
// (borrowed) and returns how many there are.
size_t work_queue_names(const work_queue_t *self, const char **out, size_t cap);

#endif
