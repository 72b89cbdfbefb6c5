// The guest agent's shared state and the functions its files offer each
// other. The agent is PID 1 of a pod's VM: one thread, one poll loop
// (main.c), one agent_t that every handler receives.
#ifndef VMLET_AGENT_H
#define VMLET_AGENT_H

#include "vmlet/err.h"
#include "vmlet/proto/guest.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AGENT_VERSION "vmlet-agent/" VMLET_VERSION

// Output and exits kept until the host acknowledges them (guest.proto's
// AGENT_UNACKED_MAX). At the bound the agent stops reading containers'
// pipes, so a container writing while the host is away blocks instead of
// growing the agent (or losing lines).
#define AGENT_UNACKED_MAX (8u << 20)
#define AGENT_FRAME_MAX (4u << 20)       // guest.proto: larger frames are an error
#define AGENT_CHUNK_MAX (32u << 10)      // one OutputChunk / StreamData at most
#define AGENT_STREAM_WINDOW (256u << 10) // guest.proto's STREAM_WINDOW
#define AGENT_HELLO_EVERY_MS 1000        // Hello repeats until the host answers
#define AGENT_DRAIN_MS 2000              // output still read after a process exits
#define AGENT_READ_BUDGET (256u << 10)   // bytes read from the host per loop turn
#define AGENT_VSOCK_PORT 1024

// Where the pod lives inside the VM (the agent's own root is a tmpfs).
#define RUN_DIR "/run/vmlet"
#define SCRATCH_DIR RUN_DIR "/scratch"       // the pod's writable disk
#define IMAGES_DIR RUN_DIR "/images"         // each image disk, read-only
#define VOLUMES_DIR RUN_DIR "/volumes"       // tmpfs-backed volumes
#define POD_ETC_DIR RUN_DIR "/etc"           // resolv.conf, hosts, hostname
#define CONTAINERS_DIR RUN_DIR "/containers" // roots and termination logs
#define CGROUP_DIR "/sys/fs/cgroup"          // cgroup2: one group per container

typedef struct agent agent_t;
typedef struct frame frame_t;
typedef struct exec_session exec_t;
typedef struct port_forward fwd_t;
typedef struct attach_stream attach_t;

// --- loop (main.c) -------------------------------------------------------------------------
typedef void (*watch_fn)(agent_t *a, void *obj, int fd, short revents);
// Polls fd for events during the coming turn (registrations last one turn).
void loop_watch(agent_t *a, int fd, short events, watch_fn fn, void *obj);
// Wakes the loop by monotonic time `when_ms` at the latest this turn.
void loop_deadline(agent_t *a, int64_t when_ms);

// --- the channel to the host (transport.c, link.c) ----------------------------------------
enum { TRANSPORT_SERIAL, TRANSPORT_VSOCK };

typedef struct {
    int kind;
    int fd;        // serial: the port, always open; vsock: the accepted connection or -1
    int listen_fd; // vsock only
    bool connected;
    char path[64]; // serial port device, for logs
} transport_t;

int transport_open(agent_t *a, vmlet_err_t *err);
// Registers the transport's fds for this turn and notices connects and
// disconnects (it calls link_on_connect / link_on_disconnect).
void transport_watch(agent_t *a);
ssize_t transport_read(agent_t *a, void *buf, size_t len);
ssize_t transport_write(agent_t *a, const void *buf, size_t len);
// Drops the current connection (vsock) or treats the port as unplugged
// until the host reconnects (serial).
void transport_drop(agent_t *a);

typedef struct {
    uint64_t next_seq;  // of the next message the agent sends
    uint64_t host_seen; // highest host seq handled
    frame_t *unacked_head, *unacked_tail;
    size_t unacked_bytes;
    frame_t *wq_head, *wq_tail; // frames to write on this connection
    size_t wq_off, wq_bytes;
    uint8_t *rbuf;
    size_t rlen, rcap;
    bool host_answered; // on this connection
    int64_t next_hello_ms;
    unsigned connections;
} link_t;

