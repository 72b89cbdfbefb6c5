// A pod's volumes for the guest: configMap and secret files with their
// modes (secrets on tmpfs), items, optional and missing objects with the
// kubelet's FailedMount words, downwardAPI, emptyDir, projected, fsGroup,
// and the kinds live updates cover. The API
// server's answers come from a table here; test_launcher reads real ones.
#include "testsupport.h"

#include "volumes.h"

#include "vmlet/pb.h"

#include <string.h>

static int s_fetch(void *ctx, const char *kind, const char *ns, const char *name,
                   object_data_t *out, vmlet_err_t *err)
{
    (void)ctx;
    memset(out, 0, sizeof *out);
    if (strcmp(name, "down") == 0)
        return vmlet_err_set(err, "GET %s/%s: connection refused", kind, name);
    if (strcmp(ns, "shop") != 0)
        return 1;
    const char *items[4][2] = {{0}};
    if (strcmp(kind, "configmaps") == 0 && strcmp(name, "cfg") == 0) {
        items[0][0] = "app.conf", items[0][1] = "port=80\n";
        items[1][0] = "mode", items[1][1] = "fast";
    } else if (strcmp(kind, "secrets") == 0 && strcmp(name, "db") == 0) {
        items[0][0] = "password", items[0][1] = "s3cret";
    } else {
        return 1;
    }
    for (int i = 0; i < 4 && items[i][0]; i++) {
        out->items = realloc(out->items, (out->n + 1) * sizeof *out->items);
        out->items[out->n++] = (object_item_t){strdup(items[i][0]), (uint8_t *)strdup(items[i][1]),
                                               strlen(items[i][1])};
    }
    return 0;
}

typedef struct {
    Vmlet__PodRef ref;
    Vmlet__PodSpec pod;
    Vmlet__Container c;
    Vmlet__Container *cs[1];
    Vmlet__Volume vols[8];
    Vmlet__Volume *vol_ptrs[8];
    run_inputs_t run;
    volume_inputs_t in;
} pod_t;

static void s_pod(pod_t *p)
{
    memset(p, 0, sizeof *p);
    p->ref = (Vmlet__PodRef)VMLET__POD_REF__INIT;
    p->ref.uid = "u1", p->ref.namespace_ = "shop", p->ref.name = "web";
    p->pod = (Vmlet__PodSpec)VMLET__POD_SPEC__INIT;
    p->pod.pod = &p->ref;
    p->c = (Vmlet__Container)VMLET__CONTAINER__INIT;
    p->c.name = "app";
    p->cs[0] = &p->c;
    p->pod.containers = p->cs, p->pod.n_containers = 1;
    for (int i = 0; i < 8; i++)
        p->vol_ptrs[i] = &p->vols[i];
    p->pod.volumes = p->vol_ptrs;
    p->run = (run_inputs_t){.pod = &p->pod, .container = &p->c, .pod_ip = "10.1.0.2",
                            .vm_memory_bytes = 1 << 30, .vm_cpu_millis = 1000};
    p->in = (volume_inputs_t){.run = &p->run, .fetch = s_fetch};
}

static Vmlet__Volume *s_vol(pod_t *p, const char *name)
{
    Vmlet__Volume *v = &p->vols[p->pod.n_volumes++];
    *v = (Vmlet__Volume)VMLET__VOLUME__INIT;
    v->name = (char *)name;
    return v;
}

static const Vmlet__GuestFile *s_file(const Vmlet__GuestVolume *v, const char *path)
{
    for (size_t i = 0; i < v->files->n_files; i++)
        if (strcmp(v->files->files[i]->path, path) == 0)
            return v->files->files[i];
    return NULL;
}

static void s_expect_file(const Vmlet__GuestVolume *v, const char *path, const char *content,
                          uint32_t mode)
{
    const Vmlet__GuestFile *f = s_file(v, path);
    if (!f)
        fail_msg("volume %s has no file %s", v->name, path);
    assert_int_equal(f->content.len, strlen(content));
    assert_memory_equal(f->content.data, content, strlen(content));
    assert_int_equal(f->mode, mode);
}

