// A real gRPC health server for tests: grpc.health.v1.Health/Check over
// HTTP/2 cleartext (h2c with prior knowledge), on Debian's libnghttp2, in a
// thread of the test process. It answers as grpc-go's health server does:
// a known service gets its status; an unknown one grpc-status 5 NOT_FOUND
// "unknown service"; "" starts SERVING. The two protobuf messages are
// encoded by hand. Test code only.
#ifndef VMLET_TS_GRPC_HEALTH_H
#define VMLET_TS_GRPC_HEALTH_H

#include <stddef.h>

typedef struct _ts_grpc_health_t ts_grpc_health_t;

// grpc.health.v1.HealthCheckResponse.ServingStatus; TS_GRPC_SERVICE_UNKNOWN
// makes the service unknown to the server (answered NOT_FOUND), as a real
// server answers for a service it never heard of.
typedef enum {
    TS_GRPC_UNKNOWN = 0,
    TS_GRPC_SERVING = 1,
    TS_GRPC_NOT_SERVING = 2,
    TS_GRPC_SERVICE_UNKNOWN = 3,
} ts_grpc_status_t;

// Starts it on 127.0.0.1 and a kernel-chosen port; NULL on failure.
ts_grpc_health_t *ts_grpc_health_start(void);
int ts_grpc_health_port(const ts_grpc_health_t *self);
void ts_grpc_health_stop(ts_grpc_health_t **self_p);

void ts_grpc_health_set(ts_grpc_health_t *self, const char *service, ts_grpc_status_t status);
// Every answer waits this long first (0: none).
void ts_grpc_health_set_delay(ts_grpc_health_t *self, int delay_ms);

// Check calls received for service (NULL: all).
size_t ts_grpc_health_calls(ts_grpc_health_t *self, const char *service);
// The user-agent of the last call (malloc'd; NULL before any).
char *ts_grpc_health_last_user_agent(ts_grpc_health_t *self);

#endif
