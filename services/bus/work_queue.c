// Work-queue bookkeeping for the broker (see work_queue.h).
#include "work_queue.h"

#include <czmq.h>
#include <string.h>

typedef struct worker worker_t;

typedef struct {
    char *queue;
    char *id;
    uint8_t *payload;
    size_t payload_len;
    int attempts;
    worker_t *worker; // NULL while waiting
    void *waiting_handle; // position in the queue's waiting list
} item_t;

struct worker {
    char *id;
    char *queue;
    int capacity;
    int held_unknown; // items it reported holding beyond those in flight here
    int in_flight;
    bool full; // said it had no room; cleared by its next READY
    int64_t last_seen_ms;
    uint64_t last_given; // dispatch serial number: ties go to the least recent
};

typedef struct {
    char *name;
    zlistx_t *waiting; // item_t*, in delivery order
    zlistx_t *workers; // worker_t*, borrowed from work_queue_t.workers
    size_t in_flight;
} queue_t;

struct _work_queue_t {
    size_t max_items;
    zhashx_t *queues;  // name -> queue_t
    zhashx_t *items;   // item id -> item_t (waiting and in flight)
    zhashx_t *workers; // worker id -> worker_t
    uint64_t dispatches;
};

static void s_item_free(void **p)
{
    item_t *item = *p;
    if (item) {
        free(item->queue);
        free(item->id);
        free(item->payload);
        free(item);
        *p = NULL;
    }
}

static void s_worker_free(void **p)
{
    worker_t *w = *p;
    if (w) {
        free(w->id);
        free(w->queue);
        free(w);
        *p = NULL;
    }
}

static void s_queue_free(void **p)
{
    queue_t *q = *p;
    if (q) {
        zlistx_destroy(&q->waiting);
        zlistx_destroy(&q->workers);
        free(q->name);
        free(q);
        *p = NULL;
    }
}

work_queue_t *work_queue_new(size_t max_items_per_queue)
{
    work_queue_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->max_items = max_items_per_queue;
    self->queues = zhashx_new();
    self->items = zhashx_new();
    self->workers = zhashx_new();
    if (!self->queues || !self->items || !self->workers) {
        work_queue_destroy(&self);
        return NULL;
    }
    zhashx_set_destructor(self->queues, s_queue_free);
    zhashx_set_destructor(self->items, s_item_free);
    zhashx_set_destructor(self->workers, s_worker_free);
    return self;
}

void work_queue_destroy(work_queue_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    work_queue_t *self = *self_p;
    zhashx_destroy(&self->queues); // lists first: they borrow items and workers
    zhashx_destroy(&self->items);
    zhashx_destroy(&self->workers);
    free(self);
    *self_p = NULL;
}

static queue_t *s_queue(work_queue_t *self, const char *name)
{
    queue_t *q = zhashx_lookup(self->queues, name);
    if (q)
        return q;
    q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->name = strdup(name);
    q->waiting = zlistx_new();
    q->workers = zlistx_new();
    if (!q->name || !q->waiting || !q->workers) {
        s_queue_free((void **)&q);
        return NULL;
    }
    zhashx_insert(self->queues, name, q);
    return q;
}

work_submit_result_t work_queue_submit(work_queue_t *self, const char *queue, const char *item_id,
                                       const uint8_t *payload, size_t len)
{
    if (zhashx_lookup(self->items, item_id))
        return WORK_SUBMIT_DUPLICATE;
    queue_t *q = s_queue(self, queue);
    if (!q)
        return WORK_SUBMIT_NOMEM;
    if (zlistx_size(q->waiting) + q->in_flight >= self->max_items)
        return WORK_SUBMIT_FULL;
    item_t *item = calloc(1, sizeof *item);
    if (!item)
        return WORK_SUBMIT_NOMEM;
    item->queue = strdup(queue);
    item->id = strdup(item_id);
    item->payload = malloc(len ? len : 1);
    if (!item->queue || !item->id || !item->payload) {
        s_item_free((void **)&item);
        return WORK_SUBMIT_NOMEM;
    }
    memcpy(item->payload, payload, len);
    item->payload_len = len;
    item->waiting_handle = zlistx_add_end(q->waiting, item);
    zhashx_insert(self->items, item_id, item);
    return WORK_SUBMIT_ACCEPTED;
}

bool work_queue_worker_ready(work_queue_t *self, const char *worker_id, const char *queue,
                             int capacity, int held, int64_t now_ms)
{
    worker_t *w = zhashx_lookup(self->workers, worker_id);
    bool known = w != NULL;
    if (w && strcmp(w->queue, queue) != 0) {
        work_queue_forget_worker(self, worker_id); // same peer, another queue now
        w = NULL;
        known = false;
    }
    if (!w) {
        queue_t *q = s_queue(self, queue);
        w = calloc(1, sizeof *w);
        if (!q || !w || !(w->id = strdup(worker_id)) || !(w->queue = strdup(queue))) {
            s_worker_free((void **)&w);
            return false;
        }
        zhashx_insert(self->workers, worker_id, w);
        zlistx_add_end(q->workers, w);
    }
    w->capacity = capacity;
    // Items it holds that we did not send (we restarted since) take room
    // until it reports them done.
    w->held_unknown = held > w->in_flight ? held - w->in_flight : 0;
    w->full = false;
    w->last_seen_ms = now_ms;
    return known;
}