static void test_files_and_modes(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p);
    Vmlet__ConfigMapVolume cm = VMLET__CONFIG_MAP_VOLUME__INIT;
    cm.name = "cfg";
    s_vol(&p, "config")->source_case = VMLET__VOLUME__SOURCE_CONFIG_MAP;
    p.vols[0].config_map = &cm;
    Vmlet__SecretVolume sec = VMLET__SECRET_VOLUME__INIT;
    sec.secret_name = "db";
    PB_SET(&sec, default_mode, 0400);
    s_vol(&p, "creds")->source_case = VMLET__VOLUME__SOURCE_SECRET;
    p.vols[1].secret = &sec;
    Vmlet__KeyToPath item = VMLET__KEY_TO_PATH__INIT, *items[] = {&item};
    item.key = "mode", item.path = "sub/mode.txt";
    PB_SET(&item, mode, 0600);
    Vmlet__ConfigMapVolume picked = VMLET__CONFIG_MAP_VOLUME__INIT;
    picked.name = "cfg", picked.items = items, picked.n_items = 1;
    s_vol(&p, "picked")->source_case = VMLET__VOLUME__SOURCE_CONFIG_MAP;
    p.vols[2].config_map = &picked;
    Vmlet__EmptyDirVolume ed = VMLET__EMPTY_DIR_VOLUME__INIT;
    ed.medium = "Memory";
    s_vol(&p, "scratch")->source_case = VMLET__VOLUME__SOURCE_EMPTY_DIR;
    p.vols[3].empty_dir = &ed;
    Vmlet__FieldRef ip = VMLET__FIELD_REF__INIT;
    ip.field_path = "status.podIP";
    Vmlet__DownwardApiFile df = VMLET__DOWNWARD_API_FILE__INIT, *dfs[] = {&df};
    df.path = "ip", df.field = &ip;
    Vmlet__DownwardApiVolume dv = VMLET__DOWNWARD_API_VOLUME__INIT;
    dv.items = dfs, dv.n_items = 1;
    s_vol(&p, "info")->source_case = VMLET__VOLUME__SOURCE_DOWNWARD_API;
    p.vols[4].downward_api = &dv;

    Vmlet__GuestVolume **out;
    size_t n;
    run_problem_t problem;
    vmlet_err_t err = {0};
    assert_int_equal(volumes_build(&p.in, &out, &n, &problem, &err), 0);
    assert_int_equal(n, 5);
    s_expect_file(out[0], "app.conf", "port=80\n", 0644);
    s_expect_file(out[0], "mode", "fast", 0644);
    assert_false(out[0]->files->tmpfs);
    s_expect_file(out[1], "password", "s3cret", 0400);
    assert_true(out[1]->files->tmpfs); // secrets never touch a disk
    s_expect_file(out[2], "sub/mode.txt", "fast", 0600);
    assert_null(s_file(out[2], "app.conf"));
    assert_int_equal(out[3]->source_case, VMLET__GUEST_VOLUME__SOURCE_EMPTY_DIR);
    assert_true(out[3]->empty_dir->memory);
    s_expect_file(out[4], "ip", "10.1.0.2", 0644);
    volumes_free(out, n);
}

