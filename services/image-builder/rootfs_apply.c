// OCI layer changeset semantics on the tree index: entries replace what
// lower layers had at their path, whiteouts and opaque directories hide
// lower layers' entries, hard links share inodes, and parents resolve
// through the image's own symlinks without ever leaving its root.
#include "rootfs_internal.h"

#include "vmlet/xalloc.h"

#include <string.h>
#include <sys/stat.h>

#define WH_PREFIX ".wh."
#define WH_META ".wh..wh."
#define WH_OPAQUE ".wh..wh..opq"
#define SYMLINK_FOLLOW_MAX 40 // as Linux's ELOOP

static bool s_starts(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

// Rewrites path in place as "a/b/c": no empty or "." components, no
// trailing slash; "" is the root. Refuses absolute paths and "..".
static int s_normalise(char *path, vmlet_err_t *err)
{
    if (path[0] == '/')
        return vmlet_err_set(err, "absolute path (layer paths are relative to the root)");
    if (strlen(path) > ROOTFS_PATH_MAX)
        return vmlet_err_set(err, "path longer than %u bytes", ROOTFS_PATH_MAX);
    char *out = path;
    for (const char *p = path; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return vmlet_err_set(err, "path leaves the root ('..' component)");
        if (len > ROOTFS_NAME_MAX)
            return vmlet_err_set(err, "name of %zu bytes (ext4 allows %u)", len, ROOTFS_NAME_MAX);
        if (len && !(len == 1 && p[0] == '.')) {
            if (out != path)
                *out++ = '/';
            memmove(out, p, len);
            out += len;
        }
        p += len + (slash ? 1 : 0);
    }
    *out = '\0';
    return 0;
}

typedef struct {
    rootfs_tree_t *tree;
    uint32_t layer;
    bool create; // make missing directories (else report them as absent)
} resolve_t;

// The child `name` of dir as a directory to walk into: made when missing
// and r->create. *out NULL: absent (only without create).
static int s_step(const resolve_t *r, rootfs_node_t *dir, const char *name, size_t len,
                  rootfs_node_t **out, vmlet_err_t *err)
{
    rootfs_node_t *child = rootfs_tree_lookup(r->tree, dir, name, len);
    if (!child && r->create) {
        rootfs_inode_t *inode = rootfs_tree_new_inode(r->tree, NULL, 0, 0, err);
        if (!inode || !(child = rootfs_tree_add(r->tree, dir, name, len, inode, err)))
            return -1;
        rootfs_tree_touch(child, r->layer);
    }
    *out = child;
    return 0;
}

// Replaces the walk's remaining components with target + "/" + rest.
static char *s_splice(const char *target, const char *rest)
{
    size_t tl = strlen(target), rl = strlen(rest);
    char *work = vmlet_xmalloc(tl + rl + 2);
    memcpy(work, target, tl);
    work[tl] = '/';
    memcpy(work + tl + 1, rest, rl + 1);
    return work;
}

// Walks the normalised directory path `dir` from the root, following the
// image's symlinks (absolute targets from the image root). *out NULL: a
// component is absent or not a directory (only without r->create).
static int s_resolve(const resolve_t *r, const char *dir, rootfs_node_t **out, vmlet_err_t *err)
{
    rootfs_node_t *root = rootfs_tree_root(r->tree), *cur = root;
    cleanup_free char *work = vmlet_xstrdup(dir);
    int follows = 0;
    for (const char *p = work; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        const char *name = p;
        p += len + (slash ? 1 : 0);
        if (len == 0 || (len == 1 && name[0] == '.'))
            continue;
        if (len == 2 && name[0] == '.' && name[1] == '.') {
            if (cur == root)
                return vmlet_err_set(err, "path leaves the root through a symlink");
            cur = cur->parent;
            continue;
        }
        if (len > ROOTFS_NAME_MAX)
            return vmlet_err_set(err, "name of %zu bytes through a symlink", len);
        rootfs_node_t *next;
        if (s_step(r, cur, name, len, &next, err) < 0)
            return -1;
        if (next && S_ISLNK(next->inode->mode)) {
            if (++follows > SYMLINK_FOLLOW_MAX)
                return vmlet_err_set(err, "too many levels of symlinks");
            const char *target = next->inode->symlink;
            if (target[0] == '/')
                cur = root;
            char *spliced = s_splice(target, p);
            free(work);
            work = spliced;
            p = work;
            continue;
        }
        if (!next || !S_ISDIR(next->inode->mode)) {
            *out = NULL;
            if (next && r->create)
                return vmlet_err_set(err, "'%.*s' is not a directory", (int)len, name);
            return 0;
        }
        cur = next;
    }
    *out = cur;
    return 0;
}

// Splits a normalised path at its last '/': *dir is "" for top-level names.
static const char *s_split(char *path, const char **dir)
{
    char *slash = strrchr(path, '/');
    if (!slash) {
        *dir = "";
        return path;
    }
    *slash = '\0';
    *dir = path;
    return slash + 1;
}

// A whiteout (".wh.<name>", or the opaque marker when name is NULL) in
// layer: hides what lower layers have there, keeps this layer's entries.
static int s_whiteout(const resolve_t *r, const char *dir, const char *name, vmlet_err_t *err)
{
    rootfs_node_t *parent;
    if (s_resolve(r, dir, &parent, err) < 0)
        return -1;
    if (!parent)
        return 0;
    if (!name) {
        rootfs_tree_prune_lower(r->tree, parent, r->layer);
        return 0;
    }
    size_t len = strlen(name);
    if (len == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return vmlet_err_set(err, "whiteout names no entry");
    rootfs_node_t *victim = rootfs_tree_lookup(r->tree, parent, name, len);
    if (!victim)
        return 0;
    if (victim->touched < r->layer)
        rootfs_tree_remove(r->tree, victim);
    else
        rootfs_tree_prune_lower(r->tree, victim, r->layer);
    return 0;
}

// Puts inode at dir/name, replacing what is there: a directory over a
// directory keeps its children, anything else drops them.
static int s_place(const resolve_t *r, rootfs_node_t *dir, const char *name, rootfs_inode_t *inode,
                   vmlet_err_t *err)
{
    size_t len = strlen(name);
    rootfs_node_t *node = rootfs_tree_lookup(r->tree, dir, name, len);
    if (node) {
        if (!(S_ISDIR(node->inode->mode) && S_ISDIR(inode->mode)))
            while (node->first)
                rootfs_tree_remove(r->tree, node->first);
        rootfs_tree_relink(r->tree, node, inode);
    } else if (!(node = rootfs_tree_add(r->tree, dir, name, len, inode, err))) {
        return -1;
    }
    rootfs_tree_touch(node, r->layer);
    return 0;
}

static int s_place_root(const resolve_t *r, rootfs_inode_t *inode)
{
    rootfs_node_t *root = rootfs_tree_root(r->tree);
    rootfs_tree_relink(r->tree, root, inode);
    rootfs_tree_touch(root, r->layer);
    return 0;
}

// The inode a hard link entry names: an existing non-directory.
static int s_link_target(const resolve_t *r, const char *target, rootfs_inode_t **out,
                         vmlet_err_t *err)
{
    cleanup_free char *path = vmlet_xstrdup(target);
    if (s_normalise(path, err) < 0)
        return vmlet_err_wrap(err, "hard link target '%s'", target);
    const char *dir;
    const char *name = s_split(path, &dir);
    resolve_t lookup = {r->tree, r->layer, false};
    rootfs_node_t *parent, *node = NULL;
    if (s_resolve(&lookup, dir, &parent, err) < 0)
        return vmlet_err_wrap(err, "hard link target '%s'", target);
    if (parent && *name)
        node = rootfs_tree_lookup(r->tree, parent, name, strlen(name));
    if (!node)
        return vmlet_err_set(err, "hard link target '%s' is not in the image", target);
    if (S_ISDIR(node->inode->mode))
        return vmlet_err_set(err, "hard link target '%s' is a directory", target);
    if (node->inode->nlink >= ROOTFS_LINK_MAX)
        return vmlet_err_set(err, "hard link target '%s' has %u links already", target,
                             ROOTFS_LINK_MAX);
    *out = node->inode;
    return 0;
}

static int s_check_entry(const rootfs_tree_t *tree, const rootfs_entry_t *e, vmlet_err_t *err)
{
    uint64_t max = rootfs_tree_limits(tree)->max_file_bytes;
    if (S_ISREG(e->mode) && !e->hardlink && max && e->size > max)
        return vmlet_err_set(err, "file is %llu bytes, over max_file_bytes (%llu)",
                             (unsigned long long)e->size, (unsigned long long)max);
    if (S_ISLNK(e->mode) && !e->hardlink &&
        (!e->symlink || !*e->symlink || strlen(e->symlink) >= ROOTFS_PATH_MAX))
        return vmlet_err_set(err, "symlink target is empty or longer than %u bytes",
                             ROOTFS_PATH_MAX - 1);
    if (e->xattr_bytes > ROOTFS_XATTR_MAX)
        return vmlet_err_set(err, "xattrs take %u bytes (at most %u fit in ext4 here)",
                             e->xattr_bytes, ROOTFS_XATTR_MAX);
    return 0;
}

// A plain entry or hard link at dir/name.
static int s_entry(const resolve_t *r, uint64_t seq, const char *dir, const char *name,
                   const rootfs_entry_t *e, vmlet_err_t *err)
{
    rootfs_inode_t *inode = NULL;
    if (e->hardlink) {
        if (s_link_target(r, e->hardlink, &inode, err) < 0)
            return -1;
    } else if (!(inode = rootfs_tree_new_inode(r->tree, e, r->layer, seq, err))) {
        return -1;
    }
    rootfs_tree_ref(inode); // held while the tree below may change
    int rc = -1;
    rootfs_node_t *parent;
    if (!*name && !S_ISDIR(inode->mode))
        vmlet_err_set(err, "the root must be a directory");
    else if (!*name) // the root's own entry, "./": new metadata, same children
        rc = s_place_root(r, inode);
    else if (s_resolve(r, dir, &parent, err) == 0)
        rc = s_place(r, parent, name, inode, err);
    rootfs_tree_unref(r->tree, inode);
    return rc;
}

// Classifies a name as a whiteout. Returns 1 for ".wh.<x>" (*victim = x),
// 2 for the opaque marker, 3 for other ".wh..wh." metadata, 0 otherwise.
static int s_whiteout_kind(const char *name, const char **victim)
{
    size_t len = strlen(name);
    if (strcmp(name, WH_OPAQUE) == 0)
        return 2;
    if (s_starts(name, len, WH_META))
        return 3;
    if (s_starts(name, len, WH_PREFIX)) {
        *victim = name + strlen(WH_PREFIX);
        return 1;
    }
    return 0;
}

// Whiteout names are markers, never directories: entries below aufs's
// ".wh..wh." metadata directories are skipped (1), others refused.
static int s_check_parents(const char *dir, vmlet_err_t *err)
{
    for (const char *p = dir; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (s_starts(p, len, WH_META))
            return 1;
        if (s_starts(p, len, WH_PREFIX))
            return vmlet_err_set(err, "whiteout name '%.*s' used as a directory", (int)len, p);
        p += len + (slash ? 1 : 0);
    }
    return 0;
}

int rootfs_tree_apply(rootfs_tree_t *self, uint32_t layer, uint64_t seq,
                      const rootfs_entry_t *entry, vmlet_err_t *err)
{
    if (s_check_entry(self, entry, err) < 0)
        return -1;
    cleanup_free char *path = vmlet_xstrdup(entry->path);
    if (s_normalise(path, err) < 0)
        return -1;
    const char *dir;
    const char *name = s_split(path, &dir);
    int skip = s_check_parents(dir, err);
    if (skip)
        return skip < 0 ? -1 : 0;
    resolve_t r = {self, layer, true};
    const char *victim = NULL;
    switch (s_whiteout_kind(name, &victim)) {
    case 1:
        r.create = false;
        return s_whiteout(&r, dir, victim, err);
    case 2:
        r.create = false;
        return s_whiteout(&r, dir, NULL, err);
    case 3:
        return 0;
    }
    return s_entry(&r, seq, dir, name, entry, err);
}
