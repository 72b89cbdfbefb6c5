// vmlet-agent: PID 1 of every pod VM. Boots the guest (boot.c), opens the
// channel to the host (transport.c), then runs one poll loop: the host's
// messages, containers' output, exec sessions, port-forwards, signals
// (SIGCHLD: every zombie is reaped here), the power button, and timers.
#include "agent.h"
#include "boot.h"
#include "util.h"

#include "vmlet/xalloc.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define IDLE_WAKE_MS 60000

void loop_watch(agent_t *a, int fd, short events, watch_fn fn, void *obj)
{
    if (fd < 0)
        return;
    if (a->n_watches == a->cap_watches) {
        a->cap_watches = a->cap_watches ? a->cap_watches * 2 : 32;
        a->watches = vmlet_xrealloc(a->watches, a->cap_watches * sizeof *a->watches);
    }
    a->watches[a->n_watches++] = (watch_t){fd, events, fn, obj};
}

void loop_deadline(agent_t *a, int64_t when_ms)
{
    if (when_ms < a->deadline_ms)
        a->deadline_ms = when_ms;
}

static void s_reap(agent_t *a)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        if (!container_reaped(a, pid, status) && !exec_reaped(a, pid, status))
            alog_debug("reaped %d", pid); // an orphan handed to PID 1
}

static void s_on_signal(agent_t *a, void *obj, int fd, short revents)
{
    (void)obj;
    (void)revents;
    struct signalfd_siginfo si[8];
    ssize_t n;
    while ((n = read(fd, si, sizeof si)) > 0) {
        for (size_t i = 0; i < (size_t)n / sizeof si[0]; i++) {
            switch (si[i].ssi_signo) {
            case SIGCHLD:
                s_reap(a);
                break;
            case SIGINT: // Ctrl-Alt-Del
            case SIGTERM:
            case SIGPWR:
                power_off(a, true, strsignal((int)si[i].ssi_signo));
                break;
            default:
                break; // SIGIO: the loop looks at the channel anyway
            }
        }
    }
}

// Nothing can run without these: power off, so the VMM exits and the host
// sees a failed boot instead of a hung one.
__attribute__((noreturn)) static void s_fatal(const char *what, const vmlet_err_t *err)
{
    alog("fatal: %s: %s", what, err->msg);
    sync();
    reboot(RB_POWER_OFF);
    _exit(1);
}

static int s_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    int sigs[] = {SIGCHLD, SIGIO, SIGINT, SIGTERM, SIGPWR, SIGHUP, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaddset(&set, sigs[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void s_turn(agent_t *a)
{
    int64_t now = now_ms();
    a->n_watches = 0;
    a->deadline_ms = now + IDLE_WAKE_MS;
    // Timers first: they may queue messages the watches below must write.
    link_tick(a, now);
    containers_tick(a, now);
    execs_tick(a, now);
    power_tick(a, now);
    volumes_tick(a, now);
    misbehave_tick(a);
    loop_watch(a, a->sigfd, POLLIN, s_on_signal, NULL);
    loop_watch(a, a->button_fd, POLLIN, power_button_event, NULL);
    containers_watch(a);
    execs_watch(a);
    forwards_watch(a);
    attaches_watch(a);
    transport_watch(a); // last: it knows whether anything waits to be written

    struct pollfd fds[a->n_watches];
    for (size_t i = 0; i < a->n_watches; i++)
        fds[i] = (struct pollfd){a->watches[i].fd, a->watches[i].events, 0};
    int64_t wait = a->deadline_ms - now_ms();
    int n = poll(fds, a->n_watches, wait < 0 ? 0 : (int)wait);
    if (n < 0 && errno != EINTR)
        alog("poll: %s", strerror(errno));
    for (size_t i = 0; n > 0 && i < a->n_watches; i++)
        if (fds[i].revents)
            a->watches[i].fn(a, a->watches[i].obj, fds[i].fd, fds[i].revents);
    link_flush(a);
}

int main(void)
{
    agent_t agent;
    memset(&agent, 0, sizeof agent);
    agent_t *a = &agent;
    a->sigfd = a->button_fd = -1;
    vmlet_err_t err = {0};
    if (boot_mounts(&err) < 0)
        s_fatal("boot", &err);
    boot_cmdline(a);
    alog_set_debug(a->debug);
    alog("%s starting (pid %d)", AGENT_VERSION, getpid());
    boot_modules(a);
    boot_misc();
    if (boot_switch_root(&err) < 0)
        s_fatal("switch root", &err);
    a->cgroups = boot_cgroups();
    if (net_loopback_up(&err) < 0)
        alog("loopback: %s", err.msg);
    a->sigfd = s_signals();
    if (a->sigfd < 0) {
        vmlet_err_errno(&err, errno, "signalfd");
        s_fatal("signals", &err);
    }
    a->button_fd = power_button_open();
    link_init(&a->link);
    if (transport_open(a, &err) < 0)
        s_fatal("agent channel", &err);
    for (;;)
        s_turn(a);
}
