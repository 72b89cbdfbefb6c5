// The guest agent's AtomicWriter for files volumes (guest/agent/atomic_write.c),
// on a directory of this host: the kubelet's layout from the first write
// (..data -> ..<timestamp>, top-level links), an update swapped in whole
// (new and gone names, the old directory removed, a file opened before
// keeping its content as a subPath bind does), fsGroup ownership, bad paths
// refused with the content intact, and a reader that never sees a torn
// file while the content is swapped under it.
#include "atomic_write.h"
#include "testsupport.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    Vmlet__GuestFile files[8];
    Vmlet__GuestFile *ptrs[8];
    size_t n;
} payload_t;

static void s_add(payload_t *p, const char *path, const char *content, uint32_t mode)
{
    Vmlet__GuestFile *f = &p->files[p->n];
    *f = (Vmlet__GuestFile)VMLET__GUEST_FILE__INIT;
    f->path = (char *)path;
    f->has_content = 1;
    f->content.data = (uint8_t *)content;
    f->content.len = strlen(content);
    if (mode)
        f->has_mode = 1, f->mode = mode;
    p->ptrs[p->n++] = f;
}

static char *s_dir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/vmlet-atomic-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static char *s_read(const char *dir, const char *rel)
{
    static char buf[1 << 17];
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static const char *s_link(const char *dir, const char *rel)
{
    static char target[256];
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0)
        return NULL;
    target[n] = '\0';
    return target;
}

static mode_t s_mode(const char *dir, const char *rel)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

// Entries of dir whose names start with "..2" (timestamped data directories).
static int s_data_dirs(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strncmp(e->d_name, "..2", 3) == 0;
    closedir(d);
    return n;
}

static void test_layout_and_update(void **state)
{
    (void)state;
    const char *dir = s_dir();
    payload_t p = {0};
    s_add(&p, "app.conf", "port=80\n", 0);
    s_add(&p, "keys/one", "1", 0600);
    s_add(&p, "old", "going", 0);
    vmlet_err_t err = {0};
    char old[64] = "x";
    assert_int_equal(atomic_write(dir, p.ptrs, p.n, 0644, -1, old, sizeof old, &err), 0);
    assert_string_equal(old, ""); // nothing before
    // ..data -> ..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN, each top-level name a link into it.
    const char *data = s_link(dir, "..data");
    assert_non_null(data);
    assert_int_equal(strlen(data), strlen("..2026_11_27_01_02_03.123456789"));
    assert_true(strncmp(data, "..2", 3) == 0 && data[21] == '.');
    char first[256];
    snprintf(first, sizeof first, "%s", data);
    assert_string_equal(s_link(dir, "app.conf"), "..data/app.conf");
    assert_string_equal(s_link(dir, "keys"), "..data/keys");
    assert_null(s_link(dir, "..data_tmp"));
    assert_string_equal(s_read(dir, "app.conf"), "port=80\n");
    assert_string_equal(s_read(dir, "keys/one"), "1");
    assert_int_equal(s_mode(dir, "app.conf"), 0644);
    assert_int_equal(s_mode(dir, "keys/one"), 0600);
    assert_int_equal(s_mode(dir, first), 0755);
    // A file held open (as a subPath bind holds it) keeps the first content.
    char held_path[1024];
    snprintf(held_path, sizeof held_path, "%s/app.conf", dir);
    int held = open(held_path, O_RDONLY);
    assert_true(held >= 0);

    payload_t q = {0};
    s_add(&q, "app.conf", "port=81\n", 0);
    s_add(&q, "keys/two", "2", 0);
    s_add(&q, "new", "here", 0400);
    assert_int_equal(atomic_write(dir, q.ptrs, q.n, 0644, -1, old, sizeof old, &err), 0);
    assert_string_not_equal(s_link(dir, "..data"), first);
    assert_string_equal(old, first); // kept for readers on their way through it...
    assert_int_equal(s_data_dirs(dir), 2);
    atomic_write_drop(dir, s_link(dir, "..data")); // (never the current one)
    assert_int_equal(s_data_dirs(dir), 2);
    atomic_write_drop(dir, old); // ...until dropped
    assert_int_equal(s_data_dirs(dir), 1);
    assert_string_equal(s_read(dir, "app.conf"), "port=81\n");
    assert_null(s_read(dir, "keys/one"));
    assert_string_equal(s_read(dir, "keys/two"), "2");
    assert_string_equal(s_link(dir, "new"), "..data/new");
    assert_int_equal(s_mode(dir, "new"), 0400);
    assert_null(s_link(dir, "old")); // a name the update lacks: its link removed
    char buf[32] = "";
    assert_true(pread(held, buf, sizeof buf - 1, 0) > 0);
    assert_string_equal(buf, "port=80\n");
    close(held);

    // An empty content (an optional source deleted): no user-visible names.
    assert_int_equal(atomic_write(dir, NULL, 0, 0644, -1, old, sizeof old, &err), 0);
    atomic_write_drop(dir, old);
    assert_null(s_link(dir, "app.conf"));
    assert_null(s_link(dir, "new"));
    assert_non_null(s_link(dir, "..data"));
    assert_int_equal(s_data_dirs(dir), 1);
    ts_remove_dir(dir);
}

