// Exec sessions (kubectl exec, exec probes and hooks): a process that joins
// a running container's PID and mount namespaces, runs as the container's
// user in its working directory with its env (plus the session's), with
// optional stdin and tty, streamed both ways under the flow window, killed
// at its timeout; ExecStarted, then ExecExited once its output is drained.
#include "agent.h"
#include "spawn.h"
#include "stream.h"
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
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define EXEC_START_TIMEOUT_MS 10000

struct exec_session {
    exec_t *next;
    stream_t s;
    char *container;
    pid_t pid;
    int in_fd, out_fd, err_fd; // with a tty, out_fd is the master and takes stdin too
    bool tty, exited, timed_out, dead;
    bool host_gone; // the host closed the session: its output has no reader
    int status, timeout_ms;
    int64_t deadline_ms, drain_deadline_ms;
};

static exec_t *s_find(agent_t *a, uint32_t id)
{
    for (exec_t *e = a->execs; e; e = e->next)
        if (!e->dead && e->s.id == id)
            return e;
    return NULL;
}

static void s_exited(agent_t *a, uint32_t id, int code, int sig, bool timed_out,
                     const char *message)
{
    Vmlet__ExecExited x = VMLET__EXEC_EXITED__INIT;
    x.has_stream_id = 1;
    x.stream_id = id;
    x.has_exit_code = 1;
    x.exit_code = code;
    if (sig) {
        x.has_signal = 1;
        x.signal = sig;
    }
    x.message = (char *)message;
    if (timed_out) {
        x.has_timed_out = 1;
        x.timed_out = 1;
    }
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_EXEC_EXITED;
    msg.exec_exited = &x;
    link_send(a, &msg, false);
}

// The container's env with the session's on top (same name: the session's).
static char **s_env(const Vmlet__StartContainer *run, const Vmlet__ExecStart *req)
{
    size_t n = (run ? run->n_env : 0) + req->n_env;
    char **env = vmlet_xcalloc(n + 1, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; run && i < run->n_env; i++) {
        size_t len = strcspn(run->env[i], "=");
        bool overridden = false;
        for (size_t j = 0; j < req->n_env && !overridden; j++)
            overridden = strncmp(req->env[j], run->env[i], len) == 0 && req->env[j][len] == '=';
        if (!overridden)
            env[k++] = run->env[i];
    }
    for (size_t j = 0; j < req->n_env; j++)
        env[k++] = req->env[j];
    return env;
}

__attribute__((noreturn)) static void s_child(const container_t *c, const Vmlet__ExecStart *req,
                                              int mntns, int sock, int in, int out, int errw)
{
    child_reset_signals();
    container_join_cgroup(c);
    if (setns(mntns, CLONE_NEWNS) < 0)
        child_fail(sock, START_FAILED_SETUP, "join the mount namespace of %s: %s", c->name,
                   strerror(errno));
    setsid();
    char msg[1024];
    int code;
    if (req->tty) {
        if (child_pty(sock, req->rows, req->cols, msg, sizeof msg) < 0)
            child_fail(sock, START_FAILED_SETUP, "%s", msg);
    } else {
        if (in < 0)
            in = open("/dev/null", O_RDONLY);
        if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errw, 2) < 0)
            child_fail(sock, START_FAILED_SETUP, "stdio: %s", strerror(errno));
    }
    if (child_identity(c->run, c->run ? c->run->working_dir : NULL, &code, msg, sizeof msg) < 0)
        child_fail(sock, code, "%s", msg);
    syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);
    char **argv = vmlet_xcalloc(req->n_argv + 1, sizeof *argv);
    memcpy(argv, req->argv, req->n_argv * sizeof *argv);
    child_exec(argv, s_env(c->run, req), &code, msg, sizeof msg);
    child_fail(sock, code, "%s", msg);
}

// Forks into the container's PID namespace: the agent's children-to-be
// join it for one fork, then the agent goes back to its own.
static pid_t s_fork_in(const container_t *c, const Vmlet__ExecStart *req, int sock, int in, int out,
                       int errw, char *msg, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/mnt", c->pid);
    int mntns = open(path, O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof path, "/proc/%d/ns/pid", c->pid);
    int pidns = open(path, O_RDONLY | O_CLOEXEC);
    int own = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    pid_t pid = -1;
    if (mntns < 0 || pidns < 0 || own < 0) {
        snprintf(msg, cap, "container %s: its namespaces: %s", c->name, strerror(errno));
    } else if (setns(pidns, CLONE_NEWPID) < 0) {
        snprintf(msg, cap, "join the PID namespace of %s: %s", c->name, strerror(errno));
    } else {
        pid = fork();
        if (pid == 0)
            s_child(c, req, mntns, sock, in, out, errw);
        if (pid < 0)
            snprintf(msg, cap, "fork: %s", strerror(errno));
        if (setns(own, CLONE_NEWPID) < 0)
            alog("back to the agent's PID namespace: %s", strerror(errno));
    }
    if (mntns >= 0)
        close(mntns);
    if (pidns >= 0)
        close(pidns);
    if (own >= 0)
        close(own);
    return pid;
}

