// `describe pod` as text, from the same document `-o json` prints.
#include "ctl.h"

#include <string.h>

static const char *s_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static char *s_cell(const cJSON *o, const char *key, ctl_col_fmt_t fmt, char *buf, size_t cap)
{
    return ctl_cell(cJSON_GetObjectItemCaseSensitive(o, key), fmt, buf, cap);
}

// "running", "waiting CrashLoopBackOff", "terminated exit 1 (Error)".
static void s_state(FILE *out, const char *label, const cJSON *st)
{
    if (!st)
        return;
    char code[32];
    const char *state = s_str(st, "state"), *reason = s_str(st, "reason");
    fprintf(out, "    %-11s%s", label, state);
    if (strcmp(state, "terminated") == 0)
        fprintf(out, " exit %s", s_cell(st, "exit_code", COL_TEXT, code, sizeof code));
    if (reason)
        fprintf(out, strcmp(state, "waiting") == 0 ? " %s" : " (%s)", reason);
    fprintf(out, "\n");
}

static void s_container(FILE *out, const cJSON *k)
{
    char buf[64];
    fprintf(out, "  %s%s:\n", s_str(k, "name"),
            cJSON_IsTrue(cJSON_GetObjectItem(k, "init")) ? " (init)" : "");
    const cJSON *img = cJSON_GetObjectItem(k, "image_state");
    const char *istate = s_str(img, "state");
    fprintf(out, "    %-11s%s (%s): %s", "Image:", s_str(k, "image"),
            s_str(k, "reference") ? s_str(k, "reference") : "-", istate);
    if (s_str(img, "digest"))
        fprintf(out, " %s", s_str(img, "digest"));
    if (s_str(img, "error"))
        fprintf(out, ": %s", s_str(img, "error"));
    fprintf(out, "\n");
    if (s_str(k, "problem"))
        fprintf(out, "    %-11s%s\n", "Problem:", s_str(k, "problem"));
    const cJSON *p;
    bool first = true;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(k, "probes"))
    {
        fprintf(out, "%s%s %s", first ? "    Probes:    " : ", ", p->string, p->valuestring);
        first = false;
    }
    if (!first)
        fprintf(out, "\n");
    s_state(out, "State:", cJSON_GetObjectItem(k, "state"));
    s_state(out, "Last:", cJSON_GetObjectItem(k, "last_state"));
    if (cJSON_GetObjectItem(k, "restarts"))
        fprintf(out, "    %-11s%s\n",
                "Restarts:", s_cell(k, "restarts", COL_TEXT, buf, sizeof buf));
}

static void s_vm(FILE *out, const cJSON *vm)
{
    if (!cJSON_IsObject(vm)) {
        fprintf(out, "VM:           none (no launcher took the pod: `vmletctl status` shows "
                     "the launchers)\n");
        return;
    }
    char ip[64], cpus[32], mem[32], boots[32], age[32];
    fprintf(out, "VM:           %s", s_str(vm, "state"));
    if (s_str(vm, "reason"))
        fprintf(out, " (%s: %s)", s_str(vm, "reason"),
                s_str(vm, "message") ? s_str(vm, "message") : "");
    fprintf(out, " on %s, IP %s, %s vCPU, %s, %s boots, age %s\n",
            s_str(vm, "launcher") ? s_str(vm, "launcher") : "-",
            s_cell(vm, "ip", COL_TEXT, ip, sizeof ip),
            s_cell(vm, "vcpus", COL_TEXT, cpus, sizeof cpus),
            s_cell(vm, "memory_bytes", COL_BYTES, mem, sizeof mem),
            s_cell(vm, "boots", COL_TEXT, boots, sizeof boots),
            s_cell(vm, "created_unix_ms", COL_AGE, age, sizeof age));
}

static void s_stats(FILE *out, const cJSON *st)
{
    if (!cJSON_IsObject(st)) {
        fprintf(out, "Stats:        no sample (the VM is not running, or its launcher is gone)\n");
        return;
    }
    char age[32], ws[32], usage[32], cpu[32] = "-";
    const cJSON *nano = cJSON_GetObjectItem(st, "cpu_nano_cores");
    if (cJSON_IsNumber(nano))
        snprintf(cpu, sizeof cpu, "%lldm", (long long)(nano->valuedouble / 1e6));
    fprintf(out, "Stats:        cpu %s, memory working set %s (usage %s), sampled %s ago\n", cpu,
            s_cell(st, "memory_working_set_bytes", COL_BYTES, ws, sizeof ws),
            s_cell(st, "memory_usage_bytes", COL_BYTES, usage, sizeof usage),
            s_cell(st, "sampled_unix_ms", COL_AGE, age, sizeof age));
}

void describe_print(FILE *out, const cJSON *doc)
{
    fprintf(out, "Name:         %s/%s\n", s_str(doc, "namespace"), s_str(doc, "name"));
    fprintf(out, "UID:          %s\n", s_str(doc, "uid"));
    fprintf(out, "Restart:      %s\n",
            s_str(doc, "restart_policy") ? s_str(doc, "restart_policy") : "-");
    if (s_str(doc, "problem"))
        fprintf(out, "Problem:      %s\n", s_str(doc, "problem"));
    s_vm(out, cJSON_GetObjectItem(doc, "vm"));
    fprintf(out, "Containers:\n");
    const cJSON *k;
    cJSON_ArrayForEach(k, cJSON_GetObjectItem(doc, "containers")) s_container(out, k);
    fprintf(out, "Volumes:");
    const cJSON *v;
    bool any = false;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(doc, "volumes"))
    {
        fprintf(out, "\n  %s: %s", s_str(v, "name"), s_str(v, "type"));
        any = true;
    }
    fprintf(out, "%s\n", any ? "" : "      none");
    s_stats(out, cJSON_GetObjectItem(doc, "stats"));
    fprintf(out, "Events:       %s\n", s_str(doc, "events"));
}
