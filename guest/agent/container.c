// A container's runs: StartContainer clones its first process into a new
// PID and mount namespace (rootfs.c builds its view, spawn.c its identity
// and exec); its stdout and stderr (pipes, or a pty with tty) become
// OutputChunks; its exit, once its output is drained, a ContainerExited.
// A failed exec is a ContainerExited with reason StartError.
#include "agent.h"
#include "rootfs.h"
#include "security.h"
#include "spawn.h"
#include "util.h"

#include "vmlet/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define START_TIMEOUT_MS 30000
#define TERMINATION_MESSAGE_MAX 4096

container_t *container_find(agent_t *a, const char *name)
{
    for (size_t i = 0; name && i < a->n_containers; i++)
        if (strcmp(a->containers[i].name, name) == 0)
            return &a->containers[i];
    return NULL;
}

static void s_close_io(container_t *c)
{
    fd_close(&c->out_fd[0]);
    fd_close(&c->out_fd[1]);
    fd_close(&c->stdin_fd);
}

void container_free(container_t *c)
{
    s_close_io(c);
    if (c->root_mounted)
        umount2(c->root, MNT_DETACH); // a setup retried after a failure mounts it afresh
    free(c->name);
    free(c->image);
    free(c->term_path);
    for (size_t i = 0; i < c->n_mounts; i++) {
        free(c->mounts[i].volume);
        free(c->mounts[i].path);
        free(c->mounts[i].sub_path);
    }
    free(c->mounts);
    if (c->run)
        vmlet__start_container__free_unpacked(c->run, NULL);
    memset(c, 0, sizeof *c);
}

// A deep copy of what the host sent, kept for exec sessions (user, env,
// working directory) and for the run's own child.
static Vmlet__StartContainer *s_copy(const Vmlet__StartContainer *in)
{
    size_t n = vmlet__start_container__get_packed_size(in);
    uint8_t *buf = vmlet_xmalloc(n);
    vmlet__start_container__pack(in, buf);
    Vmlet__StartContainer *out = vmlet__start_container__unpack(NULL, n, buf);
    free(buf);
    return out;
}

static void s_exited_msg(agent_t *a, container_t *c, Vmlet__ContainerExited *e)
{
    e->name = c->name;
    e->has_instance = 1;
    e->instance = c->instance;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_EXITED;
    msg.exited = e;
    link_send(a, &msg, true);
}

static void s_start_failed(agent_t *a, container_t *c, int code, const char *why)
{
    alog("container %s (instance %u) failed to start: %s", c->name, c->instance, why);
    Vmlet__ContainerExited e = VMLET__CONTAINER_EXITED__INIT;
    e.has_exit_code = 1;
    e.exit_code = code;
    e.has_finished_unix_ms = 1;
    e.finished_unix_ms = unix_ms();
    e.reason = "StartError";
    e.message = (char *)why;
    s_exited_msg(a, c, &e);
    c->reported = true;
    c->pid = -1;
}

// The cgroup's count of processes the OOM killer took (any OOM, the VM's
// own included), from memory.events.
static long s_oom_kills(const container_t *c)
{
    if (!c->cgroup[0])
        return 0;
    char path[200], buf[1024];
    snprintf(path, sizeof path, "%s/memory.events", c->cgroup);
    if (read_small_file(path, buf, sizeof buf) < 0)
        return 0;
    const char *p = strstr(buf, "oom_kill ");
    return p ? strtol(p + 9, NULL, 10) : 0;
}

void container_join_cgroup(const container_t *c)
{
    if (!c->cgroup[0])
        return;
    char path[200];
    snprintf(path, sizeof path, "%s/cgroup.procs", c->cgroup);
    write_knob(path, "0"); // "0": the writer itself; without it only OOMKilled is lost
}

// The container's first process: PID 1 of its own namespace. Never returns.
__attribute__((noreturn)) static void s_child(agent_t *a, container_t *c, int sock, int out,
                                              int errw, int in)
{
    child_reset_signals();
    setsid();
    container_join_cgroup(c);
    vmlet_err_t err = {0};
    if (rootfs_enter(a, c, &err) < 0)
        child_fail(sock, START_FAILED_SETUP, "%s", err.msg);
    char msg[1024];
    int code;
    if (c->tty) {
        if (child_pty(sock, 0, 0, msg, sizeof msg) < 0)
            child_fail(sock, START_FAILED_SETUP, "%s", msg);
    } else {
        if (in < 0)
            in = open("/dev/null", O_RDONLY);
        if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errw, 2) < 0)
            child_fail(sock, START_FAILED_SETUP, "stdio: %s", strerror(errno));
    }
    const Vmlet__StartContainer *run = c->run;
    if (child_identity(run, run->working_dir, &code, msg, sizeof msg) < 0)
        child_fail(sock, code, "%s", msg);
    // Nothing of the agent's may reach the program.
    syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);
    char **argv = vmlet_xcalloc(run->n_argv + 1, sizeof *argv);
    memcpy(argv, run->argv, run->n_argv * sizeof *argv);
    char **env = vmlet_xcalloc(run->n_env + 1, sizeof *env);
    memcpy(env, run->env, run->n_env * sizeof *env);
    child_exec(argv, env, &code, msg, sizeof msg);
    child_fail(sock, code, "%s", msg);
}

