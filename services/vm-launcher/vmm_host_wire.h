// Frames between vm-launcher and vmlet-vmm-host (proto/vmm_host.proto): a
// 4-byte big-endian length and a protobuf body on a unix stream socket,
// with descriptors passed alongside in SCM_RIGHTS.
#ifndef VMLET_LAUNCHER_VMM_HOST_WIRE_H
#define VMLET_LAUNCHER_VMM_HOST_WIRE_H

#include "vmlet/err.h"

#include <stddef.h>
#include <stdint.h>

#define VMM_HOST_FRAME_MAX (64 * 1024) // a QEMU command line is a few KiB
#define VMM_HOST_FDS_MAX 2             // the VMM's output file, its network namespace

// Sends body with the n_fds descriptors (0..VMM_HOST_FDS_MAX).
int vmm_host_send(int sock, const uint8_t *body, size_t len, const int *fds, size_t n_fds,
                  vmlet_err_t *err);

// Receives one frame by deadline (vmlet_now_ms() clock). *body is the
// caller's to free; received descriptors (close-on-exec) go to fds, at
// most VMM_HOST_FDS_MAX (any beyond are closed), and *n_fds says how many.
int vmm_host_recv(int sock, int64_t deadline_ms, uint8_t **body, size_t *len,
                  int fds[VMM_HOST_FDS_MAX], size_t *n_fds, vmlet_err_t *err);

#endif
