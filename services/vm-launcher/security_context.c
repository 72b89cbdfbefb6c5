// A container's securityContext, decided as the kubelet and containerd
// decide it (see security_context.h).
#include "security_context.h"

#include "vmlet/pb.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// linux/capability.h's numbers, by their Kubernetes names.
// clang-format off
static const char *const s_caps[] = {
    /*  0 */ "CHOWN",            "DAC_OVERRIDE",     "DAC_READ_SEARCH",  "FOWNER",
    /*  4 */ "FSETID",           "KILL",             "SETGID",           "SETUID",
    /*  8 */ "SETPCAP",          "LINUX_IMMUTABLE",  "NET_BIND_SERVICE", "NET_BROADCAST",
    /* 12 */ "NET_ADMIN",        "NET_RAW",          "IPC_LOCK",         "IPC_OWNER",
    /* 16 */ "SYS_MODULE",       "SYS_RAWIO",        "SYS_CHROOT",       "SYS_PTRACE",
    /* 20 */ "SYS_PACCT",        "SYS_ADMIN",        "SYS_BOOT",         "SYS_NICE",
    /* 24 */ "SYS_RESOURCE",     "SYS_TIME",         "SYS_TTY_CONFIG",   "MKNOD",
    /* 28 */ "LEASE",            "AUDIT_WRITE",      "AUDIT_CONTROL",    "SETFCAP",
    /* 32 */ "MAC_OVERRIDE",     "MAC_ADMIN",        "SYSLOG",           "WAKE_ALARM",
    /* 36 */ "BLOCK_SUSPEND",    "AUDIT_READ",       "PERFMON",          "BPF",
    /* 40 */ "CHECKPOINT_RESTORE"};
// clang-format on

int security_cap_number(const char *name)
{
    for (size_t i = 0; name && i < sizeof s_caps / sizeof s_caps[0]; i++)
        if (strcasecmp(name, s_caps[i]) == 0)
            return (int)i;
    return -1;
}

static bool s_has_all(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(names[i], "ALL") == 0)
            return true;
    return false;
}

// Each named capability set (add) or cleared (drop); "ALL" was handled.
static uint64_t s_apply(uint64_t set, char **names, size_t n, bool add, size_t *unknown)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(names[i], "ALL") == 0)
            continue;
        int bit = security_cap_number(names[i]);
        if (bit < 0) {
            (*unknown)++;
            continue;
        }
        set = add ? set | (1ULL << bit) : set & ~(1ULL << bit);
    }
    return set;
}

uint64_t security_capabilities(const Vmlet__SecurityContext *sc, size_t *unknown)
{
    size_t ignored = 0;
    if (!unknown)
        unknown = &ignored;
    *unknown = 0;
    if (sc && sc->privileged)
        return SECURITY_ALL_CAPS; // add and drop do not apply (containerd's WithPrivileged)
    uint64_t set = SECURITY_DEFAULT_CAPS;
    const Vmlet__Capabilities *caps = sc ? sc->capabilities : NULL;
    if (!caps)
        return set;
    // "ALL" first, so single names still count: add ALL + drop CHOWN is all
    // but CHOWN; drop ALL + add NET_BIND_SERVICE is that one alone.
    if (s_has_all(caps->add, caps->n_add))
        set = SECURITY_ALL_CAPS;
    if (s_has_all(caps->drop, caps->n_drop))
        set = 0;
    set = s_apply(set, caps->add, caps->n_add, true, unknown);
    return s_apply(set, caps->drop, caps->n_drop, false, unknown);
}

// --- runAsNonRoot ----------------------------------------------------------------------

bool security_non_root_ok(const Vmlet__PodSpec *pod, const Vmlet__Container *c,
                          const char *image_user, char *msg, size_t cap)
{
    const Vmlet__SecurityContext *sc = c->security_context;
    const Vmlet__PodSecurityContext *psc = pod->security_context;
    bool non_root = sc && sc->has_run_as_non_root
                        ? sc->run_as_non_root
                        : psc && psc->has_run_as_non_root && psc->run_as_non_root;
    if (!non_root)
        return true;
    const Vmlet__PodRef *ref = pod->pod;
    // format.Pod: name_namespace(uid), quoted as Go's %q does (names
    // carry nothing that needs escaping).
    char who[400];
    snprintf(who, sizeof who, "(pod: \"%s_%s(%s)\", container: %s)", ref->name, ref->namespace_,
             ref->uid, c->name);
    bool has_user = (sc && sc->has_run_as_user) || (psc && psc->has_run_as_user);
    if (has_user) {
        int64_t uid = sc && sc->has_run_as_user ? sc->run_as_user : psc->run_as_user;
        if (uid != 0)
            return true;
        snprintf(msg, cap, "container's runAsUser breaks non-root policy %s", who);
        return false;
    }
    // The image's USER, its user part only (containerd's ImageStatus):
    // empty means root; a name cannot be checked without the image's files.
    char user[256];
    const char *u = image_user ? image_user : "";
    snprintf(user, sizeof user, "%.*s", (int)strcspn(u, ":"), u);
    char *end;
    unsigned long long uid = strtoull(user, &end, 10);
    if (user[0] && (*end || user[0] == '-' || user[0] == '+')) {
        snprintf(msg, cap,
                 "container has runAsNonRoot and image has non-numeric user (%s), cannot verify "
                 "user is non-root %s",
                 user, who);
        return false;
    }
    if (uid == 0) {
        snprintf(msg, cap, "container has runAsNonRoot and image will run as root %s", who);
        return false;
    }
    return true;
}

// --- StartContainer --------------------------------------------------------------------

// fsGroup and the pod's emptyDirs. Files volumes (configMap, secret,
// downwardAPI, projected) get it where they are written (volumes.c).
static void s_fs_group(const Vmlet__PodSpec *pod, Vmlet__StartContainer *out)
{
    const Vmlet__PodSecurityContext *psc = pod->security_context;
    if (!psc || !psc->has_fs_group || psc->fs_group < 0)
        return;
    PB_SET(out, fs_group, psc->fs_group);
    out->fs_group_empty_dirs = vmlet_xcalloc(pod->n_volumes + 1, sizeof(char *));
    for (size_t i = 0; i < pod->n_volumes; i++)
        if (pod->volumes[i]->source_case == VMLET__VOLUME__SOURCE_EMPTY_DIR &&
            pod->volumes[i]->name)
            out->fs_group_empty_dirs[out->n_fs_group_empty_dirs++] =
                vmlet_xstrdup(pod->volumes[i]->name);
}

void security_fill(const Vmlet__PodSpec *pod, const Vmlet__Container *c, Vmlet__StartContainer *out)
{
    const Vmlet__SecurityContext *sc = c->security_context;
    PB_SET(out, capabilities, security_capabilities(sc, NULL));
    // AddNoNewPrivileges: only an explicit false (the field defaults to true).
    if (sc && sc->has_allow_privilege_escalation && !sc->allow_privilege_escalation)
        PB_SET(out, no_new_privs, true);
    if (sc && sc->read_only_root_filesystem)
        PB_SET(out, read_only_root, true);
    if (sc && sc->privileged)
        PB_SET(out, privileged, true);
    s_fs_group(pod, out);
}
