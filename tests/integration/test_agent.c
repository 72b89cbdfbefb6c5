// The guest agent in real QEMU microvm guests under TCG (no working KVM
// here), spoken to through the launcher's own agent_channel. Three boots:
//  1. the pod VM most cases share, in a network namespace of the test's
//     own with a tap: PodSetup -> PodReady (network, volumes, two images),
//     init container -> emptyDir -> next container, each container seeing
//     only its own image, env/argv exactly as sent, working dir, named
//     user, exit codes 0 and 3, termination message, fresh roots, a
//     StartError in runc's words, tty, exec (stdin, exit code, tty,
//     timeout), port-forward to busybox httpd, a host reconnect with no
//     gap or duplicate, SIGTERM, and PowerOff making QEMU exit;
//  2. the misbehaving agent, rejected by agent_channel with a protocol error;
//  3. a PodSetup naming a disk the VM lacks: AgentError "setup", clearly;
//     retried, the disk found by its place in disk_serials (no serial).
// Test images are ext4 disks made here from Debian's busybox-static.
#include "testsupport.h"

#include "agent_channel.h"
#include "raw_vm.h"

#include "vmlet/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BOOT_TIMEOUT_MS 90000 // TCG on two shared cores: 2-3 s usually
#define STEP_TIMEOUT_MS 30000
#define NETNS_PREFIX "vmlet-agt-"
#define GUEST_IP "10.250.0.2"
#define GATEWAY_IP "10.250.0.1"
#define GUEST_MAC "52:54:00:0a:fa:02"

// --- what the agent said --------------------------------------------------------------------

typedef struct {
    char name[32];
    char *out[2]; // stdout, stderr
    size_t len[2];
    int started; // ContainerStarted count
    bool exited;
    Vmlet__ContainerExited *exit; // the last one
    int64_t first_chunk_ns_after; // for the reconnect test
} ctr_rec_t;

typedef struct {
    uint32_t id;
    char *out[2];
    size_t len[2];
    bool started, exited, closed;
    int exit_code, signal;
    bool timed_out;
    char message[512], close_error[512];
} stream_rec_t;

typedef struct {
    vmlet_agent_channel_t *ch;
    uint64_t last_seen;
    ctr_rec_t ctrs[8];
    size_t n_ctrs;
    stream_rec_t streams[16];
    size_t n_streams;
    int hellos, ready, pongs;
    char error_what[64], error_msg[1024];
    // reconnect test: chunks read by the agent before this moment that arrived after it
    int64_t reconnect_unix_ns;
    int chunks_from_before;
} rec_t;

static struct {
    bool ready; // QEMU, kernel and initramfs are here
    char *dir;
    char kernel[512], initrd[600], initrd_bad[600];
    char netns[64];
    bool have_netns;
    raw_vm_t vm;
    rec_t r;
    double boot_s[3];
    int n_boots;
} S;

