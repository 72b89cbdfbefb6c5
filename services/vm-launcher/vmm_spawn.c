// Starting a VMM so it outlives the launcher (see vmm_spawn in
// vmm_backend.h), and running a short command to read its output.
#include "vmm_backend.h"
#include "vmm_host_client.h"
#include "vmm_spawn.h"

#include "vmlet/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int s_left(int64_t deadline)
{
    int64_t left = deadline - vmlet_now_ms();
    return left > 0 ? (int)left : 0;
}

// In a child after fork: say why we fail on the report pipe, then exit.
// No stdio here: the launcher has threads (ZeroMQ), so only plain calls
// are safe between fork and exec.
static void s_child_fail(int report, const char *what)
{
    const char *why = strerror(errno);
    struct iovec parts[] = {{(void *)what, strlen(what)}, {": ", 2}, {(void *)why, strlen(why)}};
    ssize_t rc = writev(report, parts, 3);
    (void)rc;
    _exit(127);
}

// The VMM must not inherit the launcher's descriptors (ZeroMQ, Redis,
// listening sockets), signal mask or ignored signals.
static void s_child_prepare(int null_fd, int out_fd)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL);
    dup2(null_fd, STDIN_FILENO);
    dup2(out_fd, STDOUT_FILENO);
    dup2(out_fd, STDERR_FILENO);
    // Mark the rest close-on-exec rather than closing it: the report pipe
    // must stay open until exec succeeds.
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (int fd = 3; fd < (max > 0 ? max : 1024); fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
}

