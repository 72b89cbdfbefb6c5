// CURVE for the services' bus sockets (see bus_curve.h).
#include "vmlet/bus_curve.h"

#include <string.h>

// zcert leaves an absent secret key as forty '0's.
#define NO_SECRET "0000000000000000000000000000000000000000"

bool vmlet_bus_curve_enabled(const vmlet_bus_options_t *options)
{
    return options->curve_cert && options->curve_cert[0];
}

static bool s_is_z85_key(const char *text)
{
    uint8_t key[32];
    return strlen(text) == VMLET_CURVE_KEY_TEXT - 1 && zmq_z85_decode(key, text) != NULL;
}

int vmlet_bus_curve_parse_key(const char *text, char out[VMLET_CURVE_KEY_TEXT], vmlet_err_t *err)
{
    if (!text || !text[0])
        return vmlet_err_set(err, "no key given (a 40-character Z85 key, or a certificate file "
                                  "made by vmlet-bus --make-cert)");
    if (s_is_z85_key(text)) {
        memcpy(out, text, VMLET_CURVE_KEY_TEXT);
        return 0;
    }
    // Not a key: a certificate file. zcert_load would prefer a _secret
    // sibling; a public key is all we need, so read exactly this file.
    zconfig_t *root = zconfig_load(text);
    const char *key = root ? zconfig_get(root, "/curve/public-key", NULL) : NULL;
    if (!key || !s_is_z85_key(key)) {
        zconfig_destroy(&root);
        return vmlet_err_set(err,
                             "'%s' is neither a 40-character Z85 key nor a certificate file "
                             "with a public key (make one with vmlet-bus --make-cert)",
                             text);
    }
    memcpy(out, key, VMLET_CURVE_KEY_TEXT);
    zconfig_destroy(&root);
    return 0;
}

zcert_t *vmlet_bus_curve_load_secret(const char *path, vmlet_err_t *err)
{
    // zcert_load tries "<path>_secret" first, then path itself.
    zcert_t *cert = zcert_load(path);
    if (!cert) {
        vmlet_err_set(err, "cannot read certificate '%s' (make one with vmlet-bus --make-cert)",
                      path);
        return NULL;
    }
    if (strcmp(zcert_secret_txt(cert), NO_SECRET) == 0) {
        zcert_destroy(&cert);
        vmlet_err_set(err,
                      "certificate '%s' has no secret key: give the file ending in _secret, "
                      "not the public one",
                      path);
        return NULL;
    }
    return cert;
}

int vmlet_bus_curve_client(zsock_t *sock, const vmlet_bus_options_t *options, const char *role,
                           vmlet_err_t *err)
{
    if (!vmlet_bus_curve_enabled(options))
        return 0;
    char server_key[VMLET_CURVE_KEY_TEXT];
    vmlet_err_t why = {0};
    if (vmlet_bus_curve_parse_key(options->curve_server_key, server_key, &why) < 0)
        return vmlet_err_set(err, "bus %s: --bus-curve-server-key: %s", role, why.msg);
    zcert_t *cert = vmlet_bus_curve_load_secret(options->curve_cert, &why);
    if (!cert)
        return vmlet_err_set(err, "bus %s: --bus-curve-cert: %s", role, why.msg);
    zcert_apply(cert, sock);
    zsock_set_curve_serverkey(sock, server_key);
    zcert_destroy(&cert);
    return 0;
}
