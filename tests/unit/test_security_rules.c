// A container's securityContext as the launcher decides it: the kubelet's
// runAsNonRoot verdicts and messages (container over pod, runAsUser over
// the image's USER), containerd's capability arithmetic (default set, ALL,
// add, drop, privileged), no_new_privs only for an explicit
// allowPrivilegeEscalation: false, fsGroup's emptyDirs, and that
// container_run_build refuses before it reads any Secret.
#include "testsupport.h"

#include "container_run.h"
#include "security_context.h"

#include "vmlet/pb.h"

#include <string.h>

#define BIT(n) (1ULL << (n))

static Vmlet__SecurityContext s_caps(Vmlet__Capabilities *caps, char **add, size_t n_add,
                                     char **drop, size_t n_drop)
{
    *caps = (Vmlet__Capabilities)VMLET__CAPABILITIES__INIT;
    caps->add = add, caps->n_add = n_add;
    caps->drop = drop, caps->n_drop = n_drop;
    Vmlet__SecurityContext sc = VMLET__SECURITY_CONTEXT__INIT;
    sc.capabilities = caps;
    return sc;
}

static void test_capabilities(void **state)
{
    (void)state;
    // containerd's default set, bit by bit (linux/capability.h).
    uint64_t def = BIT(0) | BIT(1) | BIT(3) | BIT(4) | BIT(5) | BIT(6) | BIT(7) | BIT(8) | BIT(10) |
                   BIT(13) | BIT(18) | BIT(27) | BIT(29) | BIT(31);
    assert_int_equal(SECURITY_DEFAULT_CAPS, def);
    assert_int_equal(security_capabilities(NULL, NULL), def);
    Vmlet__SecurityContext none = VMLET__SECURITY_CONTEXT__INIT;
    assert_int_equal(security_capabilities(&none, NULL), def);

    Vmlet__Capabilities caps;
    char *all[] = {"ALL"}, *nbs[] = {"NET_BIND_SERVICE"}, *chown_[] = {"CHOWN"};
    Vmlet__SecurityContext sc = s_caps(&caps, nbs, 1, all, 1);
    assert_int_equal(security_capabilities(&sc, NULL), BIT(10)); // drop ALL, add one
    sc = s_caps(&caps, all, 1, chown_, 1);
    assert_int_equal(security_capabilities(&sc, NULL), ~BIT(0)); // add ALL, drop one
    sc = s_caps(&caps, all, 1, all, 1);
    assert_int_equal(security_capabilities(&sc, NULL), 0); // ALL then ALL dropped
    char *lower[] = {"sys_admin", "net_admin"};
    sc = s_caps(&caps, lower, 2, NULL, 0);
    assert_int_equal(security_capabilities(&sc, NULL), def | BIT(21) | BIT(12));
    char *net_raw[] = {"NET_RAW"};
    sc = s_caps(&caps, NULL, 0, net_raw, 1);
    assert_int_equal(security_capabilities(&sc, NULL), def & ~BIT(13));
    // Unknown names are skipped (runc's way), and counted.
    char *odd[] = {"CAP_NET_ADMIN", "NOT_A_CAP", "BPF"};
    sc = s_caps(&caps, odd, 3, NULL, 0);
    size_t unknown = 0;
    assert_int_equal(security_capabilities(&sc, &unknown), def | BIT(39));
    assert_int_equal(unknown, 2);
    // privileged: everything, add and drop aside.
    sc = s_caps(&caps, NULL, 0, all, 1);
    PB_SET(&sc, privileged, true);
    assert_int_equal(security_capabilities(&sc, NULL), SECURITY_ALL_CAPS);
    assert_int_equal(security_cap_number("CHECKPOINT_RESTORE"), 40);
    assert_int_equal(security_cap_number("ALL"), -1);
}

// --- runAsNonRoot ----------------------------------------------------------------------

typedef struct {
    Vmlet__PodRef ref;
    Vmlet__PodSpec pod;
    Vmlet__PodSecurityContext psc;
    Vmlet__Container c;
    Vmlet__Container *cs[1];
    Vmlet__SecurityContext sc;
} pod_t;