// Reads what the children write on the report pipe until EOF or deadline.
static size_t s_read_report(int fd, char *buf, size_t cap, int64_t deadline)
{
    size_t n = 0;
    while (n < cap - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = s_left(deadline);
        if (left == 0)
            break;
        int rc = poll(&p, 1, left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;
        ssize_t got = read(fd, buf + n, cap - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    buf[n] = '\0';
    return n;
}

// The last line(s) the VMM wrote to its output after `from`, for an error
// message (out_fd is readable: opened O_RDWR).
static void s_tail(int out_fd, off_t from, char *buf, size_t cap)
{
    buf[0] = '\0';
    struct stat st;
    if (fstat(out_fd, &st) < 0)
        return;
    off_t end = st.st_size;
    off_t start = end - (off_t)(cap - 1) > from ? end - (off_t)(cap - 1) : from;
    ssize_t n = start < end ? pread(out_fd, buf, (size_t)(end - start), start) : 0;
    if (n <= 0)
        return;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

// Waits for a direct child to exit within deadline; SIGKILLs it after.
static int s_wait_child(pid_t pid, int64_t deadline, int *status)
{
    for (;;) {
        pid_t got = waitpid(pid, status, WNOHANG);
        if (got == pid)
            return 0;
        if (got < 0 && errno == ECHILD) {
            // SIGCHLD ignored by the caller: the child was reaped for us and
            // its status is lost; what it left behind (a pid file) decides.
            *status = 0;
            return 0;
        }
        if (got < 0 && errno != EINTR)
            return -1;
        if (s_left(deadline) == 0) {
            kill(pid, SIGKILL);
            while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
            }
            return -1;
        }
        // A pidfd would let us poll; the direct child lives milliseconds
        // (QEMU's -daemonize parent), so a short nap between checks is fine.
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int vmm_spawn_open(const char *netns, const char *out_path, int *ns_fd, int *out_fd,
                   vmlet_err_t *err)
{
    *ns_fd = *out_fd = -1;
    if (netns && *netns) {
        *ns_fd = open(netns, O_RDONLY | O_CLOEXEC);
        if (*ns_fd < 0)
            return vmlet_err_errno(err, errno, "network namespace %s", netns);
    }
    // Readable too: a failed start's error quotes the output's tail.
    *out_fd = open(out_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
    if (*out_fd < 0) {
        int e = errno;
        if (*ns_fd >= 0)
            close(*ns_fd);
        *ns_fd = -1;
        return vmlet_err_errno(err, e, "opening %s", out_path);
    }
    return 0;
}

int vmm_spawn_fds(char *const argv[], int ns_fd, int out_fd, vmm_spawn_mode_t mode, int timeout_ms,
                  pid_t *pid_out, vmlet_err_t *err)
{
    int64_t deadline = vmlet_now_ms() + timeout_ms;
    if (!argv || !argv[0])
        return vmlet_err_set(err, "starting a VMM: no command");
    cleanup_close int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0)
        return vmlet_err_errno(err, errno, "opening /dev/null");
    struct stat st;
    off_t out_start = fstat(out_fd, &st) == 0 ? st.st_size : 0;
    // Already there (a vmm-host whose own namespace is the pods'): no setns,
    // which would need CAP_SYS_ADMIN that such a starter need not have.
    struct stat ns_st, here_st;
    if (ns_fd >= 0 && fstat(ns_fd, &ns_st) == 0 && stat("/proc/thread-self/ns/net", &here_st) == 0 &&
        ns_st.st_dev == here_st.st_dev && ns_st.st_ino == here_st.st_ino)
        ns_fd = -1;
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0)
        return vmlet_err_errno(err, errno, "pipe");

    pid_t child = fork();
    if (child < 0) {
        int e = errno;
        close(report[0]);
        close(report[1]);
        return vmlet_err_errno(err, e, "fork");
    }
    if (child == 0) {
        close(report[0]);
        if (setsid() < 0)
            s_child_fail(report[1], "setsid");
        if (mode == VMM_SPAWN_DETACH) {
            pid_t grandchild = fork();
            if (grandchild < 0)
                s_child_fail(report[1], "fork");
            if (grandchild > 0)
                _exit(0);
            // The VMM-to-be reports its own pid first, so it always
            // precedes an error message it may write later.
            pid_t self = getpid();
            if (write(report[1], &self, sizeof self) != sizeof self)
                _exit(127);
        }
        if (ns_fd >= 0 && setns(ns_fd, CLONE_NEWNET) < 0)
            s_child_fail(report[1], "joining the network namespace (setns)");
        s_child_prepare(null_fd, out_fd);
        execvp(argv[0], argv);
        s_child_fail(report[1], "exec");
    }
    close(report[1]);
    pid_t vmm_pid = -1;
    char msg[512];
    size_t n;
    if (mode == VMM_SPAWN_DETACH) {
        n = s_read_report(report[0], msg, sizeof msg, deadline);
        if (n >= sizeof vmm_pid) {
            memcpy(&vmm_pid, msg, sizeof vmm_pid);
            memmove(msg, msg + sizeof vmm_pid, n - sizeof vmm_pid + 1);
            n -= sizeof vmm_pid;
        }
    } else {
        n = s_read_report(report[0], msg, sizeof msg, deadline);
    }
    close(report[0]);
    int status = 0;
    int waited = s_wait_child(child, deadline, &status);
    if (n > 0)
        return vmlet_err_set(err, "starting %s: %s", argv[0], msg);
    if (mode == VMM_SPAWN_DETACH) {
        if (vmm_pid <= 0)
            return vmlet_err_set(err, "starting %s: the intermediate process failed", argv[0]);
        *pid_out = vmm_pid;
        return 0;
    }
    char tail[400];
    if (waited < 0) {
        s_tail(out_fd, out_start, tail, sizeof tail);
        return vmlet_err_set(err, "starting %s: not ready within %d ms%s%s", argv[0], timeout_ms,
                             tail[0] ? ": " : "", tail);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        s_tail(out_fd, out_start, tail, sizeof tail);
        return vmlet_err_set(err, "starting %s: %s %d: %s", argv[0],
                             WIFEXITED(status) ? "exit status" : "killed by signal",
                             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                             tail[0] ? tail : "(no message)");
    }
    return 0;
}

int vmm_spawn(const vmm_t *vmm, char *const argv[], const char *netns, const char *out_path,
              vmm_spawn_mode_t mode, int timeout_ms, pid_t *pid_out, vmlet_err_t *err)
{
    cleanup_close int ns_fd = -1;
    cleanup_close int out_fd = -1;
    if (vmm_spawn_open(netns, out_path, &ns_fd, &out_fd, err) < 0)
        return -1;
    const char *host = vmm->settings.vmm_host;
    if (host && *host)
        return vmm_host_spawn(host, argv, ns_fd, out_fd, mode, timeout_ms, pid_out, err);
    return vmm_spawn_fds(argv, ns_fd, out_fd, mode, timeout_ms, pid_out, err);
}

int vmm_run_capture(char *const argv[], int timeout_ms, char *out, size_t cap, vmlet_err_t *err)
{
    int64_t deadline = vmlet_now_ms() + timeout_ms;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return vmlet_err_errno(err, errno, "pipe");
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return vmlet_err_errno(err, e, "fork");
    }
    if (pid == 0) {
        int null_fd = open("/dev/null", O_RDONLY);
        s_child_prepare(null_fd >= 0 ? null_fd : STDIN_FILENO, fds[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    s_read_report(fds[0], out, cap, deadline);
    close(fds[0]);
    int status = 0;
    if (s_wait_child(pid, deadline, &status) < 0)
        return vmlet_err_set(err, "%s: no answer within %d ms", argv[0], timeout_ms);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        return vmlet_err_set(err, "%s: not found or not executable", argv[0]);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
