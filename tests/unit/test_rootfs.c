// rootfs_build: layer tars (written here with libarchive: gzip, zstd and
// plain) into an ext4 image, read back with libext2fs path by path, checked
// by e2fsck; bad layers refused with a message and no file left behind.
#include "testsupport.h"

#include "rootfs.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <ftw.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { PLAIN, GZIP, ZSTD };

// One tar entry: type 'f' file, 'd' dir, 'l' symlink, 'h' hard link,
// 'c'/'b' device, 'p' fifo. data: contents or link target; files with
// data NULL hold `size` bytes of s_pattern.
typedef struct {
    char type;
    const char *path;
    unsigned mode, uid, gid;
    const char *data;
    size_t size;
    unsigned major, minor;
    const char *xname[2];
    const char *xval[2];
    size_t xlen[2];
} tent_t;

#define MTIME 1700000000

static char s_dir[64];

static uint8_t s_pattern(size_t i)
{
    return (uint8_t)(i * 7 + i / 4096 + 1);
}

static void s_path(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", s_dir, name);
}

static void s_add_data(struct archive *a, struct archive_entry *ae, const tent_t *t)
{
    size_t size = t->data ? strlen(t->data) : t->size;
    archive_entry_set_size(ae, (la_int64_t)size);
    assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
    if (t->data) {
        assert_int_equal(archive_write_data(a, t->data, size), (la_ssize_t)size);
        return;
    }
    uint8_t *buf = malloc(size + 1);
    for (size_t i = 0; i < size; i++)
        buf[i] = s_pattern(i);
    assert_int_equal(archive_write_data(a, buf, size), (la_ssize_t)size);
    free(buf);
}

static void s_add(struct archive *a, const tent_t *t)
{
    struct archive_entry *ae = archive_entry_new();
    archive_entry_set_pathname(ae, t->path);
    archive_entry_set_uid(ae, t->uid);
    archive_entry_set_gid(ae, t->gid);
    archive_entry_set_mtime(ae, MTIME, 5);
    unsigned perm = t->mode ? t->mode : (t->type == 'd' ? 0755u : 0644u);
    static const struct {
        char c;
        unsigned type;
    } types[] = {{'f', AE_IFREG}, {'h', AE_IFREG}, {'d', AE_IFDIR}, {'l', AE_IFLNK},
                 {'c', AE_IFCHR}, {'b', AE_IFBLK}, {'p', AE_IFIFO}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].c == t->type)
            archive_entry_set_mode(ae, types[i].type | perm);
    if (t->type == 'l')
        archive_entry_set_symlink(ae, t->data);
    if (t->type == 'h')
        archive_entry_set_hardlink(ae, t->data);
    archive_entry_set_rdevmajor(ae, t->major);
    archive_entry_set_rdevminor(ae, t->minor);
    for (int i = 0; i < 2 && t->xname[i]; i++)
        archive_entry_xattr_add_entry(ae, t->xname[i], t->xval[i],
                                      t->xlen[i] ? t->xlen[i] : strlen(t->xval[i]));
    if (t->type == 'f')
        s_add_data(a, ae, t);
    else
        assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
    archive_entry_free(ae);
}

// Written in a UTF-8 locale, so non-ASCII names go in pax "path" records as
// in real layers; rootfs_build then reads them in the C locale.
static void s_write_tar(const char *name, int filter, const tent_t *ents, size_t n)
{
    assert_non_null(setlocale(LC_CTYPE, "C.UTF-8"));
    char path[256];
    s_path(path, sizeof path, name);
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_pax(a), ARCHIVE_OK);
    if (filter == GZIP)
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    if (filter == ZSTD)
        assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++)
        s_add(a, &ents[i]);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    setlocale(LC_CTYPE, "C");
}

#define CAP "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
#define SLOW_TARGET                                                                                \
    "/usr/share/a-rather-long-directory-name/another-long-directory-name/and-a-file-name-"         \
    "that-goes-on.txt"
static char s_bigx[300];

