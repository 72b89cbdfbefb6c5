// A client for Firecracker's REST API on its unix socket (libcurl with
// CURLOPT_UNIX_SOCKET_PATH), with a deadline per request. Errors carry
// Firecracker's own `fault_message`:
//   "PUT /machine-config: 400: The number of vCPUs must be greater than 0 ..."
//
// API version targeted: Firecracker 1.8 (the first to declare virtio
// devices through ACPI, which Debian's cloud kernel needs, DESIGN.md §3).
// Only endpoints and fields unchanged from v1.8 on are used; the contract
// the tests check requests against is tests/contracts/firecracker-api.yaml
// (the snapshot paths, verbatim from the same upstream file, are carried by
// tests/integration/test_firecracker_api_fake.c until that excerpt has them).
//
// The end of this file declares what the backend's own two files share.
#ifndef VMLET_LAUNCHER_FIRECRACKER_API_H
#define VMLET_LAUNCHER_FIRECRACKER_API_H

#include "vmlet/err.h"
#include "vmm.h"

#include <cjson/cJSON.h>
#include <stdint.h>

#define FC_API_MIN_MAJOR 1
#define FC_API_MIN_MINOR 8

typedef struct _fc_api_t fc_api_t;

fc_api_t *fc_api_new(const char *socket_path, int timeout_ms);
void fc_api_destroy(fc_api_t **self_p);

// One request: body (borrowed, may be NULL) as JSON. Returns 0 on a 2xx
// answer and hands a JSON answer body to *out when out is not NULL (NULL
// if the body was empty; caller deletes). Anything else fills err with
// method, path, status and fault_message, and sets *status if given.
int fc_api_call(fc_api_t *self, const char *method, const char *path, const cJSON *body,
                cJSON **out, long *status, vmlet_err_t *err);

// PUT with the body, expecting 204 No Content (or another 2xx).
int fc_api_put(fc_api_t *self, const char *path, const cJSON *body, vmlet_err_t *err);
// PATCH with the body, expecting 204 No Content (or another 2xx).
int fc_api_patch(fc_api_t *self, const char *path, const cJSON *body, vmlet_err_t *err);

// The deadline of the next requests (e.g. a long one: /snapshot/create
// writes the whole guest memory).
void fc_api_set_timeout(fc_api_t *self, int timeout_ms);

// Parses `firecracker --version` output ("Firecracker v1.8.0 ..."). Returns
// 0 and the version, or -1 if the text does not look like it.
int fc_parse_version(const char *text, int *major, int *minor, int *patch);

// --- the Firecracker backend's internals -----------------------------------
// Not part of the API client: what vmm_firecracker.c (boot) and
// vmm_firecracker_snapshot.c (templates) share.

// Drive ids, in the order the guest sees the disks (vda, vdb...).
#define FC_DRIVE_ID_FMT "disk%zu"

// Starts `firecracker --api-sock` for spec outside the launcher's lifetime,
// writes its pid and state files, and waits until the API answers (by
// deadline, vmlet_now_ms() based). agent_uds: where the VM's vsock UDS will
// be (NULL: <state_dir>/agent.sock). Returns the handle of a Firecracker
// with nothing configured yet; on failure nothing is left running.
vmm_vm_t *fc_vm_launch(vmm_t *vmm, const vmm_spec_t *spec, const char *agent_uds, int64_t deadline,
                       vmlet_err_t *err);
// After a failure past fc_vm_launch: kills the process and frees the handle.
void fc_vm_abort(vmm_vm_t **vm_p);

// Templates (vmm_firecracker_snapshot.c). fc_template_begin is called by
// start for a spec with template_dir, before the VM is configured: it fills
// uds (the vsock UDS path the template VM must use) and records what the
// snapshot will bake in. The other two are the backend's template_save and
// restore ops (vmm.h).
int fc_template_begin(const vmm_spec_t *spec, char *uds, size_t cap, vmlet_err_t *err);
int fc_template_save(vmm_vm_t *vm, const char *template_dir, int timeout_ms, vmlet_err_t *err);
vmm_vm_t *fc_restore(vmm_t *vmm, const vmm_spec_t *spec, const char *template_dir,
                     vmlet_err_t *err);

#endif
