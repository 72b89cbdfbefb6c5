// `vmletctl describe pod NS/NAME`: a pod's whole story as Redis holds it:
// its spec, its images, its VM and containers, probe verdicts, the latest
// resource sample. Built as one JSON document; the text is printed from it.
#include "ctl.h"

#include "vmlet/pod_store.h"
#include "vmlet/proto/stats.pb-c.h"

#include <errno.h>
#include <string.h>

static const char *s_volume_type(const Vmlet__Volume *v)
{
    switch (v->source_case) {
    case VMLET__VOLUME__SOURCE_EMPTY_DIR:
        return "emptyDir";
    case VMLET__VOLUME__SOURCE_CONFIG_MAP:
        return "configMap";
    case VMLET__VOLUME__SOURCE_SECRET:
        return "secret";
    case VMLET__VOLUME__SOURCE_DOWNWARD_API:
        return "downwardAPI";
    case VMLET__VOLUME__SOURCE_PROJECTED:
        return "projected";
    default:
        return "unknown";
    }
}

// Where the container's image stands: built, backing off, failed, or not yet.
static cJSON *s_image_state(ctl_t *c, const Vmlet__Container *k, const redisReply *status)
{
    cJSON *o = cJSON_CreateObject();
    const char *ref = k->image_normalized;
    redisReply *r =
        ref ? vmlet_store_command(c->store, NULL, "HGET vmlet:image:%s digest", ref) : NULL;
    if (r && r->type == REDIS_REPLY_STRING) {
        ctl_add_str(o, "state", "ready");
        ctl_add_str(o, "digest", r->str);
        freeReplyObject(r);
        return o;
    }
    freeReplyObject(r);
    r = ref ? vmlet_store_command(c->store, NULL, "HMGET vmlet:image-backoff:%s attempts error",
                                  ref)
            : NULL;
    if (r && r->elements == 2 && r->element[0]->str) {
        ctl_add_str(o, "state", "backoff");
        cJSON_AddNumberToObject(o, "attempts", atoi(r->element[0]->str));
        ctl_add_str(o, "error", r->element[1]->str);
        freeReplyObject(r);
        return o;
    }
    freeReplyObject(r);
    char field[600];
    snprintf(field, sizeof field, "image:%s", k->image ? k->image : "");
    const char *failed = status ? vmlet_store_reply_field(status, field, NULL) : NULL;
    ctl_add_str(o, "state", failed ? "failed" : "missing");
    ctl_add_str(o, "error", failed); // "<reason>\t<message>" as status-reporter keeps it
    return o;
}

static void s_vm_state(cJSON *o, const char *key, const Vmlet__ContainerState *s)
{
    if (!s || s->state_case == VMLET__CONTAINER_STATE__STATE__NOT_SET)
        return;
    cJSON *st = cJSON_AddObjectToObject(o, key);
    if (s->state_case == VMLET__CONTAINER_STATE__STATE_WAITING) {
        ctl_add_str(st, "state", "waiting");
        ctl_add_str(st, "reason", s->waiting->reason);
        ctl_add_str(st, "message", s->waiting->message);
    } else if (s->state_case == VMLET__CONTAINER_STATE__STATE_RUNNING) {
        ctl_add_str(st, "state", "running");
        ctl_add_int(st, "started_unix_ms", s->running->has_started_unix_ms,
                    s->running->started_unix_ms);
    } else {
        ctl_add_str(st, "state", "terminated");
        ctl_add_int(st, "exit_code", true, s->terminated->exit_code);
        ctl_add_str(st, "reason", s->terminated->reason);
    }
}

static const Vmlet__ContainerStatus *s_status_of(const Vmlet__VmRecord *rec, const char *name)
{
    for (size_t i = 0; rec && i < rec->n_init_containers + rec->n_containers; i++) {
        const Vmlet__ContainerRecord *cr = i < rec->n_init_containers
                                               ? rec->init_containers[i]
                                               : rec->containers[i - rec->n_init_containers];
        if (cr->status && cr->status->name && strcmp(cr->status->name, name) == 0)
            return cr->status;
    }
    return NULL;
}

