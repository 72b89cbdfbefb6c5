// Listing trees from ext4 images and directories (see ext4_walk.h).
#include "ext4_walk.h"

#include <dirent.h>
#include <stdbool.h>
#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

typedef struct {
    ts_fs_entry_t *items;
    size_t n, cap;
} list_t;

static ts_fs_entry_t *s_add(list_t *l, const char *path)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->items = realloc(l->items, l->cap * sizeof *l->items);
    }
    ts_fs_entry_t *e = &l->items[l->n++];
    memset(e, 0, sizeof *e);
    e->path = strdup(path);
    return e;
}

static uint64_t s_fnv(uint64_t h, const void *data, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)data)[i]) * 1099511628211ULL;
    return h;
}

static int s_by_path(const void *a, const void *b)
{
    return strcmp(((const ts_fs_entry_t *)a)->path, ((const ts_fs_entry_t *)b)->path);
}

static int s_by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// "a=1;b=2" from unsorted "name\0value" pairs.
static char *s_join_xattrs(char **pairs, size_t n)
{
    qsort(pairs, n, sizeof *pairs, s_by_name);
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(pairs[i]) + 1;
    char *out = calloc(1, len);
    for (size_t i = 0; i < n; i++) {
        strcat(out, pairs[i]);
        strcat(out, ";");
        free(pairs[i]);
    }
    return out;
}

static bool s_wanted_xattr(const char *name)
{
    return strncmp(name, "user.", 5) == 0 || strncmp(name, "security.", 9) == 0;
}

// --- ext4 --------------------------------------------------------------------------

typedef struct {
    ext2_filsys fs;
    list_t *list;
    char path[4096];
} walk_t;

typedef struct {
    char *pairs[64];
    size_t n;
} pairs_t;

static int s_one_xattr(char *name, char *value, size_t len, void *arg)
{
    pairs_t *p = arg;
    char *pair = NULL;
    if (s_wanted_xattr(name) && p->n < 64 && asprintf(&pair, "%s=%.*s", name, (int)len, value) > 0)
        p->pairs[p->n++] = pair;
    return 0;
}

static void s_ext4_xattrs(ext2_filsys fs, ext2_ino_t ino, ts_fs_entry_t *e)
{
    struct ext2_xattr_handle *h;
    pairs_t p = {.n = 0};
    if (ext2fs_xattrs_open(fs, ino, &h) == 0) {
        if (ext2fs_xattrs_read(h) == 0)
            ext2fs_xattrs_iterate(h, s_one_xattr, &p);
        ext2fs_xattrs_close(&h);
    }
    e->xattrs = s_join_xattrs(p.pairs, p.n);
}

static void s_ext4_content(ext2_filsys fs, ext2_ino_t ino, ts_fs_entry_t *e, char *link, size_t cap)
{
    ext2_file_t file;
    if (ext2fs_file_open(fs, ino, 0, &file) != 0)
        return;
    char buf[65536];
    unsigned int got;
    uint64_t h = 14695981039346656037ULL, total = 0;
    while (ext2fs_file_read(file, buf, sizeof buf, &got) == 0 && got > 0) {
        if (link && total + got < cap)
            memcpy(link + total, buf, got);
        h = s_fnv(h, buf, got);
        total += got;
    }
    ext2fs_file_close(file);
    e->hash = h;
}

static void s_ext4_entry(walk_t *w, ext2_ino_t ino)
{
    struct ext2_inode_large inode;
    ext2fs_read_inode_full(w->fs, ino, (struct ext2_inode *)&inode, sizeof inode);
    ts_fs_entry_t *e = s_add(w->list, w->path);
    e->mode = inode.i_mode;
    e->uid = inode_uid(inode);
    e->gid = inode_gid(inode);
    if (LINUX_S_ISREG(inode.i_mode)) {
        e->size = EXT2_I_SIZE(&inode);
        e->nlink = inode.i_links_count;
        s_ext4_content(w->fs, ino, e, NULL, 0);
    } else if (LINUX_S_ISLNK(inode.i_mode)) {
        char target[4097] = "";
        if (ext2fs_is_fast_symlink((struct ext2_inode *)&inode))
            snprintf(target, sizeof target, "%.*s", (int)EXT2_I_SIZE(&inode), (char *)inode.i_block);
        else
            s_ext4_content(w->fs, ino, e, target, sizeof target - 1);
        e->hash = 0;
        e->target = strdup(target);
    } else if (LINUX_S_ISCHR(inode.i_mode) || LINUX_S_ISBLK(inode.i_mode)) {
        uint32_t old = inode.i_block[0], new = inode.i_block[1];
        e->major = old ? (old >> 8) & 0xff : (new >> 8) & 0xfff;
        e->minor = old ? old & 0xff : (new & 0xff) | ((new >> 12) & 0xfff00);
    }
    s_ext4_xattrs(w->fs, ino, e);
}

static int s_ext4_dir(walk_t *w, ext2_ino_t dir);

static int s_ext4_visit(struct ext2_dir_entry *dirent, int offset, int blocksize, char *buf,
                        void *priv)
{
    (void)offset;
    (void)blocksize;
    (void)buf;
    walk_t *w = priv;
    int len = ext2fs_dirent_name_len(dirent);
    if ((len == 1 && dirent->name[0] == '.') || (len == 2 && !strncmp(dirent->name, "..", 2)) ||
        (len == 10 && !strncmp(dirent->name, "lost+found", 10) && !strcmp(w->path, "/")))
        return 0;
    size_t at = strlen(w->path);
    snprintf(w->path + at, sizeof w->path - at, "%s%.*s", at > 1 ? "/" : "", len, dirent->name);
    s_ext4_entry(w, dirent->inode);
    struct ext2_inode inode;
    ext2fs_read_inode(w->fs, dirent->inode, &inode);
    if (LINUX_S_ISDIR(inode.i_mode))
        s_ext4_dir(w, dirent->inode);
    w->path[at] = '\0';
    return 0;
}

