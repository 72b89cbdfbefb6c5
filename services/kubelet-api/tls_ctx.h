// The kubelet port's TLS: its serving certificate (given, or self-signed
// and kept on first start) and client-certificate authentication against
// the CA that signs the API server's kubelet-client certificate.
#ifndef VMLET_KAPI_TLS_CTX_H
#define VMLET_KAPI_TLS_CTX_H

#include "vmlet/err.h"

#include <openssl/ssl.h>
#include <stdbool.h>

// cert/key: PEM files, or "" to use (and on first start make) a
// self-signed pair in state_dir. client_ca: PEM, required when
// client_auth. Returns NULL with err.
SSL_CTX *tls_ctx_new(const char *cert, const char *key, const char *state_dir,
                     const char *client_ca, bool client_auth, vmlet_err_t *err);

// After the handshake: who the client is, from a certificate the CA
// signed ("CN=..."), into who. Returns true when authenticated; false with
// why (no certificate, or the verification error) in who.
bool tls_client_identity(SSL *ssl, char *who, size_t cap);

#endif
