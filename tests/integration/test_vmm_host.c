// vmlet-vmm-host, the process that starts VMMs for a launcher in a
// container so the VMs are not the launcher's children. The real binary,
// asked through the launcher's own client (vmm_host_client.c); the VMM is
// `sh` here (no VM is booted: test_compose boots one through a vmm-host):
//  - a ping answers; a daemonizing start returns once the direct child
//    exited 0, and its output lands in the file the client opened;
//  - the vmm-host runs without CAP_SYS_ADMIN, as in docker-compose: a
//    detached start in its own network namespace (passed as a descriptor,
//    as the launcher does) needs no setns and returns the pid, which is
//    the vmm-host's child (its subreaper), outlives the client, and is
//    reaped (and counted) when it exits; a start in another namespace is
//    refused, saying so;
//  - a command outside --allow and a failing start are refused with
//    their reasons; the socket is the owner's only (a uid that is not
//    root cannot connect);
//  - SIGTERM: the vmm-host exits 0 and removes its socket.
#include "testsupport.h"

#include "vmm_host_client.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    char *dir;
    char *socket;
    int http_port;
    pid_t pid;
} fixture_t;

static fixture_t g;

static char *s_metrics(void)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", g.http_port);
    long status = 0;
    char *body = NULL;
    if (ts_http_get(url, &status, &body) < 0 || status != 200) {
        free(body);
        return NULL;
    }
    return body;
}

static double s_metric(const char *series)
{
    char *m = s_metrics();
    double v = m ? ts_metric_value(m, series) : -1;
    free(m);
    return v;
}

static bool s_answers(void *arg)
{
    (void)arg;
    return vmm_host_ping(g.socket, 200, NULL) == 0;
}

static int s_setup(void **state)
{
    (void)state;
    g.dir = ts_tempdir("vmm-host");
    g.socket = vmlet_xasprintf("%s/vmm-host.sock", g.dir);
    g.http_port = ts_free_port();
    char *bin = ts_bin_path("vmlet-vmm-host");
    char *sock_flag = vmlet_xasprintf("--socket=%s", g.socket);
    char *http_flag = vmlet_xasprintf("--http-listen=127.0.0.1:%d", g.http_port);
    char *log = vmlet_xasprintf("%s/vmm-host.log", g.dir);
    // As in docker-compose, where it has NET_ADMIN but not SYS_ADMIN.
    char *argv[] = {"setpriv", "--bounding-set", "-sys_admin", bin, sock_flag, http_flag,
                    "--allow=sh,/no/such/vmm", NULL};
    g.pid = ts_spawn(log, argv);
    bool up = g.pid > 0 && ts_poll(s_answers, NULL, 10000);
    free(bin);
    free(sock_flag);
    free(http_flag);
    free(log);
    return up ? 0 : -1;
}

static int s_teardown(void **state)
{
    (void)state;
    if (g.pid > 0) {
        ts_kill(g.pid, SIGKILL);
        ts_wait_exit(g.pid, 5000, NULL);
    }
    ts_remove_dir(g.dir);
    free(g.dir);
    free(g.socket);
    return 0;
}