static void s_started(agent_t *a, container_t *c)
{
    Vmlet__ContainerStarted s = VMLET__CONTAINER_STARTED__INIT;
    s.name = c->name;
    s.has_instance = 1;
    s.instance = c->instance;
    s.has_pid = 1;
    s.pid = c->pid;
    s.has_started_unix_ms = 1;
    s.started_unix_ms = c->started_unix_ms;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_STARTED;
    msg.started = &s;
    link_send(a, &msg, true);
    alog("container %s (instance %u) started: pid %d", c->name, c->instance, c->pid);
}

void container_start(agent_t *a, const Vmlet__StartContainer *start)
{
    container_t *c = container_find(a, start->name);
    if (!c) {
        send_error(a, "start", start->name, "no container \"%s\" in this pod",
                   start->name ? start->name : "");
        return;
    }
    if (c->pid > 0 || !c->reported) {
        send_error(a, "start", c->name, "container %s is still running (instance %u)", c->name,
                   c->instance);
        return;
    }
    if (c->run)
        vmlet__start_container__free_unpacked(c->run, NULL);
    c->run = s_copy(start);
    c->instance = start->instance;
    vmlet_err_t err = {0};
    if ((start->fresh_root || !c->root_mounted) &&
        container_root_mount(c, start->fresh_root, &err) < 0) {
        s_start_failed(a, c, START_FAILED_SETUP, err.msg);
        return;
    }
    if (c->term_path && write_file(c->termlog, "", 0, 0666, &err) < 0) {
        s_start_failed(a, c, START_FAILED_SETUP, err.msg);
        return;
    }
    if (a->cgroups && !c->cgroup[0]) {
        snprintf(c->cgroup, sizeof c->cgroup, CGROUP_DIR "/vmlet-%s", c->name);
        if (mkdir(c->cgroup, 0755) < 0 && errno != EEXIST) {
            alog("cgroup %s: %s", c->cgroup, strerror(errno));
            c->cgroup[0] = '\0';
        }
    }
    c->oom_kills = s_oom_kills(c);
    security_own_empty_dirs(a, c->run); // fsGroup, before the process can look
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, inp[2] = {-1, -1}, sv[2] = {-1, -1};
    if ((!c->tty && (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
                     (c->stdin_open && pipe2(inp, O_CLOEXEC) < 0))) ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        char why[128];
        snprintf(why, sizeof why, "pipes: %s", strerror(errno));
        for (int i = 0; i < 2; i++) {
            fd_close(&outp[i]);
            fd_close(&errp[i]);
            fd_close(&inp[i]);
            fd_close(&sv[i]);
        }
        s_start_failed(a, c, START_FAILED_SETUP, why);
        return;
    }
    pid_t pid =
        (pid_t)syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        close(sv[0]);
        s_child(a, c, sv[1], outp[1], errp[1], inp[0]);
    }
    int clone_errno = errno;
    fd_close(&sv[1]);
    fd_close(&outp[1]);
    fd_close(&errp[1]);
    fd_close(&inp[0]);
    int pty = -1, code = 0;
    char msg[1200];
    if (pid < 0) {
        snprintf(msg, sizeof msg, "clone: %s", strerror(clone_errno));
        code = START_FAILED_SETUP;
    }
    if (pid < 0 || status_wait(sv[0], START_TIMEOUT_MS, &pty, &code, msg, sizeof msg) < 0) {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        fd_close(&sv[0]);
        fd_close(&outp[0]);
        fd_close(&errp[0]);
        fd_close(&inp[1]);
        s_start_failed(a, c, code, msg);
        return;
    }
    fd_close(&sv[0]);
    if (c->tty) {
        c->out_fd[0] = pty;
        c->out_fd[1] = -1;
    } else {
        c->out_fd[0] = outp[0];
        c->out_fd[1] = errp[0];
        c->stdin_fd = inp[1]; // held open: the program sees an open, silent stdin
    }
    for (int i = 0; i < 2; i++)
        if (c->out_fd[i] >= 0)
            fd_nonblock(c->out_fd[i]);
    c->pid = pid;
    c->exited = false;
    c->reported = false;
    c->started_unix_ms = unix_ms();
    s_started(a, c);
}

void container_signal(agent_t *a, const Vmlet__SignalContainer *sig)
{
    container_t *c = container_find(a, sig->name);
    if (!c) {
        send_error(a, "signal", sig->name, "no container \"%s\" in this pod",
                   sig->name ? sig->name : "");
        return;
    }
    if (!sig->has_signal || sig->signal < 1 || sig->signal > 64) {
        send_error(a, "signal", c->name, "signal %d is not a signal", sig->signal);
        return;
    }
    if (c->pid <= 0 || c->exited) {
        send_error(a, "signal", c->name, "container %s is not running", c->name);
        return;
    }
    alog("container %s: signal %d", c->name, sig->signal);
    if (kill(c->pid, sig->signal) < 0)
        send_error(a, "signal", c->name, "kill %d: %s", c->pid, strerror(errno));
}

