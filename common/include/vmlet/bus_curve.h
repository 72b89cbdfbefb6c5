// CURVE on the services' side of the bus (docs/bus.md "Encryption and
// authentication"): every role's socket proves who it is with this
// process's certificate and checks it talks to the broker whose public key
// it was given. Off unless vmlet_bus_options_t names a certificate.
#ifndef VMLET_BUS_CURVE_H
#define VMLET_BUS_CURVE_H

#include "vmlet/bus.h"
#include "vmlet/err.h"

#include <czmq.h>
#include <stdbool.h>

// A CURVE key in Z85 text: 40 characters and the terminating NUL.
#define VMLET_CURVE_KEY_TEXT 41

// True when options ask for CURVE (a certificate is named).
bool vmlet_bus_curve_enabled(const vmlet_bus_options_t *options);

// Reads a public key given as its 40-character Z85 text, or as the path of
// a certificate file made by zcert (its public part is used). Writes the
// Z85 text to out. Returns 0, or -1 with err naming what was wrong.
int vmlet_bus_curve_parse_key(const char *text, char out[VMLET_CURVE_KEY_TEXT], vmlet_err_t *err);

// Loads a certificate with its secret key from `path` (the name zcert
// wrote, with or without "_secret"). Returns the caller's certificate, or
// NULL with err (missing file, or a public-only certificate).
zcert_t *vmlet_bus_curve_load_secret(const char *path, vmlet_err_t *err);

// Makes sock (not yet connected) a CURVE client of the broker when options
// ask for it; a no-op otherwise. `role` names the socket in errors.
// Returns 0, or -1 with err.
int vmlet_bus_curve_client(zsock_t *sock, const vmlet_bus_options_t *options, const char *role,
                           vmlet_err_t *err);

#endif