static ctr_rec_t *s_ctr(rec_t *r, const char *name)
{
    for (size_t i = 0; i < r->n_ctrs; i++)
        if (strcmp(r->ctrs[i].name, name) == 0)
            return &r->ctrs[i];
    assert_true(r->n_ctrs < 8);
    ctr_rec_t *c = &r->ctrs[r->n_ctrs++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    return c;
}

static stream_rec_t *s_stream(rec_t *r, uint32_t id)
{
    for (size_t i = 0; i < r->n_streams; i++)
        if (r->streams[i].id == id)
            return &r->streams[i];
    assert_true(r->n_streams < 16);
    stream_rec_t *s = &r->streams[r->n_streams++];
    memset(s, 0, sizeof *s);
    s->id = id;
    return s;
}

static void s_append(char **buf, size_t *len, const void *data, size_t n)
{
    *buf = realloc(*buf, *len + n + 1);
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static void s_flush(rec_t *r)
{
    vmlet_err_t err = {0};
    int64_t deadline = ts_now_ms() + STEP_TIMEOUT_MS;
    long left;
    while ((left = vmlet_agent_channel_flush(r->ch, &err)) > 0) {
        assert_true(ts_now_ms() < deadline);
        struct pollfd p = {vmlet_agent_channel_fd(r->ch), POLLOUT, 0};
        poll(&p, 1, 100);
    }
    if (left < 0)
        fail_msg("flush: %s", err.msg);
}

static void s_send(rec_t *r, Vmlet__GuestMessage *msg)
{
    vmlet_err_t err = {0};
    if (vmlet_agent_channel_send(r->ch, msg, &err) < 0)
        fail_msg("send: %s", err.msg);
    s_flush(r);
}

// The host consumed len bytes of a stream: the agent may send that much more.
static void s_window(rec_t *r, uint32_t id, uint32_t len)
{
    Vmlet__StreamData d = VMLET__STREAM_DATA__INIT;
    d.has_stream_id = 1;
    d.stream_id = id;
    d.has_window_update = 1;
    d.window_update = len;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_DATA;
    msg.stream_data = &d;
    s_send(r, &msg);
}

static void s_record(rec_t *r, Vmlet__GuestMessage *m)
{
    switch (m->body_case) {
    case VMLET__GUEST_MESSAGE__BODY_HELLO:
        r->hellos++;
        break;
    case VMLET__GUEST_MESSAGE__BODY_POD_READY:
        r->ready++;
        break;
    case VMLET__GUEST_MESSAGE__BODY_PONG:
        r->pongs++;
        break;
    case VMLET__GUEST_MESSAGE__BODY_STARTED:
        s_ctr(r, m->started->name)->started++;
        break;
    case VMLET__GUEST_MESSAGE__BODY_OUTPUT: {
        ctr_rec_t *c = s_ctr(r, m->output->container);
        int which = m->output->stream == VMLET__OUTPUT_STREAM__OUTPUT_STREAM_STDERR;
        s_append(&c->out[which], &c->len[which], m->output->data.data, m->output->data.len);
        if (r->reconnect_unix_ns && m->output->unix_ns < r->reconnect_unix_ns)
            r->chunks_from_before++;
        break;
    }
    case VMLET__GUEST_MESSAGE__BODY_EXEC_STARTED:
        s_stream(r, m->exec_started->stream_id)->started = true;
        break;
    case VMLET__GUEST_MESSAGE__BODY_EXEC_EXITED: {
        stream_rec_t *s = s_stream(r, m->exec_exited->stream_id);
        s->exited = true;
        s->exit_code = m->exec_exited->exit_code;
        s->signal = m->exec_exited->signal;
        s->timed_out = m->exec_exited->timed_out;
        snprintf(s->message, sizeof s->message, "%s",
                 m->exec_exited->message ? m->exec_exited->message : "");
        break;
    }
    case VMLET__GUEST_MESSAGE__BODY_STREAM_DATA: {
        const Vmlet__StreamData *d = m->stream_data;
        if (d->has_data && d->data.len) {
            stream_rec_t *s = s_stream(r, d->stream_id);
            int which = d->which == VMLET__OUTPUT_STREAM__OUTPUT_STREAM_STDERR;
            s_append(&s->out[which], &s->len[which], d->data.data, d->data.len);
            s_window(r, d->stream_id, (uint32_t)d->data.len);
        }
        break;
    }
    case VMLET__GUEST_MESSAGE__BODY_STREAM_CLOSE: {
        stream_rec_t *s = s_stream(r, m->stream_close->stream_id);
        s->closed = true;
        snprintf(s->close_error, sizeof s->close_error, "%s",
                 m->stream_close->error ? m->stream_close->error : "");
        break;
    }
    case VMLET__GUEST_MESSAGE__BODY_ERROR:
        snprintf(r->error_what, sizeof r->error_what, "%s", m->error->what ? m->error->what : "");
        snprintf(r->error_msg, sizeof r->error_msg, "%s",
                 m->error->message ? m->error->message : "");
        print_message("agent error (%s): %s\n", r->error_what, r->error_msg);
        break;
    default:
        break;
    }
    vmlet__guest_message__free_unpacked(m, NULL);
}

// Reads for up to timeout_ms (or until something arrives) and records it.
// Returns -1 with err on a channel error.
static int s_pump(rec_t *r, int timeout_ms, vmlet_err_t *err)
{
    struct pollfd p = {vmlet_agent_channel_fd(r->ch), POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    int rc = vmlet_agent_channel_read(r->ch, 0, err);
    Vmlet__GuestMessage *m;
    while ((m = vmlet_agent_channel_next(r->ch))) {
        Vmlet__GuestMessage *copy = m;
        if (m->body_case == VMLET__GUEST_MESSAGE__BODY_EXITED) {
            // Keep the message, record a pointer to its body.
            ctr_rec_t *c = s_ctr(r, m->exited->name);
            c->exited = true;
            if (c->exit)
                vmlet__container_exited__free_unpacked(c->exit, NULL);
            c->exit = m->exited;
            m->exited = NULL;
            m->body_case = VMLET__GUEST_MESSAGE__BODY__NOT_SET;
            vmlet__guest_message__free_unpacked(copy, NULL);
            continue;
        }
        s_record(r, m);
    }
    if (rc < 0)
        return -1;
    if (vmlet_agent_channel_ack_pending(r->ch) && vmlet_agent_channel_send_ack(r->ch, err) < 0)
        return -1;
    return 0;
}

static void s_wait(rec_t *r, bool (*cond)(rec_t *, const void *), const void *arg, int timeout_ms,
                   const char *what)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    vmlet_err_t err = {0};
    while (!cond(r, arg)) {
        if (ts_now_ms() > deadline)
            fail_msg("timed out waiting for %s (agent error: %s %s; console: %s)", what,
                     r->error_what, r->error_msg, S.vm.console_log);
        if (s_pump(r, 200, &err) < 0)
            fail_msg("agent channel while waiting for %s: %s", what, err.msg);
    }
}

static bool c_hello(rec_t *r, const void *arg)
{
    return r->hellos >= *(const int *)arg;
}
static bool c_ready(rec_t *r, const void *arg)
{
    (void)arg;
    return r->ready > 0 || r->error_what[0];
}
static bool c_exited(rec_t *r, const void *name)
{
    return s_ctr(r, name)->exited;
}
static bool c_stream_done(rec_t *r, const void *id)
{
    stream_rec_t *s = s_stream(r, *(const uint32_t *)id);
    return s->exited || s->closed;
}
static bool c_stdout_has(rec_t *r, const void *arg)
{
    const char *const *pair = arg; // {container, text}
    ctr_rec_t *c = s_ctr(r, pair[0]);
    return (c->out[0] && strstr(c->out[0], pair[1])) || c->exited;
}

// --- building the VM's disks ------------------------------------------------------------------

static int s_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int s_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// An image: busybox and its applets, a named user and group, plus extra
// shell commands run in the root directory.
static void s_image(const char *name, const char *extra)
{
    char root[600];
    snprintf(root, sizeof root, "%s/%s.root", S.dir, name);
    assert_int_equal(
        s_sh("set -e; r=%s; mkdir -p $r/bin $r/etc $r/home/app $r/www; cp /bin/busybox $r/bin/; "
             "for a in $(/bin/busybox --list); do [ -e $r/bin/$a ] || ln -s busybox $r/bin/$a; "
             "done; "
             "printf 'root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000::/home/app:/bin/sh\\n' "
             "> $r/etc/passwd; "
             "printf 'root:x:0:\\napp:x:1000:\\nextra:x:2000:app\\n' > $r/etc/group; "
             "chown 1000:1000 $r/home/app; cd $r; %s; "
             "mkfs.ext4 -q -F -d $r %s/%s.ext4 32M",
             root, extra, S.dir, name),
        0);
}

static void s_netns_setup(void)
{
    snprintf(S.netns, sizeof S.netns, NETNS_PREFIX "%d", getpid());
    S.have_netns =
        s_sh("ip netns add %s && ip -n %s link set lo up && ip -n %s tuntap add dev tap0 mode tap "
             "&& ip -n %s addr add " GATEWAY_IP "/24 dev tap0 && ip -n %s link set tap0 up",
             S.netns, S.netns, S.netns, S.netns, S.netns) == 0;
    if (!S.have_netns) {
        print_message("no network namespace (not root?): the NIC is left out\n");
        s_sh("ip netns del %s 2>/dev/null", S.netns);
    }
}

// Starts a VM (its files in a directory of its own) and connects.
static void s_boot_start(const char *initrd, const raw_vm_disk_t *disks, size_t n_disks, bool nic,
                         const char *cmdline, rec_t *r)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/boot%d", S.dir, S.n_boots + 1);
    mkdir(dir, 0755);
    raw_vm_opts_t o = {.kernel = S.kernel,
                       .initrd = initrd,
                       .cmdline = cmdline,
                       .disks = disks,
                       .n_disks = n_disks,
                       .dir = dir};
    if (nic && S.have_netns) {
        o.tap = "tap0";
        o.mac = GUEST_MAC;
        o.netns = S.netns;
    }
    assert_int_equal(raw_vm_start(&o, &S.vm), 0);
    int fd = raw_vm_connect(&S.vm, BOOT_TIMEOUT_MS);
    assert_true(fd >= 0);
    memset(r, 0, sizeof *r);
    r->ch = vmlet_agent_channel_new(fd, 0);
}

// Boot time: from spawning QEMU to the agent's first Hello.
static void s_boot_took(void)
{
    double took = (double)(ts_now_ms() - S.vm.started_ms) / 1000.0;
    print_message("RESULT boot_to_hello_ms=%lld\n", (long long)(took * 1000));
    if (S.n_boots < 3)
        S.boot_s[S.n_boots] = took;
    S.n_boots++;
}

static void s_boot(const char *initrd, const raw_vm_disk_t *disks, size_t n_disks, bool nic,
                   const char *cmdline, rec_t *r)
{
    s_boot_start(initrd, disks, n_disks, nic, cmdline, r);
    int one = 1;
    s_wait(r, c_hello, &one, BOOT_TIMEOUT_MS, "the agent's first Hello");
    s_boot_took();
}

static void s_free_rec(rec_t *r)
{
    for (size_t i = 0; i < r->n_ctrs; i++) {
        free(r->ctrs[i].out[0]);
        free(r->ctrs[i].out[1]);
        if (r->ctrs[i].exit)
            vmlet__container_exited__free_unpacked(r->ctrs[i].exit, NULL);
    }
    for (size_t i = 0; i < r->n_streams; i++) {
        free(r->streams[i].out[0]);
        free(r->streams[i].out[1]);
    }
    vmlet_agent_channel_destroy(&r->ch);
    memset(r, 0, sizeof *r);
}

// --- messages to the agent --------------------------------------------------------------------

static Vmlet__GuestFile *s_file(const char *path, const char *content, uint32_t mode)
{
    Vmlet__GuestFile *f = calloc(1, sizeof *f);
    vmlet__guest_file__init(f);
    f->path = (char *)path;
    f->has_content = 1;
    f->content.data = (uint8_t *)content;
    f->content.len = strlen(content);
    if (mode) {
        f->has_mode = 1;
        f->mode = mode;
    }
    return f;
}

static Vmlet__GuestMount *s_mount(const char *volume, const char *path, bool ro)
{
    Vmlet__GuestMount *m = calloc(1, sizeof *m);
    vmlet__guest_mount__init(m);
    m->volume = (char *)volume;
    m->path = (char *)path;
    m->has_read_only = 1;
    m->read_only = ro;
    return m;
}

static void s_pod_setup(rec_t *r)
{
    Vmlet__EmptyDirSource disk = VMLET__EMPTY_DIR_SOURCE__INIT, mem = VMLET__EMPTY_DIR_SOURCE__INIT;
    mem.has_memory = 1;
    mem.memory = true;
    Vmlet__FilesSource config = VMLET__FILES_SOURCE__INIT, secret = VMLET__FILES_SOURCE__INIT;
    Vmlet__GuestFile *cfiles[] = {s_file("greeting", "hello config\n", 0644),
                                  s_file("sub/nested.txt", "nested\n", 0)};
    config.files = cfiles;
    config.n_files = 2;
    config.has_default_mode = 1;
    config.default_mode = 0640;
    Vmlet__GuestFile *sfiles[] = {s_file("password", "s3cret", 0400)};
    secret.files = sfiles;
    secret.n_files = 1;
    secret.has_tmpfs = 1;
    secret.tmpfs = true;
    Vmlet__GuestVolume v[4];
    for (int i = 0; i < 4; i++)
        vmlet__guest_volume__init(&v[i]);
    v[0].name = "shared";
    v[0].source_case = VMLET__GUEST_VOLUME__SOURCE_EMPTY_DIR;
    v[0].empty_dir = &disk;
    v[1].name = "mem";
    v[1].source_case = VMLET__GUEST_VOLUME__SOURCE_EMPTY_DIR;
    v[1].empty_dir = &mem;
    v[2].name = "config";
    v[2].source_case = VMLET__GUEST_VOLUME__SOURCE_FILES;
    v[2].files = &config;
    v[3].name = "secret";
    v[3].source_case = VMLET__GUEST_VOLUME__SOURCE_FILES;
    v[3].files = &secret;
    Vmlet__GuestVolume *vols[] = {&v[0], &v[1], &v[2], &v[3]};

    Vmlet__GuestMount *init_m[] = {s_mount("shared", "/shared", false)};
    Vmlet__GuestMount *app_m[] = {
        s_mount("shared", "/shared", true), s_mount("config", "/etc/config", true),
        s_mount("secret", "/etc/secret", true), s_mount("mem", "/cache", false)};
    Vmlet__GuestMount *side_m[] = {s_mount("shared", "/data", false)};
    Vmlet__GuestContainer c[4];
    for (int i = 0; i < 4; i++)
        vmlet__guest_container__init(&c[i]);
    c[0].name = "init";
    c[0].image_disk = "img-a";
    c[0].mounts = init_m;
    c[0].n_mounts = 1;
    c[0].has_init = 1;
    c[0].init = true;
    c[1].name = "app";
    c[1].image_disk = "img-a";
    c[1].mounts = app_m;
    c[1].n_mounts = 4;
    c[1].termination_message_path = "/dev/termination-log";
    c[2].name = "side";
    c[2].image_disk = "img-b";
    c[2].mounts = side_m;
    c[2].n_mounts = 1;
    c[3].name = "tty";
    c[3].image_disk = "img-a";
    c[3].has_tty = 1;
    c[3].tty = true;
    Vmlet__GuestContainer *ctrs[] = {&c[0], &c[1], &c[2], &c[3]};

    uint8_t seed[32];
    vmlet_random_bytes(seed, sizeof seed);
    char *serials[] = {"scratch", "img-a", "img-b"};
    Vmlet__PodSetup s = VMLET__POD_SETUP__INIT;
    s.pod_uid = "0000-test";
    s.hostname = "agent-test";
    if (S.have_netns) {
        s.ip_cidr = GUEST_IP "/24";
        s.gateway = GATEWAY_IP;
        s.has_mtu = 1;
        s.mtu = 1400;
        s.mac = GUEST_MAC;
    }
    s.resolv_conf = "nameserver 10.250.0.53\nsearch test.local\n";
    s.hosts = "127.0.0.1\tlocalhost\n" GUEST_IP "\tagent-test\n";
    s.has_unix_time_ns = 1;
    s.unix_time_ns = vmlet_unix_ns();
    s.has_random_seed = 1;
    s.random_seed.data = seed;
    s.random_seed.len = sizeof seed;
    s.volumes = vols;
    s.n_volumes = 4;
    s.containers = ctrs;
    s.n_containers = 4;
    s.scratch_disk = "scratch";
    char *sysctls[] = {"net.ipv4.ip_forward=1"};
    s.sysctls = sysctls;
    s.n_sysctls = 1;
    s.disk_serials = serials;
    s.n_disk_serials = 3;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_SETUP;
    msg.setup = &s;
    s_send(r, &msg);
    for (int i = 0; i < 2; i++)
        free(cfiles[i]);
    free(sfiles[0]);
    free(init_m[0]);
    for (int i = 0; i < 4; i++)
        free(app_m[i]);
    free(side_m[0]);
}

typedef struct {
    const char *name;
    uint32_t instance;
    const char *const *argv; // NULL-terminated
    const char *const *env;  // NULL-terminated, may be NULL
    const char *work_dir, *user;
    bool fresh;
} start_t;

static size_t s_count(const char *const *list)
{
    size_t n = 0;
    while (list && list[n])
        n++;
    return n;
}

static void s_start(rec_t *r, const start_t *st)
{
    ctr_rec_t *c = s_ctr(r, st->name);
    free(c->out[0]);
    free(c->out[1]);
    c->out[0] = c->out[1] = NULL;
    c->len[0] = c->len[1] = 0;
    c->exited = false;
    c->started = 0;
    Vmlet__StartContainer s = VMLET__START_CONTAINER__INIT;
    s.name = (char *)st->name;
    s.has_instance = 1;
    s.instance = st->instance;
    s.argv = (char **)st->argv;
    s.n_argv = s_count(st->argv);
    s.env = (char **)st->env;
    s.n_env = s_count(st->env);
    s.working_dir = (char *)st->work_dir;
    s.user = (char *)st->user;
    s.has_fresh_root = 1;
    s.fresh_root = st->fresh;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_START;
    msg.start = &s;
    s_send(r, &msg);
}

// Runs a container to its end; returns its record.
static ctr_rec_t *s_run(rec_t *r, const start_t *st)
{
    s_start(r, st);
    s_wait(r, c_exited, st->name, STEP_TIMEOUT_MS, st->name);
    ctr_rec_t *c = s_ctr(r, st->name);
    print_message("%s: exit %d (%s)\n--- stdout\n%s--- stderr\n%s---\n", st->name,
                  c->exit->exit_code, c->exit->reason, c->out[0] ? c->out[0] : "",
                  c->out[1] ? c->out[1] : "");
    return c;
}

static uint32_t s_exec(rec_t *r, const char *container, const char *const *argv, bool tty,
                       bool stdin_, int timeout_ms)
{
    static uint32_t next_id = 100;
    uint32_t id = next_id++;
    Vmlet__ExecStart e = VMLET__EXEC_START__INIT;
    e.has_stream_id = 1;
    e.stream_id = id;
    e.container = (char *)container;
    e.argv = (char **)argv;
    e.n_argv = s_count(argv);
    e.has_tty = 1;
    e.tty = tty;
    e.has_stdin = 1;
    e.stdin = stdin_;
    if (timeout_ms) {
        e.has_timeout_ms = 1;
        e.timeout_ms = timeout_ms;
    }
    if (tty) {
        e.has_rows = e.has_cols = 1;
        e.rows = 30;
        e.cols = 100;
    }
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_EXEC;
    msg.exec = &e;
    s_send(r, &msg);
    return id;
}

static void s_stream_send(rec_t *r, uint32_t id, const char *data, bool close_write)
{
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    if (data) {
        Vmlet__StreamData d = VMLET__STREAM_DATA__INIT;
        d.has_stream_id = 1;
        d.stream_id = id;
        d.has_data = 1;
        d.data.data = (uint8_t *)data;
        d.data.len = strlen(data);
        msg.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_DATA;
        msg.stream_data = &d;
        s_send(r, &msg);
    }
    if (close_write) {
        Vmlet__StreamClose c = VMLET__STREAM_CLOSE__INIT;
        c.has_stream_id = 1;
        c.stream_id = id;
        c.has_write_side_only = 1;
        c.write_side_only = true;
        msg = (Vmlet__GuestMessage)VMLET__GUEST_MESSAGE__INIT;
        msg.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_CLOSE;
        msg.stream_close = &c;
        s_send(r, &msg);
    }
}

static stream_rec_t *s_exec_run(rec_t *r, const char *container, const char *const *argv, bool tty,
                                const char *input, int timeout_ms)
{
    uint32_t id = s_exec(r, container, argv, tty, input != NULL, timeout_ms);
    if (input)
        s_stream_send(r, id, input, true);
    s_wait(r, c_stream_done, &id, STEP_TIMEOUT_MS, "an exec session");
    stream_rec_t *s = s_stream(r, id);
    print_message("exec %u: exit %d signal %d (%s)\n--- stdout\n%s--- stderr\n%s---\n", id,
                  s->exit_code, s->signal, s->message, s->out[0] ? s->out[0] : "",
                  s->out[1] ? s->out[1] : "");
    return s;
}

static void s_assert_has(const char *text, const char *want)
{
    if (!text || !strstr(text, want))
        fail_msg("expected \"%s\" in:\n%s", want, text ? text : "(nothing)");
}

#define NEED_VM()                                                                                  \
    do {                                                                                           \
        if (!S.ready)                                                                              \
            skip();                                                                                \
    } while (0)

// --- the shared VM ----------------------------------------------------------------------------

static int group_setup(void **state)
{
    (void)state;
    S.dir = ts_tempdir("vmlet-agent-test");
    snprintf(S.kernel, sizeof S.kernel, "%s/vmlinuz", VMLET_KERNEL_DIR);
    snprintf(S.initrd, sizeof S.initrd, "%s", VMLET_INITRAMFS);
    snprintf(S.initrd_bad, sizeof S.initrd_bad, "%s", VMLET_INITRAMFS_MISBEHAVE);
    if (access("/usr/bin/qemu-system-x86_64", X_OK) != 0 || access(S.kernel, R_OK) != 0 ||
        access(S.initrd, R_OK) != 0) {
        print_message("SKIP: no qemu-system-x86_64, kernel or initramfs\n");
        return 0;
    }
    s_image("img-a", "echo 'hello from the pod' > www/index.html; echo a > only-in-a");
    s_image("img-b", "echo 'only b has this' > only-in-b");
    assert_int_equal(
        s_sh("truncate -s 256M %s/scratch.ext4 && mkfs.ext4 -q -F %s/scratch.ext4", S.dir, S.dir),
        0);
    s_netns_setup();
    S.ready = true;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    raw_vm_kill(&S.vm);
    s_free_rec(&S.r);
    if (S.have_netns)
        s_sh("ip netns del %s", S.netns);
    if (S.n_boots) {
        // Median of the boots (sorted; the middle one, or the mean of two).
        double b[3];
        memcpy(b, S.boot_s, sizeof b);
        for (int i = 0; i < S.n_boots; i++)
            for (int j = i + 1; j < S.n_boots; j++)
                if (b[j] < b[i]) {
                    double t = b[i];
                    b[i] = b[j];
                    b[j] = t;
                }
        double median =
            S.n_boots % 2 ? b[S.n_boots / 2] : (b[S.n_boots / 2 - 1] + b[S.n_boots / 2]) / 2;
        struct stat st;
        long long initrd = stat(S.initrd, &st) == 0 ? (long long)st.st_size : -1;
        print_message("RESULT boots=%d boot_to_hello_median_ms=%lld initramfs_bytes=%lld\n",
                      S.n_boots, (long long)(median * 1000), initrd);
    }
    ts_remove_dir(S.dir);
    free(S.dir);
    return 0;
}

static void test_boot_and_pod_setup(void **state)
{
    (void)state;
    NEED_VM();
    raw_vm_disk_t disks[] = {{.path = NULL, .serial = "scratch"},
                             {.path = NULL, .read_only = true, .serial = "img-a"},
                             {.path = NULL, .read_only = true, .serial = "img-b"}};
    char p0[700], p1[700], p2[700];
    snprintf(p0, sizeof p0, "%s/scratch.ext4", S.dir);
    snprintf(p1, sizeof p1, "%s/img-a.ext4", S.dir);
    snprintf(p2, sizeof p2, "%s/img-b.ext4", S.dir);
    disks[0].path = p0;
    disks[1].path = p1;
    disks[2].path = p2;
    s_boot(S.initrd, disks, 3, true, "vmlet.debug=1", &S.r);
    s_pod_setup(&S.r);
    s_wait(&S.r, c_ready, NULL, STEP_TIMEOUT_MS, "PodReady");
    assert_string_equal(S.r.error_what, "");
    assert_int_equal(S.r.ready, 1);
}

static void test_init_container_fills_empty_dir(void **state)
{
    (void)state;
    NEED_VM();
    const char *argv[] = {"/bin/sh", "-c", "echo from-init > /shared/note; echo init done", NULL};
    ctr_rec_t *c = s_run(&S.r, &(start_t){.name = "init", .argv = argv});
    assert_int_equal(c->started, 1);
    assert_int_equal(c->exit->exit_code, 0);
    assert_string_equal(c->exit->reason, "Completed");
    assert_string_equal(c->out[0], "init done\n");
}

// env exactly as sent, argv[0] found in PATH, and the other image.
static void test_env_exactly_as_sent(void **state)
{
    (void)state;
    NEED_VM();
    const char *argv[] = {"env", NULL};
    const char *env[] = {"PATH=/bin", "FOO=bar  baz", "EMPTY=", "MULTI=a=b", NULL};
    ctr_rec_t *c = s_run(&S.r, &(start_t){.name = "side", .argv = argv, .env = env});
    assert_int_equal(c->exit->exit_code, 0);
    assert_string_equal(c->out[0], "PATH=/bin\nFOO=bar  baz\nEMPTY=\nMULTI=a=b\n");
}

static void test_each_container_sees_its_own_image(void **state)
{
    (void)state;
    NEED_VM();
    const char *argv[] = {"/bin/sh", "-c",
                          "cat /only-in-b; cat /data/note; ls /only-in-a 2>/dev/null || echo no-a",
                          NULL};
    ctr_rec_t *c =
        s_run(&S.r, &(start_t){.name = "side", .instance = 1, .argv = argv, .fresh = true});
    assert_int_equal(c->exit->exit_code, 0);
    assert_string_equal(c->out[0], "only b has this\nfrom-init\nno-a\n");
}

// The app (image a, as root): volumes with their modes, the secret on
// tmpfs, read-only mounts, argv, working dir made, /etc files, exit 3 and
// its termination message.
static void test_app_volumes_argv_exit_code(void **state)
{
    (void)state;
    NEED_VM();
    const char *script =
        "echo \"args:$*\"; pwd; cat /shared/note; cat /etc/config/greeting; "
        "stat -L -c '%a %n' /etc/config/greeting /etc/config/sub/nested.txt /etc/secret/password; "
        "cat /etc/secret/password; echo; "
        "awk '$2 == \"/etc/secret\" || $2 == \"/cache\" {print $2, $3}' /proc/mounts; "
        "touch /etc/config/x 2>/dev/null && echo config-writable || echo config-readonly; "
        "echo data > /cache/f && echo cache-writable; "
        "cat /only-in-a; ls /only-in-b 2>/dev/null || echo no-b; "
        "hostname; cat /etc/resolv.conf; grep agent-test /etc/hosts; "
        "stat -c '%a' /tmp; ls /dev; "
        "touch /left-by-0; echo 'bad news' > /dev/termination-log; exit 3";
    const char *argv[] = {"/bin/sh", "-c", script, "name", "arg one", "two", NULL};
    const char *env[] = {"PATH=/usr/bin:/bin", NULL};
    ctr_rec_t *c =
        s_run(&S.r, &(start_t){.name = "app", .argv = argv, .env = env, .work_dir = "/work/dir"});
    assert_int_equal(c->exit->exit_code, 3);
    assert_string_equal(c->exit->reason, "Error");
    assert_true(c->exit->has_termination_message);
    assert_int_equal(c->exit->termination_message.len, strlen("bad news\n"));
    assert_memory_equal(c->exit->termination_message.data, "bad news\n", 9);
    assert_true(c->exit->finished_unix_ms >= c->exit->started_unix_ms);
    const char *out = c->out[0];
    s_assert_has(out, "args:arg one two\n/work/dir\nfrom-init\nhello config\n");
    s_assert_has(out, "644 /etc/config/greeting\n640 /etc/config/sub/nested.txt\n"
                      "400 /etc/secret/password\ns3cret\n");
    s_assert_has(out, "/etc/secret tmpfs\n");
    s_assert_has(out, "/cache tmpfs\n");
    s_assert_has(out, "config-readonly\ncache-writable\na\nno-b\nagent-test\n");
    s_assert_has(out, "nameserver 10.250.0.53\nsearch test.local\n");
    s_assert_has(out, GUEST_IP "\tagent-test\n");
    s_assert_has(out, "\n1777\n");
    s_assert_has(out, "null\n");
    s_assert_has(out, "pts\n");
    s_assert_has(out, "urandom\n");
}

// A restart with a fresh root, as the named user with its groups.
static void test_fresh_root_and_named_user(void **state)
{
    (void)state;
    NEED_VM();
    const char *argv[] = {
        "/bin/sh", "-c", "id -u; id -g; id -G; pwd; test -e /left-by-0 && echo stale || echo fresh",
        NULL};
    ctr_rec_t *c = s_run(&S.r, &(start_t){.name = "app",
                                          .instance = 1,
                                          .argv = argv,
                                          .user = "app",
                                          .work_dir = "/home/app",
                                          .fresh = true});
    assert_int_equal(c->exit->exit_code, 0);
    assert_string_equal(c->out[0], "1000\n1000\n1000 2000\n/home/app\nfresh\n");
}

static void test_missing_binary_is_start_error(void **state)
{
    (void)state;
    NEED_VM();
    const char *argv[] = {"nope", NULL};
    ctr_rec_t *c = s_run(&S.r, &(start_t){.name = "app", .instance = 2, .argv = argv});
    assert_int_equal(c->started, 0);
    assert_string_equal(c->exit->reason, "StartError");
    assert_int_equal(c->exit->exit_code, 127);
    assert_string_equal(c->exit->message, "exec: \"nope\": executable file not found in $PATH");
}

static void test_tty_container(void **state)
{
    (void)state;
    NEED_VM();
    const char *argv[] = {"/bin/sh", "-c", "tty; echo tty-main", NULL};
    ctr_rec_t *c = s_run(&S.r, &(start_t){.name = "tty", .argv = argv});
    assert_int_equal(c->exit->exit_code, 0);
    s_assert_has(c->out[0], "/dev/pts/0");
    s_assert_has(c->out[0], "tty-main");
}

// The long-running app the exec, port-forward, reconnect and signal cases use.
static void test_long_running_app_starts(void **state)
{
    (void)state;
    NEED_VM();
    const char *argv[] = {"/bin/sh", "-c",
                          "trap 'echo got TERM; exit 143' TERM; httpd -p 8080 -h /www; "
                          "echo ready; while true; do sleep 0.1; done",
                          NULL};
    s_start(&S.r, &(start_t){.name = "app", .instance = 3, .argv = argv, .fresh = true});
    const char *pair[] = {"app", "ready"};
    s_wait(&S.r, c_stdout_has, pair, STEP_TIMEOUT_MS, "the app's ready line");
    assert_false(s_ctr(&S.r, "app")->exited);
}

static void test_exec_with_stdin_and_exit_code(void **state)
{
    (void)state;
    NEED_VM();
    const char *argv[] = {"/bin/sh", "-c", "cat; echo to-stderr >&2; id -u; exit 7", NULL};
    stream_rec_t *s = s_exec_run(&S.r, "app", argv, false, "hello stdin\n", 0);
    assert_true(s->started);
    assert_int_equal(s->exit_code, 7);
    assert_string_equal(s->out[0], "hello stdin\n0\n");
    assert_string_equal(s->out[1], "to-stderr\n");
}

static void test_exec_with_tty(void **state)
{
    (void)state;
    NEED_VM();
    const char *argv[] = {"/bin/sh", "-c", "tty; stty size; echo tty-ok", NULL};
    stream_rec_t *s = s_exec_run(&S.r, "app", argv, true, NULL, 0);
    assert_int_equal(s->exit_code, 0);
    s_assert_has(s->out[0], "/dev/pts/");
    s_assert_has(s->out[0], "30 100");
    s_assert_has(s->out[0], "tty-ok");
}

static void test_exec_timeout_and_not_running(void **state)
{
    (void)state;
    NEED_VM();
    const char *argv[] = {"sleep", "30", NULL};
    int64_t t0 = ts_now_ms();
    stream_rec_t *s = s_exec_run(&S.r, "app", argv, false, NULL, 500);
    assert_true(ts_now_ms() - t0 < 10000);
    assert_int_equal(s->signal, SIGKILL);
    assert_int_equal(s->exit_code, 128 + SIGKILL);
    assert_true(s->timed_out);
    assert_string_equal(s->message, ""); // it ran: not a failure to exec
    s = s_exec_run(&S.r, "init", argv, false, NULL, 0);
    s_assert_has(s->message, "container init is not running");
}

static void test_network_in_the_vm(void **state)
{
    (void)state;
    NEED_VM();
    if (!S.have_netns) {
        print_message("SKIP: no network namespace for a NIC\n");
        skip();
    }
    const char *argv[] = {"/bin/sh", "-c",
                          "ip -4 addr show eth0; cat /sys/class/net/eth0/mtu; ip route; "
                          "cat /proc/sys/net/ipv4/ip_forward",
                          NULL};
    stream_rec_t *s = s_exec_run(&S.r, "app", argv, false, NULL, 0);
    assert_int_equal(s->exit_code, 0);
    s_assert_has(s->out[0], "inet " GUEST_IP "/24");
    s_assert_has(s->out[0], "\n1400\n");
    s_assert_has(s->out[0], "default via " GATEWAY_IP);
    s_assert_has(s->out[0], "\n1\n");
    // From the test's own namespace (where the tap is) to the guest.
    assert_int_equal(
        s_sh("ip netns exec %s busybox ping -c 1 -W 10 " GUEST_IP " >/dev/null", S.netns), 0);
}

static void test_port_forward_to_httpd(void **state)
{
    (void)state;
    NEED_VM();
    static uint32_t id = 500;
    Vmlet__PortForwardOpen pf = VMLET__PORT_FORWARD_OPEN__INIT;
    pf.has_stream_id = pf.has_port = 1;
    pf.stream_id = id;
    pf.port = 8080;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_PORT_FORWARD;
    msg.port_forward = &pf;
    s_send(&S.r, &msg);
    s_stream_send(&S.r, id, "GET /index.html HTTP/1.0\r\n\r\n", true);
    s_wait(&S.r, c_stream_done, &id, STEP_TIMEOUT_MS, "the port-forward's end");
    stream_rec_t *s = s_stream(&S.r, id);
    assert_string_equal(s->close_error, "");
    s_assert_has(s->out[0], " 200 OK");
    s_assert_has(s->out[0], "hello from the pod");

    uint32_t refused = 501;
    pf.stream_id = refused;
    pf.port = 8081;
    s_send(&S.r, &msg);
    s_wait(&S.r, c_stream_done, &refused, STEP_TIMEOUT_MS, "the refused port-forward");
    s_assert_has(s_stream(&S.r, refused)->close_error,
                 "connect 127.0.0.1:8081: Connection refused");
}

static bool c_error(rec_t *r, const void *arg)
{
    (void)arg;
    return r->error_what[0] != '\0';
}
static bool c_pong(rec_t *r, const void *arg)
{
    return r->pongs >= *(const int *)arg;
}

static void s_ping(rec_t *r)
{
    int want = r->pongs + 1;
    Vmlet__Ping ping = VMLET__PING__INIT;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_PING;
    msg.ping = &ping;
    s_send(r, &msg);
    s_wait(r, c_pong, &want, STEP_TIMEOUT_MS, "a Pong");
}

static void s_write_raw(rec_t *r, const void *bytes, size_t len)
{
    s_flush(r);
    int fd = vmlet_agent_channel_fd(r->ch);
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    assert_int_equal(write(fd, bytes, len), (ssize_t)len);
    fcntl(fd, F_SETFL, fl);
}

// Bad host input is an AgentError "protocol", never a crash: the agent
// answers pings after each.
static void test_bad_host_input_is_an_agent_error(void **state)
{
    (void)state;
    NEED_VM();
    rec_t *r = &S.r;
    static const uint8_t garbage[] = {0, 0, 0, 6, 0x0a, 0x7f, 0xff, 0xff, 0xff, 0xff};
    r->error_what[0] = '\0';
    s_write_raw(r, garbage, sizeof garbage);
    s_wait(r, c_error, NULL, STEP_TIMEOUT_MS, "the agent's protocol error");
    assert_string_equal(r->error_what, "protocol");
    s_assert_has(r->error_msg, "does not unpack");
    s_ping(r);

    // A message only the agent sends.
    Vmlet__AgentHello hello = VMLET__AGENT_HELLO__INIT;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_HELLO;
    msg.hello = &hello;
    r->error_what[0] = '\0';
    s_send(r, &msg);
    s_wait(r, c_error, NULL, STEP_TIMEOUT_MS, "the agent's protocol error");
    s_assert_has(r->error_msg, "not one the host sends");
    s_ping(r);

    // An impossible length: the framing is lost, so the agent starts the
    // connection over, Hello first.
    static const uint8_t absurd[] = {0xff, 0xff, 0xff, 0xf0};
    int hellos = r->hellos + 1;
    r->error_what[0] = '\0';
    s_write_raw(r, absurd, sizeof absurd);
    s_wait(r, c_hello, &hellos, STEP_TIMEOUT_MS, "the Hello after a lost framing");
    s_assert_has(r->error_msg, "impossible");
    s_ping(r);
}

// The host goes away while a container prints, and comes back: Hello
// first, then the missed output in order, no line lost or doubled.
static void test_reconnect_resends_missed_output(void **state)
{
    (void)state;
    NEED_VM();
    rec_t *r = &S.r;
    const char *argv[] = {"/bin/sh", "-c",
                          "i=0; while [ $i -lt 40 ]; do echo line-$i; i=$((i+1)); sleep 0.05; done",
                          NULL};
    s_start(r, &(start_t){.name = "side", .instance = 2, .argv = argv, .fresh = true});
    const char *pair[] = {"side", "line-3\n"};
    s_wait(r, c_stdout_has, pair, STEP_TIMEOUT_MS, "the first lines");
    uint64_t mark = vmlet_agent_channel_last_seen(r->ch);
    int hellos = r->hellos;
    vmlet_agent_channel_destroy(&r->ch);
    // Meanwhile: the container goes on printing with no host to take it.
    usleep(1000 * 1000);
    int fd = raw_vm_connect(&S.vm, 10000);
    assert_true(fd >= 0);
    r->ch = vmlet_agent_channel_new(fd, 0);
    vmlet_agent_channel_set_last_seen(r->ch, mark);
    r->reconnect_unix_ns = vmlet_unix_ns();
    int want = hellos + 1;
    s_wait(r, c_hello, &want, STEP_TIMEOUT_MS, "the Hello after a reconnect");
    s_wait(r, c_exited, "side", STEP_TIMEOUT_MS, "the printer's exit");
    ctr_rec_t *c = s_ctr(r, "side");
    char want_out[1024] = "";
    for (int i = 0; i < 40; i++)
        snprintf(want_out + strlen(want_out), sizeof want_out - strlen(want_out), "line-%d\n", i);
    assert_string_equal(c->out[0], want_out);
    assert_int_equal(c->exit->exit_code, 0);
    // Some of it was read by the agent while no host was there.
    print_message("chunks read while disconnected: %d\n", r->chunks_from_before);
    assert_true(r->chunks_from_before > 0);
    r->reconnect_unix_ns = 0;
}

static bool s_console_has(void *arg)
{
    FILE *f = fopen(S.vm.console_log, "r");
    if (!f)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, arg) != NULL;
    fclose(f);
    return found;
}

