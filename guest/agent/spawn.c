// Between fork and execve, for containers and exec sessions alike (see
// spawn.h). The status channel is a SOCK_SEQPACKET pair whose child end is
// close-on-exec: the agent reads a pty master (SCM_RIGHTS) or a failure
// ("<code>:<message>"), and end-of-file means the program is running.
#include "spawn.h"

#include "security.h"
#include "user.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

void child_reset_signals(void)
{
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL);
}

void child_fail(int sock, int code, const char *fmt, ...)
{
    char buf[1200];
    int n = snprintf(buf, sizeof buf, "%d:", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    ssize_t w = send(sock, buf, strlen(buf), MSG_NOSIGNAL);
    (void)w;
    _exit(code);
}

// Go's error strings (runc's) are lower case: "no such file or directory".
static const char *s_strerror(int e, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", strerror(e));
    buf[0] = (char)tolower((unsigned char)buf[0]);
    return buf;
}

int child_pty(int sock, uint32_t rows, uint32_t cols, char *msg, size_t cap)
{
    int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) {
        snprintf(msg, cap, "open /dev/ptmx: %s", strerror(errno));
        return -1;
    }
    int unlock = 0;
    ioctl(m, TIOCSPTLCK, &unlock);
    int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    if (s < 0) {
        snprintf(msg, cap, "open the pty's terminal: %s", strerror(errno));
        return -1;
    }
    if (rows && cols) {
        struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
        ioctl(m, TIOCSWINSZ, &ws);
    }
    char tag = 'P';
    struct iovec iov = {&tag, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &m, sizeof m);
    if (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0) {
        snprintf(msg, cap, "hand the pty to the agent: %s", strerror(errno));
        return -1;
    }
    close(m);
    if (ioctl(s, TIOCSCTTY, 0) < 0) {
        snprintf(msg, cap, "make the pty the controlling terminal: %s", strerror(errno));
        return -1;
    }
    for (int fd = 0; fd <= 2; fd++)
        dup2(s, fd);
    if (s > 2)
        close(s);
    return 0;
}

int child_identity(const Vmlet__StartContainer *run, const char *work_dir, int *code, char *msg,
                   size_t cap)
{
    *code = 128;
    user_ids_t ids;
    uid_t uid = run && run->has_uid ? (uid_t)run->uid : 0;
    gid_t gid = run && run->has_gid ? (gid_t)run->gid : 0;
    if (user_resolve(run ? run->user : NULL, uid, gid, run ? run->supplemental_groups : NULL,
                     run ? run->n_supplemental_groups : 0, "/etc/passwd", "/etc/group", &ids, msg,
                     cap) < 0)
        return -1;
    const char *wd = work_dir && *work_dir ? work_dir : "/";
    if (wd[0] != '/') {
        snprintf(msg, cap, "cwd %s is not an absolute path", wd);
        return -1;
    }
    vmlet_err_t err = {0};
    if (mkdir_p(wd, 0755, &err) < 0) {
        snprintf(msg, cap, "mkdir cwd: %s", err.msg);
        return -1;
    }
    // runc's order: bounding set, the user (capabilities kept), the
    // working directory as that user, then permitted and effective.
    if (security_child_before_user(run, msg, cap) < 0)
        return -1;
    if (setgroups(ids.n_groups, ids.groups) < 0 || setgid(ids.gid) < 0 || setuid(ids.uid) < 0) {
        snprintf(msg, cap, "set uid %u gid %u: %s", (unsigned)ids.uid, (unsigned)ids.gid,
                 strerror(errno));
        return -1;
    }
    if (chdir(wd) < 0) {
        char e[128];
        snprintf(msg, cap, "chdir to cwd (\"%s\") set in config.json failed: %s", wd,
                 s_strerror(errno, e, sizeof e));
        return -1;
    }
    return security_child_after_user(run, msg, cap);
}

static bool s_executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

void child_exec(char *const argv[], char *const env[], int *code, char *msg, size_t cap)
{
    char e[128];
    if (!argv || !argv[0] || !argv[0][0]) {
        *code = START_FAILED_NOTFOUND;
        snprintf(msg, cap, "no command given");
        return;
    }
    const char *name = argv[0];
    char path[4096];
    if (strchr(name, '/')) {
        struct stat st;
        if (stat(name, &st) < 0) {
            *code = START_FAILED_NOTFOUND;
            snprintf(msg, cap, "exec: \"%s\": stat %s: %s", name, name,
                     s_strerror(errno, e, sizeof e));
            return;
        }
        if (S_ISDIR(st.st_mode)) {
            *code = START_FAILED_NOEXEC;
            snprintf(msg, cap, "exec: \"%s\": is a directory", name);
            return;
        }
        if (access(name, X_OK) < 0) {
            *code = START_FAILED_NOEXEC;
            snprintf(msg, cap, "exec: \"%s\": permission denied", name);
            return;
        }
        snprintf(path, sizeof path, "%s", name);
    } else {
        const char *search = DEFAULT_PATH;
        for (size_t i = 0; env && env[i]; i++)
            if (strncmp(env[i], "PATH=", 5) == 0)
                search = env[i] + 5;
        bool found = false;
        for (const char *p = search; !found;) {
            size_t n = strcspn(p, ":");
            snprintf(path, sizeof path, "%.*s/%s", (int)(n ? n : 1), n ? p : ".", name);
            found = s_executable(path);
            if (!p[n])
                break;
            p += n + 1;
        }
        if (!found) {
            *code = START_FAILED_NOTFOUND;
            snprintf(msg, cap, "exec: \"%s\": executable file not found in $PATH", name);
            return;
        }
    }
    execve(path, argv, env);
    int err = errno;
    *code = err == ENOENT ? START_FAILED_NOTFOUND : START_FAILED_NOEXEC;
    snprintf(msg, cap, "exec %s: %s", path, s_strerror(err, e, sizeof e));
}

int status_wait(int sock, int timeout_ms, int *pty_master, int *code, char *msg, size_t cap)
{
    *pty_master = -1;
    *code = 0;
    msg[0] = '\0';
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - now_ms());
        struct pollfd p = {sock, POLLIN, 0};
        int r = left > 0 ? poll(&p, 1, left) : 0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            *code = START_FAILED_SETUP;
            snprintf(msg, cap, "the process did not start within %d ms", timeout_ms);
            return -1;
        }
        char buf[1200];
        struct iovec iov = {buf, sizeof buf - 1};
        union {
            char c[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } u;
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.c, .msg_controllen = sizeof u.c};
        ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0; // closed by execve: running
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm), sizeof fd);
            if (*pty_master >= 0)
                close(*pty_master);
            *pty_master = fd;
            continue;
        }
        buf[n] = '\0';
        char *colon = strchr(buf, ':');
        *code = atoi(buf);
        snprintf(msg, cap, "%s", colon ? colon + 1 : buf);
        if (*pty_master >= 0) {
            close(*pty_master);
            *pty_master = -1;
        }
        return -1;
    }
}
