// The ext4 file system of an image: sized from the index, created in
// process with libext2fs (as mke2fs would, minus the journal: the image is
// read-only), block allocation and extent mapping, and closing.
#include "rootfs_internal.h"

#include "vmlet/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIN_BLOCKS 1024u // 4 MiB
#define INIT_ATTEMPTS 4

int rootfs_ext2_fail(vmlet_err_t *err, errcode_t code, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    // The table itself rather than com_err's error_message(): no global
    // registration, so builds on several threads need no set-up.
    const struct error_table *et = &et_ext2_error_table;
    if (code >= et->base && code < et->base + et->n_msgs)
        return vmlet_err_set(err, "%s: %s", what, et->msgs[code - et->base]);
    return vmlet_err_errno(err, (int)code, "%s", what);
}

uint64_t rootfs_dir_blocks(const rootfs_node_t *dir)
{
    const uint32_t limit = ROOTFS_BLOCK_SIZE - ROOTFS_DIR_TAIL;
    uint32_t pos = EXT2_DIR_REC_LEN(1) + EXT2_DIR_REC_LEN(2); // "." and ".."
    uint64_t blocks = 1;
    for (const rootfs_node_t *c = dir->first; c; c = c->next) {
        uint32_t len = EXT2_DIR_REC_LEN(c->name_len);
        if (pos + len > limit) {
            blocks++;
            pos = 0;
        }
        pos += len;
    }
    return blocks;
}

typedef struct {
    blk64_t data;    // blocks the contents and directories need
    uint64_t inodes; // inodes, reserved ones included
} need_t;

static need_t s_need(rootfs_tree_t *tree)
{
    rootfs_totals_t t = rootfs_tree_totals(tree);
    need_t need = {.data = t.data_blocks, .inodes = t.inodes + EXT2_GOOD_OLD_FIRST_INO + 16};
    rootfs_node_t *root = rootfs_tree_root(tree);
    for (rootfs_node_t *n = root; n; n = rootfs_tree_next(n, root))
        if (S_ISDIR(n->inode->mode))
            need.data += rootfs_dir_blocks(n);
    return need;
}

// A first guess at the size: contents + 10%, inode tables, group overhead.
static blk64_t s_first_guess(const need_t *need)
{
    blk64_t blocks = need->data + need->data / 10;
    blocks += need->inodes * ROOTFS_INODE_SIZE / ROOTFS_BLOCK_SIZE;
    blocks += (blocks / 32768 + 1) * 8 + 256;
    if (blocks < need->inodes + need->inodes / 8) // one block per inode: bitmap room
        blocks = need->inodes + need->inodes / 8;
    return blocks < MIN_BLOCKS ? MIN_BLOCKS : blocks;
}

static void s_params(struct ext2_super_block *p, blk64_t blocks, uint64_t inodes)
{
    memset(p, 0, sizeof *p);
    ext2fs_blocks_count_set(p, blocks);
    p->s_log_block_size = 2; // 4 KiB
    p->s_inodes_count = (uint32_t)inodes;
    p->s_rev_level = EXT2_DYNAMIC_REV;
    p->s_inode_size = ROOTFS_INODE_SIZE;
    p->s_log_groups_per_flex = 4;
    // What Debian's mke2fs.conf gives ext4, without a journal (read-only
    // image) or resize inode (never grown): all in Linux since 3.x.
    p->s_feature_compat = EXT2_FEATURE_COMPAT_EXT_ATTR | EXT2_FEATURE_COMPAT_DIR_INDEX;
    p->s_feature_incompat = EXT2_FEATURE_INCOMPAT_FILETYPE | EXT3_FEATURE_INCOMPAT_EXTENTS |
                            EXT4_FEATURE_INCOMPAT_64BIT | EXT4_FEATURE_INCOMPAT_FLEX_BG;
    p->s_feature_ro_compat = EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER |
                             EXT2_FEATURE_RO_COMPAT_LARGE_FILE | EXT4_FEATURE_RO_COMPAT_HUGE_FILE |
                             EXT4_FEATURE_RO_COMPAT_DIR_NLINK | EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE |
                             EXT4_FEATURE_RO_COMPAT_METADATA_CSUM;
}

// What mke2fs sets after ext2fs_initialize: identity, hashing, checksums.
static void s_identity(ext2_filsys fs, const uint8_t seed[32])
{
    struct ext2_super_block *sb = fs->super;
    memcpy(sb->s_uuid, seed, 16);
    sb->s_uuid[6] = (uint8_t)((sb->s_uuid[6] & 0x0f) | 0x50); // name-based UUID
    sb->s_uuid[8] = (uint8_t)((sb->s_uuid[8] & 0x3f) | 0x80);
    memcpy(sb->s_hash_seed, seed + 16, 16);
    sb->s_def_hash_version = EXT2_HASH_HALF_MD4;
    sb->s_flags |= ((char)-1 < 0) ? EXT2_FLAGS_SIGNED_HASH : EXT2_FLAGS_UNSIGNED_HASH;
    sb->s_checksum_type = EXT2_CRC32C_CHKSUM;
    sb->s_max_mnt_count = (__s16)-1;
    sb->s_checkinterval = 0;
    memcpy(sb->s_volume_name, "vmlet-rootfs", 12);
    ext2fs_init_csum_seed(fs);
}