static void test_missing_objects(void **state)
{
    (void)state;
    struct {
        const char *name, *key;
        bool secret, optional;
        const char *message; // NULL: fine, the volume is just empty
    } cases[] = {
        {"absent", NULL, false, false,
         "MountVolume.SetUp failed for volume \"v\" : configmap \"absent\" not found"},
        {"absent", NULL, true, false,
         "MountVolume.SetUp failed for volume \"v\" : secret \"absent\" not found"},
        {"cfg", "nope", false, false,
         "MountVolume.SetUp failed for volume \"v\" : configmap references non-existent config "
         "key: nope"},
        {"absent", NULL, false, true, NULL},
        {"cfg", "nope", false, true, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pod_t p;
        s_pod(&p);
        Vmlet__KeyToPath item = VMLET__KEY_TO_PATH__INIT, *items[] = {&item};
        item.key = (char *)cases[i].key, item.path = "x";
        Vmlet__ConfigMapVolume cm = VMLET__CONFIG_MAP_VOLUME__INIT;
        Vmlet__SecretVolume sec = VMLET__SECRET_VOLUME__INIT;
        Vmlet__Volume *v = s_vol(&p, "v");
        if (cases[i].secret) {
            sec.secret_name = (char *)cases[i].name;
            PB_SET(&sec, optional, cases[i].optional);
            v->source_case = VMLET__VOLUME__SOURCE_SECRET, v->secret = &sec;
        } else {
            cm.name = (char *)cases[i].name;
            PB_SET(&cm, optional, cases[i].optional);
            if (cases[i].key)
                cm.items = items, cm.n_items = 1;
            v->source_case = VMLET__VOLUME__SOURCE_CONFIG_MAP, v->config_map = &cm;
        }
        Vmlet__GuestVolume **out = NULL;
        size_t n = 0;
        run_problem_t problem;
        int rc = volumes_build(&p.in, &out, &n, &problem, NULL);
        if (!cases[i].message) {
            assert_int_equal(rc, 0);
            assert_int_equal(out[0]->files->n_files, 0);
            volumes_free(out, n);
            continue;
        }
        assert_int_equal(rc, -1);
        assert_string_equal(problem.message, cases[i].message);
        assert_true(problem.retryable);
    }
    // The API server not answering is an error to retry, not the pod's problem.
    pod_t p;
    s_pod(&p);
    Vmlet__ConfigMapVolume cm = VMLET__CONFIG_MAP_VOLUME__INIT;
    cm.name = "down";
    Vmlet__Volume *v = s_vol(&p, "v");
    v->source_case = VMLET__VOLUME__SOURCE_CONFIG_MAP, v->config_map = &cm;
    Vmlet__GuestVolume **out;
    size_t n;
    run_problem_t problem;
    vmlet_err_t err = {0};
    assert_int_equal(volumes_build(&p.in, &out, &n, &problem, &err), -1);
    assert_string_equal(problem.reason, "");
    assert_non_null(strstr(err.msg, "connection refused"));
}

static void test_projected(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p);
    Vmlet__ConfigMapVolume cm = VMLET__CONFIG_MAP_VOLUME__INIT;
    cm.name = "cfg";
    Vmlet__SecretVolume sec = VMLET__SECRET_VOLUME__INIT;
    sec.secret_name = "db";
    Vmlet__VolumeProjection a = VMLET__VOLUME_PROJECTION__INIT, b = VMLET__VOLUME_PROJECTION__INIT;
    a.source_case = VMLET__VOLUME_PROJECTION__SOURCE_CONFIG_MAP, a.config_map = &cm;
    b.source_case = VMLET__VOLUME_PROJECTION__SOURCE_SECRET, b.secret = &sec;
    Vmlet__VolumeProjection *sources[] = {&a, &b};
    Vmlet__ProjectedVolume pv = VMLET__PROJECTED_VOLUME__INIT;
    pv.sources = sources, pv.n_sources = 2;
    PB_SET(&pv, default_mode, 0440);
    Vmlet__Volume *v = s_vol(&p, "all");
    v->source_case = VMLET__VOLUME__SOURCE_PROJECTED, v->projected = &pv;
    Vmlet__GuestVolume **out;
    size_t n;
    run_problem_t problem;
    assert_int_equal(volumes_build(&p.in, &out, &n, &problem, NULL), 0);
    s_expect_file(out[0], "mode", "fast", 0440);
    s_expect_file(out[0], "password", "s3cret", 0440);
    assert_true(out[0]->files->tmpfs); // a secret among them
    volumes_free(out, n);
}