static void s_pod(pod_t *p)
{
    memset(p, 0, sizeof *p);
    p->ref = (Vmlet__PodRef)VMLET__POD_REF__INIT;
    p->ref.uid = "0f3c-77", p->ref.namespace_ = "shop", p->ref.name = "web-0";
    p->pod = (Vmlet__PodSpec)VMLET__POD_SPEC__INIT;
    p->pod.pod = &p->ref;
    p->psc = (Vmlet__PodSecurityContext)VMLET__POD_SECURITY_CONTEXT__INIT;
    p->c = (Vmlet__Container)VMLET__CONTAINER__INIT;
    p->c.name = "app";
    p->cs[0] = &p->c;
    p->pod.containers = p->cs, p->pod.n_containers = 1;
    p->sc = (Vmlet__SecurityContext)VMLET__SECURITY_CONTEXT__INIT;
}

#define UNSET -1

static void test_run_as_non_root(void **state)
{
    (void)state;
    const char *who = "(pod: \"web-0_shop(0f3c-77)\", container: app)";
    struct {
        int pod_non_root, ctr_non_root; // UNSET, 0, 1
        int64_t pod_user, ctr_user;     // UNSET or a uid
        const char *image_user;
        const char *want; // NULL: may run; else the message's start
    } cases[] = {
        {UNSET, UNSET, UNSET, UNSET, "", NULL}, // no policy
        {1, UNSET, UNSET, UNSET, "", "container has runAsNonRoot and image will run as root"},
        {UNSET, 1, UNSET, UNSET, "0", "container has runAsNonRoot and image will run as root"},
        {1, UNSET, UNSET, UNSET, "0:1000", "container has runAsNonRoot and image will run as root"},
        {1, UNSET, UNSET, UNSET, "1000", NULL},
        {1, UNSET, UNSET, UNSET, "1000:0", NULL},
        {1, UNSET, UNSET, UNSET, "web",
         "container has runAsNonRoot and image has non-numeric user (web), cannot verify user "
         "is non-root"},
        {1, UNSET, UNSET, UNSET, "root:root",
         "container has runAsNonRoot and image has non-numeric user (root), cannot verify user "
         "is non-root"},
        {1, UNSET, UNSET, 0, "1000", "container's runAsUser breaks non-root policy"},
        {1, UNSET, 0, UNSET, "1000", "container's runAsUser breaks non-root policy"},
        {1, UNSET, 0, 65534, "", NULL},        // the container's runAsUser wins
        {1, UNSET, 65534, UNSET, "", NULL},    // the pod's, over a root image
        {1, UNSET, 65534, UNSET, "web", NULL}, // a name is not looked at then
        {1, 0, UNSET, UNSET, "", NULL},        // the container allows root
        {0, 1, UNSET, UNSET, "", "container has runAsNonRoot and image will run as root"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pod_t p;
        s_pod(&p);
        if (cases[i].pod_non_root != UNSET || cases[i].pod_user != UNSET) {
            p.pod.security_context = &p.psc;
            if (cases[i].pod_non_root != UNSET)
                PB_SET(&p.psc, run_as_non_root, cases[i].pod_non_root);
            if (cases[i].pod_user != UNSET)
                PB_SET(&p.psc, run_as_user, cases[i].pod_user);
        }
        if (cases[i].ctr_non_root != UNSET || cases[i].ctr_user != UNSET) {
            p.c.security_context = &p.sc;
            if (cases[i].ctr_non_root != UNSET)
                PB_SET(&p.sc, run_as_non_root, cases[i].ctr_non_root);
            if (cases[i].ctr_user != UNSET)
                PB_SET(&p.sc, run_as_user, cases[i].ctr_user);
        }
        char msg[512] = "";
        bool ok = security_non_root_ok(&p.pod, &p.c, cases[i].image_user, msg, sizeof msg);
        if (!cases[i].want) {
            if (!ok)
                fail_msg("case %zu: refused: %s", i, msg);
            continue;
        }
        if (ok)
            fail_msg("case %zu: allowed, want \"%s\"", i, cases[i].want);
        char want[512];
        snprintf(want, sizeof want, "%s %s", cases[i].want, who);
        assert_string_equal(msg, want);
    }
}

// --- StartContainer ---------------------------------------------------------------------

static int s_no_secrets(void *ctx, const char *ns, const char *name, cJSON **data, vmlet_err_t *err)
{
    (void)ctx, (void)ns, (void)name, (void)data, (void)err;
    fail_msg("a Secret was read for a container that may not run");
    return -1;
}

static void test_start_container(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p);
    char *cmd[] = {"sleep", "1"};
    p.c.command = cmd, p.c.n_command = 2;
    Vmlet__ImageConfig img = VMLET__IMAGE_CONFIG__INIT;
    run_inputs_t in = {.pod = &p.pod,
                       .container = &p.c,
                       .image = &img,
                       .hostname = "web-0",
                       .fetch_secret = s_no_secrets};
    // Nothing asked: the default set, no flags, no fsGroup.
    run_problem_t problem;
    vmlet_err_t err = {0};
    Vmlet__StartContainer *s = container_run_build(&in, &problem, &err);
    assert_non_null(s);
    assert_true(s->has_capabilities);
    assert_int_equal(s->capabilities, SECURITY_DEFAULT_CAPS);
    assert_false(s->no_new_privs || s->read_only_root || s->privileged || s->has_fs_group);
    vmlet__start_container__free_unpacked(s, NULL);

    // allowPrivilegeEscalation true sets nothing; false sets no_new_privs.
    p.c.security_context = &p.sc;
    PB_SET(&p.sc, allow_privilege_escalation, true);
    PB_SET(&p.sc, read_only_root_filesystem, true);
    s = container_run_build(&in, &problem, &err);
    assert_false(s->no_new_privs);
    assert_true(s->read_only_root);
    vmlet__start_container__free_unpacked(s, NULL);
    p.sc.allow_privilege_escalation = false;
    PB_SET(&p.sc, privileged, true);
    s = container_run_build(&in, &problem, &err);
    assert_true(s->no_new_privs && s->privileged);
    assert_int_equal(s->capabilities, SECURITY_ALL_CAPS);
    vmlet__start_container__free_unpacked(s, NULL);

    // fsGroup: the pod's emptyDirs (files volumes get it with their files).
    Vmlet__Volume vols[2] = {VMLET__VOLUME__INIT, VMLET__VOLUME__INIT};
    Vmlet__EmptyDirVolume ed = VMLET__EMPTY_DIR_VOLUME__INIT;
    Vmlet__ConfigMapVolume cm = VMLET__CONFIG_MAP_VOLUME__INIT;
    vols[0].name = "scratch", vols[0].source_case = VMLET__VOLUME__SOURCE_EMPTY_DIR;
    vols[0].empty_dir = &ed;
    vols[1].name = "config", vols[1].source_case = VMLET__VOLUME__SOURCE_CONFIG_MAP;
    vols[1].config_map = &cm;
    Vmlet__Volume *vp[] = {&vols[0], &vols[1]};
    p.pod.volumes = vp, p.pod.n_volumes = 2;
    int64_t groups[] = {3000};
    p.psc.supplemental_groups = groups, p.psc.n_supplemental_groups = 1;
    PB_SET(&p.psc, fs_group, 2000);
    p.pod.security_context = &p.psc;
    s = container_run_build(&in, &problem, &err);
    assert_true(s->has_fs_group);
    assert_int_equal(s->fs_group, 2000);
    assert_int_equal(s->n_fs_group_empty_dirs, 1);
    assert_string_equal(s->fs_group_empty_dirs[0], "scratch");
    // ...and both groups are supplementary groups.
    assert_int_equal(s->n_supplemental_groups, 2);
    bool g2000 = false, g3000 = false;
    for (size_t i = 0; i < s->n_supplemental_groups; i++)
        g2000 |= s->supplemental_groups[i] == 2000, g3000 |= s->supplemental_groups[i] == 3000;
    assert_true(g2000 && g3000);
    vmlet__start_container__free_unpacked(s, NULL);

    // runAsNonRoot over a root image: refused, in the kubelet's words,
    // before any Secret is read.
    Vmlet__EnvVar var = VMLET__ENV_VAR__INIT;
    Vmlet__KeyRef ref = VMLET__KEY_REF__INIT;
    ref.name = "db", ref.key = "password";
    var.name = "PW", var.source_case = VMLET__ENV_VAR__SOURCE_SECRET_KEY, var.secret_key = &ref;
    Vmlet__EnvVar *vars[] = {&var};
    p.c.env = vars, p.c.n_env = 1;
    PB_SET(&p.sc, run_as_non_root, true);
    assert_null(container_run_build(&in, &problem, &err));
    assert_string_equal(problem.reason, "CreateContainerConfigError");
    assert_string_equal(problem.message, "container has runAsNonRoot and image will run as root "
                                         "(pod: \"web-0_shop(0f3c-77)\", container: app)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capabilities),
        cmocka_unit_test(test_run_as_non_root),
        cmocka_unit_test(test_start_container),
    };
    return TS_RUN(tests);
}