// The reserved inodes below the first normal one are in use (the root is
// marked when written); the fresh file reads as zeros, so inode tables need
// no clearing.
static void s_reserve(ext2_filsys fs)
{
    for (ext2_ino_t ino = 1; ino < EXT2_FIRST_INO(fs->super); ino++)
        if (ino != EXT2_ROOT_INO)
            ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
    for (dgrp_t g = 0; g < fs->group_desc_count; g++)
        ext2fs_bg_flags_set(fs, g, EXT2_BG_INODE_ZEROED);
}

static int s_init(const char *path, blk64_t blocks, uint64_t inodes, const uint8_t seed[32],
                  ext2_filsys *out, vmlet_err_t *err)
{
    struct ext2_super_block params;
    s_params(&params, blocks, inodes);
    ext2_filsys fs;
    errcode_t rc = ext2fs_initialize(path, EXT2_FLAG_64BITS, &params, unix_io_manager, &fs);
    if (rc)
        return rootfs_ext2_fail(err, rc, "creating ext4 of %llu blocks, %llu inodes",
                                (unsigned long long)blocks, (unsigned long long)inodes);
    s_identity(fs, seed);
    if ((rc = ext2fs_allocate_tables(fs))) {
        ext2fs_free(fs);
        return rootfs_ext2_fail(err, rc, "allocating ext4 tables");
    }
    s_reserve(fs);
    *out = fs;
    return 0;
}

// Creates the file system, growing the guess until the contents fit.
static int s_create_fs(rootfs_image_t *self, const char *path, rootfs_tree_t *tree,
                       const uint8_t seed[32], vmlet_err_t *err)
{
    need_t need = s_need(tree);
    if (need.inodes > UINT32_MAX)
        return vmlet_err_set(err, "%llu inodes are more than ext4 holds",
                             (unsigned long long)need.inodes);
    blk64_t want = need.data + need.data / 20 + 64, blocks = s_first_guess(&need);
    for (int attempt = 0; attempt < INIT_ATTEMPTS; attempt++) {
        if (s_init(path, blocks, need.inodes, seed, &self->fs, err) < 0)
            return -1;
        blk64_t free_blocks = ext2fs_free_blocks_count(self->fs->super);
        if (free_blocks >= want)
            return 0;
        ext2fs_free(self->fs);
        self->fs = NULL;
        blocks += want - free_blocks + blocks / 8;
    }
    return vmlet_err_set(err, "could not size the image for %llu data blocks",
                         (unsigned long long)need.data);
}

// A failed create leaves no file behind.
static rootfs_image_t *s_abandon(rootfs_image_t *self, const char *path)
{
    rootfs_image_destroy(&self);
    unlink(path);
    return NULL;
}

rootfs_image_t *rootfs_image_create(const char *path, rootfs_tree_t *tree, const uint8_t seed[32],
                                    vmlet_err_t *err)
{
    rootfs_image_t *self = vmlet_xcalloc(1, sizeof *self);
    self->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (self->fd < 0) {
        vmlet_err_errno(err, errno, "create %s", path);
        free(self);
        return NULL;
    }
    self->buf = malloc(ROOTFS_COPY_BYTES);
    if (!self->buf) {
        vmlet_err_set(err, "out of memory");
        return s_abandon(self, path);
    }
    if (s_create_fs(self, path, tree, seed, err) < 0)
        return s_abandon(self, path);
    off_t size = (off_t)(ext2fs_blocks_count(self->fs->super) * ROOTFS_BLOCK_SIZE);
    if (ftruncate(self->fd, size) < 0) {
        vmlet_err_errno(err, errno, "size %s to %lld bytes", path, (long long)size);
        return s_abandon(self, path);
    }
    self->goal = self->fs->super->s_first_data_block;
    self->next_ino = EXT2_FIRST_INO(self->fs->super);
    return self;
}

int rootfs_image_close(rootfs_image_t *self, uint64_t *bytes, vmlet_err_t *err)
{
    *bytes = ext2fs_blocks_count(self->fs->super) * ROOTFS_BLOCK_SIZE;
    // Flushes the metadata and fsyncs the file, contents written through
    // self->fd included.
    errcode_t rc = ext2fs_close2(self->fs, 0);
    if (rc)
        return rootfs_ext2_fail(err, rc, "writing ext4 metadata");
    self->fs = NULL;
    int fd = self->fd;
    self->fd = -1;
    if (close(fd) < 0)
        return vmlet_err_errno(err, errno, "close image");
    return 0;
}

void rootfs_image_destroy(rootfs_image_t **self_p)
{
    rootfs_image_t *self = *self_p;
    if (!self)
        return;
    if (self->fs)
        ext2fs_free(self->fs);
    if (self->fd >= 0)
        close(self->fd);
    free(self->buf);
    free(self->runs);
    free(self);
    *self_p = NULL;
}

