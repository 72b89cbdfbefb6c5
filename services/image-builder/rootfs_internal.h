// Internals of rootfs_build shared by its files: the in-memory index of the
// final tree (rootfs_tree.c, rootfs_apply.c) and the ext4 image writer
// (rootfs_ext4.c, rootfs_inode.c). Not for use outside rootfs*.c.
#ifndef VMLET_IMAGE_ROOTFS_INTERNAL_H
#define VMLET_IMAGE_ROOTFS_INTERNAL_H

#include "rootfs.h"

#include <ext2fs/ext2fs.h>
#include <stdbool.h>
#include <sys/types.h>

#define ROOTFS_BLOCK_SIZE 4096u
#define ROOTFS_INODE_SIZE 256u
#define ROOTFS_NAME_MAX 255u     // one path component (ext4's limit)
#define ROOTFS_PATH_MAX 4096u    // a path or a symlink target in a layer
#define ROOTFS_LINK_MAX 65000u   // hard links to one inode (ext4's limit)
#define ROOTFS_SYMLINK_FAST 60u  // shorter targets live in the inode itself
#define ROOTFS_XATTR_IN_INODE 88 // xattr bytes that fit beside a 256-byte inode
#define ROOTFS_XATTR_MAX 4000u   // all xattrs of one entry (one 4 KiB block)

typedef struct rootfs_tree rootfs_tree_t;
typedef struct rootfs_node rootfs_node_t;
typedef struct rootfs_inode rootfs_inode_t;

// One layer entry as the tar header says it (borrowed strings).
typedef struct {
    const char *path;
    const char *hardlink; // a hard link entry's target, else NULL
    const char *symlink;  // a symlink's target, else NULL
    uint32_t mode;        // file type bits | 07777
    uint32_t uid, gid;
    int64_t mtime;
    uint32_t mtime_nsec;
    uint64_t size; // regular file contents
    uint32_t rdev_major, rdev_minor;
    uint32_t xattr_bytes; // room its xattrs take in ext4 (0 without)
} rootfs_entry_t;

// A file as it will be in the image; hard links share one.
struct rootfs_inode {
    uint64_t size; // regular file contents, or symlink target length
    uint64_t seq;  // ordinal of the providing entry in its layer
    char *symlink; // symlink target (owned), else NULL
    int64_t mtime;
    uint32_t mode, uid, gid, mtime_nsec, rdev_major, rdev_minor;
    uint32_t layer; // 1-based layer of the providing entry; 0: made up
    uint32_t nlink; // paths of the tree that name it
    uint32_t ino;   // ext4 inode number, once numbered
    uint32_t xattr_bytes;
    bool listed; // already in the sources list
};

// A path of the tree. Children: first..last through next/prev.
struct rootfs_node {
    rootfs_node_t *parent, *first, *last, *next, *prev;
    rootfs_node_t *hnext; // hash chain keyed by (parent, name)
    rootfs_inode_t *inode;
    uint32_t touched; // highest layer with an entry at or below this path
    uint32_t name_len;
    char name[];
};

// ---- rootfs_tree.c: the index itself --------------------------------------

// limits may be NULL; a zero limit means none.
rootfs_tree_t *rootfs_tree_new(const rootfs_limits_t *limits);
void rootfs_tree_destroy(rootfs_tree_t **self_p);

rootfs_node_t *rootfs_tree_root(rootfs_tree_t *self);
const rootfs_limits_t *rootfs_tree_limits(const rootfs_tree_t *self);
rootfs_node_t *rootfs_tree_lookup(rootfs_tree_t *self, rootfs_node_t *dir, const char *name,
                                  size_t len);
// A new child of dir named name that refers to inode (a reference is taken).
// Checks max_entries. Returns NULL with err set.
rootfs_node_t *rootfs_tree_add(rootfs_tree_t *self, rootfs_node_t *dir, const char *name,
                               size_t len, rootfs_inode_t *inode, vmlet_err_t *err);
// Points node at inode instead of its current one (references move).
void rootfs_tree_relink(rootfs_tree_t *self, rootfs_node_t *node, rootfs_inode_t *inode);
// Removes node and everything below it.
void rootfs_tree_remove(rootfs_tree_t *self, rootfs_node_t *node);
// Removes everything below node that no entry of `layer` put there.
void rootfs_tree_prune_lower(rootfs_tree_t *self, rootfs_node_t *dir, uint32_t layer);
// Marks node and its ancestors as touched by layer.
void rootfs_tree_touch(rootfs_node_t *node, uint32_t layer);

// A new inode (no references yet) from entry, or a plain directory when
// entry is NULL. Accounts its size against the limits.
rootfs_inode_t *rootfs_tree_new_inode(rootfs_tree_t *self, const rootfs_entry_t *entry,
                                      uint32_t layer, uint64_t seq, vmlet_err_t *err);