static void test_bad_paths_keep_content(void **state)
{
    (void)state;
    const char *dir = s_dir();
    payload_t p = {0};
    s_add(&p, "a", "A", 0);
    vmlet_err_t err = {0};
    char old[64];
    assert_int_equal(atomic_write(dir, p.ptrs, p.n, 0644, -1, old, sizeof old, &err), 0);
    char before[256];
    snprintf(before, sizeof before, "%s", s_link(dir, "..data"));
    static const char *const bad[] = {"..data/x", "../x", "/etc/passwd", "..foo", "a/../../x",
                                      ".",        ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        payload_t q = {0};
        s_add(&q, "a", "changed", 0);
        s_add(&q, bad[i], "x", 0);
        memset(&err, 0, sizeof err);
        assert_int_equal(atomic_write(dir, q.ptrs, q.n, 0644, -1, old, sizeof old, &err), -1);
        assert_true(err.msg[0] != '\0');
        assert_string_equal(s_link(dir, "..data"), before);
        assert_string_equal(s_read(dir, "a"), "A");
        assert_int_equal(s_data_dirs(dir), 1); // the new one, half made, is gone
    }
    // ..data pointing somewhere the writer did not make (a container may
    // write to a volume it mounts read-write) is neither followed nor removed.
    char link[1024];
    snprintf(link, sizeof link, "%s/..data", dir);
    assert_int_equal(unlink(link), 0);
    assert_int_equal(symlink("..", link), 0);
    payload_t s2 = {0};
    s_add(&s2, "a", "again", 0);
    assert_int_equal(atomic_write(dir, s2.ptrs, s2.n, 0644, -1, old, sizeof old, &err), 0);
    assert_string_equal(old, "");
    atomic_write_drop(dir, "..");
    assert_string_equal(s_read(dir, "a"), "again");
    // Something else at a top-level name (a directory a subPath made) is left alone.
    char made[1024];
    snprintf(made, sizeof made, "%s/made", dir);
    assert_int_equal(mkdir(made, 0755), 0);
    payload_t r = {0};
    s_add(&r, "made", "file", 0);
    assert_int_equal(atomic_write(dir, r.ptrs, r.n, 0644, -1, old, sizeof old, &err), 0);
    struct stat st;
    assert_int_equal(lstat(made, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    ts_remove_dir(dir);
}

static void test_fs_group(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("skipped: fsGroup ownership needs root (chown to any group)\n");
        skip();
    }
    const char *dir = s_dir();
    payload_t p = {0};
    s_add(&p, "key", "v", 0600);
    s_add(&p, "sub/inner", "w", 0);
    vmlet_err_t err = {0};
    char old[64];
    assert_int_equal(atomic_write(dir, p.ptrs, p.n, 0644, 4321, old, sizeof old, &err), 0);
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/key", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_gid, 4321);
    assert_int_equal(st.st_mode & 07777, 0640); // 0600 | group read
    snprintf(path, sizeof path, "%s/sub", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_gid, 4321);
    assert_int_equal(st.st_mode & 07777, 02755); // setgid
    assert_int_equal(s_mode(dir, "sub/inner"), 0644);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_gid, 4321);
    ts_remove_dir(dir);
}

