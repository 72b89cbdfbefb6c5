// Helpers shared by vmlet's C tests: the real servers they start, polling
// with deadlines, and plain HTTP GETs. Test code only.
#ifndef VMLET_TESTSUPPORT_H
#define VMLET_TESTSUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#include <cmocka.h>

// Monotonic milliseconds.
int64_t ts_now_ms(void);

// A TCP port on 127.0.0.1 free at the time of the call (kernel-chosen).
int ts_free_port(void);

// A value from the test bed's $VMLET_BED_DIR/bed.env (KEY=VALUE lines, as
// written by tests/bed/start.sh). Caller frees; NULL if absent.
char *ts_bed_value(const char *key);

// Path of a vmlet binary in the build tree ("vmlet-bus"). Caller frees.
char *ts_bin_path(const char *name);

// Starts argv[0] with the rest as arguments; stdout and stderr go to
// `log_path` when not NULL. Returns the pid (the child is its own process
// group leader so ts_kill can take its children too) or -1.
pid_t ts_spawn(const char *log_path, char *const argv[]);
// fork(), but the child is PID 1 of a new PID namespace, as a container's
// entry point is (needs CAP_SYS_ADMIN); -1 with errno when refused.
pid_t ts_fork_pid1(void);
// ts_spawn, as PID 1 of a new PID namespace; the test stays its parent,
// so ts_wait_exit, ts_kill and the death signal work as for any child.
pid_t ts_spawn_pid1(const char *log_path, char *const argv[]);
// Sends sig to the process; returns 0 if delivered.
int ts_kill(pid_t pid, int sig);
// Waits up to timeout_ms for exit. Returns 0 and sets *status (raw wait
// status) or -1 on timeout.
int ts_wait_exit(pid_t pid, int timeout_ms, int *status);

// A redis-server of the test's own on 127.0.0.1 (dir is a fresh temporary
// directory; password may be NULL).
typedef struct {
    pid_t pid;
    int port;
    char dir[256];
    char password[64];
} ts_redis_t;
int ts_redis_start(ts_redis_t *redis, const char *password);
// Restarts on the same port (persisted data kept).
int ts_redis_restart(ts_redis_t *redis);
void ts_redis_stop(ts_redis_t *redis);

// GET url; returns 0 with HTTP status and malloc'd body (caller frees) or
// -1 when the request failed.
int ts_http_get(const char *url, long *status, char **body);

// Polls `check(arg)` every 10 ms until it returns true or timeout_ms passes.
bool ts_poll(bool (*check)(void *arg), void *arg, int timeout_ms);

// Value of the Prometheus series `series` (exact text before the value,
// e.g. `vmlet_bus_events_lost_total{type="X"}`) in exposition text, or -1.
double ts_metric_value(const char *exposition, const char *series);

// Waits up to timeout_ms for a line starting with `prefix` in the file at
// path (a child's output). Returns the line without newline (caller
// frees), or NULL on timeout.
char *ts_wait_line(const char *path, const char *prefix, int timeout_ms);

// The integer after "key=" in a "RESULT a=1 b=2" line, or -1.
long ts_kv(const char *line, const char *key);

// The real broker (vmlet-bus) on free ports of its own.
typedef struct {
    pid_t pid;
    int http_port;
    char publish[64], subscribe[64], work[64]; // tcp://127.0.0.1:PORT
    char log[256];
} ts_broker_t;
// extra: NULL-terminated additional flags (e.g. "--hwm=1000"), may be NULL.
int ts_broker_start(ts_broker_t *broker, const char *dir, const char *const extra[]);
// Restarts it on the same ports.
int ts_broker_restart(ts_broker_t *broker, const char *const extra[]);
void ts_broker_stop(ts_broker_t *broker);

// Removes a test's directory, unless VMLET_TEST_KEEP is set (then it
// says where it is, for a look at the logs).
void ts_remove_dir(const char *dir);

// A fresh directory under /tmp; returns a malloc'd path.
char *ts_tempdir(const char *prefix);

// Runs a cmocka group; VMLET_TEST_FILTER (a cmocka pattern, e.g.
// "*restart*") picks which tests run.
#define TS_RUN(tests)                                                                              \
    (getenv("VMLET_TEST_FILTER") ? cmocka_set_test_filter(getenv("VMLET_TEST_FILTER")) : (void)0,   \
     cmocka_run_group_tests(tests, NULL, NULL))

#endif