void link_init(link_t *l);
void link_on_connect(agent_t *a);
void link_on_disconnect(agent_t *a);
// Reads and handles what the host sent (at most AGENT_READ_BUDGET bytes).
void link_read(agent_t *a);
// Writes queued frames until the transport would block.
void link_flush(agent_t *a);
void link_tick(agent_t *a, int64_t now);
// Numbers msg (seq, ack) and queues it. Reliable messages (output, exits)
// are kept until acknowledged and resent after a reconnect.
void link_send(agent_t *a, Vmlet__GuestMessage *msg, bool reliable);
// Queues raw bytes (the misbehaving test agent only).
void link_send_raw(agent_t *a, const void *bytes, size_t len);
bool link_backpressure(const agent_t *a);  // output must wait for acks
bool link_writable_soon(const agent_t *a); // something waits to be written

// --- what the host says (dispatch.c) -------------------------------------------------------
void dispatch_message(agent_t *a, const Vmlet__GuestMessage *msg);
void send_hello(agent_t *a);
// An AgentError (what: "setup", "start", "exec", "protocol"...).
void send_error(agent_t *a, const char *what, const char *container, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// --- the pod (setup.c, net.c, volumes.c) ---------------------------------------------------
typedef struct {
    char *name;
    char *dir;  // where its files are, in the agent's view
    bool tmpfs; // mounted by the agent at dir
    // A files volume (atomic_write.h): what WriteFiles updates, with the
    // mode and fsGroup (< 0: none) setup gave; the data directory the last
    // update replaced, removed at old_data_until_ms (volumes_tick).
    bool files;
    uint32_t default_mode;
    int64_t fs_group;
    char old_data[64];
    int64_t old_data_until_ms;
} volume_t;

typedef struct {
    char *volume, *path, *sub_path;
    bool read_only;
} mount_spec_t;

typedef struct container {
    char *name;
    char *image;    // its image disk's serial
    char root[128]; // its overlay, mounted in the agent's namespace
    char upper[128], work[128];
    char termlog[128]; // bind-mounted at termination_message_path
    char cgroup[128];  // its cgroup (empty without cgroup2), for OOM kills
    long oom_kills;    // the cgroup's oom_kill count when this run started
    char *term_path;
    bool tty, stdin_open, root_mounted;
    mount_spec_t *mounts;
    size_t n_mounts;
    // The current (or last) run.
    Vmlet__StartContainer *run; // a copy of what the host sent
    uint32_t instance;
    pid_t pid;     // > 0 while the process runs
    bool reported; // ContainerExited sent for this run
    bool exited;   // the process is gone; output may still be draining
    int status;    // wait status when exited
    int64_t started_unix_ms, finished_unix_ms, drain_deadline_ms;
    int out_fd[2]; // stdout and stderr pipes, or the pty master in [0]
    int stdin_fd;  // kept open when the container has stdin
} container_t;

int setup_apply(agent_t *a, const Vmlet__PodSetup *setup, vmlet_err_t *err);
int net_setup(const Vmlet__PodSetup *setup, vmlet_err_t *err);
int net_loopback_up(vmlet_err_t *err);
int volumes_setup(agent_t *a, const Vmlet__PodSetup *setup, vmlet_err_t *err);
int volumes_write_files(agent_t *a, const Vmlet__WriteFiles *w, vmlet_err_t *err);
// Removes updated volumes' old data once their grace is over.
void volumes_tick(agent_t *a, int64_t now);
const volume_t *volume_find(const agent_t *a, const char *name);
container_t *container_find(agent_t *a, const char *name);
// Mounts (or, with fresh, remakes) a container's overlay root.
int container_root_mount(container_t *c, bool fresh, vmlet_err_t *err);

// --- containers (container.c, rootfs.c, user.c, spawn.c) ---------------------------------
void container_start(agent_t *a, const Vmlet__StartContainer *start);
void container_signal(agent_t *a, const Vmlet__SignalContainer *sig);
void containers_watch(agent_t *a);
void containers_tick(agent_t *a, int64_t now);
// The reaper found pid's exit; returns true if it was a container's.
bool container_reaped(agent_t *a, pid_t pid, int status);
void container_free(container_t *c);
// Moves the calling process into the container's cgroup (a child, before exec).
void container_join_cgroup(const container_t *c);

// --- exec and port-forward (exec.c, forward.c, stream.c) ---------------------------------
void exec_start(agent_t *a, const Vmlet__ExecStart *req);
void execs_watch(agent_t *a);
void execs_tick(agent_t *a, int64_t now);
bool exec_reaped(agent_t *a, pid_t pid, int status);
void exec_resize(agent_t *a, const Vmlet__TerminalResize *r);
void forward_open(agent_t *a, const Vmlet__PortForwardOpen *req);
void forwards_watch(agent_t *a);
// StreamData / StreamClose for an exec session or a port-forward.
void stream_message_data(agent_t *a, const Vmlet__StreamData *d);
void stream_message_close(agent_t *a, const Vmlet__StreamClose *c);
bool exec_on_data(agent_t *a, const Vmlet__StreamData *d);
bool exec_on_close(agent_t *a, const Vmlet__StreamClose *c);
bool forward_on_data(agent_t *a, const Vmlet__StreamData *d);
bool forward_on_close(agent_t *a, const Vmlet__StreamClose *c);
void execs_kill_all(agent_t *a);
void forwards_close_all(agent_t *a);
// Attach streams (stream.c): the host writing a container's own stdin.
void attach_open(agent_t *a, const Vmlet__ContainerAttach *req);
void attaches_watch(agent_t *a);
bool attach_on_data(agent_t *a, const Vmlet__StreamData *d);
bool attach_on_close(agent_t *a, const Vmlet__StreamClose *c);
void attach_resize(agent_t *a, const Vmlet__TerminalResize *r);

// --- power (power.c) -----------------------------------------------------------------------
// Stops every process, unmounts, syncs and powers the VM off (QEMU runs
// with -no-reboot and exits). graceful: SIGTERM first and a grace period.
void power_off(agent_t *a, bool graceful, const char *why);
void power_tick(agent_t *a, int64_t now);
int power_button_open(void);
void power_button_event(agent_t *a, void *obj, int fd, short revents);

// --- the misbehaving test build (misbehave.c) ----------------------------------------------
void misbehave_tick(agent_t *a);

// --- the agent -----------------------------------------------------------------------------
typedef struct {
    int fd;
    short events;
    watch_fn fn;
    void *obj;
} watch_t;

// The most driver modules whose devices wait for the pod (boot.h).
#define AGENT_POD_MODULES_MAX 8

struct agent {
    transport_t t;
    link_t link;
    int sigfd;
    int button_fd;
    // From the kernel command line.
    int transport_kind;
    bool cgroups; // cgroup2 with the memory controller is mounted
    unsigned vsock_port;
    bool debug;
    char misbehave[16];
    int misbehave_phase;
    int64_t boot_ms; // CLOCK_BOOTTIME at the first Hello, for logs
    bool pod_devices_unbound; // the disks and NIC wait for the pod's setup (boot.h)

    // The pod, after PodSetup.
    bool setup_done;
    int64_t setup_took_ms;
    char *hostname;
    bool scratch_mounted;
    char **image_serials; // mounted under IMAGES_DIR/<serial>
    size_t n_images;
    volume_t *volumes;
    size_t n_volumes;
    container_t *containers;
    size_t n_containers;
    exec_t *execs;
    fwd_t *fwds;
    attach_t *attaches;

    bool output_held; // containers' pipes left unread until the host acks

    // Powering off.
    int power_state; // 0 running, 1 waiting for processes, 2 done
    int64_t power_deadline_ms;

    // This turn of the loop.
    watch_t *watches;
    size_t n_watches, cap_watches;
    int64_t deadline_ms;
};

#endif
