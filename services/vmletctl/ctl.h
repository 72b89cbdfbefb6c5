// vmletctl's insides: the context every command gets, the command
// procedures, and the helpers they share (reading Redis, rendering).
//
//   main.c         settings, the argv split, the command table, exit codes
//   render.c       one cJSON document -> a table or JSON
//   redis_read.c   keys, values and protobuf records out of Redis
//   cmd_status.c   status          cmd_pods.c    pods, vms
//   cmd_images.c   images          cmd_describe.c describe pod (describe_text.c)
//   cmd_admin.c    drain, undrain, gc
#ifndef VMLETCTL_CTL_H
#define VMLETCTL_CTL_H

#include "vmlet/proto/envelope.pb-c.h"
#include "vmlet/store.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

// Exit codes (README.md): distinct per failure class.
#define CTL_OK 0
#define CTL_NOT_FOUND 1
#define CTL_USAGE 2
#define CTL_FAILED 3 // Redis unreachable, a request not answered...

typedef struct {
    vmlet_store_t *store; // borrowed
    const char *redis_url;
    bool json;
    int64_t wait_ms; // how long gc waits for image-builder's answer
    FILE *out;
    FILE *err;
} ctl_t;

// A command: argv[0] is its name. Returns an exit code.
typedef int(ctl_proc_t)(ctl_t *c, int argc, char **argv);
ctl_proc_t cmd_status, cmd_pods, cmd_vms, cmd_images, cmd_describe, cmd_drain, cmd_undrain, cmd_gc;

// Says what failed and what to do; returns CTL_FAILED.
int ctl_fail(ctl_t *c, const char *what, const vmlet_err_t *err);

// --- render.c ---------------------------------------------------------------------

typedef enum {
    COL_TEXT,  // strings as they are; numbers as integers; missing "-"
    COL_BYTES, // 268435456 -> 256Mi
    COL_MILLI, // CPU millicores: 500 -> 500m, 2000 -> 2
    COL_AGE,   // unix ms -> time since then: 45s, 12m, 3h, 2d
    COL_UNTIL, // unix ms -> time until then, "now" once past
} ctl_col_fmt_t;

typedef struct {
    const char *header;
    const char *key; // field of each row object
    ctl_col_fmt_t fmt;
} ctl_column_t;

// Prints rows (an array of objects) as columns aligned under their
// headers, three spaces apart as kubectl does; "No <what>." when empty.
void ctl_table(FILE *out, const cJSON *rows, const ctl_column_t *cols, size_t n_cols,
               const char *what);
// One value as a table cell would show it, into buf; returns buf.
char *ctl_cell(const cJSON *v, ctl_col_fmt_t fmt, char *buf, size_t cap);
// Prints doc as indented JSON and a newline.
void ctl_print_json(FILE *out, const cJSON *doc);
// Adds a number (unset protobuf fields are left out, so JSON shows only
// what Redis holds).
void ctl_add_int(cJSON *obj, const char *key, bool has, int64_t value);
void ctl_add_str(cJSON *obj, const char *key, const char *value); // NULL: left out

// describe_text.c: `describe pod`'s document as text.
void describe_print(FILE *out, const cJSON *doc);

// --- redis_read.c -----------------------------------------------------------------

// Every key matching pattern, sorted (caller frees with ctl_keys_free).
int ctl_scan(ctl_t *c, const char *pattern, char ***keys, size_t *n, vmlet_err_t *err);
// Members of a set, sorted.
int ctl_smembers(ctl_t *c, const char *key, char ***members, size_t *n, vmlet_err_t *err);
void ctl_keys_free(char **keys, size_t n);
// GET's bytes (caller frees; *len set), NULL with err->code ENOENT when absent.
uint8_t *ctl_get(ctl_t *c, const char *key, size_t *len, vmlet_err_t *err);
// HGETALL as a reply (caller frees with freeReplyObject); empty when absent.
redisReply *ctl_hgetall(ctl_t *c, const char *key, vmlet_err_t *err);
// The pod's VmRecord, or NULL (none, or not protobuf). Free with vmlet__vm_record__free_unpacked.
Vmlet__VmRecord *ctl_vm_record(ctl_t *c, const char *uid, vmlet_err_t *err);
// A launcher's capacity record while alive, or NULL.
Vmlet__LauncherCapacity *ctl_launcher_capacity(ctl_t *c, const char *id, vmlet_err_t *err);
// "Running", "Pending"... for a VM state.
const char *ctl_vm_state(Vmlet__VmState state);
// Restarts of all of a record's containers.
int ctl_restarts(const Vmlet__VmRecord *rec);
// Whether the launcher is drained (vmlet:launcher-drain:<id>).
bool ctl_drained(ctl_t *c, const char *id);

#endif