// Tables of entries (designated, so unset fields are zero).
#define F(p, m, u, g, d)                                                                           \
    {                                                                                              \
        .type = 'f', .path = p, .mode = m, .uid = u, .gid = g, .data = d                           \
    }
#define BIG(p, u, g, n)                                                                            \
    {                                                                                              \
        .type = 'f', .path = p, .mode = 0644, .uid = u, .gid = g, .size = n                        \
    }
#define D(p, m, u, g)                                                                              \
    {                                                                                              \
        .type = 'd', .path = p, .mode = m, .uid = u, .gid = g                                      \
    }
#define L(p, target)                                                                               \
    {                                                                                              \
        .type = 'l', .path = p, .mode = 0777, .data = target                                       \
    }
#define H(p, target)                                                                               \
    {                                                                                              \
        .type = 'h', .path = p, .data = target                                                     \
    }
#define DEV(t, p, m, g, ma, mi)                                                                    \
    {                                                                                              \
        .type = t, .path = p, .mode = m, .gid = g, .major = ma, .minor = mi                        \
    }

static const tent_t layer1[] = {
    D("./", 0755, 0, 0),
    D("etc/", 0755, 0, 0),
    F("etc/passwd", 0644, 0, 0, "root:x:0:0:root:/root:/bin/sh\n"),
    F("etc/shadow", 0640, 0, 42, "root:*:19000::::::\n"),
    D("home/alice/", 0700, 1000, 1000),
    F("home/alice/notes", 0600, 1000, 1000, "hi"),
    BIG("home/bob/big.bin", 2000, 3000, 300000),
    F("home/high", 0644, 100000, 200000, "wide ids"),
    F("usr/bin/su", 04755, 0, 0, "su-binary"),
    F("usr/bin/wall", 02755, 0, 5, "wall-binary"),
    D("tmp/", 01777, 0, 0),
    H("usr/bin/su-link", "usr/bin/su"),
    DEV('c', "dev/null", 0666, 0, 1, 3),
    DEV('c', "dev/big", 0600, 0, 300, 70000),
    DEV('b', "dev/sda", 0660, 6, 8, 0),
    {.type = 'p', .path = "run/initctl", .mode = 0600},
    L("lib/fast", "../usr/bin/su"),
    L("lib/slow", SLOW_TARGET),
    D("usr/lib/", 0755, 0, 0),
    L("lib64", "usr/lib"),
    L("abs", "/usr"),
    {.type = 'f',
     .path = "usr/bin/ping",
     .mode = 0755,
     .data = "ping",
     .xname = {"security.capability", "user.note"},
     .xval = {CAP, "hello"},
     .xlen = {20, 0}},
    {.type = 'f',
     .path = "usr/bin/bigx",
     .mode = 0644,
     .data = "x",
     .xname = {"user.big"},
     .xval = {s_bigx},
     .xlen = {sizeof s_bigx}},
    {.type = 'd',
     .path = "var/",
     .mode = 0755,
     .xname = {"user.dir", "trusted.overlay.opaque"},
     .xval = {"d", "y"}},
    F("data/empty", 0644, 0, 0, ""),
    F("data/caf\xc3\xa9", 0644, 0, 0, "utf8"),
    D("olddir/", 0755, 0, 0),
    F("olddir/a", 0644, 0, 0, "a"),
    F("olddir/sub/b", 0644, 0, 0, "b"),
    D("opaque/", 0755, 0, 0),
    F("opaque/lower1", 0644, 0, 0, "1"),
    F("opaque/lowerdir/x", 0644, 0, 0, "x"),
    F("gone", 0644, 0, 0, "g"),
    F("gonedir/child", 0644, 0, 0, "c"),
    F("replaced", 0644, 0, 0, "old"),
};

