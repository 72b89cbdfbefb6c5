// Live files volumes: the configMap, secret, downwardAPI and projected
// volumes of the launcher's running pods follow their sources, as on a
// kubelet. Each pod's volumes are read again every
// --volume-refresh-interval (a GET per ConfigMap or Secret, and the pod's
// spec hash from Redis), and those made from the pod's metadata at once
// when a PodDesired brings new labels or annotations. Only a volume whose
// content changed (a keyed SHA-256 of its files, kept in memory; never the
// files) goes to the guest, whole, as a WriteFiles that the agent swaps in
// atomically. A source deleted later leaves the last content; an optional
// one that appears later shows up; service account tokens are renewed at
// 80 % of their life. docs/volumes.md says why this polls rather than
// watches.
#ifndef VMLET_LAUNCHER_VOLUME_REFRESH_H
#define VMLET_LAUNCHER_VOLUME_REFRESH_H

#include "launcher_internal.h"

#define VOLUME_DIGEST_LEN 32

// l's settings, store, API client, metrics and pods are used, not owned.
volume_refresh_t *volume_refresh_new(launcher_t *l);
// Forgets every pod (wiping cached tokens). Safe on NULL and twice.
void volume_refresh_destroy(volume_refresh_t **self_p);

// From the launcher's tick: refreshes the running pods that are due and
// forgets the pods that no longer run.
void volume_refresh_tick(volume_refresh_t *self);
// A PodDesired for one of ours (spec_hash may be NULL): when the spec
// changed, the volumes made from its metadata are refreshed now.
void volume_refresh_pod_desired(volume_refresh_t *self, pod_vm_t *pod, const char *spec_hash);
// PodSetup went to the guest with these volumes: what it has now, the
// baseline later refreshes compare against. Borrowed, not kept.
void volume_refresh_setup_sent(volume_refresh_t *self, pod_vm_t *pod,
                               Vmlet__GuestVolume *const *volumes, size_t n);

// --- pure pieces (unit-tested) ------------------------------------------------------

// A files volume's content as the guest sees it (each file's path, mode
// and bytes, in path order, whatever the order given), keyed so the digest
// of a Secret says nothing outside this process.
void volume_digest(const uint8_t key[32], const Vmlet__FilesSource *files,
                   uint8_t out[VOLUME_DIGEST_LEN]);
// Whether a token fetched at fetched_ms for expiration_s seconds is to be
// renewed at now_ms: past 80 % of its life, or older than 24 h (the
// kubelet's token manager).
bool volume_token_due(int64_t fetched_ms, int64_t expiration_s, int64_t now_ms);

#endif