static cJSON *s_container(ctl_t *c, const Vmlet__Container *k, bool init,
                          const Vmlet__VmRecord *rec, const redisReply *status)
{
    cJSON *o = cJSON_CreateObject();
    ctl_add_str(o, "name", k->name);
    cJSON_AddBoolToObject(o, "init", init);
    ctl_add_str(o, "image", k->image);
    ctl_add_str(o, "reference", k->image_normalized);
    if (k->problem)
        ctl_add_str(o, "problem", k->problem->reason);
    cJSON *probes = cJSON_AddObjectToObject(o, "probes");
    const char *kinds[] = {"liveness", "readiness", "startup"};
    const Vmlet__Probe *set[] = {k->liveness_probe, k->readiness_probe, k->startup_probe};
    for (int i = 0; i < 3; i++) {
        if (!set[i])
            continue;
        char field[600];
        snprintf(field, sizeof field, "probe:%s:%s", k->name, kinds[i]);
        const char *v = status ? vmlet_store_reply_field(status, field, NULL) : NULL;
        // No verdict yet: the prober has not decided (initial delay, no VM).
        ctl_add_str(probes, kinds[i], !v ? "unknown" : strcmp(v, "1") == 0 ? "passing" : "failing");
    }
    cJSON_AddItemToObject(o, "image_state", s_image_state(c, k, status));
    const Vmlet__ContainerStatus *st = s_status_of(rec, k->name);
    if (st) {
        s_vm_state(o, "state", st->state);
        s_vm_state(o, "last_state", st->last_state);
        cJSON_AddNumberToObject(o, "restarts", st->restart_count);
        ctl_add_str(o, "container_id", st->container_id);
    }
    return o;
}

static cJSON *s_vm(const Vmlet__VmRecord *rec)
{
    cJSON *o = cJSON_CreateObject();
    ctl_add_str(o, "state", ctl_vm_state(rec->state));
    ctl_add_str(o, "reason", rec->reason);
    ctl_add_str(o, "message", rec->message);
    ctl_add_str(o, "ip", rec->pod_ip);
    ctl_add_str(o, "launcher", rec->launcher_id);
    ctl_add_int(o, "vcpus", rec->has_vcpus, rec->vcpus);
    ctl_add_int(o, "memory_bytes", rec->has_memory_bytes, rec->memory_bytes);
    ctl_add_int(o, "boots", rec->has_boots, rec->boots);
    ctl_add_int(o, "created_unix_ms", rec->has_created_unix_ms, rec->created_unix_ms);
    ctl_add_str(o, "state_dir", rec->state_dir);
    return o;
}

static cJSON *s_stats(ctl_t *c, const char *uid)
{
    char key[300];
    snprintf(key, sizeof key, "vmlet:stats:%s", uid);
    size_t len = 0;
    uint8_t *bytes = ctl_get(c, key, &len, NULL);
    Vmlet__PodStats *s = bytes ? vmlet__pod_stats__unpack(NULL, len, bytes) : NULL;
    free(bytes);
    if (!s)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    ctl_add_int(o, "sampled_unix_ms", s->has_sampled_unix_ms, s->sampled_unix_ms);
    if (s->cpu)
        ctl_add_int(o, "cpu_nano_cores", s->cpu->has_usage_nano_cores,
                    (int64_t)s->cpu->usage_nano_cores);
    if (s->memory) {
        ctl_add_int(o, "memory_working_set_bytes", s->memory->has_working_set_bytes,
                    (int64_t)s->memory->working_set_bytes);
        ctl_add_int(o, "memory_usage_bytes", s->memory->has_usage_bytes,
                    (int64_t)s->memory->usage_bytes);
    }
    vmlet__pod_stats__free_unpacked(s, NULL);
    return o;
}

