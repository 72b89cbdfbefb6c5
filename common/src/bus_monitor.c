// Connection-drop events of a ZeroMQ socket (see bus_monitor.h).
#include "bus_monitor.h"

#include <stdint.h>
#include <string.h>

zsock_t *vmlet_bus_monitor_open(zsock_t *sock)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://vmlet-monitor-%p", (void *)sock);
    if (zmq_socket_monitor(zsock_resolve(sock), endpoint, ZMQ_EVENT_DISCONNECTED) < 0)
        return NULL;
    zsock_t *monitor = zsock_new(ZMQ_PAIR);
    if (monitor && zsock_connect(monitor, "%s", endpoint) < 0)
        zsock_destroy(&monitor);
    return monitor;
}

bool vmlet_bus_monitor_disconnected(zsock_t *monitor)
{
    bool dropped = false;
    zmsg_t *msg;
    // Each event is [uint16 event, uint32 value][endpoint].
    while ((zsock_events(monitor) & ZMQ_POLLIN) && (msg = zmsg_recv(monitor))) {
        zframe_t *head = zmsg_first(msg);
        if (head && zframe_size(head) >= 2) {
            uint16_t event;
            memcpy(&event, zframe_data(head), sizeof event);
            dropped |= event == ZMQ_EVENT_DISCONNECTED;
        }
        zmsg_destroy(&msg);
    }
    return dropped;
}