static int s_ext4_dir(walk_t *w, ext2_ino_t dir)
{
    return ext2fs_dir_iterate(w->fs, dir, 0, NULL, s_ext4_visit, w) == 0 ? 0 : -1;
}

int ts_ext4_list(const char *image, ts_fs_entry_t **out, size_t *n)
{
    list_t list = {0};
    walk_t w = {.list = &list, .path = "/"};
    if (ext2fs_open(image, 0, 0, 0, unix_io_manager, &w.fs) != 0) {
        fprintf(stderr, "ts_ext4_list: cannot open %s as ext4\n", image);
        return -1;
    }
    s_ext4_entry(&w, EXT2_ROOT_INO);
    int rc = s_ext4_dir(&w, EXT2_ROOT_INO);
    ext2fs_close_free(&w.fs);
    qsort(list.items, list.n, sizeof *list.items, s_by_path);
    *out = list.items;
    *n = list.n;
    return rc;
}

// --- a directory --------------------------------------------------------------------

static void s_dir_entry(list_t *l, const char *root, const char *rel)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s", root, strcmp(rel, "/") ? rel : "");
    struct stat st;
    if (lstat(path, &st) < 0)
        return;
    ts_fs_entry_t *e = s_add(l, rel);
    e->mode = st.st_mode, e->uid = st.st_uid, e->gid = st.st_gid;
    if (S_ISREG(st.st_mode)) {
        e->size = (uint64_t)st.st_size, e->nlink = (uint32_t)st.st_nlink;
        int fd = open(path, O_RDONLY);
        char buf[65536];
        ssize_t got;
        e->hash = 14695981039346656037ULL;
        while (fd >= 0 && (got = read(fd, buf, sizeof buf)) > 0)
            e->hash = s_fnv(e->hash, buf, (size_t)got);
        if (fd >= 0)
            close(fd);
    } else if (S_ISLNK(st.st_mode)) {
        char target[4097];
        ssize_t len = readlink(path, target, sizeof target - 1);
        target[len > 0 ? len : 0] = '\0';
        e->target = strdup(target);
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
        e->major = major(st.st_rdev), e->minor = minor(st.st_rdev);
    }
    char names[4096], *pairs[64];
    size_t np = 0;
    ssize_t len = llistxattr(path, names, sizeof names);
    for (char *name = names; len > 0 && name < names + len; name += strlen(name) + 1) {
        char value[1024];
        ssize_t vlen = lgetxattr(path, name, value, sizeof value);
        char *pair = NULL;
        if (s_wanted_xattr(name) && vlen >= 0 && np < 64 &&
            asprintf(&pair, "%s=%.*s", name, (int)vlen, value) > 0)
            pairs[np++] = pair;
    }
    e->xattrs = s_join_xattrs(pairs, np);
}

static void s_dir_walk(list_t *l, const char *root, const char *rel)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s", root, rel);
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char child[4096];
        snprintf(child, sizeof child, "%s/%s", strcmp(rel, "/") ? rel : "", de->d_name);
        s_dir_entry(l, root, child);
        if (de->d_type == DT_DIR)
            s_dir_walk(l, root, child);
    }
    if (d)
        closedir(d);
}

int ts_dir_list(const char *root, ts_fs_entry_t **out, size_t *n)
{
    list_t list = {0};
    s_dir_entry(&list, root, "/");
    s_dir_walk(&list, root, "/");
    qsort(list.items, list.n, sizeof *list.items, s_by_path);
    *out = list.items;
    *n = list.n;
    return 0;
}

void ts_fs_free(ts_fs_entry_t *entries, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(entries[i].path);
        free(entries[i].target);
        free(entries[i].xattrs);
    }
    free(entries);
}

static char *s_describe(const ts_fs_entry_t *e)
{
    char *text = NULL;
    if (asprintf(&text, "%s mode=%o uid=%u gid=%u size=%llu hash=%016llx nlink=%u target=%s "
                        "dev=%u:%u xattrs=%s",
                 e->path, e->mode, e->uid, e->gid, (unsigned long long)e->size,
                 (unsigned long long)e->hash, e->nlink, e->target ? e->target : "", e->major,
                 e->minor, e->xattrs ? e->xattrs : "") < 0)
        return NULL;
    return text;
}

char *ts_fs_diff(const ts_fs_entry_t *a, size_t na, const ts_fs_entry_t *b, size_t nb)
{
    for (size_t i = 0, j = 0; i < na || j < nb;) {
        int c = i < na && j < nb ? strcmp(a[i].path, b[j].path) : (i < na ? -1 : 1);
        char *da = c <= 0 ? s_describe(&a[i]) : NULL, *db = c >= 0 ? s_describe(&b[j]) : NULL;
        bool same = c == 0 && strcmp(da, db) == 0;
        if (!same) {
            char *out = NULL;
            if (asprintf(&out, "first:  %s\nsecond: %s", da ? da : "(absent)", db ? db : "(absent)") < 0)
                out = NULL;
            free(da);
            free(db);
            return out;
        }
        free(da);
        free(db);
        i++, j++;
    }
    return NULL;
}