// Whiteouts, an opaque directory (entries of this layer on both sides of
// the marker), replacements, and writes through lower-layer symlinks.
static const tent_t layer2[] = {
    F("opaque/new_before", 0644, 0, 0, "nb"),
    F("opaque/lowerdir/y", 0644, 0, 0, "y"),
    F("opaque/.wh..wh..opq", 0644, 0, 0, ""),
    F("opaque/new_after", 0644, 0, 0, "na"),
    F(".wh.gone", 0644, 0, 0, ""),
    F(".wh.gonedir", 0644, 0, 0, ""),
    F("olddir", 0640, 7, 7, "now a file"),
    D("etc/", 0750, 0, 42),
    F("replaced", 0600, 0, 0, "new content"),
    F("lib64/libfoo.so.1", 0755, 0, 0, "foo"),
    F("abs/share/doc/README", 0644, 0, 0, "readme"),
    H("usr/bin/su-again", "./usr/bin/su"),
    F("run/same", 0644, 0, 0, "kept"),
    F("run/.wh.same", 0644, 0, 0, ""),
};

static const tent_t layer3[] = {
    D("./", 0751, 0, 0),
    F("etc/hostname", 0644, 0, 0, "vm\n"),
};

#define MANY 400

// One expected path in the image. size: contents made by s_pattern when
// data is NULL. xattr: name and value, checked when name is set.
typedef struct {
    const char *path;
    unsigned type; // S_IF*
    unsigned mode, uid, gid, nlink;
    const char *data;
    size_t size;
    unsigned major, minor;
    const char *xname;
    const char *xval;
    size_t xlen;
} want_t;

#define W(p, t, m, u, g, n, d)                                                                     \
    {                                                                                              \
        .path = p, .type = t, .mode = m, .uid = u, .gid = g, .nlink = n, .data = d                 \
    }
#define WDEV(p, t, m, g, ma, mi)                                                                   \
    {                                                                                              \
        .path = p, .type = t, .mode = m, .gid = g, .nlink = 1, .major = ma, .minor = mi            \
    }
#define WX(p, t, m, d, n, v, l)                                                                    \
    {                                                                                              \
        .path = p, .type = t, .mode = m, .nlink = (t) == S_IFDIR ? 2 : 1, .data = d, .xname = n,   \
        .xval = v, .xlen = l                                                                       \
    }

static const want_t wants[] = {
    W("", S_IFDIR, 0751, 0, 0, 0, NULL),
    W("etc", S_IFDIR, 0750, 0, 42, 2, NULL),
    W("etc/passwd", S_IFREG, 0644, 0, 0, 1, "root:x:0:0:root:/root:/bin/sh\n"),
    W("etc/shadow", S_IFREG, 0640, 0, 42, 1, "root:*:19000::::::\n"),
    W("etc/hostname", S_IFREG, 0644, 0, 0, 1, "vm\n"),
    W("home", S_IFDIR, 0755, 0, 0, 4, NULL),
    W("home/alice", S_IFDIR, 0700, 1000, 1000, 2, NULL),
    W("home/alice/notes", S_IFREG, 0600, 1000, 1000, 1, "hi"),
    W("home/bob", S_IFDIR, 0755, 0, 0, 2, NULL),
    {.path = "home/bob/big.bin",
     .type = S_IFREG,
     .mode = 0644,
     .uid = 2000,
     .gid = 3000,
     .nlink = 1,
     .size = 300000},
    W("home/high", S_IFREG, 0644, 100000, 200000, 1, "wide ids"),
    W("usr/bin/su", S_IFREG, 04755, 0, 0, 3, "su-binary"),
    W("usr/bin/su-link", S_IFREG, 04755, 0, 0, 3, "su-binary"),
    W("usr/bin/su-again", S_IFREG, 04755, 0, 0, 3, "su-binary"),
    W("usr/bin/wall", S_IFREG, 02755, 0, 5, 1, "wall-binary"),
    W("tmp", S_IFDIR, 01777, 0, 0, 2, NULL),
    WDEV("dev/null", S_IFCHR, 0666, 0, 1, 3),
    WDEV("dev/big", S_IFCHR, 0600, 0, 300, 70000),
    WDEV("dev/sda", S_IFBLK, 0660, 6, 8, 0),
    W("run/initctl", S_IFIFO, 0600, 0, 0, 1, NULL),
    W("run/same", S_IFREG, 0644, 0, 0, 1, "kept"),
    W("lib/fast", S_IFLNK, 0777, 0, 0, 1, "../usr/bin/su"),
    W("lib/slow", S_IFLNK, 0777, 0, 0, 1, SLOW_TARGET),
    W("lib64", S_IFLNK, 0777, 0, 0, 1, "usr/lib"),
    W("abs", S_IFLNK, 0777, 0, 0, 1, "/usr"),
    W("usr/lib/libfoo.so.1", S_IFREG, 0755, 0, 0, 1, "foo"),
    W("usr/share", S_IFDIR, 0755, 0, 0, 3, NULL),
    W("usr/share/doc/README", S_IFREG, 0644, 0, 0, 1, "readme"),
    WX("usr/bin/ping", S_IFREG, 0755, "ping", "security.capability", CAP, 20),
    WX("usr/bin/ping", S_IFREG, 0755, "ping", "user.note", "hello", 5),
    WX("usr/bin/bigx", S_IFREG, 0644, "x", "user.big", s_bigx, sizeof s_bigx),
    WX("var", S_IFDIR, 0755, NULL, "user.dir", "d", 1),
    W("data/empty", S_IFREG, 0644, 0, 0, 1, ""),
    W("data/caf\xc3\xa9", S_IFREG, 0644, 0, 0, 1, "utf8"),
    W("olddir", S_IFREG, 0640, 7, 7, 1, "now a file"),
    W("opaque/new_before", S_IFREG, 0644, 0, 0, 1, "nb"),
    W("opaque/new_after", S_IFREG, 0644, 0, 0, 1, "na"),
    W("opaque/lowerdir/y", S_IFREG, 0644, 0, 0, 1, "y"),
    W("replaced", S_IFREG, 0600, 0, 0, 1, "new content"),
    W("many/entry-with-a-fairly-long-name-0399", S_IFREG, 0644, 0, 0, 1, "399"),
};