// While the host is away a container writes more than the agent keeps
// for a resend (8 MiB): the agent stops reading its pipe and the writer
// waits; after the reconnect every byte arrives, in order.
static void test_output_held_while_host_away(void **state)
{
    (void)state;
    NEED_VM();
    rec_t *r = &S.r;
    const int lines = 1400000; // about 10 MB of "1\n2\n..."
    char script[128];
    snprintf(script, sizeof script, "sleep 0.5; seq 1 %d; echo end", lines);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    s_start(r, &(start_t){.name = "side", .instance = 3, .argv = argv, .fresh = true});
    uint64_t mark = vmlet_agent_channel_last_seen(r->ch);
    vmlet_agent_channel_destroy(&r->ch);
    if (!ts_poll(s_console_has, "output held", 120000))
        fail_msg("the agent never held output back (console: %s)", S.vm.console_log);
    int fd = raw_vm_connect(&S.vm, 10000);
    assert_true(fd >= 0);
    r->ch = vmlet_agent_channel_new(fd, 0);
    vmlet_agent_channel_set_last_seen(r->ch, mark);
    int64_t t0 = ts_now_ms();
    s_wait(r, c_exited, "side", 300000, "the writer's exit");
    ctr_rec_t *c = s_ctr(r, "side");
    size_t cap = (size_t)lines * 9 + 16, n = 0;
    char *want = malloc(cap);
    for (int i = 1; i <= lines; i++)
        n += (size_t)snprintf(want + n, cap - n, "%d\n", i);
    n += (size_t)snprintf(want + n, cap - n, "end\n");
    print_message("RESULT held_output_bytes=%zu drained_ms=%lld\n", c->len[0],
                  (long long)(ts_now_ms() - t0));
    assert_int_equal(c->exit->exit_code, 0);
    assert_int_equal(c->len[0], n);
    assert_memory_equal(c->out[0], want, n);
    free(want);
    assert_true(s_console_has("output flows again"));
    free(c->out[0]); // 10 MB the other cases need not keep
    c->out[0] = NULL;
    c->len[0] = 0;
}

