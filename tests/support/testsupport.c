// Helpers shared by vmlet's C tests (see testsupport.h).
#include "testsupport.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t ts_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Picks at random below the kernel's ephemeral range, so an outgoing
// connection cannot take the port before the server under test binds it.
int ts_free_port(void)
{
    int low = 32768;
    FILE *range = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (range) {
        if (fscanf(range, "%d", &low) != 1 || low <= 21000)
            low = 32768;
        fclose(range);
    }
    for (int attempt = 0; attempt < 1000; attempt++) {
        unsigned int r;
        if (getentropy(&r, sizeof r) < 0)
            r = (unsigned int)rand();
        int port = 20000 + (int)(r % (unsigned int)(low - 20000));
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
        close(fd);
        if (rc == 0)
            return port;
    }
    return -1;
}

char *ts_bed_value(const char *key)
{
    const char *dir = getenv("VMLET_BED_DIR");
    if (!dir)
        return NULL;
    char path[1024];
    snprintf(path, sizeof path, "%s/bed.env", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char line[4096];
    char *value = NULL;
    size_t klen = strlen(key);
    while (!value && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
            char *v = line + klen + 1;
            v[strcspn(v, "\r\n")] = '\0';
            // bed.env is shell-sourceable: strip one pair of single quotes.
            size_t n = strlen(v);
            if (n >= 2 && v[0] == '\'' && v[n - 1] == '\'') {
                v[n - 1] = '\0';
                v++;
            }
            value = strdup(v);
        }
    }
    fclose(f);
    return value;
}

char *ts_bin_path(const char *name)
{
    const char *dir = getenv("VMLET_BIN_DIR");
    char *path = NULL;
    if (asprintf(&path, "%s/%s", dir ? dir : VMLET_BINARY_DIR "/bin", name) < 0)
        return NULL;
    return path;
}

// In a child just forked: its own process group, the death signal, the
// log, then exec.
static void s_exec_child(const char *log_path, char *const argv[]) __attribute__((noreturn));
static void s_exec_child(const char *log_path, char *const argv[])
{
    setpgid(0, 0);
    // A test that dies (a timeout, a crash) takes what it started with it:
    // SIGTERM, so a vm-launcher still removes its VMs and network.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (log_path) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
    }
    execvp(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

pid_t ts_spawn(const char *log_path, char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0)
        s_exec_child(log_path, argv);
    return pid;
}

pid_t ts_fork_pid1(void)
{
    // A bare clone(2) with no stack behaves as fork() (glibc keeps no pid
    // cache to go stale).
    return (pid_t)syscall(SYS_clone, (long)(CLONE_NEWPID | SIGCHLD), NULL, NULL, NULL, NULL);
}

pid_t ts_spawn_pid1(const char *log_path, char *const argv[])
{
    pid_t pid = ts_fork_pid1();
    if (pid == 0)
        s_exec_child(log_path, argv);
    return pid;
}

int ts_kill(pid_t pid, int sig)
{
    return pid > 0 ? kill(pid, sig) : -1;
}

int ts_wait_exit(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    do {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (status)
                *status = st;
            return 0;
        }
        if (r < 0)
            return -1;
        usleep(5000);
    } while (ts_now_ms() < deadline);
    return -1;
}

static bool s_redis_answers(void *arg)
{
    ts_redis_t *redis = arg;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d %s%s ping 2>/dev/null | grep -q PONG", redis->port,
             redis->password[0] ? "--no-auth-warning -a " : "", redis->password);
    return system(cmd) == 0;
}

static int s_redis_spawn(ts_redis_t *redis)
{
    char port[16];
    snprintf(port, sizeof port, "%d", redis->port);
    char log[300];
    snprintf(log, sizeof log, "%s/redis.log", redis->dir);
    char *argv[20];
    int n = 0;
    argv[n++] = "redis-server";
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--dir";
    argv[n++] = redis->dir;
    argv[n++] = "--appendonly";
    argv[n++] = "yes";
    argv[n++] = "--save";
    argv[n++] = "";
    // Plain-text persistence, so a test can grep what reached the disk.
    argv[n++] = "--aof-use-rdb-preamble";
    argv[n++] = "no";
    if (redis->password[0]) {
        argv[n++] = "--requirepass";
        argv[n++] = redis->password;
    }
    argv[n] = NULL;
    redis->pid = ts_spawn(log, argv);
    if (redis->pid < 0)
        return -1;
    return ts_poll(s_redis_answers, redis, 10000) ? 0 : -1;
}

int ts_redis_start(ts_redis_t *redis, const char *password)
{
    memset(redis, 0, sizeof *redis);
    char *dir = ts_tempdir("vmlet-redis");
    if (!dir)
        return -1;
    snprintf(redis->dir, sizeof redis->dir, "%s", dir);
    free(dir);
    if (password)
        snprintf(redis->password, sizeof redis->password, "%s", password);
    redis->port = ts_free_port();
    return s_redis_spawn(redis);
}

int ts_redis_restart(ts_redis_t *redis)
{
    ts_kill(redis->pid, SIGTERM);
    ts_wait_exit(redis->pid, 10000, NULL);
    return s_redis_spawn(redis);
}

