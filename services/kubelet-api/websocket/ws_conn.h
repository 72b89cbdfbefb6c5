// One upgraded WebSocket connection on the server side, without I/O: the
// caller feeds it the bytes read from the client and gets callbacks per
// channel message; what the server sends (channel data, pongs, close
// frames) collects in an output buffer the caller drains to the socket.
#ifndef VMLET_WS_CONN_H
#define VMLET_WS_CONN_H

#include "ws_handshake.h"

#include "vmlet/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vmlet_ws_conn vmlet_ws_conn_t;

typedef enum {
    VMLET_WS_OPEN,    // messages flow both ways
    VMLET_WS_CLOSING, // we sent a close; waiting for the client's
    VMLET_WS_CLOSED,  // done: flush the output, then close the socket
} vmlet_ws_state_t;

// Called from inside vmlet_ws_conn_feed; each may send, pause or close on
// the connection but must not destroy it. `arg` is the constructor's.
typedef struct {
    // A message's bytes for channel ch (decoded; never empty). Return 0,
    // or < 0 to fail the connection with close code 1011.
    int (*data)(void *arg, uint8_t ch, const uint8_t *bytes, size_t len);
    // A terminal size from the resize channel (4). May be NULL.
    void (*resize)(void *arg, uint16_t width, uint16_t height);
    // v5: the client closed its side of channel ch (its stdin, say). May be NULL.
    void (*stream_closed)(void *arg, uint8_t ch);
    // Once, when the connection reaches VMLET_WS_CLOSED: the client's close
    // code (1005 if it gave none) or the code we failed it with; reason is
    // borrowed for the call.
    void (*closed)(void *arg, int code, const char *reason);
} vmlet_ws_callbacks_t;

// A message up to this size is accepted when the constructor gets 0.
#define VMLET_WS_MAX_MESSAGE_DEFAULT (1u << 20)
// Outgoing channel data is cut into messages of at most this many bytes.
#define VMLET_WS_WRITE_CHUNK (32u << 10)

// A connection speaking proto (from vmlet_ws_handshake; static, borrowed).
// Messages larger than max_message bytes (0: the default) fail the
// connection with 1009 before they are buffered. cb is copied.
vmlet_ws_conn_t *vmlet_ws_conn_new(const vmlet_ws_proto_t *proto, size_t max_message,
                                   const vmlet_ws_callbacks_t *cb, void *arg);
// Frees the connection and NULLs *self_p; safe on NULL and twice.
void vmlet_ws_conn_destroy(vmlet_ws_conn_t **self_p);

// Parses len bytes from the client, calling back per complete message.
// Returns how many bytes it consumed: all of them, unless the connection
// is paused (then it stops after the message that paused it, and the
// caller keeps the rest and feeds it again after resuming). Bad input
// never returns an error: it queues a close frame and ends the connection
// (see vmlet_ws_conn_state and vmlet_ws_conn_error).
size_t vmlet_ws_conn_feed(vmlet_ws_conn_t *self, const void *bytes, size_t len);

// Back-pressure: while paused, feed consumes nothing more, so the caller
// stops reading the socket until whatever takes the data has room.
void vmlet_ws_conn_pause(vmlet_ws_conn_t *self, bool paused);

// Queues len bytes on channel ch (cut into messages of VMLET_WS_WRITE_CHUNK
// bytes; len 0 queues one empty message, which Kubernetes sends on the
// first output channel to tell the client the session is up). Returns 0,
// or -1 with err set once a close was sent or when proto cannot name ch.
int vmlet_ws_conn_send(vmlet_ws_conn_t *self, uint8_t ch, const void *bytes, size_t len,
                       vmlet_err_t *err);

// v5 only: tells the client the server will write no more on channel ch.
int vmlet_ws_conn_close_stream(vmlet_ws_conn_t *self, uint8_t ch, vmlet_err_t *err);

// Queues a ping (payload up to 125 bytes) to keep idle proxies from
// dropping the connection. Returns 0 or -1 with err set.
int vmlet_ws_conn_ping(vmlet_ws_conn_t *self, const void *payload, size_t len, vmlet_err_t *err);

// Starts the closing handshake: queues a close frame with code (a code
// allowed on the wire, usually 1000) and reason (truncated to fit 123
// bytes). The connection is CLOSING until the client's close arrives;
// the caller should give up after a timeout. Returns 0, or -1 with err set
// if already closing or the code is not sendable.
int vmlet_ws_conn_send_close(vmlet_ws_conn_t *self, int code, const char *reason, vmlet_err_t *err);

// The bytes waiting to be written to the socket (borrowed until the next
// call on the connection), and how many the caller managed to write.
const uint8_t *vmlet_ws_conn_pending(const vmlet_ws_conn_t *self, size_t *len);
void vmlet_ws_conn_written(vmlet_ws_conn_t *self, size_t n);

vmlet_ws_state_t vmlet_ws_conn_state(const vmlet_ws_conn_t *self);
// Why the connection was failed ("" if it was not); borrowed.
const char *vmlet_ws_conn_error(const vmlet_ws_conn_t *self);

#endif
