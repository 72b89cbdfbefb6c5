// vm-launcher's insides, shared by its files: the launcher (one per
// process) and the pods whose VMs it runs.
//
//   launcher.c     settings, start/stop, bus handlers, the tick, capacity
//   pod_vm.c       one pod's life: images, admission, boot, stop, clean-up
//   pod_agent.c    the conversation with the pod's guest agent
//   pod_setup.c    what the guest is told: PodSetup and StartContainer
//   pod_record.c   VmRecord in Redis and the state directory, VmEvents, adoption
//   pod_exec.c     exec requests from the bus
//   scratch_disk.c the pod's writable disk
//
// Everything runs on the service's one zloop thread.
#ifndef VMLET_LAUNCHER_INTERNAL_H
#define VMLET_LAUNCHER_INTERNAL_H

#include "agent_channel.h"
#include "container_run.h"
#include "cri_log.h"
#include "ctr.h"
#include "host.h"
#include "launcher.h"
#include "network.h"
#include "pod_deadline.h"
#include "vm_size.h"
#include "vm_template.h"
#include "vmm.h"

#include "vmlet/kube.h"
#include "vmlet/proto/envelope.pb-c.h"

#include <czmq.h>
#include <limits.h>

typedef struct pod_vm pod_vm_t;
typedef struct exec_session exec_session_t;
typedef struct session_server session_server_t;
typedef struct pod_stats pod_stats_t;
typedef struct volume_refresh volume_refresh_t;

typedef struct {
    vmlet_service_t *service;
    const launcher_settings_t *settings;
    vmlet_log_t *log;
    vmlet_store_t *store;
    zloop_t *loop;
    char id[256];
    char host_ip[64];
    host_resources_t allocatable;
    vm_size_settings_t sizes;
    ctr_backoff_settings_t backoff;
    cri_log_limits_t log_limits;
    int64_t scratch_bytes;
    vmm_t *vmm;
    vm_templates_t *templates; // NULL: templates off
    net_t *net;
    vmlet_kube_config_t kube_config;
    vmlet_kube_t *kube;
    zhashx_t *pods; // uid -> pod_vm_t
    int announce_timer;
    int first_announce_timer;
    int tick_timer;
    int64_t next_reconcile_ms;
    uint32_t next_stream_id;
    session_server_t *sessions; // kubectl logs/exec/attach/port-forward (session.h)
    volume_refresh_t *volume_refresh; // live files volumes (volume_refresh.h)
    // metrics
    vmlet_metric_t *vms;
    vmlet_metric_t *boots;            // cold boots
    vmlet_metric_t *restores;         // VMs restored from a template
    vmlet_metric_t *restore_failures; // restores that fell back to a cold boot
    vmlet_metric_t *boot_failures;
    vmlet_metric_t *protocol_errors;
    vmlet_metric_t *output_bytes;
    vmlet_metric_t *adopted;
    vmlet_metric_t *refused;
    vmlet_metric_t *boot_seconds;
    vmlet_metric_t *vms_by_state[7]; // by pv_state_t
    vmlet_metric_t *start_phase[4];  // by start_phase_t
    vmlet_metric_t *stats_samples;
    vmlet_metric_t *stats_guest_cpu;
} launcher_t;

// launcher_drain.c: whether this launcher takes no new pods now (and the
// draining gauge set so); whether a LaunchRequest for uid is declined.
bool launcher_drained(launcher_t *l);
bool launcher_drain_declines(launcher_t *l, const char *uid);

// --- one pod's VM ------------------------------------------------------------------

typedef enum {
    PV_PENDING,  // waiting for images, a fixable problem, or capacity
    PV_BOOTING,  // VMM started; waiting for the agent's Hello
    PV_SETUP,    // PodSetup sent; waiting for PodReady
    PV_RUNNING,  // containers run, exit and restart
    PV_STOPPING, // signals sent; waiting for the grace period or the exits
    PV_STOPPED,  // the VM is gone (deleted, or every container finished)
    PV_FAILED,   // it cannot run here (admission, unrecoverable)
} pv_state_t;

// A container's image on the VM: one read-only disk per distinct image.
typedef struct {
    char digest[160];
    char rootfs[PATH_MAX];
    char serial[24];
    Vmlet__ImageConfig *config;
} pod_image_t;

// The parts of a pod's start, as vmlet_launcher_pod_start_seconds{phase}.
typedef enum {
    START_IMAGE,     // LaunchRequest taken -> images ready and the VMM started
    START_BOOT,      // VMM started -> the guest agent's hello
    START_CONTAINER, // hello -> the containers running
    START_TOTAL,     // LaunchRequest taken -> the containers running
} start_phase_t;

// Wall-clock (Unix ms) steps of the pod's first start on this launcher,
// 0 until reached (VmRecord.start: the start-up benchmark reads them).
typedef struct {
    int64_t launch, images_ready, vm_start, agent_hello, setup_done, running;
    int64_t vmm_cpu_ms;         // the VMM's CPU time when the first container ran
    char vm_start_kind[16];     // "template" or "cold"
    char template_skipped[200]; // why a cold boot although templates are on
} start_steps_t;

