// A container's user, from its own passwd and group files (see user.h).
#include "user.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[256];
    long id;  // uid or gid
    long gid; // passwd: the primary group
    char members[2048];
} entry_t;

// Splits one passwd ("name:x:uid:gid:...") or group ("name:x:gid:a,b")
// line. Returns false for comments and malformed lines.
static bool s_parse(char *line, bool passwd, entry_t *e)
{
    line[strcspn(line, "\r\n")] = '\0';
    if (!line[0] || line[0] == '#')
        return false;
    char *fields[7] = {0};
    size_t n = 0;
    char *p = line;
    while (n < 7) {
        fields[n++] = p;
        char *c = strchr(p, ':');
        if (!c)
            break;
        *c = '\0';
        p = c + 1;
    }
    if (n < (passwd ? 4u : 3u))
        return false;
    char *end;
    snprintf(e->name, sizeof e->name, "%s", fields[0]);
    e->id = strtol(fields[2], &end, 10);
    if (*end || !*fields[2] || e->id < 0)
        return false;
    e->gid = -1;
    e->members[0] = '\0';
    if (passwd) {
        e->gid = strtol(fields[3], &end, 10);
        if (*end || !*fields[3])
            return false;
    } else if (n > 3 && fields[3]) {
        snprintf(e->members, sizeof e->members, "%s", fields[3]);
    }
    return true;
}

static bool s_numeric(const char *s, long *out)
{
    if (!s || !*s)
        return false;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0)
        return false;
    *out = v;
    return true;
}

// The first entry whose name is `key`, or (when numeric) whose id is.
static bool s_find(const char *path, bool passwd, const char *key, entry_t *out)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    long num;
    bool numeric = s_numeric(key, &num);
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        entry_t e;
        if (s_parse(line, passwd, &e) && (strcmp(e.name, key) == 0 || (numeric && e.id == num))) {
            *out = e;
            found = true;
        }
    }
    fclose(f);
    return found;
}

static bool s_member(const char *members, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = members; *p;) {
        size_t n = strcspn(p, ",");
        if (n == len && strncmp(p, name, len) == 0)
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

static void s_add_group(user_ids_t *out, gid_t gid)
{
    for (size_t i = 0; i < out->n_groups; i++)
        if (out->groups[i] == gid)
            return;
    if (out->n_groups < USER_GROUPS_MAX)
        out->groups[out->n_groups++] = gid;
}

static void s_member_groups(const char *path, const char *user, user_ids_t *out)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        entry_t e;
        if (s_parse(line, false, &e) && s_member(e.members, user))
            s_add_group(out, (gid_t)e.id);
    }
    fclose(f);
}

int user_resolve(const char *spec, uid_t uid, gid_t gid, const int64_t *extra, size_t n_extra,
                 const char *passwd, const char *group, user_ids_t *out, char *msg, size_t cap)
{
    memset(out, 0, sizeof *out);
    out->uid = uid;
    out->gid = gid;
    char user_part[256] = "", group_part[256] = "";
    if (spec && *spec) {
        const char *colon = strchr(spec, ':');
        snprintf(user_part, sizeof user_part, "%.*s",
                 (int)(colon ? (size_t)(colon - spec) : strlen(spec)), spec);
        if (colon)
            snprintf(group_part, sizeof group_part, "%s", colon + 1);
    } else {
        snprintf(user_part, sizeof user_part, "%u", (unsigned)uid);
    }
    long num;
    entry_t pw;
    bool found = s_find(passwd, true, user_part, &pw);
    if (found) {
        out->uid = (uid_t)pw.id;
        if (spec && *spec)
            out->gid = (gid_t)pw.gid;
    } else if (s_numeric(user_part, &num)) {
        out->uid = (uid_t)num;
    } else {
        snprintf(msg, cap, "unable to find user %s: no matching entries in passwd file", user_part);
        return -1;
    }
    if (group_part[0]) {
        entry_t gr;
        if (s_find(group, false, group_part, &gr))
            out->gid = (gid_t)gr.id;
        else if (s_numeric(group_part, &num))
            out->gid = (gid_t)num;
        else {
            snprintf(msg, cap, "unable to find group %s: no matching entries in group file",
                     group_part);
            return -1;
        }
    } else if (found) {
        // Supplementary groups only in the implicit form, as runc.
        s_member_groups(group, pw.name, out);
    }
    for (size_t i = 0; i < n_extra; i++)
        if (extra[i] >= 0)
            s_add_group(out, (gid_t)extra[i]);
    return 0;
}