static const char *const absent[] = {
    "gone",          "gonedir",    "opaque/lower1",       "opaque/lowerdir/x",
    "olddir/a",      ".wh.gone",   "opaque/.wh..wh..opq", "run/.wh.same",
    "gonedir/child", "olddir/sub",
};

// ---- reading the image back -------------------------------------------------

static ext2_ino_t s_lookup(ext2_filsys fs, const char *path)
{
    ext2_ino_t ino = EXT2_ROOT_INO;
    if (*path && ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, &ino) != 0)
        return 0;
    return ino;
}

static char *s_read_contents(ext2_filsys fs, ext2_ino_t ino, size_t size)
{
    ext2_file_t file;
    assert_int_equal(ext2fs_file_open(fs, ino, 0, &file), 0);
    char *buf = calloc(1, size + 1);
    unsigned int got = 0;
    if (size)
        assert_int_equal(ext2fs_file_read(file, buf, (unsigned)size, &got), 0);
    assert_int_equal(got, size);
    ext2fs_file_close(file);
    return buf;
}

static void s_check_link(ext2_filsys fs, ext2_ino_t ino, struct ext2_inode_large *in,
                         const want_t *w)
{
    size_t len = EXT2_I_SIZE(in);
    assert_int_equal(len, strlen(w->data));
    if (len < 60) {
        assert_int_equal(ext2fs_get_stat_i_blocks(fs, (struct ext2_inode *)in), 0);
        assert_memory_equal(in->i_block, w->data, len);
        return;
    }
    assert_true(in->i_flags & EXT4_EXTENTS_FL);
    char *target = s_read_contents(fs, ino, len);
    assert_string_equal(target, w->data);
    free(target);
}

static void s_check_data(ext2_filsys fs, ext2_ino_t ino, struct ext2_inode_large *in,
                         const want_t *w)
{
    size_t size = w->data ? strlen(w->data) : w->size;
    assert_int_equal(EXT2_I_SIZE(in), size);
    char *buf = s_read_contents(fs, ino, size);
    if (w->data)
        assert_memory_equal(buf, w->data, size);
    else
        for (size_t i = 0; i < size; i++)
            if ((uint8_t)buf[i] != s_pattern(i))
                fail_msg("%s: byte %zu differs", w->path, i);
    free(buf);
}

