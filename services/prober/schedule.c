// The probes' schedule (see schedule.h).
#include "schedule.h"

#include "vmlet/xalloc.h"

#include <stdint.h>
#include <stdlib.h>

void schedule_init(schedule_t *s)
{
    s->items = NULL;
    s->n = s->cap = 0;
}

void schedule_clear(schedule_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        s->items[i]->index = SIZE_MAX;
    free(s->items);
    schedule_init(s);
}

static void s_set(schedule_t *s, size_t i, schedule_entry_t *e)
{
    s->items[i] = e;
    e->index = i;
}

static void s_up(schedule_t *s, size_t i)
{
    schedule_entry_t *e = s->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (s->items[parent]->due_ms <= e->due_ms)
            break;
        s_set(s, i, s->items[parent]);
        i = parent;
    }
    s_set(s, i, e);
}

static void s_down(schedule_t *s, size_t i)
{
    schedule_entry_t *e = s->items[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= s->n)
            break;
        if (child + 1 < s->n && s->items[child + 1]->due_ms < s->items[child]->due_ms)
            child++;
        if (e->due_ms <= s->items[child]->due_ms)
            break;
        s_set(s, i, s->items[child]);
        i = child;
    }
    s_set(s, i, e);
}

void schedule_add(schedule_t *s, schedule_entry_t *e)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->items = vmlet_xrealloc(s->items, s->cap * sizeof *s->items);
    }
    s_set(s, s->n++, e);
    s_up(s, e->index);
}

void schedule_remove(schedule_t *s, schedule_entry_t *e)
{
    size_t i = e->index;
    if (i == SIZE_MAX || i >= s->n || s->items[i] != e)
        return;
    e->index = SIZE_MAX;
    schedule_entry_t *last = s->items[--s->n];
    if (i == s->n)
        return;
    s_set(s, i, last);
    s_up(s, i);
    s_down(s, last->index);
}

schedule_entry_t *schedule_peek(const schedule_t *s)
{
    return s->n ? s->items[0] : NULL;
}

void schedule_move(schedule_t *s, schedule_entry_t *e, int64_t due_ms)
{
    schedule_remove(s, e);
    e->due_ms = due_ms;
    schedule_add(s, e);
}
