// Work-protocol frames: parsing and building (see bus_protocol.h).
#include "vmlet/bus_protocol.h"

#include <string.h>

// Which arguments each command carries, in frame order.
enum { ARG_QUEUE = 1, ARG_ITEM = 2, ARG_PAYLOAD = 4, ARG_NUMBER = 8, ARG_REASON = 16, ARG_HELD = 32 };

static const struct {
    const char *name;
    int args[4];
} commands[VMLET_WORK_COMMANDS] = {
    [VMLET_WORK_SUBMIT] = {"SUBMIT", {ARG_QUEUE, ARG_ITEM, ARG_PAYLOAD}},
    [VMLET_WORK_ACCEPTED] = {"ACCEPTED", {ARG_ITEM}},
    [VMLET_WORK_REJECTED] = {"REJECTED", {ARG_ITEM, ARG_REASON}},
    [VMLET_WORK_READY] = {"READY", {ARG_QUEUE, ARG_NUMBER, ARG_HELD}},
    [VMLET_WORK_WORK] = {"WORK", {ARG_ITEM, ARG_PAYLOAD, ARG_NUMBER}},
    [VMLET_WORK_DONE] = {"DONE", {ARG_ITEM}},
    [VMLET_WORK_NACK] = {"NACK", {ARG_ITEM, ARG_REASON}},
    [VMLET_WORK_HEARTBEAT] = {"HEARTBEAT", {0}},
    [VMLET_WORK_BYE] = {"BYE", {ARG_QUEUE}},
};

const char *vmlet_work_command_name(vmlet_work_command_t command)
{
    return command < VMLET_WORK_COMMANDS ? commands[command].name : "?";
}

static bool s_frame_is(zframe_t *frame, const char *text)
{
    size_t n = strlen(text);
    return frame && zframe_size(frame) == n && memcmp(zframe_data(frame), text, n) == 0;
}

// Copies a text frame into dst (cap bytes with NUL); rejects empty,
// oversized or NUL-containing frames.
static int s_copy_text(zframe_t *frame, char *dst, size_t cap, const char *what,
                       vmlet_err_t *err)
{
    size_t n = zframe_size(frame);
    if (n == 0 || n >= cap)
        return vmlet_err_set(err, "%s frame of %zu bytes (1..%zu allowed)", what, n, cap - 1);
    if (memchr(zframe_data(frame), '\0', n))
        return vmlet_err_set(err, "%s frame holds a NUL byte", what);
    memcpy(dst, zframe_data(frame), n);
    dst[n] = '\0';
    return 0;
}

static int s_parse_number(zframe_t *frame, long *out, vmlet_err_t *err)
{
    char text[24];
    if (s_copy_text(frame, text, sizeof text, "number", err) < 0)
        return -1;
    char *end;
    long value = strtol(text, &end, 10);
    if (*end || value < 0)
        return vmlet_err_set(err, "number frame '%s' is not a non-negative integer", text);
    *out = value;
    return 0;
}

static int s_parse_arg(int arg, zframe_t *frame, vmlet_work_msg_t *out, vmlet_err_t *err)
{
    switch (arg) {
    case ARG_QUEUE:
        return s_copy_text(frame, out->queue, sizeof out->queue, "queue", err);
    case ARG_ITEM:
        return s_copy_text(frame, out->item_id, sizeof out->item_id, "item id", err);
    case ARG_REASON:
        return s_copy_text(frame, out->reason, sizeof out->reason, "reason", err);
    case ARG_NUMBER:
        return s_parse_number(frame, &out->number, err);
    case ARG_HELD:
        return s_parse_number(frame, &out->held, err);
    case ARG_PAYLOAD:
        out->payload = zframe_data(frame);
        out->payload_len = zframe_size(frame);
        return 0;
    }
    return vmlet_err_set(err, "internal: unknown argument kind %d", arg);
}

int vmlet_work_msg_parse(zmsg_t *msg, vmlet_work_msg_t *out, vmlet_err_t *err)
{
    memset(out, 0, sizeof *out);
    zframe_t *frame = zmsg_first(msg);
    if (!s_frame_is(frame, VMLET_WORK_PROTOCOL))
        return vmlet_err_set(err, "not a %s message", VMLET_WORK_PROTOCOL);
    frame = zmsg_next(msg);
    int command = -1;
    for (int c = 0; c < VMLET_WORK_COMMANDS && command < 0; c++)
        if (s_frame_is(frame, commands[c].name))
            command = c;
    if (command < 0)
        return vmlet_err_set(err, "unknown %s command", VMLET_WORK_PROTOCOL);
    out->command = (vmlet_work_command_t)command;
    for (int i = 0; i < 4 && commands[command].args[i]; i++) {
        frame = zmsg_next(msg);
        if (!frame)
            return vmlet_err_set(err, "%s: missing frame %d", commands[command].name, i + 1);
        if (s_parse_arg(commands[command].args[i], frame, out, err) < 0)
            return vmlet_err_wrap(err, "%s", commands[command].name);
    }
    if (zmsg_next(msg))
        return vmlet_err_set(err, "%s: unexpected extra frames", commands[command].name);
    return 0;
}

static int s_add_arg(zmsg_t *msg, int arg, const vmlet_work_msg_t *in)
{
    switch (arg) {
    case ARG_QUEUE:
        return zmsg_addstr(msg, in->queue);
    case ARG_ITEM:
        return zmsg_addstr(msg, in->item_id);
    case ARG_REASON:
        return zmsg_addstr(msg, in->reason);
    case ARG_NUMBER:
        return zmsg_addstrf(msg, "%ld", in->number);
    case ARG_HELD:
        return zmsg_addstrf(msg, "%ld", in->held);
    case ARG_PAYLOAD:
        return zmsg_addmem(msg, in->payload, in->payload_len);
    }
    return -1;
}

zmsg_t *vmlet_work_msg_build(const vmlet_work_msg_t *in)
{
    if (in->command >= VMLET_WORK_COMMANDS)
        return NULL;
    zmsg_t *msg = zmsg_new();
    if (!msg || zmsg_addstr(msg, VMLET_WORK_PROTOCOL) < 0 ||
        zmsg_addstr(msg, commands[in->command].name) < 0) {
        zmsg_destroy(&msg);
        return NULL;
    }
    for (int i = 0; i < 4 && commands[in->command].args[i]; i++)
        if (s_add_arg(msg, commands[in->command].args[i], in) < 0) {
            zmsg_destroy(&msg);
            return NULL;
        }
    return msg;
}