// fsGroup goes with every files volume (the agent applies it at setup and
// on each update); the kinds live updates cover, and which come from the
// pod's metadata (refreshed at once on a PodDesired).
static void test_fs_group_and_kinds(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p);
    Vmlet__PodSecurityContext psc = VMLET__POD_SECURITY_CONTEXT__INIT;
    PB_SET(&psc, fs_group, 2000);
    p.pod.security_context = &psc;
    Vmlet__ConfigMapVolume cm = VMLET__CONFIG_MAP_VOLUME__INIT;
    cm.name = "cfg";
    Vmlet__Volume *v = s_vol(&p, "c");
    v->source_case = VMLET__VOLUME__SOURCE_CONFIG_MAP, v->config_map = &cm;
    Vmlet__DownwardApiFile item = VMLET__DOWNWARD_API_FILE__INIT;
    Vmlet__FieldRef field = VMLET__FIELD_REF__INIT;
    field.field_path = "metadata.name";
    item.path = "name", item.field = &field;
    Vmlet__DownwardApiFile *items[] = {&item};
    Vmlet__DownwardApiVolume dw = VMLET__DOWNWARD_API_VOLUME__INIT;
    dw.items = items, dw.n_items = 1;
    Vmlet__Volume *d = s_vol(&p, "d");
    d->source_case = VMLET__VOLUME__SOURCE_DOWNWARD_API, d->downward_api = &dw;
    Vmlet__VolumeProjection src = VMLET__VOLUME_PROJECTION__INIT;
    src.source_case = VMLET__VOLUME_PROJECTION__SOURCE_DOWNWARD_API, src.downward_api = &dw;
    Vmlet__VolumeProjection *sources[] = {&src};
    Vmlet__ProjectedVolume pv = VMLET__PROJECTED_VOLUME__INIT;
    pv.sources = sources, pv.n_sources = 1;
    Vmlet__Volume *pr = s_vol(&p, "p");
    pr->source_case = VMLET__VOLUME__SOURCE_PROJECTED, pr->projected = &pv;
    Vmlet__EmptyDirVolume ed = VMLET__EMPTY_DIR_VOLUME__INIT;
    Vmlet__Volume *e = s_vol(&p, "e");
    e->source_case = VMLET__VOLUME__SOURCE_EMPTY_DIR, e->empty_dir = &ed;

    Vmlet__GuestVolume *out = NULL;
    run_problem_t problem = {0};
    assert_int_equal(volumes_build_one(&p.in, v, &out, &problem, NULL), 0);
    assert_true(out->files->has_fs_group);
    assert_int_equal(out->files->fs_group, 2000);
    volumes_free_one(out);
    assert_int_equal(volumes_build_one(&p.in, d, &out, &problem, NULL), 0);
    s_expect_file(out, "name", "web", 0644);
    assert_int_equal(out->files->fs_group, 2000);
    volumes_free_one(out);

    assert_string_equal(volumes_kind(v), "configMap");
    assert_string_equal(volumes_kind(d), "downwardAPI");
    assert_string_equal(volumes_kind(pr), "projected");
    assert_null(volumes_kind(e));
    assert_false(volumes_from_metadata(v));
    assert_true(volumes_from_metadata(d));
    assert_true(volumes_from_metadata(pr));
    assert_false(volumes_from_metadata(e));
    p.pod.security_context = NULL; // without fsGroup, none is sent
    assert_int_equal(volumes_build_one(&p.in, v, &out, &problem, NULL), 0);
    assert_false(out->files->has_fs_group);
    volumes_free_one(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_and_modes),
        cmocka_unit_test(test_missing_objects),
        cmocka_unit_test(test_projected),
        cmocka_unit_test(test_fs_group_and_kinds),
    };
    return TS_RUN(tests);
}
