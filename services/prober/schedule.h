// When each probe runs next: a binary min-heap on due times, so taking the
// probes that are due costs O(log n) each however many pods there are.
// Probes are fixed-rate, as the kubelet's tickers: the next time is the
// last due time plus the period, not the end of the last attempt, so a
// slow probe does not drift its schedule.
#ifndef VMLET_PROBER_SCHEDULE_H
#define VMLET_PROBER_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t due_ms; // monotonic
    size_t index;   // its place in the heap (kept by the heap); SIZE_MAX when out
} schedule_entry_t;

typedef struct {
    schedule_entry_t **items;
    size_t n, cap;
} schedule_t;

void schedule_init(schedule_t *s);
void schedule_clear(schedule_t *s);
void schedule_add(schedule_t *s, schedule_entry_t *e); // at e->due_ms
void schedule_remove(schedule_t *s, schedule_entry_t *e);
// The earliest entry, or NULL.
schedule_entry_t *schedule_peek(const schedule_t *s);
// Moves e to a new due time.
void schedule_move(schedule_t *s, schedule_entry_t *e, int64_t due_ms);

#endif