void work_queue_worker_seen(work_queue_t *self, const char *worker_id, int64_t now_ms)
{
    worker_t *w = zhashx_lookup(self->workers, worker_id);
    if (w)
        w->last_seen_ms = now_ms;
}

static int s_room(const worker_t *w)
{
    if (w->full)
        return 0;
    return w->capacity - w->in_flight - w->held_unknown;
}

// The worker with the most room; ties go to the one served longest ago.
static worker_t *s_pick_worker(queue_t *q)
{
    worker_t *best = NULL;
    for (worker_t *w = zlistx_first(q->workers); w; w = zlistx_next(q->workers)) {
        int room = s_room(w);
        if (room <= 0)
            continue;
        if (!best || room > s_room(best) ||
            (room == s_room(best) && w->last_given < best->last_given))
            best = w;
    }
    return best;
}

bool work_queue_next(work_queue_t *self, const char **worker_id,
                     work_item_view_t *out)
{
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues)) {
        if (zlistx_size(q->waiting) == 0)
            continue;
        worker_t *w = s_pick_worker(q);
        if (!w)
            continue;
        item_t *item = zlistx_detach(q->waiting, NULL); // the head
        item->waiting_handle = NULL;
        item->worker = w;
        item->attempts++;
        w->in_flight++;
        w->last_given = ++self->dispatches;
        q->in_flight++;
        *worker_id = w->id;
        *out = (work_item_view_t){item->queue, item->id, item->payload, item->payload_len,
                                  item->attempts};
        return true;
    }
    return false;
}

// Takes an in-flight item off its worker; NULL if it is not that worker's.
static item_t *s_take_in_flight(work_queue_t *self, const char *worker_id, const char *item_id)
{
    item_t *item = zhashx_lookup(self->items, item_id);
    if (!item || !item->worker || strcmp(item->worker->id, worker_id) != 0)
        return NULL;
    item->worker->in_flight--;
    item->worker = NULL;
    queue_t *q = zhashx_lookup(self->queues, item->queue);
    if (q)
        q->in_flight--;
    return item;
}

bool work_queue_done(work_queue_t *self, const char *worker_id, const char *item_id)
{
    if (!s_take_in_flight(self, worker_id, item_id))
        return false;
    zhashx_delete(self->items, item_id);
    return true;
}

static void s_requeue_front(work_queue_t *self, item_t *item)
{
    queue_t *q = s_queue(self, item->queue);
    item->waiting_handle = q ? zlistx_add_start(q->waiting, item) : NULL;
    if (!item->waiting_handle)
        zhashx_delete(self->items, item->id); // out of memory: the submitter resends
}

bool work_queue_nack(work_queue_t *self, const char *worker_id, const char *item_id, bool full)
{
    item_t *item = s_take_in_flight(self, worker_id, item_id);
    if (!item)
        return false;
    if (full) {
        worker_t *w = zhashx_lookup(self->workers, worker_id);
        if (w)
            w->full = true;
        item->attempts--; // it never ran
    }
    s_requeue_front(self, item);
    return true;
}

size_t work_queue_forget_worker(work_queue_t *self, const char *worker_id)
{
    worker_t *w = zhashx_lookup(self->workers, worker_id);
    if (!w)
        return 0;
    size_t requeued = 0;
    zlistx_t *ids = zhashx_keys(self->items);
    for (const char *id = zlistx_first(ids); id; id = zlistx_next(ids)) {
        item_t *item = zhashx_lookup(self->items, id);
        if (item && item->worker == w && s_take_in_flight(self, worker_id, id)) {
            s_requeue_front(self, item);
            requeued++;
        }
    }
    zlistx_destroy(&ids);
    queue_t *q = zhashx_lookup(self->queues, w->queue);
    if (q) {
        void *handle = zlistx_find(q->workers, w);
        if (handle)
            zlistx_delete(q->workers, handle);
    }
    zhashx_delete(self->workers, worker_id);
    return requeued;
}

size_t work_queue_expire(work_queue_t *self, int64_t now_ms, int64_t liveness_ms, size_t *dead)
{
    size_t requeued = 0;
    *dead = 0;
    zlistx_t *ids = zhashx_keys(self->workers);
    for (const char *id = zlistx_first(ids); id; id = zlistx_next(ids)) {
        worker_t *w = zhashx_lookup(self->workers, id);
        if (w && now_ms - w->last_seen_ms > liveness_ms) {
            requeued += work_queue_forget_worker(self, id);
            (*dead)++;
        }
    }
    zlistx_destroy(&ids);
    return requeued;
}

bool work_queue_stats(const work_queue_t *self, const char *queue, work_queue_stats_t *out)
{
    queue_t *q = zhashx_lookup(self->queues, queue);
    if (!q)
        return false;
    *out = (work_queue_stats_t){zlistx_size(q->waiting), q->in_flight, zlistx_size(q->workers),
                                0};
    for (worker_t *w = zlistx_first(q->workers); w; w = zlistx_next(q->workers))
        out->capacity += (size_t)w->capacity;
    return true;
}

size_t work_queue_names(const work_queue_t *self, const char **out, size_t cap)
{
    size_t n = 0;
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues)) {
        if (n < cap)
            out[n] = q->name;
        n++;
    }
    return n;
}
