// Summing the live launchers' capacity (see capacity.h).
#include "capacity.h"

#include <czmq.h>
#include <string.h>

// Announcements without a validity count for this long.
#define DEFAULT_VALIDITY_MS 30000

typedef struct {
    capacity_sum_t figures; // this launcher's alone
    int64_t valid_until_ms;
} launcher_t;

struct _capacity_t {
    zhashx_t *launchers; // launcher id -> launcher_t
};

static void s_free(void **item)
{
    free(*item);
    *item = NULL;
}

capacity_t *capacity_new(void)
{
    capacity_t *self = calloc(1, sizeof *self);
    if (!self || !(self->launchers = zhashx_new())) {
        free(self);
        return NULL;
    }
    zhashx_set_destructor(self->launchers, s_free);
    return self;
}

void capacity_destroy(capacity_t **self_p)
{
    if (self_p && *self_p) {
        zhashx_destroy(&(*self_p)->launchers);
        free(*self_p);
        *self_p = NULL;
    }
}

bool capacity_update(capacity_t *self, const Vmlet__LauncherCapacity *a, int64_t now_unix_ms)
{
    if (!a->launcher_id || !a->launcher_id[0])
        return false;
    launcher_t *l = zhashx_lookup(self->launchers, a->launcher_id);
    if (!l) {
        l = calloc(1, sizeof *l);
        if (!l)
            return false;
        zhashx_insert(self->launchers, a->launcher_id, l);
    }
    l->figures = (capacity_sum_t){
        .cpu_millis = a->cpu_millis,
        .memory_bytes = a->memory_bytes,
        .pods = a->pods,
        .cpu_millis_used = a->cpu_millis_used,
        .memory_bytes_used = a->memory_bytes_used,
        .pods_used = a->pods_used,
        .launchers = 1,
    };
    l->valid_until_ms = a->has_valid_until_unix_ms ? a->valid_until_unix_ms
                                                   : now_unix_ms + DEFAULT_VALIDITY_MS;
    return true;
}

capacity_sum_t capacity_sum(capacity_t *self, int64_t now_unix_ms)
{
    capacity_sum_t sum = {0};
    zlistx_t *ids = zhashx_keys(self->launchers);
    for (const char *id = zlistx_first(ids); id; id = zlistx_next(ids)) {
        launcher_t *l = zhashx_lookup(self->launchers, id);
        if (l->valid_until_ms <= now_unix_ms) {
            zhashx_delete(self->launchers, id);
            continue;
        }
        sum.cpu_millis += l->figures.cpu_millis;
        sum.memory_bytes += l->figures.memory_bytes;
        sum.pods += l->figures.pods;
        sum.cpu_millis_used += l->figures.cpu_millis_used;
        sum.memory_bytes_used += l->figures.memory_bytes_used;
        sum.pods_used += l->figures.pods_used;
        sum.launchers++;
    }
    zlistx_destroy(&ids);
    return sum;
}
