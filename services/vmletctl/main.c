// vmletctl: the operator's CLI. Not a daemon: it reads what the services
// keep in Redis, prints it (tables, or JSON with -o json), and for drain
// and gc leaves a request there that the services act on.
#include "ctl.h"

#include "vmlet/config.h"

#include <stddef.h>
#include <string.h>

extern char **environ;

typedef struct {
    char *redis_url;
    char *redis_password;
    char *output;
    int64_t wait_ms;
} settings_t;

#define OPT(field) offsetof(settings_t, field)
static const vmlet_cfg_option_t options[] = {
    {"redis-url", VMLET_CFG_STRING, "redis://127.0.0.1:6379", 0, 0, NULL, OPT(redis_url),
     "the Redis the services share: redis://[[user]:password@]host[:port][/db]"},
    {"redis-password", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(redis_password),
     "Redis password (overrides one in --redis-url)"},
    {"output", VMLET_CFG_ENUM, "table", 0, 0, "table|json", OPT(output),
     "table for people, json for scripts (also -o json)"},
    {"wait", VMLET_CFG_DURATION, "10s", 0, 600000, NULL, OPT(wait_ms),
     "gc: how long to wait for image-builder to say what it freed"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

static const struct {
    const char *name;
    ctl_proc_t *proc;
} commands[] = {
    {"status", cmd_status},     {"pods", cmd_pods},
    {"vms", cmd_vms},           {"images", cmd_images},
    {"describe", cmd_describe}, {"drain", cmd_drain},
    {"undrain", cmd_undrain},   {"gc", cmd_gc},
};

static const char summary[] =
    "the operator's view of vmlet, from Redis\n\n"
    "commands:\n"
    "  status                   services alive, launchers, the node's capacity and use\n"
    "  pods                     the pods bound to the node, as vmlet sees them\n"
    "  vms                      every VM: pod, launcher, state, IP, size, pid, age\n"
    "  images                   the image index and the pulls backing off\n"
    "  describe pod NS/NAME     a pod's whole story as Redis holds it\n"
    "  drain [LAUNCHER]         the launcher takes no new pods (its VMs run on)\n"
    "  undrain [LAUNCHER]       it takes new pods again\n"
    "  gc                       image-builder removes the images no pod uses, now\n\n"
    "exit codes: 0 ok, 1 not found, 2 usage, 3 failed (Redis unreachable...)";

int ctl_fail(ctl_t *c, const char *what, const vmlet_err_t *err)
{
    fprintf(c->err,
            "vmletctl: %s: %s (Redis at %s: set --redis-url, VMLET_REDIS_URL, and "
            "--redis-password if it has one)\n",
            what, err->msg, c->redis_url);
    return CTL_FAILED;
}

// The settings' words go to the config table; the rest is the command.
// "-o X" is kubectl's spelling of --output=X.
static int s_split(int argc, char **argv, char **flags, int *n_flags, char **words, int *n_words)
{
    *n_flags = 1;
    *n_words = 0;
    flags[0] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-o") == 0 && i + 1 < argc) {
            flags[(*n_flags)++] = "--output";
            flags[(*n_flags)++] = argv[++i];
        } else if (strncmp(a, "-o", 2) == 0 && a[2]) {
            flags[(*n_flags)++] = "--output";
            flags[(*n_flags)++] = (char *)a + 2 + (a[2] == '=');
        } else if (a[0] == '-') {
            flags[(*n_flags)++] = argv[i];
            // "--name VALUE": every setting here takes a value.
            if (strncmp(a, "--", 2) == 0 && !strchr(a, '=') && strcmp(a, "--help") != 0 &&
                i + 1 < argc)
                flags[(*n_flags)++] = argv[++i];
        } else {
            words[(*n_words)++] = argv[i];
        }
    }
    return 0;
}

static int s_run(settings_t *s, int n_words, char **words)
{
    if (n_words == 0) {
        fprintf(stderr, "vmletctl: name a command (vmletctl --help lists them)\n");
        return CTL_USAGE;
    }
    ctl_proc_t *proc = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, words[0]) == 0)
            proc = commands[i].proc;
    if (!proc) {
        fprintf(stderr, "vmletctl: unknown command \"%s\" (vmletctl --help lists them)\n",
                words[0]);
        return CTL_USAGE;
    }
    vmlet_err_t err = {0};
    ctl_t c = {.redis_url = s->redis_url,
               .json = strcmp(s->output, "json") == 0,
               .wait_ms = s->wait_ms,
               .out = stdout,
               .err = stderr};
    c.store = vmlet_store_new(s->redis_url, s->redis_password, NULL, NULL, &err);
    if (!c.store || vmlet_store_ensure(c.store, &err) < 0) {
        int rc = ctl_fail(&c, "connecting to Redis", &err);
        vmlet_store_destroy(&c.store);
        return rc;
    }
    int rc = proc(&c, n_words, words);
    vmlet_store_destroy(&c.store);
    return rc;
}

int main(int argc, char *argv[])
{
    settings_t settings = {0};
    const vmlet_cfg_section_t section = {options, &settings};
    char **flags = calloc((size_t)argc + 2, sizeof *flags);
    char **words = calloc((size_t)argc + 1, sizeof *words);
    int n_flags, n_words;
    s_split(argc, argv, flags, &n_flags, words, &n_words);
    vmlet_err_t err = {0};
    int loaded = vmlet_config_load(&section, 1, n_flags, flags, environ, "vmletctl", summary, &err);
    int rc = loaded == 1 ? CTL_OK : CTL_USAGE;
    if (loaded < 0)
        fprintf(stderr, "vmletctl: %s\n", err.msg);
    else if (loaded == 0)
        rc = s_run(&settings, n_words, words);
    vmlet_config_free(&section, 1);
    free(flags);
    free(words);
    return rc;
}
