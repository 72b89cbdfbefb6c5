// One container of a pod's VM as the launcher tracks it, and the kubelet's
// rules for it: its state (waiting with a reason, running, terminated),
// the last termination, restartCount (the number of the run, counting
// from 0), whether restartPolicy restarts it, and the CrashLoopBackOff
// delays (none for the first restart, then 10 s doubling to 300 s; a
// container that ran for 10 minutes starts over).
#ifndef VMLET_LAUNCHER_CTR_H
#define VMLET_LAUNCHER_CTR_H

#include "vmlet/proto/envelope.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum { CTR_WAITING, CTR_RUNNING, CTR_TERMINATED } ctr_phase_t;

typedef struct {
    int exit_code;
    int signal;
    char reason[32];    // Completed, Error, OOMKilled, StartError...
    char message[4097]; // a failed start's reason, or the termination message (<= 4096 bytes)
    int64_t started_unix_ms;
    int64_t finished_unix_ms;
} ctr_exit_t;

typedef struct {
    int64_t initial_ms; // 10 s
    int64_t max_ms;     // 300 s
} ctr_backoff_settings_t;

typedef struct {
    char name[64];
    bool init;
    ctr_phase_t phase;
    char reason[64];   // waiting: why
    char message[512];
    int64_t started_unix_ms; // running: since when
    ctr_exit_t exit;         // terminated: how (phase TERMINATED), or the last run's end
    bool has_exit;
    ctr_exit_t last;         // the termination before the current state, for lastState
    bool has_last;
    unsigned instance;       // the current or last run: restartCount
    bool ever_started;
    // CrashLoopBackOff: the delay the next failure waits, when it was set,
    // and when a waiting container starts again (wall clock, so it
    // survives a launcher restart).
    int64_t backoff_ms;
    int64_t backoff_updated_unix_ms;
    int64_t restart_at_unix_ms;
    bool done; // finished and will not run again (restartPolicy said so)
    int64_t kill_at_unix_ms; // asked to stop: SIGKILL if still running then (0: not asked)
    // Lifecycle hooks (pod_hooks.c): a running container whose postStart
    // hook has not finished reports Waiting (ContainerCreating), as it is
    // not Running for Kubernetes until then; one whose preStop hook runs
    // gets its stop signal when the hook is done.
    bool post_start_running;
    bool pre_stop_running;
    int64_t config_retry_ms; // the delay before trying a container that could not start again
} ctr_t;

void ctr_init(ctr_t *c, const char *name, bool init);

// Waiting with a reason (ContainerCreating, PodInitializing,
// CreateContainerConfigError...).
void ctr_wait(ctr_t *c, const char *reason, const char *message);

// A run (number instance) started at started_unix_ms.
void ctr_started(ctr_t *c, unsigned instance, int64_t started_unix_ms);

// The current run ended.
void ctr_exited(ctr_t *c, const ctr_exit_t *exit);

// Whether restartPolicy ("Always", "OnFailure", "Never") runs the container
// again after it exited with exit_code. An init container that succeeded
// is done whatever the policy; one that failed is retried unless Never.
bool ctr_should_restart(const char *restart_policy, bool init, int exit_code);

// A container that exited and will run again: when (wall clock, never
// before finished_unix_ms), updating its back-off as the kubelet does.
// When the delay is not zero the container waits with CrashLoopBackOff
// and a message naming the delay, the container and the pod.
int64_t ctr_schedule_restart(ctr_t *c, const ctr_backoff_settings_t *settings,
                             const char *pod_desc);

// The container's status for a VmEvent (free with
// vmlet__container_status__free_unpacked(s, NULL)). image and image_id
// may be NULL; container_id is "vmlet://<vm>/<name>/<run>", a new one for
// every run as a CRI runtime gives a new container.
Vmlet__ContainerStatus *ctr_status(const ctr_t *c, const char *image, const char *image_id,
                                   const char *vm_id);

// To and from what a VmRecord keeps (free with
// vmlet__container_record__free_unpacked(r, NULL)).
Vmlet__ContainerRecord *ctr_to_record(const ctr_t *c, const char *image, const char *image_id,
                                      const char *vm_id);
void ctr_from_record(ctr_t *c, const Vmlet__ContainerRecord *r);

#endif
