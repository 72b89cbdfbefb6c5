// Wire format of the bus (docs/bus.md has the full description).
//
// Events: multipart [topic][Envelope bytes] from publisher (XPUB, connects
// to the broker's XSUB) through the broker to subscribers (SUB, connect to
// the broker's XPUB). A subscriber also subscribes to "_hello.<its id>";
// the broker answers that subscription with a message on that topic, which
// proves every earlier subscription of the subscriber is in place.
//
// Work: DEALER peers talk to the broker's ROUTER with frames
//   [VMLW1][command][args...]:
//   client -> broker  SUBMIT queue item_id payload
//   broker -> client  ACCEPTED item_id | REJECTED item_id reason
//   worker -> broker  READY queue capacity held (also the worker's heartbeat)
//   broker -> worker  WORK item_id payload attempt
//   worker -> broker  DONE item_id | NACK item_id reason
//   broker -> worker  HEARTBEAT
#ifndef VMLET_BUS_PROTOCOL_H
#define VMLET_BUS_PROTOCOL_H

#include "vmlet/err.h"

#include <czmq.h>
#include <stddef.h>
#include <stdint.h>

#define VMLET_WORK_PROTOCOL "VMLW1"
#define VMLET_BUS_HELLO_PREFIX "_hello."

#define VMLET_WORK_QUEUE_MAX 64
#define VMLET_WORK_ID_MAX 256
#define VMLET_WORK_REASON_MAX 256

typedef enum {
    VMLET_WORK_SUBMIT,
    VMLET_WORK_ACCEPTED,
    VMLET_WORK_REJECTED,
    VMLET_WORK_READY,
    VMLET_WORK_WORK,
    VMLET_WORK_DONE,
    VMLET_WORK_NACK,
    VMLET_WORK_HEARTBEAT,
    VMLET_WORK_BYE,
    VMLET_WORK_COMMANDS
} vmlet_work_command_t;

// One work-protocol message. Strings are copied in; payload is borrowed
// from the zmsg it was parsed from (valid while that message lives).
typedef struct {
    vmlet_work_command_t command;
    char queue[VMLET_WORK_QUEUE_MAX];
    char item_id[VMLET_WORK_ID_MAX];
    char reason[VMLET_WORK_REASON_MAX];
    long number; // READY: capacity; WORK: attempt
    long held;   // READY: items the worker holds now
    const uint8_t *payload;
    size_t payload_len;
} vmlet_work_msg_t;

const char *vmlet_work_command_name(vmlet_work_command_t command);

// Parses frames (after any ROUTER identity frame, which the caller pops).
// Returns -1 with err for a wrong protocol, unknown command, missing or
// oversized frame.
int vmlet_work_msg_parse(zmsg_t *msg, vmlet_work_msg_t *out, vmlet_err_t *err);

// Builds the frames for msg. Returns NULL when out of memory.
zmsg_t *vmlet_work_msg_build(const vmlet_work_msg_t *msg);

#endif