struct pod_vm {
    launcher_t *l;
    char uid[64];
    // Monotonic: when this launcher took the pod (0 for a VM adopted after
    // a restart: its start was timed by the launcher before), and when its
    // agent said hello. start_timed once the start has been observed.
    int64_t made_ms, hello_ms;
    bool start_timed;
    start_steps_t steps;
    char desc[400]; // "name_namespace(uid)", as the kubelet names a pod in messages
    Vmlet__PodSpec *spec;
    char spec_hash[64];
    pv_state_t state;
    char reason[64];
    char message[512];
    uint64_t generation;
    int64_t event_sent_ms; // monotonic: the last VmEvent published
    int64_t created_unix_ms;
    // The pod failed as a whole (DeadlineExceeded), whatever its containers
    // say: VmEvent.pod_failure_reason. Empty while it has not.
    char failure_reason[64];
    char failure_message[256];
    pod_deadline_t deadline; // activeDeadlineSeconds (pod_deadline.h)
    vm_size_t size;
    char state_dir[PATH_MAX];
    net_lease_t lease;
    bool has_lease;
    // containers: init containers first (n_init of them), then the rest
    ctr_t *ctrs;
    pod_image_t *images; // per container, same order
    cri_log_t **logs;    // per container: the current run's log, or NULL
    size_t n_ctrs, n_init;
    // the VM
    vmm_vm_t *vm;
    bool exit_polled;
    int boots;
    int boot_failures;
    int64_t boot_started_ms; // monotonic
    char restored_from[PATH_MAX]; // the template this VM was restored from; "": booted cold
    int64_t next_boot_ms;    // monotonic: a failed boot waits
    // the agent
    vmlet_agent_channel_t *ch;
    bool ch_polled;
    short ch_events;
    uint64_t last_seen_seq;
    int64_t next_connect_ms;
    int protocol_errors;
    bool setup_sent;
    bool setup_done;
    int64_t next_setup_ms;
    int64_t next_ping_ms;
    // stopping
    bool stop_requested;
    int64_t grace_s;
    int64_t stop_deadline_unix_ms;
    bool killed;
    bool poweroff_sent;
    int64_t poweroff_deadline_ms;
    // when a retryable problem is looked at again (images, secrets...)
    int64_t next_retry_ms;
    zlistx_t *execs;    // exec_session_t
    pod_stats_t *stats; // sampling for kubectl top (pod_stats.c), or NULL
};

// pod_vm.c
pod_vm_t *pod_vm_new(launcher_t *l, const char *uid);
void pod_vm_destroy(pod_vm_t **self_p);
// A LaunchRequest or PodDesired for this pod (spec_hash may be NULL).
void pod_vm_desired(pod_vm_t *self, const char *spec_hash);
// The pod is being deleted: stop with this grace period (< 0: the spec's).
void pod_vm_stop(pod_vm_t *self, int64_t grace_s, const char *reason);
// Restarts a running container: its stop signal, SIGKILL after grace_s
// (< 0: the pod's grace period); restartPolicy then runs it again.
void pod_vm_restart_container(pod_vm_t *self, const char *name, const char *reason,
                              const char *message, int64_t grace_s);
// Every running container ended with its VM (exit 137, message); with
// may_restart those restartPolicy runs again are left to run (see
// pod_vm_schedule_restarts), the others are done.
void pod_vm_end_running(pod_vm_t *self, const char *message, bool may_restart);
// Terminated containers that will run again get their restart time.
void pod_vm_schedule_restarts(pod_vm_t *self);
// The pod cannot run here: its VM is killed and released, its containers
// end, and it stays failed (reason, message) until it is deleted.
void pod_vm_fail(pod_vm_t *self, const char *reason, const char *message);
// Called by the launcher's tick; also after images change.
void pod_vm_tick(pod_vm_t *self);
// The VMM process exited.
void pod_vm_on_vm_exit(pod_vm_t *self);
// True once the pod is gone for good and may be forgotten.
bool pod_vm_finished(const pod_vm_t *self);
const char *pod_vm_state_name(pv_state_t state);
// Every container finished and none runs again: the VM can go.
bool pod_vm_all_done(const pod_vm_t *self);
// Starts whatever container is due (init containers in order, then the rest).
void pod_vm_start_due(pod_vm_t *self);
// Polls the VMM's exit fd (the tick notices an exit too; this makes it prompt).
void pod_vm_watch_exit(pod_vm_t *self);
// Stops polling the VMM exit fd and the agent fd, closing the channel.
void pod_vm_unpoll(pod_vm_t *self);
void pod_vm_set_state(pod_vm_t *self, pv_state_t state, const char *reason, const char *message);
// Container i's spec (init containers first), or NULL without a spec.
const Vmlet__Container *pod_vm_spec_container(const pod_vm_t *self, size_t i);
// Sends container i its stop signal (the image's STOPSIGNAL, else SIGTERM).
void pod_vm_signal_stop(pod_vm_t *self, size_t i);
ctr_t *pod_vm_ctr(pod_vm_t *self, const char *name, size_t *index);

