// The bus's one message type: packing, unpacking, and the mapping between
// a body's oneof case and its topic (the body message's name, e.g.
// "PodDesired"), derived from the protobuf descriptor so a new message type
// needs no table edits here.
#ifndef VMLET_ENVELOPE_H
#define VMLET_ENVELOPE_H

#include "vmlet/err.h"
#include "vmlet/proto/envelope.pb-c.h"

#include <stddef.h>
#include <stdint.h>

typedef Vmlet__Envelope vmlet_envelope_t;
typedef Vmlet__Envelope__BodyCase vmlet_body_case_t;

// Topic of a body case ("PodDesired"); NULL for NOT_SET or an unknown case.
const char *vmlet_envelope_topic(vmlet_body_case_t body_case);

// Body case of a topic; VMLET__ENVELOPE__BODY__NOT_SET if none matches.
vmlet_body_case_t vmlet_envelope_case_for_topic(const char *topic);

// Enough room for every body case; checked by the unit tests.
#define VMLET_ENVELOPE_MAX_BODIES 128

// Writes up to cap of the body cases the envelope knows, in field order,
// into out; returns how many there are.
size_t vmlet_envelope_body_cases(vmlet_body_case_t *out, size_t cap);

// Packs env; returns a malloc'd buffer (caller frees) and sets *len, or
// NULL when out of memory.
uint8_t *vmlet_envelope_pack(const vmlet_envelope_t *env, size_t *len);

// Unpacks `len` bytes. Returns NULL with err when the bytes are not an
// Envelope. A body this build does not know (a newer sender) comes back
// with body_case NOT_SET; the caller decides. Free with vmlet_envelope_free.
vmlet_envelope_t *vmlet_envelope_unpack(const uint8_t *data, size_t len, vmlet_err_t *err);

void vmlet_envelope_free(vmlet_envelope_t **env_p);

// A scratch arena for unpacking one envelope at a time without a malloc
// per field: the bus subscriber's hot path. Bigger messages spill to the
// heap transparently. Handlers only borrow an envelope, so its memory can
// be reused as soon as the handler returns.
typedef struct {
    uint8_t *buf;
    size_t cap, used;
} vmlet_arena_t;

// cap bytes of scratch; returns -1 when out of memory.
int vmlet_arena_init(vmlet_arena_t *arena, size_t cap);
void vmlet_arena_clear(vmlet_arena_t *arena);

// Like vmlet_envelope_unpack, allocating from the arena (which must be
// empty: release the previous envelope first).
vmlet_envelope_t *vmlet_envelope_unpack_in(vmlet_arena_t *arena, const uint8_t *data,
                                           size_t len, vmlet_err_t *err);
// Frees what spilled to the heap and empties the arena.
void vmlet_envelope_release(vmlet_arena_t *arena, vmlet_envelope_t **env_p);

#endif