static cJSON *s_document(ctl_t *c, const char *uid, const Vmlet__PodSpec *spec)
{
    cJSON *doc = cJSON_CreateObject();
    char events[800];
    ctl_add_str(doc, "namespace", spec->pod->namespace_);
    ctl_add_str(doc, "name", spec->pod->name);
    ctl_add_str(doc, "uid", uid);
    ctl_add_str(doc, "restart_policy", spec->restart_policy);
    if (spec->problem)
        ctl_add_str(doc, "problem", spec->problem->reason);
    char key[300];
    snprintf(key, sizeof key, "vmlet:status:%s", uid);
    redisReply *status = ctl_hgetall(c, key, NULL);
    Vmlet__VmRecord *rec = ctl_vm_record(c, uid, NULL);
    cJSON *list = cJSON_AddArrayToObject(doc, "containers");
    for (size_t i = 0; i < spec->n_init_containers; i++)
        cJSON_AddItemToArray(list, s_container(c, spec->init_containers[i], true, rec, status));
    for (size_t i = 0; i < spec->n_containers; i++)
        cJSON_AddItemToArray(list, s_container(c, spec->containers[i], false, rec, status));
    cJSON *vols = cJSON_AddArrayToObject(doc, "volumes");
    for (size_t i = 0; i < spec->n_volumes; i++) {
        cJSON *v = cJSON_CreateObject();
        ctl_add_str(v, "name", spec->volumes[i]->name);
        ctl_add_str(v, "type", s_volume_type(spec->volumes[i]));
        cJSON_AddItemToArray(vols, v);
    }
    cJSON_AddItemToObject(doc, "vm", rec ? s_vm(rec) : cJSON_CreateNull());
    cJSON_AddItemToObject(doc, "stats", s_stats(c, uid));
    // status-reporter posts Events to the API server; Redis keeps none.
    snprintf(events, sizeof events,
             "not kept in Redis: kubectl get events -n %s --field-selector involvedObject.name=%s",
             spec->pod->namespace_, spec->pod->name);
    ctl_add_str(doc, "events", events);
    if (rec)
        vmlet__vm_record__free_unpacked(rec, NULL);
    freeReplyObject(status);
    return doc;
}

int cmd_describe(ctl_t *c, int argc, char **argv)
{
    const char *slash = argc == 3 ? strchr(argv[2], '/') : NULL;
    if (argc != 3 || strcmp(argv[1], "pod") != 0 || !slash || slash == argv[2] || !slash[1]) {
        fprintf(c->err, "vmletctl: usage: vmletctl describe pod NAMESPACE/NAME\n");
        return CTL_USAGE;
    }
    char ns[256], uid[128];
    snprintf(ns, sizeof ns, "%.*s", (int)(slash - argv[2]), argv[2]);
    vmlet_err_t err = {0};
    int found = vmlet_pod_store_uid_of(c->store, ns, slash + 1, uid, sizeof uid, &err);
    if (found < 0)
        return ctl_fail(c, "looking the pod up", &err);
    Vmlet__PodSpec *spec = found ? vmlet_pod_store_get(c->store, uid, &err) : NULL;
    if (!spec && found && err.code != ENOENT)
        return ctl_fail(c, "reading the pod's spec", &err);
    if (!spec || !spec->pod) {
        fprintf(c->err,
                "vmletctl: pod %s is not in Redis (vmlet:pod-name:%s): it is not bound to this "
                "node, or k8s-watcher has not stored it yet; `vmletctl pods` lists the pods "
                "vmlet holds\n",
                argv[2], argv[2]);
        if (spec)
            vmlet__pod_spec__free_unpacked(spec, NULL);
        return CTL_NOT_FOUND;
    }
    cJSON *doc = s_document(c, uid, spec);
    vmlet__pod_spec__free_unpacked(spec, NULL);
    if (c->json)
        ctl_print_json(c->out, doc);
    else
        describe_print(c->out, doc);
    cJSON_Delete(doc);
    return CTL_OK;
}
