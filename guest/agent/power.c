// Powering the VM off: on the host's PowerOff (everything is killed at
// once: the host already gave its grace period), or on the ACPI power
// button (QEMU's system_powerdown) and Ctrl-Alt-Del (Firecracker's
// SendCtrlAltDel, which reaches PID 1 as SIGINT), which are graceful:
// SIGTERM, a grace period, SIGKILL. Then sync, unmount, and
// reboot(RB_POWER_OFF); QEMU runs with -no-reboot and exits.
#include "agent.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <unistd.h>

#define GRACE_MS 10000
#define KILL_WAIT_MS 2000
#define FLUSH_MS 500

static void s_signal_all(agent_t *a, int sig)
{
    for (size_t i = 0; i < a->n_containers; i++)
        if (a->containers[i].pid > 0 && !a->containers[i].exited)
            kill(a->containers[i].pid, sig);
}

void power_off(agent_t *a, bool graceful, const char *why)
{
    if (a->power_state)
        return;
    alog("powering off: %s", why);
    forwards_close_all(a);
    execs_kill_all(a);
    s_signal_all(a, graceful ? SIGTERM : SIGKILL);
    a->power_state = graceful ? 1 : 2;
    a->power_deadline_ms = now_ms() + (graceful ? GRACE_MS : KILL_WAIT_MS);
}

static bool s_all_exited(const agent_t *a)
{
    for (size_t i = 0; i < a->n_containers; i++)
        if (a->containers[i].pid > 0 && !a->containers[i].exited)
            return false;
    return true;
}

// What is queued for the host goes out if it can within a moment (the
// exits of a graceful stop, say).
static void s_flush(agent_t *a)
{
    int64_t deadline = now_ms() + FLUSH_MS;
    while (a->t.connected && link_writable_soon(a) && now_ms() < deadline) {
        struct pollfd p = {a->t.fd, POLLOUT, 0};
        if (poll(&p, 1, 50) > 0)
            link_flush(a);
    }
}

static void s_finish(agent_t *a)
{
    containers_tick(a, INT64_MAX / 2); // report what exited, output drained or not
    s_flush(a);
    kill(-1, SIGKILL); // whatever is left, in every namespace
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    sync();
    for (size_t i = 0; i < a->n_containers; i++)
        if (a->containers[i].root_mounted)
            umount2(a->containers[i].root, MNT_DETACH);
    for (size_t i = 0; i < a->n_volumes; i++)
        if (a->volumes[i].tmpfs)
            umount2(a->volumes[i].dir, MNT_DETACH);
    for (size_t i = 0; i < a->n_images; i++) {
        char dir[300];
        snprintf(dir, sizeof dir, IMAGES_DIR "/%s", a->image_serials[i]);
        umount2(dir, MNT_DETACH);
    }
    // The scratch disk last, and properly if it can be: its journal clean.
    if (a->scratch_mounted && umount2(SCRATCH_DIR, 0) < 0)
        umount2(SCRATCH_DIR, MNT_DETACH);
    sync();
    alog("power off");
    reboot(RB_POWER_OFF);
    _exit(0); // not reached: PID 1 exiting would panic the kernel
}

void power_tick(agent_t *a, int64_t now)
{
    if (!a->power_state)
        return;
    if (s_all_exited(a))
        s_finish(a);
    if (now >= a->power_deadline_ms) {
        if (a->power_state == 2)
            s_finish(a);
        alog("grace period over: SIGKILL");
        s_signal_all(a, SIGKILL);
        a->power_state = 2;
        a->power_deadline_ms = now + KILL_WAIT_MS;
    }
    loop_deadline(a, a->power_deadline_ms);
}

int power_button_open(void)
{
    DIR *d = opendir("/sys/class/input");
    if (!d)
        return -1;
    struct dirent *e;
    int fd = -1;
    while (fd < 0 && (e = readdir(d))) {
        if (strncmp(e->d_name, "event", 5) != 0)
            continue;
        char path[300], name[128];
        snprintf(path, sizeof path, "/sys/class/input/%s/device/name", e->d_name);
        if (read_small_file(path, name, sizeof name) <= 0)
            continue;
        name[strcspn(name, "\n")] = '\0';
        if (strcmp(name, "Power Button") != 0)
            continue;
        snprintf(path, sizeof path, "/dev/input/%s", e->d_name);
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    }
    closedir(d);
    return fd;
}

void power_button_event(agent_t *a, void *obj, int fd, short revents)
{
    (void)obj;
    (void)revents;
    struct input_event ev[16];
    ssize_t n;
    while ((n = read(fd, ev, sizeof ev)) > 0)
        for (size_t i = 0; i < (size_t)n / sizeof ev[0]; i++)
            if (ev[i].type == EV_KEY && ev[i].code == KEY_POWER && ev[i].value == 1)
                power_off(a, true, "the power button (ACPI)");
}