static void s_check_rdev(struct ext2_inode_large *in, const want_t *w)
{
    unsigned major, minor;
    if (in->i_block[0]) {
        major = (in->i_block[0] >> 8) & 255;
        minor = in->i_block[0] & 255;
    } else {
        uint32_t d = in->i_block[1];
        major = (d & 0xfff00) >> 8;
        minor = (d & 0xff) | ((d >> 12) & 0xfff00);
    }
    assert_int_equal(major, w->major);
    assert_int_equal(minor, w->minor);
}

static void s_check_xattr(ext2_filsys fs, ext2_ino_t ino, const want_t *w)
{
    struct ext2_xattr_handle *h;
    assert_int_equal(ext2fs_xattrs_open(fs, ino, &h), 0);
    assert_int_equal(ext2fs_xattrs_read(h), 0);
    void *value = NULL;
    size_t len = 0;
    if (ext2fs_xattr_get(h, w->xname, &value, &len) != 0)
        fail_msg("%s: no xattr %s", w->path, w->xname);
    assert_int_equal(len, w->xlen);
    assert_memory_equal(value, w->xval, len);
    ext2fs_free_mem(&value);
    ext2fs_xattrs_close(&h);
}

static void s_check_no_xattr(ext2_filsys fs, const char *path, const char *name)
{
    struct ext2_xattr_handle *h;
    assert_int_equal(ext2fs_xattrs_open(fs, s_lookup(fs, path), &h), 0);
    assert_int_equal(ext2fs_xattrs_read(h), 0);
    void *value = NULL;
    size_t len = 0;
    if (ext2fs_xattr_get(h, name, &value, &len) == 0)
        fail_msg("%s: xattr %s should have been dropped", path, name);
    ext2fs_xattrs_close(&h);
}

static void s_check_one(ext2_filsys fs, const want_t *w)
{
    ext2_ino_t ino = s_lookup(fs, w->path);
    if (!ino)
        fail_msg("'%s' is not in the image", w->path);
    struct ext2_inode_large in;
    assert_int_equal(ext2fs_read_inode_full(fs, ino, (struct ext2_inode *)&in, sizeof in), 0);
    if ((in.i_mode & S_IFMT) != w->type || (in.i_mode & 07777) != w->mode)
        fail_msg("%s: mode 0%o, want 0%o", w->path, in.i_mode, w->type | w->mode);
    if (inode_uid(in) != w->uid || inode_gid(in) != w->gid)
        fail_msg("%s: owner %u:%u, want %u:%u", w->path, inode_uid(in), inode_gid(in), w->uid,
                 w->gid);
    if (w->nlink && in.i_links_count != w->nlink)
        fail_msg("%s: %u links, want %u", w->path, in.i_links_count, w->nlink);
    if (w->type == S_IFREG)
        s_check_data(fs, ino, &in, w);
    if (w->type == S_IFLNK)
        s_check_link(fs, ino, &in, w);
    if (w->type == S_IFCHR || w->type == S_IFBLK)
        s_check_rdev(&in, w);
    if (w->xname)
        s_check_xattr(fs, ino, w);
    if (w->type != S_IFDIR)
        assert_int_equal(in.i_mtime, MTIME);
}

typedef struct {
    ext2_filsys fs;
    uint64_t entries;
    int depth;
} walk_t;

static int s_walk_entry(struct ext2_dir_entry *de, int offset, int blocksize, char *buf, void *arg);

static void s_walk(walk_t *w, ext2_ino_t dir)
{
    assert_int_equal(ext2fs_dir_iterate(w->fs, dir, 0, NULL, s_walk_entry, w), 0);
}