static void s_output(agent_t *a, container_t *c, int which, const uint8_t *data, size_t len)
{
    Vmlet__OutputChunk o = VMLET__OUTPUT_CHUNK__INIT;
    o.container = c->name;
    o.has_instance = 1;
    o.instance = c->instance;
    o.has_stream = 1;
    o.stream = which ? VMLET__OUTPUT_STREAM__OUTPUT_STREAM_STDERR
                     : VMLET__OUTPUT_STREAM__OUTPUT_STREAM_STDOUT;
    o.has_data = 1;
    o.data.data = (uint8_t *)data;
    o.data.len = len;
    o.has_unix_ns = 1;
    o.unix_ns = unix_ns();
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_OUTPUT;
    msg.output = &o;
    link_send(a, &msg, true);
}

static void s_on_output(agent_t *a, void *obj, int fd, short revents)
{
    (void)revents;
    container_t *c = obj;
    int which = fd == c->out_fd[0] ? 0 : fd == c->out_fd[1] ? 1 : -1;
    if (which < 0)
        return; // closed earlier this turn
    uint8_t buf[AGENT_CHUNK_MAX];
    for (int i = 0; i < 4 && !link_backpressure(a); i++) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            // EOF, or EIO from a pty once its terminal has no process left.
            fd_close(&c->out_fd[which]);
            return;
        }
        s_output(a, c, which, buf, (size_t)n);
        if ((size_t)n < sizeof buf)
            return;
    }
}

void containers_watch(agent_t *a)
{
    bool held = link_backpressure(a);
    if (held != a->output_held) {
        a->output_held = held;
        if (held)
            alog("output held: %zu bytes wait for the host's ack", a->link.unacked_bytes);
        else
            alog("output flows again");
    }
    if (held)
        return; // the pipes fill up and the writers wait: nothing is lost
    for (size_t i = 0; i < a->n_containers; i++)
        for (int k = 0; k < 2; k++)
            if (a->containers[i].out_fd[k] >= 0)
                loop_watch(a, a->containers[i].out_fd[k], POLLIN, s_on_output, &a->containers[i]);
}

static void s_report(agent_t *a, container_t *c)
{
    Vmlet__ContainerExited e = VMLET__CONTAINER_EXITED__INIT;
    e.has_exit_code = 1;
    if (WIFSIGNALED(c->status)) {
        e.exit_code = 128 + WTERMSIG(c->status);
        e.has_signal = 1;
        e.signal = WTERMSIG(c->status);
    } else {
        e.exit_code = WEXITSTATUS(c->status);
    }
    e.reason = e.exit_code == 0 ? "Completed" : "Error";
    if (e.exit_code != 0 && s_oom_kills(c) > c->oom_kills)
        e.reason = "OOMKilled";
    e.has_started_unix_ms = 1;
    e.started_unix_ms = c->started_unix_ms;
    e.has_finished_unix_ms = 1;
    e.finished_unix_ms = c->finished_unix_ms;
    char term[TERMINATION_MESSAGE_MAX + 1];
    ssize_t n = c->term_path ? read_small_file(c->termlog, term, sizeof term) : -1;
    if (n > 0) {
        e.has_termination_message = 1;
        e.termination_message.data = (uint8_t *)term;
        e.termination_message.len = (size_t)n;
    }
    s_exited_msg(a, c, &e);
    alog("container %s (instance %u) exited %d", c->name, c->instance, e.exit_code);
    s_close_io(c);
    c->pid = -1;
    c->reported = true;
}

void containers_tick(agent_t *a, int64_t now)
{
    for (size_t i = 0; i < a->n_containers; i++) {
        container_t *c = &a->containers[i];
        if (!c->exited || c->reported)
            continue;
        if (c->out_fd[0] < 0 && c->out_fd[1] < 0) {
            s_report(a, c);
        } else if (link_backpressure(a)) {
            c->drain_deadline_ms = now + AGENT_DRAIN_MS; // waiting on the host, not on the pipe
        } else if (now >= c->drain_deadline_ms) {
            // Something outside the container still holds its pipe.
            s_report(a, c);
        } else {
            loop_deadline(a, c->drain_deadline_ms);
        }
    }
}

bool container_reaped(agent_t *a, pid_t pid, int status)
{
    for (size_t i = 0; i < a->n_containers; i++) {
        container_t *c = &a->containers[i];
        if (c->pid != pid || c->exited)
            continue;
        c->exited = true;
        c->status = status;
        c->finished_unix_ms = unix_ms();
        c->drain_deadline_ms = now_ms() + AGENT_DRAIN_MS;
        return true;
    }
    return false;
}
