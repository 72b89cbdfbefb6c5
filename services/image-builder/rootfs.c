// rootfs_build: layer tars into one ext4 image in two passes over the
// libarchive streams (index, then write), via a temporary file renamed
// into place only when the image is complete.
#include "rootfs_internal.h"

#include "vmlet/xalloc.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_BLOCK (1 << 20)
#define MAJOR_MAX 0xfffu   // Linux's 12-bit majors
#define MINOR_MAX 0xfffffu // and 20-bit minors

// A name from a layer, safe to print: at most 200 bytes, no control bytes.
static const char *s_printable(const char *text, char out[208])
{
    size_t i = 0;
    for (; text && text[i] && i < 200; i++)
        out[i] = iscntrl((unsigned char)text[i]) ? '?' : text[i];
    strcpy(out + i, text && text[i] ? "..." : "");
    return out;
}

// "sha256:0123456789ab..." rather than the whole digest.
static int s_wrap_layer(vmlet_err_t *err, uint32_t index, const rootfs_layer_t *layer)
{
    const char *name = layer->name ? layer->name : layer->path;
    int keep = strlen(name) > 22 ? 19 : 22;
    return vmlet_err_wrap(err, "layer %u (%.*s%s)", index, keep, name,
                          strlen(name) > 22 ? "..." : "");
}

static int s_wrap_entry(vmlet_err_t *err, struct archive_entry *ae)
{
    char buf[208];
    const char *path = archive_entry_pathname(ae);
    return vmlet_err_wrap(err, "entry '%s'",
                          s_printable(path ? path : archive_entry_pathname_utf8(ae), buf));
}

static struct archive *s_open(const rootfs_layer_t *layer, vmlet_err_t *err)
{
    struct archive *a = archive_read_new();
    if (!a) {
        vmlet_err_set(err, "out of memory");
        return NULL;
    }
    // What OCI layers may be: tar, tar+gzip, tar+zstd.
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, layer->path, READ_BLOCK) != ARCHIVE_OK) {
        vmlet_err_set(err, "open %s: %s", layer->path, archive_error_string(a));
        archive_read_free(a);
        return NULL;
    }
    return a;
}

// Names as the header has them; the UTF-8 form when the locale cannot
// represent them (pax headers carry UTF-8; builders run in the C locale).
static const char *s_name(const char *raw, const char *utf8)
{
    return raw ? raw : utf8;
}

static uint32_t s_round4(size_t n)
{
    return (uint32_t)((n + 3) & ~(size_t)3);
}

// The image is the lower layer of overlayfs in the guest, which trusts
// its own xattrs there (opaque, redirect, metacopy): layers may not set them.
static bool s_keep_xattr(const char *name)
{
    return strncmp(name, "trusted.overlay.", 16) != 0 && strncmp(name, "user.overlay.", 13) != 0;
}

// Room the entry's xattrs take in ext4 (entry headers, names, values).
static uint32_t s_xattr_bytes(struct archive_entry *ae)
{
    uint64_t total = 0;
    if (archive_entry_xattr_reset(ae) == 0)
        return 0;
    const char *name;
    const void *value;
    size_t size;
    while (archive_entry_xattr_next(ae, &name, &value, &size) == ARCHIVE_OK)
        if (s_keep_xattr(name))
            total += 16 + s_round4(strlen(name)) + s_round4(size);
    total += 4;
    return total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
}

static int s_type(struct archive_entry *ae, rootfs_entry_t *e, vmlet_err_t *err)
{
    mode_t type = archive_entry_filetype(ae);
    if (e->hardlink)
        type = AE_IFREG; // its inode's type is the target's
    switch (type) {
    case AE_IFLNK:
        e->symlink = s_name(archive_entry_symlink(ae), archive_entry_symlink_utf8(ae));
        if (!e->symlink)
            return vmlet_err_set(err, "symlink without a target");
        break;
    case AE_IFCHR:
    case AE_IFBLK:
        e->rdev_major = (uint32_t)archive_entry_rdevmajor(ae);
        e->rdev_minor = (uint32_t)archive_entry_rdevminor(ae);
        if (archive_entry_rdevmajor(ae) > MAJOR_MAX || archive_entry_rdevminor(ae) > MINOR_MAX)
            return vmlet_err_set(err, "device number %lu:%lu out of Linux's range",
                                 (unsigned long)archive_entry_rdevmajor(ae),
                                 (unsigned long)archive_entry_rdevminor(ae));
        break;
    case AE_IFREG:
    case AE_IFDIR:
    case AE_IFIFO:
    case AE_IFSOCK:
        break;
    default:
        return vmlet_err_set(err, "unsupported entry type 0%o", (unsigned)type);
    }
    e->mode = (uint32_t)type | (archive_entry_perm(ae) & 07777);
    return 0;
}

