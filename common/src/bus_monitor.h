// Tells a bus role when its connection to the broker drops, so readiness
// reflects the present and not only the first handshake. Private to the
// bus classes.
#ifndef VMLET_BUS_MONITOR_H
#define VMLET_BUS_MONITOR_H

#include <czmq.h>
#include <stdbool.h>

// A PAIR socket receiving `sock`'s disconnect events; NULL on failure.
zsock_t *vmlet_bus_monitor_open(zsock_t *sock);

// Drains pending events; true if any said the connection dropped.
bool vmlet_bus_monitor_disconnected(zsock_t *monitor);

#endif
