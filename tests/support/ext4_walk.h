// Listing a filesystem tree, from an ext4 image (read with libext2fs, no
// mount needed) or a directory, in one form, so a test can compare what
// the image builder wrote with what another tool unpacked.
#ifndef VMLET_TEST_EXT4_WALK_H
#define VMLET_TEST_EXT4_WALK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    char *path;       // "/etc/passwd"; "/" is the root
    uint32_t mode;    // type and permission bits
    uint32_t uid, gid;
    uint64_t size;    // regular files
    uint64_t hash;    // FNV-1a of the content of regular files
    char *target;     // symlinks
    uint32_t nlink;   // regular files
    uint32_t major, minor; // devices
    char *xattrs;     // "name=value;..." sorted, user.* and security.* only
} ts_fs_entry_t;

// Sorted by path. Return 0, or -1 with a message on stderr.
int ts_ext4_list(const char *image, ts_fs_entry_t **out, size_t *n);
int ts_dir_list(const char *root, ts_fs_entry_t **out, size_t *n);
void ts_fs_free(ts_fs_entry_t *entries, size_t n);

// NULL if the two lists are the same, else a description of the first
// difference (caller frees).
char *ts_fs_diff(const ts_fs_entry_t *a, size_t na, const ts_fs_entry_t *b, size_t nb);

#endif