// The entry as the index wants it (strings borrowed from ae).
static int s_entry(struct archive_entry *ae, rootfs_entry_t *e, vmlet_err_t *err)
{
    memset(e, 0, sizeof *e);
    e->path = s_name(archive_entry_pathname(ae), archive_entry_pathname_utf8(ae));
    if (!e->path)
        return vmlet_err_set(err, "entry without a readable name");
    e->hardlink = s_name(archive_entry_hardlink(ae), archive_entry_hardlink_utf8(ae));
    if (s_type(ae, e, err) < 0)
        return -1;
    la_int64_t uid = archive_entry_uid(ae), gid = archive_entry_gid(ae);
    la_int64_t size = archive_entry_size(ae);
    if (uid < 0 || uid > UINT32_MAX || gid < 0 || gid > UINT32_MAX)
        return vmlet_err_set(err, "owner %lld:%lld out of range", (long long)uid, (long long)gid);
    if (size < 0)
        return vmlet_err_set(err, "negative size");
    e->uid = (uint32_t)uid;
    e->gid = (uint32_t)gid;
    e->size = S_ISREG(e->mode) && !e->hardlink ? (uint64_t)size : 0;
    e->mtime = archive_entry_mtime(ae);
    long nsec = archive_entry_mtime_nsec(ae);
    e->mtime_nsec = nsec > 0 && nsec < 1000000000 ? (uint32_t)nsec : 0;
    e->xattr_bytes = s_xattr_bytes(ae);
    return 0;
}

// Pass 1: the layer's entries into the index.
static int s_index_layer(rootfs_tree_t *tree, const rootfs_layer_t *layer, uint32_t index,
                         vmlet_err_t *err)
{
    struct archive *a = s_open(layer, err);
    if (!a)
        return -1;
    struct archive_entry *ae;
    uint64_t seq = 0;
    int rc;
    while ((rc = archive_read_next_header(a, &ae)) == ARCHIVE_OK || rc == ARCHIVE_WARN) {
        rootfs_entry_t e;
        if (s_entry(ae, &e, err) < 0 || rootfs_tree_apply(tree, index, seq++, &e, err) < 0) {
            s_wrap_entry(err, ae);
            archive_read_free(a);
            return -1;
        }
    }
    if (rc != ARCHIVE_EOF)
        vmlet_err_set(err, "reading %s: %s", layer->path, archive_error_string(a));
    archive_read_free(a);
    return rc == ARCHIVE_EOF ? 0 : -1;
}

static ssize_t s_read_data(void *arg, void *buf, size_t len, vmlet_err_t *err)
{
    la_ssize_t n = archive_read_data(arg, buf, len);
    if (n < 0)
        return vmlet_err_set(err, "reading contents: %s", archive_error_string(arg));
    return n;
}

static int s_set_xattrs(rootfs_image_t *img, struct archive_entry *ae, uint32_t ino,
                        vmlet_err_t *err)
{
    int n = archive_entry_xattr_reset(ae);
    if (n <= 0)
        return 0;
    cleanup_free rootfs_xattr_t *xattrs = vmlet_xcalloc((size_t)n + 1, sizeof *xattrs);
    size_t count = 0;
    rootfs_xattr_t *x = &xattrs[0];
    while (count < (size_t)n &&
           archive_entry_xattr_next(ae, &x->name, &x->value, &x->size) == ARCHIVE_OK)
        if (s_keep_xattr(x->name))
            x = &xattrs[++count];
    return rootfs_image_set_xattrs(img, ino, xattrs, count, err);
}

// Pass 2 for one entry the index kept: its inode, contents and xattrs.
static int s_write_entry(rootfs_image_t *img, struct archive *a, struct archive_entry *ae,
                         const rootfs_inode_t *inode, vmlet_err_t *err)
{
    bool same = archive_entry_filetype(ae) == (inode->mode & S_IFMT);
    if (S_ISREG(inode->mode))
        same = same && (uint64_t)archive_entry_size(ae) == inode->size;
    if (!same)
        return vmlet_err_set(err, "changed between the two reads of the layer");
    if (!S_ISDIR(inode->mode) && rootfs_image_write_inode(img, inode, s_read_data, a, err) < 0)
        return -1;
    return s_set_xattrs(img, ae, inode->ino, err);
}

typedef struct {
    rootfs_inode_t *const *list; // by (layer, seq)
    size_t n, next;
} sources_t;