// A container that takes more memory than the VM has is killed by the
// guest's OOM killer, and says so.
static void test_oom_kill_is_oomkilled(void **state)
{
    (void)state;
    NEED_VM();
    // One buffer between what is available and all the VM has: the
    // allocation is allowed (it is below MemTotal) and filling it is not.
    const char *argv[] = {"/bin/sh", "-c",
                          "t=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo); "
                          "a=$(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo); "
                          "echo total $t available $a >&2; "
                          "exec dd if=/dev/zero of=/dev/null bs=$(((t + a) / 2))M count=1",
                          NULL};
    ctr_rec_t *c =
        s_run(&S.r, &(start_t){.name = "side", .instance = 4, .argv = argv, .fresh = true});
    assert_int_equal(c->exit->exit_code, 128 + SIGKILL);
    assert_string_equal(c->exit->reason, "OOMKilled");
}

static void test_sigterm_reaches_the_container(void **state)
{
    (void)state;
    NEED_VM();
    Vmlet__SignalContainer sig = VMLET__SIGNAL_CONTAINER__INIT;
    sig.name = "app";
    sig.has_signal = 1;
    sig.signal = SIGTERM;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_SIGNAL;
    msg.signal = &sig;
    s_send(&S.r, &msg);
    s_wait(&S.r, c_exited, "app", STEP_TIMEOUT_MS, "the app's exit after SIGTERM");
    ctr_rec_t *c = s_ctr(&S.r, "app");
    assert_int_equal(c->exit->exit_code, 143);
    s_assert_has(c->out[0], "got TERM\n");
}

