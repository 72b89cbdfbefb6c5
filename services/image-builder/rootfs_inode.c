// Writing the image's inodes: directories (their blocks packed from the
// index), regular files with their contents, fast and slow symlinks,
// device nodes, fifos and sockets, with modes, owners, times and xattrs.
#include "rootfs_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ext4 keeps seconds' bits 32-33 and nanoseconds in the *_extra fields.
static void s_times(struct ext2_inode_large *in, int64_t sec, uint32_t nsec)
{
    uint32_t lo = (uint32_t)sec;
    uint32_t extra = ((uint32_t)((sec - (int64_t)(int32_t)lo) >> 32) & 3u) | (nsec << 2);
    in->i_atime = in->i_ctime = in->i_mtime = in->i_crtime = lo;
    in->i_atime_extra = in->i_ctime_extra = in->i_mtime_extra = in->i_crtime_extra = extra;
}

// The fields every inode has, from the index (times: the entry's mtime).
static void s_base(rootfs_raw_inode_t *raw, const rootfs_inode_t *inode, uint32_t links)
{
    memset(raw, 0, sizeof *raw);
    struct ext2_inode_large *in = &raw->large;
    in->i_mode = (uint16_t)inode->mode;
    in->i_uid = (uint16_t)inode->uid;
    in->osd2.linux2.l_i_uid_high = (uint16_t)(inode->uid >> 16);
    in->i_gid = (uint16_t)inode->gid;
    in->osd2.linux2.l_i_gid_high = (uint16_t)(inode->gid >> 16);
    in->i_links_count = (uint16_t)links;
    in->i_extra_isize = sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
    s_times(in, inode->mtime, inode->mtime_nsec);
}

static int s_file_type(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG:
        return EXT2_FT_REG_FILE;
    case S_IFDIR:
        return EXT2_FT_DIR;
    case S_IFCHR:
        return EXT2_FT_CHRDEV;
    case S_IFBLK:
        return EXT2_FT_BLKDEV;
    case S_IFIFO:
        return EXT2_FT_FIFO;
    case S_IFSOCK:
        return EXT2_FT_SOCK;
    case S_IFLNK:
        return EXT2_FT_SYMLINK;
    }
    return EXT2_FT_UNKNOWN;
}

// Packs one directory's entries into the blocks of self->runs, in the
// order rootfs_dir_blocks counts them.
typedef struct {
    rootfs_image_t *img;
    uint32_t dir_ino;
    size_t run; // current run and block within it
    uint32_t off;
    uint64_t blocks; // blocks written
    uint32_t pos;    // next free byte in the block
    uint32_t last;   // offset of the block's last entry
    char *blk;       // ROOTFS_BLOCK_SIZE bytes
} dirw_t;

static int s_dir_flush(dirw_t *w, vmlet_err_t *err)
{
    ext2_filsys fs = w->img->fs;
    const uint32_t limit = ROOTFS_BLOCK_SIZE - ROOTFS_DIR_TAIL;
    struct ext2_dir_entry *last = (struct ext2_dir_entry *)(w->blk + w->last);
    errcode_t rc = ext2fs_set_rec_len(fs, limit - w->last, last);
    ext2fs_initialize_dirent_tail(fs, (struct ext2_dir_entry_tail *)(w->blk + limit));
    blk64_t pblk = w->img->runs[w->run].pblk + w->off;
    if (!rc)
        rc = ext2fs_write_dir_block4(fs, pblk, w->blk, 0, w->dir_ino);
    if (rc)
        return rootfs_ext2_fail(err, rc, "writing directory inode %u", w->dir_ino);
    if (++w->off == w->img->runs[w->run].len) {
        w->run++;
        w->off = 0;
    }
    w->blocks++;
    memset(w->blk, 0, ROOTFS_BLOCK_SIZE);
    w->pos = 0;
    return 0;
}

static int s_dir_add(dirw_t *w, uint32_t ino, const char *name, uint32_t len, int type,
                     vmlet_err_t *err)
{
    uint32_t rec = EXT2_DIR_REC_LEN(len);
    if (w->pos + rec > ROOTFS_BLOCK_SIZE - ROOTFS_DIR_TAIL && s_dir_flush(w, err) < 0)
        return -1;
    struct ext2_dir_entry *de = (struct ext2_dir_entry *)(w->blk + w->pos);
    de->inode = ext2fs_cpu_to_le32(ino);
    ext2fs_set_rec_len(w->img->fs, rec, de);
    ext2fs_dirent_set_name_len(de, (int)len);
    ext2fs_dirent_set_file_type(de, type);
    memcpy(de->name, name, len);
    w->last = w->pos;
    w->pos += rec;
    return 0;
}