// pod_agent.c
// Connects to the agent if not connected and the VM runs.
void pod_agent_connect(pod_vm_t *self);
void pod_agent_close(pod_vm_t *self);
// Sends msg (numbering it); false if the agent is not there to take it.
bool pod_agent_send(pod_vm_t *self, Vmlet__GuestMessage *msg);
void pod_agent_flush_poll(pod_vm_t *self);
// Heartbeats while the agent is there.
void pod_agent_tick(pod_vm_t *self);

// pod_setup.c
// Builds and sends PodSetup. Returns 0 sent, 1 when a retryable problem
// keeps the containers waiting (set on them), -1 on error (logged).
int pod_setup_send(pod_vm_t *self);
// Builds and sends StartContainer for container i. Returns 0 sent, 1 when
// a problem keeps it waiting (set on it), -1 when it could not be sent.
int pod_setup_start_container(pod_vm_t *self, size_t i);
// Secret fetcher for container_run, over the launcher's API client.
int pod_setup_fetch_secret(void *ctx, const char *ns, const char *name, cJSON **data,
                           vmlet_err_t *err);

// pod_record.c
// Saves the VmRecord (Redis and state dir) and publishes a VmEvent.
void pod_record_changed(pod_vm_t *self);
// Publishes the standing VmEvent again if none went out for
// VM_EVENT_RESEND_MS (subscribers that were away learn it).
#define VM_EVENT_RESEND_MS 10000
void pod_record_resend(pod_vm_t *self);
// Tells Kubernetes of something no status says (a Warning Event on the
// pod, or on one of its containers when container is not NULL).
void pod_record_event(pod_vm_t *self, const char *container, const char *reason,
                      const char *message);
// Forgets the pod in Redis (it is stopped and reported).
void pod_record_drop(pod_vm_t *self);
// Adopts every VM this launcher's records name. Returns how many.
int pod_record_adopt_all(launcher_t *l);
// The agent seq seen, kept in the state dir so a restart does not take
// a resent message twice.
void pod_record_save_seq(pod_vm_t *self);

// pod_exec.c
int pod_exec_request(launcher_t *l, const Vmlet__ExecRequest *req);
// The launcher's own exec (lifecycle hooks): argv in the container through
// the agent; done is called once with the exit code, or timed_out, or
// error (the pod's agent went away...), and stdout+stderr; with pod NULL
// when the pod's VM or the launcher stops first (nothing to act on). -1
// when the agent cannot be reached now (done is not called).
typedef void (*pod_exec_done_fn)(pod_vm_t *pod, const char *container, int exit_code,
                                 bool timed_out, const char *error, const char *output,
                                 void *arg);
int pod_exec_run(pod_vm_t *pod, const char *container, char *const *argv, size_t argc,
                 int timeout_ms, pod_exec_done_fn done, void *arg);
void pod_exec_on_started(pod_vm_t *self, const Vmlet__ExecStarted *m);
void pod_exec_on_data(pod_vm_t *self, const Vmlet__StreamData *m);
void pod_exec_on_close(pod_vm_t *self, const Vmlet__StreamClose *m);
void pod_exec_on_exited(pod_vm_t *self, const Vmlet__ExecExited *m);
// Ends sessions past their deadline, or all of them (the agent went away).
void pod_exec_tick(pod_vm_t *self, bool abort_all, const char *why);

// pod_stats.c: the VM's resource figures in vmlet:stats:<uid>
// Asks the agent for a sample when one is due (the pod's VM runs).
void pod_stats_tick(pod_vm_t *self);
// The agent's StatsReply: written to Redis as a PodStats.
void pod_stats_on_reply(pod_vm_t *self, const Vmlet__StatsReply *r);
// The VM stopped: its sample goes from Redis.
void pod_stats_forget(pod_vm_t *self);
// Frees the sampling state only (the launcher stops; VMs may run on).
void pod_stats_free(pod_vm_t *self);

// scratch_disk.c
// Makes path a sparse ext4 file of `bytes` (idempotent: an existing one is kept).
int scratch_disk_make(const char *path, int64_t bytes, vmlet_err_t *err);

// session_server.c: what the pods tell kubectl sessions (the rest is in session.h)
// A stream message from the agent (StreamData, StreamClose, ExecStarted,
// ExecExited): true if it was a session's (else it is the bus exec's).
bool session_on_agent(pod_vm_t *pod, const Vmlet__GuestMessage *msg);
// Container output (the same the CRI log gets): to attached sessions.
void session_on_output(pod_vm_t *pod, const Vmlet__OutputChunk *m);
// A run of container i ended (its log closed first): attach and follow end.
void session_on_container_exit(pod_vm_t *pod, size_t i, int exit_code, int signal);
// The pod's VM went away or the pod is forgotten: its sessions end.
void session_on_pod_gone(pod_vm_t *pod, const char *why);

// launcher.c
void launcher_publish(launcher_t *l, vmlet_envelope_t *env);
int64_t launcher_used(launcher_t *l, int64_t *cpu_millis, int64_t *memory_bytes);

#endif