static void test_ping_and_power_off(void **state)
{
    (void)state;
    NEED_VM();
    Vmlet__Ping ping = VMLET__PING__INIT;
    ping.has_nonce = 1;
    ping.nonce = 42;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_PING;
    msg.ping = &ping;
    s_send(&S.r, &msg);
    Vmlet__PowerOff off = VMLET__POWER_OFF__INIT;
    msg = (Vmlet__GuestMessage)VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_POWER_OFF;
    msg.power_off = &off;
    s_send(&S.r, &msg);
    int status;
    if (raw_vm_wait(&S.vm, 30000, &status) < 0)
        fail_msg("QEMU still runs 30 s after PowerOff (console: %s)", S.vm.console_log);
    assert_true(WIFEXITED(status));
    s_free_rec(&S.r);
}

// --- other boots --------------------------------------------------------------------------------

static void test_misbehaving_agent_is_rejected(void **state)
{
    (void)state;
    NEED_VM();
    rec_t r;
    s_boot_start(S.initrd_bad, NULL, 0, false, NULL, &r);
    vmlet_err_t err = {0};
    int64_t deadline = ts_now_ms() + BOOT_TIMEOUT_MS;
    int rc = 0;
    bool timed = false;
    while (rc == 0 && ts_now_ms() < deadline) {
        rc = s_pump(&r, 200, &err);
        if (r.hellos && !timed) {
            s_boot_took();
            timed = true;
        }
    }
    // Its Hello came through whole; then the channel refused it.
    assert_true(r.hellos >= 1);
    assert_int_equal(rc, -1);
    print_message("misbehaving agent: %s\n", err.msg);
    assert_int_equal(err.code, EPROTO);
    s_assert_has(err.msg, "does not unpack");
    s_free_rec(&r);
    raw_vm_kill(&S.vm);
}

