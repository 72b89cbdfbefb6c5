// The misbehaving agent, for the host's robustness tests only (built as
// vmlet-agent-misbehave with AGENT_TEST_MISBEHAVE). Once its first Hello is
// out it breaks the protocol, by vmlet.misbehave= on the kernel command line:
//   garbage (default)  a frame that does not unpack, an absurd length, then
//                      random bytes without end
//   flood              valid OutputChunks as fast as the host takes them,
//                      never waiting for an ack
// The normal build compiles this to nothing.
#include "agent.h"
#include "util.h"

#include <string.h>
#include <sys/random.h>

#ifdef AGENT_TEST_MISBEHAVE
#define FLOOD_QUEUE (1u << 20) // keep this much queued for the host

static void s_flood_output(agent_t *a)
{
    uint8_t data[AGENT_CHUNK_MAX];
    memset(data, 'f', sizeof data);
    data[sizeof data - 1] = '\n';
    Vmlet__OutputChunk o = VMLET__OUTPUT_CHUNK__INIT;
    o.container = "flood";
    o.has_data = 1;
    o.data.data = data;
    o.data.len = sizeof data;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_OUTPUT;
    msg.output = &o;
    link_send(a, &msg, false); // not kept: the point is to outrun the host
}

void misbehave_tick(agent_t *a)
{
    if (!a->t.connected)
        return;
    bool flood = strcmp(a->misbehave, "flood") == 0;
    if (a->misbehave_phase == 0) {
        a->misbehave_phase = 1;
        alog("misbehaving (%s) from now on", flood ? "flood" : "garbage");
        if (!flood) {
            // Length 16, then bytes that are no GuestMessage (a field
            // running past the end).
            static const uint8_t bad[] = {0,    0,    0,    16,   0x0a, 0x7f, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
            link_send_raw(a, bad, sizeof bad);
            static const uint8_t absurd[] = {0xff, 0xff, 0xff, 0xf0};
            link_send_raw(a, absurd, sizeof absurd);
        }
    }
    while (a->link.wq_bytes < FLOOD_QUEUE) {
        if (flood) {
            s_flood_output(a);
        } else {
            uint8_t junk[64u << 10];
            if (getrandom(junk, sizeof junk, GRND_NONBLOCK) < 0)
                memset(junk, 0xa5, sizeof junk);
            link_send_raw(a, junk, sizeof junk);
        }
    }
}
#else
void misbehave_tick(agent_t *a)
{
    (void)a;
}
#endif