static void s_push_run(rootfs_image_t *self, size_t *n, blk64_t pblk, uint32_t len)
{
    if (*n == self->runs_cap) {
        self->runs_cap = self->runs_cap ? self->runs_cap * 2 : 16;
        self->runs = vmlet_xrealloc(self->runs, self->runs_cap * sizeof *self->runs);
    }
    self->runs[(*n)++] = (rootfs_run_t){pblk, len};
}

int rootfs_image_alloc(rootfs_image_t *self, blk64_t count, size_t *n, vmlet_err_t *err)
{
    ext2_filsys fs = self->fs;
    *n = 0;
    while (count) {
        if (self->goal >= ext2fs_blocks_count(fs->super))
            self->goal = fs->super->s_first_data_block;
        blk64_t pblk, plen;
        errcode_t rc = ext2fs_new_range(fs, 0, self->goal, count, NULL, &pblk, &plen);
        if (rc)
            return rootfs_ext2_fail(err, rc, "allocating %llu blocks", (unsigned long long)count);
        ext2fs_block_alloc_stats_range(fs, pblk, plen, +1);
        self->goal = pblk + plen;
        count -= plen;
        while (plen) {
            uint32_t len = plen > EXT_INIT_MAX_LEN ? EXT_INIT_MAX_LEN : (uint32_t)plen;
            s_push_run(self, n, pblk, len);
            pblk += len;
            plen -= len;
        }
    }
    return 0;
}

static int s_write_raw(rootfs_image_t *self, uint32_t ino, rootfs_raw_inode_t *inode,
                       vmlet_err_t *err)
{
    errcode_t rc = ext2fs_write_inode_full(self->fs, ino, &inode->small, ROOTFS_INODE_SIZE);
    return rc ? rootfs_ext2_fail(err, rc, "writing inode %u", ino) : 0;
}

// More than four runs: libext2fs grows an extent tree (as mk_hugefiles).
static int s_map_tree(rootfs_image_t *self, uint32_t ino, rootfs_raw_inode_t *inode, size_t n,
                      blk64_t blocks, vmlet_err_t *err)
{
    if (s_write_raw(self, ino, inode, err) < 0)
        return -1;
    ext2_extent_handle_t handle;
    errcode_t rc = ext2fs_extent_open2(self->fs, ino, &inode->small, &handle);
    if (rc)
        return rootfs_ext2_fail(err, rc, "extents of inode %u", ino);
    blk64_t lblk = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        struct ext2fs_extent e = {
            .e_pblk = self->runs[i].pblk, .e_lblk = lblk, .e_len = self->runs[i].len};
        rc = ext2fs_extent_insert(handle, EXT2_EXTENT_INSERT_AFTER, &e);
        lblk += self->runs[i].len;
    }
    ext2fs_extent_free(handle);
    if (!rc)
        rc = ext2fs_read_inode_full(self->fs, ino, &inode->small, ROOTFS_INODE_SIZE);
    if (!rc)
        rc = ext2fs_iblk_add_blocks(self->fs, &inode->small, blocks);
    if (rc)
        return rootfs_ext2_fail(err, rc, "extents of inode %u", ino);
    return s_write_raw(self, ino, inode, err);
}

int rootfs_image_map(rootfs_image_t *self, uint32_t ino, rootfs_raw_inode_t *inode, size_t n,
                     blk64_t blocks, vmlet_err_t *err)
{
    struct ext2_inode_large *in = &inode->large;
    in->i_flags |= EXT4_EXTENTS_FL;
    memset(in->i_block, 0, sizeof in->i_block);
    struct ext3_extent_header *eh = (struct ext3_extent_header *)in->i_block;
    eh->eh_magic = ext2fs_cpu_to_le16(EXT3_EXT_MAGIC);
    eh->eh_max = ext2fs_cpu_to_le16(4);
    if (n > 4)
        return s_map_tree(self, ino, inode, n, blocks, err);
    eh->eh_entries = ext2fs_cpu_to_le16((uint16_t)n);
    struct ext3_extent *ex = (struct ext3_extent *)(eh + 1);
    uint32_t lblk = 0;
    for (size_t i = 0; i < n; i++) {
        ex[i].ee_block = ext2fs_cpu_to_le32(lblk);
        ex[i].ee_len = ext2fs_cpu_to_le16((uint16_t)self->runs[i].len);
        ex[i].ee_start = ext2fs_cpu_to_le32((uint32_t)self->runs[i].pblk);
        ex[i].ee_start_hi = ext2fs_cpu_to_le16((uint16_t)(self->runs[i].pblk >> 32));
        lblk += self->runs[i].len;
    }
    errcode_t rc = ext2fs_iblk_set(self->fs, &inode->small, blocks);
    if (rc)
        return rootfs_ext2_fail(err, rc, "block count of inode %u", ino);
    return s_write_raw(self, ino, inode, err);
}