// Counts every path and refuses whiteout names anywhere in the image.
static int s_walk_entry(struct ext2_dir_entry *de, int offset, int blocksize, char *buf, void *arg)
{
    (void)offset, (void)blocksize, (void)buf;
    walk_t *w = arg;
    int len = ext2fs_dirent_name_len(de);
    if ((len == 1 && de->name[0] == '.') || (len == 2 && memcmp(de->name, "..", 2) == 0))
        return 0;
    if (len >= 4 && memcmp(de->name, ".wh.", 4) == 0)
        fail_msg("whiteout '%.*s' in the image", len, de->name);
    w->entries++;
    if (ext2fs_dirent_file_type(de) == EXT2_FT_DIR) {
        assert_true(++w->depth < 32);
        s_walk(w, de->inode);
        w->depth--;
    }
    return 0;
}

static void s_check_image(const char *image, const rootfs_stats_t *stats)
{
    ext2_filsys fs;
    assert_int_equal(ext2fs_open(image, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs), 0);
    assert_int_equal(fs->blocksize, 4096);
    assert_int_equal(EXT2_INODE_SIZE(fs->super), 256);
    assert_true(ext2fs_has_feature_extents(fs->super));
    assert_true(ext2fs_has_feature_dir_index(fs->super));
    assert_false(ext2fs_has_feature_journal(fs->super));
    for (size_t i = 0; i < sizeof wants / sizeof wants[0]; i++)
        s_check_one(fs, &wants[i]);
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
        if (s_lookup(fs, absent[i]))
            fail_msg("'%s' should not be in the image", absent[i]);
    s_check_no_xattr(fs, "var", "trusted.overlay.opaque"); // overlayfs's own: dropped
    ext2_ino_t many = s_lookup(fs, "many");
    struct ext2_inode in;
    assert_int_equal(ext2fs_read_inode(fs, many, &in), 0);
    assert_true(EXT2_I_SIZE(&in) > 4096); // several directory blocks
    walk_t w = {.fs = fs};
    s_walk(&w, EXT2_ROOT_INO);
    assert_int_equal(w.entries, stats->entries);
    ext2fs_close_free(&fs);
}

// ---- helpers for the whole image ---------------------------------------------

