// A container's user as runc resolves it, from the container's own
// /etc/passwd and /etc/group (never through NSS).
#ifndef VMLET_AGENT_USER_H
#define VMLET_AGENT_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define USER_GROUPS_MAX 64

typedef struct {
    uid_t uid;
    gid_t gid;
    gid_t groups[USER_GROUPS_MAX];
    size_t n_groups;
} user_ids_t;

// spec: "" (then uid/gid are used as given), "name", "uid", "name:group",
// "uid:gid" and the mixes. A user found in passwd (by name or number)
// without an explicit group brings the groups listing it as a member; the
// extra gids are added after. passwd/group: file paths (the current root's
// /etc files in a container). Returns 0, or -1 with runc's message in msg.
int user_resolve(const char *spec, uid_t uid, gid_t gid, const int64_t *extra, size_t n_extra,
                 const char *passwd, const char *group, user_ids_t *out, char *msg, size_t cap);

#endif