void exec_start(agent_t *a, const Vmlet__ExecStart *req)
{
    uint32_t id = req->stream_id;
    container_t *c = container_find(a, req->container);
    char msg[1200];
    if (!req->has_stream_id || s_find(a, id)) {
        send_error(a, "exec", req->container, "exec stream %u: no id, or one in use", id);
        return;
    }
    if (!c || c->pid <= 0 || c->exited) {
        snprintf(msg, sizeof msg, "container %s is not running",
                 req->container ? req->container : "");
        s_exited(a, id, START_FAILED_NOEXEC, 0, false, msg);
        return;
    }
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, inp[2] = {-1, -1}, sv[2] = {-1, -1};
    bool ok = socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0;
    if (ok && !req->tty)
        ok = pipe2(outp, O_CLOEXEC) == 0 && pipe2(errp, O_CLOEXEC) == 0 &&
             (!req->stdin || pipe2(inp, O_CLOEXEC) == 0);
    pid_t pid = -1;
    if (ok)
        pid = s_fork_in(c, req, sv[1], inp[0], outp[1], errp[1], msg, sizeof msg);
    else
        snprintf(msg, sizeof msg, "pipes: %s", strerror(errno));
    fd_close(&sv[1]);
    fd_close(&outp[1]);
    fd_close(&errp[1]);
    fd_close(&inp[0]);
    int pty = -1, code = START_FAILED_SETUP;
    if (pid < 0 || status_wait(sv[0], EXEC_START_TIMEOUT_MS, &pty, &code, msg, sizeof msg) < 0) {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        fd_close(&sv[0]);
        fd_close(&outp[0]);
        fd_close(&errp[0]);
        fd_close(&inp[1]);
        alog("exec %u in %s failed: %s", id, c->name, msg);
        s_exited(a, id, code, 0, false, msg);
        return;
    }
    fd_close(&sv[0]);
    exec_t *e = vmlet_xcalloc(1, sizeof *e);
    stream_init(&e->s, id);
    e->container = vmlet_xstrdup(c->name);
    e->pid = pid;
    e->tty = req->tty;
    e->out_fd = req->tty ? pty : outp[0];
    e->err_fd = req->tty ? -1 : errp[0];
    e->in_fd = req->tty ? -1 : inp[1];
    e->status = 0;
    int *fds[] = {&e->in_fd, &e->out_fd, &e->err_fd};
    for (size_t i = 0; i < 3; i++)
        if (*fds[i] >= 0)
            fd_nonblock(*fds[i]);
    if (req->has_timeout_ms && req->timeout_ms > 0) {
        e->timeout_ms = req->timeout_ms;
        e->deadline_ms = now_ms() + req->timeout_ms;
    }
    e->next = a->execs;
    a->execs = e;
    Vmlet__ExecStarted st = VMLET__EXEC_STARTED__INIT;
    st.has_stream_id = 1;
    st.stream_id = id;
    st.has_pid = 1;
    st.pid = pid;
    Vmlet__GuestMessage m = VMLET__GUEST_MESSAGE__INIT;
    m.body_case = VMLET__GUEST_MESSAGE__BODY_EXEC_STARTED;
    m.exec_started = &st;
    link_send(a, &m, false);
    alog_debug("exec %u in %s: pid %d", id, c->name, pid);
}

static int s_write_fd(const exec_t *e)
{
    return e->tty ? e->out_fd : e->in_fd;
}

static void s_after_write(agent_t *a, exec_t *e)
{
    int fd = s_write_fd(e);
    if (fd < 0)
        return;
    if (stream_drain(a, &e->s, fd) < 0) {
        // The process closed its stdin: what the host sends is dropped.
        e->s.in_len = 0;
        if (!e->tty)
            fd_close(&e->in_fd);
        return;
    }
    if (!e->tty && e->s.host_eof && e->s.in_len == 0)
        fd_close(&e->in_fd);
}

static void s_on_io(agent_t *a, void *obj, int fd, short revents)
{
    exec_t *e = obj;
    if (e->dead || (fd != e->out_fd && fd != e->err_fd && fd != e->in_fd))
        return;
    if ((revents & POLLOUT) && fd == s_write_fd(e))
        s_after_write(a, e);
    if (!(revents & (POLLIN | POLLHUP | POLLERR)) || (fd != e->out_fd && fd != e->err_fd))
        return;
    size_t room = stream_room(&e->s);
    if (room == 0)
        return;
    uint8_t buf[AGENT_CHUNK_MAX];
    ssize_t n = read(fd, buf, room);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        if (fd == e->out_fd)
            fd_close(&e->out_fd);
        else
            fd_close(&e->err_fd);
        return;
    }
    stream_send(a, &e->s,
                fd == e->err_fd ? VMLET__OUTPUT_STREAM__OUTPUT_STREAM_STDERR
                                : VMLET__OUTPUT_STREAM__OUTPUT_STREAM_STDOUT,
                buf, (size_t)n);
}