// A disk without a serial (as under Firecracker), a PodSetup naming one
// the VM lacks: AgentError "setup" saying which, nothing runs; the same
// setup again, now with the disk found by its place in disk_serials: ready.
static void test_setup_error_then_disk_by_order(void **state)
{
    (void)state;
    NEED_VM();
    char path[700];
    snprintf(path, sizeof path, "%s/img-b.ext4", S.dir);
    raw_vm_disk_t disk = {.path = path, .read_only = true};
    rec_t r;
    s_boot(S.initrd, &disk, 1, false, NULL, &r);
    Vmlet__GuestContainer c = VMLET__GUEST_CONTAINER__INIT;
    c.name = "side";
    c.image_disk = "img-missing";
    Vmlet__GuestContainer *ctrs[] = {&c};
    char *serials[] = {"img-b"};
    Vmlet__PodSetup s = VMLET__POD_SETUP__INIT;
    s.hostname = "no-scratch";
    s.containers = ctrs;
    s.n_containers = 1;
    s.disk_serials = serials;
    s.n_disk_serials = 1;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_SETUP;
    msg.setup = &s;
    s_send(&r, &msg);
    s_wait(&r, c_ready, NULL, STEP_TIMEOUT_MS, "the setup's answer");
    assert_int_equal(r.ready, 0);
    assert_string_equal(r.error_what, "setup");
    s_assert_has(r.error_msg, "no disk with serial img-missing (disks: vda=(no serial))");
    // Messages that need a set-up pod are refused, not run.
    const char *argv[] = {"/bin/sh", "-c", "cat /only-in-b; hostname", NULL};
    s_start(&r, &(start_t){.name = "side", .argv = argv});
    r.error_what[0] = '\0';
    s_wait(&r, c_ready, NULL, STEP_TIMEOUT_MS, "the refusal");
    s_assert_has(r.error_msg, "not set up");

    c.image_disk = "img-b";
    r.error_what[0] = '\0';
    s_send(&r, &msg);
    s_wait(&r, c_ready, NULL, STEP_TIMEOUT_MS, "the retried setup's answer");
    assert_string_equal(r.error_what, "");
    assert_int_equal(r.ready, 1);
    ctr_rec_t *out = s_run(&r, &(start_t){.name = "side", .argv = argv});
    assert_int_equal(out->exit->exit_code, 0);
    assert_string_equal(out->out[0], "only b has this\nno-scratch\n");

    Vmlet__PowerOff off = VMLET__POWER_OFF__INIT;
    msg = (Vmlet__GuestMessage)VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_POWER_OFF;
    msg.power_off = &off;
    s_send(&r, &msg);
    int status;
    assert_int_equal(raw_vm_wait(&S.vm, 30000, &status), 0);
    s_free_rec(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boot_and_pod_setup),
        cmocka_unit_test(test_init_container_fills_empty_dir),
        cmocka_unit_test(test_env_exactly_as_sent),
        cmocka_unit_test(test_each_container_sees_its_own_image),
        cmocka_unit_test(test_app_volumes_argv_exit_code),
        cmocka_unit_test(test_fresh_root_and_named_user),
        cmocka_unit_test(test_missing_binary_is_start_error),
        cmocka_unit_test(test_tty_container),
        cmocka_unit_test(test_long_running_app_starts),
        cmocka_unit_test(test_exec_with_stdin_and_exit_code),
        cmocka_unit_test(test_exec_with_tty),
        cmocka_unit_test(test_exec_timeout_and_not_running),
        cmocka_unit_test(test_network_in_the_vm),
        cmocka_unit_test(test_port_forward_to_httpd),
        cmocka_unit_test(test_bad_host_input_is_an_agent_error),
        cmocka_unit_test(test_reconnect_resends_missed_output),
        cmocka_unit_test(test_output_held_while_host_away),
        cmocka_unit_test(test_oom_kill_is_oomkilled),
        cmocka_unit_test(test_sigterm_reaches_the_container),
        cmocka_unit_test(test_ping_and_power_off),
        cmocka_unit_test(test_misbehaving_agent_is_rejected),
        cmocka_unit_test(test_setup_error_then_disk_by_order),
    };
    if (getenv("VMLET_TEST_FILTER"))
        cmocka_set_test_filter(getenv("VMLET_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
