// Commands that change something: `drain`/`undrain` a launcher (a key its
// LaunchRequest handler checks) and `gc` (a request image-builder serves
// between pulls). Both speak through Redis, so they need no route to the
// services themselves.
#include "ctl.h"

#include "vmlet/timeutil.h"

#include <string.h>
#include <unistd.h>

// The launcher named, or the only one there is. Returns an exit code.
static int s_launcher(ctl_t *c, int argc, char **argv, char *id, size_t cap)
{
    vmlet_err_t err = {0};
    char **ids;
    size_t n;
    if (ctl_smembers(c, "vmlet:launchers", &ids, &n, &err) < 0)
        return ctl_fail(c, "listing the launchers", &err);
    char known[1024] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                 ids[i]);
    int rc = CTL_OK;
    if (argc == 2) {
        bool found = false;
        for (size_t i = 0; i < n && !found; i++)
            found = strcmp(ids[i], argv[1]) == 0;
        if (!found) {
            fprintf(c->err,
                    "vmletctl: no launcher \"%s\" ever announced itself (vmlet:launchers "
                    "holds: %s)\n",
                    argv[1], n ? known : "none");
            rc = CTL_NOT_FOUND;
        }
        snprintf(id, cap, "%s", argv[1]);
    } else if (n == 1) {
        snprintf(id, cap, "%s", ids[0]);
    } else {
        fprintf(c->err, "vmletctl: usage: vmletctl %s LAUNCHER (%s)\n", argv[0],
                n ? known : "no launcher announced itself yet");
        rc = n ? CTL_USAGE : CTL_NOT_FOUND;
    }
    ctl_keys_free(ids, n);
    return rc;
}

static int s_drain(ctl_t *c, int argc, char **argv, bool drain)
{
    if (argc > 2) {
        fprintf(c->err, "vmletctl: usage: vmletctl %s [LAUNCHER]\n", argv[0]);
        return CTL_USAGE;
    }
    char id[256];
    int rc = s_launcher(c, argc, argv, id, sizeof id);
    if (rc != CTL_OK)
        return rc;
    vmlet_err_t err = {0};
    redisReply *r = drain ? vmlet_store_command(c->store, &err, "SET vmlet:launcher-drain:%s %lld",
                                                id, (long long)vmlet_unix_ms())
                          : vmlet_store_command(c->store, &err, "DEL vmlet:launcher-drain:%s", id);
    if (!r)
        return ctl_fail(c, drain ? "marking the launcher drained" : "clearing the drain", &err);
    freeReplyObject(r);
    if (c->json) {
        cJSON *doc = cJSON_CreateObject();
        ctl_add_str(doc, "launcher", id);
        cJSON_AddBoolToObject(doc, "draining", drain);
        ctl_print_json(c->out, doc);
        cJSON_Delete(doc);
    } else if (drain) {
        fprintf(c->out,
                "launcher %s drained: it takes no new pods, its VMs run on "
                "(undo: vmletctl undrain %s)\n",
                id, id);
    } else {
        fprintf(c->out, "launcher %s takes new pods again\n", id);
    }
    return CTL_OK;
}

int cmd_drain(ctl_t *c, int argc, char **argv)
{
    return s_drain(c, argc, argv, true);
}

int cmd_undrain(ctl_t *c, int argc, char **argv)
{
    return s_drain(c, argc, argv, false);
}

// image-builder's answer to our request, if it came: 1, 0 not yet, -1 error.
static int s_gc_answer(ctl_t *c, const char *id, cJSON *doc, vmlet_err_t *err)
{
    redisReply *r = ctl_hgetall(c, "vmlet:image-gc-result", err);
    if (!r)
        return -1;
    const char *request = vmlet_store_reply_field(r, "request", NULL);
    int answered = request && strcmp(request, id) == 0;
    if (answered) {
        const char *fields[] = {"freed_bytes", "images_removed"};
        for (int i = 0; i < 2; i++) {
            const char *v = vmlet_store_reply_field(r, fields[i], NULL);
            cJSON_AddNumberToObject(doc, fields[i], v ? (double)atoll(v) : 0);
        }
        ctl_add_str(doc, "builder", vmlet_store_reply_field(r, "builder", NULL));
    }
    freeReplyObject(r);
    return answered;
}

int cmd_gc(ctl_t *c, int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(c->err, "vmletctl: gc takes no arguments (see --wait)\n");
        return CTL_USAGE;
    }
    char id[40];
    snprintf(id, sizeof id, "%lld-%d", (long long)vmlet_unix_ms(), (int)getpid());
    vmlet_err_t err = {0};
    redisReply *r = vmlet_store_command(c->store, &err, "SET vmlet:image-gc-request %s", id);
    if (!r)
        return ctl_fail(c, "asking image-builder to collect", &err);
    freeReplyObject(r);
    cJSON *doc = cJSON_CreateObject();
    ctl_add_str(doc, "request", id);
    int answered = 0;
    int64_t deadline = vmlet_now_ms() + c->wait_ms;
    while ((answered = s_gc_answer(c, id, doc, &err)) == 0 && vmlet_now_ms() < deadline)
        usleep(100 * 1000);
    if (answered < 0) {
        cJSON_Delete(doc);
        return ctl_fail(c, "reading image-builder's answer", &err);
    }
    cJSON_AddBoolToObject(doc, "answered", answered);
    if (c->json) {
        ctl_print_json(c->out, doc);
    } else if (answered) {
        char freed[32], builder[256];
        fprintf(c->out, "image-builder %s removed %d unused images, freeing %s\n",
                ctl_cell(cJSON_GetObjectItem(doc, "builder"), COL_TEXT, builder, sizeof builder),
                cJSON_GetObjectItem(doc, "images_removed")->valueint,
                ctl_cell(cJSON_GetObjectItem(doc, "freed_bytes"), COL_BYTES, freed, sizeof freed));
    } else {
        fprintf(c->out,
                "asked image-builder to collect unused images (vmlet:image-gc-request "
                "%s); no answer within %llds: none is running, or it is pulling (it "
                "collects between pulls); `vmletctl images` shows what is left\n",
                id, (long long)(c->wait_ms / 1000));
    }
    cJSON_Delete(doc);
    return CTL_OK;
}
