// A SPDY/3.1 server session as an I/O-free codec: the caller feeds the
// bytes it read, gets frames back as callbacks, and drains the bytes to
// write from an output buffer. One session per upgraded connection; not
// thread-safe. Streams are opened by the client only (kubectl's exec,
// attach and port-forward never need server-initiated streams).
#ifndef VMLET_SPDY_H
#define VMLET_SPDY_H

#include "vmlet/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct vmlet_spdy vmlet_spdy_t;

// One header. name is NUL-terminated lower case; value holds value_len
// bytes (several values are joined by NUL) and is NUL-terminated as well.
typedef struct {
    const char *name;
    const char *value;
    size_t value_len;
} vmlet_spdy_header_t;

// Callbacks run inside vmlet_spdy_feed. They may call reply, send,
// consumed, reset and goaway on the session, never destroy. Everything
// they receive is borrowed for the call.
typedef struct {
    // A client opened a stream (SYN_STREAM); fin: it will send no data.
    void (*on_stream)(void *ctx, uint32_t id, const vmlet_spdy_header_t *h, size_t n, bool fin);
    // Data for a stream, possibly in pieces of one frame; fin on the last
    // (len may be 0). The bytes count against the receive windows until
    // the application reports them with vmlet_spdy_consumed.
    void (*on_data)(void *ctx, uint32_t id, const uint8_t *data, size_t len, bool fin);
    // The client reset a stream (RST_STREAM status); the stream is gone.
    void (*on_reset)(void *ctx, uint32_t id, uint32_t status);
    // The client sent GOAWAY: it opens no more streams.
    void (*on_goaway)(void *ctx, uint32_t last_id, uint32_t status);
    void *ctx;
} vmlet_spdy_callbacks_t;

// Zero fields take the default in brackets.
typedef struct {
    uint32_t max_streams;         // open streams at once; more are REFUSED_STREAM [100]
    size_t max_header_bytes;      // a header block, compressed or inflated [64 KiB]
    uint32_t recv_window;         // per-stream receive window we advertise [64 KiB]
    uint32_t recv_session_window; // session receive window [64 KiB]
    size_t max_output;            // feed and send stop while this much is unwritten [1 MiB]
    // kubectl 1.20's spdystream neither sends WINDOW_UPDATE nor honours
    // windows: with this set, sends are not held to the peer's windows
    // and inbound data past our windows is accepted (TCP then does the
    // throttling). Without it, the session follows SPDY/3.1 to the letter.
    bool lenient_flow_control;
} vmlet_spdy_config_t;

// NULL (err set) if zlib cannot start. cfg may be NULL for the defaults.
// The SETTINGS frame announcing our limits is queued at once.
vmlet_spdy_t *vmlet_spdy_new(const vmlet_spdy_config_t *cfg, const vmlet_spdy_callbacks_t *cb,
                             vmlet_err_t *err);
void vmlet_spdy_destroy(vmlet_spdy_t **self_p);

// Parses bytes read from the connection, any split. Returns how many it
// took (fewer than len only while max_output bytes wait to be written:
// drain and feed the rest again), or -1 on a session error: a GOAWAY is
// queued, err says why, and the caller should write what is pending and
// close the connection.
ssize_t vmlet_spdy_feed(vmlet_spdy_t *s, const uint8_t *in, size_t len, vmlet_err_t *err);

// Answers stream id with SYN_REPLY carrying h (borrowed); fin ends our side.
// -1 (err set) if the stream is not open or was answered already, or a
// header name is not lower case.
int vmlet_spdy_reply(vmlet_spdy_t *s, uint32_t id, const vmlet_spdy_header_t *h, size_t n, bool fin,
                     vmlet_err_t *err);

// Queues up to len bytes of data (fin only once all of it is taken).
// Returns how many bytes it took: fewer when a send window or max_output
// is reached, so the caller keeps the rest and retries after a feed or a
// drain; -1 (err set) if the stream is not open for sending or not answered.
ssize_t vmlet_spdy_send(vmlet_spdy_t *s, uint32_t id, const uint8_t *data, size_t len, bool fin,
                        vmlet_err_t *err);

// How many bytes vmlet_spdy_send would take now for stream id (0 if none).
size_t vmlet_spdy_send_window(const vmlet_spdy_t *s, uint32_t id);

// The application has consumed n bytes delivered for stream id: reopens
// the receive windows by n with WINDOW_UPDATE for the stream (if still
// receiving) and the session. -1 (err set) if n exceeds what is in flight.
int vmlet_spdy_consumed(vmlet_spdy_t *s, uint32_t id, size_t n, vmlet_err_t *err);

// Resets stream id with RST_STREAM status; the stream is forgotten.
void vmlet_spdy_reset(vmlet_spdy_t *s, uint32_t id, uint32_t status);

// Queues GOAWAY status (once); new streams are ignored from then on.
void vmlet_spdy_goaway(vmlet_spdy_t *s, uint32_t status);

// The bytes waiting to be written (borrowed until the next call on s).
const uint8_t *vmlet_spdy_pending(const vmlet_spdy_t *s, size_t *len);
// n of the pending bytes were written.
void vmlet_spdy_written(vmlet_spdy_t *s, size_t n);

// True once a GOAWAY went either way (or a session error) and no stream is
// open: after writing what is pending, the connection can be closed.
bool vmlet_spdy_done(const vmlet_spdy_t *s);

#endif