void ts_redis_stop(ts_redis_t *redis)
{
    if (redis->pid > 0) {
        ts_kill(redis->pid, SIGTERM);
        if (ts_wait_exit(redis->pid, 10000, NULL) < 0) {
            ts_kill(redis->pid, SIGKILL);
            ts_wait_exit(redis->pid, 5000, NULL);
        }
        redis->pid = 0;
    }
    if (redis->dir[0])
        ts_remove_dir(redis->dir);
}

typedef struct {
    char *data;
    size_t len;
} buffer_t;

static size_t s_collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    buffer_t *buf = userdata;
    size_t n = size * nmemb;
    char *grown = realloc(buf->data, buf->len + n + 1);
    if (!grown)
        return 0;
    memcpy(grown + buf->len, ptr, n);
    buf->data = grown;
    buf->len += n;
    buf->data[buf->len] = '\0';
    return n;
}

int ts_http_get(const char *url, long *status, char **body)
{
    CURL *curl = curl_easy_init();
    if (!curl)
        return -1;
    buffer_t buf = {calloc(1, 1), 0};
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(curl);
    if (rc != CURLE_OK) {
        free(buf.data);
        return -1;
    }
    if (body)
        *body = buf.data;
    else
        free(buf.data);
    return 0;
}

bool ts_poll(bool (*check)(void *arg), void *arg, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    for (;;) {
        if (check(arg))
            return true;
        if (ts_now_ms() >= deadline)
            return false;
        usleep(10000);
    }
}

double ts_metric_value(const char *exposition, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = exposition; line && *line;) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -1;
}

char *ts_tempdir(const char *prefix)
{
    char *path = NULL;
    if (asprintf(&path, "/tmp/%s.XXXXXX", prefix) < 0)
        return NULL;
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

char *ts_wait_line(const char *path, const char *prefix, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    size_t n = strlen(prefix);
    do {
        FILE *f = fopen(path, "r");
        char line[4096];
        while (f && fgets(line, sizeof line, f)) {
            if (strncmp(line, prefix, n) == 0) {
                fclose(f);
                line[strcspn(line, "\n")] = '\0';
                return strdup(line);
            }
        }
        if (f)
            fclose(f);
        usleep(20000);
    } while (ts_now_ms() < deadline);
    return NULL;
}

long ts_kv(const char *line, const char *key)
{
    char pattern[128];
    snprintf(pattern, sizeof pattern, " %s=", key);
    const char *at = line ? strstr(line, pattern) : NULL;
    return at ? strtol(at + strlen(pattern), NULL, 10) : -1;
}

static bool s_broker_answers(void *arg)
{
    ts_broker_t *b = arg;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", b->http_port);
    long status = 0;
    return ts_http_get(url, &status, NULL) == 0 && status == 200;
}

static int s_broker_spawn(ts_broker_t *b, const char *const extra[])
{
    char *bin = ts_bin_path("vmlet-bus");
    char pub[96], sub[96], work[96], http[64];
    snprintf(pub, sizeof pub, "--publish-bind=%s", b->publish);
    snprintf(sub, sizeof sub, "--subscribe-bind=%s", b->subscribe);
    snprintf(work, sizeof work, "--work-bind=%s", b->work);
    snprintf(http, sizeof http, "--http-listen=127.0.0.1:%d", b->http_port);
    char *argv[32] = {bin, pub, sub, work, http};
    int n = 5;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    b->pid = ts_spawn(b->log, argv);
    free(bin);
    if (b->pid > 0 && ts_poll(s_broker_answers, b, 30000))
        return 0;
    fprintf(stderr, "the broker did not answer on 127.0.0.1:%d in 30 s; its log %s:\n",
            b->http_port, b->log);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "tail -n 20 '%s' >&2", b->log);
    if (system(cmd) != 0) { /* diagnostics only */ }
    return -1;
}

int ts_broker_start(ts_broker_t *b, const char *dir, const char *const extra[])
{
    memset(b, 0, sizeof *b);
    snprintf(b->publish, sizeof b->publish, "tcp://127.0.0.1:%d", ts_free_port());
    snprintf(b->subscribe, sizeof b->subscribe, "tcp://127.0.0.1:%d", ts_free_port());
    snprintf(b->work, sizeof b->work, "tcp://127.0.0.1:%d", ts_free_port());
    b->http_port = ts_free_port();
    snprintf(b->log, sizeof b->log, "%s/broker.log", dir);
    return s_broker_spawn(b, extra);
}

int ts_broker_restart(ts_broker_t *b, const char *const extra[])
{
    ts_kill(b->pid, SIGTERM);
    ts_wait_exit(b->pid, 5000, NULL);
    return s_broker_spawn(b, extra);
}

void ts_broker_stop(ts_broker_t *b)
{
    if (b->pid > 0) {
        ts_kill(b->pid, SIGTERM);
        if (ts_wait_exit(b->pid, 5000, NULL) < 0) {
            ts_kill(b->pid, SIGKILL);
            ts_wait_exit(b->pid, 5000, NULL);
        }
        b->pid = 0;
    }
}

void ts_remove_dir(const char *dir)
{
    if (getenv("VMLET_TEST_KEEP")) {
        fprintf(stderr, "kept %s (VMLET_TEST_KEEP is set)\n", dir);
        return;
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}