void rootfs_tree_ref(rootfs_inode_t *inode);
void rootfs_tree_unref(rootfs_tree_t *self, rootfs_inode_t *inode);

// Pre-order successor of node inside top's subtree, or NULL.
rootfs_node_t *rootfs_tree_next(const rootfs_node_t *node, const rootfs_node_t *top);

// After the last layer: the inodes that layer entries provide, sorted by
// (layer, seq), which is the order pass 2 meets them. Borrowed.
int rootfs_tree_finish(rootfs_tree_t *self, vmlet_err_t *err);
rootfs_inode_t *const *rootfs_tree_sources(const rootfs_tree_t *self, size_t *n);

typedef struct {
    uint64_t entries;     // paths, without the root
    uint64_t inodes;      // with the root
    uint64_t bytes;       // regular file contents
    uint64_t data_blocks; // files, slow symlinks, xattr and extent blocks
} rootfs_totals_t;
rootfs_totals_t rootfs_tree_totals(const rootfs_tree_t *self);

// ---- rootfs_apply.c: OCI changeset semantics ---------------------------------

// Applies one entry of a layer (1-based; seq counts every entry of the
// layer from 0): replacement, whiteouts, opaque directories, hard links,
// symlink-safe parents. err says what is wrong with the entry; the caller
// names the layer and entry.
int rootfs_tree_apply(rootfs_tree_t *self, uint32_t layer, uint64_t seq,
                      const rootfs_entry_t *entry, vmlet_err_t *err);

// ---- rootfs_ext4.c / rootfs_inode.c: the image ------------------------------

typedef struct rootfs_image rootfs_image_t;

// A run of consecutive blocks of one file (at most one extent long).
typedef struct {
    blk64_t pblk;
    uint32_t len;
} rootfs_run_t;

struct rootfs_image {
    ext2_filsys fs;
    int fd;             // the image file, for contents (bypasses libext2fs's cache)
    blk64_t goal;       // where the next allocation starts looking
    uint32_t next_ino;  // next inode number to hand out
    uint8_t *buf;       // ROOTFS_COPY_BYTES of staging for contents
    rootfs_run_t *runs; // result of the last rootfs_image_alloc
    size_t runs_cap;
};

#define ROOTFS_COPY_BYTES (1u << 20)
#define ROOTFS_DIR_TAIL 12u // checksum tail of each directory block

// An on-disk inode in full (the large inode plus its in-inode xattr room).
typedef union {
    struct ext2_inode_large large;
    struct ext2_inode small;
    char raw[ROOTFS_INODE_SIZE];
} rootfs_raw_inode_t;

// Fills buf with up to len bytes of the file being written. Returns the
// count, 0 at the end, or -1 with err set.
typedef ssize_t (*rootfs_read_fn)(void *arg, void *buf, size_t len, vmlet_err_t *err);

typedef struct {
    const char *name;
    const void *value;
    size_t size;
} rootfs_xattr_t;

// Creates the file at path (must not exist) and an empty ext4 file system
// in it, sized for the tree. seed (32 bytes) makes the UUID and hash seed.
rootfs_image_t *rootfs_image_create(const char *path, rootfs_tree_t *tree, const uint8_t seed[32],
                                    vmlet_err_t *err);
// Numbers every inode of the tree and writes every directory.
int rootfs_image_write_dirs(rootfs_image_t *self, rootfs_tree_t *tree, vmlet_err_t *err);
// Writes a non-directory inode; regular file contents come from read.
int rootfs_image_write_inode(rootfs_image_t *self, const rootfs_inode_t *inode, rootfs_read_fn read,
                             void *arg, vmlet_err_t *err);
int rootfs_image_set_xattrs(rootfs_image_t *self, uint32_t ino, const rootfs_xattr_t *xattrs,
                            size_t n, vmlet_err_t *err);
// Flushes and closes the file system; *bytes is the image file's size.
int rootfs_image_close(rootfs_image_t *self, uint64_t *bytes, vmlet_err_t *err);
// Releases without flushing (after a failure); safe on NULL.
void rootfs_image_destroy(rootfs_image_t **self_p);

// Directory blocks that dir's entries take (shared by sizing and writing).
uint64_t rootfs_dir_blocks(const rootfs_node_t *dir);

// Allocates count blocks as runs in self->runs; *n is how many.
int rootfs_image_alloc(rootfs_image_t *self, blk64_t count, size_t *n, vmlet_err_t *err);
// Maps the n runs of self->runs into inode (extents; i_blocks counts
// `blocks` data blocks) and writes it at ino.
int rootfs_image_map(rootfs_image_t *self, uint32_t ino, rootfs_raw_inode_t *inode, size_t n,
                     blk64_t blocks, vmlet_err_t *err);
// Sets err from a libext2fs error code; returns -1.
int rootfs_ext2_fail(vmlet_err_t *err, errcode_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