// Writes the entries of node's directory; *subdirs counts its directories.
static int s_dir_entries(dirw_t *w, const rootfs_node_t *node, uint32_t *subdirs, vmlet_err_t *err)
{
    uint32_t parent = node->parent ? node->parent->inode->ino : EXT2_ROOT_INO;
    if (s_dir_add(w, w->dir_ino, ".", 1, EXT2_FT_DIR, err) < 0 ||
        s_dir_add(w, parent, "..", 2, EXT2_FT_DIR, err) < 0)
        return -1;
    *subdirs = 0;
    for (const rootfs_node_t *c = node->first; c; c = c->next) {
        int type = s_file_type(c->inode->mode);
        if (type == EXT2_FT_DIR)
            (*subdirs)++;
        if (s_dir_add(w, c->inode->ino, c->name, c->name_len, type, err) < 0)
            return -1;
    }
    return s_dir_flush(w, err);
}

static int s_write_dir(rootfs_image_t *self, const rootfs_node_t *node, vmlet_err_t *err)
{
    uint64_t blocks = rootfs_dir_blocks(node);
    size_t n;
    if (rootfs_image_alloc(self, blocks, &n, err) < 0)
        return -1;
    dirw_t w = {.img = self, .dir_ino = node->inode->ino, .blk = (char *)self->buf};
    memset(w.blk, 0, ROOTFS_BLOCK_SIZE);
    uint32_t subdirs;
    if (s_dir_entries(&w, node, &subdirs, err) < 0)
        return -1;
    if (w.blocks != blocks)
        return vmlet_err_set(err, "directory inode %u: wrote %llu blocks, counted %llu", w.dir_ino,
                             (unsigned long long)w.blocks, (unsigned long long)blocks);
    uint32_t links = 2 + subdirs;
    if (links >= ROOTFS_LINK_MAX)
        links = 1; // dir_nlink: "many"
    rootfs_raw_inode_t raw;
    s_base(&raw, node->inode, links);
    errcode_t rc = ext2fs_inode_size_set(self->fs, &raw.small, blocks * ROOTFS_BLOCK_SIZE);
    if (rc)
        return rootfs_ext2_fail(err, rc, "directory inode %u", w.dir_ino);
    return rootfs_image_map(self, w.dir_ino, &raw, n, blocks, err);
}

// Numbers the inodes in tree order (the root is 2; hard links share one).
static int s_number(rootfs_image_t *self, rootfs_node_t *root, vmlet_err_t *err)
{
    for (rootfs_node_t *n = root; n; n = rootfs_tree_next(n, root)) {
        rootfs_inode_t *inode = n->inode;
        if (inode->ino)
            continue;
        if (n == root)
            inode->ino = EXT2_ROOT_INO;
        else if (self->next_ino > self->fs->super->s_inodes_count)
            return vmlet_err_set(err, "out of inodes (%u)", self->fs->super->s_inodes_count);
        else
            inode->ino = self->next_ino++;
        ext2fs_inode_alloc_stats2(self->fs, inode->ino, +1, S_ISDIR(inode->mode));
    }
    return 0;
}

int rootfs_image_write_dirs(rootfs_image_t *self, rootfs_tree_t *tree, vmlet_err_t *err)
{
    rootfs_node_t *root = rootfs_tree_root(tree);
    if (s_number(self, root, err) < 0)
        return -1;
    for (rootfs_node_t *n = root; n; n = rootfs_tree_next(n, root))
        if (S_ISDIR(n->inode->mode) && s_write_dir(self, n, err) < 0)
            return -1;
    return 0;
}

static int s_read_full(rootfs_read_fn read, void *arg, uint8_t *buf, size_t want, vmlet_err_t *err)
{
    for (size_t got = 0; got < want;) {
        ssize_t n = read(arg, buf + got, want - got, err);
        if (n < 0)
            return -1;
        if (n == 0)
            return vmlet_err_set(err, "contents end early");
        got += (size_t)n;
    }
    return 0;
}