static void s_free(exec_t *e)
{
    fd_close(&e->in_fd);
    fd_close(&e->out_fd);
    fd_close(&e->err_fd);
    stream_free(&e->s);
    free(e->container);
    free(e);
}

void execs_watch(agent_t *a)
{
    for (exec_t **p = &a->execs; *p;) {
        exec_t *e = *p;
        if (e->dead) {
            *p = e->next;
            s_free(e);
            continue;
        }
        p = &e->next;
        bool room = stream_room(&e->s) > 0;
        short out_events = room ? POLLIN : 0;
        if (e->tty && e->s.in_len > 0)
            out_events |= POLLOUT;
        if (e->out_fd >= 0 && out_events)
            loop_watch(a, e->out_fd, out_events, s_on_io, e);
        if (e->err_fd >= 0 && room)
            loop_watch(a, e->err_fd, POLLIN, s_on_io, e);
        if (e->in_fd >= 0 && e->s.in_len > 0)
            loop_watch(a, e->in_fd, POLLOUT, s_on_io, e);
    }
}

static void s_finish(agent_t *a, exec_t *e)
{
    int code, sig = 0;
    if (WIFSIGNALED(e->status)) {
        sig = WTERMSIG(e->status);
        code = 128 + sig;
    } else {
        code = WEXITSTATUS(e->status);
    }
    s_exited(a, e->s.id, code, sig, e->timed_out, NULL);
    alog_debug("exec %u exited %d", e->s.id, code);
    e->dead = true;
}

void execs_tick(agent_t *a, int64_t now)
{
    for (exec_t *e = a->execs; e; e = e->next) {
        if (e->dead)
            continue;
        if (!e->exited && e->deadline_ms) {
            if (now >= e->deadline_ms && !e->timed_out) {
                e->timed_out = true;
                kill(-e->pid, SIGKILL);
                kill(e->pid, SIGKILL);
            } else if (!e->timed_out) {
                loop_deadline(a, e->deadline_ms);
            }
        }
        if (!e->exited)
            continue;
        if ((e->out_fd < 0 && e->err_fd < 0) || e->host_gone)
            s_finish(a, e); // (with the host gone, no window update will ever come)
        else if (stream_room(&e->s) == 0)
            e->drain_deadline_ms = now + AGENT_DRAIN_MS; // the host has not caught up yet
        else if (now >= e->drain_deadline_ms)
            s_finish(a, e); // a background process still holds the output
        else
            loop_deadline(a, e->drain_deadline_ms);
    }
}

bool exec_reaped(agent_t *a, pid_t pid, int status)
{
    for (exec_t *e = a->execs; e; e = e->next) {
        if (e->pid != pid || e->exited || e->dead)
            continue;
        e->exited = true;
        e->status = status;
        e->drain_deadline_ms = now_ms() + AGENT_DRAIN_MS;
        return true;
    }
    return false;
}

bool exec_on_data(agent_t *a, const Vmlet__StreamData *d)
{
    exec_t *e = s_find(a, d->stream_id);
    if (!e)
        return false;
    if (stream_take(a, &e->s, d) == 0)
        s_after_write(a, e);
    return true;
}

bool exec_on_close(agent_t *a, const Vmlet__StreamClose *c)
{
    exec_t *e = s_find(a, c->stream_id);
    if (!e)
        return false;
    if (c->write_side_only) {
        e->s.host_eof = true;
        s_after_write(a, e);
    } else {
        // The host is gone from this session: nothing is left to run for.
        e->host_gone = true;
        if (!e->exited) {
            kill(-e->pid, SIGKILL);
            kill(e->pid, SIGKILL);
        }
    }
    return true;
}

void exec_resize(agent_t *a, const Vmlet__TerminalResize *r)
{
    exec_t *e = s_find(a, r->stream_id);
    if (!e || !e->tty || e->out_fd < 0)
        return;
    struct winsize ws = {.ws_row = (unsigned short)r->rows, .ws_col = (unsigned short)r->cols};
    ioctl(e->out_fd, TIOCSWINSZ, &ws);
}

void execs_kill_all(agent_t *a)
{
    for (exec_t *e = a->execs; e; e = e->next)
        if (!e->exited && !e->dead)
            kill(e->pid, SIGKILL);
}
