// Envelope packing and topic names, derived from the descriptor (see envelope.h).
#include "vmlet/envelope.h"

#include <string.h>

static const ProtobufCFieldDescriptor *s_body_field(vmlet_body_case_t body_case)
{
    const ProtobufCMessageDescriptor *d = &vmlet__envelope__descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && (int)f->id == (int)body_case)
            return f;
    }
    return NULL;
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
