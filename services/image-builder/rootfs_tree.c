// The in-memory index of an image's final tree: paths, the inodes they
// name, what each layer touched, and the totals the limits and sizing use.
#include "rootfs_internal.h"

#include "vmlet/xalloc.h"

#include <string.h>
#include <sys/stat.h>

struct rootfs_tree {
    rootfs_limits_t limits;
    rootfs_node_t *root;
    rootfs_node_t **buckets; // children of every directory, by (parent, name)
    size_t nbuckets;
    size_t nnodes;
    rootfs_totals_t totals;
    rootfs_inode_t **sources;
    size_t nsources;
};

static size_t s_hash(const rootfs_node_t *parent, const char *name, size_t len)
{
    uint64_t h = 1469598103934665603ull ^ ((uintptr_t)parent * 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

static uint64_t s_blocks_of(const rootfs_inode_t *inode)
{
    uint64_t blocks = 0;
    if (S_ISREG(inode->mode)) {
        blocks = (inode->size + ROOTFS_BLOCK_SIZE - 1) / ROOTFS_BLOCK_SIZE;
        uint64_t extents = blocks / 32768 + 2; // a run may break at group metadata
        if (extents > 4)
            blocks += extents / 340 + 1; // extent tree blocks
    } else if (S_ISLNK(inode->mode) && inode->size >= ROOTFS_SYMLINK_FAST) {
        blocks = 1;
    }
    if (inode->xattr_bytes > ROOTFS_XATTR_IN_INODE)
        blocks++;
    return blocks;
}

static void s_account(rootfs_tree_t *self, const rootfs_inode_t *inode, int sign)
{
    rootfs_totals_t *t = &self->totals;
    uint64_t bytes = S_ISREG(inode->mode) ? inode->size : 0;
    uint64_t blocks = s_blocks_of(inode);
    if (sign > 0) {
        t->inodes++;
        t->bytes += bytes;
        t->data_blocks += blocks;
    } else {
        t->inodes--;
        t->bytes -= bytes;
        t->data_blocks -= blocks;
    }
}

rootfs_inode_t *rootfs_tree_new_inode(rootfs_tree_t *self, const rootfs_entry_t *entry,
                                      uint32_t layer, uint64_t seq, vmlet_err_t *err)
{
    rootfs_inode_t *inode = vmlet_xcalloc(1, sizeof *inode);
    inode->mode = S_IFDIR | 0755;
    if (entry) {
        inode->mode = entry->mode;
        inode->uid = entry->uid;
        inode->gid = entry->gid;
        inode->mtime = entry->mtime;
        inode->mtime_nsec = entry->mtime_nsec;
        inode->rdev_major = entry->rdev_major;
        inode->rdev_minor = entry->rdev_minor;
        inode->xattr_bytes = entry->xattr_bytes;
        inode->layer = layer;
        inode->seq = seq;
        if (S_ISREG(entry->mode))
            inode->size = entry->size;
        if (S_ISLNK(entry->mode)) {
            inode->symlink = vmlet_xstrdup(entry->symlink);
            inode->size = strlen(entry->symlink);
        }
    }
    s_account(self, inode, +1);
    uint64_t max = self->limits.max_total_bytes;
    if (max && self->totals.bytes > max) {
        s_account(self, inode, -1);
        free(inode->symlink);
        free(inode);
        vmlet_err_set(err, "files hold more than max_total_bytes (%llu bytes)",
                      (unsigned long long)max);
        return NULL;
    }
    return inode;
}

void rootfs_tree_ref(rootfs_inode_t *inode)
{
    inode->nlink++;
}

void rootfs_tree_unref(rootfs_tree_t *self, rootfs_inode_t *inode)
{
    if (!inode || --inode->nlink > 0)
        return;
    s_account(self, inode, -1);
    free(inode->symlink);
    free(inode);
}

rootfs_tree_t *rootfs_tree_new(const rootfs_limits_t *limits)
{
    rootfs_tree_t *self = vmlet_xcalloc(1, sizeof *self);
    if (limits)
        self->limits = *limits;
    self->nbuckets = 1024;
    self->buckets = vmlet_xcalloc(self->nbuckets, sizeof *self->buckets);
    self->root = vmlet_xcalloc(1, sizeof *self->root);
    self->root->inode = rootfs_tree_new_inode(self, NULL, 0, 0, NULL);
    rootfs_tree_ref(self->root->inode);
    self->nnodes = 1;
    return self;
}

void rootfs_tree_destroy(rootfs_tree_t **self_p)
{
    rootfs_tree_t *self = *self_p;
    if (!self)
        return;
    rootfs_tree_remove(self, self->root);
    free(self->buckets);
    free(self->sources);
    free(self);
    *self_p = NULL;
}

rootfs_node_t *rootfs_tree_root(rootfs_tree_t *self)
{
    return self->root;
}

const rootfs_limits_t *rootfs_tree_limits(const rootfs_tree_t *self)
{
    return &self->limits;
}

rootfs_totals_t rootfs_tree_totals(const rootfs_tree_t *self)
{
    rootfs_totals_t t = self->totals;
    t.entries = self->nnodes - 1;
    return t;
}

rootfs_node_t *rootfs_tree_lookup(rootfs_tree_t *self, rootfs_node_t *dir, const char *name,
                                  size_t len)
{
    size_t b = s_hash(dir, name, len) & (self->nbuckets - 1);
    for (rootfs_node_t *n = self->buckets[b]; n; n = n->hnext)
        if (n->parent == dir && n->name_len == len && memcmp(n->name, name, len) == 0)
            return n;
    return NULL;
}

// Doubles the table when it holds as many nodes as buckets.
static void s_grow(rootfs_tree_t *self)
{
    size_t nb = self->nbuckets * 2;
    rootfs_node_t **buckets = vmlet_xcalloc(nb, sizeof *buckets);
    for (size_t i = 0; i < self->nbuckets; i++)
        for (rootfs_node_t *n = self->buckets[i], *next; n; n = next) {
            next = n->hnext;
            size_t b = s_hash(n->parent, n->name, n->name_len) & (nb - 1);
            n->hnext = buckets[b];
            buckets[b] = n;
        }
    free(self->buckets);
    self->buckets = buckets;
    self->nbuckets = nb;
}

rootfs_node_t *rootfs_tree_add(rootfs_tree_t *self, rootfs_node_t *dir, const char *name,
                               size_t len, rootfs_inode_t *inode, vmlet_err_t *err)
{
    uint64_t max = self->limits.max_entries;
    if (max && self->nnodes - 1 >= max) {
        vmlet_err_set(err, "more than max_entries (%llu) entries", (unsigned long long)max);
        return NULL;
    }
    if (self->nnodes >= self->nbuckets)
        s_grow(self);
    rootfs_node_t *node = vmlet_xcalloc(1, sizeof *node + len + 1);
    memcpy(node->name, name, len);
    node->name_len = (uint32_t)len;
    node->parent = dir;
    node->prev = dir->last;
    if (dir->last)
        dir->last->next = node;
    else
        dir->first = node;
    dir->last = node;
    size_t b = s_hash(dir, name, len) & (self->nbuckets - 1);
    node->hnext = self->buckets[b];
    self->buckets[b] = node;
    self->nnodes++;
    node->inode = inode;
    rootfs_tree_ref(inode);
    return node;
}

void rootfs_tree_relink(rootfs_tree_t *self, rootfs_node_t *node, rootfs_inode_t *inode)
{
    rootfs_tree_ref(inode);
    rootfs_tree_unref(self, node->inode);
    node->inode = inode;
}

// Takes a childless node out of its parent and the table, and frees it.
static void s_free_leaf(rootfs_tree_t *self, rootfs_node_t *node)
{
    rootfs_node_t *dir = node->parent;
    if (dir) {
        if (node->prev)
            node->prev->next = node->next;
        else
            dir->first = node->next;
        if (node->next)
            node->next->prev = node->prev;
        else
            dir->last = node->prev;
        size_t b = s_hash(dir, node->name, node->name_len) & (self->nbuckets - 1);
        rootfs_node_t **p = &self->buckets[b];
        while (*p != node)
            p = &(*p)->hnext;
        *p = node->hnext;
    }
    rootfs_tree_unref(self, node->inode);
    self->nnodes--;
    free(node);
}

// Post-order without recursion: layers choose the depth.
void rootfs_tree_remove(rootfs_tree_t *self, rootfs_node_t *node)
{
    rootfs_node_t *cur = node;
    for (;;) {
        while (cur->first)
            cur = cur->first;
        rootfs_node_t *up = cur->parent;
        bool last = cur == node;
        s_free_leaf(self, cur);
        if (last)
            return;
        cur = up;
    }
}

void rootfs_tree_prune_lower(rootfs_tree_t *self, rootfs_node_t *dir, uint32_t layer)
{
    // Visits every directory below dir that layer touched (what it did not
    // touch goes whole), without recursion.
    rootfs_node_t *cur = dir;
    while (cur) {
        for (rootfs_node_t *c = cur->first, *next; c; c = next) {
            next = c->next;
            if (c->touched < layer)
                rootfs_tree_remove(self, c);
        }
        rootfs_node_t *n = cur->first;
        while (!n && cur != dir) {
            n = cur->next;
            if (!n)
                cur = cur->parent;
        }
        cur = n;
    }
}

void rootfs_tree_touch(rootfs_node_t *node, uint32_t layer)
{
    for (rootfs_node_t *n = node; n && n->touched != layer; n = n->parent)
        n->touched = layer;
}

rootfs_node_t *rootfs_tree_next(const rootfs_node_t *node, const rootfs_node_t *top)
{
    if (node->first)
        return node->first;
    while (node != top) {
        if (node->next)
            return node->next;
        node = node->parent;
    }
    return NULL;
}

static int s_by_source(const void *a, const void *b)
{
    const rootfs_inode_t *x = *(rootfs_inode_t *const *)a, *y = *(rootfs_inode_t *const *)b;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int rootfs_tree_finish(rootfs_tree_t *self, vmlet_err_t *err)
{
    free(self->sources);
    self->sources = malloc((self->totals.inodes + 1) * sizeof *self->sources);
    if (!self->sources)
        return vmlet_err_set(err, "out of memory listing %llu inodes",
                             (unsigned long long)self->totals.inodes);
    self->nsources = 0;
    for (rootfs_node_t *n = self->root; n; n = rootfs_tree_next(n, self->root)) {
        rootfs_inode_t *inode = n->inode;
        if (inode->layer && !inode->listed) {
            inode->listed = true;
            self->sources[self->nsources++] = inode;
        }
    }
    qsort(self->sources, self->nsources, sizeof *self->sources, s_by_source);
    return 0;
}

rootfs_inode_t *const *rootfs_tree_sources(const rootfs_tree_t *self, size_t *n)
{
    *n = self->nsources;
    return self->sources;
}
