// The kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go) for the
// files volumes (configMap, secret, downwardAPI, projected): the data lives
// in a timestamped directory `..2026_11_27_01_02_03.123456789`, `..data`
// is a symlink to it, and each top-level entry the user sees is a symlink
// `<name> -> ..data/<name>`. An update writes a new timestamped directory,
// swaps `..data` in one rename, adds and removes top-level links, and
// then the old directory goes: a reader sees the old content or the new,
// never a mix, and a subPath bind of a file keeps the content it had.
#ifndef VMLET_AGENT_ATOMIC_WRITE_H
#define VMLET_AGENT_ATOMIC_WRITE_H

#include "vmlet/err.h"
#include "vmlet/proto/guest.pb-c.h"

#include <stddef.h>
#include <stdint.h>

#define ATOMIC_DATA_LINK "..data"
#define ATOMIC_DATA_TMP "..data_tmp"

// Makes the user-visible content of dir (an existing directory the agent
// owns) exactly files: each path relative, without "..", its first
// component not starting with ".."; mode (default_mode when 0). fs_group
// >= 0: everything is group-owned by it, files group-readable and
// directories setgid, as the kubelet's SetVolumeOwnership does for a
// read-only volume. Returns 0 with old (cap bytes) naming the data
// directory ..data pointed to before ("" if none), or -1 with err and the
// old content intact (a failure after the swap is logged: the new content
// is in place).
//
// The kubelet removes the old directory at once, so a reader that resolved
// ..data to it an instant before can still fail to open a file that is
// there before and after (ENOENT); the caller removes it a little later
// with atomic_write_drop instead.
int atomic_write(const char *dir, Vmlet__GuestFile *const *files, size_t n, uint32_t default_mode,
                 int64_t fs_group, char *old, size_t cap, vmlet_err_t *err);

// Removes the data directory old (as atomic_write named it) from dir,
// unless ..data points to it.
void atomic_write_drop(const char *dir, const char *old);

#endif