static int s_open_out(const char *name, char **path_out)
{
    *path_out = vmlet_xasprintf("%s/%s", g.dir, name);
    return open(*path_out, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

static char *s_read(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = vmlet_xcalloc(1, 4096);
    size_t n = fread(buf, 1, 4095, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static pid_t s_ppid(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *stat = s_read(path);
    if (!stat)
        return -1;
    // pid (comm) state ppid ...: comm may hold spaces, so start after ')'.
    char *p = strrchr(stat, ')');
    int ppid = -1;
    if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
        ppid = -1;
    free(stat);
    return ppid;
}

static void test_ping_and_daemonizing_start(void **state)
{
    (void)state;
    assert_int_equal(vmm_host_ping(g.socket, 2000, NULL), 0);
    char *out_path;
    int out = s_open_out("wait.out", &out_path);
    assert_true(out >= 0);
    char *argv[] = {"sh", "-c", "echo started by the vmm-host; exit 0", NULL};
    vmlet_err_t err = {0};
    int rc = vmm_host_spawn(g.socket, argv, -1, out, VMM_SPAWN_WAIT, 5000, NULL, &err);
    close(out);
    if (rc < 0)
        fail_msg("%s", err.msg);
    char *text = s_read(out_path);
    assert_non_null(text);
    assert_string_equal(text, "started by the vmm-host\n");
    free(text);
    free(out_path);
}

static void test_detached_start_in_its_namespace(void **state)
{
    (void)state;
    // Its own namespace, by a descriptor (compose: /proc/1/ns/net).
    char *ns_path = vmlet_xasprintf("/proc/%d/ns/net", (int)g.pid);
    struct stat ns_st;
    assert_int_equal(stat(ns_path, &ns_st), 0);
    int ns_fd = open(ns_path, O_RDONLY | O_CLOEXEC);
    assert_true(ns_fd >= 0);

    char *out_path;
    int out = s_open_out("detach.out", &out_path);
    char *argv[] = {"sh", "-c", "stat -L -c 'netns %i' /proc/self/ns/net; exec sleep 3", NULL};
    vmlet_err_t err = {0};
    pid_t pid = -1;
    double reaped_before = s_metric("vmlet_vmm_host_reaped_total");
    int rc = vmm_host_spawn(g.socket, argv, ns_fd, out, VMM_SPAWN_DETACH, 5000, &pid, &err);
    close(out);
    close(ns_fd);
    if (rc < 0)
        fail_msg("%s", err.msg);
    assert_true(pid > 0);
    // The vmm-host's child, not ours: it outlives whoever asked.
    assert_int_equal(s_ppid(pid), g.pid);
    char expect[64];
    snprintf(expect, sizeof expect, "netns %lu\n", (unsigned long)ns_st.st_ino);
    char *text = NULL;
    for (int i = 0; i < 100 && !(text && strstr(text, expect)); i++) {
        free(text);
        usleep(50 * 1000);
        text = s_read(out_path);
    }
    assert_non_null(text);
    assert_string_equal(text, expect);
    free(text);
    // When it exits, the vmm-host reaps it: no zombie, one more counted.
    int64_t deadline = ts_now_ms() + 15000;
    while (kill(pid, 0) == 0 && ts_now_ms() < deadline)
        usleep(100 * 1000);
    assert_int_equal(kill(pid, 0), -1);
    assert_true(s_metric("vmlet_vmm_host_reaped_total") >= reaped_before + 1);
    print_message("detached sh %d ran in the vmm-host's netns %lu and was reaped\n", (int)pid,
                  (unsigned long)ns_st.st_ino);
    free(ns_path);
    free(out_path);
}

static void test_other_namespace_refused(void **state)
{
    (void)state;
    // A namespace of the test's own, held by a bind mount.
    char *ns_path = vmlet_xasprintf("%s/netns", g.dir);
    char *cmd = vmlet_xasprintf(
        "touch %s && unshare --net mount --bind /proc/self/ns/net %s", ns_path, ns_path);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    int ns_fd = open(ns_path, O_RDONLY | O_CLOEXEC);
    assert_true(ns_fd >= 0);
    char *out_path;
    int out = s_open_out("other.out", &out_path);
    char *argv[] = {"sh", "-c", "exit 0", NULL};
    vmlet_err_t err = {0};
    pid_t pid = -1;
    assert_int_equal(vmm_host_spawn(g.socket, argv, ns_fd, out, VMM_SPAWN_DETACH, 5000, &pid, &err),
                     -1);
    close(out);
    close(ns_fd);
    print_message("another namespace without CAP_SYS_ADMIN: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "joining the network namespace (setns): Operation not permitted"));
    assert_int_equal(umount2(ns_path, MNT_DETACH), 0);
    free(ns_path);
    free(out_path);
}

static void test_refusals(void **state)
{
    (void)state;
    char *out_path;
    int out = s_open_out("refused.out", &out_path);
    vmlet_err_t err = {0};
    char *not_allowed[] = {"bash", "-c", "true", NULL};
    assert_int_equal(
        vmm_host_spawn(g.socket, not_allowed, -1, out, VMM_SPAWN_WAIT, 2000, NULL, &err), -1);
    print_message("not allowed: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "\"bash\" is not a command this vmm-host runs"));

    vmlet_err_clear(&err);
    char *missing[] = {"/no/such/vmm", NULL};
    assert_int_equal(vmm_host_spawn(g.socket, missing, -1, out, VMM_SPAWN_WAIT, 2000, NULL, &err),
                     -1);
    print_message("missing binary: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "exec: No such file or directory"));

    vmlet_err_clear(&err);
    char *failing[] = {"sh", "-c", "echo no disk here >&2; exit 3", NULL};
    assert_int_equal(vmm_host_spawn(g.socket, failing, -1, out, VMM_SPAWN_WAIT, 2000, NULL, &err),
                     -1);
    print_message("failing start: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "exit status 3: no disk here"));
    close(out);
    free(out_path);
    assert_true(s_metric("vmlet_vmm_host_spawns_total{result=\"failed\"}") >= 3);

    // The socket is root's only: another uid cannot even connect.
    struct stat st;
    assert_int_equal(stat(g.socket, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    pid_t child = fork();
    if (child == 0) {
        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(2);
        _exit(vmm_host_ping(g.socket, 500, NULL) == 0 ? 1 : 0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_sigterm(void **state)
{
    (void)state;
    assert_int_equal(ts_kill(g.pid, SIGTERM), 0);
    int status = -1;
    assert_int_equal(ts_wait_exit(g.pid, 5000, &status), 0);
    g.pid = -1;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(access(g.socket, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ping_and_daemonizing_start),
        cmocka_unit_test(test_detached_start_in_its_namespace),
        cmocka_unit_test(test_other_namespace_refused),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_sigterm),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
