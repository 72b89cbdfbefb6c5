// TLS for the kubelet port (see tls_ctx.h).
#include "tls_ctx.h"

#include "vmlet/fsutil.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void s_openssl_error(vmlet_err_t *err, const char *what)
{
    char buf[256] = "";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    vmlet_err_set(err, "%s: %s", what, buf[0] ? buf : "unknown TLS error");
}

// A P-256 key and a certificate for it, signed by itself, valid a year,
// for localhost and 127.0.0.1 (the API server must be told to trust it).
static int s_make_self_signed(const char *cert_path, const char *key_path, vmlet_err_t *err)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    int rc = -1;
    if (!key || !x) {
        s_openssl_error(err, "making a key");
        goto out;
    }
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
    X509_set_version(x, 2);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"vmlet-kubelet-api",
                               -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *san =
        X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    if (!san || !X509_add_ext(x, san, -1) || !X509_sign(x, key, EVP_sha256())) {
        X509_EXTENSION_free(san);
        s_openssl_error(err, "signing a self-signed certificate");
        goto out;
    }
    X509_EXTENSION_free(san);
    FILE *kf = fopen(key_path, "w"), *cf = kf ? fopen(cert_path, "w") : NULL;
    if (kf)
        fchmod(fileno(kf), 0600);
    bool ok = kf && cf && PEM_write_PrivateKey(kf, key, NULL, NULL, 0, NULL, NULL) &&
              PEM_write_X509(cf, x);
    if (kf)
        fclose(kf);
    if (cf)
        fclose(cf);
    if (!ok) {
        vmlet_err_set(err, "cannot write %s and %s", cert_path, key_path);
        goto out;
    }
    rc = 0;
out:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

// The client's certificate is checked after the handshake, so a client
// without one, or with one from another CA, gets the kubelet's HTTP 401
// instead of a TLS alert it cannot read.
static int s_accept_for_now(int preverify_ok, X509_STORE_CTX *ctx)
{
    (void)preverify_ok;
    (void)ctx;
    return 1;
}

SSL_CTX *tls_ctx_new(const char *cert, const char *key, const char *state_dir,
                     const char *client_ca, bool client_auth, vmlet_err_t *err)
{
    char cert_path[4096], key_path[4096];
    if (cert[0]) {
        snprintf(cert_path, sizeof cert_path, "%s", cert);
        snprintf(key_path, sizeof key_path, "%s", key);
    } else {
        snprintf(cert_path, sizeof cert_path, "%s/kubelet-api.crt", state_dir);
        snprintf(key_path, sizeof key_path, "%s/kubelet-api.key", state_dir);
        if (access(cert_path, R_OK) != 0 && (vmlet_mkdirs(state_dir, 0700, err) < 0 ||
                                             s_make_self_signed(cert_path, key_path, err) < 0))
            return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        s_openssl_error(err, "TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        s_openssl_error(err, cert_path);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (client_auth) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
        if (!client_ca[0] || SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1 || !names) {
            s_openssl_error(err, "client CA (--client-ca)");
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, s_accept_for_now);
    }
    return ctx;
}

bool tls_client_identity(SSL *ssl, char *who, size_t cap)
{
    X509 *peer = SSL_get1_peer_certificate(ssl);
    if (!peer) {
        snprintf(who, cap, "no client certificate");
        return false;
    }
    long verify = SSL_get_verify_result(ssl);
    bool ok = verify == X509_V_OK;
    if (ok) {
        char cn[256] = "";
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
        snprintf(who, cap, "CN=%s", cn);
    } else {
        snprintf(who, cap, "client certificate refused: %s", X509_verify_cert_error_string(verify));
    }
    X509_free(peer);
    return ok;
}
