// What exec and attach share across transports (see remotecommand.h).
#include "remotecommand.h"
#include "session_client.h"
#include "ws_channel.h"

#include "vmlet/timeutil.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void remotecommand_resize_bytes(remotecommand_t *rc, const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (rc->resize_len == sizeof rc->resize_buf)
            rc->resize_len = 0; // no terminal size is this long: drop the garbage
        rc->resize_buf[rc->resize_len++] = (char)data[i];
        size_t object = vmlet_ws_resize_split(rc->resize_buf, rc->resize_len);
        if (!object)
            continue;
        uint16_t w = 0, h = 0;
        if (vmlet_ws_parse_resize(rc->resize_buf, object, &w, &h, NULL) == 0 && w && h) {
            Vmlet__SessionResize r = VMLET__SESSION_RESIZE__INIT;
            r.has_rows = 1, r.rows = h;
            r.has_cols = 1, r.cols = w;
            Vmlet__SessionFrame f = VMLET__SESSION_FRAME__INIT;
            f.body_case = VMLET__SESSION_FRAME__BODY_RESIZE;
            f.resize = &r;
            session_outbox_frame(&rc->outbox, &f);
        }
        memmove(rc->resize_buf, rc->resize_buf + object, rc->resize_len - object);
        rc->resize_len -= object;
    }
}

void remotecommand_stdin(remotecommand_t *rc, const void *data, size_t len)
{
    if (len == 0 || rc->input_closed)
        return;
    rc->last_traffic_ms = vmlet_now_ms();
    session_outbox_data(&rc->outbox, VMLET__SESSION_CHANNEL__SESSION_STDIN, data, len);
}

void remotecommand_close_input(remotecommand_t *rc)
{
    if (rc->input_closed)
        return;
    rc->input_closed = true;
    Vmlet__SessionCloseInput ci = VMLET__SESSION_CLOSE_INPUT__INIT;
    Vmlet__SessionFrame f = VMLET__SESSION_FRAME__INIT;
    f.body_case = VMLET__SESSION_FRAME__BODY_CLOSE_INPUT;
    f.close_input = &ci;
    session_outbox_frame(&rc->outbox, &f);
}

bool remotecommand_may_read_client(const remotecommand_t *rc)
{
    return rc->outbox.len < SESSION_OUTBOX_MAX;
}

short remotecommand_session_events(const remotecommand_t *rc)
{
    return (short)(POLLIN | (rc->outbox.len ? POLLOUT : 0));
}

int remotecommand_idle_left(const remotecommand_t *rc)
{
    int64_t left =
        rc->c->shared->settings->idle_timeout_ms - (vmlet_now_ms() - rc->last_traffic_ms);
    return left > 0 ? (int)(left < 3600000 ? left : 3600000) : 0;
}

char *remotecommand_status(const remotecommand_t *rc, size_t *len)
{
    const vmlet_ws_proto_t as = {.name = rc->protocol_name, .version = rc->version};
    if (rc->error[0])
        return vmlet_ws_status_internal(&as, rc->error, len);
    return vmlet_ws_status_exit(&as, rc->exit_code, len);
}

bool remotecommand_pump_session(remotecommand_t *rc,
                                bool (*out)(void *arg, int channel, const uint8_t *d, size_t n),
                                void *arg)
{
    Vmlet__SessionFrame *f = session_recv(rc->session);
    if (!f) {
        snprintf(rc->error, sizeof rc->error, "the pod's launcher went away");
        rc->ended = true;
        return false;
    }
    bool more = true;
    if (f->body_case == VMLET__SESSION_FRAME__BODY_DATA && f->data->has_data) {
        int channel = f->data->channel == VMLET__SESSION_CHANNEL__SESSION_STDERR ? VMLET_WS_STDERR
                                                                                 : VMLET_WS_STDOUT;
        rc->last_traffic_ms = vmlet_now_ms();
        more = out(arg, channel, f->data->data.data, f->data->data.len);
        if (!more)
            rc->client_gone = true;
    } else if (f->body_case == VMLET__SESSION_FRAME__BODY_END) {
        const Vmlet__SessionEnd *e = f->end;
        if (e->error)
            snprintf(rc->error, sizeof rc->error, "%s", e->error);
        rc->exit_code = e->has_exit_code ? e->exit_code : e->has_signal ? 128 + e->signal : 0;
        rc->ended = true;
        more = false;
    }
    vmlet__session_frame__free_unpacked(f, NULL);
    return more;
}
