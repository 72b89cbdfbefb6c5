// Envelope packing and topic names, derived from the descriptor (see envelope.h).
#include "vmlet/envelope.h"

#include <string.h>

static const ProtobufCFieldDescriptor *s_body_field(vmlet_body_case_t body_case)
{
    if ((int)body_case <= 0)
        return NULL;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&vmlet__envelope__descriptor, (unsigned)body_case);
    return f && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ? f : NULL;
}

const char *vmlet_envelope_topic(vmlet_body_case_t body_case)
{
    const ProtobufCFieldDescriptor *f = s_body_field(body_case);
    if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return NULL;
    return ((const ProtobufCMessageDescriptor *)f->descriptor)->short_name;
}

vmlet_body_case_t vmlet_envelope_case_for_topic(const char *topic)
{
    vmlet_body_case_t cases[VMLET_ENVELOPE_MAX_BODIES];
    size_t n = vmlet_envelope_body_cases(cases, VMLET_ENVELOPE_MAX_BODIES);
    for (size_t i = 0; i < n && i < VMLET_ENVELOPE_MAX_BODIES; i++)
        if (strcmp(vmlet_envelope_topic(cases[i]), topic) == 0)
            return cases[i];
    return VMLET__ENVELOPE__BODY__NOT_SET;
}

size_t vmlet_envelope_body_cases(vmlet_body_case_t *out, size_t cap)
{
    const ProtobufCMessageDescriptor *d = &vmlet__envelope__descriptor;
    size_t n = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) || f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (n < cap)
            out[n] = (vmlet_body_case_t)f->id;
        n++;
    }
    return n;
}

uint8_t *vmlet_envelope_pack(const vmlet_envelope_t *env, size_t *len)
{
    size_t n = vmlet__envelope__get_packed_size(env);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return NULL;
    *len = vmlet__envelope__pack(env, buf);
    return buf;
}

vmlet_envelope_t *vmlet_envelope_unpack(const uint8_t *data, size_t len, vmlet_err_t *err)
{
    vmlet_envelope_t *env = vmlet__envelope__unpack(NULL, len, data);
    if (!env)
        vmlet_err_set(err, "malformed envelope (%zu bytes)", len);
    return env;
}

void vmlet_envelope_free(vmlet_envelope_t **env_p)
{
    if (env_p && *env_p) {
        vmlet__envelope__free_unpacked(*env_p, NULL);
        *env_p = NULL;
    }
}

int vmlet_arena_init(vmlet_arena_t *arena, size_t cap)
{
    arena->buf = malloc(cap);
    arena->cap = arena->buf ? cap : 0;
    arena->used = 0;
    return arena->buf ? 0 : -1;
}

void vmlet_arena_clear(vmlet_arena_t *arena)
{
    free(arena->buf);
    *arena = (vmlet_arena_t){0};
}

static void *s_arena_alloc(void *data, size_t size)
{
    vmlet_arena_t *arena = data;
    size_t at = (arena->used + 15) & ~(size_t)15;
    if (at + size > arena->cap)
        return malloc(size);
    arena->used = at + size;
    return arena->buf + at;
}

static void s_arena_free(void *data, void *pointer)
{
    vmlet_arena_t *arena = data;
    uint8_t *p = pointer;
    if (p < arena->buf || p >= arena->buf + arena->cap)
        free(pointer); // spilled
}

vmlet_envelope_t *vmlet_envelope_unpack_in(vmlet_arena_t *arena, const uint8_t *data,
                                           size_t len, vmlet_err_t *err)
{
    ProtobufCAllocator allocator = {s_arena_alloc, s_arena_free, arena};
    arena->used = 0;
    vmlet_envelope_t *env = vmlet__envelope__unpack(&allocator, len, data);
    if (!env)
        vmlet_err_set(err, "malformed envelope (%zu bytes)", len);
    return env;
}

void vmlet_envelope_release(vmlet_arena_t *arena, vmlet_envelope_t **env_p)
{
    if (env_p && *env_p) {
        ProtobufCAllocator allocator = {s_arena_alloc, s_arena_free, arena};
        vmlet__envelope__free_unpacked(*env_p, &allocator);
        *env_p = NULL;
    }
    arena->used = 0;
}
