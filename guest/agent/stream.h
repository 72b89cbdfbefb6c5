// One byte stream of an exec session or a port-forward, with the flow
// window of guest.proto: each side sends at most AGENT_STREAM_WINDOW
// bytes the other has not yet reported consumed (StreamData.window_update).
#ifndef VMLET_AGENT_STREAM_H
#define VMLET_AGENT_STREAM_H

#include "agent.h"

typedef struct {
    uint32_t id;
    uint64_t credit; // bytes the agent may still send
    uint8_t *in;     // from the host, not yet written to the process/socket
    size_t in_len, in_cap;
    uint32_t consumed; // written since the last window update
    bool host_eof;     // the host sent StreamClose(write_side_only)
} stream_t;

void stream_init(stream_t *s, uint32_t id);
void stream_free(stream_t *s);
// Takes a StreamData from the host: its data (buffered) and its window
// update. Returns -1 (after an AgentError) if the host overran the window.
int stream_take(agent_t *a, stream_t *s, const Vmlet__StreamData *d);
// Writes buffered host data to fd and tells the host what was consumed.
// Returns -1 with errno on a write error other than EAGAIN.
int stream_drain(agent_t *a, stream_t *s, int fd);
// How much may be read for the host now (0: wait for a window update).
size_t stream_room(const stream_t *s);
// Sends data (which: an OutputStream for exec output, 0 otherwise).
void stream_send(agent_t *a, stream_t *s, int which, const void *data, size_t len);
void stream_send_close(agent_t *a, uint32_t id, bool write_side_only, const char *error);

#endif