static const char *s_e2fsck(void)
{
    static const char *const paths[] = {"/usr/sbin/e2fsck", "/sbin/e2fsck", "/usr/bin/e2fsck"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

// e2fsck -fn: exit 0 is a clean file system. Its output goes to a log.
static int s_run_e2fsck(const char *fsck, const char *image, const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(fsck, fsck, "-fn", image, (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool s_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int s_setup(void **state)
{
    (void)state;
    snprintf(s_dir, sizeof s_dir, "/tmp/test_rootfs.XXXXXX");
    assert_non_null(mkdtemp(s_dir));
    for (size_t i = 0; i < sizeof s_bigx; i++)
        s_bigx[i] = (char)('a' + i % 26);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    nftw(s_dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

// ---- the tests ------------------------------------------------------------------

// Layer 1 plus MANY files in one directory (several directory blocks).
static void s_write_layer1(void)
{
    size_t n = sizeof layer1 / sizeof layer1[0];
    tent_t *ents = calloc(n + MANY, sizeof *ents);
    static char names[MANY][64], data[MANY][8];
    memcpy(ents, layer1, sizeof layer1);
    for (size_t i = 0; i < MANY; i++) {
        snprintf(names[i], sizeof names[i], "many/entry-with-a-fairly-long-name-%04zu", i);
        snprintf(data[i], sizeof data[i], "%zu", i);
        ents[n + i] = (tent_t)F(names[i], 0644, 0, 0, data[i]);
    }
    s_write_tar("l1.tar.gz", GZIP, ents, n + MANY);
    free(ents);
}

static void test_layers_to_image(void **state)
{
    (void)state;
    s_write_layer1();
    s_write_tar("l2.tar.zst", ZSTD, layer2, sizeof layer2 / sizeof layer2[0]);
    s_write_tar("l3.tar", PLAIN, layer3, sizeof layer3 / sizeof layer3[0]);
    char p1[256], p2[256], p3[256], image[256], tmp[300], log[256];
    s_path(p1, sizeof p1, "l1.tar.gz");
    s_path(p2, sizeof p2, "l2.tar.zst");
    s_path(p3, sizeof p3, "l3.tar");
    s_path(image, sizeof image, "image.ext4");
    snprintf(tmp, sizeof tmp, "%s.tmp", image);
    const rootfs_layer_t layers[] = {
        {.path = p1, .name = "sha256:1111"},
        {.path = p2, .name = "sha256:2222"},
        {.path = p3, .name = "sha256:3333"},
    };
    rootfs_limits_t limits = {
        .max_total_bytes = 1 << 30, .max_file_bytes = 1 << 20, .max_entries = 10000};
    rootfs_stats_t stats;
    vmlet_err_t err = {0};
    if (rootfs_build(layers, 3, image, &limits, &stats, &err) != 0)
        fail_msg("rootfs_build: %s", err.msg);
    assert_false(s_exists(tmp));
    struct stat st;
    assert_int_equal(stat(image, &st), 0);
    assert_int_equal((uint64_t)st.st_size, stats.image_bytes);
    assert_true(stats.image_bytes >= 4u << 20 && stats.image_bytes % 4096 == 0);
    assert_true(stats.bytes > 300000 && stats.bytes < 310000);
    s_check_image(image, &stats);

    const char *fsck = s_e2fsck();
    if (!fsck) {
        print_message("skipping e2fsck: not installed (install e2fsprogs)\n");
        return;
    }
    s_path(log, sizeof log, "e2fsck.log");
    int rc = s_run_e2fsck(fsck, image, log);
    if (rc != 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "cat %s", log);
        assert_int_equal(system(cmd), 0);
        fail_msg("e2fsck -fn exited %d", rc);
    }
}

// The same layers make the same image, byte for byte but for times e2fsprogs
// stamps in the superblock: the identity comes from the layer names.
static void test_no_layers_is_an_empty_root(void **state)
{
    (void)state;
    char image[256];
    s_path(image, sizeof image, "empty.ext4");
    rootfs_stats_t stats;
    vmlet_err_t err = {0};
    if (rootfs_build(NULL, 0, image, NULL, &stats, &err) != 0)
        fail_msg("rootfs_build: %s", err.msg);
    assert_int_equal(stats.entries, 0);
    ext2_filsys fs;
    assert_int_equal(ext2fs_open(image, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs), 0);
    struct ext2_inode in;
    assert_int_equal(ext2fs_read_inode(fs, EXT2_ROOT_INO, &in), 0);
    assert_int_equal(in.i_mode, S_IFDIR | 0755);
    assert_int_equal(in.i_uid, 0);
    ext2fs_close_free(&fs);
    const char *fsck = s_e2fsck();
    char log[256];
    s_path(log, sizeof log, "e2fsck-empty.log");
    if (fsck)
        assert_int_equal(s_run_e2fsck(fsck, image, log), 0);
    unlink(image);
}

typedef struct {
    const char *what;
    tent_t ents[12];
    rootfs_limits_t limits;
    const char *want; // in the message
} bad_t;

static const bad_t bad[] = {
    {"dot-dot",
     {F("../../etc/passwd", 0644, 0, 0, "x")},
     {0},
     "layer 1 (sha256:bad): entry '../../etc/passwd': path leaves the root ('..' component)"},
    {"absolute",
     {F("/abs", 0644, 0, 0, "x")},
     {0},
     "entry '/abs': absolute path (layer paths are relative to the root)"},
    {"escaping symlink",
     {L("evil", "../../.."), F("evil/x", 0644, 0, 0, "x")},
     {0},
     "entry 'evil/x': path leaves the root through a symlink"},
    {"escaping absolute symlink",
     {D("a/", 0755, 0, 0), L("a/up", "/a/../.."), F("a/up/x", 0644, 0, 0, "x")},
     {0},
     "entry 'a/up/x': path leaves the root through a symlink"},
    {"hard link to nothing",
     {H("link", "missing")},
     {0},
     "entry 'link': hard link target 'missing' is not in the image"},
    {"hard link to a directory",
     {D("d/", 0755, 0, 0), H("link", "d")},
     {0},
     "hard link target 'd' is a directory"},
    {"file too big",
     {BIG("big", 0, 0, 2000)},
     {.max_file_bytes = 1000},
     "entry 'big': file is 2000 bytes, over max_file_bytes (1000)"},
    {"too many entries",
     {F("1", 0644, 0, 0, ""), F("2", 0644, 0, 0, ""), F("3", 0644, 0, 0, ""),
      F("4", 0644, 0, 0, ""), F("5", 0644, 0, 0, ""), F("6", 0644, 0, 0, ""),
      F("7", 0644, 0, 0, "")},
     {.max_entries = 5},
     "entry '6': more than max_entries (5) entries"},
    {"too many bytes",
     {BIG("a", 0, 0, 600), BIG("b", 0, 0, 600)},
     {.max_total_bytes = 1000},
     "entry 'b': files hold more than max_total_bytes (1000 bytes)"},
    {"file as a directory",
     {F("f", 0644, 0, 0, ""), F("f/x", 0644, 0, 0, "")},
     {0},
     "entry 'f/x': 'f' is not a directory"},
    {"symlink loop",
     {L("a", "b"), L("b", "a"), F("a/x", 0644, 0, 0, "")},
     {0},
     "too many levels of symlinks"},
};

static void test_bad_layers(void **state)
{
    (void)state;
    char layer[256], image[256], tmp[300];
    s_path(layer, sizeof layer, "bad.tar");
    s_path(image, sizeof image, "bad.ext4");
    snprintf(tmp, sizeof tmp, "%s.tmp", image);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = 0;
        while (n < 12 && bad[i].ents[n].type)
            n++;
        s_write_tar("bad.tar", PLAIN, bad[i].ents, n);
        const rootfs_layer_t layers[] = {{.path = layer, .name = "sha256:bad"}};
        vmlet_err_t err = {0};
        if (rootfs_build(layers, 1, image, &bad[i].limits, NULL, &err) == 0)
            fail_msg("%s: built", bad[i].what);
        if (!strstr(err.msg, bad[i].want))
            fail_msg("%s: '%s' does not say '%s'", bad[i].what, err.msg, bad[i].want);
        if (s_exists(image) || s_exists(tmp))
            fail_msg("%s: left a file behind", bad[i].what);
    }
}

static void test_missing_layer_names_it(void **state)
{
    (void)state;
    char image[256];
    s_path(image, sizeof image, "missing.ext4");
    const rootfs_layer_t layers[] = {
        {.path = "/nonexistent/layer.tar", .name = "sha256:0123456789abcdef0123"}};
    vmlet_err_t err = {0};
    assert_int_equal(rootfs_build(layers, 1, image, NULL, NULL, &err), -1);
    assert_non_null(
        strstr(err.msg, "layer 1 (sha256:0123456789ab...): open /nonexistent/layer.tar"));
    assert_false(s_exists(image));
}

// A failure after the image is written (here: the rename) removes it too.
static void test_failed_rename_leaves_nothing(void **state)
{
    (void)state;
    char layer[256], image[256], tmp[300], inner[300];
    const tent_t ents[] = {F("hello", 0644, 0, 0, "world")};
    s_write_tar("ok.tar", GZIP, ents, 1);
    s_path(layer, sizeof layer, "ok.tar");
    s_path(image, sizeof image, "busy");
    snprintf(tmp, sizeof tmp, "%s.tmp", image);
    snprintf(inner, sizeof inner, "%s/file", image);
    assert_int_equal(mkdir(image, 0755), 0); // a non-empty directory: rename fails
    FILE *f = fopen(inner, "w");
    assert_non_null(f);
    fclose(f);
    const rootfs_layer_t layers[] = {{.path = layer, .name = "sha256:ok"}};
    vmlet_err_t err = {0};
    assert_int_equal(rootfs_build(layers, 1, image, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "rename"));
    assert_false(s_exists(tmp));
    unlink(inner);
    rmdir(image);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layers_to_image),
        cmocka_unit_test(test_no_layers_is_an_empty_root),
        cmocka_unit_test(test_bad_layers),
        cmocka_unit_test(test_missing_layer_names_it),
        cmocka_unit_test(test_failed_rename_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
