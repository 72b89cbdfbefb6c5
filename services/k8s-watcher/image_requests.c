// ImageRequests for a pod's missing images, with its pull credentials (see image_requests.h).
#include "image_requests.h"

#include "vmlet/base64.h"
#include "vmlet/image_ref.h"
#include "vmlet/pb.h"

#include <cjson/cJSON.h>
#include <string.h>

// "https://index.docker.io/v1/" -> "docker.io"; "http://h:5000/x" -> "h:5000".
static void s_registry_key(const char *key, char *out, size_t cap)
{
    const char *p = strstr(key, "://") ? strstr(key, "://") + 3 : key;
    size_t n = strcspn(p, "/");
    snprintf(out, cap, "%.*s", (int)n, p);
    if (strcmp(out, "index.docker.io") == 0 || strcmp(out, "registry-1.docker.io") == 0)
        snprintf(out, cap, "docker.io");
}

// username and password from "auth" (base64 "user:pass").
static void s_split_auth(const char *auth, char **username, char **password)
{
    char *plain = vmlet_base64_decode(auth);
    char *colon = plain ? strchr(plain, ':') : NULL;
    if (colon) {
        *username = vmlet_xstrndup(plain, (size_t)(colon - plain));
        *password = vmlet_xstrdup(colon + 1);
    }
    if (plain)
        explicit_bzero(plain, strlen(plain));
    free(plain);
}

int dockercfg_find(const char *json, const char *registry, char **username, char **password,
                   char **identity_token)
{
    *username = *password = *identity_token = NULL;
    cJSON *doc = cJSON_Parse(json);
    const cJSON *auths = cJSON_GetObjectItemCaseSensitive(doc, "auths");
    if (!cJSON_IsObject(auths)) {
        cJSON_Delete(doc);
        return -1;
    }
    int found = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, auths)
    {
        char key[512];
        s_registry_key(entry->string, key, sizeof key);
        if (found || strcmp(key, registry) != 0)
            continue;
        found = 1;
        const char *auth = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(entry, "auth"));
        *username = vmlet_xstrdup(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(entry, "username")));
        *password = vmlet_xstrdup(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(entry, "password")));
        *identity_token = vmlet_xstrdup(
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(entry, "identitytoken")));
        if (!*username && auth)
            s_split_auth(auth, username, password);
    }
    cJSON_Delete(doc);
    return found;
}

// Adds to req the credentials a pull secret holds for the registry.
static void s_add_credentials(Vmlet__ImageRequest *req, const Vmlet__KeyRef *secret,
                              const char *registry, const pod_resolver_t *secrets)
{
    const cJSON *data = NULL;
    vmlet_err_t err = {0};
    if (secrets->secret(secrets->arg, secret->namespace_, secret->name, &data, &err) !=
        RESOLVE_FOUND)
        return; // a missing pull secret: the pull goes anonymous, as the kubelet's would
    const char *encoded =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, ".dockerconfigjson"));
    char *json = encoded ? vmlet_base64_decode(encoded) : NULL;
    char *user, *pass, *token;
    if (json && dockercfg_find(json, registry, &user, &pass, &token) == 1) {
        Vmlet__RegistryCredential *c =
            PB_NEW(Vmlet__RegistryCredential, VMLET__REGISTRY_CREDENTIAL__INIT);
        c->registry = vmlet_xstrdup(registry);
        c->username = user, c->password = pass, c->identity_token = token;
        req->credentials = vmlet_xrealloc(req->credentials,
                                          (req->n_credentials + 1) * sizeof *req->credentials);
        req->credentials[req->n_credentials++] = c;
    }
    if (json)
        explicit_bzero(json, strlen(json));
    free(json);
}

// Is the image in the index already?
static bool s_ready(vmlet_store_t *store, const char *reference)
{
    redisReply *r = vmlet_store_command(store, NULL, "HEXISTS vmlet:image:%s digest", reference);
    bool ready = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return ready;
}

static void s_request(vmlet_bus_client_t *client, const Vmlet__PodSpec *spec,
                      const Vmlet__Container *c, const pod_resolver_t *secrets, vmlet_log_t *log)
{
    vmlet_image_ref_t ref;
    if (vmlet_image_ref_parse(c->image, &ref, NULL) < 0)
        return;
    Vmlet__ImageRequest *req = PB_NEW(Vmlet__ImageRequest, VMLET__IMAGE_REQUEST__INIT);
    req->image = vmlet_xstrdup(c->image);
    req->pull_policy = vmlet_xstrdup(c->image_pull_policy ? c->image_pull_policy : "IfNotPresent");
    req->requested_by = PB_NEW(Vmlet__PodRef, VMLET__POD_REF__INIT);
    req->requested_by->uid = vmlet_xstrdup(spec->pod->uid);
    req->requested_by->namespace_ = vmlet_xstrdup(spec->pod->namespace_);
    req->requested_by->name = vmlet_xstrdup(spec->pod->name);
    for (size_t i = 0; i < spec->n_image_pull_secrets; i++)
        s_add_credentials(req, spec->image_pull_secrets[i], ref.domain, secrets);
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_IMAGE_REQUEST;
    env.image_request = req;
    char item[1100];
    snprintf(item, sizeof item, "image/%s", ref.normalized);
    vmlet_err_t err = {0};
    if (vmlet_bus_submit(client, VMLET_QUEUE_IMAGE_BUILDER, &env, item, &err) < 0)
        vmlet_log_warn(log, VMLET_KV({"image", ref.normalized}), "%s", err.msg);
    for (size_t i = 0; i < req->n_credentials; i++)
        if (req->credentials[i]->password)
            explicit_bzero(req->credentials[i]->password, strlen(req->credentials[i]->password));
    vmlet__image_request__free_unpacked(req, NULL);
    vmlet_image_ref_clear(&ref);
}

bool image_requests_send(vmlet_bus_client_t *client, vmlet_store_t *store,
                         const Vmlet__PodSpec *spec, const pod_resolver_t *secrets, bool new_spec,
                         vmlet_log_t *log)
{
    bool all_ready = true;
    for (size_t i = 0; i < spec->n_init_containers + spec->n_containers; i++) {
        const Vmlet__Container *c = i < spec->n_init_containers
                                        ? spec->init_containers[i]
                                        : spec->containers[i - spec->n_init_containers];
        if (!c->image_normalized)
            continue; // a bad name is the pod's problem already
        bool always = new_spec && c->image_pull_policy && !strcmp(c->image_pull_policy, "Always");
        if (s_ready(store, c->image_normalized) && !always)
            continue;
        all_ready = all_ready && always; // asked again, but present
        s_request(client, spec, c, secrets, log);
    }
    return all_ready;
}