// Two 64 KiB contents, each a repeated letter: any mix of them is torn.
static void test_no_torn_reads(void **state)
{
    (void)state;
    const char *dir = s_dir();
    static char a[65536 + 1], b[65536 + 1];
    memset(a, 'a', 65536);
    memset(b, 'b', 65536);
    payload_t pa = {0}, pb = {0};
    s_add(&pa, "value", a, 0);
    s_add(&pb, "value", b, 0);
    vmlet_err_t err = {0};
    char old[64];
    assert_int_equal(atomic_write(dir, pa.ptrs, pa.n, 0644, -1, old, sizeof old, &err), 0);
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t reader = fork();
    if (reader == 0) {
        close(pipefd[0]);
        long reads = 0, torn = 0, missing = 0;
        char path[1024], buf[65536 + 16];
        snprintf(path, sizeof path, "%s/value", dir);
        for (int64_t end = ts_now_ms() + 1500; ts_now_ms() < end;) {
            int fd = open(path, O_RDONLY);
            if (fd < 0) {
                missing++; // the name must always be there
                continue;
            }
            size_t n = 0;
            for (ssize_t got; (got = read(fd, buf + n, sizeof buf - n)) > 0;)
                n += (size_t)got;
            close(fd);
            reads++;
            if (n != 65536 || memchr(buf, buf[0] == 'a' ? 'b' : 'a', n))
                torn++;
        }
        dprintf(pipefd[1], "%ld %ld %ld\n", reads, torn, missing);
        _exit(0);
    }
    close(pipefd[1]);
    // As the agent does, each old data directory goes a little later (here
    // 250 ms, against the agent's 2 s): a reader between ..data and the file
    // still finds it.
    static struct {
        char name[64];
        int64_t at;
    } olds[1024];
    size_t first = 0, last = 0;
    int swaps = 0;
    for (int64_t end = ts_now_ms() + 1200; ts_now_ms() < end; swaps++) {
        assert_int_equal(
            atomic_write(dir, swaps % 2 ? pa.ptrs : pb.ptrs, 1, 0644, -1, old, sizeof old, &err),
            0);
        if (last < 1024) {
            snprintf(olds[last].name, sizeof olds[last].name, "%s", old);
            olds[last++].at = ts_now_ms();
        }
        for (; first < last && ts_now_ms() - olds[first].at >= 250; first++)
            atomic_write_drop(dir, olds[first].name);
        usleep(2000);
    }
    for (; first < last; first++)
        atomic_write_drop(dir, olds[first].name);
    char line[64] = "";
    assert_true(read(pipefd[0], line, sizeof line - 1) > 0);
    close(pipefd[0]);
    int status;
    waitpid(reader, &status, 0);
    long reads = 0, torn = -1, missing = -1;
    sscanf(line, "%ld %ld %ld", &reads, &torn, &missing);
    print_message("%d swaps, %ld reads, %ld torn, %ld missing\n", swaps, reads, torn, missing);
    assert_true(swaps > 20);
    assert_true(reads > 20);
    assert_int_equal(torn, 0);
    assert_int_equal(missing, 0);
    assert_int_equal(s_data_dirs(dir), 1);
    ts_remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_update),
        cmocka_unit_test(test_bad_paths_keep_content),
        cmocka_unit_test(test_fs_group),
        cmocka_unit_test(test_no_torn_reads),
    };
    return TS_RUN(tests);
}