static int s_pwrite_full(int fd, const uint8_t *buf, size_t len, uint64_t off, vmlet_err_t *err)
{
    while (len) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return vmlet_err_errno(err, n < 0 ? errno : EIO, "write image");
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

// Streams the contents into freshly allocated runs: straight to the file,
// since libext2fs never reads these blocks back.
static int s_copy(rootfs_image_t *self, size_t n, uint64_t size, rootfs_read_fn read, void *arg,
                  vmlet_err_t *err)
{
    for (size_t i = 0; i < n && size; i++) {
        uint64_t off = self->runs[i].pblk * ROOTFS_BLOCK_SIZE;
        uint64_t left = (uint64_t)self->runs[i].len * ROOTFS_BLOCK_SIZE;
        while (left && size) {
            size_t chunk = ROOTFS_COPY_BYTES;
            if (chunk > left)
                chunk = (size_t)left;
            if (chunk > size)
                chunk = (size_t)size;
            if (s_read_full(read, arg, self->buf, chunk, err) < 0 ||
                s_pwrite_full(self->fd, self->buf, chunk, off, err) < 0)
                return -1;
            off += chunk;
            left -= chunk;
            size -= chunk;
        }
    }
    return 0;
}

static int s_write_file(rootfs_image_t *self, const rootfs_inode_t *inode, rootfs_raw_inode_t *raw,
                        rootfs_read_fn read, void *arg, vmlet_err_t *err)
{
    blk64_t blocks = (inode->size + ROOTFS_BLOCK_SIZE - 1) / ROOTFS_BLOCK_SIZE;
    size_t n;
    if (rootfs_image_alloc(self, blocks, &n, err) < 0 ||
        s_copy(self, n, inode->size, read, arg, err) < 0)
        return -1;
    errcode_t rc = ext2fs_inode_size_set(self->fs, &raw->small, inode->size);
    if (rc)
        return rootfs_ext2_fail(err, rc, "size of inode %u", inode->ino);
    return rootfs_image_map(self, inode->ino, raw, n, blocks, err);
}

// Short targets live in i_block ("fast"), longer ones in a block of their own.
static int s_write_symlink(rootfs_image_t *self, const rootfs_inode_t *inode,
                           rootfs_raw_inode_t *raw, vmlet_err_t *err)
{
    size_t len = strlen(inode->symlink);
    raw->large.i_size = (uint32_t)len;
    if (len < ROOTFS_SYMLINK_FAST) {
        memcpy(raw->large.i_block, inode->symlink, len);
        errcode_t rc =
            ext2fs_write_inode_full(self->fs, inode->ino, &raw->small, ROOTFS_INODE_SIZE);
        return rc ? rootfs_ext2_fail(err, rc, "writing inode %u", inode->ino) : 0;
    }
    size_t n;
    if (rootfs_image_alloc(self, 1, &n, err) < 0)
        return -1;
    memset(self->buf, 0, ROOTFS_BLOCK_SIZE);
    memcpy(self->buf, inode->symlink, len);
    if (s_pwrite_full(self->fd, self->buf, ROOTFS_BLOCK_SIZE,
                      self->runs[0].pblk * ROOTFS_BLOCK_SIZE, err) < 0)
        return -1;
    return rootfs_image_map(self, inode->ino, raw, n, 1, err);
}

// Device numbers in i_block as Linux reads them: the old 8:8 form when it
// fits, else the new 12:20 form in the second word.
static void s_encode_dev(struct ext2_inode_large *in, uint32_t major, uint32_t minor)
{
    if (major < 256 && minor < 256) {
        in->i_block[0] = ext2fs_cpu_to_le32(major << 8 | minor);
        in->i_block[1] = 0;
    } else {
        in->i_block[0] = 0;
        in->i_block[1] =
            ext2fs_cpu_to_le32((minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12));
    }
}

int rootfs_image_write_inode(rootfs_image_t *self, const rootfs_inode_t *inode, rootfs_read_fn read,
                             void *arg, vmlet_err_t *err)
{
    rootfs_raw_inode_t raw;
    s_base(&raw, inode, inode->nlink);
    switch (inode->mode & S_IFMT) {
    case S_IFREG:
        return s_write_file(self, inode, &raw, read, arg, err);
    case S_IFLNK:
        return s_write_symlink(self, inode, &raw, err);
    case S_IFCHR:
    case S_IFBLK:
        s_encode_dev(&raw.large, inode->rdev_major, inode->rdev_minor);
        break;
    case S_IFIFO:
    case S_IFSOCK:
        break;
    default:
        return vmlet_err_set(err, "inode %u: cannot write file type 0%o", inode->ino,
                             inode->mode & S_IFMT);
    }
    errcode_t rc = ext2fs_write_inode_full(self->fs, inode->ino, &raw.small, ROOTFS_INODE_SIZE);
    return rc ? rootfs_ext2_fail(err, rc, "writing inode %u", inode->ino) : 0;
}

int rootfs_image_set_xattrs(rootfs_image_t *self, uint32_t ino, const rootfs_xattr_t *xattrs,
                            size_t n, vmlet_err_t *err)
{
    if (n == 0)
        return 0;
    struct ext2_xattr_handle *h;
    errcode_t rc = ext2fs_xattrs_open(self->fs, ino, &h);
    if (rc)
        return rootfs_ext2_fail(err, rc, "xattrs of inode %u", ino);
    rc = ext2fs_xattrs_read(h);
    for (size_t i = 0; i < n && !rc; i++) {
        rc = ext2fs_xattr_set(h, xattrs[i].name, xattrs[i].value, xattrs[i].size);
        if (rc) {
            ext2fs_xattrs_close(&h);
            return rootfs_ext2_fail(err, rc, "xattr %s", xattrs[i].name);
        }
    }
    ext2fs_xattrs_close(&h);
    return rc ? rootfs_ext2_fail(err, rc, "xattrs of inode %u", ino) : 0;
}
