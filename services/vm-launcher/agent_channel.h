// The host end of the guest agent's protocol (proto/guest.proto): frames
// (4-byte big-endian length + GuestMessage), sequence numbers and acks,
// dedupe of what the agent resends after a reconnect, and a bounded outbox.
// It owns a connected stream fd and no event loop: the launcher polls the
// fd from its own loop and calls in (read when readable, flush when
// writable while something is pending).
//
// A new connection starts unsynchronised: QEMU may hand the new host the
// tail of a frame the agent wrote to the previous one, so bytes before the
// agent's first AgentHello are skipped (at most VMLET_AGENT_SYNC_MAX).
// From that Hello on, every frame must be well formed: an oversized or
// impossible length, or bytes that do not unpack, are a protocol error and
// the guest is to be cut off.
//
// Sequence numbers: every host message carries seq (from 1, continuing
// above what the agent says it has seen in its Hello's ack, so a
// restarted launcher is not taken for a resend) and ack (the highest agent
// seq received). Agent messages with seq <= the highest already received
// are resends and are dropped here. A Hello is exempt and does not raise
// that mark: after a reconnect the agent sends Hello and then, in order,
// what was never acknowledged, whose numbers are older than the Hello's.
#ifndef VMLET_AGENT_CHANNEL_H
#define VMLET_AGENT_CHANNEL_H

#include "vmlet/err.h"
#include "vmlet/proto/guest.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMLET_AGENT_FRAME_MAX (4u << 20)             // a larger frame is a protocol error
#define VMLET_AGENT_OUTBOX_DEFAULT (8u << 20)        // bytes of frames waiting to be written
#define VMLET_AGENT_READ_BUDGET_DEFAULT (256u << 10) // bytes one read call takes at most
#define VMLET_AGENT_STREAM_WINDOW (256u << 10)       // StreamData flow window (guest.proto)
#define VMLET_AGENT_SYNC_MAX (1u << 20)              // bytes skipped looking for the first Hello
#define VMLET_AGENT_HELLO_MAX (64u << 10)            // a Hello frame is at most this long

typedef struct _vmlet_agent_channel_t vmlet_agent_channel_t;

// Counters, for metrics and tests.
typedef struct {
    uint64_t bytes_in, frames_in, bytes_out, frames_out;
    uint64_t resends_dropped; // agent frames with an already-seen seq
    uint64_t bytes_skipped;   // bytes before the first Hello of this connection
} vmlet_agent_channel_stats_t;

// Takes ownership of fd (a connected stream socket; made non-blocking and
// closed by destroy). outbox_max: bytes of packed frames that may wait to
// be written (0: VMLET_AGENT_OUTBOX_DEFAULT). Returns NULL only if fd < 0.
vmlet_agent_channel_t *vmlet_agent_channel_new(int fd, size_t outbox_max);
// Closes the fd and frees queued messages. Safe on NULL and twice.
void vmlet_agent_channel_destroy(vmlet_agent_channel_t **self_p);

int vmlet_agent_channel_fd(const vmlet_agent_channel_t *self);

// The highest agent seq handled so far. Carry it from the old channel to a
// new one after a reconnect (or through a launcher restart, from its state
// directory), so what the agent resends is not taken twice.
uint64_t vmlet_agent_channel_last_seen(const vmlet_agent_channel_t *self);
void vmlet_agent_channel_set_last_seen(vmlet_agent_channel_t *self, uint64_t seq);

// Reads what the fd has, at most `budget` bytes (0: the default), so a
// flooding guest cannot starve the others sharing the loop; decodes whole
// frames into the inbox. Returns the number of messages waiting in the
// inbox (>= 0). On failure returns -1 and fills err, with err->code:
//   EPROTO      the agent broke the protocol (frame over 4 MiB, a length
//               that cannot be, bytes that do not unpack, no Hello within
//               VMLET_AGENT_SYNC_MAX bytes): cut it off
//   ECONNRESET  the other end closed the connection
//   other       the read(2) errno
// Messages decoded before an error stay in the inbox; after an error the
// channel is dead: drain it with next() if useful, then destroy it.
int vmlet_agent_channel_read(vmlet_agent_channel_t *self, size_t budget, vmlet_err_t *err);

// The oldest message waiting, or NULL. The caller owns it: free it with
// vmlet__guest_message__free_unpacked(msg, NULL).
Vmlet__GuestMessage *vmlet_agent_channel_next(vmlet_agent_channel_t *self);

// True once the agent's Hello arrived on this connection: only then may
// messages with a body be sent (the Hello's ack says where host numbering
// stands).
bool vmlet_agent_channel_hello_seen(const vmlet_agent_channel_t *self);

// Numbers msg (sets seq and ack; the caller's message is modified), packs
// it into the outbox and writes what the fd takes now. The message stays
// the caller's. Returns 0, or -1 with err->code:
//   EAGAIN    no Hello seen yet on this connection
//   EMSGSIZE  the packed message is over VMLET_AGENT_FRAME_MAX
//   ENOBUFS   the outbox would pass its bound (nothing was queued; retry
//             once flush has made room)
//   other     the write(2) errno (the channel is dead)
int vmlet_agent_channel_send(vmlet_agent_channel_t *self, Vmlet__GuestMessage *msg,
                             vmlet_err_t *err);

// True when agent messages arrived that no host message has acknowledged.
bool vmlet_agent_channel_ack_pending(const vmlet_agent_channel_t *self);
// Sends a message carrying only ack (no seq, no body), so the agent can
// free what it keeps for a resend. Call after handling a read's messages
// when ack_pending and nothing else is going out. Errors as for send
// (but never EAGAIN).
int vmlet_agent_channel_send_ack(vmlet_agent_channel_t *self, vmlet_err_t *err);

// Writes queued frames until the fd would block. Returns the bytes still
// queued (> 0: poll the fd for POLLOUT and call again), 0 when the outbox
// is empty, -1 on a write error (err filled; the channel is dead).
long vmlet_agent_channel_flush(vmlet_agent_channel_t *self, vmlet_err_t *err);
// Bytes waiting in the outbox.
size_t vmlet_agent_channel_pending(const vmlet_agent_channel_t *self);

void vmlet_agent_channel_stats(const vmlet_agent_channel_t *self,
                               vmlet_agent_channel_stats_t *stats);

#endif