// Pass 2: the entries of the layer that the index kept, in stream order.
static int s_write_layer(rootfs_image_t *img, sources_t *src, const rootfs_layer_t *layer,
                         uint32_t index, vmlet_err_t *err)
{
    struct archive *a = s_open(layer, err);
    if (!a)
        return -1;
    struct archive_entry *ae;
    uint64_t seq = 0;
    int rc;
    while ((rc = archive_read_next_header(a, &ae)) == ARCHIVE_OK || rc == ARCHIVE_WARN) {
        const rootfs_inode_t *inode = src->next < src->n ? src->list[src->next] : NULL;
        if (inode && inode->layer == index && inode->seq == seq) {
            src->next++;
            if (s_write_entry(img, a, ae, inode, err) < 0) {
                s_wrap_entry(err, ae);
                archive_read_free(a);
                return -1;
            }
        }
        seq++;
    }
    if (rc != ARCHIVE_EOF)
        rc = vmlet_err_set(err, "reading %s: %s", layer->path, archive_error_string(a));
    else if (src->next < src->n && src->list[src->next]->layer == index)
        rc = vmlet_err_set(err, "%s has fewer entries than when indexed", layer->path);
    archive_read_free(a);
    return rc == ARCHIVE_EOF ? 0 : -1;
}

// UUID and hash seed from the layers' names (digests): the same layers
// make the same file system identity.
static void s_seed(const rootfs_layer_t *layers, size_t n, uint8_t seed[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) {
        memset(seed, 0x5a, 32);
        return;
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, "vmlet-rootfs-1", 15);
    for (size_t i = 0; i < n; i++) {
        const char *name = layers[i].name ? layers[i].name : layers[i].path;
        EVP_DigestUpdate(ctx, name, strlen(name) + 1);
    }
    unsigned int len = 32;
    EVP_DigestFinal_ex(ctx, seed, &len);
    EVP_MD_CTX_free(ctx);
}

// Makes the rename durable: the image's name is what others trust.
static void s_sync_dir(const char *path)
{
    cleanup_free char *copy = vmlet_xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static int s_write_image(rootfs_image_t *img, rootfs_tree_t *tree, const rootfs_layer_t *layers,
                         size_t n, uint64_t *bytes, vmlet_err_t *err)
{
    if (rootfs_image_write_dirs(img, tree, err) < 0)
        return -1;
    sources_t src = {.list = rootfs_tree_sources(tree, &src.n)};
    for (size_t i = 0; i < n; i++)
        if (s_write_layer(img, &src, &layers[i], (uint32_t)(i + 1), err) < 0)
            return s_wrap_layer(err, (uint32_t)(i + 1), &layers[i]);
    return rootfs_image_close(img, bytes, err);
}

// Pass 2 into tmp, renamed to out_path when complete; tmp never outlives
// a failure.
static int s_build_file(rootfs_tree_t *tree, const rootfs_layer_t *layers, size_t n,
                        const char *tmp, const char *out_path, uint64_t *bytes, vmlet_err_t *err)
{
    if (unlink(tmp) < 0 && errno != ENOENT) // left by a crash
        return vmlet_err_errno(err, errno, "remove stale %s", tmp);
    uint8_t seed[32];
    s_seed(layers, n, seed);
    rootfs_image_t *img = rootfs_image_create(tmp, tree, seed, err);
    if (!img)
        return -1;
    int rc = s_write_image(img, tree, layers, n, bytes, err);
    rootfs_image_destroy(&img);
    if (rc == 0 && rename(tmp, out_path) < 0)
        rc = vmlet_err_errno(err, errno, "rename %s to %s", tmp, out_path);
    if (rc < 0) {
        unlink(tmp);
        return -1;
    }
    s_sync_dir(out_path);
    return 0;
}

int rootfs_build(const rootfs_layer_t *layers, size_t n, const char *out_path,
                 const rootfs_limits_t *limits, rootfs_stats_t *stats, vmlet_err_t *err)
{
    if (n >= UINT32_MAX)
        return vmlet_err_set(err, "%zu layers are too many", n);
    rootfs_tree_t *tree = rootfs_tree_new(limits);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (s_index_layer(tree, &layers[i], (uint32_t)(i + 1), err) < 0)
            rc = s_wrap_layer(err, (uint32_t)(i + 1), &layers[i]);
    uint64_t bytes = 0;
    if (rc == 0)
        rc = rootfs_tree_finish(tree, err);
    if (rc == 0) {
        cleanup_free char *tmp = vmlet_xmalloc(strlen(out_path) + 5);
        sprintf(tmp, "%s.tmp", out_path);
        rc = s_build_file(tree, layers, n, tmp, out_path, &bytes, err);
    }
    if (rc == 0 && stats) {
        rootfs_totals_t t = rootfs_tree_totals(tree);
        *stats = (rootfs_stats_t){.entries = t.entries, .bytes = t.bytes, .image_bytes = bytes};
    }
    rootfs_tree_destroy(&tree);
    return rc;
}
