// Asking image-builder for a pod's images: one ImageRequest work item per
// image not yet in the image index, carrying the credentials the pod's
// imagePullSecrets hold for that image's registry. Item ids are the
// normalised references, so the broker keeps one request per image however
// many pods ask, and asking again (every retry interval while an image is
// missing) costs nothing.
#ifndef VMLET_WATCHER_IMAGE_REQUESTS_H
#define VMLET_WATCHER_IMAGE_REQUESTS_H

#include "normalize.h"

#include "vmlet/bus.h"
#include "vmlet/store.h"

// Credentials for `registry` ("127.0.0.1:5000", "docker.io") in a
// kubernetes.io/dockerconfigjson document (already base64-decoded): by
// username/password, by "auth" (base64 user:pass), or an identitytoken.
// Keys may carry a scheme and path ("https://index.docker.io/v1/").
// Returns 1 and fills the malloc'd strings (NULL when absent), 0 if the
// document has none for it, -1 if it is not such a document.
int dockercfg_find(const char *json, const char *registry, char **username, char **password,
                   char **identity_token);

// Submits what the pod still needs. secrets looks pull secrets up (as the
// normaliser's resolver does). With new_spec, images with pull policy
// Always are asked for even when cached (the tag may have moved), as the
// kubelet pulls them for every new container. Returns true when every
// image is ready.
bool image_requests_send(vmlet_bus_client_t *client, vmlet_store_t *store,
                         const Vmlet__PodSpec *spec, const pod_resolver_t *secrets, bool new_spec,
                         vmlet_log_t *log);

#endif
